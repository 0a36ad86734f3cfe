import PonderBase
import PonderJSON

/// The shape of a Llama-family model (Llama-2/3, SmolLM2, Qwen2 with q/k/v bias).
public struct LlamaConfig: Equatable, Sendable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var ropeTheta: Float
    public var rmsNormEps: Float
    public var maxPositions: Int
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool

    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numLayers: Int, numHeads: Int,
                numKVHeads: Int, headDim: Int? = nil, ropeTheta: Float = 10000, rmsNormEps: Float = 1e-5,
                maxPositions: Int = 2048, tieWordEmbeddings: Bool = true, attentionBias: Bool = false) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim ?? (numHeads > 0 ? hiddenSize / numHeads : 0)
        self.ropeTheta = ropeTheta
        self.rmsNormEps = rmsNormEps
        self.maxPositions = maxPositions
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
    }

    public var qDim: Int { numHeads * headDim }
    public var kvDim: Int { numKVHeads * headDim }
    public var qkvDim: Int { qDim + 2 * kvDim }

    /// Rejects shapes the kernels cannot run, before any allocation.
    public func validate(_ what: String) throws {
        func check(_ ok: Bool, _ msg: String) throws { if !ok { throw PonderError.format("\(what): \(msg)") } }
        try check(vocabSize > 0 && vocabSize <= 4_000_000, "vocab size \(vocabSize) out of range")
        try check(hiddenSize > 0 && hiddenSize <= 65536, "hidden size \(hiddenSize) out of range")
        try check(intermediateSize > 0 && intermediateSize <= 262_144, "intermediate size \(intermediateSize) out of range")
        try check(numLayers > 0 && numLayers <= 512, "layer count \(numLayers) out of range")
        try check(numHeads > 0 && numHeads <= 4096 && numKVHeads > 0 && numHeads % numKVHeads == 0,
                  "head counts \(numHeads)/\(numKVHeads): heads must be a positive multiple of kv heads")
        try check(headDim > 0 && headDim % 2 == 0 && headDim <= 1024, "head dim \(headDim) must be even and positive")
        // Bounded above, every product the layout forms (e.g. qkvDim × hiddenSize × layers)
        // fits in Int with room to spare; the arena is still sized before it is allocated.
        try check(numHeads * headDim <= 1 << 18, "heads × head dim \(numHeads) × \(headDim) out of range")
        try check(maxPositions > 0 && maxPositions <= 1 << 20, "context length \(maxPositions) out of range")
        try check(ropeTheta > 0 && ropeTheta.isFinite, "rope theta \(ropeTheta) must be positive")
        try check(rmsNormEps > 0 && rmsNormEps.isFinite, "rms norm eps \(rmsNormEps) must be positive")
    }

    /// From a Hugging Face config.json.
    public init(hfConfig v: JSONValue, what: String) throws {
        func int(_ k: String, _ def: Int? = nil) throws -> Int {
            if let x = v[k]?.asInt { return Int(x) }
            if let def { return def }
            throw PonderError.format("\(what): \(k) missing or not an integer")
        }
        let arch = v["model_type"]?.asString ?? "llama"
        guard ["llama", "qwen2", "mistral"].contains(arch) else {
            throw PonderError(.unsupported, "\(what): model_type \"\(arch)\" (llama, qwen2, mistral are supported)")
        }
        let heads = try int("num_attention_heads")
        func bool(_ k: String) throws -> Bool {
            guard let x = v[k], x != .null else { return false }
            guard case let .bool(b) = x else { throw PonderError.format("\(what): \(k) must be true or false, got \(x.serialized())") }
            return b
        }
        // Fields that would change the model's meaning if ignored.
        if let f = v["partial_rotary_factor"], f != .null, f.asDouble != 1 {
            throw PonderError(.unsupported, "\(what): partial_rotary_factor \(f.serialized()): rotary embeddings over part of a head are not supported")
        }
        let tied = try bool("tie_word_embeddings"), bias = try bool("attention_bias")
        self.init(vocabSize: try int("vocab_size"), hiddenSize: try int("hidden_size"),
                  intermediateSize: try int("intermediate_size"), numLayers: try int("num_hidden_layers"),
                  numHeads: heads, numKVHeads: try int("num_key_value_heads", heads),
                  headDim: v["head_dim"]?.asInt.map { Int($0) },
                  // transformers ≥ 5 writes rope_parameters.rope_theta instead of rope_theta
                  ropeTheta: Float(v["rope_theta"]?.asDouble ?? v["rope_parameters"]?["rope_theta"]?.asDouble ?? 10000),
                  rmsNormEps: Float(v["rms_norm_eps"]?.asDouble ?? 1e-6),
                  maxPositions: try int("max_position_embeddings", 2048),
                  tieWordEmbeddings: tied,
                  attentionBias: arch == "qwen2" || bias)
        let ropeType = v["rope_scaling"]?["rope_type"]?.asString ?? v["rope_parameters"]?["rope_type"]?.asString ?? "default"
        if ropeType != "default" {
            throw PonderError(.unsupported, "\(what): rope_scaling is not supported yet")
        }
        try validate(what)
    }

    /// From GGUF metadata (`<arch>.*` keys written by llama.cpp's converter).
    public init(gguf f: GGUFFile) throws {
        let what = f.file.path
        guard let arch = f["general.architecture"]?.string else { throw PonderError.format("\(what): general.architecture missing") }
        guard arch == "llama" || arch == "qwen2" else {
            throw PonderError(.unsupported, "\(what): architecture \"\(arch)\" (llama and qwen2 are supported)")
        }
        func int(_ k: String, _ def: Int? = nil) throws -> Int {
            if let x = f["\(arch).\(k)"]?.int { return x }
            if let def { return def }
            throw PonderError.format("\(what): \(arch).\(k) missing or not an integer")
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let vocab = f["\(arch).vocab_size"]?.int ?? f["tokenizer.ggml.tokens"]?.arrayCount ?? 0
        // The head size and what rotates: Ponder's attention rotates whole heads whose keys and
        // values have one size; a file that says otherwise is refused by name, not run wrong.
        let keyLength = f["\(arch).attention.key_length"]?.int, ropeDims = f["\(arch).rope.dimension_count"]?.int
        let headDim = keyLength ?? ropeDims ?? (heads > 0 ? hidden / heads : 0)
        if let r = ropeDims, r != headDim {
            throw PonderError(.unsupported, "\(what): \(arch).rope.dimension_count \(r) differs from the head size \(headDim): rotary embeddings over part of a head are not supported")
        }
        if let vl = f["\(arch).attention.value_length"]?.int, vl != headDim {
            throw PonderError(.unsupported, "\(what): \(arch).attention.value_length \(vl) differs from the key length \(headDim): heads with values of another size are not supported")
        }
        self.init(vocabSize: vocab, hiddenSize: hidden, intermediateSize: try int("feed_forward_length"),
                  numLayers: try int("block_count"), numHeads: heads,
                  numKVHeads: try int("attention.head_count_kv", heads),
                  headDim: keyLength ?? ropeDims,
                  ropeTheta: Float(f["\(arch).rope.freq_base"]?.double ?? 10000),
                  rmsNormEps: Float(f["\(arch).attention.layer_norm_rms_epsilon"]?.double ?? 1e-5),
                  maxPositions: try int("context_length", 2048),
                  tieWordEmbeddings: f.tensorsByName["output.weight"] == nil,
                  attentionBias: f.tensorsByName["blk.0.attn_q.bias"] != nil)
        try validate(what)
    }

    /// The config.json a Hugging Face `LlamaForCausalLM` / `Qwen2ForCausalLM` loads.
    public func hfConfigJSON(bos: Int32?, eos: Int32?) -> JSONValue {
        let qwen = attentionBias
        var f: [(String, JSONValue)] = [
            ("architectures", [.string(qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM")]),
            ("model_type", .string(qwen ? "qwen2" : "llama")),
            ("vocab_size", .int(Int64(vocabSize))), ("hidden_size", .int(Int64(hiddenSize))),
            ("intermediate_size", .int(Int64(intermediateSize))), ("num_hidden_layers", .int(Int64(numLayers))),
            ("num_attention_heads", .int(Int64(numHeads))), ("num_key_value_heads", .int(Int64(numKVHeads))),
            ("head_dim", .int(Int64(headDim))), ("rope_theta", .double(Double(ropeTheta))),
            ("rms_norm_eps", .double(Double(rmsNormEps))), ("max_position_embeddings", .int(Int64(maxPositions))),
            ("tie_word_embeddings", .bool(tieWordEmbeddings)), ("hidden_act", "silu"),
            ("torch_dtype", "float32"),
        ]
        if !qwen { f.append(("attention_bias", false)); f.append(("mlp_bias", false)) }
        if let bos { f.append(("bos_token_id", .int(Int64(bos)))) }
        if let eos { f.append(("eos_token_id", .int(Int64(eos)))) }
        return .object(f)
    }
}
