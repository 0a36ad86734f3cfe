import PonderBase
import PonderEnvironments
import PonderJSON
import PonderModel
import PonderRewards
import PonderText

/// The evaluation's options, as an "eval" pipeline stage and `ponder eval` take them. The data
/// is read by the caller (a stage's "data", the CLI's --data); the rest here, once.
public struct EvalConfig: Sendable, Equatable {
    /// Held-out problems: at most this many (0: all), a subset drawn with `seed` when fewer.
    public var limit = 0
    public var seed: UInt64 = 0
    /// Completion budget (tokens) of every answer, greedy or sampled.
    public var maxNewTokens = GenerateRequest.defaultMaxTokens
    /// max_new_tokens was given (a budget that does not fit is then an error); the default is
    /// cut to what the context leaves after the longest prompt (`fitted`).
    public var maxNewTokensGiven = false
    public var maxPromptLength = 512
    /// Samples per problem for pass@1, maj@k and pass@k (0: greedy only).
    public var numSamples = 0
    /// How the num_samples answers are drawn (the greedy answer ignores it).
    public var sampling = SamplingParams()
    /// The k of the unbiased pass@k estimates (each ≤ num_samples; default [1, num_samples]).
    public var passK: [Int] = []
    /// Prompts decoded together in one grouped decode.
    public var batchSize = 32
    /// Also evaluate in greedy episodes with this environment (its rates as episode_*).
    public var environment: EnvironmentConfig?

    public init() {}

    /// The keys above from `r` (the caller rejects unknown keys).
    public mutating func read(_ r: JSONReader) {
        limit = r.int("limit", in: 0...10_000_000) ?? limit
        seed = SamplingParams.readSeed(r) ?? seed
        SamplingParams.readLength(r, "max_new_tokens", &maxNewTokens)
        maxNewTokensGiven = maxNewTokensGiven || r.has("max_new_tokens")
        maxPromptLength = r.int("max_prompt_length", in: 1...1_048_576) ?? maxPromptLength
        numSamples = r.int("num_samples", in: 0...1024) ?? numSamples
        sampling.read(r)
        sampling.requireSampling(r, because: "num_samples are drawn at it; the greedy answer is measured anyway")
        if let ks = r.array("pass_k") {
            var out: [Int] = []
            for (i, v) in ks.enumerated() {
                guard let k = v.asInt, k >= 1, k <= Int64(max(numSamples, 1)) else {
                    r.fail("pass_k[\(i)]", "expected an integer in [1, num_samples (\(numSamples))], got \(v.serialized())")
                    continue
                }
                out.append(Int(k))
            }
            if numSamples == 0 && !ks.isEmpty { r.fail("pass_k", "needs num_samples > 0") }
            passK = out
        }
        batchSize = r.int("batch_size", in: 1...4096) ?? batchSize
        if let e = r.object("environment") { environment = EnvironmentConfig.read(e) }
    }

    /// This config with the default max_new_tokens cut to what `model`'s context leaves after the
    /// longest of `prompts`, and the note that says so (nil: nothing was cut).
    public func fitted(model: LlamaModel, prompts: [GRPOPrompt]) throws -> (config: EvalConfig, note: String?) {
        let context = model.config.maxPositions
        guard !maxNewTokensGiven else { return (self, nil) }
        let longest = try prompts.map { try model.promptTokens(.chat($0.messages), keepLast: maxPromptLength).count }.max() ?? 0
        guard let cut = defaultLengthCut("max_new_tokens", maxNewTokens, context: context, promptTokens: longest) else { return (self, nil) }
        var c = self
        (c.maxNewTokens, c.maxNewTokensGiven) = (cut.length, true)
        return (c, cut.note)
    }

    /// pass_k as used: given, or [1, num_samples].
    public var effectivePassK: [Int] {
        guard numSamples > 0 else { return [] }
        return passK.isEmpty ? Array(Set([1, numSamples])).sorted() : passK
    }

    public var json: [(String, JSONValue)] {
        [("limit", .int(Int64(limit))), ("seed", .int(Int64(seed))), ("max_new_tokens", .int(Int64(maxNewTokens))),
         ("max_prompt_length", .int(Int64(maxPromptLength))), ("num_samples", .int(Int64(numSamples)))]
        + sampling.json + [
         ("pass_k", .array(effectivePassK.map { .int(Int64($0)) })), ("batch_size", .int(Int64(batchSize))),
         ("environment", environment?.json ?? .null)]
    }

    /// What the numbers were measured with, stored beside them: the data, the system prompt, the
    /// exact text the first problem was decoded from, and the decoding settings.
    public func settings(source: DataSource, system: String?, promptExample: String?) -> JSONValue {
        .object([
            ("data", source.json), ("system", systemOption(system)),
            ("prompt_example", promptExample.map { .string($0) } ?? .null),
            ("greedy", .object([("temperature", 0), ("max_new_tokens", .int(Int64(maxNewTokens)))])),
            ("sampling", numSamples > 0 ? .object([("num_samples", .int(Int64(numSamples)))] + sampling.json
                                                  + [("seed", .int(Int64(seed))), ("max_new_tokens", .int(Int64(maxNewTokens)))]) : .null),
            ("reflection", "paper mode (the paper's published reward) as \"reflection\"; guarded beside it as \"reflection_guarded\""),
            ("options", .object(json)),
        ])
    }

    /// The problems to evaluate: all of `source`, or a seeded subset of `limit`.
    public func prompts(_ source: DataSource, system: String?) throws -> [GRPOPrompt] {
        var all = try source.prompts(system: system)
        if limit > 0 && all.count > limit {
            var rng = RandomGenerator(seed: seed &+ 0x5EED)
            for i in stride(from: all.count - 1, to: 0, by: -1) { all.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            all = Array(all.prefix(limit))
        }
        return all
    }
}

/// A model's answers to held-out prompts, scored as the paper reports them — accuracy, format
/// rate, reflection (the paper's reward, on the completions) and completion length — grown into
/// the pipeline's evaluation: pass@1 over k samples, maj@k, unbiased pass@k, and reflection
/// under both modes. The paper-mode reflection is the measuring stick whatever reward a model
/// was trained with; the guarded one is reported beside it.
public enum Evaluation {
    public struct Result: Sendable {
        public var count: Int
        /// Per prompt: the greedy answer was correct (nil: the reference has no parseable answer).
        public var correct: [Bool?]
        public var texts: [String]
        public var metrics: [(String, JSONValue)]
        /// What the config's defaults became (a max_new_tokens cut to the context).
        public var notes: [String] = []

        /// Accuracy over the prompts that have a reference (its standard error is in `metrics`).
        public var accuracy: Double { Double(correct.compactMap { $0 }.filter { $0 }.count) / Double(max(1, correct.compactMap { $0 }.count)) }

        public func metric(_ key: String) -> Double? { metrics.first { $0.0 == key }?.1.asDouble }
    }

    /// Greedy completions of `prompts`, decoded `batch` prompts at a time in one grouped decode.
    public static func run(model: LlamaModel, prompts: [GRPOPrompt], maxTokens: Int, maxPromptLength: Int = 512,
                           batch: Int = 32) throws -> Result {
        var c = EvalConfig()
        c.maxNewTokens = maxTokens
        c.maxNewTokensGiven = true
        c.maxPromptLength = maxPromptLength
        c.batchSize = batch
        return try evaluate(model: model, prompts: prompts, config: c)
    }

    /// The full evaluation. `shouldStop` is asked between batches (true: PonderError(.cancelled));
    /// `progress(done, total)` is told after each batch of greedy or sampled decoding.
    public static func evaluate(model: LlamaModel, prompts: [GRPOPrompt], config given: EvalConfig,
                                shouldStop: () -> Bool = { false }, progress: (Int, Int) -> Void = { _, _ in }) throws -> Result {
        guard !prompts.isEmpty else { throw PonderError.invalid("evaluation: no prompts") }
        let (c, note) = try given.fitted(model: model, prompts: prompts)
        let total = prompts.count * (c.numSamples > 0 ? 2 : 1)
        var greedy = GenerateRequest()
        greedy.sampling.temperature = 0
        greedy.seed = 0
        let greedyOut = try evaluating {
            try BatchedGeneration(request: greedy, maxNewTokens: c.maxNewTokens, maxPromptLength: c.maxPromptLength, model: model,
                                  perBatch: c.batchSize)
                .run(model: model, prompts: prompts, shouldStop: shouldStop) { progress($0, total) }.completions
        }
        let texts = greedyOut.map(\.text)
        var metrics = greedyMetrics(greedyOut, prompts: prompts)
        let correct = metrics.correct
        if c.numSamples > 0 {
            var sampled = GenerateRequest()
            sampled.n = c.numSamples
            sampled.sampling = c.sampling
            sampled.seed = c.seed
            let out = try evaluating {
                try BatchedGeneration(request: sampled, maxNewTokens: c.maxNewTokens, maxPromptLength: c.maxPromptLength, model: model,
                                      perBatch: c.batchSize / c.numSamples)
                    .run(model: model, prompts: prompts, shouldStop: shouldStop) { progress(prompts.count + $0, total) }
            }
            metrics.values += sampledMetrics(prompts.indices.map { out.group($0, n: c.numSamples) }, prompts: prompts, passK: c.effectivePassK)
        }
        return Result(count: prompts.count, correct: correct, texts: texts, metrics: dedupe(metrics.values), notes: note.map { [$0] } ?? [])
    }

    /// A cancelled batch loop's error, named as the evaluation's.
    static func evaluating<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as PonderError where e.code == .cancelled {
            throw PonderError(.cancelled, "evaluation " + e.message)
        }
    }

    /// Accuracy, format, reflection (paper and guarded), length and truncation of the greedy answers.
    static func greedyMetrics(_ out: [Completion], prompts: [GRPOPrompt]) -> (values: [(String, JSONValue)], correct: [Bool?]) {
        let texts = out.map(\.text)
        let lengths = out.map { Double($0.tokenIDs.count) }
        var paperConfig = RewardConfig(), guardedConfig = RewardConfig()
        paperConfig.reflectionMode = .paper
        (guardedConfig.rewards, guardedConfig.rewardWeights) = (["reflection"], [1])
        let paper = RewardSet(config: paperConfig), guarded = RewardSet(config: guardedConfig)
        let scored = zip(texts, prompts).map { paper.score(RewardInput(completion: $0, reference: $1.reference, prompt: $1.text)) }
        let guardedScores = zip(texts, prompts).map { guarded.score(RewardInput(completion: $0, reference: $1.reference, prompt: $1.text)) }
        let correct = scored.map { $0["accuracy"]?.value.map { $0 == 1 } }

        var metrics: [(String, JSONValue)] = [("count", .int(Int64(prompts.count)))]
        metrics += rates(texts: texts, scored: scored)
        let acc = correct.compactMap { $0 }
        let p = Double(acc.filter { $0 }.count) / Double(max(1, acc.count))
        metrics.append(("accuracy_stderr", .double((p * (1 - p) / Double(max(1, acc.count))).squareRoot())))
        let g = guardedScores.compactMap { $0["reflection"]?.value }
        metrics.append(("reflection_guarded", .double(g.isEmpty ? .nan : g.reduce(0, +) / Double(g.count))))
        metrics.append(("mean_length", .double(lengths.reduce(0, +) / Double(max(1, lengths.count)))))
        metrics.append(("truncated_rate", .double(Double(out.filter { $0.finishReason == .length }.count) / Double(prompts.count))))
        return (metrics, correct)
    }

    /// pass@1 (the mean over each problem's samples), maj@k and the unbiased pass@k.
    static func sampledMetrics(_ groups: [ArraySlice<Completion>], prompts: [GRPOPrompt], passK: [Int]) -> [(String, JSONValue)] {
        var pass1 = 0.0, maj = 0.0, scoredPrompts = 0, k = 0
        var passAt = [Double](repeating: 0, count: passK.count)
        for (group, prompt) in zip(groups, prompts) {
            k = group.count
            guard let ref = prompt.reference, let gold = Answers.goldAnswer(in: ref) else { continue }
            let answers = group.map { Answers.finalAnswer(in: $0.text) }
            // The accuracy reward's verdicts: a prompt with a sample it cannot judge (nested past
            // its limit) is left out rather than counted wrong.
            let verdicts = zip(group, answers).map { Answers.verdict(completion: $0.0.text, reference: ref, answer: $0.1).value }
            guard !verdicts.contains(where: { $0 == nil }) else { continue }
            scoredPrompts += 1
            let right = verdicts.filter { $0 == 1 }.count
            pass1 += Double(right) / Double(group.count)
            for (j, k) in passK.enumerated() { passAt[j] += passAtK(n: group.count, c: right, k: k) }
            if let vote = majority(answers.compactMap { $0 }), vote.equivalent(to: gold) { maj += 1 }
        }
        let n = Double(max(1, scoredPrompts))
        return [("pass@1", .double(pass1 / n)), ("maj@\(k)", .double(maj / n))]
            + passK.enumerated().map { ("pass@\($0.element)", .double(passAt[$0.offset] / n)) }
    }

    /// Later values of a repeated key win (pass@1 from pass_k and from the mean over samples agree).
    static func dedupe(_ m: [(String, JSONValue)]) -> [(String, JSONValue)] {
        var seen: Set<String> = []
        return m.reversed().filter { seen.insert($0.0).inserted }.reversed()
    }

    /// A model's greedy answers against another's on the same problems: the mean per-problem
    /// change in correctness and its paired standard error, over the problems both could score;
    /// nil with fewer than two. How a gain is told from the held-out set's sampling noise.
    public static func pairedChange(from a: [Bool?], to b: [Bool?]) -> (mean: Double, stderr: Double, n: Int)? {
        let d = zip(a, b).compactMap { x, y -> Double? in
            guard let x, let y else { return nil }
            return (y ? 1 : 0) - (x ? 1 : 0)
        }
        guard d.count > 1 else { return nil }
        let mean = d.reduce(0, +) / Double(d.count)
        let sd = (d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d.count - 1)).squareRoot()
        return (mean, sd / Double(d.count).squareRoot(), d.count)
    }

    /// The unbiased estimator of pass@k from n samples of which c are correct (Chen et al. 2021):
    /// 1 − C(n−c, k) / C(n, k), as a product so large n does not overflow.
    public static func passAtK(n: Int, c: Int, k: Int) -> Double {
        guard k <= n else { return .nan }
        if c <= 0 { return 0 }
        if n - c < k { return 1 }
        var prod = 1.0
        for i in (n - c + 1)...n { prod *= 1 - Double(k) / Double(i) }
        return 1 - prod
    }

    /// The most frequent answer (equivalent answers vote together; ties go to the first seen).
    public static func majority(_ answers: [ParsedAnswer]) -> ParsedAnswer? {
        var best: (answer: ParsedAnswer, members: [Int])? = nil
        for g in Answers.groups(answers) where g.members.count > (best?.members.count ?? 0) { best = g }
        return best?.answer
    }

    /// accuracy and format_rate (format fully met) from the given scores (NaN where those rewards
    /// were not scored), reflection (the paper's reward, mean),
    /// reflection/<dimension> (share of completions using it at least once).
    public static func rates(texts: [String], scored: [ScoredCompletion]) -> [(String, JSONValue)] {
        let n = Double(max(1, texts.count))
        let acc = scored.compactMap { $0["accuracy"]?.value }
        let fmt = scored.compactMap { $0["format"]?.value }
        let counts = texts.map(reflectionMatchCounts)
        var out: [(String, JSONValue)] = [
            ("accuracy", .double(acc.isEmpty ? .nan : acc.reduce(0, +) / Double(acc.count))),
            ("format_rate", .double(fmt.isEmpty ? .nan : Double(fmt.filter { $0 == 1 }.count) / Double(fmt.count))),
            ("reflection", .double(counts.map { paperReflectionValue(counts: $0) }.reduce(0, +) / n)),
        ]
        for d in ReflectionDimension.allCases {
            out.append(("reflection/\(d.name)", .double(Double(counts.filter { $0[d.rawValue] > 0 }.count) / n)))
        }
        return out
    }

    /// Greedy episodes with an environment, `batch` prompts decoded together: the rates of the
    /// model's final turns (accuracy, format, reflection, as single-turn evaluation reports them)
    /// and the episodes' turns, environment reward and failures.
    public static func episodes(model: LlamaModel, prompts: [GRPOPrompt], environment e: EnvironmentConfig,
                                factory: @escaping EnvironmentFactory, maxNewTokens: Int, maxPromptLength: Int, batch: Int = 32,
                                shouldStop: () -> Bool = { false }, progress: (Int, Int) -> Void = { _, _ in }) throws -> [(String, JSONValue)] {
        guard !prompts.isEmpty else { throw PonderError.invalid("evaluation: no prompts") }
        var req = GenerateRequest()
        req.sampling.temperature = 0
        var batched = BatchedGeneration(request: req, maxNewTokens: maxNewTokens, maxPromptLength: maxPromptLength, model: model,
                                        perBatch: batch)
        // Seeded by the problem's index (the default): the same episodes whatever the batch size.
        batched.environment = (e, factory)
        let out = try evaluating {
            try batched.run(model: model, prompts: prompts, shouldStop: shouldStop) { progress($0, prompts.count) }
        }
        let eps = out.episodes ?? []
        let rewards = RewardSet(config: RewardConfig())
        let texts = out.finalTexts
        let scored = zip(texts, prompts).map { rewards.score(RewardInput(completion: $0, reference: $1.reference, prompt: $1.text)) }
        let envScores = eps.compactMap(\.reward)
        let n = Double(texts.count)
        return [("count", .int(Int64(texts.count)))] + rates(texts: texts, scored: scored) + [
            ("turns_mean", .double(Double(eps.reduce(0) { $0 + $1.turns }) / n)),
            ("environment_errors", .int(Int64(eps.filter { $0.error != nil }.count))),
            ("environment_reward", envScores.isEmpty ? .null : .double(envScores.reduce(0, +) / Double(envScores.count))),
        ]
    }
}

/// An evaluation's report — what an eval stage writes as its eval.json and `ponder eval --json`
/// prints: the settings, one row per model, each model against the one before it on the same
/// problems, and each model's per-problem correctness. Rows count problems as `n`.
public struct EvalReport {
    public var settings: JSONValue
    public private(set) var rows: [JSONValue] = []
    public private(set) var details: [JSONValue] = []
    var correctness: [(label: String, correct: [Bool?])] = []

    public init(settings: JSONValue) { self.settings = settings }

    /// Adds `label`'s result (the model at `path`), and with an environment its episode
    /// metrics; returns the row.
    @discardableResult
    public mutating func add(_ r: Evaluation.Result, label: String, path: String, episodes: [(String, JSONValue)]? = nil) -> JSONValue {
        let leading = ["accuracy", "format_rate", "reflection", "mean_length"]
        var row: [(String, JSONValue)] = [("stage", .string(label)), ("model", .string(path))]
        for key in leading { row.append((key, .double(r.metric(key) ?? .nan))) }
        row.append(("n", .int(Int64(r.count))))
        row += r.metrics.filter { !leading.contains($0.0) && $0.0 != "count" }
        for (key, v) in episodes ?? [] where key != "count" && !key.hasPrefix("reflection/") {
            row.append((key.hasPrefix("environment") || key == "turns_mean" ? key : "episode_" + key, v))
        }
        rows.append(.object(row))
        details.append(.object([("model", .string(label)), ("path", .string(path)), ("metrics", .object(r.metrics)),
                                ("correct", .array(r.correct.map { $0.map(JSONValue.bool) ?? .null }))]
                               + (r.notes.isEmpty ? [] : [("notes", .array(r.notes.map { .string($0) }))])))
        correctness.append((label, r.correct))
        return .object(row)
    }

    /// Each model against the one before it: the accuracy change and its paired standard error,
    /// so a gain can be told from the held-out set's sampling noise.
    public var comparisons: [JSONValue] {
        correctness.indices.dropFirst().compactMap { k in
            let (from, a) = correctness[k - 1], (to, b) = correctness[k]
            guard let c = Evaluation.pairedChange(from: a, to: b) else { return nil }
            return .object([("from", .string(from)), ("to", .string(to)), ("accuracy_change", .double(c.mean)),
                            ("paired_stderr", .double(c.stderr)), ("n", .int(Int64(c.n)))])
        }
    }

    public var json: JSONValue {
        .object([("settings", settings), ("rows", .array(rows)), ("comparisons", .array(comparisons)), ("details", .array(details))])
    }

    /// The first `limit` answers of `label` with their rewards (default reward options), as JSONL
    /// lines for reading beside the numbers.
    public static func sample(label: String, prompts: [GRPOPrompt], texts: [String], limit: Int = 20) -> String {
        let rewards = RewardSet(config: RewardConfig())
        var lines = ""
        for (p, text) in zip(prompts, texts).prefix(limit) {
            let s = rewards.score(RewardInput(completion: text, reference: p.reference, prompt: p.text))
            lines += JSONValue.object([("model", .string(label)), ("prompt", .string(p.text)), ("reference", p.reference.map { .string($0) } ?? .null),
                                       ("completion", .string(text)), ("rewards", s.json)]).serialized() + "\n"
        }
        return lines
    }
}
