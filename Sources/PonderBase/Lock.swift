#if canImport(Glibc)
import Glibc
#endif

/// A mutex for state shared between a caller's threads (handle tables, a running pipeline's
/// status). The pthread mutex lives in its own allocation: it must not move while locked.
public final class Lock: @unchecked Sendable {
    private let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)

    public init() { pthread_mutex_init(m, nil) }

    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }

    public func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}
