import PonderBase
import PonderKernels
import PonderText

extension LlamaModel {
    /// Generates `request.n` completions of one prompt. The prompt is prefilled once; the n
    /// sequences then decode together as one batch of rows, each attending to the shared
    /// prompt cache and its own cache.
    public func generate(_ request: GenerateRequest, onToken: TokenCallback? = nil) throws -> GenerateResult {
        var result = try generate(prompts: [try promptTokens(request)], request, onToken: onToken)
        if let d = droppedBytesNote(request) {
            result.promptDroppedBytes = d.count
            result.notes.append(d.note)
        }
        return result
    }

    /// Generates `request.n` completions of each of `prompts` (token ids) in one batch: every
    /// prompt is prefilled once, then all prompts × n sequences decode together, each row
    /// attending to its own prompt's cache (GRPO's rollout: prompts × G in one decode).
    /// Completion k·n + j is prompt k's j-th, sampled with seed `seeds[k] + j` (without
    /// `seeds`: request.seed + k·n + j); the request's prompt and messages are not used.
    ///
    /// `steering` may rewind a sequence after any sampled token and force tokens; sequences then
    /// differ in length, and a forced token's logprob is 0 (it was not sampled). max_tokens
    /// bounds the tokens a sequence keeps, not those rolled back.
    public func generate(prompts: [[Int32]], _ given: GenerateRequest, onToken: TokenCallback? = nil,
                         steering: Steering? = nil, seeds: [UInt64]? = nil) throws -> GenerateResult {
        let c = config
        guard !prompts.isEmpty, prompts.allSatisfy({ !$0.isEmpty }) else { throw PonderError.invalid("prompts: empty") }
        guard seeds == nil || seeds!.count == prompts.count else { throw PonderError(.internal, "generate: one seed per prompt") }
        let lens = prompts.map(\.count), maxP = lens.max() ?? 0
        let (request, note) = given.fitted(context: c.maxPositions, promptTokens: maxP)
        let n = request.n, total = prompts.count * n, maxNew = request.maxTokens
        guard maxP + maxNew <= c.maxPositions else {
            throw PonderError.invalid("max_tokens: prompt (\(maxP) tokens) + max_tokens (\(maxNew)) exceeds the context length \(c.maxPositions)")
        }
        var result = GenerateResult(completions: [], promptTokens: lens.reduce(0, +), prefillSeconds: 0, decodeSeconds: 0,
                                    notes: note.map { [$0] } ?? [])
        if maxNew == 0 {
            result.completions = Array(repeating: Completion(text: "", tokenIDs: [], logprobs: [], finishReason: .length), count: total)
            return result
        }
        let seed = request.seed ?? UInt64(monotonicSeconds() * 1e9)
        let base = seeds ?? prompts.indices.map { seed &+ UInt64($0 * n) }
        let repetition = request.sampling.repetitionPenalty != 1
        var seqs = (0..<total).map { i in
            SequenceState(sampler: TokenSampler(params: request.sampling, seed: base[i / n] &+ UInt64(i % n), vocab: c.vocabSize,
                                                history: repetition ? prompts[i / n] : []),
                          stop: request.stop, holdBack: steering?.holdBack ?? 0)
        }
        let ctx = try DecodeContext(model: self, prompts: prompts, n: n, maxNew: maxNew)
        let t0 = monotonicSeconds()
        try ctx.prefill()
        let t1 = monotonicSeconds()
        result.prefillSeconds = t1 - t0

        let stopIDs = tokenizer.stopIds, endTokens = Array(stopIDs)
        var active = Array(0..<total)  // row r of a decode step is sequence active[r], in order
        var picks = [(Int32, Float)](repeating: (0, 0), count: total)
        var cancelled = false
        var step = 0
        while true {
            // Each sequence has its own sampler (and random stream): the rows sample in parallel.
            let rowsNow = active
            picks.withUnsafeMutableBufferPointer { out in
                parallelFor(rowsNow.count) { r in
                    out[r] = seqs[rowsNow[r]].pick(ctx.row(r), vocab: c.vocabSize, minTokens: request.minTokens, endTokens: endTokens)
                }
            }
            for (r, i) in active.enumerated() where picks[r].0 < 0 {
                throw PonderError.format("model: non-finite logits at step \(step) of sequence \(i) (NaN or infinite weights or activations: is the model file corrupt?)")
            }
            var still: [Int] = []
            for (r, i) in active.enumerated() {
                let (tok, lp) = picks[r]
                let sampled = seqs[i].forced.isEmpty
                var done = seqs[i].accept(tok, logprob: lp, isStop: stopIDs.contains(tok), tokenizer: tokenizer, maxTokens: maxNew)
                if let steering, sampled, !cancelled {
                    done = try seqs[i].apply(steering.afterToken(i, seqs[i].view), done: done, history: prompts[i / n], repetition: repetition,
                                             tokenizer: tokenizer, maxTokens: maxNew, isStop: { stopIDs.contains($0) }) {
                        if let cb = onToken, !cb(i, tok, "") { cancelled = true }
                    }
                }
                if let cb = onToken, !cancelled, !cb(i, seqs[i].tokens.last ?? tok, seqs[i].takeStreamable(final: done)) { cancelled = true }
                if !done { still.append(i) }
            }
            if cancelled {
                for i in active where seqs[i].finish == nil { seqs[i].finish = .cancelled }
                break
            }
            active = still
            if active.isEmpty { break }
            try ctx.step(active) { i in (seqs[i].tokens[seqs[i].tokens.count - 1], seqs[i].tokens.count - 1) }
            step += 1
        }
        result.decodeSeconds = monotonicSeconds() - t1
        result.completions = seqs.map { Completion(text: $0.finalText, tokenIDs: $0.tokens, logprobs: $0.logprobs, finishReason: $0.finish ?? .length) }
        if cancelled { throw PonderError(.cancelled, "generation cancelled by the token callback") }
        return result
    }
}
