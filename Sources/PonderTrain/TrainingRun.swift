import PonderBase
import PonderEnvironments
import PonderJSON
import PonderKernels
import PonderModel
import PonderRewards
import PonderText

/// Where a run's model comes from: a file/directory, or a seeded from-scratch shape.
public enum ModelSpec: Sendable {
    case path(String)
    case scratch(LlamaConfig, seed: UInt64, std: Float)

    /// {"path": "..."} or {"scratch": {"hidden_size": 64, ...}} (byte-level tokenizer).
    public init(reader r: JSONReader) {
        if let p = r.path("path") {
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

    /// As a config names it, every scratch key written out.
    public var json: JSONValue {
        switch self {
        case let .path(p): return .object([("path", .string(p))])
        case let .scratch(c, seed, std):
            return .object([("scratch", .object([
                ("vocab_size", .int(Int64(c.vocabSize))), ("hidden_size", .int(Int64(c.hiddenSize))),
                ("intermediate_size", .int(Int64(c.intermediateSize))), ("num_layers", .int(Int64(c.numLayers))),
                ("num_heads", .int(Int64(c.numHeads))), ("num_kv_heads", .int(Int64(c.numKVHeads))), ("head_dim", .int(Int64(c.headDim))),
                ("rope_theta", .double(decimal(c.ropeTheta))), ("context_length", .int(Int64(c.maxPositions))),
                ("tie_word_embeddings", .bool(c.tieWordEmbeddings)), ("seed", .int(Int64(seed))), ("init_std", .double(decimal(std))),
            ]))])
        }
    }

    public func load(weights: WeightStorage = .f32) throws -> LlamaModel {
        switch self {
        case let .path(p): return try LlamaModel.load(path: p, weights: weights)
        case let .scratch(c, seed, std): return try LlamaModel.random(config: c, tokenizer: Tokenizer.byteLevel(), seed: seed, std: std)
        }
    }
}

/// Metrics of one optimizer step, named as TRL/transformers log them.
public struct StepMetrics: Sendable {
    public var step: Int
    public var epoch: Double
    public var loss: Double
    public var gradNorm: Double
    public var learningRate: Double
    public var tokens: Int
    public var tokensPerSecond: Double
    /// Set only on a skipped step (loss or gradient not finite): such steps in a row, this one included.
    public var nonfiniteSkipped: Int?
    /// The trainer's own metrics (e.g. GRPO's rewards), logged after the common ones.
    public var extra: [(String, JSONValue)] = []
    /// eval_* metrics, on evaluation steps.
    public var eval: [(String, JSONValue)] = []

    public var json: JSONValue {
        var f: [(String, JSONValue)] = [("step", .int(Int64(step))), ("epoch", .double(epoch)), ("loss", .double(loss)),
                                        ("grad_norm", .double(gradNorm)), ("learning_rate", .double(learningRate)),
                                        ("num_tokens", .int(Int64(tokens))), ("tokens_per_second", .double(tokensPerSecond))]
        if let n = nonfiniteSkipped { f.append(("nonfinite_skipped", .int(Int64(n)))) }
        return .object(f + extra + eval)
    }

    public init(step: Int, epoch: Double, loss: Double, gradNorm: Double, learningRate: Double, tokens: Int, tokensPerSecond: Double) {
        (self.step, self.epoch, self.loss, self.gradNorm, self.learningRate) = (step, epoch, loss, gradNorm, learningRate)
        (self.tokens, self.tokensPerSecond) = (tokens, tokensPerSecond)
    }
}

/// What a trainer's own part of a step produced: the loss, the tokens it ran, its metrics.
public struct StepResult {
    public var loss: Double
    public var tokens: Int
    public var metrics: [(String, JSONValue)]

    public init(loss: Double, tokens: Int, metrics: [(String, JSONValue)] = []) {
        self.loss = loss
        self.tokens = tokens
        self.metrics = metrics
    }
}

/// The part of a training run every trainer shares (SFT now, GRPO next): the model with its
/// LoRA adapters and trainable parameters, the step counter and seeded data order, AdamW with
/// clipping and the learning-rate schedule, the skipping of non-finite steps, metrics.jsonl and
/// atomic checkpoints (Checkpoints.swift). A trainer prepares its data with `model`, calls
/// `start` once, then `step` with the computation of its loss and gradients.
public final class TrainingRun {
    public let config: Config
    public let model: LlamaModel
    public let params: TrainableParameters
    public private(set) var totalSteps = 0
    /// Training items (examples, prompts) in the data; their order is a pure function of
    /// (seed, epoch), so a checkpoint needs only `consumed`.
    public private(set) var dataCount = 0
    public internal(set) var step = 0
    public internal(set) var consumed = 0
    /// Steps skipped because their loss or gradient was not finite: in all (Adam's own step
    /// count is step − this), and in a row up to now.
    public internal(set) var nonfiniteSkipped = 0
    public internal(set) var nonfiniteInARow = 0
    var order: [Int] = []
    var orderEpoch = -1
    var metricsFile: String?

    /// The keys every trainer takes: "model", "lora", "output", "threads" and, in "training",
    /// the optimizer, step budget and run-wide keys. A trainer's config reads its own keys from
    /// the same "training" reader before rejecting the unknown ones.
    public struct Config: Sendable {
        public var model: ModelSpec
        public var lora: LoRAConfig?
        public var optimizer = AdamWConfig()
        public var seed: UInt64 = 0
        public var epochs = 1.0
        public var maxSteps = 0           // 0: from epochs
        public var gradientCheckpointing = false
        public var evalSteps = 0          // 0: only at the end
        public var loggingSteps = 1
        /// The run stops at this many non-finite steps in a row (1: at the first one).
        public var maxNonfiniteSteps = 5
        public var outputDir: String?
        public var saveSteps = 0          // 0: only at the end
        public var saveTotalLimit = 2
        public var resume = true
        public var threads: Int?

        /// The run's metrics file (default output.dir/metrics.jsonl) and fields put first on
        /// each of its lines: a pipeline logs every stage's steps to one file, tagged by stage.
        public var metricsPath: String?
        public var metricsFields: [(String, JSONValue)] = []

        public init(model: ModelSpec) { self.model = model }

        /// `kind`: the trainer kind this config is for; another "kind" in the JSON is an error.
        public init(root r: JSONReader, training t: JSONReader?, kind: String) {
            if let k = r.string("kind"), k != kind {
                let name = ["sft": "an SFT", "grpo": "a GRPO"][kind] ?? "a \(kind)"
                r.fail("kind", "\(name) config has kind \"\(kind)\", got \"\(k)\"")
            }
            if let m = r.object("model") { model = ModelSpec(reader: m) } else {
                r.failHere("missing \"model\"")
                model = .path("")
            }
            if let l = r.object("lora") { lora = LoRAConfig(reader: l) }
            if let t { read(training: t) }
            if let o = r.object("output") {
                read(output: o)
                o.rejectUnknownKeys()
            }
            threads = r.int("threads", in: 1...256)
        }

        /// The shared keys of a "training" object (the caller rejects unknown keys).
        public mutating func read(training t: JSONReader) {
            optimizer = AdamWConfig(reader: t)
            seed = UInt64(t.int("seed", in: 0...Int64(Int32.max)) ?? Int(seed))
            epochs = t.double("num_train_epochs", "a positive number") { $0 > 0 } ?? epochs
            maxSteps = t.int("max_steps", in: 0...100_000_000) ?? maxSteps
            gradientCheckpointing = t.bool("gradient_checkpointing") ?? gradientCheckpointing
            evalSteps = t.int("eval_steps", in: 0...100_000_000) ?? evalSteps
            loggingSteps = t.int("logging_steps", in: 1...100_000_000) ?? loggingSteps
            maxNonfiniteSteps = t.int("max_nonfinite_steps", in: 1...100_000_000) ?? maxNonfiniteSteps
        }

        /// The keys of an "output" object (the caller rejects unknown keys).
        public mutating func read(output o: JSONReader) {
            outputDir = o.path("dir")
            saveSteps = o.int("save_steps", in: 0...100_000_000) ?? saveSteps
            saveTotalLimit = o.int("save_total_limit", in: 1...1000) ?? saveTotalLimit
            resume = o.bool("resume") ?? resume
        }

        /// The keys `read(training:)` reads, with their values: written into a pipeline's
        /// config.resolved.json, so every default is on record.
        public var trainingJSON: [(String, JSONValue)] {
            optimizer.json + [("seed", .int(Int64(seed))), ("num_train_epochs", .double(epochs)),
                              ("max_steps", .int(Int64(maxSteps))), ("gradient_checkpointing", .bool(gradientCheckpointing)),
                              ("eval_steps", .int(Int64(evalSteps))), ("logging_steps", .int(Int64(loggingSteps))),
                              ("max_nonfinite_steps", .int(Int64(maxNonfiniteSteps)))]
        }
    }

    /// Loads the model and attaches LoRA adapters when configured.
    public init(config: Config) throws {
        self.config = config
        if let t = config.threads { setThreads(t) }
        // LoRA trains adapters over a frozen base, which can stay in its file's blocks (QLoRA's
        // idea); a full fine-tune updates every weight, so it expands them.
        model = try config.model.load(weights: config.lora == nil ? .f32 : .native)
        model.exactProducts = true
        if let l = config.lora {
            model.adapters = try LoRAAdapters(config: l, model: model.config, seed: config.seed)
        }
        if let ad = model.adapters {
            params = try TrainableParameters(entries: ad.entries, params: ad.arena.pointer, count: ad.arena.count)
        } else {
            params = try TrainableParameters(entries: model.layout.entries, params: model.weights.pointer, count: model.weights.count)
        }
    }

    /// Sets the step budget for `dataCount` training items taken `perStep` at a step (or
    /// max_steps), and resumes the newest checkpoint in output.dir when `resume` is set.
    public func start(dataCount n: Int, perStep: Int) throws {
        guard n > 0, perStep > 0 else { throw PonderError.invalid("a run needs training data (\(n) items, \(perStep) per step)") }
        dataCount = n
        totalSteps = config.maxSteps > 0 ? config.maxSteps : max(1, Int((Double(n) * config.epochs / Double(perStep)).rounded(.up)))
        if let dir = config.outputDir {
            try makeDirectories(dir)
            metricsFile = config.metricsPath ?? dir + "/metrics.jsonl"
            if config.resume, let latest = Checkpoints.latest(in: dir) { try restore(from: latest) }
        }
    }

    public var epoch: Double { Double(consumed) / Double(max(dataCount, 1)) }

    /// The next training item's index in the seeded per-epoch order.
    public func nextIndex() -> Int {
        let epoch = consumed / dataCount
        if epoch != orderEpoch {
            var rng = RandomGenerator(seed: config.seed &+ UInt64(epoch) &* 0x9E37_79B9)
            order = Array(0..<dataCount)
            shuffle(&order, &rng)
            orderEpoch = epoch
        }
        defer { consumed += 1 }
        return order[consumed % dataCount]
    }

    /// One optimizer step. `accumulate` takes its items with nextIndex() and adds the gradients
    /// of the step's loss into params.grads (zeroed here). Then either
    /// - loss and gradient norm are finite: the gradient is clipped to max_grad_norm and AdamW
    ///   applied at the scheduled learning rate;
    /// - or not: the update is skipped (weights, Adam moments and Adam's step count untouched),
    ///   the step still counts and its items are consumed, and the metrics carry
    ///   nonfinite_skipped; no checkpoint is written at such a step. The max_nonfinite_steps-th
    ///   one in a row throws (INVALID_ARGUMENT) instead.
    /// Then evaluation every eval_steps (`evaluate`, nil without eval data), the metrics line
    /// and the checkpoint every save_steps. An error before the update (from `accumulate`, or
    /// the non-finite limit) leaves the run as it was before the call; one after it (I/O of the
    /// metrics or checkpoint, evaluation) leaves the update applied and the step counted.
    public func step(evaluate: (() throws -> [(String, JSONValue)])?, _ accumulate: () throws -> StepResult) throws -> StepMetrics {
        let t0 = monotonicSeconds()
        let before = consumed
        params.zeroGrad()
        let r: StepResult
        do { r = try accumulate() } catch {
            consumed = before
            throw error
        }
        let norm = params.gradNorm()
        let lr = config.optimizer.lr(step: step, total: totalSteps)
        let finite = r.loss.isFinite && norm.isFinite
        if finite {
            nonfiniteInARow = 0
            if config.optimizer.maxGradNorm > 0 && norm > config.optimizer.maxGradNorm {
                params.scaleGrad(Float(config.optimizer.maxGradNorm / norm))
            }
        } else {
            guard nonfiniteInARow + 1 < config.maxNonfiniteSteps else {
                consumed = before
                let ckpt = config.outputDir.flatMap { Checkpoints.latest(in: $0) }.map { "; newest checkpoint \($0)" } ?? ""
                throw PonderError.invalid("step \(step + 1): loss \(r.loss), gradient norm \(norm): not finite, "
                    + "\(config.maxNonfiniteSteps) steps in a row (training.max_nonfinite_steps); stopped with the weights and "
                    + "optimizer state of step \(step - nonfiniteInARow)\(ckpt) (learning rate too high, or non-finite weights or data?)")
            }
            nonfiniteInARow += 1
            nonfiniteSkipped += 1
        }
        step += 1
        if finite { adamWStep(params, config: config.optimizer, lr: lr, step: step - nonfiniteSkipped) }
        var m = StepMetrics(step: step, epoch: epoch, loss: r.loss, gradNorm: norm, learningRate: lr, tokens: r.tokens,
                            tokensPerSecond: Double(r.tokens) / (monotonicSeconds() - t0))
        m.nonfiniteSkipped = finite ? nil : nonfiniteInARow
        m.extra = r.metrics
        if let evaluate, config.evalSteps > 0 && step % config.evalSteps == 0 { m.eval = try evaluate() }
        if let f = metricsFile, step % config.loggingSteps == 0 || !m.eval.isEmpty || !finite {
            try appendLine(f, JSONValue.object(config.metricsFields + (m.json.asObject ?? [])).serialized())
        }
        if finite, let dir = config.outputDir, config.saveSteps > 0, step % config.saveSteps == 0 { try save(to: dir) }
        return m
    }
}

/// A trainer: its own data and loss on a shared TrainingRun. The C trainer handle, the CLI and
/// the Python binding drive any trainer through this.
/// A trainer config's own keys in the "data" and "training" objects, beside the shared ones.
public protocol TrainerKeys {
    mutating func read(data: JSONReader)
    mutating func read(training: JSONReader)
}

extension TrainerKeys {
    /// Reads this config's keys of both objects, then rejects what no reader took.
    mutating func readOwnKeys(data d: JSONReader?, training t: JSONReader?) {
        if let d {
            read(data: d)
            d.rejectUnknownKeys()
        }
        if let t {
            read(training: t)
            t.rejectUnknownKeys()
        }
    }
}

public protocol Trainer: AnyObject {
    var training: TrainingRun { get }
    /// One optimizer step (TrainingRun.step says what a failed one leaves behind).
    func trainStep() throws -> StepMetrics
    var hasEvaluation: Bool { get }
    /// eval_* metrics of the current weights; throws, naming the missing keys, without eval data.
    func evaluationMetrics() throws -> [(String, JSONValue)]
    /// The function of a reward the config declares in reward.custom.
    func registerReward(_ name: String, _ f: @escaping CustomReward) throws
    /// The environment the config's environment.name names (one not built in), made with the
    /// config's environment options.
    func registerEnvironment(_ name: String, _ make: @escaping EnvironmentMaker) throws
}

extension Trainer {
    public func registerReward(_ name: String, _ f: @escaping CustomReward) throws {
        throw PonderError(.misuse, "trainer: only a \"grpo\" trainer takes rewards")
    }

    public func registerEnvironment(_ name: String, _ make: @escaping EnvironmentMaker) throws {
        throw PonderError(.misuse, "trainer: only a \"grpo\" trainer takes an environment")
    }
}

extension Trainer {
    /// Trains to totalSteps, evaluates after the last one, and saves a checkpoint when
    /// output.dir is set. `onStep` returning false cancels: the state is saved the same way and
    /// PonderError(.cancelled) is thrown; run again to continue from there.
    @discardableResult
    public func run(onStep: ((StepMetrics) -> Bool)? = nil) throws -> StepMetrics? {
        let r = training
        var last: StepMetrics? = nil
        while r.step < r.totalSteps {
            var m = try trainStep()
            if r.step == r.totalSteps && m.eval.isEmpty && hasEvaluation {
                m.eval = try evaluationMetrics()
                if let f = r.metricsFile { try appendLine(f, JSONValue.object([("step", .int(Int64(r.step)))] + m.eval).serialized()) }
            }
            last = m
            if let cb = onStep, !cb(m) {
                let saved = try r.config.outputDir.map { try r.save(to: $0) }
                throw PonderError(.cancelled, "the callback stopped the run after step \(r.step) of \(r.totalSteps)"
                    + (saved.map { "; saved \($0)" } ?? ""))
            }
        }
        if let dir = r.config.outputDir { try r.save(to: dir) }
        return last
    }
}

/// The trainer a config asks for with "kind": "sft" (the default), "grpo" or "rejection_sft". Every other key belongs to
/// that kind's config.
public func makeTrainer(json: JSONValue) throws -> any Trainer {
    switch json["kind"] {
    case nil, .null?, .string("sft")?: return try SFTTrainer(config: SFTConfig(json: json))
    case .string("grpo")?: return try GRPOTrainer(config: GRPOConfig(json: json))
    case .string("rejection_sft")?: return try makeRejectionSFTTrainer(json: json)
    case let .string(k)?: throw PonderError.invalid("kind: unknown trainer kind \"\(k)\" (expected \"sft\", \"grpo\" or \"rejection_sft\")")
    case let v?: throw PonderError.invalid("kind: expected a string, got \(v.typeName)")
    }
}


func shuffle(_ a: inout [Int], _ rng: inout RandomGenerator) {
    guard a.count > 1 else { return }
    for i in stride(from: a.count - 1, to: 0, by: -1) {
        let j = Int(rng.next() % UInt64(i + 1))
        a.swapAt(i, j)
    }
}

#if canImport(Glibc)
import Glibc
#endif

public func appendLine(_ path: String, _ line: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    guard fd >= 0 else { throw PonderError(.io, "\(path): cannot open for append") }
    defer { close(fd) }
    let s = line + "\n"
    _ = s.withCString { write(fd, $0, strlen($0)) }
}
