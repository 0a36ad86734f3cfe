#if canImport(Glibc)
import Glibc
#endif

// What a reflective sentence checks (guarded reflection): the equations it writes, whether they
// hold, and whether they bear on the problem. A check that checks nothing — an identity, true
// arithmetic on numbers the problem does not have, a false equation, the derivation restated —
// must not pay, or GRPO teaches a policy to append trivia (issue 28's farms). docs/CONFIG.md
// states the rules; RewardTests.testGuardedChecksTable walks a table of farmed and genuine checks.

/// A number as a key for comparison: its magnitude rounded to millionths ("84", "0.5"), so the
/// 12 of "12 * 7" and the 12.0 of "= 12.0" are the same quantity.
func quantityKey(_ v: Exact) -> String {
    let m = v.q.flatMap { $0.n < 0 ? $0.negated : $0 }.map(Exact.init) ?? Exact(approx: abs(v.x))
    return Num(value: m, isFloat: false).key
}

/// The keys of every number literal in `t` ("1,200", "3.5", "$18"), left to right.
func numberKeys(_ t: Scalars.SubSequence) -> [String] {
    var p = NumberParser(t: Array(t))
    var out: [String] = []
    while p.i < p.t.count {
        guard isASCIIDigit(p.t[p.i]) else { p.i += 1; continue }
        let start = p.i
        if let (v, _) = p.literal() { out.append(quantityKey(v)) }
        if p.i == start { p.i += 1 }
    }
    return out
}

/// One side of a written equation.
struct EquationSide {
    var value: Exact
    var numbers: [String]
    /// An operation on this side ("84 / 7"), not just a number.
    var computed: Bool
    /// Decimals written when the side is one decimal number ("3.33": 2): the rounding it allows.
    var decimals: Int
    var text: String
}

/// What a computed side is said to give: "84 / 7 = 12" → operands ["7", "84"], result "12".
struct Computation {
    let operands: [String]
    let result: String
    /// The operands alone ("7,84"): the same computation, whatever result is written.
    var operandsKey: String { operands.joined(separator: ",") }
    /// The computation with its result ("7,84=12"): the same equation written again.
    var key: String { operandsKey + "=" + result }
}

/// "lhs = rhs" as written in a sentence, both sides parsed by the answer grammar.
struct Equation {
    let lhs: EquationSide
    let rhs: EquationSide
    /// Every number on either side, as keys.
    let quantities: Set<String>

    init(lhs: EquationSide, rhs: EquationSide) {
        self.lhs = lhs
        self.rhs = rhs
        quantities = Set(lhs.numbers).union(rhs.numbers)
    }

    var text: String { lhs.text + " = " + rhs.text }

    /// Both sides agree: exactly, or within the rounding a written decimal allows ("10 / 3 = 3.33").
    var holds: Bool {
        if let a = lhs.value.q, let b = rhs.value.q, a == b { return true }
        let d = max(lhs.computed ? 0 : lhs.decimals, rhs.computed ? 0 : rhs.decimals)
        let tol = d > 0 ? 0.5 * pow(10, -Double(d)) + 1e-12 : 1e-9 * max(1, abs(lhs.value.x))
        return abs(lhs.value.x - rhs.value.x) <= tol
    }

    /// Nothing computed ("84 = 84", "1 = 2"), or fewer than two quantities besides 0 and 1
    /// ("84 * 1 = 84", "84 - 84 = 0", "1 + 1 = 2").
    var isIdentity: Bool {
        (!lhs.computed && !rhs.computed) || quantities.subtracting(["0", "1"]).count < 2
    }

    /// The computed side and the plain number it is said to give; nil when neither or both sides
    /// are plain numbers.
    var computation: Computation? {
        if lhs.computed && !rhs.computed, rhs.numbers.count == 1 { return Computation(operands: lhs.numbers.sorted(), result: rhs.numbers[0]) }
        if rhs.computed && !lhs.computed, lhs.numbers.count == 1 { return Computation(operands: rhs.numbers.sorted(), result: lhs.numbers[0]) }
        return nil
    }
}

// MARK: - Finding equations in a sentence

/// Each side of an "=" is read at most this far: an equation is a few tokens, and a bound keeps
/// scoring linear in the text whatever it holds.
private let maxSideLength = 96

/// The sentence with operators and currency spelled as the answer normaliser spells them
/// (Normalizer.operatorSpellings: "×", "\\times", "÷", "\\div", "−", …; currency signs dropped),
/// and an "x" between numbers ("12 x 7") read as multiplication.
private func arithmeticSpelling(_ s: Scalars.SubSequence) -> Scalars {
    var text = string(s)
    for (a, b) in Normalizer.operatorSpellings where text.contains(a) { text = text.replacing(a, with: b) }
    for c in Normalizer.currencySigns where text.contains(c) { text = text.replacing(c, with: "") }
    var t = scalars(text)
    func digit(from i: Int, step: Int) -> Bool {
        var j = i + step
        while j >= 0, j < t.count, t[j] == 0x20 { j += step }
        return j >= 0 && j < t.count && isASCIIDigit(t[j])
    }
    for i in t.indices where t[i] == 0x78 && digit(from: i, step: -1) && digit(from: i, step: 1) { t[i] = 0x2A }
    return t
}

@inline(__always) private func isExpressionScalar(_ c: UInt32) -> Bool {
    isASCIIDigit(c) || c == 0x20 || c == 0x09 || c == 0x2E || c == 0x2C || c == 0x2B || c == 0x2D || c == 0x2A
        || c == 0x2F || c == 0x28 || c == 0x29 || c == 0x5E || c == 0x7B || c == 0x7D
}

/// The longest arithmetic expression that ends where `t` ends (fromEnd) or starts where it
/// starts: tried at each word boundary, longest first, so "So 36 + 17" gives "36 + 17" and
/// "12, carry 1" gives "12".
private func side(_ t: ArraySlice<UInt32>, fromEnd: Bool) -> EquationSide? {
    var cuts: [Int] = []
    if fromEnd {
        cuts.append(t.startIndex)
        for k in t.indices where t[k] == 0x20 && k + 1 < t.endIndex { cuts.append(k + 1) }
    } else {
        cuts.append(t.endIndex)
        for k in t.indices.reversed() where t[k] == 0x20 && k > t.startIndex { cuts.append(k) }
    }
    for cut in cuts {
        var piece = fromEnd ? t[cut...] : t[..<cut]
        while let l = piece.last, l == 0x20 || l == 0x2E || l == 0x2C { piece = piece.dropLast() }
        while let f = piece.first, f == 0x20 { piece = piece.dropFirst() }
        guard let f = piece.first, isASCIIDigit(f) || f == 0x28 || f == 0x2D || f == 0x2E || f == 0x7B else { continue }
        let text = string(piece)
        guard let n = NumberParser.parse(text) else { continue }
        let numbers = numberKeys(piece)
        guard !numbers.isEmpty else { continue }
        let computed = piece.dropFirst().contains { $0 == 0x2B || $0 == 0x2D || $0 == 0x2A || $0 == 0x2F || $0 == 0x5E }
        var decimals = 0
        if !computed, let dot = piece.firstIndex(of: 0x2E) { decimals = piece.distance(from: dot, to: piece.endIndex) - 1 }
        return EquationSide(value: n.value, numbers: numbers, computed: computed, decimals: decimals, text: text)
    }
    return nil
}

/// The equations a sentence writes: for each "=" (not part of "<=", ">=", "!=", "=="), the
/// arithmetic right before it and right after it. "a = b = c" gives a = b and b = c.
func equations(in sentence: Scalars.SubSequence) -> [Equation] {
    let t = arithmeticSpelling(sentence)
    var out: [Equation] = []
    for e in t.indices where t[e] == 0x3D {
        if e > 0, [0x3C, 0x3E, 0x21, 0x3D].contains(t[e - 1]) { continue }
        if e + 1 < t.count, t[e + 1] == 0x3D { continue }
        var a = e
        while a > 0, e - a < maxSideLength, isExpressionScalar(t[a - 1]) { a -= 1 }
        var b = e + 1
        while b < t.count, b - e <= maxSideLength, isExpressionScalar(t[b]) { b += 1 }
        guard let lhs = side(t[a..<e], fromEnd: true), let rhs = side(t[(e + 1)..<b], fromEnd: false) else { continue }
        out.append(Equation(lhs: lhs, rhs: rhs))
    }
    return out
}

// MARK: - The problem's quantities

/// The numbers a check may involve to bear on the problem: the question's numbers, and the
/// final answer with everything it was derived from — the first true equation that gives the
/// answer supplies its operands, and each operand that is not the question's own is in turn
/// derived by the first true equation *before* the one that used it. A number the reasoning
/// introduces on the side ("1 + 1 = 2" next to "12 * 7 = 84"), or a second route to a number it
/// already had ("80 + 4 = 84", "3 + 4 = 7" for the question's 7), is none of these.
struct ProblemQuantities {
    var keys: Set<String>
    let answer: String?

    /// `equations` in the order they are written.
    init(question: String?, answer: ParsedAnswer?, equations: [Equation]) {
        let given = Set(question.map { numberKeys(scalars($0)[...]) } ?? [])
        keys = given
        if case .number(let n)? = answer?.value { self.answer = quantityKey(n.value) } else { self.answer = nil }
        guard let root = self.answer else { return }
        // The first true equation giving each value, with where it is written.
        var first: [String: (at: Int, operands: [String])] = [:]
        for (at, eq) in equations.enumerated() where eq.holds {
            if let c = eq.computation, first[c.result] == nil { first[c.result] = (at, c.operands) }
        }
        keys.insert(root)
        var pending: [(key: String, before: Int)] = [(root, equations.count)]
        var expanded = Set<String>()
        while let (k, before) = pending.popLast() {
            guard !given.contains(k) || k == root, expanded.insert(k).inserted, let d = first[k], d.at < before else { continue }
            for o in d.operands {
                keys.insert(o)
                pending.append((o, d.at))
            }
        }
    }

    func contains(_ eq: Equation) -> Bool { eq.quantities.isSubset(of: keys) }
}

/// Why a reflective sentence's equation was not counted.
enum IgnoredCheck: String, CaseIterable {
    /// A keyword with no equation near it ("Let me verify.").
    case keyword
    case identity
    /// True arithmetic on numbers the problem does not have.
    case unrelated
    case `false`
    /// The derivation written again ("Check: 12 * 7 = 84" after "12 * 7 = 84").
    case restated
    /// Quantities a counted check of the same dimension already covered.
    case repeated
    /// A backtrack with no earlier wrong result for the same computation.
    case nothingCorrected = "nothing_corrected"
    /// Backward chaining whose equation does not involve the quantity asked for.
    case notTheAnswer = "not_the_answer"
}
