#!/usr/bin/env bash
# Builds PMNFFI.xcframework (device, simulator and macOS slices of libpmn.a) and the generated Swift
# bindings for the package in this directory. Run on a Mac with Xcode and rustup:
#
#   ios/build-xcframework.sh            then: swift build / swift test (PMN_SERVER=… PMN_CA=…) in ios/
#
# Not runnable on the project's CI machine (no Xcode). The compile gate that runs there is
# scripts/mobile-check.sh (aarch64-apple-ios) plus the Swift syntax gate (scripts/swift-syntax-check.py).
# aarch64-apple-ios-sim cannot even be downloaded on that machine; it is needed here for the simulator.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="$here/build"
profile=release-small # Cargo.toml: size-optimised, panic = unwind (UniFFI catches panics)
export IPHONEOS_DEPLOYMENT_TARGET=15.0 MACOSX_DEPLOYMENT_TARGET=12.0 # as in Package.swift

device=aarch64-apple-ios
simulators=(aarch64-apple-ios-sim x86_64-apple-ios)
macs=(aarch64-apple-darwin x86_64-apple-darwin)

rustup target add "$device" "${simulators[@]}" "${macs[@]}"
cd "$root"
# Each crate type on its own (`cargo rustc --crate-type`): built together with the others, the
# artefacts are not optimised as a whole (android/build-rust.sh has the figures).
for target in "$device" "${simulators[@]}" "${macs[@]}"; do
    cargo rustc -p pmn --lib --crate-type staticlib --profile "$profile" --target "$target"
done
host_target="$(uname -m | sed 's/arm64/aarch64/')-apple-darwin"
cargo rustc -p pmn --lib --crate-type cdylib --profile "$profile" --target "$host_target"

lib() { echo "$root/target/$1/$profile/libpmn.a"; }
rm -rf "$build" "$here/PMNFFI.xcframework"
mkdir -p "$build/ios-simulator" "$build/macos" "$build/headers"
# One fat library per platform: simulators on Apple silicon and Intel Macs; macOS both arches.
lipo -create "$(lib "${simulators[0]}")" "$(lib "${simulators[1]}")" -output "$build/ios-simulator/libpmn.a"
lipo -create "$(lib "${macs[0]}")" "$(lib "${macs[1]}")" -output "$build/macos/libpmn.a"

# Bindings in library mode from the host's dylib (same code, same metadata as the static slices).
host_dylib="$root/target/$host_target/$profile/libpmn.dylib"
cargo run -q -p uniffi-bindgen -- generate --library "$host_dylib" --language swift \
    --out-dir "$build/generated" --no-format
cp "$build/generated/PMNFFI.h" "$build/headers/"
# The xcframework's Clang module: the name the generated Swift imports (`import PMNFFI`).
cp "$build/generated/PMNFFI.modulemap" "$build/headers/module.modulemap"
mkdir -p "$here/Sources/PMN/Generated"
cp "$build/generated/PMN.swift" "$here/Sources/PMN/Generated/PMN.swift"

xcodebuild -create-xcframework \
    -library "$(lib "$device")" -headers "$build/headers" \
    -library "$build/ios-simulator/libpmn.a" -headers "$build/headers" \
    -library "$build/macos/libpmn.a" -headers "$build/headers" \
    -output "$here/PMNFFI.xcframework"
echo "built $here/PMNFFI.xcframework; Swift sources in $here/Sources/PMN"
