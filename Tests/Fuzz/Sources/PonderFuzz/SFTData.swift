import PonderTrain

// A training data file (JSONL in its three shapes), read and tokenized as an SFT run does.
let sftDataTarget = FuzzTarget(name: "sft_data", setUp: {
    try tokenizerTarget.setUp()
}, run: { data in
    let path = scratchDir + "/train.jsonl"
    writeFile(path, data)
    for ex in try Datasets.loadJSONL(path, system: data.count % 2 == 0 ? nil : "Be brief.") {
        for t in fixtureTokenizers {
            guard let e = Datasets.tokenize(ex, tokenizer: t, maxLength: 64) else { continue }
            guard e.tokens.count == e.trained.count, e.tokens.count <= 64 else {
                bug("tokenized example: \(e.tokens.count) tokens, \(e.trained.count) flags, max_length 64")
            }
        }
    }
})
