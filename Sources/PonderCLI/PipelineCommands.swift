import PonderBase
import PonderJSON
import PonderKernels
import PonderModel
import PonderPipeline
import PonderTrain
#if canImport(Glibc)
import Glibc
#endif

// `ponder run | validate | resume | eval | report`: the pipeline from the command line, on the
// same Swift API the C ABI wraps (one reader of the config, one runner).

func pipelineCommand(_ p: Parsed) {
    switch p.command.name {
    case "run":
        let json = readJSONFile(p.positional[0], p)
        do { runPipeline(try Pipeline.create(json: json)) } catch { p.fail(error) }
    case "resume":
        do { runPipeline(try Pipeline.resume(dir: p.positional[0])) } catch { p.fail(error) }
    case "validate":
        let path = p.positional[0]
        var problems: [(path: String, message: String)]
        do {
            problems = PipelineConfig.validate(try JSONValue.parse(file: path))
        } catch let e as PonderError {
            problems = [(e.jsonPath ?? "<root>", e.detail ?? e.message)]
        } catch { problems = [("<root>", "\(error)")] }
        if p.json {
            print(PipelineConfig.errorsJSON(problems).serialized())
        } else if problems.isEmpty {
            print("\(path): valid")
        } else {
            for q in problems { print("\(path): \(q.path): \(q.message)") }
        }
        exit(problems.isEmpty ? 0 : 1)
    case "eval":
        evalCommand(p)
    case "report":
        do {
            try Report.write(runDir: p.positional[0])
            print("\(p.positional[0])/report.html")
        } catch { p.fail(error) }
    default:
        usageError("unknown command \(p.command.name)")
    }
}

// Ctrl-C: the handler only writes a byte to a pipe (async-signal-safe, whichever thread the
// signal lands on); a watcher thread reads it and cancels the pipeline, which stops at the next
// step boundary with a checkpoint. A second Ctrl-C exits at once.
nonisolated(unsafe) var interruptPipe: [Int32] = [-1, -1]
nonisolated(unsafe) var runningPipeline: Pipeline?

func installInterruptHandler() {
    guard pipe(&interruptPipe) == 0 else { return }
    signal(SIGINT) { _ in
        var b: UInt8 = 1
        _ = write(interruptPipe[1], &b, 1)
    }
    var tid = pthread_t()
    pthread_create(&tid, nil, { _ in
        var b: UInt8 = 0
        var count = 0
        while read(interruptPipe[0], &b, 1) == 1 {
            count += 1
            if count > 1 { _exit(130) }
            fputs("\nponder: stopping at the next step (a checkpoint is saved; Ctrl-C again to quit at once)\n", stderr)
            runningPipeline?.cancel()
        }
        return nil
    }, nil)
}

func runPipeline(_ p: Pipeline) {
    runningPipeline = p
    installInterruptHandler()
    let stages = p.config.stages
    p.onEvent = { e in
        let ev = e["event"]?.asString ?? ""
        let idx = Int(e["stage_index"]?.asInt ?? 0)
        let where_ = "\(e["stage"]?.asString ?? "") (\(idx + 1)/\(stages.count))"
        switch ev {
        case "progress":
            let step = e["step"]?.asInt ?? 0, total = e["total_steps"]?.asInt ?? 0
            var line = "\(where_): " + (e["model"]?.asString.map { "evaluating \($0): \(step)/\(total) prompts" } ?? "step \(step)/\(total)")
            if let r = e["reward"]?.asDouble { line += " reward \(fixed(r, 3))" } else if let l = e["loss"]?.asDouble { line += " loss \(fixed(l, 4))" }
            line += " | ETA \(duration(e["eta_seconds"]?.asDouble ?? 0))"
            fputs(line + "\n", stderr)
        case "stage_start":
            let s = e["step"]?.asInt ?? 0
            let total = e["total_steps"]?.asInt ?? 0
            fputs("\(where_): \(e["type"]?.asString ?? "") stage" + (total > 0 ? ", \(total) steps" : "") + (s > 0 ? ", resuming at step \(s)" : "") + "\n", stderr)
        case "log":
            fputs("\(e["message"]?.asString ?? "")\n", stderr)
        case "eval":
            if let r = e["row"] {
                fputs("\(where_): \(r["stage"]?.asString ?? ""): accuracy \(fixed(r["accuracy"]?.asDouble ?? .nan, 3)), format \(fixed(r["format_rate"]?.asDouble ?? .nan, 3)), reflection \(fixed(r["reflection"]?.asDouble ?? .nan, 3))\n", stderr)
            }
        default: break
        }
        return true
    }
    do {
        try p.run()
    } catch let e as PonderError where e.code == .cancelled {
        fail(e.message, code: 130)
    } catch { fail("\(error)", code: 1) }
    if let v = try? JSONValue.parse(file: p.dir + "/eval.json") {
        printEvalTable(v["rows"]?.asArray ?? [])
        for c in Report.comparisons(runDir: p.dir, stages: p.config.stages.map(\.name)) { print(c) }
    }
    print("run: \(p.dir) (report: \(p.dir)/report.html, model: \(p.dir)/model, \(p.dir)/model.gguf)")
}

func printEvalTable(_ rows: [JSONValue]) {
    let cols = ["stage", "accuracy", "format_rate", "reflection", "reflection_guarded", "mean_length", "n"]
    var table = [cols]
    for r in rows {
        table.append(cols.map { c in
            guard let v = r[c] else { return "" }
            if let s = v.asString { return s }
            if case let .int(i) = v { return "\(i)" }
            return v.asDouble.map { fixed($0, c == "mean_length" ? 1 : 3) } ?? ""
        })
    }
    let widths = cols.indices.map { i in table.map { $0[i].count }.max() ?? 0 }
    for (k, row) in table.enumerated() {
        print(row.enumerated().map { i, s in i == 0 ? s + String(repeating: " ", count: widths[i] - s.count)
            : String(repeating: " ", count: widths[i] - s.count) + s }.joined(separator: "  "))
        if k == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
    }
}

/// `ponder eval`: the pipeline's evaluation of one model; the flags become an eval stage's keys,
/// read by EvalConfig as a config's would be.
func evalCommand(_ p: Parsed) {
    guard let model = p.model else { usageError("--model PATH is required", p.command) }
    guard let data = p.own["--data"] else { usageError("--data JSONL|arithmetic is required", p.command) }
    var fields = p.fields
    if let k = p.own["--pass-k"] {
        fields.append(("pass_k", .array(k.split(separator: ",").map { JSONValue.int(Int64($0) ?? -1) })))
    }
    let r = JSONReader(.object(fields))
    var config = EvalConfig()
    config.read(r)
    let source: DataSource = data == "arithmetic" ? .arithmetic(count: 1_000_000, seed: config.seed, split: .test) : .jsonl(data)
    do {
        try r.finish()
        if let threads = p.threads { setThreads(threads) }
        let m = try LlamaModel.load(path: model)
        let sys = p.own["--system"].map(systemPrompt)
        let prompts = try config.prompts(source, system: sys)
        let t0 = monotonicSeconds()
        let result = try Evaluation.evaluate(model: m, prompts: prompts, config: config, progress: { done, total in
            fputs("eval: \(done)/\(total) prompts | ETA \(duration(etaSeconds(since: t0, done: done, total: total)))\n", stderr)
        })
        for note in result.notes { fputs("note: \(p.message(note))\n", stderr) }
        if p.json {
            // The document an eval stage writes as its eval.json, with this model as its one row.
            var report = EvalReport(settings: config.settings(source: source, system: sys,
                                                              promptExample: prompts.first.map { m.promptText($0.messages) }))
            report.add(result, label: "model", path: model)
            print(report.json.serialized())
        } else {
            for (k, v) in result.metrics { print("\(k): \(v.asDouble.map { fixed($0, 4) } ?? v.serialized())") }
        }
    } catch { p.fail(error) }
}
