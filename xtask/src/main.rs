//! `cargo xtask`: the project's single entry point for the demo, the whole test suite, the
//! generated bindings and the benchmarks. Aliased in `.cargo/config.toml`:
//! `[alias] xtask = "run --quiet --package xtask --"`.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use pmn_testkit::TestServer;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  demo              start a local Prosody and run `pmn demo` against it
  test              the whole suite: fmt, clippy, cargo test, bindings, Kotlin JVM tests
  bindings          build libpmn and generate the Kotlin and Swift bindings
  bench [NAME]      run the benchmarks (only NAME when given)
  mobile-check      phone compile gates: cargo check for 4 Android/iOS targets, the
                    aarch64-android release staticlib (size), the Swift syntax gate
  help              this text
";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let mut ctx = Ctx::new();
    let result = match args.first().map(String::as_str) {
        None | Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("demo") if args.len() == 1 => demo(&mut ctx),
        Some("test") if args.len() == 1 => test(&mut ctx),
        Some("bindings") if args.len() == 1 => ctx.stage("bindings", bindings),
        Some("bench") if args.len() <= 2 => bench(&mut ctx, args.get(1).map(String::as_str)),
        Some("mobile-check") if args.len() == 1 => mobile_check(&mut ctx),
        Some(_) => {
            eprintln!("xtask: unknown command or arguments: {}\n", args.join(" "));
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    ctx.summary();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!(
                "xtask: FAILED at step '{}': {}",
                failure.step, failure.detail
            );
            ExitCode::from(failure.code)
        }
    }
}

/// A failed step: its name, what went wrong, and the exit code for xtask.
#[derive(Debug)]
struct Failure {
    step: String,
    detail: String,
    code: u8,
}

impl Failure {
    fn new(step: &str, detail: impl fmt::Display) -> Failure {
        Failure {
            step: step.to_string(),
            detail: detail.to_string(),
            code: 1,
        }
    }
}

type Result<T = ()> = std::result::Result<T, Failure>;

/// Repository paths and the per-stage timings.
struct Ctx {
    root: PathBuf,
    timings: Vec<(String, Duration, bool)>,
    /// Tests counted from the runners' own summaries (cargo test, Surefire).
    counts: TestCounts,
}

impl Ctx {
    fn new() -> Ctx {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives inside the repository")
            .to_path_buf();
        Ctx {
            root,
            timings: Vec::new(),
            counts: TestCounts::default(),
        }
    }

    /// Runs one stage with a banner, recording its time and outcome.
    fn stage<T>(&mut self, name: &str, f: impl FnOnce(&mut Ctx) -> Result<T>) -> Result<T> {
        println!("\n==== xtask: {name} ====");
        let start = Instant::now();
        let result = f(self);
        self.timings
            .push((name.to_string(), start.elapsed(), result.is_ok()));
        result
    }

    fn summary(&self) {
        if self.timings.is_empty() {
            return;
        }
        println!("\n==== xtask: stage times ====");
        for (name, time, ok) in &self.timings {
            let mark = if *ok { "ok    " } else { "FAILED" };
            println!("  {mark} {:>8.1}s  {name}", time.as_secs_f64());
        }
        let total: Duration = self.timings.iter().map(|(_, t, _)| *t).sum();
        println!("         {:>8.1}s  total", total.as_secs_f64());
        if self.counts != TestCounts::default() {
            // The plain closing line CI reads: every Rust and JVM test counted above.
            println!(
                "tests: {} passed, {} failed",
                self.counts.passed, self.counts.failed
            );
        }
    }

    /// The cargo target directory: `$CARGO_TARGET_DIR` (relative to the repository) or `target/`.
    fn target_dir(&self) -> PathBuf {
        match env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => self.root.join(dir),
            _ => self.root.join("target"),
        }
    }

    /// `cargo` (the one running us when available), working in the repository root.
    fn cargo(&self) -> Command {
        let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")));
        cmd.current_dir(&self.root);
        cmd
    }
}

/// Runs `cmd` with inherited stdio; a non-zero exit fails `step`.
fn run(step: &str, cmd: &mut Command) -> Result {
    let status = cmd
        .status()
        .map_err(|e| Failure::new(step, format!("cannot run {cmd:?}: {e}")))?;
    check(step, cmd, status)
}

/// Passed and failed tests, added up from the runners' summary lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TestCounts {
    passed: u64,
    failed: u64,
}

impl TestCounts {
    /// Adds what one output line of `cargo test` or Maven Surefire reports.
    fn add_line(&mut self, line: &str) {
        // cargo: "test result: ok. 9 passed; 0 failed; 0 ignored; ..."
        if let Some(rest) = line.trim().strip_prefix("test result: ") {
            self.passed += number_before(rest, " passed");
            self.failed += number_before(rest, " failed");
            return;
        }
        // Surefire's aggregate (the per-class lines end in "-- in <class>" and are skipped):
        // "[INFO] Tests run: 22, Failures: 0, Errors: 0, Skipped: 0"
        let line = line
            .trim_start_matches("[INFO] ")
            .trim_start_matches("[ERROR] ");
        if let Some(rest) = line.strip_prefix("Tests run: ") {
            if rest.contains(" -- in ") {
                return;
            }
            let run = number_after(rest, "");
            let failures = number_after(rest, "Failures: ");
            let errors = number_after(rest, "Errors: ");
            let skipped = number_after(rest, "Skipped: ");
            self.failed += failures + errors;
            self.passed += run.saturating_sub(failures + errors + skipped);
        }
    }
}

/// The number ending right before `marker` in `text` ("9 passed" → 9).
fn number_before(text: &str, marker: &str) -> u64 {
    text.find(marker)
        .map(|end| {
            let digits: String = text[..end]
                .chars()
                .rev()
                .take_while(char::is_ascii_digit)
                .collect();
            digits
                .chars()
                .rev()
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// The number right after `marker` in `text` ("Errors: 2," → 2).
fn number_after(text: &str, marker: &str) -> u64 {
    text.find(marker)
        .map(|start| {
            text[start + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Like [`run`], but echoes stdout line by line while counting the tests it reports.
fn run_counting(step: &str, cmd: &mut Command, counts: &mut TestCounts) -> Result {
    use std::io::{BufRead, BufReader, Write};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Failure::new(step, format!("cannot run {cmd:?}: {e}")))?;
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout().lock();
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::io::Result::ok)
        {
            counts.add_line(&line);
            let _ = writeln!(out, "{line}");
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure::new(step, format!("waiting for {cmd:?}: {e}")))?;
    check(step, cmd, status)
}

fn check(step: &str, cmd: &Command, status: ExitStatus) -> Result {
    if status.success() {
        return Ok(());
    }
    let mut failure = Failure::new(step, format!("{cmd:?} exited with {status}"));
    failure.code = exit_code(status);
    Err(failure)
}

/// The exit code to report for a child's status (128 + signal for a killed child).
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        (None, None) => 1,
    }
}

/// Whether `program` is on `PATH`.
fn have(program: &str) -> bool {
    env::var_os("PATH").is_some_and(|path| {
        env::split_paths(&path).any(|dir| {
            let candidate = dir.join(program);
            candidate.is_file()
                && std::fs::metadata(&candidate).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.permissions().mode() & 0o111 != 0
                })
        })
    })
}

/// `apt-get update` + `apt-get install -y PACKAGES` (with sudo when not root).
fn apt_install(step: &str, packages: &[&str]) -> Result {
    println!("xtask: installing {} with apt-get", packages.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(step, &mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq"]);
    install.args(packages);
    run(step, &mut install)
}

/// Installs Prosody (and openssl) through tests/prosody/prosody.sh if missing.
fn install_prosody(_: &mut Ctx) -> Result {
    pmn_testkit::install().map_err(|e| Failure::new("prerequisites", e))?;
    // The second test server (a subset of the integration tests runs against it).
    let script = pmn_testkit::ServerKind::Ejabberd.script();
    run(
        "prerequisites",
        Command::new("bash").arg(script).arg("install"),
    )
}

/// The integration tests that run against ejabberd as well as Prosody: login, discovery, RPC,
/// events, the tunnel, pairing, XEP-0189, the guest flow, restarts and the reader's limits. The
/// tamper tests need Prosody's attacker module and stay Prosody-only.
const EJABBERD_TESTS: &[&str] = &[
    "session",
    "control",
    "e2e_tunnel",
    "e2e_control",
    "guest",
    "recovery",
    "stream_limits",
];

/// The environment variable through which tests and benches find the Python that has slixmpp.
const SLIXMPP_PYTHON_ENV: &str = "PMN_SLIXMPP_PYTHON";
/// The slixmpp release the interop tests are pinned to (PyPI).
const SLIXMPP_VERSION: &str = "1.17.0";

/// The third-party peers of the interop tests, installed idempotently: slixmpp in a venv under
/// target/interop-venv (PyPI), and mpv (Debian) for the real-player test. Returns the venv's
/// python.
fn install_interop_peers(ctx: &mut Ctx) -> Result<PathBuf> {
    const STEP: &str = "interop peers";
    if !have("mpv") {
        apt_install(STEP, &["mpv"])?;
    }
    let venv = ctx.target_dir().join("interop-venv");
    let python = venv.join("bin").join("python");
    let has_slixmpp = |python: &Path| {
        Command::new(python)
            .args([
                "-c",
                "import slixmpp, sys; sys.exit(slixmpp.__version__ != sys.argv[1])",
            ])
            .arg(SLIXMPP_VERSION)
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && has_slixmpp(&python) {
        println!(
            "xtask: slixmpp {SLIXMPP_VERSION} already in {}",
            venv.display()
        );
        return Ok(python);
    }
    if !have("python3") {
        apt_install(STEP, &["python3", "python3-venv"])?;
    }
    if !python.is_file() {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            // Debian's python3 lacks ensurepip without python3-venv.
            apt_install(STEP, &["python3-venv"])?;
            run(
                STEP,
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
            )?;
        }
    }
    run(
        STEP,
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("slixmpp=={SLIXMPP_VERSION}"),
        ]),
    )?;
    if !has_slixmpp(&python) {
        return Err(Failure::new(STEP, "slixmpp did not install"));
    }
    Ok(python)
}

fn start_prosody(_: &mut Ctx) -> Result<TestServer> {
    let server = TestServer::start().map_err(|e| Failure::new("prosody", e))?;
    println!(
        "xtask: prosody on {} (CA {})",
        server.addr(),
        server.ca_path().display()
    );
    Ok(server)
}

// ---- demo ----------------------------------------------------------------------------------

fn demo(ctx: &mut Ctx) -> Result {
    ctx.stage("prerequisites", install_prosody)?;
    ctx.stage("build pmn", |ctx| {
        run(
            "build pmn",
            ctx.cargo().args([
                "build",
                "-p",
                "pmn",
                "--features",
                "test-ca",
                "--bin",
                "pmn",
            ]),
        )
    })?;
    let server = ctx.stage("prosody", start_prosody)?;
    let result = ctx.stage("demo", |ctx| {
        let bin = ctx.target_dir().join("debug").join("pmn");
        let mut cmd = Command::new(&bin);
        cmd.current_dir(&ctx.root)
            .arg("demo")
            .arg("--server")
            .arg(server.addr())
            .arg("--ca")
            .arg(server.ca_path());
        run("demo", &mut cmd)
    });
    drop(server); // stops Prosody before we report
    result
}

// ---- test ----------------------------------------------------------------------------------

fn test(ctx: &mut Ctx) -> Result {
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("interop peers", install_interop_peers)?;
    ctx.stage("fmt", |ctx| {
        run("fmt", ctx.cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    ctx.stage("clippy", |ctx| {
        run(
            "clippy",
            ctx.cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "test-ca",
                "--",
                "-D",
                "warnings",
            ]),
        )
    })?;
    ctx.stage("cargo test", |ctx| {
        let mut counts = ctx.counts;
        let result = run_counting(
            "cargo test",
            ctx.cargo()
                .args(["test", "--workspace", "--features", "test-ca"])
                // Set, so the interop tests fail instead of skipping when the peer is broken.
                .env(SLIXMPP_PYTHON_ENV, &python),
            &mut counts,
        );
        ctx.counts = counts;
        result
    })?;
    ctx.stage("cargo test (ejabberd)", |ctx| {
        let mut counts = ctx.counts;
        let mut cmd = ctx.cargo();
        cmd.args(["test", "--features", "test-ca"]);
        for test in EJABBERD_TESTS {
            cmd.args(["--test", test]);
        }
        cmd.env("PMN_TEST_SERVER", "ejabberd");
        let result = run_counting("cargo test (ejabberd)", &mut cmd, &mut counts);
        ctx.counts = counts;
        result
    })?;
    ctx.stage("vendored crates' tests", vendored_tests)?;
    ctx.stage("bindings", bindings)?;
    ctx.stage("kotlin jvm tests", kotlin_jvm_tests)?;
    // The part of the mobile gates that fits the CI budget: the shipped aarch64-android artefact
    // built for real (release-small staticlib, size printed; a build is also a check) and a check of
    // iOS (`cargo xtask mobile-check` adds the other two Android ABIs).
    ctx.stage("mobile: cargo check aarch64-apple-ios", |ctx| {
        mobile_script(ctx, &["aarch64-apple-ios"])
    })?;
    ctx.stage("mobile: staticlib aarch64-linux-android", |ctx| {
        mobile_script(ctx, &["--staticlib", "aarch64-linux-android"])
    })?;
    ctx.stage("mobile: swift syntax", swift_syntax)?;
    Ok(())
}

/// The tests of the patched crates in vendor/ that cover pmn's patches (vendor/README.md): all
/// of rxml and tokio-xmpp (small), xmpp-parsers' `sm` module. Their own target directory, so the
/// workspace build is not invalidated.
fn vendored_tests(ctx: &mut Ctx) -> Result {
    let target = ctx.target_dir().join("vendor-tests");
    let mut counts = ctx.counts;
    // tokio-xmpp with the features pmn uses (its defaults would build aws-lc as well).
    for (krate, extra) in [
        ("rxml", &[][..]),
        (
            "tokio-xmpp",
            &["--no-default-features", "--features", "starttls,ring"][..],
        ),
        ("xmpp-parsers", &["sm::"][..]),
    ] {
        let manifest = format!("vendor/{krate}/Cargo.toml");
        let mut cmd = ctx.cargo();
        cmd.args(["test", "--manifest-path", &manifest, "--lib"])
            .args(extra)
            .env("CARGO_TARGET_DIR", &target);
        run_counting(&format!("cargo test ({krate})"), &mut cmd, &mut counts)?;
    }
    ctx.counts = counts;
    Ok(())
}

// ---- mobile --------------------------------------------------------------------------------

/// `cargo xtask mobile-check`: every phone compile gate this machine can run (no NDK, no Xcode).
fn mobile_check(ctx: &mut Ctx) -> Result {
    ctx.stage("mobile: cargo check (4 targets)", |ctx| {
        mobile_script(ctx, &[])
    })?;
    ctx.stage("mobile: staticlib aarch64-linux-android", |ctx| {
        mobile_script(ctx, &["--staticlib", "aarch64-linux-android"])
    })?;
    ctx.stage("bindings", bindings)?;
    ctx.stage("mobile: swift syntax", swift_syntax)
}

/// Runs scripts/mobile-check.sh (Debian clang compiles ring's C for the phone targets; build
/// output in target/mobile), installing clang and llvm-ar when missing.
fn mobile_script(ctx: &mut Ctx, args: &[&str]) -> Result {
    const STEP: &str = "mobile-check";
    if !have("clang") || !have("llvm-ar") {
        apt_install(STEP, &["clang", "lld", "llvm"])?;
    }
    let mut cmd = Command::new("bash");
    cmd.current_dir(&ctx.root)
        .arg("scripts/mobile-check.sh")
        .args(args)
        .env("CARGO_TARGET_DIR", ctx.target_dir().join("mobile"));
    run(STEP, &mut cmd)
}

/// The pinned parser of the Swift syntax gate (PyPI).
const TREE_SITTER: [&str; 2] = ["tree-sitter==0.26.1", "tree-sitter-swift==0.7.4"];

/// Checks that every Swift file parses (generated bindings, ios/ package, sample, tests) with
/// tree-sitter-swift in a venv under target/swift-syntax-venv. Expects `bindings` to have run.
fn swift_syntax(ctx: &mut Ctx) -> Result {
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
        if !python.is_file() {
            let made = Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status();
            if !made.is_ok_and(|s| s.success()) {
                apt_install(STEP, &["python3", "python3-venv"])?;
                run(
                    STEP,
                    Command::new("python3").arg("-m").arg("venv").arg(&venv),
                )?;
            }
        }
        run(
            STEP,
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(TREE_SITTER),
        )?;
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

// ---- bindings ------------------------------------------------------------------------------

/// Builds `libpmn.so` (debug, test-ca) and generates the Kotlin and Swift bindings from it in
/// library mode.
fn bindings(ctx: &mut Ctx) -> Result {
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
    for (language, out_dir) in [
        ("kotlin", "bindings/kotlin/src/main/kotlin"),
        ("swift", "bindings/swift/generated"),
    ] {
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
        .arg(&lib)
        .args(["--language", language, "--out-dir"])
        .arg(&out)
        .arg("--no-format");
        run(&step, &mut cmd)?;
    }
    Ok(())
}

// ---- Kotlin on the JVM ---------------------------------------------------------------------

/// System properties handed to `mvn` (and, through the pom's Surefire configuration, to the
/// tests). Add new ones here.
fn kotlin_system_properties(ctx: &Ctx, server: &TestServer) -> Vec<(String, String)> {
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
fn kotlin_jvm_tests(ctx: &mut Ctx) -> Result {
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
    let mut cmd = Command::new("mvn");
    // Not -q: Surefire's "Tests run: …" summary is the record that the JVM tests ran.
    cmd.current_dir(&dir)
        .args(["-B", "--no-transfer-progress", "test"]);
    for (key, value) in kotlin_system_properties(ctx, &server) {
        cmd.arg(format!("-D{key}={value}"));
    }
    let result = run_counting(STEP, &mut cmd, &mut ctx.counts);
    drop(server);
    result
}

// ---- bench ---------------------------------------------------------------------------------

fn bench(ctx: &mut Ctx, name: Option<&str>) -> Result {
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("interop peers", install_interop_peers)?;
    ctx.stage("bench", |ctx| {
        let mut cmd = ctx.cargo();
        cmd.args(["bench", "--features", "test-ca"])
            .env(SLIXMPP_PYTHON_ENV, &python);
        if let Some(name) = name {
            cmd.args(["--bench", name]);
        }
        run("bench", &mut cmd)
    })
}

#[cfg(test)]
mod counting_tests {
    use super::TestCounts;

    #[test]
    fn counts_cargo_and_surefire_summaries_but_not_per_class_lines() {
        let mut c = TestCounts::default();
        for line in [
            "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.16s",
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
            "[INFO] Tests run: 5, Failures: 0, Errors: 0, Skipped: 0, Time elapsed: 0.3 s -- in org.pmn.X",
            "[INFO] Tests run: 22, Failures: 1, Errors: 1, Skipped: 2",
            "running 9 tests",
        ] {
            c.add_line(line);
        }
        assert_eq!(
            c,
            TestCounts {
                passed: 9 + 3 + 18,
                failed: 2 + 2
            }
        );
    }
}
