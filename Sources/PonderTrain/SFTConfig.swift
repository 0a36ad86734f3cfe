import PonderBase
import PonderJSON
import PonderModel
import PonderText

public enum DataSource: Sendable, Equatable {
    /// `traces` "tool": GSM8K lines become calculator conversations (see `Datasets.gsm8kToolTrace`).
    case jsonl(String, traces: Datasets.ArithmeticTraces = .worked)
    case arithmetic(count: Int, seed: UInt64, split: Datasets.ArithmeticSplit, ops: String = "+-*",
                    traces: Datasets.ArithmeticTraces = .worked, maxOperand: Int = 50, direct: [Character: Double] = [:])

    /// As a config names it (every key of the generator written out).
    public var json: JSONValue {
        switch self {
        case let .jsonl(p, traces):
            return traces == .worked ? .string(p) : .object([("path", .string(p)), ("traces", .string(traces.rawValue))])
        case let .arithmetic(n, seed, split, ops, traces, maxOperand, direct):
            return .object([("generate", "arithmetic"), ("count", .int(Int64(n))), ("seed", .int(Int64(seed))),
                            ("split", .string(split.rawValue)), ("ops", .array(ops.map { .string(String($0)) })),
                            ("traces", .string(traces.rawValue)), ("max_operand", .int(Int64(maxOperand))),
                            ("direct", .object(direct.sorted { $0.key < $1.key }.map { (String($0.key), .double($0.value)) }))])
        }
    }

    /// A trainer's "data" object: "train" (required), "eval", and "system" ("paper": the paper's
    /// system prompt). The caller reads its own keys, then rejects the unknown ones.
    static func read(_ r: JSONReader) -> (train: DataSource, eval: DataSource?, system: String?, data: JSONReader?) {
        guard let d = r.object("data") else {
            r.failHere("missing \"data\"")
            return (.arithmetic(count: 1, seed: 0, split: .train), nil, nil, nil)
        }
        let train = DataSource(d, "train")
        if train == nil && !d.hasErrors { d.failHere("missing \"train\"") }
        let system = d.string("system").map(systemPrompt)
        return (train ?? .arithmetic(count: 1, seed: 0, split: .train), DataSource(d, "eval"), system, d)
    }

    public init?(_ r: JSONReader, _ key: String) {
        guard let v = r.value(key) else { return nil }
        if let s = v.asString { self = .jsonl(s); return }
        guard let g = r.object(key) else { return nil }
        if g.has("path") {
            let path = g.string("path")
            var traces = Datasets.ArithmeticTraces.worked
            if let t = g.string("traces") {
                if t == "worked" || t == "tool" { traces = Datasets.ArithmeticTraces(rawValue: t)! } else {
                    g.fail("traces", "expected \"worked\" or \"tool\" for a JSONL file, got \"\(t.prefix(40))\"")
                }
            }
            g.rejectUnknownKeys()
            guard let path else { return nil }
            self = .jsonl(path, traces: traces)
            return
        }
        let kind = g.string("generate")
        let count = g.int("count", in: 1...10_000_000) ?? 256
        let seed = UInt64(g.int("seed", in: 0...Int64(Int32.max)) ?? 0)
        var split = Datasets.ArithmeticSplit.train
        if let s = g.string("split") {
            if let v = Datasets.ArithmeticSplit(rawValue: s) { split = v } else { g.fail("split", "expected \"train\", \"test\" or \"all\", got \"\(s)\"") }
        }
        var ops = "+-*"
        if let o = g.strings("ops") {
            if o.isEmpty || !o.allSatisfy({ ["+", "-", "*"].contains($0) }) {
                g.fail("ops", "expected a list of \"+\", \"-\", \"*\"")
            } else {
                ops = o.joined()
            }
        }
        var traces = Datasets.ArithmeticTraces.worked
        if let t = g.string("traces") {
            if let v = Datasets.ArithmeticTraces(rawValue: t) { traces = v } else {
                g.fail("traces", "expected \"worked\", \"tool\" or \"retry\", got \"\(t.prefix(40))\"")
            }
        }
        let maxOperand = g.int("max_operand", in: 9...999) ?? 50
        var direct: [Character: Double] = [:]
        if let d = g.object("direct") {
            for k in ["+", "-", "*"] {
                if let f = d.double(k, "a fraction in [0, 1]", valid: { (0...1).contains($0) }), f > 0 { direct[Character(k)] = f }
            }
            d.rejectUnknownKeys()
        }
        g.rejectUnknownKeys()
        guard kind == "arithmetic" else {
            r.fail(key, "expected a JSONL path, {\"path\", \"traces\"} or {\"generate\": \"arithmetic\", \"count\", \"seed\", \"split\"}")
            return nil
        }
        self = .arithmetic(count: count, seed: seed, split: split, ops: ops, traces: traces, maxOperand: maxOperand, direct: direct)
    }

    public func examples(system: String?) throws -> [ChatExample] {
        switch self {
        case let .jsonl(p, traces): return try Datasets.loadJSONL(p, system: system, toolTraces: traces == .tool)
        case let .arithmetic(n, seed, split, ops, traces, maxOperand, direct):
            let ex = Datasets.arithmetic(count: n, seed: seed, maxOperand: maxOperand, split: split, ops: ops, traces: traces, direct: direct)
            guard let system else { return ex }
            return ex.map { ChatExample(messages: [.init(role: "system", content: system)] + $0.messages) }
        }
    }
}

/// The JSON a supervised fine-tuning run takes (C ABI, CLI and Python alike): the keys every
/// trainer shares (`run`) plus "data" and SFT's batch keys in "training". Option names follow
/// Hugging Face's TrainingArguments where the meaning is the same.
public struct SFTConfig: Sendable {
    public var run: TrainingRun.Config
    public var train: DataSource
    public var eval: DataSource?
    public var evalFraction = 0.0
    public var maxLength = 256
    public var packing = false
    public var system: String?
    public var batchSize = 4
    public var gradientAccumulationSteps = 1
    /// Train on the examples as plain text (Datasets.rawText), every token a target: a
    /// pipeline's pretrain stage. Not a JSON key: the stage type says it.
    public var rawText = false

    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        let t = r.object("training")
        run = TrainingRun.Config(root: r, training: t, kind: "sft")
        let data = DataSource.read(r)
        (train, eval, system) = (data.train, data.eval, data.system)
        if let d = data.data {
            read(data: d)
            d.rejectUnknownKeys()
        }
        if let t {
            read(training: t)
            t.rejectUnknownKeys()
        }
        try r.finish()
    }

    /// A config from parts read elsewhere (a pipeline stage); the `read` calls add SFT's keys.
    public init(run: TrainingRun.Config, train: DataSource, eval: DataSource?, system: String?) {
        (self.run, self.train, self.eval, self.system) = (run, train, eval, system)
    }

    /// SFT's keys of a "data" object (beside train, eval and system).
    public mutating func read(data d: JSONReader) {
        evalFraction = d.double("eval_fraction", "a number in [0, 0.9]") { $0 >= 0 && $0 <= 0.9 } ?? evalFraction
        maxLength = d.int("max_length", in: 2...1_048_576) ?? maxLength
        packing = d.bool("packing") ?? packing
    }

    /// SFT's keys of a "training" object (beside the shared ones).
    public mutating func read(training t: JSONReader) {
        batchSize = t.int("batch_size", in: 1...4096) ?? batchSize
        gradientAccumulationSteps = t.int("gradient_accumulation_steps", in: 1...4096) ?? gradientAccumulationSteps
    }

    public var dataJSON: [(String, JSONValue)] {
        [("eval_fraction", .double(evalFraction)), ("max_length", .int(Int64(maxLength))), ("packing", .bool(packing))]
    }

    public var trainingJSON: [(String, JSONValue)] {
        [("batch_size", .int(Int64(batchSize))), ("gradient_accumulation_steps", .int(Int64(gradientAccumulationSteps)))]
    }
}
