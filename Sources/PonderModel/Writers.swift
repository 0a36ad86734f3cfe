import PonderBase
import PonderJSON
import PonderText

/// A tensor to write: a name, a shape (HF order, [out, in]) and fp32 data.
public struct TensorRef {
    public let name: String
    public let shape: [Int]
    public let data: UnsafePointer<Float>
    public init(name: String, shape: [Int], data: UnsafePointer<Float>) {
        self.name = name
        self.shape = shape
        self.data = data
    }
    public var count: Int { shape.reduce(1, *) }
}

/// The type 2-D weights are written in. q8_0 (llama.cpp's 8-bit blocks of 32) is GGUF only.
public enum TensorDType: String, Sendable, CaseIterable {
    case f32, f16, bf16, q8_0, q5_0, q4_0, q4_1, q4_k, q6_k

    /// ggml's block formats: written to GGUF files only.
    public var isBlockFormat: Bool { self != .f32 && self != .f16 && self != .bf16 }

    /// The names a dtype field accepts, for error messages.
    public static var names: String { allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") }

    /// llama_ftype of a file written in this dtype (general.file_type).
    var fileType: UInt64 {
        switch self {
        case .f32: 0
        case .f16: 1
        case .bf16: 32
        case .q4_0: 2
        case .q4_1: 3
        case .q8_0: 7
        case .q5_0: 8
        case .q4_k: 14  // MOSTLY_Q4_K_S: every matrix Q4_K where its rows allow
        case .q6_k: 18
        }
    }
}

/// Writes a safetensors file atomically (Hugging Face's format: u64 header length, JSON header,
/// raw little-endian data).
public func writeSafetensors(_ path: String, _ tensors: [TensorRef], dtype: TensorDType = .f32,
                             metadata: [(String, String)] = [("format", "pt")]) throws {
    let width = dtype == .f32 ? 4 : 2
    let name = dtype == .f32 ? "F32" : dtype == .bf16 ? "BF16" : "F16"
    var fields: [(String, JSONValue)] = [("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) }))]
    var off = 0
    for t in tensors {
        let n = t.count * width
        fields.append((t.name, .object([("dtype", .string(name)),
                                        ("shape", .array(t.shape.map { .int(Int64($0)) })),
                                        ("data_offsets", .array([.int(Int64(off)), .int(Int64(off + n))]))])))
        off += n
    }
    var header = Array(JSONValue.object(fields).serialized().utf8)
    while (header.count + 8) % 8 != 0 { header.append(0x20) }  // keep data 8-byte aligned
    let f = try AtomicFile(path: path)
    var len = UInt64(header.count).littleEndian
    try f.write(&len, count: 8)
    try f.write(header)
    for t in tensors { try writeData(f, t.data, t.count, dtype) }
    try f.commit()
}

/// fp32 → bfloat16, rounding to nearest even (torch's conversion); NaN stays a quiet NaN.
@inline(__always) func bfloat16Bits(_ x: Float) -> UInt16 {
    if x.isNaN { return 0x7FC0 }
    let b = x.bitPattern
    return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
}

func writeData(_ f: AtomicFile, _ p: UnsafePointer<Float>, _ n: Int, _ dtype: TensorDType) throws {
    if dtype == .f32 {
        try f.write(p, count: n * 4)
        return
    }
    var buf = [UInt16](repeating: 0, count: min(n, 1 << 16))
    var i = 0
    while i < n {
        let k = min(buf.count, n - i)
        if dtype == .bf16 {
            for j in 0..<k { buf[j] = bfloat16Bits(p[i + j]).littleEndian }
        } else {
            for j in 0..<k { buf[j] = Float16(p[i + j]).bitPattern.littleEndian }
        }
        try buf.withUnsafeBytes { try f.write($0.baseAddress!, count: k * 2) }
        i += k
    }
}

extension Tokenizer {
    /// tokenizer.json in Hugging Face's format, with the pre-tokenizer that reproduces `pre`.
    public var hfTokenizerJSON: JSONValue {
        var vocab: [(String, JSONValue)] = []
        for (i, t) in tokens.enumerated() { vocab.append((t, .int(Int64(i)))) }
        let added: [JSONValue] = specials.sorted { $0.id < $1.id }.map { s in
            .object([("id", .int(Int64(s.id))), ("content", .string(s.text)), ("single_word", false), ("lstrip", false),
                     ("rstrip", false), ("normalized", false), ("special", true)])
        }
        let byteLevel: JSONValue = .object([("type", "ByteLevel"), ("add_prefix_space", false), ("trim_offsets", true),
                                            ("use_regex", .bool(pre == .gpt2 || pre == .smollm))])
        let preTok: JSONValue
        switch pre {
        case .gpt2: preTok = byteLevel
        case .smollm:
            preTok = .object([("type", "Sequence"), ("pretokenizers", .array([
                .object([("type", "Digits"), ("individual_digits", true)]), byteLevel]))])
        case .llama3, .qwen2:
            let digits = pre == .llama3 ? "\\p{N}{1,3}" : "\\p{N}"
            let regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\(digits)| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
            preTok = .object([("type", "Sequence"), ("pretokenizers", .array([
                .object([("type", "Split"), ("pattern", .object([("Regex", .string(regex))])), ("behavior", "Isolated"),
                         ("invert", false)]), byteLevel]))])
        }
        return .object([
            ("version", "1.0"), ("truncation", nil), ("padding", nil), ("added_tokens", .array(added)),
            ("normalizer", nil), ("pre_tokenizer", preTok), ("post_processor", nil),
            ("decoder", .object([("type", "ByteLevel"), ("add_prefix_space", true), ("trim_offsets", true), ("use_regex", true)])),
            ("model", .object([("type", "BPE"), ("dropout", nil), ("unk_token", nil), ("continuing_subword_prefix", nil),
                               ("end_of_word_suffix", nil), ("fuse_unk", false), ("byte_fallback", false),
                               ("ignore_merges", .bool(ignoreMerges)), ("vocab", .object(vocab)),
                               ("merges", .array(mergeRules.map { .string($0) }))])),
        ])
    }

    /// tokenizer_config.json: special tokens and the chat template as Jinja.
    public var hfTokenizerConfigJSON: JSONValue {
        var f: [(String, JSONValue)] = [("tokenizer_class", "PreTrainedTokenizerFast"), ("clean_up_tokenization_spaces", false)]
        if let b = bos { f.append(("bos_token", .string(tokens[Int(b)]))) }
        if let e = eos { f.append(("eos_token", .string(tokens[Int(e)]))); f.append(("pad_token", .string(tokens[Int(e)]))) }
        if let j = chatTemplate.jinja { f.append(("chat_template", .string(j))) }
        return .object(f)
    }
}

extension ChatTemplate {
    /// The Jinja source transformers' apply_chat_template runs for this format.
    public var jinja: String? {
        switch self {
        case .none: return nil
        case let .chatml(sys):
            let first = sys.map { "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n\($0)<|im_end|>\n' }}{% endif %}" } ?? ""
            return "{% for message in messages %}\(first){{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        case .llama3:
            return "{{ '<|begin_of_text|>' }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
        }
    }
}

extension LlamaModel {
    /// Every weight as a TensorRef under its HF name.
    public var tensorRefs: [TensorRef] {
        layout.entries.map { TensorRef(name: $0.name, shape: $0.shape, data: weights.pointer + $0.offset) }
    }

    /// A Hugging Face model directory transformers loads directly: config.json,
    /// model.safetensors, tokenizer.json, tokenizer_config.json (each written atomically).
    public func saveHF(directory dir: String, dtype: TensorDType = .f32) throws {
        guard !dtype.isBlockFormat else { throw PonderError.invalid("dtype: \"\(dtype.rawValue)\" is written to GGUF files only") }
        // Weights in blocks are written from their fp32 values.
        if !blocks.isEmpty { return try materialized().saveHF(directory: dir, dtype: dtype) }
        try makeDirectories(dir)
        var cfg = config.hfConfigJSON(bos: tokenizer.bos, eos: tokenizer.eos)
        if dtype != .f32, case var .object(f) = cfg {
            f.removeAll { $0.0 == "torch_dtype" }
            f.append(("torch_dtype", .string(dtype == .bf16 ? "bfloat16" : "float16")))
            cfg = .object(f)
        }
        try AtomicFile.write(dir + "/config.json", cfg.serialized())
        try writeSafetensors(dir + "/model.safetensors", tensorRefs, dtype: dtype)
        try AtomicFile.write(dir + "/tokenizer.json", tokenizer.hfTokenizerJSON.serialized())
        try AtomicFile.write(dir + "/tokenizer_config.json", tokenizer.hfTokenizerConfigJSON.serialized())
    }
}
