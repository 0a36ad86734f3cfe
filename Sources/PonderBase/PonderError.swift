/// The one error type every Ponder layer throws. `code` maps one-to-one onto `ponder_status`
/// in include/ponder.h, so the C ABI converts without a table of special cases.
public struct PonderError: Error, CustomStringConvertible, Sendable {
    public enum Code: Int32, Sendable {
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
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public static func invalid(_ message: String) -> PonderError { PonderError(.invalidArgument, message) }
    public static func format(_ message: String) -> PonderError { PonderError(.format, message) }
}
