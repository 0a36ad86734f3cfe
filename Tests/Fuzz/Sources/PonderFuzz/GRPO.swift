import PonderJSON
@testable import PonderTrain

// GRPO's inputs: its config (parse and validate only: it names files) and its JSONL prompt files.

let grpoConfigTarget = optionsTarget("grpo_config") { _ = try GRPOConfig(json: $0) }

/// Rejection-sampling SFT's "rejection" object (parse and validate only: sampling needs a model).
let rejectionConfigTarget = optionsTarget("rejection_config") { v in
    let r = JSONReader(v, what: "rejection")
    _ = try RejectionSamplingConfig(reader: r)
    try r.finish()
}

/// A prompt file ({"prompt", "reference"}, {"messages", "reference"}, or any SFT shape).
let grpoDataTarget = FuzzTarget(name: "grpo_data") { data in
    let path = scratchDir + "/prompts.jsonl"
    writeFile(path, data)
    for p in try DataSource.jsonl(path).prompts(system: data.count % 2 == 0 ? nil : "Be brief.") {
        if p.messages.isEmpty { bug("a prompt without messages") }
    }
}
