import PonderBase
import PonderJSON
import PonderModel

/// Checkpoint directories `checkpoint-<step>`: the weights (model.safetensors + config +
/// tokenizer for full fine-tuning; PEFT's adapter_model.safetensors + adapter_config.json for
/// LoRA), optimizer.safetensors (Adam moments), trainer_state.json. Each is assembled under a
/// temporary name and renamed into place, so the newest complete checkpoint is always valid.
public enum Checkpoints {
    public static func latest(in dir: String) -> String? {
        let steps = listDirectory(dir).compactMap { name -> Int? in
            guard name.hasPrefix("checkpoint-"), let n = Int(name.dropFirst(11)) else { return nil }
            return fileExists("\(dir)/\(name)/trainer_state.json") ? n : nil
        }
        return steps.max().map { "\(dir)/checkpoint-\($0)" }
    }
}

extension TrainingRun {
    /// Writes checkpoint-<step> atomically and prunes old ones beyond save_total_limit.
    @discardableResult
    public func save(to dir: String) throws -> String {
        let final = "\(dir)/checkpoint-\(step)"
        let tmp = final + ".tmp"
        removeTree(tmp)
        try makeDirectories(tmp)
        try saveWeights(to: tmp)
        let moments = params.entries.flatMap { e in
            [TensorRef(name: e.name + ".exp_avg", shape: e.shape, data: params.m.pointer + e.offset),
             TensorRef(name: e.name + ".exp_avg_sq", shape: e.shape, data: params.v.pointer + e.offset)]
        }
        try writeSafetensors(tmp + "/optimizer.safetensors", moments)
        let state: JSONValue = .object([("global_step", .int(Int64(step))), ("consumed_examples", .int(Int64(consumed))),
                                        ("epoch", .double(epoch)),
                                        ("total_steps", .int(Int64(totalSteps))), ("train_examples", .int(Int64(dataCount))),
                                        ("trainable", .string(model.adapters == nil ? "full" : "lora")),
                                        ("nonfinite_skipped", .int(Int64(nonfiniteSkipped))),
                                        ("nonfinite_in_a_row", .int(Int64(nonfiniteInARow)))])
        try AtomicFile.write(tmp + "/trainer_state.json", state.serialized())
        removeTree(final)
        guard rename(tmp, final) == 0 else { throw PonderError(.io, "\(final): cannot move the checkpoint into place") }
        syncDirectory(of: final)
        let old = listDirectory(dir).compactMap { n -> Int? in
            n.hasPrefix("checkpoint-") ? Int(n.dropFirst(11)) : nil
        }.sorted()
        for s in old.dropLast(config.saveTotalLimit) { removeTree("\(dir)/checkpoint-\(s)") }
        return final
    }

    /// The trained weights only (no optimizer state): a HF model directory, or a PEFT adapter.
    public func saveWeights(to dir: String) throws {
        try makeDirectories(dir)
        if let ad = model.adapters {
            try writeSafetensors(dir + "/adapter_model.safetensors",
                                 ad.entries.map { TensorRef(name: $0.name, shape: $0.shape, data: ad.arena.pointer + $0.offset) })
            try AtomicFile.write(dir + "/adapter_config.json", ad.peftConfigJSON.serialized())
        } else {
            try model.saveHF(directory: dir)
        }
    }

    func restore(from ckpt: String) throws {
        let stateText = try readFile(ckpt + "/trainer_state.json")
        let state = try stateText.withUnsafeBytes { try JSONValue.parse($0, what: ckpt + "/trainer_state.json") }
        // Checkpoints written before non-finite steps were skipped lack the last two (none were).
        let skipped = state["nonfinite_skipped"]?.asInt ?? 0, inARow = state["nonfinite_in_a_row"]?.asInt ?? 0
        guard let s = state["global_step"]?.asInt, let c = state["consumed_examples"]?.asInt,
              let kind = state["trainable"]?.asString, s >= 0, c >= 0, (0...s).contains(skipped), (0...skipped).contains(inARow) else {
            throw PonderError.format("\(ckpt)/trainer_state.json: needs global_step, consumed_examples ≥ 0, trainable, "
                                     + "and 0 ≤ nonfinite_in_a_row ≤ nonfinite_skipped ≤ global_step")
        }
        let want = model.adapters == nil ? "full" : "lora"
        guard kind == want else { throw PonderError.format("\(ckpt): a \(kind) checkpoint cannot resume a \(want) run") }
        if state["train_examples"]?.asInt != Int64(dataCount) {
            throw PonderError.format("\(ckpt): written for \(state["train_examples"]?.asInt ?? -1) training examples, this run has \(dataCount) (different data?)")
        }
        let weights = try SafetensorsFile(path: ckpt + (model.adapters == nil ? "/model.safetensors" : "/adapter_model.safetensors"))
        try weights.read(into: params.params, entries: params.entries)
        let opt = try SafetensorsFile(path: ckpt + "/optimizer.safetensors")
        try opt.read(into: params.m.pointer, entries: params.entries) { $0 + ".exp_avg" }
        try opt.read(into: params.v.pointer, entries: params.entries) { $0 + ".exp_avg_sq" }
        step = Int(s)
        consumed = Int(c)
        nonfiniteSkipped = Int(skipped)
        nonfiniteInARow = Int(inARow)
    }
}

extension LoRAAdapters {
    /// adapter_config.json as PEFT writes it.
    public var peftConfigJSON: JSONValue {
        .object([("peft_type", "LORA"), ("task_type", "CAUSAL_LM"), ("r", .int(Int64(config.rank))),
                 ("lora_alpha", .double(config.alpha)), ("lora_dropout", 0.0), ("bias", "none"),
                 ("fan_in_fan_out", false), ("inference_mode", true), ("init_lora_weights", true),
                 ("target_modules", .array(config.targets.map { .string($0.rawValue) })),
                 ("base_model_name_or_path", nil), ("modules_to_save", nil), ("use_rslora", false), ("use_dora", false)])
    }
}

#if canImport(Glibc)
import Glibc
#endif
