import COpenBLAS

/// Row-major sgemm: C[M×N] = alpha · op(A) · op(B) + beta · C. Every large matmul in Ponder
/// goes through here, with transposes expressed as flags rather than copies.
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb),
                beta, c, blasint(ldc))
}

/// y[M×N] = x[M×K] · W[N×K]ᵀ (+ y if accumulate): a linear layer with Hugging Face's [out, in]
/// weight layout.
@inline(__always)
public func linear(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                   rows m: Int, out n: Int, in k: Int, accumulate: Bool = false) {
    sgemm(transB: true, m: m, n: n, k: k, a: x, lda: k, b: w, ldb: k, beta: accumulate ? 1 : 0, c: y, ldc: n)
}

/// Threads OpenBLAS may use. Process-wide, as OpenBLAS itself is.
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }
