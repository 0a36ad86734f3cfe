#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Runs body(0..<n) across the cores, for loops that BLAS does not cover (decode matmuls,
/// attention heads). Work smaller than a few microseconds per item should stay serial: callers
/// pass `serial: true` then.
///
/// A decode step makes ~150 such calls, ~50–100 µs apart. Waking a sleeping thread for each
/// (as DispatchQueue.concurrentPerform does) cost about a third of the step, so the workers
/// spin for a while after each job and only then sleep.
public func parallelFor(_ n: Int, serial: Bool = false, _ body: (Int) -> Void) {
    if n <= 1 || serial || workerThreads <= 1 {
        for i in 0..<n { body(i) }
        return
    }
    withoutActuallyEscaping(body) { b in
        if !SpinPool.shared.run(n, b) { for i in 0..<n { b(i) } }
    }
}

/// Threads used by parallelFor, and so by sgemm, which splits large products across them.
nonisolated(unsafe) public private(set) var workerThreads: Int = {
    setBLASThreads(1)
    return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}()

/// Sets the thread count for Ponder's loops and its sgemm; OpenBLAS itself stays on one thread
/// (set by workerThreads' initializer, which runs on this first access too).
public func setThreads(_ n: Int) {
    workerThreads = max(1, n)
}

final class SpinPool: @unchecked Sendable {
    static let shared = SpinPool()

    private let generation = Atomic<Int>(0)
    private let nextIndex = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// Workers that may touch the current job; the caller closes the job, then waits for 0, so
    /// no worker still holds the (non-escaping) closure when parallelFor returns.
    private let inside = Atomic<Int>(0)
    private let open = Atomic<Bool>(false)
    private var count = 0
    private var job: ((Int) -> Void)?
    private var started = 0
    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wake, nil)
    }

    /// Runs the job on the caller and the workers; false if another caller holds the pool
    /// (the caller then runs serially: generation on several threads at once stays correct).
    func run(_ n: Int, _ body: @escaping (Int) -> Void) -> Bool {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        startWorkers(workerThreads - 1)
        job = body
        count = n
        nextIndex.store(0, ordering: .relaxed)
        finished.store(0, ordering: .relaxed)
        open.store(true, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(&mutex)
        generation.add(1, ordering: .releasing)
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&mutex)
        work()
        while finished.load(ordering: .acquiring) < n {}
        open.store(false, ordering: .sequentiallyConsistent)
        while inside.load(ordering: .sequentiallyConsistent) > 0 {}
        job = nil
        return true
    }

    private func work() {
        let n = count
        guard let body = job else { return }
        while true {
            let i = nextIndex.add(1, ordering: .relaxed).oldValue
            if i >= n { return }
            body(i)
            finished.add(1, ordering: .releasing)
        }
    }

    private func startWorkers(_ want: Int) {
        while started < want {
            started += 1
            var t = pthread_t()
            let me = Unmanaged.passUnretained(self).toOpaque()
            pthread_create(&t, nil, { arg in
                Unmanaged<SpinPool>.fromOpaque(arg!).takeUnretainedValue().workerLoop()
                return nil
            }, me)
            pthread_detach(t)
        }
    }

    private func workerLoop() {
        var seen = generation.load(ordering: .acquiring)
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins > 200_000 {  // ~100 µs of spinning, then sleep until the next job
                    pthread_mutex_lock(&mutex)
                    while generation.load(ordering: .acquiring) == seen { pthread_cond_wait(&wake, &mutex) }
                    pthread_mutex_unlock(&mutex)
                }
            }
            let g = generation.load(ordering: .acquiring)
            inside.add(1, ordering: .sequentiallyConsistent)
            if open.load(ordering: .sequentiallyConsistent) && generation.load(ordering: .acquiring) == g { work() }
            inside.subtract(1, ordering: .sequentiallyConsistent)
            seen = g
        }
    }
}
