import PonderBase
import PonderEnvironments
import PonderJSON
import PonderTrain

// Agent environments: what a model writes reaches the calculator's parser and the checker's
// answer extraction; what a host's callback returns reaches the step parser; a config's
// "environment" object reaches its reader. None may trap, hang or return nonsense.

/// The input up to its first NUL is model text (a tool call's expression, an action); the rest is
/// a step's JSON as a host returns it, then an "environment" config object after a second NUL.
let environmentTarget = FuzzTarget(name: "environment") { data in
    let parts = data.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
    let text = String(decoding: parts[0], as: UTF8.self)
    do {
        let v = try Calculator.evaluate(text)
        guard v.den > 0, Calculator.gcd(v.num.magnitude, v.den.magnitude) == 1 else { bug("calculator: \(v.num)/\(v.den) not in lowest terms") }
        // An integer result reads back as itself.
        if v.den == 1, (try? Calculator.evaluate(v.description)) != v { bug("calculator: \(v) does not read back") }
    } catch is Calculator.Failure {
    }
    let calc = CalculatorEnvironment()
    _ = try calc.reset(seed: 0, task: .object([("prompt", "q")]))
    let s = try calc.step(text)
    if !s.done && s.observation.isEmpty { bug("calculator: a tool call without an answer") }
    let checker = CheckerEnvironment()
    _ = try checker.reset(seed: 0, task: .object([("prompt", "q"), ("reference", "#### 42")]))
    for _ in 0..<4 {
        let c = try checker.step(text)
        if let r = c.reward, !(0...1).contains(r) { bug("checker: reward \(r)") }
        if c.done { break }
    }
    if parts.count > 1, let v = try? JSONValue.parse(String(decoding: parts[1], as: UTF8.self)) {
        if let step = try? EnvironmentStep(json: v), let r = step.reward, !r.isFinite { bug("step: reward \(r) accepted") }
    }
    if parts.count > 2, let v = try? JSONValue.parse(String(decoding: parts[2], as: UTF8.self)) {
        let r = JSONReader(.object([("environment", v)]))
        if let e = r.object("environment") { _ = EnvironmentConfig.read(e) }
        try r.finish()
    }
}
