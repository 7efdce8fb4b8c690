//! `cargo xtask bench [NAME]`: the benchmarks, with Prosody and the interop peers installed;
//! `cargo xtask bench field`: the field benchmark (tests/field.rs `field_bench`, as root).

use std::path::PathBuf;
use std::process::Command;

use crate::bindings::{generate, kotlin_system_properties};
use crate::ctx::{have, run, Ctx, Failure, Result};
use crate::install::{
    apt_install, install_field_peers, install_interop_peers, install_prosody, start_prosody,
    FIELD_PYTHON_ENV, SLIXMPP_PYTHON_ENV,
};

/// The environment variable through which benches/rpc.rs finds the Smack peer's classpath.
pub(crate) const SMACK_CLASSPATH_ENV: &str = "PMN_SMACK_CLASSPATH";

/// `cargo xtask bench [NAME]`: Prosody and the interop peers, then `cargo bench` (only NAME when given).
/// `pubsub` needs the `sources` feature and runs only when named.
pub(crate) fn bench(ctx: &mut Ctx, name: Option<&str>) -> Result {
    if name == Some("field") {
        return field_bench(ctx);
    }
    if name == Some("kotlin") {
        return kotlin_bench(ctx);
    }
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("interop peers", install_interop_peers)?;
    let smack = match name {
        None | Some("rpc") => Some(ctx.stage("smack peer", smack_peer)?),
        Some(_) => None,
    };
    ctx.stage("bench", |ctx| {
        let mut cmd = ctx.cargo();
        // The pubsub bench browses the source provider, which only the `sources` feature builds;
        // the others keep the phone library's feature set.
        let features = if name == Some("pubsub") {
            "test-ca,sources"
        } else {
            "test-ca"
        };
        cmd.args(["bench", "--features", features])
            .env(SLIXMPP_PYTHON_ENV, &python);
        if let Some(classpath) = &smack {
            cmd.env(SMACK_CLASSPATH_ENV, classpath);
        }
        if let Some(name) = name {
            cmd.args(["--bench", name]);
        }
        run("bench", &mut cmd)
    })
}

/// `cargo xtask bench field`: the field harness's benchmark, printed as ratios — recovery after
/// kill -9 against after a graceful restart (medians of 10), calls under 10 % loss against
/// clean (median and p99), and reconnect logins per second while the server is down. It builds
/// network namespaces, so it needs root; elsewhere it says so and does nothing. Bounded: about
/// three minutes once built (each part has its own time limit inside the test).
fn field_bench(ctx: &mut Ctx) -> Result {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        println!("SKIPPED bench field: needs root (network namespaces, veth, iptables)");
        return Ok(());
    }
    ctx.stage("prerequisites", install_prosody)?;
    let python = ctx.stage("field peers", install_field_peers)?;
    ctx.stage("bench field", |ctx| {
        run(
            "bench field",
            ctx.cargo()
                .args([
                    "test",
                    "--features",
                    "test-ca",
                    "--test",
                    "field",
                    "--",
                    "--ignored",
                    "--exact",
                    "field_bench",
                    "--nocapture",
                ])
                .env(FIELD_PYTHON_ENV, &python),
        )
    })
}

/// `cargo xtask bench kotlin`: events into Kotlin on the desktop JVM
/// (bindings/kotlin/src/test/kotlin/org/pmn/EventsBench.kt), printed as ratios to a no-op
/// Kotlin→Rust call of the same run: one crossing per event into a `ControllerListener` and per
/// batch into an `EventBatchListener`, the same into the flows, and a real provider's events
/// through a fresh Prosody. Against the release libpmn (with `test-ca`, which carries the
/// bench-only emitters), whose bindings it generates; `cargo xtask kotlin` regenerates the debug
/// ones.
fn kotlin_bench(ctx: &mut Ctx) -> Result {
    const STEP: &str = "bench kotlin";
    ctx.stage("prerequisites", install_prosody)?;
    ctx.stage(STEP, |ctx| {
        run(
            "bench kotlin: build libpmn (release)",
            ctx.cargo().args([
                "build",
                "-p",
                "pmn",
                "--release",
                "--features",
                "test-ca",
                "--lib",
            ]),
        )?;
        let release = ctx.target_dir().join("release");
        generate(ctx, &release.join("libpmn.so"), &["kotlin"])?;
        if !have("mvn") || !have("javac") {
            apt_install(STEP, &["maven", "default-jdk-headless"])?;
        }
        let server = start_prosody(ctx)?;
        let mut cmd = Command::new("mvn");
        cmd.current_dir(ctx.root.join("bindings").join("kotlin"))
            .args(["-B", "--no-transfer-progress", "test", "-Dtest=EventsBench"])
            .arg("-Dpmn.bench=true");
        for (key, value) in kotlin_system_properties(ctx, &server) {
            let value = if key == "jna.library.path" {
                release.display().to_string()
            } else {
                value
            };
            cmd.arg(format!("-D{key}={value}"));
        }
        let result = run(STEP, &mut cmd);
        drop(server);
        result
    })
}

/// Builds benches/smack (the Smack 4.4.8 peer pair of benches/rpc.rs, from Maven Central) and
/// returns its Java classpath: its jar, then Smack's.
pub(crate) fn smack_peer(ctx: &mut Ctx) -> Result<String> {
    const STEP: &str = "smack peer";
    if !have("mvn") || !have("javac") {
        apt_install(STEP, &["maven", "default-jdk-headless"])?;
    }
    let dir = ctx.root.join("benches").join("smack");
    let classpath_file = dir.join("target").join("classpath.txt");
    run(
        STEP,
        Command::new("mvn")
            .current_dir(&dir)
            .args(["-B", "-q", "--no-transfer-progress", "package"])
            .arg("dependency:build-classpath")
            .arg(format!("-Dmdep.outputFile={}", classpath_file.display())),
    )?;
    let jar: PathBuf = dir.join("target").join("smack-peer-0.1.0.jar");
    let deps = std::fs::read_to_string(&classpath_file)
        .map_err(|e| Failure::new(STEP, format!("{}: {e}", classpath_file.display())))?;
    Ok(format!("{}:{}", jar.display(), deps.trim()))
}

/// The scale of `cargo xtask soak --leak-check`: valgrind slows each process down tens of times.
const LEAK_CHECK_SCALE: [(&str, &str); 2] =
    [("PMN_SOAK_PROVIDERS", "20"), ("PMN_SOAK_CONTROLLERS", "5")];

/// `cargo xtask soak [--leak-check] [MINUTES]`: benches/soak.rs (200 providers and 50 controllers
/// on one network, a sustained mix of calls and events, RSS slopes, discovery against presence
/// delivery) for MINUTES (default 10). With `--leak-check`: 20 providers and 5 controllers for
/// MINUTES (default 1), each child process under valgrind's leak check (benches/soak.supp).
pub(crate) fn soak(ctx: &mut Ctx, args: &[String]) -> Result {
    let leak_check = args.first().is_some_and(|a| a == "--leak-check");
    let minutes = match &args[usize::from(leak_check)..] {
        [] => {
            if leak_check {
                1
            } else {
                10
            }
        }
        [m] => m
            .parse::<u64>()
            .ok()
            .filter(|m| (1..=240).contains(m))
            .ok_or_else(|| Failure::new("soak", format!("MINUTES must be 1..=240, not {m:?}")))?,
        _ => return Err(Failure::new("soak", "usage: soak [--leak-check] [MINUTES]")),
    };
    ctx.stage("prerequisites", install_prosody)?;
    if leak_check && !have("valgrind") {
        ctx.stage("prerequisites: valgrind", |_| {
            apt_install("prerequisites", &["valgrind"])
        })?;
    }
    let suppressions = ctx.root.join("benches").join("soak.supp");
    ctx.stage("soak", |ctx| {
        let mut cmd = ctx.cargo();
        cmd.args(["bench", "--features", "test-ca", "--bench", "soak"])
            .env("PMN_SOAK_MINUTES", minutes.to_string());
        if leak_check {
            cmd.env("PMN_SOAK_LEAK_CHECK", &suppressions)
                .envs(LEAK_CHECK_SCALE);
        }
        run("soak", &mut cmd)
    })
}

/// The footprint figures of benches/soak.rs (`PMN_SOAK_FOOTPRINT=1`): controller RSS seeing 100
/// providers, provider RSS per extra provider in one process.
pub(crate) fn rss_footprint(ctx: &mut Ctx) -> Result {
    install_prosody(ctx)?;
    run(
        "size: RSS",
        ctx.cargo()
            .args(["bench", "--features", "test-ca", "--bench", "soak"])
            .env("PMN_SOAK_FOOTPRINT", "1"),
    )
}
