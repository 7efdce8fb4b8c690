#!/usr/bin/env bash
# Builds libpmn.so for the AAR's ABIs with cargo-ndk and generates the Android Kotlin bindings.
# Called by the Gradle task `buildRust` (build.gradle.kts) with the module's build directory.
#
# Needs: rustup, cargo-ndk (`cargo install cargo-ndk`), the Android NDK (ANDROID_NDK_HOME).
# Not runnable on the project's CI machine (no NDK there); the compile gate that *is* run there is
# scripts/mobile-check.sh (cargo check per target with Debian clang, plus one release staticlib).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$here/build}"
min_sdk=23 # keep in step with minSdk in build.gradle.kts

rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android

cd "$root"
# Release artefacts: the size profile (Cargo.toml `release-small`, panic = unwind for UniFFI).
# `rustc --crate-type cdylib`, not `build`: built together with the crate's other types (lib,
# staticlib) the cdylib came out 30 % larger (host x86_64: 9 979 504 B against 7 695 216 B
# alone, 2026-12-01); `cargo xtask size` measures the artefact built this way.
cargo ndk -t arm64-v8a -t armeabi-v7a -t x86_64 --platform "$min_sdk" \
    -o "$build/generated/jniLibs" \
    rustc -p pmn --lib --crate-type cdylib --profile release-small

# Library-mode bindgen reads the metadata from any one of the built libraries.
cargo run -q -p uniffi-bindgen -- generate \
    --library "$build/generated/jniLibs/arm64-v8a/libpmn.so" \
    --config "$here/uniffi-android.toml" \
    --language kotlin --out-dir "$build/generated/uniffi/kotlin" --no-format
