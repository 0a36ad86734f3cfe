import CPrefetch

/// The decode matmul y[m × n] (+)= x[m × k] · W[n × k]ᵀ for few rows m, over output columns
/// lo..<hi (row strides ldx, ldw, ldy default to the dense k, k, n). Generic over the SIMD width
/// so one source serves AVX2 (SIMD8) and AVX-512 (SIMD16); @inlinable so that each caller
/// module compiles its own specialisation with its own target flags.
///
/// Decode reads every weight once per step, so the kernels are shaped around the weight
/// stream: one row (m = 1) or a pair of rows (m > 1) at a time, each pair multiplied with as
/// many input rows as the registers hold (8 with AVX-512's 32 registers, 4 with AVX2's 16),
/// and a software prefetch `prefetchAhead` floats ahead. More input rows than that pass over
/// the weights in L2-sized chunks (`fewRowsChunkBytes`). Without the prefetch a group step
/// stalled on memory at half the bandwidth (measured: 8 rows through SmolLM2's weights
/// 22 → 11 ms per step; one row +10%).
///
/// rowInvariant: one row goes through the block kernels too, which sum every (row, weight row)
/// pair in one order whatever the row count — the one-row kernel's four accumulators sum in
/// another. Decode attention asks for it, so a sequence's scores do not depend on how many
/// sequences decode beside it (8-bit activations would turn such last-bit differences into
/// different samples).
@inlinable
public func fewRows<V: SIMD>(_: V.Type, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                             _ w: UnsafePointer<Float>, rows m: Int, out n: Int, in k: Int,
                             from lo: Int, to hi: Int, accumulate: Bool,
                             ldx: Int? = nil, ldw: Int? = nil, ldy: Int? = nil, rowInvariant: Bool = false) where V.Scalar == Float {
    let ldx = ldx ?? k, ldw = ldw ?? k, ldy = ldy ?? n
    var j = lo
    if m == 1 && !rowInvariant {
        while j < hi {
            let v = dotRow(V.self, x, w + j * ldw, k)
            y[j] = accumulate ? y[j] + v : v
            j += 1
        }
        return
    }
    if V.scalarCount < 16 && m > 4 && m <= 8 {
        while j < hi {
            dotBlock8x1(V.self, y + j, ldy, x, ldx, w + j * ldw, rb: m, k: k, accumulate: accumulate)
            j += 1
        }
        return
    }
    let block = V.scalarCount >= 16 ? 8 : 4
    let chunk = max(2, (fewRowsChunkBytes / (4 * max(1, ldw))) & ~1)
    while j + 2 <= hi {
        let end = min(hi, j + chunk)
        var r = 0
        while r < m {
            let rb = min(block, m - r)
            var jj = j
            while jj + 2 <= end {
                // The pair's weights are prefetched on the first pass; later passes find them in cache.
                let yb = y + r * ldy + jj, xb = x + r * ldx, w0 = w + jj * ldw
                if rb > 4 {
                    dotBlock8(V.self, yb, ldy, xb, ldx, w0, w0 + ldw, rb: rb, k: k, accumulate: accumulate, prefetch: r == 0)
                } else {
                    dotBlock4(V.self, yb, ldy, xb, ldx, w0, w0 + ldw, rb: rb, k: k, accumulate: accumulate, prefetch: r == 0)
                }
                jj += 2
            }
            r += rb
        }
        j += (end - j) & ~1
    }
    if j < hi {
        for r in 0..<m {
            let v = dotRow(V.self, x + r * ldx, w + j * ldw, k)
            y[r * ldy + j] = accumulate ? y[r * ldy + j] + v : v
        }
    }
}

/// With more input rows than one register block, the weight rows go in chunks of about this
/// many bytes: every block of input rows passes over a chunk while it sits in L2, and each block
/// stays in L1. Without it, 24 rows ran at 144 GFLOP/s against 200 for 16 (the input rows
/// streamed from L2 for every weight pair); with it 17–64 rows run at 215–226 GFLOP/s, above
/// OpenBLAS's sgemm at those sizes. 64–256 KiB measured the same.
public let fewRowsChunkBytes = 128 << 10

/// How far ahead of the weight rows being multiplied the kernels prefetch (8 KiB; 4–16 KiB
/// measured within noise of each other, 1 KiB and 64 KiB clearly slower).
public let prefetchAhead = 2048

@inlinable @inline(__always)
func load<V: SIMD>(_: V.Type, _ p: UnsafePointer<Float>) -> V where V.Scalar == Float {
    UnsafeRawPointer(p).loadUnaligned(as: V.self)
}

/// Prefetching past the end of a matrix is harmless: x86's prefetch never faults.
@inlinable @inline(__always)
func prefetch(_ p: UnsafePointer<Float>) { ponder_prefetch_l2(p) }

@inlinable @inline(__always)
func dotRow<V: SIMD>(_: V.Type, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int) -> Float where V.Scalar == Float {
    // Four independent accumulators: enough loads in flight to keep a stream at full bandwidth.
    var a0 = V(), a1 = V(), a2 = V(), a3 = V()
    let c = V.scalarCount
    var i = 0
    while i + 4 * c <= k {
        // One prefetch per 64-byte line.
        var l = 0
        while l < 4 * c { prefetch(b + i + prefetchAhead + l); l += 16 }
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

/// y[0..<rb][0, 1] (row stride ldy) from the weight rows w0, w1 and the input rows x[0..<rb]
/// (row stride ldx), rb ≤ 4.
@inlinable @inline(__always)
func dotBlock4<V: SIMD>(_: V.Type, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                        _ w0: UnsafePointer<Float>, _ w1: UnsafePointer<Float>,
                        rb: Int, k: Int, accumulate: Bool, prefetch pf: Bool) where V.Scalar == Float {
    // Rows past rb repeat the last row (their results are not stored): one loop for every rb.
    let x0 = x, x1 = x + min(1, rb - 1) * ldx, x2 = x + min(2, rb - 1) * ldx, x3 = x + min(3, rb - 1) * ldx
    var a00 = V(), a01 = V(), a10 = V(), a11 = V(), a20 = V(), a21 = V(), a30 = V(), a31 = V()
    var i = 0
    let step = V.scalarCount
    while i + step <= k {
        if pf && i & 15 == 0 { prefetch(w0 + i + prefetchAhead); prefetch(w1 + i + prefetchAhead) }
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
    let s0 = SIMD4(a00.sum(), a10.sum(), a20.sum(), a30.sum()), s1 = SIMD4(a01.sum(), a11.sum(), a21.sum(), a31.sum())
    store(y, ldy, x, ldx, w0, w1, s0, s1, from: i, rb: rb, k: k, accumulate: accumulate)
}

/// dotBlock4 for rb ≤ 8: 16 accumulators, for AVX-512's 32 registers.
@inlinable @inline(__always)
func dotBlock8<V: SIMD>(_: V.Type, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                        _ w0: UnsafePointer<Float>, _ w1: UnsafePointer<Float>,
                        rb: Int, k: Int, accumulate: Bool, prefetch pf: Bool) where V.Scalar == Float {
    let last = rb - 1
    let x0 = x, x1 = x + min(1, last) * ldx, x2 = x + min(2, last) * ldx, x3 = x + min(3, last) * ldx
    let x4 = x + min(4, last) * ldx, x5 = x + min(5, last) * ldx, x6 = x + min(6, last) * ldx, x7 = x + min(7, last) * ldx
    var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
    var b0 = V(), b1 = V(), b2 = V(), b3 = V(), b4 = V(), b5 = V(), b6 = V(), b7 = V()
    var i = 0
    let step = V.scalarCount
    while i + step <= k {
        if pf && i & 15 == 0 { prefetch(w0 + i + prefetchAhead); prefetch(w1 + i + prefetchAhead) }
        let v0 = load(V.self, w0 + i), v1 = load(V.self, w1 + i)
        var xv = load(V.self, x0 + i); a0.addProduct(xv, v0); b0.addProduct(xv, v1)
        xv = load(V.self, x1 + i); a1.addProduct(xv, v0); b1.addProduct(xv, v1)
        xv = load(V.self, x2 + i); a2.addProduct(xv, v0); b2.addProduct(xv, v1)
        xv = load(V.self, x3 + i); a3.addProduct(xv, v0); b3.addProduct(xv, v1)
        xv = load(V.self, x4 + i); a4.addProduct(xv, v0); b4.addProduct(xv, v1)
        xv = load(V.self, x5 + i); a5.addProduct(xv, v0); b5.addProduct(xv, v1)
        xv = load(V.self, x6 + i); a6.addProduct(xv, v0); b6.addProduct(xv, v1)
        xv = load(V.self, x7 + i); a7.addProduct(xv, v0); b7.addProduct(xv, v1)
        i += step
    }
    let s0 = SIMD8(a0.sum(), a1.sum(), a2.sum(), a3.sum(), a4.sum(), a5.sum(), a6.sum(), a7.sum())
    let s1 = SIMD8(b0.sum(), b1.sum(), b2.sum(), b3.sum(), b4.sum(), b5.sum(), b6.sum(), b7.sum())
    store(y, ldy, x, ldx, w0, w1, s0, s1, from: i, rb: rb, k: k, accumulate: accumulate)
}

/// y[0..<rb][0] from one weight row and up to 8 input rows: with 16 vector registers (AVX2),
/// 8 accumulators, the weight and one input vector fit, so 5–8 rows read the weights once.
@inlinable @inline(__always)
func dotBlock8x1<V: SIMD>(_: V.Type, _ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                          _ w0: UnsafePointer<Float>, rb: Int, k: Int, accumulate: Bool) where V.Scalar == Float {
    let last = rb - 1
    let x0 = x, x1 = x + min(1, last) * ldx, x2 = x + min(2, last) * ldx, x3 = x + min(3, last) * ldx
    let x4 = x + min(4, last) * ldx, x5 = x + min(5, last) * ldx, x6 = x + min(6, last) * ldx, x7 = x + min(7, last) * ldx
    var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
    var i = 0
    let step = V.scalarCount
    while i + step <= k {
        if i & 15 == 0 { prefetch(w0 + i + prefetchAhead) }
        let v = load(V.self, w0 + i)
        a0.addProduct(load(V.self, x0 + i), v); a1.addProduct(load(V.self, x1 + i), v)
        a2.addProduct(load(V.self, x2 + i), v); a3.addProduct(load(V.self, x3 + i), v)
        a4.addProduct(load(V.self, x4 + i), v); a5.addProduct(load(V.self, x5 + i), v)
        a6.addProduct(load(V.self, x6 + i), v); a7.addProduct(load(V.self, x7 + i), v)
        i += step
    }
    let s = SIMD8(a0.sum(), a1.sum(), a2.sum(), a3.sum(), a4.sum(), a5.sum(), a6.sum(), a7.sum())
    for q in 0..<rb {
        var u = s[q]
        let xq = x + q * ldx
        var t = i
        while t < k { u += xq[t] * w0[t]; t += 1 }
        let o = y + q * ldy
        o[0] = accumulate ? o[0] + u : u
    }
}

/// Adds the scalar tail (k not a multiple of the vector width) and writes the two columns of
/// rows 0..<rb: s0/s1 hold the vector part of each row's two dot products.
@inlinable @inline(__always)
func store<S: SIMD>(_ y: UnsafeMutablePointer<Float>, _ ldy: Int, _ x: UnsafePointer<Float>, _ ldx: Int,
                    _ w0: UnsafePointer<Float>, _ w1: UnsafePointer<Float>,
                    _ s0: S, _ s1: S, from i: Int, rb: Int, k: Int, accumulate: Bool) where S.Scalar == Float {
    for q in 0..<rb {
        var u = s0[q], v = s1[q]
        let xq = x + q * ldx
        var t = i
        while t < k { u += xq[t] * w0[t]; v += xq[t] * w1[t]; t += 1 }
        let o = y + q * ldy
        if accumulate { o[0] += u; o[1] += v } else { o[0] = u; o[1] = v }
    }
}

/// y[m × n] (+)= x[m × k] · B[k × n] for few rows m, B's rows ldb apart: the attention-weighted
/// sum of value rows in decode. Blocks of up to 4 x rows × 4 vectors of output columns stay in
/// registers over the whole k loop, each B row read once per block.
@inlinable
public func fewRowsN<V: SIMD>(_: V.Type, _ y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, ldx: Int,
                              _ b: UnsafePointer<Float>, ldb: Int, rows m: Int, out n: Int, inner k: Int,
                              accumulate: Bool) where V.Scalar == Float {
    let c = V.scalarCount
    var r = 0
    while r < m {
        let rb = min(4, m - r)
        let last = rb - 1
        let x0 = x + r * ldx, x1 = x0 + min(1, last) * ldx, x2 = x0 + min(2, last) * ldx, x3 = x0 + min(3, last) * ldx
        let yr = y + r * ldy
        var col = 0
        while col + 4 * c <= n {
            var a = (V(), V(), V(), V()), e = (V(), V(), V(), V()), f = (V(), V(), V(), V()), g = (V(), V(), V(), V())
            for j in 0..<k {
                let bj = b + j * ldb + col
                let v0 = load(V.self, bj), v1 = load(V.self, bj + c), v2 = load(V.self, bj + 2 * c), v3 = load(V.self, bj + 3 * c)
                var s = V(repeating: x0[j])
                a.0.addProduct(s, v0); a.1.addProduct(s, v1); a.2.addProduct(s, v2); a.3.addProduct(s, v3)
                s = V(repeating: x1[j])
                e.0.addProduct(s, v0); e.1.addProduct(s, v1); e.2.addProduct(s, v2); e.3.addProduct(s, v3)
                s = V(repeating: x2[j])
                f.0.addProduct(s, v0); f.1.addProduct(s, v1); f.2.addProduct(s, v2); f.3.addProduct(s, v3)
                s = V(repeating: x3[j])
                g.0.addProduct(s, v0); g.1.addProduct(s, v1); g.2.addProduct(s, v2); g.3.addProduct(s, v3)
            }
            writeRow(V.self, yr + col, a, accumulate: accumulate)
            if rb > 1 { writeRow(V.self, yr + ldy + col, e, accumulate: accumulate) }
            if rb > 2 { writeRow(V.self, yr + 2 * ldy + col, f, accumulate: accumulate) }
            if rb > 3 { writeRow(V.self, yr + 3 * ldy + col, g, accumulate: accumulate) }
            col += 4 * c
        }
        // Columns past the last full 4-vector block (head sizes that are not a multiple of 4c).
        while col < n {
            for q in 0..<rb {
                let xq = x0 + q * ldx
                var s: Float = 0
                for j in 0..<k { s += xq[j] * b[j * ldb + col] }
                let o = yr + q * ldy + col
                o.pointee = accumulate ? o.pointee + s : s
            }
            col += 1
        }
        r += rb
    }
}

@inlinable @inline(__always)
func writeRow<V: SIMD>(_: V.Type, _ o: UnsafeMutablePointer<Float>, _ v: (V, V, V, V), accumulate: Bool) where V.Scalar == Float {
    let c = V.scalarCount
    var t = v
    if accumulate {
        t.0 += load(V.self, o); t.1 += load(V.self, o + c); t.2 += load(V.self, o + 2 * c); t.3 += load(V.self, o + 3 * c)
    }
    UnsafeMutableRawPointer(o).storeBytes(of: t.0, as: V.self)
    UnsafeMutableRawPointer(o + c).storeBytes(of: t.1, as: V.self)
    UnsafeMutableRawPointer(o + 2 * c).storeBytes(of: t.2, as: V.self)
    UnsafeMutableRawPointer(o + 3 * c).storeBytes(of: t.3, as: V.self)
}
