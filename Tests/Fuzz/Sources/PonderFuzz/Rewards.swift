import PonderBase
import PonderC
import PonderJSON
import PonderRewards

// Reward inputs: completions are model output, so any text must score, never fail or trap, and
// every score must lie where ponder.h says it does.

/// Scoring requests through ponder_score: options and items as a caller sends them.
let scoreTarget = FuzzTarget(name: "score") { data in
    var text = Array(data)
    text.append(0)
    let sentinel = UnsafeMutablePointer<CChar>(bitPattern: 0x5EED)
    var out: UnsafeMutablePointer<CChar>? = sentinel
    let status = text.withUnsafeBufferPointer { b in
        b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { ponder_score($0, &out) }
    }
    guard succeeded(status, "ponder_score") else {
        if out != sentinel { bug("ponder_score failed but wrote its output") }
        return
    }
    guard let out, out != sentinel else { bug("ponder_score returned OK without a result") }
    let result = String(cString: out)
    ponder_string_free(out)
    guard let results = (try? JSONValue.parse(result))?["results"]?.asArray else { bug("ponder_score: no results in \(result.prefix(200))") }
    let request = try? JSONValue.parse(data)
    if let items = request?["items"]?.asArray, items.count != results.count {
        bug("ponder_score: \(items.count) items, \(results.count) results")
    }
}

/// Raw completion text (a reference after the first NUL byte, the prompt after the second: the
/// guarded reflection reads the question's numbers from it) under all four mode combinations and
/// every built-in reward.
let rewardTextTarget = FuzzTarget(name: "reward_text") { data in
    let parts = data.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
    let completion = String(decoding: parts[0], as: UTF8.self)
    let reference = parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : nil
    let prompt = parts.count > 2 ? String(decoding: parts[2], as: UTF8.self) : nil
    for format in [RewardConfig.FormatMode.strict, .paper] {
        for reflection in [RewardConfig.ReflectionMode.guarded, .paper] {
            var c = RewardConfig()
            c.rewards = RewardConfig.builtIn
            c.rewardWeights = [1, 0.5, 2, 1, 1]
            c.formatMode = format
            c.reflectionMode = reflection
            c.maxCompletionLength = 64
            c.softPunishCache = 16
            let s = RewardSet(config: c).score(RewardInput(completion: completion, reference: reference, prompt: prompt))
            checkScores(s, c)
        }
    }
}

/// The ranges ponder.h documents for each reward, and the total as their weighted sum.
func checkScores(_ s: ScoredCompletion, _ c: RewardConfig) {
    var total: Double? = nil
    for (k, (name, score)) in s.scores.enumerated() {
        guard let v = score.value else { continue }
        let ok: Bool
        switch name {
        case "accuracy": ok = v == 0 || v == 1
        case "format": ok = c.formatMode == .paper ? (v == 0 || v == 1) : (v >= 0 && v <= 1 && (v * 4).rounded() == v * 4)
        case "reflection": ok = v >= 0 && v <= 1 + c.reflectionCorrectionBonus
        case "length": ok = v >= -1 && v <= 0
        case "repetition": ok = v >= c.repetitionMaxPenalty && v <= 0
        default: ok = v.isFinite
        }
        guard ok && v.isFinite else { bug("reward \(name) = \(v) (\(score.reason)) outside its documented range") }
        total = (total ?? 0) + c.rewardWeights[k] * v
    }
    guard total == s.total || abs((total ?? 0) - (s.total ?? 0)) < 1e-9 else {
        bug("total \(String(describing: s.total)) is not the weighted sum \(String(describing: total))")
    }
}
