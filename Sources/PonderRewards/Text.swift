#if canImport(Glibc)
import Glibc
#endif

// Text is handled as arrays of Unicode scalar values, as Python's `re` and `str` see it, so the
// paper's regexes (run by CPython on `str.lower()`) count exactly the same matches here.

typealias Scalars = [UInt32]

func scalars(_ s: String) -> Scalars { s.unicodeScalars.map(\.value) }

func string(_ s: Scalars.SubSequence) -> String {
    var out = String.UnicodeScalarView()
    for c in s { if let u = Unicode.Scalar(c) { out.append(u) } }
    return String(out)
}

/// Python's `str.lower()`: the full lowercase mapping per scalar ("İ" → "i̇", Kelvin sign → "k").
/// Final sigma (σ/ς) is not special-cased; both are letters, so no match can differ.
func lowercased(_ s: String) -> Scalars {
    var out: Scalars = []
    out.reserveCapacity(s.unicodeScalars.count)
    for u in s.unicodeScalars {
        if u.value < 0x80 {
            out.append(u.value >= 0x41 && u.value <= 0x5A ? u.value + 32 : u.value)
        } else {
            for l in u.properties.lowercaseMapping.unicodeScalars { out.append(l.value) }
        }
    }
    return out
}

/// Python's `\s` and `str.isspace()` (Zs plus bidirectional classes WS, B and S; checked against
/// CPython over every code point).
@inline(__always) func isSpace(_ c: UInt32) -> Bool {
    switch c {
    case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
    default: return false
    }
}

/// Python's `\d` for str patterns: any decimal digit (Unicode Nd), not only 0-9.
@inline(__always) func isDecimal(_ c: UInt32) -> Bool {
    if c < 0x80 { return c >= 0x30 && c <= 0x39 }
    return Unicode.Scalar(c)?.properties.numericType == .decimal
}

/// Python's `\w`: `str.isalnum()` or "_" (letters of any script, and anything numeric).
@inline(__always) func isWord(_ c: UInt32) -> Bool {
    if c < 0x80 {
        return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
    }
    guard let p = Unicode.Scalar(c)?.properties else { return false }
    switch p.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
    default: return p.numericType != nil
    }
}

@inline(__always) func isASCIIDigit(_ c: UInt32) -> Bool { c >= 0x30 && c <= 0x39 }
@inline(__always) func isASCIILetter(_ c: UInt32) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }

/// Python's `round(x, 2)`: the exact binary value rounded half-to-even to two decimals. x·100 is
/// split exactly into hi + lo (FMA); only when hi sits exactly on a midpoint can lo change the result.
func roundHalfEven2(_ x: Double) -> Double {
    guard x.isFinite else { return x }
    let hi = x * 100
    let lo = fma(x, 100, -hi)
    let f = hi.rounded(.down)
    let frac = hi - f
    let k: Double
    if frac > 0.5 {
        k = f + 1
    } else if frac < 0.5 {
        k = f
    } else {
        k = lo > 0 ? f + 1 : lo < 0 ? f : (f.truncatingRemainder(dividingBy: 2) == 0 ? f : f + 1)
    }
    return k / 100
}

/// Words split on Python's whitespace, as `str.split()` does.
func words(_ s: Scalars.SubSequence) -> [Scalars.SubSequence] {
    var out: [Scalars.SubSequence] = []
    var i = s.startIndex
    while i < s.endIndex {
        while i < s.endIndex, isSpace(s[i]) { i += 1 }
        let start = i
        while i < s.endIndex, !isSpace(s[i]) { i += 1 }
        if i > start { out.append(s[start..<i]) }
    }
    return out
}

/// 1 − distinct/total over word n-grams (0 with fewer than n words): the share of n-grams that
/// repeat an earlier one.
func repeatedNgramFraction(_ ws: [Scalars.SubSequence], n: Int) -> Double {
    guard n > 0, ws.count >= n else { return 0 }
    var seen = Set<[Scalars]>()
    let total = ws.count - n + 1
    for i in 0..<total { seen.insert(ws[i..<(i + n)].map { Scalars($0) }) }
    return 1 - Double(seen.count) / Double(total)
}
