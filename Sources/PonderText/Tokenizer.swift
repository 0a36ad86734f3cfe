import PonderBase

/// GPT-2-style byte-level BPE (SmolLM2, Llama-3, Qwen2). Immutable after construction, so one
/// tokenizer serves any number of threads.
public final class Tokenizer: @unchecked Sendable {
    public struct Special: Sendable {
        public let id: Int32
        public let text: String
    }

    public let pre: PreTokenizer
    public let vocabSize: Int
    public let bos: Int32?
    public let eos: Int32?
    /// Extra ids that end a generation (e.g. Llama-3's <|eot_id|> besides <|end_of_text|>).
    public let stopIds: Set<Int32>
    public let addBOS: Bool
    public let ignoreMerges: Bool
    public let chatTemplate: ChatTemplate
    /// Metadata the file has that Ponder ignores, each with why (ponder_model_info's "notes"):
    /// special-token ids it does not use, as llama.cpp warns and goes on.
    public var notes: [String] = []

    public let tokens: [String]
    /// Merge rules in rank order, as given (for writing tokenizer.json / GGUF back out).
    public let mergeRules: [String]
    let ids: [String: Int32]
    /// (left << 32 | right) → (rank, merged id)
    let merges: [UInt64: (rank: Int32, id: Int32)]
    let byteIDs: [Int32]
    /// Control and user-defined tokens: matched whole in text, decoded verbatim.
    public let specials: [Special]
    let isSpecial: [Bool]
    /// Decoded bytes of every id, flattened: bytes of id i are tokenBytes[offsets[i]..<offsets[i+1]].
    let tokenBytes: [UInt8]
    let offsets: [Int]
    /// The longest text of one token, in bytes: a text longer than n × this needs more than n tokens.
    public let longestTokenBytes: Int

    /// - tokens: id → token string in byte-level form (GGUF `tokenizer.ggml.tokens`, HF vocab).
    /// - merges: "left right" in rank order.
    /// - special: ids of control/user-defined tokens.
    public init(tokens: [String], merges mergeList: [String], special: Set<Int32>, pre: PreTokenizer,
                bos: Int32?, eos: Int32?, stopIds: Set<Int32> = [], addBOS: Bool = false,
                ignoreMerges: Bool = false, chatTemplate: ChatTemplate = .none) throws {
        self.tokens = tokens
        self.mergeRules = mergeList
        self.pre = pre
        self.vocabSize = tokens.count
        self.addBOS = addBOS
        self.ignoreMerges = ignoreMerges
        self.chatTemplate = chatTemplate
        for (name, id) in [("bos", bos), ("eos", eos)] {
            if let id, id < 0 || Int(id) >= tokens.count {
                throw PonderError.format("tokenizer: \(name) token id \(id) is outside the vocabulary (\(tokens.count))")
            }
        }
        self.bos = bos
        self.eos = eos
        self.stopIds = stopIds.union(eos.map { [$0] } ?? [])
        var ids = [String: Int32](minimumCapacity: tokens.count)
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        self.ids = ids

        let (b2u, u2b) = byteLevelTables()
        // Some vocabularies (SmolLM2's) lack symbols for bytes never seen in training; such bytes
        // are dropped when encoding, as HF tokenizers does for a BPE without an unk token.
        var byteIDs = [Int32](repeating: -1, count: 256)
        for b in 0..<256 { byteIDs[b] = ids[String(b2u[b])] ?? -1 }
        self.byteIDs = byteIDs

        var merges = [UInt64: (rank: Int32, id: Int32)](minimumCapacity: mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            // HF may give merges as "a b"; a space inside a symbol is byte-level encoded (Ġ), so
            // the first space is the separator.
            guard let sp = m.firstIndex(of: " ") else {
                throw PonderError.format("tokenizer: merge \(rank) (\"\(m)\") has no space separator")
            }
            let a = String(m[..<sp]), b = String(m[m.index(after: sp)...])
            guard let ia = ids[a], let ib = ids[b], let ir = ids[a + b] else {
                throw PonderError.format("tokenizer: merge \(rank) (\"\(m)\") names a token missing from the vocabulary")
            }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            if merges[key] == nil { merges[key] = (Int32(rank), ir) }
        }
        self.merges = merges

        var isSpecial = [Bool](repeating: false, count: tokens.count)
        var specials: [Special] = []
        for id in special.sorted() {
            guard id >= 0 && Int(id) < tokens.count else {
                throw PonderError.format("tokenizer: special token id \(id) is outside the vocabulary")
            }
            isSpecial[Int(id)] = true
            if !tokens[Int(id)].isEmpty { specials.append(Special(id: id, text: tokens[Int(id)])) }
        }
        // Longest first, so "<|im_start|>" wins over a shorter special that is its prefix.
        self.specials = specials.sorted { $0.text.utf8.count > $1.text.utf8.count }
        self.isSpecial = isSpecial

        var flat: [UInt8] = []
        var offsets = [0]
        flat.reserveCapacity(tokens.count * 6)
        for (i, t) in tokens.enumerated() {
            if isSpecial[i] {
                flat.append(contentsOf: t.utf8)
            } else {
                for u in t.unicodeScalars {
                    if let b = u2b[u] { flat.append(b) } else { flat.append(contentsOf: String(u).utf8) }
                }
            }
            offsets.append(flat.count)
        }
        tokenBytes = flat
        self.offsets = offsets
        longestTokenBytes = zip(offsets.dropFirst(), offsets).map { $0 - $1 }.max() ?? 0
    }

    public func token(_ id: Int32) -> String? {
        id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : nil
    }

    public func id(of token: String) -> Int32? { ids[token] }

    public func isSpecialToken(_ id: Int32) -> Bool { id >= 0 && Int(id) < isSpecial.count && isSpecial[Int(id)] }

    // MARK: encode

    /// Token ids of `text`. With `parseSpecial`, special-token strings in the text (e.g.
    /// "<|im_start|>") become their single ids; otherwise they are tokenized as plain text.
    public func encode(_ text: String, parseSpecial: Bool = true, addBOS: Bool? = nil) -> [Int32] {
        var dropped = 0
        return encode(text, parseSpecial: parseSpecial, addBOS: addBOS, dropped: &dropped)
    }

    /// Bytes of `text` that the vocabulary cannot spell (no token for the byte, e.g. control
    /// characters in SmolLM2's): encoding leaves them out, as HF `tokenizers` does for a BPE
    /// without an unknown token, so the ids stand for a text that differs from the input.
    public func droppedBytes(_ text: String, parseSpecial: Bool = true) -> Int {
        var dropped = 0
        _ = encode(text, parseSpecial: parseSpecial, addBOS: false, dropped: &dropped)
        return dropped
    }

    func encode(_ text: String, parseSpecial: Bool, addBOS: Bool?, dropped: inout Int) -> [Int32] {
        var out: [Int32] = []
        if addBOS ?? self.addBOS, let bos { out.append(bos) }
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            var i = 0
            while i < bytes.count {
                if parseSpecial, let sp = specialAt(bytes, i) {
                    if start < i { encodeOrdinary(UnsafeBufferPointer(rebasing: bytes[start..<i]), into: &out, dropped: &dropped) }
                    out.append(sp.id)
                    i += sp.text.utf8.count
                    start = i
                } else {
                    i += 1
                }
            }
            if start < bytes.count { encodeOrdinary(UnsafeBufferPointer(rebasing: bytes[start..<bytes.count]), into: &out, dropped: &dropped) }
        }
        return out
    }

    private func specialAt(_ bytes: UnsafeBufferPointer<UInt8>, _ i: Int) -> Special? {
        for sp in specials {
            let n = sp.text.utf8.count
            if i + n <= bytes.count, sp.text.utf8.elementsEqual(bytes[i..<(i + n)]) { return sp }
        }
        return nil
    }

    private func encodeOrdinary(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [Int32], dropped: inout Int) {
        let text = String(decoding: bytes, as: UTF8.self)
        let scalars = Array(text.unicodeScalars)
        var byteOffset = [Int](repeating: 0, count: scalars.count + 1)
        for (i, u) in scalars.enumerated() { byteOffset[i + 1] = byteOffset[i] + UTF8.width(u) }
        var symbols: [Int32] = []
        pre.split(scalars) { r in
            let piece = UnsafeBufferPointer(rebasing: bytes[byteOffset[r.lowerBound]..<byteOffset[r.upperBound]])
            if ignoreMerges, let whole = wholeToken(piece) { out.append(whole); return }
            symbols.removeAll(keepingCapacity: true)
            for b in piece {
                if byteIDs[Int(b)] >= 0 { symbols.append(byteIDs[Int(b)]) } else { dropped += 1 }
            }
            bpe(&symbols)
            out.append(contentsOf: symbols)
        }
    }

    private func wholeToken(_ piece: UnsafeBufferPointer<UInt8>) -> Int32? {
        let (b2u, _) = byteLevelTables()
        var s = ""
        for b in piece { s.unicodeScalars.append(b2u[Int(b)]) }
        return ids[s]
    }

    /// Applies merges in rank order (leftmost first among equal ranks), as HF tokenizers and
    /// llama.cpp do, in O(n log n) with a heap over a linked list of symbols.
    func bpe(_ symbols: inout [Int32]) {
        let n = symbols.count
        if n < 2 { return }
        var next = Array(1...n)  // next[i] == n: end
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = MinHeap()
        func push(_ i: Int) {
            let j = next[i]
            guard j < n else { return }
            let key = UInt64(UInt32(symbols[i])) << 32 | UInt64(UInt32(symbols[j]))
            if let m = merges[key] { heap.push(rank: m.rank, pos: i, left: symbols[i], right: symbols[j]) }
        }
        for i in 0..<(n - 1) { push(i) }
        while let e = heap.pop() {
            let i = e.pos
            guard alive[i], symbols[i] == e.left else { continue }
            let j = next[i]
            guard j < n, symbols[j] == e.right else { continue }
            let key = UInt64(UInt32(e.left)) << 32 | UInt64(UInt32(e.right))
            symbols[i] = merges[key]!.id
            alive[j] = false
            next[i] = next[j]
            if next[j] < n { prev[next[j]] = i }
            if prev[i] >= 0 { push(prev[i]) }
            push(i)
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var i = 0
        while i < n { out.append(symbols[i]); i = next[i] }
        symbols = out
    }

    // MARK: decode

    /// The bytes of `ids` concatenated. Invalid ids are the caller's to reject (see `validate`).
    public func decodeBytes(_ ids: [Int32], skipSpecial: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        for id in ids {
            let i = Int(id)
            guard i >= 0 && i < tokens.count else { continue }
            if skipSpecial && isSpecial[i] { continue }
            out.append(contentsOf: tokenBytes[offsets[i]..<offsets[i + 1]])
        }
        return out
    }

    /// Text of `ids`; byte sequences that are not valid UTF-8 (a token boundary inside a
    /// character) become U+FFFD, as in HF's decode.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        String(decoding: decodeBytes(ids, skipSpecial: skipSpecial), as: UTF8.self)
    }

    /// Bytes of one token, for streaming (see `utf8Boundary`).
    public func bytes(of id: Int32) -> ArraySlice<UInt8> {
        let i = Int(id)
        guard i >= 0 && i < tokens.count else { return [] }
        return tokenBytes[offsets[i]..<offsets[i + 1]]
    }

    /// Throws for the first id outside the vocabulary, naming its index.
    public func validate(_ ids: [Int32], what: String = "ids") throws {
        for (k, id) in ids.enumerated() where id < 0 || Int(id) >= tokens.count {
            throw PonderError.invalid("\(what)[\(k)]: token id \(id) is outside the vocabulary [0, \(tokens.count))")
        }
    }
}

/// Binary min-heap of merge candidates ordered by (rank, position).
struct MinHeap {
    struct Entry { var rank: Int32; var pos: Int; var left: Int32; var right: Int32 }
    var items: [Entry] = []

    @inline(__always) static func less(_ a: Entry, _ b: Entry) -> Bool {
        a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos
    }

    mutating func push(rank: Int32, pos: Int, left: Int32, right: Int32) {
        items.append(Entry(rank: rank, pos: pos, left: left, right: right))
        var c = items.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            if !MinHeap.less(items[c], items[p]) { break }
            items.swapAt(c, p)
            c = p
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < items.count && MinHeap.less(items[l], items[m]) { m = l }
                if r < items.count && MinHeap.less(items[r], items[m]) { m = r }
                if m == p { break }
                items.swapAt(p, m)
                p = m
            }
        }
        return top
    }
}

/// GPT-2's reversible byte ↔ printable-character map.
func byteLevelTables() -> ([Unicode.Scalar], [Unicode.Scalar: UInt8]) { (byteToScalar, scalarToByte) }

private let byteToScalar: [Unicode.Scalar] = {
    var table = [Unicode.Scalar](repeating: "\0", count: 256)
    var n: UInt32 = 0
    for b in 0..<256 {
        let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
        if printable {
            table[b] = Unicode.Scalar(UInt32(b))!
        } else {
            table[b] = Unicode.Scalar(256 + n)!
            n += 1
        }
    }
    return table
}()

private let scalarToByte: [Unicode.Scalar: UInt8] = {
    var d: [Unicode.Scalar: UInt8] = [:]
    for (b, u) in byteToScalar.enumerated() { d[u] = UInt8(b) }
    return d
}()

/// The largest end ≤ `end` (and ≥ `start`) that does not cut a UTF-8 character of `bytes`:
/// streamed text must not end inside a character whose remaining bytes are still to come.
public func utf8Boundary(_ bytes: [UInt8], from start: Int, to end: Int) -> Int {
    var e = end
    while e > start && e < bytes.count && bytes[e] & 0xC0 == 0x80 { e -= 1 }
    if e == end, e > start {
        var lead = e - 1
        while lead > start && bytes[lead] & 0xC0 == 0x80 { lead -= 1 }
        let b = bytes[lead]
        let width = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
        if e - lead < width { e = lead }
    }
    return e
}
extension Tokenizer {
    /// A merge-free byte-level tokenizer: ids 0–255 are the bytes, followed by `specials`
    /// (ChatML's by default). For models trained from scratch on generated text, where a
    /// learned vocabulary buys nothing and every string is representable.
    public static func byteLevel(specials: [String] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) throws -> Tokenizer {
        let (b2u, _) = byteLevelTables()
        let tokens = (0..<256).map { String(b2u[$0]) } + specials
        let ids = Set((256..<(256 + specials.count)).map { Int32($0) })
        func id(_ s: String) -> Int32? { specials.firstIndex(of: s).map { Int32(256 + $0) } }
        return try Tokenizer(tokens: tokens, merges: [], special: ids, pre: .gpt2,
                             bos: id("<|im_start|>"), eos: id("<|im_end|>") ?? id("<|endoftext|>"),
                             chatTemplate: .chatml(defaultSystem: nil))
    }
}
