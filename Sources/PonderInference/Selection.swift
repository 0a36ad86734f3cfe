import PonderJSON
import PonderRewards

// Voting and reranking over candidate texts: pure functions, no model, so they are tested on
// hand-written completions and shared by every strategy.

/// A caller-supplied scorer (ponder_reward_fn, a Python callable): nil or non-finite is "no score".
public struct Scorer {
    public var name: String
    public var weight: Double
    public var score: CustomReward

    public init(name: String, weight: Double, score: @escaping CustomReward) {
        self.name = name
        self.weight = weight
        self.score = score
    }
}

/// One candidate as the selection sees it.
public struct CandidateText: Sendable {
    public var text: String
    /// Mean log-probability of its sampled tokens (nil: none was sampled).
    public var meanLogprob: Double?

    public init(text: String, meanLogprob: Double?) {
        self.text = text
        self.meanLogprob = meanLogprob
    }
}

/// Every candidate's answer and scores, and the groups of equivalent answers.
public struct Scored {
    /// The final answer of each candidate, as the accuracy reward extracts it.
    public var answers: [ParsedAnswer?]
    /// Groups of equivalent answers, in order of first appearance; members are candidate indices.
    public var groups: [(answer: ParsedAnswer, members: [Int])]
    /// Per candidate, (scorer, score or nil) in the order of the weights, and the weighted total
    /// over the scores present (nil when none is).
    public var scores: [[(name: String, value: Double?)]]
    public var totals: [Double?]

    /// The group each candidate's answer belongs to (nil: no answer).
    public func group(of i: Int) -> Int? { groups.firstIndex { $0.members.contains(i) } }
}

public enum Selection {

    /// Scores every candidate with the built-in reference-free scorers (`weights`, in report
    /// order) and the custom ones, which carry their own weights; a custom scorer named like a
    /// built-in one replaces it (a built-in weighted 0 is reported but adds nothing).
    public static func score(_ candidates: [CandidateText], prompt: String? = nil,
                             weights: [(name: String, weight: Double)] = InferRequest.defaultScorerWeights,
                             custom: [Scorer] = []) -> Scored {
        let answers = candidates.map { Answers.finalAnswer(in: $0.text) }
        let groups = Answers.groups(answers)
        var config = RewardConfig()
        config.rewards = ["format", "reflection"]
        config.rewardWeights = [1, 1]
        // No reference at inference: reflection is paid whatever the answer.
        config.reflectionRequiresCorrect = false
        let rewards = RewardSet(config: config)
        let n = candidates.count
        var order = weights
        for s in custom where !order.contains(where: { $0.name == s.name }) { order.append((s.name, s.weight)) }
        let customWeight = Dictionary(custom.map { ($0.name, $0.weight) }, uniquingKeysWith: { a, _ in a })
        var scores: [[(name: String, value: Double?)]] = []
        var totals: [Double?] = []
        for (i, c) in candidates.enumerated() {
            let input = RewardInput(completion: c.text, prompt: prompt)
            let builtIn = rewards.score(input)
            var row: [(name: String, value: Double?)] = []
            var total: Double? = nil
            for (name, weight) in order {
                let v: Double?
                if let s = custom.first(where: { $0.name == name }) {
                    v = s.score(input).flatMap { $0.isFinite ? $0 : nil }
                } else {
                    switch name {
                    case "format", "reflection": v = builtIn[name]?.value
                    case "agreement":
                        // The share of the other candidates whose answer is equivalent (0 without one).
                        if n < 2 { v = nil } else if let g = groups.first(where: { $0.members.contains(i) }) {
                            v = Double(g.members.count - 1) / Double(n - 1)
                        } else {
                            v = 0
                        }
                    case "mean_logprob": v = c.meanLogprob
                    default: v = nil
                    }
                }
                row.append((name, v))
                let w = customWeight[name] ?? weight
                if let v { total = (total ?? 0) + w * v }
            }
            scores.append(row)
            totals.append(total.flatMap { $0.isFinite ? $0 : nil })
        }
        return Scored(answers: answers, groups: groups, scores: scores, totals: totals)
    }

    /// Majority vote: the group with the most members; a tie goes to the group whose members'
    /// mean logprob is highest, then to the group seen first. Returns the group and, within it,
    /// the candidate with the highest mean logprob; without any answer, no group and the
    /// candidate with the highest mean logprob.
    public static func vote(_ candidates: [CandidateText], _ scored: Scored) -> (group: Int?, candidate: Int) {
        func lp(_ i: Int) -> Double { candidates[i].meanLogprob ?? -.infinity }
        func best(_ members: [Int]) -> Int {
            members.reduce(members[0]) { lp($1) > lp($0) ? $1 : $0 }
        }
        guard !scored.groups.isEmpty else { return (nil, candidates.isEmpty ? 0 : best(Array(candidates.indices))) }
        func meanLP(_ members: [Int]) -> Double { members.map(lp).reduce(0, +) / Double(members.count) }
        var winner = 0
        for (g, group) in scored.groups.enumerated().dropFirst() {
            let w = scored.groups[winner].members
            if group.members.count > w.count || (group.members.count == w.count && meanLP(group.members) > meanLP(w)) { winner = g }
        }
        return (winner, best(scored.groups[winner].members))
    }

    /// Best-of-n: the highest total; ties to the higher mean logprob, then the earlier candidate.
    /// A candidate without a total ranks last.
    public static func best(_ candidates: [CandidateText], _ scored: Scored) -> Int {
        var winner = 0
        for i in candidates.indices.dropFirst() {
            let a = scored.totals[i] ?? -.infinity, b = scored.totals[winner] ?? -.infinity
            let la = candidates[i].meanLogprob ?? -.infinity, lb = candidates[winner].meanLogprob ?? -.infinity
            if a > b || (a == b && la > lb) { winner = i }
        }
        return winner
    }

    /// {answer: count} in order of first appearance.
    public static func votes(_ scored: Scored) -> JSONValue {
        .object(scored.groups.map { (label($0.answer), .int(Int64($0.members.count))) })
    }

    /// An answer as results report it: its canonical text, with its variable when it has one
    /// ("x = 5" and "y = 5" are different answers, and different vote keys).
    public static func label(_ a: ParsedAnswer) -> String { a.variable.map { "\($0) = \(a.text)" } ?? a.text }
}
