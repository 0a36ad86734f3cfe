import CPonderQuant

/// A weight matrix [outDim × inDim] whose rows stay in a ggml block format (GGUF's Q8_0, Q4_K, …,
/// F16), read where they lie: a mapped file, or a copy for rows the loader had to reorder. Its
/// rows may come from several tensors of different types (`segments`, stacked in order): the
/// fused q/k/v and gate/up matrices are three and two tensors in a file.
///
/// Inference multiplies with 8-bit activations (llama.cpp's scheme: decode reads weights, so
/// their bytes are the cost); anything a trainer runs uses `exact`, the fp32 product with the
/// dequantized weights (tiles of rows expanded, then Ponder's fp32 kernels), so that sampling
/// and scoring see one distribution.
public struct QuantizedMatrix: @unchecked Sendable {
    public struct Segment: @unchecked Sendable {
        /// ggml's type number.
        public let type: Int32
        public let data: UnsafeRawPointer
        public let rowBytes: Int
        public let rows: Int
        /// Index of this segment's first row in the matrix.
        public let first: Int
    }

    public let segments: [Segment]
    public let outDim: Int
    public let inDim: Int
    /// Every segment has an 8-bit kernel (F16 and BF16 have none: they multiply in fp32).
    let integerKernels: Bool

    /// parts: (ggml type, data, rows) in row order. Rows are inDim values, a multiple of 32.
    public init(_ parts: [(type: Int32, data: UnsafeRawPointer, rowBytes: Int, rows: Int)], inDim: Int) {
        var first = 0
        segments = parts.map { p in
            defer { first += p.rows }
            return Segment(type: p.type, data: p.data, rowBytes: p.rowBytes, rows: p.rows, first: first)
        }
        outDim = first
        self.inDim = inDim
        integerKernels = parts.allSatisfy { ponder_q_has_q8_kernel($0.type) != 0 }
    }

    /// 1 when the kernels read ggml type `type` in place; inDim must be a multiple of 32.
    public static func supports(type: Int32, inDim: Int) -> Bool {
        ponder_q_supported(type) != 0 && inDim % 32 == 0 && inDim > 0
    }

    /// Resident bytes of the blocks.
    public var bytes: Int { segments.reduce(0) { $0 + $1.rowBytes * $1.rows } }

    /// y[m × out] (+)= x[m × in] · Wᵀ.
    public func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows m: Int, accumulate: Bool, exact: Bool) {
        if m == 0 { return }
        if m > fewRowsLimit {
            tiled(y, x, rows: m, accumulate: accumulate)
            return
        }
        let k = inDim, n = outDim
        let xqBytes = m * ponder_q_act_row_bytes(Int32(k))
        if !exact && integerKernels, let xq = ponder_q_scratch(0, xqBytes) {
            ponder_q_quantize_rows(x, k, Int32(m), Int32(k), xq)
            let xqc = UnsafeRawPointer(xq)
            columns(n) { s, lo, hi in
                ponder_q_matmul_q8(s.type, s.data, s.rowBytes, Int32(k), Int32(lo), Int32(hi), xqc, Int32(m),
                                   y + s.first, n, accumulate ? 1 : 0)
            }
        } else {
            // fp32 products: each tile of weight rows is expanded once into the thread's buffer
            // and the fp32 few-rows kernel multiplies it with every row. rowInvariant: a row's
            // sums do not depend on how many rows are multiplied with it, as for the 8-bit path.
            columns(n) { s, lo, hi in
                withTile(rows: 16) { tile, t in
                    var j = lo
                    while j < hi {
                        let e = min(hi, j + t)
                        ponder_q_dequantize_rows(s.type, s.data, s.rowBytes, Int32(k), Int32(j), Int32(e), tile, k)
                        fewRowsSerial(y + s.first + j, ldy: n, x, ldx: k, tile, ldw: k, rows: m, out: e - j, in: k,
                                      accumulate: accumulate, rowInvariant: true)
                        j = e
                    }
                }
            }
        }
    }

    /// Splits the output rows across the workers; body gets a segment and its local row range.
    @inline(__always)
    func columns(_ n: Int, _ body: (Segment, Int, Int) -> Void) {
        let chunks = min(workerThreads, max(1, n / 64))
        parallelFor(chunks) { c in
            each(from: n * c / chunks, to: n * (c + 1) / chunks, body)
        }
    }

    @inline(__always)
    func each(from lo: Int, to hi: Int, _ body: (Segment, Int, Int) -> Void) {
        for s in segments {
            let a = max(lo, s.first), b = min(hi, s.first + s.rows)
            if a < b { body(s, a - s.first, b - s.first) }
        }
    }

    /// Weight rows per dequantized tile: ~256 KiB of fp32, in multiples of 16 rows.
    var tileRows: Int { max(16, (65536 / max(1, inDim)) & ~15) }

    /// Many rows (prefill, training): each worker expands tiles of weight rows into fp32 and
    /// multiplies them with sgemm, so the expansion is paid once per tile for all m rows.
    func tiled(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows m: Int, accumulate: Bool) {
        let n = outDim, k = inDim
        let parts = min(workerThreads, max(1, n / 64))
        parallelFor(parts) { p in
            let lo = p == 0 ? 0 : (n * p / parts) & ~15, hi = p == parts - 1 ? n : (n * (p + 1) / parts) & ~15
            withTile(rows: tileRows) { tile, t in
                each(from: lo, to: hi) { s, a, b in
                    var j = a
                    while j < b {
                        let e = min(b, j + t)
                        ponder_q_dequantize_rows(s.type, s.data, s.rowBytes, Int32(k), Int32(j), Int32(e), tile, k)
                        sgemmBlock(transA: false, transB: true, m: m, n: e - j, k: k, alpha: 1, a: x, lda: k, b: tile, ldb: k,
                                   beta: accumulate ? 1 : 0, c: y + s.first + j, ldc: n)
                        j = e
                    }
                }
            }
        }
    }

    /// dx[m × in] = dy[m × out] · W: tiles of weight rows expanded into fp32, each worker taking
    /// a share of the m rows.
    public func backwardInput(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, rows m: Int) {
        if m == 0 { return }
        let n = outDim, k = inDim
        let parts = m * n * k >= 1 << 20 ? min(workerThreads, max(1, m / 16)) : 1
        parallelFor(parts) { p in
            let r0 = m * p / parts, r1 = m * (p + 1) / parts
            if r1 <= r0 { return }
            withTile(rows: tileRows) { tile, t in
                var started = false
                each(from: 0, to: n) { s, a, b in
                    var j = a
                    while j < b {
                        let e = min(b, j + t)
                        ponder_q_dequantize_rows(s.type, s.data, s.rowBytes, Int32(k), Int32(j), Int32(e), tile, k)
                        sgemmBlock(transA: false, transB: false, m: r1 - r0, n: k, k: e - j, alpha: 1,
                                   a: dy + r0 * n + s.first + j, lda: n, b: tile, ldb: k,
                                   beta: started ? 1 : 0, c: dx + r0 * k, ldc: k)
                        started = true
                        j = e
                    }
                }
            }
        }
    }

    /// The thread's buffer for `rows` expanded weight rows, or one row on the stack where it
    /// cannot be allocated (slow, still exact); body gets the buffer and the rows it holds.
    func withTile(rows: Int, _ body: (UnsafeMutablePointer<Float>, Int) -> Void) {
        if let p = ponder_q_scratch(1, rows * inDim * 4) {
            body(p.assumingMemoryBound(to: Float.self), rows)
        } else {
            withUnsafeTemporaryAllocation(of: Float.self, capacity: inDim) { body($0.baseAddress!, 1) }
        }
    }

    /// Row j in fp32 (an embedding lookup).
    public func row(_ j: Int, into out: UnsafeMutablePointer<Float>) {
        each(from: j, to: j + 1) { s, a, b in
            ponder_q_dequantize_rows(s.type, s.data, s.rowBytes, Int32(inDim), Int32(a), Int32(b), out, inDim)
        }
    }

    /// Every row in fp32, [out × in].
    public func dequantize(into out: UnsafeMutablePointer<Float>) {
        for s in segments {
            ponder_q_dequantize_rows(s.type, s.data, s.rowBytes, Int32(inDim), 0, Int32(s.rows), out + s.first * inDim, inDim)
        }
    }
}

/// The block kernels' instruction set: "avx512-vnni" or "avx2".
public var quantizedKernelISA: String { ponder_q_isa() == 2 ? "avx512-vnni" : "avx2" }

/// Tests force the AVX2 kernels on a VNNI machine (and back); false where the CPU lacks the ISA.
@discardableResult
public func setQuantizedKernelISA(_ name: String) -> Bool {
    let want: Int32 = name == "avx512-vnni" ? 2 : 1
    return ponder_q_set_isa(want) == want
}

/// The first block of `count` whose scale or min is NaN or infinite, or nil.
public func firstNonFiniteBlock(type: Int32, data: UnsafeRawPointer, blocks count: Int) -> Int? {
    let b = ponder_q_first_bad_block(type, data, Int64(count))
    return b < 0 ? nil : Int(b)
}

/// One row of `count` values in ggml block type `type` as ggml's reference quantizer writes it
/// (Q4_0, Q4_1, Q5_0, Q8_0 rows of 32; Q4_K, Q6_K rows of 256); false for another type or width.
public func quantizeRow(type: Int32, _ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) -> Bool {
    ponder_q_quantize_row(type, x, Int32(count), out) != 0
}
