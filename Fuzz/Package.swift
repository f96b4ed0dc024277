// swift-tools-version:6.1
import Foundation
import PackageDescription

// libFuzzer targets for the daemon's input paths. A package of its own, so the main package's
// `swift build` never compiles them; `bench/fuzz/run` builds them with `--sanitize=fuzzer`
// (coverage instrumentation and libFuzzer's driver, which supplies `main`).
//
// The main package is a path dependency on the directory above; SwiftPM names a path
// dependency after its directory, so the name is taken from where this file lives.
let mainPackageDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let mainPackage = mainPackageDirectory.lastPathComponent

func fuzzTarget(_ name: String, _ products: [String], swiftProtobuf: Bool = false) -> Target {
    var dependencies: [Target.Dependency] = products.map { .product(name: $0, package: mainPackage) }
    if swiftProtobuf { dependencies.append(.product(name: "SwiftProtobuf", package: "swift-protobuf")) }
    return .executableTarget(
        name: name, dependencies: dependencies,
        // No `main`: libFuzzer's driver calls LLVMFuzzerTestOneInput.
        swiftSettings: [.unsafeFlags(["-parse-as-library"])])
}

let package = Package(
    name: "CURecFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: mainPackageDirectory.path),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        // gRPC length-prefixed messages split at arbitrary chunk boundaries.
        fuzzTarget("FuzzDeframer", ["CURecRPC"]),
        // grpc-timeout, grpc-message escaping, -bin metadata and request-header admission.
        fuzzTarget("FuzzHeaders", ["CURecRPC"]),
        // Every routed method's request: protobuf decoding and the service's validation.
        fuzzTarget("FuzzRequests", ["CURecRPC", "CURecProto", "CURecServer"], swiftProtobuf: true),
        // Model files read from disk.
        fuzzTarget("FuzzSafeTensors", ["CURecTensor"]),
        fuzzTarget("FuzzGGUF", ["CURecTensor"]),
    ]
)
