import PonderBase
import PonderJSON
import PonderRewards
#if canImport(Glibc)
import Glibc
#endif

/// `ponder score`: JSONL {"completion", "reference"?, "prompt"?, "completion_tokens"?} on stdin,
/// one JSON line out per input line, in order. A line that is not such an object (bad JSON, a
/// blank line, a missing completion) is answered in its place by {"error": "line N: …"}, so
/// outputs stay aligned with inputs; the exit status is then 1, after the last line.
func scoreCommand(_ p: Parsed) {
    var fields = p.fields
    func list(_ flag: String) -> [String]? { p.own[flag].map { $0.split(separator: ",").map(String.init) } }
    if let names = list("--rewards") { fields.append(("rewards", .array(names.map { .string($0) }))) }
    if let weights = list("--reward-weights") {
        fields.append(("reward_weights", .array(weights.map { s in Double(s).map(JSONValue.double) ?? .string(s) })))
    }
    if let o = p.own["--options"] {
        // Any other reward option as a JSON object, e.g. '{"max_completion_length": 512}'.
        do {
            guard case let .object(extra) = try JSONValue.parse(o, what: "--options") else { usageError("--options: expected a JSON object", p.command) }
            fields += extra
        } catch { usageError("\(error)", p.command) }
    }
    let rewards: RewardSet
    do { rewards = RewardSet(config: try RewardConfig(json: .object(fields))) } catch { p.fail(error) }
    var line: UnsafeMutablePointer<CChar>? = nil
    var capacity = 0
    var lineNo = 0
    var failed = false
    defer { free(line) }
    while true {
        let n = getline(&line, &capacity, stdin)
        guard n >= 0, let p = line else { break }
        lineNo += 1
        var len = n
        while len > 0, p[len - 1] == 0x0A || p[len - 1] == 0x0D { len -= 1 }
        let out: JSONValue
        do {
            let v = try JSONValue.parse(UnsafeRawBufferPointer(start: p, count: len), what: "line \(lineNo)")
            let r = JSONReader(v)
            let item = RewardInput.read(r)
            do { try r.finish() } catch let e as PonderError { throw PonderError(e.code, "line \(lineNo): \(e.message)") }
            guard let item else { throw PonderError.invalid("line \(lineNo): no completion") }
            out = rewards.score(item).json
        } catch {
            failed = true
            out = .object([("error", .string("\(error)"))])
        }
        print(out.serialized())
    }
    fflush(stdout)
    if failed { exit(1) }
}
