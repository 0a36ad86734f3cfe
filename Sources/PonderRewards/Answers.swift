// Final answers: where they are in a completion or a reference, and when two are the same.
// The equivalence follows Hugging Face math-verify (the oracle of tests/python/test_rewards_oracle.py)
// for the answers math word problems have — numbers, fractions, percentages, simple LaTeX — as a
// few hundred lines of string and rational arithmetic instead of a computer-algebra system.

/// A final answer normalised for comparison: a number (exact rational when it fits in 64 bits),
/// a tuple, or a canonical LaTeX string compared structurally.
public struct ParsedAnswer: Sendable, CustomStringConvertible {
    enum Value: Sendable {
        case number(Num)
        case tuple([ParsedAnswer], ordered: Bool)
        case expression(String)
    }

    let value: Value
    /// The canonical text ("1234", "\frac{1}{2}", "50%"): equal texts are equal answers.
    public let text: String
    /// The variable of an assignment answer ("x = 25" → "x"); two assignments to different
    /// variables differ, as in math-verify.
    public let variable: String?

    public var description: String { text }

    /// Parses one answer ("$1,234", "\dfrac{3}{4}", "x = 25", "50%", "12 cm", "(1, 2)"); nil when
    /// nothing mathematical is left (words only, empty, or longer than 1000 characters).
    public init?(_ raw: String) {
        guard raw.unicodeScalars.count <= 1000 else { return nil }
        let c = Normalizer.clean(raw)
        guard !c.body.isEmpty else { return nil }
        if let n = NumberParser.parse(c.body) {
            var n = n
            n.percent = c.percent
            self.init(value: .number(n), text: n.text, variable: c.variable)
            return
        }
        if let t = ParsedAnswer.tuple(c.body) {
            self = t
            return
        }
        let canon = Normalizer.canonical(c.body)
        // Structural answers must look like mathematics, so a reference such as "Monday" is
        // unparseable (no score) instead of comparing as text.
        guard canon.unicodeScalars.contains(where: { isASCIIDigit($0.value) || $0 == "\\" }), !ParsedAnswer.hasWord(canon) else { return nil }
        self.init(value: .expression(canon), text: canon + (c.percent ? "%" : ""), variable: c.variable)
    }

    /// A run of three or more letters outside a LaTeX command: prose ("The answer is 5"), which
    /// is searched for its last number instead of compared as an expression.
    private static func hasWord(_ s: String) -> Bool {
        var run = 0
        var command = false
        for u in s.unicodeScalars {
            if isASCIILetter(u.value) {
                run += 1
                if !command && run >= 3 { return true }
            } else {
                run = 0
                command = u == "\\"
            }
        }
        return false
    }

    init(value: Value, text: String, variable: String?) {
        self.value = value
        self.text = text
        self.variable = variable
    }

    private static func tuple(_ body: String) -> ParsedAnswer? {
        // Each level of nesting is a level of recursion: answers are never deep.
        var depth = 0, deepest = 0
        for ch in body.unicodeScalars {
            if ch == "(" || ch == "[" || ch == "{" { depth += 1; deepest = max(deepest, depth) }
            if ch == ")" || ch == "]" || ch == "}" { depth -= 1 }
        }
        guard deepest <= 16 else { return nil }
        var s = Substring(body)
        var ordered = false
        if let f = s.first, let l = s.last, (f == "(" && l == ")") || (f == "[" && l == "]"),
           Normalizer.matchingClose(Array(s.unicodeScalars), 0) == s.unicodeScalars.count - 1 {
            s = s.dropFirst().dropLast()
            ordered = true
        }
        let parts = Normalizer.splitTopLevel(String(s), on: ",")
        guard parts.count >= 2 else { return nil }
        var items: [ParsedAnswer] = []
        for p in parts {
            guard let a = ParsedAnswer(p) else { return nil }
            items.append(a)
        }
        let text = (ordered ? "(" : "") + items.map(\.text).joined(separator: ",") + (ordered ? ")" : "")
        return ParsedAnswer(value: .tuple(items, ordered: ordered), text: text, variable: nil)
    }

    /// math-verify's order: equal strings; then numbers (rounded to 6 decimals when either was
    /// written with a decimal point, a percentage equal to both 50 and 0.5); then structure.
    public func equivalent(to other: ParsedAnswer) -> Bool {
        if let a = variable, let b = other.variable, a != b { return false }
        if text == other.text { return true }
        switch (value, other.value) {
        case let (.number(a), .number(b)):
            return a.equals(b)
        case let (.tuple(a, oa), .tuple(b, ob)):
            guard a.count == b.count else { return false }
            if oa && ob { return zip(a, b).allSatisfy { $0.equivalent(to: $1) } }
            var rest = b
            for x in a {
                guard let k = rest.firstIndex(where: { x.equivalent(to: $0) }) else { return false }
                rest.remove(at: k)
            }
            return true
        default:
            return false
        }
    }

    /// A key under which equivalent answers usually collide (majority voting): numbers by their
    /// value rounded to 6 decimals, percent sign dropped ("50%" and "50" vote together).
    public var key: String {
        switch value {
        case let .number(n): return n.key
        case let .tuple(items, ordered):
            return (ordered ? "(" : "{") + items.map(\.key).joined(separator: ",") + (ordered ? ")" : "}")
        case let .expression(s): return s
        }
    }
}

// MARK: - Finding the answer

public enum Answers {
    /// The final-answer text of a completion: the content of the last <answer>…</answer>; within
    /// it (or the whole completion when there is none) the last \boxed{…}, else what follows the
    /// last "####" on its line; else, without answer tags, the last number or math span.
    public static func finalAnswerText(in completion: String) -> String? {
        let t = scalars(completion)
        var region = t[...]
        var tagged = false
        if let open = lastIndex(of: answerOpen, in: t[...]) {
            let start = open + answerOpen.count
            if let close = firstIndex(of: answerClose, in: t[start...]) {
                region = t[start..<close]
                tagged = true
            }
        }
        if let b = lastBoxed(region) { return string(b) }
        if let h = lastIndex(of: hashes, in: region) {
            var e = h + hashes.count
            while e < region.endIndex, region[e] != 0x0A { e += 1 }
            return trimmed(string(region[(h + hashes.count)..<e]))
        }
        if tagged { return trimmed(string(region)) }
        return lastCandidate(region).map { string($0) }
    }

    /// The gold answer of a reference: what follows GSM8K's last "####", else the last
    /// \boxed{…}, else the whole reference.
    public static func goldAnswerText(in reference: String) -> String {
        let t = scalars(reference)
        if let h = lastIndex(of: hashes, in: t[...]) {
            var e = h + hashes.count
            while e < t.count, t[e] != 0x0A { e += 1 }
            return trimmed(string(t[(h + hashes.count)..<e]))
        }
        if let b = lastBoxed(t[...]) { return string(b) }
        return trimmed(reference)
    }

    /// The accuracy verdict of a completion against a reference — the one rule for the accuracy
    /// reward and for sampled evaluation: 1 correct, 0 wrong or no answer, nil no score (a
    /// reference without an answer, or either side nested past maxNesting, where the parser no
    /// longer judges exactly: a score is right or absent). `answer`: the completion's final
    /// answer when the caller has it parsed already.
    public static func verdict(completion: String, reference: String,
                               answer: @autoclosure () -> ParsedAnswer?) -> (value: Double?, reason: String) {
        if nestingDepth(goldAnswerText(in: reference)) > maxNesting { return (nil, "reference_too_deep") }
        if let text = finalAnswerText(in: completion), nestingDepth(text) > maxNesting { return (nil, "answer_too_deep") }
        guard let gold = goldAnswer(in: reference) else { return (nil, "unparseable_reference") }
        guard let answer = answer() else { return (0, "no_answer") }
        return answer.equivalent(to: gold) ? (1, "correct") : (0, "wrong")
    }

    /// The deepest nesting of brackets ({, (, [) the answer parser judges exactly: \frac, \sqrt
    /// and parentheses nested deeper get no accuracy score (tested level by level in RewardTests).
    public static let maxNesting = 12

    /// The deepest nesting of {, ( and [ in `text`.
    public static func nestingDepth(_ text: String) -> Int {
        var depth = 0, deepest = 0
        for ch in text.utf8 {
            if ch == 0x7B || ch == 0x28 || ch == 0x5B { depth += 1; deepest = max(deepest, depth) }
            if ch == 0x7D || ch == 0x29 || ch == 0x5D { depth = max(0, depth - 1) }
        }
        return deepest
    }

    /// The parsed final answer of a completion (nil: it has none).
    public static func finalAnswer(in completion: String) -> ParsedAnswer? {
        guard let text = finalAnswerText(in: completion) else { return nil }
        return parseOrLastCandidate(text)
    }

    /// Answers grouped by equivalence (as the accuracy reward compares them), in order of first
    /// appearance; members are indices into `answers`, and a nil answer is in no group. Majority
    /// voting counts these: the evaluation's maj@k and inference's vote.
    public static func groups(_ answers: [ParsedAnswer?]) -> [(answer: ParsedAnswer, members: [Int])] {
        var groups: [(answer: ParsedAnswer, members: [Int])] = []
        for (i, a) in answers.enumerated() {
            guard let a else { continue }
            if let g = groups.firstIndex(where: { $0.answer.equivalent(to: a) }) {
                groups[g].members.append(i)
            } else {
                groups.append((a, [i]))
            }
        }
        return groups
    }

    /// The parsed gold answer of a reference (nil: it cannot be parsed, so it earns no score).
    public static func goldAnswer(in reference: String) -> ParsedAnswer? {
        parseOrLastCandidate(goldAnswerText(in: reference))
    }

    static func parseOrLastCandidate(_ text: String) -> ParsedAnswer? {
        if let p = ParsedAnswer(text) { return p }
        let t = scalars(text)
        var end = t.endIndex
        // Up to a few candidates from the right: a math span that does not parse gives way to
        // the number before it.
        for _ in 0..<8 {
            guard let c = lastCandidate(t[..<end]) else { return nil }
            if let p = ParsedAnswer(string(c)) { return p }
            end = c.startIndex
        }
        return nil
    }

    // MARK: scanning

    static let answerOpen = scalars("<answer>")
    static let answerClose = scalars("</answer>")
    static let hashes = scalars("####")
    static let boxed = scalars("\\boxed")
    static let fbox = scalars("\\fbox")

    static func trimmed(_ s: String) -> String {
        var t = Substring(s)
        while let f = t.unicodeScalars.first, isSpace(f.value) { t = t.dropFirst() }
        while let l = t.unicodeScalars.last, isSpace(l.value) { t = t.dropLast() }
        return String(t)
    }

    static func matches(_ p: Scalars, _ t: Scalars.SubSequence, at i: Int) -> Bool {
        guard i >= t.startIndex, i + p.count <= t.endIndex else { return false }
        for k in 0..<p.count where t[i + k] != p[k] { return false }
        return true
    }

    static func lastIndex(of p: Scalars, in t: Scalars.SubSequence) -> Int? {
        var i = t.endIndex - p.count
        while i >= t.startIndex {
            if matches(p, t, at: i) { return i }
            i -= 1
        }
        return nil
    }

    static func firstIndex(of p: Scalars, in t: Scalars.SubSequence) -> Int? {
        var i = t.startIndex
        while i + p.count <= t.endIndex {
            if matches(p, t, at: i) { return i }
            i += 1
        }
        return nil
    }

    /// The content of the last \boxed{…} (or \fbox{…}); an unclosed one runs to the end.
    static func lastBoxed(_ t: Scalars.SubSequence) -> Scalars.SubSequence? {
        var i = t.endIndex - 1
        while i >= t.startIndex {
            for p in [boxed, fbox] where matches(p, t, at: i) {
                var j = i + p.count
                while j < t.endIndex, t[j] == 0x20 { j += 1 }
                guard j < t.endIndex, t[j] == 0x7B else { continue }
                var depth = 0
                var k = j
                while k < t.endIndex {
                    if t[k] == 0x7B { depth += 1 }
                    if t[k] == 0x7D {
                        depth -= 1
                        if depth == 0 { return t[(j + 1)..<k] }
                    }
                    k += 1
                }
                return t[(j + 1)..<t.endIndex]
            }
            i -= 1
        }
        return nil
    }

    /// The answer-like span that ends last: a number (with its sign, thousands separators,
    /// decimals, a "/denominator" and a trailing %), a \frac{…}{…}, or a $…$ / \(…\) / \[…\] span.
    static func lastCandidate(_ t: Scalars.SubSequence) -> Scalars.SubSequence? {
        var best: Scalars.SubSequence? = nil
        func offer(_ s: Scalars.SubSequence) {
            if let b = best, b.endIndex > s.endIndex || (b.endIndex == s.endIndex && b.startIndex <= s.startIndex) { return }
            best = s
        }
        if let n = lastNumber(t) { offer(n) }
        if let m = lastMathSpan(t) { offer(m) }
        if let f = lastFrac(t) { offer(f) }
        return best
    }

    static func lastNumber(_ t: Scalars.SubSequence) -> Scalars.SubSequence? {
        var e = t.endIndex
        while e > t.startIndex, !isASCIIDigit(t[e - 1]) { e -= 1 }
        guard e > t.startIndex else { return nil }
        var s = e
        // Digits, and separators that sit between digits: "1,234.5", "3/4".
        while s > t.startIndex {
            let c = t[s - 1]
            if isASCIIDigit(c) { s -= 1; continue }
            if c == 0x2C || c == 0x2E || c == 0x2F, s - 1 > t.startIndex, isASCIIDigit(t[s - 2]) { s -= 1; continue }
            break
        }
        if s > t.startIndex, t[s - 1] == 0x2D {
            let p = s - 1
            if p == t.startIndex || isSpace(t[p - 1]) || [0x28, 0x3D, 0x24, 0x3A].contains(t[p - 1]) { s = p }
        }
        var end = e
        var k = e
        while k < t.endIndex, t[k] == 0x20 { k += 1 }
        if k < t.endIndex, t[k] == 0x25 { end = k + 1 }
        if k + 1 < t.endIndex, t[k] == 0x5C, t[k + 1] == 0x25 { end = k + 2 }
        return t[s..<end]
    }

    static func lastMathSpan(_ t: Scalars.SubSequence) -> Scalars.SubSequence? {
        var i = t.endIndex - 1
        while i >= t.startIndex {
            let c = t[i]
            if c == 0x24, i == t.startIndex || t[i - 1] != 0x5C {
                // A closing "$": find its opener on the same line.
                var j = i - 1
                while j >= t.startIndex, t[j] != 0x0A {
                    if t[j] == 0x24, j == t.startIndex || t[j - 1] != 0x5C {
                        if j + 1 < i { return t[j...i] }
                        break
                    }
                    j -= 1
                }
                return nil
            }
            if c == 0x29 || c == 0x5D, i > t.startIndex, t[i - 1] == 0x5C {
                let open: UInt32 = c == 0x29 ? 0x28 : 0x5B
                var j = i - 2
                while j > t.startIndex {
                    if t[j] == open, t[j - 1] == 0x5C { return t[(j - 1)...i] }
                    j -= 1
                }
                return nil
            }
            i -= 1
        }
        return nil
    }

    static func lastFrac(_ t: Scalars.SubSequence) -> Scalars.SubSequence? {
        let frac = scalars("frac")
        var i = t.endIndex - 4
        while i > t.startIndex {
            var s = i - 1
            if s > t.startIndex, t[s] == 0x64 || t[s] == 0x74 { s -= 1 }  // \dfrac, \tfrac
            if t[s] == 0x5C, matches(frac, t, at: i) {
                if s > t.startIndex, t[s - 1] == 0x2D { s -= 1 }
                // Two brace groups (or single characters) after \frac.
                var k = i + 4
                for _ in 0..<2 {
                    while k < t.endIndex, t[k] == 0x20 { k += 1 }
                    guard k < t.endIndex else { return nil }
                    if t[k] == 0x7B {
                        var depth = 0
                        var m = k
                        while m < t.endIndex {
                            if t[m] == 0x7B { depth += 1 } else if t[m] == 0x7D { depth -= 1; if depth == 0 { break } }
                            m += 1
                        }
                        guard m < t.endIndex else { return nil }
                        k = m + 1
                    } else {
                        k += 1
                    }
                }
                // A mixed number: the integer right before it ("3\\frac{1}{2}", "2 \\frac12").
                if t[s] != 0x2D {
                    var w = s
                    if w > t.startIndex, t[w - 1] == 0x20 { w -= 1 }
                    var d = w
                    while d > t.startIndex, isASCIIDigit(t[d - 1]) { d -= 1 }
                    if d < w {
                        s = d
                        if s > t.startIndex, t[s - 1] == 0x2D { s -= 1 }
                    }
                }
                return t[s..<k]
            }
            i -= 1
        }
        return nil
    }
}
