/// Causal grouped-query attention over a span of new tokens (prefill), with sgemm per head.
///
/// q:   [t × qStride]   new queries (already rotated), heads·d used per row
/// k,v: [past+t × kvStride]  keys/values of all positions, the new ones last (kvHeads·d used)
/// out: [t × heads·d]
/// scores: scratch of at least t·(past+t) floats.
public func attentionPrefill(out: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>,
                             k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                             t: Int, past: Int, heads: Int, kvHeads: Int, headDim d: Int, qStride: Int,
                             kvStride: Int? = nil,
                             scores: UnsafeMutablePointer<Float>) {
    let total = past + t
    let outStride = heads * d, kvStride = kvStride ?? kvHeads * d
    let group = heads / kvHeads
    for h in 0..<heads {
        let s = scores
        attentionProbs(s, q: q + h * d, k: k + (h / group) * d, t: t, past: past, headDim: d, qStride: qStride, kvStride: kvStride)
        sgemm(m: t, n: d, k: total, a: s, lda: total, b: v + (h / group) * d, ldb: kvStride,
              c: out + h * d, ldc: outStride)
    }
}

/// The causal attention weights of one head: probs[t × (past+t)] = softmax(q kᵀ/√d), row i
/// seeing keys 0...past+i. Training's backward recomputes them with this rather than keeping
/// every layer's [heads × t × t] weights.
public func attentionProbs(_ probs: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                           t: Int, past: Int, headDim d: Int, qStride: Int, kvStride: Int, serial: Bool = false) {
    let total = past + t
    let alpha = 1 / Float(d).squareRoot()
    if serial {
        sgemmBlock(transA: false, transB: true, m: t, n: total, k: d, alpha: alpha, a: q, lda: qStride,
                   b: k, ldb: kvStride, beta: 0, c: probs, ldc: total)
    } else {
        sgemm(transB: true, m: t, n: total, k: d, alpha: alpha, a: q, lda: qStride, b: k, ldb: kvStride, c: probs, ldc: total)
    }
    for i in 0..<t {
        let row = probs + i * total
        let visible = past + i + 1
        softmaxInPlace(row, visible)
        for j in visible..<total { row[j] = 0 }
    }
}

/// Training's causal self-attention: `seqs` sequences of t rows each attend to themselves
/// (past = 0). q/k/v are read from `qkv` ([seqs·t × qkvStride]: q at 0, k at heads·d, v after
/// the keys, as the fused projection lays them out); out: [seqs·t × heads·d]; probs receives
/// the weights, [seqs × heads × t × t], for the backward. Each (sequence, head) runs on one
/// core with single-threaded sgemm: the products are ~t²·d, too small to split well (splitting
/// each one ran the attention at half the speed of the rest of the layer).
public func attentionTrainForward(out: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>,
                                  seqs: Int, t: Int, heads: Int, kvHeads: Int, headDim d: Int, qkvStride: Int) {
    let group = heads / kvHeads, kOff = heads * d, vOff = kOff + kvHeads * d
    parallelFor(seqs * heads) { task in
        let b = task / heads, h = task % heads, g = h / group
        let rows = qkv + b * t * qkvStride, p = probs + task * t * t
        attentionProbs(p, q: rows + h * d, k: rows + kOff + g * d, t: t, past: 0, headDim: d, qStride: qkvStride,
                       kvStride: qkvStride, serial: true)
        sgemmBlock(transA: false, transB: false, m: t, n: d, k: t, alpha: 1, a: p, lda: t, b: rows + vOff + g * d,
                   ldb: qkvStride, beta: 0, c: out + b * t * heads * d + h * d, ldc: heads * d)
    }
}

/// Backward of attentionTrainForward. The weights are recomputed into `probs` from q and k
/// (training keeps one layer's at a time). Gradients accumulate into `dqkv` (same layout as
/// qkv), which the caller zeroes; dOut: [seqs·t × heads·d]; dP: scratch of seqs·kvHeads·t·t.
/// One task per (sequence, KV head): its query heads add into the same key and value
/// gradients, so they stay on one core.
public func attentionBackward(dqkv: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                              qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>,
                              seqs: Int, t: Int, heads: Int, kvHeads: Int, headDim d: Int, qkvStride: Int,
                              dP: UnsafeMutablePointer<Float>) {
    let group = heads / kvHeads
    let scale = 1 / Float(d).squareRoot()
    let kOff = heads * d, vOff = kOff + kvHeads * d
    parallelFor(seqs * kvHeads) { task in
        let b = task / kvHeads, g = task % kvHeads
        let rows = qkv + b * t * qkvStride, drows = dqkv + b * t * qkvStride
        let dS = dP + task * t * t
        for h in (g * group)..<((g + 1) * group) {
            let p = probs + (b * heads + h) * t * t
            let dO = dOut + b * t * heads * d + h * d
            attentionProbs(p, q: rows + h * d, k: rows + kOff + g * d, t: t, past: 0, headDim: d, qStride: qkvStride,
                           kvStride: qkvStride, serial: true)
            // dV_g += Pᵀ dO
            sgemmBlock(transA: true, transB: false, m: t, n: d, k: t, alpha: 1, a: p, lda: t, b: dO, ldb: heads * d,
                       beta: 1, c: drows + vOff + g * d, ldc: qkvStride)
            // dP = dO Vᵀ
            sgemmBlock(transA: false, transB: true, m: t, n: t, k: d, alpha: 1, a: dO, lda: heads * d,
                       b: rows + vOff + g * d, ldb: qkvStride, beta: 0, c: dS, ldc: t)
            // dS = P ⊙ (dP − Σ_j dP·P), in place (zero where P is masked)
            for i in 0..<t {
                let pr = p + i * t, dr = dS + i * t
                let n = i + 1
                let s = dot(pr, dr, n)
                for j in 0..<n { dr[j] = pr[j] * (dr[j] - s) }
                for j in n..<t { dr[j] = 0 }
            }
            // dQ_h = scale · dS K_g ; dK_g += scale · dSᵀ Q_h
            sgemmBlock(transA: false, transB: false, m: t, n: d, k: t, alpha: scale, a: dS, lda: t, b: rows + kOff + g * d,
                       ldb: qkvStride, beta: 1, c: drows + h * d, ldc: qkvStride)
            sgemmBlock(transA: true, transB: false, m: t, n: d, k: t, alpha: scale, a: dS, lda: t, b: rows + h * d,
                       ldb: qkvStride, beta: 1, c: drows + kOff + g * d, ldc: qkvStride)
        }
    }
}

/// One run of cached keys and values: `count` rows of kvHeads·d floats each, `rowStride`
/// floats apart (nil: packed, kvHeads·d).
public struct KVSpan {
    public var keys: UnsafePointer<Float>
    public var values: UnsafePointer<Float>
    public var count: Int
    public var rowStride: Int?
    public init(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, count: Int, rowStride: Int? = nil) {
        self.keys = keys
        self.values = values
        self.count = count
        self.rowStride = rowStride
    }
}

/// Decode attention for `rows` sequences, each continuing a prompt: a sampled group shares one
/// prompt, and several groups (GRPO's rollouts: prompts × G) decode as one batch with a prompt
/// per group. Each layer's cache is the row's prompt span, read by every row of its group, plus
/// each row's own span: nothing is copied.
///
/// Work is split by KV head: the query heads of one KV head over a block of rows of the same
/// group form a few-rows matmul against that head's prompt keys and then its values, so a
/// cached key or value is read once per block instead of once per query head and row (SmolLM2:
/// 3 query heads per KV head, blocks of up to 4 rows; a group step's attention went from about
/// 5 to 2 ms). A single row splits its query heads across the cores instead, as there is no row
/// to share with.
public struct DecodeAttention {
    public let rows, heads, kvHeads, headDim, context: Int
    let group, seqBlock, headsPerTask: Int
    /// (first row, end row, prompt group) of each block; blocks never span two groups.
    let blocks: [(Int, Int, Int)]

    /// context: the longest prompt + own span of any row, also the row stride of the scores.
    /// groups: consecutive row ranges that share a prompt (nil: all rows share one).
    public init(rows: Int, heads: Int, kvHeads: Int, headDim: Int, context: Int, groups: [Range<Int>]? = nil) {
        self.rows = rows
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.context = context
        group = heads / kvHeads
        // About 6 tasks for 2 cores once there are rows to share keys between.
        seqBlock = max(1, min(4, rows / 2))
        headsPerTask = rows == 1 ? 1 : group
        var b: [(Int, Int, Int)] = []
        for (k, g) in (groups ?? [0..<rows]).enumerated() {
            for r0 in stride(from: g.lowerBound, to: g.upperBound, by: seqBlock) { b.append((r0, min(g.upperBound, r0 + seqBlock), k)) }
        }
        blocks = b
    }

    /// Floats of scratch `run` needs for up to `rows` rows: per query, its scores and a copy of
    /// its query and output vectors.
    public static func scratchCount(rows: Int, heads: Int, headDim: Int, context: Int, groups: Int = 1) -> Int {
        // Blocks hold up to 4 rows and each group may end in a partial one.
        heads * (rows + 4 * (groups + 1)) * (context + 2 * headDim)
    }

    /// q: [rows × qStride] rotated queries (heads·d used); out: [rows × outStride], heads·d
    /// written per row. own(r): row r's span (at least its current token).
    public func run(out: UnsafeMutablePointer<Float>, outStride: Int, q: UnsafePointer<Float>, qStride: Int,
                    prompt: KVSpan, own: (Int) -> KVSpan, scratch: UnsafeMutablePointer<Float>) {
        run(out: out, outStride: outStride, q: q, qStride: qStride, prompts: { _ in prompt }, own: own, scratch: scratch)
    }

    /// As above with prompts(k): the prompt span of group k.
    public func run(out: UnsafeMutablePointer<Float>, outStride: Int, q: UnsafePointer<Float>, qStride: Int,
                    prompts: (Int) -> KVSpan, own: (Int) -> KVSpan, scratch: UnsafeMutablePointer<Float>) {
        let d = headDim, kvStride = kvHeads * d, ctx = context
        let splits = group / headsPerTask
        let maxQueries = seqBlock * headsPerTask
        let scale = 1 / Float(d).squareRoot()
        let nb = blocks.count
        let tasks = kvHeads * splits * nb
        let work = rows * heads * (prompts(0).count + own(0).count) * d
        parallelFor(tasks, serial: work < 16_384) { task in
            let g = task / (splits * nb), split = (task / nb) % splits
            let (r0, r1, pg) = blocks[task % nb]
            let prompt = prompts(pg)
            let h0 = g * group + split * headsPerTask
            let nq = (r1 - r0) * headsPerTask
            let qs = scratch + task * maxQueries * (ctx + 2 * d), os = qs + maxQueries * d, sc = os + maxQueries * d
            for r in r0..<r1 {
                for hh in 0..<headsPerTask {
                    let src = q + r * qStride + (h0 + hh) * d, dst = qs + ((r - r0) * headsPerTask + hh) * d
                    for e in 0..<d { dst[e] = src[e] * scale }
                }
            }
            let p = prompt.count, ps = prompt.rowStride ?? kvStride
            fewRowsSerial(sc, ldy: ctx, qs, ldx: d, prompt.keys + g * d, ldw: ps, rows: nq, out: p, in: d)
            for r in r0..<r1 {
                let span = own(r), first = (r - r0) * headsPerTask
                fewRowsSerial(sc + first * ctx + p, ldy: ctx, qs + first * d, ldx: d, span.keys + g * d,
                              ldw: span.rowStride ?? kvStride, rows: headsPerTask, out: span.count, in: d)
                for i in first..<(first + headsPerTask) { softmaxInPlace(sc + i * ctx, p + span.count) }
            }
            fewRowsNSerial(os, ldy: d, sc, ldx: ctx, prompt.values + g * d, ldb: ps, rows: nq, out: d, inner: p)
            for r in r0..<r1 {
                let span = own(r), first = (r - r0) * headsPerTask
                fewRowsNSerial(os + first * d, ldy: d, sc + first * ctx + p, ldx: ctx, span.values + g * d,
                               ldb: span.rowStride ?? kvStride, rows: headsPerTask, out: d, inner: span.count, accumulate: true)
                for hh in 0..<headsPerTask {
                    (out + r * outStride + (h0 + hh) * d).update(from: os + (first + hh) * d, count: d)
                }
            }
        }
    }
}
