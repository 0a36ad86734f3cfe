import PonderMatvec

// PonderMatvec's kernels specialised for 16-float (AVX-512) vectors: this module is compiled for
// skylake-avx512 and is only called where the CPU reports avx512f.

public func fewRowsAVX512(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                          rows m: Int, out n: Int, in k: Int, from lo: Int, to hi: Int, accumulate: Bool,
                          ldx: Int? = nil, ldw: Int? = nil, ldy: Int? = nil, rowInvariant: Bool = false) {
    fewRows(SIMD16<Float>.self, y, x, w, rows: m, out: n, in: k, from: lo, to: hi, accumulate: accumulate,
            ldx: ldx, ldw: ldw, ldy: ldy, rowInvariant: rowInvariant)
}

public func fewRowsNAVX512(_ y: UnsafeMutablePointer<Float>, ldy: Int, _ x: UnsafePointer<Float>, ldx: Int,
                           _ b: UnsafePointer<Float>, ldb: Int, rows m: Int, out n: Int, inner k: Int, accumulate: Bool) {
    fewRowsN(SIMD16<Float>.self, y, ldy: ldy, x, ldx: ldx, b, ldb: ldb, rows: m, out: n, inner: k, accumulate: accumulate)
}
