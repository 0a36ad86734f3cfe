import PonderBase
import PonderJSON
import PonderText

extension LlamaModel {
    /// Loads a model from a `.gguf` file or a Hugging Face directory (config.json,
    /// *.safetensors, tokenizer.json).
    public static func load(path: String) throws -> LlamaModel {
        if isDirectory(path) { return try loadHF(directory: path) }
        return try loadGGUF(path: path)
    }

    static func loadGGUF(path: String) throws -> LlamaModel {
        let f = try GGUFFile(path: path)
        let config = try LlamaConfig(gguf: f)
        let tokenizer = try Tokenizer(gguf: f)
        guard tokenizer.vocabSize == config.vocabSize else {
            throw PonderError.format("\(path): tokenizer has \(tokenizer.vocabSize) tokens, model vocab_size is \(config.vocabSize)")
        }
        let layout = ParameterLayout(config)
        // Every tensor is found and its shape checked before the arena is allocated, so a
        // small file whose header claims a huge model fails fast instead of allocating for it.
        let sources = try layout.entries.map { e in
            let g = ggufName(e.name)
            guard let t = f.tensorsByName[g] else { throw PonderError.format("\(path): tensor \(g) (\(e.name)) missing") }
            guard t.elementCount == e.count, t.dims == Array(e.shape.reversed()) else {
                throw PonderError.format("\(path): tensor \(g) has shape \(Array(t.dims.reversed())), expected \(e.shape)")
            }
            return t
        }
        let arena = try Arena(count: layout.count)
        let permuteQK = f["general.architecture"]?.string == "llama"
        for (e, t) in zip(layout.entries, sources) {
            let dst = arena.pointer + e.offset
            f.read(t, into: dst)
            if permuteQK && (e.name.hasSuffix("q_proj.weight") || e.name.hasSuffix("k_proj.weight")) {
                let heads = e.name.hasSuffix("q_proj.weight") ? config.numHeads : config.numKVHeads
                let tmp = try Arena(count: e.count)
                tmp.pointer.update(from: dst, count: e.count)
                convertRoPERows(from: tmp.pointer, to: dst, heads: heads, headDim: config.headDim, cols: config.hiddenSize, toGGUF: false)
            }
        }
        return try LlamaModel(config: config, layout: layout, weights: arena, tokenizer: tokenizer)
    }

    static func loadHF(directory dir: String) throws -> LlamaModel {
        let cfgPath = dir + "/config.json"
        let cfgJSON = try JSONValue.parse(file: cfgPath)
        let config = try LlamaConfig(hfConfig: cfgJSON, what: cfgPath)
        let tokPath = dir + "/tokenizer.json"
        guard fileExists(tokPath) else { throw PonderError(.io, "\(dir): no tokenizer.json") }
        let tokenizer = try Tokenizer.load(tokenizerJSON: tokPath, config: dir + "/tokenizer_config.json")
        var files: [SafetensorsFile] = []
        if fileExists(dir + "/model.safetensors") {
            files = [try SafetensorsFile(path: dir + "/model.safetensors")]
        } else if fileExists(dir + "/model.safetensors.index.json") {
            let idx = try JSONValue.parse(file: dir + "/model.safetensors.index.json")
            guard case let .object(map)? = idx["weight_map"] else { throw PonderError.format("\(dir): index has no weight_map") }
            let names = Set(map.compactMap { $0.1.asString })
            files = try names.sorted().map { name in
                guard !name.contains("/") else { throw PonderError.format("\(dir): shard name \(name) must be a plain file name") }
                return try SafetensorsFile(path: dir + "/" + name)
            }
        } else {
            throw PonderError(.io, "\(dir): no model.safetensors")
        }
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw PonderError.format("\(dir): tokenizer.json has \(tokenizer.vocabSize) tokens, more than the embedding's vocab_size \(config.vocabSize) in config.json")
        }
        let layout = ParameterLayout(config)
        let sources = try layout.entries.map { e in
            guard let (file, t) = files.lazy.compactMap({ f in f.tensors[e.name].map { (f, $0) } }).first else {
                throw PonderError.format("\(dir): tensor \(e.name) missing")
            }
            guard t.shape == e.shape else {
                throw PonderError.format("\(dir): tensor \(e.name) has shape \(t.shape), expected \(e.shape)")
            }
            return (file, t)
        }
        let arena = try Arena(count: layout.count)
        for (e, (file, t)) in zip(layout.entries, sources) { file.read(t, into: arena.pointer + e.offset) }
        return try LlamaModel(config: config, layout: layout, weights: arena, tokenizer: tokenizer)
    }
}

/// llama.cpp's converter reorders each head's Q/K rows so RoPE rotates adjacent pairs: GGUF row
/// h·d + 2i + half is Hugging Face (rotate-half) row h·d + half·d/2 + i. Copies src to dst in
/// the other layout; the loader and the GGUF writer both go through here.
func convertRoPERows(from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, heads: Int, headDim d: Int,
                     cols: Int, toGGUF: Bool) {
    for h in 0..<heads {
        for half in 0..<2 {
            for i in 0..<(d / 2) {
                let hf = (h * d + half * d / 2 + i) * cols, gguf = (h * d + 2 * i + half) * cols
                (dst + (toGGUF ? gguf : hf)).update(from: src + (toGGUF ? hf : gguf), count: cols)
            }
        }
    }
}

/// Hugging Face tensor name → GGUF tensor name (llama.cpp's convention).
func ggufName(_ hf: String) -> String {
    if hf == "model.embed_tokens.weight" { return "token_embd.weight" }
    if hf == "model.norm.weight" { return "output_norm.weight" }
    if hf == "lm_head.weight" { return "output.weight" }
    let parts = hf.split(separator: ".", maxSplits: 3).map(String.init)  // model layers N rest
    guard parts.count == 4, parts[0] == "model", parts[1] == "layers" else { return hf }
    let map = ["input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
               "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
               "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
               "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
               "self_attn.v_proj.bias": "attn_v.bias",
               "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
               "mlp.down_proj.weight": "ffn_down.weight"]
    return "blk.\(parts[2])." + (map[parts[3]] ?? parts[3])
}

extension Tokenizer {
    /// The tokenizer stored in GGUF metadata (`tokenizer.ggml.*`).
    public convenience init(gguf f: GGUFFile) throws {
        let path = f.file.path
        guard f["tokenizer.ggml.model"]?.string == "gpt2" else {
            throw PonderError(.unsupported, "\(path): tokenizer.ggml.model \"\(f["tokenizer.ggml.model"]?.string ?? "?")\" (only gpt2 byte-level BPE is supported)")
        }
        for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"] {
            if let n = f[key]?.arrayCount, n > 4_000_000 {
                throw PonderError.format("\(path): \(key) has \(n) entries (at most 4,000,000)")
            }
        }
        guard let toks = f["tokenizer.ggml.tokens"]?.array else { throw PonderError.format("\(path): tokenizer.ggml.tokens missing") }
        let tokens = try toks.enumerated().map { i, v in
            guard let s = v.string else { throw PonderError.format("\(path): tokenizer.ggml.tokens[\(i)] is not a string") }
            return s
        }
        let merges = try (f["tokenizer.ggml.merges"]?.array ?? []).enumerated().map { i, v in
            guard let s = v.string else { throw PonderError.format("\(path): tokenizer.ggml.merges[\(i)] is not a string") }
            return s
        }
        let types = f["tokenizer.ggml.token_type"]?.array ?? []
        var special: Set<Int32> = []
        for (i, t) in types.enumerated() where t.int == 3 || t.int == 4 { special.insert(Int32(i)) }
        let preName = f["tokenizer.ggml.pre"]?.string ?? "default"
        guard let pre = PreTokenizer(ggufName: preName) else {
            throw PonderError(.unsupported, "\(path): tokenizer.ggml.pre \"\(preName)\" is not one Ponder implements")
        }
        func id(_ k: String) -> Int32? { f[k]?.int.map { Int32(clamping: $0) } }
        var stops: Set<Int32> = []
        if let eot = id("tokenizer.ggml.eot_token_id") { stops.insert(eot) }
        if let eom = id("tokenizer.ggml.eom_token_id") { stops.insert(eom) }
        try self.init(tokens: tokens, merges: merges, special: special, pre: pre,
                      bos: id("tokenizer.ggml.bos_token_id"), eos: id("tokenizer.ggml.eos_token_id"),
                      stopIds: stops.filter { $0 >= 0 && Int($0) < tokens.count },
                      addBOS: f["tokenizer.ggml.add_bos_token"]?.bool ?? false,
                      ignoreMerges: pre == .llama3,
                      chatTemplate: ChatTemplate(jinja: f["tokenizer.chat_template"]?.string))
        // Ponder pads with its own rows and never reads a padding id: one outside the vocabulary
        // is noted, not fatal (BOS and EOS, which it uses, are checked by the initialiser).
        for key in ["tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.seperator_token_id"] {
            if let v = f[key]?.int, v < 0 || v >= tokens.count {
                notes.append("\(key) \(v) is outside the vocabulary (\(tokens.count) tokens); Ponder does not use it, so it is ignored")
            }
        }
    }
}
