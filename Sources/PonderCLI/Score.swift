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
func scoreCommand(_ args: ArraySlice<String>) {
    var fields: [(String, JSONValue)] = []
    var it = args.makeIterator()
    while let a = it.next() {
        guard let v = it.next() else { fail("\(a) needs a value") }
        let list = v.split(separator: ",").map { String($0) }
        switch a {
        case "--rewards": fields.append(("rewards", .array(list.map { .string($0) })))
        case "--reward-weights":
            fields.append(("reward_weights", .array(list.map { s in Double(s).map(JSONValue.double) ?? .string(s) })))
        case "--reflection-mode": fields.append(("reflection_mode", .string(v)))
        case "--format-mode": fields.append(("format_mode", .string(v)))
        case "--options":
            // Any other reward option as a JSON object, e.g. '{"max_completion_length": 512}'.
            do {
                guard case let .object(o) = try JSONValue.parse(v, what: "--options") else { fail("--options: expected a JSON object") }
                fields += o
            } catch { fail("\(error)") }
        default: fail("unknown option \(a)\n\(usage)")
        }
    }
    let rewards: RewardSet
    do { rewards = RewardSet(config: try RewardConfig(json: .object(fields))) } catch { fail("\(error)") }
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
