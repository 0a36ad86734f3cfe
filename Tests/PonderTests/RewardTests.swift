import Foundation
import XCTest
@testable import PonderC
import PonderJSON
@testable import PonderRewards

/// The rewards of issue 8, rule by rule. The math-verify and paper-code oracles run in
/// tests/python (test_rewards_oracle.py, test_rewards_paper.py).
final class RewardTests: XCTestCase {
    func score(_ completion: String, _ reference: String? = nil, _ options: String = "{}") throws -> ScoredCompletion {
        let cfg = try RewardConfig(json: JSONValue.parse(options))
        return RewardSet(config: cfg).score(RewardInput(completion: completion, reference: reference))
    }

    func value(_ completion: String, _ reference: String? = nil, _ name: String, _ options: String = "{}") throws -> Double? {
        try score(completion, reference, options)[name]?.value
    }

    // MARK: accuracy

    func testFinalAnswerIsFoundInOrder() {
        XCTAssertEqual(Answers.finalAnswerText(in: "I think 5. <answer> 7 </answer> or 9"), "7")
        XCTAssertEqual(Answers.finalAnswerText(in: "<answer>a</answer> <answer>\\boxed{8}</answer>"), "8")
        XCTAssertEqual(Answers.finalAnswerText(in: "so \\boxed{1} then \\boxed{\\frac{1}{2}} at last"), "\\frac{1}{2}")
        XCTAssertEqual(Answers.finalAnswerText(in: "48/2 = 24\n#### 1,234\n"), "1,234")
        XCTAssertEqual(Answers.finalAnswerText(in: "3 apples and then 12 more"), "12")
        XCTAssertEqual(Answers.finalAnswerText(in: "it is -4 degrees"), "-4")
        XCTAssertEqual(Answers.finalAnswerText(in: "costs $1,234.50 in total."), "1,234.50")
        XCTAssertEqual(Answers.finalAnswerText(in: "the share is 12.5% of it"), "12.5%")
        XCTAssertEqual(Answers.finalAnswerText(in: "then $\\frac{3}{4}$."), "$\\frac{3}{4}$")
        XCTAssertEqual(Answers.finalAnswerText(in: "so 3\\frac{1}{2} cups"), "3\\frac{1}{2}")
        // An unclosed answer tag (truncated) falls back to the other rules.
        XCTAssertEqual(Answers.finalAnswerText(in: "<think>5 + 5 = 10</think><answer>1"), "1")
        XCTAssertEqual(Answers.finalAnswerText(in: "an unclosed \\boxed{12"), "12")
        XCTAssertNil(Answers.finalAnswerText(in: "no numbers here"))
        XCTAssertEqual(Answers.goldAnswerText(in: "Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72"), "72")
        XCTAssertEqual(Answers.goldAnswerText(in: "The answer is $\\boxed{\\dfrac{1}{2}}$."), "\\dfrac{1}{2}")
    }

    /// Nested \frac, \sqrt and parentheses: up to Answers.maxNesting levels every verdict is
    /// right against both the right and the wrong reference; deeper, no score, never a verdict.
    func testDeepNestingIsJudgedRightOrNotAtAll() throws {
        func frac(_ d: Int) -> String { (0..<d).reduce("2") { s, _ in "\\frac{1}{\(s)}" } }
        for d in 1...120 {
            let answer = "<think>x</think><answer>$\(frac(d))$</answer>"
            let right = d % 2 == 0 ? "2" : "\\frac{1}{2}", wrong = d % 2 == 0 ? "\\frac{1}{2}" : "2"
            let a = try score(answer, "$\(right)$")["accuracy"], b = try score(answer, "$\(wrong)$")["accuracy"]
            if d <= Answers.maxNesting {
                XCTAssertEqual(a?.value, 1, "depth \(d) against its value")
                XCTAssertEqual(b?.value, 0, "depth \(d) against the other value")
            } else {
                XCTAssertNil(a?.value, "depth \(d)")
                XCTAssertNil(b?.value, "depth \(d)")
                XCTAssertEqual(a?.reason, "answer_too_deep")
            }
            // The same nesting as a reference.
            let asReference = try score("<answer>2</answer>", "$\(frac(d))$")["accuracy"]
            if d > Answers.maxNesting { XCTAssertEqual(asReference?.reason, "reference_too_deep") } else {
                XCTAssertEqual(asReference?.value, d % 2 == 0 ? 1 : 0, "reference of depth \(d)")
            }
        }
        for d in [1, 5, Answers.maxNesting, Answers.maxNesting + 1, 40] {
            let parens = String(repeating: "(", count: d) + "7" + String(repeating: ")", count: d)
            let sqrt = (0..<d).reduce("49") { s, _ in "\\sqrt{\(s)}" }
            for (text, value) in [(parens, "7"), (sqrt, d == 1 ? "7" : nil)] {
                let s = try score("<answer>$\(text)$</answer>", "$\(value ?? "123456")$")["accuracy"]
                if d > Answers.maxNesting { XCTAssertNil(s?.value, "\(text)") } else if value != nil { XCTAssertEqual(s?.value, 1, "\(text)") } else {
                    XCTAssertEqual(s?.value, 0, "\(text)")
                }
            }
        }
    }

    func testNormalisationAndEquivalence() {
        let same: [(String, String)] = [
            ("1,234", "1234"), ("$1,234", "1234"), ("\\$1,234.00", "1234"), ("1{,}234", "1234"), ("1\\,234", "1234"),
            ("1 234", "1234"), ("12 cm", "12"), ("12 \\text{ cm}", "12"), ("3 square feet", "3"), ("20cm^2", "20"),
            ("50%", "50"), ("50\\%", "0.5"), ("50 percent", "\\frac{1}{2}"), ("12.5%", "0.125"),
            ("\\frac{1}{2}", "0.5"), ("\\dfrac{3}{4}", "0.75"), ("\\tfrac34", "3/4"), ("\\frac12", "1/2"),
            ("2\\frac{1}{2}", "2.5"), ("-2\\frac{1}{2}", "-5/2"), ("\\frac{-1}{2}", "-0.5"), ("-\\frac{1}{2}", "-0.5"),
            ("x = 25", "25"), ("y=-3", "-3"), ("90^\\circ", "90"), ("90^{\\circ}", "90"), ("90°", "90"),
            ("\\text{42}", "42"), ("\\left( 3 \\right)", "3"), ("{7}", "7"), ("+5", "5"), ("007", "7"),
            ("3.50", "3.5"), ("3.0", "3"), ("0.333333", "1/3"), ("0.3333333", "\\frac{1}{3}"), ("7.", "7"),
            ("\\boxed{5}", "5"), ("$\\frac{1}{2}$", "\\(0.5\\)"), ("2^{3}", "8"), ("\\sqrt{16}", "4"), ("6 \\times 7", "42"),
            ("(1, 2)", "(1,2)"), ("1, 2", "2, 1"), ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt3}{2}"), ("\\pi", "\\pi"),
        ]
        for (a, b) in same {
            guard let pa = ParsedAnswer(a), let pb = ParsedAnswer(b) else { XCTFail("unparsed: \(a) / \(b)"); continue }
            XCTAssertTrue(pa.equivalent(to: pb), "\(a) should equal \(b) (\(pa) vs \(pb))")
        }
        let different: [(String, String)] = [
            ("1,234", "1.234"), ("50", "0.5"), ("12.5%", "12.5"), ("0.33", "1/3"), ("0.33333", "1/3"), ("-5", "5"),
            ("2\\frac{1}{2}", "1/2"), ("(1, 2)", "(2, 1)"), ("x = 25", "y = 25"), ("\\frac{1}{2}", "\\frac{2}{1}"),
            ("2\\sqrt{3}", "\\sqrt{3}"), ("1.000001", "1"), ("25", "250"),
        ]
        for (a, b) in different {
            guard let pa = ParsedAnswer(a), let pb = ParsedAnswer(b) else { XCTFail("unparsed: \(a) / \(b)"); continue }
            XCTAssertFalse(pa.equivalent(to: pb), "\(a) should differ from \(b)")
        }
        XCTAssertEqual(ParsedAnswer("\\$1,234.00")?.key, "1234")
        XCTAssertEqual(ParsedAnswer("\\frac{1}{3}")?.key, "0.333333")
        XCTAssertEqual(ParsedAnswer("50%")?.key, ParsedAnswer("50")?.key)
        for words in ["Monday", "N/A", "", "   ", "the answer is unknown"] { XCTAssertNil(ParsedAnswer(words), words) }
    }

    func testAccuracyScoresAndNoScore() throws {
        XCTAssertEqual(try value("<think>24 + 48 = 72</think><answer>72</answer>", "#### 72", "accuracy"), 1)
        XCTAssertEqual(try value("<think>..</think><answer>71</answer>", "#### 72", "accuracy"), 0)
        XCTAssertEqual(try value("<answer>The answer is 72 cookies.</answer>", "72", "accuracy"), 1)
        XCTAssertEqual(try score("I give up.", "72")["accuracy"], RewardScore(0, "no_answer"))
        // A reference that cannot be parsed is no score, never a free 1.0.
        for ref in ["", "Monday", "see the figure", "####"] {
            XCTAssertEqual(try score("<answer>5</answer>", ref)["accuracy"], RewardScore(nil, "unparseable_reference"), ref)
        }
        XCTAssertEqual(try score("<answer>5</answer>")["accuracy"], RewardScore(nil, "no_reference"))
    }

    // MARK: format

    static let asPrompted = "<think>\nNatalia sold 48 / 2 = 24 clips in May.\nIn all she sold 48 + 24 = 72 clips.\n</think>\n<answer>\n72\n</answer>\n"

    func testStrictFormatAsTheSystemPromptAsks() throws {
        XCTAssertEqual(try value(Self.asPrompted, nil, "format"), 1)
        XCTAssertEqual(try value("  \n" + Self.asPrompted, nil, "format"), 1)
        XCTAssertEqual(try value("<think>a</think><answer>1</answer>", nil, "format"), 1)
        // The paper's regex also accepts it (MULTILINE: $ before the final newline) ...
        XCTAssertEqual(try value(Self.asPrompted, nil, "format", #"{"format_mode": "paper"}"#), 1)
        // ... but not with a leading newline, which chat templates often produce.
        XCTAssertEqual(try value("\n" + Self.asPrompted, nil, "format", #"{"format_mode": "paper"}"#), 0)
    }

    func testStrictFormatPartialCredit() throws {
        let cases: [(String, Double)] = [
            ("<think>reasoning</think> The answer is 42.", 0.5),          // no answer tags
            ("reasoning</think>\n<answer>42</answer>", 0.75),             // <think> in the prompt
            ("<think>truncated", 0.25),
            ("<think>a</think><answer>1</answer> and more", 0.75),        // text after </answer>
            ("<think>a</think> so <answer>1</answer>", 0.75),             // text between the blocks
            ("<think><think>a</think></think><answer>1</answer>", 0.5),   // nested: repeated tags are not placed
            ("<think>a</think><answer>1</answer><answer>2</answer>", 0.5),
            ("<answer>1</answer><think>a</think>", 0.25),                 // order reversed: only </think>
            ("Hello <think>a</think><answer>1</answer>", 0.75),
            ("", 0), ("just text", 0),
        ]
        for (c, want) in cases { XCTAssertEqual(try value(c, nil, "format"), want, c) }
        XCTAssertEqual(try score("<think>x</think>")["format"]?.reason, "tags_2_of_4")
    }

    func testPaperFormatQuirks() throws {
        let paper = #"{"format_mode": "paper"}"#
        let cases: [(String, Double)] = [
            ("<think>a</think>\n \t<answer>1</answer>", 1),
            ("<think>a</think><answer>1</answer>\ntrailing line", 1),      // $ matches before a newline
            ("<think>a</think><answer>1</answer> trailing", 0),
            ("<think>a</think>x</think><answer>1</answer>", 1),            // .*? runs past a </think>
            ("<think>a</think><answer>1</answer>x</answer>", 1),
            (" <think>a</think><answer>1</answer>", 0),
            ("<think>a</think> x <answer>1</answer>", 0),
            ("<think><answer>1</answer>", 0),
        ]
        for (c, want) in cases { XCTAssertEqual(try value(c, nil, "format", paper), want, c) }
    }

    // MARK: reflection, paper mode

    func testPinnedPaperValues() throws {
        XCTAssertEqual(paperReflectionValue(counts: [1, 0, 0, 0]), 0.21)
        XCTAssertEqual(paperReflectionValue(counts: [10, 0, 0, 0]), 0.48)
        XCTAssertEqual(paperReflectionValue(counts: [1, 1, 1, 1]), 0.46)
        XCTAssertEqual(paperReflectionValue(counts: [5, 5, 5, 5]), 0.63)
        XCTAssertEqual(paperReflectionValue(counts: [20, 20, 20, 20]), 0.70)
        XCTAssertEqual(paperReflectionValue(counts: [0, 0, 0, 0]), 0)
        let paper = #"{"reflection_mode": "paper", "rewards": ["reflection"]}"#
        XCTAssertEqual(try value("Let me verify.", nil, "reflection", paper), 0.21)
        XCTAssertEqual(try value(String(repeating: "error check step goal ", count: 20), nil, "reflection", paper), 0.70)
    }

    func testRoundingIsPythons() {
        // Python's round(x, 2) of these doubles (half to even on the exact binary value).
        let cases: [(Double, Double)] = [(0.125, 0.12), (0.375, 0.38), (2.675, 2.67), (0.005, 0.01), (1.005, 1.0),
                                         (0.015, 0.01), (0.025, 0.03), (0.205, 0.2), (0.215, 0.21), (0.625, 0.62),
                                         (-0.125, -0.12), (-2.675, -2.67), (0.45499999999999996, 0.45), (0.455, 0.46)]
        for (x, want) in cases { XCTAssertEqual(roundHalfEven2(x), want, "\(x)") }
    }

    /// 81 completions whose per-dimension counts were derived by hand from the published
    /// patterns (Tests/Fixtures/rewards/reflection_paper.jsonl, with the reason for each).
    func testPaperReflectionTable() throws {
        let text = try String(contentsOf: Fixtures.dir.appendingPathComponent("rewards/reflection_paper.jsonl"), encoding: .utf8)
        let rows = text.split(separator: "\n").map { try! JSONValue.parse(String($0)) }
        XCTAssertGreaterThanOrEqual(rows.count, 50)
        let set = RewardSet(config: try RewardConfig(json: JSONValue.parse(#"{"rewards": ["reflection"], "reflection_mode": "paper"}"#)))
        for row in rows {
            let c = row["completion"]!.asString!
            let counts = row["counts"]!.asArray!.map { Int($0.asInt!) }
            XCTAssertEqual(reflectionMatchCounts(c), counts, "\(c.debugDescription): \(row["why"]!.asString!)")
            XCTAssertEqual(set.score(RewardInput(completion: c))["reflection"]?.value, row["reflection"]!.asDouble!, c.debugDescription)
        }
    }

    // MARK: reflection, guarded mode

    static let plain = "<think>\n48 / 2 = 24. 48 + 24 = 72.\n</think>\n<answer>\n72\n</answer>"
    static let reflective = "<think>\n48 / 2 = 24. 48 + 24 = 72. Let me verify: 72 - 24 = 48.\n</think>\n<answer>\n72\n</answer>"

    func testGuardedPaysOnlyReflectionInsideAValidCorrectAnswer() throws {
        XCTAssertEqual(try value(Self.plain, "72", "reflection"), 0)
        XCTAssertEqual(try value(Self.reflective, "72", "reflection"), 0.21)
        XCTAssertEqual(try score(Self.reflective, "70")["reflection"], RewardScore(0, "answer_wrong"))
        XCTAssertEqual(try value(Self.reflective, "70", "reflection", #"{"reflection_requires_correct": false}"#), 0.21)
        XCTAssertEqual(try score(Self.reflective)["reflection"], RewardScore(nil, "correctness_unknown"))
        let outside = "<think>\n48 + 24 = 72.\n</think>\n<answer>72</answer> Let me verify: 72 - 24 = 48."
        XCTAssertEqual(try score(outside, "72")["reflection"], RewardScore(0, "format_invalid"))
        // Keywords after </think> do not count.
        let after = "<think>\n48 + 24 = 72.\n</think>\n<answer>72, verified: 72 - 24 = 48</answer>"
        XCTAssertEqual(try value(after, "72", "reflection"), 0)
        // The paper's reward pays the same text whatever the answer.
        XCTAssertEqual(try value(Self.reflective, "70", "reflection", #"{"reflection_mode": "paper"}"#), 0.21)
    }

    func testGuardedCorrectionBonus() throws {
        let fixed = "<think>\n48 + 24 = 70. Wait, that is a mistake: 24 + 48 = 72.\n</think>\n<answer>72</answer>"
        let s = try score(fixed, "72")["reflection"]!
        XCTAssertTrue(s.reason.contains("corrected"), s.reason)
        let plainValue = paperReflectionValue(counts: [1, 0, 0, 0])
        XCTAssertEqual(s.value!, roundHalfEven2(plainValue + 0.2), accuracy: 1e-9)
        XCTAssertEqual(try value(fixed, "72", "reflection", #"{"reflection_correction_bonus": 0}"#), plainValue)
    }

    /// Farming must not pay: each of these totals no more than the plain correct answer.
    func testAntiFarming() throws {
        let body = "<think>\n48 / 2 = 24. %@\n</think>\n<answer>\n72\n</answer>"
        func with(_ s: String) -> String { body.replacingOccurrences(of: "%@", with: s) }
        let farms = [
            "wait wait wait": with(String(repeating: "Wait wait wait. ", count: 20) + "48 + 24 = 72."),
            "keyword list": with("48 + 24 = 72. verify check confirm test step stage phase goal target required error fix mistake backtrack"),
            "keywords glued to a result": with("48 + 24 = 72 verify check step goal error."),
            "repeated sentence": with(String(repeating: "Let me verify: 24 * 2 = 48. ", count: 3) + "48 + 24 = 72."),
            "repeated sentence twice": with("48 + 24 = 72. Let me check: 72 - 24 = 48. Let me check: 72 - 24 = 48."),
            "empty reflection": with("48 + 24 = 72. Let me verify: ."),
            "empty reflections": with("48 + 24 = 72. Let me verify: . Check: . Step: . Goal: . Error: ."),
        ]
        let plainTotal = try score(Self.plain, "72").total!
        XCTAssertEqual(plainTotal, 2)
        for (name, c) in farms {
            let s = try score(c, "72")
            XCTAssertEqual(s["accuracy"]?.value, 1, name)
            XCTAssertEqual(s["format"]?.value, 1, name)
            XCTAssertLessThanOrEqual(s.total!, plainTotal, "\(name): \(s.json.serialized())")
        }
        // And genuine reflection does pay more than none.
        XCTAssertGreaterThan(try score(Self.reflective, "72").total!, plainTotal)
        // Under the paper's reward the same farms do pay (why guarded is the default).
        XCTAssertGreaterThan(try value(farms["keyword list"]!, "72", "reflection", #"{"reflection_mode": "paper"}"#)!, 0.5)
    }

    /// Issue 28's table (Tests/Fixtures/rewards/reflection_guarded.jsonl): farmed checks —
    /// identities, true arithmetic on numbers the problem does not have, false equations, the
    /// derivation restated, staged fixes, keywords alone — pay nothing; genuine ones (inverse
    /// operations, substitution back, corrections of a wrong result, subgoals reached, working
    /// back from the answer) pay; a check of quantities already checked pays nothing more. The
    /// reason names every sentence's verdict, compared with the row's labels.
    func testGuardedChecksTable() throws {
        let text = try String(contentsOf: Fixtures.dir.appendingPathComponent("rewards/reflection_guarded.jsonl"), encoding: .utf8)
        let rows = try text.split(separator: "\n").map { try JSONValue.parse(String($0)) }
        XCTAssertGreaterThanOrEqual(rows.count, 40)
        let set = RewardSet(config: try RewardConfig(json: JSONValue.parse("{}")))
        var values: [String: Double] = [:]
        var scored: [(JSONValue, ScoredCompletion)] = []
        for row in rows {
            let id = row["id"]!.asString!
            let completion = "<think>\n\(row["think"]!.asString!)\n</think>\n<answer>\n\(row["answer"]!.asString!)\n</answer>"
            let s = set.score(RewardInput(completion: completion, reference: row["reference"]!.asString!, prompt: row["prompt"]?.asString))
            values[id] = s["reflection"]!.value!
            scored.append((row, s))
        }
        let genuineFloor = rows.filter { $0["expect"]!.asString! == "paid" }.map { values[$0["id"]!.asString!]! }.min()!
        // The same correct answer (12 * 7 = 84) with one genuine check: what no farm may out-total.
        let oneCheck = scored.first { $0.0["id"]!.asString! == "inverse" }!.1.total!
        for (row, s) in scored {
            let id = row["id"]!.asString!, why = row["why"]!.asString!
            let v = values[id]!, reason = s["reflection"]!.reason
            let expect = row["expect"]!.asString!
            switch expect {
            case "zero": XCTAssertEqual(v, 0, "\(id) (\(why)): \(reason)")
            case "paid": XCTAssertGreaterThan(v, 0, "\(id) (\(why)): \(reason)")
            default:
                let other = String(expect.dropFirst("same_as:".count))
                XCTAssertEqual(v, values[other]!, "\(id) pays as \(other) (\(why)): \(reason)")
            }
            if expect == "zero" {
                XCTAssertLessThan(v, genuineFloor, id)
                if row["prompt"]?.asString == "What is 12 * 7?" { XCTAssertLessThan(s.total!, oneCheck, "\(id): \(s.json.serialized())") }
            }
            guard reason != "answer_wrong", reason != "repeated_reflection" else { continue }
            // The reason's verdicts, class by class, against the row's labels.
            var labels: [String: Int] = [:]
            for c in row["checks"]!.asArray! { labels[c.asString!, default: 0] += 1 }
            var found: [String: Int] = [:]
            for d in ReflectionDimension.allCases {
                if let n = Self.count(in: reason, "\(d.name)="), n > 0 { found["genuine", default: 0] += n }
            }
            for c in IgnoredCheck.allCases {
                if let n = Self.count(in: reason, c.rawValue + " "), n > 0 { found[c.rawValue] = n }
            }
            XCTAssertEqual(found, labels, "\(id) (\(why)): \(reason)")
        }
    }

    /// The number after `key` in a reason ("verification=1 (…)" → 1 for "verification=").
    static func count(in reason: String, _ key: String) -> Int? {
        guard let r = reason.range(of: key) else { return nil }
        return Int(reason[r.upperBound...].prefix { $0.isNumber })
    }

    /// The issue's hostile rows, with the reason a user sees.
    func testGuardedReasonSaysWhatCounted() throws {
        let c = "<think>\n12 * 7 = 84. Verify: 84 / 7 = 12. Check: 1 + 1 = 2. Confirm: 5 + 5 = 10. Test: 84 / 12 = 8.\n</think>\n<answer>\n84\n</answer>"
        let s = try score(c, "84")["reflection"]!
        XCTAssertEqual(s.reason, "backtracking=0 verification=1 (84 / 7 = 12) subgoals=0 backward_chaining=0 ignored=3 (identity 1, unrelated 1, false 1)")
        XCTAssertEqual(s.value, paperReflectionValue(counts: [0, 1, 0, 0]))
    }

    // MARK: length, repetition, totals

    func testLengthAndRepetition() throws {
        let opts = #"{"rewards": ["length"], "max_completion_length": 100, "soft_punish_cache": 20}"#
        let set = RewardSet(config: try RewardConfig(json: JSONValue.parse(opts)))
        for (n, want) in [(0, 0.0), (80, 0), (81, -0.05), (90, -0.5), (100, -1), (101, -1), (5000, -1)] {
            XCTAssertEqual(set.score(RewardInput(completion: "", completionTokens: n))["length"]?.value, want, "\(n)")
        }
        XCTAssertEqual(set.score(RewardInput(completion: String(repeating: "é", count: 90)))["length"],
                       RewardScore(-0.5, "chars=90 soft"))
        let rep = #"{"rewards": ["repetition"]}"#
        XCTAssertEqual(try value("a b c d e f", nil, "repetition", rep), 0)
        XCTAssertEqual(try value("a b", nil, "repetition", rep), 0)
        // 10 words "a a ... a": 8 trigrams, 1 distinct → (1 − 1/8) × −1.
        XCTAssertEqual(try value(Array(repeating: "A", count: 10).joined(separator: " "), nil, "repetition", rep), -0.875)
        // "x y z x y z": trigrams xyz yzx zxy xyz, 3 distinct of 4 → 0.25 × −0.5.
        XCTAssertEqual(try value("x y z x y z", nil, "repetition", #"{"rewards": ["repetition"], "repetition_max_penalty": -0.5}"#), -0.125)
    }

    func testWeightedTotalOverScoredRewards() throws {
        let s = try score(Self.reflective, "72", #"{"reward_weights": [2, 0.5, 1]}"#)
        XCTAssertEqual(s.total!, 2 * 1 + 0.5 * 1 + 0.21, accuracy: 1e-12)
        // Without a reference: accuracy and guarded reflection have no score; format alone counts.
        let n = try score(Self.reflective)
        XCTAssertNil(n["accuracy"]?.value)
        XCTAssertEqual(n.total, 1)
        let none = try score("x", nil, #"{"rewards": ["accuracy"]}"#)
        XCTAssertNil(none.total)
        XCTAssertEqual(none.json.serialized(), #"{"rewards":{"accuracy":null},"total":null,"reasons":{"accuracy":"no_reference"}}"#)
        let custom = RewardSet(config: try RewardConfig(json: JSONValue.parse(#"{"rewards": ["format", "mine"]}"#), customRewards: ["mine"]),
                               custom: ["mine": { $0.completion.count > 3 ? 0.5 : .nan }])
        XCTAssertEqual(custom.score(RewardInput(completion: "<think>a</think><answer>1</answer>")).total, 1.5)
        XCTAssertEqual(custom.score(RewardInput(completion: "ab"))["mine"], RewardScore(nil, "custom_no_score"))
    }

    func testConfigErrorsNameTheirPath() {
        let bad: [(String, String)] = [
            (#"{"rewards": ["accuracy", "speling"]}"#, "rewards[1]: unknown reward \"speling\""),
            (#"{"reward_weights": [1, 2]}"#, "reward_weights: expected 3 weights"),
            (#"{"reward_weights": [1, "x", 1]}"#, "reward_weights[1]: expected a finite number"),
            (#"{"reflection_mode": "lenient"}"#, "reflection_mode: expected \"guarded\" or \"paper\""),
            (#"{"format_mode": 1}"#, "format_mode: expected a string"),
            (#"{"soft_punish_cache": 2000}"#, "soft_punish_cache: must not exceed max_completion_length"),
            (#"{"repetition_max_penalty": 1}"#, "repetition_max_penalty: expected a number <= 0"),
            (#"{"reflection_mode": "paper", "reflektion": 1}"#, "reflektion: unknown key"),
            (#"{"rewards": ["format", "format"]}"#, "rewards: a reward is named twice"),
        ]
        for (json, message) in bad {
            XCTAssertThrowsError(try RewardConfig(json: JSONValue.parse(json)), json) { e in
                XCTAssertTrue("\(e)".contains(message), "\(json): \(e)")
            }
        }
    }

    // MARK: robustness

    func testMalformedCompletionsNeverCrash() throws {
        let all = #"{"rewards": ["accuracy", "format", "reflection", "length", "repetition"]}"#
        var cases = ["<think>", "</think>", "<answer>", "</answer>", "<answer></answer>", "<think><answer></think></answer>",
                     "<think><think><think>", "\\boxed{", "\\boxed{{{{{}", "####", "#### ", "$", "$$", "\\(", "\\frac{",
                     "\\frac{1}{", "-", "--5", "1,,,2", "1/0", "\\frac{1}{0}", "0/0", "99999999999999999999999999999",
                     "1e999", "\u{0}", "<answer>\u{0}</answer>", String(repeating: "(", count: 5000) + "1",
                     String(repeating: "{", count: 5000), "<answer>" + String(repeating: "(", count: 900) + "1</answer>",
                     "<answer>" + String(repeating: "\\frac{1}{", count: 300) + "</answer>", "2^{99999}", "10^{64} + 1",
                     "<answer>" + String(repeating: "(1,", count: 300) + String(repeating: ")", count: 300) + "</answer>",
                     "<answer>" + String(repeating: "{", count: 480) + "1,2" + String(repeating: "}", count: 480) + "</answer>"]
        // Invalid UTF-8 reaching Swift through a lossy decode (the C ABI rejects it first).
        cases.append(String(decoding: [0x3C, 0x61, 0x6E, 0xFF, 0xC3, 0x28, 0x35, 0xED, 0xA0, 0x80], as: UTF8.self))
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            cases.append(String(decoding: bytes, as: UTF8.self))
        }
        let set = RewardSet(config: try RewardConfig(json: JSONValue.parse(all)))
        for mode in ["paper", "guarded"] {
            let s2 = RewardSet(config: try RewardConfig(json: JSONValue.parse(#"{"reflection_mode": "\#(mode)", "format_mode": "\#(mode == "paper" ? "paper" : "strict")"}"#)))
            for c in cases {
                for ref in [nil, "5", c] {
                    _ = s2.score(RewardInput(completion: c, reference: ref))
                    let r = set.score(RewardInput(completion: c, reference: ref))
                    for (_, s) in r.scores { if let v = s.value { XCTAssertTrue(v.isFinite, c.debugDescription) } }
                }
            }
        }
    }

    func testOneMegabyteInputsAreLinear() throws {
        let unit = "Step 3: check that 12 + 30 = 42, verify the goal. "
        var big = "<think>\n"
        while big.utf8.count < 1 << 20 { big += unit }
        big += "</think>\n<answer>42</answer>"
        let worst = [
            big,
            String(repeating: "a", count: 1 << 20),
            String(repeating: "</think>", count: 1 << 17),
            "<think>" + String(repeating: "</think> ", count: 1 << 17) + "<answer>",
            "<answer>" + String(repeating: "1", count: 1 << 20) + "</answer>",
            String(repeating: "\\boxed{", count: 1 << 17),
            String(repeating: "$", count: 1 << 20),
            String(repeating: "1,", count: 1 << 19),
            String(repeating: "\\frac{1}{", count: 1 << 17),
            String(repeating: "decompose in ", count: 1 << 16),
        ]
        for mode in ["paper", "guarded"] {
            let set = RewardSet(config: try RewardConfig(json: JSONValue.parse(
                #"{"rewards": ["accuracy", "format", "reflection", "length", "repetition"], "reflection_mode": "\#(mode)", "format_mode": "\#(mode == "paper" ? "paper" : "strict")"}"#)))
            for c in worst {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let r = set.score(RewardInput(completion: c, reference: c.count < 100 ? c : "42"))
                let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                XCTAssertLessThan(s, 5, "\(mode) \(c.prefix(20).debugDescription)…: \(s) s")
                XCTAssertNotNil(r["format"]?.value)
            }
        }
        let r = RewardSet(config: RewardConfig()).score(RewardInput(completion: big, reference: "42"))
        XCTAssertEqual(r["accuracy"]?.value, 1)
        XCTAssertEqual(r["format"]?.value, 1)
        XCTAssertEqual(r["reflection"], RewardScore(0, "repeated_reflection"))
    }

    // MARK: C ABI

    func testScoreThroughTheCABI() throws {
        func call(_ request: String?) -> (Int32, String) {
            var out: UnsafeMutablePointer<CChar>? = nil
            let s = request.map { r in r.withCString { ponder_score($0, &out) } } ?? ponder_score(nil, &out)
            defer { ponder_string_free(out) }
            return (s, s == 0 ? String(cString: out!) : String(cString: ponder_last_error()))
        }
        let req = #"{"rewards": ["accuracy", "format"], "reward_weights": [1, 0.5], "items": [{"completion": "<think>1+1=2</think><answer>2</answer>", "reference": "2"}, {"completion": "3", "prompt": "p"}]}"#
        let (s, out) = call(req)
        XCTAssertEqual(s, 0, out)
        XCTAssertEqual(out, #"{"results":[{"rewards":{"accuracy":1,"format":1},"total":1.5,"reasons":{"accuracy":"correct","format":"ok"}},{"rewards":{"accuracy":null,"format":0},"total":0,"reasons":{"accuracy":"no_reference","format":"tags_0_of_4"}}]}"#)
        var (st, msg) = call(#"{"items": [{"completion": 5}]}"#)
        XCTAssertEqual(st, 1); XCTAssertTrue(msg.contains("items[0].completion: expected a string"), msg)
        (st, msg) = call(#"{"items": [{"reference": "5"}]}"#)
        XCTAssertEqual(st, 1); XCTAssertTrue(msg.contains("items[0]: \"completion\" (a string) is required"), msg)
        (st, msg) = call(#"{"items": [{"completion": "x", "answer": "5"}]}"#)
        XCTAssertEqual(st, 1); XCTAssertTrue(msg.contains("items[0].answer: unknown key"), msg)
        (st, msg) = call(#"{"rewards": ["accuracy"]}"#)
        XCTAssertEqual(st, 1); XCTAssertTrue(msg.contains("items: required"), msg)
        (st, msg) = call(#"{"items": [], "reflection_mode": "x"}"#)
        XCTAssertEqual(st, 1); XCTAssertTrue(msg.contains("reflection_mode"), msg)
        (st, msg) = call("{\"items\": [")
        XCTAssertEqual(st, 2); XCTAssertTrue(msg.contains("byte offset"), msg)
        (st, _) = call(nil)
        XCTAssertEqual(st, 9)
        var out2: UnsafeMutablePointer<CChar>? = nil
        let bad: [UInt8] = Array(#"{"items": [{"completion": ""#.utf8) + [0xFF, 0xFE] + Array(#""}]}"#.utf8) + [0]
        st = bad.withUnsafeBufferPointer { b in b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { ponder_score($0, &out2) } }
        XCTAssertEqual(st, 2, String(cString: ponder_last_error()))
        XCTAssertEqual(ponder_score("{\"items\": []}", nil), 9)
    }
}
