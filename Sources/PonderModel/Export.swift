import PonderBase
import PonderJSON

/// {"path": OUT, "format": "safetensors" | "gguf", "dtype": "f32" | "f16" | "bf16" | "q8_0" | "q5_0" |
/// "q4_0" | "q4_1" | "q4_k" | "q6_k"}: what
/// ponder_model_save and `ponder convert` take. safetensors writes a Hugging Face directory
/// (config.json, model.safetensors, tokenizer files); gguf writes one file llama.cpp runs.
public struct ExportOptions: Sendable {
    public enum Format: String, Sendable { case safetensors, gguf }
    public var path: String
    public var format: Format
    public var dtype: TensorDType = .f32

    public init(path: String, format: Format, dtype: TensorDType = .f32) {
        self.path = path
        self.format = format
        self.dtype = dtype
    }

    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        let p = r.path("path")
        if p == nil && !r.has("path") { r.failHere("missing \"path\"") }
        var f: Format = (p?.hasSuffix(".gguf") ?? false) ? .gguf : .safetensors
        if let s = r.string("format") {
            if let x = Format(rawValue: s) { f = x } else { r.fail("format", "expected \"safetensors\" or \"gguf\", got \"\(s)\"") }
        }
        if let s = r.string("dtype") {
            if let x = TensorDType(rawValue: s) { dtype = x } else { r.fail("dtype", "expected one of \(TensorDType.names), got \"\(s)\"") }
        }
        if dtype.isBlockFormat && f != .gguf {
            r.fail("dtype", "\"\(dtype.rawValue)\" is written to GGUF files only (\"format\": \"gguf\" or a .gguf path)")
        }
        try r.finish()
        path = p ?? ""
        format = f
    }
}

extension LlamaModel {
    /// Writes the model (with attached LoRA adapters merged into a copy of the weights).
    public func export(_ o: ExportOptions) throws {
        var target = self
        if let ad = adapters {
            target = try expandedCopy()
            ad.merge(into: target)
        }
        switch o.format {
        case .safetensors: try target.saveHF(directory: o.path, dtype: o.dtype)
        case .gguf: try target.saveGGUF(path: o.path, dtype: o.dtype)
        }
    }
}
