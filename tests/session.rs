//! Login against the real Prosody: success, and each failure as its own typed error.

mod common;

use std::time::Duration;

use common::*;
use pmn::core::error::ErrorKind;
use pmn::core::session::{ConnectionState, IqReply, ServerAddress, ServerTrust, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_binds_the_requested_resource_and_reports_online() {
    let config = session_config(&HOME, "login");
    let wanted = config.jid.clone();
    let (session, _inbound) = Session::connect(config).await.expect("login");
    assert_eq!(session.jid(), Some(wanted.clone()));
    assert_eq!(session.state(), ConnectionState::Online { jid: wanted });
    session.close().await;
    assert_eq!(session.state(), ConnectionState::Offline { error: None });
}

/// `Duration::MAX` is how a caller says "never": the stream's reader re-arms its keepalive timer
/// as `now + keepalive` after each read, which panicked inside the session task before
/// `Session::connect` cut every wait to what the clock holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_of_duration_max_log_in_and_carry_requests() {
    let mut config = session_config(&HOME, "forever");
    config.connect_timeout = Duration::MAX;
    config.keepalive = Duration::MAX;
    config.probe_timeout = Duration::MAX;
    config.background_keepalive = Duration::MAX;
    // The waits asked for are "never": the test bounds itself, so a lost reply fails it instead
    // of stalling the suite.
    tokio::time::timeout(Duration::from_secs(60), async {
        let (session, _inbound) = Session::connect(config).await.expect("login");
        for _ in 0..3 {
            let roster = xmpp_parsers::roster::Roster {
                ver: None,
                items: vec![],
            };
            let iq = xmpp_parsers::iq::Iq::from_get(String::new(), roster);
            let reply = session.request(iq, Duration::MAX).await.expect("reply");
            assert!(matches!(reply, IqReply::Result(Some(_))), "{reply:?}");
        }
        assert!(matches!(session.state(), ConnectionState::Online { .. }));
        session.close().await;
    })
    .await
    .expect("login, 3 requests and close within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error() {
    let mut config = session_config(&HOME, "badpw");
    config.password = "not-the-password".into();
    let err = Session::connect(config).await.expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_server_certificate_is_a_tls_error() {
    let mut config = session_config(&HOME, "badca");
    // A CA that did not issue Prosody's certificate.
    let other_ca = rcgen::generate_simple_self_signed(vec!["other.test".into()])
        .expect("cert")
        .cert
        .pem();
    config.trust = ServerTrust::TestCa(other_ca);
    let err = Session::connect(config).await.expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_unreachable() {
    let mut config = session_config(&HOME, "noport");
    // Bind and drop a listener: the port is free and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    config.server = ServerAddress::HostPort("127.0.0.1".into(), port);
    let err = Session::connect(config).await.expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_a_timeout() {
    let mut config = session_config(&HOME, "silent");
    // Accepts TCP but never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    config.server = ServerAddress::HostPort("127.0.0.1".into(), port);
    config.connect_timeout = Duration::from_millis(500);
    let err = Session::connect(config).await.expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    hold.abort();
}

#[cfg(feature = "test-ca")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_ca_pem_is_a_config_error() {
    let mut config = session_config(&HOME, "garbage");
    config.trust = ServerTrust::TestCa("not a pem".into());
    let err = Session::connect(config).await.expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}
