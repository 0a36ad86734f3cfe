import PonderBase
import PonderJSON
import PonderTrain
#if canImport(Glibc)
import Glibc
#endif

/// Runs a trainer to the end, printing each step's metrics as a JSON line on stdout and a
/// progress line (step, loss or reward, accuracy, rate, ETA) on stderr for a person watching.
func runWithProgress(_ trainer: any Trainer, name: String) throws {
    let run = trainer.training
    fputs("\(name): \(run.dataCount) training items, \(run.totalSteps) steps" + (run.step > 0 ? ", resuming at step \(run.step)" : "") + "\n", stderr)
    let t0 = monotonicSeconds(), first = run.step
    try trainer.run { m in
        print(m.json.serialized())
        fflush(stdout)
        let elapsed = monotonicSeconds() - t0, done = m.step - first
        let eta = etaSeconds(since: t0, done: done, total: run.totalSteps - first)
        var line = "\(name): step \(m.step)/\(run.totalSteps)"
        func value(_ key: String) -> Double? { (m.extra + m.eval).first { $0.0 == key }?.1.asDouble }
        if let r = value("reward") { line += " reward \(fixed(r, 3))" } else { line += " loss \(fixed(m.loss, 4))" }
        if let a = value("accuracy") { line += " acc \(fixed(a, 2))" }
        if let a = value("eval_accuracy") { line += " eval_acc \(fixed(a, 3))" }
        if let e = value("eval_loss") { line += " eval_loss \(fixed(e, 4))" }
        line += " | \(fixed(elapsed / Double(max(1, done)), 1)) s/step, ETA \(duration(eta))"
        fputs(line + "\n", stderr)
        return true
    }
    if let d = run.config.outputDir, let c = Checkpoints.latest(in: d) { fputs("\(name): saved \(c)\n", stderr) }
}


func duration(_ s: Double) -> String {
    let t = Int(s.rounded())
    return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
}
