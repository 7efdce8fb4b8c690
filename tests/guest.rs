//! Guest access on the wire (issue 6, spec §3.3) with two households on the real Prosody:
//! Julia's network `home@home.test` (a TV, her phone = owner device) and a fresh Romeo network on
//! `friend.test` per test (his phone, and for the one-item grant his media library).
//!
//! Covered: request → owner notified → approve `playback` for 2 h → mutual presence → the guest
//! discovers and plays on the TV through the tunnel, is refused the recorder and the library,
//! hears events; owner lists grants, reads the audit log (and gets it as events); revoke → the
//! guest's next call is refused and the TV leaves his directory; denial; strangers and plaintext
//! guests refused; grants survive a provider restart; a 1000-request flood neither grows the
//! owner's memory nor spams it; the role × method matrix over every method of every service;
//! the one-item library grant.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use pmn::core::access::{
    unix_now, AccessRequest, AuditKind, DeviceFingerprint, ItemId, Scope, NS_ACCESS,
};
use pmn::core::controller::{Controller, ControllerConfig, OwnerAccess};
use pmn::core::discovery::DirectoryUpdate;
use pmn::core::e2e::{E2eSettings, TrustSource, TrustStore};
use pmn::core::error::ErrorKind;
use pmn::core::identity::{DeviceIdentity, KeyStore};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::xmlrpc::Value;
use pmn::core::services::library::{
    generated_bytes, GeneratedLibrary, LibraryService, GENERATED_ITEM_BYTES,
};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::core::services::recorder::RecorderService;
use pmn::core::session::{Session, SessionConfig};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::Account;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};

const T: Duration = Duration::from_secs(10);
const TWO_HOURS: u64 = 2 * 3600;
/// How long a guest waits for the owner (a person, in real life).
const ASK: Duration = Duration::from_secs(60);

/// One device's keys: its own software key store (TLS identity, owner key) and trust store.
struct Keys {
    store: Arc<SoftwareKeyStore>,
    identity: DeviceIdentity,
    trust: Arc<TrustStore>,
    dir: tempfile::TempDir,
}

fn keys(name: &str) -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SoftwareKeyStore::open(dir.path().join("keys")).expect("store"));
    let identity = DeviceIdentity::load_or_generate(store.clone(), "tls", name).expect("identity");
    Keys {
        store,
        identity,
        trust: Arc::new(TrustStore::in_memory()),
        dir,
    }
}

impl Keys {
    fn settings(&self) -> E2eSettings {
        E2eSettings::new(self.identity.clone(), self.trust.clone())
    }
    fn fingerprint(&self) -> DeviceFingerprint {
        self.identity.fingerprint()
    }
    /// This device trusts `other`, a device of `network` (paired earlier, in real life).
    fn pin(&self, network: &str, other: &Keys) {
        let network: BareJid = network.parse().expect("jid");
        self.trust
            .pin(&network, &other.fingerprint(), TrustSource::Manual)
            .expect("pin");
    }
}

/// A fresh guest household on friend.test, so that no test meets another's roster.
fn romeo_account() -> Account {
    let user = unique("romeo").replace('-', "_");
    let password = "romeo-secret";
    server()
        .register(&user, "friend.test", password)
        .expect("register romeo");
    Account {
        jid: Box::leak(format!("{user}@friend.test").into_boxed_str()),
        password,
    }
}

fn all_services() -> Vec<Arc<dyn pmn::core::rpc::Service>> {
    vec![
        Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default()))),
        Arc::new(RecorderService::simulated()),
        Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(20)))),
    ]
}

async fn start_provider(
    session: SessionConfig,
    keys: &Keys,
    acl: Option<std::path::PathBuf>,
    services: Vec<Arc<dyn pmn::core::rpc::Service>>,
) -> Provider {
    let mut config = ProviderConfig::new(session, "Julia's TV", keys.settings());
    config.access = Some(pmn::core::access::AccessSettings {
        acl_path: acl,
        owner_keys: vec![],
    });
    Provider::start(config, services)
        .await
        .expect("provider starts")
}

async fn start_phone(session: SessionConfig, keys: &Keys, owner: bool) -> Controller {
    let mut config = ControllerConfig::new(session, keys.settings());
    config.rpc_timeout = Duration::from_secs(5);
    if owner {
        config.access = Some(OwnerAccess::new(keys.store.clone(), "owner-approval"));
    }
    Controller::connect(config)
        .await
        .expect("controller connects")
}

/// Every device of Julia's network hears every guest's request, so two tests with a host each
/// would answer each other's guests: the tests of this file take turns.
static HOUSEHOLD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Julia's household: a TV with every service and guest access, and her phone, paired.
struct Host {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    tv: Provider,
    tv_keys: Keys,
    phone: Controller,
    phone_keys: Keys,
}

impl Host {
    async fn start() -> Host {
        Host::start_with_acl(None).await
    }

    async fn start_with_acl(acl: Option<std::path::PathBuf>) -> Host {
        let turn = HOUSEHOLD.lock().await;
        let tv_keys = keys("tv");
        let phone_keys = keys("julia-phone");
        tv_keys.pin(HOME.jid, &phone_keys);
        phone_keys.pin(HOME.jid, &tv_keys);
        let tv = start_provider(session_config(&HOME, "tv"), &tv_keys, acl, all_services()).await;
        let phone = start_phone(session_config(&HOME, "julia"), &phone_keys, true).await;
        discover(&phone, &tv).await;
        Host {
            _turn: turn,
            tv,
            tv_keys,
            phone,
            phone_keys,
        }
    }

    /// Goes offline cleanly, so that the next test does not see this TV as a hibernating,
    /// still-available device of the network.
    async fn stop(self) {
        self.phone.close().await;
        self.tv.stop().await;
    }

    fn tv_jid(&self) -> FullJid {
        self.tv.session().jid().expect("tv online")
    }
}

fn home() -> BareJid {
    HOME.jid.parse().expect("jid")
}

/// A fresh guest phone of `account` (its own keys, the tunnel required).
async fn romeo_phone(account: &Account) -> (Controller, Keys) {
    let keys = keys("romeo-phone");
    let phone = start_phone(session_config(account, "phone"), &keys, false).await;
    (phone, keys)
}

type Asking = tokio::task::JoinHandle<pmn::core::error::Result<pmn::core::controller::GuestAccess>>;

/// Romeo asks for `playback` (in the background); returns his pending ask and the request as
/// Julia's phone is told of it.
async fn ask(
    host: &Host,
    romeo: &Controller,
    reason: Option<&'static str>,
) -> (Asking, pmn::core::access::PendingRequest) {
    let mut requests = host
        .phone
        .owner()
        .expect("an owner device")
        .access_requests()
        .expect("owner");
    let asking = {
        let romeo = romeo.clone();
        tokio::spawn(async move {
            romeo
                .guest()
                .expect("the tunnel is on")
                .request_access(home(), vec![Scope::Playback], None, reason, ASK)
                .await
        })
    };
    let request = tokio::time::timeout(T, requests.recv())
        .await
        .expect("request in time")
        .expect("request");
    (asking, request)
}

/// Romeo asks; Julia sees the request and approves `scopes`; Romeo gets the grant.
async fn grant_romeo(host: &Host, romeo: &Controller, scopes: Vec<Scope>) -> String {
    let (ask, request) = ask(host, romeo, Some("film night")).await;
    assert_eq!(
        request.guest.to_bare(),
        romeo.session().jid().unwrap().to_bare()
    );
    assert_eq!(request.device, romeo.e2e().unwrap().fingerprint());
    assert_eq!(request.scopes, vec![Scope::Playback]);
    assert_eq!(
        request.reason.as_ref().map(|r| r.as_str()),
        Some("film night")
    );
    let issued = host
        .phone
        .owner()
        .expect("an owner device")
        .approve(request.id, scopes, unix_now() + TWO_HOURS)
        .await
        .expect("approve");
    assert_eq!(issued.installed_on.len(), 1, "{issued:?}");
    assert_eq!(issued.installed_on[0].0, host.tv_jid());
    let access = ask.await.expect("task").expect("granted");
    // Both phones show the same code; nothing of the host is trusted until Romeo confirms.
    assert_eq!(
        Some(&access.confirmation_code),
        issued.confirmation_code.as_ref()
    );
    assert!(
        romeo.player(host.tv_jid()).status().await.is_err(),
        "TV trusted before confirming"
    );
    let access = romeo
        .guest()
        .expect("the tunnel is on")
        .confirm_access(&home())
        .expect("confirmed");
    assert_eq!(access.network, home());
    assert_eq!(access.devices, vec![host.tv_keys.fingerprint()]);
    assert_eq!(access.grant, issued.grant.id);
    access.grant.to_string()
}

fn is_forbidden<T: std::fmt::Debug>(r: &pmn::core::error::Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Forbidden)
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_asks_owner_approves_playback_guest_plays_revoke_ends_it() {
    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    let grant = grant_romeo(&host, &romeo, vec![Scope::Playback]).await;

    // Mutual presence: Romeo discovers the TV like one of his own.
    let tv = host.tv_jid();
    romeo
        .wait_for_provider(|p| p.jid == tv, T)
        .await
        .expect("guest discovers the TV");

    // In scope: playback, through the tunnel, with events.
    let player = romeo.player(tv.clone());
    let _sub = romeo.subscribe(&tv, "player").await.expect("subscribe");
    let mut events = romeo.events();
    // The film he brought, from his own library (a guest may play only what is shared with it).
    let romeo_nas: FullJid = format!("{}/nas", romeo.session().jid().unwrap().to_bare())
        .parse()
        .unwrap();
    let film = pmn::core::provider::shared_item_uri(&romeo_nas, "film");
    player.play(&film).await.expect("play");
    let event = tokio::time::timeout(T, events.recv())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(event.provider, tv);
    assert!(player.pause().await.is_ok());
    assert!(player.status().await.is_ok());

    // Out of scope: recorder and library are refused by the TV.
    assert!(is_forbidden(&romeo.recorder(tv.clone()).channels().await));
    assert!(is_forbidden(
        &romeo.library(tv.clone()).browse("videos", 0, 10).await
    ));
    assert!(is_forbidden(&player.clear_queue().await));

    // The owner lists the grant and reads the audit log.
    let grants = host
        .phone
        .owner()
        .expect("an owner device")
        .access_grants()
        .await
        .expect("list");
    let listed: Vec<_> = grants
        .iter()
        .filter(|g| g.grant.id.as_str() == grant)
        .collect();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].active);
    assert_eq!(
        listed[0].grant.guest,
        romeo.session().jid().unwrap().to_bare()
    );
    let audit = host
        .phone
        .owner()
        .expect("an owner device")
        .access_audit(&tv, 0)
        .await
        .expect("audit");
    let has = |kind: AuditKind, method: Option<&str>| {
        audit
            .iter()
            .any(|r| r.kind == kind && (method.is_none() || r.method.as_deref() == method))
    };
    assert!(has(AuditKind::Request, None), "{audit:?}");
    assert!(has(AuditKind::Grant, None), "{audit:?}");
    assert!(has(AuditKind::Use, Some("player.play")), "{audit:?}");
    assert!(has(AuditKind::Deny, Some("recorder.channels")), "{audit:?}");

    // The owner's phone gets new audit records as events.
    let _feed = host
        .phone
        .subscribe(&tv, "access")
        .await
        .expect("audit feed");
    let mut owner_events = host.phone.events();
    player.resume().await.expect("resume");
    let audit_event = tokio::time::timeout(T, async {
        loop {
            let e = owner_events.recv().await.expect("event");
            if e.notice.service == "access" {
                return e;
            }
        }
    })
    .await
    .expect("audit event in time");
    assert_eq!(audit_event.notice.name, "audit");
    let Value::Struct(record) = &audit_event.notice.params[0] else {
        panic!("audit record is a struct: {audit_event:?}");
    };
    let kind = record.iter().find(|(k, _)| k == "kind").map(|(_, v)| v);
    assert_eq!(kind, Some(&Value::String("use".into())));

    // Revoke: applied at once, the next call is refused, the TV leaves Romeo's directory.
    let mut updates = romeo.updates();
    let revoked = host
        .phone
        .owner()
        .expect("an owner device")
        .revoke_grant(&pmn::core::access::GrantId::new(grant.clone()).unwrap())
        .await
        .expect("revoke");
    assert_eq!(revoked.applied_on, vec![tv.clone()]);
    // A call racing the tunnel's close may see the tunnel end (NotConnected); none succeeds, and
    // the next one, which must open a new tunnel, is refused by the TV.
    let racing = player.status().await;
    assert!(racing.is_err(), "{racing:?}");
    let after = player.status().await;
    assert!(is_forbidden(&after), "{after:?}");
    tokio::time::timeout(T, async {
        loop {
            if let Ok(DirectoryUpdate::Removed(jid)) = updates.recv().await {
                if jid == tv {
                    return;
                }
            }
        }
    })
    .await
    .expect("the TV leaves the guest's directory after revocation");
    let grants = host
        .phone
        .owner()
        .expect("an owner device")
        .access_grants()
        .await
        .expect("list");
    assert!(grants
        .iter()
        .filter(|g| g.grant.id.as_str() == grant)
        .all(|g| !g.active && g.revoked_at.is_some()));
    romeo.close().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_guest_gets_forbidden_and_no_tunnel() {
    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    let (ask, request) = ask(&host, &romeo, None).await;
    // Asking the same network again while waiting is a typed error, not a lost answer.
    let twice = romeo
        .guest()
        .expect("the tunnel is on")
        .request_access(home(), vec![Scope::Playback], None, None, ASK)
        .await;
    assert_eq!(twice.unwrap_err().kind(), ErrorKind::BadParams);
    host.phone
        .owner()
        .expect("an owner device")
        .deny(request.id)
        .await
        .expect("deny");
    let outcome = ask.await.expect("task");
    assert!(is_forbidden(&outcome), "{outcome:?}");
    assert!(host
        .phone
        .owner()
        .expect("an owner device")
        .pending_access_requests()
        .unwrap()
        .is_empty());
    // Answering twice is a typed error, not a panic.
    assert_eq!(
        host.phone
            .owner()
            .expect("an owner device")
            .deny(request.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::BadParams
    );
    // Nothing trusted, nothing granted: a call to the TV fails before any control is sent.
    let call = romeo.player(host.tv_jid()).status().await;
    assert!(call.is_err());
    assert_eq!(host.tv.access().unwrap().version(), 0);
    romeo.close().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strangers_and_plaintext_guests_are_refused() {
    let host = Host::start().await;
    let romeo_account = romeo_account();
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account).await;
    grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let tv = Jid::from(host.tv_jid());

    // The granted guest, but in clear (a plain session of his account): refused.
    let (plain, _rx) = Session::connect(session_config(&romeo_account, "plain"))
        .await
        .expect("plain session");
    let r = pmn::core::rpc::call(&plain, &tv, "player.status", vec![], T).await;
    assert!(is_forbidden(&r), "{r:?}");
    // Management requests in clear, even from the guest: refused.
    let register =
        xmpp_parsers::iq::Iq::from_set("x", pmn::core::access::OwnerKey::register(vec![1, 2, 3]))
            .with_to(tv.clone());
    let reply = plain.request(register, T).await.expect("answered");
    assert!(matches!(reply, pmn::core::session::IqReply::Error(_)));

    // A stranger (home.test, no grant): refused in clear and through a tunnel.
    let (stranger, _rx) = Session::connect(session_config(&STRANGER, "x"))
        .await
        .expect("stranger");
    let r = pmn::core::rpc::call(&stranger, &tv, "player.status", vec![], T).await;
    assert!(is_forbidden(&r), "{r:?}");
    let eve_keys = keys("eve");
    eve_keys.pin(HOME.jid, &host.tv_keys);
    let eve = start_phone(session_config(&STRANGER, "eve"), &eve_keys, false).await;
    let r = eve.call(&host.tv_jid(), "player.status", vec![]).await;
    assert!(r.is_err(), "{r:?}");
    // The TV still serves its guest.
    assert!(romeo.player(host.tv_jid()).status().await.is_ok());
    for s in [&plain, &stranger] {
        s.close().await;
    }
    eve.close().await;
    romeo.close().await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_survive_a_provider_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.json");
    let host = Host::start_with_acl(Some(acl.clone())).await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let Host {
        _turn,
        tv,
        tv_keys,
        phone: _phone,
        ..
    } = host;
    tv.stop().await;
    let tv = start_provider(
        session_config(&HOME, "tv"),
        &tv_keys,
        Some(acl),
        all_services(),
    )
    .await;
    let jid = tv.session().jid().expect("online");
    romeo
        .wait_for_provider(|p| p.jid == jid, T)
        .await
        .expect("TV back");
    romeo
        .player(jid.clone())
        .status()
        .await
        .expect("the restarted TV still honours the grant");
    assert!(is_forbidden(&romeo.recorder(jid).channels().await));
    romeo.close().await;
    _phone.close().await;
    tv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_flood_neither_grows_memory_nor_spams_the_owner() {
    let host = Host::start().await;
    let flood_account = romeo_account();
    let (flooder, _rx) = Session::connect(session_config(&flood_account, "flood"))
        .await
        .expect("session");
    let mut requests = host
        .phone
        .owner()
        .expect("an owner device")
        .access_requests()
        .expect("owner");
    let network = Jid::from(home());
    for i in 0..1000u32 {
        let mut fp = [0u8; 32];
        fp[..4].copy_from_slice(&i.to_be_bytes());
        let request = AccessRequest::new(DeviceFingerprint(fp), vec![Scope::Playback], None);
        let mut message = Message::new_with_type(MessageType::Headline, Some(network.clone()));
        message.payloads.push(request.into());
        flooder.send(message).expect("send");
    }
    // A marker from a second guest proves the owner processed the whole flood in order.
    let other = romeo_account();
    let (marker, _rx2) = Session::connect(session_config(&other, "marker"))
        .await
        .expect("session");
    let request = AccessRequest::new(DeviceFingerprint([0xee; 32]), vec![Scope::Playback], None);
    let mut message = Message::new_with_type(MessageType::Headline, Some(network));
    message.payloads.push(request.into());
    // The notification budget may be spent by the flood: the marker shows up as pending.
    marker.send(message).expect("send");
    let limits = pmn::core::access::IntakeLimits::default();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let pending = host
            .phone
            .owner()
            .expect("an owner device")
            .pending_access_requests()
            .unwrap();
        if pending
            .iter()
            .any(|p| p.device == DeviceFingerprint([0xee; 32]))
        {
            let flood = pending
                .iter()
                .filter(|p| p.guest.to_bare().as_str() == flood_account.jid)
                .count();
            assert!(
                flood <= limits.per_guest_burst,
                "{flood} pending from one guest"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "marker request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut notified = 0;
    while requests.try_recv().is_ok() {
        notified += 1;
    }
    assert!(
        notified <= limits.notify_burst as usize,
        "owner notified {notified} times"
    );
    assert!(notified >= 1);
    // The owner's device still works.
    assert!(host.phone.player(host.tv_jid()).status().await.is_ok());
    // The TV, which hears every request too, logged only the guest's first burst.
    let audit = host
        .phone
        .owner()
        .expect("an owner device")
        .access_audit(&host.tv_jid(), 0)
        .await
        .expect("audit");
    let logged = audit
        .iter()
        .filter(|r| r.kind == AuditKind::Request && r.subject.starts_with(flood_account.jid))
        .count();
    assert!(
        (1..=limits.per_guest_burst).contains(&logged),
        "{logged} request records"
    );
    flooder.close().await;
    marker.close().await;
    host.stop().await;
}

/// Every method of every service, for each role: owner, guest in scope, guest out of scope,
/// stranger. The ACL decides before parameters are read, so "allowed" is "anything but
/// `forbidden`" (calls run with no parameters: some answer `bad-request`, which is fine).
#[tokio::test(flavor = "multi_thread")]
async fn role_by_method_matrix() {
    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let eve_keys = keys("eve");
    eve_keys.pin(HOME.jid, &host.tv_keys);
    let stranger = start_phone(session_config(&STRANGER, "eve"), &eve_keys, false).await;
    let tv = host.tv_jid();
    romeo
        .wait_for_provider(|p| p.jid == tv, T)
        .await
        .expect("guest discovers the TV");
    let methods = [
        ("player", PLAYER_VERBS),
        ("recorder", RECORDER_VERBS),
        ("library", LIBRARY_VERBS),
    ];
    let mut checked = 0;
    for (service, verbs) in methods {
        for verb in verbs {
            let method = format!("{service}.{verb}");
            let in_scope = PLAYBACK.contains(&method.as_str());
            let owner = host.phone.call(&tv, &method, vec![]).await;
            assert!(!is_forbidden(&owner), "owner {method}: {owner:?}");
            let guest = romeo.call(&tv, &method, vec![]).await;
            assert_eq!(
                !is_forbidden(&guest),
                in_scope,
                "guest {method} (in scope: {in_scope}): {guest:?}"
            );
            let s = stranger.call(&tv, &method, vec![]).await;
            assert!(s.is_err(), "stranger {method}: {s:?}");
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        PLAYER_VERBS.len() + RECORDER_VERBS.len() + LIBRARY_VERBS.len()
    );
    romeo.close().await;
    stranger.close().await;
    host.stop().await;
}

const PLAYER_VERBS: &[&str] = &[
    "play",
    "pause",
    "resume",
    "stop",
    "seek",
    "set_volume",
    "mute",
    "next",
    "previous",
    "enqueue",
    "clear_queue",
    "queue",
    "status",
    "subscribe",
    "unsubscribe",
];
/// What a `playback` grant opens (declared with each method in `pmn::core::services::player`):
/// the controls and the events, not the queue editing.
const PLAYBACK: &[&str] = &[
    "player.play",
    "player.pause",
    "player.resume",
    "player.stop",
    "player.seek",
    "player.set_volume",
    "player.mute",
    "player.next",
    "player.previous",
    "player.status",
    "player.subscribe",
    "player.unsubscribe",
];
const RECORDER_VERBS: &[&str] = &["channels", "schedule", "scheduled", "cancel", "subscribe"];
const LIBRARY_VERBS: &[&str] = &["browse", "search", "item", "read", "subscribe"];

/// Spec §3.3's "only the one file": Romeo's phone (owner of his network) grants Julia's TV read
/// access to one item of his library; the TV, acting as a controller of that library, gets that
/// item and `forbidden` for anything else.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_tv_reads_only_the_one_shared_item() {
    let _turn = HOUSEHOLD.lock().await;
    let romeo_account = romeo_account();
    let romeo_net: &str = romeo_account.jid;
    let nas_keys = keys("romeo-nas");
    let phone_keys = keys("romeo-phone");
    nas_keys.pin(romeo_net, &phone_keys);
    phone_keys.pin(romeo_net, &nas_keys);
    let nas = start_provider(
        session_config(&romeo_account, "nas"),
        &nas_keys,
        None,
        vec![Arc::new(LibraryService::new(Arc::new(
            GeneratedLibrary::new(20),
        )))],
    )
    .await;
    let phone = start_phone(session_config(&romeo_account, "phone"), &phone_keys, true).await;
    discover(&phone, &nas).await;

    // Julia's TV, in its role as a controller of Romeo's library, knows the library's key from
    // Romeo (he shows it when he shares the film).
    let tv_keys = keys("tv");
    tv_keys.pin(romeo_net, &nas_keys);
    let tv_fetcher = start_phone(session_config(&HOME, "tv-fetch"), &tv_keys, false).await;

    let item = "videos/7";
    let issued = phone
        .owner()
        .expect("an owner device")
        .grant_access(
            home(),
            tv_keys.fingerprint(),
            vec![Scope::LibraryItem],
            Some(ItemId::new(item).unwrap()),
            unix_now() + TWO_HOURS,
        )
        .await
        .expect("grant the one item");
    assert_eq!(issued.grant.item.as_ref().map(|i| i.as_str()), Some(item));

    let nas_jid = nas.session().jid().expect("online");
    let library = tv_fetcher.library(nas_jid.clone());
    let got = library.item(item).await.expect("the shared item");
    assert_eq!(got.id, item);
    // Its bytes travel inside the end-to-end tunnel, chunk by chunk.
    let bytes = library
        .read_all(item, 1 << 20)
        .await
        .expect("the shared item's bytes");
    assert_eq!(bytes.len() as u64, GENERATED_ITEM_BYTES);
    assert_eq!(bytes, generated_bytes(7, 0, GENERATED_ITEM_BYTES));
    assert!(is_forbidden(&library.item("videos/8").await));
    assert!(is_forbidden(&library.read("videos/8", 0, 1024).await));
    assert!(is_forbidden(&library.browse("videos", 0, 10).await));
    assert!(is_forbidden(&library.search("Film", 0, 10).await));
    // Another device of Julia's network (not the TV's key) gets nothing either.
    let other_keys = keys("julia-laptop");
    other_keys.pin(romeo_net, &nas_keys);
    let other = start_phone(session_config(&HOME, "laptop"), &other_keys, false).await;
    assert!(other.library(nas_jid).item(item).await.is_err());
    drop(nas_keys.dir);
    for c in [&phone, &tv_fetcher, &other] {
        c.close().await;
    }
    nas.stop().await;
}

/// An access payload that is not a request (or a broken one) from a stranger changes nothing on
/// the owner's side and does not crash it.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_are_ignored_by_the_owner() {
    let host = Host::start().await;
    let (eve, _rx) = Session::connect(session_config(&STRANGER, "eve"))
        .await
        .expect("session");
    let network = Jid::from(home());
    for xml in [
        format!("<request xmlns='{NS_ACCESS}' device='zz'/>"),
        format!(
            "<request xmlns='{NS_ACCESS}' device='{}'/>",
            "ab".repeat(32)
        ),
        format!(
            "<request xmlns='{NS_ACCESS}' device='{}'><scope name='root'/></request>",
            "ab".repeat(32)
        ),
        format!("<decision xmlns='{NS_ACCESS}' result='approved' for='00'/>"),
    ] {
        let mut message = Message::new_with_type(MessageType::Headline, Some(network.clone()));
        message.payloads.push(xml.parse().expect("xml"));
        eve.send(message).expect("send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(host
        .phone
        .owner()
        .expect("an owner device")
        .pending_access_requests()
        .unwrap()
        .is_empty());
    assert!(host.phone.player(host.tv_jid()).status().await.is_ok());
    eve.close().await;
    host.stop().await;
}

/// Grants pushed straight through the owner's tunnel, bypassing the owner API, as a compromised
/// or buggy device might: forged (unknown key), replayed, rolled back after a revocation, expired
/// and malformed grants are each refused by the provider with a typed stanza error, and a guest
/// cannot manage access even through its own tunnel.
#[tokio::test(flavor = "multi_thread")]
async fn forged_replayed_rolled_back_expired_and_malformed_grants_are_refused_on_the_wire() {
    use pmn::core::access::{GrantDraft, SignedGrant};
    use pmn::core::session::IqReply;
    use xmpp_parsers::iq::Iq;
    use xmpp_parsers::minidom::Element;
    use xmpp_parsers::stanza_error::DefinedCondition;

    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    let grant_id = grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let e2e = host.phone.e2e().expect("tunnel").clone();
    let tv = host.tv_jid();
    let push = |payload: Element| {
        let e2e = e2e.clone();
        let tv = tv.clone();
        async move {
            let iq = Iq::Set {
                from: None,
                to: Some(Jid::from(tv)),
                id: String::new(),
                payload,
            };
            match e2e.request(iq, T).await.expect("answered") {
                IqReply::Error(e) => Some(e.defined_condition),
                IqReply::Result(_) => None,
            }
        }
    };
    let romeo_bare = romeo.session().jid().unwrap().to_bare();
    let romeo_device = romeo.e2e().unwrap().fingerprint();
    let draft = |version: u64, expires: u64| {
        GrantDraft::new(
            home(),
            romeo_bare.clone(),
            romeo_device,
            vec![Scope::Playback],
            unix_now().saturating_sub(10),
            expires,
            version,
        )
    };
    let owner_store = host.phone_keys.store.clone();
    let version = host.tv.access().unwrap().version();
    let sign = |d: GrantDraft| {
        d.sign(owner_store.as_ref(), "owner-approval")
            .expect("sign")
    };

    // Forged: signed by a key that no owner device registered.
    let forger = keys("forger");
    forger
        .store
        .generate(
            "owner-approval",
            pmn::core::identity::KeyPolicy::OwnerApproval {
                user_presence: false,
            },
        )
        .expect("key");
    let forged = draft(version, unix_now() + 600)
        .sign(forger.store.as_ref(), "owner-approval")
        .expect("sign");
    assert_eq!(push(forged.into()).await, Some(DefinedCondition::Forbidden));
    // Tampered after signing: the scopes grow, the signature no longer verifies.
    let mut tampered: SignedGrant = sign(draft(version, unix_now() + 600));
    tampered.scopes.push(Scope::LibraryItem);
    tampered.item = Some(ItemId::new("videos/1").unwrap());
    assert!(push(tampered.into()).await.is_some());

    // Replayed: the grant Romeo holds, installed a second time.
    let held = host
        .phone
        .owner()
        .expect("an owner device")
        .access_grants()
        .await
        .expect("list")
        .into_iter()
        .find(|g| g.grant.id.as_str() == grant_id)
        .expect("held")
        .grant;
    assert_eq!(
        push(held.clone().into()).await,
        Some(DefinedCondition::Forbidden)
    );
    // A guest, through his own admitted tunnel, cannot manage access: not even his own grant.
    let as_guest = Iq::Set {
        from: None,
        to: Some(Jid::from(tv.clone())),
        id: String::new(),
        payload: held.clone().into(),
    };
    match romeo
        .e2e()
        .unwrap()
        .request(as_guest, T)
        .await
        .expect("answered")
    {
        IqReply::Error(e) => assert_eq!(e.defined_condition, DefinedCondition::Forbidden),
        IqReply::Result(_) => panic!("a guest managed access"),
    }
    // Expired by the provider's clock.
    let mut old = draft(version, unix_now() - 1);
    old.not_before = unix_now() - 100;
    assert_eq!(
        push(sign(old).into()).await,
        Some(DefinedCondition::Forbidden)
    );
    // Rolled back: after a revocation the ACL version moved on; a grant signed for the old one
    // (e.g. captured earlier and replayed by a device) is refused.
    let stale = sign(draft(version, unix_now() + 600));
    host.phone
        .owner()
        .expect("an owner device")
        .revoke_grant(&held.id)
        .await
        .expect("revoke");
    assert!(host.tv.access().unwrap().version() > version);
    assert_eq!(push(stale.into()).await, Some(DefinedCondition::Forbidden));
    // Malformed: bad-request, and the provider keeps serving.
    let malformed: Element = format!("<grant xmlns='{NS_ACCESS}' id='x'/>")
        .parse()
        .expect("xml");
    assert_eq!(push(malformed).await, Some(DefinedCondition::BadRequest));
    assert!(host.phone.player(tv.clone()).status().await.is_ok());
    // The audit log recorded the refusals.
    let audit = host
        .phone
        .owner()
        .expect("an owner device")
        .access_audit(&tv, 0)
        .await
        .expect("audit");
    let refused = audit
        .iter()
        .filter(|r| r.kind == AuditKind::Deny && r.detail.starts_with("grant refused"))
        .count();
    assert!(refused >= 4, "{audit:?}");
    romeo.close().await;
    host.stop().await;
}

/// A provider that was off when the owner approved or revoked catches up when it comes back: the
/// owner's phone sees it online and brings its ACL in line with the others' (revocation must
/// reach every provider; a new grant should too).
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_was_off_catches_up_on_grants_and_revocations() {
    let host = Host::start().await;
    let bedroom = BedroomTv::new(&host);
    let start_tv2 = || bedroom.start();
    let tv2 = start_tv2().await;
    discover(&host.phone, &tv2).await;
    tv2.stop().await;

    // Approved while the bedroom TV is off: only the living-room TV has the grant…
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    let grant = grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let romeo_bare = romeo.session().jid().unwrap().to_bare();
    let romeo_fp = romeo.e2e().unwrap().fingerprint();
    // …and once it is back, the owner's phone installs it there too.
    let tv2 = start_tv2().await;
    let guard = tv2.access().expect("access").clone();
    let deadline = tokio::time::Instant::now() + T;
    while !guard.admits(&romeo_bare, &romeo_fp) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grant never reached TV 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tv2.stop().await;

    // Revoked while the bedroom TV is off: when it comes back it still holds the grant in its
    // file, and the owner's phone revokes it there at once.
    let revoked = host
        .phone
        .owner()
        .expect("an owner device")
        .revoke_grant(&pmn::core::access::GrantId::new(grant).unwrap())
        .await
        .expect("revoke");
    assert_eq!(revoked.applied_on, vec![host.tv_jid()]);
    let tv2 = start_tv2().await;
    let guard = tv2.access().expect("access").clone();
    let deadline = tokio::time::Instant::now() + T;
    while guard.admits(&romeo_bare, &romeo_fp) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation never reached TV 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    romeo.close().await;
    tv2.stop().await;
    host.stop().await;
}

/// Issue 12: owner keys are a privilege. A device of Julia's network that is not an owner (a
/// stolen tablet the TV still trusts) cannot register its own owner key, so it cannot sign grants
/// for an accomplice; and when Julia's phone (the owner) is revoked on the network, the grant it
/// signed for Romeo stops working on the TV.
#[tokio::test(flavor = "multi_thread")]
async fn a_non_owner_device_cannot_grant_and_a_revoked_owners_grants_end() {
    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let tv = host.tv_jid();
    assert!(romeo.player(tv.clone()).status().await.is_ok());

    // The tablet: trusted by the TV, configured as an owner by whoever holds it, but no owner
    // device ever registered its key.
    let tablet_keys = keys("julia-tablet");
    host.tv_keys.pin(HOME.jid, &tablet_keys);
    tablet_keys.pin(HOME.jid, &host.tv_keys);
    let tablet = start_phone(session_config(&HOME, "tablet"), &tablet_keys, true).await;
    discover(&tablet, &host.tv).await;
    assert!(
        tablet.player(tv.clone()).status().await.is_ok(),
        "it is trusted"
    );
    let accomplice = DeviceFingerprint([0x66; 32]);
    let refused = tablet
        .owner()
        .expect("an owner device")
        .grant_access(
            "mallory@friend.test".parse().unwrap(),
            accomplice,
            vec![Scope::Playback],
            None,
            unix_now() + TWO_HOURS,
        )
        .await
        .expect_err("a non-owner device signs no grant the TV takes");
    assert_eq!(refused.kind(), ErrorKind::Forbidden, "{refused}");
    assert_eq!(
        host.tv.access().unwrap().active_grants().len(),
        1,
        "only Romeo's grant"
    );

    // Julia's phone is revoked on the network (from the tablet): the TV drops its owner key and
    // the grant it signed; Romeo is refused from his next call.
    let phone_fp = host.phone_keys.fingerprint();
    tablet
        .e2e()
        .unwrap()
        .revoke_everywhere(&home(), &phone_fp)
        .await
        .expect("revocation published");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        match romeo.player(tv.clone()).status().await {
            Err(e) if e.kind() == ErrorKind::Forbidden => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "the revoked owner's grant still works: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(host.tv.access().unwrap().active_grants().len(), 0);
    tablet.close().await;
    romeo.close().await;
    host.stop().await;
}

/// Issue 12: when a guest's last grant expires, the guest also loses the household's presence
/// (the providers end the roster subscription both ways, as a revocation does), instead of
/// seeing which devices are on for ever.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_guest_loses_the_households_presence() {
    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    let (asking, request) = ask(&host, &romeo, None).await;
    host.phone
        .owner()
        .expect("an owner device")
        .approve(request.id, vec![Scope::Playback], unix_now() + 6)
        .await
        .expect("approve");
    asking.await.expect("task").expect("granted");
    romeo
        .guest()
        .expect("the tunnel is on")
        .confirm_access(&home())
        .expect("confirmed");
    let home_jid = home();
    let subscription = |romeo: Controller| {
        let home_jid = home_jid.clone();
        async move {
            let query = xmpp_parsers::roster::Roster {
                ver: None,
                items: vec![],
            };
            let iq = xmpp_parsers::iq::Iq::from_get(String::new(), query);
            match romeo.session().request(iq, T).await.expect("roster") {
                pmn::core::session::IqReply::Result(Some(el)) => {
                    xmpp_parsers::roster::Roster::try_from(el)
                        .expect("roster")
                        .items
                        .into_iter()
                        .find(|i| i.jid == home_jid)
                        .map(|i| i.subscription)
                }
                other => panic!("roster: {other:?}"),
            }
        }
    };
    use xmpp_parsers::roster::Subscription;
    let deadline = tokio::time::Instant::now() + T;
    while subscription(romeo.clone()).await != Some(Subscription::Both) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mutual subscription"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The grant expires 6 s after approval; the TV looks every 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = subscription(romeo.clone()).await;
        if matches!(now, None | Some(Subscription::None)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the expired guest still shares presence: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(romeo.player(host.tv_jid()).status().await.is_err());
    romeo.close().await;
    host.stop().await;
}

/// Issue 12: the server answers Romeo's request itself, as "the host", with its own key as "the
/// TV". Unsigned, the answer is refused (`Forbidden`). Signed with a key of its own, it is taken
/// as an approval but pins nothing: its confirmation code cannot match one the owner's phone
/// shows (the owner never approved), so Romeo rejects it and the TV key is never trusted.
#[tokio::test(flavor = "multi_thread")]
async fn a_decision_forged_by_the_server_pins_nothing() {
    use pmn::core::access::{AccessDecision, DecisionDevice, GrantId, Transcript};
    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    let romeo_jid = romeo.session().jid().unwrap();
    // The "server": a session of the host account that is no owner device.
    let (forger, _rx) = pmn::core::session::Session::connect(session_config(&HOME, "forger"))
        .await
        .expect("forger online");
    let forger_keys = keys("forger");
    forger_keys
        .store
        .generate(
            "owner-approval",
            pmn::core::identity::KeyPolicy::OwnerApproval {
                user_presence: false,
            },
        )
        .expect("key");
    let fake_tv = DeviceFingerprint([0x5e; 32]);
    let romeo_device = romeo.e2e().unwrap().fingerprint();
    let decide = |signed: bool| {
        let grant = GrantId::new("forged-1").unwrap();
        let expires = unix_now() + 3600;
        let introduction = signed.then(|| {
            Transcript {
                host: &home(),
                guest: &romeo_jid.to_bare(),
                guest_device: &romeo_device,
                grant: &grant,
                expires,
                devices: &[fake_tv],
            }
            .sign(forger_keys.store.as_ref(), "owner-approval")
            .expect("sign")
        });
        let decision = AccessDecision {
            result: "approved".into(),
            for_device: romeo_device,
            grant: Some(grant.clone()),
            expires: Some(expires),
            devices: vec![DecisionDevice {
                jid: home(),
                fingerprint: fake_tv,
            }],
            introduction,
        };
        let mut message = xmpp_parsers::message::Message::new_with_type(
            xmpp_parsers::message::MessageType::Headline,
            Some(Jid::from(romeo_jid.clone())),
        );
        message.payloads.push(decision.into());
        message
    };
    for signed in [true, false] {
        let asking = {
            let romeo = romeo.clone();
            tokio::spawn(async move {
                romeo
                    .guest()
                    .expect("the tunnel is on")
                    .request_access(home(), vec![Scope::Playback], None, None, ASK)
                    .await
            })
        };
        // Let the request leave, then answer before Julia's phone does.
        tokio::time::sleep(Duration::from_millis(300)).await;
        forger.send(decide(signed)).expect("send");
        let outcome = asking.await.expect("task");
        if signed {
            let access = outcome.expect("a self-consistent forgery reads as an approval");
            assert_eq!(access.devices, vec![fake_tv]);
            assert!(
                !romeo.e2e().unwrap().trust().is_trusted(&home(), &fake_tv),
                "nothing pinned before the user confirms"
            );
            // The owner's phone shows no code for this (it never approved): Romeo rejects.
            assert!(romeo
                .guest()
                .expect("the tunnel is on")
                .reject_access(&home()));
            assert!(!romeo.e2e().unwrap().trust().is_trusted(&home(), &fake_tv));
        } else {
            let e = outcome.expect_err("an unsigned approval");
            assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
            assert!(e.to_string().contains("signature"), "{e}");
        }
        // Julia's phone got the request too: deny it, and let the denial land (Romeo ignores it,
        // nothing is pending) before the next round asks again.
        for p in host
            .phone
            .owner()
            .expect("an owner device")
            .pending_access_requests()
            .unwrap()
        {
            let _ = host
                .phone
                .owner()
                .expect("an owner device")
                .deny(p.id)
                .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        romeo
            .guest()
            .expect("the tunnel is on")
            .confirm_access(&home())
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden,
        "nothing waits for confirmation"
    );
    forger.close().await;
    romeo.close().await;
    host.stop().await;
}

/// Issue 12: a revocation cannot spread back. Romeo's grant is on both TVs; the bedroom TV is off
/// when Julia revokes it (the living-room TV applies it); then the living-room TV is off when the
/// bedroom TV comes back, still holding the grant. No provider online knows of the revocation,
/// but Julia's phone does: it revokes the grant there at once instead of leaving it (or copying it
/// on to the next newcomer).
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_cannot_spread_back_from_a_provider_that_missed_it() {
    let host = Host::start().await;
    let bedroom = BedroomTv::new(&host);
    let start_tv2 = || bedroom.start();
    let tv2 = start_tv2().await;
    discover(&host.phone, &tv2).await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    let grant = grant_romeo_on(&host, &romeo, 2).await;
    let romeo_bare = romeo.session().jid().unwrap().to_bare();
    let romeo_fp = romeo.e2e().unwrap().fingerprint();
    assert!(tv2.access().unwrap().admits(&romeo_bare, &romeo_fp));
    tv2.stop().await;
    let revoked = host
        .phone
        .owner()
        .expect("an owner device")
        .revoke_grant(&pmn::core::access::GrantId::new(grant).unwrap())
        .await
        .expect("revoke");
    assert_eq!(revoked.applied_on, vec![host.tv_jid()]);
    // The living-room TV goes off; the bedroom TV comes back alone.
    let Host {
        _turn,
        tv,
        tv_keys: _tv_keys,
        phone,
        phone_keys: _phone_keys,
    } = host;
    tv.stop().await;
    let tv2 = start_tv2().await;
    let guard = tv2.access().expect("access").clone();
    let deadline = tokio::time::Instant::now() + T;
    while guard.admits(&romeo_bare, &romeo_fp) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the grant revoked by the owner's phone lived on on TV 2"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    romeo.close().await;
    tv2.stop().await;
    phone.close().await;
}

/// [`grant_romeo`] for a host with `providers` TVs online (the grant must reach all of them).
async fn grant_romeo_on(host: &Host, romeo: &Controller, providers: usize) -> String {
    let (ask, request) = ask(host, romeo, Some("film night")).await;
    let issued = host
        .phone
        .owner()
        .expect("an owner device")
        .approve(request.id, vec![Scope::Playback], unix_now() + TWO_HOURS)
        .await
        .expect("approve");
    assert_eq!(issued.installed_on.len(), providers, "{issued:?}");
    ask.await.expect("task").expect("granted");
    romeo
        .guest()
        .expect("the tunnel is on")
        .confirm_access(&home())
        .expect("confirmed");
    issued.grant.id.to_string()
}

/// Issue 12: an owner makes another phone an owner, lists the keys, and removes one. Before, the
/// tablet's grants are refused; once added, it signs grants the TV takes; once removed, they end.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_adds_lists_and_removes_a_second_owner() {
    let host = Host::start().await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let tablet_keys = keys("julia-tablet");
    host.tv_keys.pin(HOME.jid, &tablet_keys);
    tablet_keys.pin(HOME.jid, &host.tv_keys);
    let tablet = start_phone(session_config(&HOME, "tablet"), &tablet_keys, true).await;
    discover(&tablet, &host.tv).await;
    let mallory = || async {
        tablet
            .owner()
            .expect("an owner device")
            .grant_access(
                "mallory@friend.test".parse().unwrap(),
                DeviceFingerprint([0x66; 32]),
                vec![Scope::Playback],
                None,
                unix_now() + TWO_HOURS,
            )
            .await
    };
    assert_eq!(mallory().await.unwrap_err().kind(), ErrorKind::Forbidden);
    // The non-owner cannot add itself either.
    let tablet_spki = tablet
        .owner()
        .expect("an owner device")
        .owner_public_key()
        .expect("owner role configured");
    let tablet_fp = tablet_keys.fingerprint();
    assert_eq!(
        tablet
            .owner()
            .expect("an owner device")
            .add_owner(tablet_spki.clone(), tablet_fp)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Forbidden
    );
    // Julia's phone adds it.
    let took = host
        .phone
        .owner()
        .expect("an owner device")
        .add_owner(tablet_spki.clone(), tablet_fp)
        .await
        .expect("add");
    assert_eq!(took, vec![host.tv_jid()]);
    let owners = host
        .phone
        .owner()
        .expect("an owner device")
        .owner_keys()
        .await
        .expect("list");
    assert_eq!(owners.len(), 2, "{owners:?}");
    let phone_fp = host.phone_keys.fingerprint();
    assert!(owners.iter().any(|o| o.device == Some(phone_fp)));
    assert!(owners
        .iter()
        .any(|o| o.device == Some(tablet_fp) && o.spki == tablet_spki));
    // Now the tablet's grants are taken…
    mallory().await.expect("an owner's grant");
    assert_eq!(host.tv.access().unwrap().active_grants().len(), 2);
    // …until Julia removes its key: they end, Romeo's (signed by Julia) stays.
    host.phone
        .owner()
        .expect("an owner device")
        .remove_owner(tablet_spki)
        .await
        .expect("remove");
    assert_eq!(host.tv.access().unwrap().active_grants().len(), 1);
    assert_eq!(
        host.phone
            .owner()
            .expect("an owner device")
            .owner_keys()
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(romeo.player(host.tv_jid()).status().await.is_ok());
    tablet.close().await;
    romeo.close().await;
    host.stop().await;
}

/// A second TV of Julia's household whose ACL lives in a file, so it can be stopped and started
/// again with what it held (the catch-up and spread-back tests).
struct BedroomTv {
    _dir: tempfile::TempDir,
    acl: std::path::PathBuf,
    keys: Keys,
}

impl BedroomTv {
    fn new(host: &Host) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let acl = dir.path().join("tv2-acl.json");
        let keys = keys("tv2");
        keys.pin(HOME.jid, &host.phone_keys);
        host.phone_keys.pin(HOME.jid, &keys);
        BedroomTv {
            _dir: dir,
            acl,
            keys,
        }
    }

    async fn start(&self) -> Provider {
        start_provider(
            session_config(&HOME, "tv2"),
            &self.keys,
            Some(self.acl.clone()),
            all_services(),
        )
        .await
    }
}

/// Issue 12: removing an owner key reaches a provider that was off: Julia's phone remembers the
/// removal and tells the bedroom TV when it comes back, so the removed phone's grants end there
/// too.
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_owner_key_is_removed_from_a_provider_that_was_off() {
    let host = Host::start().await;
    let bedroom = BedroomTv::new(&host);
    let tv2 = bedroom.start().await;
    discover(&host.phone, &tv2).await;
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account()).await;
    grant_romeo_on(&host, &romeo, 2).await; // Julia's key is the first on both TVs
    let tablet_keys = keys("julia-tablet");
    let tablet = start_phone(session_config(&HOME, "tablet"), &tablet_keys, true).await;
    let tablet_spki = tablet
        .owner()
        .expect("an owner device")
        .owner_public_key()
        .expect("owner role configured");
    let took = host
        .phone
        .owner()
        .expect("an owner device")
        .add_owner(tablet_spki.clone(), tablet_keys.fingerprint())
        .await
        .expect("add");
    assert_eq!(took.len(), 2, "{took:?}");
    let tablet_key = DeviceFingerprint::from_spki(&tablet_spki);
    let held = |tv: &Provider| {
        tv.access()
            .unwrap()
            .owner_devices()
            .iter()
            .any(|(k, _)| *k == tablet_key)
    };
    assert!(held(&tv2));
    tv2.stop().await;
    host.phone
        .owner()
        .expect("an owner device")
        .remove_owner(tablet_spki)
        .await
        .expect("remove");
    assert!(!held(&host.tv));
    let tv2 = bedroom.start().await;
    let deadline = tokio::time::Instant::now() + T;
    while held(&tv2) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bedroom TV kept the removed owner key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tablet.close().await;
    romeo.close().await;
    tv2.stop().await;
    host.stop().await;
}

/// A guest with `playback` plays a playlist Julia shared with his household: the TV reads the
/// node, checks that its access model names Romeo's network, verifies Julia's signatures and
/// plays the entries in order. A playlist she did not share, another household's playlist and
/// `enqueue` (not in his scope) are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_plays_a_playlist_shared_with_his_household_and_no_other() {
    use pmn::core::pubsub::{playlist_uri, Access, MediaKind, PlaylistEntry};
    let host = Host::start().await;
    let romeo_account = romeo_account();
    let romeo_net: BareJid = romeo_account.jid.parse().expect("jid");
    let (romeo, _romeo_keys) = romeo_phone(&romeo_account).await;
    grant_romeo(&host, &romeo, vec![Scope::Playback]).await;
    let tv = host.tv_jid();
    romeo
        .wait_for_provider(|p| p.jid == tv, T)
        .await
        .expect("guest discovers the TV");

    let film = |id: &str, position: u32| PlaylistEntry {
        id: id.to_owned(),
        title: format!("Film {id}"),
        uri: format!("https://films.example/{id}.mkv"),
        kind: MediaKind::Video,
        duration_ms: Some(5_400_000),
        artwork: None,
        position,
    };
    let shared = unique("film-night");
    let private = unique("just-us");
    let playlists = host.phone.playlists();
    playlists
        .create(&shared, &Access::Friends(vec![romeo_net.clone()]))
        .await
        .expect("create shared");
    playlists
        .create(&private, &Access::OwnNetwork)
        .await
        .expect("create private");
    for (id, position) in [("second", 2), ("first", 1)] {
        playlists
            .publish(&shared, &film(id, position))
            .await
            .expect("publish");
    }
    playlists
        .publish(&private, &film("ours", 0))
        .await
        .expect("publish");

    let player = romeo.player(tv.clone());
    let status = player
        .play(&playlist_uri(&home(), &shared))
        .await
        .expect("the shared playlist plays");
    assert_eq!(
        status.uri.as_deref(),
        Some("https://films.example/first.mkv")
    );
    assert_eq!(status.title.as_deref(), Some("Film first"));
    let next = player.next().await.expect("next");
    assert_eq!(
        next.uri.as_deref(),
        Some("https://films.example/second.mkv")
    );
    let refused_before = host.tv.stats().media_refused;

    // Not shared with him, another household's, and enqueue (outside `playback`): refused.
    let r = player.play(&playlist_uri(&home(), &private)).await;
    assert!(is_forbidden(&r), "{r:?}");
    let r = player.play(&playlist_uri(&romeo_net, "anything")).await;
    assert!(is_forbidden(&r), "{r:?}");
    let r = player.enqueue(&playlist_uri(&home(), &shared), None).await;
    assert!(is_forbidden(&r), "{r:?}");
    assert_eq!(host.tv.stats().media_refused, refused_before + 2);
    // Still the shared playlist playing.
    let status = player.status().await.expect("status");
    assert_eq!(
        status.uri.as_deref(),
        Some("https://films.example/second.mkv")
    );
    let audit = host
        .phone
        .owner()
        .expect("an owner device")
        .access_audit(&tv, 0)
        .await
        .expect("audit");
    assert!(
        audit.iter().any(|r| r.kind == AuditKind::Deny
            && r.method.as_deref() == Some("player.play")
            && r.detail.contains("playlist-not-shared")),
        "{audit:?}"
    );
    romeo.close().await;
    host.stop().await;
}
