import Foundation
import XCTest
@testable import PonderModel
@testable import PonderTrain
import PonderJSON

final class SFTTests: XCTestCase {
    static let scratch = #"{"scratch": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "context_length": 128, "seed": 1}}"#

    static func config(_ extra: String = "", lora: String? = nil, steps: Int = 150, lr: Double = 3e-3, dir: String? = nil,
                       model: String = scratch, schedule: String = "constant", data: String = #"{"generate": "arithmetic", "count": 16, "seed": 3}"#) throws -> SFTConfig {
        let json = """
        {"model": \(model),
         \(lora.map { "\"lora\": \($0)," } ?? "")
         "data": {"train": \(data), "max_length": 96},
         "training": {"batch_size": 4, "max_steps": \(steps), "learning_rate": \(lr), "lr_scheduler_type": "\(schedule)",
                      "max_grad_norm": 1.0, "seed": 7 \(extra)}
         \(dir.map { ", \"output\": {\"dir\": \"\($0)\", \"save_steps\": 1, \"save_total_limit\": 3}" } ?? "")}
        """
        return try SFTConfig(json: JSONValue.parse(json))
    }

    /// The arithmetic task's worked answers: every column step is a true one-digit fact, and
    /// the answer is the problem's value (checked by evaluating the question independently).
    func testArithmeticWorkedAnswersAreCorrect() throws {
        let examples = Datasets.arithmetic(count: 3000, seed: 42, maxOperand: 120)
        var ops: Set<String> = []
        for ex in examples {
            let q = ex.messages[0].content, a = ex.messages[1].content
            let parts = q.dropFirst("What is ".count).dropLast().split(separator: " ")
            let (x, op, y) = (Int(parts[0])!, String(parts[1]), Int(parts[2])!)
            ops.insert(op)
            let value = op == "+" ? x + y : op == "-" ? x - y : x * y
            XCTAssertTrue(a.hasSuffix("So \(x) \(op) \(y) = \(value)</think><answer>\(value)</answer>"), a)
            let think = a.dropFirst("<think>".count).prefix { $0 != "<" }
            for step in think.components(separatedBy: ". ").dropLast() {
                // "3 + 9 + 1 = 13, carry 1", "13 - 1 - 9 = 3, borrow 1", "4 * 7 + 2 = 30", or a bare digit
                let sides = step.components(separatedBy: ",")[0].components(separatedBy: " = ")
                guard sides.count == 2 else { XCTAssertNotNil(Int(step), step); continue }
                let tokens = sides[0].split(separator: " ")
                var total = Int(tokens[0])!, i = 1
                while i + 1 < tokens.count {
                    let v = Int(tokens[i + 1])!
                    switch tokens[i] { case "+": total += v; case "-": total -= v; default: total *= v }
                    i += 2
                }
                XCTAssertEqual(total, Int(sides[1]), "\(step) in \(a)")
            }
        }
        XCTAssertEqual(ops, ["+", "-", "*"])
    }

    func tempDir() -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("ponder-sft-\(UUID().uuidString)").path
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func testFullParameterSFTOverfits16Examples() throws {
        let t = try SFTTrainer(config: SFTTests.config(steps: 500))
        XCTAssertEqual(t.train.count, 16)
        let first = try t.trainStep().loss
        let last = try t.run()!
        print("full SFT: loss \(first) → \(last.loss)")
        XCTAssertLessThan(last.loss, 0.05)
    }

    func testLoRASFTOverfits16ExamplesAndMergesExactly() throws {
        // LoRA adapts a trained base: pretrain the scratch model briefly on other problems.
        let baseDir = tempDir()
        let pre = try SFTTrainer(config: SFTTests.config(steps: 150, data: #"{"generate": "arithmetic", "count": 256, "seed": 99}"#))
        try pre.run()
        try pre.saveWeights(to: baseDir)
        let t = try SFTTrainer(config: SFTTests.config(lora: #"{"r": 16, "alpha": 32}"#, steps: 400, lr: 3e-3,
                                                        model: "{\"path\": \"\(baseDir)\"}"))
        let base = Array(UnsafeBufferPointer(start: t.model.weights.pointer, count: t.model.weights.count))
        let evalAll = { () throws -> Double in
            var sum = 0.0, n = 0
            for e in t.train {
                let b = t.batch([e])
                for (lp, tg) in zip(try t.model.trainForward(b, t.acts), b.targets) where tg >= 0 { sum -= Double(lp); n += 1 }
            }
            return sum / Double(n)
        }
        let before = try evalAll()
        try t.run()
        let after = try evalAll()
        print("LoRA SFT: loss over the 16 examples \(before) → \(after)")
        // On this 2-layer, 64-wide base LoRA plateaus near 0.15 while full fine-tuning reaches
        // 0.003 (NOTES.md): assert the adapter learns, not the 0.05 overfit.
        XCTAssertLessThan(after, before * 0.6)
        // The base weights are frozen: bit-identical after training.
        XCTAssertTrue(base.elementsEqual(UnsafeBufferPointer(start: t.model.weights.pointer, count: t.model.weights.count)))
        // Merging the adapter into the base gives the same logits as base + adapter.
        let ids = t.train[0].tokens
        let withAdapter = try t.model.forwardLogits(ids)
        let ad = t.model.adapters!
        t.model.adapters = nil
        ad.merge(into: t.model)
        let merged = try t.model.forwardLogits(ids)
        let diff = zip(withAdapter, merged).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 1e-4)
    }

    /// Stopping after step k and resuming from the checkpoint gives bit-identical losses for
    /// the following steps (same thread count).
    func testKillAndResumeIsBitIdentical() throws {
        for lora in [nil, #"{"r": 4}"#] {
            let ref = try SFTTrainer(config: SFTTests.config(lora: lora, steps: 8, dir: tempDir()))
            let losses = try (0..<8).map { _ in try ref.trainStep().loss }
            let dir = tempDir()
            let a = try SFTTrainer(config: SFTTests.config(lora: lora, steps: 8, dir: dir))
            for _ in 0..<3 { try a.trainStep() }   // save_steps = 1: checkpoint-3 exists
            // "kill": drop the trainer without any shutdown, leave a torn temp checkpoint behind
            try FileManager.default.createDirectory(atPath: dir + "/checkpoint-4.tmp", withIntermediateDirectories: true)
            let b = try SFTTrainer(config: SFTTests.config(lora: lora, steps: 8, dir: dir))
            XCTAssertEqual(b.step, 3)
            let resumed = try (3..<8).map { _ in try b.trainStep().loss }
            XCTAssertEqual(resumed, Array(losses[3..<8]), "lora: \(lora ?? "none")")
        }
    }

    func testCheckpointReloadsAsAModel() throws {
        let dir = tempDir()
        let t = try SFTTrainer(config: SFTTests.config(steps: 3, dir: dir))
        try t.run()
        let ckpt = try XCTUnwrap(Checkpoints.latest(in: dir))
        XCTAssertTrue(ckpt.hasSuffix("checkpoint-3"))
        let reloaded = try LlamaModel.load(path: ckpt)
        let ids = t.train[1].tokens
        XCTAssertEqual(try reloaded.forwardLogits(ids), try t.model.forwardLogits(ids))
        XCTAssertEqual(reloaded.tokenizer.encode("What is 3 + 4?"), t.model.tokenizer.encode("What is 3 + 4?"))
        // GGUF round trip (F32 exact; F16 close).
        let gguf = dir + "/model.gguf"
        try t.model.saveGGUF(path: gguf)
        XCTAssertEqual(try LlamaModel.load(path: gguf).forwardLogits(ids), try t.model.forwardLogits(ids))
        try t.model.saveGGUF(path: gguf, dtype: .f16)
        let half = try LlamaModel.load(path: gguf).forwardLogits(ids)
        XCTAssertLessThan(zip(half, try t.model.forwardLogits(ids)).map { abs($0 - $1) }.max()!, 0.05)
    }

    func testCorruptCheckpointsGiveClearErrors() throws {
        let dir = tempDir()
        let t = try SFTTrainer(config: SFTTests.config(steps: 2, dir: dir))
        try t.run()
        let ckpt = try XCTUnwrap(Checkpoints.latest(in: dir))
        // Truncated optimizer state
        let opt = ckpt + "/optimizer.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: opt))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: opt))
        XCTAssertThrowsError(try SFTTrainer(config: SFTTests.config(steps: 4, dir: dir))) { e in
            XCTAssertTrue("\(e)".contains("optimizer.safetensors"), "\(e)")
        }
        // A LoRA run cannot resume a full checkpoint.
        XCTAssertThrowsError(try SFTTrainer(config: SFTTests.config(lora: #"{"r": 2}"#, steps: 4, dir: dir))) { e in
            XCTAssertTrue("\(e)".contains("full checkpoint cannot resume a lora run"), "\(e)")
        }
    }

    func testConfigErrorsNameTheirPaths() {
        let bad = #"{"model": {"scratch": {"hidden_size": 3}}, "data": {"train": 5}, "training": {"learning_rate": -1, "batch": 2}, "lora": {"target_modules": ["q_prj"]}}"#
        XCTAssertThrowsError(try SFTConfig(json: JSONValue.parse(bad))) { e in
            let msg = "\(e)"
            for part in ["model.scratch.hidden_size", "data.train", "training.learning_rate", "training.batch: unknown key",
                         "lora.target_modules[0]: unknown module \"q_prj\""] {
                XCTAssertTrue(msg.contains(part), "missing \(part) in \(msg)")
            }
        }
    }
}

/// LoRA on the real SmolLM2 base (about 2 minutes): 16 GSM8K examples overfit.
final class SmolLoRATests: XCTestCase {
    func testLoRAOverfits16GSM8KExamplesOnSmolLM2() throws {
        _ = try Fixtures.smol()  // skips (or fails in CI) when the model is missing
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ponder-lora16-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lines = try String(contentsOfFile: Fixtures.repo.appendingPathComponent("data/gsm8k/train.jsonl").path, encoding: .utf8)
            .split(separator: "\n").prefix(16)
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        let cfg = try SFTConfig(json: JSONValue.parse("""
        {"model": {"path": "\(Fixtures.smolPath)"}, "lora": {"r": 16, "alpha": 32},
         "data": {"train": "\(dir)/train.jsonl", "eval": "\(dir)/train.jsonl", "max_length": 160},
         "training": {"batch_size": 4, "max_steps": 40, "learning_rate": 3e-3, "lr_scheduler_type": "cosine", "seed": 0}}
        """))
        let t = try SFTTrainer(config: cfg)
        let before = try t.evaluate()
        try t.run()
        let after = try t.evaluate()
        print("SmolLM2 LoRA: loss over the 16 examples \(before) → \(after)")
        XCTAssertLessThan(after, 0.05)
    }
}
