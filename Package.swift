// swift-tools-version:6.0
import PackageDescription

// Layers, lowest first; each target imports only what is below it (docs/ARCHITECTURE.md).

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
        .target(name: "PonderKernels", dependencies: ["COpenBLAS"]),
        .target(name: "PonderText", dependencies: ["PonderBase", "PonderJSON"]),
        .target(name: "PonderModel", dependencies: ["PonderBase", "PonderJSON", "PonderKernels", "PonderText"]),
        .target(name: "PonderC", dependencies: ["PonderBase", "PonderJSON", "PonderModel"]),
        .executableTarget(name: "PonderCLI", dependencies: ["PonderBase", "PonderJSON", "PonderModel"]),
        .testTarget(name: "PonderTests", dependencies: ["PonderC", "PonderModel"]),
    ],
    // Swift 5 mode: the engine shares raw buffers across threads by design (disjoint ranges per
    // task), which Swift 6's static checker cannot express without wrappers on every loop.
    swiftLanguageModes: [.v5]
)
