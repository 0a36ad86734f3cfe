import Foundation
import XCTest
@testable import PonderModel
@testable import PonderTrain

/// Ponder's GRPO advantages, loss and dL/d log p against TRL's own GRPOTrainer code, run live
/// by scripts/trl_grpo_oracle.py on the same numbers: every loss type × both importance-sampling
/// levels × with and without the KL term, in two or three micro-batches, with ragged masks,
/// missing rewards and ratios far enough from 1 that both clip bounds trigger.
final class GRPOLossTests: XCTestCase {
    struct Case {
        var name: String
        var params: GRPOLossParams
        var microBatches: Int
        var groupSize: Int
        var scale: RewardScaling
        var aggregation: RewardAggregation
        var weights: [Double]
        var rewards: [[Double]]  // NaN: no score
        var seqs: [GRPOSequence]
        var width: Int  // T, the padded length sent to TRL
    }

    static func makeCases() -> [Case] {
        var rng = RandomGenerator(seed: 2026)
        func u(_ a: Double, _ b: Double) -> Double { a + (b - a) * rng.uniform() }
        var cases: [Case] = []
        var k = 0
        for lossType in GRPOLossType.allCases {
            for level in ImportanceSamplingLevel.allCases {
                for beta in [0.0, 0.04] {
                    let g = [2, 3, 4][k % 3], mb = [2, 3][k % 2]
                    let b = g * mb * (k % 4 == 0 ? 2 : 1)
                    let t = 3 + k % 7
                    let nRewards = 1 + k % 3
                    var p = GRPOLossParams()
                    p.lossType = lossType
                    p.importanceSamplingLevel = level
                    p.beta = beta
                    p.epsilonLow = 0.2
                    p.epsilonHigh = lossType == .cispo ? 1.2 : (k % 2 == 0 ? 0.28 : 0.2)
                    p.maxCompletionLength = t + 2
                    p.useBiasCorrectionKL = (k / 2) % 2 == 0
                    var seqs: [GRPOSequence] = []
                    var rewards: [[Double]] = []
                    for i in 0..<b {
                        let len = i == 1 ? 0 : i == 0 ? t : 1 + Int(rng.next() % UInt64(t))
                        let logp = (0..<t).map { _ in Float(u(-3, -0.05)) }
                        // Old and reference policies near enough to be plausible, far enough that
                        // ratios leave [1 − ε, 1 + ε] both ways.
                        let old = k % 5 == 4 ? nil : logp.map { $0 + Float(u(-0.45, 0.45)) }
                        let ref = beta == 0 ? nil : logp.map { $0 + Float(u(-0.3, 0.3)) }
                        let adv = (i % g == 0 && k % 2 == 0) ? 0 : u(-1.5, 1.5)
                        seqs.append(GRPOSequence(logp: logp, oldLogp: old, refLogp: ref, mask: (0..<t).map { $0 < len }, advantage: adv))
                        // Group 0 has equal rewards; row 2 none at all; a few single gaps.
                        rewards.append((0..<nRewards).map { j in
                            if i < g { return 1.0 }
                            if i == 2 || (i + j) % 7 == 3 { return .nan }
                            return (u(0, 1) * 4).rounded() / 4
                        })
                    }
                    cases.append(Case(name: "\(lossType.rawValue)-\(level.rawValue)-beta\(beta)", params: p, microBatches: mb,
                                      groupSize: g, scale: RewardScaling.allCases[k % 3],
                                      aggregation: RewardAggregation.allCases[(k / 3) % 2],
                                      weights: (0..<nRewards).map { [1.0, 0.5, 2.0][$0] }, rewards: rewards, seqs: seqs, width: t))
                    k += 1
                }
            }
        }
        return cases
    }

    func caseJSON(_ c: Case) -> [String: Any] {
        func pad(_ x: [Float]?) -> Any { x.map { $0.map { Double($0) } } ?? NSNull() }
        let old = c.seqs.allSatisfy({ $0.oldLogp != nil }) ? c.seqs.map { pad($0.oldLogp) } as Any : NSNull()
        let ref = c.params.beta != 0 ? c.seqs.map { pad($0.refLogp) } as Any : NSNull()
        return [
            "name": c.name, "loss_type": c.params.lossType.rawValue,
            "importance_sampling_level": c.params.importanceSamplingLevel.rawValue, "beta": c.params.beta,
            "epsilon": c.params.epsilonLow, "epsilon_high": c.params.epsilonHigh,
            "max_completion_length": c.params.maxCompletionLength, "micro_batches": c.microBatches,
            "use_bias_correction_kl": c.params.useBiasCorrectionKL,
            "num_generations": c.groupSize, "scale_rewards": c.scale.rawValue,
            "multi_objective_aggregation": c.aggregation.rawValue, "reward_weights": c.weights,
            "rewards_per_func": c.rewards.map { $0.map { $0.isNaN ? NSNull() as Any : $0 as Any } },
            "advantages": c.seqs.map(\.advantage), "logps": c.seqs.map { pad($0.logp) },
            "old_logps": old, "ref_logps": ref, "entropies": NSNull(),
            "mask": c.seqs.map { $0.mask.map { $0 ? 1 : 0 } },
        ]
    }

    func runOracle(_ cases: [Case]) throws -> [[String: Any]] {
        let available = (try? Process.run(URL(fileURLWithPath: "/usr/bin/env"), arguments: ["python3", "-c", "import trl"]))
        available?.waitUntilExit()
        guard available?.terminationStatus == 0 else {
            let env = ProcessInfo.processInfo.environment
            if env["PONDER_REQUIRE_ORACLES"] == "1" || env["CI"] == "true" { XCTFail("TRL (the GRPO oracle) is not installed") }
            throw XCTSkip("TRL is not installed (pip install trl==1.16.0): the GRPO oracle is TRL's own code")
        }
        let input = try JSONSerialization.data(withJSONObject: ["cases": cases.map(caseJSON)])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", Fixtures.repo.appendingPathComponent("scripts/trl_grpo_oracle.py").path]
        p.currentDirectoryURL = Fixtures.repo
        let stdin = Pipe(), stdout = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        try p.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "the oracle failed")
        let json = try JSONSerialization.jsonObject(with: out) as! [String: Any]
        return json["cases"] as! [[String: Any]]
    }

    func num(_ x: Any?) -> Double { (x as? NSNumber)?.doubleValue ?? .nan }

    func close(_ a: Double, _ b: Double, _ tol: Double) -> Bool {
        (a.isNaN && b.isNaN) || abs(a - b) <= tol * max(1, abs(b))
    }

    func testAdvantagesLossAndGradientEqualTRL() throws {
        let cases = GRPOLossTests.makeCases()
        XCTAssertEqual(cases.count, 20)
        let trl = try runOracle(cases)
        var clippedLow = 0, clippedHigh = 0
        for (c, t) in zip(cases, trl) {
            XCTAssertEqual(t["name"] as? String, c.name)
            // Advantages (TRL computes them in float32).
            let a = try groupAdvantages(rewards: c.rewards, weights: c.weights, names: (0..<c.weights.count).map { "reward_\($0)" },
                                        groupSize: c.groupSize, scale: c.scale, aggregation: c.aggregation)
            let ta = (t["advantages"] as! [Any]).map(num)
            for (i, (x, y)) in zip(a.advantages, ta).enumerated() {
                XCTAssertTrue(close(x, y, 1e-5), "\(c.name): advantage \(i): \(x) vs TRL \(y)")
            }
            XCTAssertEqual(a.isStdZero, (t["is_std_zero"] as! [Bool]), c.name)
            let tm = t["reward_metrics"] as! [String: Any]
            for (key, value) in a.metrics {
                XCTAssertTrue(close(value, num(tm[key]), 1e-5), "\(c.name): \(key) \(value) vs TRL \(num(tm[key]))")
            }
            // Loss and dL/dlogp per micro-batch (float64 on both sides).
            let stepTokens = c.seqs.reduce(0) { $0 + $1.mask.filter { $0 }.count }
            let size = c.seqs.count / c.microBatches
            let tmb = t["micro_batches"] as! [[String: Any]]
            let tgrad = t["grad"] as! [[Any]]
            XCTAssertEqual(tmb.count, c.microBatches)
            for m in 0..<c.microBatches {
                let part = Array(c.seqs[(m * size)..<((m + 1) * size)])
                let r = try grpoMicroBatchLoss(part, params: c.params, microBatches: c.microBatches, stepTokens: stepTokens)
                XCTAssertTrue(close(r.loss, num(tmb[m]["loss"]), 1e-6), "\(c.name) micro-batch \(m): loss \(r.loss) vs TRL \(num(tmb[m]["loss"]))")
                for (j, g) in r.dLogp.enumerated() {
                    let want = tgrad[m * size + j].map(num)
                    for (x, y) in zip(g, want) {
                        XCTAssertEqual(Double(x), y, accuracy: 1e-6 * max(1, abs(y)), "\(c.name): dL/dlogp of sequence \(m * size + j)")
                    }
                }
                let metrics = tmb[m]["metrics"] as! [String: Any]
                for (key, value) in r.metrics where key != "entropy" {
                    XCTAssertTrue(close(value, num(metrics[key]), 1e-5), "\(c.name) micro-batch \(m): \(key) \(value) vs TRL \(num(metrics[key]))")
                    if key == "clip_ratio/low_mean", value > 0 { clippedLow += 1 }
                    if key == "clip_ratio/high_mean", value > 0 { clippedHigh += 1 }
                }
            }
        }
        // The cases exercise both clip bounds, so the clipped branches are compared too.
        XCTAssertGreaterThan(clippedLow, 3)
        XCTAssertGreaterThan(clippedHigh, 3)
    }

    /// With one update per rollout the old policy is the detached current one: every ratio is
    /// exactly 1, and the loss's gradient is −A/|o| per token (plus the KL term's).
    func testOnPolicyRatioIsOne() throws {
        let s = GRPOSequence(logp: [-1, -2, -0.5], mask: [true, true, false], advantage: 0.7)
        var p = GRPOLossParams()
        p.beta = 0
        let r = try grpoMicroBatchLoss([s], params: p, microBatches: 1, stepTokens: 2)
        XCTAssertEqual(r.loss, -0.7, accuracy: 1e-12)
        XCTAssertEqual(r.dLogp[0], [-0.35, -0.35, 0])
    }
}
