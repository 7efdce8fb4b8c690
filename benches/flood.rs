//! A stranger floods the TV while the owner's phone uses it: what the flood costs the household.
//!
//! One provider (simulated player) and one controller of the home network, and a stranger's raw
//! client on the same Prosody. Phases of [`PHASE`] calls alternate, without flood and with the
//! stranger writing as fast as it can (bounded: [`FLOOD_CAP`] stanzas per phase, loopback only):
//! RPC calls it may not make, disco#info, pairing initiations, stanzas nested 10 000 levels deep and
//! headlines to the household's bare JID. Printed: the owner's `player.status` median and p99 in
//! each condition and their ratio, the stanzas the stranger wrote, and this process's RSS before
//! and after (provider and controller live in it). Goal: ≤ 2× median, flat memory.
//!
//! Run: `cargo xtask bench flood` (or `cargo bench --features test-ca --bench flood`). Prosody is
//! single-threaded and does most of the work of a flood; compare within one run.

mod common;

#[path = "../tests/common/raw.rs"]
#[allow(dead_code)] // the bench uses only part of the raw client
mod raw;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn_testkit::{TestServer, HOME, STRANGER};

/// Calls per phase.
const PHASE: usize = 1000;
/// Phases of each kind, interleaved.
const ROUNDS: usize = 5;
/// Most stanzas the stranger writes in one flood phase.
const FLOOD_CAP: u64 = 20_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn flood_stanza(n: u64, tv: &str, bare: &str) -> String {
    match n % 5 {
        0 => format!(
            "<iq type='set' id='f{n}' to='{tv}'><query xmlns='jabber:iq:rpc'><methodCall>\
             <methodName>player.play</methodName><params><param><value><string>file:///etc/passwd\
             </string></value></param></params></methodCall></query></iq>"
        ),
        1 => format!(
            "<iq type='get' id='f{n}' to='{tv}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ),
        2 => format!(
            "<iq type='set' id='f{n}' to='{tv}'><jingle xmlns='urn:xmpp:jingle:1' \
             action='session-initiate' sid='s{n}'><content creator='initiator' name='x'>\
             <description xmlns='urn:xmpp:jingle:apps:xmlstream:0'/>\
             <transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size='4096' sid='i{n}'/>\
             <security xmlns='urn:xmpp:jingle:security:xtls:1'><method name='pake'/></security>\
             </content></jingle></iq>"
        ),
        3 => format!(
            "<iq type='set' id='f{n}' to='{tv}'><query xmlns='jabber:iq:rpc'>{}{}</query></iq>",
            "<a>".repeat(10_000),
            "</a>".repeat(10_000)
        ),
        _ => format!(
            "<message type='headline' to='{bare}'><body>flood {n}</body></message>"
        ),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");
    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    let provider = Provider::start(
        ProviderConfig::plain(common::session_config(&server, &HOME, "tv"), "TV"),
        vec![player],
    )
    .await
    .expect("provider");
    let controller = Controller::connect(ControllerConfig::plain(common::session_config(
        &server, &HOME, "phone",
    )))
    .await
    .expect("controller");
    let tv = provider.session().jid().expect("tv online");
    controller
        .wait_for_provider(|p| p.jid == tv, Duration::from_secs(10))
        .await
        .expect("tv discovered");
    let remote = controller.player(tv.clone());
    for _ in 0..100 {
        remote.status().await.expect("warm-up call");
    }

    let flooding = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // The stranger is another machine: its own thread and runtime, stanzas prepared up front.
    let flood_thread = {
        let (flooding, written, stop) = (flooding.clone(), written.clone(), stop.clone());
        let stanzas: Vec<String> = (0..5)
            .map(|n| flood_stanza(n, &tv.to_string(), &tv.to_bare().to_string()))
            .collect();
        let server = &server;
        let attacker = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(raw::RawClient::connect(server, &STRANGER, "flood"))
        });
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("attacker runtime");
            rt.block_on(async move {
                let mut attacker = attacker;
                let mut in_phase = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if !flooding.load(Ordering::Relaxed) {
                        in_phase = 0;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    if in_phase >= FLOOD_CAP {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                    let n = written.fetch_add(1, Ordering::Relaxed);
                    attacker.send(&stanzas[(n % 5) as usize]).await;
                    in_phase += 1;
                }
                attacker.close().await;
            });
        })
    };

    let rss_before = rss_kib();
    let (mut calm, mut flood) = (Vec::new(), Vec::new());
    let mut failures = 0usize;
    for _ in 0..ROUNDS {
        for (on, samples) in [(false, &mut calm), (true, &mut flood)] {
            flooding.store(on, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            for _ in 0..PHASE {
                let t = Instant::now();
                match remote.status().await {
                    Ok(_) => samples.push(t.elapsed()),
                    Err(_) => failures += 1,
                }
            }
        }
    }
    flooding.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || flood_thread.join()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib();

    let (calm_med, calm_p99) = common::median_p99(calm);
    let (flood_med, flood_p99) = common::median_p99(flood);
    println!("owner player.status, {ROUNDS}×{PHASE} calls each, interleaved phases (µs):");
    println!("  without flood   median {calm_med:8.1}  p99 {calm_p99:8.1}");
    println!("  under flood     median {flood_med:8.1}  p99 {flood_p99:8.1}");
    println!(
        "  ratio           median {:8.2}× p99 {:8.2}×",
        flood_med / calm_med,
        flood_p99 / calm_p99
    );
    println!(
        "stranger wrote {} stanzas; owner calls failed: {failures}",
        written.load(Ordering::Relaxed)
    );
    println!(
        "process RSS before {rss_before} KiB, after {rss_after} KiB ({:+} KiB); provider {:?}",
        rss_after as i64 - rss_before as i64,
        provider.stats()
    );
    controller.close().await;
    provider.stop().await;
}
