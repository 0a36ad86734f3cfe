import PonderBase
#if canImport(Glibc)
import Glibc
#endif

/// Live handles. A C caller can pass any pointer; looking it up here (instead of
/// dereferencing it) is what turns a freed or bogus handle into PONDER_ERR_MISUSE rather than
/// a crash. A handle is a number from a counter that never repeats (not an address, which
/// malloc would hand out again after a free), so a stale handle can never alias a newer object
/// and a second free of it is a no-op.
final class HandleTable<T: AnyObject>: @unchecked Sendable {
    private var objects: [UInt: T] = [:]
    private let lock = Lock()
    private let kind: String

    init(kind: String) { self.kind = kind }

    func insert(_ object: T) -> OpaquePointer {
        let key = HandleCounter.next()
        lock.locked { objects[key] = object }
        return OpaquePointer(bitPattern: key)!
    }

    /// The object behind a handle, retained for the duration of the caller's use.
    func get(_ handle: OpaquePointer?) throws -> T {
        guard let handle else { throw PonderError(.misuse, "\(kind) handle is NULL") }
        let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        let object = lock.locked { objects[key] }
        guard let object else { throw PonderError(.misuse, "\(kind) handle \(handle) is not a live \(kind) (freed already, or never created?)") }
        return object
    }

    /// Removes a handle; false if it was not live (NULL, freed already, or bogus).
    @discardableResult
    func remove(_ handle: OpaquePointer?) -> Bool {
        guard let handle else { return false }
        let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        let removed = lock.locked { objects.removeValue(forKey: key) }
        return removed != nil
    }
}

/// Handle numbers, shared by every table so a model handle passed where a trainer is expected
/// is unknown there too. They start high and step by 16, so handles look like aligned pointers
/// in a debugger and never equal small integers a caller might pass by mistake; 2^60 handles
/// would be needed to wrap.
enum HandleCounter {
    nonisolated(unsafe) private static var value: UInt = 0x7000_0000_0000
    private static let lock = Lock()

    static func next() -> UInt {
        lock.locked {
            value += 16
            return value
        }
    }
}

/// Per-thread last error message (C string owned by the library).
enum LastError {
    nonisolated(unsafe) static var key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { p in free(p) }
        return k
    }()

    static func set(_ message: String) {
        let old = pthread_getspecific(key)
        pthread_setspecific(key, strdup(message))
        free(old)
    }

    static func get() -> UnsafePointer<CChar> {
        if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
        return emptyString
    }

    nonisolated(unsafe) static let emptyString: UnsafePointer<CChar> = UnsafePointer(strdup("")!)
}

/// A NUL-terminated C string as Swift text, rejecting NULL and invalid UTF-8 (with the offset
/// of the first bad byte) instead of repairing it silently.
func cString(_ p: UnsafePointer<CChar>?, _ what: String, length: Int? = nil) throws -> String {
    guard let p else { throw PonderError(.misuse, "\(what) is NULL") }
    let bytes = UnsafeRawBufferPointer(start: p, count: length ?? strlen(p))
    var it = bytes.makeIterator()
    var parser = Unicode.UTF8.ForwardParser()
    var offset = 0
    while true {
        switch parser.parseScalar(from: &it) {
        case let .valid(s): offset += s.count
        case .emptyInput: return String(decoding: bytes, as: UTF8.self)
        case .error: throw PonderError(.parse, "\(what): invalid UTF-8 at byte offset \(offset)")
        }
    }
}

/// A malloc'd, NUL-terminated copy of `s` (which may itself contain NULs) for the caller to
/// release with ponder_string_free.
func cStringCopy(_ s: String, length: UnsafeMutablePointer<Int>? = nil) throws -> UnsafeMutablePointer<CChar> {
    var s = s
    return try s.withUTF8 { b in
        guard let p = malloc(b.count + 1)?.assumingMemoryBound(to: CChar.self) else {
            throw PonderError(.outOfMemory, "cannot allocate the result string")
        }
        if b.count > 0 { memcpy(p, b.baseAddress!, b.count) }
        p[b.count] = 0
        length?.pointee = b.count
        return p
    }
}
