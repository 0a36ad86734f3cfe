import PonderBase
import PonderJSON
import PonderRewards

// Scoring completions with the rewards (include/ponder.h, "Rewards"). No model: pure text.

@_cdecl("ponder_score")
public func ponder_score(_ request: UnsafePointer<CChar>?,
                         _ out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    guarded {
        let out = try output(out, "out_result_json")
        let req = try ScoreRequest(json: parseJSON(request, "request_json"))
        let rewards = RewardSet(config: req.config)
        let results = req.items.map { rewards.score($0).json }
        out.pointee = try cStringCopy(JSONValue.object([("results", .array(results))]).serialized())
    }
}
