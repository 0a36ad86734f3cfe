import PonderBase
import PonderText

/// What a prompt is before it is tokenized: text as it is, or a conversation for the model's
/// chat template (with the assistant's turn opened).
public enum PromptInput: Sendable {
    case text(String)
    case chat([ChatTemplate.Message])
}

extension LlamaModel {
    /// The one prompt renderer: generation, inference, GRPO, evaluation and rejection sampling
    /// all turn their prompts into token ids here.
    ///
    /// A conversation goes through the model's chat template. A model without one (Ponder's
    /// from-scratch models) reads the messages' contents joined by newlines, the same text its
    /// SFT data and environment turns use (ChatTemplate.none), rather than failing.
    /// `parseSpecial` false keeps special-token text in the content as characters (the
    /// template's own markup is still parsed); `keepLast` keeps the last that many tokens (the
    /// question and the opened turn are at the end, as TRL keeps them).
    public func promptTokens(_ input: PromptInput, parseSpecial: Bool = true, keepLast: Int? = nil) throws -> [Int32] {
        var ids: [Int32]
        switch input {
        case let .text(text):
            ids = tokenizer.encode(text, parseSpecial: parseSpecial)
        case let .chat(messages):
            let parts = promptParts(messages)
            ids = parseSpecial ? tokenizer.encode(parts.map(\.text).joined(), parseSpecial: true)
                : parts.flatMap { tokenizer.encode($0.text, parseSpecial: !$0.isContent) }
        }
        guard !ids.isEmpty else { throw PonderError.invalid("prompt: empty (it must encode to at least one token)") }
        if let keepLast, ids.count > keepLast { ids.removeFirst(ids.count - keepLast) }
        return ids
    }

    /// The exact text a conversation is decoded from, for the record.
    public func promptText(_ messages: [ChatTemplate.Message]) -> String { promptParts(messages).map(\.text).joined() }

    func promptParts(_ messages: [ChatTemplate.Message]) -> [(text: String, isContent: Bool)] {
        if let parts = tokenizer.chatTemplate.parts(messages) { return parts }
        var out: [(text: String, isContent: Bool)] = []
        for (i, m) in messages.enumerated() {
            if i > 0 { out.append(("\n", false)) }
            out.append((m.content, true))
        }
        return out
    }

    /// The note a result carries when the prompt has bytes this vocabulary cannot spell (they
    /// are left out of its ids, as the reference tokenizer leaves them out); nil when none.
    public func droppedBytesNote(_ request: GenerateRequest) -> (count: Int, note: String)? {
        let text: String
        if let messages = request.messages ?? (request.chat ? [.init(role: "user", content: request.prompt ?? "")] : nil) {
            text = promptText(messages)
        } else {
            text = request.prompt ?? ""
        }
        let n = tokenizer.droppedBytes(text, parseSpecial: request.parseSpecial)
        guard n > 0 else { return nil }
        return (n, "prompt: \(n) byte\(n == 1 ? "" : "s") (e.g. control characters) ha\(n == 1 ? "s" : "ve") no token in this vocabulary and \(n == 1 ? "was" : "were") left out, as Hugging Face tokenizers leaves them out: the ids stand for a slightly different text")
    }

    /// The prompt's token ids as `request` describes them (chat template applied if asked).
    public func promptTokens(_ request: GenerateRequest) throws -> [Int32] {
        if let messages = request.messages ?? (request.chat ? [.init(role: "user", content: request.prompt ?? "")] : nil) {
            return try promptTokens(.chat(messages), parseSpecial: request.parseSpecial)
        }
        return try promptTokens(.text(request.prompt ?? ""), parseSpecial: request.parseSpecial)
    }
}
