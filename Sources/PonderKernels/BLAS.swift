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
///
/// Decode steps have few rows (1, or a GRPO group): there the cost is reading W once from
/// memory, and sgemm's packing of W triples that (measured: 6 GB/s of weights at M = 8 against
/// ~40 GB/s for a kernel that streams W once, and OpenBLAS's sgemv leaves one core idle at
/// these sizes). Few rows therefore go to `linearFewRows`; everything else to sgemm.
@inline(__always)
public func linear(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                   rows m: Int, out n: Int, in k: Int, accumulate: Bool = false) {
    if m <= fewRowsLimit {
        linearFewRows(y, x, w, rows: m, out: n, in: k, accumulate: accumulate)
    } else {
        sgemm(transB: true, m: m, n: n, k: k, a: x, lda: k, b: w, ldb: k, beta: accumulate ? 1 : 0, c: y, ldc: n)
    }
}

public let fewRowsLimit = 16

/// linear() for 2…16 rows: each pair of W rows is read once and multiplied with every x row
/// while in registers, with the output columns split across the cores.
public func linearFewRows(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                          rows m: Int, out n: Int, in k: Int, accumulate: Bool) {
    let chunks = min(workerThreads, max(1, n / 64))
    parallelFor(chunks) { c in
        let lo = n * c / chunks, hi = n * (c + 1) / chunks
        var j = lo
        if m == 1 {
            // One weight row at a time: a single sequential stream is what the hardware
            // prefetcher follows best (four interleaved rows streamed ~25% slower).
            while j < hi {
                let v = dot(x, w + j * k, k)
                y[j] = accumulate ? y[j] + v : v
                j += 1
            }
        }
        while j + 2 <= hi {
            var r = 0
            while r < m {
                let rb = min(4, m - r)
                dotBlock(y, x, w, j: j, r: r, rb: rb, n: n, k: k, accumulate: accumulate)
                r += rb
            }
            j += 2
        }
        if j < hi {
            for r in 0..<m {
                let v = dot(x + r * k, w + j * k, k)
                y[r * n + j] = accumulate ? y[r * n + j] + v : v
            }
        }
    }
}

/// y[r..<r+rb][j, j+1] from W rows j, j+1 and x rows r..<r+rb (rb ≤ 4): 8 accumulators.
@inline(__always)
func dotBlock(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
              j: Int, r: Int, rb: Int, n: Int, k: Int, accumulate: Bool) {
    typealias V = SIMD8<Float>
    @inline(__always) func ld(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    let w0 = w + j * k, w1 = w0 + k
    let x0 = x + r * k
    let x1 = x + min(r + 1, r + rb - 1) * k, x2 = x + min(r + 2, r + rb - 1) * k, x3 = x + min(r + 3, r + rb - 1) * k
    var a00 = V(), a01 = V(), a10 = V(), a11 = V(), a20 = V(), a21 = V(), a30 = V(), a31 = V()
    var i = 0
    while i + 8 <= k {
        let v0 = ld(w0 + i), v1 = ld(w1 + i)
        var xv = ld(x0 + i)
        a00.addProduct(xv, v0); a01.addProduct(xv, v1)
        xv = ld(x1 + i)
        a10.addProduct(xv, v0); a11.addProduct(xv, v1)
        xv = ld(x2 + i)
        a20.addProduct(xv, v0); a21.addProduct(xv, v1)
        xv = ld(x3 + i)
        a30.addProduct(xv, v0); a31.addProduct(xv, v1)
        i += 8
    }
    var s = V(a00.sum(), a01.sum(), a10.sum(), a11.sum(), a20.sum(), a21.sum(), a30.sum(), a31.sum())
    while i < k {
        for q in 0..<4 {
            let xq = (q == 0 ? x0 : q == 1 ? x1 : q == 2 ? x2 : x3)[i]
            s[2 * q] += xq * w0[i]
            s[2 * q + 1] += xq * w1[i]
        }
        i += 1
    }
    for q in 0..<rb {
        let o = y + (r + q) * n + j
        if accumulate {
            o[0] += s[2 * q]; o[1] += s[2 * q + 1]
        } else {
            o[0] = s[2 * q]; o[1] = s[2 * q + 1]
        }
    }
}

/// Threads OpenBLAS may use. Process-wide, as OpenBLAS itself is.
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }
