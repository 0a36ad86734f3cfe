import PonderKernels

/// A linear layer's weight, [outDim × inDim] as Hugging Face stores it. Every matmul with a
/// layer's weight goes through these methods — the forward of inference and training, and the
/// backward's input gradient — so a new storage format for the weights is added here and
/// nowhere else (docs/ARCHITECTURE.md, "A new weight format").
public struct Linear {
    public let weight: UnsafeMutablePointer<Float>
    public let outDim: Int
    public let inDim: Int

    public init(_ weight: UnsafeMutablePointer<Float>, out: Int, in inDim: Int) {
        (self.weight, outDim, self.inDim) = (weight, out, inDim)
    }

    /// y[rows × out] = x[rows × in] · Wᵀ (+ y when `accumulate`).
    @inline(__always)
    func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, accumulate: Bool = false) {
        linear(y, x, weight, rows: rows, out: outDim, in: inDim, accumulate: accumulate)
    }

    /// dx[rows × in] = dy[rows × out] · W.
    @inline(__always)
    func backwardInput(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, rows: Int) {
        sgemm(m: rows, n: inDim, k: outDim, a: dy, lda: outDim, b: weight, ldb: inDim, c: dx, ldc: inDim)
    }

    /// dW[out × in] += dyᵀ · x over `rows` rows (dW laid out as the weight).
    @inline(__always)
    func accumulateGradient(_ dW: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows: Int) {
        sgemm(transA: true, m: outDim, n: inDim, k: rows, a: dy, lda: outDim, b: x, ldb: inDim, beta: 1, c: dW, ldc: inDim)
    }
}
