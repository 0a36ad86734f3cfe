import PonderBase
import PonderText

// The byte-level BPE tokenizers of the tiny fixture models (Tests/Fixtures/tiny/*/tokenizer.json:
// smollm-style and qwen2-style pre-tokenizers, all 256 byte symbols, specials).
// Input: byte 0 = mode bits, the rest = text (repaired to UTF-8) or little-endian int32 ids.
//   bit 0: which tokenizer; bit 1: parse_special; bit 2: decode ids instead of encoding text.

nonisolated(unsafe) var fixtureTokenizers: [Tokenizer] = []

let tokenizerTarget = FuzzTarget(name: "tokenizer", setUp: {
    let dir = fuzzRoot + "/../Fixtures/tiny"
    fixtureTokenizers = try ["llama", "qwen2"].map {
        try Tokenizer.load(tokenizerJSON: "\(dir)/\($0)/tokenizer.json", config: "\(dir)/\($0)/tokenizer_config.json")
    }
}, run: { data in
    guard let mode = data.first else { return }
    let t = fixtureTokenizers[Int(mode & 1)]
    let rest = UnsafeRawBufferPointer(rebasing: data.dropFirst())
    if mode & 4 != 0 {
        let ids = (0..<rest.count / 4).map { Int32(littleEndian: rest.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        let valid = ids.allSatisfy { $0 >= 0 && Int($0) < t.vocabSize }
        do {
            try t.validate(ids)
            guard valid else { bug("validate accepted an id outside [0, \(t.vocabSize))") }
        } catch {
            guard !valid else { bug("validate rejected valid ids: \(error)") }
            return
        }
        let text = t.decode(ids)
        guard text == String(decoding: t.decodeBytes(ids), as: UTF8.self) else { bug("decode and decodeBytes disagree") }
        return
    }
    let text = String(decoding: rest, as: UTF8.self)
    let parseSpecial = mode & 2 != 0
    let ids = t.encode(text, parseSpecial: parseSpecial)
    for id in ids where id < 0 || Int(id) >= t.vocabSize { bug("encode produced id \(id) outside [0, \(t.vocabSize))") }
    // Every byte has a symbol in these vocabularies, so text survives the round trip exactly.
    let back = t.decode(ids)
    guard back == text else {
        bug("decode(encode(text)) differs (parse_special \(parseSpecial)): \(Array(text.utf8)) -> \(ids) -> \(Array(back.utf8))")
    }
})
