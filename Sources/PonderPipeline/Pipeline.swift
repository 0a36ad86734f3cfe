import PonderBase
import PonderEnvironments
import PonderJSON
import PonderModel
import PonderRewards
import PonderTrain
#if canImport(Glibc)
import Glibc
#endif

/// A run of a PipelineConfig in its run directory:
///
///     RUN/config.resolved.json   the config with every default (what `resume` reads)
///     RUN/state.json             which stages are done and the model each produced
///     RUN/metrics.jsonl          every step of every stage, tagged "stage", "stage_index"
///     RUN/eval.json              {"rows": [...]}: every evaluated model, in stage order
///     RUN/stages/NN-name/        a stage's checkpoints, its model/ (HF safetensors), GRPO's
///                                completions.jsonl, an eval stage's eval.json and completions
///     RUN/model/, RUN/model.gguf the final model;   RUN/report.html  the report
///
/// Stages run in order, each starting from the model of the last stage before it that trained
/// one. A training stage checkpoints every save_steps steps and at its end (TrainingRun's atomic
/// checkpoints); a resumed run re-enters the first stage not done, which continues from its
/// newest checkpoint, and cuts metrics.jsonl back to that step first, so no step is logged twice
/// or lost. Rollouts and data order are functions of (seed, step), so the resumed run ends with
/// the uninterrupted run's weights and metrics (same threads).
public final class Pipeline {
    public let config: PipelineConfig
    public let dir: String
    var state: RunState
    var custom: [String: CustomReward] = [:]
    var environments: [String: EnvironmentMaker] = [:]
    /// Called on the thread running the pipeline with each event (JSON); false cancels.
    public var onEvent: ((JSONValue) -> Bool)? {
        get { statusLock.locked { eventHandler } }
        set { statusLock.locked { eventHandler = newValue } }
    }
    var eventHandler: ((JSONValue) -> Bool)?
    let flag = Flag()
    /// A run is in progress (one at a time; rewards cannot change under it).
    let busy = Flag()
    let statusLock = Lock()
    var statusValue: [(String, JSONValue)] = [("state", "idle")]
    /// The stages' statuses as status() reports them (state itself belongs to the running thread).
    var stageStatuses: [String] = []

    /// Validates `json` completely, refuses a directory that already holds a run, and writes
    /// config.resolved.json and state.json there. Nothing is trained yet.
    public static func create(json: JSONValue) throws -> Pipeline {
        let config = try PipelineConfig(json: json)
        let dir = config.outputDir
        if fileExists(dir + "/state.json") || fileExists(dir + "/config.resolved.json") {
            throw PonderError.invalid("output.dir: \(dir) already holds a run; continue it with `ponder resume \(dir)` "
                                      + "(ponder_pipeline_resume), or choose another output.dir")
        }
        try makeDirectories(dir)
        try AtomicFile.write(dir + "/config.resolved.json", prettyJSON(config.resolvedJSON) + "\n")
        let p = Pipeline(config: config, dir: dir, state: RunState(config.stages))
        try p.saveState()
        return p
    }

    /// The run in `dir`, as config.resolved.json and state.json describe it.
    public static func resume(dir: String) throws -> Pipeline {
        guard fileExists(dir + "/config.resolved.json") else {
            throw PonderError(.io, "\(dir): no config.resolved.json (not a run directory; start one with `ponder run CONFIG`)")
        }
        var json = try JSONValue.parse(file: dir + "/config.resolved.json")
        // The directory given is where the run is now, whatever output.dir said when it started.
        if case var .object(f) = json, let i = f.firstIndex(where: { $0.0 == "output" }), case var .object(o) = f[i].1 {
            o.removeAll { $0.0 == "dir" }
            o.insert(("dir", .string(dir)), at: 0)
            f[i].1 = .object(o)
            json = .object(f)
        }
        let config = try PipelineConfig(json: json)
        let state = fileExists(dir + "/state.json") ? try RunState(json: JSONValue.parse(file: dir + "/state.json"), stages: config.stages, dir: dir)
            : RunState(config.stages)
        return Pipeline(config: config, dir: dir, state: state)
    }

    init(config: PipelineConfig, dir: String, state: RunState) {
        self.config = config
        self.dir = dir
        self.state = state
        stageStatuses = state.stages.map(\.status)
        setStatus([("state", state.finished ? "finished" : "idle")])
    }

    /// The function of a custom reward named in the config's reward.custom (or a stage's).
    public func registerReward(_ name: String, _ f: @escaping CustomReward) throws {
        guard !busy.get() else { throw PonderError(.misuse, "the pipeline is running: register rewards before running it") }
        let declared = Set(config.customRewards + config.stages.flatMap(\.customRewards))
        guard declared.contains(name) else {
            throw PonderError.invalid("reward \"\(name)\" is not declared in the config's reward.custom (declared: \(declared.sorted()))")
        }
        custom[name] = f
    }

    /// The environment a grpo stage names in its "environment" (one not built in).
    public func registerEnvironment(_ name: String, _ f: @escaping EnvironmentMaker) throws {
        guard !busy.get() else { throw PonderError(.misuse, "the pipeline is running: register environments before running it") }
        let named = Set(config.stages.compactMap(\.environment?.name)).subtracting(BuiltinEnvironments.names)
        guard named.contains(name) else {
            throw PonderError.invalid("environment \"\(name)\" is not named by a stage's environment.name (named and not built in: \(named.sorted()))")
        }
        environments[name] = f
    }

    /// Asks the running pipeline to stop at its next step boundary (safe from any thread); the
    /// run then saves a checkpoint and returns PonderError(.cancelled).
    public func cancel() { flag.set(true) }

    // MARK: - Running

    /// Runs every stage not done yet, then writes the final model and the report.
    public func run() throws {
        try guardedRun {
            for i in config.stages.indices where !state.stages[i].done { try execute(i) }
            try finish()
        }
    }

    /// Runs stage `index` alone (0-based). The stages before it must be done; a done stage is
    /// not run again. After the last stage, the final model and the report are written.
    public func runStage(_ index: Int) throws {
        guard config.stages.indices.contains(index) else {
            throw PonderError.invalid("index: \(index) is not a stage (the config has \(config.stages.count))")
        }
        if let j = (0..<index).first(where: { !state.stages[$0].done }) {
            throw PonderError(.misuse, "stage \(index) (\(config.stages[index].name)) needs stage \(j) (\(config.stages[j].name)) done first")
        }
        guard !state.stages[index].done else { throw PonderError(.misuse, "stage \(index) (\(config.stages[index].name)) is done already") }
        try guardedRun {
            try execute(index)
            if state.stages.allSatisfy(\.done) { try finish() }
        }
    }

    func guardedRun(_ body: () throws -> Void) throws {
        guard busy.testAndSet() else { throw PonderError(.misuse, "the pipeline is running already (one run at a time)") }
        defer { busy.set(false) }
        let needed = Set(config.stages.indices.filter { !state.stages[$0].done }.flatMap { config.stages[$0].customRewards })
        let missing = needed.subtracting(custom.keys).sorted()
        guard missing.isEmpty else {
            throw PonderError(.misuse, "custom rewards \(missing) are named in the config but not registered (ponder_pipeline_register_reward)")
        }
        let envs = Set(config.stages.indices.filter { !state.stages[$0].done }.compactMap { config.stages[$0].environment?.name })
        let unregistered = envs.subtracting(BuiltinEnvironments.names).subtracting(environments.keys).sorted()
        guard unregistered.isEmpty else {
            throw PonderError(.misuse, "environments \(unregistered) are named in the config but not registered (ponder_pipeline_register_environment)")
        }
        setStatus([("state", "running")])
        defer { flag.set(false) }
        do {
            try body()
            setStatus([("state", "finished")])
        } catch let e as PonderError {
            setStatus([("state", e.code == .cancelled ? "cancelled" : "failed"), ("error", .string(e.message))])
            _ = emit(["event": "log", "level": "error", "message": .string(e.message)])
            throw e
        }
    }

    var stopRequested: Bool { flag.get() }

    func stageDir(_ i: Int) -> String { dir + "/" + stageRelDir(i) }
    func stageRelDir(_ i: Int) -> String { stageDirectory(i, config.stages[i].name) }

    /// The model stage `i` starts from: the newest one an earlier stage trained, else the config's.
    func inputModel(_ i: Int) -> (spec: ModelSpec, producer: String, path: String) {
        for j in stride(from: i - 1, through: 0, by: -1) {
            if let m = state.stages[j].model { return (.path(dir + "/" + m), config.stages[j].name, m) }
        }
        switch config.model {
        case let .path(p): return (config.model, "base", p)
        case .scratch: return (config.model, "base", "scratch")
        }
    }

    func execute(_ i: Int) throws {
        let stage = config.stages[i]
        try makeDirectories(stageDir(i))
        state.stages[i].status = "running"
        try saveState()
        // A trainer stage says when it starts once it knows its steps (train); the others here,
        // so every stage sends one stage_start and one stage_end.
        if stage.type == .eval || stage.mode == .none {
            _ = emit(["event": "stage_start", "stage": .string(stage.name), "stage_index": .int(Int64(i)),
                      "type": .string(stage.type.rawValue), "step": 0, "total_steps": 0])
        }
        if stage.type == .eval {
            try evaluate(i)
        } else if stage.mode == .none {
            _ = emit(["event": "log", "message": .string("stage \(i) (\(stage.name)): mode none, passing the model on")])
        } else {
            try train(i)
        }
        state.stages[i].status = "done"
        try saveState()
        _ = emit(["event": "stage_end", "stage": .string(stage.name), "stage_index": .int(Int64(i))])
    }

    func train(_ i: Int) throws {
        let stage = config.stages[i], sdir = stageDir(i)
        let input = inputModel(i)
        func setUp(_ r: inout TrainingRun.Config) {
            r.model = input.spec
            r.lora = stage.mode == .lora ? stage.lora : nil
            r.outputDir = sdir
            r.resume = true
            r.threads = config.threads
            r.metricsPath = dir + "/metrics.jsonl"
            r.metricsFields = [("stage", .string(stage.name)), ("stage_index", .int(Int64(i)))]
        }
        _ = emit(["event": "log", "message": .string("stage \(i) (\(stage.name)): loading \(input.path)")])
        let trainer: any Trainer
        if var g = stage.grpo {
            setUp(&g.run)
            let t = try GRPOTrainer(config: g)
            for (name, f) in custom where g.customRewards.contains(name) { try t.registerReward(name, f) }
            if let e = g.environment, let f = environments[e.name] { try t.registerEnvironment(e.name, f) }
            trainer = t
        } else if var c = stage.sft {
            setUp(&c.run)
            if let rc = stage.rejection { c.train = .jsonl(try rejectionSamples(i, rc, input: input.spec)) }
            trainer = try SFTTrainer(config: c)
        } else {
            throw PonderError(.internal, "stage \(stage.name) has no trainer")
        }
        let run = trainer.training
        // The newest checkpoint is where this stage continues: the logs lose what came after it.
        try truncateJSONL(dir + "/metrics.jsonl") { v in
            guard let s = v["stage_index"]?.asInt else { return true }
            return s < Int64(i) || (s == Int64(i) && (v["step"]?.asInt ?? 0) <= Int64(run.step))
        }
        try truncateJSONL(sdir + "/completions.jsonl") { ($0["step"]?.asInt ?? 0) <= Int64(run.step) }
        _ = emit(["event": "stage_start", "stage": .string(stage.name), "stage_index": .int(Int64(i)), "type": .string(stage.type.rawValue),
                  "step": .int(Int64(run.step)), "total_steps": .int(Int64(run.totalSteps))])
        let t0 = monotonicSeconds(), first = run.step
        var callbackStopped = false
        do {
            try trainer.run { m in
                let done = m.step - first
                let eta = etaSeconds(since: t0, done: done, total: run.totalSteps - first)
                var progress: [(String, JSONValue)] = [("event", "progress"), ("stage", .string(stage.name)), ("stage_index", .int(Int64(i))),
                                                       ("step", .int(Int64(m.step))), ("total_steps", .int(Int64(run.totalSteps))),
                                                       ("eta_seconds", .double(eta)), ("loss", .double(m.loss))]
                if let r = (m.extra.first { $0.0 == "reward" }) { progress.append(("reward", r.1)) }
                self.setStatus([("state", "running"), ("stage", .string(stage.name)), ("stage_index", .int(Int64(i))),
                                ("step", .int(Int64(m.step))), ("total_steps", .int(Int64(run.totalSteps))), ("eta_seconds", .double(eta)),
                                ("metrics", m.json)])
                let a = self.emit(["event": "metric", "stage": .string(stage.name), "stage_index": .int(Int64(i)), "metrics": m.json])
                let b = self.emit(.object(progress))
                if !(a && b) { callbackStopped = true }
                return a && b && !self.stopRequested
            }
        } catch let e as PonderError where e.code == .cancelled {
            try saveState()
            throw PonderError(.cancelled, "stage \(i) (\(stage.name)) stopped at step \(run.step) of \(run.totalSteps)"
                + (callbackStopped ? " (the event callback returned false)" : " (cancelled)")
                + "; checkpoint saved: continue with `ponder resume \(dir)` (ponder_pipeline_resume)")
        }
        // The stage's model: LoRA adapters merged, as a Hugging Face directory the next stage loads.
        let rel = stageRelDir(i) + "/model"
        try exportDirectory(run.model, to: dir + "/" + rel)
        state.stages[i].model = rel
        state.stages[i].steps = run.step
    }

    /// rejection_sft: the kept samples of this stage (sampled once; a resumed run reuses them).
    func rejectionSamples(_ i: Int, _ rc: RejectionSamplingConfig, input: ModelSpec) throws -> String {
        let path = stageDir(i) + "/rejection_samples.jsonl"
        if fileExists(path) { return path }
        _ = emit(["event": "log", "message": .string("stage \(i): sampling \(rc.numSamples) completions per prompt")])
        let model = try input.load()
        guard let source = config.stages[i].rejectionPrompts ?? config.train else { throw PonderError.invalid("rejection.prompts: missing") }
        let res = try RejectionSampling.sample(model: model, prompts: try source.prompts(system: rc.system), config: rc, custom: custom)
        guard !res.examples.isEmpty else {
            throw PonderError.invalid("stages[\(i)].rejection: none of \(res.sampled) samples passed (min_reward \(rc.minReward), require \(rc.require))")
        }
        try RejectionSampling.write(res.examples, to: path)
        _ = emit(["event": "log", "message": .string("stage \(i): kept \(res.examples.count) of \(res.sampled) samples")])
        return path
    }

    // MARK: - Evaluation

    /// The models an eval stage evaluates: each one trained since the previous eval stage (the
    /// first also takes a pretrained base model; a from-scratch one is random, not a baseline).
    func modelsToEvaluate(_ i: Int) -> [(producer: String, path: String, spec: ModelSpec)] {
        let previousEval = (0..<i).last { config.stages[$0].type == .eval }
        var out: [(String, String, ModelSpec)] = []
        if previousEval == nil, case let .path(p) = config.model { out.append(("base", p, config.model)) }
        for j in ((previousEval ?? -1) + 1)..<i {
            if let m = state.stages[j].model { out.append((config.stages[j].name, m, .path(dir + "/" + m))) }
        }
        return out.map { (producer: $0.0, path: $0.1, spec: $0.2) }
    }

    func evaluate(_ i: Int) throws {
        let stage = config.stages[i]
        guard let e = stage.eval, let source = stage.data ?? config.eval else { throw PonderError(.internal, "eval stage without data") }
        let prompts = try e.prompts(source, system: config.system)
        let models = modelsToEvaluate(i)
        if models.isEmpty { _ = emit(["event": "log", "message": .string("stage \(i) (\(stage.name)): no model to evaluate")]) }
        var report: EvalReport?
        for (k, m) in models.enumerated() {
            _ = emit(["event": "log", "message": .string("stage \(i): evaluating \(m.producer) (\(m.path)) on \(prompts.count) problems")])
            let model = try m.spec.load()
            if report == nil {
                report = EvalReport(settings: e.settings(source: source, system: config.system, promptExample: prompts.first.map { model.promptText($0.messages) }))
            }
            let t0 = monotonicSeconds()
            var stopped = false
            let r = try Evaluation.evaluate(model: model, prompts: prompts, config: e, shouldStop: { stopped || self.stopRequested }) { done, total in
                let eta = etaSeconds(since: t0, done: done, total: total)
                self.setStatus([("state", "running"), ("stage", .string(stage.name)), ("stage_index", .int(Int64(i))),
                                ("step", .int(Int64(done))), ("total_steps", .int(Int64(total))), ("eta_seconds", .double(eta)),
                                ("model", .string(m.producer))])
                if !self.emit(["event": "progress", "stage": .string(stage.name), "stage_index": .int(Int64(i)), "model": .string(m.producer),
                               "step": .int(Int64(done)), "total_steps": .int(Int64(total)), "eta_seconds": .double(eta)]) { stopped = true }
            }
            let episodes = try e.environment.map { en in
                try Evaluation.episodes(model: model, prompts: prompts, environment: en,
                                        factory: try en.factory(registered: environments[en.name]),
                                        maxNewTokens: try e.fitted(model: model, prompts: prompts).config.maxNewTokens,
                                        maxPromptLength: e.maxPromptLength, batch: e.batchSize, shouldStop: { stopped || self.stopRequested })
            }
            let row = report!.add(r, label: m.producer, path: m.path, episodes: episodes)
            _ = emit(["event": "eval", "stage": .string(stage.name), "stage_index": .int(Int64(i)), "row": row])
            // A few completions with their rewards, for the report and for reading.
            try AtomicFile.write(stageDir(i) + "/completions-\(k)-\(m.producer).jsonl", EvalReport.sample(label: m.producer, prompts: prompts, texts: r.texts))
        }
        let done = report ?? EvalReport(settings: e.settings(source: source, system: config.system, promptExample: nil))
        try AtomicFile.write(stageDir(i) + "/eval.json", prettyJSON(done.json) + "\n")
        try writeRunEval(upTo: i, current: done.rows)
    }

    /// RUN/eval.json: the rows of every eval stage done, and `current`'s, in stage order.
    func writeRunEval(upTo i: Int, current: [JSONValue]) throws {
        var rows: [JSONValue] = []
        for j in 0..<i where config.stages[j].type == .eval && state.stages[j].done {
            if let r = try? JSONValue.parse(file: stageDir(j) + "/eval.json")["rows"]?.asArray { rows += r }
        }
        rows += current
        try AtomicFile.write(dir + "/eval.json", prettyJSON(.object([("rows", .array(rows))])) + "\n")
    }

    // MARK: - The end

    func finish() throws {
        if let last = state.stages.lastIndex(where: { $0.model != nil }), let rel = state.stages[last].model {
            let model = try LlamaModel.load(path: dir + "/" + rel)
            try exportDirectory(model, to: dir + "/model")
            try model.export(ExportOptions(path: dir + "/model.gguf", format: .gguf))
        }
        state.finished = true
        try saveState()
        try Report.write(runDir: dir)
        var rows: JSONValue = .array([])
        if fileExists(dir + "/eval.json") { rows = (try? JSONValue.parse(file: dir + "/eval.json"))?["rows"] ?? .array([]) }
        _ = emit(["event": "finished", "run_dir": .string(dir), "rows": rows])
    }

    // MARK: - State, status, events

    func saveState() throws {
        let statuses = state.stages.map(\.status)
        statusLock.locked { stageStatuses = statuses }
        try AtomicFile.write(dir + "/state.json", prettyJSON(state.json) + "\n")
    }

    func emit(_ event: JSONValue) -> Bool { onEvent?(event) ?? true }

    public var isRunning: Bool { busy.get() }

    func setStatus(_ fields: [(String, JSONValue)]) {
        statusLock.locked { statusValue = fields }
    }

    /// {"state": "idle" | "running" | "cancelled" | "failed" | "finished", "stage", "stage_index",
    /// "step", "total_steps", "eta_seconds", "metrics", "stages": [{"name", "type", "status"}]}.
    /// Safe from any thread.
    public func status() -> JSONValue {
        let s = statusLock.locked { statusValue }
        let stages: [JSONValue] = zip(config.stages, statusLock.locked { stageStatuses }).map { st, status in
            .object([("name", .string(st.name)), ("type", .string(st.type.rawValue)), ("status", .string(status))])
        }
        return .object(s + [("run_dir", .string(dir)), ("stages", .array(stages))])
    }
}

/// state.json: each stage's status and the model it produced (relative to the run directory).
struct RunState {
    struct StageState {
        var name: String
        var status = "pending"
        var model: String?
        var steps = 0
        var done: Bool { status == "done" }
    }
    var stages: [StageState]
    var finished = false

    init(_ stages: [PipelineConfig.Stage]) { self.stages = stages.map { StageState(name: $0.name) } }

    init(json: JSONValue, stages config: [PipelineConfig.Stage], dir: String) throws {
        guard let list = json["stages"]?.asArray, list.count == config.count else {
            throw PonderError.format("\(dir)/state.json: needs one entry per stage of config.resolved.json (\(config.count))")
        }
        stages = try list.enumerated().map { i, v in
            guard v["name"]?.asString == config[i].name, let status = v["status"]?.asString else {
                throw PonderError.format("\(dir)/state.json: stages[\(i)] is not the config's stage \"\(config[i].name)\"")
            }
            return StageState(name: config[i].name, status: status, model: v["model"]?.asString, steps: Int(v["steps"]?.asInt ?? 0))
        }
        finished = json["finished"] == .bool(true)
    }

    var json: JSONValue {
        .object([("version", 1), ("finished", .bool(finished)),
                 ("stages", .array(stages.map { s in .object([("name", .string(s.name)), ("status", .string(s.status)), ("model", s.model.map { .string($0) } ?? .null),
                                                              ("steps", .int(Int64(s.steps)))]) }))])
    }
}

/// Stage i's directory in the run directory: "stages/NN-name".
func stageDirectory(_ i: Int, _ name: String) -> String { "stages/" + (i < 10 ? "0" : "") + "\(i)-" + name }

/// Writes `model` as a Hugging Face directory at `path`, replacing what was there only once the
/// new one is complete (a kill leaves the old model or none, never half of one).
func exportDirectory(_ model: LlamaModel, to path: String) throws {
    let tmp = path + ".tmp"
    removeTree(tmp)
    try model.export(ExportOptions(path: tmp, format: .safetensors))
    removeTree(path)
    guard rename(tmp, path) == 0 else { throw PonderError(.io, "\(path): cannot move the model into place") }
}

/// Keeps the lines of a JSONL file that `keep` accepts (atomically); a missing file stays missing.
func truncateJSONL(_ path: String, keep: (JSONValue) -> Bool) throws {
    guard fileExists(path) else { return }
    let bytes = try readFile(path)
    var out = ""
    var changed = false
    for line in bytes.split(separator: 0x0A) {
        // A line cut short by a kill is dropped with the rest that follows the checkpoint.
        guard let v = try? line.withUnsafeBytes({ try JSONValue.parse($0) }), keep(v) else { changed = true; continue }
        out += String(decoding: line, as: UTF8.self) + "\n"
    }
    if changed { try AtomicFile.write(path, out) }
}

final class Flag: @unchecked Sendable {
    private var value = false
    private let lock = Lock()
    func set(_ v: Bool) { lock.locked { value = v } }
    func get() -> Bool { lock.locked { value } }
    /// Sets the flag; false if it was set already.
    func testAndSet() -> Bool { lock.locked { defer { value = true }; return !value } }
}
