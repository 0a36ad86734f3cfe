import PonderKernels

/// A linear layer's weight, [outDim × inDim] as Hugging Face stores it. Every matmul with a
/// layer's weight goes through these methods — the forward of inference and training, and the
/// backward's input gradient — so a new storage format for the weights is added here and
/// nowhere else (docs/ARCHITECTURE.md, "A new weight format").
public struct Linear {
    /// The fp32 weights; when `blocks` is set, where they would be in the arena (not backed).
    public let weight: UnsafeMutablePointer<Float>
    /// The weights in their file's block format, multiplied in place (QuantizedMatrix).
    public let blocks: QuantizedMatrix?
    public let outDim: Int
    public let inDim: Int

    public init(_ weight: UnsafeMutablePointer<Float>, out: Int, in inDim: Int, blocks: QuantizedMatrix? = nil) {
        (self.weight, outDim, self.inDim, self.blocks) = (weight, out, inDim, blocks)
    }

    /// y[rows × out] = x[rows × in] · Wᵀ (+ y when `accumulate`). exact: block weights multiply
    /// fp32 activations (training) instead of 8-bit ones (inference); fp32 weights ignore it.
    @inline(__always)
    func forward(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, rows: Int, accumulate: Bool = false, exact: Bool) {
        if let blocks {
            blocks.forward(y, x, rows: rows, accumulate: accumulate, exact: exact)
        } else {
            linear(y, x, weight, rows: rows, out: outDim, in: inDim, accumulate: accumulate)
        }
    }

    /// dx[rows × in] = dy[rows × out] · W.
    @inline(__always)
    func backwardInput(_ dx: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, rows: Int) {
        if let blocks {
            blocks.backwardInput(dx, dy, rows: rows)
        } else {
            sgemm(m: rows, n: inDim, k: outDim, a: dy, lda: outDim, b: weight, ldb: inDim, c: dx, ldc: inDim)
        }
    }

    /// dW[out × in] += dyᵀ · x over `rows` rows (dW laid out as the weight). Block weights are
    /// frozen (LoRA's base): a full fine-tune loads fp32 weights, so this is never reached with them.
    @inline(__always)
    func accumulateGradient(_ dW: UnsafeMutablePointer<Float>, _ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, rows: Int) {
        precondition(blocks == nil, "a gradient for weights kept in blocks (a full fine-tune loads fp32 weights)")
        sgemm(transA: true, m: outDim, n: inDim, k: rows, a: dy, lda: outDim, b: x, ldb: inDim, beta: 1, c: dW, ldc: inDim)
    }
}
