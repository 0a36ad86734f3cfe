import PonderBase
import PonderEnvironments
import PonderJSON
import PonderKernels
import PonderModel
import PonderRewards
import PonderText

/// Stage 3: Group Relative Policy Optimization on a TrainingRun. A step samples
/// prompts_per_step prompts × num_generations completions in one grouped decode (each prompt's
/// cache shared by its group), scores them with the reward set, turns rewards into group
/// advantages, and descends GRPO's loss (GRPOLoss.swift, TRL's computation) over the
/// completions in gradient_accumulation_steps micro-batches.
///
/// Log-probabilities follow TRL: the policy, the old policy and the reference are all scored by
/// the training forward on logits / temperature. Sampling filters (top-k, top-p, min-p,
/// repetition penalty) shape what is sampled, but every ratio is to the unfiltered policy at
/// the temperature. With one update per rollout (num_iterations 1) the old log-probabilities
/// are the current ones, detached, so each ratio is exactly 1 and no extra pass is made.
public final class GRPOTrainer: Trainer {
    public let config: GRPOConfig
    public let training: TrainingRun
    public let prompts: [GRPOPrompt]
    public let evalPrompts: [GRPOPrompt]
    let promptIDs: [[Int32]]
    let acts: TrainActivations
    /// The frozen reference for the KL term of a full fine-tune (with LoRA the reference is the
    /// base model: the adapters switched off, no second copy).
    let reference: LlamaModel?
    var custom: [String: CustomReward] = [:]
    var rollout: Rollout?
    var completionsFile: String?
    /// The caller's environment (setEnvironment), for a config's environment that is not built in.
    var registeredEnvironment: EnvironmentMaker?
    /// A prompt's token budget: max_prompt_length, within the context left by the completion.
    let maxPromptTokens: Int

    public var model: LlamaModel { training.model }

    struct Sequence {
        var prompt: Int          // index into the step's prompts
        var index: Int           // index into the step's completions
        var promptIDs: [Int32]
        var completion: [Int32]
        var text: String
        var finish: FinishReason
        var mask: [Bool]
        var advantage = 0.0
        var oldLogp: [Float]?
        var refLogp: [Float]?
        var scores: ScoredCompletion?
    }

    struct Rollout {
        var sequences: [Sequence]
        var metrics: [(String, JSONValue)]
        /// The environment's episodes, one per completion (nil: single-turn).
        var episodes: [Episodes.Episode]?
    }

    public init(config: GRPOConfig) throws {
        self.config = config
        training = try TrainingRun(config: config.run)
        let model = training.model
        prompts = try config.train.prompts(system: config.system)
        var evalList = try config.eval?.prompts(system: config.system) ?? []
        if config.evalLimit > 0 && evalList.count > config.evalLimit { evalList = Array(evalList.prefix(config.evalLimit)) }
        evalPrompts = evalList
        let budget = model.config.maxPositions - config.maxCompletionLength
        guard budget >= 1 else {
            throw PonderError.invalid("training.max_completion_length: \(config.maxCompletionLength) leaves no room for a prompt in the context of \(model.config.maxPositions)")
        }
        let maxPrompt = min(config.maxPromptLength, budget)
        maxPromptTokens = maxPrompt
        promptIDs = try prompts.map { try model.promptTokens(.chat($0.messages), keepLast: maxPrompt) }
        // An environment's first observation replaces the prompt: it may be as long as allowed.
        let longest = (config.environment != nil ? maxPrompt : promptIDs.map(\.count).max() ?? 1) + config.maxCompletionLength
        let micro = config.promptsPerStep * config.numGenerations / config.gradientAccumulationSteps
        acts = try TrainActivations(model: model, sequences: micro, length: longest, checkpointing: config.run.gradientCheckpointing)
        reference = config.loss.beta != 0 && config.run.lora == nil ? try config.run.model.load() : nil
        try training.start(dataCount: prompts.count, perStep: config.promptsPerStep)
        if let d = config.run.outputDir, config.logCompletionsSteps > 0 { completionsFile = d + "/completions.jsonl" }
    }

    public func registerEnvironment(_ name: String, _ make: @escaping EnvironmentMaker) throws {
        try setEnvironment(name, make(config.environment?.options ?? .null))
    }

    public func registerReward(_ name: String, _ f: @escaping CustomReward) throws { try setReward(name, f) }

    /// Registers the environment named by the config's environment.name (one not built in).
    public func setEnvironment(_ name: String, _ factory: @escaping EnvironmentFactory) throws {
        guard let e = config.environment else { throw PonderError.invalid("environment \"\(name)\": the config has no \"environment\"") }
        guard e.name == name else { throw PonderError.invalid("environment \"\(name)\": the config's environment is \"\(e.name)\"") }
        guard !BuiltinEnvironments.names.contains(name) else { throw PonderError.invalid("environment \"\(name)\" is built in") }
        registeredEnvironment = { _ in factory }
    }

    /// Registers the function of a reward named in reward.custom.
    public func setReward(_ name: String, _ f: @escaping CustomReward) throws {
        guard config.customRewards.contains(name) else {
            throw PonderError.invalid("reward \"\(name)\" is not declared in the config's reward.custom (\(config.customRewards))")
        }
        custom[name] = f
    }

    func rewardSet() throws -> RewardSet {
        for name in config.customRewards where custom[name] == nil {
            throw PonderError(.misuse, "reward \"\(name)\" is declared in reward.custom but no function was registered for it")
        }
        return RewardSet(config: config.reward, custom: custom)
    }

    // MARK: - Rollout

    /// One rollout: sample → score → advantages → reference log-probs, then its metrics and
    /// the completions log.
    func makeRollout() throws -> Rollout {
        let rewards = try rewardSet()
        let stepPrompts = (0..<config.promptsPerStep).map { _ in prompts[training.nextIndex()] }
        let t0 = monotonicSeconds()
        let gen = try sample(stepPrompts)
        let t1 = monotonicSeconds()
        var seqs = sequences(gen)
        let texts = gen.finalTexts
        let adv = try score(&seqs, texts: texts, prompts: stepPrompts, episodes: gen.episodes, rewards: rewards)
        // The paper's quantities, on every completion of the step, from the run's own scores
        // (accuracy and format rates are those of the configured rewards, when it has them).
        let rates = Evaluation.rates(texts: texts, scored: seqs.compactMap(\.scores))
        if config.skipZeroStdGroups { seqs = seqs.filter { !adv.isStdZero[$0.index] } }
        let t2 = monotonicSeconds()
        try scoreReferences(&seqs)
        let t3 = monotonicSeconds()
        var metrics: [(String, JSONValue)] = adv.metrics.map { ($0.0, .double($0.1)) }
        metrics += Self.lengthMetrics(gen.completions)
        metrics += rates
        if let eps = gen.episodes { metrics += Episodes.metrics(eps) }
        let tokens = gen.completions.reduce(0) { $0 + $1.tokenIDs.count }
        metrics += [("rollout_seconds", .double(t1 - t0)), ("reference_seconds", .double(t3 - t2)),
                    ("rollout_tokens_per_second", .double(gen.decodeSeconds > 0 ? Double(tokens) / gen.decodeSeconds : 0))]
        if let f = completionsFile, (training.step + 1) % config.logCompletionsSteps == 0 {
            try logCompletions(seqs, prompts: stepPrompts, episodes: gen.episodes, to: f)
        }
        return Rollout(sequences: seqs, metrics: metrics, episodes: gen.episodes)
    }

    /// The step's prompts × G completions, seeded by (seed, step) and each prompt's place in the
    /// step; with an environment, every member of a group starts from the same task and seed.
    func sample(_ stepPrompts: [GRPOPrompt]) throws -> BatchedGeneration.Output {
        var req = GenerateRequest()
        req.n = config.numGenerations
        req.minTokens = config.minCompletionLength
        req.sampling = config.sampling
        // A function of (seed, step), so a resumed run samples what the uninterrupted one did.
        var rng = RandomGenerator(seed: training.config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(training.step))
        req.seed = rng.next() >> 1
        var batched = BatchedGeneration(request: req, maxNewTokens: config.maxCompletionLength, maxPromptLength: maxPromptTokens,
                                        model: model, perBatch: stepPrompts.count)
        if let e = config.environment {
            batched.environment = (e, try e.factory(registered: registeredEnvironment))
            batched.episodeSeeds = stepPrompts.map { _ in rng.next() }
        }
        return try batched.run(model: model, prompts: stepPrompts)
    }

    /// One training sequence per completion, with its loss mask.
    func sequences(_ gen: BatchedGeneration.Output) -> [Sequence] {
        gen.completions.enumerated().map { i, c in
            let k = i / config.numGenerations
            // Truncated completions may be left out of the loss; the rest count every token,
            // their end-of-sequence token included (the model must learn to stop).
            let keep = !(config.maskTruncatedCompletions && c.finishReason == .length)
            var mask = Array(repeating: keep, count: c.tokenIDs.count)
            // An environment's tokens are not the model's: no loss, no normaliser, no KL.
            for r in gen.episodes?[i].contextRanges ?? [] {
                for j in r where j < mask.count { mask[j] = false }
            }
            return Sequence(prompt: k, index: i, promptIDs: gen.promptIDs[k], completion: c.tokenIDs, text: c.text,
                            finish: c.finishReason, mask: mask)
        }
    }

    /// Rewards of each sequence's scored text, then the group advantages (TRL's computation).
    func score(_ seqs: inout [Sequence], texts: [String], prompts stepPrompts: [GRPOPrompt], episodes: [Episodes.Episode]?,
               rewards: RewardSet) throws -> GroupAdvantages {
        for i in seqs.indices {
            let p = stepPrompts[seqs[i].prompt]
            seqs[i].scores = rewards.score(RewardInput(completion: texts[i], reference: p.reference, prompt: p.text,
                                                       completionTokens: seqs[i].mask.filter { $0 }.count))
        }
        var names = config.reward.rewards, weights = config.reward.rewardWeights
        var matrix = seqs.map { s in names.map { s.scores?[$0]?.value ?? .nan } }
        if let eps = episodes, let e = config.environment {
            names.append("environment")
            weights.append(e.rewardWeight)
            for i in matrix.indices {
                // A failed episode scores nothing: its advantage is 0 and its group's baseline
                // is the others'.
                matrix[i] = eps[i].error != nil ? matrix[i].map { _ in .nan } + [.nan] : matrix[i] + [eps[i].reward ?? .nan]
            }
        }
        let adv = try groupAdvantages(rewards: matrix, weights: weights, names: names, groupSize: config.numGenerations,
                                      scale: config.scaleRewards, aggregation: config.aggregation)
        for i in seqs.indices { seqs[i].advantage = adv.advantages[i] }
        return adv
    }

    /// The old policy's (μ > 1) and the reference's log-probabilities, before any update of
    /// this rollout.
    func scoreReferences(_ seqs: inout [Sequence]) throws {
        if config.numIterations > 1 {
            for range in microBatches(seqs.count) {
                let lp = try scoreLogp(Array(seqs[range]), with: model)
                for (j, i) in range.enumerated() { seqs[i].oldLogp = lp[j] }
            }
        }
        guard config.loss.beta != 0 else { return }
        let saved = model.adapters
        if saved != nil { model.adapters = nil }
        defer { if saved != nil { model.adapters = saved } }
        for range in microBatches(seqs.count) {
            let lp = try scoreLogp(Array(seqs[range]), with: reference ?? model)
            for (j, i) in range.enumerated() { seqs[i].refLogp = lp[j] }
        }
    }

    static func lengthMetrics(_ all: [Completion]) -> [(String, JSONValue)] {
        let lengths = all.map { Double($0.tokenIDs.count) }
        let terminated = all.filter { $0.finishReason != .length }.map { Double($0.tokenIDs.count) }
        return [
            ("completions/mean_length", .double(lengths.reduce(0, +) / Double(max(1, lengths.count)))),
            ("completions/min_length", .double(lengths.min() ?? 0)),
            ("completions/max_length", .double(lengths.max() ?? 0)),
            ("completions/clipped_ratio", .double(Double(all.count - terminated.count) / Double(max(1, all.count)))),
            ("completions/mean_terminated_length", .double(terminated.isEmpty ? 0 : terminated.reduce(0, +) / Double(terminated.count))),
        ]
    }

    func logCompletions(_ seqs: [Sequence], prompts stepPrompts: [GRPOPrompt], episodes: [Episodes.Episode]?, to f: String) throws {
        for s in seqs {
            var fields: [(String, JSONValue)] = [("step", .int(Int64(training.step + 1))),
                                                 ("prompt", .string(stepPrompts[s.prompt].text)),
                                                 ("completion", .string(s.text)), ("advantage", .double(s.advantage))]
            if let sc = s.scores { fields.append(("rewards", sc.json)) }
            if let e = episodes?[s.index] {
                fields += [("turns", .int(Int64(e.turns))), ("ended", .string(e.ended)), ("environment_reward", e.reward.map { .double($0) } ?? .null)]
                if let err = e.error { fields.append(("environment_error", .string(err))) }
                if !e.info.isEmpty { fields.append(("environment_info", .array(e.info))) }
            }
            try appendLine(f, JSONValue.object(fields).serialized())
        }
    }

    /// The step's sequences split into gradient_accumulation_steps contiguous micro-batches.
    func microBatches(_ n: Int) -> [Range<Int>] {
        let m = config.gradientAccumulationSteps
        let size = (n + m - 1) / m
        return stride(from: 0, to: n, by: max(1, size)).map { $0..<min(n, $0 + size) }
    }

    /// The rows of `seqs` with every completion token as a target, and for each sequence the
    /// row that predicts its first completion token. A prompt shared by consecutive sequences (a
    /// group's) is one shared prefix (all but its last token, which starts each sequence's own
    /// rows): the G completions of a prompt then cost its rows once in the forward and backward,
    /// not G times. Otherwise a sequence's rows are its whole prompt and completion. Sequences are
    /// right-padded to the longest.
    func batch(_ seqs: [Sequence]) -> (batch: TokenBatch, first: [Int]) {
        var prefixLengths: [Int] = [], prefixOf: [Int] = [], tokens: [Int32] = []
        for (k, s) in seqs.enumerated() {
            if k > 0, prefixOf[k - 1] >= 0, s.promptIDs == seqs[k - 1].promptIDs { prefixOf.append(prefixOf[k - 1]); continue }
            guard s.promptIDs.count >= 2 else { prefixOf.append(-1); continue }
            prefixOf.append(prefixLengths.count)
            prefixLengths.append(s.promptIDs.count - 1)
            tokens += s.promptIDs.dropLast()
        }
        // No prompt shared by two sequences: nothing to save, every sequence stands whole.
        if prefixOf.filter({ $0 >= 0 }).count == prefixLengths.count { (prefixLengths, prefixOf, tokens) = ([], [], []) }
        // Each sequence's own rows: what its prefix leaves of the prompt, then the completion
        // (its last token predicts nothing).
        let heads = seqs.indices.map { prefixOf.isEmpty || prefixOf[$0] < 0 ? seqs[$0].promptIDs[...] : seqs[$0].promptIDs.suffix(1) }
        let len = max(1, seqs.indices.map { heads[$0].count + max(0, seqs[$0].completion.count - 1) }.max() ?? 1)
        let start = tokens.count
        tokens += [Int32](repeating: model.tokenizer.eos ?? 0, count: seqs.count * len)
        var targets = [Int32](repeating: -1, count: tokens.count)
        var first: [Int] = []
        for (k, s) in seqs.enumerated() {
            let row = start + k * len
            for (i, t) in (heads[k] + s.completion.dropLast()).enumerated() { tokens[row + i] = t }
            first.append(row + heads[k].count - 1)
            for (j, t) in s.completion.enumerated() { targets[first[k] + j] = t }
        }
        return (TokenBatch(sequences: seqs.count, length: len, tokens: tokens, targets: targets,
                           temperature: config.sampling.temperature, prefixLengths: prefixLengths, prefixOf: prefixOf), first)
    }

    /// log p of each completion token under `m` (no gradient).
    func scoreLogp(_ seqs: [Sequence], with m: LlamaModel) throws -> [[Float]] {
        guard !seqs.isEmpty else { return [] }
        let (b, first) = batch(seqs)
        let lp = try m.trainForward(b, acts)
        return seqs.enumerated().map { k, s in (0..<s.completion.count).map { lp[first[k] + $0] } }
    }

    // MARK: - Step

    @discardableResult
    public func trainStep() throws -> StepMetrics {
        try training.step(evaluate: evalPrompts.isEmpty ? nil : evaluationMetrics) {
            if rollout == nil || training.step % config.numIterations == 0 { rollout = try makeRollout() }
            guard let r = rollout else { throw PonderError(.internal, "no rollout") }
            let t0 = monotonicSeconds()
            let seqs = r.sequences
            let stepTokens = seqs.reduce(0) { $0 + $1.mask.filter { $0 }.count }
            let ranges = microBatches(seqs.count)
            var loss = 0.0, tokens = 0
            var entropySum = 0.0, entropyCount = 0.0
            var micro: [[(String, Double)]] = []
            for range in ranges {
                let part = Array(seqs[range])
                let (b, first) = batch(part)
                tokens += part.reduce(0) { $0 + $1.promptIDs.count + $1.completion.count }
                var entropy = [Float](repeating: 0, count: b.rows)
                let lp = try entropy.withUnsafeMutableBufferPointer { try model.trainForward(b, acts, entropy: $0.baseAddress!) }
                var inputs: [GRPOSequence] = []
                for (k, s) in part.enumerated() {
                    let base = first[k]
                    let logp = (0..<s.completion.count).map { lp[base + $0] }
                    for j in 0..<s.completion.count where s.mask[j] {
                        entropySum += Double(entropy[base + j])
                        entropyCount += 1
                    }
                    inputs.append(GRPOSequence(logp: logp, oldLogp: s.oldLogp, refLogp: s.refLogp, mask: s.mask, advantage: s.advantage))
                }
                let res = try grpoMicroBatchLoss(inputs, params: config.loss, microBatches: ranges.count, stepTokens: stepTokens)
                loss += res.loss
                micro.append(res.metrics)
                var coef = [Float](repeating: 0, count: b.rows)
                for (k, s) in part.enumerated() {
                    let base = first[k]
                    for j in 0..<s.completion.count { coef[base + j] = res.dLogp[k][j] }
                }
                model.trainBackward(b, acts, dLogp: coef, grads: training.params.grads.pointer)
            }
            var metrics = r.metrics
            // Micro-batch metrics as TRL logs them over a step: the mean of each, except the
            // extremes, which are the extreme over micro-batches.
            for (key, _) in micro.first ?? [] {
                let values = micro.compactMap { $0.first { $0.0 == key }?.1 }.filter { !$0.isNaN }
                let v: Double = key.hasSuffix("_min") ? (values.min() ?? .nan) : key.hasSuffix("_max") ? (values.max() ?? .nan)
                    : values.reduce(0, +) / Double(max(1, values.count))
                metrics.append((key, .double(v)))
            }
            metrics.append(("entropy", .double(entropySum / max(1, entropyCount))))
            metrics.append(("update_seconds", .double(monotonicSeconds() - t0)))
            return StepResult(loss: loss, tokens: tokens, metrics: metrics)
        }
    }

    public var hasEvaluation: Bool { !evalPrompts.isEmpty }

    public func evaluationMetrics() throws -> [(String, JSONValue)] {
        guard !evalPrompts.isEmpty else { throw PonderError.invalid("no eval prompts (data.eval)") }
        if let e = config.environment {
            return try Evaluation.episodes(model: model, prompts: evalPrompts, environment: e,
                                           factory: try e.factory(registered: registeredEnvironment),
                                           maxNewTokens: config.maxCompletionLength, maxPromptLength: maxPromptTokens)
                .map { ("eval_" + $0.0, $0.1) }
        }
        let r = try Evaluation.run(model: model, prompts: evalPrompts, maxTokens: config.maxCompletionLength,
                                   maxPromptLength: config.maxPromptLength)
        return r.metrics.map { ("eval_" + $0.0, $0.1) }
    }
}
