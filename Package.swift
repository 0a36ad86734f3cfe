// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first; each target imports only what is below it (docs/ARCHITECTURE.md).

// Numeric code needs AVX2+FMA codegen: for generic x86-64, Swift lowers SIMD fused multiply-add
// to one libm fmaf call per lane. Haswell (2013) is the floor; OpenBLAS still picks its own
// kernels at run time.
#if arch(x86_64)
let simd: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let simd: [SwiftSetting] = []
#endif
// The kernels index raw buffers whose sizes their callers have validated; overflow and bounds
// traps in their inner loops cost a third of the decode matmul's instructions.
let kernels: [SwiftSetting] = simd + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
// The same kernel specialised for AVX-512, called only where /proc/cpuinfo reports avx512f.
#if arch(x86_64)
let avx512: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "skylake-avx512", "-Ounchecked"])]
#else
let avx512: [SwiftSetting] = []
#endif

let package = Package(
    name: "Ponder",
    products: [
        .library(name: "ponder", type: .dynamic, targets: ["PonderC"]),
        .executable(name: "ponder-cli", targets: ["PonderCLI"]),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CJSONC", pkgConfig: "json-c", providers: [.apt(["libjson-c-dev"])]),
        .target(name: "PonderBase"),
        .target(name: "PonderJSON", dependencies: ["CJSONC", "PonderBase"]),
        .systemLibrary(name: "CPrefetch"),
        // CPU feature checks in C compiled for generic x86-64 (cpuid through __builtin_cpu_supports).
        // C debug info as DWARF 4: Debian's valgrind 3.19 gives up on a library whose C objects
        // carry the toolchain clang's DWARF 5 (users run their programs under it: test_install.sh).
        .target(name: "CPonderCPU", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
        // Block-format matmul kernels in C: Swift's SIMD types cannot emit vpmaddubsw / vpdpbusd.
        // Each function carries its own target attribute; the library picks AVX2 or VNNI at run time.
        .target(name: "CPonderQuant", cSettings: [.unsafeFlags(["-O3", "-gdwarf-4"])]),
        .target(name: "PonderMatvec", dependencies: ["CPrefetch"], swiftSettings: kernels),
        .target(name: "PonderMatvec512", dependencies: ["PonderMatvec"], swiftSettings: avx512),
        .target(name: "PonderKernels", dependencies: ["COpenBLAS", "CPonderCPU", "CPonderQuant", "PonderMatvec", "PonderMatvec512"], swiftSettings: kernels),
        .target(name: "PonderText", dependencies: ["PonderBase", "PonderJSON"], swiftSettings: simd),
        .target(name: "PonderModel", dependencies: ["PonderBase", "PonderJSON", "PonderKernels", "PonderText"],
                swiftSettings: simd),
        .target(name: "PonderTrain", dependencies: ["PonderBase", "PonderJSON", "PonderKernels", "PonderText", "PonderModel", "PonderRewards",
                                                  "PonderEnvironments"],
                swiftSettings: simd),
        .target(name: "PonderRewards", dependencies: ["PonderBase", "PonderJSON"]),
        .target(name: "PonderEnvironments", dependencies: ["PonderBase", "PonderJSON", "PonderRewards"]),
        .target(name: "PonderPipeline", dependencies: ["PonderBase", "PonderJSON", "PonderModel", "PonderText", "PonderTrain", "PonderRewards",
                                                     "PonderEnvironments"]),
        .target(name: "PonderInference", dependencies: ["PonderBase", "PonderJSON", "PonderText", "PonderModel", "PonderRewards"]),
        .target(name: "PonderC", dependencies: ["CPonderCPU", "PonderBase", "PonderJSON", "PonderModel", "PonderTrain", "PonderRewards", "PonderPipeline",
                                                "PonderInference", "PonderEnvironments"]),
        .executableTarget(name: "PonderCLI", dependencies: ["CPonderCPU", "PonderBase", "PonderJSON", "PonderModel", "PonderTrain", "PonderRewards",
                                                            "PonderPipeline", "PonderInference"]),
        .testTarget(name: "PonderTests", dependencies: ["PonderBase", "PonderC", "PonderKernels", "PonderModel", "PonderTrain", "PonderMatvec", "PonderMatvec512",
                                                        "PonderRewards", "PonderEnvironments", "PonderPipeline", "PonderInference"]),
    ],
    // Swift 5 mode: the engine shares raw buffers across threads by design (disjoint ranges per
    // task), which Swift 6's static checker cannot express without wrappers on every loop.
    swiftLanguageModes: [.v5]
)

// libFuzzer targets (Tests/Fuzz, docs/RELIABILITY.md): declared only when scripts/fuzz.sh sets
// PONDER_FUZZ, so a normal `swift build` / `swift test` never sees them.
if Context.environment["PONDER_FUZZ"] != nil {
    package.targets += [
        .systemLibrary(name: "CFuzzer", path: "Tests/Fuzz/Sources/CFuzzer"),
        .executableTarget(name: "ponder-fuzz",
                          dependencies: ["CFuzzer", "PonderC", "PonderModel", "PonderTrain", "PonderRewards", "PonderPipeline",
                                         "PonderInference", "PonderEnvironments"],
                          path: "Tests/Fuzz/Sources/PonderFuzz",
                          // gold dies on the ASan-instrumented objects (internal error in
                          // format_file_lineno); the toolchain's lld links them.
                          linkerSettings: [.unsafeFlags(["-use-ld=lld"])]),
    ]
}
