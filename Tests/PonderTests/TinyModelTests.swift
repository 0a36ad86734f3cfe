import Foundation
import XCTest
@testable import PonderModel
@testable import PonderText

/// Hugging Face directories (safetensors + tokenizer.json, Llama and Qwen2 with biases) and a
/// llama.cpp-style GGUF with permuted Q/K and F16/Q8_0 tensors, against transformers' logits
/// (fixtures from scripts/make_tiny_fixtures.py).
final class TinyModelTests: XCTestCase {
    static let tiny = Fixtures.dir.appendingPathComponent("tiny")
    static let reference = try! JSONSerialization.jsonObject(with: Data(contentsOf: tiny.appendingPathComponent("reference.json"))) as! [String: Any]

    func path(_ model: String) -> String {
        let file = (TinyModelTests.reference["models"] as! [String: [String: Any]])[model]!["file"] as! String
        let url = TinyModelTests.tiny.appendingPathComponent(file)
        return file.hasSuffix(".gguf") ? url.path : url.deletingLastPathComponent().path
    }

    func testLogitsAtEveryPosition() throws {
        for name in ["llama-safetensors", "qwen2-safetensors", "llama-gguf"] {
            let model = try LlamaModel.load(path: path(name))
            let spec = (TinyModelTests.reference["models"] as! [String: [String: Any]])[name]!
            for c in spec["cases"] as! [[String: Any]] {
                let ids = (c["ids"] as! [NSNumber]).map { $0.int32Value }
                let want = (c["logits"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
                let got = try model.forwardLogits(ids)
                let v = model.config.vocabSize
                var maxDiff: Float = 0
                for (t, row) in want.enumerated() {
                    for j in 0..<v { maxDiff = max(maxDiff, abs(got[t * v + j] - row[j])) }
                }
                XCTAssertLessThan(maxDiff, 2e-4, "\(name)/\(c["name"]!)")
            }
        }
    }

    func testTokenizersFromTokenizerJSONAndGGUF() throws {
        let toks = TinyModelTests.reference["tokenizers"] as! [String: [[String: Any]]]
        for (name, tokName) in [("llama-safetensors", "llama"), ("qwen2-safetensors", "qwen2"), ("llama-gguf", "llama")] {
            let model = try LlamaModel.load(path: path(name))
            for c in toks[tokName]! {
                let text = c["text"] as! String
                // Qwen2's tokenizer NFC-normalizes first; Ponder does not normalize (see NOTES.md).
                if tokName == "qwen2" && !text.unicodeScalars.elementsEqual(text.precomposedStringWithCanonicalMapping.unicodeScalars) { continue }
                let want = (c["ids"] as! [NSNumber]).map { $0.int32Value }
                XCTAssertEqual(model.tokenizer.encode(text), want, "\(name): \(text.debugDescription)")
            }
        }
    }

    func testChatTemplateFromTokenizerConfig() throws {
        let model = try LlamaModel.load(path: path("qwen2-safetensors"))
        guard case .chatml = model.tokenizer.chatTemplate else { return XCTFail("expected ChatML") }
        XCTAssertEqual(model.tokenizer.eos, 299)
    }

    /// Dequantization of every supported ggml type against gguf-py's reference.
    func testDequantizationMatchesGGUFPy() throws {
        let blocks = try JSONSerialization.jsonObject(with: Data(contentsOf: TinyModelTests.tiny.appendingPathComponent("quant_blocks.json"))) as! [String: [String: Any]]
        XCTAssertEqual(Set(blocks.keys), ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"])
        for (name, spec) in blocks {
            let type = GGMLType(rawValue: UInt32((spec["ggml_type"] as! NSNumber).intValue))!
            XCTAssertEqual(type.blockBytes, (spec["type_size"] as! NSNumber).intValue, name)
            XCTAssertEqual(type.blockSize, (spec["block_size"] as! NSNumber).intValue, name)
            let hex = Array((spec["hex"] as! String).utf8)
            let bytes = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
            let want = (spec["values"] as! [NSNumber]).map(\.floatValue)
            var got = [Float](repeating: .nan, count: want.count)
            bytes.withUnsafeBytes { type.dequantize($0.baseAddress!, into: &got, count: want.count) }
            for i in 0..<want.count {
                XCTAssertEqual(got[i], want[i], accuracy: max(1e-6, abs(want[i]) * 1e-6), "\(name)[\(i)]")
            }
        }
    }
}
