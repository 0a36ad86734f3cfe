/// The decode matmul y[m × n] (+)= x[m × k] · W[n × k]ᵀ for few rows m, over output columns
/// lo..<hi, generic over the SIMD width so one source serves AVX2 (SIMD8) and AVX-512
/// (SIMD16). It is @inlinable so that each caller module compiles its own specialisation with
/// its own target flags.
///
/// One row: a single weight row at a time (one sequential stream, what the prefetcher follows
/// best). More rows: each pair of weight rows is read once and multiplied with blocks of four
/// input rows in registers (8 accumulators).
@inlinable
public func fewRows<V: SIMD>(_: V.Type, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                             _ w: UnsafePointer<Float>, rows m: Int, out n: Int, in k: Int,
                             from lo: Int, to hi: Int, accumulate: Bool) where V.Scalar == Float {
    var j = lo
    if m == 1 {
        while j < hi {
            let v = dotRow(V.self, x, w + j * k, k)
            y[j] = accumulate ? y[j] + v : v
            j += 1
        }
        return
    }
    while j + 2 <= hi {
        var r = 0
        while r < m {
            let rb = min(4, m - r)
            dotBlock(V.self, y, x, w, j: j, r: r, rb: rb, n: n, k: k, accumulate: accumulate)
            r += rb
        }
        j += 2
    }
    if j < hi {
        for r in 0..<m {
            let v = dotRow(V.self, x + r * k, w + j * k, k)
            y[r * n + j] = accumulate ? y[r * n + j] + v : v
        }
    }
}

@inlinable @inline(__always)
func load<V: SIMD>(_: V.Type, _ p: UnsafePointer<Float>) -> V where V.Scalar == Float {
    UnsafeRawPointer(p).loadUnaligned(as: V.self)
}

@inlinable @inline(__always)
func dotRow<V: SIMD>(_: V.Type, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int) -> Float where V.Scalar == Float {
    // Four independent accumulators: enough loads in flight to keep a stream at full bandwidth.
    var a0 = V(), a1 = V(), a2 = V(), a3 = V()
    let c = V.scalarCount
    var i = 0
    while i + 4 * c <= k {
        a0.addProduct(load(V.self, a + i), load(V.self, b + i))
        a1.addProduct(load(V.self, a + i + c), load(V.self, b + i + c))
        a2.addProduct(load(V.self, a + i + 2 * c), load(V.self, b + i + 2 * c))
        a3.addProduct(load(V.self, a + i + 3 * c), load(V.self, b + i + 3 * c))
        i += 4 * c
    }
    while i + c <= k {
        a0.addProduct(load(V.self, a + i), load(V.self, b + i))
        i += c
    }
    var s = ((a0 + a1) + (a2 + a3)).sum()
    while i < k { s += a[i] * b[i]; i += 1 }
    return s
}

/// y[r..<r+rb][j, j+1] from W rows j, j+1 and x rows r..<r+rb (rb ≤ 4).
@inlinable @inline(__always)
func dotBlock<V: SIMD>(_: V.Type, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                       j: Int, r: Int, rb: Int, n: Int, k: Int, accumulate: Bool) where V.Scalar == Float {
    let w0 = w + j * k, w1 = w0 + k
    let x0 = x + r * k
    let x1 = x + min(r + 1, r + rb - 1) * k, x2 = x + min(r + 2, r + rb - 1) * k, x3 = x + min(r + 3, r + rb - 1) * k
    var a00 = V(), a01 = V(), a10 = V(), a11 = V(), a20 = V(), a21 = V(), a30 = V(), a31 = V()
    var i = 0
    let step = V.scalarCount
    while i + step <= k {
        let v0 = load(V.self, w0 + i), v1 = load(V.self, w1 + i)
        var xv = load(V.self, x0 + i)
        a00.addProduct(xv, v0); a01.addProduct(xv, v1)
        xv = load(V.self, x1 + i)
        a10.addProduct(xv, v0); a11.addProduct(xv, v1)
        xv = load(V.self, x2 + i)
        a20.addProduct(xv, v0); a21.addProduct(xv, v1)
        xv = load(V.self, x3 + i)
        a30.addProduct(xv, v0); a31.addProduct(xv, v1)
        i += step
    }
    var s = SIMD8<Float>(a00.sum(), a01.sum(), a10.sum(), a11.sum(), a20.sum(), a21.sum(), a30.sum(), a31.sum())
    while i < k {
        let xs = SIMD4<Float>(x0[i], x1[i], x2[i], x3[i])
        s += SIMD8<Float>(lowHalf: xs, highHalf: xs).evenOdd(w0[i], w1[i])
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

extension SIMD8 where Scalar == Float {
    /// Lanes (x0, x1, x2, x3, x0, x1, x2, x3) → (x0·a, x0·b, x1·a, x1·b, …): the scalar tail of
    /// dotBlock in the accumulator layout (row q's two outputs at 2q, 2q+1).
    @inlinable @inline(__always)
    func evenOdd(_ a: Float, _ b: Float) -> SIMD8<Float> {
        SIMD8(self[0] * a, self[0] * b, self[1] * a, self[1] * b, self[2] * a, self[2] * b, self[3] * a, self[3] * b)
    }
}
