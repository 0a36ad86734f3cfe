import PonderMatvec

/// PonderMatvec's kernel specialised for 16-float (AVX-512) vectors: this module is compiled for
/// skylake-avx512 and is only called where the CPU reports avx512f.
public func fewRowsAVX512(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                          rows m: Int, out n: Int, in k: Int, from lo: Int, to hi: Int, accumulate: Bool) {
    fewRows(SIMD16<Float>.self, y, x, w, rows: m, out: n, in: k, from: lo, to: hi, accumulate: accumulate)
}
