import Foundation
import XCTest
@testable import PonderModel
@testable import PonderTrain

/// Whole-model gradients of SmolLM2 on one batch against PyTorch autograd (transformers
/// loaded from the same GGUF; fixture from scripts/make_grad_fixtures.py).
final class TorchGradientTests: XCTestCase {
    func testSmolLM2GradientsMatchPyTorch() throws {
        let model = try Fixtures.smol()
        let ref = try Fixtures.json("smollm2_grads.json") as! [String: Any]
        let tokens = (ref["tokens"] as! [[NSNumber]]).flatMap { $0.map(\.int32Value) }
        let targets = (ref["targets"] as! [[NSNumber]]).flatMap { $0.map(\.int32Value) }
        let batch = TokenBatch(sequences: 2, length: 16, tokens: tokens, targets: targets)
        let acts = try TrainActivations(model: model, sequences: 2, length: 16)
        let logp = try model.trainForward(batch, acts)
        let loss = zip(logp, targets).reduce(0.0) { $0 - ($1.1 >= 0 ? Double($1.0) : 0) }
        XCTAssertEqual(loss, (ref["loss"] as! NSNumber).doubleValue, accuracy: 1e-2)
        let grads = try Arena(count: model.weights.count)
        model.trainBackward(batch, acts, dLogp: targets.map { $0 >= 0 ? -1 : 0 }, grads: grads.pointer)
        for (name, spec) in ref["tensors"] as! [String: [String: Any]] {
            let e = try XCTUnwrap(model.layout[name], name)
            let g = grads.pointer + e.offset
            let norm = (0..<e.count).reduce(0.0) { $0 + Double(g[$1]) * Double(g[$1]) }.squareRoot()
            let wantNorm = (spec["norm"] as! NSNumber).doubleValue
            XCTAssertEqual(norm, wantNorm, accuracy: wantNorm * 1e-3, "\(name) norm")
            // Compare stored blocks by relative Frobenius error (single elements can be tiny).
            var pairs: [(Float, Float)] = []
            let cols = e.shape.count == 2 ? e.shape[1] : e.count
            if let values = spec["values"] as? [NSNumber] {
                pairs = values.enumerated().map { (g[$0.offset], $0.element.floatValue) }
            } else if let rows = spec["rows"] as? [[NSNumber]] {
                let ids = (spec["row_ids"] as? [NSNumber])?.map(\.intValue) ?? Array(0..<rows.count)
                // transformers builds embed_tokens with padding_idx = pad_token_id (2, which is
                // also <|im_end|>), and torch then drops that row's input-side gradient even where
                // the token is real input. Ponder keeps the true gradient, so that row differs.
                for (r, row) in zip(ids, rows) where !(name.hasPrefix("model.embed_tokens") && r == 2) {
                    for (j, v) in row.enumerated() { pairs.append((g[r * cols + j], v.floatValue)) }
                }
            }
            let diff = pairs.reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }.squareRoot()
            let size = pairs.reduce(0.0) { $0 + Double($1.1 * $1.1) }.squareRoot()
            print("\(name): |Δ|/|g| = \(diff / size)")
            XCTAssertLessThan(diff / size, 2e-3, name)
        }
    }
}
