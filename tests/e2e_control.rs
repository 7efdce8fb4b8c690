//! Control through the end-to-end tunnel (issue 5, "control through the tunnel"): a provider and a
//! controller with [`E2eSettings`] on the real Prosody. RPC, subscriptions and events travel inside
//! the tunnel, the server sees only Jingle and IBB, a plain controller is refused by a provider that
//! requires the tunnel, a restarted provider gets a new tunnel and its subscription back, and an
//! unpinned controller gets a typed error with nothing sent in clear.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pmn::core::controller::{Controller, ControllerConfig, ServiceEvent};
use pmn::core::discovery::DirectoryUpdate;
use pmn::core::e2e::{E2eSettings, TrustSource, TrustStore};
use pmn::core::error::ErrorKind;
use pmn::core::identity::{DeviceFingerprint, DeviceIdentity};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{
    PlaybackState, PlayerService, PlayerStatus, SimulatedPlayer, EVENT_STATE_CHANGED,
};
use pmn::core::session::SessionConfig;
use pmn::platform::software::SoftwareKeyStore;
use tokio::sync::{broadcast, mpsc};
use tokio_xmpp::Stanza;
use xmpp_parsers::jid::BareJid;

const T: Duration = Duration::from_secs(10);

/// One device's keys: a software key store in a tempdir and its own trust store.
struct Keys {
    identity: DeviceIdentity,
    trust: Arc<TrustStore>,
    _dir: tempfile::TempDir,
}

fn keys(name: &str) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SoftwareKeyStore::open(dir.path().join("keys")).unwrap());
    let identity = DeviceIdentity::load_or_generate(store, "tls", name).unwrap();
    Keys {
        identity,
        trust: Arc::new(TrustStore::in_memory()),
        _dir: dir,
    }
}

impl Keys {
    fn settings(&self) -> E2eSettings {
        E2eSettings::new(self.identity.clone(), self.trust.clone())
    }

    /// This device trusts `other` (both are devices of the home network).
    fn pin(&self, other: &Keys) {
        let home: BareJid = HOME.jid.parse().unwrap();
        self.trust
            .pin(&home, &other.identity.fingerprint(), TrustSource::Manual)
            .unwrap();
    }
}

/// A session of the home network whose outbound stanzas are copied to the returned receiver.
fn tapped(device: &str) -> (SessionConfig, mpsc::UnboundedReceiver<Stanza>) {
    let mut config = session_config(&HOME, device);
    let (tx, rx) = mpsc::unbounded_channel();
    config.outbound_tap = Some(tx);
    (config, rx)
}

async fn start_tv(session: SessionConfig, e2e: Option<E2eSettings>) -> Provider {
    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    let config = ProviderConfig {
        e2e,
        ..ProviderConfig::plain(session, "Tunnelled TV")
    };
    Provider::start(config, vec![player])
        .await
        .expect("provider starts")
}

async fn start_phone(session: SessionConfig, e2e: Option<E2eSettings>) -> Controller {
    let config = ControllerConfig {
        rpc_timeout: Duration::from_secs(5),
        e2e,
        ..ControllerConfig::plain(session)
    };
    Controller::connect(config)
        .await
        .expect("controller connects")
}

/// Every stanza sent so far, serialised as the server receives it.
fn drain(tap: &mut mpsc::UnboundedReceiver<Stanza>) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(stanza) = tap.try_recv() {
        all.push(String::from_utf8_lossy(&xso::to_vec(&stanza).unwrap()).into_owned());
    }
    all
}

/// Asserts no control traffic (RPC or event) left the device in clear.
fn assert_no_plain_control(who: &str, sent: &[String]) {
    for stanza in sent {
        assert!(
            !stanza.contains("jabber:iq:rpc"),
            "{who} sent RPC in clear: {stanza}"
        );
        assert!(
            !stanza.contains(pmn::core::rpc::events::NS),
            "{who} sent an event in clear: {stanza}"
        );
    }
}

fn count(sent: &[String], needle: &str) -> usize {
    sent.iter().filter(|s| s.contains(needle)).count()
}

async fn next_state(events: &mut broadcast::Receiver<ServiceEvent>) -> PlaybackState {
    let event = tokio::time::timeout(T, events.recv())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(event.notice.name, EVENT_STATE_CHANGED);
    PlayerStatus::from_value(&event.notice.params[0])
        .expect("status param")
        .state
}

async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + T;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_events_travel_only_inside_the_tunnel() {
    let (tv_keys, phone_keys) = (keys("tv"), keys("phone"));
    tv_keys.pin(&phone_keys);
    phone_keys.pin(&tv_keys);
    let (tv_session, mut tv_tap) = tapped("tv");
    let (phone_session, mut phone_tap) = tapped("phone");
    let provider = start_tv(tv_session, Some(tv_keys.settings())).await;
    let controller = start_phone(phone_session, Some(phone_keys.settings())).await;
    let tv = discover(&controller, &provider).await;
    let mut events = controller.events();
    let _subscription = controller
        .subscribe_events(&tv.jid, "player", Some(&[EVENT_STATE_CHANGED]))
        .await
        .expect("subscribe through the tunnel");
    assert_eq!(provider.subscription_count(), 1);

    let player = controller.player(tv.jid.clone());
    let playing = player
        .play("file:///movies/secret.mkv")
        .await
        .expect("play");
    assert_eq!(playing.state, PlaybackState::Playing);
    let paused = player.pause().await.expect("pause");
    assert_eq!(paused.state, PlaybackState::Paused);
    assert_eq!(player.status().await.expect("status"), paused);
    assert_eq!(next_state(&mut events).await, PlaybackState::Playing);
    assert_eq!(next_state(&mut events).await, PlaybackState::Paused);

    // One tunnel, opened by the controller and reused for every call.
    let tunnel = controller.e2e().unwrap().existing_tunnel(&tv.jid);
    assert_eq!(
        tunnel.expect("tunnel up").peer_fingerprint(),
        tv_keys.identity.fingerprint()
    );
    let phone_sent = drain(&mut phone_tap);
    let tv_sent = drain(&mut tv_tap);
    assert_eq!(count(&phone_sent, "session-initiate"), 1, "tunnel reused");
    assert_eq!(
        count(&tv_sent, "session-initiate"),
        0,
        "provider opens none"
    );
    assert!(count(&phone_sent, "http://jabber.org/protocol/ibb") > 0);
    assert!(count(&tv_sent, "http://jabber.org/protocol/ibb") > 0);
    assert_no_plain_control("controller", &phone_sent);
    assert_no_plain_control("provider", &tv_sent);
    for sent in phone_sent.iter().chain(&tv_sent) {
        assert!(!sent.contains("secret.mkv"), "plaintext left a device");
    }
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_controller_is_refused_by_a_provider_that_requires_the_tunnel() {
    let tv_keys = keys("tv");
    let provider = start_tv(session_config(&HOME, "tv"), Some(tv_keys.settings())).await;
    // Discovery (presence, disco#info) stays plain, so a plain controller still finds the TV.
    let controller = start_controller().await;
    let tv = discover(&controller, &provider).await;
    assert_eq!(tv.services, vec![PLAYER.to_string()]);

    let e = controller
        .player(tv.jid.clone())
        .status()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(e.message().contains("end-to-end tunnel required"), "{e}");
    let e = controller.subscribe(&tv.jid, "player").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert_eq!(provider.subscription_count(), 0);
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_provider_gets_a_new_tunnel_and_the_subscription_back() {
    let (tv_keys, phone_keys) = (keys("tv"), keys("phone"));
    tv_keys.pin(&phone_keys);
    phone_keys.pin(&tv_keys);
    // The same device comes back: same full JID, same key.
    let tv_session = session_config(&HOME, "tv");
    let (phone_session, mut phone_tap) = tapped("phone");
    let provider = start_tv(tv_session.clone(), Some(tv_keys.settings())).await;
    let controller = start_phone(phone_session, Some(phone_keys.settings())).await;
    let tv = discover(&controller, &provider).await;
    let mut events = controller.events();
    let mut updates = controller.updates();
    let _subscription = controller
        .subscribe_events(&tv.jid, "player", Some(&[EVENT_STATE_CHANGED]))
        .await
        .expect("subscribe");
    let player = controller.player(tv.jid.clone());
    player.play("file:///a.mkv").await.expect("play");
    assert_eq!(next_state(&mut events).await, PlaybackState::Playing);

    provider.stop().await;
    tokio::time::timeout(T, async {
        loop {
            if let Ok(DirectoryUpdate::Removed(j)) = updates.recv().await {
                if j == tv.jid {
                    return;
                }
            }
        }
    })
    .await
    .expect("provider reported offline");
    // The peer went unavailable: its tunnel is gone.
    wait_until("tunnel closed", || {
        controller.e2e().unwrap().existing_tunnel(&tv.jid).is_none()
    })
    .await;

    let provider = start_tv(tv_session, Some(tv_keys.settings())).await;
    let back = discover(&controller, &provider).await;
    assert_eq!(back.jid, tv.jid);
    wait_until("subscription restored", || {
        provider.subscription_count() == 1
    })
    .await;
    let status = player.status().await.expect("status after restart");
    assert_eq!(status.state, PlaybackState::Stopped, "a fresh player");
    player
        .play("file:///b.mkv")
        .await
        .expect("play after restart");
    assert_eq!(next_state(&mut events).await, PlaybackState::Playing);

    let sent = drain(&mut phone_tap);
    assert_eq!(
        count(&sent, "session-initiate"),
        2,
        "one tunnel per provider run"
    );
    assert_no_plain_control("controller", &sent);
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_controller_gets_a_typed_error_and_no_plaintext_fallback() {
    let (tv_keys, phone_keys, stranger_keys) = (keys("tv"), keys("phone"), keys("stranger"));
    // The TV trusts the phone only; the stranger device (same network, unknown key) trusts the TV.
    tv_keys.pin(&phone_keys);
    stranger_keys.pin(&tv_keys);
    let provider = start_tv(session_config(&HOME, "tv"), Some(tv_keys.settings())).await;

    let (session, mut tap) = tapped("stranger");
    let stranger = start_phone(session, Some(stranger_keys.settings())).await;
    let tv = discover(&stranger, &provider).await;
    let e = stranger.player(tv.jid.clone()).status().await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::Tls),
        "refused by the provider: {e}"
    );
    assert!(stranger.e2e().unwrap().existing_tunnel(&tv.jid).is_none());
    assert_no_plain_control("unpinned controller", &drain(&mut tap));

    // A controller that does not trust the provider's key refuses it itself.
    let (session, mut tap) = tapped("phone");
    let doubter = start_phone(session, Some(phone_keys.settings())).await;
    discover(&doubter, &provider).await;
    let e = doubter.subscribe(&tv.jid, "player").await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::Tls),
        "refused by the controller: {e}"
    );
    assert_no_plain_control("doubting controller", &drain(&mut tap));
    assert_eq!(provider.subscription_count(), 0);
    provider.stop().await;
    stranger.close().await;
    doubter.close().await;
}

/// Issue 5, XEP-0189 in the roles: every device publishes its key when it comes online; a phone
/// that pairs with a device of its network attests it; another device that trusts the phone then
/// trusts the new one without pairing again (both ways: the tablet trusts the TV, the TV the
/// tablet); and when the phone revokes the tablet, the TV closes the tablet's tunnel at once and
/// refuses the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attested_device_is_trusted_without_pairing_and_revocation_reaches_the_network() {
    let (tv_keys, phone_keys, tablet_keys) = (keys("tv"), keys("phone"), keys("tablet"));
    let tv = start_tv(session_config(&HOME, "tv"), Some(tv_keys.settings())).await;
    let phone = start_phone(session_config(&HOME, "phone"), Some(phone_keys.settings())).await;
    let tv_jid = discover(&phone, &tv).await.jid;
    let home: BareJid = HOME.jid.parse().unwrap();

    // The phone pairs with the TV (the TV shows the code); the phone attests the TV.
    let code = tv.e2e().unwrap().start_pairing().unwrap();
    phone
        .e2e()
        .unwrap()
        .pair(&tv_jid, &code)
        .await
        .expect("pair TV");
    // A new tablet shows a code, the phone types it: the phone attests the tablet.
    let tablet = start_phone(
        session_config(&HOME, "tablet"),
        Some(tablet_keys.settings()),
    )
    .await;
    let tablet_jid = tablet.session().jid().unwrap();
    let code = tablet.e2e().unwrap().start_pairing().unwrap();
    phone
        .e2e()
        .unwrap()
        .pair(&tablet_jid, &code)
        .await
        .expect("pair tablet");
    let tablet_fp = tablet_keys.identity.fingerprint();
    let phone_fp = phone_keys.identity.fingerprint();
    let attested = |fp: DeviceFingerprint| {
        let session = phone.session().clone();
        let home = home.clone();
        async move {
            pmn::core::e2e::pubkey::fetch(&session, &home, T)
                .await
                .unwrap()
                .iter()
                .any(|k| {
                    k.fingerprint == fp && k.attestations.iter().any(|a| a.by == phone_fp.to_hex())
                })
        }
    };
    for fp in [tv_keys.identity.fingerprint(), tablet_fp] {
        let deadline = tokio::time::Instant::now() + T;
        while !attested(fp).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no attestation published"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The tablet never paired with the TV, yet controls it: each side trusts the other through the
    // phone's attestation.
    discover(&tablet, &tv).await;
    assert_eq!(
        tablet
            .player(tv_jid.clone())
            .status()
            .await
            .expect("status")
            .state,
        PlaybackState::Stopped
    );
    assert!(matches!(
        tablet_keys
            .trust
            .source(&home, &tv_keys.identity.fingerprint()),
        Some(TrustSource::Attested { .. })
    ));
    assert!(matches!(
        tv_keys.trust.source(&home, &tablet_fp),
        Some(TrustSource::Attested { .. })
    ));

    // The tablet restarts: it finds its key published and keeps the phone's attestation, so the
    // TV still trusts it in a new tunnel.
    tablet.close().await;
    let tablet = start_phone(
        session_config(&HOME, "tablet"),
        Some(tablet_keys.settings()),
    )
    .await;
    discover(&tablet, &tv).await;
    assert!(tablet.player(tv_jid.clone()).status().await.is_ok());
    assert!(attested(tablet_fp).await);

    // The tablet is lost: the phone revokes it everywhere. Its next tunnel to the TV is refused,
    // even though the stolen device publishes its key again on coming online.
    phone
        .e2e()
        .unwrap()
        .revoke_everywhere(&home, &tablet_fp)
        .await
        .expect("revoke");
    // The TV hears of the published revocation list (PEP notification) and closes the tunnel the
    // tablet holds, on both servers (ejabberd 23.01 notifies publishes, though not retractions).
    {
        let tablet_jid = tablet.session().jid().unwrap();
        let tv_e2e = tv.e2e().unwrap().clone();
        wait_until("the TV closes the revoked tablet's tunnel", || {
            tv_e2e.existing_tunnel(&tablet_jid).is_none()
        })
        .await;
        let e = tablet.player(tv_jid.clone()).status().await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotConnected),
            "{e}"
        );
    }
    tablet.close().await;
    let thief = start_phone(
        session_config(&HOME, "stolen"),
        Some(tablet_keys.settings()),
    )
    .await;
    discover(&thief, &tv).await;
    let e = thief.player(tv_jid.clone()).status().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(tv_keys.trust.source(&home, &tablet_fp).is_none());
    // The phone, paired first-hand, is untouched.
    assert!(phone.player(tv_jid).status().await.is_ok());
    thief.close().await;
    phone.close().await;
    tv.stop().await;
}

/// A household on the real server: the phone paired with the TV and with the tablet, and has
/// attested both on the key node (the tablet trusts the TV, and the TV the tablet, through it).
struct Household {
    tv_keys: Keys,
    phone_keys: Keys,
    tablet_keys: Keys,
    tv: Provider,
    phone: Controller,
    tablet: Controller,
    tv_jid: xmpp_parsers::jid::FullJid,
    home: BareJid,
}

async fn household() -> Household {
    household_of(&HOME).await
}

/// [`household`] on `account` (a test that changes the account's password has one of its own).
async fn household_of(account: &pmn_testkit::Account) -> Household {
    let (tv_keys, phone_keys, tablet_keys) = (keys("tv"), keys("phone"), keys("tablet"));
    let tv = start_tv(session_config(account, "tv"), Some(tv_keys.settings())).await;
    let phone = start_phone(
        session_config(account, "phone"),
        Some(phone_keys.settings()),
    )
    .await;
    let tv_jid = discover(&phone, &tv).await.jid;
    let home: BareJid = account.jid.parse().unwrap();
    let code = tv.e2e().unwrap().start_pairing().unwrap();
    phone
        .e2e()
        .unwrap()
        .pair(&tv_jid, &code)
        .await
        .expect("pair TV");
    let tablet = start_phone(
        session_config(account, "tablet"),
        Some(tablet_keys.settings()),
    )
    .await;
    let tablet_jid = tablet.session().jid().unwrap();
    let code = tablet.e2e().unwrap().start_pairing().unwrap();
    phone
        .e2e()
        .unwrap()
        .pair(&tablet_jid, &code)
        .await
        .expect("pair tablet");
    let phone_fp = phone_keys.identity.fingerprint();
    for fp in [
        tv_keys.identity.fingerprint(),
        tablet_keys.identity.fingerprint(),
    ] {
        let deadline = tokio::time::Instant::now() + T;
        while !published(&phone, &home, &fp)
            .await
            .is_some_and(|k| k.attestations.iter().any(|a| a.by == phone_fp.to_hex()))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no attestation published"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    discover(&tablet, &tv).await;
    assert!(tablet.player(tv_jid.clone()).status().await.is_ok());
    Household {
        tv_keys,
        phone_keys,
        tablet_keys,
        tv,
        phone,
        tablet,
        tv_jid,
        home,
    }
}

/// A household account of its own on `home.test` (`<user>` and password `<password>-`, both with
/// this process's id), for a test whose key-node traffic or password change must not meet the
/// other tests'.
fn own_account(user: &str, password: &str) -> pmn_testkit::Account {
    let user = format!("{user}{}", std::process::id());
    let password = format!("{password}-{}", std::process::id());
    server()
        .register(&user, "home.test", &password)
        .expect("register the household's own account");
    pmn_testkit::Account {
        jid: Box::leak(format!("{user}@home.test").into_boxed_str()),
        password: Box::leak(password.into_boxed_str()),
    }
}

/// The published item of `fp` on the key node, as any session of the network reads it.
async fn published(
    reader: &Controller,
    home: &BareJid,
    fp: &DeviceFingerprint,
) -> Option<pmn::core::e2e::pubkey::PublishedKey> {
    pmn::core::e2e::pubkey::fetch(reader.session(), home, T)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.fingerprint == *fp)
}

/// Issue 12: the thief saves the tablet's published item (with the phone's attestation) before
/// the revocation and republishes it afterwards with the network password it still knows; the
/// TV refuses it, since the signed revocation list names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_that_republishes_its_saved_attested_item_stays_forbidden() {
    let h = household().await;
    let tablet_fp = h.tablet_keys.identity.fingerprint();
    let saved = published(&h.phone, &h.home, &tablet_fp)
        .await
        .expect("the tablet's item");
    assert!(!saved.attestations.is_empty());

    let removed = h
        .phone
        .e2e()
        .unwrap()
        .revoke_everywhere(&h.home, &tablet_fp)
        .await
        .expect("revocation list published");
    assert!(removed);
    h.tablet.close().await;

    let thief = start_phone(
        session_config(&HOME, "stolen"),
        Some(h.tablet_keys.settings()),
    )
    .await;
    pmn::core::e2e::pubkey::publish(thief.session(), &saved.certificate, saved.attestations, T)
        .await
        .expect("the thief republishes the saved item");
    assert!(published(&thief, &h.home, &tablet_fp).await.is_some());
    discover(&thief, &h.tv).await;
    let e = thief.player(h.tv_jid.clone()).status().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(h.tv_keys.trust.is_revoked(&h.home, &tablet_fp));
    assert!(h.tv_keys.trust.source(&h.home, &tablet_fp).is_none());
    assert!(h.tv_keys.trust.revocation_epoch(&h.home) >= 1);
    // The phone (first-hand) and the TV (re-attested by the phone) are untouched.
    assert!(h.phone.player(h.tv_jid.clone()).status().await.is_ok());
    thief.close().await;
    h.phone.close().await;
    h.tv.stop().await;
}

/// Issue 12: a server (or any session of the network) that serves an older, genuinely signed
/// list in place of the newer one: the TV refuses it and keeps the newer list's revocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_older_revocation_list_is_refused_and_the_newer_one_kept() {
    let (tv_keys, phone_keys) = (keys("tv"), keys("phone"));
    let tv = start_tv(session_config(&HOME, "tv"), Some(tv_keys.settings())).await;
    let phone = start_phone(session_config(&HOME, "phone"), Some(phone_keys.settings())).await;
    let tv_jid = discover(&phone, &tv).await.jid;
    let home: BareJid = HOME.jid.parse().unwrap();
    let code = tv.e2e().unwrap().start_pairing().unwrap();
    phone
        .e2e()
        .unwrap()
        .pair(&tv_jid, &code)
        .await
        .expect("pair TV");
    let phone_fp = phone_keys.identity.fingerprint();
    let (first, second) = (
        DeviceFingerprint([0xa1u8; 32]),
        DeviceFingerprint([0xb2u8; 32]),
    );
    let phone_e2e = phone.e2e().unwrap();
    phone_e2e
        .revoke_everywhere(&home, &first)
        .await
        .expect("first list");
    let reader = start_controller().await;
    let phone_list = || async {
        pmn::core::e2e::pubkey::fetch_directory(reader.session(), &home, T)
            .await
            .unwrap()
            .lists
            .into_iter()
            .filter_map(Result::ok)
            .find(|l| DeviceFingerprint::from_spki(&l.signer.spki) == phone_fp)
            .expect("the phone's list")
    };
    let old = phone_list().await;
    phone_e2e
        .revoke_everywhere(&home, &second)
        .await
        .expect("second list");
    assert!(phone_list().await.epoch > old.epoch);
    let sync = |session: pmn::core::session::Session| {
        let trust = tv_keys.trust.clone();
        let home = home.clone();
        async move {
            pmn::core::e2e::pubkey::sync_attested(&session, &trust, &home, T)
                .await
                .expect("sync")
        }
    };
    sync(tv.session().clone()).await;
    let newest = tv_keys.trust.revocation_epoch(&home);
    assert!(newest > old.epoch);
    assert!(tv_keys.trust.is_revoked(&home, &second));

    assert!(phone.player(tv_jid).status().await.is_ok());
    // Online devices that see the replay publish the newest list again at once; to watch the
    // refusal itself, they go offline first and the TV's trust store is synced by hand.
    phone.close().await;
    tv.stop().await;

    // Any session of the network (a thief, or the server itself) puts the older list back.
    let other = start_controller().await;
    pmn::core::e2e::pubkey::publish_revocations(other.session(), &phone_fp, old.clone(), T)
        .await
        .expect("replay");
    assert_eq!(
        phone_list().await,
        old,
        "the server now serves the older list"
    );
    let outcome = sync(other.session().clone()).await;
    assert!(
        outcome
            .refused_lists
            .contains(&pmn::core::e2e::revocation::ListError::Rollback {
                known: newest,
                got: old.epoch
            }),
        "{:?}",
        outcome.refused_lists
    );
    assert_eq!(tv_keys.trust.revocation_epoch(&home), newest);
    assert!(tv_keys.trust.is_revoked(&home, &first));
    assert!(tv_keys.trust.is_revoked(&home, &second));
    // The device that refused the replay put the newest list back for the others.
    assert_eq!(phone_list().await.epoch, newest);
    other.close().await;
    reader.close().await;
}

/// Issue 12: the phone, which the TV paired with first-hand, is stolen and revoked from the
/// tablet (paired with the phone only). The TV drops the phone although it paired with it, and
/// keeps trusting the tablet (whose only attestation came from the phone); the tablet keeps
/// trusting the TV through its own re-attestation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_paired_phone_revoked_from_the_tablet_loses_the_tv_and_the_tablet_keeps_it() {
    let h = household().await;
    let phone_fp = h.phone_keys.identity.fingerprint();
    let tablet_fp = h.tablet_keys.identity.fingerprint();
    let tv_fp = h.tv_keys.identity.fingerprint();
    assert_eq!(
        h.tv_keys.trust.source(&h.home, &phone_fp),
        Some(TrustSource::Paired)
    );
    assert!(h
        .tablet
        .e2e()
        .unwrap()
        .revoke_everywhere(&h.home, &phone_fp)
        .await
        .expect("revocation list published"));
    // The tablet re-attested the TV at the new epoch.
    let tv_item = published(&h.tablet, &h.home, &tv_fp)
        .await
        .expect("TV item");
    assert!(tv_item
        .attestations
        .iter()
        .any(|a| a.by == tablet_fp.to_hex()
            && a.epoch == h.tablet_keys.trust.revocation_epoch(&h.home)));

    // The tablet restarts (new tunnel, both trust decisions made again).
    h.tablet.close().await;
    let tablet = start_phone(
        session_config(&HOME, "tablet"),
        Some(h.tablet_keys.settings()),
    )
    .await;
    discover(&tablet, &h.tv).await;
    assert!(tablet.player(h.tv_jid.clone()).status().await.is_ok());
    assert!(h.tv_keys.trust.is_revoked(&h.home, &phone_fp));
    assert!(h.tv_keys.trust.source(&h.home, &phone_fp).is_none());
    assert!(h.tv_keys.trust.is_trusted(&h.home, &tablet_fp));
    assert!(h.tablet_keys.trust.is_trusted(&h.home, &tv_fp));

    // The stolen phone: its tunnel is closed and a new one refused.
    let e2e = h.tv.e2e().unwrap().clone();
    let phone_jid = h.phone.session().jid().unwrap();
    wait_until("the TV closes the revoked phone's tunnel", || {
        e2e.existing_tunnel(&phone_jid).is_none()
    })
    .await;
    let e = h.phone.player(h.tv_jid.clone()).status().await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotConnected),
        "{e}"
    );
    let again = h.phone.player(h.tv_jid.clone()).status().await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Forbidden, "{again}");
    tablet.close().await;
    h.phone.close().await;
    h.tv.stop().await;
}

/// Issue 16, goal 4: a tunnel to a device seen before opens in one relayed round trip because the
/// TV decides trust on its current read of the network's keys (read on this connection after the
/// server pushed it the key node, nothing notified since) instead of reading them between its
/// accept and its TLS answer. A revocation published meanwhile is still honoured by the very next
/// tunnel: its notification reaches the TV before the revoked device's initiate, so the TV reads
/// the keys again and refuses, before any TLS byte (whether the read the notification started or
/// the one the initiate needs comes first; `key_view`'s unit tests pin that a notification makes
/// the view stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_tunnel_rests_on_a_current_read_of_the_keys_and_a_revocation_still_stops_it() {
    // An account of its own: another test's publication on the shared key node would make the
    // TV's read stale (a read more, which this test counts).
    let h = household_of(&own_account("keyview", "kv")).await;
    let tv_e2e = h.tv.e2e().unwrap().clone();
    let tablet_e2e = h.tablet.e2e().unwrap().clone();
    wait_until("the TV's read of the keys stands", || {
        tv_e2e.keys_read_current()
    })
    .await;

    // The tablet called the TV once (household); its next tunnel resumes.
    tablet_e2e.close_peer(&h.home, "the test wants a resumed tunnel");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = tv_e2e.stats();
    assert!(h.tablet.player(h.tv_jid.clone()).status().await.is_ok());
    let after = tv_e2e.stats();
    assert!(
        tablet_e2e
            .existing_tunnel(&h.tv_jid)
            .expect("tunnel up")
            .resumed(),
        "the tablet's second tunnel did not resume"
    );
    assert_eq!(
        after.key_reads, before.key_reads,
        "the TV read the keys again"
    );
    assert_eq!(after.key_reads_spared, before.key_reads_spared + 1);

    // The owner revokes the tablet; its very next tunnel is refused.
    tablet_e2e.close_peer(&h.home, "the test wants a new tunnel");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tablet_fp = h.tablet_keys.identity.fingerprint();
    assert!(h
        .phone
        .e2e()
        .unwrap()
        .revoke_everywhere(&h.home, &tablet_fp)
        .await
        .expect("revocation list published"));
    let e = h
        .tablet
        .player(h.tv_jid.clone())
        .status()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    assert!(h.tv_keys.trust.is_revoked(&h.home, &tablet_fp));
    assert!(tv_e2e.stats().key_reads > after.key_reads);
    // The phone is untouched.
    assert!(h.phone.player(h.tv_jid.clone()).status().await.is_ok());
    h.tablet.close().await;
    h.phone.close().await;
    h.tv.stop().await;
}

/// Issue 12: the phone is stolen; the tablet revokes it and rotates the network password. The TV
/// and the tablet keep working with the new password (the TV was kicked by the server and came
/// back with it); the stolen phone is refused its tunnel, never learns the password, and can no
/// longer log in at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_stolen_phone_and_rotating_the_password_locks_it_out_of_the_account() {
    let account = own_account("rotate", "old");
    let h = household_of(&account).await;
    let phone_fp = h.phone_keys.identity.fingerprint();
    let phone_jid = h.phone.session().jid().unwrap();
    let tablet_e2e = h.tablet.e2e().unwrap().clone();
    wait_until("the tablet sees the TV and the phone online", || {
        let online = tablet_e2e.own_resources_online();
        online.contains(&h.tv_jid) && online.contains(&phone_jid)
    })
    .await;
    assert!(tablet_e2e
        .revoke_everywhere(&h.home, &phone_fp)
        .await
        .expect("revocation published"));
    let mut tv_password = h.tv.session().watch_password();
    let rotation = tablet_e2e
        .rotate_network_password()
        .await
        .expect("password rotated");
    assert_ne!(rotation.password, account.password);
    assert_eq!(rotation.delivered, vec![h.tv_jid.clone()], "{rotation:?}");
    assert_eq!(
        rotation.missed.iter().map(|(j, _)| j).collect::<Vec<_>>(),
        vec![&phone_jid]
    );
    assert_eq!(rotation.missed[0].1.kind(), ErrorKind::Forbidden);
    assert_eq!(
        *h.tablet.session().watch_password().borrow(),
        rotation.password
    );

    // The TV now logs in with the new password (after the server closed its session).
    tokio::time::timeout(
        Duration::from_secs(20),
        tv_password.wait_for(|p| *p == rotation.password),
    )
    .await
    .expect("the TV took the new password in time")
    .expect("TV session alive");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match h.tablet.player(h.tv_jid.clone()).status().await {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the tablet cannot reach the TV after the rotation: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The stolen phone: kicked by the server and unable to log in again.
    let mut phone_state = h.phone.session().watch_state();
    tokio::time::timeout(
        Duration::from_secs(20),
        phone_state.wait_for(|s| {
            matches!(s, pmn::core::session::ConnectionState::Offline { error: Some(e) }
                if e.kind() == ErrorKind::Auth)
        }),
    )
    .await
    .expect("the stolen phone is refused its login in time")
    .expect("phone state");
    let old = pmn::core::session::Session::connect(session_config(&account, "thief"))
        .await
        .expect_err("the old password no longer logs in");
    assert_eq!(old.kind(), ErrorKind::Auth, "{old}");
    let mut fresh = session_config(&account, "newcomer");
    fresh.password = rotation.password.clone();
    let (session, _rx) = pmn::core::session::Session::connect(fresh)
        .await
        .expect("the new password logs in");
    session.close().await;
    h.tablet.close().await;
    h.phone.close().await;
    h.tv.stop().await;
}

/// Issue 12: the server withholds a revocation (the list never reaches the TV through PEP, as if
/// the server dropped the notification and served the old key node). The next tunnel from the
/// phone carries the list anyway: the TV drops the revoked tablet and refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_the_server_withheld_reaches_the_tv_through_the_next_tunnel() {
    use pmn::core::e2e::revocation;
    let h = household().await;
    let phone_fp = h.phone_keys.identity.fingerprint();
    let tablet_fp = h.tablet_keys.identity.fingerprint();
    // Signed and kept by the phone, never published.
    let epoch = h.phone_keys.trust.revocation_epoch(&h.home) + 1;
    let list = revocation::sign_list(
        &h.phone_keys.identity,
        &h.home,
        epoch,
        &std::collections::BTreeSet::from([tablet_fp]),
    )
    .expect("sign");
    let verified = revocation::verify_list(&list, &h.home).expect("verify");
    h.phone_keys
        .trust
        .accept_revocations(&h.home, &verified, &phone_fp)
        .expect("kept");
    assert!(
        h.tv_keys.trust.is_trusted(&h.home, &tablet_fp),
        "the TV has not heard"
    );
    // A new tunnel from the phone to the TV.
    h.phone
        .e2e()
        .unwrap()
        .close_peer(&h.home, "the test wants a new tunnel");
    assert!(h.phone.player(h.tv_jid.clone()).status().await.is_ok());
    let tv_trust = h.tv_keys.trust.clone();
    let home = h.home.clone();
    wait_until("the TV applies the list the tunnel carried", move || {
        tv_trust.is_revoked(&home, &tablet_fp)
    })
    .await;
    assert!(!h.tv_keys.trust.is_trusted(&h.home, &tablet_fp));
    let e = h
        .tablet
        .player(h.tv_jid.clone())
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Forbidden | ErrorKind::NotConnected),
        "{e}"
    );
    // The phone itself is untouched.
    assert!(h.phone.player(h.tv_jid.clone()).status().await.is_ok());
    h.tablet.close().await;
    h.phone.close().await;
    h.tv.stop().await;
}

/// The simulated player, except that setting the volume to 99 takes `delay` (a provider busy
/// with a call while the controller's connection goes away).
struct SlowVolume {
    inner: SimulatedPlayer,
    delay: Duration,
}

impl pmn::core::services::player::MediaPlayer for SlowVolume {
    fn load(&self, uri: String) -> futures::future::BoxFuture<'_, pmn::core::error::Result<()>> {
        self.inner.load(uri)
    }
    fn pause(&self) -> futures::future::BoxFuture<'_, pmn::core::error::Result<()>> {
        self.inner.pause()
    }
    fn resume(&self) -> futures::future::BoxFuture<'_, pmn::core::error::Result<()>> {
        self.inner.resume()
    }
    fn stop(&self) -> futures::future::BoxFuture<'_, pmn::core::error::Result<()>> {
        self.inner.stop()
    }
    fn seek(&self, at: u64) -> futures::future::BoxFuture<'_, pmn::core::error::Result<()>> {
        self.inner.seek(at)
    }
    fn set_volume(&self, v: u8) -> futures::future::BoxFuture<'_, pmn::core::error::Result<()>> {
        Box::pin(async move {
            if v == 99 {
                tokio::time::sleep(self.delay).await;
            }
            self.inner.set_volume(v).await
        })
    }
    fn set_muted(&self, m: bool) -> futures::future::BoxFuture<'_, pmn::core::error::Result<()>> {
        self.inner.set_muted(m)
    }
    fn playback(
        &self,
    ) -> futures::future::BoxFuture<
        '_,
        pmn::core::error::Result<pmn::core::services::player::Playback>,
    > {
        self.inner.playback()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_in_the_tunnel_fails_at_once_when_the_controllers_session_is_reset() {
    let (tv_keys, phone_keys) = (keys("tv"), keys("phone"));
    tv_keys.pin(&phone_keys);
    phone_keys.pin(&tv_keys);
    let player = Arc::new(PlayerService::new(Arc::new(SlowVolume {
        inner: SimulatedPlayer::default(),
        delay: Duration::from_secs(2),
    })));
    let provider = Provider::start(
        ProviderConfig {
            e2e: Some(tv_keys.settings()),
            ..ProviderConfig::plain(session_config(&HOME, "tv"), "Slow TV")
        },
        vec![player],
    )
    .await
    .expect("provider starts");
    let relay = Relay::start(server().port()).await;
    let mut session = session_config(&HOME, "phone");
    session.server = pmn::core::session::ServerAddress::HostPort("127.0.0.1".into(), relay.port);
    let long = Duration::from_secs(60);
    let controller = Controller::connect(ControllerConfig {
        rpc_timeout: long,
        e2e: Some(phone_keys.settings()),
        ..ControllerConfig::plain(session)
    })
    .await
    .expect("controller connects");
    let tv = discover(&controller, &provider).await;
    controller
        .player(tv.jid.clone())
        .set_volume(10)
        .await
        .expect("through the tunnel");

    // A slow call is in the tunnel when the connection goes, for longer than the server keeps
    // the session (10 s in the test config): the controller comes back on a new stream.
    let busy = controller.player(tv.jid.clone());
    let started = std::time::Instant::now();
    let call = tokio::spawn(async move { busy.set_volume(99).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.cut();
    tokio::time::sleep(Duration::from_secs(12)).await;
    relay.reopen();
    tokio::time::timeout(Duration::from_secs(40), async {
        while !matches!(
            controller.state(),
            pmn::core::session::ConnectionState::Online { .. }
        ) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the controller came back");
    let failed = tokio::time::timeout(Duration::from_secs(3), call)
        .await
        .expect("the call failed as soon as the session was back, not at its deadline")
        .unwrap();
    let err = failed.expect_err("a reset loses the call");
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert!(started.elapsed() < long);

    // The next call opens a fresh tunnel and works.
    let tv = discover(&controller, &provider).await;
    controller
        .player(tv.jid.clone())
        .set_volume(20)
        .await
        .expect("a fresh tunnel after the reset");
    provider.stop().await;
    controller.close().await;
}
