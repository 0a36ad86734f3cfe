import Foundation
import XCTest
@testable import PonderModel

/// Paths and shared fixtures. Model-dependent tests skip when the model is absent, unless
/// PONDER_REQUIRE_MODEL=1 or CI=true, where a missing model is a failure.
enum Fixtures {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let dir = repo.appendingPathComponent("Tests/Fixtures")
    static let smolPath = repo.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path

    static func json(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent(name)))
    }

    static func floats(_ name: String) throws -> [Float] {
        let d = try Data(contentsOf: dir.appendingPathComponent(name))
        return d.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    nonisolated(unsafe) private static var cached: LlamaModel?
    private static let lock = NSLock()

    /// SmolLM2-135M-Instruct, loaded once per test process.
    static func smol() throws -> LlamaModel {
        lock.lock()
        defer { lock.unlock() }
        if let m = cached { return m }
        guard FileManager.default.fileExists(atPath: smolPath) else {
            let env = ProcessInfo.processInfo.environment
            if env["PONDER_REQUIRE_MODEL"] == "1" || env["CI"] == "true" {
                XCTFail("model missing at \(smolPath); run scripts/fetch_model.sh")
            }
            throw XCTSkip("model missing at \(smolPath); run scripts/fetch_model.sh")
        }
        let m = try LlamaModel.load(path: smolPath)
        cached = m
        return m
    }
}
