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
    public var maxNewTokens = 256
    public var maxPromptLength = 512
    /// Samples per problem for pass@1, maj@k and pass@k (0: greedy only).
    public var numSamples = 0
    public var temperature = 1.0
    public var topP = 1.0
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
        seed = UInt64(r.int("seed", in: 0...Int64(Int32.max)) ?? Int(seed))
        maxNewTokens = r.int("max_new_tokens", in: 1...1_048_576) ?? maxNewTokens
        maxPromptLength = r.int("max_prompt_length", in: 1...1_048_576) ?? maxPromptLength
        numSamples = r.int("num_samples", in: 0...1024) ?? numSamples
        temperature = r.double("temperature", "a number in (0, 100]") { $0 > 0 && $0 <= 100 } ?? temperature
        topP = r.double("top_p", "a number in (0, 1]") { $0 > 0 && $0 <= 1 } ?? topP
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

    /// pass_k as used: given, or [1, num_samples].
    public var effectivePassK: [Int] {
        guard numSamples > 0 else { return [] }
        return passK.isEmpty ? Array(Set([1, numSamples])).sorted() : passK
    }

    public var json: [(String, JSONValue)] {
        [("limit", .int(Int64(limit))), ("seed", .int(Int64(seed))), ("max_new_tokens", .int(Int64(maxNewTokens))),
         ("max_prompt_length", .int(Int64(maxPromptLength))), ("num_samples", .int(Int64(numSamples))),
         ("temperature", .double(temperature)), ("top_p", .double(topP)),
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
            ("sampling", numSamples > 0 ? .object([("num_samples", .int(Int64(numSamples))), ("temperature", .double(temperature)),
                                                   ("top_p", .double(topP)), ("seed", .int(Int64(seed))),
                                                   ("max_new_tokens", .int(Int64(maxNewTokens)))]) : .null),
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

        /// Accuracy over the prompts that have a reference (its standard error is in `metrics`).
        public var accuracy: Double { Double(correct.compactMap { $0 }.filter { $0 }.count) / Double(max(1, correct.compactMap { $0 }.count)) }

        public func metric(_ key: String) -> Double? { metrics.first { $0.0 == key }?.1.asDouble }
    }

    /// Greedy completions of `prompts`, decoded `batch` prompts at a time in one grouped decode.
    public static func run(model: LlamaModel, prompts: [GRPOPrompt], maxTokens: Int, maxPromptLength: Int = 512,
                           batch: Int = 32) throws -> Result {
        var c = EvalConfig()
        c.maxNewTokens = maxTokens
        c.maxPromptLength = maxPromptLength
        c.batchSize = batch
        return try evaluate(model: model, prompts: prompts, config: c)
    }

    /// The full evaluation. `shouldStop` is asked between batches (true: PonderError(.cancelled));
    /// `progress(done, total)` is told after each batch of greedy or sampled decoding.
    public static func evaluate(model: LlamaModel, prompts: [GRPOPrompt], config c: EvalConfig,
                                shouldStop: () -> Bool = { false }, progress: (Int, Int) -> Void = { _, _ in }) throws -> Result {
        guard !prompts.isEmpty else { throw PonderError.invalid("evaluation: no prompts") }
        let budget = max(1, min(c.maxPromptLength, model.config.maxPositions - c.maxNewTokens))
        let ids = try prompts.map { try GRPOTrainer.tokens(of: $0, model: model, maxLength: budget) }
        let total = prompts.count * (c.numSamples > 0 ? 2 : 1)
        var done = 0

        func decode(_ req: GenerateRequest, perBatch: Int) throws -> [[Completion]] {
            var out: [[Completion]] = []
            var start = 0
            while start < prompts.count {
                if shouldStop() { throw PonderError(.cancelled, "evaluation cancelled after \(start) of \(prompts.count) prompts") }
                let end = min(prompts.count, start + perBatch)
                var r = req
                // Sampled decoding is seeded per batch, so a subset's draws do not depend on the batch size alone.
                if let s = req.seed { r.seed = s &+ UInt64(start) &* 7919 }
                let gen = try model.generate(prompts: Array(ids[start..<end]), r)
                for k in 0..<(end - start) { out.append(Array(gen.completions[(k * r.n)..<((k + 1) * r.n)])) }
                done += end - start
                progress(done, total)
                start = end
            }
            return out
        }

        var greedy = GenerateRequest()
        greedy.n = 1
        greedy.maxTokens = c.maxNewTokens
        greedy.sampling.temperature = 0
        greedy.seed = 0
        let greedyOut = try decode(greedy, perBatch: c.batchSize).map { $0[0] }
        let texts = greedyOut.map(\.text)
        let lengths = greedyOut.map { Double($0.tokenIDs.count) }

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
        metrics.append(("truncated_rate", .double(Double(greedyOut.filter { $0.finishReason == .length }.count) / Double(prompts.count))))

        if c.numSamples > 0 {
            var sampled = GenerateRequest()
            sampled.n = c.numSamples
            sampled.maxTokens = c.maxNewTokens
            sampled.sampling.temperature = Float(c.temperature)
            sampled.sampling.topP = Float(c.topP)
            sampled.seed = c.seed
            let groups = try decode(sampled, perBatch: max(1, c.batchSize / c.numSamples))
            var pass1 = 0.0, maj = 0.0, scoredPrompts = 0
            var passAt = [Double](repeating: 0, count: c.effectivePassK.count)
            for (group, prompt) in zip(groups, prompts) {
                guard let ref = prompt.reference, let gold = Answers.goldAnswer(in: ref) else { continue }
                scoredPrompts += 1
                let answers = group.map { Answers.finalAnswer(in: $0.text) }
                let right = answers.filter { $0?.equivalent(to: gold) ?? false }.count
                pass1 += Double(right) / Double(group.count)
                for (j, k) in c.effectivePassK.enumerated() { passAt[j] += passAtK(n: group.count, c: right, k: k) }
                if let vote = majority(answers.compactMap { $0 }), vote.equivalent(to: gold) { maj += 1 }
            }
            let n = Double(max(1, scoredPrompts))
            metrics.append(("pass@1", .double(pass1 / n)))
            metrics.append(("maj@\(c.numSamples)", .double(maj / n)))
            for (j, k) in c.effectivePassK.enumerated() { metrics.append(("pass@\(k)", .double(passAt[j] / n))) }
        }
        return Result(count: prompts.count, correct: correct, texts: texts, metrics: dedupe(metrics))
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
                                factory: EnvironmentFactory, maxNewTokens: Int, maxPromptLength: Int, batch: Int = 32,
                                shouldStop: () -> Bool = { false }, progress: (Int, Int) -> Void = { _, _ in }) throws -> [(String, JSONValue)] {
        guard !prompts.isEmpty else { throw PonderError.invalid("evaluation: no prompts") }
        let budget = max(1, min(maxPromptLength, model.config.maxPositions - maxNewTokens))
        let rewards = RewardSet(config: RewardConfig())
        var texts: [String] = [], scored: [ScoredCompletion] = []
        var turns = 0, errors = 0, envReward = 0.0, envScored = 0
        var req = GenerateRequest()
        req.sampling.temperature = 0
        req.maxTokens = maxNewTokens
        for start in stride(from: 0, to: prompts.count, by: batch) {
            if shouldStop() { throw PonderError(.cancelled, "evaluation cancelled after \(start) of \(prompts.count) prompts") }
            let chunk = Array(prompts[start..<min(prompts.count, start + batch)])
            let eps = Episodes(config: e, tokenizer: model.tokenizer, maxTokens: maxNewTokens, count: chunk.count)
            // Seeded by the problem's index: the same episodes whatever the batch size.
            let firsts = eps.reset(factory: factory, tasks: chunk.map(\.task), seeds: chunk.indices.map { UInt64(start + $0) }, groupSize: 1)
            let ids = try chunk.enumerated().map { k, p in
                try GRPOTrainer.tokens(of: firsts[k].map { p.asking($0) } ?? p, model: model, maxLength: budget)
            }
            let gen = try model.generate(prompts: ids, req, steering: eps.steering)
            eps.finish(gen.completions)
            for (k, p) in chunk.enumerated() {
                let ep = eps.episodes[k]
                texts.append(ep.finalTurn)
                scored.append(rewards.score(RewardInput(completion: ep.finalTurn, reference: p.reference, prompt: p.text)))
                turns += ep.turns
                if ep.error != nil { errors += 1 }
                if let r = ep.reward { envReward += r; envScored += 1 }
            }
            progress(start + chunk.count, prompts.count)
        }
        let n = Double(texts.count)
        return [("count", .int(Int64(texts.count)))] + rates(texts: texts, scored: scored) + [
            ("turns_mean", .double(Double(turns) / n)), ("environment_errors", .int(Int64(errors))),
            ("environment_reward", envScored > 0 ? .double(envReward / Double(envScored)) : .null),
        ]
    }

    /// The exact text a prompt is decoded from (chat template applied), for the record.
    public static func renderedPrompt(_ p: GRPOPrompt, model: LlamaModel) -> String {
        model.tokenizer.chatTemplate.render(p.messages) ?? p.messages.map(\.content).joined(separator: "\n")
    }
}
