//! The phone compile gates: scripts/mobile-check.sh (cargo check and the release staticlib for
//! the Android and iOS targets) and the Swift syntax gate (tree-sitter-swift in a venv).

use std::path::Path;
use std::process::Command;

use crate::android::{android_classes, android_jvm, AndroidJvm};
use crate::bindings::bindings;
use crate::ctx::{have, run, Ctx, Result};
use crate::install::{apt_install, make_venv, pip_install};
use crate::layout::lay_out_aar;

/// `cargo xtask mobile-check`: every phone gate this machine can run (no NDK, no Xcode): the
/// Rust checks and staticlib, the Android Kotlin compiled against the real framework and run
/// under Robolectric, the AAR's layout, the Swift syntax.
pub(crate) fn mobile_check(ctx: &mut Ctx) -> Result {
    ctx.stage("mobile: cargo check (4 targets)", |ctx| {
        mobile_script(ctx, &[])
    })?;
    ctx.stage("mobile: staticlib aarch64-linux-android", |ctx| {
        mobile_script(ctx, &["--staticlib", "aarch64-linux-android"])
    })?;
    ctx.stage("bindings", bindings)?;
    ctx.stage("android: robolectric tests", |ctx| {
        let native_dir = ctx.target_dir().join("debug");
        android_jvm(ctx, AndroidJvm::Robolectric, &native_dir)
    })?;
    // The classes just compiled (Android flavour, debug library's bindings): the AAR's layout.
    ctx.stage("android: aar layout", |ctx| {
        lay_out_aar(ctx, &android_classes(ctx)).map(|_| ())
    })?;
    ctx.stage("mobile: swift syntax", swift_syntax)
}

/// Runs scripts/mobile-check.sh (Debian clang compiles ring's C for the phone targets; build
/// output in target/mobile), installing clang and llvm-ar when missing.
pub(crate) fn mobile_script(ctx: &mut Ctx, args: &[&str]) -> Result {
    const STEP: &str = "mobile-check";
    mobile_prerequisites(STEP)?;
    run(STEP, &mut mobile_command(ctx, args))
}

/// The C toolchain scripts/mobile-check.sh links with (clang, lld, llvm-ar).
pub(crate) fn mobile_prerequisites(step: &str) -> Result {
    if !have("clang") || !have("llvm-ar") {
        apt_install(step, &["clang", "lld", "llvm"])?;
    }
    Ok(())
}

/// scripts/mobile-check.sh with `args`, in its own target directory (target/mobile).
pub(crate) fn mobile_command(ctx: &Ctx, args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.current_dir(&ctx.root)
        .arg("scripts/mobile-check.sh")
        .args(args)
        .env("CARGO_TARGET_DIR", ctx.target_dir().join("mobile"));
    cmd
}
/// The pinned parser of the Swift syntax gate (PyPI).
pub(crate) const TREE_SITTER: [&str; 2] = ["tree-sitter==0.26.1", "tree-sitter-swift==0.7.4"];

/// Checks that every Swift file parses (generated bindings, ios/ package, sample, tests) with
/// tree-sitter-swift in a venv under target/swift-syntax-venv. Expects `bindings` to have run.
pub(crate) fn swift_syntax(ctx: &mut Ctx) -> Result {
    const STEP: &str = "swift syntax";
    let venv = ctx.target_dir().join("swift-syntax-venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import tree_sitter, tree_sitter_swift"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !(python.is_file() && ready(&python)) {
        make_venv(STEP, &venv, &["python3", "python3-venv"])?;
        pip_install(STEP, &python, &TREE_SITTER)?;
    }
    let script = ctx.root.join("scripts").join("swift-syntax-check.py");
    run(STEP, Command::new(&python).arg(&script).arg("--self-test"))?;
    run(
        STEP,
        Command::new(&python)
            .current_dir(&ctx.root)
            .arg(&script)
            .args(["bindings/swift/generated", "ios"]),
    )
}
