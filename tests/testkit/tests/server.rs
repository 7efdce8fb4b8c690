//! Starts real Prosody servers and checks what the rest of the project relies on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use pmn_testkit::{
    TestServer, DEFAULT_ACCOUNTS, FRIEND, FRIEND_HOST, HOME, HOME_HOST, TAMPER_HOST,
};

const TIMEOUT: Duration = Duration::from_secs(20);

fn accepts_tcp(addr: &str) -> bool {
    TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

fn prosody_pid(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("prosody.pid"))
        .expect("prosody.pid")
        .trim()
        .parse()
        .expect("pid")
}

/// Alive and not a zombie.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Runs a command with stdin closed, killing it after `TIMEOUT`.
fn run_bounded(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("command timed out: {cmd:?}");
        }
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `openssl s_client` with STARTTLS to `host` on `server`, the chain verified against the test CA
/// and the host name checked; callers add their own options.
fn s_client_verified(server: &TestServer, host: &str) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-starttls",
        "xmpp",
        "-xmpphost",
        host,
        "-connect",
    ])
    .arg(server.addr())
    .arg("-CAfile")
    .arg(server.ca_path())
    .args(["-verify_return_error", "-verify_hostname", host]);
    cmd
}

/// STARTTLS (chain verified against the test CA, host name checked) + SASL PLAIN through
/// `openssl s_client`. Returns whether the server answered `<success/>`.
fn sasl_plain_login(server: &TestServer, user: &str, host: &str, password: &str) -> bool {
    let mut child = s_client_verified(server, host)
        .arg("-quiet")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let token = base64(format!("\0{user}\0{password}").as_bytes());
    let mut stdin = child.stdin.take().unwrap();
    write!(
        stdin,
        "<?xml version='1.0'?><stream:stream to='{host}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>\
         <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("<success") || seen.contains("<failure") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(TIMEOUT).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    assert!(
        seen.contains("<success") || seen.contains("<failure"),
        "no SASL answer for {user}@{host}: {seen:?}"
    );
    seen.contains("<success")
}

#[test]
fn server_accepts_tcp_and_has_a_ca() {
    let server = TestServer::start().expect("start prosody");
    assert!(accepts_tcp(&server.addr()), "{} refuses TCP", server.addr());
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    assert!(server.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        std::fs::read_to_string(server.ca_path()).unwrap(),
        server.ca_pem()
    );
    assert!(server.dir().join("prosody.cfg.lua").is_file());
    assert!(process_alive(prosody_pid(server.dir())));
}

#[test]
fn two_servers_run_at_once() {
    let a = TestServer::start().expect("start first prosody");
    let b = TestServer::start().expect("start second prosody");
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    assert!(accepts_tcp(&a.addr()));
    assert!(accepts_tcp(&b.addr()));
}

#[test]
fn drop_stops_prosody_frees_the_port_and_removes_the_dir() {
    let server = TestServer::start().expect("start prosody");
    let addr = server.addr();
    let dir = server.dir().to_path_buf();
    let pid = prosody_pid(&dir);
    assert!(process_alive(pid));
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(!process_alive(pid), "prosody {pid} survived the drop");
    assert!(!accepts_tcp(&addr), "{addr} still accepts TCP");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn shared_server_is_one_per_process() {
    let a = TestServer::shared();
    let b = TestServer::shared();
    assert!(std::ptr::eq(a, b));
    assert!(accepts_tcp(&a.addr()));
}

#[test]
fn certificate_chain_verifies_for_every_host() {
    let server = TestServer::shared();
    for host in [HOME_HOST, FRIEND_HOST, TAMPER_HOST] {
        let out = run_bounded(&mut s_client_verified(server, host));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("Verify return code: 0 (ok)"),
            "TLS verification failed for {host}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without the test CA the same handshake must fail.
    let out = run_bounded(Command::new("openssl").args([
        "s_client",
        "-starttls",
        "xmpp",
        "-xmpphost",
        HOME_HOST,
        "-connect",
        &server.addr(),
        "-CApath",
        "/nonexistent",
        "-verify_return_error",
    ]));
    assert!(!out.status.success(), "handshake without the CA succeeded");
}

#[test]
fn default_accounts_log_in() {
    let server = TestServer::shared();
    for account in DEFAULT_ACCOUNTS {
        assert!(
            sasl_plain_login(server, account.user(), account.host(), account.password),
            "{} cannot log in",
            account.jid
        );
    }
    assert!(!sasl_plain_login(
        server,
        HOME.user(),
        HOME.host(),
        "wrong-password"
    ));
}

#[test]
fn register_works_while_running() {
    let server = TestServer::shared();
    server
        .register("late", HOME_HOST, "late-secret")
        .expect("register");
    assert!(sasl_plain_login(server, "late", HOME_HOST, "late-secret"));
}

#[test]
fn accounts_match_the_script() {
    let script = std::fs::read_to_string(pmn_testkit::script_path()).unwrap();
    for a in DEFAULT_ACCOUNTS {
        let line = format!("\"{} {} {}\"", a.user(), a.host(), a.password);
        assert!(script.contains(&line), "prosody.sh lacks {line}");
    }
    // …and the other way round: every registered account has its constant.
    let start = script
        .find("DEFAULT_USERS=(")
        .expect("DEFAULT_USERS in prosody.sh");
    let end = start + script[start..].find("\n)").expect("end of DEFAULT_USERS");
    let listed = script[start..end]
        .lines()
        .filter(|l| l.trim_start().starts_with('"'))
        .count();
    assert_eq!(
        listed,
        DEFAULT_ACCOUNTS.len(),
        "DEFAULT_USERS and DEFAULT_ACCOUNTS differ"
    );
    assert_eq!(HOME.host(), HOME_HOST);
    assert_eq!(FRIEND.host(), FRIEND_HOST);
}

#[test]
fn only_the_tamper_host_loads_the_tamper_module() {
    let server = TestServer::shared();
    let log = server.log();
    assert!(
        log.contains("tamper.test:pmn_tamper"),
        "mod_pmn_tamper not loaded on tamper.test:\n{log}"
    );
    for host in [HOME_HOST, FRIEND_HOST] {
        assert!(
            !log.contains(&format!("{host}:pmn_tamper")),
            "mod_pmn_tamper loaded on {host}"
        );
    }
}
