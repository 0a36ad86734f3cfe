import PonderBase
import PonderEnvironments
import PonderJSON
import PonderModel
import PonderRewards
import PonderTrain

/// The JSON a pipeline takes (docs/CONFIG.md documents every key; a test holds the two
/// together). The pipeline owns only its own keys — model, data, reward, output, seed, threads,
/// stages and each stage's type, name, mode, lora, data, save_steps; a stage's options are the
/// trainer's own keys (SFTConfig, GRPOConfig, RejectionSamplingConfig, EvalConfig read them, with
/// their defaults), written flat in the stage object, so `stages[1].beta` is GRPO's beta.
public struct PipelineConfig: Sendable {
    public enum StageType: String, Sendable, CaseIterable {
        case pretrain, sft, grpo, rejectionSFT = "rejection_sft", eval
    }

    /// How a training stage trains: every weight, LoRA adapters merged into the weights at the
    /// stage's end, or not at all (the stage passes its input model on: ablations).
    public enum Mode: String, Sendable, CaseIterable { case full, lora, none }

    public struct Stage: Sendable {
        public var type: StageType
        public var name: String
        public var mode = Mode.full
        public var lora: LoRAConfig?
        /// The data the stage trains on (evaluates, for "eval"); nil: the pipeline's data.
        public var data: DataSource?
        /// pretrain, sft, rejection_sft: SFT's options (model, output and data set at run time).
        public var sft: SFTConfig?
        public var grpo: GRPOConfig?
        public var rejection: RejectionSamplingConfig?
        /// rejection_sft: the prompts it samples; nil: the pipeline's data.train.
        public var rejectionPrompts: DataSource?
        public var eval: EvalConfig?

        /// The shared training keys (optimizer, seed, steps) of a training stage.
        public var run: TrainingRun.Config? { grpo?.run ?? sft?.run }
        public var trains: Bool { type != .eval && mode != .none }
        /// The environment a grpo stage trains with, or an eval stage evaluates episodes with.
        public var environment: EnvironmentConfig? { grpo?.environment ?? eval?.environment }
        /// Custom reward names the stage calls.
        public var customRewards: [String] { grpo?.customRewards ?? rejection?.customRewards ?? [] }
    }

    public var model: ModelSpec
    public var train: DataSource?
    public var eval: DataSource?
    public var system: String?
    public var reward = RewardConfig()
    public var customRewards: [String] = []
    /// reward.max_completion_length was given (else each GRPO stage's completion budget).
    var rewardLengthGiven = false
    public var outputDir: String
    public var saveSteps = 0
    public var saveTotalLimit = 2
    public var seed: UInt64 = 0
    public var threads: Int?
    public var stages: [Stage] = []

    /// Reads and validates a whole config; every problem is reported at once (INVALID_ARGUMENT,
    /// each with its JSON path). `checkFiles`: named model and data files must exist.
    public init(json: JSONValue, checkFiles: Bool = true) throws {
        let r = JSONReader(json)
        self.init(reader: r, checkFiles: checkFiles)
        try r.finish()
    }

    /// {"errors": [{"path", "message"}]}: what ponder_pipeline_validate and `ponder validate --json` give.
    public static func errorsJSON(_ problems: [(path: String, message: String)]) -> JSONValue {
        .object([("errors", .array(problems.map { .object([("path", .string($0.path)), ("message", .string($0.message))]) }))])
    }

    /// Every problem of `json` as (JSON path, message); empty when it is a valid config.
    public static func validate(_ json: JSONValue) -> [(path: String, message: String)] {
        let r = JSONReader(json)
        _ = PipelineConfig(reader: r, checkFiles: true)
        r.rejectUnknownKeys()
        return r.problems
    }

    init(reader r: JSONReader, checkFiles: Bool) {
        func source(_ o: JSONReader, _ key: String) -> DataSource? {
            let s = DataSource(o, key)
            if checkFiles, case let .jsonl(p, _)? = s, let why = unusablePath(p, as: .file) { o.fail(key, why) }
            return s
        }
        if let m = r.object("model") {
            model = ModelSpec(reader: m)
            if checkFiles, case let .path(p) = model, !p.isEmpty, let why = unusablePath(p, as: .model) { m.fail("path", why) }
        } else {
            r.failHere("missing \"model\" ({\"path\": ...} or {\"scratch\": {...}})")
            model = .path("")
        }
        if let d = r.object("data") {
            train = source(d, "train")
            eval = source(d, "eval")
            system = d.string("system").map(systemPrompt)
            d.rejectUnknownKeys()
        }
        if let w = r.object("reward") {
            (reward, customRewards) = RewardConfig.read(trainer: w)
            rewardLengthGiven = w.has("max_completion_length")
            w.rejectUnknownKeys()
        }
        outputDir = ""
        if let o = r.object("output") {
            if let d = o.path("dir"), !d.isEmpty { outputDir = d } else if !o.hasErrors { o.fail("dir", "required: the run directory") }
            saveSteps = o.int("save_steps", in: 0...100_000_000) ?? saveSteps
            saveTotalLimit = o.int("save_total_limit", in: 1...1000) ?? saveTotalLimit
            o.rejectUnknownKeys()
        } else {
            r.failHere("missing \"output\" ({\"dir\": RUN_DIR})")
        }
        seed = UInt64(r.int("seed", in: 0...Int64(Int32.max)) ?? 0)
        threads = r.int("threads", in: 1...256)
        guard let list = r.array("stages") else {
            if !r.has("stages") { r.failHere("missing \"stages\" (e.g. [{\"type\": \"sft\"}, {\"type\": \"grpo\"}, {\"type\": \"eval\"}])") }
            return
        }
        if list.isEmpty { r.fail("stages", "empty: name at least one stage") }
        var names: [String: Int] = [:]
        for (i, v) in list.enumerated() {
            let s = r.element("stages", i, v)
            guard let stage = readStage(s, index: i, names: &names, source: source) else { continue }
            stages.append(stage)
        }
    }

    /// One stage object; nil when its type is missing or unknown (reported).
    func readStage(_ s: JSONReader, index i: Int, names: inout [String: Int],
                            source: (JSONReader, String) -> DataSource?) -> Stage? {
        // Without a known type the other keys cannot be judged: only the type is reported.
        guard let t = s.string("type") else {
            if !s.has("type") { s.failHere("missing \"type\" (\(PipelineConfig.typeList))") }
            return nil
        }
        guard let type = StageType(rawValue: t) else {
            s.fail("type", "unknown stage type \"\(t)\" (\(PipelineConfig.typeList))")
            return nil
        }
        var stage = Stage(type: type, name: stageName(s, type: t, index: i, names: &names))
        stage.data = source(s, "data")

        if type != .eval && type != .pretrain {
            if let m = s.string("mode") {
                if let x = Mode(rawValue: m) { stage.mode = x } else { s.fail("mode", "expected \"full\", \"lora\" or \"none\", got \"\(m)\"") }
            }
            if let l = s.object("lora") {
                stage.lora = LoRAConfig(reader: l)
                if stage.mode != .lora { s.fail("lora", "LoRA options need \"mode\": \"lora\"") }
            } else if stage.mode == .lora {
                stage.lora = LoRAConfig()
            }
        }

        var run = TrainingRun.Config(model: model)
        run.seed = seed
        run.saveTotalLimit = saveTotalLimit
        if type != .eval {
            run.read(training: s)
            run.saveSteps = s.int("save_steps", in: 0...100_000_000) ?? saveSteps
            // The run's metrics.jsonl has every step of every stage: resuming cuts it back by step.
            if run.loggingSteps != 1 { s.fail("logging_steps", "a pipeline logs every step: only 1 is allowed") }
        }
        let placeholder = DataSource.arithmetic(count: 1, seed: 0, split: .train)
        func needTrain() -> DataSource {
            if let d = stage.data ?? train { return d }
            if !s.hasErrors { s.fail("data", "missing: give this stage \"data\" or the pipeline's data.train") }
            return placeholder
        }
        switch type {
        case .pretrain, .sft:
            var c = SFTConfig(run: run, train: needTrain(), eval: nil, system: type == .pretrain ? nil : system)
            c.rawText = type == .pretrain
            // Raw text is one stream: packed rows waste nothing on padding.
            if type == .pretrain { c.packing = true }
            c.read(data: s)
            c.read(training: s)
            stage.sft = c
        case .grpo:
            var c = GRPOConfig(run: run, train: needTrain(), eval: nil, system: system)
            c.read(data: s)
            c.read(training: s)
            if let w = s.object("reward") {
                c.read(reward: w)
                w.rejectUnknownKeys()
            } else {
                c.reward = reward
                c.customRewards = customRewards
                if !rewardLengthGiven { c.fitLengthReward() }
            }
            c.read(environment: s)
            stage.grpo = c
        case .rejectionSFT:
            readRejection(s, run: run, into: &stage)
        case .eval:
            var e = EvalConfig()
            e.seed = seed
            e.read(s)
            if stage.data == nil && eval == nil && !s.hasErrors {
                s.fail("data", "missing: give this stage \"data\" or the pipeline's data.eval")
            }
            stage.eval = e
        }
        s.rejectUnknownKeys()
        return stage
    }

    /// A stage's name: given, or its type (numbered from the second stage of that type on).
    func stageName(_ s: JSONReader, type t: String, index i: Int, names: inout [String: Int]) -> String {
        let sameType = names.keys.filter { $0 == t || $0.hasPrefix(t + "-") }.count
        var name = sameType == 0 ? t : "\(t)-\(sameType + 1)"
        if let n = s.string("name") {
            if n.isEmpty || n.count > 64 || !n.utf8.allSatisfy({ isNameByte($0) }) {
                s.fail("name", "expected 1 to 64 letters, digits, '-', '_' or '.', got \"\(n)\"")
            } else { name = n }
        }
        if let j = names[name] { s.fail("name", "\"\(name)\" is also stages[\(j)]'s name") }
        names[name] = i
        return name
    }

    /// A rejection_sft stage: its "rejection" sampling options, then SFT's keys on the samples
    /// (the training data is the sampled set, so the stage takes no "data").
    func readRejection(_ s: JSONReader, run: TrainingRun.Config, into stage: inout Stage) {
        let rj = s.object("rejection") ?? s.reader(for: .object([]), at: s.fieldPath("rejection"))
        let givenSystem = rj.has("system"), givenReward = rj.has("reward"), givenOutput = rj.has("output")
        var rc = (try? RejectionSamplingConfig(reader: rj, promptsRequired: false)) ?? RejectionSamplingConfig()
        if givenOutput { rj.fail("output", "a pipeline writes the samples into the stage's directory") }
        if rj.value("prompts") != nil { stage.rejectionPrompts = rc.prompts } else if train == nil && !s.hasErrors {
            rj.fail("prompts", "missing: give the prompts here or the pipeline's data.train")
        }
        if !givenSystem { rc.system = system }
        if !givenReward {
            rc.reward = reward
            rc.customRewards = customRewards
        }
        if case let .jsonl(p, _)? = stage.rejectionPrompts, let why = unusablePath(p, as: .file) { rj.fail("prompts", why) }
        stage.rejection = rc
        if stage.data != nil { s.fail("data", "a rejection_sft stage trains on its samples: the prompts are rejection.prompts") }
        var c = SFTConfig(run: run, train: .arithmetic(count: 1, seed: 0, split: .train), eval: nil, system: nil)
        c.read(data: s)
        c.read(training: s)
        stage.sft = c
    }

    static let typeList = "one of " + StageType.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")

    // MARK: - Resolved form

    /// The config with every default written out (config.resolved.json): reading it back gives
    /// the same config, so any run can be repeated from its run directory.
    public var resolvedJSON: JSONValue {
        .object([
            ("model", model.json),
            ("data", .object([("train", train?.json ?? .null), ("eval", eval?.json ?? .null), ("system", systemOption(system))])),
            ("reward", .object([("custom", .array(customRewards.map { .string($0) }))] + reward.json)),
            ("output", .object([("dir", .string(outputDir)), ("save_steps", .int(Int64(saveSteps))),
                                ("save_total_limit", .int(Int64(saveTotalLimit)))])),
            ("seed", .int(Int64(seed))),
            ("threads", threads.map { .int(Int64($0)) } ?? .null),
            ("stages", .array(stages.map(\.json))),
        ])
    }

    /// The documented defaults (ponder_default_config_json): every key with its default value,
    /// the paper's stages (SFT, GRPO, evaluation); "model", "output.dir" and the data are null:
    /// a config must give them.
    public static var defaults: JSONValue {
        var c = skeleton([.sft, .grpo, .eval])
        c.train = nil
        c.eval = nil
        guard case var .object(f) = c.resolvedJSON else { return .null }
        f[0].1 = .null
        if let i = f.firstIndex(where: { $0.0 == "output" }), case var .object(o) = f[i].1 {
            o[0].1 = .null
            f[i].1 = .object(o)
        }
        return .object(f)
    }

    /// A stage of `type` with every option at its default, as config.resolved.json writes it.
    public static func stageDefaults(_ type: StageType) -> JSONValue { skeleton([type]).stages[0].json }

    /// The smallest valid config with these stages, every option at its default.
    static func skeleton(_ types: [StageType]) -> PipelineConfig {
        try! PipelineConfig(json: .object([
            ("model", .object([("path", "")])), ("data", .object([("train", .object([("generate", "arithmetic")])),
                                                                   ("eval", .object([("generate", "arithmetic")]))])),
            ("output", .object([("dir", "-")])), ("stages", .array(types.map { .object([("type", .string($0.rawValue))]) })),
        ]), checkFiles: false)
    }
}

extension PipelineConfig.Stage {
    public var json: JSONValue {
        var f: [(String, JSONValue)] = [("type", .string(type.rawValue)), ("name", .string(name))]
        if type != .eval && type != .pretrain {
            f += [("mode", .string(mode.rawValue)), ("lora", lora?.json ?? .null)]
        }
        if type != .rejectionSFT { f.append(("data", data?.json ?? .null)) }
        if let e = eval { return .object(f + e.json) }
        if let run {
            f.append(("save_steps", .int(Int64(run.saveSteps))))
            f += run.trainingJSON
        }
        if let g = grpo {
            f += g.dataJSON + g.trainingJSON
            f.append(("reward", g.rewardJSON))
            f.append(("environment", g.environment?.json ?? .null))
        } else if let c = sft {
            f += c.dataJSON + c.trainingJSON
        }
        if let rc = rejection {
            f.append(("rejection", .object([("prompts", rejectionPrompts?.json ?? .null)] + rc.json)))
        }
        return .object(f)
    }
}

func isNameByte(_ b: UInt8) -> Bool {
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E
}

/// Indented JSON for files people read (config.resolved.json, eval.json).
public func prettyJSON(_ v: JSONValue, indent: String = "") -> String {
    let inner = indent + "  "
    switch v {
    case let .object(f) where !f.isEmpty && f.contains(where: { if case .object = $0.1 { return true }; if case .array = $0.1 { return true }; return false }) || f.count > 4:
        return "{\n" + f.map { k, x in inner + JSONValue.string(k).serialized() + ": " + prettyJSON(x, indent: inner) }.joined(separator: ",\n")
            + "\n" + indent + "}"
    case let .array(a) where a.contains(where: { if case .object = $0 { return true }; return false }):
        return "[\n" + a.map { inner + prettyJSON($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
    default:
        return v.serialized()
    }
}
