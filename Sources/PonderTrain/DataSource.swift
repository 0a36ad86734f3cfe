import PonderBase
import PonderJSON
import PonderModel
import PonderRewards
import PonderText

// The data layer's types: where examples and prompts come from (DataSource), a prompt with its
// reference (GRPOPrompt), and the system prompts. Datasets.swift reads and generates the data.

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
        if let s = v.asString {
            if s.utf8.contains(0) { r.fail(key, "contains a NUL byte (U+0000): no file can be named so"); return nil }
            self = .jsonl(s)
            return
        }
        guard let g = r.object(key) else { return nil }
        if g.has("path") {
            let path = g.path("path")
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

/// A "system" option as given: "paper" names the paper's prompt, anything else is the text.
public func systemPrompt(_ option: String) -> String { option == "paper" ? paperSystemPrompt : option }

/// A system prompt as a config writes it back ("paper" for the paper's; null for none).
public func systemOption(_ prompt: String?) -> JSONValue { prompt.map { .string($0 == paperSystemPrompt ? "paper" : $0) } ?? .null }

/// The paper's system prompt: reason in <think>, answer in <answer>, and reflect by verifying,
/// backtracking, reasoning backward and setting subgoals.
public let paperSystemPrompt = """
    A conversation between User and Assistant. The user asks a math question, and the Assistant solves it. \
    The Assistant first thinks about the reasoning process in the mind and then provides the user with the answer. \
    While thinking, the Assistant reflects: it verifies intermediate results and checks for errors, backtracks when \
    a method fails and tries another, reasons backward from the desired outcome, and sets subgoals to break the \
    problem into steps. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> \
    tags, respectively, i.e., <think> reasoning process here </think><answer> answer here </answer>.
    """

/// A GRPO prompt: the conversation up to the answer, and the reference the accuracy reward
/// compares with (nil: no reference; accuracy then has no score).
public struct GRPOPrompt: Sendable {
    public var messages: [ChatTemplate.Message]
    public var reference: String?
    public init(messages: [ChatTemplate.Message], reference: String?) {
        self.messages = messages
        self.reference = reference
    }

    /// The user's question, as rewards and logs see the prompt.
    public var text: String { messages.last { $0.role == "user" }?.content ?? messages.last?.content ?? "" }

    /// What an environment's reset gets: {"prompt", "reference", "messages"}.
    public var task: JSONValue {
        .object([("prompt", .string(text)), ("reference", reference.map { .string($0) } ?? .null),
                 ("messages", .array(messages.map { .object([("role", .string($0.role)), ("content", .string($0.content))]) }))])
    }

    /// The prompt with its question replaced by `question` (an environment's first observation).
    public func asking(_ question: String) -> GRPOPrompt {
        var p = self
        if let last = p.messages.lastIndex(where: { $0.role == "user" }) {
            p.messages[last].content = question
        } else {
            p.messages.append(.init(role: "user", content: question))
        }
        return p
    }
}

extension DataSource {
    /// Prompts with references: every example's conversation before its last assistant turn,
    /// with that turn's final answer as the reference. JSONL lines may also be
    /// {"prompt", "reference"} (or "solution", or "answer"), {"messages", "reference"}, or a bare
    /// {"prompt"} / {"messages"} without an answer (no reference).
    public func prompts(system: String?) throws -> [GRPOPrompt] {
        if case let .jsonl(path, _) = self {
            let bytes = try readFile(path)
            var out: [GRPOPrompt] = []
            var lineNo = 0
            for line in bytes.split(separator: 0x0A, omittingEmptySubsequences: false) {
                lineNo += 1
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
                let w = "\(path):\(lineNo)"
                let v = try line.withUnsafeBytes { try JSONValue.parse($0, what: w) }
                let ref = v["reference"] ?? v["solution"] ?? (v["question"] == nil ? v["answer"] : nil)
                // A bare {"prompt"} (or {"messages"} without an assistant turn) has no reference:
                // accuracy then has no score, custom rewards get NULL.
                let bare = ref == nil && v["completion"] == nil && v["question"] == nil
                    && (v["prompt"] != nil || !(v["messages"]?.asArray ?? []).contains { $0["role"]?.asString == "assistant" })
                if ref != nil || bare {
                    let r = JSONReader(v, what: w)
                    var messages: [ChatTemplate.Message] = system.map { [.init(role: "system", content: $0)] } ?? []
                    if let p = r.string("prompt") {
                        messages.append(.init(role: "user", content: p))
                    } else if r.has("messages") {
                        messages += Datasets.readMessages(r)
                    } else {
                        r.failHere("needs \"prompt\" or \"messages\" with its \"reference\"")
                    }
                    for k in ["reference", "solution", "answer"] { _ = r.value(k) }
                    if let ref, ref.asString == nil { throw PonderError.invalid("\(w): the reference must be a string") }
                    try r.finish()
                    out.append(GRPOPrompt(messages: messages, reference: ref?.asString))
                } else {
                    out.append(GRPOPrompt(try Datasets.example(v, where: w, system: system)))
                }
                // A conversation that is empty, or only a system turn, gives the model nothing to answer.
                if out.last!.messages.allSatisfy({ $0.role == "system" }) {
                    throw PonderError.invalid("\(w): the prompt has no turn to answer (\"messages\" is empty or holds only a system message)")
                }
            }
            guard !out.isEmpty else { throw PonderError.invalid("\(path): no prompts") }
            return out
        }
        // Multi-turn traces are for SFT; as prompts, the generator gives the worked set's questions.
        if case let .arithmetic(n, seed, split, ops, traces, maxOperand, _) = self, traces != .worked {
            return try DataSource.arithmetic(count: n, seed: seed, split: split, ops: ops, maxOperand: maxOperand).prompts(system: system)
        }
        return try examples(system: system).map { GRPOPrompt($0) }
    }
}

extension GRPOPrompt {
    init(_ ex: ChatExample) {
        let last = ex.messages.lastIndex { $0.role == "assistant" } ?? ex.messages.endIndex
        messages = Array(ex.messages[..<last])
        // The reference is the example's final answer ("<answer>42</answer>" → "42").
        reference = last < ex.messages.endIndex
            ? (Answers.finalAnswerText(in: ex.messages[last].content) ?? ex.messages[last].content) : nil
    }
}
