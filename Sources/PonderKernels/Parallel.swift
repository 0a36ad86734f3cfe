import Dispatch

/// Runs body(0..<n) across the cores, for loops that BLAS does not cover (attention heads,
/// sampling rows). Work smaller than a few microseconds per item should stay serial: callers
/// pass `serial: true` then, since waking threads costs more than it saves.
public func parallelFor(_ n: Int, serial: Bool = false, _ body: (Int) -> Void) {
    if n <= 1 || serial || workerThreads <= 1 {
        for i in 0..<n { body(i) }
        return
    }
    // concurrentPerform needs an escaping-free, Sendable-agnostic closure; the body only
    // touches disjoint memory per index, which is what makes this safe.
    withoutActuallyEscaping(body) { b in
        let box = UnsafeSendable(b)
        DispatchQueue.concurrentPerform(iterations: n) { box.value($0) }
    }
}

/// Threads used by parallelFor (and, through setThreads, by OpenBLAS).
nonisolated(unsafe) public private(set) var workerThreads: Int = 2

/// Sets the thread count for both Ponder's loops and OpenBLAS.
public func setThreads(_ n: Int) {
    workerThreads = max(1, n)
    setBLASThreads(workerThreads)
}

struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
