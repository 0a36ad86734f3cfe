import PonderBase
import PonderJSON
import PonderModel
import PonderRewards
import PonderTrain

// Trainer handles (include/ponder.h, "Training").

/// One handle type for every trainer kind (the calls below go through the Trainer protocol);
/// boxed because HandleTable holds class instances and `any Trainer` is not one.
final class TrainerBox {
    let trainer: any Trainer
    private var busy = false
    private let lock = Lock()
    init(_ trainer: any Trainer) { self.trainer = trainer }

    /// Runs `body` as the trainer's one call in progress. A second call while it runs — from one
    /// of the trainer's own callbacks (a reward stepping the trainer) or from another thread —
    /// is MISUSE, never a nested step.
    func exclusive<T>(_ what: String, _ body: (any Trainer) throws -> T) throws -> T {
        try lock.locked {
            if busy {
                throw PonderError(.misuse, "\(what): the trainer is inside another call (re-entered from its own callback, or used from two threads at once)")
            }
            busy = true
        }
        defer { lock.locked { busy = false } }
        return try body(trainer)
    }
}

let trainers = HandleTable<TrainerBox>(kind: "trainer")

@_cdecl("ponder_trainer_create")
public func ponder_trainer_create(_ config: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_trainer")
        out.pointee = trainers.insert(TrainerBox(try makeTrainer(json: parseJSON(config, "config_json"))))
    }
}

@_cdecl("ponder_trainer_free")
public func ponder_trainer_free(_ t: OpaquePointer?) { trainers.remove(t) }

@_cdecl("ponder_trainer_step")
public func ponder_trainer_step(_ t: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        try trainers.get(t).exclusive("ponder_trainer_step") { tr in
            let r = tr.training
            guard r.step < r.totalSteps else { throw PonderError(.misuse, "training is finished (\(r.totalSteps) steps)") }
            let m = try tr.trainStep()
            if let out { out.pointee = try cStringCopy(m.json.serialized()) }
        }
    }
}

public typealias MetricsCallbackC = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Bool

@_cdecl("ponder_trainer_run")
public func ponder_trainer_run(_ t: OpaquePointer?, _ cb: MetricsCallbackC?, _ user: UnsafeMutableRawPointer?,
                               _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        try trainers.get(t).exclusive("ponder_trainer_run") { tr in
            let last = try tr.run { m in cb.map { f in m.json.serialized().withCString { f($0, user) } } ?? true }
            if let out {
                let r = tr.training
                var f: [(String, JSONValue)] = [("global_step", .int(Int64(r.step))), ("total_steps", .int(Int64(r.totalSteps)))]
                if let last { f.append(("last", last.json)) }
                if let d = r.config.outputDir, let c = Checkpoints.latest(in: d) { f.append(("checkpoint", .string(c))) }
                out.pointee = try cStringCopy(JSONValue.object(f).serialized())
            }
        }
    }
}

@_cdecl("ponder_trainer_evaluate")
public func ponder_trainer_evaluate(_ t: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_json")
        try trainers.get(t).exclusive("ponder_trainer_evaluate") { tr in
            let metrics = try tr.evaluationMetrics()
            out.pointee = try cStringCopy(JSONValue.object([("step", .int(Int64(tr.training.step)))] + metrics).serialized())
        }
    }
}

@_cdecl("ponder_trainer_save")
public func ponder_trainer_save(_ t: OpaquePointer?, _ dir: UnsafePointer<CChar>?,
                                _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let box = try trainers.get(t)
        let d = try cString(dir, "dir")
        try box.exclusive("ponder_trainer_save") { tr in
            let path = try tr.training.save(to: d)
            if let out { out.pointee = try cStringCopy(path) }
        }
    }
}

@_cdecl("ponder_trainer_model")
public func ponder_trainer_model(_ t: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_model")
        out.pointee = models.insert(try trainers.get(t).trainer.training.model)
    }
}

public typealias RewardFnC = @convention(c) (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?,
                                             UnsafeMutableRawPointer?) -> Double

/// The caller's pointer, carried into a Sendable closure: the header makes the caller
/// responsible for `user` living as long as the trainer (and for what it points to).
struct UserPointer: @unchecked Sendable { let p: UnsafeMutableRawPointer? }

/// A C reward as a Swift one, for every place that plugs one in (trainer, pipeline, inference
/// scorers): NULL for a missing prompt or reference; NaN or infinity is "no score".
func cReward(_ fn: RewardFnC, _ u: UserPointer) -> CustomReward {
    { input in
        func call(_ p: UnsafePointer<CChar>?) -> Double {
            input.completion.withCString { c in
                if let ref = input.reference { return ref.withCString { fn(p, c, $0, u.p) } }
                return fn(p, c, nil, u.p)
            }
        }
        let v = input.prompt.map { $0.withCString(call) } ?? call(nil)
        return v.isFinite ? v : nil
    }
}

@_cdecl("ponder_trainer_register_reward")
public func ponder_trainer_register_reward(_ t: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ fn: RewardFnC?,
                                           _ user: UnsafeMutableRawPointer?) -> Int32 {
    guarded {
        let box = try trainers.get(t)
        let n = try cString(name, "name")
        guard let fn else { throw PonderError(.misuse, "fn is NULL") }
        try box.exclusive("ponder_trainer_register_reward") { try $0.registerReward(n, cReward(fn, UserPointer(p: user))) }
    }
}

/// The earlier name, kept for callers built against it.
@_cdecl("ponder_trainer_set_reward")
public func ponder_trainer_set_reward(_ t: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ fn: RewardFnC?,
                                      _ user: UnsafeMutableRawPointer?) -> Int32 {
    ponder_trainer_register_reward(t, name, fn, user)
}
