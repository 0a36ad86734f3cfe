import XCTest
@testable import PonderModel
@testable import PonderText

final class TokenizerTests: XCTestCase {
    /// Ids equal to HF `tokenizers` with SmolLM2's original pre-tokenizer (fixture from
    /// scripts/make_fixtures.py; tests/python runs the same oracle live).
    func testCorpusMatchesOracle() throws {
        let model = try Fixtures.smol()
        let cases = try Fixtures.json("tokenizer_corpus.json") as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 40)
        var mismatches = 0
        for c in cases {
            let text = c["text"] as! String
            let want = (c["ids"] as! [NSNumber]).map { $0.int32Value }
            let got = model.tokenizer.encode(text)
            if got != want {
                mismatches += 1
                XCTFail("\(text.debugDescription): got \(got), want \(want)")
            }
            XCTAssertEqual(model.tokenizer.decode(got), text, "round trip of \(text.debugDescription)")
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testSpecialTokensKeptWholeOnlyWhenParsing() throws {
        let t = try Fixtures.smol().tokenizer
        let text = "<|im_start|>user\nHi<|im_end|>"
        let parsed = t.encode(text, parseSpecial: true)
        XCTAssertEqual(parsed.first, 1)
        XCTAssertEqual(parsed.last, 2)
        let plain = t.encode(text, parseSpecial: false)
        XCTAssertFalse(plain.contains(1) || plain.contains(2))
        XCTAssertEqual(t.decode(plain), text)
        // A prefix of a special token is ordinary text.
        XCTAssertFalse(t.encode("<|im_start|").contains(1))
    }

    func testDigitsAreSplitBeforeTheByteLevelRegex() throws {
        let t = try Fixtures.smol().tokenizer
        // SmolLM2's Digits pre-tokenizer isolates "4" and "2"; the spaces stay one piece.
        let ids = t.encode("   42")
        XCTAssertEqual(ids.count, 3)
        XCTAssertEqual(t.decode([ids[0]]), "   ")
    }

    func testPreTokenizerSplits() {
        func pieces(_ p: PreTokenizer, _ s: String) -> [String] {
            let scalars = Array(s.unicodeScalars)
            var out: [String] = []
            p.split(scalars) { r in
                var str = ""
                str.unicodeScalars.append(contentsOf: scalars[r])
                out.append(str)
            }
            return out
        }
        XCTAssertEqual(pieces(.gpt2, "Hello world  !"), ["Hello", " world", " ", " !"])
        XCTAssertEqual(pieces(.gpt2, "I'm here\n\nok"), ["I", "'m", " here", "\n", "\n", "ok"])
        XCTAssertEqual(pieces(.gpt2, "a  1"), ["a", " ", " 1"])
        XCTAssertEqual(pieces(.smollm, "a  12"), ["a", "  ", "1", "2"])
        XCTAssertEqual(pieces(.llama3, "12345 abc"), ["123", "45", " abc"])
        XCTAssertEqual(pieces(.qwen2, "12 x"), ["1", "2", " x"])
        XCTAssertEqual(pieces(.llama3, "HE'LL go\n\n  x"), ["HE", "'LL", " go", "\n\n", " ", " x"])
        XCTAssertEqual(pieces(.llama3, "x!!\n\ny"), ["x", "!!\n\n", "y"])
    }

    func testStreamingNeverSplitsCharacters() {
        let bytes = Array("é😀".utf8)
        var out = ""
        var streamed = 0
        for n in 1...bytes.count {  // bytes arriving one at a time
            let end = utf8Boundary(Array(bytes[..<n]), from: streamed, to: n)
            out += String(decoding: bytes[streamed..<end], as: UTF8.self)
            streamed = end
        }
        XCTAssertEqual(out, "é😀")
        XCTAssertEqual(utf8Boundary(bytes, from: 0, to: 1), 0)   // inside "é"
        XCTAssertEqual(utf8Boundary(bytes, from: 0, to: 4), 2)   // inside "😀"
    }

    func testChatTemplateFromMetadata() throws {
        let t = try Fixtures.smol().tokenizer
        let text = t.chatTemplate.render([.init(role: "user", content: "Hi")])
        XCTAssertEqual(text, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        let withSystem = t.chatTemplate.render([.init(role: "system", content: "S"), .init(role: "user", content: "Hi")])
        XCTAssertEqual(withSystem, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }
}
