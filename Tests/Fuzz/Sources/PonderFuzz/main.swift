import CFuzzer
#if canImport(Glibc)
import Glibc
#endif

// ponder-fuzz: every fuzz target in one libFuzzer binary, so the instrumented library is built
// and linked once. PONDER_FUZZ_TARGET names the target (scripts/fuzz.sh sets it); the rest of
// the command line is libFuzzer's.
//
// A new parser is one file defining a FuzzTarget, its name in this list, and a few seed inputs
// in Tests/Fuzz/corpus/<name>/ (docs/RELIABILITY.md).
let targets: [FuzzTarget] = [
    ggufTarget, safetensorsTarget, hfConfigTarget, tokenizerJSONTarget, adapterConfigTarget,
    tokenizerTarget, jsonTarget, generateRequestTarget, modelOptionsTarget, sftConfigTarget, sftDataTarget,
    scoreTarget, rewardTextTarget, grpoConfigTarget, grpoDataTarget, rejectionConfigTarget, pipelineConfigTarget,
    inferRequestTarget, environmentTarget,
]

let name = getenv("PONDER_FUZZ_TARGET").map { String(cString: $0) } ?? ""
if name == "list" {
    for t in targets { print(t.name) }
    exit(0)
}
guard let target = targets.first(where: { $0.name == name }) else {
    fputs("ponder-fuzz: set PONDER_FUZZ_TARGET to one of: \(targets.map(\.name).joined(separator: " "))\n", stderr)
    exit(2)
}
do {
    try target.setUp()
} catch {
    fputs("ponder-fuzz: \(name): set-up failed: \(error)\n", stderr)
    exit(2)
}
current = target
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    runOne(UnsafeRawBufferPointer(start: data, count: size))
    return 0
})
