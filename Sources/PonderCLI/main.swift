import CPonderCPU
import PonderBase
import PonderJSON
import PonderModel
import PonderTrain
import PonderKernels
import PonderInference
#if canImport(Glibc)
import Glibc
#endif

// The CLI builds the same JSON requests the C ABI takes, so every option is parsed and
// validated in one place (GenerateRequest / ModelOptions); its commands and flags are the table
// in Commands.swift.

/// Streams a single sequence's text to stdout as it is generated (nil: nothing to stream).
func printTokens(_ on: Bool) -> TokenCallback? {
    guard on else { return nil }
    return { _, _, piece in
        fputs(piece, stdout)
        fflush(stdout)
        return true
    }
}

func loadModel(_ p: Parsed) -> LlamaModel {
    guard let path = p.model else { usageError("--model PATH is required", p.command) }
    // The options ponder_model_load takes, so the CLI and the C ABI read and check them alike.
    var fields: [(String, JSONValue)] = [("path", .string(path))]
    if let t = p.threads { fields.append(("threads", .int(Int64(t)))) }
    if let a = p.own["--adapter"] { fields.append(("adapter", .string(a))) }
    if let w = p.own["--weights"] { fields.append(("weights", .string(w))) }
    do { return try ModelOptions(json: .object(fields)).load() } catch { p.fail(error) }
}

func readJSONFile(_ path: String, _ p: Parsed) -> JSONValue {
    do { return try JSONValue.parse(file: path) } catch { p.fail(error) }
}

func generateCommand(_ p: Parsed) {
    let request: GenerateRequest
    do { request = try GenerateRequest(json: .object(p.fields)) } catch { p.fail(error) }
    let model = loadModel(p)
    do {
        let result = try model.generate(request, onToken: printTokens(!p.json && request.n == 1))
        if p.json {
            print(result.json.serialized())
            return
        }
        if request.n == 1 {
            print("")
        } else {
            for (i, c) in result.completions.enumerated() { print("--- \(i) (\(c.finishReason.rawValue))\n\(c.text)") }
        }
        let t = result.json["timings"]!
        fputs("[prompt \(result.promptTokens) tokens, \(Int(t["prefill_tokens_per_second"]!.asDouble!)) tok/s prefill, \(Int(t["decode_tokens_per_second"]!.asDouble!)) tok/s decode]\n", stderr)
        for note in result.notes { fputs("note: \(p.message(note))\n", stderr) }
    } catch { p.fail(error) }
}

func inferCommand(_ p: Parsed) {
    let request: InferRequest
    do { request = try InferRequest(json: .object(p.fields)) } catch { p.fail(error) }
    let model = loadModel(p)
    do {
        let stream = !p.json && request.generation.n == 1
        let result = try model.infer(request, onToken: printTokens(stream))
        if p.json {
            print(result.json.serialized())
            return
        }
        if stream { print("") }
        let json = result.json
        print("answer: \(json["answer"]?.asString ?? "(none)")")
        if let votes = json["votes"] { print("votes: \(votes.serialized())") }
        if let r = json["reflections"]?.asArray, !r.isEmpty { print("reflections: \(JSONValue.array(r).serialized())") }
        fputs("[\(request.strategy.rawValue), \(result.candidates.count) samples, \(result.tokensSpent) tokens, \(Int(result.totalSeconds * 1000)) ms]\n", stderr)
    } catch { p.fail(error) }
}

func tokenizeCommand(_ p: Parsed) {
    guard let text = p.own["--text"] else { usageError("--text TEXT is required", p.command) }
    let model = loadModel(p)
    let ids = model.tokenizer.encode(text, parseSpecial: p.own["--no-special"] == nil)
    if p.json {
        print(JSONValue.object([("ids", .array(ids.map { .int(Int64($0)) }))]).serialized())
    } else {
        print(ids.map(String.init).joined(separator: " "))
    }
}

/// `sft`, `grpo` (kind "grpo" unless the config names one) and `train` (the config's kind).
func trainCommand(_ p: Parsed) {
    let path = p.positional[0]
    var json = readJSONFile(path, p)
    if p.command.name == "grpo", case var .object(f) = json, json["kind"] == nil {
        f.append(("kind", "grpo"))
        json = .object(f)
    }
    if p.command.name == "sft", case var .object(f) = json, json["kind"] == nil {
        f.append(("kind", "sft"))
        json = .object(f)
    }
    do {
        let trainer = try makeTrainer(json: json)
        try runWithProgress(trainer, name: p.command.name)
    } catch { p.fail(error) }
}

func convertCommand(_ p: Parsed) {
    do {
        let options = try ExportOptions(json: .object([("path", .string(p.positional[1]))] + p.fields))
        let model = try LlamaModel.load(path: p.positional[0])
        try model.export(options)
        fputs("wrote \(options.path) (\(options.format.rawValue), \(options.dtype.rawValue))\n", stderr)
    } catch { p.fail(error) }
}

/// `ponder quantize IN OUT --type T`: convert to GGUF in a block type, as the C ABI's
/// ponder_model_save with {"format": "gguf", "dtype": T}.
func quantizeCommand(_ p: Parsed) {
    guard p.fields.contains(where: { $0.0 == "dtype" }) else { usageError("--type is required", p.command) }
    do {
        let options = try ExportOptions(json: .object([("path", .string(p.positional[1])), ("format", "gguf")] + p.fields))
        guard options.dtype.isBlockFormat else { throw PonderError.invalid("--type: \"\(options.dtype.rawValue)\" is not a block type (use convert)") }
        let t0 = monotonicSeconds()
        try LlamaModel.load(path: p.positional[0]).export(options)
        fputs("wrote \(options.path) (\(options.dtype.rawValue)) in \(Double(Int((monotonicSeconds() - t0) * 10)) / 10) s\n", stderr)
    } catch { p.fail(error) }
}

let args = CommandLine.arguments
// Before any kernel can run: an older CPU gets a named error, not SIGILL.
if let missing = Optional(String(cString: ponder_cpu_missing_features())), !missing.isEmpty {
    fail("this CPU lacks \(missing), which this build of Ponder was compiled for (x86-64 with AVX2 and FMA)", code: 1)
}
let first = args.count >= 2 ? args[1] : "help"
switch first {
case "--help", "-h":
    print(overview(), terminator: "")
case "--version":
    print(ponderVersion)
default:
    guard let c = command(first) else { usageError("unknown command \(first)\n\n" + overview()) }
    let p = parse(c, args.dropFirst(2))
    switch c.name {
    case "help":
        if p.own["--markdown"] != nil {
            print(markdownReference(), terminator: "")
        } else if let name = p.positional.first {
            guard let target = command(name) else { usageError("unknown command \(name)\n\n" + overview()) }
            print(target.help, terminator: "")
        } else {
            print(overview(), terminator: "")
        }
    case "version": print(ponderVersion)
    case "generate": generateCommand(p)
    case "infer": inferCommand(p)
    case "tokenize": tokenizeCommand(p)
    case "sft", "grpo", "train": trainCommand(p)
    case "score": scoreCommand(p)
    case "run", "validate", "resume", "eval", "report": pipelineCommand(p)
    case "convert": convertCommand(p)
    case "quantize": quantizeCommand(p)
    case "bench-matmul": benchMatmul()
    case "logits": logitsCommand(p)
    default: usageError("unknown command \(first)")
    }
}
