import PonderJSON
import PonderPipeline

/// Pipeline configs (parse and validate only: running needs models and time). Promises checked:
/// validate() finds a problem exactly when the config is refused, and a valid config's resolved
/// form (config.resolved.json, what `ponder resume` reads) reads back to itself.
let pipelineConfigTarget = optionsTarget("pipeline_config") { v in
    let problems = PipelineConfig.validate(v)
    let config: PipelineConfig
    do {
        config = try PipelineConfig(json: v)
    } catch {
        if problems.isEmpty { bug("PipelineConfig refused a config validate() accepted: \(error)") }
        throw error
    }
    if !problems.isEmpty { bug("validate() found \(problems.count) problems in a config PipelineConfig accepted") }
    let resolved = config.resolvedJSON
    let again = try PipelineConfig(json: JSONValue.parse(prettyJSON(resolved)))
    if again.resolvedJSON != resolved { bug("config.resolved.json does not read back to the same config") }
}
