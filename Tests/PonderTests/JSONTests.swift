import XCTest
@testable import PonderJSON
import PonderBase

final class JSONTests: XCTestCase {
    func testParseErrorsCarryByteOffsets() {
        for (text, offset) in [("{\"a\": }", 6), ("[1, 2", 5), ("{\"a\": 1} x", 9), ("", 0), ("{\"a\": 01}", 8)] {
            XCTAssertThrowsError(try JSONValue.parse(text)) { e in
                let msg = (e as! PonderError).message
                XCTAssertEqual((e as! PonderError).code, .parse)
                XCTAssertTrue(msg.contains("byte offset \(offset)"), "\(text): \(msg)")
            }
        }
    }

    func testRoundTrip() throws {
        let text = #"{"a":[1,2.5,"x\n\"y\"",true,null],"b":{"c":-3},"é":"😀\u0001"}"#
        let v = try JSONValue.parse(text)
        XCTAssertEqual(try JSONValue.parse(v.serialized()), v)
        XCTAssertEqual(JSONValue.double(.nan).serialized(), "null")
        XCTAssertEqual(try JSONValue.parse("42"), .int(42))
    }

    func testReaderCollectsAllProblemsWithPaths() {
        let v = try! JSONValue.parse(#"{"n": "x", "sub": {"k": 5, "zz": 1}, "extra": 1}"#)
        let r = JSONReader(v)
        _ = r.int("n", in: 0...3)
        if let sub = r.object("sub") {
            _ = sub.string("k")
            sub.rejectUnknownKeys()
        }
        XCTAssertThrowsError(try r.finish()) { e in
            let msg = (e as! PonderError).message
            for part in ["n: expected an integer in [0, 3]", "sub.k: expected a string", "sub.zz: unknown key", "extra: unknown key"] {
                XCTAssertTrue(msg.contains(part), msg)
            }
        }
    }
}
