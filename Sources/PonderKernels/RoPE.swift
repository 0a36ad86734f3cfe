#if canImport(Glibc)
import Glibc
#endif

/// Rotary position embedding tables in Hugging Face's rotate-half layout: dimension i pairs
/// with i + d/2. (GGUF files of the llama architecture store Q/K rows permuted for
/// interleaved pairs; the loader undoes that, so the whole engine sees one layout.)
public final class RoPETable: @unchecked Sendable {
    public let headDim: Int
    public let maxPositions: Int
    let cosTable: UnsafeMutablePointer<Float>
    let sinTable: UnsafeMutablePointer<Float>

    public init(headDim: Int, maxPositions: Int, theta: Float) {
        self.headDim = headDim
        self.maxPositions = maxPositions
        let half = headDim / 2
        cosTable = .allocate(capacity: maxPositions * half)
        sinTable = .allocate(capacity: maxPositions * half)
        // Same float32 arithmetic as transformers' LlamaRotaryEmbedding (inv_freq, then pos·inv_freq).
        var invFreq = [Float](repeating: 0, count: half)
        for i in 0..<half {
            invFreq[i] = 1 / Float(pow(Double(theta), Double(Float(2 * i) / Float(headDim))))
        }
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Float(p) * invFreq[i]
                cosTable[p * half + i] = Float(cos(Double(angle)))
                sinTable[p * half + i] = Float(sin(Double(angle)))
            }
        }
    }

    deinit {
        cosTable.deallocate()
        sinTable.deallocate()
    }

    /// Rotates `heads` vectors of headDim at the start of each row of x (rows `rowStride` apart)
    /// in place; row r is at position positions[r].
    public func forward(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, rowStride: Int,
                        positions: UnsafePointer<Int32>) {
        rotate(x, rows: rows, heads: heads, rowStride: rowStride, positions: positions, sign: 1)
    }

    /// The backward of forward: rotation by the negative angle (the transpose).
    public func backward(_ dx: UnsafeMutablePointer<Float>, rows: Int, heads: Int, rowStride: Int,
                         positions: UnsafePointer<Int32>) {
        rotate(dx, rows: rows, heads: heads, rowStride: rowStride, positions: positions, sign: -1)
    }

    private func rotate(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, rowStride: Int,
                        positions: UnsafePointer<Int32>, sign: Float) {
        let half = headDim / 2
        for r in 0..<rows {
            let p = Int(positions[r])
            let c = cosTable + p * half, s = sinTable + p * half
            for h in 0..<heads {
                let v = x + r * rowStride + h * headDim
                for i in 0..<half {
                    let a = v[i], b = v[i + half]
                    let si = sign * s[i]
                    v[i] = a * c[i] - b * si
                    v[i + half] = b * c[i] + a * si
                }
            }
        }
    }
}
