/// The one error type every Ponder layer throws. `code` maps one-to-one onto `ponder_status`
/// in include/ponder.h, so the C ABI converts without a table of special cases.
public struct PonderError: Error, CustomStringConvertible, Sendable {
    /// The one list of statuses: include/ponder.h's enum, ponder_status_string and the Python
    /// binding's names are checked against it (CAPITests, tests/python/test_binding.py).
    public enum Code: Int32, Sendable, CaseIterable {
        case invalidArgument = 1  // a value is out of range, of the wrong type, or unknown
        case parse = 2            // malformed JSON or text (message carries the byte offset)
        case io = 3               // a file could not be opened, read or written
        case format = 4           // a model/tokenizer file is corrupt or inconsistent
        case unsupported = 5      // a valid file uses a feature Ponder does not implement
        case outOfMemory = 6
        case cancelled = 7        // a callback asked to stop
        case bufferTooSmall = 8   // caller's buffer is too small; the needed size is reported
        case misuse = 9           // NULL handle, call in the wrong state
        case `internal` = 10

        /// The header's name without its prefix: PONDER_ERR_INVALID_ARGUMENT is "INVALID_ARGUMENT".
        public var name: String {
            var out = ""
            for ch in "\(self)" {
                if ch.isUppercase { out += "_" }
                out += ch.uppercased()
            }
            return out
        }

        /// What ponder_status_string says of it.
        public var summary: String {
            switch self {
            case .invalidArgument: "invalid argument"
            case .parse: "parse error"
            case .io: "I/O error"
            case .format: "corrupt or inconsistent file"
            case .unsupported: "unsupported"
            case .outOfMemory: "out of memory"
            case .cancelled: "cancelled"
            case .bufferTooSmall: "buffer too small"
            case .misuse: "API misuse"
            case .internal: "internal error"
            }
        }
    }

    public let code: Code
    public let message: String
    /// Where in a JSON document the problem is, and what it is there, when a layer below the
    /// config readers found it (a repeated key): validation reports it at that path.
    public var jsonPath: String?
    public var detail: String?

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static func invalid(_ message: String) -> PonderError { PonderError(.invalidArgument, message) }
    public static func format(_ message: String) -> PonderError { PonderError(.format, message) }
}
