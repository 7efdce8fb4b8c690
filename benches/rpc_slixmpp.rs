//! RPC round trip, pmn against slixmpp (a real third-party XEP-0009 client), same Prosody, same
//! method (`player.status`, same answer payload), measured in one run:
//!
//! - pmn controller → pmn provider
//! - slixmpp controller → pmn provider (what a Python remote sees)
//! - pmn controller → slixmpp provider
//! - slixmpp controller → slixmpp provider (the all-Python baseline)
//!
//! Needs the slixmpp venv (`PMN_SLIXMPP_PYTHON`, set by `cargo xtask bench`); without it only the pmn
//! figure is printed. Run: `cargo xtask bench rpc_slixmpp`. Compare ratios, only within one run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::core::session::SessionConfig;
use pmn_testkit::{TestServer, BENCH};

const WARMUP: usize = 100;
const CALLS: usize = 1000;

fn config(server: &TestServer, device: &str) -> SessionConfig {
    common::session_config(server, &BENCH, device)
}

fn python() -> Option<PathBuf> {
    std::env::var_os("PMN_SLIXMPP_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
            venv.is_file().then_some(venv)
        })
}

fn interop(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

fn slix(python: &Path, server: &TestServer, script: &str, device: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.current_dir(interop(""))
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(interop(script))
        .args([
            "--jid",
            &format!("{}/{device}-{}", BENCH.jid, std::process::id()),
        ])
        .args(["--password", BENCH.password, "--server", &server.addr()])
        .arg("--ca")
        .arg(server.ca_path());
    cmd
}

/// (median, p99) in µs of slixmpp calling `target`.
fn slix_calls(python: &Path, server: &TestServer, target: &str) -> (f64, f64) {
    let out = slix(python, server, "slix_bench.py", "slix-bench")
        .args(["--target", target, "--calls", &CALLS.to_string()])
        .args(["--warmup", &WARMUP.to_string()])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("OK "))
        .unwrap_or_else(|| {
            panic!(
                "slix_bench failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let field = |name: &str| -> f64 {
        line.split(&format!("\"{name}\": "))
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    (field("median_us"), field("p99_us"))
}

async fn pmn_calls(
    controller: &Controller,
    target: pmn::core::discovery::ProviderInfo,
) -> (f64, f64) {
    let remote = controller.player(target.jid);
    for _ in 0..WARMUP {
        remote.status().await.expect("status");
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        remote.status().await.expect("status");
        times.push(t.elapsed());
    }
    times.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (
        us(times[times.len() / 2]),
        us(times[(times.len() * 99 / 100).min(times.len() - 1)]),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");
    let provider = Provider::start(
        ProviderConfig::plain(config(&server, "pmn-tv"), "pmn TV"),
        vec![Arc::new(PlayerService::new(Arc::new(
            SimulatedPlayer::default(),
        )))],
    )
    .await
    .expect("provider");
    let controller = Controller::connect(ControllerConfig::plain(config(&server, "pmn-phone")))
        .await
        .expect("controller");
    let tv = controller
        .wait_for_provider(|p| p.name == "pmn TV", Duration::from_secs(10))
        .await
        .expect("discovered");
    controller
        .player(tv.jid.clone())
        .play("file:///bench")
        .await
        .expect("play");
    let row = |what: &str, (m, p): (f64, f64), base: f64| {
        println!(
            "  {what:<34} median {m:8.1}  p99 {p:8.1}  median/pmn {:6.2}x",
            m / base
        );
    };
    println!("rpc round trip through Prosody, player.status, {CALLS} sequential calls after {WARMUP} warm-up (µs)");
    let pmn = pmn_calls(&controller, tv.clone()).await;
    row("pmn controller → pmn provider", pmn, pmn.0);
    let Some(python) = python() else {
        println!("  (slixmpp rows skipped: set PMN_SLIXMPP_PYTHON or run `cargo xtask bench`)");
        return;
    };
    let tv_jid = tv.jid.to_string();
    let server_ref = &server;
    let py = python.clone();
    let slix_to_pmn = tokio::task::block_in_place(|| slix_calls(&py, server_ref, &tv_jid));
    row("slixmpp controller → pmn provider", slix_to_pmn, pmn.0);

    // A slixmpp provider, for the two remaining rows.
    let mut child = slix(&python, &server, "slix_provider.py", "slix-tv")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    let slix_jid = ready
        .strip_prefix("READY ")
        .expect("slixmpp provider ready")
        .trim()
        .to_owned();
    let slix_tv = controller
        .wait_for_provider(|p| p.jid.to_string() == slix_jid, Duration::from_secs(10))
        .await
        .expect("slixmpp provider discovered");
    controller
        .player(slix_tv.jid.clone())
        .play("file:///bench")
        .await
        .expect("play");
    let pmn_to_slix = pmn_calls(&controller, slix_tv).await;
    row("pmn controller → slixmpp provider", pmn_to_slix, pmn.0);
    let slix_to_slix = tokio::task::block_in_place(|| slix_calls(&python, &server, &slix_jid));
    row("slixmpp controller → slixmpp provider", slix_to_slix, pmn.0);
    drop(child.stdin.take());
    let _ = child.wait();
    provider.stop().await;
    controller.close().await;
}
