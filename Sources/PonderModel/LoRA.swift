import PonderBase
import PonderJSON
import PonderKernels

/// The fused activation a LoRA module adds into (one per matmul of a layer).
enum LoRAOutput { case qkv, o, gateUp, down }

/// The projections LoRA can adapt, by their Hugging Face / PEFT names.
public enum LoRATarget: String, CaseIterable, Sendable {
    case q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj

    var output: LoRAOutput {
        switch self {
        case .q_proj, .k_proj, .v_proj: return .qkv
        case .o_proj: return .o
        case .gate_proj, .up_proj: return .gateUp
        case .down_proj: return .down
        }
    }

    var parent: String { self == .o_proj || self == .q_proj || self == .k_proj || self == .v_proj ? "self_attn" : "mlp" }

    /// (input width, output width, column offset in the fused output, fused output width)
    func geometry(_ c: LlamaConfig) -> (inDim: Int, outDim: Int, offset: Int, stride: Int) {
        switch self {
        case .q_proj: return (c.hiddenSize, c.qDim, 0, c.qkvDim)
        case .k_proj: return (c.hiddenSize, c.kvDim, c.qDim, c.qkvDim)
        case .v_proj: return (c.hiddenSize, c.kvDim, c.qDim + c.kvDim, c.qkvDim)
        case .o_proj: return (c.qDim, c.hiddenSize, 0, c.hiddenSize)
        case .gate_proj: return (c.hiddenSize, c.intermediateSize, 0, 2 * c.intermediateSize)
        case .up_proj: return (c.hiddenSize, c.intermediateSize, c.intermediateSize, 2 * c.intermediateSize)
        case .down_proj: return (c.intermediateSize, c.hiddenSize, 0, c.hiddenSize)
        }
    }
}

public struct LoRAConfig: Equatable, Sendable {
    public var rank: Int = 8
    public var alpha: Double = 16
    public var targets: [LoRATarget] = [.q_proj, .k_proj, .v_proj, .o_proj, .gate_proj, .up_proj, .down_proj]
    public init() {}
    public var scale: Float { Float(alpha / Double(rank)) }

    public var json: JSONValue {
        .object([("r", .int(Int64(rank))), ("alpha", .double(alpha)), ("target_modules", .array(targets.map { .string($0.rawValue) }))])
    }

    /// {"r": 8, "alpha": 16, "target_modules": ["q_proj", ...]}
    public init(reader r: JSONReader) {
        rank = r.int("r", in: 1...4096) ?? rank
        alpha = r.double("alpha", "a positive number") { $0 > 0 } ?? alpha
        if let names = r.strings("target_modules") {
            var t: [LoRATarget] = []
            for (i, n) in names.enumerated() {
                if let x = LoRATarget(rawValue: n) { t.append(x) } else {
                    r.fail("target_modules[\(i)]", "unknown module \"\(n)\" (one of \(LoRATarget.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
            }
            if names.isEmpty { r.fail("target_modules", "empty: name at least one module") }
            targets = t
        }
        r.rejectUnknownKeys()
    }
}

/// LoRA adapters for a model: A [r × in] and B [out × r] per targeted projection per layer, in
/// one arena under PEFT's tensor names, so the optimizer and the checkpoint code treat them
/// exactly like full weights. The base model is shared, never copied.
public final class LoRAAdapters: @unchecked Sendable {
    public struct Module {
        public let target: LoRATarget
        public let a: UnsafeMutablePointer<Float>
        public let b: UnsafeMutablePointer<Float>
        public let inDim, outDim, offset, stride: Int
    }

    public let config: LoRAConfig
    public let modelConfig: LlamaConfig
    public let entries: [ParameterLayout.Entry]
    public let arena: Arena
    /// modules[layer] in target order
    public let modules: [[Module]]

    /// Floats of x·Aᵀ per row across all modules of a layer.
    public var width: Int { config.rank * config.targets.count }

    public static func peftName(layer: Int, _ t: LoRATarget, _ ab: String) -> String {
        "base_model.model.model.layers.\(layer).\(t.parent).\(t.rawValue).lora_\(ab).weight"
    }

    public init(config: LoRAConfig, model c: LlamaConfig, seed: UInt64 = 0) throws {
        self.config = config
        modelConfig = c
        var list: [ParameterLayout.Entry] = []
        var off = 0
        for l in 0..<c.numLayers {
            for t in config.targets {
                let g = t.geometry(c)
                list.append(.init(name: LoRAAdapters.peftName(layer: l, t, "A"), shape: [config.rank, g.inDim], offset: off))
                off += (config.rank * g.inDim + 15) / 16 * 16
                list.append(.init(name: LoRAAdapters.peftName(layer: l, t, "B"), shape: [g.outDim, config.rank], offset: off))
                off += (g.outDim * config.rank + 15) / 16 * 16
            }
        }
        entries = list
        arena = try Arena(count: off)
        var mods: [[Module]] = []
        var k = 0
        for _ in 0..<c.numLayers {
            var row: [Module] = []
            for t in config.targets {
                let g = t.geometry(c)
                row.append(Module(target: t, a: arena.pointer + list[k].offset, b: arena.pointer + list[k + 1].offset,
                                  inDim: g.inDim, outDim: g.outDim, offset: g.offset, stride: g.stride))
                k += 2
            }
            mods.append(row)
        }
        modules = mods
        // PEFT's default: A ~ kaiming-uniform(a=√5) = U(−1/√in, 1/√in), B = 0, so training
        // starts from the base model exactly.
        var rng = RandomGenerator(seed: seed)
        for layer in modules {
            for m in layer {
                let bound = 1 / Float(m.inDim).squareRoot()
                for i in 0..<(config.rank * m.inDim) { m.a[i] = (Float(rng.uniform()) * 2 - 1) * bound }
            }
        }
    }

    /// y[:, offset..<offset+out] += scale · (x Aᵀ) Bᵀ for one module; u receives x Aᵀ [rows × r].
    func forward(_ m: Module, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, rows: Int,
                 u: UnsafeMutablePointer<Float>) {
        let r = config.rank
        linear(u, x, m.a, rows: rows, out: r, in: m.inDim)
        sgemm(transB: true, m: rows, n: m.outDim, k: r, alpha: config.scale, a: u, lda: r, b: m.b, ldb: r,
              beta: 1, c: y + m.offset, ldc: m.stride)
    }

    /// Backward of forward: dA, dB accumulate into the gradient arena (same layout as `arena`);
    /// dx += scale · dy B A. du: scratch [rows × r].
    func backward(_ m: Module, grads: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                  u: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int, du: UnsafeMutablePointer<Float>) {
        let r = config.rank, s = config.scale
        let dA = grads + (m.a - arena.pointer), dB = grads + (m.b - arena.pointer)
        // dB += s · dyᵀ u   [out × r]
        sgemm(transA: true, m: m.outDim, n: r, k: rows, alpha: s, a: dy + m.offset, lda: m.stride, b: u, ldb: r,
              beta: 1, c: dB, ldc: r)
        // du = s · dy B     [rows × r]
        sgemm(m: rows, n: r, k: m.outDim, alpha: s, a: dy + m.offset, lda: m.stride, b: m.b, ldb: r, c: du, ldc: r)
        // dA += duᵀ x       [r × in]
        sgemm(transA: true, m: r, n: m.inDim, k: rows, a: du, lda: r, b: x, ldb: m.inDim, beta: 1, c: dA, ldc: m.inDim)
        // dx += du A        [rows × in]
        sgemm(m: rows, n: m.inDim, k: r, a: du, lda: r, b: m.a, ldb: m.inDim, beta: 1, c: dx, ldc: m.inDim)
    }

    /// Adds scale · B A into the base weights of `model` (whose fused matrices hold the rows).
    public func merge(into model: LlamaModel) {
        for (l, layer) in modules.enumerated() {
            let lw = model.w.layers[l]
            for m in layer {
                let (base, rowOffset): (UnsafeMutablePointer<Float>, Int)
                switch m.target {
                case .q_proj, .k_proj, .v_proj: (base, rowOffset) = (lw.qkv.weight, m.offset)
                case .o_proj: (base, rowOffset) = (lw.o.weight, 0)
                case .gate_proj, .up_proj: (base, rowOffset) = (lw.gateUp.weight, m.offset)
                case .down_proj: (base, rowOffset) = (lw.down.weight, 0)
                }
                // W[rowOffset + i][j] += s · Σ_k B[i][k] A[k][j]
                sgemm(m: m.outDim, n: m.inDim, k: config.rank, alpha: config.scale, a: m.b, lda: config.rank,
                      b: m.a, ldb: m.inDim, beta: 1, c: base + rowOffset * m.inDim, ldc: m.inDim)
            }
        }
    }
}

extension LoRAAdapters {
    /// Reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) for a
    /// model of shape `c`. Only plain LoRA (no DoRA, rsLoRA, bias or modules_to_save) is read.
    public static func load(directory dir: String, model c: LlamaConfig) throws -> LoRAAdapters {
        let cfgPath = dir + "/adapter_config.json"
        let v = try JSONValue.parse(file: cfgPath)
        guard v["peft_type"]?.asString ?? "LORA" == "LORA" else { throw PonderError(.unsupported, "\(cfgPath): peft_type must be LORA") }
        guard let r = v["r"]?.asInt, r > 0, r <= 4096 else { throw PonderError.format("\(cfgPath): r missing or out of range") }
        for flag in ["use_dora", "use_rslora"] where v[flag] == .bool(true) {
            throw PonderError(.unsupported, "\(cfgPath): \(flag) is not supported")
        }
        if let b = v["bias"]?.asString, b != "none" { throw PonderError(.unsupported, "\(cfgPath): bias \"\(b)\" is not supported") }
        var config = LoRAConfig()
        config.rank = Int(r)
        config.alpha = v["lora_alpha"]?.asDouble ?? Double(r)
        let names = v["target_modules"]?.asArray?.compactMap(\.asString) ?? []
        config.targets = try names.map { n in
            guard let t = LoRATarget(rawValue: n) else { throw PonderError(.unsupported, "\(cfgPath): target module \"\(n)\"") }
            return t
        }
        guard !config.targets.isEmpty else { throw PonderError.format("\(cfgPath): target_modules is empty") }
        let file = try SafetensorsFile(path: dir + "/adapter_model.safetensors")
        // The rank comes from a small JSON file; the weights it implies must be in the
        // safetensors file (2 bytes an element at least) before they are allocated.
        let needed = c.numLayers * config.targets.reduce(0) { acc, t in
            let g = t.geometry(c)
            return acc + config.rank * (g.inDim + g.outDim)
        }
        let held = file.tensors.values.reduce(0) { $0 + $1.byteCount }
        guard needed * 2 <= held else {
            throw PonderError.format("\(dir): rank \(config.rank) on \(config.targets.count) modules needs \(needed) weights, adapter_model.safetensors holds \(held) bytes")
        }
        let ad = try LoRAAdapters(config: config, model: c)
        // PEFT may store names with or without the adapter name ("…lora_A.default.weight").
        try file.read(into: ad.arena.pointer, entries: ad.entries) { name in
            file.tensors[name] != nil ? name : name.replacingOccurrences(".weight", with: ".default.weight")
        }
        return ad
    }
}

extension String {
    func replacingOccurrences(_ a: String, with b: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
