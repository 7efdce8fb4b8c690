//! The Android module's Kotlin on this machine (no Android SDK, NDK or Gradle): the bindings
//! generated with `android = true` (android/uniffi-android.toml), the shared hand-written layer,
//! android/src/main/kotlin and the sample app, compiled by android/robolectric/pom.xml against
//! Robolectric's real framework jar (`org.robolectric:android-all`), and its JUnit 4 tests run
//! under Robolectric with a real `Context`. Maven fetches everything from Maven Central into
//! `~/.m2` on the first run, so a second run downloads nothing: the install is idempotent.
//!
//! What this never verifies: the Gradle/AGP build itself (android/build.gradle.kts), NDK-linked
//! `libpmn.so` files, the Android-only native branch (rustls-platform-verifier's init, the
//! Android Keystore) and anything on a device.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ctx::{have, run, run_counting, Ctx, Failure, Result};
use crate::install::apt_install;

/// Where the Android flavour of the generated Kotlin goes (never beside the JVM flavour in
/// bindings/kotlin/src/main/kotlin: the two differ in the object cleaner and would clash).
pub(crate) fn android_kotlin_dir(ctx: &Ctx) -> PathBuf {
    ctx.target_dir().join("android-kotlin")
}

/// Generates the Kotlin bindings as android/build-rust.sh does (library mode over `lib`, with
/// android/uniffi-android.toml merged over uniffi.toml) into [`android_kotlin_dir`].
pub(crate) fn generate_android_kotlin(ctx: &Ctx, lib: &Path) -> Result {
    const STEP: &str = "android: generate kotlin (android = true)";
    let out = android_kotlin_dir(ctx);
    // A stale file of an older API would be compiled too: start from an empty directory.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)
        .map_err(|e| Failure::new(STEP, format!("cannot create {}: {e}", out.display())))?;
    run(
        STEP,
        ctx.cargo()
            .args([
                "run",
                "-q",
                "-p",
                "uniffi-bindgen",
                "--",
                "generate",
                "--library",
            ])
            .arg(lib)
            .arg("--config")
            .arg(ctx.root.join("android").join("uniffi-android.toml"))
            .args(["--language", "kotlin", "--out-dir"])
            .arg(&out)
            .arg("--no-format"),
    )
}

/// What [`android_jvm`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AndroidJvm {
    /// The suite's gate: `mvn compile -Ppackaged-bindings`, only android/src/main/kotlin and the
    /// sample, against the framework jar and the org.pmn:pmn-kotlin jar the package stage
    /// installed (so the big generated file is not compiled a second time).
    Gate,
    /// `mvn compile`: the Android flavour of the bindings, the shared layer, android/src and the
    /// sample against the framework jar (the AAR's classes come from this).
    Compile,
    /// `mvn test`: the compile, then the Robolectric tests.
    Robolectric,
}

/// The classes android/robolectric compiled (the AAR's classes.jar is made from them).
pub(crate) fn android_classes(ctx: &Ctx) -> PathBuf {
    ctx.root.join("android/robolectric/target/classes")
}

/// Compiles (and with [`AndroidJvm::Robolectric`] tests) android/ on the JVM, the bindings
/// generated from the libpmn.so in `native_dir` (the `bindings` stage's target/debug, or the
/// release build for `cargo xtask package`).
pub(crate) fn android_jvm(ctx: &mut Ctx, what: AndroidJvm, native_dir: &Path) -> Result {
    let step = match what {
        AndroidJvm::Gate => "android: android/src + sample against android-all",
        AndroidJvm::Compile => "android: compile against android-all",
        AndroidJvm::Robolectric => "android: robolectric tests",
    };
    if !have("mvn") || !have("javac") {
        apt_install(step, &["maven", "default-jdk-headless"])?;
    }
    let project = ctx.root.join("android").join("robolectric");
    // A class left by an earlier run (the other flavour, a deleted source) must not reach the
    // AAR or hide a compile error.
    let _ = std::fs::remove_dir_all(project.join("target").join("classes"));
    let mut cmd = Command::new("mvn");
    cmd.current_dir(&project)
        .args(["-B", "--no-transfer-progress"]);
    if what == AndroidJvm::Gate {
        return run(step, cmd.args(["-q", "compile", "-Ppackaged-bindings"]));
    }
    let lib = native_dir.join("libpmn.so");
    if !lib.is_file() {
        return Err(Failure::new(
            step,
            format!("no {} (run the bindings stage first)", lib.display()),
        ));
    }
    generate_android_kotlin(ctx, &lib)?;
    cmd.arg(format!(
        "-Dpmn.android.kotlin={}",
        android_kotlin_dir(ctx).display()
    ))
    .arg(format!("-Djna.library.path={}", native_dir.display()));
    match what {
        // Not -q: Surefire's "Tests run: …" line is the record that the tests ran.
        AndroidJvm::Robolectric => run_counting(step, cmd.arg("test"), &mut ctx.counts),
        // -q: only errors; a compile has no test summary to keep.
        _ => run(step, cmd.args(["-q", "compile"])),
    }
}
