import XCTest
@testable import PonderModel

/// Logits and greedy tokens against transformers on the real SmolLM2 GGUF (fixtures from
/// scripts/make_fixtures.py: transformers dequantizes the same file and runs fp32).
final class ModelParityTests: XCTestCase {
    func testLastPositionLogitsMatchTransformers() throws {
        let model = try Fixtures.smol()
        let cases = try Fixtures.json("smollm2_reference.json") as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(cases.count, 3)
        for c in cases {
            let name = c["name"] as! String
            let ids = (c["ids"] as! [NSNumber]).map { $0.int32Value }
            XCTAssertEqual(model.tokenizer.encode(c["text"] as! String), ids, "\(name): tokenization")
            let want = try Fixtures.floats(c["logits_file"] as! String)
            let all = try model.forwardLogits(ids)
            let v = model.config.vocabSize
            let got = Array(all[((ids.count - 1) * v)...])
            XCTAssertEqual(got.count, want.count)
            let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
            print("\(name): max |Δlogit| = \(maxDiff)")
            XCTAssertLessThan(maxDiff, 1e-3, name)
        }
    }

    /// 32 greedy tokens equal the reference's; a step whose reference top-2 logits are within
    /// 0.05 may legitimately part ways, and comparison stops there.
    func testGreedyContinuationMatchesTransformers() throws {
        let model = try Fixtures.smol()
        let cases = try Fixtures.json("smollm2_reference.json") as! [[String: Any]]
        for c in cases {
            let name = c["name"] as! String
            let want = (c["greedy_ids"] as! [NSNumber]).map { $0.int32Value }
            let gaps = (c["greedy_top2_gap"] as! [NSNumber]).map { $0.doubleValue }
            var req = GenerateRequest(prompt: c["text"] as? String)
            req.maxTokens = want.count
            req.sampling.temperature = 0
            // The reference does not stop at EOS; compare the prefix up to where we stop.
            let got = try model.generate(req).completions[0].tokenIDs
            var compared = 0
            for i in 0..<min(got.count, want.count) {
                if got[i] != want[i] {
                    XCTAssertLessThan(gaps[i], 0.05, "\(name): token \(i) differs (\(got[i]) vs \(want[i])) at a clear step")
                    break
                }
                compared += 1
                if gaps[i] < 0.05 { break }
            }
            if compared == got.count { XCTAssertTrue(got.count == want.count || model.tokenizer.stopIds.contains(got.last!), name) }
            print("\(name): \(compared) greedy tokens identical")
        }
    }
}
