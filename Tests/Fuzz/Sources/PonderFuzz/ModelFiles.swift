// Model files as a user downloads them: the input is written to a file and loaded through
// ponder_model_load, then the model is used (see `exercise`).

/// A GGUF file (metadata, tensor directory, every tensor type's blocks).
let ggufTarget = FuzzTarget(name: "gguf") { data in
    let path = scratchDir + "/model.gguf"
    writeFile(path, data)
    loadAndExercise(#"{"path": "\#(path)", "threads": 1}"#)
}

/// A Hugging Face directory holding the fixed model (Tests/Fuzz/model) with `file` replaced by
/// the input, so the other files stay valid and the fuzzed one is read in full context.
func hfDirectoryTarget(_ name: String, file: String, adapter: Bool = false) -> FuzzTarget {
    let dir = scratchDir + "/" + name
    return FuzzTarget(name: name, setUp: {
        makeDirectory(dir)
        makeDirectory(dir + "/adapter")
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
                  "adapter/adapter_config.json", "adapter/adapter_model.safetensors"] {
            try copyFixed(f, to: dir + "/" + f)
        }
    }, run: { data in
        writeFile(dir + "/" + file, data)
        loadAndExercise(#"{"path": "\#(dir)", "threads": 1\#(adapter ? #", "adapter": "\#(dir)/adapter""# : "")}"#)
    })
}

let safetensorsTarget = hfDirectoryTarget("safetensors", file: "model.safetensors")
let hfConfigTarget = hfDirectoryTarget("hf_config", file: "config.json")
let tokenizerJSONTarget = hfDirectoryTarget("tokenizer_json", file: "tokenizer.json")
/// A PEFT adapter's adapter_config.json (rank, alpha, modules) on the fixed model and weights.
let adapterConfigTarget = hfDirectoryTarget("adapter_config", file: "adapter/adapter_config.json", adapter: true)
