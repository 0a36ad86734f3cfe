import PonderInference
import PonderJSON
import PonderModel
#if canImport(Glibc)
import Glibc
#endif

/// Inference requests (ponder_infer): parsed, then run on the fixed model with n and max_tokens
/// capped and a fixed seed, checking the promises of ponder.h on every result.
let inferRequestTarget = FuzzTarget(name: "infer_request", setUp: {
    if requestModel == nil { requestModel = try LlamaModel.load(path: fuzzRoot + "/model") }
}, run: { data in
    var r = try InferRequest(json: JSONValue.parse(data))
    r.generation.n = min(r.generation.n, 4)
    r.generation.maxTokens = min(r.generation.maxTokens, 12)
    r.generation.seed = r.generation.seed ?? 1
    let result = try requestModel.infer(r)
    let json = result.json
    if verbose { fputs("ponder-fuzz: inferred \(json.serialized().prefix(300))\n", stderr) }
    guard result.candidates.count == r.generation.n else { bug("\(r.generation.n) samples asked, \(result.candidates.count) returned") }
    guard (try? JSONValue.parse(json.serialized())) != nil else { bug("the result does not parse back") }
    for c in result.candidates {
        guard c.completion.tokenIDs.count <= r.generation.maxTokens else { bug("\(c.completion.tokenIDs.count) tokens past max_tokens") }
        let capped = c.reflections.filter { $0.reason == "max_reflections" }.count
        guard capped <= r.reflect.maxReflections else { bug("\(capped) cues past max_reflections \(r.reflect.maxReflections)") }
        for (k, rf) in c.reflections.enumerated() {
            if let a = c.forcedAnswer, rf.atToken >= a.atToken { bug("a cue at \(rf.atToken) after the answer at \(a.atToken)") }
            if k > 0, rf.atToken < c.reflections[k - 1].atToken + c.reflections[k - 1].forcedTokens { bug("cues overlap") }
            if let mx = r.reflect.maxThinkingTokens, rf.atToken + rf.forcedTokens >= mx { bug("a cue past max_thinking_tokens") }
        }
        if let m = c.meanLogprob, !(m <= 0) { bug("mean logprob \(m)") }
    }
    if r.strategy == .vote, result.candidates.contains(where: { $0.answer != nil }) != (result.answer != nil) {
        bug("vote answer \(String(describing: result.answer)) with candidates' answers \(result.candidates.map { $0.answer?.text ?? "-" })")
    }
})
