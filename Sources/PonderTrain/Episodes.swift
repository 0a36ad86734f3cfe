import PonderBase
import PonderEnvironments
import PonderJSON
import PonderModel
import PonderText

/// The episodes of one rollout: one environment per sequence, driven from the decode loop's
/// steering hook so that every live episode of the step decodes together and the KV cache runs
/// on through each observation (nothing is re-tokenized or re-prefilled).
///
/// An action ends at the model's end-of-turn token or, for an environment with an `actionEnd`
/// ("</tool>"), where that text appears; the environment's answer is appended as a `role` turn
/// (its text tokenized with special-token parsing off: it cannot forge a turn) and the assistant
/// turn reopened. Those tokens are context: left out of the loss (`contextRanges`). An episode
/// ends when its environment says done, after max_turns actions, when an action of a tool-using
/// environment ends with the turn (the model asked for nothing), when the next observation
/// would not fit the token budget (max_completion_length, across all turns), or when the
/// environment throws: then `error` names why and the episode scores nothing.
final class Episodes {
    struct Episode {
        var env: Environment?
        var error: String?
        /// Why the episode ended: done, max_turns, answered, budget, length, error.
        var ended = ""
        var turns = 0
        var reward: Double?
        var contextRanges: [Range<Int>] = []
        var observationTokens = 0
        /// Token index where the current action starts (after the last context).
        var actionStartToken = 0
        /// Bytes of the sequence already searched for the action delimiter.
        var scanned = 0
        /// The model's text since its last end-of-turn (pieces split by tool calls), and the
        /// last whole turn: rewards score the model's final turn, without the observations.
        var pieces: [String] = []
        var lastTurn = ""
        var info: [JSONValue] = []

        var finalTurn: String { pieces.isEmpty ? lastTurn : pieces.joined() }
    }

    let config: EnvironmentConfig
    let tokenizer: Tokenizer
    let maxTokens: Int
    var episodes: [Episode]

    init(config: EnvironmentConfig, tokenizer: Tokenizer, maxTokens: Int, count: Int) {
        self.config = config
        self.tokenizer = tokenizer
        self.maxTokens = maxTokens
        episodes = Array(repeating: Episode(), count: count)
    }

    func fail(_ i: Int, _ message: String) {
        episodes[i].error = message
        episodes[i].ended = "error"
        episodes[i].env = nil
    }

    /// Makes each group's environments and resets them with the group's task and seed. Returns
    /// each group's first user turn (the first episode's; nil: every episode of the group failed).
    func reset(factory: EnvironmentFactory, tasks: [JSONValue], seeds: [UInt64], groupSize g: Int) -> [String?] {
        var firsts: [String?] = []
        for (k, task) in tasks.enumerated() {
            var first: String?
            for i in (k * g)..<((k + 1) * g) {
                do {
                    let env = try factory()
                    let obs = try env.reset(seed: seeds[k], task: task)
                    episodes[i].env = env
                    if let f = first, f != obs {
                        fail(i, "reset: the first observation differs from the group's first episode's, for the same task and seed")
                        continue
                    }
                    first = first ?? obs
                } catch {
                    fail(i, "reset: \(error)")
                }
            }
            firsts.append(first)
        }
        return firsts
    }

    var steering: Steering {
        let delimiter = episodes.lazy.compactMap { $0.env?.actionEnd }.first.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        return Steering(holdBack: 0) { [self] i, view in self.afterToken(i, view, delimiter: delimiter) }
    }

    func afterToken(_ i: Int, _ view: SequenceView, delimiter: [UInt8]?) -> Steer {
        guard let env = episodes[i].env else {
            // A failed reset: nothing to talk to; stop at once.
            return episodes[i].ended == "error" && view.finish == nil ? .end : .keep
        }
        let start = episodes[i].actionStartToken == 0 ? 0 : view.tokenEnds[episodes[i].actionStartToken - 1]
        let byTurn = view.finish == .eos
        var byDelimiter = false
        if let d = delimiter, view.finish == nil {
            let from = max(start, episodes[i].scanned - d.count + 1)
            byDelimiter = view.find(d, from: from) != nil
            episodes[i].scanned = view.bytes.count
        }
        // Built only where an action ends, not for every token.
        var actionText: String { String(decoding: view.bytes[start...], as: UTF8.self) }
        if let f = view.finish, f != .eos {
            // Cut by the budget (or a stop string): the last action is never answered.
            episodes[i].pieces.append(actionText)
            episodes[i].ended = f == .length ? "length" : "stop"
            episodes[i].env = nil
            return .keep
        }
        guard byTurn || byDelimiter else { return .keep }

        let action = actionText
        episodes[i].turns += 1
        episodes[i].pieces.append(action)
        if byTurn {
            episodes[i].lastTurn = episodes[i].pieces.joined()
            episodes[i].pieces = []
        }
        let stop: Steer = byTurn ? .keep : .end
        let step: EnvironmentStep
        do {
            step = try env.step(action)
        } catch {
            fail(i, "step \(episodes[i].turns): \(error)")
            return stop
        }
        if let r = step.reward { episodes[i].reward = (episodes[i].reward ?? 0) + r }
        if step.info != .null { episodes[i].info.append(step.info) }
        func end(_ why: String) -> Steer {
            episodes[i].ended = why
            episodes[i].env = nil
            return stop
        }
        if step.done { return end("done") }
        if delimiter != nil && byTurn { return end("answered") }
        if episodes[i].turns >= config.maxTurns { return end("max_turns") }

        let room = maxTokens - view.tokens.count
        // Over the budget for certain without tokenizing it (a 1 MB observation costs nothing).
        guard step.observation.utf8.count <= room * max(1, tokenizer.longestTokenBytes) else { return end("budget") }
        var force: [Int32] = []
        for part in tokenizer.chatTemplate.continuation(role: config.role, content: step.observation, closeTurn: !byTurn) {
            force += tokenizer.encode(part.text, parseSpecial: !part.isContent, addBOS: false)
        }
        // The model needs room for at least one token of its own after the observation.
        guard !force.isEmpty, force.count < room else { return end("budget") }
        episodes[i].contextRanges.append(view.tokens.count..<(view.tokens.count + force.count))
        episodes[i].observationTokens += force.count
        episodes[i].actionStartToken = view.tokens.count + force.count
        return .extend(force: force)
    }

    /// Closes the episodes whose sequence ended without the hook seeing it end.
    func finish(_ completions: [Completion]) {
        for i in episodes.indices where episodes[i].ended.isEmpty {
            episodes[i].ended = completions[i].finishReason.rawValue
            episodes[i].env = nil
        }
    }

    /// The env/* metrics of a rollout's episodes.
    static func metrics(_ episodes: [Episode]) -> [(String, JSONValue)] {
        let n = Double(max(1, episodes.count))
        var m: [(String, JSONValue)] = [
            ("env/turns_mean", .double(Double(episodes.reduce(0) { $0 + $1.turns }) / n)),
            ("env/observation_tokens_mean", .double(Double(episodes.reduce(0) { $0 + $1.observationTokens }) / n)),
            ("env/errors", .int(Int64(episodes.filter { $0.error != nil }.count))),
        ]
        for why in ["done", "max_turns", "answered", "budget", "length"] {
            m.append(("env/ended_\(why)", .double(Double(episodes.filter { $0.ended == why }.count) / n)))
        }
        return m
    }
}
