//! Scale and soak (issue 16, goal 7), loopback only and bounded in time: many providers on one
//! network JID in one process, many controllers in another, a sustained mix of RPCs and events.
//!
//! - **Discovery**: with the providers online, a minimal client (pmn's session layer only: log in,
//!   initial presence, nothing else) and a fresh pmn controller log in in turn, 3 times each. The
//!   client's time until it has every provider's presence is what Prosody takes to deliver them;
//!   the controller's time until its directory lists every provider is divided by it. Printed with
//!   the disco#info queries the controller sent against the distinct caps hashes the presences
//!   carried.
//! - **Soak**: every controller discovers every provider, subscribes to the player events of a few,
//!   then calls `player.status`, `play`, `set_volume` on random providers at a steady rate until the
//!   time is up. Every call must succeed (no error, no timeout). Both processes' RSS is sampled
//!   every second; its slope after the warm-up (the first quarter) is printed.
//! - **Footprint** (`PMN_SOAK_FOOTPRINT=1`, for `cargo xtask size`): the RSS of a process with one
//!   controller seeing 0 and then 100 providers, and of a process with 1 and then 100 providers.
//!
//! Run: `cargo xtask soak [MINUTES]` (default 10). Environment: `PMN_SOAK_SECONDS` (overrides the
//! minutes), `PMN_SOAK_PROVIDERS` (200), `PMN_SOAK_CONTROLLERS` (50), `PMN_SOAK_RATE` (calls per
//! second per controller, 2), `PMN_SOAK_MAX_GROWTH_KB` (when set, fail if a process's RSS grows by
//! more than this after the warm-up: the suite's short version).

mod common;

use std::env;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::discovery::info_queries_sent;
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::core::session::{Inbound, Session};
use pmn_testkit::{Account, TestServer, BENCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_xmpp::Stanza;
use xmpp_parsers::presence::Presence;

const ROLE_ENV: &str = "PMN_SOAK_ROLE";
const PORT_ENV: &str = "PMN_SOAK_PORT";
const CA_ENV: &str = "PMN_SOAK_CA";
const ACCOUNT: Account = BENCH;
/// Player events each controller subscribes to.
const SUBSCRIPTIONS: usize = 3;
/// A call that takes longer is lost.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Discovery of the whole network, at most.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Minimal client / controller logins of the discovery measurement.
const DISCOVERY_ROUNDS: usize = 3;

fn env_u64(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    match env::var(ROLE_ENV).as_deref() {
        Ok("providers") => runtime().block_on(providers_process()),
        Ok("controllers") => runtime().block_on(controllers_process()),
        _ => runtime().block_on(driver()),
    }
}

fn child_config(device: &str) -> pmn::core::session::SessionConfig {
    let port: u16 = env::var(PORT_ENV).expect(PORT_ENV).parse().expect("port");
    let ca = std::fs::read_to_string(env::var(CA_ENV).expect(CA_ENV)).expect("CA file");
    common::session_config_at(port, ca, &ACCOUNT, device)
}

/// Resident set size of process `pid`, KB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

// ---- the providers' process ------------------------------------------------------------------

/// Reads `ADD n` lines: starts n more providers, then prints `PROVIDERS <total>`. Stops the
/// providers when stdin closes.
async fn providers_process() {
    let mut providers: Vec<Provider> = Vec::new();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = stdin.next_line().await {
        let Some(n) = line
            .strip_prefix("ADD ")
            .and_then(|n| n.trim().parse::<usize>().ok())
        else {
            continue;
        };
        let first = providers.len();
        let started: Vec<Provider> = stream::iter(first..first + n)
            .map(|i| async move {
                let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
                Provider::start(
                    ProviderConfig::plain(
                        child_config(&format!("soak-tv{i}")),
                        format!("Soak TV {i}"),
                    ),
                    vec![player],
                )
                .await
                .expect("provider")
            })
            .buffer_unordered(8)
            .collect()
            .await;
        providers.extend(started);
        println!("PROVIDERS {}", providers.len());
    }
    for p in providers {
        p.stop().await;
    }
}

// ---- the controllers' process ----------------------------------------------------------------

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
    events: AtomicU64,
    lagged: AtomicU64,
}

/// Starts `PMN_SOAK_CONTROLLERS` controllers, prints `CONNECTED`; then reads commands:
/// `EXPECT n` (prints `DISCOVERED <ms>` once every controller lists n providers) and
/// `RUN <seconds> <rate>` (the mix; prints `STATS ok failed lost events lagged` every 5 s and
/// `DONE …` at the end).
async fn controllers_process() {
    let m = env_u64("PMN_SOAK_CONTROLLERS", 50) as usize;
    let controllers: Vec<Controller> = stream::iter(0..m)
        .map(|i| async move {
            Controller::connect(ControllerConfig::plain(child_config(&format!(
                "soak-phone{i}"
            ))))
            .await
            .expect("controller")
        })
        .buffer_unordered(8)
        .collect()
        .await;
    println!("CONNECTED");
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = stdin.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["EXPECT", n] => {
                let n: usize = n.parse().expect("n");
                let t = Instant::now();
                for c in &controllers {
                    while c.providers().len() < n {
                        assert!(t.elapsed() < DISCOVERY_TIMEOUT, "discovery timed out");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                println!("DISCOVERED {}", t.elapsed().as_millis());
            }
            ["RUN", seconds, rate] => {
                let seconds: f64 = seconds.parse().expect("seconds");
                let rate: f64 = rate.parse().expect("rate");
                mix(&controllers, Duration::from_secs_f64(seconds), rate).await;
            }
            _ => {}
        }
    }
    for c in controllers {
        c.close().await;
    }
}

/// The sustained mix: every controller, one call at a time at `rate` calls per second, on random
/// providers; events of a few providers counted.
async fn mix(controllers: &[Controller], length: Duration, rate: f64) {
    let counts = Arc::new(Counts::default());
    let deadline = tokio::time::Instant::now() + length;
    let mut tasks = Vec::new();
    for (i, c) in controllers.iter().enumerate() {
        let c = c.clone();
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            let mut jids: Vec<_> = c.providers().into_iter().map(|p| p.jid).collect();
            jids.sort();
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(i as u64);
            let mut subs = Vec::new();
            for k in 0..SUBSCRIPTIONS.min(jids.len()) {
                let jid = &jids[(i * SUBSCRIPTIONS + k) % jids.len()];
                subs.push(c.subscribe(jid, "player").await.expect("subscribe"));
            }
            let mut events = c.events();
            let ev_counts = counts.clone();
            let listener = tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(_) => ev_counts.events.fetch_add(1, Ordering::Relaxed),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            ev_counts.lagged.fetch_add(n, Ordering::Relaxed)
                        }
                        Err(_) => break,
                    };
                }
            });
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Spread the controllers' phases.
            tokio::time::sleep(Duration::from_secs_f64(
                rand::Rng::random_range(&mut rng, 0.0..1.0) / rate,
            ))
            .await;
            while tokio::time::Instant::now() < deadline {
                tick.tick().await;
                let jid = jids[rand::Rng::random_range(&mut rng, 0..jids.len())].clone();
                let remote = c.player(jid);
                let op = rand::Rng::random_range(&mut rng, 0..10u32);
                let call = async {
                    match op {
                        0 => remote.play("file:///soak.mkv").await.map(drop),
                        1 => remote.set_volume((i % 100) as u8).await.map(drop),
                        _ => remote.status().await.map(drop),
                    }
                };
                match tokio::time::timeout(CALL_TIMEOUT, call).await {
                    Ok(Ok(())) => counts.ok.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(e)) => {
                        eprintln!("soak: call failed: {e}");
                        counts.failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => counts.lost.fetch_add(1, Ordering::Relaxed),
                };
            }
            drop(subs);
            listener.abort();
        }));
    }
    let report = |tag: &str| {
        println!(
            "{tag} {} {} {} {} {}",
            counts.ok.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
            counts.lost.load(Ordering::Relaxed),
            counts.events.load(Ordering::Relaxed),
            counts.lagged.load(Ordering::Relaxed)
        )
    };
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        tokio::select! {
            results = &mut all => {
                for r in results {
                    r.expect("controller task");
                }
                break;
            }
            _ = every.tick() => report("STATS"),
        }
    }
    report("DONE");
}

// ---- the driver ------------------------------------------------------------------------------

struct Child {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    fn spawn(server: &TestServer, role: &str, envs: &[(&str, String)]) -> Child {
        let mut cmd = tokio::process::Command::new(env::current_exe().expect("bench binary"));
        cmd.env(ROLE_ENV, role)
            .env(PORT_ENV, server.port().to_string())
            .env(CA_ENV, server.ca_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("child process");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Child {
            child,
            stdin,
            lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("to child");
        self.stdin.flush().await.expect("to child");
    }

    /// The rest of the next line starting with `prefix` (other lines are echoed).
    async fn expect(&mut self, prefix: &str, within: Duration) -> String {
        loop {
            let line = tokio::time::timeout(within, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("child did not say {prefix} in time"))
                .expect("child stdout")
                .expect("child exited");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
            println!("  child: {line}");
        }
    }

    async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await;
    }
}

/// A minimal client's login until it holds the presence of `n` other resources announcing caps:
/// (time, distinct caps hashes).
async fn minimal_client(server: &TestServer, round: usize, n: usize) -> (Duration, usize) {
    let t = Instant::now();
    let (session, mut inbound) = Session::connect(common::session_config(
        server,
        &ACCOUNT,
        &format!("soak-minimal{round}"),
    ))
    .await
    .expect("minimal client");
    session
        .send(Presence::available())
        .expect("initial presence");
    let mut seen = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    while seen.len() < n {
        let item = tokio::time::timeout(DISCOVERY_TIMEOUT, inbound.recv())
            .await
            .expect("presences in time")
            .expect("session open");
        if let Inbound::Stanza(stanza) = item {
            if let Stanza::Presence(p) = *stanza {
                let caps = p
                    .payloads
                    .iter()
                    .find(|e| e.is("c", "http://jabber.org/protocol/caps"));
                let provider = p
                    .from
                    .as_ref()
                    .and_then(|f| f.resource())
                    .is_some_and(|r| r.as_str().starts_with("soak-tv"));
                if let (Some(from), Some(caps), true) = (p.from, caps, provider) {
                    if seen.insert(from) {
                        hashes.insert(caps.attr("ver").unwrap_or("").to_string());
                    }
                }
            }
        }
    }
    let elapsed = t.elapsed();
    session.close().await;
    (elapsed, hashes.len())
}

/// A fresh controller's login until its directory lists `n` providers: (time, disco#info sent).
async fn controller_discovery(server: &TestServer, round: usize, n: usize) -> (Duration, u64) {
    let before = info_queries_sent();
    let t = Instant::now();
    let controller = Controller::connect(ControllerConfig::plain(common::session_config(
        server,
        &ACCOUNT,
        &format!("soak-fresh{round}"),
    )))
    .await
    .expect("controller");
    while controller.providers().len() < n {
        assert!(t.elapsed() < DISCOVERY_TIMEOUT, "discovery timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = t.elapsed();
    let queries = info_queries_sent() - before;
    controller.close().await;
    (elapsed, queries)
}

fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Least-squares slope of `(seconds, kb)` in KB per minute.
fn slope_kb_per_min(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den * 60.0
    }
}

async fn driver() {
    let server = TestServer::start().expect("prosody");
    if env::var("PMN_SOAK_FOOTPRINT").as_deref() == Ok("1") {
        return footprint(&server).await;
    }
    let seconds = env::var("PMN_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60 * env_u64("PMN_SOAK_MINUTES", 10));
    let n = env_u64("PMN_SOAK_PROVIDERS", 200) as usize;
    let m = env_u64("PMN_SOAK_CONTROLLERS", 50) as usize;
    let rate = env_u64("PMN_SOAK_RATE", 2) as f64;
    let max_growth = env::var("PMN_SOAK_MAX_GROWTH_KB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    println!(
        "soak: {n} providers (one process) and {m} controllers (another) on {}, {seconds} s of \
         {rate} calls/s per controller",
        ACCOUNT.jid
    );
    let start = Instant::now();
    let mut providers = Child::spawn(&server, "providers", &[]);
    providers.say(&format!("ADD {n}")).await;
    providers.expect("PROVIDERS", DISCOVERY_TIMEOUT).await;
    println!(
        "  {n} providers online after {:.1} s, RSS {} KB",
        start.elapsed().as_secs_f64(),
        rss_kb(providers.pid())
    );

    // Discovery: a minimal client and a fresh controller, in turn.
    let (mut ratios, mut queries_seen, mut hashes_seen) = (Vec::new(), Vec::new(), 0);
    for round in 0..DISCOVERY_ROUNDS {
        let (floor, hashes) = minimal_client(&server, round, n).await;
        let (pmn, queries) = controller_discovery(&server, round, n).await;
        let ratio = pmn.as_secs_f64() / floor.as_secs_f64();
        println!(
            "  discovery {}/{DISCOVERY_ROUNDS}: minimal client has {n} presences in {:.0} ms, \
             controller lists {n} providers in {:.0} ms ({ratio:.2}x); disco#info sent {queries}, \
             distinct caps hashes {hashes}",
            round + 1,
            floor.as_secs_f64() * 1e3,
            pmn.as_secs_f64() * 1e3
        );
        ratios.push(ratio);
        queries_seen.push(queries);
        hashes_seen = hashes;
    }
    let (lo, mid, hi) = spread(ratios);
    println!(
        "  discovery / presence delivery: {lo:.2}x {mid:.2}x {hi:.2}x (min / median / max), goal \
         ≤ 1.5x; disco#info per login {:?} vs {hashes_seen} distinct hashes",
        queries_seen
    );

    // The controllers, then the mix.
    let t = Instant::now();
    let mut controllers = Child::spawn(
        &server,
        "controllers",
        &[("PMN_SOAK_CONTROLLERS", m.to_string())],
    );
    controllers.expect("CONNECTED", DISCOVERY_TIMEOUT).await;
    controllers.say(&format!("EXPECT {n}")).await;
    controllers.expect("DISCOVERED", DISCOVERY_TIMEOUT).await;
    println!(
        "  {m} controllers connected and each lists {n} providers after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    controllers.say(&format!("RUN {seconds} {rate}")).await;
    let t = Instant::now();
    let pids = [
        ("providers", providers.pid()),
        ("controllers", controllers.pid()),
    ];
    let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); pids.len()];
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let done = loop {
        tokio::select! {
            line = controllers.lines.next_line() => {
                let line = line.expect("controllers' stdout").expect("controllers exited");
                if let Some(rest) = line.strip_prefix("DONE ") {
                    break rest.to_string();
                }
                if let Some(rest) = line.strip_prefix("STATS ") {
                    println!("  {:5.0} s  ok failed lost events lagged: {rest}  RSS KB: {}",
                        t.elapsed().as_secs_f64(),
                        pids.iter().map(|(_, p)| rss_kb(*p).to_string()).collect::<Vec<_>>().join(" / "));
                } else {
                    println!("  controllers: {line}");
                }
            }
            _ = every.tick() => {
                let x = t.elapsed().as_secs_f64();
                for (i, (_, pid)) in pids.iter().enumerate() {
                    samples[i].push((x, rss_kb(*pid) as f64));
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(seconds + 120),
            "the mix did not end"
        );
    };
    let counts: Vec<u64> = done
        .split_whitespace()
        .map(|v| v.parse().expect("count"))
        .collect();
    let (ok, failed, lost, events, lagged) =
        (counts[0], counts[1], counts[2], counts[3], counts[4]);
    println!(
        "  calls: {ok} ok, {failed} failed, {lost} lost ({:.0} calls/s); events received {events}, \
         lagged {lagged}",
        ok as f64 / seconds as f64
    );
    let mut growth_failures = Vec::new();
    for ((name, _), points) in pids.iter().zip(&samples) {
        let warm = seconds as f64 / 4.0;
        let after: Vec<(f64, f64)> = points.iter().copied().filter(|(x, _)| *x >= warm).collect();
        let (first, last) = (
            after.first().map_or(0.0, |p| p.1),
            after.last().map_or(0.0, |p| p.1),
        );
        let peak = after.iter().map(|p| p.1).fold(0.0, f64::max);
        println!(
            "  RSS {name:<12} after warm-up ({warm:.0} s): {first:.0} → {last:.0} KB (peak {peak:.0}), \
             slope {:+.1} KB/min over {} samples",
            slope_kb_per_min(&after),
            after.len()
        );
        if let Some(max) = max_growth {
            if peak - first > max as f64 {
                growth_failures.push(format!("{name} grew {:.0} KB > {max} KB", peak - first));
            }
        }
    }
    controllers.stop().await;
    providers.stop().await;
    assert_eq!((failed, lost), (0, 0), "no failed or lost call");
    assert!(ok > 0, "calls were made");
    assert!(
        growth_failures.is_empty(),
        "RSS bounded: {growth_failures:?}"
    );
    println!("soak: passed in {:.1} s", start.elapsed().as_secs_f64());
}

/// `PMN_SOAK_FOOTPRINT=1`: controller RSS seeing 0 and 100 providers; provider process RSS with
/// 1 and 100 providers.
async fn footprint(server: &TestServer) {
    const N: usize = 100;
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    let mut controller = Child::spawn(
        server,
        "controllers",
        &[("PMN_SOAK_CONTROLLERS", "1".into())],
    );
    controller.expect("CONNECTED", DISCOVERY_TIMEOUT).await;
    let mut providers = Child::spawn(server, "providers", &[]);
    settle().await;
    let controller_0 = rss_kb(controller.pid());
    providers.say("ADD 1").await;
    providers.expect("PROVIDERS", DISCOVERY_TIMEOUT).await;
    settle().await;
    let providers_1 = rss_kb(providers.pid());
    providers.say(&format!("ADD {}", N - 1)).await;
    providers.expect("PROVIDERS", DISCOVERY_TIMEOUT).await;
    controller.say(&format!("EXPECT {N}")).await;
    controller.expect("DISCOVERED", DISCOVERY_TIMEOUT).await;
    settle().await;
    let providers_n = rss_kb(providers.pid());
    let controller_n = rss_kb(controller.pid());
    println!("footprint (RSS, release build, one tokio runtime per process)");
    println!(
        "  controller process seeing   0 providers {controller_0:>7} KB, seeing {N} providers \
         {controller_n:>7} KB ({:.1} KB per provider seen); goal ≤ 10240 KB: {}",
        (controller_n as f64 - controller_0 as f64) / N as f64,
        if controller_n <= 10240 {
            "met"
        } else {
            "missed"
        }
    );
    let per = (providers_n as f64 - providers_1 as f64) / (N - 1) as f64;
    println!(
        "  provider process with 1 provider {providers_1:>7} KB, with {N} {providers_n:>7} KB: \
         {per:.1} KB per extra provider; goal ≤ 100 KB: {}",
        if per <= 100.0 { "met" } else { "missed" }
    );
    controller.stop().await;
    providers.stop().await;
}
