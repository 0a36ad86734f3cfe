// SIMD elementwise kernels. Each takes raw pointers and explicit shapes, allocates nothing,
// and is written so that its backward (added beside it) reads the same way.

public typealias F16x = SIMD16<Float>

@inline(__always) func load(_ p: UnsafePointer<Float>) -> F16x {
    UnsafeRawPointer(p).loadUnaligned(as: F16x.self)
}

@inline(__always) func store(_ v: F16x, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: F16x.self)
}

/// e^x for 8 lanes (Cephes' expf polynomial, within 2 ulp of libm; inputs below −87 give 0).
/// libm's expf is scalar: over a 49k vocabulary or a 1536-wide SwiGLU per row it dominated
/// softmax and the MLP's elementwise work.
@inline(__always)
public func vexp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let hi = SIMD8<Float>(repeating: 88.3762626647949), lo = SIMD8<Float>(repeating: -87.3365447504)
    let under = x .< lo
    var xc = x
    xc.replace(with: lo, where: x .< lo)
    xc.replace(with: hi, where: x .> hi)
    // n = round(x·log2 e) via the 1.5·2²³ trick: the sum's low mantissa bits are n as an
    // integer, so no float→int conversion (which Swift lowers to a per-lane call) is needed.
    let magic = SIMD8<Float>(repeating: 12582912)
    let t = xc * 1.44269504088896341 + magic
    let n = t - magic
    var r = xc - n * 0.693359375
    r = r + n * 2.12194440e-4
    var p = SIMD8<Float>(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let e = p * r * r + r + 1
    let bits = (unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    var out = e * unsafeBitCast(bits, to: SIMD8<Float>.self)
    out.replace(with: 0, where: under)
    return out
}

@inline(__always) func ld8(_ p: UnsafePointer<Float>) -> SIMD8<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self) }
@inline(__always) func st8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self) }

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

/// x[i] *= a
public func scaleInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int, by a: Float) {
    var i = 0
    let va = SIMD8<Float>(repeating: a)
    while i + 8 <= n { st8(ld8(x + i) * va, x + i); i += 8 }
    while i < n { x[i] *= a; i += 1 }
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
        var i = 0
        while i + 8 <= hidden {
            let x = ld8(g + i)
            st8(x / (1 + vexp(-x)) * ld8(u + i), o + i)
            i += 8
        }
        while i < hidden {
            let x = g[i]
            o[i] = x / (1 + expf(-x)) * u[i]
            i += 1
        }
    }
}

/// Backward of swigluForward: dGateUp rows [dgate | dup] from dh.
public func swigluBackward(dGateUp: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>, gateUp: UnsafePointer<Float>,
                           rows: Int, hidden: Int) {
    for r in 0..<rows {
        let g = gateUp + r * 2 * hidden, u = g + hidden, d = dh + r * hidden
        let dg = dGateUp + r * 2 * hidden, du = dg + hidden
        var i = 0
        while i + 8 <= hidden {
            let x = ld8(g + i), d = ld8(dh + r * hidden + i)
            let sig = 1 / (1 + vexp(-x))
            st8(d * x * sig, du + i)
            st8(d * ld8(u + i) * sig * (1 + x * (1 - sig)), dg + i)
            i += 8
        }
        for i in i..<hidden {
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
    let mx = maxValue(x, n)
    if mx == -.infinity { return mx }
    let sum = expSum(x, n, minus: mx, store: x)
    let inv = 1 / sum
    var i = 0
    let vi = SIMD8<Float>(repeating: inv)
    while i + 8 <= n { st8(ld8(x + i) * vi, x + i); i += 8 }
    while i < n { x[i] *= inv; i += 1 }
    return mx + logf(sum)
}

/// log Σ exp x[i], computed stably without modifying x.
public func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    let mx = maxValue(x, n)
    if mx == -.infinity { return mx }
    return mx + logf(expSum(x, n, minus: mx, store: nil))
}

/// max x[i] (−∞ for n = 0).
@inline(__always) public func maxValue(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var m8 = SIMD8<Float>(repeating: -.infinity)
    var i = 0
    while i + 8 <= n {
        let v = ld8(x + i)
        m8.replace(with: v, where: v .> m8)
        i += 8
    }
    var mx = m8.max()
    while i < n { mx = max(mx, x[i]); i += 1 }
    return mx
}

/// Σ exp(x[i] − m), optionally storing the terms.
@inline(__always) public func expSum(_ x: UnsafePointer<Float>, _ n: Int, minus m: Float, store: UnsafeMutablePointer<Float>?) -> Float {
    var acc = SIMD8<Float>()
    let vm = SIMD8<Float>(repeating: m)
    var i = 0
    while i + 8 <= n {
        let e = vexp(ld8(x + i) - vm)
        if let store { st8(e, store + i) }
        acc += e
        i += 8
    }
    var sum = acc.sum()
    while i < n {
        let e = expf(x[i] - m)
        store?[i] = e
        sum += e
        i += 1
    }
    return sum
}

/// Σ exp(x[i] − lse)·x[i]: the mean of x under softmax(x), given lse = log Σ exp x. The
/// entropy of softmax(x) is lse minus this.
public func softmaxMean(_ x: UnsafePointer<Float>, _ n: Int, lse: Float) -> Float {
    var acc = SIMD8<Float>()
    let vm = SIMD8<Float>(repeating: lse)
    var i = 0
    while i + 8 <= n {
        let v = ld8(x + i)
        acc = acc.addingProduct(vexp(v - vm), v)
        i += 8
    }
    var sum = acc.sum()
    while i < n { sum += expf(x[i] - lse) * x[i]; i += 1 }
    return sum
}

/// x[i] = s·exp(x[i] − m) in place: s times a softmax row, given its log-normaliser m.
public func scaledExpInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int, minus m: Float, times s: Float) {
    let vm = SIMD8<Float>(repeating: m), vs = SIMD8<Float>(repeating: s)
    var i = 0
    while i + 8 <= n { st8(vexp(ld8(x + i) - vm) * vs, x + i); i += 8 }
    while i < n { x[i] = s * expf(x[i] - m); i += 1 }
}

#if canImport(Glibc)
import Glibc
#endif
