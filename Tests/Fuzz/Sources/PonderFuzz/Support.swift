import PonderBase
import PonderC
import PonderJSON
#if canImport(Glibc)
import Glibc
#endif

/// One fuzz target. A bug is whatever stops the process: a trap, a sanitizer report, a hang
/// past libFuzzer's -timeout, an allocation past -malloc_limit_mb, or `bug(...)` for a broken
/// contract (a status the header does not document, an output written on failure, ...).
struct FuzzTarget {
    let name: String
    /// Runs once before the first input (fixed files, a model to generate with).
    var setUp: () throws -> Void = {}
    /// One input. A PonderError thrown out of it is a rejection, checked by `checkFailure`.
    let run: (UnsafeRawBufferPointer) throws -> Void
}

nonisolated(unsafe) var current: FuzzTarget!

/// The input being run: text a message quotes from it (an unknown key named "Optional<x>") is
/// the caller's, not a leak of Swift internals.
nonisolated(unsafe) var currentInput: [UInt8] = []

func runOne(_ data: UnsafeRawBufferPointer) {
    currentInput = Array(data)
    do {
        try current.run(data)
    } catch let e as PonderError {
        checkFailure(e.code.rawValue, e.message, "\(current.name)")
    } catch {
        bug("\(current.name): an error that is not a PonderError escaped: \(error)")
    }
}

/// PONDER_FUZZ_VERBOSE=1: print every rejection and success, to check that seeds get deep.
let verbose = getenv("PONDER_FUZZ_VERBOSE") != nil

/// Reports a broken contract and aborts, so libFuzzer saves the input.
func bug(_ message: String) -> Never {
    fputs("ponder-fuzz: BUG: \(message)\n", stderr)
    abort()
}

/// The harness itself failed (not Ponder): stop without blaming the input.
func harnessFailure(_ message: String) -> Never {
    fputs("ponder-fuzz: harness: \(message)\n", stderr)
    exit(3)
}

/// A failure as the header promises it: a documented status other than MISUSE (every call here
/// passes live handles and valid pointers) and INTERNAL ("a bug in Ponder"), with a message a
/// user can act on — no Swift type names.
func checkFailure(_ status: Int32, _ message: String, _ call: String) {
    if verbose { fputs("ponder-fuzz: \(call): status \(status): \(message)\n", stderr) }
    guard (1...8).contains(status) && status != 7 else {
        bug("\(call) returned status \(status) (\(String(cString: ponder_status_string(status)))): \(message)")
    }
    guard !message.isEmpty else { bug("\(call) failed with status \(status) and an empty message") }
    for leak in ["Swift.", "Array<", "Collection<", "Optional(", "Optional<", "Dictionary<"]
    where message.contains(leak) && !currentInput.containsSubsequence(Array(leak.utf8)) {
        bug("\(call): message shows Swift internals (\(leak)): \(message)")
    }
}

/// True on PONDER_OK; on failure checks the status and message (see checkFailure).
func succeeded(_ status: Int32, _ call: String) -> Bool {
    if status == 0 { return true }
    checkFailure(status, String(cString: ponder_last_error()), call)
    return false
}

// MARK: - Files

/// Tests/Fuzz (fixed model, corpora); scripts/fuzz.sh passes its absolute path.
let fuzzRoot = getenv("PONDER_FUZZ_DIR").map { String(cString: $0) } ?? "Tests/Fuzz"

/// Per-process directory for the files an input is written to (libFuzzer's -fork workers are
/// separate processes). In memory (/dev/shm) so a write per execution costs microseconds.
let scratchDir: String = {
    let base = getenv("PONDER_FUZZ_TMP").map { String(cString: $0) } ?? "/dev/shm"
    let dir = "\(base)/ponder-fuzz-\(getpid())"
    guard mkdir(dir, 0o700) == 0 || errno == EEXIST else { harnessFailure("cannot create \(dir)") }
    return dir
}()

func makeDirectory(_ path: String) {
    guard mkdir(path, 0o700) == 0 || errno == EEXIST else { harnessFailure("cannot create \(path)") }
}

func writeFile(_ path: String, _ bytes: UnsafeRawBufferPointer) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { harnessFailure("cannot write \(path)") }
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        guard n > 0 else { harnessFailure("cannot write \(path)") }
        done += n
    }
}

/// Copies a file of the fixed model (Tests/Fuzz/model/…) to `to`.
func copyFixed(_ relative: String, to: String) throws {
    let bytes = try readFile("\(fuzzRoot)/model/\(relative)")
    bytes.withUnsafeBytes { writeFile(to, $0) }
}

// MARK: - The C ABI on a loaded model

/// Loads through ponder_model_load and, when that succeeds, runs every model call on the
/// result: a file that loads must be safe to use, not only to open.
func loadAndExercise(_ options: String) {
    let sentinel = OpaquePointer(bitPattern: 0x5EED)
    var m: OpaquePointer? = sentinel
    guard succeeded(ponder_model_load(options, &m), "ponder_model_load") else {
        if m != sentinel { bug("ponder_model_load failed but wrote out_model") }
        return
    }
    guard let m, m != sentinel else { bug("ponder_model_load returned OK without a handle") }
    defer { ponder_model_free(m) }
    exercise(m)
}

let exerciseRequests = [
    #"{"prompt": "12 + 7 =", "max_tokens": 3, "temperature": 0}"#,
    #"{"messages": [{"role": "user", "content": "2*3?"}], "max_tokens": 2, "n": 2, "temperature": 0.9,"#
        + #" "top_p": 0.9, "top_k": 8, "min_p": 0.01, "repetition_penalty": 1.3, "seed": 5, "stop": ["\n"]}"#,
]

func exercise(_ m: OpaquePointer) {
    var info: UnsafeMutablePointer<CChar>? = nil
    guard succeeded(ponder_model_info(m, &info), "ponder_model_info") else { return }
    guard let info else { bug("ponder_model_info returned OK and NULL") }
    let infoText = String(cString: info)
    ponder_string_free(info)
    guard let vocab = (try? JSONValue.parse(infoText))?["vocab_size"]?.asInt, vocab > 0 else {
        bug("ponder_model_info: no positive vocab_size in \(infoText.prefix(200))")
    }

    let text = "12 + 7 = 19 <|im_end|> caf\u{e9}\n"
    var ids = [Int32](repeating: 0, count: 256)
    var n: UInt = 0
    let st = text.withCString { ponder_tokenize(m, $0, UInt(strlen($0)), true, &ids, UInt(ids.count), &n) }
    if succeeded(st, "ponder_tokenize") {
        guard n <= ids.count else { bug("ponder_tokenize: n_ids \(n) > capacity") }
        for id in ids[..<Int(n)] where id < 0 || Int64(id) >= vocab { bug("ponder_tokenize: id \(id) outside [0, \(vocab))") }
        var out: UnsafeMutablePointer<CChar>? = nil
        var len: UInt = 0
        if succeeded(ponder_detokenize(m, ids, n, &out, &len), "ponder_detokenize") {
            guard let out, strlen(out) <= len else { bug("ponder_detokenize: bad text or length") }
            ponder_string_free(out)
        }
    }
    // An id just past the vocabulary is the caller's error, whatever the file says.
    if vocab < Int32.max {
        var bad: [Int32] = [0, Int32(vocab)]
        var out: UnsafeMutablePointer<CChar>? = nil
        let st = ponder_detokenize(m, &bad, 2, &out, nil)
        guard st == 1 else { bug("ponder_detokenize of id \(vocab) (vocab_size) returned \(st), not INVALID_ARGUMENT") }
    }

    for request in exerciseRequests {
        var out: UnsafeMutablePointer<CChar>? = nil
        guard succeeded(ponder_generate(m, request, &out), "ponder_generate") else {
            if out != nil { bug("ponder_generate failed but wrote its output") }
            continue
        }
        guard let out else { bug("ponder_generate returned OK and NULL") }
        let result = String(cString: out)
        ponder_string_free(out)
        guard let v = try? JSONValue.parse(result), let completions = v["completions"]?.asArray, !completions.isEmpty else {
            bug("ponder_generate: result is not JSON with completions: \(result.prefix(200))")
        }
        if verbose { fputs("ponder-fuzz: generated \(result.prefix(300))\n", stderr) }
        for c in completions {
            for id in c["token_ids"]?.asArray ?? [] {
                guard let i = id.asInt, i >= 0, i < vocab else { bug("ponder_generate: token id \(id) outside [0, \(vocab))") }
            }
        }
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for i in 0...(count - needle.count) where self[i] == needle[0] && Array(self[i..<(i + needle.count)]) == needle { return true }
        return false
    }
}
