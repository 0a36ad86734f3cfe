import PonderBase
import PonderJSON

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

        // x: the position of a step in the whole run (stages one after another).
        var boundaries: [(Double, String)] = []
        var lastStage: Int64 = -1
        for (k, r) in rows.enumerated() {
            let s = r["stage_index"]?.asInt ?? 0
            if s != lastStage {
                boundaries.append((Double(k + 1), r["stage"]?.asString ?? "stage \(s)"))
                lastStage = s
            }
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
        for p in plots { h += plot(id: p.id, title: p.title, series: p.series, boundaries: boundaries) }
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

    /// A line chart: one polyline per series, x the run's step, stage boundaries dashed.
    static func plot(id: String, title: String, series all: [Series], boundaries: [(Double, String)]) -> String {
        let series = all.filter { !$0.points.isEmpty }
        // Room below the plot area for the x labels and two legend rows of three.
        let (w, hgt, l, r, t, b) = (560.0, 264.0, 64.0, 12.0, 14.0, 54.0)
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
        for (x, name) in boundaries where x >= x0 && x <= x1 {
            svg += "<line x1=\"\(px(x))\" y1=\"\(t)\" x2=\"\(px(x))\" y2=\"\(hgt - b)\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>"
            svg += "<text x=\"\(px(x) + 3)\" y=\"\(t + 11)\" font-size=\"10\" fill=\"#888\">\(escape(name))</text>"
        }
        // Small quantities (KL) need more decimals than rates do.
        let digits = max(abs(y0), abs(y1)) < 0.01 ? 6 : max(abs(y0), abs(y1)) < 10 ? 3 : 1
        for v in [y0, (y0 + y1) / 2, y1] {
            svg += "<text x=\"\(l - 4)\" y=\"\(py(v) + 4)\" font-size=\"10\" text-anchor=\"end\">\(fixed(v, digits))</text>"
        }
        svg += "<text x=\"\(l)\" y=\"\(hgt - b + 13)\" font-size=\"10\">step \(Int(x0))</text>"
        svg += "<text x=\"\(w - r)\" y=\"\(hgt - b + 13)\" font-size=\"10\" text-anchor=\"end\">\(Int(x1))</text>"
        for (k, s) in series.enumerated() {
            let c = colors[k % colors.count]
            let pts = s.points.map { "\(fixed(px($0.0), 1)),\(fixed(py($0.1), 1))" }.joined(separator: " ")
            svg += "<polyline class=\"series\" data-name=\"\(escape(s.name))\" fill=\"none\" stroke=\"\(c)\" stroke-width=\"1.5\" points=\"\(pts)\"/>"
            svg += "<text x=\"\(l + Double(k % 3) * 160)\" y=\"\(hgt - b + 28 + Double(k / 3) * 14)\" font-size=\"10\" fill=\"\(c)\">■ \(escape(s.name))</text>"
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
