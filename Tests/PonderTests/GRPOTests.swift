import Foundation
import XCTest
import PonderBase
@testable import PonderC
@testable import PonderJSON
@testable import PonderModel
@testable import PonderRewards
@testable import PonderTrain

/// The GRPO trainer end to end on a tiny from-scratch model: a step's metrics, the reference
/// (frozen weights, or the base under LoRA), custom rewards through the C ABI, and exact resume.
final class GRPOTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ponder-grpo-\(getpid())-\(name.hashValue)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func config(_ extra: String = "", training: String = "", reward: String = "", lora: Bool = false) -> String {
        // A key given in `training` or `reward` replaces the default one (a config names each key once).
        func fields(_ defaults: [(String, String)], _ given: String) -> String {
            let kept = defaults.filter { !given.contains("\"\($0.0)\":") }.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ")
            return kept.isEmpty ? String(given.drop { $0 == "," || $0 == " " }) : kept + given
        }
        let training = fields([("prompts_per_step", "2"), ("num_generations", "4"), ("max_completion_length", "24"),
                               ("gradient_accumulation_steps", "2"), ("learning_rate", "1e-3"), ("max_steps", "3"), ("seed", "5")], training)
        let reward = fields([("rewards", "[\"accuracy\", \"format\", \"reflection\"]")], reward)
        return """
        {"kind": "grpo",
         "model": {"scratch": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2,
                               "num_kv_heads": 1, "context_length": 96, "seed": 3}},
         \(lora ? "\"lora\": {\"r\": 4, \"alpha\": 8, \"target_modules\": [\"q_proj\", \"v_proj\"]}," : "")
         "data": {"train": {"generate": "arithmetic", "count": 64, "seed": 1},
                  "eval": {"generate": "arithmetic", "count": 6, "seed": 2, "split": "test"}},
         "reward": {\(reward)},
         "training": {\(training)},
         "threads": 2\(extra)}
        """
    }

    func trainer(_ json: String) throws -> GRPOTrainer {
        let t = try makeTrainer(json: JSONValue.parse(json))
        return try XCTUnwrap(t as? GRPOTrainer)
    }

    func value(_ m: StepMetrics, _ key: String) -> Double? { (m.extra + m.eval).first { $0.0 == key }?.1.asDouble }

    func testStepLogsTRLMetricsAndStartsAtZeroKL() throws {
        for lora in [false, true] {
            // A random model earns no accuracy, format or reflection (and always runs to the
            // length limit): a custom reward on the text makes rewards differ within groups.
            let t = try trainer(config(reward: ", \"custom\": [\"bytes\"], \"rewards\": [\"accuracy\", \"format\", \"reflection\", \"bytes\"]", lora: lora))
            try t.setReward("bytes") { Double($0.completion.utf8.count % 7) }
            XCTAssertEqual(t.training.totalSteps, 3)
            let m = try t.trainStep()
            for key in ["reward", "reward_std", "frac_reward_zero_std", "rewards/accuracy/mean", "rewards/format/std",
                        "completions/mean_length", "completions/clipped_ratio", "kl", "entropy", "clip_ratio/region_mean",
                        "accuracy", "format_rate", "reflection", "reflection/verification", "rollout_seconds", "update_seconds"] {
                XCTAssertNotNil(value(m, key), "missing \(key) (lora \(lora))")
            }
            // The policy starts as the reference (frozen copy, or the base with B = 0 adapters).
            XCTAssertEqual(value(m, "kl"), 0, "lora \(lora)")
            // With one update per rollout the ratio is exactly 1: nothing is clipped.
            XCTAssertEqual(value(m, "clip_ratio/region_mean"), 0)
            XCTAssertNotEqual(value(m, "rewards/bytes/std"), 0)
            XCTAssertTrue(m.loss.isFinite && m.gradNorm > 0, "rewards differ within groups, so there is a gradient")
            let m2 = try t.trainStep()
            XCTAssertGreaterThan(value(m2, "kl") ?? 0, 0, "after an update the policy has moved (lora \(lora))")
        }
    }

    /// The training forward scores exactly the tokens that were sampled: at temperature 1 its
    /// log p of each completion token equals the one generation reported.
    func testTrainingForwardScoresTheSampledTokens() throws {
        let t = try trainer(config(training: ", \"temperature\": 1"))
        var req = GenerateRequest()
        req.n = 2  // 2 prompts × 2: the trainer's micro-batch size
        req.maxTokens = 20
        req.seed = 4
        let prompts = Array(t.promptIDs.prefix(2))
        let gen = try t.model.generate(prompts: prompts, req)
        let seqs = gen.completions.enumerated().map { i, c in
            GRPOTrainer.Sequence(prompt: i / 2, index: i, promptIDs: prompts[i / 2], completion: c.tokenIDs, text: c.text,
                                 finish: c.finishReason, mask: Array(repeating: true, count: c.tokenIDs.count))
        }
        let lp = try t.scoreLogp(seqs, with: t.model)
        for (i, c) in gen.completions.enumerated() {
            XCTAssertEqual(lp[i].count, c.logprobs.count)
            for (a, b) in zip(lp[i], c.logprobs) { XCTAssertEqual(a, b, accuracy: 2e-3, "sequence \(i)") }
        }
    }

    func testEvaluationIsGreedyAndDeterministic() throws {
        let t = try trainer(config())
        let a = try t.evaluationMetrics(), b = try t.evaluationMetrics()
        XCTAssertEqual(JSONValue.object(a), JSONValue.object(b))
        XCTAssertEqual(a.first { $0.0 == "eval_count" }?.1, .int(6))
        for key in ["eval_accuracy", "eval_format_rate", "eval_reflection", "eval_mean_length"] {
            XCTAssertNotNil(a.first { $0.0 == key }, key)
        }
    }

    /// Killing a run and resuming it from a checkpoint gives the same steps: rollouts are a
    /// function of (seed, step), and the weights and optimizer state come back exactly.
    func testResumeReproducesTheUninterruptedRun() throws {
        let out1 = dir.appendingPathComponent("a").path, out2 = dir.appendingPathComponent("b").path
        let full = try trainer(config(", \"output\": {\"dir\": \"\(out1)\"}"))
        var want: [String] = []
        for _ in 0..<3 { want.append(try full.trainStep().json.serialized()) }
        let first = try trainer(config(", \"output\": {\"dir\": \"\(out2)\", \"save_steps\": 2}"))
        _ = try first.trainStep()
        _ = try first.trainStep()
        let resumed = try trainer(config(", \"output\": {\"dir\": \"\(out2)\"}"))
        XCTAssertEqual(resumed.training.step, 2)
        let got = try resumed.trainStep()
        func strip(_ s: String) throws -> [String: Any] {
            var d = try JSONSerialization.jsonObject(with: Data(s.utf8)) as! [String: Any]
            for k in d.keys where k.hasSuffix("seconds") || k.hasSuffix("per_second") { d.removeValue(forKey: k) }
            return d
        }
        XCTAssertEqual(NSDictionary(dictionary: try strip(got.json.serialized())), NSDictionary(dictionary: try strip(want[2])))
    }

    func testConfigErrorsNameTheirKeys() {
        func fails(_ json: String, _ text: String) {
            XCTAssertThrowsError(try trainer(json)) { e in
                XCTAssertTrue((e as? PonderError)?.message.contains(text) ?? false, "\(e)")
            }
        }
        fails(config(training: ", \"loss_type\": \"ppo\""), "training.loss_type: expected one of")
        fails(config(training: ", \"loss_type\": \"cispo\""), "training.epsilon_high")
        fails(config(training: ", \"num_generations\": 1"), "training.num_generations")
        fails(config(training: ", \"gradient_accumulation_steps\": 3"), "training.gradient_accumulation_steps: must divide")
        fails(config(reward: ", \"reward_weights\": [1]"), "reward.reward_weights")
        fails(config(reward: ", \"rewards\": [\"accuracy\", \"mine\"]"), "reward.rewards[1]: unknown reward")
        fails(config(training: ", \"temprature\": 1"), "training.temprature: unknown key")
        fails(config(training: ", \"min_completion_length\": 25"), "training.min_completion_length: 25 is more than max_completion_length (24)")
    }

    /// A prompt line with nothing to answer is an error naming the line (the long fuzz run of
    /// grpo_data found `{"messages": []}` accepted as a prompt without messages).
    func testPromptLinesWithoutATurnAreRejected() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ponder-grpo-prompts-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, line) in [#"{"messages": []}"#, #"{"messages": [{"role": "system", "content": "Be brief."}]}"#,
                          #"{"messages": [], "reference": "4"}"#].enumerated() {
            let path = dir.appendingPathComponent("p\(i).jsonl").path
            try Data(("{\"prompt\": \"2+2?\", \"reference\": \"4\"}\n" + line + "\n").utf8).write(to: URL(fileURLWithPath: path))
            for system in [nil, "Be brief."] {
                XCTAssertThrowsError(try DataSource.jsonl(path).prompts(system: system), line) { e in
                    XCTAssertTrue((e as? PonderError)?.message.contains("p\(i).jsonl:2: the prompt has no turn to answer") ?? false, "\(e)")
                }
            }
        }
    }

    /// A reward supplied through the C ABI (as agent environments do): declared in the config,
    /// registered with ponder_trainer_set_reward, called for every completion; NaN is no score.
    func testCustomRewardThroughTheCABI() throws {
        var json = config(reward: ", \"custom\": [\"short\"], \"rewards\": [\"format\", \"short\"], \"reward_weights\": [1, 0.5]")
        json = json.replacingOccurrences(of: "\"max_steps\": 3", with: "\"max_steps\": 1")
        var h: OpaquePointer? = nil
        XCTAssertEqual(json.withCString { ponder_trainer_create($0, &h) }, 0, String(cString: ponder_last_error()))
        defer { ponder_trainer_free(h) }
        var out: UnsafeMutablePointer<CChar>? = nil
        // Declared but not registered yet: the step is refused and nothing changes.
        XCTAssertEqual(ponder_trainer_step(h, &out), 9)
        XCTAssertTrue(String(cString: ponder_last_error()).contains("short"))
        let fn: RewardFnC = { _, completion, reference, _ in
            let n = strlen(completion!)
            return n % 3 == 0 ? .nan : 1 / Double(1 + n) + (reference == nil ? 100 : 0)
        }
        XCTAssertEqual("nope".withCString { ponder_trainer_set_reward(h, $0, fn, nil) }, 1)
        XCTAssertEqual("short".withCString { ponder_trainer_set_reward(h, $0, nil, nil) }, 9)
        XCTAssertEqual("short".withCString { ponder_trainer_set_reward(h, $0, fn, nil) }, 0)
        XCTAssertEqual(ponder_trainer_step(h, &out), 0, String(cString: ponder_last_error()))
        let m = try JSONSerialization.jsonObject(with: Data(String(cString: out!).utf8)) as! [String: Any]
        ponder_string_free(out)
        let mean = try XCTUnwrap(m["rewards/short/mean"] as? Double)
        XCTAssertGreaterThan(mean, 0)
        XCTAssertLessThan(mean, 1, "every prompt has a reference, and scores are 1/(1+n)")
        // An SFT trainer takes no rewards.
        var sft: OpaquePointer? = nil
        let sftJSON = #"{"model": {"scratch": {"hidden_size": 16, "num_layers": 1, "num_heads": 2}}, "data": {"train": {"generate": "arithmetic", "count": 4}}}"#
        XCTAssertEqual(sftJSON.withCString { ponder_trainer_create($0, &sft) }, 0)
        XCTAssertEqual("short".withCString { ponder_trainer_set_reward(sft, $0, fn, nil) }, 9)
        ponder_trainer_free(sft)
    }
}
