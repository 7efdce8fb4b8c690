//! The generated Kotlin and Swift bindings (uniffi-bindgen over the built `libpmn.so`) and the
//! Kotlin binding tests on the JVM (Maven, a JDK, a fresh Prosody).

use std::process::Command;

use pmn_testkit::TestServer;

use crate::ctx::{have, run, run_counting, Ctx, Failure, Result};
use crate::install::{apt_install, start_prosody};

/// Builds `libpmn.so` (debug, test-ca) and generates the Kotlin and Swift bindings from it in
/// library mode.
pub(crate) fn bindings(ctx: &mut Ctx) -> Result {
    run(
        "bindings: build libpmn",
        ctx.cargo()
            .args(["build", "-p", "pmn", "--features", "test-ca", "--lib"]),
    )?;
    let lib = ctx.target_dir().join("debug").join("libpmn.so");
    if !lib.is_file() {
        return Err(Failure::new(
            "bindings: build libpmn",
            format!("{} was not built", lib.display()),
        ));
    }
    generate(ctx, &lib, &["kotlin", "swift"])
}

/// Generates the bindings of `languages` from the library `lib` (library mode, no formatter):
/// Kotlin into bindings/kotlin/src/main/kotlin, Swift into bindings/swift/generated.
pub(crate) fn generate(ctx: &mut Ctx, lib: &std::path::Path, languages: &[&str]) -> Result {
    for &language in languages {
        let out_dir = match language {
            "kotlin" => "bindings/kotlin/src/main/kotlin",
            _ => "bindings/swift/generated",
        };
        let step = format!("bindings: generate {language}");
        let out = ctx.root.join(out_dir);
        std::fs::create_dir_all(&out)
            .map_err(|e| Failure::new(&step, format!("cannot create {}: {e}", out.display())))?;
        let mut cmd = ctx.cargo();
        cmd.args([
            "run",
            "-q",
            "-p",
            "uniffi-bindgen",
            "--",
            "generate",
            "--library",
        ])
        .arg(lib)
        .args(["--language", language, "--out-dir"])
        .arg(&out)
        .arg("--no-format");
        run(&step, &mut cmd)?;
    }
    Ok(())
}
/// System properties handed to `mvn` (and, through the pom's Surefire configuration, to the
/// tests). Add new ones here.
pub(crate) fn kotlin_system_properties(ctx: &Ctx, server: &TestServer) -> Vec<(String, String)> {
    vec![
        (
            "jna.library.path".into(),
            ctx.target_dir().join("debug").display().to_string(),
        ),
        ("pmn.server".into(), server.addr()),
        ("pmn.ca".into(), server.ca_path().display().to_string()),
    ]
}

/// Runs the Kotlin binding tests on the JVM (`mvn test` in bindings/kotlin) against a fresh
/// Prosody. Skipped while bindings/kotlin/pom.xml does not exist. Expects `bindings` to have run.
pub(crate) fn kotlin_jvm_tests(ctx: &mut Ctx) -> Result {
    const STEP: &str = "kotlin jvm tests";
    let dir = ctx.root.join("bindings").join("kotlin");
    if !dir.join("pom.xml").is_file() {
        println!("xtask: {} missing, skipping", dir.join("pom.xml").display());
        return Ok(());
    }
    if !have("mvn") || !have("javac") {
        apt_install(STEP, &["maven", "default-jdk-headless"])?;
    }
    let server = start_prosody(ctx)?;
    // The password-rotation test changes its account's password: it gets an account of its own.
    let (rotate_user, rotate_password) = ("rotate", "rotate-old");
    server
        .register(rotate_user, "home.test", rotate_password)
        .map_err(|e| Failure::new(STEP, format!("registering {rotate_user}@home.test: {e}")))?;
    let mut cmd = Command::new("mvn");
    // Not -q: Surefire's "Tests run: …" summary is the record that the JVM tests ran.
    cmd.current_dir(&dir)
        .args(["-B", "--no-transfer-progress", "test"]);
    for (key, value) in kotlin_system_properties(ctx, &server) {
        cmd.arg(format!("-D{key}={value}"));
    }
    cmd.arg(format!("-Dpmn.rotate.network={rotate_user}@home.test"))
        .arg(format!("-Dpmn.rotate.password={rotate_password}"));
    let result = run_counting(STEP, &mut cmd, &mut ctx.counts);
    drop(server);
    result
}
