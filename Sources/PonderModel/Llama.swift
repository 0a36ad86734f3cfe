import PonderBase
import PonderJSON
import PonderKernels
import PonderText

/// A Llama-family model: config, weights in one arena, tokenizer. Immutable after load, so one
/// instance may serve generation on several threads at once (each call owns its scratch).
public final class LlamaModel: @unchecked Sendable {
    public let config: LlamaConfig
    public let layout: ParameterLayout
    public let weights: Arena
    public let tokenizer: Tokenizer
    public let rope: RoPETable
    let w: ModelWeights
    /// Unmerged LoRA adapters applied in every forward (set before use, not while generating).
    public var adapters: LoRAAdapters?
    /// Matrices kept in their file's block format, by name (empty: every weight is in `weights`,
    /// and those names' slots in it are never written or read).
    public let blocks: [String: QuantizedTensor]
    /// Keeps the memory `blocks` points into alive: the file's mapping and any reordered copies.
    let blockStorage: [AnyObject]
    /// Block weights multiply fp32 activations instead of 8-bit ones: set by trainers, so that
    /// sampling, scoring and the gradient all see the same distribution.
    public var exactProducts = false

    public init(config: LlamaConfig, layout: ParameterLayout, weights: Arena, tokenizer: Tokenizer,
                blocks: [String: QuantizedTensor] = [:], blockStorage: [AnyObject] = []) throws {
        try config.validate("model")
        // Every id the tokenizer can produce must have an embedding row (a padded embedding
        // with more rows than tokens is fine: such ids decode to nothing).
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw PonderError.format("model: the tokenizer has \(tokenizer.vocabSize) tokens, the embedding only \(config.vocabSize) rows")
        }
        guard layout.count == weights.count else {
            throw PonderError(.internal, "model: \(weights.count) weights for a layout of \(layout.count)")
        }
        self.config = config
        self.layout = layout
        self.weights = weights
        self.tokenizer = tokenizer
        self.rope = RoPETable(headDim: config.headDim, maxPositions: config.maxPositions, theta: config.ropeTheta)
        self.blocks = blocks
        self.blockStorage = blockStorage
        self.w = ModelWeights(layout: layout, config: config, base: weights.pointer, blocks: blocks)
    }

    /// Activation buffers for `rows` tokens at a time, allocated once per call and reused for
    /// every layer and every decode step.
    final class Scratch {
        let x, xn, qkv, attn, gateUp, h, loraU: UnsafeMutablePointer<Float>
        let storage: Arena

        init(_ c: LlamaConfig, rows: Int, loraWidth: Int = 0) throws {
            let sizes = [c.hiddenSize, c.hiddenSize, c.qkvDim, c.qDim, 2 * c.intermediateSize, c.intermediateSize,
                         max(1, loraWidth)]
            storage = try Arena(count: sizes.reduce(0) { $0 + ($1 * rows + 15) / 16 * 16 })
            var p = storage.pointer
            var views: [UnsafeMutablePointer<Float>] = []
            for s in sizes {
                views.append(p)
                p += (s * rows + 15) / 16 * 16
            }
            (x, xn, qkv, attn, gateUp, h, loraU) = (views[0], views[1], views[2], views[3], views[4], views[5], views[6])
        }
    }

    /// Writes the embeddings of `tokens` into x. The one way ids reach the embedding table,
    /// so the one place they are checked: an id past the table would read other weights.
    func embed(_ tokens: UnsafePointer<Int32>, rows: Int, into x: UnsafeMutablePointer<Float>) throws {
        let d = config.hiddenSize, vocab = UInt32(config.vocabSize)
        for r in 0..<rows where UInt32(bitPattern: tokens[r]) >= vocab {
            throw PonderError.invalid("tokens[\(r)]: token id \(tokens[r]) is outside the embedding table [0, \(vocab))")
        }
        if let e = w.embedBlocks {
            for r in 0..<rows { e.row(Int(tokens[r]), into: x + r * d) }
        } else {
            for r in 0..<rows { (x + r * d).update(from: w.embed + Int(tokens[r]) * d, count: d) }
        }
    }

    /// The transformer blocks over `rows` tokens held in s.x, updated in place. `attend(layer)`
    /// reads the rotated q/k/v in s.qkv ([rows × qkvDim]), stores k/v in its cache, and writes
    /// the attention output to s.attn ([rows × qDim]).
    func blocks(rows: Int, positions: UnsafePointer<Int32>, _ s: Scratch, attend: (Int) -> Void) {
        let io = LayerIO(xIn: s.x, xMid: s.x, xOut: s.x, xn1: s.xn, xn2: s.xn, qkv: s.qkv, attn: s.attn,
                         gateUp: s.gateUp, h: s.h, rstd1: nil, rstd2: nil, loraU: s.loraU)
        for l in 0..<config.numLayers {
            layerForward(l, rows: rows, positions: positions, io: io) { attend(l) }
        }
    }

    /// Copies row r's rotated key and value out of s.qkv (kvDim floats each).
    @inline(__always)
    func storeKV(_ s: Scratch, row r: Int, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>) {
        let c = config
        k.update(from: s.qkv + r * c.qkvDim + c.qDim, count: c.kvDim)
        v.update(from: s.qkv + r * c.qkvDim + c.qDim + c.kvDim, count: c.kvDim)
    }

    /// Runs `tokens` from position 0 as one batch of rows, keeping every layer's keys and
    /// values in k/v ([layers × n × kvDim]); s.x then holds the final hidden states.
    /// scores: n·n floats.
    func prefill(_ tokens: [Int32], _ s: Scratch, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                 scores: UnsafeMutablePointer<Float>) throws {
        let c = config, n = tokens.count
        let positions = (0..<Int32(n)).map { $0 }
        try tokens.withUnsafeBufferPointer { try embed($0.baseAddress!, rows: n, into: s.x) }
        positions.withUnsafeBufferPointer { pos in
            blocks(rows: n, positions: pos.baseAddress!, s) { l in
                let kl = k + l * n * c.kvDim, vl = v + l * n * c.kvDim
                for r in 0..<n { storeKV(s, row: r, k: kl + r * c.kvDim, v: vl + r * c.kvDim) }
                attentionPrefill(out: s.attn, q: s.qkv, k: kl, v: vl, t: n, past: 0, heads: c.numHeads,
                                 kvHeads: c.numKVHeads, headDim: c.headDim, qStride: c.qkvDim, scores: scores)
            }
        }
    }

    /// logits[rows × vocab] for rows `first..<first+rows` of s.x (final norm, then LM head).
    func logits(_ s: Scratch, first: Int, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let d = config.hiddenSize
        rmsnormForward(s.xn, rstd: nil, s.x + first * d, w.norm, rows: rows, dim: d, eps: config.rmsNormEps)
        w.lmHead.forward(out, s.xn, rows: rows, exact: exactProducts)
    }

    /// Logits at every position of `tokens` (one sequence from position 0), [n × vocab].
    /// The plain full forward: used by tests and scoring, not by generation.
    public func forwardLogits(_ tokens: [Int32]) throws -> [Float] {
        try tokenizer.validate(tokens, what: "tokens")
        let n = tokens.count, c = config
        guard n > 0, n <= c.maxPositions else { throw PonderError.invalid("tokens: length \(n) not in [1, \(c.maxPositions)]") }
        let s = try Scratch(c, rows: n, loraWidth: adapters?.width ?? 0)
        let k = try Arena(count: c.numLayers * n * c.kvDim), v = try Arena(count: c.numLayers * n * c.kvDim)
        let scores = try Arena(count: n * n)
        try prefill(tokens, s, k: k.pointer, v: v.pointer, scores: scores.pointer)
        var out = [Float](repeating: 0, count: n * c.vocabSize)
        out.withUnsafeMutableBufferPointer { logits(s, first: 0, rows: n, into: $0.baseAddress!) }
        return out
    }
}

extension LlamaModel {
    /// The same weights all in fp32 (self when none is in blocks), without adapters: for writing
    /// files, merging LoRA into, and full fine-tuning.
    public func materialized() throws -> LlamaModel {
        blocks.isEmpty ? self : try expandedCopy()
    }

    /// A new model owning an fp32 copy of every weight (blocks expanded), without adapters.
    func expandedCopy() throws -> LlamaModel {
        let arena = try Arena(count: layout.count)
        for e in layout.entries {
            let dst = arena.pointer + e.offset
            if let b = blocks[e.name] {
                QuantizedMatrix([(Int32(b.type.rawValue), b.data, b.rowBytes, b.rows)], inDim: b.cols).dequantize(into: dst)
            } else {
                dst.update(from: weights.pointer + e.offset, count: e.count)
            }
        }
        return try LlamaModel(config: config, layout: layout, weights: arena, tokenizer: tokenizer)
    }

    /// Bytes the weights occupy: the blocks (mapped or copied) and the fp32 tensors.
    public var weightBytes: Int {
        layout.entries.reduce(0) { $0 + (blocks[$1.name]?.bytes ?? 4 * $1.count) }
    }

    /// Shape and tokenizer facts, as ponder_model_info reports them.
    public var info: JSONValue {
        let c = config, t = tokenizer
        let template: String
        switch t.chatTemplate {
        case .chatml: template = "chatml"
        case .llama3: template = "llama3"
        case .none: template = "none"
        }
        func int(_ x: Int) -> JSONValue { .int(Int64(x)) }
        func id(_ x: Int32?) -> JSONValue { x.map { .int(Int64($0)) } ?? .null }
        let params = layout.entries.reduce(0) { $0 + $1.count }
        var f: [(String, JSONValue)] = []
        f.append(("vocab_size", int(c.vocabSize)))
        f.append(("hidden_size", int(c.hiddenSize)))
        f.append(("intermediate_size", int(c.intermediateSize)))
        f.append(("num_layers", int(c.numLayers)))
        f.append(("num_heads", int(c.numHeads)))
        f.append(("num_kv_heads", int(c.numKVHeads)))
        f.append(("head_dim", int(c.headDim)))
        f.append(("context_length", int(c.maxPositions)))
        f.append(("rope_theta", .double(Double(c.ropeTheta))))
        f.append(("tie_word_embeddings", .bool(c.tieWordEmbeddings)))
        f.append(("parameters", int(params)))
        f.append(("weights", .string(blocks.isEmpty ? "f32" : "native")))
        f.append(("weight_bytes", int(weightBytes)))
        f.append(("tensor_types", .object(layout.entries.map { ($0.name, .string(blocks[$0.name]?.type.description ?? "F32")) })))
        f.append(("bos_token_id", id(t.bos)))
        f.append(("eos_token_id", id(t.eos)))
        f.append(("pre_tokenizer", .string(t.pre.rawValue)))
        f.append(("chat_template", .string(template)))
        if !t.notes.isEmpty { f.append(("notes", .array(t.notes.map { .string($0) }))) }
        return .object(f)
    }
}
