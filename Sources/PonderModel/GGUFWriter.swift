import PonderBase
import PonderKernels
import PonderText

extension LlamaModel {
    /// Writes the model as a GGUF v3 file llama.cpp runs: llama.cpp's metadata keys and tensor
    /// names, Q/K rows permuted back to its interleaved-RoPE layout (llama architecture), 2-D
    /// weights in `dtype`, vectors in F32 (as llama.cpp's converter does). Written atomically.
    public func saveGGUF(path: String, dtype: TensorDType = .f32, name: String = "ponder") throws {
        if !blocks.isEmpty { return try materialized().saveGGUF(path: path, dtype: dtype, name: name) }
        let c = config
        let arch = c.attentionBias ? "qwen2" : "llama"
        typealias KV = (String, GGUFFile.Value, UInt32)  // key, value, value type
        var kv: [KV] = [
            ("general.architecture", .string(arch), 8), ("general.name", .string(name), 8),
            ("general.file_type", .uint(dtype.fileType), 4),
            ("\(arch).context_length", .uint(UInt64(c.maxPositions)), 4),
            ("\(arch).embedding_length", .uint(UInt64(c.hiddenSize)), 4),
            ("\(arch).feed_forward_length", .uint(UInt64(c.intermediateSize)), 4),
            ("\(arch).block_count", .uint(UInt64(c.numLayers)), 4),
            ("\(arch).attention.head_count", .uint(UInt64(c.numHeads)), 4),
            ("\(arch).attention.head_count_kv", .uint(UInt64(c.numKVHeads)), 4),
            ("\(arch).attention.key_length", .uint(UInt64(c.headDim)), 4),
            ("\(arch).attention.value_length", .uint(UInt64(c.headDim)), 4),
            ("\(arch).rope.dimension_count", .uint(UInt64(c.headDim)), 4),
            ("\(arch).rope.freq_base", .float(Double(c.ropeTheta)), 6),
            ("\(arch).attention.layer_norm_rms_epsilon", .float(Double(c.rmsNormEps)), 6),
            ("\(arch).vocab_size", .uint(UInt64(c.vocabSize)), 4),
            ("tokenizer.ggml.model", .string("gpt2"), 8),
            ("tokenizer.ggml.pre", .string(tokenizer.pre.ggufName), 8),
            ("tokenizer.ggml.tokens", .array(tokenizer.tokens.map { .string($0) }), 9),
            ("tokenizer.ggml.token_type", .array((0..<tokenizer.vocabSize).map { .int(tokenizer.isSpecialToken(Int32($0)) ? 3 : 1) }), 9),
            ("tokenizer.ggml.merges", .array(tokenizer.mergeRules.map { .string($0) }), 9),
            ("tokenizer.ggml.add_bos_token", .bool(tokenizer.addBOS), 7),
        ]
        if let b = tokenizer.bos { kv.append(("tokenizer.ggml.bos_token_id", .uint(UInt64(b)), 4)) }
        if let e = tokenizer.eos {
            kv.append(("tokenizer.ggml.eos_token_id", .uint(UInt64(e)), 4))
            kv.append(("tokenizer.ggml.padding_token_id", .uint(UInt64(e)), 4))
        }
        if let j = tokenizer.chatTemplate.jinja { kv.append(("tokenizer.chat_template", .string(j), 8)) }

        var out = GGUFBytes()
        out.u32(0x4655_4747)
        out.u32(3)
        out.u64(UInt64(layout.entries.count))
        out.u64(UInt64(kv.count))
        for (k, v, t) in kv {
            out.string(k)
            out.u32(t)
            out.value(v, type: t, elementType: k == "tokenizer.ggml.token_type" ? 5 : 8)
        }
        let alignment = 32
        var offset = 0
        var plan: [(ParameterLayout.Entry, GGMLType, Int)] = []
        for e in layout.entries {
            let output = e.name == "lm_head.weight" || (c.tieWordEmbeddings && e.name == "model.embed_tokens.weight")
            let type = ggufType(e.shape, dtype, output: output)
            out.string(ggufName(e.name))
            out.u32(UInt32(e.shape.count))
            for d in e.shape.reversed() { out.u64(UInt64(d)) }
            out.u32(type.rawValue)
            out.u64(UInt64(offset))
            plan.append((e, type, offset))
            offset += (e.count / type.blockSize * type.blockBytes + alignment - 1) / alignment * alignment
        }
        while out.bytes.count % alignment != 0 { out.bytes.append(0) }
        let f = try AtomicFile(path: path)
        try f.write(out.bytes)
        let base = f.offset
        let permute = arch == "llama"
        let tmp = try Arena(count: layout.entries.map(\.count).max() ?? 1)
        for (e, type, off) in plan {
            while f.offset < base + off { try f.write([0]) }
            var src = UnsafePointer(weights.pointer + e.offset)
            if permute && (e.name.hasSuffix("q_proj.weight") || e.name.hasSuffix("k_proj.weight")) {
                let heads = e.name.hasSuffix("q_proj.weight") ? c.numHeads : c.numKVHeads
                convertRoPERows(from: src, to: tmp.pointer, heads: heads, headDim: c.headDim, cols: e.shape[1], toGGUF: true)
                src = UnsafePointer(tmp.pointer)
            }
            switch type {
            case .f32: try writeData(f, src, e.count, .f32)
            case .f16: try writeData(f, src, e.count, .f16)
            case .bf16: try writeData(f, src, e.count, .bf16)
            default: try writeBlocks(f, src, rows: e.shape[0], cols: e.shape[1], type: type)
            }
        }
        try f.commit()
    }
}

extension PreTokenizer {
    /// The `tokenizer.ggml.pre` name llama.cpp uses for this split.
    public var ggufName: String {
        switch self {
        case .gpt2: return "gpt-2"
        case .smollm: return "smollm"
        case .llama3: return "llama-bpe"
        case .qwen2: return "qwen2"
        }
    }
}

struct GGUFBytes {
    var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }
    /// `elementType` is the GGUF type of an array's items (an empty array still needs one).
    mutating func value(_ v: GGUFFile.Value, type: UInt32, elementType: UInt32) {
        switch (v, type) {
        case let (.string(s), 8): string(s)
        case let (.uint(x), 4): u32(UInt32(x))
        case let (.float(x), 6): u32(Float(x).bitPattern)
        case let (.bool(b), 7): bytes.append(b ? 1 : 0)
        case let (.array(items), 9):
            u32(elementType)
            u64(UInt64(items.count))
            for i in items {
                switch i {
                case let .string(s): string(s)
                case let .int(x): u32(UInt32(bitPattern: Int32(x)))
                default: break
                }
            }
        default: break
        }
    }
}

/// A tensor's GGUF type for `dtype`: vectors stay F32 (as llama.cpp's converter writes them).
/// As llama.cpp's quantize tool: the output matrix (the LM head, or the embedding it is tied
/// to) gets Q6_K in every block type but Q8_0 — the logits are the most sensitive product —,
/// and rows a block cannot cover fall back: a K-quant needs rows of 256 (Q4_K → Q5_0,
/// Q6_K → Q8_0: SmolLM2's 576-wide rows take these), every block type rows of 32 (else F16).
func ggufType(_ shape: [Int], _ dtype: TensorDType, output: Bool = false) -> GGMLType {
    guard shape.count == 2 else { return .f32 }
    let cols = shape[1]
    var t: GGMLType
    switch dtype {
    case .f32: return .f32
    case .f16: return .f16
    case .bf16: return .bf16
    case .q8_0: t = .q8_0
    case .q5_0: t = .q5_0
    case .q4_0: t = .q4_0
    case .q4_1: t = .q4_1
    case .q4_k: t = .q4_K
    case .q6_k: t = .q6_K
    }
    if output && t != .q8_0 { t = .q6_K }
    if cols % t.blockSize != 0 { t = t == .q4_K ? .q5_0 : t == .q6_K ? .q8_0 : t }
    return cols % t.blockSize == 0 ? t : .f16
}

/// rows × cols floats in block type `type`, quantized as ggml's reference quantizers do
/// (CPonderQuant/quantize.c): the bytes llama.cpp's quantize tool writes without an importance
/// matrix. A row at a time, so the buffer is one row's blocks.
func writeBlocks(_ f: AtomicFile, _ x: UnsafePointer<Float>, rows: Int, cols: Int, type: GGMLType) throws {
    let rowBytes = cols / type.blockSize * type.blockBytes
    var buf = [UInt8](repeating: 0, count: rowBytes)
    for r in 0..<rows {
        let ok = buf.withUnsafeMutableBytes { quantizeRow(type: Int32(type.rawValue), x + r * cols, count: cols, into: $0.baseAddress!) }
        guard ok else { throw PonderError(.internal, "no quantizer for \(type) rows of \(cols)") }
        try f.write(buf)
    }
}
