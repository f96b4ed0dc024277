// swift-tools-version:6.1
// Benchmark and inspection harness for the GGUF reader and the quantized matrix kernels. The
// library sources are symlinks to the main package's targets, built here in release mode.
import PackageDescription

let package = Package(
    name: "GGUFBench",
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas"),
        .target(name: "CQuantKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "CURecTensor", dependencies: ["COpenBLAS", "CQuantKernels"]),
        .executableTarget(name: "gguf-bench", dependencies: ["CURecTensor"]),
    ]
)
