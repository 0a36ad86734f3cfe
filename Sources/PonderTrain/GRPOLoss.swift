import PonderBase
#if canImport(Glibc)
import Glibc
#endif

// GRPO's objective as TRL's GRPOTrainer computes it (trl/trainer/grpo_trainer.py, 1.16:
// `_generate_and_score_completions` for the advantages, `_compute_loss` for the loss), written
// as plain functions over log-probabilities so the trainer, the tests and TRL's own code (the
// oracle in scripts/trl_grpo_oracle.py) can be compared number for number. The model never
// appears here: the loss hands back dL/d log p for every completion token, which is what the
// training backward consumes. Arithmetic is in Double; the per-token coefficients are Float.

public enum GRPOLossType: String, Sendable, CaseIterable {
    /// Mean over each sequence's tokens, then over sequences (the paper's, and DeepSeekMath's).
    case grpo
    /// Mean over the micro-batch's tokens.
    case bnpo
    /// Sum over tokens divided by the whole step's token count (DAPO).
    case dapo
    /// Sum over tokens divided by sequences × max_completion_length (Dr. GRPO).
    case drGRPO = "dr_grpo"
    /// REINFORCE on log p weighted by the detached ratio capped at epsilon_high (MiniMax-M1).
    case cispo
}

public enum ImportanceSamplingLevel: String, Sendable, CaseIterable {
    case token
    /// One ratio per sequence from its mean log-ratio (GSPO).
    case sequence
}

public enum RewardScaling: String, Sendable, CaseIterable {
    case group, batch, none
}

public enum RewardAggregation: String, Sendable, CaseIterable {
    /// Weighted sum of the rewards, then normalised in the group (the paper, TRL's default).
    case sumThenNormalize = "sum_then_normalize"
    /// Each reward normalised in its group first, then the weighted sum normalised (GDPO).
    case normalizeThenSum = "normalize_then_sum"
}

// MARK: - Advantages

public struct GroupAdvantages: Sendable {
    /// Per completion; 0 for a completion no reward could score.
    public var advantages: [Double]
    /// The weighted total per completion (NaN when every reward gave no score).
    public var totals: [Double]
    /// Whether the completion's group (or the batch, where that is the scale) had zero spread.
    public var isStdZero: [Bool]
    /// TRL's logged names: reward, reward_std, frac_reward_zero_std, rewards/<name>/mean|std.
    public var metrics: [(String, Double)]
}

/// NaN-aware statistics as TRL's torch.nanmean and trl.trainer.utils.nanstd (Bessel-corrected:
/// n − 1, NaN below two values).
enum NaNStats {
    static func mean(_ x: [Double]) -> Double {
        var s = 0.0, n = 0
        for v in x where !v.isNaN { s += v; n += 1 }
        return n == 0 ? .nan : s / Double(n)
    }

    static func std(_ x: [Double]) -> Double {
        let m = mean(x)
        var s = 0.0, n = 0
        for v in x where !v.isNaN { s += (v - m) * (v - m); n += 1 }
        return n > 1 ? (s / Double(n) * Double(n) / Double(n - 1)).squareRoot() : .nan
    }

    /// torch.nansum over one row: 0 when all are NaN.
    static func sum(_ x: [Double]) -> Double { x.reduce(0) { $1.isNaN ? $0 : $0 + $1 } }

    /// torch.isclose(x, 0) with its default tolerances.
    static func isZero(_ x: Double) -> Bool { abs(x) <= 1e-8 }
}

/// Advantages of `rewards[completion][reward]` (NaN: that reward gave no score) for groups of
/// `groupSize` consecutive completions of the same prompt.
public func groupAdvantages(rewards: [[Double]], weights: [Double], names: [String], groupSize g: Int,
                            scale: RewardScaling, aggregation: RewardAggregation) throws -> GroupAdvantages {
    let n = rewards.count, k = weights.count
    guard g > 0, n % g == 0 else { throw PonderError.invalid("advantages: \(n) completions do not form groups of \(g)") }
    guard rewards.allSatisfy({ $0.count == k }), names.count == k else {
        throw PonderError.invalid("advantages: every completion needs \(k) rewards")
    }
    let unscorable = rewards.map { $0.allSatisfy(\.isNaN) }
    var totals = [Double](repeating: .nan, count: n)
    var adv = [Double](repeating: 0, count: n)
    var stds = [Double](repeating: 0, count: n)
    switch aggregation {
    case .sumThenNormalize:
        for i in 0..<n where !unscorable[i] { totals[i] = NaNStats.sum(zip(rewards[i], weights).map { $0 * $1 }) }
        let batchStd = n > 1 ? NaNStats.std(totals) : 0
        for start in stride(from: 0, to: n, by: g) {
            let group = Array(totals[start..<(start + g)])
            let mean = NaNStats.mean(group)
            let std: Double = scale == .batch ? batchStd : (g > 1 ? NaNStats.std(group) : 0)
            for i in start..<(start + g) {
                stds[i] = std
                var a = totals[i] - mean
                if scale != .none { a /= std + 1e-4 }
                adv[i] = a
            }
        }
    case .normalizeThenSum:
        var normalized = [[Double]](repeating: [Double](repeating: .nan, count: k), count: n)
        for start in stride(from: 0, to: n, by: g) {
            for j in 0..<k {
                let col = (start..<(start + g)).map { rewards[$0][j] }
                let mean = NaNStats.mean(col)
                let std = g > 1 ? NaNStats.std(col) : 0
                for i in start..<(start + g) { normalized[i][j] = (rewards[i][j] - mean) / (std + 1e-4) }
            }
        }
        for i in 0..<n where !unscorable[i] { totals[i] = NaNStats.sum(zip(normalized[i], weights).map { $0 * $1 }) }
        let std = n > 1 ? NaNStats.std(totals) : 0
        let mean = NaNStats.mean(totals)
        for i in 0..<n {
            stds[i] = std
            adv[i] = (totals[i] - mean) / (std + 1e-4)
        }
    }
    for i in 0..<n where adv[i].isNaN { adv[i] = 0 }

    // Logged as TRL logs them: the plain weighted sum, whatever the aggregation.
    var metrics: [(String, Double)] = []
    for (j, name) in names.enumerated() {
        let col = rewards.map { $0[j] }
        metrics.append(("rewards/\(name)/mean", NaNStats.mean(col)))
        metrics.append(("rewards/\(name)/std", NaNStats.std(col)))
    }
    let logged = (0..<n).map { unscorable[$0] ? Double.nan : NaNStats.sum(zip(rewards[$0], weights).map { $0 * $1 }) }
    let zero = stds.map(NaNStats.isZero)
    metrics.append(("reward", NaNStats.mean(logged)))
    metrics.append(("reward_std", NaNStats.std(logged)))
    metrics.append(("frac_reward_zero_std", Double(zero.filter { $0 }.count) / Double(max(1, n))))
    return GroupAdvantages(advantages: adv, totals: totals, isStdZero: zero, metrics: metrics)
}

// MARK: - Loss

public struct GRPOLossParams: Sendable {
    public var lossType: GRPOLossType = .grpo
    public var importanceSamplingLevel: ImportanceSamplingLevel = .token
    public var beta: Double = 0.04
    public var epsilonLow: Double = 0.2
    public var epsilonHigh: Double = 0.2
    /// Dr. GRPO's constant normaliser.
    public var maxCompletionLength: Int = 256
    /// Multiply the KL estimate by the importance ratio (TRL ≥ 1.x's default; the paper's runs,
    /// on older TRL, did not).
    public var useBiasCorrectionKL = false
    public init() {}
}

/// One completion's tokens as the loss sees them. Arrays have one entry per completion token.
public struct GRPOSequence: Sendable {
    /// log π_θ under the current weights (the training forward on logits / temperature).
    public var logp: [Float]
    /// log π_old from the rollout policy; nil with one update per rollout (then it is the
    /// detached current logp and every ratio is exactly 1).
    public var oldLogp: [Float]?
    /// log π_ref of the frozen reference (needed when beta ≠ 0).
    public var refLogp: [Float]?
    /// Tokens that count (false: padding, or a truncated completion that is masked out).
    public var mask: [Bool]
    public var advantage: Double

    public init(logp: [Float], oldLogp: [Float]? = nil, refLogp: [Float]? = nil, mask: [Bool], advantage: Double) {
        self.logp = logp
        self.oldLogp = oldLogp
        self.refLogp = refLogp
        self.mask = mask
        self.advantage = advantage
    }
}

public struct GRPOMicroBatchResult: Sendable {
    /// This micro-batch's loss, already divided as TRL divides it for accumulation: the step's
    /// loss is the sum over micro-batches.
    public var loss: Double
    /// dLoss/d log π_θ for each token of each sequence of the micro-batch.
    public var dLogp: [[Float]]
    /// kl, clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean, clip_ratio/low_min,
    /// clip_ratio/high_max (or cispo_clip_ratio), as TRL records them for one micro-batch.
    public var metrics: [(String, Double)]
}

/// What the loss counts over a micro-batch for TRL's metrics.
struct GRPOLossStats {
    var klSum = 0.0, low = 0.0, high = 0.0, region = 0.0, cispoClipped = 0.0
    var lowSeq: [Double] = [], highSeq: [Double] = []

    /// As TRL's global_masked_mean: per token, or per sequence when the ratio is per sequence.
    func metrics(_ p: GRPOLossParams, sequences: Int, tokens: Double) -> [(String, Double)] {
        var metrics: [(String, Double)] = []
        if p.beta != 0 { metrics.append(("kl", klSum / max(1, tokens))) }
        let count = p.importanceSamplingLevel == .sequence ? Double(sequences) : max(1, tokens)
        if p.lossType == .cispo {
            metrics.append(("cispo_clip_ratio", cispoClipped / count))
        } else {
            metrics.append(("clip_ratio/low_mean", low / count))
            metrics.append(("clip_ratio/high_mean", high / count))
            metrics.append(("clip_ratio/region_mean", region / count))
            let lows = lowSeq.filter { !$0.isNaN }, highs = highSeq.filter { !$0.isNaN }
            metrics.append(("clip_ratio/low_min", lows.min() ?? .nan))
            metrics.append(("clip_ratio/high_max", highs.max() ?? .nan))
        }
        return metrics
    }
}

/// One sequence as both terms of the loss see it.
struct GRPOLossTerms {
    let s: GRPOSequence
    let p: GRPOLossParams
    /// The weight of each unmasked token.
    let w: Double
    /// log π_θ − log π_old per token (0 without an old policy).
    let lr: [Double]
    /// Unmasked tokens (0 for a fully masked row) and at least 1.
    let tokens: Double
    let len: Double
    let seqLogRatio: Double

    init(_ s: GRPOSequence, _ p: GRPOLossParams, weight w: Double, tokens: Double) {
        (self.s, self.p, self.w, self.tokens) = (s, p, w, tokens)
        let t = s.logp.count
        lr = (0..<t).map { i in s.oldLogp.map { Double(s.logp[i]) - Double($0[i]) } ?? 0 }
        len = max(1, tokens)
        let lr = lr
        seqLogRatio = (0..<t).reduce(0.0) { $0 + (s.mask[$1] ? lr[$1] : 0) } / len
    }

    /// The KL term (k3 estimator), per token; with the bias correction weighted by the
    /// importance ratio (per token, or the sequence's), through which it has a gradient too.
    func kl(_ loss: inout Double, _ g: inout [Double], _ stats: inout GRPOLossStats) {
        guard p.beta != 0, let ref = s.refLogp else { return }
        var weighted = 0.0
        for i in 0..<s.logp.count where s.mask[i] {
            let d = Double(ref[i]) - Double(s.logp[i])
            var kl = exp(d) - d - 1, dkl = 1 - exp(d)
            if p.useBiasCorrectionKL {
                let coef = exp(p.importanceSamplingLevel == .token ? lr[i] : seqLogRatio)
                if p.importanceSamplingLevel == .token { dkl = dkl * coef + kl * coef } else { dkl *= coef }
                weighted += kl * coef
                kl *= coef
            }
            loss += w * p.beta * kl
            g[i] += w * p.beta * dkl
            stats.klSum += kl
        }
        if p.useBiasCorrectionKL && p.importanceSamplingLevel == .sequence {
            for i in 0..<s.logp.count where s.mask[i] { g[i] += w * p.beta * weighted / len }
        }
    }

    /// PPO's clipped objective at ratio `coef`: its loss, d loss / d log ratio, and which side clipped.
    func clipped(_ coef: Double) -> (loss: Double, dLogRatio: Double, low: Bool, high: Bool) {
        let a = s.advantage
        let c2 = min(max(coef, 1 - p.epsilonLow), 1 + p.epsilonHigh)
        let l1 = coef * a, l2 = c2 * a
        let d1 = coef * a, d2 = (coef >= 1 - p.epsilonLow && coef <= 1 + p.epsilonHigh) ? coef * a : 0
        // torch.minimum splits the gradient evenly between equal arguments.
        let d = l1 < l2 ? d1 : l2 < l1 ? d2 : (d1 + d2) / 2
        return (-min(l1, l2), -d, coef < 1 - p.epsilonLow && a < 0, coef > 1 + p.epsilonHigh && a > 0)
    }

    /// The policy term: a ratio per token, or one per sequence (GSPO); CISPO's capped weight.
    func policy(_ loss: inout Double, _ g: inout [Double], _ stats: inout GRPOLossStats) {
        let a = s.advantage, t = s.logp.count
        switch (p.importanceSamplingLevel, p.lossType) {
        case (.token, .cispo):
            for i in 0..<t where s.mask[i] {
                let coef = exp(lr[i]), c = min(coef, p.epsilonHigh)
                loss += w * -c * a * Double(s.logp[i])
                g[i] += w * -c * a
                if coef > p.epsilonHigh && a > 0 { stats.cispoClipped += 1 }
            }
        case (.token, _):
            var lo = 0.0, hi = 0.0
            for i in 0..<t where s.mask[i] {
                let r = clipped(exp(lr[i]))
                loss += w * r.loss
                g[i] += w * r.dLogRatio
                if r.low { lo += 1 }
                if r.high { hi += 1 }
                if r.low || r.high { stats.region += 1 }
            }
            stats.low += lo
            stats.high += hi
            stats.lowSeq.append(lo / tokens)  // NaN for a fully masked row, as TRL's 0/0
            stats.highSeq.append(hi / tokens)
        case (.sequence, _):
            let coef = exp(seqLogRatio)
            let total = w * tokens  // Σ over the sequence's tokens of their weight
            if p.lossType == .cispo {
                let c = min(coef, p.epsilonHigh)
                for i in 0..<t where s.mask[i] {
                    loss += w * -c * a * Double(s.logp[i])
                    g[i] += w * -c * a
                }
                if coef > p.epsilonHigh && a > 0 { stats.cispoClipped += 1 }
            } else {
                let r = clipped(coef)
                loss += total * r.loss
                for i in 0..<t where s.mask[i] { g[i] += total * r.dLogRatio / len }
                stats.lowSeq.append(r.low ? 1 : 0)
                stats.highSeq.append(r.high ? 1 : 0)
                if r.low { stats.low += 1 }
                if r.high { stats.high += 1 }
                if r.low || r.high { stats.region += 1 }
            }
        }
    }
}

/// The loss of one micro-batch of a step that has `microBatches` of them and `stepTokens`
/// unmasked completion tokens in all (DAPO's and CISPO's normaliser).
public func grpoMicroBatchLoss(_ seqs: [GRPOSequence], params p: GRPOLossParams, microBatches: Int,
                               stepTokens: Int) throws -> GRPOMicroBatchResult {
    let m = Double(max(1, microBatches))
    let lens = seqs.map { Double($0.mask.filter { $0 }.count) }
    let batchTokens = lens.reduce(0, +)
    for (i, s) in seqs.enumerated() {
        guard s.mask.count == s.logp.count, s.oldLogp.map({ $0.count == s.logp.count }) ?? true,
              s.refLogp.map({ $0.count == s.logp.count }) ?? (p.beta == 0) else {
            throw PonderError.invalid("grpo loss: sequence \(i): logp, old, ref and mask lengths differ (or ref is missing with beta ≠ 0)")
        }
    }
    // The weight of each unmasked token in the loss, per loss type (TRL's normalisers).
    func weight(_ b: Int) -> Double {
        switch p.lossType {
        case .grpo: return 1 / max(1, lens[b]) / Double(seqs.count) / m
        case .bnpo: return 1 / max(1, batchTokens) / m
        case .drGRPO: return 1 / Double(seqs.count * p.maxCompletionLength) / m
        case .dapo, .cispo: return 1 / Double(max(1, stepTokens))
        }
    }
    var loss = 0.0
    var stats = GRPOLossStats()
    let grads: [[Float]] = seqs.enumerated().map { b, s in
        let terms = GRPOLossTerms(s, p, weight: weight(b), tokens: lens[b])
        var g = [Double](repeating: 0, count: s.logp.count)
        terms.kl(&loss, &g, &stats)
        terms.policy(&loss, &g, &stats)
        return g.map { Float($0) }
    }
    return GRPOMicroBatchResult(loss: loss, dLogp: grads, metrics: stats.metrics(p, sequences: seqs.count, tokens: batchTokens))
}
