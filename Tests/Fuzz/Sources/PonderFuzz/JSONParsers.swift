import PonderBase
import PonderJSON
import PonderModel
import PonderTrain
#if canImport(Glibc)
import Glibc
#endif

// JSON text and the option/request/config types read from it. Parse only, except requests,
// which are also run (on the fixed tiny model): validation and use must agree.

/// json-c through JSONValue: a document that parses serializes back to the same values, and
/// holds no number JSON cannot express (NaN, infinities, overflowed exponents).
let jsonTarget = FuzzTarget(name: "json") { data in
    let v = try JSONValue.parse(data)
    checkFinite(v)
    let again: JSONValue
    do { again = try JSONValue.parse(v.serialized()) } catch { bug("serialized JSON does not parse: \(error)") }
    guard sameValues(v, again) else { bug("JSON round trip changed values: \(v.serialized().prefix(300))") }
}

func checkFinite(_ v: JSONValue) {
    switch v {
    case let .double(d): if !d.isFinite { bug("JSON parse produced the non-finite number \(d)") }
    case let .array(a): a.forEach(checkFinite)
    case let .object(f): f.forEach { checkFinite($0.1) }
    default: break
    }
}

/// Equality with numbers compared by value (the writer prints 2.0 as 2).
func sameValues(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy(sameValues)
    case let (.object(x), .object(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && sameValues($0.1, $1.1) }
    case (.int, .double), (.double, .int), (.double, .double): return a.asDouble == b.asDouble
    default: return a == b
    }
}

/// One parser of JSON options: the input must be rejected with a documented status or accepted.
func optionsTarget(_ name: String, _ parse: @escaping (JSONValue) throws -> Void) -> FuzzTarget {
    FuzzTarget(name: name) { data in try parse(JSONValue.parse(data)) }
}

let modelOptionsTarget = optionsTarget("model_options") { _ = try ModelOptions(json: $0) }
let sftConfigTarget = optionsTarget("sft_config") { _ = try SFTConfig(json: $0) }

nonisolated(unsafe) var requestModel: LlamaModel!

/// Generation requests, validated and then run on the fixed model, with n and max_tokens capped
/// so an execution stays in milliseconds and a fixed seed so it reproduces.
let generateRequestTarget = FuzzTarget(name: "generate_request", setUp: {
    requestModel = try LlamaModel.load(path: fuzzRoot + "/model")
}, run: { data in
    var r = try GenerateRequest(json: JSONValue.parse(data))
    r.n = min(r.n, 3)
    r.maxTokens = min(r.maxTokens, 4)
    r.seed = r.seed ?? 1
    let result = try requestModel.generate(r)
    if verbose { fputs("ponder-fuzz: generated \(result.json.serialized().prefix(300))\n", stderr) }
    guard result.completions.count == r.n else { bug("\(r.n) completions asked, \(result.completions.count) returned") }
    for c in result.completions {
        guard c.tokenIDs.count <= r.maxTokens else { bug("\(c.tokenIDs.count) tokens past max_tokens \(r.maxTokens)") }
        for id in c.tokenIDs where id < 0 || Int(id) >= requestModel.config.vocabSize { bug("sampled id \(id) outside the vocabulary") }
        for p in c.logprobs where !(p <= 0) { bug("logprob \(p) is not a log-probability") }
    }
})
