import Foundation
import XCTest
import PonderBase
@testable import PonderJSON
@testable import PonderModel
@testable import PonderEnvironments
@testable import PonderPipeline
@testable import PonderRewards
@testable import PonderTrain

/// The pipeline config: broken configs each answered with their exact JSON paths (all at once),
/// the resolved form reading back to itself, docs/CONFIG.md against the keys the code reads, and
/// the evaluation's estimators.
final class PipelineConfigTests: XCTestCase {
    static let jsonl: String = {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("ponder-pipeline-config-\(getpid()).jsonl").path
        try? "{\"prompt\": \"1+1?\", \"completion\": \"2\"}\n".write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }()

    /// A valid config with one stage of every type.
    func base() -> [String: Any] {
        ["model": ["scratch": ["hidden_size": 32, "num_layers": 1, "num_heads": 2, "context_length": 128]],
         "data": ["train": ["generate": "arithmetic", "count": 32, "seed": 1], "eval": PipelineConfigTests.jsonl],
         "output": ["dir": "/tmp/ponder-never-created", "save_steps": 2],
         "seed": 1, "threads": 1,
         "stages": [["type": "pretrain", "max_steps": 2],
                    ["type": "sft", "mode": "lora", "lora": ["r": 4], "max_steps": 2, "learning_rate": 1e-3],
                    ["type": "grpo", "max_steps": 2, "beta": 0.04, "num_generations": 2],
                    ["type": "eval", "limit": 4, "num_samples": 2],
                    ["type": "rejection_sft", "rejection": ["num_samples": 2], "max_steps": 1]]]
    }

    func json(_ d: [String: Any]) throws -> JSONValue {
        try JSONValue.parse(String(decoding: JSONSerialization.data(withJSONObject: d), as: UTF8.self))
    }

    func paths(_ d: [String: Any]) throws -> [String] {
        PipelineConfig.validate(try json(d)).map(\.path)
    }

    func stage(_ d: inout [String: Any], _ i: Int, _ change: (inout [String: Any]) -> Void) {
        var stages = d["stages"] as! [[String: Any]]
        change(&stages[i])
        d["stages"] = stages
    }

    func testBaseConfigIsValid() throws {
        XCTAssertEqual(try paths(base()), [])
        let c = try PipelineConfig(json: json(base()))
        XCTAssertEqual(c.stages.map(\.name), ["pretrain", "sft", "grpo", "eval", "rejection_sft"])
        XCTAssertEqual(c.stages[2].grpo?.loss.beta, 0.04)
        XCTAssertEqual(c.stages[1].lora?.rank, 4)
        XCTAssertEqual(c.stages[0].sft?.run.seed, 1, "a stage's seed defaults to the pipeline's")
        XCTAssertTrue(c.stages[0].sft?.rawText ?? false)
    }

    /// Each broken config and the exact set of paths its problems are reported at.
    func testBrokenConfigsNameTheirPaths() throws {
        typealias Change = (inout [String: Any]) -> Void
        let cases: [(String, Change, [String])] = [
            ("no model", { $0["model"] = nil }, ["<root>"]),
            ("model file missing", { $0["model"] = ["path": "/nonexistent/model.gguf"] }, ["model.path"]),
            ("scratch hidden_size", { $0["model"] = ["scratch": ["hidden_size": 0]] }, ["model.scratch.hidden_size"]),
            ("unknown top-level key", { $0["bogus"] = 1 }, ["bogus"]),
            ("data.train a number", { $0["data"] = ["train": 5] }, ["data.train"]),
            ("data.train missing file", { $0["data"] = ["train": "/nonexistent.jsonl", "eval": PipelineConfigTests.jsonl] }, ["data.train"]),
            ("bad split", { $0["data"] = ["train": ["generate": "arithmetic", "split": "dev"], "eval": PipelineConfigTests.jsonl] }, ["data.train.split"]),
            ("unknown reward", { $0["reward"] = ["rewards": ["accuracy", "speed"]] }, ["reward.rewards[1]"]),
            ("weights count", { $0["reward"] = ["reward_weights": [1, 1]] }, ["reward.reward_weights"]),
            ("no output", { $0["output"] = nil }, ["<root>"]),
            ("no output.dir", { $0["output"] = ["save_steps": 1] }, ["output.dir"]),
            ("negative save_steps", { $0["output"] = ["dir": "/tmp/x", "save_steps": -1] }, ["output.save_steps"]),
            ("threads 0", { $0["threads"] = 0 }, ["threads"]),
            ("seed a string", { $0["seed"] = "x" }, ["seed"]),
            ("no stages", { $0["stages"] = [] as [Any] }, ["stages"]),
            ("stages an object", { $0["stages"] = ["type": "sft"] }, ["stages"]),
            ("stage without type", { self.stage(&$0, 0) { $0["type"] = nil } }, ["stages[0]"]),
            ("unknown stage type", { self.stage(&$0, 1) { $0["type"] = "ppo" } }, ["stages[1].type"]),
            ("negative beta", { self.stage(&$0, 2) { $0["beta"] = -1 } }, ["stages[2].beta"]),
            ("learning rate 2", { self.stage(&$0, 1) { $0["learning_rate"] = 2 } }, ["stages[1].learning_rate"]),
            ("mode half", { self.stage(&$0, 1) { $0["mode"] = "half" } }, ["stages[1].mode", "stages[1].lora"]),
            ("lora without mode lora", { self.stage(&$0, 2) { $0["lora"] = ["r": 4] } }, ["stages[2].lora"]),
            ("lora r 0", { self.stage(&$0, 1) { $0["lora"] = ["r": 0] } }, ["stages[1].lora.r"]),
            ("loss type", { self.stage(&$0, 2) { $0["loss_type"] = "ppo" } }, ["stages[2].loss_type"]),
            ("cispo without epsilon_high", { self.stage(&$0, 2) { $0["loss_type"] = "cispo" } }, ["stages[2].epsilon_high"]),
            ("stage reward unknown", { self.stage(&$0, 2) { $0["reward"] = ["rewards": ["x"]] } }, ["stages[2].reward.rewards[0]"]),
            ("num_generations 1", { self.stage(&$0, 2) { $0["num_generations"] = 1 } }, ["stages[2].num_generations"]),
            ("negative num_samples", { self.stage(&$0, 3) { $0["num_samples"] = -1 } }, ["stages[3].num_samples"]),
            ("pass_k beyond samples", { self.stage(&$0, 3) { $0["pass_k"] = [5] } }, ["stages[3].pass_k[0]"]),
            ("duplicate names", { self.stage(&$0, 2) { $0["name"] = "sft" } }, ["stages[2].name"]),
            ("bad name", { self.stage(&$0, 2) { $0["name"] = "a/b" } }, ["stages[2].name"]),
            ("logging_steps", { self.stage(&$0, 0) { $0["logging_steps"] = 5 } }, ["stages[0].logging_steps"]),
            ("pretrain has no mode", { self.stage(&$0, 0) { $0["mode"] = "lora" } }, ["stages[0].mode"]),
            ("unknown stage key", { self.stage(&$0, 1) { $0["bogus"] = true } }, ["stages[1].bogus"]),
            ("eval without data", { $0["data"] = ["train": ["generate": "arithmetic"]] }, ["stages[3].data"]),
            ("stage data missing file", { self.stage(&$0, 1) { $0["data"] = "/nonexistent.jsonl" } }, ["stages[1].data"]),
            ("rejection output", { self.stage(&$0, 4) { $0["rejection"] = ["output": "x.jsonl"] } }, ["stages[4].rejection.output"]),
            ("rejection require", { self.stage(&$0, 4) { $0["rejection"] = ["require": ["speed"]] } }, ["stages[4].rejection.require[0]"]),
            ("rejection data", { self.stage(&$0, 4) { $0["data"] = ["generate": "arithmetic"] } }, ["stages[4].data"]),
            ("batch size a string", { self.stage(&$0, 1) { $0["batch_size"] = "4" } }, ["stages[1].batch_size"]),
            ("eval temperature 0", { self.stage(&$0, 3) { $0["temperature"] = 0 } }, ["stages[3].temperature"]),
            ("everything at once", {
                $0["threads"] = 999
                $0["bogus"] = 1
                self.stage(&$0, 2) { $0["beta"] = "x"; $0["top_p"] = 2 }
                self.stage(&$0, 3) { $0["limit"] = -5 }
            }, ["threads", "bogus", "stages[2].beta", "stages[2].top_p", "stages[3].limit"]),
        ]
        XCTAssertGreaterThanOrEqual(cases.count, 20)
        for (name, change, expected) in cases {
            var d = base()
            change(&d)
            let problems = PipelineConfig.validate(try json(d))
            XCTAssertEqual(Set(problems.map(\.path)), Set(expected), "\(name): \(problems)")
            // create() refuses the same config with every problem in one message.
            XCTAssertThrowsError(try PipelineConfig(json: json(d)), name) { e in
                XCTAssertEqual((e as? PonderError)?.code, .invalidArgument, name)
                for p in expected { XCTAssertTrue("\(e)".contains(p + ":"), "\(name): \(e) lacks \(p)") }
            }
        }
    }

    func testResolvedConfigReadsBackToItself() throws {
        let c = try PipelineConfig(json: json(base()))
        let resolved = c.resolvedJSON
        let again = try PipelineConfig(json: JSONValue.parse(prettyJSON(resolved)))
        XCTAssertEqual(again.resolvedJSON, resolved)
        // Defaults are on record: a GRPO stage's beta and reward weights though none were given.
        let grpo = resolved["stages"]!.asArray![2]
        XCTAssertEqual(grpo["num_generations"], 2)
        XCTAssertEqual(grpo["epsilon"]?.asDouble, 0.2)
        XCTAssertEqual(grpo["reward"]?["reward_weights"]?.asArray?.compactMap(\.asDouble), [1, 1, 1])
        XCTAssertEqual(grpo["reward"]?["max_completion_length"], 256, "the length reward's budget follows the stage's")
        // ponder_default_config_json: the paper's stages; with a model, data and dir it is a config.
        guard case var .object(d) = PipelineConfig.defaults else { return XCTFail("defaults not an object") }
        XCTAssertEqual(d.first { $0.0 == "stages" }?.1.asArray?.map { $0["type"]! }, ["sft", "grpo", "eval"])
        XCTAssertEqual(d.first { $0.0 == "stages" }?.1.asArray?[1]["beta"]?.asDouble, 0.04)
        d[0].1 = .object([("scratch", .object([]))])
        d[1].1 = .object([("train", .object([("generate", "arithmetic")])), ("eval", .object([("generate", "arithmetic")])), ("system", .null)])
        if let i = d.firstIndex(where: { $0.0 == "output" }) { d[i].1 = .object([("dir", "/tmp/x")]) }
        XCTAssertEqual(PipelineConfig.validate(.object(d)).map(\.path), [])
    }

    /// docs/CONFIG.md documents exactly the keys the code reads: each table after a
    /// `<!-- keys: SECTION -->` line lists a section's keys in its first column.
    func testConfigDocMatchesCode() throws {
        let doc = try String(contentsOf: Fixtures.repo.appendingPathComponent("docs/CONFIG.md"), encoding: .utf8)
        var documented: [String: Set<String>] = [:]
        var section: String?
        for line in doc.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("<!-- keys: ") {
                section = String(line.dropFirst(11).prefix { $0 != " " })
                documented[section!] = []
            } else if let s = section, line.hasPrefix("| `") {
                documented[s]!.insert(String(line.dropFirst(3).prefix { $0 != "`" }))
            } else if line.hasPrefix("#") {
                section = nil
            }
        }
        func keys(_ v: JSONValue?) -> Set<String> { Set(v?.asObject?.map(\.0) ?? []) }
        let defaults = PipelineConfig.defaults
        var code: [String: Set<String>] = [
            "top": keys(defaults),
            "model": ["path", "scratch"],
            "model.scratch": keys(ModelSpec.scratch(LlamaConfig(vocabSize: 259, hiddenSize: 8, intermediateSize: 8, numLayers: 1, numHeads: 1,
                                                                 numKVHeads: 1, ropeTheta: 1, rmsNormEps: 1e-5, maxPositions: 8,
                                                                 tieWordEmbeddings: true), seed: 0, std: 1).json["scratch"]),
            "data": keys(defaults["data"]),
            "generator": keys(DataSource.arithmetic(count: 1, seed: 0, split: .train).json),
            "jsonl": keys(DataSource.jsonl("train.jsonl", traces: .tool).json),
            "reward": keys(defaults["reward"]),
            "output": keys(defaults["output"]),
            "lora": keys(LoRAConfig().json),
            "rejection": keys(PipelineConfig.stageDefaults(.rejectionSFT)["rejection"]),
            "environment": keys(EnvironmentConfig.defaults.json),
        ]
        for t in PipelineConfig.StageType.allCases { code["stage." + t.rawValue] = keys(PipelineConfig.stageDefaults(t)) }
        XCTAssertEqual(Set(documented.keys), Set(code.keys), "sections of docs/CONFIG.md")
        for (s, k) in code.sorted(by: { $0.key < $1.key }) {
            let d = documented[s] ?? []
            XCTAssertEqual(d.subtracting(k).sorted(), [], "docs/CONFIG.md \(s): documented but not read by the code")
            XCTAssertEqual(k.subtracting(d).sorted(), [], "docs/CONFIG.md \(s): read by the code but not documented")
        }
    }

    func testPassAtKAndMajority() {
        XCTAssertEqual(Evaluation.passAtK(n: 4, c: 1, k: 1), 0.25, accuracy: 1e-12)
        XCTAssertEqual(Evaluation.passAtK(n: 4, c: 1, k: 2), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Evaluation.passAtK(n: 5, c: 2, k: 3), 0.9, accuracy: 1e-12)   // 1 − C(3,3)/C(5,3)
        XCTAssertEqual(Evaluation.passAtK(n: 10, c: 0, k: 5), 0)
        XCTAssertEqual(Evaluation.passAtK(n: 10, c: 6, k: 5), 1)
        let answers = ["42", "41", "42.0", "$42$", "7"].compactMap { ParsedAnswer($0) }
        XCTAssertEqual(Evaluation.majority(answers)?.text, "42")
    }

    /// Sampled metrics judge as the accuracy reward does: an answer nested past the parser's limit
    /// is no verdict (its prompt is left out), never "wrong" — its value here is 2, the reference.
    func testSampledMetricsLeaveOutWhatTheRewardCannotJudge() {
        func completion(_ answer: String) -> Completion {
            Completion(text: "<think>x</think><answer>\(answer)</answer>", tokenIDs: [], logprobs: [], finishReason: .stop)
        }
        let deep = String(repeating: "\\frac{1}{", count: 13) + "2" + String(repeating: "}", count: 13)
        let ask = GRPOPrompt(messages: [.init(role: "user", content: "q")], reference: "2")
        let groups = [[completion("2"), completion("2")][...], [completion("2"), completion(deep)][...]]
        let m = Dictionary(Evaluation.sampledMetrics(groups, prompts: [ask, ask], passK: [2]), uniquingKeysWith: { $1 })
        // Only the first prompt is scored, both right (counting the deep one wrong gave 0.75).
        XCTAssertEqual(m["pass@1"]?.asDouble, 1)
        XCTAssertEqual(m["pass@2"]?.asDouble, 1)
        XCTAssertEqual(Answers.verdict(completion: groups[1][1].text, reference: "2", answer: nil).reason, "answer_too_deep")
    }
}
