/// Checked arithmetic for sizes derived from untrusted input (file headers, JSON configs). A
/// product or sum that overflows is a format error naming what was computed, not a trap: a
/// Swift overflow trap would take the host process down through the C ABI.
public enum Checked {
    public static func mul(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (r, o) = a.multipliedReportingOverflow(by: b)
        if o { throw PonderError.format("\(what()): \(a) × \(b) overflows") }
        return r
    }

    public static func add(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (r, o) = a.addingReportingOverflow(b)
        if o { throw PonderError.format("\(what()): \(a) + \(b) overflows") }
        return r
    }

    /// The product of `dims`, rejecting overflow and any result above `limit`.
    public static func product(_ dims: [Int], limit: Int = Int.max, _ what: @autoclosure () -> String) throws -> Int {
        var n = 1
        for d in dims {
            guard d >= 0 else { throw PonderError.format("\(what()): negative dimension \(d)") }
            n = try mul(n, d, what())
        }
        guard n <= limit else { throw PonderError.format("\(what()): \(n) elements exceed the limit of \(limit)") }
        return n
    }

    /// An unsigned file field as an Int no larger than `limit`.
    public static func int(_ v: UInt64, limit: Int = Int.max, _ what: @autoclosure () -> String) throws -> Int {
        guard v <= UInt64(limit) else { throw PonderError.format("\(what()): \(v) exceeds \(limit)") }
        return Int(v)
    }
}
