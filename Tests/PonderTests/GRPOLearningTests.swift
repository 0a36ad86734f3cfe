import Foundation
import XCTest
import PonderBase
@testable import PonderJSON
@testable import PonderModel
@testable import PonderRewards
@testable import PonderTrain

/// GRPO learns: from the from-scratch arithmetic model after its SFT (the quickstart's stage 1),
/// the reflection score (the paper's reward on the greedy completions of 500 held-out problems)
/// rises more with the reflection reward's weight at 1 than at 0, same seeds and steps. The
/// held-out accuracy and its paired standard error are measured and printed; that GRPO raises
/// it by more than two paired standard errors is NOT yet shown (see NOTES.md: in the runs so far
/// greedy accuracy stays within noise of the SFT model's ~92%). Then rejection-sampling SFT keeps
/// only correct, well-formed, distinct samples. Deterministic for a seed and thread count.
final class GRPOLearningTests: XCTestCase {
    static let root = FileManager.default.temporaryDirectory.appendingPathComponent("ponder-grpo-learning-\(getpid())")

    override class func tearDown() { try? FileManager.default.removeItem(at: root) }

    func sftModel() throws -> String {
        let out = GRPOLearningTests.root.appendingPathComponent("sft").path
        let json = """
        {"model": {"scratch": {"hidden_size": 128, "intermediate_size": 384, "num_layers": 4, "num_heads": 4,
                               "num_kv_heads": 2, "context_length": 192, "seed": 0}},
         "data": {"train": {"generate": "arithmetic", "count": 4000, "seed": 1}, "max_length": 160},
         "training": {"batch_size": 16, "num_train_epochs": 6, "learning_rate": 1e-3, "lr_scheduler_type": "cosine",
                      "warmup_steps": 20, "weight_decay": 0.01, "seed": 0},
         "output": {"dir": "\(out)"}, "threads": 2}
        """
        let t = try makeTrainer(json: JSONValue.parse(json))
        try t.run()
        return try XCTUnwrap(Checkpoints.latest(in: out))
    }

    func grpo(from model: String, reflectionWeight: Double, name: String) throws -> LlamaModel {
        let json = """
        {"kind": "grpo", "model": {"path": "\(model)"},
         "data": {"train": {"generate": "arithmetic", "count": 2000, "seed": 7}},
         "reward": {"rewards": ["accuracy", "format", "reflection"], "reward_weights": [1, 1, \(reflectionWeight)]},
         "training": {"prompts_per_step": 8, "num_generations": 8, "gradient_accumulation_steps": 2,
                      "max_completion_length": 128, "temperature": 1, "beta": 0.04, "learning_rate": 5e-5,
                      "lr_scheduler_type": "constant", "max_steps": \(GRPOLearningTests.steps), "seed": 3},
         "threads": 2}
        """
        let t = try XCTUnwrap(try makeTrainer(json: JSONValue.parse(json)) as? GRPOTrainer)
        try t.run { m in
            if m.step % 10 == 0 { print("\(name) step \(m.step): \(m.json.serialized())") }
            return true
        }
        return t.model
    }

    static let steps = 30

    func testGRPORaisesHeldOutAccuracyAndReflection() throws {
        let sft = try sftModel()
        let held = try DataSource.arithmetic(count: 500, seed: 11, split: .test).prompts(system: nil)
        XCTAssertEqual(held.count, 500)
        func eval(_ m: LlamaModel) throws -> Evaluation.Result { try Evaluation.run(model: m, prompts: held, maxTokens: 128) }
        func metric(_ r: Evaluation.Result, _ k: String) -> Double { r.metrics.first { $0.0 == k }!.1.asDouble! }
        let base = try eval(try LlamaModel.load(path: sft))
        let with = try eval(try grpo(from: sft, reflectionWeight: 1, name: "reflection 1"))
        let without = try eval(try grpo(from: sft, reflectionWeight: 0, name: "reflection 0"))
        print("held-out accuracy: SFT \(base.accuracy), GRPO \(with.accuracy) (reflection weight 1), \(without.accuracy) (weight 0)")
        print("reflection: SFT \(metric(base, "reflection")), weight 1 \(metric(with, "reflection")), weight 0 \(metric(without, "reflection"))")

        // Paired over the same 500 problems: the mean and standard error of the per-problem change.
        let d = zip(with.correct, base.correct).map { Double(($0 ?? false) ? 1 : 0) - Double(($1 ?? false) ? 1 : 0) }
        let mean = d.reduce(0, +) / Double(d.count)
        let sd = (d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d.count - 1)).squareRoot()
        let se = sd / Double(d.count).squareRoot()
        print("accuracy change \(mean) ± \(se) (paired SE; not asserted yet)")
        XCTAssertGreaterThan(base.accuracy, 0.8, "the SFT model answers most held-out problems")
        let gainWith = metric(with, "reflection") - metric(base, "reflection")
        let gainWithout = metric(without, "reflection") - metric(base, "reflection")
        XCTAssertGreaterThan(gainWith, gainWithout + 0.02, "the reflection reward must raise the reflection score more than its absence")
        XCTAssertGreaterThan(metric(with, "format_rate"), 0.9, "reflecting must not cost the format")

        // Rejection sampling from the SFT model: only correct, well-formed, distinct completions.
        let model = try LlamaModel.load(path: sft)
        var rc = try RejectionSamplingConfig(reader: JSONReader(try JSONValue.parse(#"{"prompts": {"generate": "arithmetic", "count": 24, "seed": 5}, "num_samples": 4, "max_completion_length": 128}"#)))
        rc.seed = 1
        let prompts = try rc.prompts.prompts(system: nil)
        let r = try RejectionSampling.sample(model: model, prompts: prompts, config: rc)
        XCTAssertEqual(r.sampled, 96)
        XCTAssertGreaterThan(r.examples.count, 12, "most samples of a trained model are right")
        XCTAssertLessThanOrEqual(r.examples.count, 96)
        let rewards = RewardSet(config: RewardConfig())
        var seen: Set<String> = []
        for e in r.examples {
            let completion = e.messages.last!.content
            let ref = prompts.first { $0.messages == Array(e.messages.dropLast()) }!.reference
            let s = rewards.score(RewardInput(completion: completion, reference: ref))
            XCTAssertEqual(s["accuracy"]?.value, 1)
            XCTAssertEqual(s["format"]?.value, 1)
            XCTAssertTrue(seen.insert(e.messages.map(\.content).joined(separator: "\u{1}")).inserted, "duplicates are dropped")
        }
    }
}
