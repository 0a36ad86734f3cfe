import PonderBase
import PonderEnvironments
import PonderJSON
import PonderModel
import PonderText

/// One training example: tokens, and which of them are predicted (the completion).
public struct SFTExample: Sendable {
    public var tokens: [Int32]
    public var trained: [Bool]
}

/// A raw example before tokenization: a conversation whose assistant turns are the targets.
public struct ChatExample: Sendable {
    public var messages: [ChatTemplate.Message]
}

public enum Datasets {
    /// Reads a JSONL file of examples in any of the usual shapes:
    /// {"prompt", "completion"}, {"messages": [...]}, or GSM8K's {"question", "answer"}
    /// (mapped to <think>reasoning</think><answer>final</answer>). Errors name file:line.
    /// `toolTraces`: GSM8K lines become calculator conversations (`gsm8kToolTrace`); other
    /// shapes are read as they are.
    public static func loadJSONL(_ path: String, system: String? = nil, toolTraces: Bool = false) throws -> [ChatExample] {
        let bytes = try readFile(path)
        var out: [ChatExample] = []
        var lineNo = 0
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            lineNo += 1
            let line = bytes[start..<end]
            start = end + 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let v = try line.withUnsafeBytes { try JSONValue.parse($0, what: "\(path):\(lineNo)") }
            out.append(try example(v, where: "\(path):\(lineNo)", system: system, toolTraces: toolTraces))
        }
        guard !out.isEmpty else { throw PonderError.invalid("\(path): no examples") }
        return out
    }

    /// The "messages" array of a data line: every element a {"role", "content"} of strings.
    static func readMessages(_ r: JSONReader) -> [ChatTemplate.Message] {
        var out: [ChatTemplate.Message] = []
        for (i, m) in (r.array("messages") ?? []).enumerated() {
            let mr = r.element("messages", i, m)
            if let role = mr.string("role"), let content = mr.string("content") {
                out.append(.init(role: role, content: content))
            } else {
                mr.failHere("needs string \"role\" and \"content\"")
            }
            mr.rejectUnknownKeys()
        }
        return out
    }

    public static func example(_ v: JSONValue, where w: String, system: String?, toolTraces: Bool = false) throws -> ChatExample {
        let r = JSONReader(v, what: w)
        var messages: [ChatTemplate.Message] = []
        if let s = system { messages.append(.init(role: "system", content: s)) }
        if r.has("text") {
            // Raw text (pretraining): every token is a target, no chat template.
            guard let t = r.string("text") else { try r.finish(); throw PonderError.invalid("\(w): text must be a string") }
            try r.finish()
            return ChatExample(messages: [.init(role: textRole, content: t)])
        } else if r.has("messages") {
            messages += readMessages(r)
        } else if r.has("question") {
            let q = r.string("question"), a = r.string("answer")
            if let q, let a {
                messages.append(.init(role: "user", content: q))
                messages += toolTraces ? gsm8kToolTrace(a) : [.init(role: "assistant", content: gsm8kCompletion(a))]
            } else {
                r.failHere("GSM8K examples need string \"question\" and \"answer\"")
            }
        } else {
            let p = r.string("prompt"), c = r.string("completion")
            if let p, let c {
                messages.append(.init(role: "user", content: p))
                messages.append(.init(role: "assistant", content: c))
            } else {
                r.failHere("expected {\"prompt\", \"completion\"}, {\"messages\"} or {\"question\", \"answer\"}")
            }
        }
        try r.finish()
        guard messages.contains(where: { $0.role == "assistant" }) else {
            throw PonderError.invalid("\(w): no assistant message to train on")
        }
        return ChatExample(messages: messages)
    }

    /// The role of a raw-text example ({"text": ...} lines, pretraining): trained on every token.
    public static let textRole = "text"

    /// A conversation as plain text for pretraining: the user's question, then the assistant's
    /// reasoning and answer without the <think>/<answer> tags ("What is 23 + 19?\n3 + 9 = 12, carry
    /// 1. 2 + 1 + 1 = 4. So 23 + 19 = 42\n"), so a pretrained model knows the task's text but
    /// not the answer format SFT then teaches.
    public static func rawText(_ ex: ChatExample) -> ChatExample {
        if ex.messages.count == 1 && ex.messages[0].role == textRole { return ex }
        var text = ""
        for m in ex.messages where m.role != "system" {
            var c = m.content
            if m.role == "assistant" {
                if let a = c.firstRange(of: "</think>") { c = String(c[..<a.lowerBound]) }
                c = c.replacing("<think>", with: "")
            }
            text += trim(c) + "\n"
        }
        return ChatExample(messages: [.init(role: textRole, content: text)])
    }

    /// GSM8K's answer as the turns of an episode with the `calculator` environment: each
    /// "<<48/2=24>>" annotation becomes a tool call that ends the assistant's turn, and the
    /// calculator's own reply to it ("= 24") the next user turn, so SFT teaches exactly the turns
    /// the environment then produces. "Natalia sold 48/2 = <<48/2=24>>24 clips" →
    /// "<think>Natalia sold 48/2 = <tool>48/2</tool>" | "= 24" | "24 clips …</think><answer>72</answer>".
    /// An annotation the calculator cannot read (GSM8K has a few: "<<2*3%=6>>") is dropped as in
    /// `gsm8kCompletion`, and so is one whose value differs from the annotated result (the trace
    /// would contradict its own observation).
    public static func gsm8kToolTrace(_ answer: String) -> [ChatTemplate.Message] {
        let parts = answer.split(separator: "####", maxSplits: 1, omittingEmptySubsequences: false)
        var rest = Substring(parts[0])
        var turns: [ChatTemplate.Message] = []
        var text = ""
        func open() -> String { turns.isEmpty ? "<think>" : "" }
        while let start = rest.firstRange(of: "<<"), let close = rest[start.upperBound...].firstRange(of: ">>") {
            text += rest[..<start.lowerBound]
            let body = rest[start.upperBound..<close.lowerBound]
            rest = rest[close.upperBound...]
            guard let eq = body.lastIndex(of: "="), let value = try? Calculator.evaluate(String(body[..<eq])),
                  let stated = try? Calculator.evaluate(String(body[body.index(after: eq)...])), value == stated else { continue }
            let expression = String(body[..<eq])
            turns.append(.init(role: "assistant", content: open() + (turns.isEmpty ? String(text.drop(while: \.isWhitespace)) : text) + "<tool>\(expression)</tool>"))
            turns.append(.init(role: "user", content: CalculatorEnvironment.reply(expression)))
            text = ""
        }
        let final = parts.count > 1 ? trim(String(parts[1])) : ""
        turns.append(.init(role: "assistant", content: open() + trim(text + rest) + "</think><answer>\(final)</answer>"))
        return turns
    }

    /// GSM8K's "reasoning <<calc>> … #### 42" as the paper's format.
    public static func gsm8kCompletion(_ answer: String) -> String {
        let parts = answer.split(separator: "####", maxSplits: 1, omittingEmptySubsequences: false)
        var reasoning = String(parts[0])
        // Calculator annotations "<<48/2=24>>" are GSM8K tooling, not reasoning text.
        while let open = reasoning.firstRange(of: "<<"), let close = reasoning[open.upperBound...].firstRange(of: ">>") {
            reasoning.removeSubrange(open.lowerBound..<close.upperBound)
        }
        let final = parts.count > 1 ? String(parts[1]) : ""
        return "<think>\(trim(reasoning))</think><answer>\(trim(final))</answer>"
    }

    static func trim(_ s: String) -> String {
        var t = Substring(s)
        while let f = t.first, f.isWhitespace { t.removeFirst() }
        while let l = t.last, l.isWhitespace { t.removeLast() }
        return String(t)
    }

    /// Seeded arithmetic problems in GSM8K's shape (question, worked answer, "#### n"): the
    /// from-scratch task, which needs no download. The worked answer goes column by column,
    /// ones first ("3 + 9 = 12, carry 1. 2 + 1 + 1 = 4. So 23 + 19 = 42"): every step is a
    /// one-digit fact a tiny model learns in minutes. With the same training, the example config's
    /// 4-layer model answers 91% of held-out problems this way and 22% when the worked answer
    /// states the result at once (most significant digit first).
    ///
    /// `split`: about a fifth of all problems (chosen by a hash of the question, the same on
    /// every machine) are held out. "train" draws only the others (with repetition), "test"
    /// gives distinct held-out problems in a seeded order (at most as many as there are), "all"
    /// draws from every problem.
    /// `ops`: the operations drawn ("+", "-", "*"; all three by default).
    /// `traces`: besides worked answers, multi-turn traces for the built-in environments.
    /// `direct`: per operation, the fraction of its answers that state the result without working
    /// ("<think>So 43 * 7 = 301</think>"), as a teacher that knows its tables would write them. A
    /// model trained from scratch cannot do that step reliably; when the fraction is above one half
    /// its greedy answer is the shortcut, while its samples still work some problems out: a choice of
    /// procedure that only a reward, not imitation, can correct (GRPOLearningTests).
    public static func arithmetic(count: Int, seed: UInt64, maxOperand: Int = 50, split: ArithmeticSplit = .train,
                                  ops: String = "+-*", traces: ArithmeticTraces = .worked,
                                  direct: [Character: Double] = [:]) -> [ChatExample] {
        if split == .test {
            var all: [(Character, Int, Int)] = []
            for a in 1...maxOperand {
                for b in 1...maxOperand { all.append(("+", a, b)) }
                for b in 1...a { all.append(("-", a, b)) }
                for c in 2...9 { all.append(("*", a, c)) }
            }
            var held = all.filter { ops.contains($0.0) && isHeldOut($0.0, $0.1, $0.2) }.map { arithmeticExample($0.0, $0.1, $0.2) }
            var rng = RandomGenerator(seed: seed)
            for i in stride(from: held.count - 1, to: 0, by: -1) { held.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            return Array(held.prefix(count))
        }
        var rng = RandomGenerator(seed: seed)
        func n() -> Int { Int(rng.next() % UInt64(maxOperand)) + 1 }
        var out: [ChatExample] = []
        while out.count < count {
            let a = n(), b = n()
            let problem: (Character, Int, Int)
            switch rng.next() % 3 {
            case 0: problem = ("+", a, b)
            case 1: problem = ("-", max(a, b), min(a, b))
            default: problem = ("*", a, Int(rng.next() % 8) + 2)
            }
            if split == .train && isHeldOut(problem.0, problem.1, problem.2) { continue }
            if !ops.contains(problem.0) { continue }
            let check = rng.next() % 4 == 0
            // Drawn only for operations with a fraction, so the default data stay what they were.
            let shortcut = direct[problem.0].map { Double(rng.next() % 1_000_000) < $0 * 1_000_000 } ?? false
            var ex = arithmeticExample(problem.0, problem.1, problem.2, check: check, direct: shortcut)
            switch traces {
            case .worked: break
            case .tool: if rng.next() % 2 == 0 { ex = toolTrace(problem.0, problem.1, problem.2) }
            case .retry: if rng.next() % 5 == 0 { ex = retryTrace(problem.0, problem.1, problem.2, slip: Int(rng.next() % 3) + 1) }
            }
            out.append(ex)
        }
        return out
    }

    public enum ArithmeticSplit: String, Sendable { case train, test, all }

    /// Multi-turn traces the arithmetic generator mixes into its training examples, so that a
    /// model trained from scratch has seen the turns of the built-in environments before GRPO
    /// with them (without any, the comparison with single-turn GRPO is empty).
    /// - worked: only worked answers (the default).
    /// - tool: half the examples ask the calculator: "<think>I use the calculator:
    ///   <tool>a op b</tool>", its answer "= r" as the next user turn (the calculator's
    ///   environment turn), then "So a op b = r.</think><answer>r</answer>".
    /// - retry: a fifth of the examples answer at once and wrongly, get the checker's cue, and
    ///   then work the problem out: reflection on the environment's word.
    public enum ArithmeticTraces: String, Sendable, CaseIterable { case worked, tool, retry }

    static func result(_ op: Character, _ a: Int, _ b: Int) -> Int { op == "+" ? a + b : op == "-" ? a - b : a * b }

    static func toolTrace(_ op: Character, _ a: Int, _ b: Int) -> ChatExample {
        let r = result(op, a, b)
        return ChatExample(messages: [.init(role: "user", content: "What is \(a) \(op) \(b)?"),
                                      .init(role: "assistant", content: "<think>I use the calculator: <tool>\(a) \(op) \(b)</tool>"),
                                      .init(role: "user", content: "= \(r)"),
                                      .init(role: "assistant", content: "So \(a) \(op) \(b) = \(r).</think><answer>\(r)</answer>")])
    }

    static func retryTrace(_ op: Character, _ a: Int, _ b: Int, slip: Int) -> ChatExample {
        let r = result(op, a, b)
        let worked = arithmeticExample(op, a, b).messages[1].content
        return ChatExample(messages: [.init(role: "user", content: "What is \(a) \(op) \(b)?"),
                                      .init(role: "assistant", content: "<think>About \(r + slip).</think><answer>\(r + slip)</answer>"),
                                      .init(role: "user", content: CheckerEnvironment.Options().retryCue),
                                      .init(role: "assistant", content: worked)])
    }

    /// FNV-1a of "a op b": a fixed fifth of the problems, whatever the seed or machine.
    static func isHeldOut(_ op: Character, _ a: Int, _ b: Int) -> Bool {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in "\(a) \(op) \(b)".utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        return h % 5 == 0
    }

    /// `check`: end the worked answer by verifying the result with the inverse operation
    /// ("Check: 53 - 17 = 36."), a reflection behaviour the base model then has at some rate
    /// for GRPO's reflection reward to reinforce (or not).
    static func arithmeticExample(_ op: Character, _ a: Int, _ b: Int, check: Bool = false, direct: Bool = false) -> ChatExample {
        let result = Self.result(op, a, b)
        var work = direct ? "So \(a) \(op) \(b) = \(result)"
            : op == "+" ? columnSum(a, b) : op == "-" ? columnDifference(a, b) : columnProduct(a, b)
        if check {
            switch op {
            case "+": work += ". Check: \(result) - \(b) = \(a)"
            case "-": work += ". Check: \(result) + \(b) = \(a)"
            default: work += ". Check: \(result) / \(b) = \(a)"
            }
        }
        return ChatExample(messages: [.init(role: "user", content: "What is \(a) \(op) \(b)?"),
                                      .init(role: "assistant", content: gsm8kCompletion("\(work)\n#### \(result)"))])
    }

    /// Decimal digits, ones first.
    static func digits(_ x: Int) -> [Int] {
        var out: [Int] = [], v = x
        repeat { out.append(v % 10); v /= 10 } while v > 0
        return out
    }

    static func columnSum(_ a: Int, _ b: Int) -> String {
        let da = digits(a), db = digits(b)
        var steps: [String] = [], carry = 0
        for i in 0..<max(da.count, db.count) {
            var terms = [da, db].compactMap { i < $0.count ? $0[i] : nil }
            if carry > 0 { terms.append(carry) }
            let s = terms.reduce(0, +)
            let last = i == max(da.count, db.count) - 1
            carry = last ? 0 : s / 10
            steps.append(terms.count == 1 ? "\(s)" : terms.map(String.init).joined(separator: " + ") + " = \(s)" + (carry > 0 ? ", carry \(carry)" : ""))
        }
        return steps.joined(separator: ". ") + ". So \(a) + \(b) = \(a + b)"
    }

    static func columnDifference(_ x: Int, _ y: Int) -> String {
        let dx = digits(x), dy = digits(y)
        var steps: [String] = [], borrow = 0
        for i in 0..<dx.count {
            var terms = [dx[i]]
            if borrow > 0 { terms.append(borrow) }
            if i < dy.count { terms.append(dy[i]) }
            let value = terms[0] - terms.dropFirst().reduce(0, +)
            let text = terms.map(String.init).joined(separator: " - ")
            if value < 0 {
                steps.append("1\(text) = \(value + 10), borrow 1")
            } else {
                steps.append(terms.count == 1 ? text : "\(text) = \(value)")
            }
            borrow = value < 0 ? 1 : 0
        }
        return steps.joined(separator: ". ") + ". So \(x) - \(y) = \(x - y)"
    }

    static func columnProduct(_ a: Int, _ c: Int) -> String {
        let da = digits(a)
        var steps: [String] = [], carry = 0
        for (i, d) in da.enumerated() {
            let s = d * c + carry
            let last = i == da.count - 1
            steps.append("\(d) * \(c)" + (carry > 0 ? " + \(carry)" : "") + " = \(s)" + (!last && s >= 10 ? ", carry \(s / 10)" : ""))
            carry = last ? 0 : s / 10
        }
        return steps.joined(separator: ". ") + ". So \(a) * \(c) = \(a * c)"
    }

    /// Tokens with the loss mask from the model's chat template (or plain concatenation for a
    /// model without one), truncated to `maxLength`. nil when nothing trainable is left.
    public static func tokenize(_ ex: ChatExample, tokenizer t: Tokenizer, maxLength: Int) -> SFTExample? {
        var tokens: [Int32] = [], trained: [Bool] = []
        if ex.messages.count == 1 && ex.messages[0].role == textRole {
            tokens = t.encode(ex.messages[0].content, parseSpecial: false)
            if let eos = t.eos { tokens.append(eos) }
            if tokens.count > maxLength { tokens.removeLast(tokens.count - maxLength) }
            return tokens.count > 1 ? SFTExample(tokens: tokens, trained: Array(repeating: true, count: tokens.count)) : nil
        }
        let segments = t.chatTemplate.segments(ex.messages) ?? ex.messages.map { m in
            (text: m.role == "assistant" ? m.content : m.content + "\n", trained: m.role == "assistant")
        }
        for (text, isTrained) in segments {
            let ids = t.encode(text, parseSpecial: true)
            tokens += ids
            trained += Array(repeating: isTrained, count: ids.count)
        }
        if case .none = t.chatTemplate, let eos = t.eos {
            tokens.append(eos)
            trained.append(true)
        }
        if tokens.count > maxLength {
            tokens.removeLast(tokens.count - maxLength)
            trained.removeLast(trained.count - maxLength)
        }
        // Position 0 is never a target (nothing precedes it).
        guard trained.dropFirst().contains(true) else { return nil }
        return SFTExample(tokens: tokens, trained: trained)
    }
}
