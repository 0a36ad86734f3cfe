import PonderBase
import PonderJSON
import PonderPipeline
import PonderRewards
#if canImport(Glibc)
import Glibc
#endif

// Pipelines (include/ponder.h, "Pipelines").

let pipelines = HandleTable<Pipeline>(kind: "pipeline")

@_cdecl("ponder_default_config_json")
public func ponder_default_config_json() -> UnsafeMutablePointer<CChar>? {
    try? cStringCopy(prettyJSON(PipelineConfig.defaults))
}

@_cdecl("ponder_pipeline_validate")
public func ponder_pipeline_validate(_ config: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_errors_json")
        let problems: [(path: String, message: String)]
        do {
            problems = PipelineConfig.validate(try parseJSON(config, "config_json"))
        } catch let e as PonderError where e.code == .parse || e.jsonPath != nil {
            problems = [(e.jsonPath ?? "<root>", e.detail ?? e.message)]
        }
        out.pointee = try cStringCopy(PipelineConfig.errorsJSON(problems).serialized())
    }
}

@_cdecl("ponder_pipeline_create")
public func ponder_pipeline_create(_ config: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_pipeline")
        out.pointee = pipelines.insert(try Pipeline.create(json: parseJSON(config, "config_json")))
    }
}

@_cdecl("ponder_pipeline_resume")
public func ponder_pipeline_resume(_ dir: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_pipeline")
        out.pointee = pipelines.insert(try Pipeline.resume(dir: cString(dir, "run_dir")))
    }
}

@_cdecl("ponder_pipeline_run")
public func ponder_pipeline_run(_ p: OpaquePointer?) -> Int32 {
    guarded { try pipelines.get(p).run() }
}

@_cdecl("ponder_pipeline_run_stage")
public func ponder_pipeline_run_stage(_ p: OpaquePointer?, _ index: Int32) -> Int32 {
    guarded { try pipelines.get(p).runStage(Int(index)) }
}

@_cdecl("ponder_pipeline_status")
public func ponder_pipeline_status(_ p: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_json")
        out.pointee = try cStringCopy(pipelines.get(p).status().serialized())
    }
}

public typealias EventCallbackC = @convention(c) (UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Bool

@_cdecl("ponder_pipeline_set_event_callback")
public func ponder_pipeline_set_event_callback(_ p: OpaquePointer?, _ fn: EventCallbackC?, _ user: UnsafeMutableRawPointer?) -> Int32 {
    guarded {
        let pipeline = try pipelines.get(p)
        let u = UserPointer(p: user)
        pipeline.onEvent = fn.map { f in { event in event.serialized().withCString { f($0, u.p) } } }
    }
}

@_cdecl("ponder_pipeline_register_reward")
public func ponder_pipeline_register_reward(_ p: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ fn: RewardFnC?,
                                            _ user: UnsafeMutableRawPointer?) -> Int32 {
    guarded {
        let pipeline = try pipelines.get(p)
        let n = try cString(name, "name")
        guard let fn else { throw PonderError(.misuse, "fn is NULL") }
        try pipeline.registerReward(n, cReward(fn, UserPointer(p: user)))
    }
}

@_cdecl("ponder_pipeline_cancel")
public func ponder_pipeline_cancel(_ p: OpaquePointer?) -> Int32 {
    guarded { try pipelines.get(p).cancel() }
}

@_cdecl("ponder_pipeline_free")
public func ponder_pipeline_free(_ p: OpaquePointer?) {
    // A run still going on another thread keeps the pipeline alive and stops at its next step.
    if let pipeline = try? pipelines.get(p) { pipeline.cancel() }
    pipelines.remove(p)
}
