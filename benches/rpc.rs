//! RPC round trip phone → Prosody → provider → phone against two floors, call by call in the same
//! run, with the controller and the provider in separate processes (as on real devices).
//!
//! - **pmn**: `player.status` through the controller API (XML-RPC encode, iq tracking, provider
//!   authorisation, routing, service call, XML-RPC decode, typed result).
//! - **floor "echo"**: the controller's own session sends an iq as large as the call to a plain
//!   session in the provider's process, which answers at once with a payload as large as the
//!   provider's answer, without RPC decoding or dispatch. Same processes, same Prosody, same bytes:
//!   the ratio pmn / echo is what pmn's protocol layers cost on top of the transport.
//! - **floor "ping"**: an XEP-0199 ping from the controller's session to the provider itself
//!   (answered by its plumbing after the authorisation check): the very same two connections with
//!   the smallest payload.
//!
//! The three are interleaved call by call (the order rotating every call), so a burst of load on
//! this shared machine hits all of them alike. Each run starts a fresh provider process and a fresh
//! controller; the runs are repeated and the spread of the ratios is printed: a ratio that flips
//! between runs is a bug in the bench, not a property of pmn.
//!
//! **Peer baseline, Smack 4.4.8** (benches/smack, built by `cargo xtask bench rpc`, found through
//! `PMN_SMACK_CLASSPATH`): a Smack client and a Smack responder, each its own JVM, doing the same
//! iq round trip (pmn's `player.status` call and answer payloads, byte for byte) through the same
//! Prosody. After the floors, blocks of back-to-back pmn RPCs and blocks of Smack round trips
//! alternate (the order swapping every block); per block are read the client's CPU time (all its
//! threads, /proc/PID/task/*/schedstat), Prosody's write syscalls, bytes and read syscalls
//! (/proc/PID/io `syscw`, `wchar`, `syscr`) and the client process's write syscalls (its eventfd
//! wake-ups of the runtime's driver included). Printed per run and as min / median / max over the
//! runs: the pmn / Smack ratios of median, p99, client CPU per RPC and Prosody's writes and bytes
//! per RPC.
//!
//! With `PMN_BENCH_STRACE=1` (needs `strace`) it then counts Prosody's write syscalls and bytes per
//! call of each path (one path at a time, `strace -f -p <prosody>`).
//!
//! Run: `cargo xtask bench rpc` (or `cargo bench --features test-ca --bench rpc`). Environment:
//! `PMN_BENCH_RUNS` (default 3), `PMN_BENCH_CALLS` per path and run (default 2000),
//! `PMN_BENCH_PROVIDER_THREADS` (the provider process's tokio workers, default 1; the controller
//! has 2).

mod common;

use std::env;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minidom::Element;
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::xmlrpc::{self, MethodCall, MethodResponse};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::core::session::{Inbound, Session};
use pmn_testkit::{TestServer, BENCH, HOME};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ping::Ping;

/// Set to `provider` in the child process.
const ROLE_ENV: &str = "PMN_BENCH_RPC_ROLE";
const PORT_ENV: &str = "PMN_BENCH_RPC_PORT";
const CA_ENV: &str = "PMN_BENCH_RPC_CA";
const RUN_ENV: &str = "PMN_BENCH_RPC_RUN";
const RUNS_ENV: &str = "PMN_BENCH_RUNS";
const CALLS_ENV: &str = "PMN_BENCH_CALLS";
const STRACE_ENV: &str = "PMN_BENCH_STRACE";
const THREADS_ENV: &str = "PMN_BENCH_PROVIDER_THREADS";
/// The controller runtime's worker threads (default 2, as the library's runtime).
const CONTROLLER_THREADS_ENV: &str = "PMN_BENCH_CONTROLLER_THREADS";
/// The Smack peer's Java classpath (its jar and Smack's); unset: no Smack baseline.
const SMACK_CLASSPATH_ENV: &str = "PMN_SMACK_CLASSPATH";
/// Smack round trips before measuring (JIT warm-up).
const SMACK_WARMUP: usize = 2000;
/// pmn and Smack blocks per run (each `calls / BLOCKS` round trips): short, so that a burst of
/// load on this shared machine hits both sides alike.
const BLOCKS: usize = 40;

const DEFAULT_RUNS: usize = 3;
const DEFAULT_CALLS: usize = 2000;
/// Rounds (one call of each path) before measuring.
const WARMUP: usize = 300;
/// Calls per path while Prosody is traced.
const STRACE_CALLS: usize = 300;
const TIMEOUT: Duration = Duration::from_secs(10);

fn env_usize(name: &str, default: usize) -> usize {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// A runtime with `threads` workers (1: current-thread).
fn runtime(threads: usize) -> tokio::runtime::Runtime {
    match threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime"),
        n => multi_thread(n),
    }
}

/// A multi-thread runtime with `workers` workers, even one (as the library's runtime is built).
fn multi_thread(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn main() {
    // The provider's process on one thread by default (PMN_BENCH_PROVIDER_THREADS): the echo
    // floor and the provider then share one scheduler, so neither pays for waking another
    // worker thread that the other path does not.
    if env::var(ROLE_ENV).as_deref() == Ok("provider") {
        runtime(env_usize(THREADS_ENV, 1)).block_on(provider_process());
    } else {
        // The controller as the app has it: a multi-thread runtime (src/ffi/runtime.rs), the
        // calls made from a thread outside it (here the bench's main thread).
        multi_thread(env_usize(CONTROLLER_THREADS_ENV, 2)).block_on(controller_process());
    }
}

// ---- the provider's process ------------------------------------------------------------------

/// The child: a provider with a simulated player and the echo peer of the floor, until stdin closes.
///
/// Protocol on stdio: prints `ECHO <jid>`, reads the echo's answer payload (one line of XML),
/// prints `READY`, then runs until stdin is closed.
async fn provider_process() {
    let port: u16 = env::var(PORT_ENV).expect(PORT_ENV).parse().expect("port");
    let ca = std::fs::read_to_string(env::var(CA_ENV).expect(CA_ENV)).expect("CA file");
    let run = env::var(RUN_ENV).expect(RUN_ENV);
    let config = |device: &str| common::session_config_at(port, ca.clone(), &HOME, device);

    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    let provider = Provider::start(
        ProviderConfig::plain(
            config(&format!("bench-tv-r{run}")),
            format!("Bench TV {run}"),
        ),
        vec![player],
    )
    .await
    .expect("provider");
    let (echo, mut echo_inbound) = Session::connect(config(&format!("bench-echo-r{run}")))
        .await
        .expect("echo peer");
    println!("ECHO {}", echo.jid().expect("echo online"));

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin.next_line().await.expect("stdin").expect("answer");
    let answer = Element::from_str(&line).expect("answer payload");
    let echo_sender = echo.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(item) = echo_inbound.recv().await {
            if let Inbound::Stanza(stanza) = item {
                if let Stanza::Iq(Iq::Set { from, id, .. }) = *stanza {
                    let _ = echo_sender.send(Iq::Result {
                        from: None,
                        to: from,
                        id,
                        payload: Some(answer.clone()),
                    });
                }
            }
        }
    });
    println!("READY");
    while let Ok(Some(_)) = stdin.next_line().await {}
    echo_task.abort();
    echo.close().await;
    provider.stop().await;
}

// ---- the controller's process ----------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Rpc,
    Echo,
    Ping,
}

const PATHS: [Path; 3] = [Path::Rpc, Path::Echo, Path::Ping];

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Rpc => "pmn player.status",
            Path::Echo => "floor: same-size iq echo",
            Path::Ping => "floor: ping to the provider",
        }
    }
}

/// Median and p99 of one path in one run, µs.
#[derive(Clone, Copy)]
struct Figures {
    median: f64,
    p99: f64,
}

fn figures(samples: Vec<Duration>) -> Figures {
    let (median, p99) = common::median_p99(samples);
    Figures { median, p99 }
}

/// One run's connections: the controller, the provider's process, what the floors need.
struct Bench {
    controller: Controller,
    remote: pmn::core::services::player::PlayerClient,
    tv: Jid,
    echo: Jid,
    call_payload: Element,
    answer_payload: Element,
    child: tokio::process::Child,
    child_stdin: tokio::process::ChildStdin,
}

impl Bench {
    async fn start(server: &TestServer, run: usize) -> Bench {
        let mut child = tokio::process::Command::new(env::current_exe().expect("bench binary"))
            .env(ROLE_ENV, "provider")
            .env(PORT_ENV, server.port().to_string())
            .env(CA_ENV, server.ca_path())
            .env(RUN_ENV, run.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("provider process");
        let mut child_stdin = child.stdin.take().expect("stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut expect_line = async |prefix: &str| loop {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("provider process answers")
                .expect("provider stdout")
                .expect("provider process exited");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        };
        let echo: Jid = expect_line("ECHO ").await.parse().expect("echo JID");

        let controller = Controller::connect(ControllerConfig::plain(common::session_config(
            server,
            &HOME,
            &format!("bench-phone-r{run}"),
        )))
        .await
        .expect("controller");
        let name = format!("Bench TV {run}");
        let tv = controller
            .wait_for_provider(|p| p.name == name, Duration::from_secs(20))
            .await
            .expect("discovered")
            .jid;
        let remote = controller.player(tv.clone());
        remote.play("file:///bench.mkv").await.expect("play");

        let call_payload =
            xmlrpc::call_to_query(&MethodCall::new("player.status", vec![])).expect("encodes");
        let status = remote.status().await.expect("status").to_value();
        let answer = xmlrpc::response_to_query(&MethodResponse::Success(status)).expect("encodes");
        let mut line = String::from(&answer);
        assert!(!line.contains('\n'), "the answer payload fits one line");
        line.push('\n');
        child_stdin
            .write_all(line.as_bytes())
            .await
            .expect("to child");
        child_stdin.flush().await.expect("to child");
        expect_line("READY").await;
        Bench {
            controller,
            remote,
            tv: Jid::from(tv),
            echo,
            call_payload,
            answer_payload: answer,
            child,
            child_stdin,
        }
    }

    async fn call(&self, path: Path) -> Duration {
        let session = self.controller.session();
        let t = Instant::now();
        match path {
            Path::Rpc => {
                self.remote.status().await.expect("status");
            }
            Path::Echo => {
                let iq = Iq::Set {
                    from: None,
                    to: Some(self.echo.clone()),
                    id: String::new(),
                    payload: self.call_payload.clone(),
                };
                session.request(iq, TIMEOUT).await.expect("echo");
            }
            Path::Ping => {
                let iq = Iq::from_get(String::new(), Ping).with_to(self.tv.clone());
                session.request(iq, TIMEOUT).await.expect("ping");
            }
        }
        t.elapsed()
    }

    async fn stop(mut self) {
        self.controller.close().await;
        drop(self.child_stdin); // the child stops its sessions and exits
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// One run: warm-up, then `calls` rounds of one call per path, the order rotating every round.
async fn measure(bench: &Bench, calls: usize) -> [Figures; 3] {
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..WARMUP + calls {
        for k in 0..PATHS.len() {
            let i = (round + k) % PATHS.len();
            let d = bench.call(PATHS[i]).await;
            if round >= WARMUP {
                samples[i].push(d);
            }
        }
    }
    samples.map(figures)
}

/// Prosody's write syscalls and bytes per call of each path (`strace` attached to its pid while
/// [`STRACE_CALLS`] calls of one path run).
async fn count_writes(bench: &Bench, server: &TestServer) -> Option<Vec<(Path, f64, f64)>> {
    let pid = std::fs::read_to_string(server.dir().join("prosody.pid")).ok()?;
    let pid = pid.trim().to_string();
    let mut out = Vec::new();
    for path in PATHS {
        let log = server.dir().join("bench-strace.txt");
        let mut strace = std::process::Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=write,writev,sendto,sendmsg",
                "-e",
                "signal=none",
            ])
            .arg("-o")
            .arg(&log)
            .args(["-p", &pid])
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        tokio::time::sleep(Duration::from_millis(500)).await; // attached
        for _ in 0..STRACE_CALLS {
            bench.call(path).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await; // the last writes
        let _ = std::process::Command::new("kill")
            .args(["-INT", &strace.id().to_string()])
            .status();
        let _ = strace.wait();
        let text = std::fs::read_to_string(&log).ok()?;
        let (mut calls, mut bytes) = (0u64, 0u64);
        for line in text.lines() {
            if let Some((_, result)) = line.rsplit_once(") = ") {
                if let Ok(n) = result
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .parse::<u64>()
                {
                    calls += 1;
                    bytes += n;
                }
            }
        }
        let n = STRACE_CALLS as f64;
        out.push((path, calls as f64 / n, bytes as f64 / n));
    }
    Some(out)
}

// ---- the Smack peer pair ---------------------------------------------------------------------

/// CPU time of every thread of process `pid` so far, ns (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The syscall counters of a process so far (`/proc/PID/io`) that the Smack comparison reads.
#[derive(Default, Clone, Copy)]
struct ProcIo {
    syscr: u64,
    syscw: u64,
    wchar: u64,
}

fn proc_io(pid: u32) -> ProcIo {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    ProcIo {
        syscr: field("syscr:"),
        syscw: field("syscw:"),
        wchar: field("wchar:"),
    }
}

fn prosody_pid(server: &TestServer) -> u32 {
    std::fs::read_to_string(server.dir().join("prosody.pid"))
        .expect("prosody.pid")
        .trim()
        .parse()
        .expect("prosody pid")
}

/// One side's figures over all blocks of a run.
#[derive(Default, Clone)]
struct Side {
    samples: Vec<Duration>,
    client_cpu_ns: u64,
    peer_cpu_ns: u64,
    prosody_writes: u64,
    prosody_bytes: u64,
    /// Prosody's read syscalls: every write of a client costs the server one (or more).
    prosody_reads: u64,
    /// The client process's own write syscalls (XEP-0198 answers included).
    client_writes: u64,
}

impl Side {
    fn per_call(&self, v: u64) -> f64 {
        v as f64 / self.samples.len().max(1) as f64
    }
}

/// Counters read around one block.
struct Meter {
    client: u32,
    peer: u32,
    prosody: u32,
    at: (u64, u64, ProcIo, ProcIo),
}

impl Meter {
    fn start(client: u32, peer: u32, prosody: u32) -> Meter {
        Meter {
            client,
            peer,
            prosody,
            at: (
                cpu_ns(client),
                cpu_ns(peer),
                proc_io(prosody),
                proc_io(client),
            ),
        }
    }

    fn stop(self, side: &mut Side) {
        let (server, client) = (proc_io(self.prosody), proc_io(self.client));
        side.client_cpu_ns += cpu_ns(self.client).saturating_sub(self.at.0);
        side.peer_cpu_ns += cpu_ns(self.peer).saturating_sub(self.at.1);
        side.prosody_writes += server.syscw.saturating_sub(self.at.2.syscw);
        side.prosody_bytes += server.wchar.saturating_sub(self.at.2.wchar);
        side.prosody_reads += server.syscr.saturating_sub(self.at.2.syscr);
        side.client_writes += client.syscw.saturating_sub(self.at.3.syscw);
    }
}

/// The Smack client and responder JVMs of one run.
struct Smack {
    client: tokio::process::Child,
    client_stdin: tokio::process::ChildStdin,
    client_lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    responder: tokio::process::Child,
    responder_stdin: tokio::process::ChildStdin,
}

impl Smack {
    /// Starts the pair (their payloads are pmn's, `call` and `answer`) and warms the JIT.
    async fn start(
        classpath: &str,
        server: &TestServer,
        run: usize,
        call: &Element,
        answer: &Element,
    ) -> Smack {
        let dir = server.dir();
        let (call_file, answer_file) = (dir.join("smack-call.xml"), dir.join("smack-answer.xml"));
        std::fs::write(&call_file, String::from(call)).expect("call payload");
        std::fs::write(&answer_file, String::from(answer)).expect("answer payload");
        let java = |role: &str, resource: &str, payload: &std::path::Path| {
            let mut cmd = tokio::process::Command::new("java");
            cmd.args(["-cp", classpath, "pmn.bench.SmackPeer", role])
                .arg(server.port().to_string())
                .arg(server.ca_path())
                // An account of its own, so that neither pair sees the other's presence and
                // disco#info queries.
                .args([BENCH.jid, BENCH.password])
                .arg(format!("{resource}-r{run}-{}", std::process::id()))
                .arg(payload)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true);
            cmd
        };
        let mut responder = java("responder", "bench-smack-responder", &answer_file)
            .spawn()
            .expect("java (Smack responder)");
        let responder_stdin = responder.stdin.take().expect("stdin");
        let mut lines = BufReader::new(responder.stdout.take().expect("stdout")).lines();
        let jid = expect_prefix(&mut lines, "JID ").await;
        let mut client = java("client", "bench-smack-client", &call_file)
            .arg(jid)
            .spawn()
            .expect("java (Smack client)");
        let client_stdin = client.stdin.take().expect("stdin");
        let client_lines = BufReader::new(client.stdout.take().expect("stdout")).lines();
        let mut smack = Smack {
            client,
            client_stdin,
            client_lines,
            responder,
            responder_stdin,
        };
        expect_prefix(&mut smack.client_lines, "READY").await;
        smack.calls(SMACK_WARMUP).await;
        smack
    }

    /// `n` round trips, back to back, as timed by the Smack client.
    async fn calls(&mut self, n: usize) -> Vec<Duration> {
        self.client_stdin
            .write_all(format!("CALLS {n}\n").as_bytes())
            .await
            .expect("to the Smack client");
        self.client_stdin
            .flush()
            .await
            .expect("to the Smack client");
        let line = expect_prefix(&mut self.client_lines, "NS").await;
        let samples: Vec<Duration> = line
            .split_whitespace()
            .map(|t| Duration::from_nanos(t.parse().expect("ns")))
            .collect();
        assert_eq!(samples.len(), n, "Smack client answered every call");
        samples
    }

    async fn stop(mut self) {
        drop(self.client_stdin);
        drop(self.responder_stdin);
        for child in [&mut self.client, &mut self.responder] {
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
    }
}

async fn expect_prefix<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    prefix: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("peer process answers")
            .expect("peer stdout")
            .expect("peer process exited");
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
}

/// Blocks of back-to-back pmn RPCs and Smack round trips, alternating: (pmn, Smack).
async fn versus_smack(
    bench: &Bench,
    smack: &mut Smack,
    prosody: u32,
    calls: usize,
) -> (Side, Side) {
    let (mut pmn, mut peer) = (Side::default(), Side::default());
    let per_block = calls.div_ceil(BLOCKS);
    let me = std::process::id();
    let provider = bench.child.id().unwrap_or(0);
    let (smack_client, smack_responder) = (
        smack.client.id().unwrap_or(0),
        smack.responder.id().unwrap_or(0),
    );
    for block in 0..BLOCKS {
        for turn in 0..2 {
            if (block + turn) % 2 == 0 {
                let meter = Meter::start(me, provider, prosody);
                for _ in 0..per_block {
                    let t = Instant::now();
                    bench.remote.status().await.expect("status");
                    pmn.samples.push(t.elapsed());
                }
                meter.stop(&mut pmn);
            } else {
                let meter = Meter::start(smack_client, smack_responder, prosody);
                let samples = smack.calls(per_block).await;
                meter.stop(&mut peer);
                peer.samples.extend(samples);
            }
        }
    }
    (pmn, peer)
}

/// min / median / max of `values`.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
    )
}

async fn controller_process() {
    let runs = env_usize(RUNS_ENV, DEFAULT_RUNS);
    let calls = env_usize(CALLS_ENV, DEFAULT_CALLS);
    let server = TestServer::start().expect("prosody");
    println!(
        "rpc round trip through Prosody, controller and provider in separate processes: {runs} \
         runs × {calls} calls per path after {WARMUP} warm-up rounds, interleaved call by call (µs)"
    );
    let mut ratio_echo = (Vec::new(), Vec::new());
    let mut ratio_ping = (Vec::new(), Vec::new());
    let classpath = env::var(SMACK_CLASSPATH_ENV).ok().filter(|c| !c.is_empty());
    let prosody = prosody_pid(&server);
    // pmn / Smack per run: median, p99, client CPU, Prosody writes, Prosody bytes.
    let mut vs_smack: [Vec<f64>; 5] = Default::default();
    for run in 1..=runs {
        let bench = Bench::start(&server, run).await;
        let mut smack = match &classpath {
            Some(cp) => Some(
                Smack::start(cp, &server, run, &bench.call_payload, &bench.answer_payload).await,
            ),
            None => None,
        };
        let [rpc, echo, ping] = measure(&bench, calls).await;
        println!("run {run}/{runs}");
        for (path, f) in PATHS.iter().zip([rpc, echo, ping]) {
            println!(
                "  {:<30} median {:8.1}  p99 {:8.1}",
                path.name(),
                f.median,
                f.p99
            );
        }
        let (em, ep) = (rpc.median / echo.median, rpc.p99 / echo.p99);
        let (pm, pp) = (rpc.median / ping.median, rpc.p99 / ping.p99);
        println!("  ratio pmn / echo floor         median {em:8.2}x p99 {ep:8.2}x");
        println!("  ratio pmn / ping floor         median {pm:8.2}x p99 {pp:8.2}x");
        ratio_echo.0.push(em);
        ratio_echo.1.push(ep);
        ratio_ping.0.push(pm);
        ratio_ping.1.push(pp);
        if run == runs && env::var(STRACE_ENV).as_deref() == Ok("1") {
            match count_writes(&bench, &server).await {
                Some(rows) => {
                    println!("Prosody's writes per call ({STRACE_CALLS} calls per path, strace)");
                    for (path, writes, bytes) in rows {
                        println!(
                            "  {:<30} {writes:6.2} write syscalls  {bytes:8.1} bytes",
                            path.name()
                        );
                    }
                }
                None => println!("Prosody's writes per call: strace not available"),
            }
        }
        if let Some(mut pair) = smack.take() {
            let (pmn, peer) = versus_smack(&bench, &mut pair, prosody, calls).await;
            pair.stop().await;
            let n = pmn.samples.len();
            let (p, q) = (figures(pmn.samples.clone()), figures(peer.samples.clone()));
            println!(
                "  vs Smack 4.4.8 pair, {BLOCKS} alternating blocks, {n} round trips each side"
            );
            println!(
                "  {:<10} {:>9} {:>9} {:>13} {:>13} {:>9} {:>9} {:>9} {:>9}",
                "",
                "median",
                "p99",
                "client CPU",
                "peer CPU",
                "writes",
                "bytes",
                "reads",
                "cl.writes"
            );
            for (name, side, f) in [("pmn", &pmn, p), ("Smack", &peer, q)] {
                println!(
                    "  {name:<10} {:9.1} {:9.1} {:10.1} µs {:10.1} µs {:9.2} {:9.1} {:9.2} {:9.2}",
                    f.median,
                    f.p99,
                    side.per_call(side.client_cpu_ns) / 1e3,
                    side.per_call(side.peer_cpu_ns) / 1e3,
                    side.per_call(side.prosody_writes),
                    side.per_call(side.prosody_bytes),
                    side.per_call(side.prosody_reads),
                    side.per_call(side.client_writes),
                );
            }
            let ratios = [
                p.median / q.median,
                p.p99 / q.p99,
                pmn.per_call(pmn.client_cpu_ns) / peer.per_call(peer.client_cpu_ns),
                pmn.per_call(pmn.prosody_writes) / peer.per_call(peer.prosody_writes),
                pmn.per_call(pmn.prosody_bytes) / peer.per_call(peer.prosody_bytes),
            ];
            println!(
                "  ratio pmn / Smack            median {:5.2}x p99 {:5.2}x client CPU {:5.2}x \
                 Prosody writes {:5.2}x bytes {:5.2}x",
                ratios[0], ratios[1], ratios[2], ratios[3], ratios[4]
            );
            for (all, r) in vs_smack.iter_mut().zip(ratios) {
                all.push(r);
            }
        }
        bench.stop().await;
    }
    if classpath.is_none() {
        println!(
            "Smack baseline skipped: {SMACK_CLASSPATH_ENV} is unset (`cargo xtask bench rpc` \
             builds benches/smack and sets it)"
        );
    }
    println!("spread over {runs} runs (min / median / max, max÷min)");
    for (name, values) in [
        ("pmn / echo floor, median", ratio_echo.0),
        ("pmn / echo floor, p99", ratio_echo.1),
        ("pmn / ping floor, median", ratio_ping.0),
        ("pmn / ping floor, p99", ratio_ping.1),
    ] {
        let (lo, mid, hi) = spread(values);
        println!(
            "  {name:<26} {lo:6.2}x {mid:6.2}x {hi:6.2}x   ({:.2}×)",
            hi / lo
        );
    }
    if classpath.is_some() {
        // The goals of issue 16, each against the Smack pair of the same run.
        let goals = [
            ("pmn / Smack, median", 0.85),
            ("pmn / Smack, p99", 0.3),
            ("pmn / Smack, client CPU", 0.25),
            ("pmn / Smack, Prosody writes", 1.0),
            ("pmn / Smack, Prosody bytes", 1.0),
        ];
        for ((name, goal), values) in goals.into_iter().zip(vs_smack) {
            let (lo, mid, hi) = spread(values);
            let verdict = if hi <= goal {
                "met"
            } else if mid <= goal {
                "met at the median run"
            } else {
                "missed"
            };
            println!(
                "  {name:<26} {lo:6.2}x {mid:6.2}x {hi:6.2}x   ({:.2}×)  goal ≤ {goal:.2}x: {verdict}",
                hi / lo
            );
        }
    }
}
