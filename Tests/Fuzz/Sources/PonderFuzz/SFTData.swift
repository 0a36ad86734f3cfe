import Foundation
import PonderEnvironments
import PonderTrain

// A training data file (JSONL in its three shapes), read and tokenized as an SFT run does, every
// third input with GSM8K lines turned into calculator turns; and the input itself as a GSM8K
// answer made into calculator turns, each of whose observations the calculator must reproduce.
let sftDataTarget = FuzzTarget(name: "sft_data", setUp: {
    try tokenizerTarget.setUp()
}, run: { data in
    let path = scratchDir + "/train.jsonl"
    writeFile(path, data)
    let tools = data.count % 3 == 0
    defer { toolTraceInvariants(String(decoding: data, as: UTF8.self)) }
    for ex in try Datasets.loadJSONL(path, system: data.count % 2 == 0 ? nil : "Be brief.", toolTraces: tools) {
        for t in fixtureTokenizers {
            guard let e = Datasets.tokenize(ex, tokenizer: t, maxLength: 64) else { continue }
            guard e.tokens.count == e.trained.count, e.tokens.count <= 64 else {
                bug("tokenized example: \(e.tokens.count) tokens, \(e.trained.count) flags, max_length 64")
            }
        }
    }
})

func toolTraceInvariants(_ answer: String) {
    let turns = Datasets.gsm8kToolTrace(answer)
    guard turns.count % 2 == 1, turns.last?.role == "assistant" else { bug("tool trace of \(turns.count) turns") }
    for i in stride(from: 0, to: turns.count - 1, by: 2) {
        guard turns[i].role == "assistant", turns[i + 1].role == "user", turns[i].content.hasSuffix("</tool>") else {
            bug("tool trace turn \(i): \(turns[i].role) then \(turns[i + 1].role)")
        }
        // Only the call this turn makes: text before it may hold "<tool>" and "</tool>" of its own.
        let call = String(turns[i].content[turns[i].content.range(of: "<tool>", options: .backwards)!.lowerBound...])
        let calc = CalculatorEnvironment(options: .init())
        _ = try? calc.reset(seed: 0, task: .object([("prompt", "q")]))
        guard let step = try? calc.step(call), step.observation == turns[i + 1].content else {
            bug("tool trace turn \(i): the calculator does not answer \(turns[i + 1].content.prefix(60))")
        }
    }
}
