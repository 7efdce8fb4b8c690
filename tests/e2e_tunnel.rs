//! End-to-end tunnels between devices of the home network through the real Prosody: Jingle + IBB +
//! TLS 1.3, pinning, pairing, and the attacks of issue 5 (unknown / substituted / revoked keys,
//! altered and injected bytes, malformed Jingle and IBB).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{session_config, HOME, STRANGER};
use pmn::core::e2e::{E2eEndpoint, E2eInbound, E2eLimits, E2eSettings, TrustSource, TrustStore};
use pmn::core::error::ErrorKind;
use pmn::core::identity::{DeviceFingerprint, DeviceIdentity};
use pmn::core::session::{ConnectionState, Inbound, IqReply, Session};
use pmn::platform::software::SoftwareKeyStore;
use tokio::sync::mpsc;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::DefinedCondition;

const T: Duration = Duration::from_secs(10);

struct Device {
    endpoint: E2eEndpoint,
    session: Session,
    jid: FullJid,
    events: mpsc::Receiver<E2eInbound>,
    tap: mpsc::UnboundedReceiver<Stanza>,
    _dir: tempfile::TempDir,
}

async fn device_with(name: &str, tweak: impl FnOnce(&mut E2eSettings)) -> Device {
    device_on(session_config(&HOME, name), name, tweak).await
}

/// A device with its own session configuration (another account, a relay in the path).
async fn device_on(
    mut config: pmn::core::session::SessionConfig,
    name: &str,
    tweak: impl FnOnce(&mut E2eSettings),
) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let (tap_tx, tap) = mpsc::unbounded_channel();
    config.outbound_tap = Some(tap_tx);
    let (session, mut inbound) = Session::connect(config).await.expect("session");
    let store = Arc::new(SoftwareKeyStore::open(dir.path().join("keys")).unwrap());
    let identity = DeviceIdentity::load_or_generate(store, "tls", name).unwrap();
    let mut e2e = E2eSettings::new(identity, Arc::new(TrustStore::in_memory()));
    e2e.setup_timeout = Duration::from_secs(5);
    tweak(&mut e2e);
    let (endpoint, events) = E2eEndpoint::new(session.clone(), e2e);
    // The role layer's dispatch loop, reduced to the one hook the e2e layer needs.
    let ep = endpoint.clone();
    tokio::spawn(async move {
        while let Some(item) = inbound.recv().await {
            match item {
                Inbound::Stanza(stanza) => {
                    ep.handle_stanza(&stanza);
                }
                // As the roles do: a new stream (not a resume) loses every tunnel at once.
                Inbound::Online { resumed: false, .. } => {
                    ep.close_all("the session was not resumed");
                }
                Inbound::Online { .. } => {}
            }
        }
    });
    let jid = session.jid().unwrap();
    Device {
        endpoint,
        session,
        jid,
        events,
        tap,
        _dir: dir,
    }
}

async fn device(name: &str) -> Device {
    device_with(name, |_| {}).await
}

/// Answers every tunnelled iq get/set with its own payload (an RPC stand-in); returns the other
/// events for inspection.
fn serve_echo(dev: &mut Device) -> mpsc::UnboundedReceiver<E2eInbound> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut events = std::mem::replace(&mut dev.events, mpsc::channel(1).1);
    let endpoint = dev.endpoint.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                E2eInbound::Stanza(stanza) => {
                    if let Stanza::Iq(
                        Iq::Get {
                            from, id, payload, ..
                        }
                        | Iq::Set {
                            from, id, payload, ..
                        },
                    ) = *stanza
                    {
                        let _ = endpoint.send(Iq::Result {
                            from: None,
                            to: from,
                            id,
                            payload: Some(payload),
                        });
                    }
                }
                other => {
                    let _ = tx.send(other);
                }
            }
        }
    });
    rx
}

fn pin(a: &Device, b: &Device) {
    a.endpoint
        .trust()
        .pin(
            &b.jid.to_bare(),
            &b.endpoint.fingerprint(),
            TrustSource::Manual,
        )
        .unwrap();
}

fn probe(to: &FullJid, marker: &str) -> Iq {
    let payload: Element = format!("<probe xmlns='urn:pmn:test'>{marker}</probe>")
        .parse()
        .unwrap();
    Iq::Set {
        from: None,
        to: Some(Jid::from(to.clone())),
        id: String::new(),
        payload,
    }
}

async fn echo_ok(phone: &Device, tv: &Device, marker: &str) {
    match phone
        .endpoint
        .request(probe(&tv.jid, marker), T)
        .await
        .expect("request through the tunnel")
    {
        IqReply::Result(Some(p)) => assert_eq!(p.text(), marker),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn drain_tap(dev: &mut Device) -> String {
    let mut all = String::new();
    while let Ok(stanza) = dev.tap.try_recv() {
        all.push_str(&String::from_utf8_lossy(&xso::to_vec(&stanza).unwrap()));
    }
    all
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<E2eInbound>) -> E2eInbound {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("event in time")
        .expect("event channel open")
}

async fn still_online(dev: &Device) {
    assert!(matches!(
        dev.session.state(),
        ConnectionState::Online { .. }
    ));
    let ping: Element = "<ping xmlns='urn:xmpp:ping'/>".parse().unwrap();
    let iq = Iq::Get {
        from: None,
        to: Some(Jid::from(dev.jid.to_bare())),
        id: String::new(),
        payload: ping,
    };
    assert!(matches!(
        dev.session.request(iq, T).await.unwrap(),
        IqReply::Result(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_devices_tunnel_rpc_and_the_server_sees_no_plaintext() {
    let (mut phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let mut tv_events = serve_echo(&mut tv);
    for i in 0..10 {
        echo_ok(&phone, &tv, &format!("secret-marker-{i}")).await;
    }
    // One tunnel, reused.
    let first = phone.endpoint.existing_tunnel(&tv.jid).expect("tunnel up");
    assert_eq!(first.peer_fingerprint(), tv.endpoint.fingerprint());
    assert!(matches!(
        next_event(&mut tv_events).await,
        E2eInbound::TunnelUp { .. }
    ));
    let sent = drain_tap(&mut phone);
    assert!(sent.contains("urn:xmpp:jingle:security:xtls:1"));
    assert!(sent.contains("http://jabber.org/protocol/ibb"));
    assert!(!sent.contains("secret-marker"), "plaintext left the device");
    // A 20 kB payload spans several IBB blocks.
    let big = "b".repeat(20_000);
    echo_ok(&phone, &tv, &big).await;

    // Closing ends the Jingle session on both sides; the next request opens a fresh tunnel.
    first.close();
    assert!(matches!(
        next_event(&mut tv_events).await,
        E2eInbound::TunnelDown { .. }
    ));
    echo_ok(&phone, &tv, "again").await;
    assert!(phone.endpoint.existing_tunnel(&tv.jid).unwrap().is_up());
}

/// The stanzas a device sent, one short name each (`iq-set:session-initiate`, `iq-result`,
/// `message:data`, …), in order.
fn sent_kinds(dev: &mut Device) -> Vec<String> {
    let mut kinds = Vec::new();
    while let Ok(stanza) = dev.tap.try_recv() {
        kinds.push(kind_of(stanza));
    }
    kinds
}

/// The short name of one stanza (see [`sent_kinds`]).
fn kind_of(stanza: Stanza) -> String {
    {
        match stanza {
            Stanza::Iq(Iq::Set { payload, .. }) => match payload.attr("action") {
                Some(action) => format!("iq-set:{action}"),
                None => format!("iq-set:{}", payload.name()),
            },
            Stanza::Iq(Iq::Get { payload, .. }) => format!("iq-get:{}", payload.name()),
            Stanza::Iq(Iq::Result { .. }) => "iq-result".into(),
            Stanza::Iq(Iq::Error { .. }) => "iq-error".into(),
            Stanza::Message(m) => {
                format!("message:{}", m.payloads.first().map_or("-", |p| p.name()))
            }
            Stanza::Presence(_) => "presence".into(),
        }
    }
}

/// What the server relays for a new tunnel and per call (issue 16, goal 4): IBB data travels in
/// messages, so no TLS flight waits for (or costs) an acknowledgement; a call costs two relayed
/// stanzas like a plain iq, plus one paced acknowledgement every eight blocks each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tunnel_costs_nine_stanzas_and_a_call_about_two() {
    let (mut phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    let _ = (sent_kinds(&mut phone), sent_kinds(&mut tv));
    phone.endpoint.tunnel(&tv.jid).await.expect("tunnel");
    // The TV is up once it has the phone's last flight; let its last stanzas reach the taps.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (by_phone, by_tv) = (sent_kinds(&mut phone), sent_kinds(&mut tv));
    // Each side reads the network's published keys (XEP-0189, a revocation check) from its own
    // server once; everything else is relayed to the peer.
    let pep = |kinds: &[String]| kinds.iter().filter(|k| *k == "iq-get:pubsub").count();
    assert!(
        pep(&by_phone) <= 1 && pep(&by_tv) <= 1,
        "{by_phone:?} {by_tv:?}"
    );
    let relayed = |kinds: Vec<String>| -> Vec<String> {
        kinds.into_iter().filter(|k| k != "iq-get:pubsub").collect()
    };
    let (by_phone, by_tv) = (relayed(by_phone), relayed(by_tv));
    // Initiate; the accept's result, the IBB open, the ClientHello; the client's last flight.
    assert_eq!(
        by_phone,
        [
            "iq-set:session-initiate",
            "iq-result",
            "iq-set:open",
            "message:data",
            "message:data"
        ],
        "{by_tv:?}"
    );
    // The initiate's result and the accept; the open's result and the server's flight; once the
    // handshake is done, the session ticket the next tunnel can resume with (not waited for).
    assert_eq!(
        by_tv,
        [
            "iq-result",
            "iq-set:session-accept",
            "iq-result",
            "message:data",
            "message:data"
        ],
        "{by_phone:?}"
    );

    const CALLS: usize = 40;
    for i in 0..CALLS {
        echo_ok(&phone, &tv, &format!("call-{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (by_phone, by_tv) = (sent_kinds(&mut phone), sent_kinds(&mut tv));
    let total = by_phone.len() + by_tv.len();
    // One block each way per call; every 8th block of a side is an iq, which the other acks.
    assert_eq!(
        by_phone.iter().filter(|k| k.contains("data")).count(),
        CALLS,
        "{by_phone:?}"
    );
    assert_eq!(
        by_tv.iter().filter(|k| k.contains("data")).count(),
        CALLS,
        "{by_tv:?}"
    );
    assert!(
        total <= 2 * CALLS + CALLS / 4 + 2,
        "{total} stanzas for {CALLS} calls: {by_phone:?} {by_tv:?}"
    );
}

/// Every stanza a device sent since the last look, as (short name, serialised).
fn sent_stanzas(dev: &mut Device) -> Vec<(String, String)> {
    let mut all = Vec::new();
    while let Ok(stanza) = dev.tap.try_recv() {
        let xml = String::from_utf8_lossy(&xso::to_vec(&stanza).unwrap()).into_owned();
        all.push((kind_of(stanza), xml));
    }
    all
}

/// A first tunnel between two pinned devices, a call through it (the phone reads the TV's ticket,
/// which follows the handshake), then a clean close; the taps are drained afterwards.
async fn tunnel_seen_once(phone: &mut Device, tv: &mut Device) {
    let first = phone.endpoint.tunnel(&tv.jid).await.expect("first tunnel");
    assert!(!first.resumed(), "nothing to resume from yet");
    echo_ok(phone, tv, "first").await;
    first.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = (sent_kinds(phone), sent_kinds(tv));
}

/// Issue 16, goal 4: a tunnel to a device seen before costs one relayed round trip. The phone's
/// ClientHello (offering the ticket of the first tunnel) rides in its initiate; the TV decides
/// trust from the initiate as always, then answers it right after its accept; the phone's only
/// other stanzas are the accept's result, the IBB open and its last flight, none waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_to_a_device_seen_before_resumes_in_one_round_trip() {
    let (mut phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    tunnel_seen_once(&mut phone, &mut tv).await;

    let again = phone
        .endpoint
        .tunnel(&tv.jid)
        .await
        .expect("resumed tunnel");
    assert!(again.resumed(), "the second tunnel did a full handshake");
    assert_eq!(again.peer_fingerprint(), tv.endpoint.fingerprint());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_tv = tv
        .endpoint
        .existing_tunnel(&phone.jid)
        .expect("the TV's side");
    assert!(at_tv.resumed());
    assert_eq!(at_tv.peer_fingerprint(), phone.endpoint.fingerprint());
    let (by_phone, by_tv) = (sent_stanzas(&mut phone), sent_stanzas(&mut tv));
    let relayed = |sent: &[(String, String)]| -> Vec<String> {
        sent.iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k != "iq-get:pubsub")
            .collect()
    };
    let initiate = by_phone
        .iter()
        .find(|(k, _)| k == "iq-set:session-initiate")
        .expect("an initiate");
    assert!(
        initiate.1.contains("urn:xmpp:tmp:pmn:flight:0"),
        "no ClientHello in the initiate: {}",
        initiate.1
    );
    assert_eq!(
        relayed(&by_phone),
        [
            "iq-set:session-initiate",
            "iq-result",
            "iq-set:open",
            "message:data"
        ],
        "{by_tv:?}"
    );
    // The initiate's result, the accept (saying it took the ClientHello) and the server's
    // flight; the open's result (whenever it comes); the next ticket.
    let mut tv_kinds = relayed(&by_tv);
    assert_eq!(
        tv_kinds[..2],
        ["iq-result", "iq-set:session-accept"],
        "{tv_kinds:?}"
    );
    tv_kinds.sort();
    assert_eq!(
        tv_kinds,
        [
            "iq-result",
            "iq-result",
            "iq-set:session-accept",
            "message:data",
            "message:data"
        ]
    );
    echo_ok(&phone, &tv, "resumed").await;
    // A third one resumes from the ticket the second one brought.
    again.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(phone
        .endpoint
        .tunnel(&tv.jid)
        .await
        .expect("third")
        .resumed());
}

/// A ticket does not outlive the trust in its key: the TV revokes the phone's key, and the
/// phone's next attempt (its ClientHello offering the old ticket in the initiate) is refused
/// from the initiate, before any accept or TLS byte, exactly as a full handshake would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumption_after_the_peer_key_was_revoked_is_refused() {
    let (mut phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let mut tv_events = serve_echo(&mut tv);
    tunnel_seen_once(&mut phone, &mut tv).await;
    while tv_events.try_recv().is_ok() {}
    tv.endpoint
        .revoke(&phone.jid.to_bare(), &phone.endpoint.fingerprint())
        .unwrap();
    let e = phone
        .endpoint
        .tunnel(&tv.jid)
        .await
        .expect_err("a revoked key resumed");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (by_phone, by_tv) = (sent_stanzas(&mut phone), sent_stanzas(&mut tv));
    assert!(
        by_phone
            .iter()
            .any(|(k, xml)| k == "iq-set:session-initiate" && xml.contains("pmn:flight")),
        "the phone did not try to resume: {by_phone:?}"
    );
    let tv_kinds: Vec<&str> = by_tv.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !tv_kinds
            .iter()
            .any(|k| k.contains("session-accept") || k.contains("data")),
        "the TV answered a revoked key: {tv_kinds:?}"
    );
    assert!(matches!(
        next_event(&mut tv_events).await,
        E2eInbound::TunnelRefused { .. }
    ));
    still_online(&phone).await;
    still_online(&tv).await;
}

/// A ClientHello altered on its way in the initiate (here by the phone's own test knob, flipping
/// one bit of it) fails that tunnel with a TLS error on both ends; the next attempt, with no
/// ticket left to offer, is a full handshake that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_client_hello_in_the_initiate_fails_cleanly() {
    let mut phone = device_with("phone", |c| c.hooks.corrupt_flight = true).await;
    let mut tv = device("tv").await;
    pin(&phone, &tv);
    pin(&tv, &phone);
    let mut tv_events = serve_echo(&mut tv);
    tunnel_seen_once(&mut phone, &mut tv).await;
    while tv_events.try_recv().is_ok() {}
    let e = phone
        .endpoint
        .tunnel(&tv.jid)
        .await
        .expect_err("a tampered ClientHello went unnoticed");
    assert!(
        matches!(e.kind(), ErrorKind::Tls | ErrorKind::Protocol),
        "{e}"
    );
    match next_event(&mut tv_events).await {
        E2eInbound::TunnelRefused { error, .. } => {
            assert!(
                matches!(error.kind(), ErrorKind::Tls | ErrorKind::Protocol),
                "{error}"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(tv.endpoint.existing_tunnel(&phone.jid).is_none());
    still_online(&phone).await;
    still_online(&tv).await;
    let next = phone
        .endpoint
        .tunnel(&tv.jid)
        .await
        .expect("a full handshake");
    assert!(!next.resumed());
    echo_ok(&phone, &tv, "after").await;
}

/// The device at the TV's JID comes back with another key (reinstalled, paired again): the
/// phone's ticket and ClientHello were for the old key, so that session cannot authenticate the
/// new one. The phone drops the old key's tickets and opens a fresh session, a full handshake with
/// the key the accept names (which it trusts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_back_with_another_key_gets_a_full_handshake() {
    let (mut phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    tunnel_seen_once(&mut phone, &mut tv).await;
    let (old_key, old_jid) = (tv.endpoint.fingerprint(), tv.jid.clone());
    tv.session.close().await;
    drop(tv);
    // The same full JID, a new key.
    let mut config = session_config(&HOME, "tv");
    config.jid = old_jid.clone();
    let mut tv = device_on(config, "tv", |_| {}).await;
    assert_eq!(tv.jid, old_jid);
    assert_ne!(tv.endpoint.fingerprint(), old_key);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    let _ = sent_kinds(&mut phone);
    let tunnel = phone.endpoint.tunnel(&tv.jid).await.expect("tunnel");
    assert!(!tunnel.resumed());
    assert_eq!(tunnel.peer_fingerprint(), tv.endpoint.fingerprint());
    echo_ok(&phone, &tv, "new key").await;
    let initiates = sent_kinds(&mut phone)
        .into_iter()
        .filter(|k| k == "iq-set:session-initiate")
        .count();
    assert_eq!(
        initiates, 2,
        "one resumption attempt, then one full handshake"
    );
}

/// Blocks in messages have no acknowledgement each, but the paced iqs keep a fast sender within
/// what the receiver buffers: a burst far beyond the receiver's per-stream buffer arrives whole,
/// in order, and the tunnel stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_the_tunnel_is_paced_not_dropped() {
    let (phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let tunnel = phone.endpoint.tunnel(&tv.jid).await.expect("tunnel");
    const BURST: usize = 200;
    // ~3 kB each: about one IBB block per stanza, three times the 64 blocks a stream buffers.
    let filler = "x".repeat(3000);
    for i in 0..BURST {
        let mut m = xmpp_parsers::message::Message::new(Some(Jid::from(tv.jid.clone())));
        m.bodies
            .insert(Default::default(), format!("{i:04} {filler}"));
        // Within the tunnel's outbound bound (256): refused sends would fail the test.
        tunnel.send(m).expect("queued");
    }
    let mut next = 0;
    while next < BURST {
        match next_event_of(&mut tv.events).await {
            E2eInbound::Stanza(stanza) => {
                if let Stanza::Message(m) = *stanza {
                    let body = m.bodies.values().next().cloned().unwrap_or_default();
                    assert!(
                        body.starts_with(&format!("{next:04} ")),
                        "out of order: {next}"
                    );
                    next += 1;
                }
            }
            E2eInbound::TunnelUp { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(tunnel.is_up());
    assert_eq!(tv.endpoint.stats().ibb_stream_overflows, 0);
}

async fn next_event_of(rx: &mut mpsc::Receiver<E2eInbound>) -> E2eInbound {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("event in time")
        .expect("event channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_and_the_connection_stays_up() {
    let (phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv); // the phone trusts the TV, the TV does not know the phone
    let mut tv_events = serve_echo(&mut tv);
    let err = phone.endpoint.tunnel(&tv.jid).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    match next_event(&mut tv_events).await {
        E2eInbound::TunnelRefused { peer, error } => {
            assert_eq!(peer, phone.jid);
            assert_eq!(error.kind(), ErrorKind::Forbidden);
        }
        other => panic!("{other:?}"),
    }
    // The other way round: the phone does not trust a device it was never paired with.
    let (stranger_tv, _) = (device("tv2").await, ());
    let err = phone.endpoint.tunnel(&stranger_tv.jid).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    still_online(&phone).await;
    still_online(&tv).await;
    pin(&tv, &phone);
    echo_ok(&phone, &tv, "now trusted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_loses_its_tunnel_and_is_refused_afterwards() {
    let (phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let mut tv_events = serve_echo(&mut tv);
    echo_ok(&phone, &tv, "before").await;
    let tunnel = phone.endpoint.existing_tunnel(&tv.jid).unwrap();
    assert!(tv
        .endpoint
        .revoke(&phone.jid.to_bare(), &phone.endpoint.fingerprint())
        .unwrap());
    // The TV tears its end down; the phone sees its tunnel end.
    tokio::time::timeout(T, tunnel.closed()).await.unwrap();
    loop {
        if let E2eInbound::TunnelDown { reason, .. } = next_event(&mut tv_events).await {
            assert_eq!(reason.unwrap().kind(), ErrorKind::Forbidden);
            break;
        }
    }
    let err = phone
        .endpoint
        .request(probe(&tv.jid, "after"), T)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_substituted_key_fails_the_handshake() {
    // Mallory (a malicious relay or device) advertises the TV's fingerprint in Jingle but cannot
    // hold the TV's private key, so the TLS handshake must fail.
    let (phone, tv) = (device("phone").await, device("tv").await);
    let tv_fp = tv.endpoint.fingerprint();
    let mut mallory = device_with("mallory", |c| c.advertise_fingerprint = Some(tv_fp)).await;
    mallory
        .endpoint
        .trust()
        .pin(
            &phone.jid.to_bare(),
            &phone.endpoint.fingerprint(),
            TrustSource::Manual,
        )
        .unwrap();
    pin(&phone, &tv);
    // The phone trusts "the TV's key" on any HOME resource (same bare JID).
    let mut mallory_events = serve_echo(&mut mallory);
    let err = phone.endpoint.tunnel(&mallory.jid).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.message().contains("not the pinned one"), "{err}");
    match next_event(&mut mallory_events).await {
        E2eInbound::TunnelRefused { error, .. } => assert_eq!(error.kind(), ErrorKind::Tls),
        other => panic!("{other:?}"),
    }
    assert!(phone.endpoint.existing_tunnel(&mallory.jid).is_none());
    still_online(&phone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_tunnel_bytes_fail_the_tunnel() {
    // Block 1 is the phone's second TLS flight (certificate, signature, Finished).
    let phone = device_with("phone", |c| c.hooks.corrupt_block = Some(1)).await;
    let mut tv = device("tv").await;
    pin(&phone, &tv);
    pin(&tv, &phone);
    let mut tv_events = serve_echo(&mut tv);
    let result = phone.endpoint.request(probe(&tv.jid, "x"), T).await;
    assert!(result.is_err(), "altered bytes went unnoticed");
    match next_event(&mut tv_events).await {
        E2eInbound::TunnelRefused { error, .. } => assert_eq!(error.kind(), ErrorKind::Tls),
        other => panic!("{other:?}"),
    }
    still_online(&phone).await;
    still_online(&tv).await;
}

fn ibb_sid_of(sent: &str) -> String {
    let start = sent.find("<open ").expect("IBB open was sent");
    let rest = &sent[start..];
    let at = rest
        .find("sid='")
        .map(|i| i + 5)
        .or_else(|| rest.find("sid=\"").map(|i| i + 5));
    let at = at.expect("sid attribute");
    rest[at..at + 16].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_and_malformed_stanzas_get_clean_errors_and_nothing_breaks() {
    let (mut phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    echo_ok(&phone, &tv, "up").await;
    let sid = ibb_sid_of(&drain_tap(&mut phone));

    let (stranger, _rx) = Session::connect(session_config(&STRANGER, "mallory"))
        .await
        .unwrap();
    let to = Some(Jid::from(tv.jid.clone()));
    let send = |xml: String| {
        let payload: Element = xml.parse().unwrap();
        stranger.request(
            Iq::Set {
                from: None,
                to: to.clone(),
                id: String::new(),
                payload,
            },
            T,
        )
    };
    let refused = |reply: IqReply| matches!(reply, IqReply::Error(_));
    // A third party injects data into the live stream (it learnt the sid): refused.
    let inject =
        format!("<data xmlns='http://jabber.org/protocol/ibb' sid='{sid}' seq='5'>AAAA</data>");
    assert!(refused(send(inject).await.unwrap()));
    // Malformed IBB and Jingle.
    for xml in [
        "<data xmlns='http://jabber.org/protocol/ibb' seq='0'>AAAA</data>".to_owned(),
        "<data xmlns='http://jabber.org/protocol/ibb' sid='nope' seq='0'>AAAA</data>".to_owned(),
        "<data xmlns='http://jabber.org/protocol/ibb' sid='nope' seq='0'>***</data>".to_owned(),
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate'/>".to_owned(),
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='x'/>".to_owned(),
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='x'><content creator='initiator' name='c'><description xmlns='urn:xmpp:jingle:apps:xmlstream:0'/><transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size='4096' sid='s'/></content><security xmlns='urn:xmpp:jingle:security:xtls:1'><fingerprint hash='sha-1'>00</fingerprint><method name='x509'/></security></jingle>".to_owned(),
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='nope'/>".to_owned(),
        "<jingle xmlns='urn:xmpp:jingle:1' action='transport-replace' sid='x'/>".to_owned(),
    ] {
        assert!(refused(send(xml.clone()).await.unwrap()), "accepted: {xml}");
    }
    // The real tunnel and both connections are unharmed.
    echo_ok(&phone, &tv, "still up").await;
    still_online(&tv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_with_the_shown_code_pins_both_keys() {
    let (phone, mut tv) = (device("phone").await, device("tv").await);
    let mut tv_events = serve_echo(&mut tv);
    // Not armed: refused.
    let err = phone.endpoint.pair(&tv.jid, "123456").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    // The device that would show the code hears of the attempt as a failed pairing.
    assert!(matches!(
        next_event(&mut tv_events).await,
        E2eInbound::PairingFailed { .. }
    ));

    let code = tv.endpoint.start_pairing().unwrap();
    let tunnel = phone.endpoint.pair(&tv.jid, &code).await.expect("paired");
    assert_eq!(tunnel.peer_fingerprint(), tv.endpoint.fingerprint());
    assert_eq!(
        phone
            .endpoint
            .trust()
            .source(&tv.jid.to_bare(), &tv.endpoint.fingerprint()),
        Some(TrustSource::Paired)
    );
    match next_event(&mut tv_events).await {
        E2eInbound::Paired { peer, fingerprint } => {
            assert_eq!(peer, phone.jid);
            assert_eq!(fingerprint, phone.endpoint.fingerprint());
        }
        other => panic!("{other:?}"),
    }
    assert!(tv
        .endpoint
        .trust()
        .is_trusted(&phone.jid.to_bare(), &phone.endpoint.fingerprint()));
    // The pairing tunnel carries control traffic at once…
    echo_ok(&phone, &tv, "paired").await;
    // …and later tunnels use the pinned keys (method x509).
    tunnel.close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    echo_ok(&phone, &tv, "pinned").await;

    // Replay: the code was single-use.
    let err = phone.endpoint.pair(&tv.jid, &code).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_are_refused_then_pairing_locks() {
    let (phone, mut tv) = (device("phone").await, device("tv").await);
    let _tv_events = serve_echo(&mut tv);
    tv.endpoint.start_pairing_with("424242").unwrap();
    for attempt in 0..5 {
        let err = phone.endpoint.pair(&tv.jid, "000000").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden, "attempt {attempt}: {err}");
        assert!(!phone
            .endpoint
            .trust()
            .is_trusted(&tv.jid.to_bare(), &tv.endpoint.fingerprint()));
    }
    // This phone is locked out now, even with the right code.
    let err = phone.endpoint.pair(&tv.jid, "424242").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    assert!(err.message().contains("locked"), "{err}");
    assert!(tv.endpoint.trust().list().is_empty());
    still_online(&phone).await;
    still_online(&tv).await;
    // Its wrong codes did not lock out another device of the household: the tablet pairs with
    // the same code, and the TV can show a new code at once.
    let tablet = device("tablet").await;
    tablet
        .endpoint
        .pair(&tv.jid, "424242")
        .await
        .expect("another device pairs with the same code");
    assert!(tv
        .endpoint
        .trust()
        .is_trusted(&tablet.jid.to_bare(), &tablet.endpoint.fingerprint()));
    assert!(tv.endpoint.start_pairing().is_ok());
    let err = phone.endpoint.pair(&tv.jid, "424242").await.unwrap_err();
    assert!(err.message().contains("locked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_attested_key_is_trusted_via_pep_and_revocation_removes_it() {
    use pmn::core::e2e::pubkey;
    let (phone, mut tv, laptop) = (
        device("phone").await,
        device("tv").await,
        device("laptop").await,
    );
    let home = phone.jid.to_bare();
    // The phone (owner) and the TV know each other; the phone has just paired the laptop.
    pin(&phone, &tv);
    pin(&tv, &phone);
    pin(&phone, &laptop);
    pin(&laptop, &tv);
    let _tv_events = serve_echo(&mut tv);
    for dev in [&phone, &tv, &laptop] {
        let identity = dev_identity(dev);
        pubkey::publish_own(&dev.session, &identity, T)
            .await
            .expect("publish");
    }
    // The laptop is not trusted by the TV yet.
    let err = laptop.endpoint.tunnel(&tv.jid).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);

    // The phone attests the laptop's key.
    let keys = pubkey::fetch(&phone.session, &home, T).await.unwrap();
    let laptop_key = keys
        .iter()
        .find(|k| k.fingerprint == laptop.endpoint.fingerprint())
        .expect("laptop key published");
    let attestation = pubkey::attest(&dev_identity(&phone), &home, &laptop_key.spki, 0).unwrap();
    pubkey::publish(
        &phone.session,
        dev_identity(&laptop).certificate(),
        vec![attestation],
        T,
    )
    .await
    .unwrap();
    let outcome = pubkey::sync_attested(&tv.session, tv.endpoint.trust(), &home, T)
        .await
        .unwrap();
    assert_eq!(outcome.pinned, vec![laptop.endpoint.fingerprint()]);
    echo_ok(&laptop, &tv, "attested").await;

    // Revocation: the owner retracts the laptop's item; the TV drops the key and its tunnel.
    pubkey::retract(&phone.session, &laptop.endpoint.fingerprint(), T)
        .await
        .unwrap();
    let outcome = pubkey::sync_attested(&tv.session, tv.endpoint.trust(), &home, T)
        .await
        .unwrap();
    assert_eq!(outcome.revoked, vec![laptop.endpoint.fingerprint()]);
    tv.endpoint
        .revoke(&home, &laptop.endpoint.fingerprint())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = laptop
        .endpoint
        .request(probe(&tv.jid, "revoked"), T)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
}

/// The responder accepts a key it trusts so far without waiting for the network's published keys
/// (the read overlaps the accept's round trip), but no TLS byte flows before that read confirms
/// the key: an attestation the owner withdrew meanwhile ends the session before the handshake,
/// and the opener hears the same refusal as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_withdrawn_since_the_last_read_is_refused_before_any_tls_byte() {
    use pmn::core::e2e::pubkey;
    let (phone, mut tv, mut laptop) = (
        device("phone").await,
        device("tv").await,
        device("laptop").await,
    );
    let home = phone.jid.to_bare();
    pin(&phone, &tv);
    pin(&tv, &phone);
    pin(&phone, &laptop);
    pin(&laptop, &tv);
    let mut tv_events = serve_echo(&mut tv);
    for dev in [&phone, &tv, &laptop] {
        pubkey::publish_own(&dev.session, &dev_identity(dev), T)
            .await
            .expect("publish");
    }
    // The owner attests the laptop; the TV reads it and pins the laptop's key (attested).
    let keys = pubkey::fetch(&phone.session, &home, T).await.unwrap();
    let laptop_key = keys
        .iter()
        .find(|k| k.fingerprint == laptop.endpoint.fingerprint())
        .expect("laptop key published");
    let attestation = pubkey::attest(&dev_identity(&phone), &home, &laptop_key.spki, 0).unwrap();
    pubkey::publish(
        &phone.session,
        dev_identity(&laptop).certificate(),
        vec![attestation],
        T,
    )
    .await
    .unwrap();
    pubkey::sync_attested(&tv.session, tv.endpoint.trust(), &home, T)
        .await
        .unwrap();
    echo_ok(&laptop, &tv, "attested").await;
    laptop.endpoint.existing_tunnel(&tv.jid).unwrap().close();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tv
        .endpoint
        .trust()
        .is_trusted(&home, &laptop.endpoint.fingerprint()));

    // The owner withdraws the attestation; the TV has not read the keys since.
    pubkey::retract(&phone.session, &laptop.endpoint.fingerprint(), T)
        .await
        .unwrap();
    let _ = (drain_tap(&mut tv), drain_tap(&mut laptop));
    while tv_events.try_recv().is_ok() {}
    let err = laptop.endpoint.tunnel(&tv.jid).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    assert!(err.message().contains("neither paired"), "{err}");
    // The TV accepted, read, refused: not one TLS byte of its own, and it reported why.
    let tv_sent = drain_tap(&mut tv);
    assert!(tv_sent.contains("session-accept"), "{tv_sent}");
    assert!(!tv_sent.contains("<data "), "{tv_sent}");
    assert!(!tv
        .endpoint
        .trust()
        .is_trusted(&home, &laptop.endpoint.fingerprint()));
    loop {
        match next_event(&mut tv_events).await {
            E2eInbound::TunnelRefused { peer, error } if peer == laptop.jid => {
                assert_eq!(error.kind(), ErrorKind::Forbidden, "{error}");
                break;
            }
            _ => {}
        }
    }
    assert!(laptop.endpoint.existing_tunnel(&tv.jid).is_none());
    still_online(&tv).await;
}

/// The identity of a test device (the software store keeps the key; the certificate is re-made).
fn dev_identity(dev: &Device) -> DeviceIdentity {
    let name = dev
        .jid
        .resource()
        .as_str()
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let store = Arc::new(SoftwareKeyStore::open(dev._dir.path().join("keys")).unwrap());
    DeviceIdentity::load_or_generate(store, "tls", &name).unwrap()
}

fn sid_after(sent: &str, marker: &str) -> String {
    let start = sent.find(marker).expect("marker was sent");
    let rest = &sent[start..];
    let at = rest
        .find("sid='")
        .or_else(|| rest.find("sid=\""))
        .map(|i| i + 5)
        .expect("sid attribute");
    rest[at..at + 16].to_owned()
}

/// A raw Jingle session-initiate for the XTLS tunnel, as a peer that skips our own checks would
/// send it.
fn initiate(
    to: &FullJid,
    sid: &str,
    ibb_sid: &str,
    fingerprint: &DeviceFingerprint,
    method: &str,
) -> Iq {
    let hex = fingerprint.to_hex();
    let xml = format!(
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='{sid}'>\
         <content creator='initiator' name='xmlstream' senders='both'>\
         <description xmlns='urn:xmpp:jingle:apps:xmlstream:0'/>\
         <transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size='4096' sid='{ibb_sid}' stanza='iq'/>\
         </content>\
         <security xmlns='urn:xmpp:jingle:security:xtls:1'><fingerprint hash='sha-256'>{hex}</fingerprint>\
         <method name='{method}'/></security></jingle>"
    );
    Iq::Set {
        from: None,
        to: Some(Jid::from(to.clone())),
        id: String::new(),
        payload: xml.parse().unwrap(),
    }
}

fn condition(reply: IqReply) -> Option<DefinedCondition> {
    match reply {
        IqReply::Error(e) => Some(e.defined_condition),
        IqReply::Result(_) => None,
    }
}

/// A bare session that sends what a test tells it and never answers anything.
async fn raw(account: &pmn_testkit::Account, name: &str) -> (Session, mpsc::Receiver<Inbound>) {
    Session::connect(session_config(account, name))
        .await
        .expect("raw session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_pairing_attempts_are_refused_and_leave_the_owner_phone_its_tries() {
    use pmn::core::e2e::gate::MAX_ATTEMPTS;
    let (phone, mut tv) = (device("phone").await, device("tv").await);
    let mut tv_events = serve_echo(&mut tv);
    tv.endpoint.start_pairing_with("424242").unwrap();

    // A guest's own endpoint does not even try: guests get access from the owner, not a code.
    let guest = device_on(session_config(&STRANGER, "guest"), "guest", |_| {}).await;
    let err = guest.endpoint.pair(&tv.jid, "424242").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    assert!(
        err.message().contains("not a device of this network"),
        "{err}"
    );

    // A stranger that skips that check is refused by the TV before its gate, however often.
    let (stranger, _rx) = raw(&STRANGER, "mallory").await;
    for i in 0..(2 * MAX_ATTEMPTS) {
        let iq = initiate(
            &tv.jid,
            &format!("j{i}"),
            &format!("i{i}"),
            &DeviceFingerprint([9; 32]),
            "pake",
        );
        let reply = stranger.request(iq, T).await.unwrap();
        assert_eq!(condition(reply), Some(DefinedCondition::Forbidden));
    }
    assert_eq!(
        tv.endpoint.stats().pairing_strangers_refused,
        u64::from(2 * MAX_ATTEMPTS)
    );

    // The owner's phone still has every try: all but one wrong, then the right code.
    for attempt in 0..(MAX_ATTEMPTS - 1) {
        let err = phone.endpoint.pair(&tv.jid, "000000").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden, "attempt {attempt}: {err}");
        assert!(
            !err.message().contains("locked"),
            "attempt {attempt}: {err}"
        );
    }
    phone
        .endpoint
        .pair(&tv.jid, "424242")
        .await
        .expect("the phone pairs after the stranger's attempts");
    // The TV's screen heard of the phone's wrong codes only, never of the stranger.
    while let Ok(event) = tv_events.try_recv() {
        if let E2eInbound::PairingFailed { peer, .. } = event {
            assert_eq!(peer, phone.jid);
        }
    }
    still_online(&tv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_live_sid_neither_hijacks_nor_kills_the_owners_stream() {
    let (mut phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    echo_ok(&phone, &tv, "up").await;
    let tunnel = phone.endpoint.existing_tunnel(&tv.jid).expect("tunnel up");
    let sent = drain_tap(&mut phone);
    let (jingle_sid, ibb_sid) = (sid_after(&sent, "session-initiate"), ibb_sid_of(&sent));

    // Another device of the household reuses both live sids while pairing is armed (so its
    // initiate passes the trust decision): it gets a session of its own, the phone's stays.
    tv.endpoint.start_pairing_with("424242").unwrap();
    let (mallory, _rx) = raw(&HOME, "mallory").await;
    let reply = mallory
        .request(
            initiate(
                &tv.jid,
                &jingle_sid,
                &ibb_sid,
                &DeviceFingerprint([9; 32]),
                "pake",
            ),
            T,
        )
        .await
        .unwrap();
    assert_eq!(condition(reply), None, "accepted as its own session");
    let ibb = |xml: String| {
        mallory.request(
            Iq::Set {
                from: None,
                to: Some(Jid::from(tv.jid.clone())),
                id: String::new(),
                payload: xml.parse().unwrap(),
            },
            T,
        )
    };
    // Its blocks and its close on that sid reach only its own stream, and its terminate with the
    // phone's Jingle sid ends only its own session.
    let _ = ibb(format!(
        "<data xmlns='http://jabber.org/protocol/ibb' sid='{ibb_sid}' seq='0'>AAAA</data>"
    ))
    .await
    .unwrap();
    let _ = ibb(format!(
        "<close xmlns='http://jabber.org/protocol/ibb' sid='{ibb_sid}'/>"
    ))
    .await
    .unwrap();
    let reply = ibb(format!(
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='{jingle_sid}'/>"
    ))
    .await
    .unwrap();
    assert_eq!(condition(reply), None, "its own half-open session, ended");

    // The phone itself cannot register its live IBB sid twice either: conflict, stream kept.
    let reply = phone
        .session
        .request(
            initiate(
                &tv.jid,
                "another-session1",
                &ibb_sid,
                &phone.endpoint.fingerprint(),
                "x509",
            ),
            T,
        )
        .await
        .unwrap();
    assert_eq!(condition(reply), Some(DefinedCondition::Conflict));
    assert_eq!(tv.endpoint.stats().ibb_sid_conflicts, 1);

    // The owner's stream is untouched: the same tunnel still carries calls.
    for i in 0..3 {
        echo_ok(&phone, &tv, &format!("still up {i}")).await;
    }
    assert!(tunnel.is_up(), "the phone's tunnel survived");
    assert!(phone
        .endpoint
        .existing_tunnel(&tv.jid)
        .is_some_and(|t| t.peer_fingerprint() == tv.endpoint.fingerprint()));
    still_online(&tv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_household_keeps_tunnelling_while_others_hit_the_half_open_bounds() {
    let lifetime = Duration::from_secs(2);
    let mut tv = device_with("tv", |c| {
        c.limits = E2eLimits {
            half_open_total: 4,
            half_open_foreign: 1,
            half_open_per_peer: 2,
            pairing_sessions: 2,
            half_open_lifetime: lifetime,
            ..E2eLimits::default()
        };
        // A guest of the stranger network is admitted (as a grant would), so its sessions get
        // past the trust decision and hold foreign slots.
        c.admission = Some(Arc::new(|jid, _| jid.to_string() == STRANGER.jid));
    })
    .await;
    let phone = device("phone").await;
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    tv.endpoint.start_pairing_with("424242").unwrap();
    let (mallory, _m) = raw(&HOME, "mallory").await;
    let (mallory2, _m2) = raw(&HOME, "mallory2").await;
    let (guest, _g) = raw(&STRANGER, "guest").await;
    let ask = |s: &Session, sid: &str, method: &str| {
        let iq = initiate(
            &tv.jid,
            sid,
            &format!("{sid}-ibb"),
            &DeviceFingerprint([9; 32]),
            method,
        );
        let s = s.clone();
        async move { condition(s.request(iq, T).await.unwrap()) }
    };
    // Nobody answers the TV's session-accepts, so every accepted initiate stays half-open.
    assert_eq!(ask(&mallory, "m1", "pake").await, None);
    assert_eq!(ask(&mallory, "m2", "pake").await, None);
    let busy = Some(DefinedCondition::ResourceConstraint);
    assert_eq!(ask(&mallory, "m3", "pake").await, busy, "per peer");
    assert_eq!(ask(&mallory2, "n1", "pake").await, busy, "pairing sessions");
    assert_eq!(ask(&guest, "g1", "x509").await, None);
    assert_eq!(ask(&guest, "g2", "x509").await, busy, "foreign peers");
    let stats = tv.endpoint.stats();
    assert_eq!(stats.half_open_refused, 2, "{stats:?}");
    assert_eq!(stats.pairing_sessions_refused, 1, "{stats:?}");

    // The household's own tunnel still gets its slot, and works.
    echo_ok(&phone, &tv, "household").await;

    // A peer that gives up (session-terminate) frees its slot at once, not at the lifetime.
    let end_m1: Element =
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='m1'><reason><cancel/></reason></jingle>"
            .parse()
            .unwrap();
    let reply = mallory
        .request(
            Iq::Set {
                from: None,
                to: Some(Jid::from(tv.jid.clone())),
                id: String::new(),
                payload: end_m1,
            },
            T,
        )
        .await
        .unwrap();
    assert_eq!(condition(reply), None, "the half-open session was known");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ask(&mallory, "m5", "pake").await,
        None,
        "its slot came back"
    );

    // Held sessions expire after their lifetime and free their slots.
    tokio::time::sleep(lifetime + Duration::from_secs(1)).await;
    // m2, m5 and g1 (m1 was ended by its peer).
    assert_eq!(tv.endpoint.stats().half_open_expired, 3);
    assert_eq!(ask(&mallory, "m4", "pake").await, None);
    assert_eq!(ask(&guest, "g3", "x509").await, None);
    echo_ok(&phone, &tv, "still").await;
    still_online(&tv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_being_opened_are_bounded_and_the_bound_frees_up() {
    let phone = device_with("phone", |c| c.limits.opening_total = 1).await;
    let mut tv = device("tv").await;
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    // A peer that never answers Jingle keeps the one opening place busy until its timeout.
    let (ghost, _g) = raw(&HOME, "ghost").await;
    let ghost_jid = ghost.jid().unwrap();
    let opener = phone.endpoint.clone();
    let stuck = tokio::spawn(async move { opener.tunnel(&ghost_jid).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let err = phone.endpoint.tunnel(&tv.jid).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ProviderUnavailable, "{err}");
    assert!(err.message().contains("being opened"), "{err}");
    assert_eq!(phone.endpoint.stats().opening_refused, 1);
    assert!(stuck.await.unwrap().is_err());
    // Its place is free again: the household's tunnel opens.
    echo_ok(&phone, &tv, "after").await;
}

/// Like [`serve_echo`], but a probe whose text starts with "hold" is answered only after `delay`
/// (a call the provider takes its time over).
fn serve_echo_slowly(dev: &mut Device, delay: Duration) {
    let mut events = std::mem::replace(&mut dev.events, mpsc::channel(1).1);
    let endpoint = dev.endpoint.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let E2eInbound::Stanza(stanza) = event {
                if let Stanza::Iq(Iq::Set {
                    from, id, payload, ..
                }) = *stanza
                {
                    let endpoint = endpoint.clone();
                    tokio::spawn(async move {
                        if payload.text().starts_with("hold") {
                            tokio::time::sleep(delay).await;
                        }
                        let _ = endpoint.send(Iq::Result {
                            from: None,
                            to: from,
                            id,
                            payload: Some(payload),
                        });
                    });
                }
            }
        }
    });
}

async fn wait_online(dev: &Device, within: Duration) {
    tokio::time::timeout(within, async {
        while !matches!(dev.session.state(), ConnectionState::Online { .. }) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the session came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_calls_survive_a_resume_and_fail_at_once_on_a_session_reset() {
    let relay = common::Relay::start(common::server().port()).await;
    let mut config = session_config(&HOME, "phone");
    config.server = pmn::core::session::ServerAddress::HostPort("127.0.0.1".into(), relay.port);
    let phone = device_on(config, "phone", |_| {}).await;
    let mut tv = device("tv").await;
    pin(&phone, &tv);
    pin(&tv, &phone);
    serve_echo_slowly(&mut tv, Duration::from_secs(2));
    echo_ok(&phone, &tv, "up").await;
    let tunnel = phone.endpoint.existing_tunnel(&tv.jid).expect("tunnel up");
    let long = Duration::from_secs(60);

    // A short outage that XEP-0198 resumes: nothing was lost, the call in flight is answered.
    let p = phone.endpoint.clone();
    let call = tokio::spawn({
        let to = tv.jid.clone();
        async move { p.request(probe(&to, "hold-resume"), long).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.reopen();
    let answered = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("answered after the resume")
        .unwrap();
    assert!(
        matches!(&answered, Ok(IqReply::Result(Some(p))) if p.text() == "hold-resume"),
        "{answered:?}"
    );
    assert!(tunnel.is_up(), "a resume keeps the tunnel");
    assert_eq!(phone.endpoint.stats().reset_failures, 0);

    // An outage longer than the server keeps our session (10 s in the test config): the new
    // stream is not a resume, and the call waiting in the tunnel fails at once, not in 60 s.
    let p = phone.endpoint.clone();
    let started = std::time::Instant::now();
    let call = tokio::spawn({
        let to = tv.jid.clone();
        async move { p.request(probe(&to, "hold-reset"), long).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.cut();
    tokio::time::sleep(Duration::from_secs(12)).await;
    relay.reopen();
    wait_online(&phone, Duration::from_secs(40)).await;
    let failed = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("the call failed as soon as the session was back")
        .unwrap();
    let err = failed.expect_err("a reset loses the call");
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert!(started.elapsed() < long, "it did not wait for its timeout");
    assert!(!tunnel.is_up());
    assert_eq!(phone.endpoint.stats().reset_failures, 1);
    // The next call opens a fresh tunnel.
    echo_ok(&phone, &tv, "fresh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_parked_in_a_half_open_session_is_bounded_and_the_household_keeps_working() {
    use pmn::core::e2e::ibb::SETUP_BYTES;
    let (phone, mut tv) = (device("phone").await, device("tv").await);
    pin(&phone, &tv);
    pin(&tv, &phone);
    let _tv_events = serve_echo(&mut tv);
    tv.endpoint.start_pairing_with("424242").unwrap();
    // A device of the household opens a pairing session, never completes it, and pushes data
    // into its stream that nobody will read.
    let (mallory, _m) = raw(&HOME, "mallory").await;
    let reply = mallory
        .request(
            initiate(
                &tv.jid,
                "park",
                "park-ibb",
                &DeviceFingerprint([9; 32]),
                "pake",
            ),
            T,
        )
        .await
        .unwrap();
    assert_eq!(condition(reply), None);
    let block = base64_block(4096);
    let mut refused_at = None;
    for seq in 0..(SETUP_BYTES / 4096 + 4) {
        let payload: Element = format!(
            "<data xmlns='http://jabber.org/protocol/ibb' sid='park-ibb' seq='{seq}'>{block}</data>"
        )
        .parse()
        .unwrap();
        let iq = Iq::Set {
            from: None,
            to: Some(Jid::from(tv.jid.clone())),
            id: String::new(),
            payload,
        };
        if let Some(c) = condition(mallory.request(iq, T).await.unwrap()) {
            refused_at = Some((seq, c));
            break;
        }
    }
    assert_eq!(
        refused_at,
        Some((SETUP_BYTES / 4096, DefinedCondition::PolicyViolation))
    );
    assert_eq!(tv.endpoint.stats().ibb_setup_overflows, 1);
    // Meanwhile the household's tunnel carries a payload of several blocks.
    echo_ok(&phone, &tv, &"h".repeat(20_000)).await;
    still_online(&tv).await;
}

fn base64_block(len: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(vec![0x5a; len])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_never_pins_its_own_key_from_an_owners_attestation() {
    use pmn::core::e2e::pubkey;
    let (phone, tv) = (device("phone").await, device("tv").await);
    let home = phone.jid.to_bare();
    let tv_fp = tv.endpoint.fingerprint();
    pin(&tv, &phone); // the TV trusts the phone first-hand (paired)
    for dev in [&phone, &tv] {
        pubkey::publish_own(&dev.session, &dev_identity(dev), T)
            .await
            .expect("publish");
    }
    // The phone attests the TV's key, as it does after pairing with it.
    phone.endpoint.attest(&tv_fp).await.expect("attest");
    let outcome =
        pubkey::sync_attested_except(&tv.session, tv.endpoint.trust(), &home, Some(&tv_fp), T)
            .await
            .unwrap();
    assert!(!outcome.pinned.contains(&tv_fp), "{outcome:?}");
    assert!(!tv.endpoint.trust().is_trusted(&home, &tv_fp));
    // Without the exception the TV would trust itself as a peer; the next sync with it undoes that.
    let outcome = pubkey::sync_attested(&tv.session, tv.endpoint.trust(), &home, T)
        .await
        .unwrap();
    assert!(outcome.pinned.contains(&tv_fp), "{outcome:?}");
    let outcome =
        pubkey::sync_attested_except(&tv.session, tv.endpoint.trust(), &home, Some(&tv_fp), T)
            .await
            .unwrap();
    assert!(outcome.revoked.contains(&tv_fp), "{outcome:?}");
    assert!(!tv.endpoint.trust().is_trusted(&home, &tv_fp));
}
