// swift-tools-version:6.1
// protoc-gen-curec-rpc: generates CURecRPC method descriptors, handler protocols and typed
// clients from .proto services. Built and run only by scripts/generate-protos; its output is
// committed, so building or testing the daemon never needs it.
import PackageDescription

let package = Package(
    name: "protoc-gen-curec-rpc",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    ],
    targets: [
        .executableTarget(
            name: "protoc-gen-curec-rpc",
            dependencies: [.product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf")]
        ),
    ]
)
