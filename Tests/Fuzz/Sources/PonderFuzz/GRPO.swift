@testable import PonderTrain

// GRPO's inputs: its config (parse and validate only: it names files) and its JSONL prompt files.

let grpoConfigTarget = optionsTarget("grpo_config") { _ = try GRPOConfig(json: $0) }

/// A prompt file ({"prompt", "reference"}, {"messages", "reference"}, or any SFT shape).
let grpoDataTarget = FuzzTarget(name: "grpo_data") { data in
    let path = scratchDir + "/prompts.jsonl"
    writeFile(path, data)
    for p in try DataSource.jsonl(path).prompts(system: data.count % 2 == 0 ? nil : "Be brief.") {
        if p.messages.isEmpty { bug("a prompt without messages") }
    }
}
