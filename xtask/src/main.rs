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
  test              the whole suite: fmt, clippy, cargo test (with the fuzz corpus replay),
                    a few seconds of fuzzing per target (PMN_FUZZ_SMOKE=0: none),
                    bindings, Kotlin JVM tests, the mobile compile gates
  bindings          build libpmn and generate the Kotlin and Swift bindings
  kotlin            the bindings, then only the Kotlin JVM tests (against a fresh Prosody)
  bench [NAME]      run the benchmarks (only NAME when given)
  mobile-check      phone compile gates: cargo check for 4 Android/iOS targets, the
                    aarch64-android release staticlib (size), the Swift syntax gate
  size              release-small footprint: the stripped host cdylib, the aarch64-android
                    staticlib and cdylib (stub-linked), in bytes, and the crates taking most
  fuzz [TARGET] [SECONDS]
                    run the fuzz targets of fuzz/ (cargo-fuzz on nightly; all, or only
                    TARGET) for SECONDS each (default 60), then print the executions
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
        Some("kotlin") if args.len() == 1 => ctx
            .stage("prerequisites", install_prosody)
            .and_then(|()| ctx.stage("bindings", bindings))
            .and_then(|()| ctx.stage("kotlin jvm tests", kotlin_jvm_tests)),
        Some("bench") if args.len() <= 2 => bench(&mut ctx, args.get(1).map(String::as_str)),
        Some("mobile-check") if args.len() == 1 => mobile_check(&mut ctx),
        Some("size") if args.len() == 1 => size(&mut ctx),
        Some("fuzz") if args.len() <= 3 => match FuzzArgs::parse(&args[1..]) {
            Some(fuzz_args) => fuzz(&mut ctx, fuzz_args),
            None => {
                eprintln!(
                    "xtask: fuzz [TARGET] [SECONDS]: bad arguments {:?}\n",
                    &args[1..]
                );
                eprint!("{USAGE}");
                return ExitCode::from(2);
            }
        },
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
/// events, the tunnel, pairing, XEP-0189, the guest flow, restarts, the reader's limits and call
/// semantics. The tamper tests need Prosody's attacker module and stay Prosody-only, and so does
/// tests/foreground.rs (the test ejabberd has no CSI module).
const EJABBERD_TESTS: &[&str] = &[
    "session",
    "control",
    "e2e_tunnel",
    "e2e_control",
    "guest",
    "recovery",
    "stream_limits",
    "calls",
    "pubsub",
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
    // The corpus replay runs inside `cargo test` (stable); this builds the targets with libFuzzer
    // and fuzzes each for a few seconds on top of its corpus.
    ctx.stage("fuzz smoke", fuzz_smoke)?;
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

// ---- size ----------------------------------------------------------------------------------

/// Crates listed by `cargo xtask size`.
const SIZE_TOP_CRATES: usize = 15;

/// `cargo xtask size`: builds the shipped artefacts with the `release-small` profile and prints
/// their sizes, then which crates their code and data come from (from the aarch64 staticlib's
/// symbol table, which a staticlib keeps).
fn size(ctx: &mut Ctx) -> Result {
    let host = ctx.stage("size: host cdylib (release-small)", |ctx| {
        run(
            "size: host cdylib",
            ctx.cargo().args([
                "rustc",
                "-p",
                "pmn",
                "--lib",
                "--crate-type",
                "cdylib",
                "--profile",
                "release-small",
            ]),
        )?;
        Ok(ctx.target_dir().join("release-small").join("libpmn.so"))
    })?;
    let android = ctx
        .target_dir()
        .join("mobile")
        .join("aarch64-linux-android")
        .join("release-small");
    ctx.stage("size: staticlib aarch64-linux-android", |ctx| {
        mobile_script(ctx, &["--staticlib", "aarch64-linux-android"])
    })?;
    ctx.stage("size: cdylib aarch64-linux-android (stub-linked)", |ctx| {
        mobile_script(ctx, &["--cdylib", "aarch64-linux-android"])
    })?;
    let artefacts = [
        ("x86_64-linux cdylib, stripped", host),
        (
            "aarch64-android cdylib, stripped (stub-linked)",
            android.join("libpmn.so"),
        ),
        (
            "aarch64-android staticlib (keeps symbols)",
            android.join("libpmn.a"),
        ),
    ];
    println!("\nxtask: footprint (profile release-small)");
    for (what, path) in &artefacts {
        let bytes = std::fs::metadata(path)
            .map_err(|e| Failure::new("size", format!("{}: {e}", path.display())))?
            .len();
        let code = code_and_data_bytes(path)
            .map(|b| format!("  code+data {b:>10} B"))
            .unwrap_or_default();
        println!(
            "  {what:<48} {bytes:>10} B  {:>6.2} MiB{code}",
            bytes as f64 / 1048576.0
        );
    }
    let staticlib = &artefacts[2].1;
    let crates = crate_sizes(staticlib).map_err(|e| Failure::new("size", e))?;
    let total: u64 = crates.iter().map(|(_, b)| b).sum();
    println!(
        "\nxtask: code and data by crate in the aarch64 staticlib (symbol sizes, {total} B in all; \
         a generic instance counts for the first non-std crate it names)"
    );
    for (name, bytes) in crates.iter().take(SIZE_TOP_CRATES) {
        println!(
            "  {name:<28} {bytes:>9} B  {:>5.1} %",
            *bytes as f64 * 100.0 / total.max(1) as f64
        );
    }
    Ok(())
}

/// text + data of an ELF file or archive (`llvm-size`, Berkeley format), if llvm-size runs.
fn code_and_data_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("llvm-size")
        .arg("-B")
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // "   text    data     bss     dec     hex filename", one line per member of an archive.
    let sum = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let text: u64 = f.next()?.parse().ok()?;
            let data: u64 = f.next()?.parse().ok()?;
            Some(text + data)
        })
        .sum();
    Some(sum)
}

/// Bytes of defined symbols per crate in `lib` (`llvm-nm --print-size`, demangled), largest first.
fn crate_sizes(lib: &Path) -> std::result::Result<Vec<(String, u64)>, String> {
    let out = Command::new("llvm-nm")
        .args(["--print-size", "--demangle", "--radix=d", "--defined-only"])
        .arg(lib)
        .output()
        .map_err(|e| format!("cannot run llvm-nm: {e}"))?;
    // llvm-nm exits non-zero for archive members that are not objects (the staticlib's
    // `lib.rmeta`) after listing the others: only no output at all is a failure.
    if out.stdout.is_empty() {
        return Err(format!(
            "llvm-nm {} listed nothing: {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut by_crate = std::collections::HashMap::<String, u64>::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "<address> <size> <type> <name>"; archive member headers and size-less symbols skipped.
        let mut f = line.splitn(4, ' ');
        let (Some(_), Some(size), Some(_), Some(name)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        *by_crate.entry(symbol_crate(name)).or_default() += size;
    }
    let mut v: Vec<_> = by_crate.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(v)
}

/// The crate a demangled symbol belongs to: the first path root it names that is not the
/// standard library (`core::ptr::drop_in_place<xso::X>` → `xso`), else `std`; C symbols by prefix.
fn symbol_crate(name: &str) -> String {
    const STD: [&str; 4] = ["core", "alloc", "std", "compiler_builtins"];
    if name.starts_with("ring_core_") || name.starts_with("RING_") {
        return "ring (C)".into();
    }
    // Local symbols renamed by LTO keep the legacy escapes undemangled:
    // `_$LT$xso..Foo$u20$as$u20$core..iter..Iterator$GT$::next`.
    let unescaped;
    let name = if name.contains('$') || name.contains("..") {
        let mut n = name.to_string();
        for (from, to) in [
            ("$LT$", "<"),
            ("$GT$", ">"),
            ("$u20$", " "),
            ("$RF$", "&"),
            ("$BP$", "*"),
            ("$C$", ","),
            ("$LP$", "("),
            ("$RP$", ")"),
            ("$u5b$", "["),
            ("$u5d$", "]"),
            ("..", "::"),
        ] {
            n = n.replace(from, to);
        }
        unescaped = n;
        unescaped.strip_prefix('_').unwrap_or(&unescaped)
    } else {
        name
    };
    let mut roots = Vec::new();
    let bytes = name.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let ident = b.is_ascii_alphanumeric() || b == b'_';
        match (start, ident) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                let preceded = s == 0
                    || matches!(bytes[s - 1], b'<' | b' ' | b'&' | b'(' | b'*' | b',' | b'[');
                if preceded && name[i..].starts_with("::") {
                    roots.push(&name[s..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    match roots.iter().find(|r| !STD.contains(r)) {
        Some(root) => (*root).to_string(),
        None if !roots.is_empty() => "std".into(),
        None => "[C and other symbols]".into(),
    }
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

// ---- fuzz ----------------------------------------------------------------------------------

/// Seconds per target for `cargo xtask fuzz` when none are given.
const FUZZ_DEFAULT_SECONDS: u64 = 60;
/// Seconds per target in the suite's "fuzz smoke" stage (after the corpus replay).
const FUZZ_SMOKE_SECONDS: u64 = 4;

/// `cargo xtask fuzz [TARGET] [SECONDS]`.
#[derive(Debug, PartialEq)]
struct FuzzArgs {
    target: Option<String>,
    seconds: u64,
}

impl FuzzArgs {
    /// `[]`, `[TARGET]`, `[SECONDS]`, `[TARGET, SECONDS]`; `all` is every target.
    fn parse(args: &[String]) -> Option<FuzzArgs> {
        let (target, seconds) = match args {
            [] => (None, None),
            [one] => match one.parse::<u64>() {
                Ok(n) => (None, Some(n)),
                Err(_) => (Some(one.clone()), None),
            },
            [target, seconds] => (Some(target.clone()), Some(seconds.parse().ok()?)),
            _ => return None,
        };
        Some(FuzzArgs {
            target: target.filter(|t| t != "all"),
            seconds: seconds.unwrap_or(FUZZ_DEFAULT_SECONDS).max(1),
        })
    }
}

/// The fuzz targets: the files of fuzz/fuzz_targets/, sorted.
fn fuzz_targets(ctx: &Ctx) -> Result<Vec<String>> {
    let dir = ctx.root.join("fuzz").join("fuzz_targets");
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| Failure::new("fuzz", format!("{}: {e}", dir.display())))?;
    let mut targets: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".rs"))
                .map(str::to_owned)
        })
        .collect();
    targets.sort();
    Ok(targets)
}

/// A command run with the nightly toolchain (cargo-fuzz needs it for libFuzzer's sanitizer
/// coverage flags), cleared of what the stable `cargo xtask` run put in the environment.
fn nightly(ctx: &Ctx, program: &str) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&ctx.root)
        .args(["run", "nightly", program])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO");
    cmd
}

/// Makes sure the nightly toolchain and cargo-fuzz are there, installing what is missing
/// (`rustup toolchain install nightly --profile minimal`, `cargo install cargo-fuzz`). An error
/// says what could not be installed.
fn fuzz_prerequisites(ctx: &Ctx) -> std::result::Result<(), String> {
    let has_nightly = |ctx: &Ctx| {
        nightly(ctx, "rustc")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !has_nightly(ctx) {
        println!("xtask: installing the nightly toolchain (cargo-fuzz needs it)");
        let installed = Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed || !has_nightly(ctx) {
            return Err(
                "the nightly toolchain is missing and `rustup toolchain install \
                        nightly --profile minimal` failed"
                    .into(),
            );
        }
    }
    if !have("cargo-fuzz") {
        println!("xtask: installing cargo-fuzz");
        let installed = ctx
            .cargo()
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return Err("cargo-fuzz is missing and `cargo install cargo-fuzz` failed".into());
        }
    }
    Ok(())
}

/// `cargo fuzz` with the flags every run shares: release build with debug assertions and overflow
/// checks, AddressSanitizer (the default), and the fuzz crate's own target directory
/// (fuzz/target, also when `CARGO_TARGET_DIR` is set: its flags differ from the stable builds').
fn cargo_fuzz(ctx: &Ctx, subcommand: &str) -> Command {
    let mut cmd = nightly(ctx, "cargo");
    cmd.args(["fuzz", subcommand, "--debug-assertions", "--target-dir"])
        .arg(ctx.root.join("fuzz").join("target"));
    cmd
}

/// What libFuzzer reported at the end of one run.
#[derive(Debug, Default, Clone, PartialEq)]
struct FuzzStats {
    execs: u64,
    seconds: f64,
    crashed: bool,
}

impl FuzzStats {
    /// Reads one line of libFuzzer's output (`-print_final_stats=1`).
    fn add_line(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.execs = n.trim().parse().unwrap_or(self.execs);
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 123456 runs in 61 second(s)"
            let mut words = rest.split_whitespace();
            if let (Some(runs), Some("runs"), Some("in"), Some(secs)) =
                (words.next(), words.next(), words.next(), words.next())
            {
                self.execs = runs.parse().unwrap_or(self.execs);
                self.seconds = secs.parse().unwrap_or(self.seconds);
            }
        } else if line.contains("ERROR: libFuzzer") || line.starts_with("SUMMARY: ") {
            self.crashed = true;
        }
    }
}

/// Runs `target` for `seconds` on its corpus: the committed seeds (fuzz/corpus/TARGET, read only)
/// and what earlier local runs found (fuzz/corpus-local/TARGET, where new inputs go; not
/// committed). Echoes libFuzzer's output except the per-input coverage lines.
fn fuzz_run(ctx: &Ctx, target: &str, seconds: u64, quiet: bool) -> Result<FuzzStats> {
    use std::io::{BufRead, BufReader};
    let step = format!("fuzz {target}");
    let fuzz_dir = ctx.root.join("fuzz");
    let local = fuzz_dir.join("corpus-local").join(target);
    std::fs::create_dir_all(&local)
        .map_err(|e| Failure::new(&step, format!("{}: {e}", local.display())))?;
    let mut cmd = cargo_fuzz(ctx, "run");
    cmd.arg(target)
        .arg(&local)
        .arg(fuzz_dir.join("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .args(["-print_final_stats=1", "-timeout=10", "-rss_limit_mb=2048"])
        .stderr(std::process::Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::new(&step, format!("cannot run {cmd:?}: {e}")))?;
    let mut stats = FuzzStats::default();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr)
            .lines()
            .map_while(std::io::Result::ok)
        {
            stats.add_line(&line);
            // "#1234\tNEW cov: …", "#1234\tREDUCE …", "#1234\tpulse …"
            let coverage_line = line.starts_with('#')
                && matches!(
                    line.split_whitespace().nth(1),
                    Some("NEW" | "REDUCE" | "pulse")
                );
            if !(coverage_line || quiet && line.starts_with("INFO: ")) {
                eprintln!("{line}");
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure::new(&step, format!("waiting for {cmd:?}: {e}")))?;
    if stats.seconds == 0.0 {
        stats.seconds = start.elapsed().as_secs_f64();
    }
    stats.crashed |= !status.success();
    Ok(stats)
}

/// Prints one line per target: executions, rate, time.
fn fuzz_report(results: &[(String, FuzzStats)]) {
    println!("\nxtask: fuzz results");
    for (target, s) in results {
        let rate = s.execs as f64 / s.seconds.max(1.0);
        println!(
            "  {target:<14} {:>12} execs  {:>9.0} execs/s  {:>5.0} s  {}",
            s.execs,
            rate,
            s.seconds,
            if s.crashed {
                "CRASH (see fuzz/artifacts/)"
            } else {
                "ok"
            }
        );
    }
}

/// `cargo xtask fuzz [TARGET] [SECONDS]`: builds the targets, then fuzzes one or all of them one
/// after the other.
fn fuzz(ctx: &mut Ctx, args: FuzzArgs) -> Result {
    let all = fuzz_targets(ctx)?;
    let targets = match &args.target {
        Some(t) if all.contains(t) => vec![t.clone()],
        Some(t) => {
            return Err(Failure::new(
                "fuzz",
                format!("no fuzz target {t:?}; targets: {}", all.join(", ")),
            ))
        }
        None => all,
    };
    ctx.stage("fuzz prerequisites", |ctx| {
        fuzz_prerequisites(ctx).map_err(|e| Failure::new("fuzz prerequisites", e))
    })?;
    ctx.stage("fuzz build", |ctx| {
        let mut cmd = cargo_fuzz(ctx, "build");
        if let [one] = targets.as_slice() {
            cmd.arg(one);
        }
        run("fuzz build", &mut cmd)
    })?;
    let results = ctx.stage("fuzz", |ctx| {
        targets
            .iter()
            .map(|t| Ok((t.clone(), fuzz_run(ctx, t, args.seconds, false)?)))
            .collect::<Result<Vec<_>>>()
    })?;
    fuzz_report(&results);
    let crashed: Vec<&str> = results
        .iter()
        .filter(|(_, s)| s.crashed)
        .map(|(t, _)| t.as_str())
        .collect();
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            "fuzz",
            format!(
                "crash in {} (inputs in fuzz/artifacts/)",
                crashed.join(", ")
            ),
        ))
    }
}

/// Set to `0` to leave the fuzz smoke out of `cargo xtask test` (the corpus replay in `cargo test`
/// still runs every committed input).
const FUZZ_SMOKE_ENV: &str = "PMN_FUZZ_SMOKE";

/// The suite's stage: every target for [`FUZZ_SMOKE_SECONDS`] on top of its corpus, so a change
/// that breaks an inbound parser under mutation fails the suite, not only a later fuzzing run. It
/// builds what `cargo xtask fuzz` builds (release with debug assertions, AddressSanitizer), so a
/// local fuzzing run afterwards starts at once; cold that build is the stage's cost (about 5 min
/// on 2 idle cores, plus the nightly toolchain and cargo-fuzz the first time). Skipped with a
/// message when the nightly toolchain or cargo-fuzz cannot be installed, and when
/// [`FUZZ_SMOKE_ENV`] is `0`.
fn fuzz_smoke(ctx: &mut Ctx) -> Result {
    if env::var(FUZZ_SMOKE_ENV).as_deref() == Ok("0") {
        println!(
            "xtask: SKIPPING fuzz smoke ({FUZZ_SMOKE_ENV}=0); the fuzz corpus replay ran in cargo test"
        );
        return Ok(());
    }
    if let Err(why) = fuzz_prerequisites(ctx) {
        println!("xtask: SKIPPING fuzz smoke: {why} (the corpus replay ran in cargo test)");
        return Ok(());
    }
    run("fuzz smoke", &mut cargo_fuzz(ctx, "build"))?;
    let mut results = Vec::new();
    for target in fuzz_targets(ctx)? {
        let stats = fuzz_run(ctx, &target, FUZZ_SMOKE_SECONDS, true)?;
        let crashed = stats.crashed;
        results.push((target.clone(), stats));
        if crashed {
            fuzz_report(&results);
            return Err(Failure::new(
                "fuzz smoke",
                format!("{target} crashed (input in fuzz/artifacts/{target}/)"),
            ));
        }
    }
    fuzz_report(&results);
    Ok(())
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
mod fuzz_tests {
    use super::{FuzzArgs, FuzzStats, FUZZ_DEFAULT_SECONDS};

    #[test]
    fn fuzz_arguments_and_libfuzzer_stats() {
        let args =
            |a: &[&str]| FuzzArgs::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let want = |t: Option<&str>, seconds| {
            Some(FuzzArgs {
                target: t.map(str::to_owned),
                seconds,
            })
        };
        assert_eq!(args(&[]), want(None, FUZZ_DEFAULT_SECONDS));
        assert_eq!(args(&["30"]), want(None, 30));
        assert_eq!(args(&["event"]), want(Some("event"), FUZZ_DEFAULT_SECONDS));
        assert_eq!(args(&["event", "5"]), want(Some("event"), 5));
        assert_eq!(args(&["all", "5"]), want(None, 5));
        assert_eq!(args(&["event", "x"]), None);

        let mut s = FuzzStats::default();
        for line in [
            "#1048576\tpulse  cov: 1234 ft: 5678 corp: 90/2Kb exec/s: 34952 rss: 80Mb",
            "Done 2097152 runs in 61 second(s)",
            "stat::number_of_executed_units: 2097153",
        ] {
            s.add_line(line);
        }
        assert_eq!((s.execs, s.seconds, s.crashed), (2_097_153, 61.0, false));
        s.add_line("==123== ERROR: libFuzzer: deadly signal");
        assert!(s.crashed);
    }
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

#[cfg(test)]
mod size_tests {
    use super::symbol_crate;

    #[test]
    fn symbols_are_attributed_to_the_first_non_std_crate_they_name() {
        for (symbol, want) in [
            ("tokio::runtime::park::CachedParkThread::block_on", "tokio"),
            ("core::ptr::drop_in_place<xso::fromxml::Foo>", "xso"),
            (
                "<alloc::vec::Vec<minidom::Element> as core::ops::drop::Drop>::drop",
                "minidom",
            ),
            ("<&T as core::fmt::Debug>::fmt", "std"),
            ("core::fmt::write", "std"),
            ("ring_core_0_17_14__x25519_sc_mask", "ring (C)"),
            (
                "_$LT$xmpp_parsers..jingle..JingleAsXmlIterator$u20$as$u20$core..iter..traits..\
                 iterator..Iterator$GT$::next::hc9449a5ceee7f215",
                "xmpp_parsers",
            ),
            ("memcpy", "[C and other symbols]"),
        ] {
            assert_eq!(symbol_crate(symbol), want, "{symbol}");
        }
    }
}
