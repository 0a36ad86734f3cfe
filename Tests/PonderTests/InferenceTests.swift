import Foundation
import PonderBase
import XCTest
@testable import PonderC
@testable import PonderInference
import PonderJSON
@testable import PonderModel
import PonderRewards
import PonderText

/// Inference strategies: voting and reranking as pure functions of hand-written completions,
/// then end to end on a tiny random model and on SmolLM2; budget forcing's rollback against a
/// from-scratch prefill of the same ids.
final class InferenceTests: XCTestCase {
    // MARK: - No model

    func candidates(_ texts: [String], _ lps: [Double]? = nil) -> [CandidateText] {
        texts.enumerated().map { CandidateText(text: $1, meanLogprob: lps?[$0] ?? -1) }
    }

    func testVoteTakesTheMajorityOfTheAccuracyRewardsAnswers() {
        // Written five ways, 53 is the majority; 54 twice; one has no answer.
        let texts = ["<think>3 + 50 = 53</think><answer>53</answer>", "<answer>53.0</answer>", "so 53 it is. #### 54",
                     "The total is \\boxed{53}", "Therefore the answer is 54.", "I cannot tell.", "<answer>$53$</answer>"]
        let c = candidates(texts)
        let scored = Selection.score(c)
        let v = Selection.vote(c, scored)
        let g = try! XCTUnwrap(v.group)
        XCTAssertEqual(scored.groups[g].answer.text, "53")
        XCTAssertEqual(scored.groups[g].members, [0, 1, 3, 6])
        XCTAssertEqual(Selection.votes(scored).serialized(), #"{"53":4,"54":2}"#)
        XCTAssertNil(scored.answers[5])
        // The winner is right by the accuracy reward itself.
        let acc = RewardSet(config: RewardConfig()).score(RewardInput(completion: texts[v.candidate], reference: "#### 53"))
        XCTAssertEqual(acc["accuracy"]?.value, 1)
        // The same extraction as the accuracy reward, candidate by candidate.
        for (t, a) in zip(texts, scored.answers) { XCTAssertEqual(Answers.finalAnswer(in: t)?.text, a?.text) }
    }

    func testVoteTiesGoToTheHigherMeanLogprob() {
        let texts = ["<answer>1</answer>", "<answer>2</answer>", "<answer>2</answer>", "<answer>1</answer>"]
        for (lps, want) in [([-1.0, -0.2, -0.4, -1.2], "2"), ([-0.1, -0.9, -0.8, -0.3], "1")] {
            let c = candidates(texts, lps)
            let s = Selection.score(c)
            let v = Selection.vote(c, s)
            XCTAssertEqual(s.groups[v.group!].answer.text, want, "\(lps)")
            // Within the group, the most likely sample is the one reported.
            XCTAssertEqual(v.candidate, want == "2" ? 1 : 0)
        }
        // Nobody answers: no group, the most likely sample.
        let none = candidates(["no", "nothing", "none"], [-2, -0.5, -1])
        let s = Selection.score(none)
        XCTAssertNil(Selection.vote(none, s).group)
        XCTAssertEqual(Selection.vote(none, s).candidate, 1)
    }

    func testBestOfNScoresWithoutAReference() {
        let good = "<think>7 * 6 = 42. Let me verify: 42 / 6 = 7.</think><answer>42</answer>"
        let texts = [good, "<answer>41</answer>", "<think>7 * 6 = 42</think><answer>42</answer>", "42"]
        let c = candidates(texts, [-0.5, -0.1, -0.9, -0.05])
        let s = Selection.score(c)
        func score(_ i: Int, _ name: String) -> Double? { s.scores[i].first { $0.name == name }?.value }
        XCTAssertEqual(s.scores[0].map(\.name), ["format", "reflection", "agreement", "mean_logprob"])
        XCTAssertEqual(score(0, "format"), 1)
        XCTAssertEqual(score(3, "format"), 0)
        // Reflection is paid without a correctness gate (there is no reference).
        XCTAssertGreaterThan(score(0, "reflection")!, 0)
        XCTAssertEqual(score(2, "reflection"), 0)
        // Agreement: the share of the other samples with the same answer.
        XCTAssertEqual(score(0, "agreement")!, 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(score(1, "agreement"), 0)
        XCTAssertEqual(s.totals[0]!, 1 + 0.5 * score(0, "reflection")! + 2 * 2.0 / 3 - 0.5, accuracy: 1e-12)
        XCTAssertEqual(Selection.best(c, s), 0)
        // With only the log-probability weighted, the likeliest wins.
        let lpOnly = Selection.score(c, weights: [("format", 0), ("reflection", 0), ("agreement", 0), ("mean_logprob", 1)])
        XCTAssertEqual(Selection.best(c, lpOnly), 3)
        XCTAssertEqual(lpOnly.scores[0][0].value, 1, "a built-in weighted 0 is still reported")
        // A custom scorer replaces the built-in of its name and adds its own; NaN is no score.
        let custom = [Scorer(name: "format", weight: 10) { $0.completion.contains("41") ? 1 : 0 },
                      Scorer(name: "short", weight: 1) { $0.completion.count < 3 ? .nan : 0 }]
        let cs = Selection.score(c, custom: custom)
        XCTAssertEqual(cs.scores[1].map(\.name), ["format", "reflection", "agreement", "mean_logprob", "short"])
        XCTAssertEqual(Selection.best(c, cs), 1)
        XCTAssertNil(cs.scores[3].first { $0.name == "short" }!.value)
        // One sample: agreement has no score.
        XCTAssertNil(Selection.score(Array(c.prefix(1))).scores[0][2].value)
    }

    func request(_ json: String) throws -> InferRequest { try InferRequest(json: JSONValue.parse(json)) }

    func testBadRequestsGiveNamedErrors() throws {
        let cases: [(String, String)] = [
            (#"{"prompt": "x", "strategy": "majority"}"#, #"strategy: expected one of single, vote, best_of_n, reflect, got "majority""#),
            (#"{"prompt": "x", "strategy": 3}"#, "strategy: expected a string"),
            (#"{"prompt": "x", "strategy": "vote", "n": 0}"#, "n: expected an integer in [1, 1024], got 0"),
            (#"{"prompt": "x", "strategy": "best_of_n", "n": -4}"#, "n: expected an integer in [1, 1024], got -4"),
            (#"{"prompt": "x", "n": 3}"#, #"n: strategy "single" draws one sample"#),
            (#"{"prompt": "x", "strategy": "reflect", "min_thinking_tokens": 50, "max_thinking_tokens": 20}"#,
             "min_thinking_tokens: must not exceed max_thinking_tokens (20), got 50"),
            (#"{"prompt": "x", "strategy": "reflect", "cues": []}"#, "cues: empty list"),
            (#"{"prompt": "x", "strategy": "reflect", "cues": ["Wait,", ""]}"#, "cues[1]: empty cue"),
            (#"{"prompt": "x", "strategy": "reflect", "max_reflections": -1}"#, "max_reflections: expected an integer in [0, 10000]"),
            (#"{"prompt": "x", "strategy": "reflect", "max_thinking_tokens": 0}"#, "max_thinking_tokens: expected an integer in [1, 1048576]"),
            (#"{"prompt": "x", "strategy": "reflect", "think_end": ""}"#, "think_end: empty delimiter"),
            (#"{"prompt": "x", "strategy": "vote", "cues": ["Hmm"]}"#, #"cues: only strategy "reflect" takes it"#),
            (#"{"prompt": "x", "scorer_weights": {"format": 1, "bogus": 2}}"#, "scorer_weights.bogus: unknown key"),
            (#"{"prompt": "x", "scorer_weights": {"format": "high"}}"#, "scorer_weights.format: expected a finite number"),
            (#"{"prompt": "x", "stratgy": "vote"}"#, "stratgy: unknown key"),
            (#"{"strategy": "vote"}"#, #"needs "prompt""#),
        ]
        for (json, want) in cases {
            XCTAssertThrowsError(try request(json), json) { e in
                let p = e as? PonderError
                XCTAssertEqual(p?.code, .invalidArgument, json)
                XCTAssertTrue(p?.message.contains(want) ?? false, "\(json): \(p?.message ?? "\(e)")")
            }
        }
        // Defaults, each written once in InferRequest.
        let v = try request(#"{"prompt": "x", "strategy": "vote"}"#)
        XCTAssertEqual(v.generation.n, InferRequest.defaultSamples)
        let r = try request(#"{"prompt": "x", "strategy": "reflect", "scorer_weights": {"agreement": 0}}"#)
        XCTAssertEqual(r.generation.n, 1)
        XCTAssertEqual(r.reflect, ReflectOptions())
        XCTAssertEqual(r.scorerWeights.map(\.weight), [1, 0.5, 0, 1])
    }

    // MARK: - Tiny random model

    /// A random byte-level model. std 0.3 samples varied bytes (numbers to vote on); with 0.15
    /// greedy decoding repeats itself enough that a delimiter taken from its text comes back
    /// after a cue. Either way the greedy margins (~1e-2) dwarf prefill/decode rounding (~1e-6).
    func tinyModel(std: Float = 0.3) throws -> LlamaModel {
        let c = LlamaConfig(vocabSize: 259, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKVHeads: 2,
                            maxPositions: 512)
        return try LlamaModel.random(config: c, tokenizer: Tokenizer.byteLevel(), seed: 11, std: std)
    }

    func testVoteEndToEndIsOneGroupOfTheGeneratedSamples() throws {
        let model = try tinyModel()
        var req = try request(#"{"prompt": "What is 12 + 30?", "strategy": "vote", "n": 12, "seed": 5, "max_tokens": 24}"#)
        let r = try model.infer(req)
        // The candidates are exactly one grouped generate() of the same request.
        req.generation.n = 12
        let gen = try model.generate(req.generation)
        XCTAssertEqual(r.candidates.map(\.completion.tokenIDs), gen.completions.map(\.tokenIDs))
        // The majority, recounted here from the accuracy reward's extraction.
        var counts: [(ParsedAnswer, Int)] = []
        for c in gen.completions {
            guard let a = Answers.finalAnswer(in: c.text) else { continue }
            if let k = counts.firstIndex(where: { $0.0.equivalent(to: a) }) { counts[k].1 += 1 } else { counts.append((a, 1)) }
        }
        XCTAssertFalse(counts.isEmpty, "random bytes should hold some numbers")
        let top = counts.map(\.1).max()!
        let json = r.json
        XCTAssertTrue(counts.filter { $0.1 == top }.contains { $0.0.text == json["answer"]?.asString }, "\(counts) \(json["answer"]!)")
        guard case let .object(votes)? = json["votes"] else { return XCTFail("no votes") }
        XCTAssertEqual(votes.map { $0.1.asInt! }.reduce(0, +), Int64(counts.reduce(0) { $0 + $1.1 }))
        XCTAssertEqual(json["candidates"]?.asArray?.count, 12)
        XCTAssertEqual(json["tokens_spent"]?.asInt, Int64(gen.completions.reduce(0) { $0 + $1.tokenIDs.count }))
    }

    /// Greedy reflect with a delimiter the tiny model writes: cues only within budget and never
    /// after the answer, and every run of sampled tokens (rolled-back delimiters included) equals
    /// the greedy decode of a from-scratch prefill of the ids before it (prompt, kept thinking,
    /// cue).
    func testReflectRollsBackAndContinuesAsAFromScratchPrefill() throws {
        let model = try tinyModel(std: 0.15)
        let prompt = "Q: 17 + 25?\nA:"
        var plain = GenerateRequest(prompt: prompt)
        plain.sampling.temperature = 0
        plain.maxTokens = 80
        let greedy = try model.generate(plain).completions[0]
        let promptIDs = try model.promptTokens(plain)
        /// The result and every token the callback reported (sampled, rolled back, forced).
        func run(_ delimiter: String, _ maxReflections: Int, _ maxThinking: Int?) throws -> (InferCandidate, [Int32]) {
            let json = """
            {"prompt": \(JSONValue.string(prompt).serialized()), "strategy": "reflect", "temperature": 0, "max_tokens": 80,
             "think_end": \(JSONValue.string(delimiter).serialized()), "cues": ["Wait,", " Hmm"], "force_answer": "=>",
             "max_reflections": \(maxReflections)\(maxThinking.map { ", \"max_thinking_tokens\": \($0)" } ?? "")}
            """
            var stream: [Int32] = []
            let r = try model.infer(try request(json)) { _, tok, _ in
                stream.append(tok)
                return true
            }
            return (r.candidates[0], stream)
        }
        // The delimiter: something the model writes again after two cues (a random model does
        // not plan this). Pairs of ASCII bytes of the greedy text are tried first (a delimiter of
        // several tokens), then single ASCII bytes.
        let b = Array(greedy.text.utf8)
        let pairs = (0..<(b.count - 1)).filter { b[$0] < 0x80 && b[$0 + 1] < 0x80 }.map { Array(b[$0...($0 + 1)]) }
        var chosen: String?
        for d in pairs + (1..<128).map({ [UInt8($0)] }) {
            let text = String(decoding: d, as: UTF8.self)
            let c = try run(text, 2, nil).0
            if c.reflections.count == 2, c.forcedAnswer != nil {
                chosen = text
                break
            }
        }
        let delimiter = try XCTUnwrap(chosen, "no delimiter in \(greedy.tokenIDs)")
        // The second end of thinking with room for only the first cue under max_thinking_tokens.
        let second = try run(delimiter, 2, nil).0.reflections[1].atToken
        var checkedSpans = 0
        for (maxReflections, maxThinking, expected) in [(2, nil, 2), (1, nil, 1), (6, second + 1, 1), (0, nil, 0)] as [(Int, Int?, Int)] {
            let (c, stream) = try run(delimiter, maxReflections, maxThinking)
            let ids = c.completion.tokenIDs
            let tag = "delimiter \(Array(delimiter.utf8)), max_reflections \(maxReflections), max_thinking \(maxThinking.map(String.init) ?? "-")"
            XCTAssertEqual(c.reflections.count, expected, tag)
            let fa = try XCTUnwrap(c.forcedAnswer, tag)
            for (k, rf) in c.reflections.enumerated() {
                XCTAssertEqual(rf.cue, ["Wait,", " Hmm"][k % 2])
                XCTAssertLessThan(rf.atToken, fa.atToken, "no cue after the answer (\(tag))")
                if let mx = maxThinking { XCTAssertLessThan(rf.atToken + rf.forcedTokens, mx, tag) }
                XCTAssertEqual(rf.rolledBack, delimiter.utf8.count, "the delimiter's tokens (\(tag))")
                let forced = model.tokenizer.decode(Array(ids[rf.atToken..<(rf.atToken + rf.forcedTokens)]))
                XCTAssertEqual(forced.trimmingCharacters(in: .whitespaces), rf.cue.trimmingCharacters(in: .whitespaces), tag)
            }
            if maxThinking == nil { XCTAssertEqual(fa.reason, "reflections_spent", tag) }
            if let mx = maxThinking { XCTAssertLessThanOrEqual(fa.atToken, mx, tag) }
            // The kept thinking never contains the delimiter: each one was rolled back.
            XCTAssertFalse(model.tokenizer.decode(Array(ids[..<fa.atToken])).contains(delimiter), tag)
            XCTAssertEqual(Array(ids[fa.atToken..<min(ids.count, fa.atToken + fa.forcedTokens)]),
                           Array(model.tokenizer.encode("=>", parseSpecial: true).prefix(ids.count - fa.atToken)), tag)
            // The runs of sampled tokens: from the start and after each forced span, to the next
            // rollback point, plus the tokens rolled back there. In the stream, a run begins after
            // all tokens rolled back before it.
            let events = c.reflections.map { ($0.atToken, $0.forcedTokens, $0.rolledBack) } + [(fa.atToken, fa.forcedTokens, fa.rolledBack)]
            var start = 0, shift = 0
            for k in 0...events.count {
                let end = k < events.count ? events[k].0 : ids.count
                let rolled = k < events.count ? events[k].2 : 0
                let sampled = Array(ids[start..<end]) + Array(stream[(shift + end)..<(shift + end + rolled)])
                XCTAssertEqual(Array(stream[(shift + start)..<(shift + end)]), Array(ids[start..<end]), "stream \(k) (\(tag))")
                if !sampled.isEmpty {
                    var scratch = GenerateRequest()
                    scratch.sampling.temperature = 0
                    scratch.maxTokens = sampled.count
                    let ref = try model.generate(prompts: [promptIDs + Array(ids[..<start])], scratch).completions[0]
                    XCTAssertEqual(ref.tokenIDs, sampled, "run \(k) from token \(start) (\(tag))")
                    checkedSpans += 1
                }
                if k < events.count {
                    shift += rolled
                    start = events[k].0 + events[k].1
                }
            }
            XCTAssertEqual(stream.count, ids.count + shift, tag)
        }
        XCTAssertGreaterThanOrEqual(checkedSpans, 8)
    }

    func testReflectBudgetsAndStreaming() throws {
        let model = try tinyModel()
        // A delimiter the model never writes: thinking runs into max_thinking_tokens, where the
        // answer is forced; no cue is inserted.
        let base = #"{"prompt": "Q: 2 * 9?", "strategy": "reflect", "temperature": 0.8, "seed": 3, "max_tokens": 60, "think_end": "\u0001\u0002", "force_answer": "<answer>""#
        let r = try model.infer(try request(base + #", "max_thinking_tokens": 30}"#))
        let c = r.candidates[0]
        XCTAssertTrue(c.reflections.isEmpty)
        XCTAssertEqual(c.forcedAnswer?.reason, "max_thinking_tokens")
        XCTAssertEqual(c.forcedAnswer?.atToken, 30)
        XCTAssertTrue(c.completion.text.contains("<answer>"))
        // Streaming: each sequence's pieces concatenate to its final text, with n > 1 too.
        for n in [1, 3] {
            var pieces = [String](repeating: "", count: n)
            let s = try model.infer(try request(base + #", "n": \#(n), "max_thinking_tokens": 20}"#)) { seq, _, text in
                pieces[seq] += text
                return true
            }
            XCTAssertEqual(pieces, s.candidates.map(\.completion.text))
            XCTAssertEqual(s.json["votes"] != nil, n > 1)
        }
        XCTAssertThrowsError(try model.infer(try request(base + "}")) { _, _, _ in false }) { e in
            XCTAssertEqual((e as? PonderError)?.code, .cancelled)
        }
    }

    // MARK: - C ABI

    func testInferThroughTheCABIWithACustomScorer() throws {
        let model = try tinyModel()
        let handle = models.insert(model)
        defer { models.remove(handle) }
        // Scores a sample by its length: the longest wins best_of_n when it is the only scorer.
        let fn: RewardFnC = { _, completion, reference, _ in reference == nil ? Double(strlen(completion!)) : .nan }
        var out: UnsafeMutablePointer<CChar>? = nil
        let name = strdup("len")!
        defer { free(name) }
        // {name, fn, weight, user}: four 8-byte fields, as ponder.h declares ponder_scorer.
        let scorers = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        defer { scorers.deallocate() }
        scorers.storeBytes(of: UnsafePointer(name), as: UnsafePointer<CChar>.self)
        scorers.storeBytes(of: fn, toByteOffset: 8, as: RewardFnC.self)
        scorers.storeBytes(of: 1.0, toByteOffset: 16, as: Double.self)
        scorers.storeBytes(of: nil, toByteOffset: 24, as: UnsafeMutableRawPointer?.self)
        let req = #"{"prompt": "x", "strategy": "best_of_n", "n": 5, "seed": 1, "max_tokens": 16, "stop": ["\n"], "scorer_weights": {"format": 0, "reflection": 0, "agreement": 0, "mean_logprob": 0}}"#
        XCTAssertEqual(req.withCString { ponder_infer_ex(handle, $0, scorers, 1, &out) }, 0, String(cString: ponder_last_error()))
        let json = try JSONValue.parse(String(cString: out!))
        free(out)
        let cands = try XCTUnwrap(json["candidates"]?.asArray)
        let lens = cands.map { $0["scores"]!["len"]!.asDouble! }
        XCTAssertEqual(lens, cands.map { Double($0["text"]!.asString!.utf8.count) })
        XCTAssertEqual(json["selected"]?.asInt, Int64(lens.firstIndex(of: lens.max()!)!))
        // Bad scorer arrays are errors, not crashes.
        XCTAssertEqual(req.withCString { ponder_infer_ex(handle, $0, nil, 1, &out) }, 9)
        scorers.storeBytes(of: .nan, toByteOffset: 16, as: Double.self)
        XCTAssertEqual(req.withCString { ponder_infer_ex(handle, $0, scorers, 1, &out) }, 1)
        XCTAssertTrue(String(cString: ponder_last_error()).contains("scorers[0].weight"))
        XCTAssertEqual(#"{"prompt": "x", "strategy": "nope"}"#.withCString { ponder_infer(handle, $0, &out) }, 1)
        XCTAssertTrue(String(cString: ponder_last_error()).contains("strategy:"))
    }

    // MARK: - SmolLM2

    func testSmolVoteEndToEnd() throws {
        let model = try Fixtures.smol()
        let q = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"
        let req = try request("""
        {"prompt": \(JSONValue.string(q).serialized()), "chat": true, "strategy": "vote", "n": 8, "seed": 7,
         "temperature": 0.7, "max_tokens": 160}
        """)
        let r = try model.infer(req)
        XCTAssertEqual(r.candidates.count, 8)
        let answers = r.candidates.map { Answers.finalAnswer(in: $0.completion.text) }
        let groups = Answers.groups(answers)
        let top = groups.map(\.members.count).max() ?? 0
        XCTAssertGreaterThan(top, 0)
        XCTAssertTrue(groups.filter { $0.members.count == top }.contains { $0.answer.text == r.answer?.text })
        // Prompt prefilled once for the group: its tokens are counted once.
        XCTAssertEqual(r.promptTokens, try model.promptTokens(req.generation).count)
    }

    /// SmolLM2-Instruct has no </think>: its end of turn is rolled back, "Wait," forced, and the
    /// continuation is the greedy decode of the same ids prefilled from scratch.
    func testSmolReflectAtTheEndOfTurn() throws {
        let model = try Fixtures.smol()
        let req = try request(#"{"prompt": "What is 15 + 27? Answer briefly.", "chat": true, "strategy": "reflect", "temperature": 0, "max_tokens": 120, "max_reflections": 1}"#)
        let r = try model.infer(req)
        let c = r.candidates[0]
        XCTAssertEqual(c.reflections.count, 1)
        let rf = c.reflections[0]
        XCTAssertEqual(rf.endedBy, "end_of_turn")
        XCTAssertEqual(rf.rolledBack, 1, "only the end token is rolled back")
        XCTAssertNil(c.forcedAnswer, "an end of turn stands after the last cue")
        let ids = c.completion.tokenIDs
        XCTAssertFalse(ids[..<rf.atToken].contains(model.tokenizer.eos!))
        XCTAssertEqual(Array(ids[rf.atToken..<(rf.atToken + rf.forcedTokens)]), model.tokenizer.encode(" Wait,", parseSpecial: false))
        let start = rf.atToken + rf.forcedTokens
        var scratch = GenerateRequest()
        scratch.sampling.temperature = 0
        scratch.maxTokens = ids.count - start
        let ref = try model.generate(prompts: [try model.promptTokens(req.generation) + Array(ids[..<start])], scratch).completions[0]
        XCTAssertEqual(ref.tokenIDs, Array(ids[start...]))
        let json = r.json
        XCTAssertEqual(json["reflections"]?.asArray?.count, 1)
        guard case .bool? = json["reflections"]?.asArray?[0]["changed"] else { return XCTFail("no \"changed\"") }
    }
}
