// swift-tools-version:6.0
// pmn for iOS (and macOS, for `swift test` on a Mac): the Rust library as the binary target
// PMNFFI.xcframework, and the Swift module PMN = the UniFFI-generated bindings + a thin idiomatic layer
// (RemoteControl: AsyncStreams, async throws). Run ./build-xcframework.sh first; it builds the
// xcframework and copies the generated Swift into Sources/PMN/Generated. Not built on the project's CI
// machine (no Swift toolchain or Xcode there): CI checks that every Swift file parses.
import PackageDescription

let package = Package(
    name: "PMN",
    // iOS 15 / macOS 12: Swift concurrency without back-deployment shims, and os.Logger.
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "PMN", targets: ["PMN"]),
    ],
    targets: [
        .binaryTarget(name: "PMNFFI", path: "PMNFFI.xcframework"),
        .target(name: "PMN", dependencies: ["PMNFFI"], path: "Sources/PMN"),
        .testTarget(name: "PMNTests", dependencies: ["PMN"], path: "Tests/PMNTests"),
    ],
    swiftLanguageModes: [.v6]
)
