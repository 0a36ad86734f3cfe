import PonderJSON
import PonderKernels

/// Sampling settings, named as in transformers' GenerationConfig / the OpenAI API.
public struct SamplingParams: Equatable, Sendable {
    /// 0 means greedy (argmax).
    public var temperature: Float = 1
    public var topK: Int = 0          // 0: off
    public var topP: Float = 1        // 1: off
    public var minP: Float = 0        // 0: off
    public var repetitionPenalty: Float = 1  // 1: off; HF semantics (divide positive logits, multiply negative)
    public init() {}
}

/// The one reader of the sampling keys, for every request and config that takes them
/// (generation, inference, GRPO, rejection sampling, evaluation): each key has one range and one
/// message wherever it appears. A caller that cannot use a value the range allows (GRPO divides
/// by the temperature, so 0 is no use to it) says so itself, at its own key, with its own reason.
extension SamplingParams {
    public static let keys = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty"]

    /// The sampling keys present in `r`; the others keep their values.
    public mutating func read(_ r: JSONReader) {
        if let t = r.double("temperature", "a number in [0, 100]", valid: { $0 >= 0 && $0 <= 100 }) { temperature = Float(t) }
        if let p = r.double("top_p", "a number in (0, 1]", valid: { $0 > 0 && $0 <= 1 }) { topP = Float(p) }
        if let k = r.int("top_k", in: 0...10_000_000) { topK = k }
        if let p = r.double("min_p", "a number in [0, 1]", valid: { $0 >= 0 && $0 <= 1 }) { minP = Float(p) }
        if let p = r.double("repetition_penalty", "a number in (0, 100]", valid: { $0 > 0 && $0 <= 100 }) { repetitionPenalty = Float(p) }
    }

    /// Fails "temperature" in `r` when it is 0 (greedy) for a caller that must sample.
    public func requireSampling(_ r: JSONReader, because why: String) {
        if temperature == 0 { r.fail("temperature", "must be > 0 here: \(why)") }
    }

    public var json: [(String, JSONValue)] {
        [("temperature", .double(decimal(temperature))), ("top_p", .double(decimal(topP))), ("top_k", .int(Int64(topK))),
         ("min_p", .double(decimal(minP))), ("repetition_penalty", .double(decimal(repetitionPenalty)))]
    }

    /// A "seed" key: any non-negative integer.
    public static func readSeed(_ r: JSONReader, _ key: String = "seed") -> UInt64? {
        guard let s = r.value(key) else { return nil }
        if let i = s.asInt, i >= 0 { return UInt64(i) }
        r.fail(key, "expected a non-negative integer, got \(s.serialized())")
        return nil
    }

    /// A token budget and, where the caller has one, its minimum (`minKey`): at most 2^20
    /// tokens each, the minimum no more than the budget. `zeroAllowed`: a budget of 0 is an
    /// empty completion (a generation request) rather than an error.
    public static func readLengths(_ r: JSONReader, max maxKey: String, _ maxTokens: inout Int, min minKey: String? = nil,
                                   _ minTokens: inout Int, zeroAllowed: Bool = false) {
        maxTokens = r.int(maxKey, in: (zeroAllowed ? 0 : 1)...1_048_576) ?? maxTokens
        guard let minKey else { return }
        minTokens = r.int(minKey, in: 0...1_048_576) ?? minTokens
        if minTokens > maxTokens { r.fail(minKey, "\(minTokens) is more than \(maxKey) (\(maxTokens))") }
    }

    /// A token budget without a minimum.
    public static func readLength(_ r: JSONReader, _ key: String, _ maxTokens: inout Int) {
        var unused = 0
        readLengths(r, max: key, &maxTokens, min: nil, &unused)
    }
}

/// xoshiro256** seeded through SplitMix64: small, fast, and identical on every platform, so a
/// seed reproduces a completion anywhere.
public struct RandomGenerator: Sendable {
    var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    @inline(__always) static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = RandomGenerator.rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = RandomGenerator.rotl(s.3, 45)
        return result
    }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// Draws one token from a row of logits. Holds per-sequence state (RNG, tokens seen for the
/// repetition penalty) and a candidate buffer reused every step.
final class TokenSampler {
    let params: SamplingParams
    var rng: RandomGenerator
    var seen: [Bool]
    var seenList: [Int32] = []
    var candidates: [Int32] = []
    var probs: [Float] = []
    let work: UnsafeMutablePointer<Float>

    init(params: SamplingParams, seed: UInt64, vocab: Int, history: [Int32]) {
        self.params = params
        rng = RandomGenerator(seed: seed)
        seen = [Bool](repeating: false, count: vocab)
        work = .allocate(capacity: vocab)
        candidates.reserveCapacity(vocab)
        probs.reserveCapacity(vocab)
        for t in history { observe(t) }
    }

    deinit { work.deallocate() }

    /// The repetition penalty's history becomes `ids` (after a steering rewind).
    func reset(history ids: [Int32]) {
        for t in seenList { seen[Int(t)] = false }
        seenList.removeAll(keepingCapacity: true)
        for t in ids { observe(t) }
    }

    func observe(_ t: Int32) {
        if !seen[Int(t)] {
            seen[Int(t)] = true
            seenList.append(t)
        }
    }

    /// Picks a token from `logits` and returns it with its log-probability under the
    /// unprocessed model distribution (log-softmax of the raw logits), which is what GRPO's
    /// old-policy ratio and best-of-N scoring need. Returns token −1 when the row is not a
    /// distribution (a NaN or +∞ logit, or every logit −∞: corrupt weights); the caller turns
    /// that into an error rather than drawing from an empty candidate set. `banned` tokens
    /// (end tokens before `min_tokens`) are never drawn.
    func sample(_ logits: UnsafePointer<Float>, vocab n: Int, banned: [Int32] = []) -> (Int32, Float) {
        let lse = logSumExp(logits, n)
        guard lse.isFinite else { return (-1, .nan) }
        work.update(from: logits, count: n)
        for t in banned where t >= 0 && Int(t) < n { work[Int(t)] = -.infinity }
        let token: Int32 = {
            let x = work
            let p = params
            if p.repetitionPenalty != 1 {
                for t in seenList {
                    let i = Int(t)
                    x[i] = x[i] > 0 ? x[i] / p.repetitionPenalty : x[i] * p.repetitionPenalty
                }
            }
            if p.temperature == 0 { return argmax(x, n) }
            return draw(x, n)
        }()
        observe(token)
        return (token, logits[Int(token)] - lse)
    }

    private func argmax(_ x: UnsafePointer<Float>, _ n: Int) -> Int32 {
        var best = 0
        for i in 1..<n where x[i] > x[best] { best = i }
        return Int32(best)
    }

    /// temperature → top-k → top-p → min-p (transformers' warper order), then one draw.
    private func draw(_ logits: UnsafeMutablePointer<Float>, _ n: Int) -> Int32 {
        let p = params
        // Weights e^(x/T − max) for the whole row in one SIMD pass; tokens under e^−30 of the
        // best carry no probability at float precision and are dropped before any sort.
        // A temperature so small that logits / T overflow Float is greedy sampling, its limit.
        let inv = 1 / p.temperature
        // (A row whose best logit is −∞ after the repetition penalty has no finite weight to
        // draw with either; argmax keeps it well-defined.)
        guard inv.isFinite, (maxValue(logits, n) * inv).isFinite else { return argmax(logits, n) }
        scaleInPlace(logits, n, by: inv)
        let mx = maxValue(logits, n)
        _ = expSum(logits, n, minus: mx, store: logits)
        let floor: Float = 9.3576e-14
        candidates.removeAll(keepingCapacity: true)
        for i in 0..<n where logits[i] >= floor { candidates.append(Int32(i)) }
        let needSort = (p.topK > 0 && p.topK < candidates.count) || p.topP < 1
        if needSort {
            candidates.sort { logits[Int($0)] > logits[Int($1)] || (logits[Int($0)] == logits[Int($1)] && $0 < $1) }
            if p.topK > 0 && p.topK < candidates.count { candidates.removeLast(candidates.count - p.topK) }
        }
        probs.removeAll(keepingCapacity: true)
        var sum: Float = 0
        for c in candidates {
            let e = logits[Int(c)]
            probs.append(e)
            sum += e
        }
        var keep = candidates.count
        if p.topP < 1 {
            var cum: Float = 0
            for k in 0..<candidates.count {
                if cum >= p.topP * sum { keep = max(1, k); break }
                cum += probs[k]
            }
        }
        if p.minP > 0 {
            // The best candidate has probability weight exp(0) = 1 relative to mx.
            let threshold = p.minP
            var w = 0
            for k in 0..<keep where probs[k] >= threshold {
                candidates[w] = candidates[k]
                probs[w] = probs[k]
                w += 1
            }
            keep = max(1, w)
        }
        var total: Float = 0
        for k in 0..<keep { total += probs[k] }
        let u = Float(rng.uniform()) * total
        var acc: Float = 0
        for k in 0..<keep {
            acc += probs[k]
            if u < acc { return candidates[k] }
        }
        return candidates[keep - 1]
    }
}

#if canImport(Glibc)
import Glibc
#endif
