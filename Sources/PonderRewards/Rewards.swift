import PonderJSON
#if canImport(Glibc)
import Glibc
#endif

/// What a reward sees of one completion.
public struct RewardInput: Sendable {
    public var completion: String
    public var reference: String?
    public var prompt: String?
    /// Token count of the completion, when the caller has it (the length reward's unit).
    public var completionTokens: Int?

    public init(completion: String, reference: String? = nil, prompt: String? = nil, completionTokens: Int? = nil) {
        self.completion = completion
        self.reference = reference
        self.prompt = prompt
        self.completionTokens = completionTokens
    }
}

/// A reward's verdict: a score, or nil ("no score": left out of the total and of its group),
/// and a short machine-readable reason ("correct", "no_answer", "tags_3_of_4", ...).
public struct RewardScore: Sendable, Equatable {
    public var value: Double?
    public var reason: String

    public init(_ value: Double?, _ reason: String) {
        self.value = value
        self.reason = reason
    }
}

/// Every reward of one completion and their weighted total.
public struct ScoredCompletion: Sendable {
    public var scores: [(name: String, score: RewardScore)]
    /// Σ weight × score over the rewards that have a score; nil only when none has (TRL's nansum).
    public var total: Double?

    public subscript(_ name: String) -> RewardScore? { scores.first { $0.name == name }?.score }

    /// {"rewards": {name: x|null}, "total": t|null, "reasons": {name: reason}}
    public var json: JSONValue {
        .object([
            ("rewards", .object(scores.map { ($0.name, $0.score.value.map(JSONValue.double) ?? .null) })),
            ("total", total.map(JSONValue.double) ?? .null),
            ("reasons", .object(scores.map { ($0.name, .string($0.score.reason)) })),
        ])
    }
}

/// A custom reward: NaN (or nil) means no score.
public typealias CustomReward = @Sendable (RewardInput) -> Double?

/// The rewards of a config, applied to completions. Pure functions of the text: no model, safe to
/// call from several threads.
public struct RewardSet: Sendable {
    public let config: RewardConfig
    let custom: [String: CustomReward]

    public init(config: RewardConfig, custom: [String: CustomReward] = [:]) {
        self.config = config
        self.custom = custom
    }

    public func score(_ input: RewardInput) -> ScoredCompletion {
        let ctx = Context(input)
        var scores: [(String, RewardScore)] = []
        var total: Double? = nil
        for (k, name) in config.rewards.enumerated() {
            let s = score(name, ctx)
            scores.append((name, s))
            if let v = s.value {
                let w = k < config.rewardWeights.count ? config.rewardWeights[k] : 1
                total = (total ?? 0) + w * v
            }
        }
        return ScoredCompletion(scores: scores.map { (name: $0.0, score: $0.1) }, total: total)
    }

    func score(_ name: String, _ ctx: Context) -> RewardScore {
        switch name {
        case "accuracy": return ctx.accuracy
        case "format": return format(ctx)
        case "reflection": return reflection(ctx)
        case "length": return length(ctx)
        case "repetition": return repetition(ctx)
        default:
            guard let f = custom[name] else { return RewardScore(nil, "unknown_reward") }
            guard let v = f(ctx.input), v.isFinite else { return RewardScore(nil, "custom_no_score") }
            return RewardScore(v, "custom")
        }
    }

    /// Shared by the rewards of one completion, computed once.
    final class Context {
        let input: RewardInput
        let text: Scalars
        init(_ input: RewardInput) {
            self.input = input
            text = scalars(input.completion)
        }

        lazy var finalAnswer: ParsedAnswer? = Answers.finalAnswer(in: input.completion)

        lazy var accuracy: RewardScore = {
            guard let ref = input.reference else { return RewardScore(nil, "no_reference") }
            let v = Answers.verdict(completion: input.completion, reference: ref, answer: finalAnswer)
            return RewardScore(v.value, v.reason)
        }()

        lazy var strict: (score: Double, placed: [Bool]) = strictFormat(text)
    }

    func format(_ ctx: Context) -> RewardScore {
        switch config.formatMode {
        case .paper:
            return paperFormat(ctx.text) ? RewardScore(1, "ok") : RewardScore(0, "no_match")
        case .strict:
            let (s, placed) = ctx.strict
            let n = placed.filter { $0 }.count
            return RewardScore(s, n == 4 ? "ok" : "tags_\(n)_of_4")
        }
    }

    func reflection(_ ctx: Context) -> RewardScore {
        switch config.reflectionMode {
        case .paper:
            let counts = reflectionMatchCounts(ctx.input.completion)
            return RewardScore(paperReflectionValue(counts: counts), countsReason(counts))
        case .guarded:
            guard ctx.strict.score == 1, let think = thinkContent(ctx.text) else { return RewardScore(0, "format_invalid") }
            if config.reflectionRequiresCorrect {
                guard let correct = ctx.accuracy.value else { return RewardScore(nil, "correctness_unknown") }
                guard correct == 1 else { return RewardScore(0, "answer_wrong") }
            }
            let lower = lowercased(string(think))
            let g = guardedReflection(lower, ngram: config.reflectionNgramSize, finalAnswer: ctx.finalAnswer,
                                      answerCorrect: ctx.accuracy.value == 1, question: ctx.input.prompt)
            if g.repeatedReflection { return RewardScore(0, "repeated_reflection") }
            var v = paperReflectionValue(counts: g.counts)
            if g.corrected && v > 0 { v = min(1, v + config.reflectionCorrectionBonus) }
            v *= max(0, 1 - config.reflectionRepetitionWeight * g.repetition)
            return RewardScore(roundHalfEven2(v), guardedReason(g))
        }
    }

    /// "verification=1 (84 / 7 = 12) backtracking=0 ... ignored=5 (identity 2, unrelated 3)":
    /// what counted and why the rest did not, so a user can see why a completion was paid.
    func guardedReason(_ g: GuardedReflection) -> String {
        var parts: [String] = []
        for d in ReflectionDimension.allCases {
            let shown = g.counted[d.rawValue].prefix(3).joined(separator: "; ") + (g.counted[d.rawValue].count > 3 ? "; …" : "")
            parts.append("\(d.name)=\(g.counts[d.rawValue])" + (shown.isEmpty ? "" : " (\(shown))"))
        }
        let n = g.ignored.values.reduce(0, +)
        if n > 0 {
            let each = IgnoredCheck.allCases.compactMap { c in g.ignored[c].map { "\(c.rawValue) \($0)" } }
            parts.append("ignored=\(n) (\(each.joined(separator: ", ")))")
        }
        if g.corrected { parts.append("corrected") }
        if g.repetition > 0 { parts.append("repetition=\(roundHalfEven2(g.repetition))") }
        return parts.joined(separator: " ")
    }

    func countsReason(_ counts: [Int]) -> String {
        ReflectionDimension.allCases.map { "\($0.name)=\(counts[$0.rawValue])" }.joined(separator: " ")
    }

    /// DAPO's soft overlong punishment: 0 up to max − cache, then a linear ramp to −1 at max,
    /// −1 beyond.
    func length(_ ctx: Context) -> RewardScore {
        let n = ctx.input.completionTokens ?? ctx.text.count
        let unit = ctx.input.completionTokens == nil ? "chars" : "tokens"
        let lmax = config.maxCompletionLength, cache = config.softPunishCache
        if n <= lmax - cache { return RewardScore(0, "\(unit)=\(n)") }
        if n <= lmax { return RewardScore(Double(lmax - cache - n) / Double(cache), "\(unit)=\(n) soft") }
        return RewardScore(-1, "\(unit)=\(n) over")
    }

    /// open-r1's repetition penalty: (1 − distinct/total word n-grams) × max_penalty, on the
    /// lower-cased completion split at whitespace; 0 for fewer words than n.
    func repetition(_ ctx: Context) -> RewardScore {
        let ws = words(lowercased(ctx.input.completion)[...])
        let n = config.repetitionNgramSize
        guard ws.count >= n else { return RewardScore(0, "short") }
        let f = repeatedNgramFraction(ws, n: n)
        return RewardScore(f == 0 ? 0 : f * config.repetitionMaxPenalty, "repeated=\(roundHalfEven2(f))")
    }
}

// MARK: - Scoring requests (ponder_score, `ponder score`)

/// A scoring request: the reward options plus "items": [{"completion", "reference"?, "prompt"?,
/// "completion_tokens"?}].
public struct ScoreRequest {
    public var config: RewardConfig
    public var items: [RewardInput]

    public init(json: JSONValue) throws {
        let r = JSONReader(json, what: "")
        config = RewardConfig(reading: r)
        items = []
        if let arr = r.array("items") {
            for (i, v) in arr.enumerated() {
                let e = r.element("items", i, v)
                if let item = RewardInput.read(e) { items.append(item) }
                e.rejectUnknownKeys()
            }
        } else {
            r.fail("items", "required: an array of {\"completion\", \"reference\"?, \"prompt\"?}")
        }
        try r.finish()
    }
}

extension RewardInput {
    /// {"completion", "reference"?, "prompt"?, "completion_tokens"?}; problems go to the reader.
    public static func read(_ r: JSONReader) -> RewardInput? {
        let c = r.string("completion")
        if c == nil && !r.hasErrors { r.failHere("\"completion\" (a string) is required") }
        let item = RewardInput(completion: c ?? "", reference: r.string("reference"), prompt: r.string("prompt"),
                               completionTokens: r.int("completion_tokens", in: 0...1 << 40))
        return c == nil ? nil : item
    }
}
