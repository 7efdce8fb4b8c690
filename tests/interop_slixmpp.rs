//! Interop with a real client nobody here wrote: slixmpp (PyPI) and its XEP-0009 plugin, both ways,
//! through the test Prosody. Plain transport, by explicit configuration: slixmpp has no end-to-end
//! tunnel.
//!
//! The Python comes from `PMN_SLIXMPP_PYTHON` (set by `cargo xtask test`, which installs slixmpp in a
//! venv under target/). When it is set, a missing or broken interpreter fails the tests. Under plain
//! `cargo test` without it, the venv at target/interop-venv is used when present; otherwise the tests
//! are skipped with a printed reason.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pmn::core::discovery::DirectoryUpdate;
use pmn::core::error::ErrorKind;
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::Service;
use pmn::core::services::library::{GeneratedLibrary, LibraryService};
use pmn::core::services::player::{self, PlaybackState, PlayerService, SimulatedPlayer};
use pmn::core::services::recorder::RecorderService;
use pmn_testkit::Account;

use common::*;

/// The env var naming the Python that has slixmpp.
const PYTHON_ENV: &str = "PMN_SLIXMPP_PYTHON";

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(PYTHON_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{PYTHON_ENV}={} does not exist (run `cargo xtask test`, which installs it)",
            p.display()
        );
        return Some(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    if venv.is_file() {
        return Some(venv);
    }
    eprintln!(
        "SKIPPED: slixmpp interop needs {PYTHON_ENV} or {} (cargo xtask test installs it)",
        venv.display()
    );
    None
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

fn peer(python: &Path, name: &str, account: &Account, device: &str, extra: &[&str]) -> Command {
    let server = server();
    let mut cmd = Command::new(python);
    cmd.current_dir(script(""))
        // No __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg(script(name))
        .args(["--jid", &format!("{}/{}", account.jid, unique(device))])
        .args(["--password", account.password])
        .args(["--server", &server.addr()])
        .arg("--ca")
        .arg(server.ca_path())
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn services() -> Vec<Arc<dyn Service>> {
    vec![
        Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default()))),
        Arc::new(RecorderService::simulated()),
        Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(10_000)))),
    ]
}

async fn pmn_provider() -> Provider {
    Provider::start(
        ProviderConfig::plain(session_config(&HOME, "tv"), "pmn TV"),
        services(),
    )
    .await
    .expect("provider starts")
}

/// Runs a slixmpp controller to completion (bounded) and returns its stdout and stderr.
async fn run_controller(
    python: &Path,
    account: &Account,
    target: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec!["--target", target];
    args.extend_from_slice(extra);
    let mut cmd = peer(python, "slix_controller.py", account, "slix-phone", &args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("python runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_controller_drives_every_pmn_service() {
    let Some(python) = python() else { return };
    let provider = pmn_provider().await;
    let jid = provider.session().jid().expect("online").to_string();
    let (ok, out, err) = run_controller(&python, &HOME, &jid, &[]).await;
    assert!(
        ok && out.contains("OK "),
        "slixmpp controller failed:\n{out}\n{err}"
    );
    // Its unavailable presence made the provider forget it; the provider keeps serving.
    tokio::time::timeout(Duration::from_secs(10), async {
        while provider.subscription_count() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("subscriptions forgotten");
    let controller = start_controller().await;
    let tv = discover(&controller, &provider).await;
    controller
        .player(tv.jid)
        .status()
        .await
        .expect("still serving");
    println!("slixmpp controller: {}", out.trim());
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slixmpp_stranger_is_forbidden() {
    let Some(python) = python() else { return };
    let provider = pmn_provider().await;
    let jid = provider.session().jid().expect("online").to_string();
    let (ok, out, err) = run_controller(&python, &STRANGER, &jid, &["--expect-forbidden"]).await;
    assert!(
        ok && out.contains("OK "),
        "stranger run failed:\n{out}\n{err}"
    );
    assert_eq!(provider.subscription_count(), 0);
    provider.stop().await;
}

/// A running slixmpp provider; closing stdin ends it, and it is killed if still there on drop.
struct SlixProvider {
    child: Child,
    jid: String,
}

impl Drop for SlixProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn slix_provider(python: &Path) -> SlixProvider {
    let mut child = peer(python, "slix_provider.py", &HOME, "slix-tv", &[])
        .spawn()
        .expect("python starts");
    let stdout = child.stdout.take().expect("stdout");
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        // Keep draining so the peer never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        first
    });
    let line = tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("slixmpp provider ready in time")
        .expect("join");
    let line = match line {
        Some(Ok(l)) => l,
        other => {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("slixmpp provider did not start: {other:?}\n{err}");
        }
    };
    let jid = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_owned();
    SlixProvider { child, jid }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmn_controller_discovers_and_drives_a_slixmpp_provider() {
    let Some(python) = python() else { return };
    let controller = start_controller().await;
    let mut slix = slix_provider(&python).await;
    let info = controller
        .wait_for_provider(|p| p.jid.to_string() == slix.jid, Duration::from_secs(15))
        .await
        .expect("slixmpp provider discovered through caps");
    assert_eq!(info.name, "Slix TV");
    assert!(
        info.services.iter().any(|s| s == player::FEATURE),
        "{info:?}"
    );

    let mut events = controller.events();
    let _sub = controller
        .subscribe(&info.jid, "player")
        .await
        .expect("subscribe");
    let p = controller.player(info.jid.clone());
    let s = p.play("file:///from-pmn.mkv").await.expect("play");
    assert_eq!(s.state, PlaybackState::Playing);
    assert_eq!(s.uri.as_deref(), Some("file:///from-pmn.mkv"));
    assert_eq!(p.pause().await.expect("pause").state, PlaybackState::Paused);
    assert_eq!(p.set_volume(64).await.expect("volume").volume, 64);
    assert_eq!(p.status().await.expect("status").volume, 64);

    // Its events reach us typed.
    let mut states = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while states.len() < 2 {
            let e = events.recv().await.expect("event");
            if let Some(s) = e.decode::<player::StateChanged>() {
                states.push(s.expect("typed status").state);
            }
        }
    })
    .await
    .expect("state events from slixmpp");
    assert_eq!(states, vec![PlaybackState::Playing, PlaybackState::Paused]);

    // Its refusals arrive as our typed errors.
    p.stop().await.expect("stop");
    let e = p.pause().await.expect_err("nothing loaded");
    assert_eq!(
        (e.kind(), e.fault_code()),
        (ErrorKind::Fault, Some(player::FAULT_INVALID_STATE))
    );
    let e = p.set_volume(101).await.expect_err("bad");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    let e = controller
        .call(&info.jid, "player.explode", vec![])
        .await
        .expect_err("unknown");
    assert_eq!(e.kind(), ErrorKind::UnknownMethod);
    // A method it lacks (seek) is an unknown method, not a hang.
    let e = p.seek(1).await.expect_err("no seek");
    assert_eq!(e.kind(), ErrorKind::UnknownMethod);

    // Closing its stdin makes it leave; the directory sees it go.
    let mut updates = controller.updates();
    drop(slix.child.stdin.take().map(|mut s| s.flush()));
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match updates.recv().await {
                Ok(DirectoryUpdate::Removed(j)) if j == info.jid => break,
                Ok(_) => {}
                Err(e) => panic!("updates: {e}"),
            }
        }
    })
    .await
    .expect("slixmpp provider left");
    controller.close().await;
}
