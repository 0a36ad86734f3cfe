import PonderModel
import PonderRewards
import PonderText

/// One forced continuation: where thinking ended, the cue that replaced its end, and the answer
/// the thinking had reached before and after.
public struct Reflection: Sendable {
    /// Tokens kept before the forced ones (the thinking so far, the delimiter rolled back).
    public var atToken: Int
    public var cue: String
    /// Tokens forced: the cue's, plus any kept text of the token the delimiter began in.
    public var forcedTokens: Int
    /// "max_reflections" (one of those allowed) or "min_thinking_tokens" (thinking was too short).
    public var reason: String
    /// "think_end" (the delimiter) or "end_of_turn" (an end token).
    public var endedBy: String
    /// Tokens rolled back (the delimiter's and any after it in the same token).
    public var rolledBack: Int
    /// The answer the thinking had reached when it ended (extracted as the accuracy reward does).
    public var answerBefore: ParsedAnswer?
    /// The answer at the next end of thinking, or the final one.
    public var answerAfter: ParsedAnswer?

    public var changed: Bool {
        switch (answerBefore, answerAfter) {
        case (nil, nil): return false
        case let (a?, b?): return !a.equivalent(to: b)
        default: return true
        }
    }
}

/// Where the answer was forced.
public struct ForcedAnswer: Sendable {
    public var atToken: Int
    public var forcedTokens: Int
    /// "reflections_spent": thinking ended at the delimiter with no cue left; "no_room": a cue
    /// would not fit max_tokens or max_thinking_tokens; "max_thinking_tokens": thinking reached it.
    public var reason: String
    public var rolledBack: Int
}

/// s1's budget forcing as a steering policy over a grouped decode: each sequence's end of
/// thinking is rolled back and a cue forced in its place while the options allow, then the
/// answer is forced. One instance per request; sequences are independent.
final class BudgetForcing {
    struct State {
        var reflections: [Reflection] = []
        var forcedAnswer: ForcedAnswer?
        var answering = false
        /// Bytes before this are the model's own thinking already searched, or forced text.
        var searchFrom = 0
        var forcedRanges: [Range<Int>] = []
        var rolledBack = 0
    }

    let options: ReflectOptions
    let tokenizer: Tokenizer
    let maxTokens: Int
    let delimiter: [UInt8]
    let answerIDs: [Int32]
    private(set) var states: [State]

    init(options: ReflectOptions, tokenizer: Tokenizer, maxTokens: Int, sequences: Int) {
        self.options = options
        self.tokenizer = tokenizer
        self.maxTokens = maxTokens
        delimiter = Array(options.thinkEnd.utf8)
        // Tags such as "</think>" are special tokens in some vocabularies: parsed as the model
        // would have written them.
        answerIDs = tokenizer.encode(options.forceAnswer, parseSpecial: true, addBOS: false)
        states = Array(repeating: State(), count: sequences)
    }

    var steering: Steering {
        Steering(holdBack: delimiter.count - 1) { [self] seq, view in afterToken(seq, view) }
    }

    func afterToken(_ i: Int, _ v: SequenceView) -> Steer {
        guard !states[i].answering else { return .keep }
        let count = v.tokens.count
        // Where thinking ended: (first token rolled back, byte where the end began, how).
        var end: (token: Int, byte: Int, how: String)?
        if v.finish == .eos {
            end = (count - 1, v.bytes.count, "end_of_turn")
        } else if let s = find(v, from: max(states[i].searchFrom, (count >= 2 ? v.tokenEnds[count - 2] : 0) - (delimiter.count - 1))) {
            let d = v.tokenEnds.firstIndex { $0 > s } ?? count - 1
            end = (d, s, "think_end")
        }
        if let end {
            // Text of the delimiter's token before the delimiter is kept (re-encoded and forced).
            let tokenStart = end.token == 0 ? 0 : v.tokenEnds[end.token - 1]
            let prefix = end.byte > tokenStart ? encode(String(decoding: v.bytes[tokenStart..<end.byte], as: UTF8.self)) : []
            let kept = end.token + prefix.count
            let thinking = Array(v.bytes[0..<end.byte])
            let state = states[i]
            let allowed = state.reflections.count < options.maxReflections || kept < options.minThinkingTokens
            var noRoom = false
            if allowed {
                let cue = options.cues[state.reflections.count % options.cues.count]
                let ids = prefix + encode(joined(thinking, cue))
                let after = end.token + ids.count
                if after < maxTokens && after < (options.maxThinkingTokens ?? Int.max) {
                    states[i].reflections.append(Reflection(
                        atToken: end.token, cue: cue, forcedTokens: ids.count,
                        reason: state.reflections.count < options.maxReflections ? "max_reflections" : "min_thinking_tokens",
                        endedBy: end.how, rolledBack: count - end.token,
                        answerBefore: Answers.finalAnswer(in: String(decoding: thinking, as: UTF8.self))))
                    states[i].forcedRanges.append(end.token..<after)
                    states[i].rolledBack += count - end.token
                    states[i].searchFrom = thinking.count + joined(thinking, cue).utf8.count
                    return .rewind(keep: end.token, force: ids)
                }
                noRoom = true
            }
            states[i].answering = true
            // At the end of a turn the turn's text is the answer: nothing to force.
            if end.how == "end_of_turn" { return .keep }
            return forceAnswer(i, keep: end.token, prefix: prefix, count: count, reason: noRoom ? "no_room" : "reflections_spent")
        }
        if let mx = options.maxThinkingTokens, count >= mx, v.finish == nil {
            states[i].answering = true
            return forceAnswer(i, keep: count, prefix: [], count: count, reason: "max_thinking_tokens")
        }
        return .keep
    }

    private func forceAnswer(_ i: Int, keep: Int, prefix: [Int32], count: Int, reason: String) -> Steer {
        let ids = prefix + answerIDs
        states[i].forcedAnswer = ForcedAnswer(atToken: keep, forcedTokens: ids.count, reason: reason, rolledBack: count - keep)
        states[i].forcedRanges.append(keep..<(keep + ids.count))
        states[i].rolledBack += count - keep
        return .rewind(keep: keep, force: ids)
    }

    /// The first delimiter starting at or after byte `from`.
    private func find(_ v: SequenceView, from: Int) -> Int? { v.find(delimiter, from: from) }

    private func encode(_ text: String) -> [Int32] { tokenizer.encode(text, parseSpecial: false, addBOS: false) }

    /// The cue as appended: after a space unless the thinking ends in whitespace or the cue
    /// starts with it ("…= 53" + "Wait," reads "…= 53 Wait,").
    private func joined(_ thinking: [UInt8], _ cue: String) -> String {
        let endsInSpace = thinking.last.map { $0 == 0x20 || $0 == 0x0A || $0 == 0x09 } ?? true
        let startsWithSpace = cue.first.map(\.isWhitespace) ?? true
        return endsInSpace || startsWithSpace ? cue : " " + cue
    }
}
