import PonderBase
import PonderJSON
#if canImport(Glibc)
import Glibc
#endif

// The one table of the CLI's commands and flags: parsing, `--help`, the overview and the
// README's CLI section (`ponder help --markdown`, kept equal by tests/python/test_cli.py) all
// come from it.

/// How a flag's value becomes JSON: a string, a JSON value (numbers, objects), a repeatable
/// string (collected into an array), or a switch (true when present).
enum Kind { case string, json, strings, flag }

struct CLIFlag {
    let name: String
    /// The value's placeholder in usage ("N", "PATH"); nil for a switch.
    let value: String?
    /// The request or config key the value becomes; nil for flags the command reads itself.
    let key: String?
    let kind: Kind
    let help: String

    init(_ name: String, _ value: String?, key: String? = nil, _ kind: Kind, _ help: String) {
        (self.name, self.value, self.key, self.kind, self.help) = (name, value, key, value == nil ? .flag : kind, help)
    }

    /// A flag the command reads itself: a switch (value nil) or a JSON value.
    init(_ name: String, _ value: String?, _ help: String) {
        self.init(name, value, key: nil, .json, help)
    }
}

struct CLICommand {
    let name: String
    /// Positional arguments, in order.
    let positional: [String]
    let summary: String
    let flags: [CLIFlag]
    var hidden = false
}

let modelFlags = [
    CLIFlag("--model", "PATH", .string, "a GGUF file or a Hugging Face directory (required)"),
    CLIFlag("--adapter", "PEFT_DIR", .string, "a PEFT LoRA adapter applied on top"),
    CLIFlag("--threads", "N", .json, "threads for Ponder's loops and matmuls"),
    CLIFlag("--weights", "native|f32", .string, "a GGUF's quantized matrices kept in their blocks (default native) or expanded"),
]
let jsonFlag = CLIFlag("--json", nil, "print the result as one JSON object")
let generationFlags = [
    CLIFlag("--prompt", "TEXT", key: "prompt", .string, "the prompt (or --messages)"),
    CLIFlag("--messages", "JSON", key: "messages", .json, "a conversation: [{\"role\", \"content\"}, ...]"),
    CLIFlag("--chat", nil, key: "chat", .flag, "wrap --prompt as a user turn of the model's chat template"),
    CLIFlag("--max-tokens", "N", key: "max_tokens", .json, "new tokens at most (default 256, cut to the context left)"),
    CLIFlag("--min-tokens", "N", key: "min_tokens", .json, "no end token before this many"),
    CLIFlag("--temperature", "T", key: "temperature", .json, "0 is greedy (default 1)"),
    CLIFlag("--top-p", "P", key: "top_p", .json, "nucleus sampling (default 1: off)"),
    CLIFlag("--top-k", "K", key: "top_k", .json, "keep the K likeliest tokens (default 0: off)"),
    CLIFlag("--min-p", "P", key: "min_p", .json, "drop tokens below P × the likeliest (default 0: off)"),
    CLIFlag("--repetition-penalty", "R", key: "repetition_penalty", .json, "HF's penalty (default 1: off)"),
    CLIFlag("--seed", "S", key: "seed", .json, "sampling seed (sequence i uses S + i)"),
    CLIFlag("--stop", "TEXT", key: "stop", .strings, "stop string (repeatable)"),
    CLIFlag("--n", "N", key: "n", .json, "completions of the prompt, decoded together"),
    CLIFlag("--parse-special", "BOOL", key: "parse_special", .json, "special-token text in the prompt becomes its token (default true)"),
]
let inferOnlyFlags = [
    CLIFlag("--strategy", "NAME", key: "strategy", .string, "single, vote, best_of_n or reflect"),
    CLIFlag("--scorer-weights", "JSON", key: "scorer_weights", .json, "best_of_n's scorer weights, e.g. {\"format\": 1}"),
    CLIFlag("--cues", "TEXT", key: "cues", .strings, "reflect's cue after a finished thought (repeatable)"),
    CLIFlag("--max-reflections", "N", key: "max_reflections", .json, "reflect: cues at most"),
    CLIFlag("--min-thinking-tokens", "N", key: "min_thinking_tokens", .json, "reflect: thinking tokens before an end is accepted"),
    CLIFlag("--max-thinking-tokens", "N", key: "max_thinking_tokens", .json, "reflect: thinking tokens before the answer is forced"),
    CLIFlag("--think-end", "TEXT", key: "think_end", .string, "reflect: the text that ends thinking"),
    CLIFlag("--force-answer", "TEXT", key: "force_answer", .string, "reflect: the text forced when thinking runs out"),
]

let commands: [CLICommand] = [
    CLICommand(name: "generate", positional: [], summary: "generate completions of a prompt",
               flags: modelFlags + generationFlags + [jsonFlag]),
    CLICommand(name: "infer", positional: [], summary: "reflection-rewarded inference: vote, best-of-N, \"Wait\" forcing",
               flags: modelFlags + generationFlags + inferOnlyFlags + [jsonFlag]),
    CLICommand(name: "tokenize", positional: [], summary: "token ids of a text",
               flags: modelFlags + [CLIFlag("--text", "TEXT", .string, "the text (required)"),
                                    CLIFlag("--no-special", nil, "special-token text stays characters"), jsonFlag]),
    CLICommand(name: "score", positional: [], summary: "score JSONL completions on stdin with Ponder's rewards",
               flags: [CLIFlag("--rewards", "LIST", .string, "comma-separated: accuracy,format,reflection,length,repetition"),
                       CLIFlag("--reward-weights", "LIST", .string, "comma-separated weights, one per reward"),
                       CLIFlag("--reflection-mode", "MODE", key: "reflection_mode", .string, "guarded (default) or paper"),
                       CLIFlag("--format-mode", "MODE", key: "format_mode", .string, "strict (default) or paper"),
                       CLIFlag("--options", "JSON", .json, "any other reward option, e.g. {\"max_completion_length\": 512}")]),
    CLICommand(name: "run", positional: ["CONFIG.json"], summary: "run a pipeline's stages (Ctrl-C stops at the next step with a checkpoint)",
               flags: []),
    CLICommand(name: "validate", positional: ["CONFIG.json"], summary: "every problem of a pipeline config, with its JSON path (exit 1 on any)",
               flags: [CLIFlag("--json", nil, "print {\"errors\": [{\"path\", \"message\"}]}")]),
    CLICommand(name: "resume", positional: ["RUN_DIR"], summary: "continue a stopped or killed run from its last checkpoint", flags: []),
    CLICommand(name: "eval", positional: [], summary: "evaluate one model as an eval stage does",
               flags: [CLIFlag("--model", "PATH", .string, "the model (required)"),
                       CLIFlag("--data", "JSONL|arithmetic", .string, "problems with references (required)"),
                       CLIFlag("--limit", "N", key: "limit", .json, "a seeded subset of N problems (default all)"),
                       CLIFlag("--num-samples", "K", key: "num_samples", .json, "samples per problem for pass@1, maj@K, pass@k"),
                       CLIFlag("--temperature", "T", key: "temperature", .json, "the samples' temperature (default 1)"),
                       CLIFlag("--top-p", "P", key: "top_p", .json, "the samples' top-p (default 1)"),
                       CLIFlag("--pass-k", "LIST", .string, "the k of pass@k, e.g. 1,4"),
                       CLIFlag("--max-new-tokens", "N", key: "max_new_tokens", .json, "completion budget (default 256, cut to the context left)"),
                       CLIFlag("--seed", "S", key: "seed", .json, "the subset's and the samples' seed"),
                       CLIFlag("--batch-size", "N", key: "batch_size", .json, "prompts decoded together (default 32)"),
                       CLIFlag("--system", "paper|TEXT", .string, "a system prompt (\"paper\": the paper's)"),
                       CLIFlag("--threads", "N", .json, "threads"), CLIFlag("--json", nil, "print the eval.json document")]),
    CLICommand(name: "report", positional: ["RUN_DIR"], summary: "write RUN_DIR/report.html again", flags: []),
    CLICommand(name: "sft", positional: ["CONFIG.json"], summary: "supervised fine-tuning (full or LoRA; keys in ponder.h)", flags: []),
    CLICommand(name: "grpo", positional: ["CONFIG.json"], summary: "GRPO with the accuracy, format and reflection rewards", flags: []),
    CLICommand(name: "train", positional: ["CONFIG.json"], summary: "the trainer the config's \"kind\" names", flags: []),
    CLICommand(name: "convert", positional: ["IN", "OUT"], summary: "write a model as safetensors (HF directory) or GGUF",
               flags: [CLIFlag("--to", "FORMAT", key: "format", .string, "safetensors or gguf (required)"),
                       CLIFlag("--dtype", "TYPE", key: "dtype", .string,
                               "f32 (default), f16, bf16, or a GGUF block type: q8_0, q5_0, q4_0, q4_1, q4_k, q6_k")]),
    CLICommand(name: "quantize", positional: ["IN", "OUT.gguf"], summary: "write a model as a quantized GGUF llama.cpp runs",
               flags: [CLIFlag("--type", "TYPE", key: "dtype", .string,
                               "q8_0, q5_0, q4_0, q4_1, q4_k or q6_k (required); rows a K-quant cannot cover fall back as llama-quantize does")]),
    CLICommand(name: "version", positional: [], summary: "print the version", flags: []),
    CLICommand(name: "help", positional: ["[COMMAND]"], summary: "this overview, or a command's flags",
               flags: [CLIFlag("--markdown", nil, "every command and flag as the README's CLI section")]),
    CLICommand(name: "bench-matmul", positional: ["[step]", "[ROWS]"], summary: "matmul throughput for bench/", flags: [], hidden: true),
    CLICommand(name: "logits", positional: ["OUT.f32"], summary: "decode logits of {\"prompt\": [ids], \"continuation\": [ids]} on stdin, for tests",
               flags: modelFlags, hidden: true),
]

/// The name this program was invoked as ("ponder" installed, "ponder-cli" in the build folder).
let program: String = {
    let a = CommandLine.arguments.first ?? "ponder"
    return a.split(separator: "/").last.map(String.init) ?? a
}()

func command(_ name: String) -> CLICommand? { commands.first { $0.name == name } }

extension CLIFlag {
    var synopsis: String { value.map { "\(name) \($0)" } ?? name }
}

extension CLICommand {
    var usage: String {
        ([program, name] + positional + flags.map { "[\($0.synopsis)]" }).joined(separator: " ")
    }

    var help: String {
        var out = "usage: \(usage)\n\n\(summary)\n"
        if !flags.isEmpty {
            let width = flags.map(\.synopsis.count).max() ?? 0
            out += "\n" + flags.map { "  " + $0.synopsis + String(repeating: " ", count: width - $0.synopsis.count + 2) + $0.help }
                .joined(separator: "\n") + "\n"
        }
        return out
    }
}

func overview() -> String {
    let shown = commands.filter { !$0.hidden }
    let width = shown.map(\.name.count).max() ?? 0
    return "usage: \(program) COMMAND [ARGS] [FLAGS]\n\ncommands:\n"
        + shown.map { "  " + $0.name + String(repeating: " ", count: width - $0.name.count + 2) + $0.summary }.joined(separator: "\n")
        + "\n\n\(program) COMMAND --help lists a command's flags; \(program) --version prints the version.\n"
}

/// The README's CLI section: every command with its flags, as `help` prints them.
func markdownReference() -> String {
    commands.filter { !$0.hidden }.map { c in
        "### `ponder \(([c.name] + c.positional).joined(separator: " "))`\n\n\(c.summary).\n\n" + (c.flags.isEmpty ? "" : c.flags.map { "- `\($0.synopsis)`: \($0.help)" }.joined(separator: "\n") + "\n")
    }.joined(separator: "\n")
}

/// A command line's parts, read against the command's flags.
struct Parsed {
    let command: CLICommand
    var positional: [String] = []
    /// Flags the command reads itself (no key), by name; a switch's value is "".
    var own: [String: String] = [:]
    /// The keyed flags as a request's fields, in order.
    var fields: [(String, JSONValue)] = []

    var model: String? { own["--model"] }
    var json: Bool { own["--json"] != nil }
    var threads: Int? {
        guard let t = own["--threads"] else { return nil }
        guard let n = Int(t), n >= 1 else { usageError("--threads: expected a positive integer, got \(t)") }
        return n
    }

    /// An error of the request built from `fields`, with each key the user gave as a flag named
    /// as that flag ("max_tokens: …" → "--max-tokens: …").
    func message(_ error: Error) -> String { message("\(error)") }

    func message(_ original: String) -> String {
        var text = original
        for f in command.flags {
            guard let key = f.key else { continue }
            if text.hasPrefix(key + ":") || text.hasPrefix(key + "[") { text = f.name + text.dropFirst(key.count) }
            text = text.replacingAll("(\(key))", with: "(\(f.name))")
        }
        return text
    }

    /// Exits with the error of a failed request or run: 2 for bad input, 1 for the rest.
    func fail(_ error: Error) -> Never {
        let bad: Set<PonderError.Code> = [.invalidArgument, .parse]
        let code: Int32 = (error as? PonderError).map { bad.contains($0.code) ? 2 : 1 } ?? 1
        PonderCLI.fail(message(error), code: code)
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = "", rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound] + replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}

extension Substring {
    func range(of s: String) -> Range<Substring.Index>? {
        guard !s.isEmpty, s.count <= count else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(s) { return i..<index(i, offsetBy: s.count) }
            i = index(after: i)
        }
        return nil
    }
}

func fail(_ message: String, code: Int32 = 1) -> Never {
    fputs("\(program): \(message)\n", stderr)
    exit(code)
}

/// A command line the command does not take: the message and the command's usage, exit 2.
func usageError(_ message: String, _ c: CLICommand? = nil) -> Never {
    fail(message + (c.map { "\nusage: \($0.usage)\n(\(program) \($0.name) --help for details)" } ?? ""), code: 2)
}

/// Reads `args` (after the command's name) against `c`'s flags; `--help` prints the command's
/// help and exits 0.
func parse(_ c: CLICommand, _ args: ArraySlice<String>) -> Parsed {
    var p = Parsed(command: c)
    var lists: [(String, [JSONValue])] = []  // repeatable flags, in order of first use
    var it = args.makeIterator()
    while let a = it.next() {
        if a == "--help" || a == "-h" {
            print(c.help, terminator: "")
            exit(0)
        }
        guard a.hasPrefix("--") && a.count > 2 else {
            p.positional.append(a)
            continue
        }
        guard let f = c.flags.first(where: { $0.name == a }) else { usageError("unknown flag \(a) for \(c.name)", c) }
        var value = ""
        if f.value != nil {
            guard let v = it.next() else { usageError("\(a) needs a value (\(f.value!))", c) }
            value = v
        }
        guard let key = f.key else {
            p.own[a] = value
            continue
        }
        switch f.kind {
        case .flag: p.fields.append((key, true))
        case .string: p.fields.append((key, .string(value)))
        case .strings:
            if let k = lists.firstIndex(where: { $0.0 == key }) { lists[k].1.append(.string(value)) } else { lists.append((key, [.string(value)])) }
        case .json:
            do { p.fields.append((key, try JSONValue.parse(value, what: a))) } catch { usageError("\(error)", c) }
        }
    }
    for (key, values) in lists { p.fields.append((key, .array(values))) }
    let required = c.positional.filter { !$0.hasPrefix("[") }.count
    guard p.positional.count >= required, p.positional.count <= c.positional.count else {
        usageError(p.positional.count < required ? "missing \(c.positional[p.positional.count])" : "unexpected argument \(p.positional[c.positional.count])", c)
    }
    return p
}
