import CJSONC
import PonderBase

/// A parsed JSON document. Objects keep their key order, so error messages and round trips
/// follow what the caller wrote.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case let .object(fields) = self { return fields.last { $0.0 == key }?.1 }
        return nil
    }

    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    public var asString: String? { if case let .string(s) = self { return s } else { return nil } }
    public var asArray: [JSONValue]? { if case let .array(a) = self { return a } else { return nil } }
    public var asObject: [(String, JSONValue)]? { if case let .object(f) = self { return f } else { return nil } }
    public var asInt: Int64? {
        switch self {
        case let .int(i): return i
        case let .double(d) where d.rounded() == d && abs(d) < 9.0e15: return Int64(d)
        default: return nil
        }
    }
    public var asDouble: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }
}

// MARK: - Parsing (json-c: strict RFC 8259 with UTF-8 validation, errors carry byte offsets)

extension JSONValue {
    /// Parses a complete JSON text. `what` names the input in error messages ("request",
    /// "tokenizer.json").
    public static func parse(_ bytes: UnsafeRawBufferPointer, what: String = "JSON") throws -> JSONValue {
        guard let tok = json_tokener_new_ex(JSON_TOKENER_DEFAULT_DEPTH) else {
            throw PonderError(.outOfMemory, "\(what): cannot allocate a JSON parser")
        }
        defer { json_tokener_free(tok) }
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8)
        if bytes.count >= Int(Int32.max) { throw PonderError(.parse, "\(what): larger than 2 GiB") }
        guard bytes.count > 0 else { throw PonderError(.parse, "\(what): invalid JSON at byte offset 0: empty input") }
        // json-c completes a top-level number only when it sees the terminating NUL, so the
        // text is parsed from a NUL-terminated copy.
        var buf = [CChar](repeating: 0, count: bytes.count + 1)
        buf.withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
        let obj = buf.withUnsafeBufferPointer { json_tokener_parse_ex(tok, $0.baseAddress!, Int32(bytes.count + 1)) }
        let err = json_tokener_get_error(tok)
        let end = Int(json_tokener_get_parse_end(tok))
        if err != json_tokener_success || (obj == nil && !isLiteralNull(bytes)) {
            json_object_put(obj)
            let reason = err == json_tokener_continue ? "unexpected end of input"
                : String(cString: json_tokener_error_desc(err))
            throw PonderError(.parse, "\(what): invalid JSON at byte offset \(min(end, bytes.count)): \(reason)")
        }
        defer { json_object_put(obj) }
        var i = end
        while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        if i == bytes.count - 1 && bytes[i] == 0 { i += 1 }
        if i < bytes.count {
            throw PonderError(.parse, "\(what): invalid JSON at byte offset \(i): trailing characters after the value")
        }
        try checkNumbers(bytes, what: what)
        try checkDuplicateKeys(bytes, what: what)
        return convert(obj)
    }

    public static func parse(_ text: String, what: String = "JSON") throws -> JSONValue {
        var t = text
        return try t.withUTF8 { try parse(UnsafeRawBufferPointer($0), what: what) }
    }

    /// The JSON document in the file at `path` (messages name the path).
    public static func parse(file path: String) throws -> JSONValue {
        try readFile(path).withUnsafeBytes { try parse($0, what: path) }
    }

    /// json-c accepts NaN and Infinity, turns 1e400 into infinity and clamps integers beyond
    /// 64 bits to the nearest bound; none of these is a JSON number Ponder could honour, and
    /// each would surface later as a misleading "got null" or a silently different seed. One
    /// pass over the text (which json-c has already validated) rejects them with their offset.
    static func checkNumbers(_ b: UnsafeRawBufferPointer, what: String) throws {
        var i = 0
        let n = b.count
        // The key a value belongs to, so the message can name the field as well as the offset.
        var key: Range<Int>? = nil
        func fail(_ at: Int, _ why: String) -> PonderError {
            let k = key.map { ", in \"" + String(decoding: UnsafeRawBufferPointer(rebasing: b[$0]), as: UTF8.self) + "\"" } ?? ""
            return PonderError(.parse, "\(what): invalid JSON at byte offset \(at)\(k): \(why)")
        }
        while i < n {
            let c = b[i]
            if c == 0x22 {  // a string: skip to its closing quote
                let start = i + 1
                i += 1
                while i < n && b[i] != 0x22 { i += b[i] == 0x5C ? 2 : 1 }
                let end = min(i, n)
                i += 1
                var j = i
                while j < n, [0x20, 0x09, 0x0A, 0x0D].contains(b[j]) { j += 1 }
                if j < n && b[j] == 0x3A { key = start..<end }
                continue
            }
            if c == 0x4E || c == 0x49 || c == 0x6E || c == 0x69 {  // N I n i: NaN, Infinity
                if !(c == 0x6E && i + 4 <= n && b[i + 1] == 0x75 && b[i + 2] == 0x6C && b[i + 3] == 0x6C) {  // null
                    throw fail(i, "NaN and Infinity are not JSON numbers")
                }
            }
            guard c == 0x2D || (c >= 0x30 && c <= 0x39) else { i += 1; continue }
            let start = i
            var isInteger = true
            i += 1
            while i < n {
                let d = b[i]
                if d >= 0x30 && d <= 0x39 { i += 1; continue }
                if d == 0x2E || d == 0x65 || d == 0x45 || d == 0x2B || d == 0x2D { isInteger = false; i += 1; continue }
                if d == 0x49 || d == 0x4E || d == 0x69 || d == 0x6E {  // -Infinity, -NaN
                    throw fail(start, "NaN and Infinity are not JSON numbers")
                }
                break
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
            if isInteger {
                if Int64(text) == nil {
                    throw fail(start, "integer \(text) does not fit in 64 bits")
                }
            } else if let d = Double(text), !d.isFinite {
                throw fail(start, "number \(text) is out of range")
            }
        }
    }

    /// json-c keeps the last of two equal keys in an object without a word, so a config that
    /// gives "beta" twice would run with one of them silently. One pass over the (already
    /// validated) text rejects a repeated key with its path and both byte offsets.
    static func checkDuplicateKeys(_ b: UnsafeRawBufferPointer, what: String) throws {
        enum Level { case object(keys: [String: Int], key: String?, expectKey: Bool), array(index: Int) }
        var stack: [Level] = []
        func path(_ last: String?) -> String {
            var p = ""
            for level in stack.dropLast() {
                switch level {
                case let .object(_, key, _): p += (p.isEmpty ? "" : ".") + (key ?? "")
                case let .array(index): p += "[\(index)]"
                }
            }
            if let last { p += (p.isEmpty ? "" : ".") + last }
            return p.isEmpty ? "<root>" : p
        }
        var i = 0
        let n = b.count
        while i < n {
            switch b[i] {
            case 0x7B: stack.append(.object(keys: [:], key: nil, expectKey: true)); i += 1
            case 0x5B: stack.append(.array(index: 0)); i += 1
            case 0x7D, 0x5D: _ = stack.popLast(); i += 1
            case 0x2C:
                switch stack.last {
                case let .object(keys, key, _)?: stack[stack.count - 1] = .object(keys: keys, key: key, expectKey: true)
                case let .array(index)?: stack[stack.count - 1] = .array(index: index + 1)
                case nil: break
                }
                i += 1
            case 0x22:
                let start = i
                i += 1
                while i < n && b[i] != 0x22 { i += b[i] == 0x5C ? 2 : 1 }
                let raw = UnsafeRawBufferPointer(rebasing: b[(start + 1)..<min(i, n)])
                i += 1
                guard case .object(var keys, _, true)? = stack.last else { continue }
                let key = unescapeKey(raw)
                if let first = keys[key] {
                    let detail = "given twice (byte offsets \(first) and \(start)); a key may appear once per object"
                    var e = PonderError(.invalidArgument, "\(what): \(path(key)): \(detail)")
                    (e.jsonPath, e.detail) = (path(key), detail)
                    throw e
                }
                keys[key] = start
                stack[stack.count - 1] = .object(keys: keys, key: key, expectKey: false)
            default: i += 1
            }
        }
    }

    /// A JSON string's content (json-c validated its escapes) as the key it names.
    static func unescapeKey(_ raw: UnsafeRawBufferPointer) -> String {
        guard raw.contains(0x5C) else { return String(decoding: raw, as: UTF8.self) }
        var out: [UInt8] = []
        var units: [UInt16] = []
        func flushUnits() {
            if !units.isEmpty { out += Array(String(decoding: units, as: UTF16.self).utf8); units = [] }
        }
        var i = 0
        while i < raw.count {
            guard raw[i] == 0x5C, i + 1 < raw.count else { flushUnits(); out.append(raw[i]); i += 1; continue }
            let e = raw[i + 1]
            if e == 0x75, i + 6 <= raw.count, let u = UInt16(String(decoding: UnsafeRawBufferPointer(rebasing: raw[(i + 2)..<(i + 6)]), as: UTF8.self), radix: 16) {
                units.append(u)
                i += 6
                continue
            }
            flushUnits()
            let map: [UInt8: UInt8] = [0x62: 0x08, 0x66: 0x0C, 0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09]
            out.append(map[e] ?? e)
            i += 2
        }
        flushUnits()
        return String(decoding: out, as: UTF8.self)
    }

    private static func isLiteralNull(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let s = bytes.filter { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        return s == Array("null".utf8)
    }

    private static func convert(_ obj: OpaquePointer?) -> JSONValue {
        guard let obj else { return .null }
        switch json_object_get_type(obj) {
        case json_type_null: return .null
        case json_type_boolean: return .bool(json_object_get_boolean(obj) != 0)
        case json_type_int: return .int(json_object_get_int64(obj))
        case json_type_double: return .double(json_object_get_double(obj))
        case json_type_string:
            let n = Int(json_object_get_string_len(obj))
            let p = json_object_get_string(obj)!
            return .string(String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self))
        case json_type_array:
            let n = json_object_array_length(obj)
            var out: [JSONValue] = []
            out.reserveCapacity(n)
            for i in 0..<n { out.append(convert(json_object_array_get_idx(obj, i))) }
            return .array(out)
        case json_type_object:
            var out: [(String, JSONValue)] = []
            var it = json_object_iter_begin(obj)
            var end = json_object_iter_end(obj)
            while json_object_iter_equal(&it, &end) == 0 {
                let key = String(cString: json_object_iter_peek_name(&it))
                out.append((key, convert(json_object_iter_peek_value(&it))))
                json_object_iter_next(&it)
            }
            return .object(out)
        default: return .null
        }
    }
}

// MARK: - Writing

extension JSONValue {
    /// Compact JSON text. Non-finite numbers become null: JSON has no NaN or infinity.
    public func serialized() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    public func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(i): out += String(i)
        case let .double(d): out += d.isFinite ? (d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)") : "null"
        case let .string(s): JSONValue.writeString(s, into: &out)
        case let .array(a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case let .object(fields):
            out += "{"
            for (i, (k, v)) in fields.enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
}

/// `["event": "log", "message": m]` is an object with its keys in the order written.
extension JSONValue: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(elements) }
}

/// A Float option as the decimal it was written as (0.02, not 0.019999999552965164).
public func decimal(_ f: Float) -> Double { Double("\(f)") ?? Double(f) }
