import PonderBase
import PonderJSON
import PonderKernels
import PonderModel
import PonderText

/// Metrics of one optimizer step, named as TRL/transformers log them.
public struct StepMetrics: Sendable {
    public var step: Int
    public var epoch: Double
    public var loss: Double
    public var gradNorm: Double
    public var learningRate: Double
    public var tokens: Int
    public var tokensPerSecond: Double
    public var evalLoss: Double?

    public var json: JSONValue {
        var f: [(String, JSONValue)] = [("step", .int(Int64(step))), ("epoch", .double(epoch)), ("loss", .double(loss)),
                                        ("grad_norm", .double(gradNorm)), ("learning_rate", .double(learningRate)),
                                        ("num_tokens", .int(Int64(tokens))), ("tokens_per_second", .double(tokensPerSecond))]
        if let e = evalLoss { f.append(("eval_loss", .double(e))) }
        return .object(f)
    }
}

/// Stage 1: supervised fine-tuning, full-parameter or LoRA, with the loss on completion
/// tokens only. Checkpoints are atomic and a run resumes from the newest one exactly.
public final class SFTTrainer {
    public let config: SFTConfig
    public let model: LlamaModel
    public let params: TrainableParameters
    let acts: TrainActivations
    public let train: [SFTExample]
    public let eval: [SFTExample]
    public let totalSteps: Int
    public internal(set) var step = 0
    /// Examples consumed so far (epoch = consumed / train.count).
    public internal(set) var consumed = 0
    var order: [Int] = []
    var orderEpoch = -1
    var metricsFile: String?

    public init(config: SFTConfig) throws {
        self.config = config
        if let t = config.threads { setThreads(t) }
        model = try config.model.load()
        if let l = config.lora {
            model.adapters = try LoRAAdapters(config: l, model: model.config, seed: config.seed)
        }
        let ad = model.adapters
        if let ad {
            params = try TrainableParameters(entries: ad.entries, params: ad.arena.pointer, count: ad.arena.count)
        } else {
            params = try TrainableParameters(entries: model.layout.entries, params: model.weights.pointer, count: model.weights.count)
        }
        let maxLen = min(config.maxLength, model.config.maxPositions)
        var examples = try config.train.examples(system: config.system)
        var evalExamples = try config.eval?.examples(system: config.system) ?? []
        if evalExamples.isEmpty && config.evalFraction > 0 {
            // A seeded split, so the held-out set is the same on every resume.
            var rng = RandomGenerator(seed: config.seed &+ 0xE7A1)
            var idx = Array(examples.indices)
            shuffle(&idx, &rng)
            let n = max(1, Int(Double(examples.count) * config.evalFraction))
            let held = Set(idx.prefix(n))
            evalExamples = held.sorted().map { examples[$0] }
            examples = examples.indices.filter { !held.contains($0) }.map { examples[$0] }
        }
        let tokenizer = model.tokenizer, packing = config.packing
        func prepare(_ ex: [ChatExample]) -> [SFTExample] {
            let t = ex.compactMap { Datasets.tokenize($0, tokenizer: tokenizer, maxLength: maxLen) }
            return packing ? SFTTrainer.pack(t, length: maxLen) : t
        }
        train = prepare(examples)
        eval = prepare(evalExamples)
        guard !train.isEmpty else { throw PonderError.invalid("data.train: no example has completion tokens within max_length \(maxLen)") }
        let perStep = config.batchSize * config.gradientAccumulationSteps
        totalSteps = config.maxSteps > 0 ? config.maxSteps : max(1, Int((Double(train.count) * config.epochs / Double(perStep)).rounded(.up)))
        let longest = max(train.map(\.tokens.count).max() ?? 1, eval.map(\.tokens.count).max() ?? 1)
        acts = try TrainActivations(model: model, sequences: config.batchSize, length: longest, checkpointing: config.gradientCheckpointing)
        if let dir = config.outputDir {
            try makeDirectories(dir)
            metricsFile = dir + "/metrics.jsonl"
            if config.resume, let latest = Checkpoints.latest(in: dir) { try restore(from: latest) }
        }
    }

    /// Concatenates examples into rows of exactly `length` tokens (the last row may be shorter).
    static func pack(_ ex: [SFTExample], length: Int) -> [SFTExample] {
        var out: [SFTExample] = []
        var cur = SFTExample(tokens: [], trained: [])
        for e in ex {
            for (t, m) in zip(e.tokens, e.trained) {
                cur.tokens.append(t)
                cur.trained.append(m)
                if cur.tokens.count == length {
                    out.append(cur)
                    cur = SFTExample(tokens: [], trained: [])
                }
            }
        }
        if cur.trained.dropFirst().contains(true) { out.append(cur) }
        return out
    }

    /// The next example index in the seeded per-epoch order.
    func nextExample() -> Int {
        let epoch = consumed / train.count
        if epoch != orderEpoch {
            var rng = RandomGenerator(seed: config.seed &+ UInt64(epoch) &* 0x9E37_79B9)
            order = Array(train.indices)
            shuffle(&order, &rng)
            orderEpoch = epoch
        }
        defer { consumed += 1 }
        return order[consumed % train.count]
    }

    /// A right-padded batch; targets are the next token where it is a completion token.
    func batch(_ examples: [SFTExample]) -> TokenBatch {
        let len = examples.map(\.tokens.count).max()!
        let pad = model.tokenizer.eos ?? 0
        var tokens = [Int32](repeating: pad, count: examples.count * len)
        var targets = [Int32](repeating: -1, count: examples.count * len)
        for (b, e) in examples.enumerated() {
            for i in 0..<e.tokens.count {
                tokens[b * len + i] = e.tokens[i]
                if i + 1 < e.tokens.count && e.trained[i + 1] { targets[b * len + i] = e.tokens[i + 1] }
            }
        }
        return TokenBatch(sequences: examples.count, length: len, tokens: tokens, targets: targets)
    }

    /// One optimizer step over batch_size × gradient_accumulation_steps examples.
    @discardableResult
    public func trainStep() throws -> StepMetrics {
        let t0 = monotonicSeconds()
        let micro = (0..<config.gradientAccumulationSteps).map { _ in
            batch((0..<config.batchSize).map { _ in train[nextExample()] })
        }
        let n = micro.reduce(0) { $0 + $1.targets.filter { $0 >= 0 }.count }
        params.zeroGrad()
        var lossSum = 0.0
        for b in micro {
            let logp = try model.trainForward(b, acts)
            lossSum -= zip(logp, b.targets).reduce(0.0) { $0 + ($1.1 >= 0 ? Double($1.0) : 0) }
            let coef: [Float] = b.targets.map { $0 >= 0 ? -1 / Float(n) : 0 }
            model.trainBackward(b, acts, dLogp: coef, grads: params.grads.pointer)
        }
        let loss = lossSum / Double(max(n, 1))
        let norm = params.gradNorm()
        guard loss.isFinite, norm.isFinite else {
            throw PonderError.invalid("step \(step + 1): loss \(loss), gradient norm \(norm): not finite (learning rate too high?); weights left unchanged")
        }
        if config.optimizer.maxGradNorm > 0 && norm > config.optimizer.maxGradNorm {
            params.scaleGrad(Float(config.optimizer.maxGradNorm / norm))
        }
        let lr = config.optimizer.lr(step: step, total: totalSteps)
        step += 1
        adamWStep(params, config: config.optimizer, lr: lr, step: step)
        let tokens = micro.reduce(0) { $0 + $1.tokens.count }
        var m = StepMetrics(step: step, epoch: Double(consumed) / Double(train.count), loss: loss, gradNorm: norm,
                            learningRate: lr, tokens: tokens, tokensPerSecond: Double(tokens) / (monotonicSeconds() - t0))
        if config.evalSteps > 0 && step % config.evalSteps == 0 && !eval.isEmpty { m.evalLoss = try evaluate() }
        if let f = metricsFile, step % config.loggingSteps == 0 || m.evalLoss != nil { try appendLine(f, m.json.serialized()) }
        if let dir = config.outputDir, config.saveSteps > 0, step % config.saveSteps == 0 { try save(to: dir) }
        return m
    }

    /// Mean cross-entropy per completion token over the eval set.
    public func evaluate() throws -> Double {
        guard !eval.isEmpty else { throw PonderError.invalid("no eval data (data.eval or data.eval_fraction)") }
        var sum = 0.0, n = 0
        var i = 0
        while i < eval.count {
            let b = batch(Array(eval[i..<min(i + config.batchSize, eval.count)]))
            let logp = try model.trainForward(b, acts)
            for (lp, t) in zip(logp, b.targets) where t >= 0 {
                sum -= Double(lp)
                n += 1
            }
            i += config.batchSize
        }
        return sum / Double(max(n, 1))
    }

    /// Trains to totalSteps; `onStep` may return false to stop early (the state is saved).
    @discardableResult
    public func run(onStep: ((StepMetrics) -> Bool)? = nil) throws -> StepMetrics? {
        var last: StepMetrics? = nil
        while step < totalSteps {
            var m = try trainStep()
            if step == totalSteps && !eval.isEmpty && m.evalLoss == nil {
                m.evalLoss = try evaluate()
                if let f = metricsFile { try appendLine(f, JSONValue.object([("step", .int(Int64(step))), ("eval_loss", .double(m.evalLoss!))]).serialized()) }
            }
            last = m
            if let cb = onStep, !cb(m) { break }
        }
        if let dir = config.outputDir { try save(to: dir) }
        return last
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

func appendLine(_ path: String, _ line: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    guard fd >= 0 else { throw PonderError(.io, "\(path): cannot open for append") }
    defer { close(fd) }
    let s = line + "\n"
    _ = s.withCString { write(fd, $0, strlen($0)) }
}
