import COpenBLAS
import CPonderCPU
import PonderMatvec
import PonderMatvec512
#if canImport(Glibc)
import Glibc
#endif

/// Row-major sgemm: C[M×N] = alpha · op(A) · op(B) + beta · C. Every large matmul in Ponder
/// goes through here, with transposes expressed as flags rather than copies.
///
/// OpenBLAS runs single-threaded; a large product is split into one block of C per core on
/// Ponder's workers. With OpenBLAS's own thread team, its threads (which spin and yield for a
/// while after each call) and Ponder's workers took turns on the cores between consecutive
/// kernels: measured in NOTES.md, "One thread team". Only C is split, never K, so each element
/// is summed exactly as one OpenBLAS call would.
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    let parts = workerThreads
    // Below ~1 M multiply-adds a product takes tens of microseconds: not worth waking a core.
    guard parts > 1, m * n * k >= 1 << 20, max(m, n) >= 32 * parts else {
        sgemmBlock(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        return
    }
    // Block edges on multiples of 16 rows or columns, the kernels' register tiles.
    let splitRows = m >= n
    let total = splitRows ? m : n
    parallelFor(parts) { p in
        let lo = (total * p / parts) & ~15, hi = p == parts - 1 ? total : (total * (p + 1) / parts) & ~15
        if hi <= lo { return }
        if splitRows {
            sgemmBlock(transA: transA, transB: transB, m: hi - lo, n: n, k: k, alpha: alpha,
                       a: transA ? a + lo : a + lo * lda, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c + lo * ldc, ldc: ldc)
        } else {
            sgemmBlock(transA: transA, transB: transB, m: m, n: hi - lo, k: k, alpha: alpha, a: a, lda: lda,
                       b: transB ? b + lo * ldb : b + lo, ldb: ldb,
                       beta: beta, c: c + lo, ldc: ldc)
        }
    }
}

/// One OpenBLAS call on the calling thread.
@inline(__always)
func sgemmBlock(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc))
}

/// y[M×N] = x[M×K] · W[N×K]ᵀ (+ y if accumulate): a linear layer with Hugging Face's [out, in]
/// weight layout.
///
/// Decode steps have few rows (1, or a GRPO group): there the cost is reading W once from
/// memory, and sgemm's packing of W triples that (measured: 6 GB/s of weights at M = 8 against
/// ~45 GB/s for a kernel that streams W once, and OpenBLAS's sgemv leaves one core idle at
/// these sizes). Up to `fewRowsLimit` rows therefore go to `linearFewRows`; more to sgemm.
@inline(__always)
public func linear(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                   rows m: Int, out n: Int, in k: Int, accumulate: Bool = false) {
    if m <= fewRowsLimit {
        linearFewRows(y, x, w, rows: m, out: n, in: k, accumulate: accumulate)
    } else {
        sgemm(transB: true, m: m, n: n, k: k, a: x, lda: k, b: w, ldb: k, beta: accumulate ? 1 : 0, c: y, ldc: n)
    }
}

/// Up to here `linear` uses the few-rows kernel: decode steps (one new token for each of up to
/// 64 sequences), where sgemm's packing of the whole weight matrix per call dominates. Measured
/// on SmolLM2's weights (`ponder-cli bench-matmul step ROWS`, PONDER_BENCH_SGEMM=1 for sgemm):
/// 8 rows 12 vs 47 ms, 24 rows 30 vs 67, 32 rows 39 vs 54, 64 rows 76 vs 89. Prefill and
/// training — the large matmuls — go through sgemm. (These figures are from before sgemm split
/// its products on Ponder's workers, with OpenBLAS's own threads; NOTES.md, "One thread team".)
public let fewRowsLimit = 64

/// linear() for few rows, with the output columns split across the cores. The kernel is the
/// generic one of PonderMatvec, specialised twice: for AVX2 here and for AVX-512 in
/// PonderMatvec512 (a module built for that target), chosen once from the CPU's flags.
public func linearFewRows(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                          rows m: Int, out n: Int, in k: Int, accumulate: Bool) {
    let chunks = min(workerThreads, max(1, n / 64))
    parallelFor(chunks) { c in
        fewRowsColumns(y, x, w, rows: m, out: n, in: k, from: n * c / chunks, to: n * (c + 1) / chunks, accumulate: accumulate)
    }
}

/// y[m × n] (+)= x[m × k] · W[n × k]ᵀ with row strides, on the calling thread: the decode
/// attention scores (keys as W), whose callers already split work across the cores.
@inline(__always)
public func fewRowsSerial(_ y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, ldx: Int,
                          _ w: UnsafePointer<Float>, ldw: Int, rows m: Int, out n: Int, in k: Int, accumulate: Bool = false,
                          rowInvariant: Bool = false) {
    fewRowsColumns(y, x, w, rows: m, out: n, in: k, from: 0, to: n, accumulate: accumulate, ldx: ldx, ldw: ldw, ldy: ldy,
                   rowInvariant: rowInvariant)
}

/// The few-rows kernel at the CPU's vector width, over output columns lo..<hi.
@inline(__always)
func fewRowsColumns(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                    rows m: Int, out n: Int, in k: Int, from lo: Int, to hi: Int, accumulate: Bool,
                    ldx: Int? = nil, ldw: Int? = nil, ldy: Int? = nil, rowInvariant: Bool = false) {
    if hasAVX512 {
        fewRowsAVX512(y, x, w, rows: m, out: n, in: k, from: lo, to: hi, accumulate: accumulate, ldx: ldx, ldw: ldw, ldy: ldy,
                      rowInvariant: rowInvariant)
    } else {
        fewRows(SIMD8<Float>.self, y, x, w, rows: m, out: n, in: k, from: lo, to: hi, accumulate: accumulate,
                ldx: ldx, ldw: ldw, ldy: ldy, rowInvariant: rowInvariant)
    }
}

/// y[m × n] (+)= x[m × k] · B[k × n] with row strides, on the calling thread: the decode
/// attention's weighted sum of value rows.
@inline(__always)
public func fewRowsNSerial(_ y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, ldx: Int,
                           _ b: UnsafePointer<Float>, ldb: Int, rows m: Int, out n: Int, inner k: Int, accumulate: Bool = false) {
    if hasAVX512 {
        fewRowsNAVX512(y, ldy: ldy, x, ldx: ldx, b, ldb: ldb, rows: m, out: n, inner: k, accumulate: accumulate)
    } else {
        fewRowsN(SIMD8<Float>.self, y, ldy: ldy, x, ldx: ldx, b, ldb: ldb, rows: m, out: n, inner: k, accumulate: accumulate)
    }
}

/// Whether the CPU (and kernel) run AVX-512F, asked through cpuid as OpenBLAS asks: under
/// valgrind, whose emulated CPU has no AVX-512, the AVX2 kernels run by themselves.
/// PONDER_NO_AVX512=1 forces the AVX2 kernels.
public let hasAVX512: Bool = {
    if let v = getenv("PONDER_NO_AVX512"), String(cString: v) == "1" { return false }
    return ponder_cpu_has_avx512f() != 0
}()

/// Threads OpenBLAS may use. Process-wide, as OpenBLAS itself is. Ponder keeps it at 1 (see
/// sgemm).
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }
