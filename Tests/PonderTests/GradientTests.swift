import Foundation
import XCTest
@testable import PonderModel
@testable import PonderText
@testable import PonderKernels

/// Hand-written backward against central finite differences, tensor by tensor: for a random
/// direction v over each tensor, ⟨∇L, v⟩ must equal (L(θ+εv) − L(θ−εv)) / 2ε.
final class GradientTests: XCTestCase {
    static func tinyModel(bias: Bool, tied: Bool, seed: UInt64 = 1) throws -> LlamaModel {
        let tok = try Tokenizer.byteLevel()
        let cfg = LlamaConfig(vocabSize: tok.vocabSize, hiddenSize: 24, intermediateSize: 40, numLayers: 2, numHeads: 4,
                              numKVHeads: 2, headDim: 6, ropeTheta: 10000, rmsNormEps: 1e-5, maxPositions: 64,
                              tieWordEmbeddings: tied, attentionBias: bias)
        let m = try LlamaModel.random(config: cfg, tokenizer: tok, seed: seed, std: 0.3)
        // Non-trivial norm weights and biases, so their gradients are exercised too.
        var rng = RandomGenerator(seed: seed + 100)
        for e in m.layout.entries where e.shape.count == 1 {
            for i in 0..<e.count { m.weights.pointer[e.offset + i] = (e.name.hasSuffix("bias") ? 0 : 1) + 0.3 * rng.normal() }
        }
        return m
    }

    static func batch(seqs: Int, len: Int, vocab: Int, seed: UInt64) -> TokenBatch {
        var rng = RandomGenerator(seed: seed)
        let toks = (0..<(seqs * len)).map { _ in Int32(rng.next() % UInt64(vocab)) }
        var targets = (0..<(seqs * len)).map { _ in Int32(rng.next() % UInt64(vocab)) }
        targets[0] = -1
        targets[len - 1] = -1
        return TokenBatch(sequences: seqs, length: len, tokens: toks, targets: targets)
    }

    func check(_ m: LlamaModel, params: UnsafeMutablePointer<Float>, entries: [ParameterLayout.Entry],
               checkpointing: Bool = false, temperature: Float = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        var b = GradientTests.batch(seqs: 2, len: 5, vocab: m.config.vocabSize, seed: 9)
        b.temperature = temperature
        let acts = try TrainActivations(model: m, sequences: 2, length: 5, checkpointing: checkpointing)
        var rng = RandomGenerator(seed: 5)
        let weightsPerToken = b.targets.map { $0 >= 0 ? Float(0.5 + rng.uniform()) : 0 }
        func loss() throws -> Double {
            let lp = try m.trainForward(b, acts)
            return zip(lp, weightsPerToken).reduce(0.0) { $0 - Double($1.0 * $1.1) }
        }
        let total = entries.map { $0.offset + $0.count }.max()!
        let grads = try Arena(count: total)
        _ = try loss()
        m.trainBackward(b, acts, dLogp: weightsPerToken.map { -$0 }, grads: grads.pointer)
        var worst = 0.0
        for e in entries {
            // A unit direction half along the analytic gradient, half random: the directional
            // derivative is then large against float32 rounding in the loss, and an error in
            // any component still shows through the random half.
            let g = (0..<e.count).map { grads.pointer[e.offset + $0] }
            let gn = max(g.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
            var rnd = (0..<e.count).map { _ in rng.normal() }
            let rn = rnd.reduce(0) { $0 + $1 * $1 }.squareRoot()
            rnd = rnd.map { $0 / rn }
            var v = (0..<e.count).map { g[$0] / gn + rnd[$0] }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            v = v.map { $0 / norm }
            let p = params + e.offset
            var analytic = 0.0
            for i in 0..<e.count { analytic += Double(g[i] * v[i]) }
            let saved = Array(UnsafeBufferPointer(start: p, count: e.count))
            func central(_ eps: Float) throws -> Double {
                for i in 0..<e.count { p[i] = saved[i] + eps * v[i] }
                let lp = try loss()
                for i in 0..<e.count { p[i] = saved[i] - eps * v[i] }
                let lm = try loss()
                for i in 0..<e.count { p[i] = saved[i] }
                return (lp - lm) / (2 * Double(eps))
            }
            // Richardson extrapolation cancels the ε² term of the central difference.
            let numeric = (4 * (try central(0.025)) - (try central(0.05))) / 3
            let rel = abs(analytic - numeric) / max(abs(numeric), abs(analytic), 1e-3)
            worst = max(worst, rel)
            XCTAssertLessThan(rel, 1e-3, "\(e.name): analytic \(analytic) numeric \(numeric)", file: file, line: line)
        }
        print("gradient check over \(entries.count) tensors: worst relative error \(worst)")
    }

    func testFullModelGradients() throws {
        let m = try GradientTests.tinyModel(bias: false, tied: true)
        try check(m, params: m.weights.pointer, entries: m.layout.entries)
    }

    func testUntiedHeadAndQKVBias() throws {
        let m = try GradientTests.tinyModel(bias: true, tied: false)
        try check(m, params: m.weights.pointer, entries: m.layout.entries)
    }

    /// GRPO scores log p of softmax(logits / T): the backward divides by T as well.
    func testGradientsAtATemperature() throws {
        let m = try GradientTests.tinyModel(bias: false, tied: true)
        try check(m, params: m.weights.pointer, entries: m.layout.entries, temperature: 0.7)
        // And log p at T is the log-softmax of the logits / T.
        var b = GradientTests.batch(seqs: 1, len: 5, vocab: m.config.vocabSize, seed: 4)
        b.targets = b.targets.map { $0 < 0 ? 7 : $0 }
        let acts = try TrainActivations(model: m, sequences: 1, length: 5)
        b.temperature = 0.6
        var entropy = [Float](repeating: -1, count: 5)
        let lp = try entropy.withUnsafeMutableBufferPointer { try m.trainForward(b, acts, entropy: $0.baseAddress!) }
        let logits = try m.forwardLogits(b.tokens)
        let v = m.config.vocabSize
        for i in 0..<5 {
            let z = (0..<v).map { Double(logits[i * v + $0]) / 0.6 }
            let mx = z.max()!
            let lse = mx + log(z.reduce(0) { $0 + exp($1 - mx) })
            XCTAssertEqual(Double(lp[i]), z[Int(b.targets[i])] - lse, accuracy: 1e-4)
            let h = -z.reduce(0) { $0 + exp($1 - lse) * ($1 - lse) }
            XCTAssertEqual(Double(entropy[i]), h, accuracy: 1e-3)
        }
    }

    func testActivationCheckpointingGivesTheSameGradients() throws {
        let m = try GradientTests.tinyModel(bias: false, tied: true)
        try check(m, params: m.weights.pointer, entries: m.layout.entries, checkpointing: true)
    }

    /// Recomputing each layer during backward runs the same arithmetic on the same inputs as
    /// keeping its activations, so the gradients must be bit-identical, not merely close.
    func testActivationCheckpointingGradientsAreBitIdentical() throws {
        func grads(_ m: LlamaModel, count: Int, checkpointing: Bool) throws -> [Float] {
            let b = GradientTests.batch(seqs: 3, len: 7, vocab: m.config.vocabSize, seed: 11)
            let acts = try TrainActivations(model: m, sequences: 3, length: 7, checkpointing: checkpointing)
            let g = try Arena(count: count)
            _ = try m.trainForward(b, acts)
            m.trainBackward(b, acts, dLogp: b.targets.map { $0 >= 0 ? -0.1 : 0 }, grads: g.pointer)
            return Array(UnsafeBufferPointer(start: g.pointer, count: count))
        }
        for (bias, tied) in [(false, true), (true, false)] {
            let m = try GradientTests.tinyModel(bias: bias, tied: tied)
            let plain = try grads(m, count: m.weights.count, checkpointing: false)
            XCTAssertTrue(plain.contains { $0 != 0 } && plain.allSatisfy(\.isFinite))
            XCTAssertEqual(try grads(m, count: m.weights.count, checkpointing: true), plain, "bias \(bias), tied \(tied)")
        }
        let m = try GradientTests.tinyModel(bias: true, tied: true)
        var cfg = LoRAConfig()
        cfg.rank = 3
        let ad = try LoRAAdapters(config: cfg, model: m.config, seed: 2)
        var rng = RandomGenerator(seed: 3)
        for i in 0..<ad.arena.count { ad.arena.pointer[i] = 0.1 * rng.normal() }
        m.adapters = ad
        let plain = try grads(m, count: ad.arena.count, checkpointing: false)
        XCTAssertTrue(plain.contains { $0 != 0 })
        XCTAssertEqual(try grads(m, count: ad.arena.count, checkpointing: true), plain, "LoRA")
    }

    /// Sequences that continue a shared prefix (a GRPO group's prompt, stored once) get the
    /// log-probabilities, and the weights the gradients, of the same sequences laid out whole;
    /// with checkpointing, bit for bit the same as without.
    func testSharedPrefixBatchMatchesWholeSequences() throws {
        let m = try GradientTests.tinyModel(bias: true, tied: false)
        var rng = RandomGenerator(seed: 21)
        func toks(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % UInt64(m.config.vocabSize)) } }
        let prompts = [toks(6), toks(4)]
        let seqs: [(prompt: Int, completion: [Int32])] = [(0, toks(3)), (0, toks(5)), (0, toks(1)), (1, toks(4)), (1, toks(2))]
        let coef = seqs.indices.map { k in (0..<seqs[k].completion.count).map { j in Float(0.1 + 0.05 * Double(j * (k + 1) % 7)) } }

        let len = seqs.map { prompts[$0.prompt].count + $0.completion.count }.max()!
        var whole = TokenBatch(sequences: seqs.count, length: len, tokens: Array(repeating: 0, count: seqs.count * len),
                               targets: Array(repeating: -1, count: seqs.count * len))
        var wholeFirst: [Int] = []
        for (k, s) in seqs.enumerated() {
            let row = prompts[s.prompt] + s.completion
            for (i, t) in row.enumerated() { whole.tokens[k * len + i] = t }
            wholeFirst.append(k * len + prompts[s.prompt].count - 1)
            for (j, t) in s.completion.enumerated() { whole.targets[wholeFirst[k] + j] = t }
        }
        let own = seqs.map(\.completion.count).max()!
        let prefixTokens = prompts.flatMap { $0.dropLast() }
        var shared = TokenBatch(sequences: seqs.count, length: own,
                                tokens: prefixTokens + Array(repeating: 0, count: seqs.count * own),
                                targets: Array(repeating: -1, count: prefixTokens.count + seqs.count * own),
                                prefixLengths: prompts.map { $0.count - 1 }, prefixOf: seqs.map(\.prompt))
        var sharedFirst: [Int] = []
        for (k, s) in seqs.enumerated() {
            let start = prefixTokens.count + k * own
            for (i, t) in ([prompts[s.prompt].last!] + s.completion.dropLast()).enumerated() { shared.tokens[start + i] = t }
            for (j, t) in s.completion.enumerated() { shared.targets[start + j] = t }
            sharedFirst.append(start)
        }
        XCTAssertLessThan(shared.rows, whole.rows)

        func run(_ b: TokenBatch, first: [Int], checkpointing: Bool = false) throws -> (logp: [Float], grads: [Float]) {
            let acts = try TrainActivations(model: m, sequences: seqs.count, length: len, checkpointing: checkpointing)
            let lp = try m.trainForward(b, acts)
            var dLogp = [Float](repeating: 0, count: b.rows)
            for k in seqs.indices { for j in coef[k].indices { dLogp[first[k] + j] = coef[k][j] } }
            let g = try Arena(count: m.weights.count)
            m.trainBackward(b, acts, dLogp: dLogp, grads: g.pointer)
            return (seqs.indices.flatMap { k in coef[k].indices.map { lp[first[k] + $0] } },
                    Array(UnsafeBufferPointer(start: g.pointer, count: m.weights.count)))
        }
        let a = try run(whole, first: wholeFirst), b = try run(shared, first: sharedFirst)
        for i in a.logp.indices { XCTAssertEqual(b.logp[i], a.logp[i], accuracy: 1e-5, "log p \(i)") }
        let scale = a.grads.map { abs($0) }.max()!
        XCTAssertGreaterThan(scale, 0)
        var worst: Float = 0
        for i in a.grads.indices { worst = max(worst, abs(a.grads[i] - b.grads[i])) }
        XCTAssertLessThan(worst, 1e-5 * scale, "largest gradient difference \(worst) of \(scale)")
        XCTAssertEqual(try run(shared, first: sharedFirst, checkpointing: true).grads, b.grads)
    }

    func testLoRAGradients() throws {
        let m = try GradientTests.tinyModel(bias: false, tied: true)
        var cfg = LoRAConfig()
        cfg.rank = 3
        cfg.alpha = 6
        let ad = try LoRAAdapters(config: cfg, model: m.config, seed: 2)
        // B = 0 at init would make A's gradient vanish; start from a random point instead.
        var rng = RandomGenerator(seed: 3)
        for i in 0..<ad.arena.count { ad.arena.pointer[i] = 0.1 * rng.normal() }
        m.adapters = ad
        defer { m.adapters = nil }
        try check(m, params: ad.arena.pointer, entries: ad.entries)
    }
}
