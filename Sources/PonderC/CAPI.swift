import CPonderCPU
import PonderBase
import PonderJSON
import PonderModel
#if canImport(Glibc)
import Glibc
#endif

// The C ABI (include/ponder.h). Thin by design: convert and validate arguments, call the
// Swift API, catch every error into a status + thread-local message. A Swift trap cannot be
// caught and would take the host process down, so nothing here force-unwraps caller input.

let models = HandleTable<LlamaModel>(kind: "model")

/// Runs `body`, turning any thrown error into its status code and the thread's last error.
@inline(__always)
/// The CPU features the kernels were compiled for, checked before any of them can run: an older
/// CPU gets a named error (PONDER_ERR_UNSUPPORTED) from every call rather than SIGILL.
let cpuProblem: String? = {
    let missing = String(cString: ponder_cpu_missing_features())
    return missing.isEmpty ? nil : "this CPU lacks \(missing), which this build of Ponder was compiled for "
        + "(x86-64 with AVX2 and FMA: Intel Haswell, AMD Excavator or newer)"
}()

func guarded(_ body: () throws -> Void) -> Int32 {
    do {
        if let cpuProblem { throw PonderError(.unsupported, cpuProblem) }
        try body()
        return 0
    } catch let e as PonderError {
        LastError.set(e.message)
        return e.code.rawValue
    } catch {
        LastError.set("internal error: \(error)")
        return PonderError.Code.internal.rawValue
    }
}

func output<T>(_ p: UnsafeMutablePointer<T>?, _ what: String) throws -> UnsafeMutablePointer<T> {
    guard let p else { throw PonderError(.misuse, "\(what) is NULL") }
    return p
}

func parseJSON(_ p: UnsafePointer<CChar>?, _ what: String) throws -> JSONValue {
    let text = try cString(p, what)
    return try JSONValue.parse(text, what: what)
}

private let versionString: UnsafePointer<CChar> = UnsafePointer(strdup(ponderVersion)!)

@_cdecl("ponder_version")
public func ponder_version() -> UnsafePointer<CChar> { versionString }

@_cdecl("ponder_version_number")
public func ponder_version_number() -> Int32 {
    Int32(ponderVersionMajor * 10000 + ponderVersionMinor * 100 + ponderVersionPatch)
}

/// Indexed by status: "ok", then each PonderError.Code's summary (the codes are 1, 2, … in order).
private let statusNames: [String] = ["ok"] + PonderError.Code.allCases.map(\.summary)
private let statusStrings: [UnsafePointer<CChar>] = statusNames.map { UnsafePointer(strdup($0)!) }
private let unknownStatus: UnsafePointer<CChar> = UnsafePointer(strdup("unknown status")!)

@_cdecl("ponder_status_string")
public func ponder_status_string(_ status: Int32) -> UnsafePointer<CChar> {
    status >= 0 && Int(status) < statusStrings.count ? statusStrings[Int(status)] : unknownStatus
}

@_cdecl("ponder_last_error")
public func ponder_last_error() -> UnsafePointer<CChar> { LastError.get() }

@_cdecl("ponder_string_free")
public func ponder_string_free(_ s: UnsafeMutablePointer<CChar>?) { free(s) }

@_cdecl("ponder_model_load")
public func ponder_model_load(_ options: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_model")
        let opts = try ModelOptions(json: parseJSON(options, "options_json"))
        out.pointee = models.insert(try opts.load())
    }
}

@_cdecl("ponder_model_free")
public func ponder_model_free(_ model: OpaquePointer?) {
    models.remove(model)
}

@_cdecl("ponder_model_info")
public func ponder_model_info(_ model: OpaquePointer?, _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_json")
        let m = try models.get(model)
        out.pointee = try cStringCopy(m.info.serialized())
    }
}

@_cdecl("ponder_tokenize")
// size_t parameters are UInt here (same ABI), so a huge or negative-cast value reads and
// prints as the caller's number rather than as a negative Int.
public func ponder_tokenize(_ model: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ textLen: UInt, _ parseSpecial: Bool,
                            _ ids: UnsafeMutablePointer<Int32>?, _ capacity: UInt, _ nIDs: UnsafeMutablePointer<UInt>?) -> Int32 {
    guarded {
        let nIDs = try output(nIDs, "n_ids")
        let m = try models.get(model)
        guard textLen < UInt(Int32.max) else { throw PonderError.invalid("text_len: \(textLen) out of range (at most \(Int32.max - 1) bytes)") }
        let s = try cString(text, "text", length: Int(textLen))
        let tokens = m.tokenizer.encode(s, parseSpecial: parseSpecial)
        // The one failure that writes an output is BUFFER_TOO_SMALL (n_ids: the size needed);
        // every other leaves them untouched, as the header promises.
        guard UInt(tokens.count) <= capacity else {
            nIDs.pointee = UInt(tokens.count)
            throw PonderError(.bufferTooSmall, "ids: capacity \(capacity) < \(tokens.count) tokens (n_ids holds the size needed)")
        }
        guard let ids else {
            if tokens.isEmpty { nIDs.pointee = 0; return }
            throw PonderError(.misuse, "ids is NULL with capacity \(capacity)")
        }
        for (i, t) in tokens.enumerated() { ids[i] = t }
        nIDs.pointee = UInt(tokens.count)
    }
}

@_cdecl("ponder_tokenize_dropped")
public func ponder_tokenize_dropped(_ model: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ textLen: UInt, _ parseSpecial: Bool,
                                    _ outDropped: UnsafeMutablePointer<UInt>?) -> Int32 {
    guarded {
        let out = try output(outDropped, "out_dropped")
        let m = try models.get(model)
        guard textLen < UInt(Int32.max) else { throw PonderError.invalid("text_len: \(textLen) out of range (at most \(Int32.max - 1) bytes)") }
        let s = try cString(text, "text", length: Int(textLen))
        out.pointee = UInt(m.tokenizer.droppedBytes(s, parseSpecial: parseSpecial))
    }
}

@_cdecl("ponder_detokenize")
public func ponder_detokenize(_ model: OpaquePointer?, _ ids: UnsafePointer<Int32>?, _ n: UInt,
                              _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                              _ outLen: UnsafeMutablePointer<UInt>?) -> Int32 {
    guarded {
        let out = try output(out, "out_text")
        let m = try models.get(model)
        guard n < 1 << 32 else { throw PonderError.invalid("n_ids: \(n) out of range (at most \(UInt32.max))") }
        guard let ids = ids ?? (n == 0 ? UnsafePointer(bitPattern: 4) : nil) else { throw PonderError(.misuse, "ids is NULL with n_ids \(n)") }
        let list = Array(UnsafeBufferPointer(start: ids, count: Int(n)))
        try m.tokenizer.validate(list)
        var len = 0
        out.pointee = try cStringCopy(m.tokenizer.decode(list), length: &len)
        outLen?.pointee = UInt(len)
    }
}

@_cdecl("ponder_generate")
public func ponder_generate(_ model: OpaquePointer?, _ request: UnsafePointer<CChar>?,
                            _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    ponder_generate_stream(model, request, nil, nil, out)
}

public typealias TokenCallbackC = @convention(c) (Int32, Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Bool

@_cdecl("ponder_generate_stream")
public func ponder_generate_stream(_ model: OpaquePointer?, _ request: UnsafePointer<CChar>?,
                                   _ callback: TokenCallbackC?, _ user: UnsafeMutableRawPointer?,
                                   _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_result_json")
        let m = try models.get(model)
        let req = try GenerateRequest(json: parseJSON(request, "request_json"))
        let result = try m.generate(req, onToken: callback.map { cb in
            { seq, tok, text in text.withCString { cb(Int32(seq), tok, $0, user) } }
        })
        out.pointee = try cStringCopy(result.json.serialized())
    }
}

@_cdecl("ponder_model_save")
public func ponder_model_save(_ model: OpaquePointer?, _ options: UnsafePointer<CChar>?) -> Int32 {
    guarded {
        let m = try models.get(model)
        try m.export(ExportOptions(json: parseJSON(options, "options_json")))
    }
}
