// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "CURecServe",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "curecd", targets: ["curecd"]),
        .library(name: "CURecRPC", targets: ["CURecRPC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        // libnghttp2 from the system (Debian: libnghttp2-dev).
        .systemLibrary(
            name: "CNGHTTP2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        // OpenBLAS (Debian libopenblas-dev): every matrix product goes through cblas.
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // Float32 tensors, explicit forward/backward kernels, AdamW, safetensors.
        .target(name: "CURecTensor", dependencies: ["COpenBLAS"]),
        // GPT-style LM, BPE and WordPiece tokenizers, MiniLM sentence encoder.
        .target(name: "CURecModels", dependencies: ["CURecTensor"]),
        // Datasets (RecBole atomic files), leave-one-out splits, ranking metrics.
        .target(name: "CURecData"),
        // Linux event APIs (epoll, eventfd, accept4) for the event loops.
        .target(name: "CLinux"),
        // Messages generated from Debian's grpc-proto files (health, reflection, testing).
        .target(
            name: "CURecRPCProtos",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // gRPC over HTTP/2 (h2c) on libnghttp2. Knows nothing about recommendation.
        .target(
            name: "CURecRPC",
            dependencies: [
                "CNGHTTP2",
                "CLinux",
                "CURecRPCProtos",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The daemon: configuration, services and lifecycle.
        .target(
            name: "CURecServer",
            dependencies: [
                "CURecRPC",
                "CURecRPCProtos",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "curecd",
            dependencies: [
                "CURecServer",
                "CURecRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "CURecDataTests", dependencies: ["CURecData"]),
        .testTarget(name: "CURecTensorTests", dependencies: ["CURecTensor"]),
        .testTarget(name: "CURecModelsTests", dependencies: ["CURecModels", "CURecTensor"]),
        .testTarget(
            name: "CURecRPCTests",
            dependencies: ["CURecRPC", "CURecRPCProtos"]
        ),
    ]
)
