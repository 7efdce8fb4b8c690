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

// ---- Resumption (issue 16, goal 4): bound to the pinned keys, scoped, forgettable, tamper-evident.

use super::tls::{handshake_resuming, Resumption, SecureChannel};

const PHONE: &str = "home@example.org/phone";
const TV: &str = "home@example.org/tv";

/// One tunnel's handshake with resumption on both sides: the phone (`phone_cache`, knowing the TV
/// as `tv_jid`) opens to the TV (`tv_cache`, seeing the phone as `phone_jid`); each side expects
/// the given key. Afterwards one byte goes each way, so the client has read the server's ticket
/// (it travels after the handshake), and both close.
#[allow(clippy::too_many_arguments)]
async fn resuming_pair(
    phone: &DeviceIdentity,
    phone_cache: &Resumption,
    tv_jid: &str,
    tv_key: crate::core::identity::DeviceFingerprint,
    tv: &DeviceIdentity,
    tv_cache: &Resumption,
    phone_jid: &str,
    phone_key: crate::core::identity::DeviceFingerprint,
    flip_at: Option<usize>,
) -> (
    crate::core::error::Result<bool>,
    crate::core::error::Result<bool>,
) {
    let (a, pa) = tokio::io::duplex(64 * 1024);
    let (pb, b) = tokio::io::duplex(64 * 1024);
    // Tampering, when asked, with what the phone sends (its ClientHello first).
    proxy(pa, pb, flip_at);
    let (client, server) = tokio::join!(
        handshake_resuming(
            a,
            TlsRole::Initiator,
            phone,
            tv_key,
            T,
            Some((phone_cache, tv_jid))
        ),
        handshake_resuming(
            b,
            TlsRole::Responder,
            tv,
            phone_key,
            T,
            Some((tv_cache, phone_jid))
        ),
    );
    let (client, server) = (
        client.inspect(|c| assert_eq!(c.peer_fingerprint, tv_key)),
        server.inspect(|s| assert_eq!(s.peer_fingerprint, phone_key)),
    );
    tokio::join!(exchange(client), exchange(server))
}

/// One byte each way over an established channel (the client reads the server's ticket on the
/// way), then a close; the channel's `resumed`.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    channel: crate::core::error::Result<SecureChannel<S>>,
) -> crate::core::error::Result<bool> {
    let mut channel = channel?;
    // A client's handshake ends when it has sent its Finished: a refusal of the server
    // arrives as an alert on the first read.
    let io = |e: std::io::Error| crate::core::error::Error::new(ErrorKind::Tls, e.to_string());
    channel.stream.write_all(b"x").await.map_err(io)?;
    channel.stream.flush().await.map_err(io)?;
    let mut byte = [0u8; 1];
    channel.stream.read_exact(&mut byte).await.map_err(io)?;
    assert_eq!(&byte, b"x");
    let _ = channel.stream.shutdown().await;
    Ok(channel.resumed)
}

#[tokio::test]
async fn a_second_tunnel_with_the_same_pinned_keys_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (pc, tc) = (
        Resumption::new(8, Duration::from_secs(3600)),
        Resumption::new(8, Duration::from_secs(3600)),
    );
    let (pk, tk) = (phone.fingerprint(), tv.fingerprint());
    let first = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
    assert_eq!((first.0.unwrap(), first.1.unwrap()), (false, false));
    for _ in 0..3 {
        // Each resumption uses its ticket up and gets a fresh one.
        let next = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
        assert_eq!((next.0.unwrap(), next.1.unwrap()), (true, true));
    }
    assert_eq!(pc.len(), (1, 0));
    assert_eq!(tc.len(), (0, 1));
}

#[tokio::test]
async fn a_ticket_presented_by_another_jid_or_for_another_key_gets_a_full_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv, tablet) = (
        identity(&dir, "phone"),
        identity(&dir, "tv"),
        identity(&dir, "tablet"),
    );
    let (pc, tc) = (
        Resumption::new(8, Duration::from_secs(3600)),
        Resumption::new(8, Duration::from_secs(3600)),
    );
    let (pk, tk) = (phone.fingerprint(), tv.fingerprint());
    let first = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
    assert_eq!((first.0.unwrap(), first.1.unwrap()), (false, false));
    // The phone's ticket reaches the TV from another JID (a server replaying it, or another
    // device of the network): the TV holds no ticket for that peer, so it is a full handshake,
    // in which the phone's own certificate authenticates it (the ticket grants nothing).
    let replayed = resuming_pair(
        &phone,
        &pc,
        TV,
        tk,
        &tv,
        &tc,
        "home@example.org/tablet",
        pk,
        None,
    )
    .await;
    assert_eq!((replayed.0.unwrap(), replayed.1.unwrap()), (false, false));
    // The same peer JID now answers with another key (the tablet's, pinned there too): the
    // phone's tickets belong to the TV's key, so none is offered and the tablet's key is checked.
    let other_key = resuming_pair(
        &phone,
        &pc,
        TV,
        tablet.fingerprint(),
        &tablet,
        &Resumption::new(8, Duration::from_secs(3600)),
        PHONE,
        pk,
        None,
    )
    .await;
    assert_eq!((other_key.0.unwrap(), other_key.1.unwrap()), (false, false));
    // A peer that expects another key than the one the ticket was issued to is refused, ticket
    // or not: the TV expects the tablet at the phone's JID and the phone offers its ticket.
    let wrong = resuming_pair(
        &phone,
        &pc,
        TV,
        tk,
        &tv,
        &tc,
        PHONE,
        tablet.fingerprint(),
        None,
    )
    .await;
    assert!(
        wrong.0.is_err() && wrong.1.is_err(),
        "the TV took the phone for the tablet: {wrong:?}"
    );
}

#[tokio::test]
async fn a_forgotten_key_and_an_expired_lifetime_resume_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (pc, tc) = (
        Resumption::new(8, Duration::from_secs(3600)),
        Resumption::new(8, Duration::from_secs(3600)),
    );
    let (pk, tk) = (phone.fingerprint(), tv.fingerprint());
    let _ = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
    // The TV revokes (or unpins) the phone's key: its tickets go with it, the next tunnel (if
    // the key is trusted again) proves the key by signature.
    tc.forget_key(&pk);
    assert_eq!(tc.len(), (0, 0));
    let after = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
    assert_eq!((after.0.unwrap(), after.1.unwrap()), (false, false));
    // The same on the phone's side.
    pc.forget_key(&tk);
    let after = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
    assert_eq!((after.0.unwrap(), after.1.unwrap()), (false, false));
    // Tickets last at most their lifetime after the full handshake.
    let (pc, tc) = (
        Resumption::new(8, Duration::from_millis(200)),
        Resumption::new(8, Duration::from_millis(200)),
    );
    let _ = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
    assert_eq!((late.0.unwrap(), late.1.unwrap()), (false, false));
}

#[tokio::test]
async fn a_tampered_resumption_hello_fails_cleanly_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (pk, tk) = (phone.fingerprint(), tv.fingerprint());
    // Offsets inside the ClientHello: its random, its key share, its ticket and binder (a PSK
    // ClientHello is a few hundred bytes; the binder is at its end).
    for flip_at in [20usize, 120, 250, 330] {
        let (pc, tc) = (
            Resumption::new(8, Duration::from_secs(3600)),
            Resumption::new(8, Duration::from_secs(3600)),
        );
        let _ = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, None).await;
        let tampered = resuming_pair(&phone, &pc, TV, tk, &tv, &tc, PHONE, pk, Some(flip_at)).await;
        assert!(
            tampered.0.is_err() && tampered.1.is_err(),
            "flip at {flip_at} went unnoticed: {tampered:?}"
        );
        for e in [tampered.0.unwrap_err(), tampered.1.unwrap_err()] {
            assert!(
                matches!(e.kind(), ErrorKind::Tls | ErrorKind::Timeout),
                "{e}"
            );
        }
    }
}

// ---- The first flight out of band (the ClientHello in the session-initiate).

use super::early::{early_pair, Prefixed};

/// A tunnel whose ClientHello travels out of band: the phone's first flight is taken from its
/// pipe (as the initiate carries it), `carry` may alter it on the way, and the TV reads it before
/// the transport (`taken`), or the phone sends it over the transport itself (an older responder).
async fn early_handshake(
    phone: &DeviceIdentity,
    pc: &Resumption,
    tv: &DeviceIdentity,
    tc: &Resumption,
    taken: bool,
    carry: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> (
    crate::core::error::Result<bool>,
    crate::core::error::Result<bool>,
) {
    let (pk, tk) = (phone.fingerprint(), tv.fingerprint());
    let (early, mut handle) = early_pair();
    let client = handshake_resuming(early, TlsRole::Initiator, phone, tk, T, Some((pc, TV)));
    tokio::pin!(client);
    let flight = tokio::select! {
        flight = handle.first_flight() => flight.expect("first flight"),
        done = &mut client => panic!("the client ended before its first flight: {:?}", done.err()),
    };
    let prefix = if taken { carry(flight) } else { Vec::new() };
    let (a, b) = tokio::io::duplex(64 * 1024);
    handle.attach(a, taken);
    let server = handshake_resuming(
        Prefixed::new(prefix, b),
        TlsRole::Responder,
        tv,
        pk,
        T,
        Some((tc, PHONE)),
    );
    let (client, server) = tokio::join!(client, server);
    tokio::join!(exchange(client), exchange(server))
}

#[tokio::test]
async fn a_client_hello_carried_out_of_band_gives_the_same_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (pc, tc) = (
        Resumption::new(8, Duration::from_secs(3600)),
        Resumption::new(8, Duration::from_secs(3600)),
    );
    let first = early_handshake(&phone, &pc, &tv, &tc, true, |f| f).await;
    assert_eq!((first.0.unwrap(), first.1.unwrap()), (false, false));
    let again = early_handshake(&phone, &pc, &tv, &tc, true, |f| f).await;
    assert_eq!((again.0.unwrap(), again.1.unwrap()), (true, true));
    // A responder that ignores the carried flight gets the same bytes over the transport.
    let old = early_handshake(&phone, &pc, &tv, &tc, false, |f| f).await;
    assert_eq!((old.0.unwrap(), old.1.unwrap()), (true, true));
}

#[tokio::test]
async fn a_tampered_carried_client_hello_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (phone, tv) = (identity(&dir, "phone"), identity(&dir, "tv"));
    let (pc, tc) = (
        Resumption::new(8, Duration::from_secs(3600)),
        Resumption::new(8, Duration::from_secs(3600)),
    );
    let _ = early_handshake(&phone, &pc, &tv, &tc, true, |f| f).await;
    for (at, resume) in [(20usize, true), (200, true), (0, true), (60, false)] {
        if !resume {
            pc.forget_key(&tv.fingerprint());
        }
        let flip = move |mut f: Vec<u8>| {
            let i = at.min(f.len() - 1);
            f[i] ^= 0x01;
            f
        };
        let r = early_handshake(&phone, &pc, &tv, &tc, true, flip).await;
        assert!(
            r.0.is_err() && r.1.is_err(),
            "flip at {at} went unnoticed: {r:?}"
        );
    }
    // Cut short, or nothing at all: also a clean failure.
    let r = early_handshake(&phone, &pc, &tv, &tc, true, |f| f[..f.len() / 2].to_vec()).await;
    assert!(r.0.is_err() && r.1.is_err(), "{r:?}");
}
