//! `cargo xtask test`: the whole suite, stage by stage (fmt, clippy, cargo test against Prosody
//! and ejabberd, bindings, Kotlin JVM tests, the package, then what was built in the background
//! meanwhile: the vendored crates' tests, the mobile gates that fit the CI budget, the fuzz smoke).

use std::process::Command;

use crate::android::{android_jvm, AndroidJvm};
use crate::bindings::{bindings, kotlin_jvm_tests};
use crate::ctx::{gib, run, run_counting, spawn_at_nice_19, Ctx, Result};
use crate::fuzz::{fuzz_smoke, start_fuzz_build};
use crate::install::{
    install_field_peers, install_interop_peers, install_prosody, FIELD_PYTHON_ENV,
    SLIXMPP_PYTHON_ENV,
};
use crate::mobile::{mobile_command, mobile_prerequisites, mobile_script, swift_syntax};
use crate::package::{package, Build};

/// The integration tests that run against ejabberd as well as Prosody: login, discovery, RPC,
/// events, the tunnel, pairing, XEP-0189, the guest flow, restarts, the reader's limits, call
/// semantics, shared playlists (PEP on mod_pubsub, the TV resolving playlist addresses, a guest
/// playing a shared one) and the source provider (its radio stations come from a PEP node; 17 s
/// with ejabberd's start). The tamper tests need Prosody's attacker module and stay Prosody-only, and so does
/// tests/foreground.rs (the test ejabberd has no CSI module).
pub(crate) const EJABBERD_TESTS: &[&str] = &[
    "session",
    "control",
    "e2e_tunnel",
    "e2e_control",
    "guest",
    "recovery",
    "stream_limits",
    "calls",
    "pubsub",
    "sources",
];
/// The suite's short soak (benches/soak.rs): its size, length and RSS bound.
pub(crate) const SHORT_SOAK: &[(&str, &str)] = &[
    // Smaller than `cargo xtask soak`'s 200 × 50: on 2 shared cores Prosody took 72 s to bring
    // 200 providers of one account online (each presence goes to every other resource).
    ("PMN_SOAK_SECONDS", "15"),
    ("PMN_SOAK_PROVIDERS", "40"),
    ("PMN_SOAK_CONTROLLERS", "10"),
    // Three discovery rounds instead of seven: the suite prints them, `cargo xtask soak` judges.
    ("PMN_SOAK_DISCOVERY_ROUNDS", "3"),
    // A process's RSS may grow by at most this after the warm-up (allocator noise, buffers
    // reaching their working size); a leak per call grows without bound.
    ("PMN_SOAK_MAX_GROWTH_KB", "8192"),
];
/// The suite's `cargo test`, the same for the stage that builds its binaries and the one that
/// runs them (other arguments would rebuild them). `sources` too, so tests/sources.rs and the
/// source provider's unit tests run.
const CARGO_TEST: &[&str] = &["test", "--workspace", "--features", "test-ca,sources"];
/// `cargo xtask test`: every stage in order, stopping at the first that fails.
pub(crate) fn test(ctx: &mut Ctx) -> Result {
    warn_if_short_of_disk(ctx);
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("interop peers", install_interop_peers)?;
    let field_python = ctx.stage("field peers", install_field_peers)?;
    ctx.stage("fmt", |ctx| {
        run("fmt", ctx.cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    // The builds of the last stages start now, in the background at nice 19: they fill the cores
    // the foreground leaves idle (the serial ends of clippy's and the test build's crates, the
    // tests waiting on the servers, Maven) and the stages that need them come last. Measured on
    // a quiet machine on 2026-12-02: the fuzz build alone is 767 s of CPU (496 s wall), more
    // than the idle time of the test stages, where they started before (the fuzz smoke then
    // waited 340 s in CI). The prebuild first: its rustup call ends before the fuzz build's
    // own can start.
    let prebuild = Prebuild::start(ctx);
    let fuzz_build = start_fuzz_build(ctx);
    ctx.stage("clippy", |ctx| {
        run(
            "clippy",
            ctx.cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "test-ca,sources",
                "--",
                "-D",
                "warnings",
            ]),
        )
    })?;
    // The phone library is built without `sources`: it must stay clean without it too.
    ctx.stage("clippy (without sources)", |ctx| {
        run(
            "clippy (without sources)",
            ctx.cargo().args([
                "clippy",
                "-p",
                "pmn",
                "--all-targets",
                "--features",
                "test-ca",
                "--",
                "-D",
                "warnings",
            ]),
        )
    })?;
    ctx.stage("cargo test (build)", |ctx| {
        run(
            "cargo test (build)",
            ctx.cargo().args(CARGO_TEST).arg("--no-run"),
        )
    })?;
    ctx.stage("cargo test", |ctx| {
        let mut counts = ctx.counts;
        let result = run_counting(
            "cargo test",
            ctx.cargo()
                .args(CARGO_TEST)
                // Set, so the interop tests fail instead of skipping when the peer is broken.
                .env(SLIXMPP_PYTHON_ENV, &python)
                // tests/field.rs (short versions; `cargo xtask field` runs the long ones).
                .env(FIELD_PYTHON_ENV, &field_python),
            &mut counts,
        );
        ctx.counts = counts;
        result
    })?;
    // The short soak (benches/soak.rs in the test profile, so the debug build above is reused):
    // many providers and controllers on one network, no lost call, bounded RSS growth.
    ctx.stage("soak (short)", |ctx| {
        let mut cmd = ctx.cargo();
        cmd.args(["test", "--features", "test-ca,sources", "--bench", "soak"]);
        for (key, value) in SHORT_SOAK {
            cmd.env(key, value);
        }
        run("soak (short)", &mut cmd)
    })?;
    ctx.stage("cargo test (ejabberd)", |ctx| {
        let mut counts = ctx.counts;
        let mut cmd = ctx.cargo();
        // The same features as the stage before, so its test binaries are reused, not rebuilt.
        cmd.args(["test", "--features", "test-ca,sources"]);
        for test in EJABBERD_TESTS {
            cmd.args(["--test", test]);
        }
        cmd.env("PMN_TEST_SERVER", "ejabberd");
        let result = run_counting("cargo test (ejabberd)", &mut cmd, &mut counts);
        ctx.counts = counts;
        result
    })?;
    ctx.stage("bindings", bindings)?;
    ctx.stage("kotlin jvm tests", kotlin_jvm_tests)?;
    ctx.stage("package + sample app", |ctx| {
        package(ctx, Build::SuiteDebug)
    })?;
    // android/src and the Android sample against the real framework jar (android-all), on top
    // of the jar the stage before installed. The Android flavour of the bindings and the
    // Robolectric run (Pmn.initAndroid with a real Context) are in `cargo xtask mobile-check`
    // and `cargo xtask kotlin`: their compile of the whole generated file plus Robolectric's
    // start-up did not fit the stage's 90 s on this machine (android/README.md has the figures).
    ctx.stage("android: compile against android-all", |ctx| {
        let native_dir = ctx.target_dir().join("debug");
        android_jvm(ctx, AndroidJvm::Gate, &native_dir)
    })?;
    ctx.stage("mobile: swift syntax", swift_syntax)?;
    // From here on, what the background built since the start (`Prebuild`, `FuzzBuild`).
    if let Some(prebuild) = prebuild {
        prebuild.wait();
    }
    ctx.stage("vendored crates' tests", vendored_tests)?;
    // The part of the mobile gates that fits the CI budget: a check of the two phone targets
    // apps ship first. The release-small aarch64-android staticlib (6 min on 2 cores, for its
    // size) and the other two Android ABIs are in `cargo xtask mobile-check` and `cargo xtask
    // size`: the suite, with the field harness and the packaged app added, must stay under 30 min.
    for target in SUITE_MOBILE_TARGETS {
        ctx.stage(&format!("mobile: cargo check {target}"), |ctx| {
            mobile_script(ctx, &[target])
        })?;
    }
    // The corpus replay runs inside `cargo test` (stable); this waits for the targets built with
    // libFuzzer in the background and fuzzes each for a few seconds on top of its corpus.
    ctx.stage("fuzz smoke", |ctx| fuzz_smoke(ctx, fuzz_build))?;
    Ok(())
}

/// What a run of the suite from a fresh clone writes at its peak (target directories, the fuzz
/// build, the JVM's): 13.7 GiB measured on 2026-12-02, with some room.
const SUITE_DISK_MIB: u64 = 16 * 1024;

/// Says so up front when the disk is short of what the suite will write: a full disk fails a
/// link or a doctest far from its cause.
fn warn_if_short_of_disk(ctx: &Ctx) {
    if let Some((target, tmp)) = ctx.disk_free() {
        let free = target.min(tmp);
        if free < SUITE_DISK_MIB {
            println!(
                "xtask: WARNING: {:.1} GiB free where the suite writes up to {:.0} GiB \
                 (target directory {:.1} GiB, temporary directory {:.1} GiB): steps may fail \
                 with a full disk",
                gib(free),
                gib(SUITE_DISK_MIB),
                gib(target),
                gib(tmp)
            );
        }
    }
}

/// The tests of the patched crates in vendor/ that cover pmn's patches (vendor/README.md): all
/// of rxml and tokio-xmpp (small), xmpp-parsers' `sm` module. Their own target directory, so the
/// workspace build is not invalidated.
pub(crate) fn vendored_tests(ctx: &mut Ctx) -> Result {
    let mut counts = ctx.counts;
    for (krate, mut cmd) in vendored_test_commands(ctx) {
        run_counting(&format!("cargo test ({krate})"), &mut cmd, &mut counts)?;
    }
    ctx.counts = counts;
    Ok(())
}

/// `cargo test` of each patched crate, as [`vendored_tests`] runs it.
fn vendored_test_commands(ctx: &Ctx) -> Vec<(&'static str, Command)> {
    let target = ctx.target_dir().join("vendor-tests");
    // tokio-xmpp with the features pmn uses (its defaults would build aws-lc as well); the test
    // filter goes after the options, so `--no-run` can be added to any of these.
    [
        ("rxml", &[][..], None),
        (
            "tokio-xmpp",
            &["--no-default-features", "--features", "starttls,ring"][..],
            None,
        ),
        ("xmpp-parsers", &[][..], Some("sm::")),
    ]
    .into_iter()
    .map(|(krate, options, filter)| {
        let manifest = format!("vendor/{krate}/Cargo.toml");
        let mut cmd = ctx.cargo();
        cmd.args(["test", "--manifest-path", &manifest, "--lib"])
            .args(options)
            .env("CARGO_TARGET_DIR", &target);
        if let Some(filter) = filter {
            cmd.arg(filter);
        }
        (krate, cmd)
    })
    .collect()
}

/// The phone targets the suite checks (stage "mobile: cargo check …").
const SUITE_MOBILE_TARGETS: [&str; 2] = ["aarch64-apple-ios", "aarch64-linux-android"];

/// Compiles, in a background thread at nice 19, what the later stages build: the vendored
/// crates' test binaries and the two phone targets' checks, each in its own target directory
/// (so no lock is shared with the foreground's `cargo test`), from the start of the suite. The
/// test stages leave most of the two cores idle (servers being killed, loss being waited out);
/// this fills that time, and the stages at the end find their builds fresh. Nothing is judged here: a failed build fails again, with
/// its output, in its own stage. Output goes to `target/prebuild.log`.
struct Prebuild {
    handle: std::thread::JoinHandle<()>,
}

impl Prebuild {
    fn start(ctx: &Ctx) -> Option<Prebuild> {
        // Installed in the foreground: apt and rustup do not take concurrent callers well.
        if mobile_prerequisites("prebuild").is_err() {
            return None;
        }
        let _ = Command::new("rustup")
            .args(["target", "add"])
            .args(SUITE_MOBILE_TARGETS)
            .stdout(std::process::Stdio::null())
            .status();
        let log = std::fs::File::create(ctx.target_dir().join("prebuild.log")).ok()?;
        let commands: Vec<Command> = vendored_test_commands(ctx)
            .into_iter()
            .map(|(_, mut cmd)| {
                cmd.arg("--no-run");
                cmd
            })
            .chain(
                SUITE_MOBILE_TARGETS
                    .iter()
                    .map(|target| mobile_command(ctx, &[target])),
            )
            .collect();
        let handle = spawn_at_nice_19(move || {
            for mut cmd in commands {
                let (Ok(out), Ok(err)) = (log.try_clone(), log.try_clone()) else {
                    return;
                };
                let _ = cmd.stdout(out).stderr(err).status();
            }
        });
        Some(Prebuild { handle })
    }

    /// Waits for all of it, saying how long that took.
    fn wait(self) {
        let waited = std::time::Instant::now();
        let _ = self.handle.join();
        println!(
            "xtask: the background builds of the vendored tests and phone checks were ready after \
             {:.0} s more",
            waited.elapsed().as_secs_f64()
        );
    }
}

/// `cargo xtask field`: only tests/field.rs, in its long versions (`PMN_FIELD_LONG=1`: 20 kills
/// of the server, 2 minutes of 10 % loss), its measurements printed.
pub(crate) fn field(ctx: &mut Ctx) -> Result {
    ctx.stage("prerequisites", install_prosody)?;
    let field_python = ctx.stage("field peers", install_field_peers)?;
    ctx.stage("field (long)", |ctx| {
        let mut counts = ctx.counts;
        let result = run_counting(
            "field (long)",
            ctx.cargo()
                .args([
                    "test",
                    "--features",
                    "test-ca",
                    "--test",
                    "field",
                    "--",
                    "--nocapture",
                ])
                .env(FIELD_PYTHON_ENV, &field_python)
                .env("PMN_FIELD_LONG", "1"),
            &mut counts,
        );
        ctx.counts = counts;
        result
    })
}
