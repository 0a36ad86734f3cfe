import Foundation
import XCTest
@testable import PonderC
import PonderBase
import PonderModel

/// Bad input through the C ABI: each case returns its documented status and a message naming
/// the field, path or offset; none may crash.
final class CAPITests: XCTestCase {
    func lastError() -> String { String(cString: ponder_last_error()) }

    func load(_ json: String) -> (Int32, OpaquePointer?) {
        var m: OpaquePointer? = nil
        let s = json.withCString { ponder_model_load($0, &m) }
        return (s, m)
    }

    func testVersionAndStatusStrings() {
        XCTAssertEqual(String(cString: ponder_version()), ponderVersion)
        XCTAssertEqual(ponder_version_number(), 100)
        XCTAssertEqual(String(cString: ponder_status_string(1)), "invalid argument")
        XCTAssertEqual(String(cString: ponder_status_string(999)), "unknown status")
        XCTAssertEqual(String(cString: ponder_status_string(-1)), "unknown status")
        // The header's version macros agree with the library.
        let header = try! String(contentsOf: Fixtures.repo.appendingPathComponent("include/ponder.h"), encoding: .utf8)
        XCTAssertTrue(header.contains("#define PONDER_VERSION_MAJOR \(ponderVersionMajor)\n"))
        XCTAssertTrue(header.contains("#define PONDER_VERSION_MINOR \(ponderVersionMinor)\n"))
        XCTAssertTrue(header.contains("#define PONDER_VERSION_PATCH \(ponderVersionPatch)\n"))
    }

    /// The header's status enum is PonderError.Code, the one list: same names, same values, and
    /// a string for each in ponder_status_string.
    func testStatusEnumMatchesTheHeader() throws {
        let header = try String(contentsOf: Fixtures.repo.appendingPathComponent("include/ponder.h"), encoding: .utf8)
        var inHeader: [String: Int32] = [:]
        for line in header.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("PONDER_ERR_"), let eq = t.firstIndex(of: "=") else { continue }
            let name = t[t.index(t.startIndex, offsetBy: 11)..<eq].trimmingCharacters(in: .whitespaces)
            let value = t[t.index(after: eq)...].prefix { $0 == " " || $0.isNumber }.trimmingCharacters(in: .whitespaces)
            inHeader[name] = Int32(value)
        }
        let inSwift = Dictionary(uniqueKeysWithValues: PonderError.Code.allCases.map { ($0.name, $0.rawValue) })
        XCTAssertEqual(inHeader, inSwift)
        for c in PonderError.Code.allCases {
            XCTAssertEqual(String(cString: ponder_status_string(c.rawValue)), c.summary)
        }
        XCTAssertEqual(String(cString: ponder_status_string(Int32(PonderError.Code.allCases.count + 1))), "unknown status")
    }

    func testLoadErrors() throws {
        var (s, m) = load("{\"path\": ")
        XCTAssertEqual(s, 2); XCTAssertNil(m)
        XCTAssertTrue(lastError().contains("byte offset"), lastError())
        (s, m) = load("{\"path\": 3}")
        XCTAssertEqual(s, 1); XCTAssertTrue(lastError().contains("path: expected a string"), lastError())
        (s, m) = load("{\"path\": \"x.gguf\", \"thread\": 2}")
        XCTAssertEqual(s, 1); XCTAssertTrue(lastError().contains("thread: unknown key"), lastError())
        (s, m) = load("{\"path\": \"x.gguf\", \"threads\": 0}")
        XCTAssertEqual(s, 1); XCTAssertTrue(lastError().contains("threads: expected an integer in [1, 256]"), lastError())
        (s, m) = load("{\"path\": \"/nonexistent/model.gguf\"}")
        XCTAssertEqual(s, 3); XCTAssertTrue(lastError().contains("/nonexistent/model.gguf"), lastError())
        XCTAssertEqual(ponder_model_load(nil, &m), 9)
        XCTAssertEqual("{}".withCString { ponder_model_load($0, nil) }, 9)
        // Invalid UTF-8 in the options string.
        let bad: [CChar] = [0x7B, 0x22, CChar(bitPattern: 0xFF), 0x22, 0x7D, 0]
        XCTAssertEqual(bad.withUnsafeBufferPointer { ponder_model_load($0.baseAddress, &m) }, 2)
        XCTAssertTrue(lastError().contains("invalid UTF-8 at byte offset 2"), lastError())
    }

    func testCorruptModelFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ponder-capi-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = dir.appendingPathComponent("garbage.gguf")
        try Data("definitely not a model".utf8).write(to: garbage)
        var (s, _) = load("{\"path\": \"\(garbage.path)\"}")
        XCTAssertEqual(s, 4); XCTAssertTrue(lastError().contains("GGUF"), lastError())
        guard FileManager.default.fileExists(atPath: Fixtures.smolPath) else { throw XCTSkip("model missing") }
        // Truncated real model: header intact, data cut off.
        let real = try Data(contentsOf: URL(fileURLWithPath: Fixtures.smolPath), options: .alwaysMapped)
        let cut = dir.appendingPathComponent("cut.gguf")
        try real.prefix(real.count / 2).write(to: cut)
        (s, _) = load("{\"path\": \"\(cut.path)\"}")
        XCTAssertEqual(s, 4); XCTAssertTrue(lastError().contains("tensor") && lastError().contains("truncated"), lastError())
        // Cut inside the metadata.
        let cut2 = dir.appendingPathComponent("cut2.gguf")
        try real.prefix(5000).write(to: cut2)
        (s, _) = load("{\"path\": \"\(cut2.path)\"}")
        XCTAssertEqual(s, 4); XCTAssertTrue(lastError().contains("byte offset"), lastError())
    }

    func testModelCallsWithBadArguments() throws {
        guard FileManager.default.fileExists(atPath: Fixtures.smolPath) else { throw XCTSkip("model missing") }
        let (s, mm) = load("{\"path\": \"\(Fixtures.smolPath)\", \"threads\": 2}")
        XCTAssertEqual(s, 0, lastError())
        let m = try XCTUnwrap(mm)
        defer { ponder_model_free(m) }

        var out: UnsafeMutablePointer<CChar>? = nil
        func gen(_ json: String) -> Int32 { json.withCString { ponder_generate(m, $0, &out) } }
        XCTAssertEqual(gen("{\"prompt\": \"hi\", \"top_p\": 1.5}"), 1)
        XCTAssertTrue(lastError().contains("top_p: expected a number in (0, 1]"), lastError())
        XCTAssertEqual(gen("{\"prompt\": \"hi\", \"max_tokns\": 3}"), 1)
        XCTAssertTrue(lastError().contains("max_tokns: unknown key"), lastError())
        XCTAssertEqual(gen("{\"prompt\": \"hi\", \"temperature\": \"hot\"}"), 1)
        XCTAssertTrue(lastError().contains("temperature: expected a number"), lastError())
        XCTAssertEqual(gen("{\"messages\": [{\"role\": \"user\"}]}"), 1)
        XCTAssertTrue(lastError().contains("messages[0]: missing \"content\""), lastError())
        XCTAssertEqual(gen("{\"prompt\": \"hi\",}"), 2)
        XCTAssertTrue(lastError().contains("byte offset"), lastError())
        XCTAssertEqual(gen("{\"prompt\": \"hi\", \"max_tokens\": 100000000}"), 1)
        XCTAssertEqual(gen("{\"prompt\": \"\"}"), 1)
        XCTAssertTrue(lastError().contains("prompt"), lastError())
        XCTAssertEqual(gen("{\"prompt\": \"hi\", \"stop\": [1]}"), 1)
        XCTAssertTrue(lastError().contains("stop[0]: expected a string"), lastError())
        XCTAssertNil(out)
        XCTAssertEqual(ponder_generate(m, nil, &out), 9)
        XCTAssertEqual("{\"prompt\":\"hi\"}".withCString { ponder_generate(m, $0, nil) }, 9)

        XCTAssertEqual(gen("{\"prompt\": \"1+1=\", \"max_tokens\": 3, \"temperature\": 0}"), 0, lastError())
        let result = try JSONSerialization.jsonObject(with: Data(String(cString: out!).utf8)) as! [String: Any]
        ponder_string_free(out)
        XCTAssertEqual(((result["completions"] as! [[String: Any]])[0]["token_ids"] as! [Any]).count, 3)

        // tokenize: size query, buffer too small, NULLs
        var n: UInt = 0
        XCTAssertEqual("hello world".withCString { ponder_tokenize(m, $0, 11, true, nil, 0, &n) }, 8)
        XCTAssertEqual(n, 2)
        var ids = [Int32](repeating: 0, count: 2)
        XCTAssertEqual("hello world".withCString { ponder_tokenize(m, $0, 11, true, &ids, 2, &n) }, 0)
        XCTAssertEqual(ponder_tokenize(m, nil, 0, true, &ids, 2, &n), 9)
        XCTAssertEqual("x".withCString { ponder_tokenize(m, $0, 1, true, &ids, 2, nil) }, 9)
        // detokenize: out-of-range id names its index
        var text: UnsafeMutablePointer<CChar>? = nil
        var bad: [Int32] = [ids[0], 49152]
        XCTAssertEqual(ponder_detokenize(m, &bad, 2, &text, nil), 1)
        XCTAssertTrue(lastError().contains("ids[1]"), lastError())
        var len: UInt = 0
        XCTAssertEqual(ponder_detokenize(m, &ids, 2, &text, &len), 0)
        XCTAssertEqual(len, 11)
        XCTAssertEqual(String(cString: text!), "hello world")
        ponder_string_free(text)
        XCTAssertEqual(ponder_detokenize(m, nil, 3, &text, nil), 9)
    }

    func testStaleAndBogusHandles() throws {
        var out: UnsafeMutablePointer<CChar>? = nil
        XCTAssertEqual(ponder_model_info(nil, &out), 9)
        let bogus = OpaquePointer(bitPattern: 0xDEAD_BEE0)
        XCTAssertEqual(ponder_model_info(bogus, &out), 9)
        XCTAssertTrue(lastError().contains("not a live model"), lastError())
        ponder_model_free(bogus)  // ignored
        ponder_model_free(nil)
        ponder_string_free(nil)
    }
}
