#!/usr/bin/env bash
# Compile gate for the phone targets without an NDK or Xcode: `cargo check -p pmn --lib --target T`
# with Debian clang compiling ring's C (shared/FACTS.md "Cross-compiling for phones").
#
#   scripts/mobile-check.sh [TARGET...]              (default: all four targets below)
#   scripts/mobile-check.sh --staticlib [TARGET]     release-small staticlib (default aarch64-linux-android)
#   scripts/mobile-check.sh --cdylib [TARGET]        release-small cdylib, Android only (default
#                                                    aarch64-linux-android), for its size: see below
#
# Checks and staticlibs: cdylibs for phones cannot be linked for real here (no NDK linker, no
# Xcode). `--cdylib` links one anyway with Debian's clang + lld against *empty* stand-ins for the
# NDK's libc, libm, libdl, liblog and libunwind (`-nostdlib`, the system symbols stay undefined):
# not loadable, but its code and data are what the NDK link would produce minus the NDK's static
# libunwind (~100 KB), so its size is the phone's `.so` size (`cargo xtask size` prints it).
# These clang settings are a compile gate, not a release recipe: releases build with the NDK
# (android/build-rust.sh, cargo-ndk) and Xcode (ios/build-xcframework.sh).
# aarch64-apple-ios-sim is not in the default list because its std cannot be downloaded on this
# machine; the iOS build script keeps it. Build artefacts go to target/mobile so the host build's
# cache is not invalidated by the per-target CFLAGS.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/mobile}"

staticlib=0
cdylib=0
if [ "${1:-}" = "--staticlib" ] || [ "${1:-}" = "--cdylib" ]; then
    [ "$1" = "--staticlib" ] && staticlib=1 || cdylib=1
    shift
    [ $# -gt 0 ] || set -- aarch64-linux-android
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android aarch64-apple-ios)
fi

# iOS: clang needs an SDK root and <TargetConditionals.h>; ring's core needs nothing else from the
# SDK when built with RING_CORE_NOSTDLIBINC, so an empty SDK and a stub header are enough.
ios_stub="$CARGO_TARGET_DIR/ios-stub"
mkdir -p "$ios_stub/sdk" "$ios_stub/include"
cat > "$ios_stub/include/TargetConditionals.h" <<'H'
/* Stub for compile checks without Xcode: an iOS device target. */
#ifndef PMN_STUB_TARGET_CONDITIONALS_H
#define PMN_STUB_TARGET_CONDITIONALS_H
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 0
#define TARGET_OS_IPHONE 1
#define TARGET_OS_IOS 1
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_VISION 0
#define TARGET_OS_MACCATALYST 0
#define TARGET_OS_SIMULATOR 0
#define TARGET_OS_EMBEDDED 1
#define TARGET_CPU_ARM64 1
#endif
H

# Idempotent: the standard libraries of the targets (a no-op when installed).
if command -v rustup >/dev/null; then
    rustup target add "${targets[@]}" >/dev/null
fi

status=0
for target in "${targets[@]}"; do
    var="${target//-/_}"
    common="-nostdlibinc -DRING_CORE_NOSTDLIBINC=1"
    extra=()
    case "$target" in
        aarch64-linux-android) cflags="--target=aarch64-linux-android21 $common" ;;
        armv7-linux-androideabi) cflags="--target=armv7a-linux-androideabi21 $common" ;;
        x86_64-linux-android) cflags="--target=x86_64-linux-android21 $common -ffreestanding" ;;
        aarch64-apple-ios)
            cflags="--target=arm64-apple-ios13.0 $common -I$ios_stub/include"
            extra=("SDKROOT=$ios_stub/sdk") ;;
        *) echo "mobile-check: unknown target $target" >&2; exit 2 ;;
    esac
    if [ $staticlib = 1 ]; then
        cmd=(cargo rustc -p pmn --lib --crate-type staticlib --profile release-small --target "$target")
    elif [ $cdylib = 1 ]; then
        case "$target" in
            *-android*) ;;
            *) echo "mobile-check: --cdylib is for Android targets only" >&2; exit 2 ;;
        esac
        clang_target="${cflags%% *}"
        stubs="$CARGO_TARGET_DIR/ndk-stubs"
        mkdir -p "$stubs"
        for l in c m dl log unwind gcc; do
            [ -f "$stubs/lib$l.a" ] || llvm-ar rc "$stubs/lib$l.a"
        done
        # Flags for the final crate only (after --): the dependencies stay those of --staticlib.
        cmd=(cargo rustc -p pmn --lib --crate-type cdylib --profile release-small --target "$target"
            -- -C linker=clang -C "link-arg=$clang_target" -C link-arg=-fuse-ld=lld
            -C link-arg=-nostdlib -C "link-arg=-L$stubs")
    else
        cmd=(cargo check -p pmn --lib --target "$target")
    fi
    echo "== ${cmd[*]}"
    start=$SECONDS
    if env "CC_$var=clang" "AR_$var=llvm-ar" "CFLAGS_$var=$cflags" \
        ${extra[@]+"${extra[@]}"} "${cmd[@]}"; then
        echo "== $target: ok ($((SECONDS - start)) s)"
        if [ $staticlib = 1 ]; then
            lib="$CARGO_TARGET_DIR/$target/release-small/libpmn.a"
            bytes=$(stat -c %s "$lib")
            echo "== $target staticlib: $lib $bytes bytes ($((bytes / 1024 / 1024)) MiB)"
        elif [ $cdylib = 1 ]; then
            lib="$CARGO_TARGET_DIR/$target/release-small/libpmn.so"
            bytes=$(stat -c %s "$lib")
            echo "== $target cdylib (stub-linked): $lib $bytes bytes ($((bytes / 1024 / 1024)) MiB)"
        fi
    else
        echo "== $target: FAILED"
        status=1
    fi
done
exit $status
