import PonderBase
import PonderJSON
import PonderRewards
import PonderModel

/// How an answer is chosen (the request's "strategy").
public enum InferStrategy: String, CaseIterable, Sendable {
    /// One sample (greedy with temperature 0), its answer extracted as the accuracy reward does.
    case single
    /// Self-consistency: n samples in one grouped decode, the majority of their answers.
    case vote
    /// n samples ranked by reference-free scorers; the best one's answer.
    case bestOfN = "best_of_n"
    /// Budget forcing (s1): the end of thinking is rolled back and a cue appended; with n > 1
    /// the n forced samples then vote.
    case reflect
}

/// Budget forcing's options (strategy "reflect"), every default here.
public struct ReflectOptions: Sendable, Equatable {
    /// "cues": appended in turn (reflection i uses cues[i % count]) where thinking ended.
    public var cues = ["Wait,"]
    /// "max_reflections": cues inserted when the model ends its thinking on its own.
    public var maxReflections = 1
    /// "min_thinking_tokens": an earlier end of thinking gets a cue even past max_reflections.
    public var minThinkingTokens = 0
    /// "max_thinking_tokens": thinking that reaches it is ended by forcing the answer (null: only
    /// max_tokens bounds it); no cue is inserted that would reach it.
    public var maxThinkingTokens: Int?
    /// "think_end": the end-of-thinking delimiter of think-format models. The end of turn (an end
    /// token) ends thinking too, for models without one (SmolLM2-Instruct).
    public var thinkEnd = "</think>"
    /// "force_answer": forced where thinking ends for the last time at a delimiter or runs out of
    /// budget (at an end of turn the turn's text is the answer and nothing is forced).
    public var forceAnswer = "</think><answer>"

    public init() {}

    static let keys = ["cues", "max_reflections", "min_thinking_tokens", "max_thinking_tokens", "think_end", "force_answer"]
}

/// One inference request: the generation keys (GenerateRequest reads them) plus the strategy and
/// its options. The one reader of these keys for the C ABI, Python and the CLI.
public struct InferRequest {
    public var generation: GenerateRequest
    public var strategy = InferStrategy.single
    /// "scorer_weights": the weight of each scorer in a candidate's total (best_of_n ranks by it).
    public var scorerWeights = InferRequest.defaultScorerWeights
    public var reflect = ReflectOptions()

    /// Samples vote and best_of_n draw when "n" is not given.
    public static let defaultSamples = 8
    /// The reference-free scorers, in report order, with their default weights. Agreement (the
    /// share of the other samples with an equivalent answer) weighs most: it is self-consistency,
    /// the strongest signal without a reference. Format (strict, partial credit) next: a sample
    /// that leaves the trained format is usually broken. Reflection (guarded, no correctness
    /// gate) is small, as it is the easiest to game. Mean logprob (per sampled token, ≤ 0)
    /// separates the rest.
    public static let defaultScorerWeights: [(name: String, weight: Double)] =
        [("format", 1), ("reflection", 0.5), ("agreement", 2), ("mean_logprob", 1)]
    public static var builtInScorers: [String] { defaultScorerWeights.map(\.name) }

    public init(generation: GenerateRequest, strategy: InferStrategy = .single) {
        self.generation = generation
        self.strategy = strategy
    }

    /// Custom scorers are not named here: they come with their weights from the caller (C
    /// structs, Python callables), as a model handle is shared and holds no registrations.
    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        let nGiven = r.value("n") != nil
        generation = try GenerateRequest(reading: r)
        if let s = r.string("strategy") {
            if let v = InferStrategy(rawValue: s) {
                strategy = v
            } else {
                r.fail("strategy", "expected one of \(InferStrategy.allCases.map(\.rawValue).joined(separator: ", ")), got \"\(s)\"")
            }
        }
        switch strategy {
        case .vote, .bestOfN:
            if !nGiven { generation.n = InferRequest.defaultSamples }
        case .single:
            if generation.n != 1 { r.fail("n", "strategy \"single\" draws one sample (vote or best_of_n draw n), got \(generation.n)") }
        case .reflect:
            break
        }
        if let w = r.object("scorer_weights") {
            for k in scorerWeights.indices {
                if let d = w.double(scorerWeights[k].name, "a finite number in [-1e6, 1e6]", valid: { abs($0) <= maxRewardWeight }) {
                    scorerWeights[k].weight = d
                }
            }
            w.rejectUnknownKeys()
        }
        readReflect(r)
        try r.finish()
    }

    private mutating func readReflect(_ r: JSONReader) {
        if strategy != .reflect {
            for key in ReflectOptions.keys where r.value(key) != nil {
                r.fail(key, "only strategy \"reflect\" takes it (strategy is \"\(strategy.rawValue)\")")
            }
            return
        }
        var o = ReflectOptions()
        if let cues = r.strings("cues") {
            if cues.isEmpty { r.fail("cues", "empty list (give at least one cue, e.g. \"Wait,\")") }
            for (i, c) in cues.enumerated() where c.isEmpty { r.fail("cues[\(i)]", "empty cue") }
            o.cues = cues
        }
        if let k = r.int("max_reflections", in: 0...10_000) { o.maxReflections = k }
        if let k = r.int("min_thinking_tokens", in: 0...1_048_576) { o.minThinkingTokens = k }
        if let k = r.int("max_thinking_tokens", in: 1...1_048_576) { o.maxThinkingTokens = k }
        if let mx = o.maxThinkingTokens, o.minThinkingTokens > mx {
            r.fail("min_thinking_tokens", "must not exceed max_thinking_tokens (\(mx)), got \(o.minThinkingTokens)")
        }
        if let s = r.string("think_end") {
            if s.isEmpty { r.fail("think_end", "empty delimiter") }
            o.thinkEnd = s
        }
        if let s = r.string("force_answer") {
            if s.isEmpty { r.fail("force_answer", "empty (it must encode to at least one token)") }
            o.forceAnswer = s
        }
        reflect = o
    }
}
