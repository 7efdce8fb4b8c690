//! The field harness's plumbing: network namespaces, veth pairs, NAT, a Prosody inside a
//! namespace, device threads inside a namespace, and packet loss through NFQUEUE.
//!
//! Everything is created inside namespaces this process owns: veth pairs are made with both ends
//! already in their namespaces (`ip link add … netns A type veth peer … netns B`), addresses come
//! from 10.77.0.0/16 only, iptables rules live in the router namespace. The root namespace's
//! interfaces, addresses, routes and rules are never touched, and deleting a namespace removes
//! its veths and rules with it. Names are `pmnf<pid>n<counter><role>`, so concurrent runs never
//! meet; a run that was killed (no Drop) leaves namespaces whose pid is dead, which the next run
//! deletes ([`sweep_stale`]).

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The prefix of every namespace this harness creates.
const PREFIX: &str = "pmnf";
/// The prefix of the field Prosody directories (in the temp directory).
const TMP_PREFIX: &str = "pmn-field-prosody-";

/// Prints a skip notice where the test runner shows it even while it captures output (the
/// capture only intercepts `print!`/`eprint!`), so a skip is never mistaken for a pass.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(io::stderr(), "SKIPPED field::{test}: {why}");
}

/// Why this machine cannot run the field harness, if it cannot: the checks are cheap and run
/// before anything is created.
pub fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, veth, iptables)".into());
    }
    for (tool, arg) in [("ip", "-V"), ("iptables", "-V")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    if let Err(e) = pmn_testkit::install() {
        return Some(format!("no prosody: {e}"));
    }
    None
}

/// Why this machine cannot federate two Prosody servers, if it cannot: Prosody resolves the
/// peer's name through lua-unbound (Debian's `lua-unbound`).
pub fn missing_s2s_prerequisite() -> Option<String> {
    let ok = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "lua-unbound"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    if ok {
        None
    } else {
        Some("no s2s: Debian's lua-unbound is not installed".into())
    }
}

/// Runs a command; its failure is an error carrying its stderr.
pub fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// `ip ARGS…`.
pub fn ip(args: &[&str]) -> io::Result<String> {
    run(Command::new("ip").args(args))
}

/// Deletes namespaces and Prosody directories left by earlier runs of this harness that died
/// without cleaning up (their pid is gone). Those of live processes, and anything not named by
/// this harness, are left alone.
pub fn sweep_stale() {
    let dead = |pid: u32| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(entries) = fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix(TMP_PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(dead) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('n').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if dead(pid) {
            Netns::remove(name);
        }
    }
}

/// One network namespace; dropping it kills what runs inside, deletes it (and so its veths and
/// iptables rules) and its `/etc/netns/NAME` directory.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    fn create(name: String) -> io::Result<Netns> {
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip netns exec NAME ARGS…`.
    pub fn exec(&self, args: &[&str]) -> io::Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args))
    }

    /// A `Command` that runs `program` inside this namespace (through `ip netns exec`, which
    /// also bind-mounts `/etc/netns/NAME/*` over `/etc`) and is killed if the thread that spawned
    /// it dies without reaping it (the test panicked and a guard could not run).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        ns_command(&self.name, program)
    }

    /// Writes `/etc/netns/NAME/FILE`, which processes started by [`Netns::command`] see as
    /// `/etc/FILE` (the root namespace's `/etc` is untouched).
    pub fn etc_file(&self, file: &str, text: &str) -> io::Result<()> {
        let dir = Path::new("/etc/netns").join(&self.name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(file), text)
    }

    fn remove(name: &str) {
        // Only processes inside this namespace: ours (prosody, the loss shaper).
        if let Ok(pids) = ip(&["netns", "pids", name]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: plain kill(2) of a pid listed as living in our namespace.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = ip(&["netns", "del", name]);
        let _ = fs::remove_dir_all(Path::new("/etc/netns").join(name));
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Netns::remove(&self.name);
    }
}

/// See [`Netns::command`].
pub fn ns_command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

/// Addresses of the topology (all in 10.77.0.0/16).
pub const SERVER_IP: &str = "10.77.1.1";
/// A second server address in the server namespace, for the federated peer.
pub const FRIEND_SERVER_IP: &str = "10.77.1.10";
const ROUTER_SERVER_SIDE: &str = "10.77.1.2";
const ROUTER_HOME_SIDE: &str = "10.77.2.1";
/// The TV's first address at home.
pub const HOME_IP: &str = "10.77.2.2";
/// The TV's address after the home router gave it a new one.
pub const HOME_IP_2: &str = "10.77.2.3";
/// The TV's interface in the home namespace.
pub const HOME_DEV: &str = "h0";
const ROUTER_MOBILE_SIDE: &str = "10.77.3.1";
/// The phone's first address on the mobile network.
pub const MOBILE_IP: &str = "10.77.3.2";
/// The phone's address after the network change.
pub const MOBILE_IP_2: &str = "10.77.3.3";
/// The phone's interface in the mobile namespace.
pub const MOBILE_DEV: &str = "m0";

/// The field: a server namespace, a router doing NAT, a home behind it and a mobile network.
///
/// ```text
///   server (10.77.1.1 [, 10.77.1.10])
///      │ s0 ── rs 10.77.1.2
///   router ── rh 10.77.2.1 ── h0 10.77.2.2   home (the TV, the owner's phone)
///      │ rm 10.77.3.1 ── m0 10.77.3.2 → .3   mobile (the phone that moves)
/// ```
///
/// The router masquerades everything it forwards towards the server, and the server has no
/// route back to 10.77.2.0/24 or 10.77.3.0/24: a device reaches it only through the NAT.
/// Dropped in reverse order of creation (fields are dropped in declaration order).
pub struct Topology {
    pub mobile: Netns,
    pub home: Netns,
    pub router: Netns,
    pub server: Netns,
}

impl Topology {
    /// Creates the four namespaces, the three veth pairs, addresses, routes and the NAT.
    pub fn new() -> io::Result<Topology> {
        static N: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let base = format!(
            "{PREFIX}{}n{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // Each namespace is owned as soon as it exists, so a failure half-way cleans up.
        let server = Netns::create(format!("{base}s"))?;
        let router = Netns::create(format!("{base}r"))?;
        let home = Netns::create(format!("{base}h"))?;
        let mobile = Netns::create(format!("{base}m"))?;
        let topo = Topology {
            mobile,
            home,
            router,
            server,
        };
        for (ns, dev, peer) in [
            (&topo.server, "s0", "rs"),
            (&topo.home, "h0", "rh"),
            (&topo.mobile, MOBILE_DEV, "rm"),
        ] {
            ip(&[
                "link",
                "add",
                dev,
                "netns",
                &ns.name,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                &topo.router.name,
            ])?;
        }
        let (s, r, h, m) = (
            topo.server.name.as_str(),
            topo.router.name.as_str(),
            topo.home.name.as_str(),
            topo.mobile.name.as_str(),
        );
        let cidr = |a: &str| format!("{a}/24");
        let steps: Vec<(&str, Vec<String>)> = vec![
            (
                s,
                vec![
                    "addr".into(),
                    "add".into(),
                    cidr(SERVER_IP),
                    "dev".into(),
                    "s0".into(),
                ],
            ),
            (
                r,
                vec![
                    "addr".into(),
                    "add".into(),
                    cidr(ROUTER_SERVER_SIDE),
                    "dev".into(),
                    "rs".into(),
                ],
            ),
            (
                r,
                vec![
                    "addr".into(),
                    "add".into(),
                    cidr(ROUTER_HOME_SIDE),
                    "dev".into(),
                    "rh".into(),
                ],
            ),
            (
                r,
                vec![
                    "addr".into(),
                    "add".into(),
                    cidr(ROUTER_MOBILE_SIDE),
                    "dev".into(),
                    "rm".into(),
                ],
            ),
            (
                h,
                vec![
                    "addr".into(),
                    "add".into(),
                    cidr(HOME_IP),
                    "dev".into(),
                    "h0".into(),
                ],
            ),
            (
                m,
                vec![
                    "addr".into(),
                    "add".into(),
                    cidr(MOBILE_IP),
                    "dev".into(),
                    MOBILE_DEV.into(),
                ],
            ),
        ];
        for (ns, args) in &steps {
            let mut full = vec!["-n", ns];
            full.extend(args.iter().map(String::as_str));
            ip(&full)?;
        }
        for (ns, dev) in [
            (s, "s0"),
            (r, "rs"),
            (r, "rh"),
            (r, "rm"),
            (h, "h0"),
            (m, MOBILE_DEV),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        ip(&["-n", h, "route", "add", "default", "via", ROUTER_HOME_SIDE])?;
        ip(&[
            "-n",
            m,
            "route",
            "add",
            "default",
            "via",
            ROUTER_MOBILE_SIDE,
        ])?;
        topo.router
            .exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
        topo.router.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "rs",
            "-j",
            "MASQUERADE",
        ])?;
        Ok(topo)
    }

    /// Adds the federated peer's address to the server namespace.
    pub fn add_friend_server_address(&self) -> io::Result<()> {
        ip(&[
            "-n",
            &self.server.name,
            "addr",
            "add",
            &format!("{FRIEND_SERVER_IP}/24"),
            "dev",
            "s0",
        ])
        .map(drop)
    }

    /// The phone moves: its address changes from `from` to `to`, as a handover between cells
    /// (or Wi-Fi to mobile) gives a new one. Deleting the address also removes the default
    /// route; it is put back through the new address.
    pub fn change_mobile_address(&self, from: &str, to: &str) -> io::Result<()> {
        change_address(&self.mobile, MOBILE_DEV, from, to, ROUTER_MOBILE_SIDE)
    }

    /// The TV's address at home changes from `from` to `to` (the home router's DHCP gave it a
    /// new lease): the NAT's mapping of its connection points at an address that is gone.
    pub fn change_home_address(&self, from: &str, to: &str) -> io::Result<()> {
        change_address(&self.home, HOME_DEV, from, to, ROUTER_HOME_SIDE)
    }

    /// Takes the phone's link down (a tunnel, a lift) or brings it back up with its route.
    pub fn set_mobile_link(&self, up: bool) -> io::Result<()> {
        let ns = self.mobile.name.as_str();
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            MOBILE_DEV,
            if up { "up" } else { "down" },
        ])?;
        if up {
            ip(&[
                "-n",
                ns,
                "route",
                "replace",
                "default",
                "via",
                ROUTER_MOBILE_SIDE,
            ])?;
        }
        Ok(())
    }
}

/// Replaces address `from` with `to` on `dev` in `ns` and puts the default route (which went
/// with the old address) back via `gateway`.
fn change_address(ns: &Netns, dev: &str, from: &str, to: &str, gateway: &str) -> io::Result<()> {
    let ns = ns.name.as_str();
    ip(&["-n", ns, "addr", "del", &format!("{from}/24"), "dev", dev])?;
    ip(&["-n", ns, "addr", "add", &format!("{to}/24"), "dev", dev])?;
    ip(&["-n", ns, "route", "replace", "default", "via", gateway]).map(drop)
}

/// A thread inside a network namespace running a current-thread tokio runtime: every socket a
/// task on it opens belongs to that namespace (a socket takes the namespace of the thread that
/// creates it; threads it spawns, like the blocking pool, inherit the namespace).
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl NsRuntime {
    pub fn start(ns: &Netns) -> io::Result<NsRuntime> {
        let path = PathBuf::from("/run/netns").join(&ns.name);
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("ns-{}", ns.name))
            .spawn(move || {
                let joined = fs::File::open(&path).and_then(|f| {
                    // SAFETY: setns on a valid namespace fd; affects only this thread.
                    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
                let rt = joined.and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                });
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let handle = rx
            .recv()
            .map_err(|_| io::Error::other("namespace thread died"))??;
        Ok(NsRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` on the namespace's runtime and waits for its result (from any runtime).
    pub async fn run<F, T>(&self, f: F) -> T
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        match self.handle.spawn(f).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("namespace task cancelled: {e}"),
        }
    }

    /// Starts `f` on the namespace's runtime without waiting.
    pub fn spawn<F, T>(&self, f: F) -> tokio::task::JoinHandle<T>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.handle.spawn(f)
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One Prosody inside a namespace, on one address, its own directory.
pub struct NsProsody {
    ns_name: String,
    dir: tempfile::TempDir,
    ip: String,
    child: Option<Child>,
    pub ca_pem: String,
    pub ca_path: PathBuf,
}

/// How long Prosody keeps a session whose connection was lost, unless a test says otherwise:
/// long enough that a phone whose link was cut for 10 s still resumes it.
pub const DEFAULT_HIBERNATION: Duration = Duration::from_secs(60);

/// The c2s port of every field Prosody (each has its own address, so no clash).
pub const C2S_PORT: u16 = 5222;

impl NsProsody {
    /// Starts Prosody in `ns` on `ip` serving `hosts`, with `accounts` (`user`, `host`,
    /// `password`) registered; `s2s` opens port 5269 with certificate-authenticated federation.
    pub fn start(
        ns: &Netns,
        ip: &str,
        hosts: &[&str],
        accounts: &[(&str, &str, &str)],
        s2s: bool,
    ) -> io::Result<NsProsody> {
        Self::start_with(ns, ip, hosts, accounts, s2s, DEFAULT_HIBERNATION)
    }

    /// [`NsProsody::start`] with XEP-0198 sessions kept for `hibernation` after their
    /// connection is lost (Prosody's `smacks_hibernation_time`; whole seconds).
    pub fn start_with(
        ns: &Netns,
        ip: &str,
        hosts: &[&str],
        accounts: &[(&str, &str, &str)],
        s2s: bool,
        hibernation: Duration,
    ) -> io::Result<NsProsody> {
        let dir = tempfile::Builder::new()
            .prefix("pmn-field-prosody-")
            .tempdir()?;
        run(Command::new("bash")
            .arg(pmn_testkit::ServerKind::Prosody.script())
            .arg("certs")
            .arg(dir.path()))?;
        fs::create_dir_all(dir.path().join("data"))?;
        fs::create_dir_all(dir.path().join("certs"))?;
        let config = config(dir.path(), ip, hosts, s2s, hibernation);
        let cfg = dir.path().join("prosody.cfg.lua");
        fs::write(&cfg, config)?;
        for (user, host, password) in accounts {
            run(Command::new("prosodyctl")
                .arg("--config")
                .arg(&cfg)
                .args(["register", user, host, password]))?;
        }
        let ca_path = dir.path().join("ca.pem");
        let ca_pem = fs::read_to_string(&ca_path)?;
        let mut server = NsProsody {
            ns_name: ns.name.clone(),
            dir,
            ip: ip.to_owned(),
            child: None,
            ca_pem,
            ca_path,
        };
        server.launch()?;
        Ok(server)
    }

    /// `ip:5222`.
    pub fn addr(&self) -> (String, u16) {
        (self.ip.clone(), C2S_PORT)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    fn launch(&mut self) -> io::Result<()> {
        let log = self.log_path();
        let seen = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let child = ns_command(&self.ns_name, "prosody")
            .arg("-F")
            .arg("--config")
            .arg(self.dir.path().join("prosody.cfg.lua"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let ready = format!("Activated service 'c2s' on [{}]:{C2S_PORT}", self.ip);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(io::Error::other(format!(
                        "prosody in {} exited at startup ({status}): {}",
                        self.ns_name,
                        self.log_tail()
                    )));
                }
            }
            let text = fs::read(&log).unwrap_or_default();
            let fresh = String::from_utf8_lossy(text.get(seen as usize..).unwrap_or_default());
            if fresh.contains(&ready) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "prosody in {} not ready in 15 s: {}",
                    self.ns_name,
                    self.log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of the log and error log, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for f in ["prosody.err", "prosody.log"] {
            if let Ok(text) = fs::read_to_string(self.dir.path().join(f)) {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(15);
                out.push_str(&format!("\n--- {f} ---\n{}", lines[from..].join("\n")));
            }
        }
        out
    }

    /// The whole info log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// kill -9: no stream-management record survives.
    pub fn crash(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts it again with the same data; returns once c2s listens.
    pub fn restart(&mut self) -> io::Result<()> {
        self.crash()?;
        self.launch()
    }

    /// SIGTERM, as an upgrade or `systemctl restart` does: Prosody closes every stream (no
    /// session survives for resumption) and exits; SIGKILL after 10 s.
    pub fn stop_gracefully(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) of our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    c.kill()?;
                    c.wait()?;
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Starts it again after [`NsProsody::stop_gracefully`] or [`NsProsody::crash`].
    pub fn start_again(&mut self) -> io::Result<()> {
        self.launch()
    }

    /// The server's administrator closes the sessions of `jid` (a full JID, or every session of
    /// a bare one) through the admin shell: `c2s:close`. Returns the shell's answer
    /// ("Total: N sessions closed").
    pub fn close_sessions(&self, jid: &str) -> io::Result<String> {
        run(Command::new("prosodyctl")
            .arg("--config")
            .arg(self.dir.path().join("prosody.cfg.lua"))
            .args(["shell", "c2s", "close", jid]))
        .map(|out| out.trim().to_owned())
    }
}

impl Drop for NsProsody {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM first so it flushes nothing we need; SIGKILL after a bound.
            // SAFETY: kill(2) of our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn config(dir: &Path, ip: &str, hosts: &[&str], s2s: bool, hibernation: Duration) -> String {
    let d = dir.display();
    let mut cfg = format!(
        r#"-- Generated by tests/field/net.rs: one Prosody inside a test network namespace.
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
admin_socket = "{d}/prosody.sock"
log = {{ info = "{d}/prosody.log"; error = "{d}/prosody.err"; }}
certificates = "{d}/certs"
interfaces = {{ "{ip}" }}
local_interfaces = {{ "{ip}" }}
c2s_ports = {{ {C2S_PORT} }}
c2s_direct_tls_ports = {{}}
legacy_ssl_ports = {{}}
s2s_ports = {{ {s2s_port} }}
http_ports = {{}}
https_ports = {{}}
-- Mandatory: without it every hop stalls on Nagle + delayed ACK.
network_settings = {{ nagle = false }}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
allow_registration = false
modules_enabled = {{
	"roster"; "saslauth"; "tls"; "disco"; "presence"; "ping"; "pep"; "smacks";
	"csi_simple"; "posix"; "admin_shell"; {dialback}
}}
pep_max_items = 10000
-- How long a session whose connection was lost stays resumable (XEP-0198).
smacks_hibernation_time = {hibernation}
"#,
        hibernation = hibernation.as_secs(),
        s2s_port = if s2s { "5269" } else { "" },
        dialback = if s2s { "\"dialback\";" } else { "" },
    );
    if s2s {
        // Federation authenticated by certificate (the test CA), names from the namespace's
        // /etc/hosts (lua-unbound reads it only when told), no DNS leaving the machine.
        cfg.push_str(&format!(
            r#"s2s_secure_auth = true
s2s_require_encryption = true
ssl = {{ cafile = "{d}/ca.pem"; }}
unbound = {{ hoststxt = "/etc/hosts"; resolvconf = "/etc/resolv.conf" }}
"#
        ));
    }
    for host in hosts {
        cfg.push_str(&format!(
            "VirtualHost \"{host}\"\n\tssl = {{ certificate = \"{d}/server.crt\"; key = \"{d}/server.key\"; }}\n"
        ));
    }
    cfg
}

/// Packet loss and delay in the router: an iptables NFQUEUE rule on everything it forwards and a
/// Python shaper on PyPI's `netfilterqueue` (this kernel has no sch_netem) that drops each packet
/// with the given probability and holds each one it keeps for the given delay (the same for
/// every packet, so nothing is reordered). Every packet crosses the router once per direction, so
/// the delay is added each way. Dropping it stops the shaper (and `--queue-bypass` lets packets
/// through again at once); the rule goes with the namespace.
pub struct Loss {
    child: Option<Child>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

/// The Python that has `netfilterqueue`: `$PMN_FIELD_PYTHON`, else the venv that
/// `cargo xtask test` / `cargo xtask field` make (target/field-venv); `None` when neither works.
pub fn loss_python() -> Result<PathBuf, String> {
    let works = |python: &Path| {
        Command::new(python)
            .args(["-c", "import netfilterqueue"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(p) = std::env::var_os("PMN_FIELD_PYTHON").filter(|p| !p.is_empty()) {
        // Named explicitly (as `cargo xtask test` does): a broken one is a failure, not a skip.
        let p = PathBuf::from(p);
        assert!(
            works(&p),
            "PMN_FIELD_PYTHON={} cannot import netfilterqueue",
            p.display()
        );
        return Ok(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/field-venv/bin/python");
    if works(&venv) {
        Ok(venv)
    } else {
        Err(format!(
            "no Python with netfilterqueue (set PMN_FIELD_PYTHON, or run `cargo xtask field`, \
             which installs it into {})",
            venv.display()
        ))
    }
}

impl Loss {
    pub fn start(
        router: &Netns,
        python: &Path,
        rate: f64,
        delay: Duration,
        queue: u16,
    ) -> io::Result<Loss> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/field/loss.py");
        let mut child = router
            .command(python)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(script)
            .args(["--queue", &queue.to_string(), "--loss", &rate.to_string()])
            .args(["--delay-ms", &delay.as_millis().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let loss = Loss {
            child: Some(child),
            stdout: Some(stdout),
        };
        if line.trim() != "READY" {
            return Err(io::Error::other(format!("loss shaper said {line:?}")));
        }
        // Bound to the queue: now send the forwarded traffic through it.
        router.exec(&[
            "iptables",
            "-A",
            "FORWARD",
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue.to_string(),
            "--queue-bypass",
        ])?;
        Ok(loss)
    }

    /// Stops the shaper; returns its last line (`seen N dropped M delayed D`).
    pub fn stop(mut self) -> String {
        self.finish()
    }

    fn finish(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        // SAFETY: kill(2) of our own child; it prints its counts on SIGTERM.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let mut last = String::new();
        if let Some(out) = self.stdout.take() {
            for line in out.lines().map_while(Result::ok) {
                last = line;
            }
        }
        let _ = child.wait();
        last
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        self.finish();
    }
}
