//! What the benchmarks share: a session of a test account on the project's Prosody.

use std::time::Duration;

use pmn::core::session::{ServerAddress, ServerTrust, SessionConfig};
use pmn_testkit::{Account, TestServer};

/// A session of `account` with resource `<device>-<pid>` on `server`, trusting its test CA.
#[allow(dead_code)] // the multi-process benches use `session_config_at`
pub fn session_config(server: &TestServer, account: &Account, device: &str) -> SessionConfig {
    session_config_at(server.port(), server.ca_pem(), account, device)
}

/// Like [`session_config`], for a process that has only the server's port and CA (a bench's
/// child process).
pub fn session_config_at(
    port: u16,
    ca_pem: String,
    account: &Account,
    device: &str,
) -> SessionConfig {
    let jid = format!("{}/{device}-{}", account.jid, std::process::id())
        .parse()
        .expect("bench JID");
    let mut c = SessionConfig::new(jid, account.password);
    c.server = ServerAddress::HostPort("127.0.0.1".into(), port);
    c.trust = ServerTrust::TestCa(ca_pem);
    c.connect_timeout = Duration::from_secs(30);
    c
}

/// Median and 99th percentile of `samples`, in µs.
#[allow(dead_code)] // not every bench reports percentiles
pub fn median_p99(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (
        us(samples[samples.len() / 2]),
        us(samples[samples.len() * 99 / 100]),
    )
}
