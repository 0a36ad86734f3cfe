import PonderBase
import PonderJSON
import PonderKernels

/// What `ponder_model_load` takes: {"path": "...", "threads": 2}.
public struct ModelOptions: Sendable {
    public var path: String
    /// Threads for Ponder's loops and OpenBLAS (process-wide). nil: leave as is (default 2 or
    /// OPENBLAS_NUM_THREADS).
    public var threads: Int?
    /// A PEFT LoRA adapter directory applied (unmerged) on top of the model.
    public var adapter: String?
    /// "native" (default): a GGUF's quantized matrices stay in their blocks; "f32": expanded.
    public var weights: WeightStorage = .native

    public init(path: String, threads: Int? = nil) {
        self.path = path
        self.threads = threads
    }

    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        let p = r.path("path")
        if p == nil && !r.has("path") { r.failHere("missing \"path\" (a .gguf file or a Hugging Face model directory)") }
        threads = r.int("threads", in: 1...256)
        adapter = r.path("adapter")
        if let s = r.string("weights") {
            if let w = WeightStorage(rawValue: s) { weights = w } else { r.fail("weights", "expected \"native\" or \"f32\", got \"\(s)\"") }
        }
        try r.finish()
        path = p ?? ""
    }

    public func load() throws -> LlamaModel {
        if let threads { setThreads(threads) }
        let model = try LlamaModel.load(path: path, weights: weights)
        if let adapter { model.adapters = try LoRAAdapters.load(directory: adapter, model: model.config) }
        return model
    }
}
