import XCTest
import PonderJSON
@testable import PonderModel

final class GenerationTests: XCTestCase {
    /// A group of n decoded together equals n single requests with seeds seed+i.
    func testGroupedDecodeEqualsSeparateDecodes() throws {
        let model = try Fixtures.smol()
        var req = GenerateRequest(prompt: "Question: Tom has 3 apples and buys 5 more. How many apples?\nAnswer:")
        req.maxTokens = 24
        req.sampling.temperature = 0.9
        req.sampling.topP = 0.95
        req.seed = 1234
        // 6 rows: the decode matmul's 8-row block with a partial fill, attention blocks of 3.
        req.n = 6
        let group = try model.generate(req)
        XCTAssertEqual(group.completions.count, 6)
        for i in 0..<6 {
            var single = req
            single.n = 1
            single.seed = 1234 + UInt64(i)
            let one = try model.generate(single).completions[0]
            XCTAssertEqual(one.tokenIDs, group.completions[i].tokenIDs, "sequence \(i)")
            XCTAssertEqual(one.text, group.completions[i].text)
            for (a, b) in zip(one.logprobs, group.completions[i].logprobs) { XCTAssertEqual(a, b, accuracy: 1e-3) }
        }
        // Sampling with different seeds gives different completions (all identical would mean the seed is ignored).
        XCTAssertGreaterThan(Set(group.completions.map(\.tokenIDs)).count, 1)
    }

    /// Several prompts' groups decoded as one batch (GRPO's rollout) equal each group decoded on
    /// its own: every row attends to its own prompt's cache, whatever its neighbours.
    func testSeveralPromptsInOneBatchEqualSeparateGroups() throws {
        let model = try Fixtures.smol()
        let texts = ["Question: 3 + 5 = ?\nAnswer:", "Write the number seven in words, then count to four, slowly:",
                     "Q: Capital of France? A:"]
        let prompts = texts.map { model.tokenizer.encode($0, parseSpecial: false) }
        XCTAssertEqual(Set(prompts.map(\.count)).count, 3, "prompts of different lengths")
        var req = GenerateRequest()
        req.maxTokens = 20
        req.sampling.temperature = 0.9
        req.seed = 99
        req.n = 3
        req.stop = ["\n\n"]
        let batch = try model.generate(prompts: prompts, req)
        XCTAssertEqual(batch.completions.count, 9)
        XCTAssertEqual(batch.promptTokens, prompts.map(\.count).reduce(0, +))
        for (k, prompt) in prompts.enumerated() {
            var one = req
            one.seed = 99 + UInt64(k * 3)
            let group = try model.generate(prompts: [prompt], one)
            for j in 0..<3 {
                let a = group.completions[j], b = batch.completions[k * 3 + j]
                XCTAssertEqual(a.tokenIDs, b.tokenIDs, "prompt \(k) sequence \(j)")
                XCTAssertEqual(a.finishReason, b.finishReason)
                for (x, y) in zip(a.logprobs, b.logprobs) { XCTAssertEqual(x, y, accuracy: 1e-3) }
            }
        }
        XCTAssertGreaterThan(Set(batch.completions.map(\.tokenIDs)).count, 3)
    }

    func testSameSeedSameOutput() throws {
        let model = try Fixtures.smol()
        var req = GenerateRequest(prompt: "Once upon a time")
        req.maxTokens = 16
        req.seed = 7
        req.sampling.topK = 40
        req.sampling.minP = 0.05
        req.sampling.repetitionPenalty = 1.1
        let a = try model.generate(req), b = try model.generate(req)
        XCTAssertEqual(a.completions[0].tokenIDs, b.completions[0].tokenIDs)
    }

    func testLogprobsAreLogSoftmaxOfTheForwardPass() throws {
        let model = try Fixtures.smol()
        var req = GenerateRequest(prompt: "2 + 2 =")
        req.maxTokens = 4
        req.seed = 3
        let c = try model.generate(req).completions[0]
        let prompt = try model.promptTokens(req)
        let all = try model.forwardLogits(prompt + c.tokenIDs)
        let v = model.config.vocabSize
        for (k, tok) in c.tokenIDs.enumerated() {
            let row = Array(all[((prompt.count - 1 + k) * v)..<((prompt.count + k) * v)])
            let mx = Double(row.max()!)
            let lse = mx + log(row.reduce(0.0) { $0 + exp(Double($1) - mx) })
            XCTAssertEqual(Double(c.logprobs[k]), Double(row[Int(tok)]) - lse, accuracy: 2e-3)
        }
    }

    func testStopStringsEOSAndLength() throws {
        let model = try Fixtures.smol()
        var req = GenerateRequest(prompt: "The capital of France is")
        req.sampling.temperature = 0
        req.maxTokens = 40
        req.stop = ["\n"]
        let c = try model.generate(req).completions[0]
        XCTAssertEqual(c.finishReason, .stop)
        XCTAssertFalse(c.text.contains("\n"))
        XCTAssertTrue(c.text.contains("Paris"))

        req.stop = []
        req.maxTokens = 3
        let l = try model.generate(req).completions[0]
        XCTAssertEqual(l.finishReason, .length)
        XCTAssertEqual(l.tokenIDs.count, 3)

        var chat = GenerateRequest()
        chat.messages = [.init(role: "user", content: "Say hi.")]
        chat.sampling.temperature = 0
        chat.maxTokens = 64
        let e = try model.generate(chat).completions[0]
        XCTAssertEqual(e.finishReason, .eos)
        XCTAssertEqual(e.tokenIDs.last, model.tokenizer.eos)
        XCTAssertFalse(e.text.contains("<|im_end|>"))

        // min_tokens: the end token is not drawn before it; greedy then takes the runner-up,
        // whose log-probability (of the unfiltered model) is below the end token's.
        chat.minTokens = e.tokenIDs.count + 5
        let m = try model.generate(chat).completions[0]
        XCTAssertEqual(Array(m.tokenIDs.prefix(e.tokenIDs.count - 1)), Array(e.tokenIDs.dropLast()))
        XCTAssertGreaterThanOrEqual(m.tokenIDs.count, chat.minTokens)
        XCTAssertFalse(m.tokenIDs.prefix(chat.minTokens).contains { model.tokenizer.stopIds.contains($0) })
        XCTAssertLessThanOrEqual(m.logprobs[e.tokenIDs.count - 1], e.logprobs.last!)
        XCTAssertThrowsError(try GenerateRequest(json: try JSONValue.parse(#"{"prompt": "x", "max_tokens": 3, "min_tokens": 4}"#))) {
            XCTAssertTrue("\($0)".contains("min_tokens"), "\($0)")
        }
    }

    func testStreamingPiecesConcatenateToTheText() throws {
        let model = try Fixtures.smol()
        var req = GenerateRequest(prompt: "List three colors:")
        req.maxTokens = 20
        req.seed = 5
        req.n = 2
        req.stop = ["blue"]
        var pieces = ["", ""]
        let r = try model.generate(req) { seq, _, text in
            pieces[seq] += text
            return true
        }
        XCTAssertEqual(pieces, r.completions.map(\.text))
        // Cancelling from the callback stops generation with .cancelled.
        XCTAssertThrowsError(try model.generate(req) { _, _, _ in false }) { e in
            XCTAssertEqual((e as? PonderError)?.code, .cancelled)
        }
    }
}

import PonderBase
