import PonderBase
import PonderJSON
import PonderInference
import PonderModel

// Inference strategies (include/ponder.h, "Inference"): a model handle is shared between
// threads and holds no registrations, so custom scorers come with each call.

@_cdecl("ponder_infer")
public func ponder_infer(_ model: OpaquePointer?, _ request: UnsafePointer<CChar>?,
                         _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    ponder_infer_stream(model, request, nil, 0, nil, nil, out)
}

@_cdecl("ponder_infer_ex")
public func ponder_infer_ex(_ model: OpaquePointer?, _ request: UnsafePointer<CChar>?, _ scorers: UnsafeRawPointer?, _ nScorers: UInt,
                            _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    ponder_infer_stream(model, request, scorers, nScorers, nil, nil, out)
}

@_cdecl("ponder_infer_stream")
public func ponder_infer_stream(_ model: OpaquePointer?, _ request: UnsafePointer<CChar>?, _ scorers: UnsafeRawPointer?, _ nScorers: UInt,
                                _ callback: TokenCallbackC?, _ user: UnsafeMutableRawPointer?,
                                _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_result_json")
        let m = try models.get(model)
        let custom = try readScorers(scorers, nScorers)
        let req = try InferRequest(json: parseJSON(request, "request_json"))
        let result = try m.infer(req, scorers: custom, onToken: callback.map { cb in
            { seq, tok, text in text.withCString { cb(Int32(seq), tok, $0, user) } }
        })
        out.pointee = try cStringCopy(result.json.serialized())
    }
}

/// The caller's ponder_scorer array: {const char *name; ponder_reward_fn fn; double weight;
/// void *user;}, four 8-byte fields (every platform Ponder builds for is 64-bit), read field by
/// field rather than through a Swift mirror of the struct.
func readScorers(_ p: UnsafeRawPointer?, _ n: UInt) throws -> [Scorer] {
    guard n > 0 else { return [] }
    guard n <= 256 else { throw PonderError.invalid("n_scorers: \(n) out of range (at most 256)") }
    guard let p else { throw PonderError(.misuse, "scorers is NULL with n_scorers \(n)") }
    let stride = 32
    var out: [Scorer] = []
    for i in 0..<Int(n) {
        let base = p + i * stride
        let namePtr = base.load(as: UnsafePointer<CChar>?.self)
        let fn = base.load(fromByteOffset: 8, as: RewardFnC?.self)
        let weight = base.load(fromByteOffset: 16, as: Double.self)
        let u = UserPointer(p: base.load(fromByteOffset: 24, as: UnsafeMutableRawPointer?.self))
        let name = try cString(namePtr, "scorers[\(i)].name")
        guard let fn else { throw PonderError(.misuse, "scorers[\(i)].fn is NULL") }
        guard !name.isEmpty else { throw PonderError.invalid("scorers[\(i)].name: empty") }
        guard weight.isFinite else { throw PonderError.invalid("scorers[\(i)].weight: expected a finite number, got \(weight)") }
        guard !out.contains(where: { $0.name == name }) else { throw PonderError.invalid("scorers[\(i)].name: \"\(name)\" is given twice") }
        out.append(Scorer(name: name, weight: weight, score: cReward(fn, u)))
    }
    return out
}
