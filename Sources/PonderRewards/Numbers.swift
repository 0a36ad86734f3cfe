// Exact rationals where they fit in 64 bits (so 1/3 stays 1/3), doubles beyond, and the small
// arithmetic grammar final answers are written in.

struct Q: Equatable, Sendable {
    var n: Int64
    var d: Int64  // > 0, coprime with n

    static func make(_ n: Int64, _ d: Int64) -> Q? {
        guard d != 0, n != .min, d != .min else { return nil }
        var n = n, d = d
        if d < 0 { n = -n; d = -d }
        let g = gcd(n.magnitude, d.magnitude)
        return Q(n: n / Int64(g), d: d / Int64(g))
    }

    static func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var a = a, b = b
        while b != 0 { (a, b) = (b, a % b) }
        return max(a, 1)
    }

    static func mul(_ a: Int64, _ b: Int64) -> Int64? {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        return o ? nil : r
    }

    static func add(_ a: Int64, _ b: Int64) -> Int64? {
        let (r, o) = a.addingReportingOverflow(b)
        return o ? nil : r
    }

    static func + (a: Q, b: Q) -> Q? {
        guard let x = mul(a.n, b.d), let y = mul(b.n, a.d), let s = add(x, y), let d = mul(a.d, b.d) else { return nil }
        return make(s, d)
    }

    static func * (a: Q, b: Q) -> Q? {
        guard let n = mul(a.n, b.n), let d = mul(a.d, b.d) else { return nil }
        return make(n, d)
    }

    var negated: Q? { n == .min ? nil : Q(n: -n, d: d) }
    var inverse: Q? { n == 0 ? nil : Q.make(d, n) }
    var double: Double { Double(n) / Double(d) }
}

/// A value with an exact form when it has one.
struct Exact: Sendable {
    var q: Q?
    var x: Double

    init(_ q: Q) { self.q = q; x = q.double }
    init(approx x: Double) { q = nil; self.x = x }

    static func + (a: Exact, b: Exact) -> Exact {
        if let p = a.q, let r = b.q, let s = p + r { return Exact(s) }
        return Exact(approx: a.x + b.x)
    }
    static func * (a: Exact, b: Exact) -> Exact {
        if let p = a.q, let r = b.q, let s = p * r { return Exact(s) }
        return Exact(approx: a.x * b.x)
    }
    var negated: Exact { q.flatMap(\.negated).map(Exact.init) ?? Exact(approx: -x) }
    var inverse: Exact? {
        if let q { return q.inverse.map(Exact.init) }
        return x == 0 ? nil : Exact(approx: 1 / x)
    }
}

/// A number as written: its value, whether a decimal point appeared (math-verify then compares
/// rounded to 6 decimals), and whether it was a percentage.
struct Num: Sendable {
    var value: Exact
    var isFloat: Bool
    var percent = false

    var isInteger: Bool { !isFloat && value.q?.d == 1 }
    var effective: Exact { percent ? value * Exact(Q(n: 1, d: 100)) : value }

    var text: String {
        let body: String
        if isFloat {
            body = "\(value.x)"
        } else if let q = value.q {
            body = q.d == 1 ? "\(q.n)" : "\(q.n)/\(q.d)"
        } else {
            body = "\(value.x)"
        }
        return body + (percent ? "%" : "")
    }

    /// math-verify's sympy_numeric_eq: with a float on either side, both rounded to 6 decimals;
    /// two integers (a percentage's number included: 9% == 9) compared as written; else exactly.
    func equals(_ o: Num) -> Bool {
        if isFloat || o.isFloat { return Num.micro(effective) == Num.micro(o.effective) }
        if isInteger && o.isInteger { return value.q == o.value.q }
        let a = effective, b = o.effective
        if let p = a.q, let r = b.q { return p == r }
        return a.x == b.x
    }

    /// The value in millionths, rounded half away from zero.
    static func micro(_ v: Exact) -> Double {
        if let q = v.q, let m = Q.mul(q.n, 1_000_000) {
            let (quo, rem) = m.quotientAndRemainder(dividingBy: q.d)
            var r = quo
            if rem.magnitude * 2 >= UInt64(q.d) { r += m < 0 ? -1 : 1 }
            return Double(r)
        }
        return (v.x * 1e6).rounded(.toNearestOrAwayFromZero)
    }

    var key: String {
        let m = Num.micro(value)
        guard m.magnitude < 9e15 else { return "\(value.x)" }
        let i = Int64(m)
        let sign = i < 0 ? "-" : ""
        let a = i.magnitude
        var frac = String(a % 1_000_000)
        frac = String(repeating: "0", count: 6 - frac.count) + frac
        while frac.hasSuffix("0") { frac.removeLast() }
        return sign + String(a / 1_000_000) + (frac.isEmpty ? "" : "." + frac)
    }
}

/// expr := term (± term)*; term := factor ((*|/) factor)*; factor := ±factor | power;
/// power := primary (^ exponent)?; primary := number | (expr) | {expr} | \frac a b | \sqrt a.
/// An integer followed by \frac is a mixed number: 2\frac{1}{2} = 5/2.
struct NumberParser {
    let t: Scalars
    var i = 0
    var depth = 0
    var sawDecimal = false

    static func parse(_ s: String) -> Num? {
        var p = NumberParser(t: scalars(s))
        guard let v = p.expr() else { return nil }
        p.skip()
        guard p.i == p.t.count, v.x.isFinite else { return nil }
        return Num(value: v, isFloat: p.sawDecimal)
    }

    mutating func skip() { while i < t.count, isSpace(t[i]) { i += 1 } }

    mutating func eat(_ c: UInt32) -> Bool {
        skip()
        if i < t.count, t[i] == c { i += 1; return true }
        return false
    }

    mutating func command(_ name: String) -> Bool {
        skip()
        let p = scalars(name)
        guard Answers.matches(p, t[...], at: i), i + p.count >= t.count || !isASCIILetter(t[i + p.count]) else { return false }
        i += p.count
        return true
    }

    mutating func expr() -> Exact? {
        depth += 1
        defer { depth -= 1 }
        guard depth < 32, var v = term() else { return nil }
        while true {
            if eat(0x2B) { guard let r = term() else { return nil }; v = v + r }
            else if eat(0x2D) { guard let r = term() else { return nil }; v = v + r.negated }
            else { return v }
        }
    }

    mutating func term() -> Exact? {
        guard var v = factor() else { return nil }
        while true {
            if eat(0x2A) { guard let r = factor() else { return nil }; v = v * r }
            else if eat(0x2F) { guard let r = factor()?.inverse else { return nil }; v = v * r }
            else { return v }
        }
    }

    mutating func factor() -> Exact? {
        depth += 1
        defer { depth -= 1 }
        guard depth < 64 else { return nil }
        if eat(0x2B) { return factor() }
        if eat(0x2D) { return factor()?.negated }
        return power()
    }

    mutating func power() -> Exact? {
        guard let base = primary() else { return nil }
        guard eat(0x5E) else { return base }
        let e: Exact?
        if eat(0x7B) {
            e = expr()
            guard eat(0x7D) else { return nil }
        } else {
            skip()
            guard i < t.count, isASCIIDigit(t[i]) else { return nil }
            e = Exact(Q(n: Int64(t[i] - 0x30), d: 1))
            i += 1
        }
        guard let q = e?.q, q.d == 1, q.n.magnitude <= 64 else { return nil }
        var r = Exact(Q(n: 1, d: 1))
        for _ in 0..<q.n.magnitude { r = r * base }
        return q.n < 0 ? r.inverse : r
    }

    mutating func primary() -> Exact? {
        skip()
        guard i < t.count else { return nil }
        let c = t[i]
        if isASCIIDigit(c) || c == 0x2E {
            guard let (n, integral) = literal() else { return nil }
            // A mixed number: an integer directly followed by \frac of integers.
            let save = i
            if integral, command("\\frac"), let a = argument(), let b = argument(), let fa = a.q, let fb = b.q,
               fa.d == 1, fb.d == 1, fa.n >= 0, fb.n > 0, let f = Q.make(fa.n, fb.n) {
                return n + Exact(f)
            }
            i = save
            return n
        }
        if eat(0x28) {
            guard let v = expr(), eat(0x29) else { return nil }
            return v
        }
        if eat(0x7B) {
            guard let v = expr(), eat(0x7D) else { return nil }
            return v
        }
        if command("\\frac") {
            guard let a = argument(), let b = argument(), let inv = b.inverse else { return nil }
            return a * inv
        }
        if command("\\sqrt") {
            guard let a = argument(), let q = a.q, let n = isqrt(q.n), let d = isqrt(q.d) else { return nil }
            return Exact(Q(n: n, d: d))
        }
        return nil
    }

    /// A brace group or a single digit (\frac12).
    mutating func argument() -> Exact? {
        skip()
        guard i < t.count else { return nil }
        if t[i] == 0x7B {
            i += 1
            guard let v = expr(), eat(0x7D) else { return nil }
            return v
        }
        guard isASCIIDigit(t[i]) else { return nil }
        i += 1
        return Exact(Q(n: Int64(t[i - 1] - 0x30), d: 1))
    }

    /// Digits with thousands separators ("1,234,567", "1 234") and decimals; the flag says
    /// whether it is an integer.
    mutating func literal() -> (Exact, Bool)? {
        var digits: [UInt32] = []
        while i < t.count, isASCIIDigit(t[i]) { digits.append(t[i]); i += 1 }
        let first = digits.count
        if first >= 1 && first <= 3 {
            while i + 3 < t.count, t[i] == 0x2C || t[i] == 0x20,
                  isASCIIDigit(t[i + 1]), isASCIIDigit(t[i + 2]), isASCIIDigit(t[i + 3]),
                  i + 4 >= t.count || !isASCIIDigit(t[i + 4]) {
                digits.append(contentsOf: t[(i + 1)...(i + 3)])
                i += 4
            }
        }
        var fraction: [UInt32] = []
        if i < t.count, t[i] == 0x2E, i + 1 < t.count, isASCIIDigit(t[i + 1]) {
            i += 1
            while i < t.count, isASCIIDigit(t[i]) { fraction.append(t[i]); i += 1 }
            sawDecimal = true
        }
        guard !digits.isEmpty || !fraction.isEmpty else { return nil }
        let all = digits + fraction
        var n: Int64? = 0
        for d in all { n = n.flatMap { Q.mul($0, 10) }.flatMap { Q.add($0, Int64(d - 0x30)) } }
        var den: Int64? = 1
        for _ in fraction { den = den.flatMap { Q.mul($0, 10) } }
        if let n, let den, let q = Q.make(n, den) { return (Exact(q), fraction.isEmpty) }
        let text = string(digits[...]) + (fraction.isEmpty ? "" : "." + string(fraction[...]))
        guard let x = Double(text) else { return nil }
        return (Exact(approx: x), fraction.isEmpty)
    }

    func isqrt(_ v: Int64) -> Int64? {
        guard v >= 0 else { return nil }
        var r = Int64(Double(v).squareRoot())
        while r > 0, Q.mul(r, r).map({ $0 > v }) ?? true { r -= 1 }
        while let s = Q.mul(r + 1, r + 1), s <= v { r += 1 }
        return r * r == v ? r : nil
    }
}
