import PonderBase
import PonderEnvironments
import PonderJSON
import PonderModel
import PonderRewards
import PonderText

/// The JSON a GRPO run takes (kind "grpo"): the keys every trainer shares (`run`), "data" (the
/// prompts and their reference answers), "reward" (the reward set) and GRPO's keys in
/// "training", named as TRL's GRPOConfig names them. Defaults are the paper's (G = 7,
/// β = 0.04, loss "grpo", rewards accuracy + format + reflection weighted 1/1/1), not TRL's
/// (loss "dapo", β = 0).
public struct GRPOConfig: Sendable, TrainerKeys {
    public var run: TrainingRun.Config
    public var train: DataSource
    public var eval: DataSource?
    /// A system message before every prompt (the paper's when "system": "paper").
    public var system: String?
    public var maxPromptLength = 512
    public var reward = RewardConfig()
    /// Reward names whose functions the caller registers on the trainer (C: ponder_trainer_set_reward).
    public var customRewards: [String] = []

    /// Prompts a step samples, each with num_generations completions.
    public var promptsPerStep = 2
    public var numGenerations = 7
    /// Micro-batches the step's completions are split into (TRL: steps_per_generation).
    public var gradientAccumulationSteps = 1
    public var maxCompletionLength = 256
    /// No end token before this many completion tokens (TRL: generation_kwargs' min_new_tokens).
    public var minCompletionLength = 0
    public var sampling = SamplingParams()
    public var loss = GRPOLossParams()
    public var scaleRewards = RewardScaling.group
    public var aggregation = RewardAggregation.sumThenNormalize
    /// Optimizer steps per rollout (μ): the rollout's log-probabilities are the old policy.
    public var numIterations = 1
    /// Completions cut off at max_completion_length count no tokens in the loss.
    public var maskTruncatedCompletions = false
    /// Drop groups whose rewards are all equal (no signal) from the loss (DAPO's dynamic
    /// sampling, without resampling).
    public var skipZeroStdGroups = false
    /// Every this many steps, the step's completions go to completions.jsonl (0: never).
    public var logCompletionsSteps = 0
    /// Greedy evaluation: at most this many eval prompts (0: all).
    public var evalLimit = 0
    /// Multi-turn episodes: the environment that answers the model (nil: one turn, no environment).
    public var environment: EnvironmentConfig?

    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        let t = r.object("training")
        run = TrainingRun.Config(root: r, training: t, kind: "grpo")
        let data = DataSource.read(r)
        (train, eval, system) = (data.train, data.eval, data.system)
        readOwnKeys(data: data.data, training: t)
        loss.maxCompletionLength = maxCompletionLength
        if let w = r.object("reward") {
            read(reward: w)
            w.rejectUnknownKeys()
        } else {
            useDefaultReward()
        }
        read(environment: r)
        try r.finish()
    }

    /// The "environment" object of `r`, if it has one.
    public mutating func read(environment r: JSONReader) {
        if let e = r.object("environment") { environment = EnvironmentConfig.read(e) }
    }

    /// A config from parts read elsewhere (a pipeline stage); the `read` calls add GRPO's keys
    /// (`read(reward:)` or `useDefaultReward()` after `read(training:)`: the length reward's
    /// budget follows max_completion_length).
    public init(run: TrainingRun.Config, train: DataSource, eval: DataSource?, system: String?) {
        (self.run, self.train, self.eval, self.system) = (run, train, eval, system)
    }

    /// GRPO's keys of a "data" object (beside train, eval and system).
    public mutating func read(data d: JSONReader) {
        maxPromptLength = d.int("max_prompt_length", in: 1...1_048_576) ?? maxPromptLength
    }

    /// GRPO's keys of a "training" object (beside the shared ones).
    public mutating func read(training t: JSONReader) {
        promptsPerStep = t.int("prompts_per_step", in: 1...4096) ?? promptsPerStep
        numGenerations = t.int("num_generations", in: 2...1024) ?? numGenerations
        gradientAccumulationSteps = t.int("gradient_accumulation_steps", in: 1...4096) ?? gradientAccumulationSteps
        SamplingParams.readLengths(t, max: "max_completion_length", &maxCompletionLength, min: "min_completion_length", &minCompletionLength)
        sampling.read(t)
        sampling.requireSampling(t, because: "GRPO samples a group and scores it at logits / temperature")
        loss.beta = t.double("beta", "a number >= 0", valid: { $0 >= 0 }) ?? loss.beta
        loss.epsilonLow = t.double("epsilon", "a number in [0, 1)", valid: { $0 >= 0 && $0 < 1 }) ?? loss.epsilonLow
        loss.epsilonHigh = t.double("epsilon_high", "a positive number", valid: { $0 > 0 }) ?? loss.epsilonLow
        func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ current: T) -> T where T.RawValue == String {
            guard let s = t.string(key) else { return current }
            if let v = T(rawValue: s) { return v }
            t.fail(key, "expected one of \(T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), got \"\(s)\"")
            return current
        }
        loss.lossType = choice("loss_type", loss.lossType)
        loss.importanceSamplingLevel = choice("importance_sampling_level", loss.importanceSamplingLevel)
        loss.useBiasCorrectionKL = t.bool("use_bias_correction_kl") ?? loss.useBiasCorrectionKL
        scaleRewards = choice("scale_rewards", scaleRewards)
        aggregation = choice("multi_objective_aggregation", aggregation)
        numIterations = t.int("num_iterations", in: 1...1024) ?? numIterations
        maskTruncatedCompletions = t.bool("mask_truncated_completions") ?? maskTruncatedCompletions
        skipZeroStdGroups = t.bool("skip_zero_std_groups") ?? skipZeroStdGroups
        logCompletionsSteps = t.int("log_completions_steps", in: 0...100_000_000) ?? logCompletionsSteps
        evalLimit = t.int("eval_limit", in: 0...100_000_000) ?? evalLimit
        // CISPO's cap is an absolute bound on the ratio, not 1 + ε: it has no sensible default.
        if loss.lossType == .cispo && !t.has("epsilon_high") {
            t.fail("epsilon_high", "loss_type \"cispo\" caps the ratio at epsilon_high itself (e.g. 5): give it explicitly")
        }
        if (promptsPerStep * numGenerations) % gradientAccumulationSteps != 0 {
            t.fail("gradient_accumulation_steps", "must divide prompts_per_step × num_generations (\(promptsPerStep * numGenerations))")
        }
        loss.maxCompletionLength = maxCompletionLength
    }

    /// A "reward" object: the rewards, their options and "custom" (names registered at run time).
    public mutating func read(reward w: JSONReader) {
        (reward, customRewards) = RewardConfig.read(trainer: w)
        // The length reward's budget is the completion budget unless given.
        if !w.has("max_completion_length") { fitLengthReward() }
    }

    /// The default rewards (the paper's three, 1/1/1) with the length budget of this config.
    public mutating func useDefaultReward() {
        reward = RewardConfig()
        fitLengthReward()
    }

    public mutating func fitLengthReward() {
        reward.maxCompletionLength = maxCompletionLength
        reward.softPunishCache = min(reward.softPunishCache, maxCompletionLength)
    }

    public var dataJSON: [(String, JSONValue)] { [("max_prompt_length", .int(Int64(maxPromptLength)))] }

    public var trainingJSON: [(String, JSONValue)] {
        [
            ("prompts_per_step", .int(Int64(promptsPerStep))), ("num_generations", .int(Int64(numGenerations))),
            ("gradient_accumulation_steps", .int(Int64(gradientAccumulationSteps))),
            ("max_completion_length", .int(Int64(maxCompletionLength))),
            ("min_completion_length", .int(Int64(minCompletionLength))),
        ] + sampling.json + [
            ("beta", .double(loss.beta)), ("epsilon", .double(loss.epsilonLow)), ("epsilon_high", .double(loss.epsilonHigh)),
            ("loss_type", .string(loss.lossType.rawValue)), ("importance_sampling_level", .string(loss.importanceSamplingLevel.rawValue)),
            ("use_bias_correction_kl", .bool(loss.useBiasCorrectionKL)), ("scale_rewards", .string(scaleRewards.rawValue)),
            ("multi_objective_aggregation", .string(aggregation.rawValue)), ("num_iterations", .int(Int64(numIterations))),
            ("mask_truncated_completions", .bool(maskTruncatedCompletions)), ("skip_zero_std_groups", .bool(skipZeroStdGroups)),
            ("log_completions_steps", .int(Int64(logCompletionsSteps))), ("eval_limit", .int(Int64(evalLimit))),
        ]
    }

    /// The "reward" object, every option written out.
    public var rewardJSON: JSONValue {
        .object([("custom", .array(customRewards.map { .string($0) }))] + reward.json)
    }
}
