import PonderBase
import PonderKernels
import PonderText

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

/// Everything one generate call decodes with, allocated once (llama2.c's RunState): the
/// activation scratch, every prompt's KV cache, the sequences' own caches, the attention
/// scratch and one row of logits per sequence. Prompt k's n sequences are k·n ..< (k+1)·n.
final class DecodeContext {
    let model: LlamaModel
    let prompts: [[Int32]]
    let lens: [Int]
    let n: Int
    let total: Int
    let maxNew: Int
    let context: Int
    let s: LlamaModel.Scratch
    let promptK: [Arena]
    let promptV: [Arena]
    let seqK: Arena
    let seqV: Arena
    let scores: Arena
    let logits: Arena
    private var inputs: [Int32]
    private var positions: [Int32]
    /// A row's cache slot: the index of its sequence's input token.
    private var slots: [Int]

    init(model: LlamaModel, prompts: [[Int32]], n: Int, maxNew: Int) throws {
        let c = model.config
        self.model = model
        self.prompts = prompts
        lens = prompts.map(\.count)
        let maxP = lens.max() ?? 0
        (self.n, total, self.maxNew, context) = (n, prompts.count * n, maxNew, maxP + maxNew)
        s = try LlamaModel.Scratch(c, rows: max(maxP, total), loraWidth: model.adapters?.width ?? 0)
        // Caches are written before they are read (prefill, then storeKV each step). The
        // sequences' caches are laid out [layer][step][sequence], so memory is backed as the
        // longest sequence grows rather than for n × max_tokens up front.
        promptK = try lens.map { try Arena(count: c.numLayers * $0 * c.kvDim, zeroed: false) }
        promptV = try lens.map { try Arena(count: c.numLayers * $0 * c.kvDim, zeroed: false) }
        seqK = try Arena(count: c.numLayers * total * maxNew * c.kvDim, zeroed: false)
        seqV = try Arena(count: c.numLayers * total * maxNew * c.kvDim, zeroed: false)
        scores = try Arena(count: max(maxP * maxP, DecodeAttention.scratchCount(rows: total, heads: c.numHeads, headDim: c.headDim,
                                                                                context: context, groups: prompts.count)))
        logits = try Arena(count: total * c.vocabSize)
        inputs = [Int32](repeating: 0, count: total)
        positions = [Int32](repeating: 0, count: total)
        slots = [Int](repeating: 0, count: total)
    }

    /// Row r of the logits (sequence r after prefill; active[r] after a step).
    func row(_ r: Int) -> UnsafeMutablePointer<Float> { logits.pointer + r * model.config.vocabSize }

    /// Every prompt once; its last position's logits go to the rows of its n sequences.
    func prefill() throws {
        let vocab = model.config.vocabSize
        for (k, prompt) in prompts.enumerated() {
            try model.prefill(prompt, s, k: promptK[k].pointer, v: promptV[k].pointer, scores: scores.pointer)
            let first = row(k * n)
            model.logits(s, first: lens[k] - 1, rows: 1, into: first)
            for j in 1..<max(1, n) { (first + j * vocab).update(from: first, count: vocab) }
        }
    }

    /// One decode step for the sequences `active` (row r is sequence active[r], prompts in
    /// order): each one's last token, `lastToken(i)`, at its next position; the next logits go
    /// to row r. Rows of one prompt form one attention group, which reads that prompt's cache.
    func step(_ active: [Int], lastToken: (Int) -> (token: Int32, index: Int)) throws {
        let c = model.config, rows = active.count, total = total, maxNew = maxNew
        var groups: [Range<Int>] = []
        var groupPrompt: [Int] = []
        for (r, i) in active.enumerated() {
            let last = lastToken(i)
            (inputs[r], slots[r]) = (last.token, last.index)
            positions[r] = Int32(lens[i / n] + last.index)
            if groupPrompt.last != i / n {
                groups.append(r..<(r + 1))
                groupPrompt.append(i / n)
            } else {
                groups[groups.count - 1] = groups[groups.count - 1].lowerBound..<(r + 1)
            }
        }
        let (s, slots, lens) = (s, slots, lens)
        try inputs.withUnsafeBufferPointer { try model.embed($0.baseAddress!, rows: rows, into: s.x) }
        positions.withUnsafeBufferPointer { pos in
            model.blocks(rows: rows, positions: pos.baseAddress!, s) { l in
                for (r, i) in active.enumerated() {
                    let slot = ((l * maxNew + slots[r]) * total + i) * c.kvDim
                    model.storeKV(s, row: r, k: seqK.pointer + slot, v: seqV.pointer + slot)
                }
                let attention = DecodeAttention(rows: rows, heads: c.numHeads, kvHeads: c.numKVHeads, headDim: c.headDim,
                                                context: context, groups: groups)
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
        model.logits(s, first: 0, rows: rows, into: logits.pointer)
    }
}

/// One sequence of a generate call: its sampler, ids, logprobs, text bytes, and the steering
/// applied to it (stop strings, min tokens, forced tokens and continuations), and what has
/// been streamed so far.
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

    /// The next token from its row of logits: the next forced one if a hook forced any, else a
    /// sample, with end tokens held back until the sequence has `minTokens`.
    func pick(_ logits: UnsafeMutablePointer<Float>, vocab: Int, minTokens: Int, endTokens: [Int32]) -> (Int32, Float) {
        if let f = forced.last { return (f, 0) }
        return sampler.sample(logits, vocab: vocab, banned: tokens.count < minTokens ? endTokens : [])
    }

    /// Records the token `pick` gave; true when the sequence is finished. A forced token is
    /// observed by the sampler (repetition penalty), and context forced by `.extend` never
    /// finishes the sequence.
    mutating func accept(_ tok: Int32, logprob: Float, isStop: Bool, tokenizer: Tokenizer, maxTokens: Int) -> Bool {
        let wasForced = !forced.isEmpty
        let asContext = wasForced && forcedContext
        if wasForced {
            forced.removeLast()
            sampler.observe(tok)
            if forced.isEmpty { forcedContext = false }
        }
        return append(tok, logprob: logprob, isStop: isStop, tokenizer: tokenizer, maxTokens: maxTokens, context: asContext)
    }

    /// Applies a hook's decision after a sampled token; `done` is whether that token finished
    /// the sequence, the result whether it is finished now. `history` is the prompt, for the
    /// repetition penalty after a rewind; `report` is told of the sampled token before a rewind
    /// drops it (every token is reported once, in order: the sampled one, then the forced).
    mutating func apply(_ steer: Steer, done: Bool, history: [Int32], repetition: Bool, tokenizer: Tokenizer, maxTokens: Int,
                        isStop: (Int32) -> Bool, report: () -> Void) throws -> Bool {
        switch steer {
        case .keep:
            return done
        case let .extend(force):
            guard !force.isEmpty else { throw PonderError(.internal, "steering: extend with no tokens") }
            guard finish == nil || finish == .eos else { return done }
            finish = nil
            forced = force.reversed()
            forcedContext = true
            return false
        case .end:
            if !done { finish = .stop }
            return true
        case let .rewind(keep, force):
            guard !force.isEmpty, keep >= 0, keep <= tokens.count else {
                throw PonderError(.internal, "steering: rewind to \(keep) of \(tokens.count) tokens forcing \(force.count)")
            }
            forced = force.reversed()
            guard keep < tokens.count else {
                if done { forced = [] }
                return done
            }
            report()
            // Every kept token is in the cache already: the first forced one is this step's
            // input, at the position the first dropped token had.
            truncate(to: keep)
            if repetition { sampler.reset(history: history + tokens) }
            let f = forced.removeLast()
            sampler.observe(f)
            return append(f, logprob: 0, isStop: isStop(f), tokenizer: tokenizer, maxTokens: maxTokens)
        }
    }

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

extension LlamaModel {
    /// The logits generation sees at each step of `continuation` after `prompt`: the prompt
    /// prefilled, then one decode step per token (the kernels a sampled token goes through), so
    /// row i is the distribution of continuation[i] given what precedes it; one row more for
    /// the token after the last. For comparing engines on a file (bench/, tests/python).
    public func decodeLogits(prompt: [Int32], continuation: [Int32]) throws -> [Float] {
        try tokenizer.validate(prompt + continuation, what: "tokens")
        guard !prompt.isEmpty, prompt.count + continuation.count <= config.maxPositions else {
            throw PonderError.invalid("tokens: prompt of \(prompt.count) + \(continuation.count) not in [1, \(config.maxPositions)]")
        }
        let v = config.vocabSize
        let ctx = try DecodeContext(model: self, prompts: [prompt], n: 1, maxNew: max(1, continuation.count))
        try ctx.prefill()
        var out = [Float](repeating: 0, count: (continuation.count + 1) * v)
        out.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: ctx.row(0), count: v) }
        for (i, t) in continuation.enumerated() {
            try ctx.step([0]) { _ in (t, i) }
            out.withUnsafeMutableBufferPointer { ($0.baseAddress! + (i + 1) * v).update(from: ctx.row(0), count: v) }
        }
        return out
    }
}
