import PonderBase
import PonderJSON
import PonderModel
import PonderTrain
import PonderKernels
import PonderInference
import Glibc

// `ponder bench-matmul`: measurements for bench/, not a user command.

func benchMatmul() {
    let rest = CommandLine.arguments.dropFirst(2)
    if rest.first == "step" { benchDecodeStep(rows: rest.dropFirst().first.flatMap { Int($0) } ?? 8); return }
    if let t = rest.first.flatMap({ Int($0) }) { setThreads(t) }
    let shapes = [(1728, 576), (3072, 576), (576, 1536), (49152, 576)]
    for m in [1, 2, 8] {
        for (n, k) in shapes {
            let arena = try! Arena(count: n * k)
            let w = arena.pointer
            w.initialize(repeating: 0.01, count: n * k)
            let x = UnsafeMutablePointer<Float>.allocate(capacity: m * k)
            x.initialize(repeating: 1, count: m * k)
            let y = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
            // Many distinct weight copies would be needed to defeat the cache for small
            // shapes; report as measured (in-cache for the small ones).
            let reps = n > 10000 ? 20 : 200
            linear(y, x, w, rows: m, out: n, in: k)
            let t0 = monotonicSeconds()
            for _ in 0..<reps { linear(y, x, w, rows: m, out: n, in: k) }
            let dt = (monotonicSeconds() - t0) / Double(reps)
            print("m=\(m) n=\(n) k=\(k): \(Int(dt * 1e6)) us, \(Int(Double(n * k * 4) / dt / 1e9)) GB/s of weights")
        }
    }
}

/// The weight stream of one SmolLM2 decode step (30 layers' q/k/v, o, gate/up, down and the
/// tied LM head, each matrix distinct so nothing stays in cache) for `rows` sequences.
func benchDecodeStep(rows m: Int) {
    let (d, inter, qkv, layers, vocab) = (576, 1536, 960, 30, 49152)
    let shapes = [(qkv, d), (d, d), (2 * inter, d), (d, inter)]
    let perLayer = shapes.reduce(0) { $0 + $1.0 * $1.1 }
    let total = layers * perLayer + vocab * d
    let arena = try! Arena(count: total)
    for i in 0..<total { arena.pointer[i] = Float(i % 97) * 1e-4 }
    let x = UnsafeMutablePointer<Float>.allocate(capacity: m * inter)
    x.initialize(repeating: 0.5, count: m * inter)
    let y = UnsafeMutablePointer<Float>.allocate(capacity: m * vocab)
    // PONDER_BENCH_SGEMM=1: every size through sgemm, to compare with the few-rows kernel.
    let blas = getenv("PONDER_BENCH_SGEMM") != nil
    func lin(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, rows: Int, out: Int, in k: Int) {
        if blas {
            sgemm(transB: true, m: rows, n: out, k: k, a: x, lda: k, b: w, ldb: k, c: y, ldc: out)
        } else {
            linear(y, x, w, rows: rows, out: out, in: k)
        }
    }
    func step() {
        var w = arena.pointer
        for _ in 0..<layers {
            for (n, k) in shapes { lin(y, x, w, rows: m, out: n, in: k); w += n * k }
        }
        lin(y, x, w, rows: m, out: vocab, in: d)
    }
    step()
    var best = Double.infinity
    for _ in 0..<5 {
        let t0 = monotonicSeconds()
        for _ in 0..<4 { step() }
        best = min(best, (monotonicSeconds() - t0) / 4)
    }
    let gb = Double(total * 4) / 1e9, gflop = Double(2 * m * total) / 1e9
    func f(_ v: Double) -> String { String(Double(Int(v * 10)) / 10) }
    print("rows=\(m): \(f(best * 1e3)) ms/step, \(f(gb / best)) GB/s, \(f(gflop / best)) GFLOP/s, \(f(Double(m) / best)) tok/s")
}

/// `ponder logits OUT.f32`: the logits decode computes along a given token path (rows of
/// vocab_size little-endian floats), for comparing engines on one file.
func logitsCommand(_ p: Parsed) {
    guard let out = p.positional.first else { usageError("OUT.f32 is required", p.command) }
    var input: [UInt8] = []
    while let line = readLine(strippingNewline: false) { input += Array(line.utf8) }
    do {
        let v = try input.withUnsafeBytes { try JSONValue.parse($0, what: "stdin") }
        func ids(_ key: String) throws -> [Int32] {
            guard let a = v[key]?.asArray else { throw PonderError.invalid("stdin: \"\(key)\" must be an array of token ids") }
            return try a.map { x in
                guard let i = x.asInt, let t = Int32(exactly: i) else { throw PonderError.invalid("stdin: \(key) holds a non-id") }
                return t
            }
        }
        let model = loadModel(p)
        let logits = try model.decodeLogits(prompt: try ids("prompt"), continuation: try ids("continuation"))
        guard let f = fopen(out, "wb") else { throw PonderError(.io, "\(out): cannot open for writing") }
        defer { fclose(f) }
        let written = logits.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        guard written == logits.count * 4 else { throw PonderError(.io, "\(out): short write") }
    } catch { p.fail(error) }
}
