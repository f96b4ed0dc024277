// swift-tools-version:6.1
// Benchmark harness for the Llama model on its own weights (SmolLM2-135M-Instruct, GGUF
// dequantized to float32). The library sources are symlinks to the main package's targets,
// built here in release mode.
import PackageDescription

let package = Package(
    name: "LlamaEngineBench",
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas"),
        .target(name: "CQuantKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "CURecTensor", dependencies: ["COpenBLAS", "CQuantKernels"]),
        .target(name: "CURecCollections"),
        .target(name: "CURecModels", dependencies: ["CURecTensor", "CURecCollections"]),
        .executableTarget(name: "llama-engine-bench", dependencies: ["CURecModels", "CURecTensor"]),
    ]
)
