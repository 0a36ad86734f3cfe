/// ggml tensor types Ponder reads, with ggml's block layouts (ggml-common.h).
public enum GGMLType: UInt32, Sendable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14,
         bf16 = 30

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q3_K: "Q3_K"
        case .q5_K: "Q5_K"
        case .q4_K: "Q4_K"
        case .q6_K: "Q6_K"
        case .bf16: "BF16"
        }
    }

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: 32
        case .q3_K, .q4_K, .q5_K, .q6_K: 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18   // f16 d, 16 × two 4-bit values
        case .q4_1: 20   // f16 d, f16 m, 16 bytes
        case .q5_0: 22   // f16 d, 32 high bits, 16 bytes of low nibbles
        case .q5_1: 24   // f16 d, f16 m, 32 high bits, 16 bytes
        case .q8_0: 34   // f16 d, 32 × int8
        case .q3_K: 110  // 32 bytes of high bits, 64 bytes of 2-bit values, 12 bytes of 6-bit scales, f16 d
        case .q5_K: 176  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 32 bytes of high bits, 128 bytes
        case .q4_K: 144  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes
        case .q6_K: 210  // 128 low nibbles, 64 high 2-bit pairs, 16 int8 scales, f16 d
        }
    }

    /// Expands `count` elements starting at `src` into fp32 (src must hold count/blockSize blocks;
    /// the GGUF reader has checked that).
    public func dequantize(_ src: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>, count: Int) {
        let blocks = count / blockSize
        @inline(__always) func h(_ p: UnsafeRawPointer) -> Float {
            Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self).littleEndian))
        }
        switch self {
        case .f32:
            for i in 0..<count { y[i] = Float(bitPattern: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) }
        case .f16:
            for i in 0..<count { y[i] = h(src + 2 * i) }
        case .bf16:
            for i in 0..<count {
                y[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16)
            }
        case .q4_0:
            for b in 0..<blocks {
                let p = src + b * 18, o = y + b * 32
                let d = h(p)
                let q = (p + 2).assumingMemoryBound(to: UInt8.self)
                for j in 0..<16 {
                    o[j] = Float(Int(q[j] & 0xF) - 8) * d
                    o[j + 16] = Float(Int(q[j] >> 4) - 8) * d
                }
            }
        case .q4_1:
            for b in 0..<blocks {
                let p = src + b * 20, o = y + b * 32
                let d = h(p), m = h(p + 2)
                let q = (p + 4).assumingMemoryBound(to: UInt8.self)
                for j in 0..<16 {
                    o[j] = Float(q[j] & 0xF) * d + m
                    o[j + 16] = Float(q[j] >> 4) * d + m
                }
            }
        case .q5_0, .q5_1:
            // ggml's block_q5_0 / block_q5_1: value j's fifth bit is bit j of qh (j + 16: bit j + 16).
            let offset = self == .q5_1 ? 2 : 0, bytes = blockBytes
            for b in 0..<blocks {
                let p = src + b * bytes, o = y + b * 32
                let d = h(p), m: Float = self == .q5_1 ? h(p + 2) : 0
                let qh = (p + 2 + offset).loadUnaligned(as: UInt32.self).littleEndian
                let q = (p + 6 + offset).assumingMemoryBound(to: UInt8.self)
                let bias = self == .q5_1 ? 0 : 16
                for j in 0..<16 {
                    let h0 = Int((qh >> UInt32(j)) & 1) << 4, h1 = Int((qh >> UInt32(j + 16)) & 1) << 4
                    o[j] = Float((Int(q[j] & 0xF) | h0) - bias) * d + m
                    o[j + 16] = Float((Int(q[j] >> 4) | h1) - bias) * d + m
                }
            }
        case .q8_0:
            for b in 0..<blocks {
                let p = src + b * 34, o = y + b * 32
                let d = h(p)
                let q = (p + 2).assumingMemoryBound(to: Int8.self)
                for j in 0..<32 { o[j] = Float(q[j]) * d }
            }
        case .q4_K:
            for b in 0..<blocks {
                let p = src + b * 144
                var o = y + b * 256
                let d = h(p), dmin = h(p + 2)
                let sc = (p + 4).assumingMemoryBound(to: UInt8.self)
                var q = (p + 16).assumingMemoryBound(to: UInt8.self)
                var s = 0
                for _ in 0..<4 {
                    let (s1, m1) = GGMLType.scaleMinK4(sc, s), (s2, m2) = GGMLType.scaleMinK4(sc, s + 1)
                    let d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2
                    for l in 0..<32 { o[l] = d1 * Float(q[l] & 0xF) - mm1 }
                    for l in 0..<32 { o[l + 32] = d2 * Float(q[l] >> 4) - mm2 }
                    o += 64
                    q += 32
                    s += 2
                }
            }
        case .q5_K:
            // As Q4_K, plus a fifth bit per value from qh: bit 2k (low nibbles) and 2k + 1 (high
            // nibbles) of byte l for the k-th 64-value group.
            for b in 0..<blocks {
                let p = src + b * 176
                var o = y + b * 256
                let d = h(p), dmin = h(p + 2)
                let sc = (p + 4).assumingMemoryBound(to: UInt8.self)
                let qh = (p + 16).assumingMemoryBound(to: UInt8.self)
                var q = (p + 48).assumingMemoryBound(to: UInt8.self)
                for k in 0..<4 {
                    let (s1, m1) = GGMLType.scaleMinK4(sc, 2 * k), (s2, m2) = GGMLType.scaleMinK4(sc, 2 * k + 1)
                    let d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2
                    let u1 = UInt8(1) << (2 * k), u2 = UInt8(2) << (2 * k)
                    for l in 0..<32 { o[l] = d1 * Float(Int(q[l] & 0xF) + (qh[l] & u1 != 0 ? 16 : 0)) - mm1 }
                    for l in 0..<32 { o[l + 32] = d2 * Float(Int(q[l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)) - mm2 }
                    o += 64
                    q += 32
                }
            }
        case .q3_K:
            // ggml's block_q3_K: 16 scales of 6 bits (low 4 bits in bytes 0–7, high 2 bits in
            // bytes 8–11), stored + 32; a value is its 2 bits minus 4 unless its hmask bit is set.
            for b in 0..<blocks {
                let p = src + b * 110
                var o = y + b * 256
                let hm = p.assumingMemoryBound(to: UInt8.self)
                var q = (p + 32).assumingMemoryBound(to: UInt8.self)
                let raw = (p + 96).assumingMemoryBound(to: UInt8.self)
                let d = h(p + 108)
                func scale(_ i: Int) -> Int {
                    let low = i < 8 ? Int(raw[i] & 0xF) : Int(raw[i - 8] >> 4)
                    let high = Int(raw[8 + i % 4] >> (2 * (i / 4))) & 3
                    return (low | high << 4) - 32
                }
                var s = 0, m: UInt8 = 1
                for _ in 0..<2 {
                    var shift: UInt8 = 0
                    for _ in 0..<4 {
                        for half in 0..<2 {
                            let dl = d * Float(scale(s))
                            s += 1
                            for l in 0..<16 {
                                let i = 16 * half + l
                                o[i] = dl * Float(Int((q[i] >> shift) & 3) - (hm[i] & m != 0 ? 0 : 4))
                            }
                        }
                        // hm is indexed by position within the 32-value stripe, for both 128-value halves.
                        o += 32
                        shift += 2
                        m <<= 1
                    }
                    q += 32
                }
            }
        case .q6_K:
            for b in 0..<blocks {
                let p = src + b * 210
                var o = y + b * 256
                var ql = p.assumingMemoryBound(to: UInt8.self)
                var qh = (p + 128).assumingMemoryBound(to: UInt8.self)
                var sc = (p + 192).assumingMemoryBound(to: Int8.self)
                let d = h(p + 208)
                for _ in 0..<2 {
                    for l in 0..<32 {
                        let i = l / 16
                        let q1 = Int((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32
                        let q2 = Int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32
                        let q3 = Int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32
                        let q4 = Int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32
                        o[l] = d * Float(sc[i]) * Float(q1)
                        o[l + 32] = d * Float(sc[i + 2]) * Float(q2)
                        o[l + 64] = d * Float(sc[i + 4]) * Float(q3)
                        o[l + 96] = d * Float(sc[i + 6]) * Float(q4)
                    }
                    o += 128
                    ql += 64
                    qh += 32
                    sc += 8
                }
            }
        }
    }

    /// ggml's get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K / Q5_K block.
    @inline(__always) static func scaleMinK4(_ sc: UnsafePointer<UInt8>, _ j: Int) -> (Float, Float) {
        if j < 4 { return (Float(sc[j] & 63), Float(sc[j + 4] & 63)) }
        return (Float((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4)), Float((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)))
    }
}
