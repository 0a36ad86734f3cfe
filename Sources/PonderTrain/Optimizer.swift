import PonderBase
import PonderJSON
import PonderKernels
import PonderModel

/// The trainable parameters of a run: the model's arena (full fine-tuning) or the LoRA
/// adapters' arena, with gradients and Adam moments of the same layout (llm.c style), so
/// zeroing, clipping, updating and saving are loops over one buffer.
public final class TrainableParameters {
    public let entries: [ParameterLayout.Entry]
    public let params: UnsafeMutablePointer<Float>
    public let count: Int
    public let grads: Arena
    public let m: Arena
    public let v: Arena

    public init(entries: [ParameterLayout.Entry], params: UnsafeMutablePointer<Float>, count: Int) throws {
        self.entries = entries
        self.params = params
        self.count = count
        grads = try Arena(count: count)
        m = try Arena(count: count)
        v = try Arena(count: count)
    }

    public func zeroGrad() { grads.pointer.update(repeating: 0, count: count) }

    /// ‖∇‖₂ over all trainable parameters (NaN if any gradient is NaN).
    public func gradNorm() -> Double {
        var s = 0.0
        let g = grads.pointer
        var i = 0
        while i < count {
            let n = min(4096, count - i)
            s += Double(dot(g + i, g + i, n))
            i += n
        }
        return s.squareRoot()
    }

    public func scaleGrad(_ f: Float) {
        let g = grads.pointer
        for i in 0..<count { g[i] *= f }
    }
}

public enum LRSchedule: String, Sendable { case constant, linear, cosine }

/// AdamW (decoupled weight decay, bias correction), as torch.optim.AdamW. Weight decay applies
/// to matrices only: norms and biases are exempt, the usual default for transformers.
public struct AdamWConfig: Equatable, Sendable {
    public var lr: Double = 1e-4
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0
    public var schedule: LRSchedule = .linear
    public var warmupSteps: Int = 0
    public var maxGradNorm: Double = 1.0   // 0: no clipping
    public init() {}

    /// The optimizer's keys of a "training" object, as transformers' TrainingArguments names
    /// them; an absent key keeps the default above.
    init(reader t: JSONReader) {
        lr = t.double("learning_rate", "a number in (0, 1]") { $0 > 0 && $0 <= 1 } ?? lr
        if let s = t.string("lr_scheduler_type") {
            if let x = LRSchedule(rawValue: s) { schedule = x } else {
                t.fail("lr_scheduler_type", "expected constant, linear or cosine, got \"\(s)\"")
            }
        }
        warmupSteps = t.int("warmup_steps", in: 0...100_000_000) ?? warmupSteps
        weightDecay = t.double("weight_decay", "a number in [0, 10]") { $0 >= 0 && $0 <= 10 } ?? weightDecay
        maxGradNorm = t.double("max_grad_norm", "a number ≥ 0 (0: no clipping)") { $0 >= 0 } ?? maxGradNorm
        beta1 = t.double("adam_beta1", "a number in [0, 1)") { $0 >= 0 && $0 < 1 } ?? beta1
        beta2 = t.double("adam_beta2", "a number in [0, 1)") { $0 >= 0 && $0 < 1 } ?? beta2
        eps = t.double("adam_epsilon", "a positive number") { $0 > 0 } ?? eps
    }

    /// The keys `init(reader:)` reads, with their values.
    public var json: [(String, JSONValue)] {
        [("learning_rate", .double(lr)), ("lr_scheduler_type", .string(schedule.rawValue)), ("warmup_steps", .int(Int64(warmupSteps))),
         ("weight_decay", .double(weightDecay)), ("max_grad_norm", .double(maxGradNorm)), ("adam_beta1", .double(beta1)),
         ("adam_beta2", .double(beta2)), ("adam_epsilon", .double(eps))]
    }

    /// Learning rate at optimizer step `step` (0-based) of `total`: linear warmup, then the schedule.
    public func lr(step: Int, total: Int) -> Double {
        if step < warmupSteps { return lr * Double(step + 1) / Double(warmupSteps) }
        let span = max(1, total - warmupSteps)
        let progress = min(1, Double(step - warmupSteps) / Double(span))
        switch schedule {
        case .constant: return lr
        case .linear: return lr * (1 - progress)
        case .cosine: return lr * 0.5 * (1 + cos(Double.pi * progress))
        }
    }
}

public func adamWStep(_ p: TrainableParameters, config c: AdamWConfig, lr: Double, step t: Int) {
    let b1 = Float(c.beta1), b2 = Float(c.beta2)
    let bc1 = Float(1 - pow(c.beta1, Double(t))), bc2 = Float(1 - pow(c.beta2, Double(t)))
    let eps = Float(c.eps), lrf = Float(lr)
    let g = p.grads.pointer, m = p.m.pointer, v = p.v.pointer
    // Each element on its own, so blocks of 64k run on both cores with the same result; the
    // update streams seven floats per parameter (a few hundred ms a step for 135 M on one core).
    for e in p.entries {
        let decay = e.shape.count == 2 ? Float(lr * c.weightDecay) : 0
        let w = p.params + e.offset
        parallelFor((e.count + 0xFFFF) >> 16) { b in
            for i in (e.offset + b << 16)..<min(e.offset + e.count, e.offset + (b + 1) << 16) {
                let gi = g[i]
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                let mh = m[i] / bc1, vh = v[i] / bc2
                let j = i - e.offset
                w[j] -= decay * w[j] + lrf * mh / (vh.squareRoot() + eps)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
