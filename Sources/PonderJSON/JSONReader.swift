import PonderBase

/// Reads a JSON object into typed fields, collecting every problem with its JSON path
/// (`sampling.top_p: expected a number in (0, 1]`) instead of stopping at the first, and
/// rejecting keys nobody asked for, so a misspelt option never passes silently.
public final class JSONReader {
    public let path: String
    private let fields: [(String, JSONValue)]
    private var seen: Set<String> = []
    private let sink: ErrorSink

    /// Every problem of one document, in the order found: (JSON path, message). "<root>" is the
    /// document itself.
    final class ErrorSink {
        var problems: [(path: String, message: String)] = []
        func add(_ path: String, _ message: String) { problems.append((path.isEmpty ? "<root>" : path, message)) }
    }

    /// Starts reading `value`, which must be an object; `what` names it in messages.
    public convenience init(_ value: JSONValue, what: String = "") {
        self.init(value, path: what, sink: ErrorSink())
    }

    init(_ value: JSONValue, path: String, sink: ErrorSink) {
        self.path = path
        self.sink = sink
        if case let .object(f) = value {
            fields = f
        } else {
            fields = []
            sink.add(path, "expected an object, got \(value.typeName)")
        }
    }

    public func fieldPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func fail(_ key: String, _ message: String) {
        sink.add(fieldPath(key), message)
    }

    public func failHere(_ message: String) {
        sink.add(path, message)
    }

    public func has(_ key: String) -> Bool { fields.contains { $0.0 == key } }

    /// The raw value, marking the key as used. Null counts as absent.
    public func value(_ key: String) -> JSONValue? {
        seen.insert(key)
        guard let v = fields.last(where: { $0.0 == key })?.1 else { return nil }
        if case .null = v { return nil }
        return v
    }

    public func string(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.asString else { fail(key, "expected a string, got \(v.typeName)"); return nil }
        return s
    }

    /// A string that names a file or directory: one with a NUL byte fails here, at its key
    /// (the file system would read only the part before the NUL).
    public func path(_ key: String) -> String? {
        guard let s = string(key) else { return nil }
        if s.utf8.contains(0) { fail(key, "contains a NUL byte (U+0000): no file can be named so"); return nil }
        return s
    }

    public func bool(_ key: String) -> Bool? {
        guard let v = value(key) else { return nil }
        guard case let .bool(b) = v else { fail(key, "expected a boolean, got \(v.typeName)"); return nil }
        return b
    }

    /// An integer in `range`; the message states the range so the caller can fix the value.
    public func int(_ key: String, in range: ClosedRange<Int64>) -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.asInt, range.contains(i) else {
            fail(key, "expected an integer in [\(range.lowerBound), \(range.upperBound)], got \(describe(v))")
            return nil
        }
        return Int(i)
    }

    /// A finite number accepted by `valid`; `expectation` describes the valid set.
    public func double(_ key: String, _ expectation: String, valid: (Double) -> Bool) -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.asDouble, d.isFinite, valid(d) else {
            fail(key, "expected \(expectation), got \(describe(v))")
            return nil
        }
        return d
    }

    public func strings(_ key: String) -> [String]? {
        guard let v = value(key) else { return nil }
        if let s = v.asString { return [s] }
        guard let a = v.asArray else { fail(key, "expected a string or an array of strings, got \(v.typeName)"); return nil }
        var out: [String] = []
        for (i, e) in a.enumerated() {
            guard let s = e.asString else { fail("\(key)[\(i)]", "expected a string, got \(e.typeName)"); return nil }
            out.append(s)
        }
        return out
    }

    public func object(_ key: String) -> JSONReader? {
        guard let v = value(key) else { return nil }
        return JSONReader(v, path: fieldPath(key), sink: sink)
    }

    public func array(_ key: String) -> [JSONValue]? {
        guard let v = value(key) else { return nil }
        guard let a = v.asArray else { fail(key, "expected an array, got \(v.typeName)"); return nil }
        return a
    }

    /// A reader for an element of an array read from this object.
    public func element(_ key: String, _ index: Int, _ value: JSONValue) -> JSONReader {
        JSONReader(value, path: "\(fieldPath(key))[\(index)]", sink: sink)
    }

    /// Reports unknown keys of this object (call once all fields are read).
    public func rejectUnknownKeys() {
        for (k, _) in fields where !seen.contains(k) {
            sink.add(fieldPath(k), "unknown key")
        }
    }

    /// Throws all collected problems of the whole document at once.
    public func finish() throws {
        rejectUnknownKeys()
        if !sink.problems.isEmpty {
            throw PonderError(.invalidArgument, sink.problems.map { "\($0.path): \($0.message)" }.joined(separator: "; "))
        }
    }

    public var hasErrors: Bool { !sink.problems.isEmpty }

    /// The problems found so far in the whole document (structured, for `ponder validate --json`).
    public var problems: [(path: String, message: String)] { sink.problems }

    /// A reader of `value` reporting into this reader's document at `path`: for a value that
    /// stands in for a part of the document (a default, a shared section) under its own path.
    public func reader(for value: JSONValue, at path: String) -> JSONReader {
        JSONReader(value, path: path, sink: sink)
    }

    private func describe(_ v: JSONValue) -> String {
        switch v {
        case .int, .double, .bool: return v.serialized()
        default: return v.typeName
        }
    }
}
