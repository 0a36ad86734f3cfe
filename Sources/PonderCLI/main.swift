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
// validated in one place (GenerateRequest / ModelOptions).

let usage = """
usage:
  ponder generate --model PATH [--adapter PEFT_DIR] (--prompt TEXT | --messages JSON) [--chat] [--max-tokens N]
                  [--min-tokens N] [--temperature T] [--top-p P] [--top-k K] [--min-p P] [--repetition-penalty R]
                  [--seed S] [--stop TEXT]... [--n N] [--threads N] [--json]
  ponder infer --model PATH --prompt TEXT [--chat] --strategy single|vote|best_of_n|reflect [--n K] [--seed N]
               [any generate option] [--scorer-weights JSON] [--cues TEXT]... [--max-reflections N]
               [--min-thinking-tokens N] [--max-thinking-tokens N] [--think-end TEXT] [--force-answer TEXT] [--json]
  ponder tokenize --model PATH --text TEXT [--no-special] [--json]
  ponder sft CONFIG.json            (supervised fine-tuning; config keys as in ponder.h)
  ponder grpo CONFIG.json           (GRPO with accuracy/format/reflection rewards; kind "grpo")
  ponder train CONFIG.json          (the trainer the config's "kind" names)
  ponder convert IN OUT --to safetensors|gguf [--dtype f32|f16]
  ponder score [--rewards accuracy,format,reflection] [--reflection-mode guarded|paper] [--format-mode strict|paper]
               [--reward-weights 1,1,1] [--options JSON]   (JSONL {"completion", "reference"?} on stdin)
  ponder version
""" + "\n" + pipelineUsage

func fail(_ message: String, code: Int32 = 2) -> Never {
    fputs("ponder: \(message)\n", stderr)
    exit(code)
}

/// flag → (request key, value kind)
enum Kind { case string, number, strings, flag, json }
let generateFlags: [String: (String, Kind)] = [
    "--prompt": ("prompt", .string), "--messages": ("messages", .json), "--chat": ("chat", .flag),
    "--max-tokens": ("max_tokens", .number), "--min-tokens": ("min_tokens", .number), "--temperature": ("temperature", .number),
    "--top-p": ("top_p", .number), "--top-k": ("top_k", .number), "--min-p": ("min_p", .number),
    "--repetition-penalty": ("repetition_penalty", .number), "--seed": ("seed", .number),
    "--stop": ("stop", .strings), "--n": ("n", .number), "--parse-special": ("parse_special", .json),
]
/// `ponder infer`: the generation flags plus InferRequest's keys, each its key in kebab-case.
let inferFlags = generateFlags.merging([
    "--strategy": ("strategy", .string), "--scorer-weights": ("scorer_weights", .json), "--cues": ("cues", .strings),
    "--max-reflections": ("max_reflections", .number), "--min-thinking-tokens": ("min_thinking_tokens", .number),
    "--max-thinking-tokens": ("max_thinking_tokens", .number), "--think-end": ("think_end", .string),
    "--force-answer": ("force_answer", .string),
]) { a, _ in a }

struct Parsed {
    var model: String?
    var adapter: String?
    var threads: Int?
    var json = false
    var fields: [(String, JSONValue)] = []
    var text: String?
    var noSpecial = false
}

func parse(_ args: ArraySlice<String>, flags: [String: (String, Kind)]) -> Parsed {
    var p = Parsed()
    var lists: [(String, [JSONValue])] = []  // repeatable flags, in order of first use
    var it = args.makeIterator()
    func next(_ flag: String) -> String {
        guard let v = it.next() else { fail("\(flag) needs a value") }
        return v
    }
    while let a = it.next() {
        switch a {
        case "--model": p.model = next(a)
        case "--adapter": p.adapter = next(a)
        case "--threads":
            guard let t = Int(next(a)) else { fail("--threads: expected an integer") }
            p.threads = t
        case "--json": p.json = true
        case "--text": p.text = next(a)
        case "--no-special": p.noSpecial = true
        case "-h", "--help": print(usage); exit(0)
        default:
            guard let (key, kind) = flags[a] else { fail("unknown option \(a)\n\(usage)") }
            switch kind {
            case .flag: p.fields.append((key, true))
            case .string: p.fields.append((key, .string(next(a))))
            case .strings:
                let v = JSONValue.string(next(a))
                if let k = lists.firstIndex(where: { $0.0 == key }) { lists[k].1.append(v) } else { lists.append((key, [v])) }
            case .number, .json:
                let v = next(a)
                do { p.fields.append((key, try JSONValue.parse(v, what: a))) } catch { fail("\(error)") }
            }
        }
    }
    for (key, values) in lists { p.fields.append((key, .array(values))) }
    return p
}

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
    guard let path = p.model else { fail("--model PATH is required") }
    var o = ModelOptions(path: path, threads: p.threads)
    o.adapter = p.adapter
    do { return try o.load() } catch { fail("\(error)", code: 1) }
}

let args = CommandLine.arguments
guard args.count >= 2 else { fail(usage) }
switch args[1] {
case "version":
    print(ponderVersion)
case "generate":
    let p = parse(args[2...], flags: generateFlags)
    let request: GenerateRequest
    do { request = try GenerateRequest(json: .object(p.fields)) } catch { fail("\(error)") }
    let model = loadModel(p)
    do {
        let result = try model.generate(request, onToken: printTokens(!p.json && request.n == 1))
        if p.json {
            print(result.json.serialized())
        } else if request.n == 1 {
            print("")
        } else {
            for (i, c) in result.completions.enumerated() { print("--- \(i) (\(c.finishReason.rawValue))\n\(c.text)") }
        }
        let t = result.json["timings"]!
        if !p.json {
            fputs("[prompt \(result.promptTokens) tokens, \(Int(t["prefill_tokens_per_second"]!.asDouble!)) tok/s prefill, \(Int(t["decode_tokens_per_second"]!.asDouble!)) tok/s decode]\n", stderr)
        }
    } catch { fail("\(error)", code: 1) }
case "infer":
    let p = parse(args[2...], flags: inferFlags)
    let request: InferRequest
    do { request = try InferRequest(json: .object(p.fields)) } catch { fail("\(error)") }
    let model = loadModel(p)
    do {
        let stream = !p.json && request.generation.n == 1
        let result = try model.infer(request, onToken: printTokens(stream))
        if p.json {
            print(result.json.serialized())
        } else {
            if stream { print("") }
            let json = result.json
            print("answer: \(json["answer"]?.asString ?? "(none)")")
            if let votes = json["votes"] { print("votes: \(votes.serialized())") }
            if let r = json["reflections"]?.asArray, !r.isEmpty { print("reflections: \(JSONValue.array(r).serialized())") }
            fputs("[\(request.strategy.rawValue), \(result.candidates.count) samples, \(result.tokensSpent) tokens, \(Int(result.totalSeconds * 1000)) ms]\n", stderr)
        }
    } catch { fail("\(error)", code: 1) }
case "tokenize":
    let p = parse(args[2...], flags: [:])
    guard let text = p.text else { fail("--text TEXT is required") }
    let model = loadModel(p)
    let ids = model.tokenizer.encode(text, parseSpecial: !p.noSpecial)
    if p.json {
        print(JSONValue.object([("ids", .array(ids.map { .int(Int64($0)) }))]).serialized())
    } else {
        print(ids.map(String.init).joined(separator: " "))
    }
case "sft":
    guard args.count == 3 else { fail("usage: ponder sft CONFIG.json") }
    do {
        let text = try readFile(args[2])
        let config = try SFTConfig(json: text.withUnsafeBytes { try JSONValue.parse($0, what: args[2]) })
        let trainer = try SFTTrainer(config: config)
        fputs("sft: \(trainer.train.count) training sequences, \(trainer.eval.count) eval\n", stderr)
        try runWithProgress(trainer, name: "sft")
    } catch { fail("\(error)", code: 1) }
case "grpo", "train":
    // `ponder grpo CONFIG`: a GRPO run (kind "grpo"); `ponder train CONFIG`: whatever "kind" says.
    guard args.count == 3 else { fail("usage: ponder \(args[1]) CONFIG.json") }
    do {
        let text = try readFile(args[2])
        var json = try text.withUnsafeBytes { try JSONValue.parse($0, what: args[2]) }
        if args[1] == "grpo", case var .object(f) = json, json["kind"] == nil {
            f.append(("kind", "grpo"))
            json = .object(f)
        }
        let trainer = try makeTrainer(json: json)
        try runWithProgress(trainer, name: args[1])
    } catch { fail("\(error)", code: 1) }
case "score":
    scoreCommand(args[2...])
case "run", "validate", "resume", "eval", "report":
    pipelineCommand(args)
case "bench-matmul":
    // Weight-streaming throughput of linear() at decode shapes (SmolLM2's), for bench/.
    benchMatmul()
case "convert":
    guard args.count >= 4 else { fail("usage: ponder convert IN OUT --to safetensors|gguf [--dtype f32|f16]") }
    var fields: [(String, JSONValue)] = [("path", .string(args[3]))]
    var i = 4
    while i < args.count {
        guard i + 1 < args.count else { fail("\(args[i]) needs a value") }
        switch args[i] {
        case "--to": fields.append(("format", .string(args[i + 1])))
        case "--dtype": fields.append(("dtype", .string(args[i + 1])))
        default: fail("unknown option \(args[i])")
        }
        i += 2
    }
    do {
        let options = try ExportOptions(json: .object(fields))
        let model = try LlamaModel.load(path: args[2])
        try model.export(options)
        fputs("wrote \(options.path) (\(options.format.rawValue), \(options.dtype.rawValue))\n", stderr)
    } catch { fail("\(error)", code: 1) }
default:
    fail("unknown command \(args[1])\n\(usage)")
}
