/// The regex splits that byte-level BPE tokenizers apply before merging, hand-written as scanners
/// over Unicode scalars (exactly the regexes' leftmost-alternative semantics, without a regex
/// engine in the library).
public enum PreTokenizer: String, Sendable {
    /// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    case gpt2
    /// Every \p{N} isolated first, then GPT-2 (SmolLM2, StarCoder; HF: Digits(individual) + ByteLevel).
    case smollm
    /// Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    case llama3
    /// Qwen2: as Llama-3 with single-digit numbers.
    case qwen2

    /// The GGUF `tokenizer.ggml.pre` names llama.cpp writes for these splits.
    public init?(ggufName: String) {
        switch ggufName {
        case "gpt2", "default", "gpt-2": self = .gpt2
        case "smollm", "starcoder", "refact", "codeshell": self = .smollm
        case "llama3", "llama-bpe", "llama-v3", "falcon3": self = .llama3
        case "qwen2", "deepseek-r1-qwen": self = .qwen2
        default: return nil
        }
    }

    /// Splits `scalars` into pieces, reported as half-open scalar index ranges.
    func split(_ s: [Unicode.Scalar], _ emit: (Range<Int>) -> Void) {
        let cls = s.map(CharClass.init)
        switch self {
        case .gpt2: splitGPT2(s, cls, 0..<s.count, emit)
        case .smollm:
            var start = 0
            for i in 0..<s.count where cls[i] == .number {
                if start < i { splitGPT2(s, cls, start..<i, emit) }
                emit(i..<(i + 1))
                start = i + 1
            }
            if start < s.count { splitGPT2(s, cls, start..<s.count, emit) }
        case .llama3: splitLlama3(s, cls, maxDigits: 3, emit)
        case .qwen2: splitLlama3(s, cls, maxDigits: 1, emit)
        }
    }
}

enum CharClass: UInt8 {
    case letter, number, space, other

    init(_ u: Unicode.Scalar) {
        let p = u.properties
        if p.isWhitespace { self = .space; return }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: self = .letter
        case .decimalNumber, .letterNumber, .otherNumber: self = .number
        default: self = .other
        }
    }
}

/// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
private func contraction(_ s: [Unicode.Scalar], _ i: Int, _ end: Int, caseInsensitive: Bool) -> Int {
    guard s[i] == "'", i + 1 < end else { return 0 }
    func low(_ u: Unicode.Scalar) -> Unicode.Scalar {
        caseInsensitive && u.value >= 65 && u.value <= 90 ? Unicode.Scalar(u.value + 32)! : u
    }
    let a = low(s[i + 1])
    if a == "s" || a == "t" || a == "m" || a == "d" { return 2 }
    if i + 2 < end {
        let b = low(s[i + 2])
        if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { return 3 }
    }
    return 0
}

/// The shared tail of both regexes: \s+(?!\S)|\s+ from i (s[i] is whitespace).
@inline(__always)
private func whitespaceRun(_ cls: [CharClass], _ i: Int, _ end: Int) -> Int {
    var e = i
    while e < end && cls[e] == .space { e += 1 }
    if e < end && e - i > 1 { return e - 1 }  // leave the last space to prefix the next word
    return e
}

private func splitGPT2(_ s: [Unicode.Scalar], _ cls: [CharClass], _ r: Range<Int>, _ emit: (Range<Int>) -> Void) {
    var i = r.lowerBound
    let end = r.upperBound
    func run(_ from: Int, _ c: CharClass) -> Int {
        var e = from
        while e < end && cls[e] == c { e += 1 }
        return e
    }
    while i < end {
        let n = contraction(s, i, end, caseInsensitive: false)
        if n > 0 { emit(i..<(i + n)); i += n; continue }
        // ' ?' followed by a letter/number/other run
        var j = i
        if s[i] == " " && i + 1 < end && cls[i + 1] != .space { j = i + 1 }
        let c = cls[j]
        if c != .space {
            let e = run(j, c)
            emit(i..<e)
            i = e
            continue
        }
        let e = whitespaceRun(cls, i, end)
        emit(i..<e)
        i = e
    }
}

private func splitLlama3(_ s: [Unicode.Scalar], _ cls: [CharClass], maxDigits: Int, _ emit: (Range<Int>) -> Void) {
    let end = s.count
    var i = 0
    func isNewline(_ k: Int) -> Bool { s[k] == "\r" || s[k] == "\n" }
    while i < end {
        let n = contraction(s, i, end, caseInsensitive: true)
        if n > 0 { emit(i..<(i + n)); i += n; continue }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if cls[i] == .letter || (cls[i] != .number && !isNewline(i) && i + 1 < end && cls[i + 1] == .letter) {
            var e = cls[i] == .letter ? i : i + 1
            while e < end && cls[e] == .letter { e += 1 }
            emit(i..<e); i = e; continue
        }
        // \p{N}{1,maxDigits}
        if cls[i] == .number {
            var e = i
            while e < end && cls[e] == .number && e - i < maxDigits { e += 1 }
            emit(i..<e); i = e; continue
        }
        // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        let j = (s[i] == " " && i + 1 < end && cls[i + 1] == .other) ? i + 1 : i
        if cls[j] == .other {
            var e = j
            while e < end && cls[e] == .other { e += 1 }
            while e < end && isNewline(e) { e += 1 }
            emit(i..<e); i = e; continue
        }
        // whitespace: \s*[\r\n]+ (ends after the run's last newline), else \s+(?!\S)|\s+
        var e = i
        var lastNewline = -1
        while e < end && cls[e] == .space {
            if isNewline(e) { lastNewline = e }
            e += 1
        }
        if lastNewline >= 0 {
            emit(i..<(lastNewline + 1)); i = lastNewline + 1; continue
        }
        let w = whitespaceRun(cls, i, end)
        emit(i..<w); i = w
    }
}
