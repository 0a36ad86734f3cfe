/// Chat formats Ponder renders natively; which one a model uses is read from its metadata
/// (`tokenizer.chat_template`), not guessed from its name.
public enum ChatTemplate: Equatable, Sendable {
    /// ChatML (SmolLM2, Qwen2): <|im_start|>role\ncontent<|im_end|>\n. `defaultSystem` is the
    /// system message the template inserts when the conversation has none.
    case chatml(defaultSystem: String?)
    /// Llama-3: <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
    case llama3
    case none

    /// The roles a message may have.
    public static let roles = ["system", "user", "assistant", "tool"]

    public struct Message: Equatable, Sendable {
        public var role: String
        public var content: String
        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }

    /// Recognises the Jinja template text shipped with a model.
    public init(jinja: String?) {
        guard let t = jinja else { self = .none; return }
        if t.contains("<|im_start|>") {
            self = .chatml(defaultSystem: ChatTemplate.literalDefaultSystem(in: t))
        } else if t.contains("<|start_header_id|>") {
            self = .llama3
        } else {
            self = .none
        }
    }

    /// ChatML templates that add a system turn when none is given write it as a string literal
    /// '<|im_start|>system\n…<|im_end|>' guarded by `messages[0]['role'] != 'system'`.
    static func literalDefaultSystem(in t: String) -> String? {
        guard t.contains("!= 'system'") || t.contains("!= \"system\"") else { return nil }
        for opener in ["'<|im_start|>system\n", "'<|im_start|>system\\n"] {
            guard let r = t.firstRange(of: opener) else { continue }
            let rest = t[r.upperBound...]
            guard let e = rest.firstRange(of: "<|im_end|>") else { continue }
            return String(rest[..<e.lowerBound])
        }
        return nil
    }

    /// The rendering of `messages` as text segments; `trained` marks an assistant turn's content
    /// with its end-of-turn marker — what supervised fine-tuning computes the loss on.
    public func segments(_ messages: [Message]) -> [(text: String, trained: Bool)]? {
        var out: [(String, Bool)] = []
        switch self {
        case .none:
            return nil
        case let .chatml(defaultSystem):
            if let sys = defaultSystem, messages.first?.role != "system" {
                out.append(("<|im_start|>system\n\(sys)<|im_end|>\n", false))
            }
            for m in messages {
                out.append(("<|im_start|>\(m.role)\n", false))
                if m.role == "assistant" {
                    out.append((m.content + "<|im_end|>", true))
                    out.append(("\n", false))
                } else {
                    out.append((m.content + "<|im_end|>\n", false))
                }
            }
        case .llama3:
            out.append(("<|begin_of_text|>", false))
            for m in messages {
                out.append(("<|start_header_id|>\(m.role)<|end_header_id|>\n\n", false))
                out.append((m.content + "<|eot_id|>", m.role == "assistant"))
            }
        }
        return out
    }

    /// The prompt text for `messages`, ending with the assistant header when
    /// `addGenerationPrompt`. Returns nil for `.none` (the model has no chat format).
    public func render(_ messages: [Message], addGenerationPrompt: Bool = true) -> String? {
        parts(messages, addGenerationPrompt: addGenerationPrompt).map { $0.map(\.text).joined() }
    }

    /// The rendering as pieces, each marked as the template's own markup or a message's
    /// content, so a caller can tokenize content without turning special-token text in it
    /// into control tokens.
    public func parts(_ messages: [Message], addGenerationPrompt: Bool = true) -> [(text: String, isContent: Bool)]? {
        var out: [(String, Bool)] = []
        switch self {
        case .none:
            return nil
        case let .chatml(defaultSystem):
            if let sys = defaultSystem, messages.first?.role != "system" {
                out.append(("<|im_start|>system\n\(sys)<|im_end|>\n", false))
            }
            for m in messages {
                out.append(("<|im_start|>\(m.role)\n", false))
                out.append((m.content, true))
                out.append(("<|im_end|>\n", false))
            }
            if addGenerationPrompt { out.append(("<|im_start|>assistant\n", false)) }
        case .llama3:
            out.append(("<|begin_of_text|>", false))
            for m in messages {
                out.append(("<|start_header_id|>\(m.role)<|end_header_id|>\n\n", false))
                out.append((m.content, true))
                out.append(("<|eot_id|>", false))
            }
            if addGenerationPrompt { out.append(("<|start_header_id|>assistant<|end_header_id|>\n\n", false)) }
        }
        return out
    }

    /// What follows a model's turn in a running conversation when the world answers it: the
    /// markup that closes the assistant's turn (when `closeTurn`: the model's action stopped
    /// inside it, at a tool call, rather than with its own end-of-turn token), a `role` turn
    /// holding `content`, and the next assistant turn opened. Pieces as `parts` gives them. For a
    /// model without a chat format, the content on a line of its own.
    public func continuation(role: String, content: String, closeTurn: Bool) -> [(text: String, isContent: Bool)] {
        switch self {
        case .none:
            return [("\n", false), (content, true), ("\n", false)]
        case .chatml:
            return [((closeTurn ? "<|im_end|>" : "") + "\n<|im_start|>\(role)\n", false), (content, true),
                    ("<|im_end|>\n<|im_start|>assistant\n", false)]
        case .llama3:
            return [((closeTurn ? "<|eot_id|>" : "") + "<|start_header_id|>\(role)<|end_header_id|>\n\n", false), (content, true),
                    ("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", false)]
        }
    }
}
