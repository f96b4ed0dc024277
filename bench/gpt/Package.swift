// swift-tools-version:6.1
// Benchmark harness for the compute engine. The library sources are symlinks to the main
// package's targets (they are not products of the main package), built here in release mode.
import PackageDescription

let package = Package(
    name: "GPTBench",
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas"),
        .target(name: "CQuantKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "CURecTensor", dependencies: ["COpenBLAS", "CQuantKernels"]),
        .target(name: "CURecCollections"),
        .target(name: "CURecModels", dependencies: ["CURecTensor", "CURecCollections"]),
        .executableTarget(name: "gpt-bench", dependencies: ["CURecModels", "CURecTensor", "COpenBLAS"]),
        .executableTarget(name: "llama-bench", dependencies: ["CURecModels", "CURecTensor"]),
    ]
)
