/// Causal grouped-query attention over a span of new tokens (prefill), with sgemm per head.
///
/// q:   [t × qStride]   new queries (already rotated), heads·d used per row
/// k,v: [past+t × kvStride]  keys/values of all positions, the new ones last (kvHeads·d used)
/// out: [t × heads·d]
/// scores: scratch of at least t·(past+t) floats.
/// probs (optional): [heads × t × (past+t)] receives the attention weights, for backward.
public func attentionPrefill(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                             k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             t: Int, past: Int, heads: Int, kvHeads: Int, headDim d: Int, qStride: Int,
                             kvStride: Int? = nil,
                             scores: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>? = nil) {
    let total = past + t
    let outStride = heads * d, kvStride = kvStride ?? kvHeads * d
    let group = heads / kvHeads
    for h in 0..<heads {
        let s = probs.map { $0 + h * t * total } ?? scores
        attentionProbs(s, q: q + h * d, k: k + (h / group) * d, t: t, past: past, headDim: d, qStride: qStride, kvStride: kvStride)
        sgemm(m: t, n: d, k: total, a: s, lda: total, b: v + (h / group) * d, ldb: kvStride,
              c: out + h * d, ldc: outStride)
    }
}

/// The causal attention weights of one head: probs[t × (past+t)] = softmax(q kᵀ/√d), row i
/// seeing keys 0...past+i. Training's backward recomputes them with this rather than keeping
/// every layer's [heads × t × t] weights.
public func attentionProbs(_ probs: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                           t: Int, past: Int, headDim d: Int, qStride: Int, kvStride: Int) {
    let total = past + t
    sgemm(transB: true, m: t, n: total, k: d, alpha: 1 / Float(d).squareRoot(), a: q, lda: qStride,
          b: k, ldb: kvStride, c: probs, ldc: total)
    for i in 0..<t {
        let row = probs + i * total
        let visible = past + i + 1
        softmaxInPlace(row, visible)
        for j in visible..<total { row[j] = 0 }
    }
}

/// Backward of attentionPrefill with past = 0 (training: each sequence attends to itself).
/// q/k/v are read from `qkv` ([t × qkvStride]: q at 0, k at qOff+…, as laid out by the
/// fused projection) and their gradients accumulate into `dqkv` of the same layout, which the
/// caller zeroes. dOut: [t × heads·d]; probs: the forward's [heads × t × t]; dP: scratch t·t.
public func attentionBackward(dqkv: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                              qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                              t: Int, heads: Int, kvHeads: Int, headDim d: Int, qkvStride: Int,
                              dP: UnsafeMutablePointer<Float>) {
    let group = heads / kvHeads
    let scale = 1 / Float(d).squareRoot()
    let kOff = heads * d, vOff = kOff + kvHeads * d
    for h in 0..<heads {
        let g = h / group
        let p = probs + h * t * t
        let dO = dOut + h * d
        // dV_g += Pᵀ dO
        sgemm(transA: true, m: t, n: d, k: t, a: p, lda: t, b: dO, ldb: heads * d,
              beta: 1, c: dqkv + vOff + g * d, ldc: qkvStride)
        // dP = dO Vᵀ
        sgemm(transB: true, m: t, n: t, k: d, a: dO, lda: heads * d, b: qkv + vOff + g * d, ldb: qkvStride,
              c: dP, ldc: t)
        // dS = P ⊙ (dP − Σ_j dP·P), in place in dP (zero where P is masked)
        for i in 0..<t {
            let pr = p + i * t, dr = dP + i * t
            let n = i + 1
            let s = dot(pr, dr, n)
            for j in 0..<n { dr[j] = pr[j] * (dr[j] - s) }
            for j in n..<t { dr[j] = 0 }
        }
        // dQ_h = scale · dS K_g ; dK_g += scale · dSᵀ Q_h
        sgemm(m: t, n: d, k: t, alpha: scale, a: dP, lda: t, b: qkv + kOff + g * d, ldb: qkvStride,
              beta: 1, c: dqkv + h * d, ldc: qkvStride)
        sgemm(transA: true, m: t, n: d, k: t, alpha: scale, a: dP, lda: t, b: qkv + h * d, ldb: qkvStride,
              beta: 1, c: dqkv + kOff + g * d, ldc: qkvStride)
    }
}

/// One contiguous run of cached keys and values ([count × kvHeads·d] each).
public struct KVSpan {
    public var keys: UnsafePointer<Float>
    public var values: UnsafePointer<Float>
    public var count: Int
    public init(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, count: Int) {
        self.keys = keys
        self.values = values
        self.count = count
    }
}

/// Attention of one query head over cached spans (decode). A sequence of a sampled group reads
/// the prompt's span, shared by the whole group, then its own span: no copy of the prompt cache.
/// scores: scratch of Σ span.count floats.
public func attendOne(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, head: Int, kvHead: Int,
                      headDim d: Int, kvHeads: Int, spans: (KVSpan, KVSpan), scores: UnsafeMutablePointer<Float>) {
    let scale = 1 / Float(d).squareRoot()
    let stride = kvHeads * d
    let total = spans.0.count + spans.1.count
    @inline(__always) func score(_ span: KVSpan, from n: Int) {
        let kp = span.keys + kvHead * d
        for j in 0..<span.count { scores[n + j] = dot(q, kp + j * stride, d) * scale }
    }
    @inline(__always) func accumulate(_ span: KVSpan, from n: Int) {
        let vp = span.values + kvHead * d
        for j in 0..<span.count { axpy(out, scores[n + j], vp + j * stride, d) }
    }
    score(spans.0, from: 0)
    score(spans.1, from: spans.0.count)
    softmaxInPlace(scores, total)
    out.update(repeating: 0, count: d)
    accumulate(spans.0, from: 0)
    accumulate(spans.1, from: spans.0.count)
}
