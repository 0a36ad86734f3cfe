// Answer text → a number or a canonical string. The rules are math-verify's where math word
// problems meet them: LaTeX decoration and units go, "x = 25" is 25, "50%" is a percentage,
// "1,234" is one number, "2\frac{1}{2}" is a mixed number.

enum Normalizer {
    struct Cleaned {
        var body: String
        var percent: Bool
        var variable: String?
    }

    static let wrappers = ["\\text", "\\textbf", "\\textit", "\\textrm", "\\mathrm", "\\mathbf", "\\mbox", "\\operatorname"]
    /// How multiplication, division and minus are spelled in LaTeX and Unicode, and currency signs:
    /// what the answer grammar (NumberParser) reads instead. Shared with the equation reader of the
    /// guarded reflection reward (Checks.swift).
    static let operatorSpellings: [(String, String)] = [
        ("\\cdot", "*"), ("\\times", "*"), ("\\div", "/"), ("\\ast", "*"), ("×", "*"), ("÷", "/"), ("−", "-"),
    ]
    static let currencySigns = ["$", "€", "£", "¥", "₹"]
    static let replacements: [(String, String)] = [
        ("^{\\circ}", ""), ("^\\circ", ""), ("\\circ", ""), ("°", ""), ("\\degree", ""),
        ("\\%", "%"), ("\\$", ""),
    ] + currencySigns.map { ($0, "") } + [
        ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"),
    ] + operatorSpellings + [
        ("{,}", ","), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("\\:", ""), ("\\ ", " "), ("~", " "),
        ("\\qquad", " "), ("\\quad", " "), ("\\displaystyle", ""),
    ]

    static func clean(_ raw: String) -> Cleaned {
        var s = stripPunctuation(Answers.trimmed(raw))
        if let b = Answers.lastBoxed(scalars(s)[...]) { s = string(b) }
        s = stripDelimiters(s)
        s = unwrap(s, wrappers)
        for (a, b) in replacements where s.contains(a) { s = s.replacing(a, with: b) }
        s = removeCommand(s, "\\left")
        s = removeCommand(s, "\\right")
        var variable: String? = nil
        if let eq = s.lastIndex(of: "="), !s[s.index(after: eq)...].allSatisfy({ $0 == " " }) {
            let lhs = Answers.trimmed(String(s[..<(s.firstIndex(of: "=") ?? eq)]))
            if !lhs.isEmpty, lhs.count <= 12, lhs.unicodeScalars.allSatisfy({ isASCIILetter($0.value) || $0 == "_" || $0 == "\\" || isASCIIDigit($0.value) }),
               lhs.unicodeScalars.first.map({ isASCIILetter($0.value) || $0 == "\\" }) == true {
                variable = lhs
            }
            s = String(s[s.index(after: eq)...])
        }
        s = stripPunctuation(Answers.trimmed(s))
        var percent = false
        for _ in 0..<2 {
            if s.hasSuffix("%") {
                percent = true
                s = Answers.trimmed(String(s.dropLast()))
            } else if s.lowercased().hasSuffix(" percent") {
                percent = true
                s = Answers.trimmed(String(s.dropLast(8)))
            }
            s = stripUnits(s)
        }
        s = stripOuterBraces(s)
        return Cleaned(body: s, percent: percent, variable: variable)
    }

    static func stripPunctuation(_ s: String) -> String {
        var t = Substring(s)
        while let l = t.last, l == "." || l == "," || l == " " { t = t.dropLast() }
        return String(t)
    }

    static func stripDelimiters(_ s: String) -> String {
        var t = Answers.trimmed(s)
        for _ in 0..<4 {
            let before = t
            for (o, c) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")]
            where t.count >= o.count + c.count && t.hasPrefix(o) && t.hasSuffix(c) {
                t = Answers.trimmed(String(t.dropFirst(o.count).dropLast(c.count)))
                t = stripPunctuation(t)
                break
            }
            if t == before { break }
        }
        return t
    }

    static func stripOuterBraces(_ s: String) -> String {
        var t = s
        while t.hasPrefix("{"), t.hasSuffix("}"), matchingClose(Array(t.unicodeScalars), 0) == t.unicodeScalars.count - 1 {
            t = Answers.trimmed(String(t.dropFirst().dropLast()))
        }
        return t
    }

    /// The index of the bracket closing the one at `open`, if any.
    static func matchingClose(_ t: [Unicode.Scalar], _ open: Int) -> Int? {
        guard open < t.count else { return nil }
        let o = t[open]
        let c: Unicode.Scalar = o == "(" ? ")" : o == "[" ? "]" : "}"
        var depth = 0
        for k in open..<t.count {
            if t[k] == o { depth += 1 } else if t[k] == c { depth -= 1; if depth == 0 { return k } }
        }
        return nil
    }

    /// "\text{ cm}" → " cm ": the wrapper goes, its content stays (units are stripped later).
    static func unwrap(_ s: String, _ names: [String]) -> String {
        guard s.contains("\\") else { return s }
        let t = scalars(s)
        var out: Scalars = []
        var i = 0
        outer: while i < t.count {
            if t[i] == 0x5C {
                for n in names {
                    let p = scalars(n)
                    var j = i + p.count
                    guard Answers.matches(p, t[...], at: i) else { continue }
                    if j < t.count, isASCIILetter(t[j]) { continue }
                    while j < t.count, t[j] == 0x20 { j += 1 }
                    guard j < t.count, t[j] == 0x7B else { continue }
                    var depth = 0
                    var k = j
                    while k < t.count {
                        if t[k] == 0x7B { depth += 1 } else if t[k] == 0x7D { depth -= 1; if depth == 0 { break } }
                        k += 1
                    }
                    out.append(0x20)
                    out.append(contentsOf: t[(j + 1)..<min(k, t.count)])
                    out.append(0x20)
                    i = k + 1
                    continue outer
                }
            }
            out.append(t[i])
            i += 1
        }
        return string(out[...])
    }

    /// Removes `\name` where it is not the start of a longer command (\right but not \rightarrow).
    static func removeCommand(_ s: String, _ name: String) -> String {
        guard s.contains(name) else { return s }
        let t = scalars(s), p = scalars(name)
        var out: Scalars = []
        var i = 0
        while i < t.count {
            if Answers.matches(p, t[...], at: i), i + p.count >= t.count || !isASCIILetter(t[i + p.count]) {
                i += p.count
                continue
            }
            out.append(t[i])
            i += 1
        }
        return string(out[...])
    }

    /// Trailing unit words after a number ("12 cm", "5 dollars", "3 square feet", "20cm^2").
    /// One-letter words go only when they are common units (m, g, s, h, l) set apart by a space,
    /// so "2x" and "\\pi r" stay.
    static func stripUnits(_ s: String) -> String {
        let original = scalars(Answers.trimmed(s))
        var t = original
        var stripped = false
        while true {
            var e = t.count
            var k = e
            if k > 0, t[k - 1] == 0x7D { k -= 1 }
            var d = k
            while d > 0, isASCIIDigit(t[d - 1]) { d -= 1 }
            if d < k, d > 0 {
                if t[d - 1] == 0x5E, k == e { e = d - 1 } else if t[d - 1] == 0x7B, d > 1, t[d - 2] == 0x5E, k < e { e = d - 2 }
            }
            var w = e
            while w > 0, isASCIILetter(t[w - 1]) { w -= 1 }
            let letters = e - w
            guard letters > 0, w > 0 else { break }
            let prev = t[w - 1]
            guard isSpace(prev) || (isASCIIDigit(prev) && letters >= 2) else { break }
            guard letters >= 2 || [0x6D, 0x67, 0x73, 0x68, 0x6C].contains(t[w]) else { break }
            var r = w
            while r > 0, isSpace(t[r - 1]) { r -= 1 }
            guard r > 0 else { break }
            t = Scalars(t[..<r])
            stripped = true
            if !isASCIILetter(t[r - 1]) { break }
        }
        guard stripped, let l = t.last, isASCIIDigit(l) || l == 0x29 || l == 0x7D || l == 0x25 else {
            return string(original[...])
        }
        return string(t[...])
    }

    /// The structural form: no spaces, single-character arguments braced (\\frac12 → \\frac{1}{2},
    /// \\sqrt3 → \\sqrt{3}, x^2 → x^{2}), inside groups too.
    static func canonical(_ s: String) -> String {
        let t = scalars(s).filter { !isSpace($0) }
        var out: Scalars = []
        canonical(t[...], into: &out, depth: 0)
        return string(out[...])
    }

    private static func canonical(_ t: Scalars.SubSequence, into out: inout Scalars, depth: Int) {
        let frac = scalars("\\frac"), sqrt = scalars("\\sqrt")
        var i = t.startIndex
        func argument() {
            guard i < t.endIndex else { return }
            if t[i] == 0x7B, depth < 32, let c = close(t, i) {
                out.append(0x7B)
                canonical(t[(i + 1)..<c], into: &out, depth: depth + 1)
                out.append(0x7D)
                i = c + 1
            } else {
                out.append(0x7B)
                out.append(t[i])
                out.append(0x7D)
                i += 1
            }
        }
        while i < t.endIndex {
            if Answers.matches(frac, t, at: i) {
                out.append(contentsOf: frac)
                i += frac.count
                argument()
                argument()
            } else if Answers.matches(sqrt, t, at: i), i + sqrt.count < t.endIndex, t[i + sqrt.count] != 0x5B {
                out.append(contentsOf: sqrt)
                i += sqrt.count
                argument()
            } else if t[i] == 0x5E || t[i] == 0x5F {
                out.append(t[i])
                i += 1
                argument()
            } else {
                out.append(t[i])
                i += 1
            }
        }
    }

    private static func close(_ t: Scalars.SubSequence, _ open: Int) -> Int? {
        var depth = 0
        var k = open
        while k < t.endIndex {
            if t[k] == 0x7B { depth += 1 } else if t[k] == 0x7D { depth -= 1; if depth == 0 { return k } }
            k += 1
        }
        return nil
    }

    /// Splits at `sep` outside (), [], {}.
    static func splitTopLevel(_ s: String, on sep: Character) -> [String] {
        var parts: [String] = []
        var cur = ""
        var depth = 0
        for ch in s {
            if ch == "(" || ch == "[" || ch == "{" { depth += 1 }
            if ch == ")" || ch == "]" || ch == "}" { depth -= 1 }
            if ch == sep && depth == 0 {
                parts.append(cur)
                cur = ""
            } else {
                cur.append(ch)
            }
        }
        parts.append(cur)
        return parts
    }
}
