import PonderBase
import PonderKernels
#if canImport(Glibc)
import Glibc
#endif

/// A batch of `sequences` rows of `length` tokens (right-padded). targets[i] is the token
/// predicted at row i (-1: none, e.g. prompt or padding).
///
/// Optionally, shared prefixes come first: prefixLengths[k] rows each, stored once and
/// continued by every sequence s with prefixOf[s] == k (the prompt of a GRPO group, whose G
/// completions would otherwise repeat it G times). A sequence's `length` rows then follow its
/// prefix: their positions continue from it and they attend to it.
public struct TokenBatch: Sendable {
    public var sequences: Int
    public var length: Int
    public var tokens: [Int32]
    public var targets: [Int32]
    /// log p is of softmax(logits / temperature): GRPO scores completions at the temperature
    /// they were sampled with, as TRL does; 1 for SFT.
    public var temperature: Float = 1
    public var prefixLengths: [Int] = []
    /// Each sequence's prefix, or -1 (empty when there are no prefixes).
    public var prefixOf: [Int] = []

    public init(sequences: Int, length: Int, tokens: [Int32], targets: [Int32], temperature: Float = 1,
                prefixLengths: [Int] = [], prefixOf: [Int] = []) {
        self.sequences = sequences
        self.length = length
        self.tokens = tokens
        self.targets = targets
        self.temperature = temperature
        self.prefixLengths = prefixLengths
        self.prefixOf = prefixOf
    }

    /// Rows of the batch: the prefixes', then every sequence's.
    public var rows: Int { prefixLengths.reduce(0, +) + sequences * length }
}

/// Activations of one training forward, allocated for the largest batch shape and reused by
/// every step (a batch may be shorter: `reshape`). With `checkpointing`, only each layer's
/// input is kept and the rest is recomputed per layer during backward (one layer's buffers
/// instead of all of them).
public final class TrainActivations {
    let maxRows: Int
    /// The current batch's attention layout (sequences, prefixes).
    var attention: TrainingAttention
    public var rows: Int { attention.rows }
    let checkpointing: Bool
    let layerBufs: [LayerBuffers]   // one per layer, or one shared when checkpointing
    let xs: Arena                   // residual stream at each layer boundary: [(layers+1) × rows × D]
    // Cheap to recompute, so shared by all layers and rebuilt in backward: the normed inputs,
    // the SwiGLU output and the attention weights (together ~45% of a layer's activations).
    let xn, h: Arena
    /// The attention weights of one layer, and the attention backward's scratch (grown to
    /// what a batch's layout needs).
    var probs, dP: Arena
    let xnF: Arena, rstdF: Arena     // final norm output and 1/rms
    var positions: [Int32]
    // backward scratch
    let dX, dXn, dQKV, dAttn, dGateUp, dH, dU, xnGathered, gathered: Arena
    /// LM-head logits (scaled by 1/temperature) of up to `chunk` scored rows, and log Σ exp of
    /// each row (indexed by position).
    let logits, lse: Arena
    let chunk: Int
    /// Set by a forward whose scored rows all fit in one chunk, when `keepsLogits`: those rows
    /// and 1/temperature. The backward then reuses the logits instead of recomputing them.
    var kept: (rows: [Int], invT: Float)?
    /// Whether a forward keeps its logits for the backward: full fine-tuning without
    /// checkpointing, the mode that spends memory for speed. The head is ~a fifth of the step's
    /// FLOPs and a full-vocabulary matmul each time; LoRA and checkpointing bound memory instead.
    let keepsLogits: Bool

    final class LayerBuffers {
        let arena: Arena
        let xMid, qkv, attn, gateUp, rstd1, rstd2, loraU: UnsafeMutablePointer<Float>

        init(_ c: LlamaConfig, rows: Int, loraWidth: Int) throws {
            let sizes = [rows * c.hiddenSize, rows * c.qkvDim, rows * c.qDim, rows * 2 * c.intermediateSize, rows, rows,
                         max(1, rows * loraWidth)]
            arena = try Arena(count: sizes.reduce(0) { $0 + ($1 + 15) / 16 * 16 })
            var p = arena.pointer
            var v: [UnsafeMutablePointer<Float>] = []
            for s in sizes { v.append(p); p += (s + 15) / 16 * 16 }
            (xMid, qkv, attn, gateUp, rstd1, rstd2, loraU) = (v[0], v[1], v[2], v[3], v[4], v[5], v[6])
        }
    }

    public init(model: LlamaModel, sequences: Int, length: Int, checkpointing: Bool = false) throws {
        let c = model.config
        let n = sequences * length
        maxRows = n
        attention = TrainingAttention(seqs: sequences, t: length, heads: c.numHeads, kvHeads: c.numKVHeads,
                                      headDim: c.headDim, qkvStride: c.qkvDim)
        self.checkpointing = checkpointing
        let lw = model.adapters?.width ?? 0
        layerBufs = try (0..<(checkpointing ? 1 : c.numLayers)).map { _ in try LayerBuffers(c, rows: n, loraWidth: lw) }
        xn = try Arena(count: n * c.hiddenSize)
        h = try Arena(count: n * c.intermediateSize)
        probs = try Arena(count: attention.probsCount, zeroed: false)
        dP = try Arena(count: attention.scratchCount, zeroed: false)
        xs = try Arena(count: (c.numLayers + 1) * n * c.hiddenSize)
        xnF = try Arena(count: n * c.hiddenSize)
        rstdF = try Arena(count: n)
        positions = []  // set by reshape, from each batch's layout
        dX = try Arena(count: n * c.hiddenSize)
        dXn = try Arena(count: n * c.hiddenSize)
        dQKV = try Arena(count: n * c.qkvDim)
        dAttn = try Arena(count: n * c.qDim)
        dGateUp = try Arena(count: n * 2 * c.intermediateSize)
        dH = try Arena(count: n * c.intermediateSize)
        dU = try Arena(count: max(1, n * (model.adapters?.config.rank ?? 1)))
        // The LM head runs over chunks of rows, so [rows × vocab] logits need not exist at once:
        // 256 rows (enough for sgemm to run at full speed) or, when kept for the backward, as
        // many as fit 256 MiB. Pages are backed as they are written.
        keepsLogits = !checkpointing && model.adapters == nil
        chunk = max(1, min(n, keepsLogits ? max(256, (64 << 20) / c.vocabSize) : 256))
        logits = try Arena(count: chunk * c.vocabSize, zeroed: false)
        lse = try Arena(count: n)
        xnGathered = try Arena(count: chunk * c.hiddenSize)
        gathered = try Arena(count: chunk * c.hiddenSize)
        kept = nil
    }

    /// Uses the buffers for `batch` (at most as many rows as allocated), with its positions:
    /// 0... along each prefix, continuing from its prefix along each sequence.
    func reshape(_ batch: TokenBatch, _ c: LlamaConfig) throws {
        let n = batch.rows
        guard batch.sequences >= 1, batch.length >= 1, n <= maxRows else {
            throw PonderError.invalid("batch of \(n) rows (\(batch.sequences)×\(batch.length) + prefixes) exceeds the allocated \(maxRows)")
        }
        guard batch.prefixOf.isEmpty || (batch.prefixOf.count == batch.sequences
              && batch.prefixOf.allSatisfy { $0 >= -1 && $0 < batch.prefixLengths.count }),
              batch.prefixLengths.allSatisfy({ $0 >= 1 }) else {
            throw PonderError.invalid("batch: prefixOf must name one of the \(batch.prefixLengths.count) prefixes (each ≥ 1 row) for each of \(batch.sequences) sequences, or be empty")
        }
        let layout = TrainingAttention(seqs: batch.sequences, t: batch.length, prefixLengths: batch.prefixLengths,
                                       prefixOf: batch.prefixOf, heads: c.numHeads, kvHeads: c.numKVHeads,
                                       headDim: c.headDim, qkvStride: c.qkvDim)
        if layout.probsCount > probs.count { probs = try Arena(count: layout.probsCount, zeroed: false) }
        if layout.scratchCount > dP.count { dP = try Arena(count: layout.scratchCount, zeroed: false) }
        attention = layout
        positions.removeAll(keepingCapacity: true)
        for p in batch.prefixLengths { positions += (0..<p).map { Int32($0) } }
        for s in 0..<batch.sequences {
            let k = batch.prefixOf.isEmpty ? -1 : batch.prefixOf[s], start = k < 0 ? 0 : batch.prefixLengths[k]
            positions += (0..<batch.length).map { Int32(start + $0) }
        }
    }

    func io(_ l: Int, model: LlamaModel) -> LayerIO {
        let b = layerBufs[checkpointing ? 0 : l]
        let n = rows * model.config.hiddenSize
        return LayerIO(xIn: xs.pointer + l * n, xMid: b.xMid, xOut: xs.pointer + (l + 1) * n, xn1: xn.pointer, xn2: xn.pointer,
                       qkv: b.qkv, attn: b.attn, gateUp: b.gateUp, h: h.pointer, rstd1: b.rstd1, rstd2: b.rstd2, loraU: b.loraU)
    }
}

extension LlamaModel {
    func trainLayerForward(_ l: Int, _ a: TrainActivations) {
        let io = a.io(l, model: self)
        let probs = a.probs.pointer
        a.positions.withUnsafeBufferPointer { pos in
            layerForward(l, rows: a.rows, positions: pos.baseAddress!, io: io) {
                a.attention.forward(out: io.attn, qkv: io.qkv, probs: probs)
            }
        }
    }

    /// Backward of trainLayerForward: the causal attention of each sequence, its weights
    /// recomputed from q and k rather than kept per layer.
    func trainLayerBackward(_ l: Int, _ a: TrainActivations, grads: UnsafeMutablePointer<Float>) {
        let io = a.io(l, model: self)
        let dio = LayerGradIO(dX: a.dX.pointer, dXn: a.dXn.pointer, dQKV: a.dQKV.pointer, dAttn: a.dAttn.pointer,
                              dGateUp: a.dGateUp.pointer, dH: a.dH.pointer, dU: a.dU.pointer)
        let probs = a.probs.pointer
        a.positions.withUnsafeBufferPointer { pos in
            layerBackward(l, rows: a.rows, positions: pos.baseAddress!, io: io, dio: dio, grads: grads) {
                a.attention.backward(dqkv: dio.dQKV, dOut: dio.dAttn, qkv: io.qkv, probs: probs, scratch: a.dP.pointer)
            }
        }
    }

    /// Training forward: runs the batch, keeps what backward needs, and returns
    /// log p(target) at every position (0 where the target is -1).
    public func trainForward(_ batch: TokenBatch, _ a: TrainActivations) throws -> [Float] {
        try trainForward(batch, a, entropy: nil)
    }

    /// As trainForward, also writing the entropy of the (temperature-scaled) distribution at
    /// every scored position into `entropy` (rows entries; 0 elsewhere), a GRPO metric.
    public func trainForward(_ batch: TokenBatch, _ a: TrainActivations, entropy: UnsafeMutablePointer<Float>?) throws -> [Float] {
        let c = config
        guard batch.tokens.count == batch.rows, batch.targets.count == batch.tokens.count else {
            throw PonderError.invalid("batch: \(batch.tokens.count) tokens and \(batch.targets.count) targets for \(batch.rows) rows")
        }
        a.kept = nil
        try a.reshape(batch, c)
        try checkVocabBounds(batch.targets.filter { $0 >= 0 }, "targets")
        try batch.tokens.withUnsafeBufferPointer { try embed($0.baseAddress!, rows: a.rows, into: a.xs.pointer) }
        for l in 0..<c.numLayers { trainLayerForward(l, a) }
        let d = c.hiddenSize
        rmsnormForward(a.xnF.pointer, rstd: a.rstdF.pointer, a.xs.pointer + c.numLayers * a.rows * d, w.norm,
                       rows: a.rows, dim: d, eps: c.rmsNormEps)
        var logp = [Float](repeating: 0, count: a.rows)
        let scored = batch.targets.indices.filter { batch.targets[$0] >= 0 }
        guard batch.temperature > 0, batch.temperature.isFinite else { throw PonderError.invalid("batch: temperature \(batch.temperature)") }
        let invT = 1 / batch.temperature
        entropy?.update(repeating: 0, count: a.rows)
        let v = c.vocabSize, lse = a.lse.pointer
        logp.withUnsafeMutableBufferPointer { lp in
            let lp = lp.baseAddress!
            forEachHeadChunk(scored, a) { rows, x, lg in
                parallelFor(rows.count) { i in
                    let r = rows[rows.startIndex + i], row = lg + i * v
                    if invT != 1 { scaleInPlace(row, v, by: invT) }
                    lse[r] = logSumExp(row, v)
                    lp[r] = row[Int(batch.targets[r])] - lse[r]
                    if let entropy { entropy[r] = lse[r] - softmaxMean(row, v, lse: lse[r]) }
                }
            }
        }
        a.kept = a.keepsLogits && scored.count <= a.chunk ? (scored, invT) : nil
        return logp
    }

    /// Runs the LM head over `rows` (only positions that have a target: prompt and padding rows
    /// need no logits), a.chunk at a time: body(rowIDs, gathered final-norm rows, logits).
    /// `compute: false` leaves the logits buffer as the last forward left it (a.kept).
    func forEachHeadChunk(_ rows: [Int], _ a: TrainActivations, compute: Bool = true,
                          _ body: (ArraySlice<Int>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let d = config.hiddenSize
        var k = 0
        while k < rows.count {
            let ids = rows[k..<min(k + a.chunk, rows.count)]
            let x = a.xnGathered.pointer
            for (i, r) in ids.enumerated() { (x + i * d).update(from: a.xnF.pointer + r * d, count: d) }
            if compute { w.lmHead.forward(a.logits.pointer, x, rows: ids.count, exact: true) }
            body(ids, x, a.logits.pointer)
            k += a.chunk
        }
    }

    func checkVocabBounds(_ ids: [Int32], _ what: String) throws {
        for (i, t) in ids.enumerated() where t < 0 || Int(t) >= config.vocabSize {
            throw PonderError.invalid("\(what)[\(i)]: token id \(t) outside [0, \(config.vocabSize))")
        }
    }

    /// Backward of trainForward for the loss L whose derivative with respect to each
    /// log p(target) is dLogp[i] (SFT: −weight; GRPO: its policy-gradient coefficient).
    /// Gradients accumulate into `grads`, laid out like the trainable parameters: the model's
    /// arena (full fine-tuning) or, when adapters are attached, the adapters' arena (the base
    /// model is then frozen and gets no gradient).
    public func trainBackward(_ batch: TokenBatch, _ a: TrainActivations, dLogp: [Float], grads: UnsafeMutablePointer<Float>) {
        let c = config
        let d = c.hiddenSize, rows = a.rows
        func g(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float>? { gradient(of: p, in: grads) }
        let dX = a.dX.pointer
        dX.update(repeating: 0, count: rows * d)
        // LM head, chunk by chunk: dlogits = c·(onehot − softmax(z/T))/T with c = dL/dlogp,
        // from the forward's logits when it kept them (rows with c = 0 then give zero rows).
        a.dXn.pointer.update(repeating: 0, count: rows * d)
        let invT = 1 / batch.temperature, v = c.vocabSize, lse = a.lse.pointer
        let withTarget = batch.targets.indices.filter { batch.targets[$0] >= 0 }
        let reuse = a.kept.map { $0.rows == withTarget && $0.invT == invT } ?? false
        let scored = reuse ? withTarget : withTarget.filter { dLogp[$0] != 0 }
        a.kept = nil
        forEachHeadChunk(scored, a, compute: !reuse) { rowIDs, x, lg in
            let n = rowIDs.count
            parallelFor(n) { i in
                let r = rowIDs[rowIDs.startIndex + i], row = lg + i * v
                if !reuse {
                    if invT != 1 { scaleInPlace(row, v, by: invT) }
                    lse[r] = logSumExp(row, v)
                }
                let coef = dLogp[r] * invT
                scaledExpInPlace(row, v, minus: lse[r], times: -coef)
                row[Int(batch.targets[r])] += coef
            }
            // dxnF = dlogits · W_head (scattered back to its rows) ; dW_head += dlogitsᵀ · xnF
            w.lmHead.backwardInput(a.gathered.pointer, lg, rows: n)
            for (i, r) in rowIDs.enumerated() { (a.dXn.pointer + r * d).update(from: a.gathered.pointer + i * d, count: d) }
            if let gh = g(w.lmHead.weight) { w.lmHead.accumulateGradient(gh, lg, x, rows: n) }
        }
        rmsnormBackward(dx: dX, dweight: g(w.norm), dout: a.dXn.pointer, x: a.xs.pointer + c.numLayers * rows * d,
                        weight: w.norm, rstd: a.rstdF.pointer, rows: rows, dim: d)

        for l in stride(from: c.numLayers - 1, through: 0, by: -1) {
            if a.checkpointing { trainLayerForward(l, a) }
            trainLayerBackward(l, a, grads: grads)
        }
        if let ge = g(w.embed) {
            for i in 0..<rows { addInPlace(ge + Int(batch.tokens[i]) * d, dX + i * d, d) }
        }
    }
}
