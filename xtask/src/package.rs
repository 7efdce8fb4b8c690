//! The artifacts a build tool uses (issue 14): `org.pmn:pmn-kotlin`, a jar with the generated and
//! hand-written Kotlin and `libpmn.so` for linux-x86-64 as a JNA resource (so an app needs no
//! `-Djna.library.path`), installed into the local Maven repository, and a sample Maven project
//! *outside the source tree* that depends on it.
//!
//! `cargo xtask package` packages the release library (no test CA) and compiles the sample. The
//! suite packages its own build (with the test-CA feature) and runs the sample against a fresh
//! Prosody. Either way the sample is compiled with every ```` ```kotlin ```` block of the README
//! and of the KDoc (crate::snippets), and the run is the README's newcomer flow. Both install the same coordinates, `org.pmn:pmn-kotlin:0.1.0`: the last one run is
//! the one in `~/.m2`.
//!
//! Beside the jar, both lay out the phone artifacts as far as they can be built here
//! (xtask/src/layout.rs): the Android AAR's contents and the Swift package inputs, under
//! target/package/.

use std::path::{Path, PathBuf};
use std::process::Command;

use pmn_testkit::{FRIEND, HOME};

use crate::android::{android_classes, android_jvm, AndroidJvm};
use crate::bindings::generate;
use crate::ctx::{have, run, Ctx, Failure, Result};
use crate::install::{apt_install, start_prosody};
use crate::layout::{lay_out_aar, lay_out_swift_package};
use crate::snippets;

/// Which library goes into the jar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Build {
    /// `cargo build --release`, no test CA: what an app ships.
    Release,
    /// The suite's debug build with the test-CA feature, so the sample can log in to the test
    /// Prosody.
    SuiteDebug,
}

fn need_maven(step: &str) -> Result {
    if !have("mvn") || !have("javac") {
        apt_install(step, &["maven", "default-jdk-headless"])?;
    }
    Ok(())
}

/// `mvn install` of bindings/kotlin/package with the library from `native_dir`.
fn install_jar(ctx: &Ctx, native_dir: &Path) -> Result {
    const STEP: &str = "package: mvn install org.pmn:pmn-kotlin";
    need_maven(STEP)?;
    if !native_dir.join("libpmn.so").is_file() {
        return Err(Failure::new(
            STEP,
            format!("no libpmn.so in {}", native_dir.display()),
        ));
    }
    run(
        STEP,
        Command::new("mvn")
            .current_dir(ctx.root.join("bindings/kotlin/package"))
            .args(["-B", "-q", "--no-transfer-progress", "install"])
            .arg(format!("-Dpmn.native.dir={}", native_dir.display())),
    )
}

/// Copies the sample project out of the checkout (so nothing of the tree leaks into its build)
/// and returns where it went.
fn sample_outside_the_tree(ctx: &Ctx) -> Result<PathBuf> {
    const STEP: &str = "package: copy the sample out of the tree";
    let from = ctx.root.join("bindings/kotlin/package-sample");
    let to = std::env::temp_dir().join(format!("pmn-packaged-sample-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    copy_dir(&from, &to).map_err(|e| Failure::new(STEP, format!("{}: {e}", to.display())))?;
    Ok(to)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &target)?;
            }
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Builds the jar from `build`'s library, installs it, and builds the sample against it; with
/// [`Build::SuiteDebug`] the sample also logs in to a fresh Prosody through the packaged library.
pub(crate) fn package(ctx: &mut Ctx, build: Build) -> Result {
    let native_dir = match build {
        Build::Release => {
            run(
                "package: build the release libpmn",
                ctx.cargo()
                    .args(["build", "-p", "pmn", "--lib", "--release"]),
            )?;
            ctx.target_dir().join("release")
        }
        // The bindings stage built it (and generated the Kotlin from it) just before.
        Build::SuiteDebug => ctx.target_dir().join("debug"),
    };
    if build == Build::Release {
        // The Kotlin in the jar and the Swift in the package must come from the library shipped.
        generate(ctx, &native_dir.join("libpmn.so"), &["kotlin", "swift"])?;
    }
    install_jar(ctx, &native_dir)?;
    let sample = sample_outside_the_tree(ctx)?;
    let result = snippets::write_into_sample(ctx, &sample).and_then(|count| {
        println!("xtask: {count} Kotlin snippets of the docs compiled into the sample");
        build_and_run_sample(ctx, &sample, build)
    });
    let _ = std::fs::remove_dir_all(&sample);
    result?;
    // (b) The AAR's layout, from the Android flavour compiled from the release library's
    // bindings: in `cargo xtask package` and `mobile-check`, not in the suite, where that second
    // compile of the generated Kotlin would double the Android stage (xtask/src/android.rs).
    if build == Build::Release {
        android_jvm(ctx, AndroidJvm::Compile, &native_dir)?;
        lay_out_aar(ctx, &android_classes(ctx))?;
    }
    // (c) The Swift package inputs (copies only: cheap enough for the suite).
    lay_out_swift_package(ctx)?;
    Ok(())
}

fn build_and_run_sample(ctx: &mut Ctx, sample: &Path, build: Build) -> Result {
    let compiling = std::time::Instant::now();
    run(
        "package: build the sample against the artifact",
        Command::new("mvn").current_dir(sample).args([
            "-B",
            "-q",
            "--no-transfer-progress",
            "package",
        ]),
    )?;
    println!(
        "xtask: the sample (with the docs' snippets) compiled in {:.1} s",
        compiling.elapsed().as_secs_f64()
    );
    if build == Build::Release {
        println!(
            "xtask: org.pmn:pmn-kotlin:0.1.0 installed (release libpmn); the sample at \
             bindings/kotlin/package-sample builds against it"
        );
        return Ok(());
    }
    let server = start_prosody(ctx)?;
    let ca = server.ca_path();
    let started = std::time::Instant::now();
    // No jna.library.path, no source directory of the checkout: only the installed artifact. The
    // run is the README's flow: Julia's household and Romeo's, the guest.
    let result = run(
        "package: run the README's flow against Prosody",
        Command::new("mvn")
            .current_dir(sample)
            .args(["-B", "-q", "--no-transfer-progress", "exec:java"])
            .arg(format!(
                "-Dexec.args={} {} {} {} {} {}",
                server.addr(),
                ca.display(),
                HOME.jid,
                HOME.password,
                FRIEND.jid,
                FRIEND.password
            )),
    );
    drop(server);
    if result.is_ok() {
        // The stage's budget is the compile plus this run: say what the run took.
        println!(
            "xtask: the README's flow ran against Prosody in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    result
}
