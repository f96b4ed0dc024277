// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "CURecServe",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "curecd", targets: ["curecd"]),
        .executable(name: "curec", targets: ["curec"]),
        // Runs one plugin instance in its own process for `isolation: process` (started by curecd).
        .executable(name: "curec-plugin-worker", targets: ["curec-plugin-worker"]),
        .library(name: "CURecRPC", targets: ["CURecRPC"]),
        // What the fuzz targets in Fuzz/ (a separate package, built only by bench/fuzz) link.
        .library(name: "CURecTensor", targets: ["CURecTensor"]),
        .library(name: "CURecProto", targets: ["CURecProto"]),
        .library(name: "CURecServer", targets: ["CURecServer"]),
        // The plugin SDK: the C header and the Swift helpers for plugin authors.
        .library(name: "CURecPluginABI", targets: ["CURecPluginABI"]),
        .library(name: "CURecPluginKit", targets: ["CURecPluginKit"]),
        // Plugins, each a shared library loaded by the daemon at run time.
        .library(name: "CURecBPR", type: .dynamic, targets: ["BPRPlugin"]),
        .library(name: "CURecCollaborativeReward", type: .dynamic, targets: ["CollaborativeRewardPlugin"]),
        .library(name: "CURecPopularity", type: .dynamic, targets: ["PopularityPlugin"]),
        .library(name: "CURecSASRec", type: .dynamic, targets: ["SASRecPlugin"]),
        // Libraries the plugin host's unit tests load: a working Swift recommender, one
        // without the ABI entry points, one built for another ABI major version.
        .library(name: "CURecTestRecommender", type: .dynamic, targets: ["TestRecommenderPlugin"]),
        .library(name: "CURecTestNoEntryPoint", type: .dynamic, targets: ["TestNoEntryPointPlugin"]),
        .library(name: "CURecTestWrongABI", type: .dynamic, targets: ["TestWrongABIPlugin"]),
        // C libraries that crash, hang, leak or exit on purpose (isolation tests).
        .library(name: "CURecTestMisbehaving", type: .dynamic, targets: ["TestMisbehavingPlugin"]),
        .library(name: "CURecTestCrashOnLoad", type: .dynamic, targets: ["TestCrashOnLoadPlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // The PostgreSQL job store (job_store = postgres), for daemons sharing one job queue.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        // libnghttp2 from the system (Debian: libnghttp2-dev).
        .systemLibrary(
            name: "CNGHTTP2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        // OpenSSL (Debian libssl-dev): TLS for the RPC transport, SHA-256 for token hashes.
        .systemLibrary(
            name: "CTLS",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // OpenBLAS (Debian libopenblas-dev): every matrix product goes through cblas.
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // Quantized-weight matrix kernels with x86-64 intrinsics (AVX2, AVX-512 VNNI), chosen
        // at run time; always optimised, also in debug builds.
        .target(name: "CQuantKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // Data structures shared by the layers above (the binary heap); no dependencies.
        .target(name: "CURecCollections"),
        // Float32 tensors, explicit forward/backward kernels, AdamW, safetensors, GGUF.
        .target(name: "CURecTensor", dependencies: ["COpenBLAS", "CQuantKernels"]),
        // GPT-style LM, BPE and WordPiece tokenizers, MiniLM sentence encoder.
        .target(name: "CURecModels", dependencies: ["CURecTensor", "CURecCollections"]),
        // Datasets (RecBole atomic files), leave-one-out splits, ranking metrics.
        .target(name: "CURecData"),
        // The plugin C ABI: one header, include/curec_plugin.h.
        .target(name: "CURecPluginABI"),
        // Loads, checks, hot-swaps and retires plugin libraries.
        .target(
            name: "CURecPluginHost",
            dependencies: ["CURecPluginABI", "CLinux", .product(name: "Logging", package: "swift-log")]
        ),
        // Helpers for writing plugins in Swift (statically linked into each plugin).
        .target(name: "CURecPluginKit", dependencies: ["CURecPluginABI"]),
        .target(
            name: "BPRPlugin",
            dependencies: ["CURecPluginKit", "CURecPluginABI"],
            path: "Plugins/bpr",
            swiftSettings: [.unsafeFlags(["-O"])]
        ),
        .target(
            name: "CollaborativeRewardPlugin",
            dependencies: ["CURecPluginKit", "CURecPluginABI"],
            path: "Plugins/collaborative-reward",
            swiftSettings: [.unsafeFlags(["-O"])]
        ),
        // SASRec with optional reason/content features (ID embeddings + projected features).
        .target(
            name: "SASRecPlugin",
            dependencies: ["CURecPluginKit", "CURecPluginABI", "CURecModels", "CURecTensor"],
            path: "Plugins/sasrec",
            swiftSettings: [.unsafeFlags(["-O"])]
        ),
        // The CURec stages: corpus, verifier, pretraining, reward, GRPO, correction, evaluation.
        .target(name: "CURecPipeline", dependencies: ["CURecData", "CURecModels", "CURecTensor"]),
        // protobuf-c (Debian libprotobuf-c-dev), for the C plugin's config message.
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),
        .target(
            name: "PopularityPlugin",
            dependencies: ["CURecPluginABI", "CProtobufC"],
            path: "Plugins/popularity",
            exclude: ["popularity_config.proto"],
            cSettings: [.unsafeFlags(["-O2"])]
        ),
        // Durable jobs: records in SQLite (GRDB) or PostgreSQL (postgres-nio) behind one store
        // interface, claims under leases, workers, recovery after restarts.
        .target(
            name: "CURecJobs",
            dependencies: [
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Messages and services of the daemon's API, generated from Protos/curec/v1: the
        // messages, and per service its method descriptors, handler protocol and client.
        .target(
            name: "CURecProto",
            dependencies: ["CURecRPC", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // Linux event APIs (epoll, eventfd, accept4) for the event loops.
        .target(name: "CLinux"),
        // Messages generated from Debian's grpc-proto files (health, reflection, testing).
        .target(
            name: "CURecRPCProtos",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        // gRPC over HTTP/2 (h2c) on libnghttp2. Knows nothing about recommendation. Its
        // Generated/ folder holds the descriptors and handler protocols of the standard
        // services it serves (health, reflection, interop testing).
        .target(
            name: "CURecRPC",
            dependencies: [
                "CNGHTTP2",
                "CTLS",
                "CLinux",
                "CURecCollections",
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
                "CURecProto",
                "CURecData",
                "CURecPluginHost",
                "CURecJobs",
                "CURecModels",
                "CURecPipeline",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Atomics", package: "swift-atomics"),
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
        .executableTarget(name: "curec-plugin-worker", dependencies: ["CURecPluginHost"]),
        // The operator CLI.
        .executableTarget(
            name: "curec",
            dependencies: [
                "CURecRPC",
                "CURecRPCProtos",
                "CURecProto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "CURecCollectionsTests", dependencies: ["CURecCollections"]),
        .testTarget(name: "CURecDataTests", dependencies: ["CURecData"]),
        .testTarget(
            name: "CURecJobsTests",
            dependencies: ["CURecJobs", .product(name: "PostgresNIO", package: "postgres-nio")]
        ),
        .testTarget(name: "CURecPipelineTests", dependencies: ["CURecPipeline", "CURecData"], exclude: ["Fixtures"]),
        .testTarget(name: "CURecTensorTests", dependencies: ["CURecTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "CURecModelsTests", dependencies: ["CURecModels", "CURecTensor"], exclude: ["Fixtures"]),
        .target(
            name: "TestRecommenderPlugin",
            dependencies: ["CURecPluginKit", "CURecPluginABI"],
            path: "Tests/PluginFixtures/CountingRecommender"
        ),
        .target(name: "TestNoEntryPointPlugin", path: "Tests/PluginFixtures/NoEntryPoint"),
        .target(name: "TestWrongABIPlugin", dependencies: ["CURecPluginABI"], path: "Tests/PluginFixtures/WrongABI"),
        .target(name: "TestMisbehavingPlugin", dependencies: ["CURecPluginABI"], path: "Tests/PluginFixtures/Misbehaving"),
        .target(name: "TestCrashOnLoadPlugin", dependencies: ["CURecPluginABI"], path: "Tests/PluginFixtures/CrashOnLoad"),
        // Loads the libraries above (built by `swift build`, found beside the test binary).
        .testTarget(
            name: "CURecPluginHostTests",
            dependencies: [
                "CURecPluginHost",
                "CURecPluginABI",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "CURecRPCTests",
            dependencies: ["CURecRPC", "CURecRPCProtos"]
        ),
        // The daemon's seams: service functions without a transport and their routing,
        // configuration, artifact manifests, job parameters, generated docs; the pair reason
        // cache and model lookup.
        .testTarget(
            name: "CURecServerTests",
            dependencies: [
                "CURecServer", "CURecRPC", "CURecRPCProtos", "CURecProto", "CURecJobs", "CURecPluginHost", "CURecData",
                "CURecModels", "CURecPipeline",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
    ]
)
