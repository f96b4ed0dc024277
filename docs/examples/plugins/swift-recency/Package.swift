// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "Recency",
    products: [.library(name: "Recency", type: .dynamic, targets: ["Recency"])],
    dependencies: [
        // Path to a checkout of CURec serve (or its git URL and a version).
        .package(name: "CURecServe", path: "../../../.."),
    ],
    targets: [
        .target(name: "Recency", dependencies: [
            .product(name: "CURecPluginKit", package: "CURecServe"),
            .product(name: "CURecPluginABI", package: "CURecServe"),
        ]),
    ]
)
