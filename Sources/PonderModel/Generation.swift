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
    public var maxTokens = 256
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

    public static let samplingKeys = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed"]

    /// The sampling keys present in `r` (the request itself or its "sampling" object).
    private mutating func readSampling(_ r: JSONReader) {
        if let t = r.double("temperature", "a number in [0, 100]", valid: { $0 >= 0 && $0 <= 100 }) { sampling.temperature = Float(t) }
        if let p = r.double("top_p", "a number in (0, 1]", valid: { $0 > 0 && $0 <= 1 }) { sampling.topP = Float(p) }
        if let k = r.int("top_k", in: 0...10_000_000) { sampling.topK = k }
        if let p = r.double("min_p", "a number in [0, 1]", valid: { $0 >= 0 && $0 <= 1 }) { sampling.minP = Float(p) }
        if let p = r.double("repetition_penalty", "a number in (0, 100]", valid: { $0 > 0 && $0 <= 100 }) {
            sampling.repetitionPenalty = Float(p)
        }
        if let s = r.value("seed") {
            if let i = s.asInt, i >= 0 { seed = UInt64(i) } else { r.fail("seed", "expected a non-negative integer, got \(s.serialized())") }
        }
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
        if prompt != nil && messages != nil { r.fail("messages", "give either \"prompt\" or \"messages\", not both") }
        chat = r.bool("chat") ?? false
        maxTokens = r.int("max_tokens", in: 0...1_048_576) ?? maxTokens
        minTokens = r.int("min_tokens", in: 0...1_048_576) ?? minTokens
        if minTokens > maxTokens { r.fail("min_tokens", "\(minTokens) is more than max_tokens (\(maxTokens))") }
        readSampling(r)
        // The same keys may also come grouped, as {"sampling": {"top_p": 0.9, ...}}.
        if let nested = r.object("sampling") {
            for key in Self.samplingKeys where nested.has(key) && r.has(key) {
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
        ])
    }
}

/// Called after each generated token: (sequence index, token id, newly final text). Returning
/// false cancels the whole request.
public typealias TokenCallback = (Int, Int32, String) -> Bool

/// A sequence as a steering hook sees it, after a sampled token.
public struct SequenceView {
    /// Generated ids so far, forced ones included.
    public var tokens: [Int32]
    /// Their text (UTF-8; end tokens render nothing, a stop string is cut).
    public var bytes: [UInt8]
    /// bytes.count after each token: token k's text is bytes[tokenEnds[k-1]..<tokenEnds[k]].
    public var tokenEnds: [Int]
    /// Why the last token ended the sequence, if it did.
    public var finish: FinishReason?
}

extension SequenceView {
    /// Where `d` (non-empty) first starts in the text at or after byte `from`.
    public func find(_ d: [UInt8], from: Int) -> Int? {
        guard bytes.count >= d.count else { return nil }
        var i = max(0, from)
        while i + d.count <= bytes.count {
            if bytes[i] == d[0] && bytes[i..<(i + d.count)].elementsEqual(d) { return i }
            i += 1
        }
        return nil
    }
}

/// What a steering hook decides after a sampled token.
public enum Steer: Sendable {
    case keep
    /// Keep the first `keep` tokens, then feed `force` (non-empty) before sampling again. With
    /// keep < count the rest is rolled back: its cache rows are overwritten, never recomputed.
    /// With keep == count the tokens are appended (nothing to roll back).
    case rewind(keep: Int, force: [Int32])
    /// Continue the sequence with `force` (non-empty) appended as context, even when the token
    /// just sampled ended it (an end-of-turn token): an environment's answer in a multi-turn
    /// episode. Context tokens never stop the sequence (a forced end-of-turn token closes the
    /// observation's turn, not the episode) but count against max_tokens: a sequence without room
    /// left ends with `.length`. Not after a stop string (its text is cut): the hook gets `.keep`.
    case extend(force: [Int32])
    /// End the sequence after this token (finish reason `.stop`): an episode its environment
    /// ended in the middle of a turn.
    case end
}

/// Budget forcing and similar interventions: the decode loop calls `afterToken` for every
/// sampled token (not for forced ones), and a rewind continues from the truncated cache.
public struct Steering {
    /// Text bytes a hook may still roll back (its longest delimiter − 1): held back from the
    /// token callback, so streamed text is never taken back.
    public var holdBack: Int
    public var afterToken: (_ sequence: Int, _ view: SequenceView) -> Steer

    public init(holdBack: Int, afterToken: @escaping (Int, SequenceView) -> Steer) {
        self.holdBack = holdBack
        self.afterToken = afterToken
    }
}

extension LlamaModel {
    /// The prompt's token ids as `request` describes them (chat template applied if asked).
    public func promptTokens(_ request: GenerateRequest) throws -> [Int32] {
        var text: String
        if let messages = request.messages ?? (request.chat ? [.init(role: "user", content: request.prompt ?? "")] : nil) {
            guard let parts = tokenizer.chatTemplate.parts(messages) else {
                throw PonderError(.unsupported, "messages: this model has no chat template Ponder recognises (ChatML, Llama-3)")
            }
            if !request.parseSpecial {
                // Content is plain text here: "<|im_end|>" typed by a user stays characters.
                return parts.flatMap { tokenizer.encode($0.text, parseSpecial: !$0.isContent) }
            }
            text = parts.map(\.text).joined()
        } else {
            text = request.prompt ?? ""
        }
        let ids = tokenizer.encode(text, parseSpecial: request.parseSpecial || request.messages != nil || request.chat)
        guard !ids.isEmpty else { throw PonderError.invalid("prompt: empty (it must encode to at least one token)") }
        return ids
    }

    /// Generates `request.n` completions of one prompt. The prompt is prefilled once; the n
    /// sequences then decode together as one batch of rows, each attending to the shared
    /// prompt cache and its own cache.
    public func generate(_ request: GenerateRequest, onToken: TokenCallback? = nil) throws -> GenerateResult {
        try generate(prompts: [try promptTokens(request)], request, onToken: onToken)
    }

    /// Generates `request.n` completions of each of `prompts` (token ids) in one batch: every
    /// prompt is prefilled once, then all prompts × n sequences decode together, each row
    /// attending to its own prompt's cache (GRPO's rollout: prompts × G in one decode).
    /// Completion k·n + j is prompt k's j-th, sampled with seed + k·n + j; the request's prompt
    /// and messages are not used.
    ///
    /// `steering` may rewind a sequence after any sampled token and force tokens; sequences then
    /// differ in length, and a forced token's logprob is 0 (it was not sampled). max_tokens
    /// bounds the tokens a sequence keeps, not those rolled back.
    public func generate(prompts: [[Int32]], _ request: GenerateRequest, onToken: TokenCallback? = nil,
                         steering: Steering? = nil) throws -> GenerateResult {
        let c = config
        guard !prompts.isEmpty, prompts.allSatisfy({ !$0.isEmpty }) else { throw PonderError.invalid("prompts: empty") }
        let n = request.n, total = prompts.count * n
        let lens = prompts.map(\.count), maxP = lens.max() ?? 0
        guard maxP + request.maxTokens <= c.maxPositions else {
            throw PonderError.invalid("max_tokens: prompt (\(maxP) tokens) + max_tokens (\(request.maxTokens)) exceeds the context length \(c.maxPositions)")
        }
        let maxNew = request.maxTokens
        let seed = request.seed ?? UInt64(monotonicSeconds() * 1e9)
        var result = GenerateResult(completions: [], promptTokens: lens.reduce(0, +), prefillSeconds: 0, decodeSeconds: 0)
        if maxNew == 0 {
            result.completions = Array(repeating: Completion(text: "", tokenIDs: [], logprobs: [], finishReason: .length), count: total)
            return result
        }

        // All buffers for the whole request, allocated once.
        let s = try Scratch(c, rows: max(maxP, total), loraWidth: adapters?.width ?? 0)
        // Caches are written before they are read (prefill, then storeKV each step). The
        // sequences' caches are laid out [layer][step][sequence], so memory is backed as the
        // longest sequence grows rather than for n × max_tokens up front.
        let promptK = try lens.map { try Arena(count: c.numLayers * $0 * c.kvDim, zeroed: false) }
        let promptV = try lens.map { try Arena(count: c.numLayers * $0 * c.kvDim, zeroed: false) }
        let seqK = try Arena(count: c.numLayers * total * maxNew * c.kvDim, zeroed: false)
        let seqV = try Arena(count: c.numLayers * total * maxNew * c.kvDim, zeroed: false)
        let ctx = maxP + maxNew
        let scores = try Arena(count: max(maxP * maxP, DecodeAttention.scratchCount(rows: total, heads: c.numHeads, headDim: c.headDim,
                                                                                    context: ctx, groups: prompts.count)))
        let logitsBuf = try Arena(count: total * c.vocabSize)
        var positions = [Int32](repeating: 0, count: total)
        var inputs = [Int32](repeating: 0, count: total)
        var slots = [Int](repeating: 0, count: total)  // a row's cache slot: its token's index

        let t0 = monotonicSeconds()
        for (k, prompt) in prompts.enumerated() {
            try prefill(prompt, s, k: promptK[k].pointer, v: promptV[k].pointer, scores: scores.pointer)
            let first = logitsBuf.pointer + k * n * c.vocabSize
            logits(s, first: lens[k] - 1, rows: 1, into: first)
            for j in 1..<max(1, n) { (first + j * c.vocabSize).update(from: first, count: c.vocabSize) }
        }
        let t1 = monotonicSeconds()
        result.prefillSeconds = t1 - t0

        var seqs = (0..<total).map { i in
            SequenceState(sampler: TokenSampler(params: request.sampling, seed: seed &+ UInt64(i), vocab: c.vocabSize,
                                                history: request.sampling.repetitionPenalty != 1 ? prompts[i / n] : []),
                          stop: request.stop, holdBack: steering?.holdBack ?? 0)
        }
        var active = Array(0..<total)  // row r of a decode step is sequence active[r], in order
        var picks = [(Int32, Float)](repeating: (0, 0), count: total)
        let stopIDs = tokenizer.stopIds
        let endTokens = Array(stopIDs)
        var cancelled = false
        var step = 0
        while true {
            // Sample the next token of every active sequence from its row of logits.
            // Each sequence has its own sampler (and random stream): the rows sample in parallel.
            let rowsNow = active
            picks.withUnsafeMutableBufferPointer { out in
                parallelFor(rowsNow.count) { r in
                    if let f = seqs[rowsNow[r]].forced.last { out[r] = (f, 0); return }
                    let early = seqs[rowsNow[r]].tokens.count < request.minTokens
                    out[r] = seqs[rowsNow[r]].sampler.sample(logitsBuf.pointer + r * c.vocabSize, vocab: c.vocabSize,
                                                             banned: early ? endTokens : [])
                }
            }
            for (r, i) in active.enumerated() where picks[r].0 < 0 {
                throw PonderError.format("model: non-finite logits at step \(step) of sequence \(i) (NaN or infinite weights or activations: is the model file corrupt?)")
            }
            var still: [Int] = []
            for (r, i) in active.enumerated() {
                let (tok, lp) = picks[r]
                let wasForced = !seqs[i].forced.isEmpty
                let asContext = wasForced && seqs[i].forcedContext
                if wasForced {
                    seqs[i].forced.removeLast()
                    seqs[i].sampler.observe(tok)
                    if seqs[i].forced.isEmpty { seqs[i].forcedContext = false }
                }
                var done = seqs[i].append(tok, logprob: lp, isStop: stopIDs.contains(tok), tokenizer: tokenizer, maxTokens: maxNew,
                                          context: asContext)
                let steer: Steer = (steering != nil && !wasForced && !cancelled) ? steering!.afterToken(i, seqs[i].view) : .keep
                if case let .extend(force) = steer {
                    guard !force.isEmpty else { throw PonderError(.internal, "steering: extend with no tokens") }
                    if seqs[i].finish == nil || seqs[i].finish == .eos {
                        seqs[i].finish = nil
                        seqs[i].forced = force.reversed()
                        seqs[i].forcedContext = true
                        done = false
                    }
                }
                if case .end = steer, !done {
                    seqs[i].finish = .stop
                    done = true
                }
                if case let .rewind(keep, force) = steer {
                    guard !force.isEmpty, keep >= 0, keep <= seqs[i].tokens.count else {
                        throw PonderError(.internal, "steering: rewind to \(keep) of \(seqs[i].tokens.count) tokens forcing \(force.count)")
                    }
                    seqs[i].forced = force.reversed()
                    if keep < seqs[i].tokens.count {
                        // Every token is reported once, in order: the sampled one, then the forced.
                        if let cb = onToken, !cb(i, tok, "") { cancelled = true }
                        // Every kept token is in the cache already: the first forced one is this
                        // step's input, at the position the first dropped token had.
                        seqs[i].truncate(to: keep)
                        if request.sampling.repetitionPenalty != 1 { seqs[i].sampler.reset(history: prompts[i / n] + seqs[i].tokens) }
                        let f = seqs[i].forced.removeLast()
                        seqs[i].sampler.observe(f)
                        done = seqs[i].append(f, logprob: 0, isStop: stopIDs.contains(f), tokenizer: tokenizer, maxTokens: maxNew)
                    } else if done {
                        seqs[i].forced = []
                    }
                }
                if let cb = onToken, !cancelled {
                    if !cb(i, seqs[i].tokens.last ?? tok, seqs[i].takeStreamable(final: done)) { cancelled = true }
                }
                if !done { still.append(i) }
            }
            if cancelled {
                for i in active where seqs[i].finish == nil { seqs[i].finish = .cancelled }
                break
            }
            active = still
            if active.isEmpty { break }
            // One decode step for all active sequences: their new token at position p + step.
            var groups: [Range<Int>] = []
            var groupPrompt: [Int] = []
            for (r, i) in active.enumerated() {
                slots[r] = seqs[i].tokens.count - 1
                inputs[r] = seqs[i].tokens[slots[r]]
                positions[r] = Int32(lens[i / n] + slots[r])
                if groupPrompt.last != i / n {
                    groups.append(r..<(r + 1))
                    groupPrompt.append(i / n)
                } else {
                    groups[groups.count - 1] = groups[groups.count - 1].lowerBound..<(r + 1)
                }
            }
            let rows = active.count
            try inputs.withUnsafeBufferPointer { try embed($0.baseAddress!, rows: rows, into: s.x) }
            positions.withUnsafeBufferPointer { pos in
                blocks(rows: rows, positions: pos.baseAddress!, s) { l in
                    for (r, i) in active.enumerated() {
                        let slot = ((l * maxNew + slots[r]) * total + i) * c.kvDim
                        storeKV(s, row: r, k: seqK.pointer + slot, v: seqV.pointer + slot)
                    }
                    let attention = DecodeAttention(rows: rows, heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim,
                                                    context: ctx, groups: groups)
                    attention.run(out: s.attn, outStride: c.qDim, q: s.qkv, qStride: c.qkvDim, prompts: { g in
                        let k = groupPrompt[g], off = l * lens[k] * c.kvDim
                        return KVSpan(keys: promptK[k].pointer + off, values: promptV[k].pointer + off, count: lens[k])
                    }, own: { r in
                        let own = (l * maxNew * total + active[r]) * c.kvDim
                        return KVSpan(keys: seqK.pointer + own, values: seqV.pointer + own, count: slots[r] + 1,
                                      rowStride: total * c.kvDim)
                    }, scratch: scores.pointer)
                }
            }
            logits(s, first: 0, rows: rows, into: logitsBuf.pointer)
            step += 1
        }
        result.decodeSeconds = monotonicSeconds() - t1
        result.completions = seqs.map { Completion(text: $0.finalText, tokenIDs: $0.tokens, logprobs: $0.logprobs, finishReason: $0.finish ?? .length) }
        if cancelled { throw PonderError(.cancelled, "generation cancelled by the token callback") }
        return result
    }
}

/// Per-sequence bookkeeping: ids, logprobs, text bytes, stop strings and what has been
/// streamed so far.
struct SequenceState {
    let sampler: TokenSampler
    let stop: [[UInt8]]
    let holdBack: Int
    var tokens: [Int32] = []
    var logprobs: [Float] = []
    var bytes: [UInt8] = []
    var tokenEnds: [Int] = []
    var streamed = 0
    var finish: FinishReason?
    /// Tokens a steering hook forced, last first.
    var forced: [Int32] = []
    /// The forced tokens are context appended by `.extend`: they never end the sequence.
    var forcedContext = false

    init(sampler: TokenSampler, stop: [String], holdBack steeringHoldBack: Int = 0) {
        self.sampler = sampler
        self.stop = stop.map { Array($0.utf8) }
        holdBack = max(steeringHoldBack, (self.stop.map(\.count).max() ?? 0) - 1)
    }

    var view: SequenceView { SequenceView(tokens: tokens, bytes: bytes, tokenEnds: tokenEnds, finish: finish) }

    /// Records a token; returns true when the sequence is finished.
    /// A `context` token (forced by `.extend`) is text of the sequence but never stops it.
    mutating func append(_ tok: Int32, logprob: Float, isStop: Bool, tokenizer: Tokenizer, maxTokens: Int, context: Bool = false) -> Bool {
        tokens.append(tok)
        logprobs.append(logprob)
        defer { tokenEnds.append(bytes.count) }
        if isStop && !context {
            finish = .eos
            return true
        }
        let before = bytes.count
        bytes.append(contentsOf: tokenizer.bytes(of: tok))
        if !context, let cut = firstStop(searchFrom: max(0, before - holdBack)) {
            bytes.removeLast(bytes.count - cut)
            finish = .stop
            return true
        }
        if tokens.count >= maxTokens {
            finish = .length
            return true
        }
        return false
    }

    /// Drops every token after the first `k` (a steering rewind).
    mutating func truncate(to k: Int) {
        tokens.removeLast(tokens.count - k)
        logprobs.removeLast(logprobs.count - k)
        tokenEnds.removeLast(tokenEnds.count - k)
        bytes.removeLast(bytes.count - (tokenEnds.last ?? 0))
        finish = nil
    }

    private func firstStop(searchFrom: Int) -> Int? {
        var best: Int? = nil
        for s in stop where s.count <= bytes.count {
            var i = searchFrom
            while i + s.count <= bytes.count {
                if bytes[i] == s[0] && bytes[i..<(i + s.count)].elementsEqual(s) {
                    if best == nil || i < best! { best = i }
                    break
                }
                i += 1
            }
        }
        return best
    }

    /// Text that can no longer change: all of it once finished, else all but a possible stop
    /// string prefix and an incomplete UTF-8 character.
    mutating func takeStreamable(final: Bool) -> String {
        // After a rewind the re-forced text may not have caught up with what was streamed.
        guard streamed < bytes.count else { return "" }
        let end = final ? bytes.count : utf8Boundary(bytes, from: streamed, to: max(streamed, bytes.count - holdBack))
        guard end > streamed else { return "" }
        let text = String(decoding: bytes[streamed..<end], as: UTF8.self)
        streamed = end
        return text
    }

    var finalText: String { String(decoding: bytes, as: UTF8.self) }
}
