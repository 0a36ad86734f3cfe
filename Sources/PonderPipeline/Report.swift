import PonderBase
import PonderJSON
#if canImport(Glibc)
import Glibc
#endif

/// report.html: one self-contained page (inline CSS and SVG, no script, no network) with the
/// run's curves over its steps — reward per function, accuracy, reflection per dimension,
/// completion length, KL and loss — the evaluation table and a few completions with their
/// rewards. Made from the run directory's files alone, so `ponder report RUN` can redo it.
public enum Report {
    public static func write(runDir dir: String) throws {
        try AtomicFile.write(dir + "/report.html", try html(runDir: dir))
    }

    struct Series {
        var name: String
        var points: [(Double, Double)]
    }

    public static func html(runDir dir: String) throws -> String {
        let rows = jsonLines(dir + "/metrics.jsonl")
        let state = try? JSONValue.parse(file: dir + "/state.json")
        let stageNames = state?["stages"]?.asArray?.compactMap { $0["name"]?.asString } ?? []
        let evalRows = (try? JSONValue.parse(file: dir + "/eval.json"))?["rows"]?.asArray ?? []

        // x: the position of a logged step in the whole run (stages one after another); each
        // stage's segment is labelled with the stage's own step numbers.
        var segments: [Segment] = []
        for (k, r) in rows.enumerated() {
            let s = r["stage_index"]?.asInt ?? 0, step = Int(r["step"]?.asInt ?? Int64(k + 1))
            if segments.last?.index != s {
                segments.append(Segment(index: s, name: r["stage"]?.asString ?? "stage \(s)", steps: []))
            }
            segments[segments.count - 1].steps.append((Double(k + 1), step))
        }
        func series(_ key: String, label: String? = nil) -> Series {
            Series(name: label ?? key, points: rows.enumerated().compactMap { k, r in
                guard let v = r[key]?.asDouble, v.isFinite else { return nil }
                return (Double(k + 1), v)
            })
        }
        let keys = Set(rows.flatMap { $0.asObject?.map(\.0) ?? [] })
        let rewardNames = keys.filter { $0.hasPrefix("rewards/") && $0.hasSuffix("/mean") }.sorted()
        let dims = ["backtracking", "verification", "subgoals", "backward_chaining"].filter { keys.contains("reflection/\($0)") }
        let plots: [(id: String, title: String, series: [Series])] = [
            ("reward", "Reward per function (mean over the step's completions)",
             rewardNames.map { series($0, label: String($0.dropFirst(8).dropLast(5))) } + [series("reward", label: "total")]),
            ("accuracy", "Accuracy of the step's sampled completions", [series("accuracy")]),
            ("reflection", "Reflection per dimension (share of completions using it)",
             dims.map { series("reflection/\($0)", label: $0) } + [series("reflection", label: "reflection reward (paper)")]),
            ("length", "Completion length (tokens)", [series("completions/mean_length", label: "mean length")]),
            ("kl", "KL to the reference", [series("kl")]),
            ("loss", "Training loss", [series("loss")]),
        ]

        var h = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Ponder run \(escape(dir))</title>
        <style>
        body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
        h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
        .plots { display: flex; flex-wrap: wrap; gap: 16px; }
        figure { margin: 0; border: 1px solid #ddd; padding: 8px; }
        figcaption { font-weight: 600; margin-bottom: 4px; }
        table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
        th { background: #f4f4f4; } td.l, th.l { text-align: left; }
        pre { white-space: pre-wrap; background: #f8f8f8; padding: 8px; border: 1px solid #eee; max-width: 1200px; }
        .meta { color: #666; }
        </style></head><body>
        <h1>Ponder run: \(escape(dir))</h1>
        <p class="meta">Stages: \(escape(stageNames.joined(separator: " → "))) · \(rows.count) logged steps</p>
        <h2>Evaluation</h2>

        """
        h += evalTable(evalRows)
        let changes = comparisons(runDir: dir, stages: stageNames)
        if !changes.isEmpty {
            h += "<p id=\"changes\">Paired changes on the same problems: " + changes.map(escape).joined(separator: "; ") + "</p>\n"
        }
        h += "<h2>Training curves</h2>\n<div class=\"plots\">\n"
        for p in plots { h += plot(id: p.id, title: p.title, series: p.series, segments: segments) }
        h += "</div>\n<h2>Sampled completions</h2>\n<div id=\"completions\">\n"
        for c in sampleCompletions(dir: dir, stages: stageNames) {
            h += "<div class=\"completion\"><p class=\"meta\">\(escape(c.title))</p><pre>\(escape(c.text))</pre><p>rewards: \(escape(c.rewards))</p></div>\n"
        }
        h += "</div>\n</body></html>\n"
        return h
    }

    static func evalTable(_ rows: [JSONValue]) -> String {
        guard !rows.isEmpty else { return "<p id=\"eval-empty\">No evaluation yet.</p>\n" }
        let cols = ["stage", "model", "accuracy", "format_rate", "reflection", "reflection_guarded", "mean_length", "n"]
        var h = "<table id=\"eval\"><thead><tr>" + cols.map { "<th class=\"\($0 == "stage" || $0 == "model" ? "l" : "")\">\($0)</th>" }.joined() + "</tr></thead><tbody>\n"
        for r in rows {
            h += "<tr>" + cols.map { c -> String in
                guard let v = r[c] else { return "<td></td>" }
                if let s = v.asString { return "<td class=\"l\">\(escape(s))</td>" }
                if case let .int(i) = v { return "<td>\(i)</td>" }
                return "<td>\(v.asDouble.map { fixed($0, 3) } ?? "")</td>"
            }.joined() + "</tr>\n"
        }
        return h + "</tbody></table>\n"
    }

    /// "sft → grpo: accuracy +0.020 ± 0.012 (paired SE, n 300)" for each eval stage's comparison.
    public static func comparisons(runDir dir: String, stages: [String]) -> [String] {
        var out: [String] = []
        for (i, name) in stages.enumerated() {
            let path = dir + "/" + stageDirectory(i, name) + "/eval.json"
            guard fileExists(path), let list = (try? JSONValue.parse(file: path))?["comparisons"]?.asArray else { continue }
            for c in list {
                guard let d = c["accuracy_change"]?.asDouble, let se = c["paired_stderr"]?.asDouble else { continue }
                out.append("\(c["from"]?.asString ?? "") → \(c["to"]?.asString ?? ""): accuracy \(d >= 0 ? "+" : "")\(fixed(d, 3)) ± \(fixed(se, 3)) (paired SE, n \(c["n"]?.asInt ?? 0))")
            }
        }
        return out
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    /// One stage's logged steps: (x position in the run, the stage's own step).
    struct Segment {
        var index: Int64
        var name: String
        var steps: [(x: Double, step: Int)]
    }

    /// Ticks at 1, 2 or 5 × 10^k within [lo, hi], about `count` of them.
    static func niceTicks(_ lo: Double, _ hi: Double, count: Int) -> [Double] {
        let raw = (hi - lo) / Double(max(1, count))
        guard raw > 0, raw.isFinite else { return [lo] }
        let mag = pow10(floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        return stride(from: ceil(lo / step) * step, through: hi + step * 1e-9, by: step).map { $0 }
    }

    static func pow10(_ e: Double) -> Double { var p = 1.0; for _ in 0..<Int(abs(e)) { p *= 10 }; return e < 0 ? 1 / p : p }

    /// A line chart: one polyline per series over the run's logged steps, a light grid, y ticks
    /// at round values, each stage's segment with its own step numbers and its name (shortened
    /// to fit), and a legend that says which series coincide (drawn dashed over each other).
    static func plot(id: String, title: String, series all: [Series], segments: [Segment]) -> String {
        let series = all.filter { !$0.points.isEmpty }
        let (w, hgt, l, r, t, b) = (560.0, 284.0, 64.0, 12.0, 26.0, 62.0)
        var svg = "<figure><figcaption>\(escape(title))</figcaption>"
        svg += "<svg class=\"plot\" id=\"plot-\(id)\" data-series=\"\(series.count)\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(hgt))\" viewBox=\"0 0 \(Int(w)) \(Int(hgt))\">"
        svg += "<rect x=\"\(l)\" y=\"\(t)\" width=\"\(w - l - r)\" height=\"\(hgt - t - b)\" fill=\"#fff\" stroke=\"#999\"/>"
        guard !series.isEmpty else {
            return svg + "<text x=\"\(w / 2)\" y=\"\(hgt / 2)\" text-anchor=\"middle\" fill=\"#999\">no data</text></svg></figure>\n"
        }
        let xs = series.flatMap { $0.points.map(\.0) }, ys = series.flatMap { $0.points.map(\.1) }
        let x0 = xs.min()!, x1 = max(xs.max()!, x0 + 1)
        var y0 = ys.min()!, y1 = ys.max()!
        if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
        func px(_ x: Double) -> Double { l + (x - x0) / (x1 - x0) * (w - l - r) }
        func py(_ y: Double) -> Double { t + (1 - (y - y0) / (y1 - y0)) * (hgt - t - b) }
        // y: round values with a light grid line each.
        let yt = niceTicks(y0, y1, count: 4)
        let span = max(abs(y0), abs(y1)), tickStep = yt.count > 1 ? yt[1] - yt[0] : span
        let digits = max(0, min(6, Int(-floor(log10(max(tickStep, 1e-9)))) + (tickStep < 1 ? 1 : 0)))
        for v in yt {
            svg += "<line class=\"grid\" x1=\"\(l)\" y1=\"\(fixed(py(v), 1))\" x2=\"\(w - r)\" y2=\"\(fixed(py(v), 1))\" stroke=\"#eee\"/>"
            svg += "<text class=\"ytick\" x=\"\(l - 4)\" y=\"\(fixed(py(v) + 4, 1))\" font-size=\"10\" text-anchor=\"end\">\(fixed(v, digits))</text>"
        }
        // x: each stage in view from its first step, ticks in its own steps, its name above.
        for seg in segments {
            let inView = seg.steps.filter { $0.x >= x0 && $0.x <= x1 }
            guard let first = inView.first, let last = inView.last else { continue }
            let left = px(first.x), width = max(1, px(last.x) - left)
            if first.x > x0 {
                svg += "<line x1=\"\(fixed(left, 1))\" y1=\"\(t)\" x2=\"\(fixed(left, 1))\" y2=\"\(hgt - b)\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>"
            }
            let room = Int(max(width, 24) / 6)
            let name = seg.name.count <= room ? seg.name : room >= 3 ? String(seg.name.prefix(room - 1)) + "…" : ""
            if !name.isEmpty {
                svg += "<text class=\"stage\" x=\"\(fixed(left + 2, 1))\" y=\"\(t - 6)\" font-size=\"10\" fill=\"#888\">\(escape(name))</text>"
            }
            let ticks = niceTicks(Double(first.step), Double(last.step), count: max(1, Int(width / 60)))
            for tick in ticks {
                guard let at = inView.first(where: { Double($0.step) >= tick }) else { continue }
                let x = px(at.x)
                svg += "<line class=\"grid\" x1=\"\(fixed(x, 1))\" y1=\"\(t)\" x2=\"\(fixed(x, 1))\" y2=\"\(hgt - b)\" stroke=\"#f2f2f2\"/>"
                svg += "<text class=\"xtick\" x=\"\(fixed(x, 1))\" y=\"\(hgt - b + 12)\" font-size=\"10\" text-anchor=\"middle\">\(at.step)</text>"
            }
        }
        svg += "<text x=\"\(w - r)\" y=\"\(hgt - b + 24)\" font-size=\"10\" text-anchor=\"end\" fill=\"#666\">step (of each stage)</text>"
        for (k, s) in series.enumerated() {
            let c = colors[k % colors.count]
            // A series equal to an earlier one would hide it: dashed, and the legend says so.
            let same = series[..<k].first { $0.points.count == s.points.count && zip($0.points, s.points).allSatisfy { $0.0 == $1.0 && abs($0.1 - $1.1) < 1e-12 } }
            let pts = s.points.map { "\(fixed(px($0.0), 1)),\(fixed(py($0.1), 1))" }.joined(separator: " ")
            let dash = same != nil ? " stroke-dasharray=\"5 4\"" : ""
            svg += "<polyline class=\"series\" data-name=\"\(escape(s.name))\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.5\"\(dash) points=\"\(pts)\"/>"
            let label = s.name + (same.map { " (same as \($0.name))" } ?? "")
            svg += "<text class=\"legend\" x=\"\(l + Double(k % 3) * 160)\" y=\"\(hgt - b + 38 + Double(k / 3) * 13)\" font-size=\"10\" fill=\"\(c)\">■ \(escape(label))</text>"
        }
        return svg + "</svg></figure>\n"
    }

    struct Sample { var title: String; var text: String; var rewards: String }

    /// The first completions of each evaluated model (eval stages) and of GRPO's last logged step.
    static func sampleCompletions(dir: String, stages: [String]) -> [Sample] {
        var out: [Sample] = []
        for (i, name) in stages.enumerated() {
            let sdir = dir + "/" + stageDirectory(i, name)
            let files = listDirectory(sdir).filter { $0.hasPrefix("completions") && $0.hasSuffix(".jsonl") }.sorted()
            for f in files {
                let lines = jsonLines(sdir + "/" + f)
                let picked: [JSONValue]
                if f == "completions.jsonl" {
                    let last = lines.last?["step"]?.asInt
                    picked = Array(lines.filter { $0["step"]?.asInt == last }.prefix(3))
                } else {
                    picked = Array(lines.prefix(2))
                }
                for v in picked {
                    let who = v["model"]?.asString.map { "model \($0)" } ?? v["step"]?.asInt.map { "step \($0)" } ?? ""
                    let rewards = v["rewards"]?["rewards"]?.asObject?.map { "\($0.0) \($0.1.asDouble.map { fixed($0, 2) } ?? "–")" }
                        .joined(separator: ", ") ?? ""
                    out.append(Sample(title: "\(name) · \(who) · \(v["prompt"]?.asString ?? "")",
                                      text: v["completion"]?.asString ?? "", rewards: rewards))
                }
            }
        }
        return out
    }

    static func jsonLines(_ path: String) -> [JSONValue] {
        guard let bytes = try? readFile(path) else { return [] }
        return bytes.split(separator: 0x0A).compactMap { line in try? line.withUnsafeBytes { try JSONValue.parse($0) } }
    }

    static func escape(_ s: String) -> String {
        var o = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            default: o.unicodeScalars.append(c)
            }
        }
        return o
    }
}
