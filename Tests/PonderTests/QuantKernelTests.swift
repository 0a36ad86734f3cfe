import XCTest
@testable import PonderKernels
@testable import PonderModel

/// The block kernels (CPonderQuant) against dequantize-then-fp32 (GGMLType.dequantize, itself
/// checked against gguf-py in TinyModelTests), on random blocks with the edge cases mixed in:
/// scale 0, every code at its minimum or maximum, activation rows of zeros and of large values.
final class QuantKernelTests: XCTestCase {
    static let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K, .f16, .bf16]

    /// Offsets of a block's f16 scale fields (d, and the min where there is one).
    static func scaleOffsets(_ t: GGMLType) -> [Int] {
        switch t {
        case .q4_0, .q5_0, .q8_0: [0]
        case .q4_1, .q5_1, .q4_K, .q5_K: [0, 2]
        case .q6_K: [208]
        default: []
        }
    }

    /// `rows` rows of k values of type t, as bytes.
    static func randomMatrix(_ t: GGMLType, rows: Int, k: Int, rng: inout SplitMix) -> [UInt8] {
        let rowBytes = k / t.blockSize * t.blockBytes
        var bytes = (0..<(rows * rowBytes)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let blocks = rows * k / t.blockSize
        for b in 0..<blocks {
            let base = b * t.blockBytes
            switch t {
            case .f16, .bf16:
                let v = Float(rng.uniform() * 2 - 1)
                let bits: UInt16 = t == .f16 ? Float16(v).bitPattern : UInt16(v.bitPattern >> 16)
                bytes[base] = UInt8(bits & 0xFF)
                bytes[base + 1] = UInt8(bits >> 8)
                continue
            default: break
            }
            // Every 7th block has all codes 0, every 11th all ones, every 13th a zero scale.
            if b % 7 == 3 || b % 11 == 5 {
                let fill: UInt8 = b % 7 == 3 ? 0 : 0xFF
                let skip = Set(scaleOffsets(t).flatMap { [$0, $0 + 1] })
                for i in 0..<t.blockBytes where !skip.contains(i) && !(t == .q6_K && (192..<208).contains(i))
                    && !((t == .q4_K || t == .q5_K) && (4..<16).contains(i)) {
                    bytes[base + i] = fill
                }
            }
            for (n, off) in scaleOffsets(t).enumerated() {
                let v: Float = b % 13 == 6 && n == 0 ? 0 : Float(rng.uniform() * 0.2 - 0.1)
                let bits = Float16(v).bitPattern
                bytes[base + off] = UInt8(bits & 0xFF)
                bytes[base + off + 1] = UInt8(bits >> 8)
            }
        }
        return bytes
    }

    func testKernelsAgainstDequantizedFP32() throws {
        var rng = SplitMix(seed: 25)
        let k = 512, n = 37
        for isa in ["avx2", "avx512-vnni"] {
            guard setQuantizedKernelISA(isa) else {
                print("QuantKernelTests: skipping the \(isa) kernels: this CPU lacks them (\(quantizedKernelISA) tested)")
                continue
            }
            defer { setQuantizedKernelISA("avx512-vnni") }
            for t in Self.types {
                let w = Self.randomMatrix(t, rows: n, k: k, rng: &rng)
                var wf = [Float](repeating: 0, count: n * k)
                w.withUnsafeBytes { t.dequantize($0.baseAddress!, into: &wf, count: n * k) }
                for m in [1, 2, 3, 4, 5, 8, 9] {
                    var x = (0..<(m * k)).map { _ in Float(rng.uniform() * 2 - 1) }
                    if m >= 3 { for i in 0..<k { x[k + i] = 0; x[2 * k + i] *= 1e4 } }
                    var exact = [Float](repeating: 0, count: m * n), q8 = exact, ref = [Double](repeating: 0, count: m * n)
                    var bound = [Double](repeating: 0, count: m * n), mag = bound
                    for r in 0..<m {
                        for j in 0..<n {
                            var s = 0.0, e = 0.0, a = 0.0
                            for b in 0..<(k / 32) {
                                // The 8-bit activations' rounding: at most half a step of the block's scale per value.
                                let xs = x[(r * k + 32 * b)..<(r * k + 32 * b + 32)]
                                let step = Double(xs.map { abs($0) }.max()!) / 127
                                for i in (32 * b)..<(32 * b + 32) {
                                    let p = Double(wf[j * k + i]) * Double(x[r * k + i])
                                    s += p
                                    a += abs(p)
                                    e += abs(Double(wf[j * k + i])) * (step / 2 * 1.001 + abs(Double(x[r * k + i])) * 1e-6)
                                }
                            }
                            ref[r * n + j] = s
                            bound[r * n + j] = e
                            mag[r * n + j] = a
                        }
                    }
                    w.withUnsafeBytes { wb in
                        let qm = QuantizedMatrix([(Int32(t.rawValue), wb.baseAddress!, k / t.blockSize * t.blockBytes, n)], inDim: k)
                        qm.forward(&exact, x, rows: m, accumulate: false, exact: true)
                        qm.forward(&q8, x, rows: m, accumulate: false, exact: false)
                    }
                    for i in 0..<(m * n) {
                        XCTAssertEqual(Double(exact[i]), ref[i], accuracy: 1e-5 * mag[i] + 1e-30,
                                       "\(t) \(isa) exact m=\(m) [\(i / n), \(i % n)]")
                        // F16 and BF16 have no 8-bit kernel: their product is the exact one.
                        let tol = [.f16, .bf16].contains(t) ? 1e-5 * mag[i] : bound[i] + 1e-5 * mag[i]
                        XCTAssertEqual(Double(q8[i]), ref[i], accuracy: tol + 1e-30, "\(t) \(isa) 8-bit m=\(m) [\(i / n), \(i % n)]")
                    }
                }
            }
        }
    }

    /// A row's product does not depend on the rows beside it (a sample of a group equals the
    /// same sample decoded alone), on either path and with the work split over the workers.
    func testRowsAreIndependentOfTheirBatch() {
        var rng = SplitMix(seed: 5)
        let k = 576, n = 300
        for t in [GGMLType.q4_1, .q8_0, .q5_0] {
            let w = Self.randomMatrix(t, rows: n, k: k, rng: &rng)
            let x = (0..<(6 * k)).map { _ in Float(rng.uniform() - 0.5) }
            for exact in [false, true] {
                var alone = [Float](repeating: 0, count: n), batch = [Float](repeating: 0, count: 6 * n)
                w.withUnsafeBytes { wb in
                    let qm = QuantizedMatrix([(Int32(t.rawValue), wb.baseAddress!, k / 32 * t.blockBytes, n)], inDim: k)
                    qm.forward(&alone, x, rows: 1, accumulate: false, exact: exact)
                    qm.forward(&batch, x, rows: 6, accumulate: false, exact: exact)
                }
                XCTAssertEqual(alone.map(\.bitPattern), Array(batch[0..<n]).map(\.bitPattern), "\(t) exact \(exact)")
            }
        }
    }

    func testDequantizeRowsIsTheReferenceBitForBit() {
        var rng = SplitMix(seed: 7)
        let k = 256, n = 5
        for t in Self.types {
            let w = Self.randomMatrix(t, rows: n, k: k, rng: &rng)
            var ref = [Float](repeating: 0, count: n * k), got = ref
            w.withUnsafeBytes { wb in
                t.dequantize(wb.baseAddress!, into: &ref, count: n * k)
                QuantizedMatrix([(Int32(t.rawValue), wb.baseAddress!, k / t.blockSize * t.blockBytes, n)], inDim: k).dequantize(into: &got)
            }
            // Equal as floats: the reference writes −0 where a negative scale meets a zero code.
            XCTAssertEqual(got, ref, "\(t)")
        }
    }

    /// Prefill's tiles + sgemm and the backward's input gradient against the fp32 products.
    func testTiledProductsAndBackwardInput() {
        var rng = SplitMix(seed: 3)
        let k = 256, n = 200, m = 70
        for t in [GGMLType.q4_1, .q8_0, .q5_0, .q6_K] {
            let w = Self.randomMatrix(t, rows: n, k: k, rng: &rng)
            var wf = [Float](repeating: 0, count: n * k)
            w.withUnsafeBytes { t.dequantize($0.baseAddress!, into: &wf, count: n * k) }
            let x = (0..<(m * k)).map { _ in Float(rng.uniform() * 2 - 1) }
            let dy = (0..<(m * n)).map { _ in Float(rng.uniform() * 2 - 1) }
            var y = [Float](repeating: 1, count: m * n), dx = [Float](repeating: 7, count: m * k)
            var yRef = [Float](repeating: 1, count: m * n), dxRef = [Float](repeating: 0, count: m * k)
            w.withUnsafeBytes { wb in
                let qm = QuantizedMatrix([(Int32(t.rawValue), wb.baseAddress!, k / t.blockSize * t.blockBytes, n)], inDim: k)
                qm.forward(&y, x, rows: m, accumulate: true, exact: false)
                qm.backwardInput(&dx, dy, rows: m)
            }
            linear(&yRef, x, wf, rows: m, out: n, in: k, accumulate: true)
            sgemm(m: m, n: k, k: n, a: dy, lda: n, b: wf, ldb: k, c: &dxRef, ldc: k)
            // Tolerances relative to the sum of the terms' magnitudes (Q6_K's weights reach ±4000).
            var yMag = [Float](repeating: 0, count: m * n), dxMag = [Float](repeating: 0, count: m * k)
            let wAbs = wf.map { abs($0) }
            linear(&yMag, x.map { abs($0) }, wAbs, rows: m, out: n, in: k)
            sgemm(m: m, n: k, k: n, a: dy.map { abs($0) }, lda: n, b: wAbs, ldb: k, c: &dxMag, ldc: k)
            for i in 0..<(m * n) { XCTAssertEqual(y[i], yRef[i], accuracy: 1e-5 * (yMag[i] + 1), "\(t) y[\(i)]") }
            for i in 0..<(m * k) { XCTAssertEqual(dx[i], dxRef[i], accuracy: 1e-5 * dxMag[i], "\(t) dx[\(i)]") }
        }
    }

    /// A NaN or infinite activation poisons its row's products in the 8-bit path as in fp32,
    /// so the sampler's non-finite check still sees it.
    func testNonFiniteActivationsStayNonFinite() {
        var rng = SplitMix(seed: 9)
        let k = 64, n = 8
        for t in [GGMLType.q4_1, .q8_0, .q6_K] {
            let kk = t == .q6_K ? 256 : k
            let w = Self.randomMatrix(t, rows: n, k: kk, rng: &rng)
            for bad in [Float.nan, .infinity] {
                var x = (0..<(3 * kk)).map { _ in Float(rng.uniform() - 0.5) }
                x[kk + 5] = bad
                var y = [Float](repeating: 0, count: 3 * n)
                w.withUnsafeBytes { wb in
                    QuantizedMatrix([(Int32(t.rawValue), wb.baseAddress!, kk / t.blockSize * t.blockBytes, n)], inDim: kk)
                        .forward(&y, x, rows: 3, accumulate: false, exact: false)
                }
                XCTAssertTrue(y[0..<n].allSatisfy(\.isFinite) && y[(2 * n)...].allSatisfy(\.isFinite), "\(t) \(bad)")
                XCTAssertTrue(y[n..<(2 * n)].allSatisfy { !$0.isFinite }, "\(t) \(bad): \(y[n..<(2 * n)])")
            }
        }
    }

    func testNonFiniteScalesAreFound() {
        var rng = SplitMix(seed: 1)
        for t in [GGMLType.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K] {
            for (i, off) in Self.scaleOffsets(t).enumerated() {
                for bad: Float16 in [.nan, .infinity, -.infinity] {
                    var w = Self.randomMatrix(t, rows: 4, k: 256, rng: &rng)
                    let blocks = 4 * 256 / t.blockSize
                    w.withUnsafeBytes { XCTAssertNil(firstNonFiniteBlock(type: Int32(t.rawValue), data: $0.baseAddress!, blocks: blocks)) }
                    let b = blocks - 1 - i
                    w[b * t.blockBytes + off] = UInt8(bad.bitPattern & 0xFF)
                    w[b * t.blockBytes + off + 1] = UInt8(bad.bitPattern >> 8)
                    w.withUnsafeBytes {
                        XCTAssertEqual(firstNonFiniteBlock(type: Int32(t.rawValue), data: $0.baseAddress!, blocks: blocks), b, "\(t) \(bad)")
                    }
                }
            }
        }
    }
}

/// A small seeded generator (SplitMix64) so every run draws the same blocks.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
