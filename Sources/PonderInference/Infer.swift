import PonderBase
import PonderJSON
import PonderModel
import PonderRewards

/// One sample of an inference request, with what the selection made of it.
public struct InferCandidate {
    public var completion: Completion
    public var answer: ParsedAnswer?
    public var scores: [(name: String, value: Double?)]
    public var total: Double?
    /// Over the sampled tokens only: forced ones (cues, the forced answer) were not the model's choice.
    public var meanLogprob: Double?
    public var reflections: [Reflection] = []
    public var forcedAnswer: ForcedAnswer?
    /// Tokens decoded and then rolled back (budget forcing).
    public var rolledBack = 0
}

public struct InferResult {
    public var strategy: InferStrategy
    public var candidates: [InferCandidate]
    /// The candidate whose answer was chosen.
    public var selected: Int
    public var answer: ParsedAnswer?
    /// vote and reflect with n > 1: {answer: count}.
    public var votes: JSONValue?
    public var promptTokens: Int
    public var prefillSeconds, decodeSeconds, scoringSeconds, totalSeconds: Double
    /// What the request's defaults became (a max_tokens cut to the context).
    public var notes: [String] = []

    /// Every token decoded: kept ones and those rolled back.
    public var tokensSpent: Int { candidates.reduce(0) { $0 + $1.completion.tokenIDs.count + $1.rolledBack } }

    public var json: JSONValue {
        func answer(_ a: ParsedAnswer?) -> JSONValue { a.map { .string(Selection.label($0)) } ?? .null }
        func number(_ x: Double?) -> JSONValue { x.map(JSONValue.double) ?? .null }
        func reflections(_ c: InferCandidate) -> JSONValue {
            .array(c.reflections.map { r in
                .object([("at_token", .int(Int64(r.atToken))), ("cue", .string(r.cue)), ("forced_tokens", .int(Int64(r.forcedTokens))),
                         ("reason", .string(r.reason)), ("ended_by", .string(r.endedBy)), ("rolled_back", .int(Int64(r.rolledBack))),
                         ("answer_before", answer(r.answerBefore)), ("answer_after", answer(r.answerAfter)),
                         ("changed", .bool(r.changed))])
            })
        }
        var f: [(String, JSONValue)] = [
            ("strategy", .string(strategy.rawValue)),
            ("answer", answer(self.answer)),
            ("selected", .int(Int64(selected))),
            ("candidates", .array(candidates.map { c in
                var o: [(String, JSONValue)] = [
                    ("text", .string(c.completion.text)),
                    ("answer", answer(c.answer)),
                    ("scores", .object(c.scores.map { ($0.name, number($0.value)) })),
                    ("total", number(c.total)),
                    ("mean_logprob", number(c.meanLogprob)),
                    ("completion_tokens", .int(Int64(c.completion.tokenIDs.count))),
                    ("finish_reason", .string(c.completion.finishReason.rawValue)),
                    ("token_ids", .array(c.completion.tokenIDs.map { .int(Int64($0)) })),
                ]
                if strategy == .reflect {
                    o.append(("reflections", reflections(c)))
                    o.append(("forced_answer", c.forcedAnswer.map { a in
                        .object([("at_token", .int(Int64(a.atToken))), ("forced_tokens", .int(Int64(a.forcedTokens))),
                                 ("reason", .string(a.reason)), ("rolled_back", .int(Int64(a.rolledBack)))])
                    } ?? .null))
                    o.append(("rolled_back_tokens", .int(Int64(c.rolledBack))))
                }
                return .object(o)
            })),
        ]
        if let votes { f.append(("votes", votes)) }
        if !notes.isEmpty { f.append(("notes", .array(notes.map { .string($0) }))) }
        if strategy == .reflect, candidates.indices.contains(selected) { f.append(("reflections", reflections(candidates[selected]))) }
        let kept = candidates.reduce(0) { $0 + $1.completion.tokenIDs.count }
        f += [
            ("prompt_tokens", .int(Int64(promptTokens))),
            ("completion_tokens", .int(Int64(kept))),
            ("tokens_spent", .int(Int64(tokensSpent))),
            ("timings", .object([
                ("prefill_seconds", .double(prefillSeconds)),
                ("decode_seconds", .double(decodeSeconds)),
                ("scoring_seconds", .double(scoringSeconds)),
                ("total_seconds", .double(totalSeconds)),
                ("decode_tokens_per_second", .double(decodeSeconds > 0 ? Double(tokensSpent) / decodeSeconds : 0)),
            ])),
        ]
        return .object(f)
    }
}

extension LlamaModel {
    /// Runs an inference request: the samples in one grouped decode (one prefill of the prompt),
    /// budget-forced for "reflect", then scored and selected. `scorers` add to or replace the
    /// built-in ones; `onToken` streams every sequence's text as it becomes final.
    public func infer(_ request: InferRequest, scorers: [Scorer] = [], onToken: TokenCallback? = nil) throws -> InferResult {
        let t0 = monotonicSeconds()
        let prompt = try promptTokens(request.generation)
        let (req, note) = request.generation.fitted(context: config.maxPositions, promptTokens: prompt.count)
        let forcing = request.strategy == .reflect
            ? BudgetForcing(options: request.reflect, tokenizer: tokenizer, maxTokens: req.maxTokens, sequences: req.n) : nil
        let gen = try generate(prompts: [prompt], req, onToken: onToken, steering: forcing?.steering)
        let t1 = monotonicSeconds()

        var candidates: [InferCandidate] = []
        var texts: [CandidateText] = []
        for (i, c) in gen.completions.enumerated() {
            let state = forcing?.states[i]
            var sampled = [Bool](repeating: true, count: c.tokenIDs.count)
            for r in state?.forcedRanges ?? [] {
                for k in r where k < sampled.count { sampled[k] = false }
            }
            let lps = zip(c.logprobs, sampled).filter(\.1).map { Double($0.0) }
            let mean = lps.isEmpty ? nil : lps.reduce(0, +) / Double(lps.count)
            texts.append(CandidateText(text: c.text, meanLogprob: mean))
            var cand = InferCandidate(completion: c, answer: nil, scores: [], total: nil, meanLogprob: mean)
            if let state {
                cand.reflections = state.reflections
                cand.forcedAnswer = state.forcedAnswer
                cand.rolledBack = state.rolledBack
            }
            candidates.append(cand)
        }
        // Scorers see the prompt as the caller wrote it (the last message of a conversation).
        let promptText = req.prompt ?? req.messages?.last?.content
        let scored = Selection.score(texts, prompt: promptText, weights: request.scorerWeights, custom: scorers)
        for i in candidates.indices {
            candidates[i].answer = scored.answers[i]
            candidates[i].scores = scored.scores[i]
            candidates[i].total = scored.totals[i]
            // Each reflection's "after" is the next one's "before", the last one's the final answer.
            let rs = candidates[i].reflections
            for k in rs.indices {
                candidates[i].reflections[k].answerAfter = k + 1 < rs.count ? rs[k + 1].answerBefore : scored.answers[i]
            }
        }
        var selected = 0
        var answer = candidates.first?.answer
        var votes: JSONValue? = nil
        let voting = request.strategy == .vote || (request.strategy == .reflect && req.n > 1)
        switch request.strategy {
        case _ where voting:
            let v = Selection.vote(texts, scored)
            selected = v.candidate
            // The group's first answer: the same text as its key in "votes".
            answer = v.group.map { scored.groups[$0].answer }
            votes = Selection.votes(scored)
        case .bestOfN:
            selected = Selection.best(texts, scored)
            answer = candidates[selected].answer
        default:
            break
        }
        let t2 = monotonicSeconds()
        return InferResult(strategy: request.strategy, candidates: candidates, selected: selected, answer: answer, votes: votes,
                           promptTokens: gen.promptTokens, prefillSeconds: gen.prefillSeconds, decodeSeconds: gen.decodeSeconds,
                           scoringSeconds: t2 - t1, totalSeconds: t2 - t0,
                           notes: (note.map { [$0] } ?? []) + (droppedBytesNote(request.generation).map { [$0.note] } ?? []))
    }
}
