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
        attentionProbs(scores, q: q + h * d, k: k + (h / group) * d, t: t, past: past, headDim: d, qStride: qStride, kvStride: kvStride)
        sgemm(m: t, n: d, k: total, a: scores, lda: total, b: v + (h / group) * d, ldb: kvStride,
              c: out + h * d, ldc: outStride)
    }
}

/// The causal attention weights of one head: probs[t × (past+t)] = softmax(q kᵀ/√d), row i
/// seeing keys 0...past+i.
public func attentionProbs(_ probs: UnsafeMutablePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                           t: Int, past: Int, headDim d: Int, qStride: Int, kvStride: Int) {
    let total = past + t
    sgemm(transB: true, m: t, n: total, k: d, alpha: 1 / Float(d).squareRoot(), a: q, lda: qStride,
          b: k, ldb: kvStride, c: probs, ldc: total)
    causalSoftmax(probs, rows: t, past: past, ld: total)
}

/// Row i of scores[rows × (past + rows)] (row stride ld) becomes the softmax of its first
/// past + i + 1 entries, the rest 0: causal attention weights.
func causalSoftmax(_ scores: UnsafeMutablePointer<Float>, rows: Int, past: Int, ld: Int) {
    for i in 0..<rows {
        let row = scores + i * ld
        let visible = past + i + 1
        softmaxInPlace(row, visible)
        for j in visible..<(past + rows) { row[j] = 0 }
    }
}

/// Training's causal self-attention over a batch laid out as shared prefixes, then each
/// sequence's own rows. A prefix is stored once for all the sequences that continue it (a GRPO
/// group's prompt: G completions of one prompt need its rows once, not G times); a sequence's
/// own rows see its prefix's rows and their own earlier ones. Without prefixes this is causal
/// attention within each sequence.
///
/// q/k/v come from the fused projection's rows ([rows × qkvStride]: q at 0, k at heads·d, v
/// after the keys); out is [rows × heads·d]. Work runs one (sequence or prefix, head) per
/// task with single-threaded sgemm: the products are ~t²·d, too small to split each one well
/// (splitting each ran the attention at half the speed of the rest of the layer).
public struct TrainingAttention {
    public let seqs, t: Int
    public let prefixLengths, prefixOf: [Int]
    public let heads, kvHeads, headDim, qkvStride: Int
    /// First row of each prefix, and of the sequences' own rows.
    let prefixStarts: [Int]
    let ownStart: Int
    /// Row stride of a sequence's weights block (its own rows × (longest prefix + t)), and each
    /// prefix's offset in `probs` after the sequences' blocks.
    let width: Int
    let prefixProbs: [Int]
    let maxPrefix, block: Int
    /// Floats of the weights the forward writes, and of the backward's scratch.
    public let probsCount, scratchCount: Int

    /// seqs sequences of t own rows each; prefixLengths[k] rows per prefix, stored first, in
    /// order; prefixOf[s]: sequence s's prefix, or -1 (empty: no prefixes).
    public init(seqs: Int, t: Int, prefixLengths: [Int] = [], prefixOf: [Int] = [],
                heads: Int, kvHeads: Int, headDim: Int, qkvStride: Int) {
        (self.seqs, self.t, self.prefixLengths, self.prefixOf) = (seqs, t, prefixLengths, prefixOf)
        (self.heads, self.kvHeads, self.headDim, self.qkvStride) = (heads, kvHeads, headDim, qkvStride)
        maxPrefix = prefixLengths.max() ?? 0
        width = maxPrefix + t
        var starts: [Int] = [], probsAt: [Int] = [], row = 0, at = seqs * heads * t * width
        for n in prefixLengths {
            starts.append(row); probsAt.append(at)
            row += n; at += heads * n * n
        }
        (prefixStarts, ownStart, prefixProbs, probsCount) = (starts, row, probsAt, at)
        block = max(t * width, maxPrefix * maxPrefix)
        scratchCount = (seqs + prefixLengths.count) * kvHeads * block + seqs * kvHeads * maxPrefix * 2 * headDim
    }

    /// Rows of the layout: the prefixes' and every sequence's own.
    public var rows: Int { ownStart + seqs * t }

    func prefix(of s: Int) -> Int { prefixOf.isEmpty ? -1 : prefixOf[s] }

    /// A unit is a sequence (its own rows, after its prefix's P rows at `pre`) or a prefix
    /// (its rows, P = 0): its rows, their count, the prefix rows they see, and its weights.
    func unit(_ u: Int, head h: Int, probs: UnsafeMutablePointer<Float>)
        -> (rows: Int, n: Int, pre: Int, P: Int, p: UnsafeMutablePointer<Float>, ld: Int) {
        if u < seqs {
            let k = prefix(of: u), P = k < 0 ? 0 : prefixLengths[k]
            return (ownStart + u * t, t, k < 0 ? 0 : prefixStarts[k], P, probs + (u * heads + h) * t * width, P + t)
        }
        let k = u - seqs, n = prefixLengths[k]
        return (prefixStarts[k], n, 0, 0, probs + prefixProbs[k] + h * n * n, n)
    }

    /// The causal weights of one unit and head: p[n × (P + n)] (row stride ld) =
    /// softmax(q·[k_prefix; k_own]ᵀ/√d), row i seeing the P prefix rows and own rows 0...i.
    func weights(_ p: UnsafeMutablePointer<Float>, ld: Int, q: UnsafePointer<Float>, own: UnsafePointer<Float>, n: Int,
                 pre: UnsafePointer<Float>, P: Int, g: Int) {
        let d = headDim, kOff = heads * d + g * d
        let scale = 1 / Float(d).squareRoot()
        if P > 0 {
            sgemmBlock(transA: false, transB: true, m: n, n: P, k: d, alpha: scale, a: q, lda: qkvStride,
                       b: pre + kOff, ldb: qkvStride, beta: 0, c: p, ldc: ld)
        }
        sgemmBlock(transA: false, transB: true, m: n, n: n, k: d, alpha: scale, a: q, lda: qkvStride,
                   b: own + kOff, ldb: qkvStride, beta: 0, c: p + P, ldc: ld)
        causalSoftmax(p, rows: n, past: P, ld: ld)
    }

    /// out = attention(qkv); probs (probsCount floats) receives the weights.
    public func forward(out: UnsafeMutablePointer<Float>, qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>) {
        let d = headDim, group = heads / kvHeads, vOff = (heads + kvHeads) * d, ldo = heads * d
        parallelFor((seqs + prefixLengths.count) * heads) { task in
            let h = task % heads, g = h / group
            let (r0, n, pr, P, p, ld) = unit(task / heads, head: h, probs: probs)
            let own = qkv + r0 * qkvStride, pre = qkv + pr * qkvStride
            weights(p, ld: ld, q: own + h * d, own: own, n: n, pre: pre, P: P, g: g)
            let o = out + r0 * ldo + h * d
            if P > 0 {
                sgemmBlock(transA: false, transB: false, m: n, n: d, k: P, alpha: 1, a: p, lda: ld, b: pre + vOff + g * d,
                           ldb: qkvStride, beta: 0, c: o, ldc: ldo)
            }
            sgemmBlock(transA: false, transB: false, m: n, n: d, k: n, alpha: 1, a: p + P, lda: ld, b: own + vOff + g * d,
                       ldb: qkvStride, beta: P > 0 ? 1 : 0, c: o, ldc: ldo)
        }
    }

    /// Backward of forward: the weights are recomputed into `probs` (training keeps one layer's
    /// at a time), gradients accumulate into dqkv (qkv's layout; the caller zeroes it) from
    /// dOut ([rows × heads·d]); scratch: scratchCount floats. One task per (unit, KV head): its
    /// query heads add into the same key and value gradients. A prefix's key and value
    /// gradients from its sequences are summed per task and added after.
    public func backward(dqkv: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>,
                         probs: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let d = headDim, group = heads / kvHeads
        let scale = 1 / Float(d).squareRoot()
        let kOff = heads * d, vOff = kOff + kvHeads * d, ldo = heads * d
        let partials = scratch + (seqs + prefixLengths.count) * kvHeads * block
        parallelFor((seqs + prefixLengths.count) * kvHeads) { task in
            let u = task / kvHeads, g = task % kvHeads
            let dS = scratch + task * block
            let part = partials + task * maxPrefix * 2 * d   // [P × (dK | dV)] of this sequence's prefix
            for h in (g * group)..<((g + 1) * group) {
                let (r0, n, pr, P, p, ld) = unit(u, head: h, probs: probs)
                let own = qkv + r0 * qkvStride, pre = qkv + pr * qkvStride, dOwn = dqkv + r0 * qkvStride
                let dO = dOut + r0 * ldo + h * d
                if P > 0 && h == g * group { part.update(repeating: 0, count: P * 2 * d) }
                weights(p, ld: ld, q: own + h * d, own: own, n: n, pre: pre, P: P, g: g)
                // dV += Pᵀ dO
                sgemmBlock(transA: true, transB: false, m: n, n: d, k: n, alpha: 1, a: p + P, lda: ld, b: dO, ldb: ldo,
                           beta: 1, c: dOwn + vOff + g * d, ldc: qkvStride)
                if P > 0 {
                    sgemmBlock(transA: true, transB: false, m: P, n: d, k: n, alpha: 1, a: p, lda: ld, b: dO, ldb: ldo,
                               beta: 1, c: part + d, ldc: 2 * d)
                }
                // dP = dO Vᵀ
                if P > 0 {
                    sgemmBlock(transA: false, transB: true, m: n, n: P, k: d, alpha: 1, a: dO, lda: ldo, b: pre + vOff + g * d,
                               ldb: qkvStride, beta: 0, c: dS, ldc: ld)
                }
                sgemmBlock(transA: false, transB: true, m: n, n: n, k: d, alpha: 1, a: dO, lda: ldo, b: own + vOff + g * d,
                           ldb: qkvStride, beta: 0, c: dS + P, ldc: ld)
                // dS = P ⊙ (dP − Σ_j dP·P), in place (zero where P is masked)
                for i in 0..<n {
                    let prow = p + i * ld, drow = dS + i * ld
                    let seen = P + i + 1
                    let s = dot(prow, drow, seen)
                    for j in 0..<seen { drow[j] = prow[j] * (drow[j] - s) }
                    for j in seen..<(P + n) { drow[j] = 0 }
                }
                // dQ_h = scale · dS K ; dK += scale · dSᵀ Q_h
                if P > 0 {
                    sgemmBlock(transA: false, transB: false, m: n, n: d, k: P, alpha: scale, a: dS, lda: ld, b: pre + kOff + g * d,
                               ldb: qkvStride, beta: 1, c: dOwn + h * d, ldc: qkvStride)
                    sgemmBlock(transA: true, transB: false, m: P, n: d, k: n, alpha: scale, a: dS, lda: ld, b: own + h * d,
                               ldb: qkvStride, beta: 1, c: part, ldc: 2 * d)
                }
                sgemmBlock(transA: false, transB: false, m: n, n: d, k: n, alpha: scale, a: dS + P, lda: ld, b: own + kOff + g * d,
                           ldb: qkvStride, beta: 1, c: dOwn + h * d, ldc: qkvStride)
                sgemmBlock(transA: true, transB: false, m: n, n: d, k: n, alpha: scale, a: dS + P, lda: ld, b: own + h * d,
                           ldb: qkvStride, beta: 1, c: dOwn + kOff + g * d, ldc: qkvStride)
            }
        }
        for s in 0..<seqs where prefix(of: s) >= 0 {
            let k = prefix(of: s), P = prefixLengths[k], dPre = dqkv + prefixStarts[k] * qkvStride
            for g in 0..<kvHeads {
                let part = partials + (s * kvHeads + g) * maxPrefix * 2 * d
                for i in 0..<P {
                    addInPlace(dPre + i * qkvStride + kOff + g * d, part + i * 2 * d, d)
                    addInPlace(dPre + i * qkvStride + vOff + g * d, part + i * 2 * d + d, d)
                }
            }
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
            // rowInvariant: one sequence's scores are summed as they are beside others.
            fewRowsSerial(sc, ldy: ctx, qs, ldx: d, prompt.keys + g * d, ldw: ps, rows: nq, out: p, in: d, rowInvariant: true)
            for r in r0..<r1 {
                let span = own(r), first = (r - r0) * headsPerTask
                fewRowsSerial(sc + first * ctx + p, ldy: ctx, qs + first * d, ldx: d, span.keys + g * d,
                              ldw: span.rowStride ?? kvStride, rows: headsPerTask, out: span.count, in: d, rowInvariant: true)
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
