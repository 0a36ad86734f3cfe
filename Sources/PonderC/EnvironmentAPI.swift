import PonderBase
import PonderEnvironments
import PonderJSON
import PonderPipeline
import PonderTrain

import Glibc

typealias EnvCreateC = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32
typealias EnvResetC = @convention(c) (UnsafeMutableRawPointer?, UInt64, UnsafePointer<CChar>?, UnsafeMutableRawPointer?,
                                      UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
typealias EnvStepC = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UnsafeMutableRawPointer?,
                                     UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
typealias EnvFreeC = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void

/// A copy of the caller's `ponder_environment`. Every member is a pointer (four function
/// pointers, the action delimiter, `user`), so the struct is six pointer-sized slots in order,
/// read as such rather than through a Swift mirror whose layout C does not promise.
struct CEnvironment: @unchecked Sendable {
    let create: EnvCreateC?
    let reset: EnvResetC
    let step: EnvStepC
    let free: EnvFreeC?
    let actionEnd: String?
    let user: UnsafeMutableRawPointer?
    /// The options of the config that names the environment, serialized for `create`.
    var options = "null"

    init(_ p: UnsafeRawPointer?) throws {
        guard let p else { throw PonderError(.misuse, "environment is NULL") }
        let slots = p.assumingMemoryBound(to: UnsafeRawPointer?.self)
        guard let reset = slots[1], let step = slots[2] else { throw PonderError(.misuse, "environment: reset and step are required") }
        create = slots[0].map { unsafeBitCast($0, to: EnvCreateC.self) }
        self.reset = unsafeBitCast(reset, to: EnvResetC.self)
        self.step = unsafeBitCast(step, to: EnvStepC.self)
        free = slots[3].map { unsafeBitCast($0, to: EnvFreeC.self) }
        if let d = slots[4] {
            let s = try cString(d.assumingMemoryBound(to: CChar.self), "environment.action_end")
            actionEnd = s.isEmpty ? nil : s
        } else {
            actionEnd = nil
        }
        user = slots[5].map { UnsafeMutableRawPointer(mutating: $0) }
    }

    /// The environment as a trainer or pipeline registers it: episodes made with `options`.
    var maker: EnvironmentMaker {
        { [self] options in
            var c = self
            c.options = options.serialized()
            return { try CEnvironmentInstance(c) }
        }
    }
}

/// One episode's environment behind the caller's callbacks. A failing status, a NULL or
/// malformed answer becomes an error naming the callback (the episode fails, the run goes on).
final class CEnvironmentInstance: Environment {
    let c: CEnvironment
    var state: UnsafeMutableRawPointer?

    /// create succeeded (or there is none): free is owed.
    var live = false

    init(_ c: CEnvironment) throws {
        self.c = c
        if let create = c.create {
            var out: UnsafeMutableRawPointer?
            let status = c.options.withCString { create($0, c.user, &out) }
            guard status == 0 else { throw PonderError(.invalidArgument, "create returned status \(status)") }
            state = out
        }
        live = true
    }

    deinit { if live { c.free?(state, c.user) } }

    var actionEnd: String? { c.actionEnd }

    /// The string a callback left in its out parameter, freed here (it is the library's now).
    func take(_ what: String, _ status: Int32, _ out: UnsafeMutablePointer<CChar>?) throws -> String {
        defer { free(out) }
        let text = try out.map { try cString(UnsafePointer($0), what) }
        guard status == 0 else {
            throw PonderError(.invalidArgument, "returned status \(status)\(text.map { ": " + String($0.prefix(500)) } ?? "")")
        }
        guard let text else { throw PonderError(.invalidArgument, "returned no string") }
        return text
    }

    func reset(seed: UInt64, task: JSONValue) throws -> String {
        var out: UnsafeMutablePointer<CChar>?
        let status = task.serialized().withCString { c.reset(state, seed, $0, c.user, &out) }
        return try take("reset", status, out)
    }

    func step(_ action: String) throws -> EnvironmentStep {
        var out: UnsafeMutablePointer<CChar>?
        let status = action.withCString { c.step(state, $0, c.user, &out) }
        let text = try take("step", status, out)
        return try EnvironmentStep(json: JSONValue.parse(text, what: "step's JSON"))
    }
}

@_cdecl("ponder_string_new")
public func ponder_string_new(_ s: UnsafePointer<CChar>?) -> UnsafeMutablePointer<CChar>? {
    guard let s else { return nil }
    return strdup(s)
}

@_cdecl("ponder_trainer_register_environment")
public func ponder_trainer_register_environment(_ t: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ env: UnsafeRawPointer?) -> Int32 {
    guarded {
        let box = try trainers.get(t)
        let n = try cString(name, "name")
        let maker = try CEnvironment(env).maker
        try box.exclusive("ponder_trainer_register_environment") { try $0.registerEnvironment(n, maker) }
    }
}

/// The earlier name, kept for callers built against it.
@_cdecl("ponder_trainer_set_environment")
public func ponder_trainer_set_environment(_ t: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ env: UnsafeRawPointer?) -> Int32 {
    ponder_trainer_register_environment(t, name, env)
}

@_cdecl("ponder_pipeline_register_environment")
public func ponder_pipeline_register_environment(_ p: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ env: UnsafeRawPointer?) -> Int32 {
    guarded {
        let pipeline = try pipelines.get(p)
        let n = try cString(name, "name")
        try pipeline.registerEnvironment(n, try CEnvironment(env).maker)
    }
}
