// SIMD elementwise kernels. Each takes raw pointers and explicit shapes, allocates nothing,
// and is written so that its backward (added beside it) reads the same way.

public typealias F16x = SIMD16<Float>

@inline(__always) func load(_ p: UnsafePointer<Float>) -> F16x {
    UnsafeRawPointer(p).loadUnaligned(as: F16x.self)
}

@inline(__always) func store(_ v: F16x, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F16x.self)
}

/// Σ a[i]·b[i], vectorised (LLVM does not reorder float sums by itself).
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc0 = F16x(repeating: 0), acc1 = F16x(repeating: 0)
    var i = 0
    while i + 32 <= n {
        acc0 = acc0.addingProduct(load(a + i), load(b + i))
        acc1 = acc1.addingProduct(load(a + i + 16), load(b + i + 16))
        i += 32
    }
    while i + 16 <= n {
        acc0 = acc0.addingProduct(load(a + i), load(b + i))
        i += 16
    }
    var s = (acc0 + acc1).sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// y[i] += alpha · x[i]
@inline(__always)
public func axpy(_ y: UnsafeMutablePointer<Float>, _ alpha: Float, _ x: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    let va = F16x(repeating: alpha)
    while i + 16 <= n {
        store(load(y + i).addingProduct(va, load(x + i)), y + i)
        i += 16
    }
    while i < n { y[i] += alpha * x[i]; i += 1 }
}

/// y[i] += x[i]
public func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    axpy(y, 1, x, n)
}

/// out[r] = x[r] / rms(x[r]) · weight, per row of `dim`; `rstd[r]` keeps 1/rms for backward.
public func rmsnormForward(_ out: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>?,
                           _ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                           rows: Int, dim: Int, eps: Float) {
    for r in 0..<rows {
        let xr = x + r * dim, orow = out + r * dim
        let s = 1 / (dot(xr, xr, dim) / Float(dim) + eps).squareRoot()
        rstd?[r] = s
        let vs = F16x(repeating: s)
        var i = 0
        while i + 16 <= dim {
            store(load(xr + i) * vs * load(weight + i), orow + i)
            i += 16
        }
        while i < dim { orow[i] = xr[i] * s * weight[i]; i += 1 }
    }
}

/// Backward of rmsnormForward: dx += rstd·(g − x·rstd²·mean(g·x)) with g = dout ⊙ weight, and
/// dweight += Σ_rows dout ⊙ x·rstd (dweight may be nil when the weight is frozen).
public func rmsnormBackward(dx: UnsafeMutablePointer<Float>, dweight: UnsafeMutablePointer<Float>?,
                            dout: UnsafePointer<Float>, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                            rstd: UnsafePointer<Float>, rows: Int, dim: Int) {
    for r in 0..<rows {
        let xr = x + r * dim, dr = dout + r * dim, o = dx + r * dim
        let s = rstd[r]
        var gx: Float = 0
        for i in 0..<dim { gx += dr[i] * weight[i] * xr[i] }
        let c = gx * s * s / Float(dim)
        for i in 0..<dim { o[i] += s * (dr[i] * weight[i] - xr[i] * c) }
        if let dw = dweight { for i in 0..<dim { dw[i] += dr[i] * xr[i] * s } }
    }
}

/// SwiGLU: h[i] = silu(gate[i]) · up[i]. `gateUp` holds each row as [gate | up] (the two
/// projections share one sgemm); h is [rows × hidden].
public func swigluForward(_ h: UnsafeMutablePointer<Float>, gateUp: UnsafePointer<Float>, rows: Int, hidden: Int) {
    for r in 0..<rows {
        let g = gateUp + r * 2 * hidden, u = g + hidden, o = h + r * hidden
        for i in 0..<hidden {
            let x = g[i]
            o[i] = x / (1 + expf(-x)) * u[i]
        }
    }
}

/// Backward of swigluForward: dGateUp rows [dgate | dup] from dh.
public func swigluBackward(dGateUp: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>, gateUp: UnsafePointer<Float>,
                           rows: Int, hidden: Int) {
    for r in 0..<rows {
        let g = gateUp + r * 2 * hidden, u = g + hidden, d = dh + r * hidden
        let dg = dGateUp + r * 2 * hidden, du = dg + hidden
        for i in 0..<hidden {
            let x = g[i]
            let sig = 1 / (1 + expf(-x))
            let silu = x * sig
            du[i] = d[i] * silu
            dg[i] = d[i] * u[i] * sig * (1 + x * (1 - sig))
        }
    }
}

/// In-place softmax of x[0..<n]; returns log Σ exp (the log-partition, for log-probabilities).
@discardableResult
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
    var mx = -Float.infinity
    for i in 0..<n where x[i] > mx { mx = x[i] }
    if mx == -.infinity { return mx }
    var sum: Float = 0
    for i in 0..<n {
        let e = expf(x[i] - mx)
        x[i] = e
        sum += e
    }
    let inv = 1 / sum
    for i in 0..<n { x[i] *= inv }
    return mx + logf(sum)
}

/// log Σ exp x[i], computed stably without modifying x.
public func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var mx = -Float.infinity
    for i in 0..<n where x[i] > mx { mx = x[i] }
    if mx == -.infinity { return mx }
    var sum: Float = 0
    for i in 0..<n { sum += expf(x[i] - mx) }
    return mx + logf(sum)
}

#if canImport(Glibc)
import Glibc
#endif
