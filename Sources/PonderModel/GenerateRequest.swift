import PonderBase
import PonderJSON
import PonderKernels
import PonderText

/// One generation request. Its JSON keys are the contract shared by the C ABI, the CLI flags
/// and the Python binding.
public struct GenerateRequest: Sendable {
    public var prompt: String?
    public var messages: [ChatTemplate.Message]?
    /// Wrap `prompt` as a user message in the model's chat template.
    public var chat = false
    public var maxTokens = GenerateRequest.defaultMaxTokens
    /// max_tokens was given: a budget that does not fit the context is then an error, while the
    /// default is cut to what the context leaves (`fitted`).
    public var maxTokensGiven = false
    public static let defaultMaxTokens = 256
    /// End-of-sequence tokens are not sampled before this many new tokens (vLLM's `min_tokens`,
    /// transformers' `min_new_tokens`); stop strings still end a sequence. Log-probabilities stay
    /// those of the unfiltered model, as with the other sampling filters.
    public var minTokens = 0
    public var sampling = SamplingParams()
    /// nil: a seed drawn from the clock. Sequence i of a request uses seed + i, so a group of n
    /// reproduces n single requests.
    public var seed: UInt64?
    public var stop: [String] = []
    public var n = 1
    /// Special-token text in the prompt ("<|im_end|>") becomes its token.
    public var parseSpecial = true

    public init(prompt: String? = nil) { self.prompt = prompt }

    /// The sampling keys present in `r` (the request itself or its "sampling" object).
    private mutating func readSampling(_ r: JSONReader) {
        sampling.read(r)
        if let s = SamplingParams.readSeed(r) { seed = s }
    }

    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        try self.init(reading: r)
        try r.finish()
    }

    /// Reads the generation keys of a larger object (an inference request adds its own); the
    /// caller reads its keys and calls finish().
    public init(reading r: JSONReader) throws {
        prompt = r.string("prompt")
        if let msgs = r.array("messages") {
            var out: [ChatTemplate.Message] = []
            for (i, m) in msgs.enumerated() {
                let mr = r.element("messages", i, m)
                let role = mr.string("role"), content = mr.string("content")
                if role == nil { mr.failHere(mr.has("role") ? "role: expected a string, got null" : "missing \"role\"") }
                if content == nil { mr.failHere(mr.has("content") ? "content: expected a string, got null" : "missing \"content\"") }
                // The role is written into the template's markup verbatim, so only the known
                // roles pass: "robot" or "user<|im_end|>..." would forge turns.
                if let role, !ChatTemplate.roles.contains(role) {
                    mr.fail("role", "expected one of \(ChatTemplate.roles.joined(separator: ", ")), got \"\(role)\"")
                }
                mr.rejectUnknownKeys()
                if let role, let content { out.append(.init(role: role, content: content)) }
            }
            messages = out
        }
        if !r.has("prompt") && !r.has("messages") { r.failHere("needs \"prompt\" (a string) or \"messages\" (an array)") }
        // Null counts as absent for optional keys; the prompt is what the request is about.
        if r.has("prompt") && r.value("prompt") == nil && messages == nil { r.fail("prompt", "expected a string, got null") }
        if r.has("messages") && r.value("messages") == nil && prompt == nil { r.fail("messages", "expected an array, got null") }
        if prompt != nil && messages != nil { r.fail("messages", "give either \"prompt\" or \"messages\", not both") }
        chat = r.bool("chat") ?? false
        SamplingParams.readLengths(r, max: "max_tokens", &maxTokens, min: "min_tokens", &minTokens, zeroAllowed: true)
        maxTokensGiven = r.has("max_tokens")
        readSampling(r)
        // The same keys may also come grouped, as {"sampling": {"top_p": 0.9, ...}}.
        if let nested = r.object("sampling") {
            for key in SamplingParams.keys + ["seed"] where nested.has(key) && r.has(key) {
                nested.fail(key, "also given at the top level")
            }
            readSampling(nested)
            nested.rejectUnknownKeys()
        }
        stop = r.strings("stop") ?? []
        for (i, s) in stop.enumerated() where s.isEmpty { r.fail("stop[\(i)]", "empty stop string") }
        n = r.int("n", in: 1...1024) ?? 1
        parseSpecial = r.bool("parse_special") ?? true
    }
}

extension GenerateRequest {
    /// The request with the default max_tokens cut to what a context of `context` tokens leaves
    /// after a prompt of `promptTokens`, and the note that says so (nil: nothing was cut). A
    /// given max_tokens is left as it is, to fail with its key if it does not fit.
    public func fitted(context: Int, promptTokens: Int) -> (request: GenerateRequest, note: String?) {
        guard !maxTokensGiven, let cut = defaultLengthCut("max_tokens", maxTokens, context: context, promptTokens: promptTokens) else {
            return (self, nil)
        }
        var r = self
        (r.maxTokens, r.maxTokensGiven) = (cut.length, true)
        return (r, cut.note)
    }
}

/// The one rule for a default token budget that does not fit: cut it to what a context of
/// `context` tokens leaves after a prompt of `promptTokens`, with the note that says so (nil: it
/// fits, or nothing is left to cut to). Generation's max_tokens and evaluation's max_new_tokens.
public func defaultLengthCut(_ key: String, _ length: Int, context: Int, promptTokens: Int) -> (length: Int, note: String)? {
    guard promptTokens + length > context, context > promptTokens else { return nil }
    let cut = context - promptTokens
    return (cut, "\(key): the default \(length) was cut to \(cut), what the context (\(context) tokens) leaves after the prompt (\(promptTokens))")
}

public enum FinishReason: String, Sendable {
    case stop, eos, length, cancelled
}

public struct Completion: Sendable {
    public var text: String
    /// Generated ids, including the EOS or stop-string token that ended the sequence.
    public var tokenIDs: [Int32]
    /// Log-probability of each generated id under the model (raw logits, temperature 1).
    public var logprobs: [Float]
    public var finishReason: FinishReason
}

public struct GenerateResult: Sendable {
    public var completions: [Completion]
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// What the request's defaults became (a max_tokens cut to the context), for the caller.
    public var notes: [String] = []
    /// Bytes of the prompt its vocabulary cannot spell (left out of its ids; 0: none).
    public var promptDroppedBytes = 0

    public var json: JSONValue {
        let generated = completions.reduce(0) { $0 + $1.tokenIDs.count }
        return .object([
            ("completions", .array(completions.map { c in
                .object([("text", .string(c.text)),
                         ("token_ids", .array(c.tokenIDs.map { .int(Int64($0)) })),
                         ("logprobs", .array(c.logprobs.map { .double(Double($0)) })),
                         ("finish_reason", .string(c.finishReason.rawValue))])
            })),
            ("prompt_tokens", .int(Int64(promptTokens))),
            ("timings", .object([
                ("prefill_seconds", .double(prefillSeconds)),
                ("decode_seconds", .double(decodeSeconds)),
                ("prefill_tokens_per_second", .double(prefillSeconds > 0 ? Double(promptTokens) / prefillSeconds : 0)),
                ("decode_tokens_per_second", .double(decodeSeconds > 0 ? Double(generated) / decodeSeconds : 0)),
            ])),
        ] + (promptDroppedBytes > 0 ? [("prompt_dropped_bytes", .int(Int64(promptDroppedBytes)))] : [])
          + (notes.isEmpty ? [] : [("notes", .array(notes.map { .string($0) }))]))
    }
}

/// Called after each generated token: (sequence index, token id, newly final text). Returning
/// false cancels the whole request.
public typealias TokenCallback = (Int, Int32, String) -> Bool
