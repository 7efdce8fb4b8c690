//! Tunnel core without XMPP: TLS 1.3 + stanza framing over in-memory pipes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::FullJid;
use xmpp_parsers::stanza::Stanza;

use super::tls::{handshake, TlsRole};
use super::tunnel::Tunnel;
use crate::core::error::ErrorKind;
use crate::core::identity::DeviceIdentity;
use crate::core::session::IqReply;
use crate::platform::software::SoftwareKeyStore;

const T: Duration = Duration::from_secs(5);

fn identity(dir: &tempfile::TempDir, name: &str) -> DeviceIdentity {
    let store = Arc::new(SoftwareKeyStore::open(dir.path().join(name)).unwrap());
    DeviceIdentity::load_or_generate(store, "tls", name).unwrap()
}

/// Copies bytes both ways between two pipes, flipping one bit at `flip_at` of the a→b direction.
fn proxy(a: DuplexStream, b: DuplexStream, flip_at: Option<usize>) {
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    tokio::spawn(async move {
        let mut seen = 0usize;
        let mut buf = [0u8; 4096];
        while let Ok(n) = ar.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if let Some(at) = flip_at {
                if at >= seen && at < seen + n {
                    buf[at - seen] ^= 0x01;
                }
            }
            seen += n;
            if bw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = bw.shutdown().await;
    });
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut br, &mut aw).await;
        let _ = aw.shutdown().await;
    });
}

#[tokio::test]
async fn pinned_handshake_gives_both_sides_the_same_binding() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tv.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tv, phone.fingerprint(), T),
    );
    let (client, server) = (client.unwrap(), server.unwrap());
    assert_eq!(client.peer_fingerprint, tv.fingerprint());
    assert_eq!(server.peer_fingerprint, phone.fingerprint());
    assert_eq!(client.pairing_binding, server.pairing_binding);
}

#[tokio::test]
async fn a_wrong_key_fails_the_handshake_on_both_sides_with_tls_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv, mallory) = (
        identity(&dir, "phone"),
        identity(&dir, "tv"),
        identity(&dir, "mallory"),
    );
    let (a, b) = tokio::io::duplex(64 * 1024);
    // The phone expects the TV, but Mallory answers with her own key.
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tv.fingerprint(), T),
        handshake(b, TlsRole::Responder, &mallory, phone.fingerprint(), T),
    );
    let err = client.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls);
    assert!(err.message().contains("not the pinned one"), "{err}");
    assert_eq!(server.unwrap_err().kind(), ErrorKind::Tls);

    // And the server refuses a client key it did not expect.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &mallory, tv.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tv, phone.fingerprint(), T),
    );
    assert_eq!(server.unwrap_err().kind(), ErrorKind::Tls);
    // TLS 1.3: the client may finish before it reads the server's alert; it then fails on use.
    if let Ok(mut c) = client {
        let mut buf = [0u8; 1];
        assert!(c
            .stream
            .read(&mut buf)
            .await
            .map(|n| n == 0)
            .unwrap_or(true));
    }
}

#[tokio::test]
async fn tampered_handshake_bytes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    for flip_at in [20usize, 200, 700] {
        let (a, pa) = tokio::io::duplex(64 * 1024);
        let (pb, b) = tokio::io::duplex(64 * 1024);
        // Tamper with what the TV sends (ServerHello … Finished).
        proxy(pb, pa, Some(flip_at));
        let (client, server) = tokio::join!(
            handshake(a, TlsRole::Initiator, &phone, tv.fingerprint(), T),
            handshake(b, TlsRole::Responder, &tv, phone.fingerprint(), T),
        );
        assert!(client.is_err(), "flip at {flip_at} went unnoticed");
        assert!(server.is_err());
    }
}

fn jid(s: &str) -> FullJid {
    s.parse().unwrap()
}

#[tokio::test]
async fn stanzas_travel_through_the_tunnel_and_responses_are_matched() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tv.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tv, phone.fingerprint(), T),
    );
    let (pj, tj) = (jid("home@home.test/phone"), jid("home@home.test/tv"));
    let (phone_t, _phone_rx) = Tunnel::start(client.unwrap(), pj.clone(), tj.clone());
    let (tv_t, mut tv_rx) = Tunnel::start(server.unwrap(), tj.clone(), pj.clone());
    tokio::spawn(async move {
        while let Some(stanza) = tv_rx.recv().await {
            if let Stanza::Iq(Iq::Get {
                id, from, payload, ..
            }) = stanza
            {
                // The tunnel stamped the authenticated sender.
                assert_eq!(from, Some(pj.clone().into()));
                let _ = tv_t.send(Iq::Result {
                    from: None,
                    to: None,
                    id,
                    payload: Some(payload),
                });
            }
        }
    });
    let ping: minidom::Element = "<ping xmlns='urn:xmpp:ping'/>".parse().unwrap();
    let iq = Iq::Get {
        from: None,
        to: Some(tj.into()),
        id: String::new(),
        payload: ping.clone(),
    };
    for _ in 0..3 {
        match phone_t.request(iq.clone(), T).await.unwrap() {
            IqReply::Result(Some(p)) => assert_eq!(p, ping),
            other => panic!("{other:?}"),
        }
    }
    phone_t.close();
    assert!(phone_t.closed().await.is_none());
    assert!(!phone_t.is_up());
}

#[tokio::test]
async fn tampered_tunnel_data_ends_the_tunnel_without_delivering_it() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (a, pa) = tokio::io::duplex(64 * 1024);
    let (pb, b) = tokio::io::duplex(64 * 1024);
    // Client → server: the handshake's client flight is < 1500 bytes; flip a byte well after it.
    proxy(pa, pb, Some(3000));
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tv.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tv, phone.fingerprint(), T),
    );
    let (pj, tj) = (jid("home@home.test/phone"), jid("home@home.test/tv"));
    let (phone_t, _rx) = Tunnel::start(client.unwrap(), pj.clone(), tj.clone());
    let (tv_t, mut tv_rx) = Tunnel::start(server.unwrap(), tj.clone(), pj);
    let body = "x".repeat(3000);
    let msg = xmpp_parsers::message::Message::new(Some(tj.into()))
        .with_body(xmpp_parsers::message::Lang::default(), body);
    phone_t.send(msg).unwrap();
    let got = tokio::time::timeout(T, tv_rx.recv()).await.unwrap();
    assert!(got.is_none(), "a tampered record was delivered");
    let reason = tokio::time::timeout(T, tv_t.closed()).await.unwrap();
    assert!(reason.is_some(), "tampering must be reported as an error");
}

#[tokio::test]
async fn a_full_outbound_queue_refuses_send_and_backpressures_request() {
    use super::limits::E2eCounters;
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    // A small pipe that the TV side stops reading after the handshake: the phone's writer stalls.
    let (a, b) = tokio::io::duplex(4096);
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tv.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tv, phone.fingerprint(), T),
    );
    let _stalled = server.unwrap();
    let counters = Arc::new(E2eCounters::default());
    let (pj, tj) = (jid("home@home.test/phone"), jid("home@home.test/tv"));
    let (tunnel, _rx) =
        Tunnel::start_bounded(client.unwrap(), pj, tj.clone(), 4, Some(counters.clone()));
    let msg = xmpp_parsers::message::Message::new(Some(tj.clone().into()))
        .with_body(xmpp_parsers::message::Lang::default(), "y".repeat(512));
    let mut refused = None;
    for i in 0..200 {
        if let Err(e) = tunnel.send(msg.clone()) {
            refused = Some((i, e));
            break;
        }
        tokio::task::yield_now().await;
    }
    let (at, err) = refused.expect("the queue is bounded");
    assert_eq!(err.kind(), ErrorKind::ProviderUnavailable, "{err}");
    assert!(err.message().contains("congested"), "{err}");
    assert!(at < 40, "refused only after {at} stanzas");
    assert!(counters.snapshot().tunnel_outbound_full >= 1);
    // A request waits for room rather than failing at once, within its own timeout.
    let ping: minidom::Element = "<ping xmlns='urn:xmpp:ping'/>".parse().unwrap();
    let iq = Iq::Get {
        from: None,
        to: Some(tj.into()),
        id: String::new(),
        payload: ping,
    };
    let started = std::time::Instant::now();
    let err = tunnel
        .request(iq, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The tunnel itself is still up: congestion is not a failure.
    assert!(tunnel.is_up());
}

#[tokio::test]
async fn a_request_dropped_by_its_caller_leaves_no_pending_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tv.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tv, phone.fingerprint(), T),
    );
    let (pj, tj) = (jid("home@home.test/phone"), jid("home@home.test/tv"));
    let (tunnel, _rx) = Tunnel::start(client.unwrap(), pj.clone(), tj.clone());
    // The TV reads but never answers.
    let (_tv_t, _tv_rx) = Tunnel::start(server.unwrap(), tj.clone(), pj);
    let ping: minidom::Element = "<ping xmlns='urn:xmpp:ping'/>".parse().unwrap();
    let iq = Iq::Get {
        from: None,
        to: Some(tj.into()),
        id: String::new(),
        payload: ping,
    };
    for _ in 0..5 {
        let call = tunnel.request(iq.clone(), Duration::from_secs(30));
        assert!(tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err());
    }
    assert_eq!(tunnel.pending_len(), 0, "cancelled requests were forgotten");
    assert!(tunnel.is_up());
}

/// Issue 12: the server delivers the phone's tunnel for `home/tv` to another trusted device of
/// the network (`home/tablet`). TLS succeeds (both keys are trusted), but each side sees the other
/// wrote different ends than its tunnel has: the phone's call fails `Forbidden` and the tablet
/// delivers nothing.
#[tokio::test]
async fn a_tunnel_redirected_to_another_device_of_the_network_is_refused_by_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tablet) = (identity(&dir, "phone"), identity(&dir, "tablet"));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tablet.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tablet, phone.fingerprint(), T),
    );
    let (pj, tv, tab) = (
        jid("home@home.test/phone"),
        jid("home@home.test/tv"),
        jid("home@home.test/tablet"),
    );
    // The phone believes it talks to the TV; the tablet knows it is the tablet.
    let (phone_t, _phone_rx) = Tunnel::start(client.unwrap(), pj.clone(), tv.clone());
    let (tablet_t, mut tablet_rx) = Tunnel::start(server.unwrap(), tab.clone(), pj);
    let ping: minidom::Element = "<ping xmlns='urn:xmpp:ping'/>".parse().unwrap();
    let iq = Iq::Get {
        from: None,
        to: Some(tv.into()),
        id: String::new(),
        payload: ping.clone(),
    };
    let call = tokio::spawn(async move { phone_t.request(iq, T).await });
    // The tablet refuses what was addressed to the TV: nothing is delivered, the tunnel ends.
    let delivered = tokio::time::timeout(T, tablet_rx.recv()).await.unwrap();
    assert!(delivered.is_none(), "a redirected stanza was delivered");
    let reason = tokio::time::timeout(T, tablet_t.closed())
        .await
        .unwrap()
        .expect("refused with a reason");
    assert_eq!(reason.kind(), ErrorKind::Forbidden, "{reason}");
    assert!(reason.to_string().contains("redirected"), "{reason}");
    // The phone's call fails instead of reaching the wrong device.
    let err = tokio::time::timeout(T, call)
        .await
        .unwrap()
        .unwrap()
        .expect_err("no answer from the wrong device");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::NotConnected | ErrorKind::Forbidden | ErrorKind::Tls
        ),
        "{err}"
    );

    // And the other way: the tablet answers as itself to a phone that asked the TV.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, server) = tokio::join!(
        handshake(a, TlsRole::Initiator, &phone, tablet.fingerprint(), T),
        handshake(b, TlsRole::Responder, &tablet, phone.fingerprint(), T),
    );
    let (pj, tv, tab) = (
        jid("home@home.test/phone"),
        jid("home@home.test/tv"),
        jid("home@home.test/tablet"),
    );
    let (phone_t, _phone_rx) = Tunnel::start(client.unwrap(), pj.clone(), tv);
    let (tablet_t, _tablet_rx) = Tunnel::start(server.unwrap(), tab, pj);
    let hello = xmpp_parsers::message::Message::new(None)
        .with_body(xmpp_parsers::message::Lang::default(), "hi".into());
    tablet_t.send(hello).unwrap();
    let reason = tokio::time::timeout(T, phone_t.closed())
        .await
        .unwrap()
        .expect("refused with a reason");
    assert_eq!(reason.kind(), ErrorKind::Forbidden, "{reason}");
}
