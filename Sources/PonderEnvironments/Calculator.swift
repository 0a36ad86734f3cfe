import PonderBase
import PonderJSON

/// Exact arithmetic on what a model writes inside <tool>…</tool>: numbers (integers and
/// decimals), + − × ÷ (also - * / and the Unicode signs), parentheses and unary signs. Values are
/// fractions of 64-bit integers, so "0.1 + 0.2" is 0.3 and "7 / 2 * 2" is 7; anything that would
/// overflow, a division by zero or a malformed expression is an error with the offset, never a
/// trap. Nothing is evaluated but this grammar (no eval).
public enum Calculator {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// An exact value: num / den, den > 0, in lowest terms.
    public struct Fraction: Equatable, CustomStringConvertible {
        public var num: Int64, den: Int64

        init(_ n: Int64, _ d: Int64 = 1) throws {
            guard d != 0 else { throw Failure(message: "division by zero") }
            // Negating Int64.min overflows: such values are out of range.
            guard n != .min, d != .min else { throw Failure(message: "number too large") }
            var (n, d) = d < 0 ? (-n, -d) : (n, d)
            let g = gcd(n.magnitude, d.magnitude)
            if g > 1 { n /= Int64(g); d /= Int64(g) }
            (num, den) = (n, d)
        }

        static func checked(_ r: (partialValue: Int64, overflow: Bool)) throws -> Int64 {
            guard !r.overflow else { throw Failure(message: "number too large") }
            return r.partialValue
        }

        static func + (a: Fraction, b: Fraction) throws -> Fraction {
            let l = try checked(a.num.multipliedReportingOverflow(by: b.den)), r = try checked(b.num.multipliedReportingOverflow(by: a.den))
            return try Fraction(try checked(l.addingReportingOverflow(r)), try checked(a.den.multipliedReportingOverflow(by: b.den)))
        }
        static func * (a: Fraction, b: Fraction) throws -> Fraction {
            try Fraction(try checked(a.num.multipliedReportingOverflow(by: b.num)), try checked(a.den.multipliedReportingOverflow(by: b.den)))
        }
        func negated() throws -> Fraction { try Fraction(-num, den) }
        func inverse() throws -> Fraction { try Fraction(den, num) }

        /// An integer as digits; a fraction as its decimal expansion when it ends within 12
        /// places, else rounded to 6 places.
        public var description: String {
            if den == 1 { return String(num) }
            var d = den
            while d % 2 == 0 { d /= 2 }
            while d % 5 == 0 { d /= 5 }
            let places = d == 1 ? 12 : 6
            let neg = num < 0
            var q = num.magnitude / den.magnitude, rem = num.magnitude % den.magnitude
            var digits: [UInt8] = []
            for _ in 0..<places {
                let (hi, lo) = rem.multipliedFullWidth(by: 10)
                let (qq, rr) = den.magnitude.dividingFullWidth((hi, lo))
                digits.append(UInt8(qq))
                rem = rr
            }
            // Round half up on the next digit when the expansion is cut.
            if d != 1 && rem.multipliedReportingOverflow(by: 2).partialValue >= den.magnitude && !rem.multipliedReportingOverflow(by: 2).overflow {
                var k = digits.count - 1
                while k >= 0 {
                    if digits[k] == 9 { digits[k] = 0; k -= 1 } else { digits[k] += 1; break }
                }
                if k < 0 { q += 1 }
            }
            while digits.last == 0 { digits.removeLast() }
            let frac = digits.map { String($0) }.joined()
            let body = frac.isEmpty ? String(q) : "\(q).\(frac)"
            return neg && (q != 0 || !frac.isEmpty) ? "-" + body : body
        }
    }

    public static func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var (a, b) = (a, b)
        while b != 0 { (a, b) = (b, a % b) }
        return a
    }

    /// Longest expression read, and deepest nesting: far beyond arithmetic a model writes, small
    /// enough that no input can exhaust the stack or take long.
    public static let maxLength = 4096, maxDepth = 64

    public static func evaluate(_ text: String) throws -> Fraction {
        let s = Array(text.unicodeScalars)
        guard s.count <= maxLength else { throw Failure(message: "expression longer than \(maxLength) characters") }
        var p = Parser(s: s)
        let v = try p.expression(depth: 0)
        p.skipSpace()
        guard p.i == s.count else { throw Failure(message: "unexpected \"\(s[p.i])\" at offset \(p.i)") }
        return v
    }

    struct Parser {
        let s: [Unicode.Scalar]
        var i = 0

        mutating func skipSpace() { while i < s.count, s[i].properties.isWhitespace { i += 1 } }

        mutating func take(_ set: [Unicode.Scalar]) -> Unicode.Scalar? {
            skipSpace()
            guard i < s.count, set.contains(s[i]) else { return nil }
            i += 1
            return s[i - 1]
        }

        static let plus: [Unicode.Scalar] = ["+"], minus: [Unicode.Scalar] = ["-", "\u{2212}"]
        static let times: [Unicode.Scalar] = ["*", "\u{00D7}", "\u{22C5}", "\u{00B7}"], divide: [Unicode.Scalar] = ["/", "\u{00F7}"]

        mutating func expression(depth: Int) throws -> Fraction {
            var v = try term(depth: depth)
            while let op = take(Parser.plus + Parser.minus) {
                let r = try term(depth: depth)
                v = try v + (Parser.plus.contains(op) ? r : r.negated())
            }
            return v
        }

        mutating func term(depth: Int) throws -> Fraction {
            var v = try factor(depth: depth)
            while let op = take(Parser.times + Parser.divide) {
                let r = try factor(depth: depth)
                v = try v * (Parser.times.contains(op) ? r : r.inverse())
            }
            return v
        }

        mutating func factor(depth: Int) throws -> Fraction {
            guard depth < Calculator.maxDepth else { throw Failure(message: "nested deeper than \(Calculator.maxDepth) at offset \(i)") }
            if let op = take(Parser.plus + Parser.minus) {
                let v = try factor(depth: depth + 1)
                return Parser.plus.contains(op) ? v : try v.negated()
            }
            if take(["("]) != nil {
                let v = try expression(depth: depth + 1)
                guard take([")"]) != nil else { throw Failure(message: i < s.count ? "expected \")\" at offset \(i)" : "missing \")\"") }
                return v
            }
            return try number()
        }

        mutating func number() throws -> Fraction {
            skipSpace()
            var num: Int64 = 0, den: Int64 = 1, digits = 0, seenPoint = false
            while i < s.count {
                let c = s[i]
                if c == "." && !seenPoint {
                    seenPoint = true
                } else if let d = c.properties.numericType == .decimal ? c.properties.numericValue : nil, c.isASCII {
                    // Checked, not a digit count: every result the calculator prints reads back.
                    digits += 1
                    num = try Fraction.checked(num.multipliedReportingOverflow(by: 10))
                    num = try Fraction.checked(num.addingReportingOverflow(Int64(d)))
                    if seenPoint { den = try Fraction.checked(den.multipliedReportingOverflow(by: 10)) }
                } else {
                    break
                }
                i += 1
            }
            guard digits > 0 else {
                throw Failure(message: i < s.count ? "expected a number at offset \(i), got \"\(s[i])\"" : "expected a number at the end")
            }
            return try Fraction(num, den)
        }
    }
}

/// `calculator`: the model may write <tool>expression</tool>; the runtime ends the action at
/// "</tool>" and this environment answers with the value of each tool call in the action, one
/// per line ("= 42", or "error: division by zero"). An action without a tool call is the
/// model's answer: the episode ends. No reward of its own: the trainer's rewards score the answer.
public final class CalculatorEnvironment: Environment {
    public struct Options: Equatable, Sendable {
        /// Tool calls answered per episode; the next one ends the episode.
        public var maxCalls = 8
        init(_ r: JSONReader?) {
            guard let r else { return }
            maxCalls = r.int("max_calls", in: 1...1000) ?? maxCalls
            r.rejectUnknownKeys()
        }
        public init() {}
    }

    let options: Options
    var calls = 0

    public init(options: Options = Options()) { self.options = options }

    public var actionEnd: String? { "</tool>" }

    public func reset(seed: UInt64, task: JSONValue) throws -> String {
        calls = 0
        return try taskPrompt(task)
    }

    public func step(_ action: String) throws -> EnvironmentStep {
        let exprs = CalculatorEnvironment.toolCalls(in: action)
        guard !exprs.isEmpty else { return EnvironmentStep(done: true) }
        calls += exprs.count
        if calls > options.maxCalls { return EnvironmentStep(done: true, info: .object([("reason", "max_calls")])) }
        return EnvironmentStep(observation: exprs.map(CalculatorEnvironment.reply).joined(separator: "\n"), done: false)
    }

    /// The line the calculator answers one tool call with ("= 42", or "error: …"); SFT traces
    /// use it too, so they hold exactly what the environment says.
    public static func reply(_ expression: String) -> String {
        do { return "= \(try Calculator.evaluate(expression))" } catch { return "error: \(error)" }
    }

    /// The expressions of every complete <tool>…</tool> in `text`, in order.
    static func toolCalls(in text: String) -> [String] {
        var out: [String] = []
        var rest = Substring(text)
        while let open = rest.firstRange(of: "<tool>"), let close = rest[open.upperBound...].firstRange(of: "</tool>") {
            out.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return out
    }
}
