#if canImport(Glibc)
import Glibc
#endif

/// The paper's four reflection dimensions, in its order.
public enum ReflectionDimension: Int, CaseIterable, Sendable {
    case backtracking, verification, subgoals, backwardChaining

    public var name: String {
        switch self {
        case .backtracking: return "backtracking"
        case .verification: return "verification"
        case .subgoals: return "subgoals"
        case .backwardChaining: return "backward_chaining"
        }
    }
}

// MARK: - The paper's patterns, hand-translated

// The published reward (Red-Scarff/GRPO_reflection, open-r1/src/open_r1/rewards.py, the newest
// `reflection_reward`) compiles one verbose alternation per dimension and runs `findall` on the
// lower-cased completion:
//   backtracking  \b(backtrack|error|fix|mistake)\b | re-eval(uate|ation)\b | (flawed|incorrect)\s+(approach|step)
//   verification  \b(verify|check|confirm|test)\b | (cross|re)-?val(idate|idation)\b |
//                 (unit|dimension)\s+analysis | (edge\s+case|boundary)\s+check
//   subgoals      \b(step|stage|phase|subtask)\b | decompose\sin(to)?\s+\d+ |
//                 (milestone|checkpoint)\s+\d+ | track\sprogress\s(at|on)
//   backward      \b(target|goal|required)\b | work(ing)?\sbackwards\b | reverse\s(engineer|logic) |
//                 deduce\sfrom\s(final|outcome)
// Each function below returns where the first alternative that matches at `i` ends, as Python's
// backtracking engine would; none of these patterns can match the empty string. No optional part
// can be given back usefully (each is followed by something it cannot start with), so greedy
// matching without backtracking finds the same matches.

private struct Matcher {
    let t: Scalars

    @inline(__always) func boundary(_ i: Int) -> Bool {
        let before = i > 0 && isWord(t[i - 1])
        let after = i < t.count && isWord(t[i])
        return before != after
    }

    @inline(__always) func lit(_ s: StaticString, _ i: Int) -> Int? {
        let n = s.utf8CodeUnitCount
        guard i + n <= t.count else { return nil }
        let p = s.utf8Start
        for k in 0..<n where t[i + k] != UInt32(p[k]) { return nil }
        return i + n
    }

    /// The first of `words` that matches at i.
    @inline(__always) func any(_ words: [StaticString], _ i: Int) -> Int? {
        for w in words { if let e = lit(w, i) { return e } }
        return nil
    }

    /// \b(w1|w2|...)\b
    func wholeWord(_ words: [StaticString], _ i: Int) -> Int? {
        guard boundary(i) else { return nil }
        for w in words { if let e = lit(w, i), boundary(e) { return e } }
        return nil
    }

    func spaces(_ i: Int, atLeast: Int) -> Int? {
        var j = i
        while j < t.count, isSpace(t[j]) { j += 1 }
        return j - i >= atLeast ? j : nil
    }

    func oneSpace(_ i: Int) -> Int? { i < t.count && isSpace(t[i]) ? i + 1 : nil }

    func digits(_ i: Int) -> Int? {
        var j = i
        while j < t.count, isDecimal(t[j]) { j += 1 }
        return j > i ? j : nil
    }

    func backtracking(_ i: Int) -> Int? {
        if let e = wholeWord(["backtrack", "error", "fix", "mistake"], i) { return e }
        if let e = lit("re-eval", i) {
            if let f = lit("uate", e), boundary(f) { return f }
            if let f = lit("ation", e), boundary(f) { return f }
        }
        if let e = any(["flawed", "incorrect"], i), let s = spaces(e, atLeast: 1), let f = any(["approach", "step"], s) {
            return f
        }
        return nil
    }

    func verification(_ i: Int) -> Int? {
        if let e = wholeWord(["verify", "check", "confirm", "test"], i) { return e }
        if var e = any(["cross", "re"], i) {
            if e < t.count, t[e] == 0x2D { e += 1 }
            if let v = lit("val", e) {
                if let f = lit("idate", v), boundary(f) { return f }
                if let f = lit("idation", v), boundary(f) { return f }
            }
        }
        if let e = any(["unit", "dimension"], i), let s = spaces(e, atLeast: 1), let f = lit("analysis", s) { return f }
        var head: Int? = nil
        if let e = lit("edge", i), let s = spaces(e, atLeast: 1), let c = lit("case", s) { head = c }
        if let e = head, let s = spaces(e, atLeast: 1), let f = lit("check", s) { return f }
        if let e = lit("boundary", i), let s = spaces(e, atLeast: 1), let f = lit("check", s) { return f }
        return nil
    }

    func subgoals(_ i: Int) -> Int? {
        if let e = wholeWord(["step", "stage", "phase", "subtask"], i) { return e }
        if let e = lit("decompose", i), let s = oneSpace(e), var n = lit("in", s) {
            if let to = lit("to", n), let sp = spaces(to, atLeast: 1), let d = digits(sp) { return d }
            n = s + 2
            if let sp = spaces(n, atLeast: 1), let d = digits(sp) { return d }
        }
        if let e = any(["milestone", "checkpoint"], i), let s = spaces(e, atLeast: 1), let d = digits(s) { return d }
        if let e = lit("track", i), let s = oneSpace(e), let p = lit("progress", s), let s2 = oneSpace(p),
           let f = any(["at", "on"], s2) {
            return f
        }
        return nil
    }

    func backwardChaining(_ i: Int) -> Int? {
        if let e = wholeWord(["target", "goal", "required"], i) { return e }
        if var e = lit("work", i) {
            if let g = lit("ing", e) { e = g }
            if let s = oneSpace(e), let b = lit("backwards", s), boundary(b) { return b }
        }
        if let e = lit("reverse", i), let s = oneSpace(e), let f = any(["engineer", "logic"], s) { return f }
        if let e = lit("deduce", i), let s = oneSpace(e), let f = lit("from", s), let s2 = oneSpace(f),
           let g = any(["final", "outcome"], s2) {
            return g
        }
        return nil
    }

    func match(_ d: ReflectionDimension, _ i: Int) -> Int? {
        switch d {
        case .backtracking: return backtracking(i)
        case .verification: return verification(i)
        case .subgoals: return subgoals(i)
        case .backwardChaining: return backwardChaining(i)
        }
    }

    /// Bit d of `firstLetters[c]`: some alternative of dimension d starts with the ASCII scalar c.
    /// Every alternative starts with an ASCII letter, so a position whose scalar has no bit set
    /// cannot start a match: one table lookup skips it (most of any text) instead of trying each
    /// alternative with its word-boundary checks.
    static let firstLetters: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 128)
        for (d, letters) in ["befmri", "vctrudeb", "spdmct", "tgrwd"].enumerated() {
            for c in letters.unicodeScalars { table[Int(c.value)] |= 1 << d }
        }
        return table
    }()

    /// `len(re.findall(pattern, text))`: leftmost matches, left to right, without overlap.
    func count(_ d: ReflectionDimension) -> Int {
        let bit = UInt8(1) << d.rawValue, first = Matcher.firstLetters
        var n = 0, i = 0
        while i < t.count {
            if t[i] < 128 && first[Int(t[i])] & bit != 0, let e = match(d, i) {
                n += 1
                i = e
            } else {
                i += 1
            }
        }
        return n
    }
}

/// Matches of each dimension's published pattern in `text`, after Python's `lower()`.
public func reflectionMatchCounts(_ text: String) -> [Int] {
    let m = Matcher(t: lowercased(text))
    return ReflectionDimension.allCases.map { m.count($0) }
}

/// The paper's squashing of per-dimension counts: the i-th match of a dimension adds
/// 0.5/(1 + (i−1)/2.5); raw = the sum; c = 0.8·ln(1 + raw); reward = 1 − 1/(1 + c^1.2), rounded
/// to 2 decimals as Python's round() does. Same operation order as the published code, so the
/// same double comes out.
public func paperReflectionValue(counts: [Int]) -> Double {
    var raw = 0.0
    for c in counts where c > 0 {
        var d = 0.0
        for i in 1...c { d += 0.5 * (1 / (1 + Double(i - 1) / 2.5)) }
        raw += d
    }
    let c = 0.8 * log1p(raw)
    return roundHalfEven2(1 - 1 / (1 + pow(c, 1.2)))
}

// MARK: - Guarded mode

/// A sentence of the reasoning: split at . ! ? ; followed by whitespace or the end, and at line
/// breaks, so "3.5" stays whole.
func sentences(_ t: Scalars) -> [Scalars.SubSequence] {
    var out: [Scalars.SubSequence] = []
    var start = 0
    var i = 0
    func emit(_ end: Int) {
        var a = start, b = end
        while a < b, isSpace(t[a]) { a += 1 }
        while b > a, isSpace(t[b - 1]) { b -= 1 }
        if b > a { out.append(t[a..<b]) }
    }
    while i < t.count {
        let c = t[i]
        if c == 0x0A || c == 0x0D {
            emit(i)
            start = i + 1
        } else if (c == 0x2E || c == 0x21 || c == 0x3F || c == 0x3B) && (i + 1 == t.count || isSpace(t[i + 1])) {
            emit(i + 1)
            start = i + 1
        }
        i += 1
    }
    emit(t.count)
    return out
}

struct GuardedReflection {
    /// Per dimension, the equations that counted ("84 / 7 = 12").
    var counted = [[String]](repeating: [], count: 4)
    var counts: [Int] { counted.map(\.count) }
    var ignored: [IgnoredCheck: Int] = [:]
    /// Share of sentences that repeat an earlier one, or of repeated word n-grams (the larger).
    var repetition = 0.0
    /// A sentence with a reflection keyword appears twice: the reflection is void.
    var repeatedReflection = false
    /// A counted backtrack corrected the final answer.
    var corrected = false
}

/// The four dimensions counted in `think` (already lower-cased). A sentence with a keyword of a
/// dimension (at most two keywords: more is a pasted list; a reflective sentence written twice
/// voids the reward) counts when an equation in it — or in the next sentence, when it has none
/// and that one has no keyword ("Let me check. 84 / 7 = 12.") — holds, is not an identity, and
/// involves only the problem's quantities (ProblemQuantities), and then:
///   verification       it is not the derivation written again; counts once per set of quantities;
///   backtracking       an earlier sentence gave the same computation a different, wrong result;
///                      counts once per corrected quantity;
///   subgoals           it computes a quantity the answer is built from; once per quantity;
///   backward chaining  it involves the final answer; once.
/// `answerCorrect` says whether a correction of the final answer earns the bonus.
func guardedReflection(_ think: Scalars, ngram: Int, finalAnswer: ParsedAnswer?, answerCorrect: Bool,
                       question: String?) -> GuardedReflection {
    let sents = sentences(think)
    let eqs = sents.map { equations(in: $0) }
    let problem = ProblemQuantities(question: question, answer: finalAnswer, equations: Array(eqs.joined()))
    let keywords: [[Int]] = sents.map { s in
        let m = Matcher(t: Scalars(s))
        return ReflectionDimension.allCases.map { m.count($0) }
    }
    var g = GuardedReflection()
    var seen = Set<[UInt32]>()
    var keys = [Set<String>](repeating: [], count: 4)
    var written = Set<String>()
    var wrong: [String: Set<String>] = [:]
    for (k, s) in sents.enumerated() {
        defer {
            for eq in eqs[k] {
                guard let c = eq.computation else { continue }
                written.insert(c.key)
                if !eq.holds { wrong[c.operandsKey, default: []].insert(c.result) }
            }
        }
        let per = keywords[k]
        let reflective = per.contains { $0 > 0 }
        guard seen.insert(normalizedSentence(s)).inserted else {
            if reflective { g.repeatedReflection = true }
            continue
        }
        guard reflective, per.reduce(0, +) <= 2 else { continue }
        var candidates = eqs[k]
        if candidates.isEmpty, k + 1 < sents.count, !keywords[k + 1].contains(where: { $0 > 0 }) { candidates = eqs[k + 1] }
        for d in ReflectionDimension.allCases where per[d.rawValue] > 0 {
            // The first equation that checks something new for this dimension counts; else the
            // last reason an equation gave (or `keyword`, with none) is what the reason reports.
            var why = IgnoredCheck.keyword
            var hit: (key: String, text: String, result: String?)? = nil
            for eq in candidates {
                switch judge(d, eq, problem, written: written, wrong: wrong) {
                case .ignored(let reason): why = reason
                case .counts(let key, _) where keys[d.rawValue].contains(key): why = .repeated
                case .counts(let key, let result): hit = (key, eq.text, result)
                }
                if hit != nil { break }
            }
            guard let hit else {
                g.ignored[why, default: 0] += 1
                continue
            }
            keys[d.rawValue].insert(hit.key)
            g.counted[d.rawValue].append(hit.text)
            if d == .backtracking, answerCorrect, hit.result != nil, hit.result == problem.answer { g.corrected = true }
        }
    }
    let dup = sents.isEmpty ? 0 : 1 - Double(seen.count) / Double(sents.count)
    g.repetition = max(dup, repeatedNgramFraction(words(think[...]), n: ngram))
    return g
}

private enum CheckVerdict {
    /// Counts, under this key (a dimension counts each key once), with the result it gave.
    case counts(key: String, result: String?)
    case ignored(IgnoredCheck)
}

/// What one equation near a keyword of dimension `d` checks. `written`: the computations of the
/// sentences before ("7,12=84"); `wrong`: the results they gave that did not hold, by operands.
private func judge(_ d: ReflectionDimension, _ eq: Equation, _ problem: ProblemQuantities, written: Set<String>,
                   wrong: [String: Set<String>]) -> CheckVerdict {
    if !eq.holds { return .ignored(.false) }
    if eq.isIdentity { return .ignored(.identity) }
    if !problem.contains(eq) { return .ignored(.unrelated) }
    let c = eq.computation
    switch d {
    case .verification:
        if let c, written.contains(c.key) { return .ignored(.restated) }
        return .counts(key: eq.quantities.sorted().joined(separator: ","), result: c?.result)
    case .backtracking:
        guard let c, let was = wrong[c.operandsKey], was.contains(where: { $0 != c.result }) else {
            return .ignored(.nothingCorrected)
        }
        return .counts(key: c.result, result: c.result)
    case .subgoals:
        guard let c else { return .ignored(.unrelated) }
        return .counts(key: c.result, result: c.result)
    case .backwardChaining:
        guard let a = problem.answer, eq.quantities.contains(a) else { return .ignored(.notTheAnswer) }
        return .counts(key: "answer", result: nil)
    }
}

private func normalizedSentence(_ s: Scalars.SubSequence) -> [UInt32] {
    var out: [UInt32] = []
    var space = false
    for c in s {
        if isSpace(c) { space = true; continue }
        if space, !out.isEmpty { out.append(0x20) }
        space = false
        out.append(c)
    }
    return out
}
