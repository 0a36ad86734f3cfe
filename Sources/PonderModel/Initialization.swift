import PonderBase
import PonderText

extension LlamaModel {
    /// A randomly initialised model (seeded): matrices ~ N(0, std²) as transformers'
    /// `initializer_range`, RMSNorm weights 1, biases 0. The from-scratch path for tests and the
    /// arithmetic quickstart, which train without downloading anything.
    public static func random(config: LlamaConfig, tokenizer: Tokenizer, seed: UInt64, std: Float = 0.02) throws -> LlamaModel {
        try config.validate("model")
        guard tokenizer.vocabSize <= config.vocabSize else {
            throw PonderError.invalid("vocab_size \(config.vocabSize) is smaller than the tokenizer's \(tokenizer.vocabSize) tokens")
        }
        let layout = ParameterLayout(config)
        let arena = try Arena(count: layout.count)
        var rng = RandomGenerator(seed: seed)
        for e in layout.entries {
            let p = arena.pointer + e.offset
            if e.shape.count == 2 {
                for i in 0..<e.count { p[i] = rng.normal() * std }
            } else if e.name.hasSuffix("norm.weight") {
                p.update(repeating: 1, count: e.count)
            }
        }
        return try LlamaModel(config: config, layout: layout, weights: arena, tokenizer: tokenizer)
    }
}

extension RandomGenerator {
    /// Standard normal (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
    }
}

#if canImport(Glibc)
import Glibc
#endif
