import PonderBase
import PonderJSON
import PonderRewards

/// An environment's answer to one action of the model.
public struct EnvironmentStep: Equatable, Sendable {
    /// Text appended to the conversation as the next user turn; empty appends nothing.
    public var observation: String
    /// This step's reward; nil when the step has none.
    public var reward: Double?
    /// The episode is over.
    public var done: Bool
    /// Anything the environment wants logged with the episode.
    public var info: JSONValue

    public init(observation: String = "", reward: Double? = nil, done: Bool, info: JSONValue = .null) {
        (self.observation, self.reward, self.done, self.info) = (observation, reward, done, info)
    }

    /// `{"observation", "reward", "done", "info"}` as C callbacks and Python return it; every key
    /// optional but "done". Errors name the key.
    public init(json v: JSONValue) throws {
        guard case let .object(fields) = v else { throw PonderError.invalid("step: expected a JSON object, got \(v.typeName)") }
        var done: Bool?
        self.init(done: false)
        for (k, x) in fields {
            switch k {
            case "observation":
                if case .null = x { continue }
                guard let s = x.asString else { throw PonderError.invalid("step.observation: expected a string or null, got \(x.typeName)") }
                observation = s
            case "reward":
                if case .null = x { continue }
                guard let d = x.asDouble, d.isFinite else { throw PonderError.invalid("step.reward: expected a finite number or null, got \(x.typeName)") }
                reward = d
            case "done":
                guard case let .bool(b) = x else { throw PonderError.invalid("step.done: expected true or false, got \(x.typeName)") }
                done = b
            case "info":
                info = x
            default:
                throw PonderError.invalid("step.\(k): unknown key (expected observation, reward, done, info)")
            }
        }
        guard let done else { throw PonderError.invalid("step.done: missing") }
        self.done = done
    }
}

/// One episode's world: the runtime makes one instance per trajectory (the G members of a group
/// start from the same task and seed), calls `reset` once, then `step` with each action of the
/// model until the step says done, the turn or token budget runs out, or an action ends without
/// the model asking for more. A thrown error ends that episode (never the run).
public protocol Environment: AnyObject {
    /// The first user turn for `task` (the data line: "prompt", "reference" and any other keys).
    func reset(seed: UInt64, task: JSONValue) throws -> String
    /// The environment's answer to `action`, the text of the model's turn.
    func step(_ action: String) throws -> EnvironmentStep
    /// Text that ends an action inside a turn (the calculator's "</tool>"): the runtime closes the
    /// model's turn there and asks the environment. nil: actions end with the turn.
    var actionEnd: String? { get }
}

extension Environment {
    public var actionEnd: String? { nil }
}

/// Makes the environment of one trajectory.
public typealias EnvironmentFactory = () throws -> Environment

/// A host's environment as it is registered on a trainer or pipeline: given the options of the
/// config that names it, the factory of its episodes.
public typealias EnvironmentMaker = (_ options: JSONValue) -> EnvironmentFactory

/// The built-in environments by name.
public enum BuiltinEnvironments {
    public static let names = ["calculator", "checker"]

    /// The factory for `name` with its options object (`options` nil: the defaults), or nil when
    /// `name` is not built in. Problems with the options go to the reader's document.
    public static func factory(_ name: String, options: JSONReader?) -> EnvironmentFactory? {
        switch name {
        case "calculator":
            let o = CalculatorEnvironment.Options(options)
            return { CalculatorEnvironment(options: o) }
        case "checker":
            let o = CheckerEnvironment.Options(options)
            return { CheckerEnvironment(options: o) }
        default:
            return nil
        }
    }
}

/// The task's "prompt" (the first user turn of the built-in environments).
func taskPrompt(_ task: JSONValue) throws -> String {
    guard let p = task["prompt"]?.asString else { throw PonderError.invalid("task: no \"prompt\" string") }
    return p
}

/// GRPO's "environment" object: the world that answers the model turn by turn.
public struct EnvironmentConfig: Sendable, Equatable {
    /// A built-in environment (BuiltinEnvironments.names) or one registered on the trainer.
    public var name: String
    /// Model turns (actions) per episode; the episode ends after the last one.
    public var maxTurns = 4
    /// Weight of the environment's reward (the sum of its step rewards) beside the reward set's.
    public var rewardWeight = 1.0
    /// The role of the environment's turns in the chat template.
    public var role = "user"
    /// The environment's own options: checked here for a built-in one, passed as they are to a
    /// registered one.
    public var options: JSONValue = .null

    public static let defaults = EnvironmentConfig(name: "")
    /// The chat roles an environment's turns may take: the templates' roles but the model's own
    /// (the role is written into the template's markup, so only known ones pass).
    public static let roles = ["user", "tool", "system"]

    public init(name: String) { self.name = name }

    /// Problems go to the reader's document; nil when "name" is missing.
    public static func read(_ e: JSONReader) -> EnvironmentConfig? {
        guard let name = e.string("name") else {
            if !e.hasErrors { e.fail("name", "required: a built-in environment (\(BuiltinEnvironments.names.joined(separator: ", "))) or one registered on the trainer") }
            return nil
        }
        var c = EnvironmentConfig(name: name)
        c.maxTurns = e.int("max_turns", in: 1...1000) ?? c.maxTurns
        c.rewardWeight = e.double("reward_weight", "a finite number in [-1e6, 1e6]", valid: { abs($0) <= maxRewardWeight }) ?? c.rewardWeight
        if let role = e.string("role") {
            if roles.contains(role) { c.role = role } else {
                e.fail("role", "expected \"user\", \"tool\" or \"system\", got \"\(role.prefix(40))\"")
            }
        }
        if BuiltinEnvironments.names.contains(name) {
            _ = BuiltinEnvironments.factory(name, options: e.object("options"))
        }
        c.options = e.value("options") ?? .null
        e.rejectUnknownKeys()
        return c
    }

    /// The factory of this environment: the built-in one of `name`, else the one `registered`
    /// (the caller's, on the trainer or pipeline) makes with this config's options.
    public func factory(registered: EnvironmentMaker?) throws -> EnvironmentFactory {
        let options = JSONReader(.object([("options", options)])).object("options")
        if let f = BuiltinEnvironments.factory(name, options: options) ?? registered?(self.options) { return f }
        throw PonderError(.misuse, "environment \"\(name)\" is not built in and none was registered under that name")
    }

    public var json: JSONValue {
        .object([("name", .string(name)), ("max_turns", .int(Int64(maxTurns))), ("reward_weight", .double(rewardWeight)),
                 ("role", .string(role)), ("options", options)])
    }
}
