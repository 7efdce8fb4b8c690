//! Scale and soak (issue 16, goal 7), loopback only and bounded in time: many providers on one
//! network JID in one process, many controllers in another, a sustained mix of RPCs and events.
//!
//! - **Discovery**: with the providers online, a minimal client (pmn's session layer only: log in,
//!   initial presence, nothing else) and fresh pmn controllers log in in turn, several rounds, the
//!   order rotated each round and a pause before each login. Both are timed from the start of the
//!   login (TCP, TLS, SASL, bind: the same for both) until the client has every provider's
//!   presence, which is what Prosody takes to deliver them, and until the controller's directory
//!   lists every provider (presence, then one disco#info round trip per caps hash). A third side
//!   is an app's next start: a controller given the caps cache an earlier controller saved
//!   (`Controller::caps_snapshot`), which lists the providers from their presence alone. Printed
//!   per round with the ratio, then min / median / max, and the disco#info queries the controller
//!   sent against the distinct caps hashes the presences carried. `PMN_SOAK_IN_FLIGHT=8,32,...` compares
//!   controllers with those bounds on disco#info in flight (default: the library's default).
//! - **Soak**: every controller discovers every provider, subscribes to the player events of a few,
//!   then calls `player.status`, `play`, `set_volume` on random providers at a steady rate until the
//!   time is up. Every call must succeed (no error, no timeout). Both processes' RSS is sampled
//!   every second; printed: its slope from the working set's plateau (or over the last quarter if
//!   it grows until then), over the last half, and per quarter.
//! - **Leak check** (`PMN_SOAK_LEAK_CHECK=<suppression file>`, `cargo xtask soak --leak-check`):
//!   both child processes under valgrind's memcheck; fails on a definite or indirect leak.
//! - **Footprint** (`PMN_SOAK_FOOTPRINT=1`, for `cargo xtask size`): the RSS of a process with one
//!   controller seeing 0 and then 100 providers, and of a process with 1 and then 100 providers.
//!
//! Run: `cargo xtask soak [MINUTES]` (default 10). Environment: `PMN_SOAK_SECONDS` (overrides the
//! minutes), `PMN_SOAK_PROVIDERS` (200), `PMN_SOAK_CONTROLLERS` (50), `PMN_SOAK_RATE` (calls per
//! second per controller, 2), `PMN_SOAK_DISCOVERY_ROUNDS` (7), `PMN_SOAK_MAX_GROWTH_KB` (when set,
//! fail if a process's RSS grows by more than this in the judged window: the suite's short version).

mod common;

use std::env;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::discovery::{info_queries_sent, CapsSnapshot, QueryLimits};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::core::session::{Inbound, IqReply, Session};
use pmn_testkit::{Account, TestServer, BENCH};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_xmpp::Stanza;
use xmpp_parsers::disco::DiscoInfoQuery;
use xmpp_parsers::iq::Iq;
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
/// Minimal client / controller logins of the discovery measurement (`PMN_SOAK_DISCOVERY_ROUNDS`).
const DISCOVERY_ROUNDS: u64 = 7;

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
    let mut config = common::session_config_at(port, ca, &ACCOUNT, device);
    if leak_check().is_some() {
        // Under valgrind a TLS login takes tens of times longer.
        config.connect_timeout = SLOW_TIMEOUT;
    }
    config
}

/// Logins started at once by a child process (one at a time under valgrind, which runs one
/// thread at a time anyway).
fn logins_at_once() -> usize {
    if leak_check().is_some() {
        1
    } else {
        8
    }
}

/// The bound on a login, a call or a child's exit under valgrind.
const SLOW_TIMEOUT: Duration = Duration::from_secs(300);

/// A call that takes longer is lost.
fn call_timeout() -> Duration {
    if leak_check().is_some() {
        SLOW_TIMEOUT
    } else {
        CALL_TIMEOUT
    }
}

/// Resident set size of process `pid`, KB.
fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// One `… kB` field of `/proc/<pid>/status` (0 if absent).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Where a process's resident memory is: heap and stacks (anonymous); mapped files, split into
/// the process's own executable and the rest (shared libraries); the memory it alone has written
/// (private dirty: what cannot be dropped and read back from a file); its thread count.
fn rss_parts(pid: u32) -> String {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut own, mut dirty, mut in_exe) = (0u64, 0u64, false);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: `start-end perms offset dev inode [path]`.
            in_exe = words
                .nth(4)
                .is_some_and(|path| std::path::Path::new(path) == exe);
            continue;
        }
        let kb = || {
            words
                .clone()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" if in_exe => own += kb(),
            "Private_Dirty:" => dirty += kb(),
            _ => {}
        }
    }
    let file = status_kb(pid, "RssFile:");
    format!(
        "anonymous {} KB, file-backed {file} KB (its executable {own} KB, other files {} KB), \
         private dirty {dirty} KB, {} threads",
        status_kb(pid, "RssAnon:"),
        file.saturating_sub(own),
        status_kb(pid, "Threads:")
    )
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
            .buffer_unordered(logins_at_once())
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
            let mut config = ControllerConfig::plain(child_config(&format!("soak-phone{i}")));
            if leak_check().is_some() {
                config.rpc_timeout = SLOW_TIMEOUT;
            }
            Controller::connect(config).await.expect("controller")
        })
        .buffer_unordered(logins_at_once())
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
                match tokio::time::timeout(call_timeout(), call).await {
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

/// `PMN_SOAK_LEAK_CHECK`: the suppression file; when set, each child process runs under valgrind's
/// memcheck with a full leak check, and fails on a definite or indirect leak (or any memory error).
const LEAK_CHECK_ENV: &str = "PMN_SOAK_LEAK_CHECK";
/// Exit status of a child valgrind found errors in.
const VALGRIND_ERROR_EXIT: i32 = 99;

/// The suppression file of the leak check, if it is on.
fn leak_check() -> Option<String> {
    env::var(LEAK_CHECK_ENV).ok().filter(|v| !v.is_empty())
}

/// Where a child's valgrind log goes.
fn valgrind_log(server: &TestServer, role: &str) -> std::path::PathBuf {
    server.dir().join(format!("valgrind-{role}.log"))
}

impl Child {
    fn spawn(server: &TestServer, role: &str, envs: &[(&str, String)]) -> Child {
        let exe = env::current_exe().expect("bench binary");
        let mut cmd = match leak_check() {
            Some(suppressions) => {
                let mut cmd = tokio::process::Command::new("valgrind");
                cmd.args([
                    "--tool=memcheck",
                    "--leak-check=full",
                    "--show-leak-kinds=definite,indirect,possible",
                    "--errors-for-leak-kinds=definite,indirect",
                    "--fair-sched=yes",
                    "--num-callers=40",
                ])
                .arg(format!("--error-exitcode={VALGRIND_ERROR_EXIT}"))
                .arg(format!("--suppressions={suppressions}"))
                .arg(format!(
                    "--log-file={}",
                    valgrind_log(server, role).display()
                ))
                .arg(exe);
                cmd
            }
            None => tokio::process::Command::new(exe),
        };
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

    /// Closes its stdin and waits for it to exit: its exit status (`None` if it did not exit in
    /// time, and was killed).
    async fn stop(mut self) -> Option<std::process::ExitStatus> {
        drop(self.stdin);
        // valgrind's leak check at exit walks the whole heap: minutes on a loaded machine.
        let within = Duration::from_secs(if leak_check().is_some() { 600 } else { 60 });
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .and_then(|r| r.ok())
    }
}

/// One login of the discovery measurement.
#[derive(Clone, Copy)]
struct Login {
    /// From the start of the login until the session was bound (TLS, SASL, bind).
    bound: Duration,
    /// From the start of the login until it had all `n` providers.
    all: Duration,
}

/// A minimal client's login until it holds the presence of `n` other resources announcing caps:
/// (times, distinct caps hashes). With `disco`, it also sends one disco#info to each as its
/// presence comes (no bound, no verification, no directory) and counts the login done when all are
/// answered: what Prosody and the providers' process take to answer, the floor of any discovery.
async fn minimal_client(
    server: &TestServer,
    round: usize,
    n: usize,
    disco: bool,
) -> (Login, usize) {
    let t = Instant::now();
    let (session, mut inbound) = Session::connect(common::session_config(
        server,
        &ACCOUNT,
        &format!("soak-minimal{round}-{disco}"),
    ))
    .await
    .expect("minimal client");
    let bound = t.elapsed();
    session
        .send(Presence::available())
        .expect("initial presence");
    let mut seen = std::collections::HashSet::new();
    let mut hashes = std::collections::HashSet::new();
    let mut answers = tokio::task::JoinSet::new();
    let mut answered = 0;
    while seen.len() < n || (disco && answered < n) {
        let item = tokio::select! {
            item = inbound.recv() => item,
            Some(answer) = answers.join_next() => {
                match answer.expect("disco task") {
                    Ok(IqReply::Result(Some(_))) => answered += 1,
                    other => panic!("disco#info unanswered: {:?}", other.err()),
                }
                continue;
            }
            _ = tokio::time::sleep(DISCOVERY_TIMEOUT) => panic!("presences in time"),
        };
        let Some(Inbound::Stanza(stanza)) = item else {
            assert!(item.is_some(), "session open");
            continue;
        };
        let Stanza::Presence(p) = *stanza else {
            continue;
        };
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
            if seen.insert(from.clone()) {
                let ver = caps.attr("ver").unwrap_or("").to_string();
                if disco {
                    let node = format!("{}#{ver}", caps.attr("node").unwrap_or(""));
                    let session = session.clone();
                    answers.spawn(async move {
                        let iq = Iq::Get {
                            from: None,
                            to: Some(from),
                            id: String::new(),
                            payload: DiscoInfoQuery { node: Some(node) }.into(),
                        };
                        session.request(iq, CALL_TIMEOUT).await
                    });
                }
                hashes.insert(ver);
            }
        }
    }
    let all = t.elapsed();
    session.close().await;
    (Login { bound, all }, hashes.len())
}

/// A fresh controller's login, with at most `in_flight` disco#info queries in flight and the
/// caps cache saved by an earlier one if given, until its directory lists `n` providers: (times,
/// disco#info sent, the caps cache it would save).
async fn controller_discovery(
    server: &TestServer,
    round: usize,
    n: usize,
    in_flight: usize,
    caps_cache: Option<CapsSnapshot>,
) -> (Login, u64, CapsSnapshot) {
    let before = info_queries_sent();
    let t = Instant::now();
    let warm = caps_cache.is_some();
    let controller = Controller::connect(ControllerConfig {
        discovery: QueryLimits {
            max_in_flight: in_flight,
            ..QueryLimits::default()
        },
        caps_cache,
        ..ControllerConfig::plain(common::session_config(
            server,
            &ACCOUNT,
            &format!("soak-fresh{round}-{in_flight}-{warm}"),
        ))
    })
    .await
    .expect("controller");
    let bound = t.elapsed();
    // Woken by each directory change rather than polling, so the time is not rounded up to a tick.
    let mut updates = controller.updates();
    while controller.providers().len() < n {
        let left = DISCOVERY_TIMEOUT
            .checked_sub(t.elapsed())
            .expect("discovery timed out");
        match tokio::time::timeout(left, updates.recv()).await {
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("controller updates ended: {e}"),
            Err(_) => panic!("discovery timed out"),
        }
    }
    let all = t.elapsed();
    let queries = info_queries_sent() - before;
    let saved = controller.caps_snapshot();
    controller.close().await;
    (Login { bound, all }, queries, saved)
}

/// Pause between two logins of the discovery measurement, so that each finds Prosody done with the
/// previous one's logout (an unavailable presence to every provider).
const SETTLE: Duration = Duration::from_millis(500);

/// Discovery against presence delivery, `rounds` rounds: each a minimal client's login, a
/// controller's login with the caps cache an earlier controller saved (an app's next start) and
/// one cold controller login per in-flight bound of `bounds`, in an order rotated every round (so
/// no side always comes first after the pause, or right after another). Prints each round's times
/// and ratios, then their spread.
async fn discovery(server: &TestServer, n: usize, rounds: usize, bounds: &[usize]) {
    // The cache the warm side starts from: what a controller that listed every provider saved.
    tokio::time::sleep(SETTLE).await;
    let (_, _, saved) = controller_discovery(server, rounds, n, bounds[0], None).await;
    // Side 0: the minimal client; 1: the minimal client with disco#info; 2: the controller with
    // the saved cache; then one cold controller per bound.
    let sides = bounds.len() + 3;
    let mut warm_times = Vec::new();
    let mut warm_ratios = Vec::new();
    let mut warm_queries = Vec::new();
    let mut floors = Vec::new();
    let mut disco_floors = Vec::new();
    // Per bound: times (ms), ratios, disco#info sent per login.
    let mut times = vec![Vec::new(); bounds.len()];
    let mut ratios = vec![Vec::new(); bounds.len()];
    // Per bound: the controller's time over the minimal client's with disco#info.
    let mut disco_ratios = vec![Vec::new(); bounds.len()];
    let mut queries_seen = vec![Vec::new(); bounds.len()];
    let mut hashes_seen = 0;
    for round in 0..rounds {
        let (mut floor, mut disco_floor) = (None, None);
        let mut controllers: Vec<Option<(Login, u64)>> = vec![None; bounds.len()];
        let mut warm = None;
        for k in 0..sides {
            tokio::time::sleep(SETTLE).await;
            match (k + round) % sides {
                0 => {
                    let (login, hashes) = minimal_client(server, round, n, false).await;
                    hashes_seen = hashes;
                    floor = Some(login);
                }
                1 => disco_floor = Some(minimal_client(server, round, n, true).await.0),
                2 => {
                    let (login, queries, _) =
                        controller_discovery(server, round, n, bounds[0], Some(saved.clone()))
                            .await;
                    warm = Some((login, queries));
                }
                side => {
                    let bound = bounds[side - 3];
                    let (login, queries, _) =
                        controller_discovery(server, round, n, bound, None).await;
                    controllers[side - 3] = Some((login, queries));
                }
            }
        }
        let floor = floor.expect("the minimal client ran");
        let disco_floor = disco_floor.expect("the minimal client with disco#info ran");
        let mut line = format!(
            "  discovery {}/{rounds}: minimal client bound in {:.0} ms, has {n} presences in {:.0} ms; \
             with a disco#info to each, all answered in {:.0} ms ({:.2}x)",
            round + 1,
            ms(floor.bound),
            ms(floor.all),
            ms(disco_floor.all),
            disco_floor.all.as_secs_f64() / floor.all.as_secs_f64()
        );
        for (i, (login, queries)) in controllers.into_iter().flatten().enumerate() {
            let ratio = login.all.as_secs_f64() / floor.all.as_secs_f64();
            line += &format!(
                "; controller ({} in flight) bound in {:.0} ms, lists {n} in {:.0} ms = {ratio:.2}x \
                 ({:.2}x the disco floor), {queries} disco#info",
                bounds[i],
                ms(login.bound),
                ms(login.all),
                login.all.as_secs_f64() / disco_floor.all.as_secs_f64()
            );
            disco_ratios[i].push(login.all.as_secs_f64() / disco_floor.all.as_secs_f64());
            times[i].push(ms(login.all));
            ratios[i].push(ratio);
            queries_seen[i].push(queries);
        }
        let (warm, queries) = warm.expect("the warm controller ran");
        let ratio = warm.all.as_secs_f64() / floor.all.as_secs_f64();
        line += &format!(
            "; controller with the saved caps cache lists {n} in {:.0} ms = {ratio:.2}x, \
             {queries} disco#info",
            ms(warm.all)
        );
        warm_times.push(ms(warm.all));
        warm_ratios.push(ratio);
        warm_queries.push(queries);
        println!("{line}");
        floors.push(ms(floor.all));
        disco_floors.push(ms(disco_floor.all));
    }
    let (lo, mid, hi) = spread(floors.clone());
    println!(
        "  presence delivery to a minimal client over {rounds} rounds: {lo:.0} / {mid:.0} / {hi:.0} ms \
         (min / median / max); {hashes_seen} distinct caps hashes"
    );
    let (dlo, dmid, dhi) = spread(disco_floors);
    println!(
        "  the same client sending a disco#info to each provider, all answered: {dlo:.0} / {dmid:.0} / \
         {dhi:.0} ms"
    );
    let (tlo, tmid, thi) = spread(warm_times);
    let (lo, mid, hi) = spread(warm_ratios);
    println!(
        "  controller with the caps cache saved by an earlier one ({} entries): lists {n} in \
         {tlo:.0} / {tmid:.0} / {thi:.0} ms; ratio per round {lo:.2}x / {mid:.2}x / {hi:.2}x \
         (min / median / max); goal ≤ 1.5x at the median: {}; disco#info per login {warm_queries:?}",
        saved.len(),
        if mid <= 1.5 { "met" } else { "missed" },
    );
    for (i, bound) in bounds.iter().enumerate() {
        let (tlo, tmid, thi) = spread(times[i].clone());
        let (lo, mid, hi) = spread(ratios[i].clone());
        let (dlo, dmid, dhi) = spread(disco_ratios[i].clone());
        let exact = queries_seen[i].iter().all(|q| *q == hashes_seen as u64);
        println!(
            "  controller, {bound} disco#info in flight: lists {n} in {tlo:.0} / {tmid:.0} / {thi:.0} ms; \
             ratio per round {lo:.2}x / {mid:.2}x / {hi:.2}x (min / median / max), ratio of medians \
             {:.2}x; goal ≤ 1.5x at the median: {}; over the disco floor {dlo:.2}x / {dmid:.2}x / \
             {dhi:.2}x; disco#info per login {:?} = {hashes_seen} distinct hashes: {}",
            tmid / spread(floors.clone()).1,
            if mid <= 1.5 { "met" } else { "missed" },
            queries_seen[i],
            if exact { "met" } else { "missed" }
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Prints each child's valgrind summary and fails unless each exited cleanly (valgrind exits with
/// [`VALGRIND_ERROR_EXIT`] on a definite or indirect leak, or a memory error).
fn report_leak_check(server: &TestServer, exits: &[(&str, Option<std::process::ExitStatus>)]) {
    let mut failures = Vec::new();
    for (role, status) in exits {
        let path = valgrind_log(server, role);
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        println!("  valgrind, {role} process ({}):", path.display());
        for line in log.lines().filter(|l| {
            [
                "definitely lost:",
                "indirectly lost:",
                "possibly lost:",
                "still reachable:",
                "suppressed:",
                "ERROR SUMMARY:",
            ]
            .iter()
            .any(|k| l.contains(k))
        }) {
            // Drop valgrind's "==pid== " prefix.
            println!("    {}", line.split_once("== ").map_or(line, |(_, l)| l));
        }
        match status.and_then(|s| s.code()) {
            Some(0) => {}
            Some(VALGRIND_ERROR_EXIT) => failures.push(format!("{role}: valgrind found errors")),
            other => failures.push(format!("{role}: exited with {other:?}")),
        }
    }
    if !failures.is_empty() {
        // The log's records are the evidence; print them rather than send the reader digging.
        for (role, _) in exits {
            let log = std::fs::read_to_string(valgrind_log(server, role)).unwrap_or_default();
            println!("---- valgrind log, {role} ----\n{log}");
        }
        panic!("leak check: {failures:?}");
    }
    println!("  leak check: clean (no definite or indirect leak, no memory error)");
}

/// Within 0.5 % of RSS (but at least this) counts as no growth: allocator noise.
const PLATEAU_SLACK_KB: f64 = 256.0;

/// The part of an RSS series that is judged.
struct RssWindow {
    /// First judged sample.
    start: usize,
    /// When the working set stopped growing, if it did before the last quarter of the run.
    plateau: Option<f64>,
}

/// From the working set's plateau to the end: the first sample after which RSS never rises more
/// than the slack above it, if that is before the last quarter of the run; otherwise the last
/// quarter, so that a process still growing at the end is judged on its growth, never on a window
/// chosen to look flat.
fn rss_window(points: &[(f64, f64)], seconds: f64) -> RssWindow {
    let last_quarter = points
        .iter()
        .position(|(x, _)| *x >= seconds * 0.75)
        .unwrap_or(points.len().saturating_sub(1));
    // Running maximum from the end: the highest RSS at or after each sample.
    let mut later_max = vec![0.0f64; points.len()];
    let mut m = 0.0f64;
    for (i, (_, kb)) in points.iter().enumerate().rev() {
        m = m.max(*kb);
        later_max[i] = m;
    }
    let plateau = points
        .iter()
        .enumerate()
        .take(last_quarter)
        .find(|(i, (_, kb))| later_max[*i] - kb <= PLATEAU_SLACK_KB.max(kb * 0.005))
        .map(|(i, _)| i);
    match plateau {
        Some(i) => RssWindow {
            start: i,
            plateau: Some(points[i].0),
        },
        None => RssWindow {
            start: last_quarter.min(points.len().saturating_sub(1)),
            plateau: None,
        },
    }
}

/// The slope of each quarter of the series, KB/min: the shape of a warm-up.
fn quarter_slopes(points: &[(f64, f64)]) -> String {
    let q = points.len() / 4;
    if q < 2 {
        return "too few samples".into();
    }
    (0..4)
        .map(|k| {
            let end = if k == 3 { points.len() } else { (k + 1) * q };
            format!("{:+.0}", slope_kb_per_min(&points[k * q..end]))
        })
        .collect::<Vec<_>>()
        .join(" / ")
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

    // Discovery: a minimal client and fresh controllers, in turn.
    let rounds = env_u64("PMN_SOAK_DISCOVERY_ROUNDS", DISCOVERY_ROUNDS).max(1) as usize;
    let bounds: Vec<usize> = env::var("PMN_SOAK_IN_FLIGHT")
        .ok()
        .map(|v| v.split(',').filter_map(|b| b.trim().parse().ok()).collect())
        .filter(|b: &Vec<usize>| !b.is_empty())
        .unwrap_or_else(|| vec![QueryLimits::default().max_in_flight]);
    if leak_check().is_some() {
        println!("  discovery not measured: the providers run under valgrind");
    } else {
        discovery(&server, n, rounds, &bounds).await;
    }

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
        let window = rss_window(points, seconds as f64);
        let after = &points[window.start..];
        let (first, last) = (
            after.first().map_or(0.0, |p| p.1),
            after.last().map_or(0.0, |p| p.1),
        );
        let peak = after.iter().map(|p| p.1).fold(0.0, f64::max);
        let start_rss = points.first().map_or(0.0, |p| p.1);
        let half = &points[points.len() / 2..];
        println!(
            "  RSS {name:<12} {start_rss:.0} KB at the start of the mix; {}; from {:.0} s: {first:.0} → \
             {last:.0} KB (peak {peak:.0}), slope {:+.1} KB/min over {} samples; last half: slope \
             {:+.1} KB/min; per quarter: {}",
            match window.plateau {
                Some(t) => format!("working set plateau from {t:.0} s"),
                None => "no plateau (growth within the last quarter): last quarter judged".into(),
            },
            after.first().map_or(0.0, |p| p.0),
            slope_kb_per_min(after),
            after.len(),
            slope_kb_per_min(half),
            quarter_slopes(points)
        );
        if let Some(max) = max_growth {
            // Over a window fixed in advance (after the first quarter), never the plateau's, which
            // is flat by construction.
            let fixed: Vec<f64> = points
                .iter()
                .filter(|(x, _)| *x >= seconds as f64 / 4.0)
                .map(|p| p.1)
                .collect();
            let base = fixed.first().copied().unwrap_or(0.0);
            let growth = fixed.iter().copied().fold(0.0, f64::max) - base;
            if growth > max as f64 {
                growth_failures.push(format!(
                    "{name} grew {growth:.0} KB > {max} KB after the first quarter"
                ));
            }
        }
    }
    let exits = [
        ("controllers", controllers.stop().await),
        ("providers", providers.stop().await),
    ];
    if leak_check().is_some() {
        report_leak_check(&server, &exits);
    }
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
    println!(
        "    seeing {N}: {}; the executable is this bench, {} KB on disk",
        rss_parts(controller.pid()),
        std::env::current_exe()
            .and_then(std::fs::metadata)
            .map_or(0, |m| m.len() / 1024)
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
