import PonderBase
import PonderJSON
import PonderModel
import PonderRewards
import PonderText

/// Rejection-sampling SFT (DeepSeek-R1's stage between two RL rounds): sample K completions
/// per prompt from the current model, keep those whose rewards pass, drop duplicates, write the
/// kept set as a JSONL dataset anyone can reuse, then fine-tune on it.
///
/// Config (kind "rejection_sft"): every SFT key — "model" is both the sampler and the model
/// fine-tuned, "data" the SFT options with "train" omitted (it is the sampled set) — plus
/// {"rejection": {"prompts": JSONL | {"generate": "arithmetic", ...}, "system": null | "paper" | text,
///   "num_samples": 8, "max_completion_length": 256, "temperature": 1, "top_p": 1, "seed": 0,
///   "min_reward": 2, "require": ["accuracy", "format"], "max_per_prompt": 0,
///   "reward": {reward options as in GRPO's "reward"}, "output": "path.jsonl"}}
/// A completion is kept when its weighted total is at least min_reward and every reward named
/// in `require` scored 1. The dataset goes to `output` (default output.dir/rejection_samples.jsonl);
/// when that file exists (a resumed run) it is reused rather than sampled again.
public struct RejectionSamplingConfig: Sendable {
    public var prompts: DataSource = .arithmetic(count: 64, seed: 0, split: .train)
    public var system: String?
    public var numSamples = 8
    public var maxCompletionLength = 256
    public var sampling = SamplingParams()
    public var seed: UInt64 = 0
    public var minReward = 2.0
    public var require = ["accuracy", "format"]
    /// Kept completions per prompt at most (0: all distinct ones).
    public var maxPerPrompt = 0
    public var reward = RewardConfig()
    public var output: String?
    public var maxPromptLength = 512
    /// Reward names whose functions the caller supplies (a pipeline's registered rewards).
    public var customRewards: [String] = []

    /// Every key, with its value ("prompts" and "output" as given: null when left out).
    public var json: [(String, JSONValue)] {
        [("system", systemOption(system)),
         ("num_samples", .int(Int64(numSamples))), ("max_completion_length", .int(Int64(maxCompletionLength)))]
        + sampling.json + [
         ("seed", .int(Int64(seed))), ("min_reward", .double(minReward)), ("require", .array(require.map { .string($0) })),
         ("max_per_prompt", .int(Int64(maxPerPrompt))), ("max_prompt_length", .int(Int64(maxPromptLength))),
         ("reward", .object([("custom", .array(customRewards.map { .string($0) }))] + reward.json))]
    }

    public init() {}

    /// `promptsRequired` false: "prompts" may be left out (a pipeline stage then samples its
    /// data's training prompts).
    public init(reader r: JSONReader, promptsRequired: Bool = true) throws {
        if let p = DataSource(r, "prompts") { prompts = p } else if promptsRequired && !r.hasErrors { r.failHere("missing \"prompts\"") }
        if let s = r.string("system") { system = systemPrompt(s) }
        numSamples = r.int("num_samples", in: 1...1024) ?? numSamples
        SamplingParams.readLength(r, "max_completion_length", &maxCompletionLength)
        sampling.read(r)
        sampling.requireSampling(r, because: "rejection sampling draws num_samples different completions (0 is greedy)")
        seed = SamplingParams.readSeed(r) ?? seed
        minReward = r.double("min_reward", "a finite number", valid: { _ in true }) ?? minReward
        require = r.strings("require") ?? require
        maxPerPrompt = r.int("max_per_prompt", in: 0...1024) ?? maxPerPrompt
        maxPromptLength = r.int("max_prompt_length", in: 1...1_048_576) ?? maxPromptLength
        if let w = r.object("reward") {
            (reward, customRewards) = RewardConfig.read(trainer: w)
            w.rejectUnknownKeys()
        }
        for (i, name) in require.enumerated() where !reward.rewards.contains(name) {
            r.fail("require[\(i)]", "\"\(name)\" is not one of the rewards (\(reward.rewards.joined(separator: ", ")))")
        }
        output = r.path("output")
        r.rejectUnknownKeys()
    }
}

public enum RejectionSampling {
    public struct Result: Sendable {
        public var examples: [ChatExample]
        public var sampled: Int
        public var promptsKept: Int
    }

    /// Samples, filters and de-duplicates; the kept examples are the prompt's messages followed
    /// by the completion as the assistant's turn.
    public static func sample(model: LlamaModel, prompts: [GRPOPrompt], config c: RejectionSamplingConfig,
                              custom: [String: CustomReward] = [:]) throws -> Result {
        let rewards = RewardSet(config: c.reward, custom: custom)
        var req = GenerateRequest()
        req.n = c.numSamples
        req.sampling = c.sampling
        req.seed = c.seed
        // A few prompts per decode, so the batch has enough rows to keep the cores busy.
        let gen = try BatchedGeneration(request: req, maxNewTokens: c.maxCompletionLength, maxPromptLength: c.maxPromptLength,
                                        model: model, perBatch: 32 / c.numSamples).run(model: model, prompts: prompts)
        var out: [ChatExample] = []
        var promptsKept = 0
        for (k, p) in prompts.enumerated() {
            var seen: Set<String> = []
            var kept = 0
            for completion in gen.group(k, n: c.numSamples) {
                // Only completions that ended on their own: a truncated one teaches rambling.
                guard completion.finishReason != .length, !seen.contains(completion.text) else { continue }
                let s = rewards.score(RewardInput(completion: completion.text, reference: p.reference, prompt: p.text,
                                                  completionTokens: completion.tokenIDs.count))
                guard let total = s.total, total >= c.minReward, c.require.allSatisfy({ s[$0]?.value == 1 }) else { continue }
                seen.insert(completion.text)
                out.append(ChatExample(messages: p.messages + [.init(role: "assistant", content: completion.text)]))
                kept += 1
                if c.maxPerPrompt > 0 && kept >= c.maxPerPrompt { break }
            }
            if kept > 0 { promptsKept += 1 }
        }
        let sampled = gen.completions.count
        return Result(examples: out, sampled: sampled, promptsKept: promptsKept)
    }

    /// The kept set as JSONL {"messages": [...]} lines, written atomically.
    public static func write(_ examples: [ChatExample], to path: String) throws {
        var text = ""
        for e in examples {
            let msgs = JSONValue.array(e.messages.map { .object([("role", .string($0.role)), ("content", .string($0.content))]) })
            text += JSONValue.object([("messages", msgs)]).serialized() + "\n"
        }
        try AtomicFile.write(path, text)
    }
}

/// Builds the kind "rejection_sft" trainer: samples (or reuses) the dataset, then an SFT
/// trainer on it.
func makeRejectionSFTTrainer(json: JSONValue) throws -> SFTTrainer {
    guard case var .object(fields) = json else { throw PonderError.invalid("<root>: expected an object") }
    guard let rj = json["rejection"] else { throw PonderError.invalid("missing \"rejection\" (the sampling options)") }
    let rr = JSONReader(rj, what: "rejection")
    let rc = try RejectionSamplingConfig(reader: rr)
    try rr.finish()
    let outDir = json["output"]?["dir"]?.asString
    guard let path = rc.output ?? outDir.map({ $0 + "/rejection_samples.jsonl" }) else {
        throw PonderError.invalid("rejection.output: where to write the sampled dataset (or set output.dir)")
    }
    if !fileExists(path) {
        guard let m = json["model"] else { throw PonderError.invalid("missing \"model\"") }
        let spec = ModelSpec(reader: JSONReader(m, what: "model"))
        let model = try spec.load()
        let prompts = try rc.prompts.prompts(system: rc.system)
        let res = try RejectionSampling.sample(model: model, prompts: prompts, config: rc)
        guard !res.examples.isEmpty else {
            throw PonderError.invalid("rejection: none of \(res.sampled) samples passed (min_reward \(rc.minReward), require \(rc.require))")
        }
        if let dir = outDir { try makeDirectories(dir) }
        try RejectionSampling.write(res.examples, to: path)
    }
    // The SFT config: the same keys with data.train = the sampled set.
    fields.removeAll { $0.0 == "rejection" || $0.0 == "kind" }
    var data: [(String, JSONValue)] = []
    if case let .object(d)? = json["data"] { data = d.filter { $0.0 != "train" } }
    data.append(("train", .string(path)))
    fields.removeAll { $0.0 == "data" }
    fields.append(("data", .object(data)))
    return try SFTTrainer(config: SFTConfig(json: .object(fields)))
}
