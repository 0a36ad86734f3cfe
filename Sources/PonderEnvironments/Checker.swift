import PonderBase
import PonderJSON
import PonderRewards

/// `checker`: after each answer of the model (an action with a final answer, parsed as the
/// accuracy reward parses it), says whether it verifies — a cue, never the reference — and lets
/// the model reflect and answer again, up to `max_turns` answers. The episode's reward (its
/// "environment" reward) is `discount`^(answers − 1) for a right answer, 0 for none: reflection
/// driven by the environment rather than by keywords.
public final class CheckerEnvironment: Environment {
    public struct Options: Equatable, Sendable {
        public var maxTurns = 3
        public var discount = 0.7
        /// What the model is told after a wrong answer.
        public var retryCue = "Wrong answer. Check your work."
        init(_ r: JSONReader?) {
            guard let r else { return }
            maxTurns = r.int("max_turns", in: 1...100) ?? maxTurns
            discount = r.double("discount", "a number in [0, 1]", valid: { $0 >= 0 && $0 <= 1 }) ?? discount
            retryCue = r.string("retry_cue") ?? retryCue
            r.rejectUnknownKeys()
        }
        public init() {}
    }

    let options: Options
    var gold: ParsedAnswer?
    var answers = 0

    public init(options: Options = Options()) { self.options = options }

    public func reset(seed: UInt64, task: JSONValue) throws -> String {
        guard let ref = task["reference"]?.asString else { throw PonderError.invalid("task: the checker needs a \"reference\"") }
        guard let g = Answers.goldAnswer(in: ref) else { throw PonderError.invalid("task: the reference \"\(ref.prefix(80))\" has no answer the checker can parse") }
        gold = g
        answers = 0
        return try taskPrompt(task)
    }

    public func step(_ action: String) throws -> EnvironmentStep {
        guard let gold else { throw PonderError(.misuse, "checker: step before reset") }
        guard let answer = Answers.finalAnswer(in: action) else {
            return EnvironmentStep(reward: 0, done: true, info: .object([("reason", "no answer")]))
        }
        answers += 1
        if answer.equivalent(to: gold) {
            var r = 1.0
            for _ in 1..<answers { r *= options.discount }
            return EnvironmentStep(reward: r, done: true, info: .object([("answers", .int(Int64(answers)))]))
        }
        if answers >= options.maxTurns {
            return EnvironmentStep(reward: 0, done: true, info: .object([("answers", .int(Int64(answers)))]))
        }
        return EnvironmentStep(observation: options.retryCue, done: false)
    }
}
