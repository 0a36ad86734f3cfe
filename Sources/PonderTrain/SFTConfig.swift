import PonderBase
import PonderJSON
import PonderModel
import PonderText

/// Where a run's model comes from: a file/directory, or a seeded from-scratch shape.
public enum ModelSpec: Sendable {
    case path(String)
    case scratch(LlamaConfig, seed: UInt64, std: Float)

    /// {"path": "..."} or {"scratch": {"hidden_size": 64, ...}} (byte-level tokenizer).
    init(reader r: JSONReader) {
        if let p = r.string("path") {
            self = .path(p)
        } else if let s = r.object("scratch") {
            let tok = (try? Tokenizer.byteLevel().vocabSize) ?? 259
            let hidden = s.int("hidden_size", in: 8...8192) ?? 64
            let heads = s.int("num_heads", in: 1...256) ?? 4
            var c = LlamaConfig(vocabSize: s.int("vocab_size", in: Int64(tok)...1_000_000) ?? tok, hiddenSize: hidden,
                                intermediateSize: s.int("intermediate_size", in: 8...65536) ?? hidden * 8 / 3,
                                numLayers: s.int("num_layers", in: 1...128) ?? 2, numHeads: heads,
                                numKVHeads: s.int("num_kv_heads", in: 1...256) ?? heads,
                                ropeTheta: Float(s.double("rope_theta", "a positive number") { $0 > 0 } ?? 10000),
                                rmsNormEps: 1e-5, maxPositions: s.int("context_length", in: 8...65536) ?? 256,
                                tieWordEmbeddings: s.bool("tie_word_embeddings") ?? true)
            c.headDim = s.int("head_dim", in: 2...1024) ?? hidden / heads
            let seed = UInt64(s.int("seed", in: 0...Int64(Int32.max)) ?? 0)
            let std = Float(s.double("init_std", "a positive number") { $0 > 0 } ?? 0.02)
            s.rejectUnknownKeys()
            self = .scratch(c, seed: seed, std: std)
        } else {
            r.failHere("needs \"path\" (GGUF file or HF directory) or \"scratch\" (a model shape)")
            self = .path("")
        }
        r.rejectUnknownKeys()
    }

    public func load() throws -> LlamaModel {
        switch self {
        case let .path(p): return try LlamaModel.load(path: p)
        case let .scratch(c, seed, std): return try LlamaModel.random(config: c, tokenizer: Tokenizer.byteLevel(), seed: seed, std: std)
        }
    }
}

public enum DataSource: Sendable {
    case jsonl(String)
    case arithmetic(count: Int, seed: UInt64)

    init?(_ r: JSONReader, _ key: String) {
        guard let v = r.value(key) else { return nil }
        if let s = v.asString { self = .jsonl(s); return }
        let g = r.element(key, 0, v)
        let kind = g.string("generate")
        let count = g.int("count", in: 1...10_000_000) ?? 256
        let seed = UInt64(g.int("seed", in: 0...Int64(Int32.max)) ?? 0)
        g.rejectUnknownKeys()
        guard kind == "arithmetic" else {
            r.fail(key, "expected a JSONL path or {\"generate\": \"arithmetic\", \"count\", \"seed\"}")
            return nil
        }
        self = .arithmetic(count: count, seed: seed)
    }

    func examples(system: String?) throws -> [ChatExample] {
        switch self {
        case let .jsonl(p): return try Datasets.loadJSONL(p, system: system)
        case let .arithmetic(n, seed):
            let ex = Datasets.arithmetic(count: n, seed: seed)
            guard let system else { return ex }
            return ex.map { ChatExample(messages: [.init(role: "system", content: system)] + $0.messages) }
        }
    }
}

/// The JSON a supervised fine-tuning run takes (C ABI, CLI and Python alike). Option names
/// follow Hugging Face's TrainingArguments where the meaning is the same.
public struct SFTConfig: Sendable {
    public var model: ModelSpec
    public var lora: LoRAConfig?
    public var train: DataSource
    public var eval: DataSource?
    public var evalFraction = 0.0
    public var maxLength = 256
    public var packing = false
    public var system: String?
    public var batchSize = 4
    public var gradientAccumulationSteps = 1
    public var epochs = 1.0
    public var maxSteps = 0          // 0: from epochs
    public var optimizer = AdamWConfig()
    public var seed: UInt64 = 0
    public var gradientCheckpointing = false
    public var evalSteps = 0         // 0: only at the end
    public var loggingSteps = 1
    public var outputDir: String?
    public var saveSteps = 0         // 0: only at the end
    public var saveTotalLimit = 2
    public var resume = true
    public var threads: Int?

    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        if let m = r.object("model") { model = ModelSpec(reader: m) } else {
            r.failHere("missing \"model\"")
            model = .path("")
        }
        if let l = r.object("lora") { lora = LoRAConfig(reader: l) }
        var trainSource: DataSource? = nil
        if let d = r.object("data") {
            trainSource = DataSource(d, "train")
            if trainSource == nil && !d.hasErrors { d.failHere("missing \"train\"") }
            eval = DataSource(d, "eval")
            evalFraction = d.double("eval_fraction", "a number in [0, 0.9]") { $0 >= 0 && $0 <= 0.9 } ?? 0
            maxLength = d.int("max_length", in: 2...1_048_576) ?? maxLength
            packing = d.bool("packing") ?? false
            system = d.string("system")
            d.rejectUnknownKeys()
        } else {
            r.failHere("missing \"data\"")
        }
        train = trainSource ?? .arithmetic(count: 1, seed: 0)
        if let t = r.object("training") {
            batchSize = t.int("batch_size", in: 1...4096) ?? batchSize
            gradientAccumulationSteps = t.int("gradient_accumulation_steps", in: 1...4096) ?? 1
            epochs = t.double("num_train_epochs", "a positive number") { $0 > 0 } ?? epochs
            maxSteps = t.int("max_steps", in: 0...100_000_000) ?? 0
            optimizer.lr = t.double("learning_rate", "a number in (0, 1]") { $0 > 0 && $0 <= 1 } ?? 1e-4
            if let s = t.string("lr_scheduler_type") {
                if let x = LRSchedule(rawValue: s) { optimizer.schedule = x } else {
                    t.fail("lr_scheduler_type", "expected constant, linear or cosine, got \"\(s)\"")
                }
            }
            optimizer.warmupSteps = t.int("warmup_steps", in: 0...100_000_000) ?? 0
            optimizer.weightDecay = t.double("weight_decay", "a number in [0, 10]") { $0 >= 0 && $0 <= 10 } ?? 0
            optimizer.maxGradNorm = t.double("max_grad_norm", "a number ≥ 0 (0: no clipping)") { $0 >= 0 } ?? 1
            optimizer.beta1 = t.double("adam_beta1", "a number in [0, 1)") { $0 >= 0 && $0 < 1 } ?? 0.9
            optimizer.beta2 = t.double("adam_beta2", "a number in [0, 1)") { $0 >= 0 && $0 < 1 } ?? 0.999
            optimizer.eps = t.double("adam_epsilon", "a positive number") { $0 > 0 } ?? 1e-8
            seed = UInt64(t.int("seed", in: 0...Int64(Int32.max)) ?? 0)
            gradientCheckpointing = t.bool("gradient_checkpointing") ?? false
            evalSteps = t.int("eval_steps", in: 0...100_000_000) ?? 0
            loggingSteps = t.int("logging_steps", in: 1...100_000_000) ?? 1
            t.rejectUnknownKeys()
        }
        if let o = r.object("output") {
            outputDir = o.string("dir")
            saveSteps = o.int("save_steps", in: 0...100_000_000) ?? 0
            saveTotalLimit = o.int("save_total_limit", in: 1...1000) ?? 2
            resume = o.bool("resume") ?? true
            o.rejectUnknownKeys()
        }
        threads = r.int("threads", in: 1...256)
        try r.finish()
    }
}
