import PonderBase
import PonderJSON

/// Every reward option, with its JSON name and default, in one place. Names follow TRL where the
/// meaning is the same (`reward_weights`, `max_completion_length`, `soft_punish_cache`).
public struct RewardConfig: Sendable, Equatable {
    public enum FormatMode: String, Sendable { case strict, paper }
    public enum ReflectionMode: String, Sendable { case guarded, paper }

    public static let builtIn = ["accuracy", "format", "reflection", "length", "repetition"]

    /// "rewards": names, in order (built-in ones or custom ones the caller registers).
    public var rewards = ["accuracy", "format", "reflection"]
    /// "reward_weights": one per reward (default 1 each, the paper's 1/1/1).
    public var rewardWeights: [Double] = [1, 1, 1]
    /// "format_mode": "strict" (partial credit) or "paper" (the paper's regex, 0 or 1).
    public var formatMode = FormatMode.strict
    /// "reflection_mode": "guarded" or "paper" (the paper's published reward, exactly).
    public var reflectionMode = ReflectionMode.guarded
    /// "reflection_requires_correct" (guarded): pay reflection only for a correct answer.
    public var reflectionRequiresCorrect = true
    /// "reflection_correction_bonus" (guarded): added when a backtracking sentence replaced an
    /// earlier result by the final, correct answer.
    public var reflectionCorrectionBonus = 0.2
    /// "reflection_ngram_size" (guarded): word n-grams whose repetition scales the reward down.
    public var reflectionNgramSize = 4
    /// "reflection_repetition_weight" (guarded): reward × max(0, 1 − weight × repeated share).
    public var reflectionRepetitionWeight = 2.0
    /// "max_completion_length", "soft_punish_cache" (length): DAPO's soft overlong punishment,
    /// in tokens when items carry "completion_tokens", else in characters.
    public var maxCompletionLength = 1024
    public var softPunishCache = 256
    /// "repetition_ngram_size", "repetition_max_penalty" (repetition): open-r1's n-gram penalty.
    public var repetitionNgramSize = 3
    public var repetitionMaxPenalty = -1.0

    public init() {}

    /// Every key `init(reading:)` reads, with its value (a pipeline's config.resolved.json).
    public var json: [(String, JSONValue)] {
        [("rewards", .array(rewards.map { .string($0) })), ("reward_weights", .array(rewardWeights.map { .double($0) })),
         ("format_mode", .string(formatMode.rawValue)), ("reflection_mode", .string(reflectionMode.rawValue)),
         ("reflection_requires_correct", .bool(reflectionRequiresCorrect)),
         ("reflection_correction_bonus", .double(reflectionCorrectionBonus)), ("reflection_ngram_size", .int(Int64(reflectionNgramSize))),
         ("reflection_repetition_weight", .double(reflectionRepetitionWeight)),
         ("max_completion_length", .int(Int64(maxCompletionLength))), ("soft_punish_cache", .int(Int64(softPunishCache))),
         ("repetition_ngram_size", .int(Int64(repetitionNgramSize))), ("repetition_max_penalty", .double(repetitionMaxPenalty))]
    }

    /// Reads a complete options object; unknown keys are errors.
    public init(json: JSONValue, customRewards: [String] = []) throws {
        let r = JSONReader(json)
        self.init(reading: r, customRewards: customRewards)
        try r.finish()
    }

    /// A trainer's "reward" object: its "custom" names (rewards whose functions the caller
    /// registers) and the options, which may name them. The caller rejects unknown keys.
    public static func read(trainer w: JSONReader) -> (config: RewardConfig, custom: [String]) {
        let custom = w.strings("custom") ?? []
        return (RewardConfig(reading: w, customRewards: custom), custom)
    }

    /// Reads the reward keys of a larger object (a scoring request, a trainer config); problems
    /// go to the reader, and the caller reads its own keys and calls finish().
    public init(reading r: JSONReader, customRewards: [String] = []) {
        if let names = r.strings("rewards") {
            for (i, n) in names.enumerated() where !RewardConfig.builtIn.contains(n) && !customRewards.contains(n) {
                r.fail("rewards[\(i)]", "unknown reward \"\(n)\" (known: \((RewardConfig.builtIn + customRewards).joined(separator: ", ")))")
            }
            if Set(names).count != names.count { r.fail("rewards", "a reward is named twice") }
            rewards = names
        }
        rewardWeights = Array(repeating: 1, count: rewards.count)
        if let ws = r.array("reward_weights") {
            var out: [Double] = []
            for (i, w) in ws.enumerated() {
                guard let d = w.asDouble, abs(d) <= maxRewardWeight else {
                    r.fail("reward_weights[\(i)]", "expected a finite number in [-1e6, 1e6], got \(w.serialized())")
                    continue
                }
                out.append(d)
            }
            if ws.count != rewards.count {
                r.fail("reward_weights", "expected \(rewards.count) weights (one per reward), got \(ws.count)")
            } else if out.count == ws.count {
                rewardWeights = out
            }
        }
        if let m = r.string("format_mode") {
            if let v = FormatMode(rawValue: m) { formatMode = v } else { r.fail("format_mode", "expected \"strict\" or \"paper\", got \"\(m)\"") }
        }
        if let m = r.string("reflection_mode") {
            if let v = ReflectionMode(rawValue: m) { reflectionMode = v } else { r.fail("reflection_mode", "expected \"guarded\" or \"paper\", got \"\(m)\"") }
        }
        if let b = r.bool("reflection_requires_correct") { reflectionRequiresCorrect = b }
        if let d = r.double("reflection_correction_bonus", "a number in [0, 1]", valid: { $0 >= 0 && $0 <= 1 }) { reflectionCorrectionBonus = d }
        if let n = r.int("reflection_ngram_size", in: 1...64) { reflectionNgramSize = n }
        if let d = r.double("reflection_repetition_weight", "a number >= 0", valid: { $0 >= 0 }) { reflectionRepetitionWeight = d }
        if let n = r.int("max_completion_length", in: 1...1 << 30) { maxCompletionLength = n }
        if let n = r.int("soft_punish_cache", in: 0...1 << 30) { softPunishCache = n }
        if softPunishCache > maxCompletionLength {
            r.fail("soft_punish_cache", "must not exceed max_completion_length (\(maxCompletionLength)), got \(softPunishCache)")
        }
        if let n = r.int("repetition_ngram_size", in: 1...64) { repetitionNgramSize = n }
        if let d = r.double("repetition_max_penalty", "a number <= 0", valid: { $0 <= 0 }) { repetitionMaxPenalty = d }
    }
}

/// The largest weight a reward, scorer or environment may have: any weight × a score in
/// [-1, 1] summed over a few rewards stays finite and meaningful (1.7e308 made every total
/// overflow to infinity and so "no score").
public let maxRewardWeight = 1e6
