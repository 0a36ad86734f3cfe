import PonderBase
import PonderJSON
import PonderKernels
import PonderModel
import PonderText

/// Stage 1: supervised fine-tuning, full-parameter or LoRA, with the loss on completion
/// tokens only, on a TrainingRun (which owns the model, optimizer and checkpoints).
public final class SFTTrainer: Trainer {
    public let config: SFTConfig
    public let training: TrainingRun
    let acts: TrainActivations
    public let train: [SFTExample]
    public let eval: [SFTExample]

    public var model: LlamaModel { training.model }

    public init(config: SFTConfig) throws {
        self.config = config
        training = try TrainingRun(config: config.run)
        let model = training.model
        let maxLen = min(config.maxLength, model.config.maxPositions)
        var examples = try config.train.examples(system: config.system)
        if config.rawText { examples = examples.map(Datasets.rawText) }
        var evalExamples = try config.eval?.examples(system: config.system) ?? []
        if evalExamples.isEmpty && config.evalFraction > 0 {
            // A seeded split, so the held-out set is the same on every resume.
            var rng = RandomGenerator(seed: config.run.seed &+ 0xE7A1)
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
        let longest = max(train.map(\.tokens.count).max() ?? 1, eval.map(\.tokens.count).max() ?? 1)
        acts = try TrainActivations(model: model, sequences: config.batchSize, length: longest, checkpointing: config.run.gradientCheckpointing)
        try training.start(dataCount: train.count, perStep: config.batchSize * config.gradientAccumulationSteps)
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

    /// One optimizer step over batch_size × gradient_accumulation_steps examples. The loss is
    /// the mean over all their completion tokens, so accumulation equals one large batch.
    @discardableResult
    public func trainStep() throws -> StepMetrics {
        try training.step(evaluate: eval.isEmpty ? nil : evaluationMetrics) {
            let micro = (0..<config.gradientAccumulationSteps).map { _ in
                batch((0..<config.batchSize).map { _ in train[training.nextIndex()] })
            }
            let n = micro.reduce(0) { $0 + $1.targets.filter { $0 >= 0 }.count }
            var lossSum = 0.0
            for b in micro {
                let logp = try model.trainForward(b, acts)
                lossSum -= zip(logp, b.targets).reduce(0.0) { $0 + ($1.1 >= 0 ? Double($1.0) : 0) }
                let coef: [Float] = b.targets.map { $0 >= 0 ? -1 / Float(n) : 0 }
                model.trainBackward(b, acts, dLogp: coef, grads: training.params.grads.pointer)
            }
            return StepResult(loss: lossSum / Double(max(n, 1)), tokens: micro.reduce(0) { $0 + $1.tokens.count })
        }
    }

    public var hasEvaluation: Bool { !eval.isEmpty }

    public func evaluationMetrics() throws -> [(String, JSONValue)] { [("eval_loss", .double(try evaluate()))] }

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
}
