import PonderBase
import PonderJSON
import PonderModel
import PonderRewards

/// The minimal evaluator: a model's greedy answers to held-out prompts, scored as the paper
/// reports them — accuracy, format rate, reflection (the paper's reward, on the completions) and
/// completion length. The four-stage pipeline builds its comparison table from these.
public enum Evaluation {
    public struct Result: Sendable {
        public var count: Int
        /// Per prompt: the greedy answer was correct (nil: the reference has no parseable answer).
        public var correct: [Bool?]
        public var texts: [String]
        public var metrics: [(String, JSONValue)]

        /// Accuracy over the prompts that have a reference (its standard error is in `metrics`).
        public var accuracy: Double { Double(correct.compactMap { $0 }.filter { $0 }.count) / Double(max(1, correct.compactMap { $0 }.count)) }
    }

    /// Greedy completions of `prompts`, decoded `batch` prompts at a time in one grouped decode.
    public static func run(model: LlamaModel, prompts: [GRPOPrompt], maxTokens: Int, maxPromptLength: Int = 512,
                           batch: Int = 32) throws -> Result {
        let budget = max(1, min(maxPromptLength, model.config.maxPositions - maxTokens))
        let ids = try prompts.map { try GRPOTrainer.tokens(of: $0, model: model, maxLength: budget) }
        var req = GenerateRequest()
        req.n = 1
        req.maxTokens = maxTokens
        req.sampling.temperature = 0
        req.seed = 0
        var texts: [String] = [], lengths: [Int] = []
        var start = 0
        while start < prompts.count {
            let end = min(prompts.count, start + batch)
            let gen = try model.generate(prompts: Array(ids[start..<end]), req)
            texts += gen.completions.map(\.text)
            lengths += gen.completions.map(\.tokenIDs.count)
            start = end
        }
        let rewards = RewardSet(config: RewardConfig())
        let scored = zip(texts, prompts).map { rewards.score(RewardInput(completion: $0, reference: $1.reference)) }
        let correct = scored.map { $0["accuracy"]?.value.map { $0 == 1 } }
        var metrics: [(String, JSONValue)] = [("count", .int(Int64(prompts.count)))]
        metrics += rates(texts: texts, scored: scored)
        let acc = correct.compactMap { $0 }
        let p = Double(acc.filter { $0 }.count) / Double(max(1, acc.count))
        metrics.append(("accuracy_stderr", .double((p * (1 - p) / Double(max(1, acc.count))).squareRoot())))
        metrics.append(("mean_length", .double(Double(lengths.reduce(0, +)) / Double(max(1, lengths.count)))))
        return Result(count: prompts.count, correct: correct, texts: texts, metrics: metrics)
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
}
