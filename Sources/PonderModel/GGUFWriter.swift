import PonderBase
import PonderText

extension LlamaModel {
    /// Writes the model as a GGUF v3 file llama.cpp runs: llama.cpp's metadata keys and tensor
    /// names, Q/K rows permuted back to its interleaved-RoPE layout (llama architecture), 2-D
    /// weights in `dtype`, vectors in F32 (as llama.cpp's converter does). Written atomically.
    public func saveGGUF(path: String, dtype: TensorDType = .f32, name: String = "ponder") throws {
        let c = config
        let arch = c.attentionBias ? "qwen2" : "llama"
        typealias KV = (String, GGUFFile.Value, UInt32)  // key, value, value type
        var kv: [KV] = [
            ("general.architecture", .string(arch), 8), ("general.name", .string(name), 8),
            // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7.
            ("general.file_type", .uint(dtype == .f32 ? 0 : dtype == .f16 ? 1 : 7), 4),
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
            let type = ggufType(e.shape, dtype)
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
            if type == .q8_0 { try writeQ8_0(f, src, e.count) } else { try writeData(f, src, e.count, type == .f16 ? .f16 : .f32) }
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

/// A tensor's GGUF type for `dtype`: vectors stay F32 (as llama.cpp's converter writes them);
/// with q8_0, a matrix whose rows are not a multiple of 32 is written F16, as the converter falls
/// back when a row cannot be cut into blocks.
func ggufType(_ shape: [Int], _ dtype: TensorDType) -> GGMLType {
    guard shape.count == 2 else { return .f32 }
    switch dtype {
    case .f32: return .f32
    case .f16: return .f16
    case .q8_0: return shape[1] % 32 == 0 ? .q8_0 : .f16
    }
}

/// ggml's quantize_row_q8_0_ref: per block of 32, d = max|x| / 127 (stored as f16) and
/// q = round(x / d), half away from zero — the same bytes as llama.cpp and gguf-py write.
func writeQ8_0(_ f: AtomicFile, _ x: UnsafePointer<Float>, _ n: Int) throws {
    var buf = [UInt8](repeating: 0, count: 34 * 1024)
    var i = 0
    while i < n {
        let blocks = min(1024, (n - i) / 32)
        for b in 0..<blocks {
            let p = x + i + 32 * b
            var amax: Float = 0
            for j in 0..<32 { amax = max(amax, abs(p[j])) }
            let d = amax / 127, id: Float = d != 0 ? 1 / d : 0
            let bits = Float16(d).bitPattern
            buf[34 * b] = UInt8(bits & 0xFF)
            buf[34 * b + 1] = UInt8(bits >> 8)
            for j in 0..<32 { buf[34 * b + 2 + j] = UInt8(bitPattern: Int8((p[j] * id).rounded())) }
        }
        try buf.withUnsafeBytes { try f.write($0.baseAddress!, count: 34 * blocks) }
        i += 32 * blocks
    }
}

