import PonderBase
import PonderJSON
import PonderModel
import PonderText

/// The JSON a supervised fine-tuning run takes (C ABI, CLI and Python alike): the keys every
/// trainer shares (`run`) plus "data" and SFT's batch keys in "training". Option names follow
/// Hugging Face's TrainingArguments where the meaning is the same.
public struct SFTConfig: Sendable, TrainerKeys {
    public var run: TrainingRun.Config
    public var train: DataSource
    public var eval: DataSource?
    public var evalFraction = 0.0
    public var maxLength = 256
    public var packing = false
    public var system: String?
    public var batchSize = 4
    public var gradientAccumulationSteps = 1
    /// Train on the examples as plain text (Datasets.rawText), every token a target: a
    /// pipeline's pretrain stage. Not a JSON key: the stage type says it.
    public var rawText = false

    public init(json: JSONValue) throws {
        let r = JSONReader(json)
        let t = r.object("training")
        run = TrainingRun.Config(root: r, training: t, kind: "sft")
        let data = DataSource.read(r)
        (train, eval, system) = (data.train, data.eval, data.system)
        readOwnKeys(data: data.data, training: t)
        try r.finish()
    }

    /// A config from parts read elsewhere (a pipeline stage); the `read` calls add SFT's keys.
    public init(run: TrainingRun.Config, train: DataSource, eval: DataSource?, system: String?) {
        (self.run, self.train, self.eval, self.system) = (run, train, eval, system)
    }

    /// SFT's keys of a "data" object (beside train, eval and system).
    public mutating func read(data d: JSONReader) {
        evalFraction = d.double("eval_fraction", "a number in [0, 0.9]") { $0 >= 0 && $0 <= 0.9 } ?? evalFraction
        maxLength = d.int("max_length", in: 2...1_048_576) ?? maxLength
        packing = d.bool("packing") ?? packing
    }

    /// SFT's keys of a "training" object (beside the shared ones).
    public mutating func read(training t: JSONReader) {
        batchSize = t.int("batch_size", in: 1...4096) ?? batchSize
        gradientAccumulationSteps = t.int("gradient_accumulation_steps", in: 1...4096) ?? gradientAccumulationSteps
    }

    public var dataJSON: [(String, JSONValue)] {
        [("eval_fraction", .double(evalFraction)), ("max_length", .int(Int64(maxLength))), ("packing", .bool(packing))]
    }

    public var trainingJSON: [(String, JSONValue)] {
        [("batch_size", .int(Int64(batchSize))), ("gradient_accumulation_steps", .int(Int64(gradientAccumulationSteps)))]
    }
}
