//! Test support for pmn: starts the project's real Prosody on loopback.
//!
//! [`TestServer::start`] runs `tests/prosody/prosody.sh run DIR PORT` with a piped stdin that is never
//! written. The script stops Prosody when that pipe reaches EOF, so Prosody never outlives the test
//! process, even when it crashes or is killed. Each server gets a free loopback port and its own
//! temporary directory holding the test CA ([`TestServer::ca_pem`]), the config and the data.
//!
//! The server has two virtual hosts, one per household: [`HOME_HOST`] (Juliet's network) and
//! [`FRIEND_HOST`] (Romeo's), and the accounts [`HOME`], [`FRIEND`], [`STRANGER`] and [`BENCH`].
//! A third host, [`TAMPER_HOST`], is a *malicious* server for in-path attack tests: its module
//! `tests/prosody/modules/mod_pmn_tamper.lua` alters the end-to-end tunnel traffic between two
//! resources of [`TAMPER_FLIP`], [`TAMPER_LATEFLIP`] and [`TAMPER_SWAP`], and leaves
//! [`TAMPER_CLEAN`] alone.
//!
//! ```no_run
//! let server = pmn_testkit::TestServer::shared();
//! let addr = server.addr(); // "127.0.0.1:PORT", STARTTLS required, trust server.ca_pem()
//! # let _ = addr;
//! ```

use std::io::{self, BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Virtual host of Juliet's household network.
pub const HOME_HOST: &str = "home.test";
/// Virtual host of Romeo's household network (the guest side).
pub const FRIEND_HOST: &str = "friend.test";
/// Virtual host whose server attacks tunnels (mod_pmn_tamper); only this host loads the module.
pub const TAMPER_HOST: &str = "tamper.test";
/// Namespace of mod_pmn_tamper's control iqs (`<arm/>`, `<disarm/>`, sent to [`TAMPER_HOST`]).
pub const NS_TAMPER: &str = "urn:pmn:test:tamper";

/// An account registered on every [`TestServer`] before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// Bare JID, `user@host`.
    pub jid: &'static str,
    /// Password for SASL.
    pub password: &'static str,
}

impl Account {
    /// The local part of [`Account::jid`].
    #[must_use]
    pub fn user(&self) -> &'static str {
        self.jid.split_once('@').map_or(self.jid, |(user, _)| user)
    }

    /// The domain part of [`Account::jid`].
    #[must_use]
    pub fn host(&self) -> &'static str {
        self.jid.split_once('@').map_or("", |(_, host)| host)
    }
}

// Keep these in sync with DEFAULT_USERS in tests/prosody/prosody.sh (checked by a test below).

/// Juliet's household network: every device of her home logs in as this bare JID.
pub const HOME: Account = Account {
    jid: "home@home.test",
    password: "home-secret",
};
/// Romeo's household network, on the other virtual host.
pub const FRIEND: Account = Account {
    jid: "home@friend.test",
    password: "friend-secret",
};
/// Someone with no rights on either network.
pub const STRANGER: Account = Account {
    jid: "stranger@home.test",
    password: "stranger-secret",
};
/// Account reserved for benchmarks.
pub const BENCH: Account = Account {
    jid: "bench@home.test",
    password: "bench-secret",
};
/// The server flips one bit of every in-band bytestream block from `seq` 1 on, both directions
/// (the TLS handshake's second flights and everything after).
pub const TAMPER_FLIP: Account = Account {
    jid: "flip@tamper.test",
    password: "flip-secret",
};
/// The server flips one bit of every in-band bytestream block, but only once this account armed
/// the attack with an iq set `<arm xmlns='urn:pmn:test:tamper'/>` to [`TAMPER_HOST`] (so a test
/// can attack an established tunnel); `<disarm/>` stops it.
pub const TAMPER_LATEFLIP: Account = Account {
    jid: "lateflip@tamper.test",
    password: "lateflip-secret",
};
/// The server replaces the fingerprint of every Jingle XTLS `session-initiate`/`session-accept`
/// by one of its own (certificate substitution).
pub const TAMPER_SWAP: Account = Account {
    jid: "swap@tamper.test",
    password: "swap-secret",
};
/// On the tampering host, but left alone: the control case.
pub const TAMPER_CLEAN: Account = Account {
    jid: "clean@tamper.test",
    password: "clean-secret",
};

/// Every account registered on every [`TestServer`] (the mirror of `DEFAULT_USERS` in
/// `tests/prosody/prosody.sh`).
pub const DEFAULT_ACCOUNTS: [Account; 8] = [
    HOME,
    FRIEND,
    STRANGER,
    BENCH,
    TAMPER_FLIP,
    TAMPER_LATEFLIP,
    TAMPER_SWAP,
    TAMPER_CLEAN,
];

/// How long to wait for `READY` (covers building the certificate/account template on a cold run).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the script to stop Prosody after its stdin is closed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts with a fresh port when the chosen one was taken in the meantime.
const START_ATTEMPTS: u32 = 3;

/// Which XMPP server the tests run against.
///
/// Prosody by default; `PMN_TEST_SERVER=ejabberd` runs the same tests against Debian's ejabberd
/// (tests/ejabberd/ejabberd.sh), which hosts the same two households with the same accounts and
/// test CA but not [`TAMPER_HOST`] (its attacker module is Prosody's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Debian's Prosody 0.12 (tests/prosody/prosody.sh).
    Prosody,
    /// Debian's ejabberd 23.01 (tests/ejabberd/ejabberd.sh).
    Ejabberd,
}

impl ServerKind {
    /// The kind named by `PMN_TEST_SERVER` (`prosody`, the default, or `ejabberd`).
    ///
    /// # Panics
    /// On any other value, so that a typo does not silently test Prosody again.
    #[must_use]
    pub fn from_env() -> ServerKind {
        match std::env::var("PMN_TEST_SERVER").as_deref() {
            Err(_) | Ok("") | Ok("prosody") => ServerKind::Prosody,
            Ok("ejabberd") => ServerKind::Ejabberd,
            Ok(other) => panic!("PMN_TEST_SERVER={other:?}: expected prosody or ejabberd"),
        }
    }

    /// The server's name, for messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Ejabberd => "ejabberd",
        }
    }

    /// The script that installs, starts and stops this kind of server.
    #[must_use]
    pub fn script(self) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        match self {
            ServerKind::Prosody => dir.join("prosody").join("prosody.sh"),
            ServerKind::Ejabberd => dir.join("ejabberd").join("ejabberd.sh"),
        }
    }

    fn pid_file(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody.pid",
            ServerKind::Ejabberd => "ejabberd.pid",
        }
    }

    fn log_file(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody.log",
            ServerKind::Ejabberd => "logs/ejabberd.log",
        }
    }
}

/// Path of the script of the server kind in use ([`ServerKind::from_env`]), found from this
/// crate's manifest directory.
#[must_use]
pub fn script_path() -> PathBuf {
    ServerKind::from_env().script()
}

/// Runs `prosody.sh install` (installs Prosody and openssl if missing) at most once per process.
///
/// # Errors
/// If the script cannot run or the installation fails (the error carries its stderr). A failure
/// is remembered: later calls in the same process return it again.
pub fn install() -> io::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(script_path())
                .arg("install")
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script_path().display()))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "`{} install` failed ({}): {}",
                    script_path().display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
        .map_err(io::Error::other)
}

/// A running Prosody on `127.0.0.1` with its own port and directory.
///
/// Dropping it stops Prosody and removes the directory. If the process dies without dropping it,
/// Prosody still stops: the script sees EOF on its stdin.
#[derive(Debug)]
pub struct TestServer {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    dir: PathBuf,
    port: u16,
    ca_pem: String,
    kind: ServerKind,
}

impl TestServer {
    /// Starts a new server on a free loopback port in a fresh temporary directory and waits
    /// (bounded) until it accepts connections.
    ///
    /// # Errors
    /// If Prosody cannot be installed or started; the error carries the script's stderr, which
    /// includes the tail of Prosody's log.
    pub fn start() -> io::Result<TestServer> {
        install()?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let dir = unique_dir()?;
            match Self::start_at(dir.clone(), port) {
                Ok(server) => return Ok(server),
                Err(StartError::PortTaken(e)) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    last_err = Some(e);
                }
                Err(StartError::Other(e)) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("could not start prosody")))
    }

    fn start_at(dir: PathBuf, port: u16) -> Result<TestServer, StartError> {
        let mut child = Command::new("bash")
            .arg(script_path())
            .arg("run")
            .arg(&dir)
            .arg(port.to_string())
            .env("PMN_PROSODY_RM_DIR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                StartError::Other(io::Error::new(
                    e.kind(),
                    format!("cannot run {}: {e}", script_path().display()),
                ))
            })?;
        let stdin = child.stdin.take();
        let stderr = Arc::new(Mutex::new(String::new()));
        // Drain stderr for the whole life of the script so it can never block on a full pipe.
        if let Some(mut pipe) = child.stderr.take() {
            let buf = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut b) = buf.lock() {
                        b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    }
                }
            });
        }
        // Report READY (or EOF), then keep draining stdout.
        let (ready_tx, ready_rx) = mpsc::channel();
        if let Some(pipe) = child.stdout.take() {
            thread::spawn(move || {
                let mut ready_tx = Some(ready_tx);
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if line.trim() == "READY" {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(true);
                        }
                    }
                }
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(false);
                }
            });
        }
        let mut server = TestServer {
            child: Some(child),
            stdin,
            stderr,
            dir,
            port,
            ca_pem: String::new(),
            kind: ServerKind::from_env(),
        };
        match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let timed_out = server.child_running();
                server.shutdown();
                let log = server.stderr_text();
                let msg = if timed_out {
                    format!(
                        "{} run did not print READY within {READY_TIMEOUT:?}: {log}",
                        script_path().display()
                    )
                } else {
                    format!("{} run failed: {log}", script_path().display())
                };
                let err = io::Error::other(msg);
                return Err(
                    if log.contains("already in use") || log.contains("failed to start on") {
                        StartError::PortTaken(err)
                    } else {
                        StartError::Other(err)
                    },
                );
            }
        }
        match std::fs::read_to_string(server.ca_path()) {
            Ok(pem) => server.ca_pem = pem,
            Err(e) => {
                let path = server.ca_path();
                server.shutdown();
                return Err(StartError::Other(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", path.display()),
                )));
            }
        }
        Ok(server)
    }

    /// The server shared by every test of this process, started on first use. It is stopped when
    /// the process exits.
    ///
    /// # Panics
    /// If the server cannot be started; the message says why.
    pub fn shared() -> &'static TestServer {
        static SHARED: OnceLock<TestServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            TestServer::start().unwrap_or_else(|e| {
                panic!(
                    "pmn-testkit: cannot start the shared Prosody test server: {e}\n\
                     (is prosody installed? try `bash tests/prosody/prosody.sh install`)"
                )
            })
        })
    }

    /// The c2s address, `"127.0.0.1:PORT"` (STARTTLS required).
    #[must_use]
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The c2s port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM of the test CA that signed the server certificate (valid for `home.test`,
    /// `friend.test`, `tamper.test` and `localhost`).
    #[must_use]
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Path of the test CA's PEM file (`DIR/ca.pem`).
    #[must_use]
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server's private directory (config, data, logs, certificates).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's info log so far (`DIR/prosody.log` or `DIR/logs/ejabberd.log`; empty if it
    /// cannot be read), e.g. to see what mod_pmn_tamper changed.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(self.kind.log_file())).unwrap_or_default()
    }

    /// Which server this is.
    #[must_use]
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// Registers one more account; works while the server runs.
    ///
    /// # Errors
    /// If `prosodyctl register` fails (the error carries its stderr).
    pub fn register(&self, user: &str, host: &str, password: &str) -> io::Result<()> {
        let out = Command::new("bash")
            .arg(script_path())
            .arg("register")
            .arg(&self.dir)
            .args([user, host, password])
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "registering {user}@{host} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Kills Prosody with SIGKILL, as a crash or a power cut would: it records no stream
    /// management state, so clients that try to resume get `<failed/>` without `h`.
    ///
    /// # Errors
    /// If there is no running Prosody or it does not die within 5 s.
    pub fn crash(&self) -> io::Result<()> {
        self.signal_and_wait("-KILL")
    }

    /// Stops Prosody with SIGTERM, as an upgrade or an administrator would.
    ///
    /// # Errors
    /// If there is no running Prosody or it does not exit within 15 s.
    pub fn stop_gracefully(&self) -> io::Result<()> {
        self.signal_and_wait("-TERM")
    }

    /// Starts Prosody again after [`TestServer::crash`] or [`TestServer::stop_gracefully`], on the
    /// same port with the same data and accounts; returns once it accepts connections.
    ///
    /// # Errors
    /// If the script cannot start it (the error carries its stderr).
    pub fn restart(&self) -> io::Result<()> {
        let out = Command::new("bash")
            .arg(script_path())
            .arg("start")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "restarting prosody failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Freezes the server (SIGSTOP): its connections stay open but nothing is answered, as when
    /// the network path to it dies without a reset. [`TestServer::thaw`] lets it go on.
    ///
    /// # Errors
    /// If there is no running server.
    pub fn freeze(&self) -> io::Result<()> {
        self.signal("-STOP").map(drop)
    }

    /// Undoes [`TestServer::freeze`] (SIGCONT).
    ///
    /// # Errors
    /// If there is no running server.
    pub fn thaw(&self) -> io::Result<()> {
        self.signal("-CONT").map(drop)
    }

    /// Sends `signal` to the server process; returns its pid.
    fn signal(&self, signal: &str) -> io::Result<u32> {
        let pid = self
            .prosody_pid()
            .ok_or_else(|| io::Error::other("no pid file: is the server running?"))?;
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        if status.success() {
            Ok(pid)
        } else {
            Err(io::Error::other(format!("kill {signal} {pid} failed")))
        }
    }

    fn prosody_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(self.kind.pid_file()))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    fn signal_and_wait(&self, signal: &str) -> io::Result<()> {
        let pid = self.signal(signal)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("prosody {pid} did not exit")));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    fn child_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Closes the script's stdin (it then stops Prosody), waits bounded, kills as a last resort.
    fn shutdown(&mut self) {
        let prosody_pid = std::fs::read_to_string(self.dir.join(self.kind.pid_file())).ok();
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if let Some(pid) = prosody_pid
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A Prosody started by `restart` is not the script's child: stop it by its pidfile first.
        let _ = Command::new("bash")
            .arg(script_path())
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

enum StartError {
    /// The port was taken between choosing it and Prosody binding it: retry with another.
    PortTaken(io::Error),
    Other(io::Error),
}

fn free_port() -> io::Result<u16> {
    for _ in 0..10 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        // Skip a port something already listens on (e.g. a leftover server on a reused port).
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free loopback port found",
    ))
}

fn unique_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "pmn-prosody-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}
