import PonderBase
import PonderEnvironments
import PonderJSON
import PonderModel

/// The one batched-generation path of the trainers and the evaluator: GRPO's rollout,
/// evaluation (greedy, sampled, episodes) and rejection sampling all decode their prompts here.
///
/// Prompts are rendered by the model's one prompt renderer and decoded `perBatch` at a time in
/// one grouped decode each. The j-th sample of prompt i (its index in `prompts`) is drawn with
/// `request.seed + i·n + j`: a function of the pass's seed (GRPO's is one of the run's seed and
/// step) and the prompt's index only, so what a prompt gets does not change with the batch
/// size or with which process decodes it.
struct BatchedGeneration {
    var request: GenerateRequest
    /// Prompt tokens kept (the end) within the context the completions leave.
    var maxPromptTokens: Int
    /// Prompts decoded together.
    var perBatch: Int
    /// Multi-turn episodes with this environment (nil: one turn).
    var environment: (config: EnvironmentConfig, factory: EnvironmentFactory)?
    /// The environment's reset seed of each prompt (default: its index); a prompt's n episodes
    /// share it, so a group shares its task and baseline.
    var episodeSeeds: [UInt64]?

    struct Output {
        /// Per prompt, the ids decoded from (an environment's first observation replaces the question).
        var promptIDs: [[Int32]] = []
        /// Prompt k's j-th completion at k·n + j.
        var completions: [Completion] = []
        /// One per completion, with an environment.
        var episodes: [Episodes.Episode]?
        var decodeSeconds = 0.0

        /// What rewards score: the model's final turn of an episode, else the whole completion.
        var finalTexts: [String] { episodes?.map(\.finalTurn) ?? completions.map(\.text) }

        /// Prompt k's n completions.
        func group(_ k: Int, n: Int) -> ArraySlice<Completion> { completions[(k * n)..<((k + 1) * n)] }
    }

    init(request: GenerateRequest, maxNewTokens: Int, maxPromptLength: Int, model: LlamaModel, perBatch: Int) {
        self.request = request
        self.request.maxTokens = maxNewTokens
        self.request.maxTokensGiven = true
        maxPromptTokens = max(1, min(maxPromptLength, model.config.maxPositions - maxNewTokens))
        self.perBatch = max(1, perBatch)
    }

    /// Decodes every prompt. `shouldStop` is asked before each batch (true: PonderError(.cancelled));
    /// `progress(done)` is told the prompts decoded after each batch.
    func run(model: LlamaModel, prompts: [GRPOPrompt], shouldStop: () -> Bool = { false },
             progress: (Int) -> Void = { _ in }) throws -> Output {
        let n = request.n, seed = request.seed ?? 0
        var out = Output()
        if environment != nil { out.episodes = [] }
        var start = 0
        while start < prompts.count {
            if shouldStop() { throw PonderError(.cancelled, "cancelled after \(start) of \(prompts.count) prompts") }
            let chunk = Array(prompts[start..<min(prompts.count, start + perBatch)])
            var asked = chunk
            var episodes: Episodes?
            if let (config, factory) = environment {
                let eps = Episodes(config: config, tokenizer: model.tokenizer, maxTokens: request.maxTokens, count: chunk.count * n)
                let seeds = chunk.indices.map { episodeSeeds?[start + $0] ?? UInt64(start + $0) }
                let firsts = eps.reset(factory: factory, tasks: chunk.map(\.task), seeds: seeds, groupSize: n)
                for (k, first) in firsts.enumerated() where first != nil && first != chunk[k].text { asked[k] = chunk[k].asking(first!) }
                episodes = eps
            }
            let ids = try asked.map { try model.promptTokens(.chat($0.messages), keepLast: maxPromptTokens) }
            let gen = try model.generate(prompts: ids, request, steering: episodes?.steering,
                                         seeds: chunk.indices.map { seed &+ UInt64((start + $0) * n) })
            episodes?.finish(gen.completions)
            out.promptIDs += ids
            out.completions += gen.completions
            out.episodes? += episodes?.episodes ?? []
            out.decodeSeconds += gen.decodeSeconds
            start += chunk.count
            progress(start)
        }
        return out
    }
}
