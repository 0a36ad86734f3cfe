import PonderBase
import PonderJSON
import PonderKernels
import PonderText
#if canImport(Glibc)
import Glibc
#endif

/// How a loaded model holds its matrices: `native` keeps a GGUF file's block-format matrices
/// (Q8_0, Q4_K, F16, …) as they lie in the file, mapped and multiplied in place; `f32` expands
/// every weight to fp32 (full fine-tuning needs that). Norms, biases, F32 tensors, Q3_K and
/// rows whose width is not a multiple of 32 are fp32 either way; so is every Hugging Face directory.
public enum WeightStorage: String, Sendable, CaseIterable {
    case native, f32
}

extension LlamaModel {
    /// Loads a model from a `.gguf` file or a Hugging Face directory (config.json,
    /// *.safetensors, tokenizer.json).
    public static func load(path: String, weights: WeightStorage = .f32) throws -> LlamaModel {
        if isDirectory(path) { return try loadHF(directory: path) }
        return try loadGGUF(path: path, weights: weights)
    }

    static func loadGGUF(path: String, weights storage: WeightStorage) throws -> LlamaModel {
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
        // A scale that is NaN or infinite poisons every product with its block: refused here,
        // named, whichever way the weights are held.
        for t in sources {
            let base = f.file.bytes.baseAddress! + t.offset
            if let b = firstNonFiniteBlock(type: Int32(t.type.rawValue), data: base, blocks: t.byteCount / t.type.blockBytes) {
                throw PonderError.format("\(path): tensor \(t.name): block \(b) (byte offset \(t.offset + b * t.type.blockBytes)) has a scale that is NaN or infinite")
            }
        }
        let permuteQK = f["general.architecture"]?.string == "llama"
        // Matrices kept in blocks: a fused group (q/k/v, gate/up) only when all of it can be.
        var blocks: [String: QuantizedTensor] = [:]
        var owned: [AnyObject] = [f]
        if storage == .native {
            let byName = Dictionary(uniqueKeysWithValues: zip(layout.entries.map(\.name), zip(layout.entries, sources)))
            var groups: [[String]] = [["model.embed_tokens.weight"], ["lm_head.weight"]]
            for l in 0..<config.numLayers {
                let p = "model.layers.\(l)."
                groups += [["q_proj", "k_proj", "v_proj"].map { p + "self_attn.\($0).weight" }, [p + "self_attn.o_proj.weight"],
                           [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"], [p + "mlp.down_proj.weight"]]
            }
            for g in groups {
                let members = g.compactMap { byName[$0] }
                guard members.count == g.count, members.allSatisfy({ e, t in
                    t.type != .f32 && QuantizedMatrix.supports(type: Int32(t.type.rawValue), inDim: e.shape[1])
                }) else { continue }
                for (e, t) in members {
                    let rows = e.shape[0], cols = e.shape[1], rowBytes = cols / t.type.blockSize * t.type.blockBytes
                    var data = UnsafeRawPointer(f.file.bytes.baseAddress! + t.offset)
                    if permuteQK && (e.name.hasSuffix("q_proj.weight") || e.name.hasSuffix("k_proj.weight")) {
                        // RoPE's row order is a permutation of whole rows: a copy of the blocks in
                        // Hugging Face's order, as the fp32 path does with floats.
                        let heads = e.name.hasSuffix("q_proj.weight") ? config.numHeads : config.numKVHeads
                        let copy = try OwnedBytes(count: rows * rowBytes)
                        convertRoPERows(bytesFrom: data, to: copy.pointer, heads: heads, headDim: config.headDim, rowBytes: rowBytes)
                        owned.append(copy)
                        data = UnsafeRawPointer(copy.pointer)
                    }
                    blocks[e.name] = QuantizedTensor(type: t.type, data: data, rowBytes: rowBytes, rows: rows, cols: cols)
                }
            }
        }
        // With blocks, the arena holds the norms alone: its other pages are never touched.
        let arena = blocks.isEmpty ? try Arena(count: layout.count) : try Arena(count: layout.count, zeroed: false, hugePages: false)
        for (e, t) in zip(layout.entries, sources) where blocks[e.name] == nil {
            let dst = arena.pointer + e.offset
            f.read(t, into: dst)
            // Copied: its file pages need not stay (an F32 file would otherwise peak at twice its size).
            f.file.release(offset: t.offset, count: t.byteCount)
            if permuteQK && (e.name.hasSuffix("q_proj.weight") || e.name.hasSuffix("k_proj.weight")) {
                let heads = e.name.hasSuffix("q_proj.weight") ? config.numHeads : config.numKVHeads
                let tmp = try Arena(count: e.count)
                tmp.pointer.update(from: dst, count: e.count)
                convertRoPERows(from: tmp.pointer, to: dst, heads: heads, headDim: config.headDim, cols: config.hiddenSize, toGGUF: false)
            }
        }
        return try LlamaModel(config: config, layout: layout, weights: arena, tokenizer: tokenizer, blocks: blocks,
                              blockStorage: blocks.isEmpty ? [] : owned)
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
        for (e, (file, t)) in zip(layout.entries, sources) {
            file.read(t, into: arena.pointer + e.offset)
            file.file.release(offset: t.offset, count: t.byteCount)
        }
        return try LlamaModel(config: config, layout: layout, weights: arena, tokenizer: tokenizer)
    }
}

/// llama.cpp's converter reorders each head's Q/K rows so RoPE rotates adjacent pairs: GGUF row
/// h·d + 2i + half is Hugging Face (rotate-half) row h·d + half·d/2 + i. Copies src to dst in
/// the other layout; the loader and the GGUF writer both go through here.
func convertRoPERows(from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, heads: Int, headDim d: Int,
                     cols: Int, toGGUF: Bool) {
    convertRoPERows(bytesFrom: UnsafeRawPointer(src), to: UnsafeMutableRawPointer(dst), heads: heads, headDim: d,
                    rowBytes: 4 * cols, toGGUF: toGGUF)
}

/// The same permutation over rows of rowBytes bytes: fp32 rows, or a block format's (blocks
/// never straddle rows, so whole rows move).
func convertRoPERows(bytesFrom src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, heads: Int, headDim d: Int,
                     rowBytes: Int, toGGUF: Bool = false) {
    for h in 0..<heads {
        for half in 0..<2 {
            for i in 0..<(d / 2) {
                let hf = (h * d + half * d / 2 + i) * rowBytes, gguf = (h * d + 2 * i + half) * rowBytes
                (dst + (toGGUF ? gguf : hf)).copyMemory(from: src + (toGGUF ? hf : gguf), byteCount: rowBytes)
            }
        }
    }
}

/// Bytes the model owns outright (reordered copies of a file's blocks).
final class OwnedBytes {
    let pointer: UnsafeMutableRawPointer
    init(count: Int) throws { pointer = try UnsafeMutableRawPointer.allocateChecked(bytes: count) }
    deinit { free(pointer) }
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
