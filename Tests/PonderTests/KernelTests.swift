import Dispatch
import XCTest
@testable import PonderKernels
import PonderMatvec
import PonderMatvec512

extension Double { var asFloat: Float { Float(self) } }

final class KernelTests: XCTestCase {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2000) / 1000 - 1
        }
    }

    func testLinearMatchesNaive() {
        let m = 5, n = 7, k = 33
        let x = random(m * k, seed: 1), w = random(n * k, seed: 2)
        var y = [Float](repeating: 0, count: m * n)
        linear(&y, x, w, rows: m, out: n, in: k)
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for t in 0..<k { s += x[i * k + t] * w[j * k + t] }
                XCTAssertEqual(y[i * n + j], s, accuracy: 1e-4)
            }
        }
    }

    /// Every row count goes through one of three paths (sgemv, the few-rows kernel, sgemm);
    /// all must agree with the naive product, with and without accumulation, for odd sizes.
    func testLinearAllPathsMatchNaive() {
        // n = 301 × k = 150 is 176 KiB of weights: more than one chunk of the few-rows kernel.
        for (m, n, k) in [(1, 19, 45), (2, 19, 45), (3, 19, 45), (5, 19, 45), (8, 19, 45), (13, 19, 45), (16, 19, 45),
                          (17, 19, 45), (40, 19, 45), (64, 19, 45), (65, 19, 45), (20, 301, 150), (64, 301, 150), (65, 301, 150)] {
            let x = random(m * k, seed: UInt64(m)), w = random(n * k, seed: 99)
            let base = random(m * n, seed: 7)
            for acc in [false, true] {
                var y = base
                linear(&y, x, w, rows: m, out: n, in: k, accumulate: acc)
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Float = acc ? base[i * n + j] : 0
                        for t in 0..<k { s += x[i * k + t] * w[j * k + t] }
                        XCTAssertEqual(y[i * n + j], s, accuracy: 1e-4, "m=\(m) acc=\(acc) [\(i),\(j)]")
                    }
                }
            }
        }
    }

    /// sgemm splits a large product into one block of C per worker: every transpose, strided
    /// operands, alpha and beta give what one OpenBLAS call gives, and C's padding is untouched.
    func testSgemmSplitMatchesOneCall() throws {
        try XCTSkipIf(workerThreads < 2, "one core: sgemm never splits")
        setThreads(workerThreads)
        XCTAssertEqual(blasThreads(), 1, "OpenBLAS stays single-threaded: sgemm splits on Ponder's workers")
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            // Split by rows, then by columns (the larger side of C is split).
            for (m, n, k) in [(203, 97, 61), (50, 333, 70)] {
                let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2
                let a = random((ta ? k : m) * lda, seed: 3), b = random((tb ? n : k) * ldb, seed: 4)
                let c0 = random(m * ldc, seed: 5)
                var split = c0, one = c0
                sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                      beta: 0.25, c: &split, ldc: ldc)
                sgemmBlock(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                           beta: 0.25, c: &one, ldc: ldc)
                var worst: Float = 0
                for i in 0..<m {
                    for j in 0..<n { worst = max(worst, abs(split[i * ldc + j] - one[i * ldc + j])) }
                    for j in n..<ldc { XCTAssertEqual(split[i * ldc + j], c0[i * ldc + j], "padding [\(i),\(j)]") }
                }
                XCTAssertLessThanOrEqual(worst, 1e-5, "transA \(ta) transB \(tb) m \(m) n \(n) k \(k)")
                XCTAssertNotEqual(split, c0)
            }
        }
    }

    func testVectorExpMatchesLibm() {
        var worst: Float = 0
        var x: Float = -100
        while x < 88 {
            let v = vexp(SIMD8<Float>((0..<8).map { x + Float($0) * 0.0137 }))
            for l in 0..<8 {
                let want = expf(x + Float(l) * 0.0137)
                if want > 1e-37 { worst = max(worst, abs(v[l] - want) / want) }
                else { XCTAssertLessThan(v[l], 1e-30) }
            }
            x += 0.37
        }
        XCTAssertLessThan(worst, 3e-7)
        var row: [Float] = (0..<37).map { Float($0) * 0.3 - 5 }
        let lse = logSumExp(row, 37)
        softmaxInPlace(&row, 37)
        XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-6)
        XCTAssertEqual(lse, log((0..<37).map { exp(Double($0) * 0.3 - 5) }.reduce(0, +)).asFloat, accuracy: 1e-5)
        // The LM head's helpers: the mean of x under softmax(x) (entropy = lse − it), and s·softmax.
        let xs: [Float] = (0..<37).map { Float($0) * 0.3 - 5 }
        let p = xs.map { exp(Double($0) - Double(lse)) }
        XCTAssertEqual(softmaxMean(xs, 37, lse: lse), zip(p, xs).map { $0 * Double($1) }.reduce(0, +).asFloat, accuracy: 1e-5)
        var scaled = xs
        scaledExpInPlace(&scaled, 37, minus: lse, times: -0.7)
        for i in 0..<37 { XCTAssertEqual(scaled[i], Float(-0.7 * p[i]), accuracy: 1e-6) }
    }

    /// parallelFor covers every index exactly once, also when several threads call it at once
    /// (one gets the worker pool, the others run serially).
    func testParallelForUnderConcurrentCallers() {
        let group = DispatchGroup()
        let failures = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        failures.initialize(repeating: 0, count: 4)
        defer { failures.deallocate() }
        for t in 0..<4 {
            DispatchQueue.global().async(group: group) {
                let hits = UnsafeMutablePointer<Int32>.allocate(capacity: 97)
                defer { hits.deallocate() }
                for round in 0..<300 {
                    let n = 1 + (round * 7 + t) % 97
                    hits.initialize(repeating: 0, count: n)
                    parallelFor(n) { i in hits[i] += 1 }
                    for i in 0..<n where hits[i] != 1 { failures[t] += 1 }
                }
            }
        }
        group.wait()
        XCTAssertEqual((0..<4).map { failures[$0] }, [0, 0, 0, 0])
    }

    /// Both specialisations of the few-rows kernels (AVX2 and, where the CPU has it, AVX-512)
    /// agree with the naive products on odd sizes, with padded row strides, overwriting and
    /// accumulating.
    func testFewRowsKernelsBothWidths() {
        for m in [1, 3, 5, 6, 7, 8, 12, 16] {
            for accumulate in [false, true] {
                let n = 13, k = 70, ldx = k + 3, ldw = k + 5, ldy = n + 2
                let x = random(m * ldx, seed: 3), w = random(n * ldw, seed: 4), y0 = random(m * ldy, seed: 5)
                var want = y0
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Float = accumulate ? y0[i * ldy + j] : 0
                        for t in 0..<k { s += x[i * ldx + t] * w[j * ldw + t] }
                        want[i * ldy + j] = s
                    }
                }
                var y = y0
                fewRows(SIMD8<Float>.self, &y, x, w, rows: m, out: n, in: k, from: 0, to: n, accumulate: accumulate,
                        ldx: ldx, ldw: ldw, ldy: ldy)
                for i in 0..<y.count { XCTAssertEqual(y[i], want[i], accuracy: 1e-4, "AVX2 m=\(m)") }
                if hasAVX512 {
                    y = y0
                    fewRowsAVX512(&y, x, w, rows: m, out: n, in: k, from: 0, to: n, accumulate: accumulate,
                                  ldx: ldx, ldw: ldw, ldy: ldy)
                    for i in 0..<y.count { XCTAssertEqual(y[i], want[i], accuracy: 1e-4, "AVX-512 m=\(m)") }
                }
            }
        }
        // y = x · B (B not transposed): widths around the 4-vector block and its tail.
        for (m, n) in [(1, 64), (3, 70), (5, 20), (6, 128)] {
            for accumulate in [false, true] {
                let k = 9, ldx = k + 2, ldb = n + 7, ldy = n + 1
                let x = random(m * ldx, seed: 6), b = random(k * ldb, seed: 7), y0 = random(m * ldy, seed: 8)
                var want = y0
                for i in 0..<m {
                    for j in 0..<n {
                        var s: Float = accumulate ? y0[i * ldy + j] : 0
                        for t in 0..<k { s += x[i * ldx + t] * b[t * ldb + j] }
                        want[i * ldy + j] = s
                    }
                }
                var y = y0
                fewRowsN(SIMD8<Float>.self, &y, ldy: ldy, x, ldx: ldx, b, ldb: ldb, rows: m, out: n, inner: k, accumulate: accumulate)
                for i in 0..<y.count { XCTAssertEqual(y[i], want[i], accuracy: 1e-4, "AVX2 N m=\(m) n=\(n)") }
                if hasAVX512 {
                    y = y0
                    fewRowsNAVX512(&y, ldy: ldy, x, ldx: ldx, b, ldb: ldb, rows: m, out: n, inner: k, accumulate: accumulate)
                    for i in 0..<y.count { XCTAssertEqual(y[i], want[i], accuracy: 1e-4, "AVX-512 N m=\(m) n=\(n)") }
                }
            }
        }
    }

    func testDotAndRMSNorm() {
        let a = random(77, seed: 3), b = random(77, seed: 4)
        XCTAssertEqual(dot(a, b, 77), zip(a, b).map(*).reduce(0, +), accuracy: 1e-4)
        let w = random(37, seed: 5), x = random(74, seed: 6)
        var out = [Float](repeating: 0, count: 74), rstd = [Float](repeating: 0, count: 2)
        rmsnormForward(&out, rstd: &rstd, x, w, rows: 2, dim: 37, eps: 1e-5)
        for r in 0..<2 {
            let row = x[(r * 37)..<(r * 37 + 37)]
            let inv = 1 / (row.map { $0 * $0 }.reduce(0, +) / 37 + 1e-5).squareRoot()
            XCTAssertEqual(rstd[r], inv, accuracy: 1e-5)
            for i in 0..<37 { XCTAssertEqual(out[r * 37 + i], row[r * 37 + i] * inv * w[i], accuracy: 1e-5) }
        }
    }

    /// Prefill attention (sgemm per head) agrees with a naive causal GQA implementation.
    func testAttentionPrefillAgreesWithNaive() {
        let t = 6, heads = 4, kvHeads = 2, d = 8
        let q = random(t * heads * d, seed: 7), k = random(t * kvHeads * d, seed: 8), v = random(t * kvHeads * d, seed: 9)
        var naive = [Float](repeating: 0, count: t * heads * d)
        for i in 0..<t {
            for h in 0..<heads {
                let g = h / (heads / kvHeads)
                var s = (0...i).map { j in (0..<d).map { q[(i * heads + h) * d + $0] * k[(j * kvHeads + g) * d + $0] }.reduce(0, +) / Float(d).squareRoot() }
                let mx = s.max()!
                s = s.map { exp($0 - mx) }
                let z = s.reduce(0, +)
                for j in 0...i { for e in 0..<d { naive[(i * heads + h) * d + e] += s[j] / z * v[(j * kvHeads + g) * d + e] } }
            }
        }
        var out = [Float](repeating: 0, count: t * heads * d)
        var scores = [Float](repeating: 0, count: t * t)
        attentionPrefill(out: &out, q: q, k: k, v: v, t: t, past: 0, heads: heads, kvHeads: kvHeads, headDim: d,
                         qStride: heads * d, scores: &scores)
        for i in 0..<out.count { XCTAssertEqual(out[i], naive[i], accuracy: 1e-5) }
    }

    /// Training's batched attention (a task per sequence and head, q/k/v fused per row) gives
    /// each sequence what prefill attention gives it alone, and keeps its weights.
    func testTrainingAttentionMatchesPrefillPerSequence() {
        let seqs = 3, t = 7, heads = 6, kvHeads = 2, d = 8
        let stride = (heads + 2 * kvHeads) * d + 3
        let qkv = random(seqs * t * stride, seed: 17)
        var out = [Float](repeating: 0, count: seqs * t * heads * d)
        var probs = [Float](repeating: 0, count: seqs * heads * t * t)
        let layout = TrainingAttention(seqs: seqs, t: t, heads: heads, kvHeads: kvHeads, headDim: d, qkvStride: stride)
        XCTAssertEqual(layout.probsCount, probs.count)
        layout.forward(out: &out, qkv: qkv, probs: &probs)
        for b in 0..<seqs {
            var want = [Float](repeating: 0, count: t * heads * d)
            var scores = [Float](repeating: 0, count: t * t)
            qkv.withUnsafeBufferPointer { p in
                let q = p.baseAddress! + b * t * stride
                attentionPrefill(out: &want, q: q, k: q + heads * d, v: q + (heads + kvHeads) * d, t: t, past: 0, heads: heads,
                                 kvHeads: kvHeads, headDim: d, qStride: stride, kvStride: stride, scores: &scores)
            }
            for i in 0..<want.count { XCTAssertEqual(out[b * t * heads * d + i], want[i], accuracy: 1e-5, "sequence \(b)") }
            for h in 0..<heads {
                for i in 0..<t {
                    let row = probs[((b * heads + h) * t + i) * t..<((b * heads + h) * t + i + 1) * t]
                    XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
                    XCTAssertTrue(row.dropFirst(i + 1).allSatisfy { $0 == 0 }, "causal mask")
                }
            }
        }
    }

    /// Decode attention of several rows that share a prompt span and each have their own span
    /// (a sampled group), and of a single row, against a naive GQA over the concatenated cache.
    func testDecodeAttentionAgreesWithNaive() {
        let heads = 6, kvHeads = 2, group = 3, promptLen = 11
        for d in [20, 64] {
            for rows in [1, 2, 5, 8] {
                let ownLen = (0..<rows).map { 1 + $0 % 3 }
                let kvStride = kvHeads * d, qStride = heads * d + 5, outStride = heads * d + 3
                let pk = random(promptLen * kvStride, seed: 11), pv = random(promptLen * kvStride, seed: 12)
                let ok = (0..<rows).map { random(ownLen[$0] * kvStride, seed: 20 + UInt64($0)) }
                let ov = (0..<rows).map { random(ownLen[$0] * kvStride, seed: 40 + UInt64($0)) }
                let q = random(rows * qStride, seed: 13)
                var want = [Float](repeating: 0, count: rows * outStride)
                for r in 0..<rows {
                    let keys = pk + ok[r], values = pv + ov[r], total = promptLen + ownLen[r]
                    for h in 0..<heads {
                        let g = h / group
                        var s = (0..<total).map { j in
                            (0..<d).map { q[r * qStride + h * d + $0] * keys[j * kvStride + g * d + $0] }.reduce(0, +) / Float(d).squareRoot()
                        }
                        let mx = s.max()!
                        s = s.map { exp($0 - mx) }
                        let z = s.reduce(0, +)
                        for j in 0..<total { for e in 0..<d { want[r * outStride + h * d + e] += s[j] / z * values[j * kvStride + g * d + e] } }
                    }
                }
                let context = promptLen + 3
                var scratch = [Float](repeating: .nan, count: DecodeAttention.scratchCount(rows: rows, heads: heads, headDim: d, context: context))
                var out = [Float](repeating: 0, count: rows * outStride)
                // Own spans with padded rows (as generation lays them out: a row per sequence
                // between one sequence's steps).
                let ownStride = kvStride + 7
                let ownK = ok.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 3 * ownStride) }
                let ownV = ov.map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 3 * ownStride) }
                defer { (ownK + ownV).forEach { $0.deallocate() } }
                for r in 0..<rows {
                    ownK[r].initialize(repeating: .nan, count: 3 * ownStride)
                    ownV[r].initialize(repeating: .nan, count: 3 * ownStride)
                    for j in 0..<ownLen[r] {
                        (ownK[r] + j * ownStride).update(from: Array(ok[r][(j * kvStride)..<((j + 1) * kvStride)]), count: kvStride)
                        (ownV[r] + j * ownStride).update(from: Array(ov[r][(j * kvStride)..<((j + 1) * kvStride)]), count: kvStride)
                    }
                }
                pk.withUnsafeBufferPointer { kp in
                    pv.withUnsafeBufferPointer { vp in
                        DecodeAttention(rows: rows, heads: heads, kvHeads: kvHeads, headDim: d, context: context)
                            .run(out: &out, outStride: outStride, q: q, qStride: qStride,
                                 prompt: KVSpan(keys: kp.baseAddress!, values: vp.baseAddress!, count: promptLen),
                                 own: { KVSpan(keys: ownK[$0], values: ownV[$0], count: ownLen[$0], rowStride: ownStride) },
                                 scratch: &scratch)
                    }
                }
                for r in 0..<rows {
                    for i in 0..<(heads * d) {
                        XCTAssertEqual(out[r * outStride + i], want[r * outStride + i], accuracy: 1e-5, "d=\(d) rows=\(rows) r=\(r)")
                    }
                }
            }
        }
    }

    func testRoPEBackwardInvertsForward() {
        let rope = RoPETable(headDim: 8, maxPositions: 16, theta: 10000)
        var x = random(3 * 2 * 8, seed: 10)
        let orig = x
        let pos: [Int32] = [0, 5, 15]
        rope.forward(&x, rows: 3, heads: 2, rowStride: 16, positions: pos)
        XCTAssertEqual(Array(x[0..<16]), Array(orig[0..<16]))  // position 0 is the identity
        XCTAssertNotEqual(Array(x[16..<32]), Array(orig[16..<32]))
        rope.backward(&x, rows: 3, heads: 2, rowStride: 16, positions: pos)
        for i in 0..<x.count { XCTAssertEqual(x[i], orig[i], accuracy: 1e-5) }
    }
}
