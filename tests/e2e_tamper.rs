//! In-path attacks by the *server* on the end-to-end tunnel (issue 5, "attacks that must fail").
//!
//! Unlike the in-client knobs of `e2e_tunnel.rs` (`hooks.corrupt_block`, `advertise_fingerprint`),
//! here the devices are honest and Prosody itself is malicious: on the virtual host `tamper.test`,
//! `tests/prosody/modules/mod_pmn_tamper.lua` rewrites the Jingle and IBB iqs that two resources of
//! one account exchange, chosen by the account (see pmn-testkit's `TAMPER_*`). For each attack a
//! provider (simulated player) and a controller run with the tunnel required and both keys pinned,
//! and the test proves: the call fails with a typed error, the failure is reported on both ends,
//! no RPC ever crossed the server in clear, the server really did tamper (its log), and the
//! session is still online afterwards. `clean@tamper.test`, on the same malicious host but left
//! alone, is the control: everything works there.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{discover, server, session_config};
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::e2e::{E2eSettings, TrustSource, TrustStore, TunnelFailure};
use pmn::core::error::{Error, ErrorKind};
use pmn::core::identity::{DeviceFingerprint, DeviceIdentity};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{PlaybackState, PlayerService, SimulatedPlayer};
use pmn::core::session::{ConnectionState, IqReply, Session, SessionConfig};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::{
    Account, NS_TAMPER, TAMPER_CLEAN, TAMPER_FLIP, TAMPER_HOST, TAMPER_LATEFLIP, TAMPER_SWAP,
};
use tokio::sync::{broadcast, mpsc};
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::minidom::Element;

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// What the roles report: every tunnel that fails or is refused (`tunnel_failures`).

/// Waits (bounded) for the next failure of a tunnel with `peer`; returns its error.
async fn next_failure(failures: &mut broadcast::Receiver<TunnelFailure>, peer: &FullJid) -> Error {
    tokio::time::timeout(T, async {
        loop {
            match failures.recv().await {
                Ok(f) if &f.peer == peer => return f.error,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the role ended"),
            }
        }
    })
    .await
    .expect("a tunnel failure was reported")
}

/// Lines of Prosody's log in which mod_pmn_tamper says it changed a stanza from or to `resource`.
fn tampered(resource: &FullJid) -> Vec<String> {
    let resource = resource.to_string();
    server()
        .log()
        .lines()
        .filter(|l| l.contains("pmn_tamper[") && l.contains(&resource))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// One household on one account: a TV (provider) and a phone (controller), tunnel required, keys
// pinned both ways, every outbound stanza of both copied.

struct Keys {
    identity: DeviceIdentity,
    trust: Arc<TrustStore>,
    _dir: tempfile::TempDir,
}

fn keys(name: &str) -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SoftwareKeyStore::open(dir.path().join("keys")).expect("key store"));
    let identity = DeviceIdentity::load_or_generate(store, "tls", name).expect("identity");
    Keys {
        identity,
        trust: Arc::new(TrustStore::in_memory()),
        _dir: dir,
    }
}

fn tapped(account: &Account, device: &str) -> (SessionConfig, mpsc::UnboundedReceiver<Stanza>) {
    let mut config = session_config(account, device);
    let (tx, rx) = mpsc::unbounded_channel();
    config.outbound_tap = Some(tx);
    (config, rx)
}

struct Household {
    provider: Provider,
    controller: Controller,
    tv: FullJid,
    phone: FullJid,
    tv_fingerprint: DeviceFingerprint,
    tv_tap: mpsc::UnboundedReceiver<Stanza>,
    phone_tap: mpsc::UnboundedReceiver<Stanza>,
    /// What the TV reports of failed or refused tunnels.
    tv_failures: broadcast::Receiver<TunnelFailure>,
    _keys: (Keys, Keys),
}

async fn household(account: &Account) -> Household {
    let (tv_keys, phone_keys) = (keys("tv"), keys("phone"));
    let network: BareJid = account.jid.parse().expect("bare JID");
    tv_keys
        .trust
        .pin(
            &network,
            &phone_keys.identity.fingerprint(),
            TrustSource::Manual,
        )
        .expect("pin the phone");
    phone_keys
        .trust
        .pin(
            &network,
            &tv_keys.identity.fingerprint(),
            TrustSource::Manual,
        )
        .expect("pin the TV");
    let (tv_session, tv_tap) = tapped(account, "tv");
    let (phone_session, phone_tap) = tapped(account, "phone");

    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    let config = ProviderConfig::new(
        tv_session,
        "Attacked TV",
        E2eSettings::new(tv_keys.identity.clone(), tv_keys.trust.clone()),
    );
    let provider = Provider::start(config, vec![player])
        .await
        .expect("provider starts");

    let mut config = ControllerConfig::new(
        phone_session,
        E2eSettings::new(phone_keys.identity.clone(), phone_keys.trust.clone()),
    );
    config.rpc_timeout = Duration::from_secs(5);
    let controller = Controller::connect(config)
        .await
        .expect("controller connects");
    let tv = discover(&controller, &provider).await.jid;
    let phone = controller.session().jid().expect("phone online");
    Household {
        tv_failures: provider.tunnel_failures(),
        provider,
        controller,
        tv,
        phone,
        tv_fingerprint: tv_keys.identity.fingerprint(),
        tv_tap,
        phone_tap,
        _keys: (tv_keys, phone_keys),
    }
}

impl Household {
    async fn status(&self) -> Result<PlaybackState, Error> {
        self.controller
            .player(self.tv.clone())
            .status()
            .await
            .map(|s| s.state)
    }

    /// Asserts that neither device ever sent RPC (or an event) in clear, and returns what each
    /// sent: (phone, TV).
    fn assert_nothing_in_clear(&mut self) -> (Vec<String>, Vec<String>) {
        let phone = drain(&mut self.phone_tap);
        let tv = drain(&mut self.tv_tap);
        for (who, sent) in [("phone", &phone), ("TV", &tv)] {
            assert!(!sent.is_empty(), "the {who}'s tap saw nothing");
            for stanza in sent {
                assert!(
                    !stanza.contains("jabber:iq:rpc"),
                    "the {who} sent RPC in clear: {stanza}"
                );
                assert!(
                    !stanza.contains(pmn::core::rpc::events::NS),
                    "the {who} sent an event in clear: {stanza}"
                );
            }
        }
        (phone, tv)
    }

    /// The controller's session is online and the server still answers it (XEP-0199 ping).
    async fn assert_still_online(&self) {
        assert!(
            matches!(self.controller.state(), ConnectionState::Online { .. }),
            "controller state {:?}",
            self.controller.state()
        );
        assert!(
            matches!(
                self.provider.session().state(),
                ConnectionState::Online { .. }
            ),
            "provider state {:?}",
            self.provider.session().state()
        );
        let ping: Element = "<ping xmlns='urn:xmpp:ping'/>".parse().expect("ping");
        for session in [self.controller.session(), self.provider.session()] {
            let reply = request_host(session, ping.clone()).await;
            assert!(matches!(reply, IqReply::Result(_)), "ping: {reply:?}");
        }
    }

    async fn stop(self) {
        self.provider.stop().await;
        self.controller.close().await;
    }
}

/// Every stanza sent so far, serialised as the server receives it.
fn drain(tap: &mut mpsc::UnboundedReceiver<Stanza>) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(stanza) = tap.try_recv() {
        all.push(String::from_utf8_lossy(&xso::to_vec(&stanza).expect("serialise")).into_owned());
    }
    all
}

fn count(sent: &[String], needle: &str) -> usize {
    sent.iter().filter(|s| s.contains(needle)).count()
}

/// An iq set/get to the server host `tamper.test` (a ping, or mod_pmn_tamper's control iqs).
async fn request_host(session: &Session, payload: Element) -> IqReply {
    let to: Jid = TAMPER_HOST.parse().expect("host JID");
    let iq = if payload.is("ping", "urn:xmpp:ping") {
        Iq::Get {
            from: None,
            to: Some(to),
            id: String::new(),
            payload,
        }
    } else {
        Iq::Set {
            from: None,
            to: Some(to),
            id: String::new(),
            payload,
        }
    };
    session.request(iq, T).await.expect("server answers")
}

/// Arms (or disarms) mod_pmn_tamper's attack on the lateflip account.
async fn set_armed(session: &Session, armed: bool) {
    let name = if armed { "arm" } else { "disarm" };
    let payload: Element = format!("<{name} xmlns='{NS_TAMPER}'/>")
        .parse()
        .expect("control payload");
    let reply = request_host(session, payload).await;
    assert!(matches!(reply, IqReply::Result(_)), "{name}: {reply:?}");
}

/// What altered tunnel bytes surface as at the caller: almost always `Tls` (its own handshake or
/// record decryption failed, or the peer ended the Jingle session with `security-error`); rarely
/// `NotConnected`, when the peer's IBB close overtakes its session-terminate during the handshake;
/// `Protocol` is kept for a peer that cannot parse what it decrypted. Never a timeout, never
/// success.
fn is_tunnel_failure(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Tls | ErrorKind::Protocol | ErrorKind::NotConnected
    )
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tamper_host_leaves_an_untargeted_account_alone() {
    let mut home = household(&TAMPER_CLEAN).await;
    let player = home.controller.player(home.tv.clone());
    let playing = player.play("file:///movies/clean.mkv").await.expect("play");
    assert_eq!(playing.state, PlaybackState::Playing);
    assert_eq!(home.status().await.expect("status"), PlaybackState::Playing);
    let tunnel = home
        .controller
        .e2e()
        .expect("e2e on")
        .existing_tunnel(&home.tv)
        .expect("tunnel up");
    assert_eq!(tunnel.peer_fingerprint(), home.tv_fingerprint);

    let (phone_sent, tv_sent) = home.assert_nothing_in_clear();
    assert_eq!(count(&phone_sent, "session-initiate"), 1);
    assert!(count(&phone_sent, "http://jabber.org/protocol/ibb") > 0);
    assert!(count(&tv_sent, "http://jabber.org/protocol/ibb") > 0);
    // The module is loaded on this host and saw these stanzas, but changed none of them.
    assert!(server().log().contains("tamper.test:pmn_tamper"));
    assert_eq!(tampered(&home.phone), Vec::<String>::new());
    assert_eq!(tampered(&home.tv), Vec::<String>::new());
    home.assert_still_online().await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_flipping_handshake_bits_gets_a_clean_tls_failure() {
    let mut home = household(&TAMPER_FLIP).await;
    let started = std::time::Instant::now();
    let e = home
        .status()
        .await
        .expect_err("a tampered tunnel carried a call");
    assert!(is_tunnel_failure(&e), "typed tunnel failure expected: {e}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "failed slowly: {e}"
    );

    // The server really altered the handshake (the phone's second flight, seq 1).
    let flips = tampered(&home.phone);
    assert!(
        flips
            .iter()
            .any(|l| l.contains("pmn_tamper[flip]") && l.contains("seq=1")),
        "the server did not flip the phone's handshake: {flips:?}"
    );
    // The TV noticed and reported it: its TLS handshake failed, the tunnel was refused.
    let phone = home.phone.clone();
    let reported = next_failure(&mut home.tv_failures, &phone).await;
    assert_eq!(reported.kind(), ErrorKind::Tls, "{reported}");
    assert!(home
        .controller
        .e2e()
        .expect("e2e on")
        .existing_tunnel(&home.tv)
        .is_none());

    // A second attempt is a fresh tunnel that fails the same clean way; no fallback to clear.
    let again = home.status().await.expect_err("second attempt");
    assert!(is_tunnel_failure(&again), "{again}");
    let (phone_sent, tv_sent) = home.assert_nothing_in_clear();
    assert_eq!(
        count(&phone_sent, "session-initiate"),
        2,
        "one tunnel per attempt"
    );
    assert!(count(&tv_sent, "session-accept") >= 1);
    home.assert_still_online().await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_flipping_bits_in_an_established_tunnel_breaks_only_that_tunnel() {
    let mut home = household(&TAMPER_LATEFLIP).await;
    // Unarmed, the tunnel works.
    assert_eq!(
        home.status().await.expect("status before the attack"),
        PlaybackState::Stopped
    );
    let e2e = home.controller.e2e().expect("e2e on").clone();
    let tunnel = e2e.existing_tunnel(&home.tv).expect("tunnel up");
    assert!(tampered(&home.phone).is_empty());

    let mut phone_failures = home.controller.tunnel_failures();
    set_armed(home.controller.session(), true).await;
    let e = home
        .controller
        .player(home.tv.clone())
        .play("file:///movies/intercepted.mkv")
        .await
        .expect_err("a tampered tunnel carried a call");
    assert!(is_tunnel_failure(&e), "typed tunnel failure expected: {e}");
    let flips = tampered(&home.phone);
    assert!(
        flips.iter().any(|l| l.contains("pmn_tamper[lateflip]")),
        "the server did not flip the established tunnel: {flips:?}"
    );
    // The established tunnel is gone on both ends; the TV reports why.
    tokio::time::timeout(T, tunnel.closed())
        .await
        .expect("tunnel ended");
    assert!(e2e.existing_tunnel(&home.tv).is_none());
    // The phone's app hears of it too, as TLS.
    let tv = home.tv.clone();
    let on_phone = next_failure(&mut phone_failures, &tv).await;
    assert_eq!(on_phone.kind(), ErrorKind::Tls, "{on_phone}");
    // (The reason's kind is Tls: a record that does not decrypt is tampering, not a peer bug.)
    let phone = home.phone.clone();
    let reported = next_failure(&mut home.tv_failures, &phone).await;
    assert_eq!(reported.kind(), ErrorKind::Tls, "{reported}");
    assert!(
        reported.message().contains("cannot decrypt peer's message"),
        "{reported}"
    );

    // While the attack lasts, every new tunnel fails cleanly (here already in the handshake).
    let again = home.status().await.expect_err("attempt under attack");
    assert!(is_tunnel_failure(&again), "{again}");
    home.assert_still_online().await;

    // Once the server stops tampering, the same devices get a fresh tunnel: nothing was broken
    // beyond the attacked tunnels, and the intercepted call was never executed.
    set_armed(home.controller.session(), false).await;
    assert_eq!(
        home.status().await.expect("status after the attack"),
        PlaybackState::Stopped
    );
    let (phone_sent, _) = home.assert_nothing_in_clear();
    assert!(count(&phone_sent, "session-initiate") >= 3);
    for sent in &phone_sent {
        assert!(
            !sent.contains("intercepted.mkv"),
            "plaintext left the phone"
        );
    }
    home.assert_still_online().await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_substituting_its_key_is_refused_before_any_tls_byte() {
    let mut home = household(&TAMPER_SWAP).await;
    let e = home.status().await.expect_err("substituted key accepted");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.message().contains("neither paired"), "{e}");

    // The server did substitute the phone's key in the session-initiate…
    let swaps = tampered(&home.phone);
    assert!(
        swaps
            .iter()
            .any(|l| l.contains("pmn_tamper[swap]") && l.contains("session-initiate")),
        "the server did not substitute the key: {swaps:?}"
    );
    // …so the TV refused the foreign key and reported it.
    let phone = home.phone.clone();
    let reported = next_failure(&mut home.tv_failures, &phone).await;
    assert_eq!(reported.kind(), ErrorKind::Forbidden, "{reported}");
    assert!(reported.message().contains("neither paired"), "{reported}");

    let again = home.status().await.expect_err("second attempt");
    assert_eq!(again.kind(), ErrorKind::Forbidden, "{again}");
    let (phone_sent, tv_sent) = home.assert_nothing_in_clear();
    assert_eq!(count(&phone_sent, "session-initiate"), 2);
    // Refused before TLS: not one byte of a handshake crossed the server.
    assert_eq!(count(&phone_sent, "<data "), 0, "{phone_sent:?}");
    assert_eq!(count(&tv_sent, "<data "), 0, "{tv_sent:?}");
    assert_eq!(count(&tv_sent, "session-accept"), 0);
    assert!(
        count(&tv_sent, "forbidden") >= 2,
        "the TV did not refuse: {tv_sent:?}"
    );
    assert!(home
        .controller
        .e2e()
        .expect("e2e on")
        .existing_tunnel(&home.tv)
        .is_none());
    home.assert_still_online().await;
    home.stop().await;
}
