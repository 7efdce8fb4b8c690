//! The provider's bounds and refusals on the wire (issue 17 items 4–6), against the real Prosody:
//! every bound holds with a typed answer while the household keeps working, media URIs are
//! checked by policy, and every kind of bad input gets a clear stanza error.
//!
//! - calls in flight per caller, in total and for guests → `resource-constraint` (type `wait`);
//! - subscriptions per guest network (a guest with many resources) → `resource-constraint`;
//! - the audit log under a flood keeps grants and refusals;
//! - guests play only what is shared with them, own devices no mpv pseudo-protocol;
//! - unknown namespace → `service-unavailable`, stranger → `forbidden`, malformed XML-RPC →
//!   `bad-request`, unknown method → `item-not-found`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use pmn::core::access::{unix_now, AccessSettings, AuditKind, DeviceFingerprint, Scope};
use pmn::core::controller::{Controller, ControllerConfig, OwnerAccess};
use pmn::core::e2e::{E2eSettings, TrustSource, TrustStore};
use pmn::core::error::{Error, ErrorKind, Result};
use pmn::core::identity::DeviceIdentity;
use pmn::core::provider::{shared_item_uri, Provider, ProviderConfig, ProviderLimits};
use pmn::core::rpc::xmlrpc::{self, MethodCall, Value};
use pmn::core::rpc::{CallContext, Service};
use pmn::core::services::player::{MediaPlayer, Playback, PlayerService, SimulatedPlayer};
use pmn::core::services::recorder::RecorderService;
use pmn::core::session::{IqReply, Session, SessionConfig};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::Account;
use tokio::sync::watch;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

const T: Duration = Duration::from_secs(10);

/// A service whose `gate.wait` returns only once the test opens the gate: calls stay in flight.
struct Gate {
    open: watch::Receiver<bool>,
}

impl Service for Gate {
    fn name(&self) -> &str {
        "gate"
    }
    fn feature(&self) -> &str {
        "urn:xmpp:tmp:pmn:test-gate:0"
    }
    fn call<'a>(
        &'a self,
        verb: &'a str,
        _params: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        let mut open = self.open.clone();
        async move {
            match verb {
                "wait" => {
                    let _ = open.wait_for(|o| *o).await;
                    Ok(Value::Bool(true))
                }
                "panic" => panic!("a broken service"),
                _ => Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("no gate.{verb}"),
                )),
            }
        }
        .boxed()
    }
}

/// The simulated player, except that loading a URI containing `slow` waits for the gate (so a
/// guest's `player.play` can stay in flight).
struct GatedPlayer {
    inner: SimulatedPlayer,
    open: watch::Receiver<bool>,
}

impl MediaPlayer for GatedPlayer {
    fn load(&self, uri: String) -> BoxFuture<'_, Result<()>> {
        let mut open = self.open.clone();
        async move {
            if uri.contains("slow") {
                let _ = open.wait_for(|o| *o).await;
            }
            self.inner.load(uri).await
        }
        .boxed()
    }
    fn pause(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.pause()
    }
    fn resume(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.resume()
    }
    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.stop()
    }
    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>> {
        self.inner.seek(position_ms)
    }
    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        self.inner.set_volume(volume)
    }
    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        self.inner.set_muted(muted)
    }
    fn playback(&self) -> BoxFuture<'_, Result<Playback>> {
        self.inner.playback()
    }
}

fn services(open: watch::Receiver<bool>) -> Vec<Arc<dyn Service>> {
    let player = GatedPlayer {
        inner: SimulatedPlayer::default(),
        open: open.clone(),
    };
    vec![
        Arc::new(PlayerService::new(Arc::new(player))),
        Arc::new(RecorderService::simulated()),
        Arc::new(Gate { open }),
    ]
}

/// A raw iq of `payload` from `from` to `to` (`set` or `get`), and the reply.
async fn raw(from: &Session, to: &Jid, payload: Element, set: bool) -> IqReply {
    let (to, id) = (Some(to.clone()), String::new());
    let iq = if set {
        Iq::Set {
            from: None,
            to,
            id,
            payload,
        }
    } else {
        Iq::Get {
            from: None,
            to,
            id,
            payload,
        }
    };
    from.request(iq, T).await.expect("an answer, not a hang")
}

fn rpc(method: &str, params: Vec<Value>) -> Element {
    xmlrpc::call_to_query(&MethodCall::new(method, params))
}

fn condition(reply: &IqReply) -> Option<(DefinedCondition, ErrorType)> {
    match reply {
        IqReply::Error(e) => Some((e.defined_condition.clone(), e.type_.clone())),
        IqReply::Result(_) => None,
    }
}

const BUSY: Option<(DefinedCondition, ErrorType)> =
    Some((DefinedCondition::ResourceConstraint, ErrorType::Wait));

fn is_busy<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.to_string().contains("ResourceConstraint"))
}

fn is_forbidden<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Forbidden)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_are_bounded_per_caller_and_in_total_with_resource_constraint() {
    let (gate, open) = watch::channel(false);
    let mut config = ProviderConfig::plain(session_config(&HOME, "tv"), "TV");
    config.limits = ProviderLimits {
        calls_in_flight: 3,
        calls_per_caller: 2,
        calls_for_guests: 1,
        ..ProviderLimits::default()
    };
    let tv = Provider::start(config, services(open)).await.expect("tv");
    let to = Jid::from(tv.session().jid().expect("online"));
    // (The inbound halves must stay alive: dropping one ends its session.)
    let connect = |d: &'static str| async move {
        Session::connect(session_config(&HOME, d))
            .await
            .expect("session")
    };
    let ((a, _ra), (b, _rb), (c, _rc)) =
        (connect("a").await, connect("b").await, connect("c").await);

    // Phone A starts three slow calls: two run, the third is refused at once (not queued).
    let mut held = Vec::new();
    let mut refused = 0;
    let mut pending = Vec::new();
    for _ in 0..3 {
        let (a, to) = (a.clone(), to.clone());
        pending.push(tokio::spawn(async move {
            raw(&a, &to, rpc("gate.wait", vec![]), true).await
        }));
    }
    // The refusal comes back while the gate is closed; the two others wait for it.
    let first = tokio::time::timeout(T, futures::future::select_all(pending))
        .await
        .expect("the refusal in time");
    let (reply, _, rest) = first;
    assert_eq!(condition(&reply.expect("task")), BUSY);
    refused += 1;
    held.extend(rest);

    // The household still works: another device calls (2 in flight + this one = the total).
    let status = raw(&b, &to, rpc("player.status", vec![]), true).await;
    assert_eq!(condition(&status), None, "{status:?}");
    // B takes the last slot; then C, with no call of its own, finds the provider full. (C's
    // own status call may take the slot just before B's arrives: then B is refused, and tries
    // again.)
    let slow_b = || {
        let (b, to) = (b.clone(), to.clone());
        tokio::spawn(async move { raw(&b, &to, rpc("gate.wait", vec![]), true).await })
    };
    let mut b_call = slow_b();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let reply = raw(&c, &to, rpc("player.status", vec![]), true).await;
        if condition(&reply) == BUSY {
            refused += 1;
            break;
        }
        if b_call.is_finished() {
            let reply = b_call.await.expect("task");
            assert_eq!(condition(&reply), BUSY, "{reply:?}");
            refused += 1;
            b_call = slow_b();
        }
        assert!(tokio::time::Instant::now() < deadline, "never full");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.push(b_call);
    // Open the gate: every admitted call completes (nothing lost), and slots come back.
    gate.send(true).expect("gate");
    for call in held {
        let reply = tokio::time::timeout(T, call)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(condition(&reply), None, "{reply:?}");
    }
    let again = raw(&c, &to, rpc("player.status", vec![]), true).await;
    assert_eq!(condition(&again), None);
    assert_eq!(tv.stats().calls_refused_busy, refused);
    for s in [a, b, c] {
        s.close().await;
    }
    tv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_typed_stanza_error_and_the_provider_keeps_serving() {
    let (_gate, open) = watch::channel(false);
    let tv = Provider::start(
        ProviderConfig::plain(session_config(&HOME, "tv"), "TV"),
        services(open),
    )
    .await
    .expect("tv");
    let to = Jid::from(tv.session().jid().expect("online"));
    let (own, _rx) = Session::connect(session_config(&HOME, "raw"))
        .await
        .expect("session");
    let (eve, _rx2) = Session::connect(session_config(&STRANGER, "eve"))
        .await
        .expect("session");
    let unknown: Element = "<query xmlns='urn:example:nothing'/>".parse().expect("xml");
    let cases: Vec<(&str, &Session, Element, bool, DefinedCondition)> = vec![
        (
            "unknown namespace, get",
            &own,
            unknown.clone(),
            false,
            DefinedCondition::ServiceUnavailable,
        ),
        (
            "unknown namespace, set",
            &own,
            unknown.clone(),
            true,
            DefinedCondition::ServiceUnavailable,
        ),
        (
            "malformed XML-RPC",
            &own,
            "<query xmlns='jabber:iq:rpc'><methodCall><params/></methodCall></query>"
                .parse()
                .expect("xml"),
            true,
            DefinedCondition::BadRequest,
        ),
        (
            "a methodResponse instead of a call",
            &own,
            xmlrpc::response_to_query(&xmlrpc::MethodResponse::Success(Value::Int(1))),
            true,
            DefinedCondition::BadRequest,
        ),
        (
            "unknown service",
            &own,
            rpc("nosuch.method", vec![]),
            true,
            DefinedCondition::ItemNotFound,
        ),
        (
            "unknown verb",
            &own,
            rpc("player.nosuch", vec![]),
            true,
            DefinedCondition::ItemNotFound,
        ),
        (
            "wrong parameters",
            &own,
            rpc("player.play", vec![Value::Int(7)]),
            true,
            DefinedCondition::BadRequest,
        ),
        (
            "stranger's call",
            &eve,
            rpc("player.status", vec![]),
            true,
            DefinedCondition::Forbidden,
        ),
        (
            "stranger's malformed call",
            &eve,
            "<query xmlns='jabber:iq:rpc'><junk/></query>"
                .parse()
                .expect("xml"),
            true,
            DefinedCondition::Forbidden,
        ),
        (
            "stranger's disco#info",
            &eve,
            "<query xmlns='http://jabber.org/protocol/disco#info'/>"
                .parse()
                .expect("xml"),
            false,
            DefinedCondition::Forbidden,
        ),
        (
            "stranger's unknown namespace",
            &eve,
            unknown,
            false,
            DefinedCondition::Forbidden,
        ),
    ];
    for (what, from, payload, set, expected) in cases {
        let reply = raw(from, &to, payload, set).await;
        assert_eq!(
            condition(&reply).map(|(c, _)| c),
            Some(expected),
            "{what}: {reply:?}"
        );
    }
    // (full → resource-constraint: see the test of calls in flight above.)
    // A service that panics answers a fault (code 500) instead of leaving the caller hanging.
    match raw(&own, &to, rpc("gate.panic", vec![]), true).await {
        IqReply::Result(Some(query)) => {
            let response = xmlrpc::parse_query(&query, &Default::default()).expect("response");
            assert!(
                matches!(
                    response,
                    xmlrpc::RpcPayload::Response(xmlrpc::MethodResponse::Fault { code: 500, .. })
                ),
                "{response:?}"
            );
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    let status = raw(&own, &to, rpc("player.status", vec![]), true).await;
    assert_eq!(condition(&status), None);
    own.close().await;
    eve.close().await;
    tv.stop().await;
}

// --- With guests -------------------------------------------------------------------------------

/// One device's keys.
struct Keys {
    store: Arc<SoftwareKeyStore>,
    identity: DeviceIdentity,
    trust: Arc<TrustStore>,
    _dir: tempfile::TempDir,
}

fn keys(name: &str) -> Keys {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SoftwareKeyStore::open(dir.path().join("keys")).expect("store"));
    let identity = DeviceIdentity::load_or_generate(store.clone(), "tls", name).expect("identity");
    Keys {
        store,
        identity,
        trust: Arc::new(TrustStore::in_memory()),
        _dir: dir,
    }
}

impl Keys {
    fn settings(&self) -> E2eSettings {
        E2eSettings::new(self.identity.clone(), self.trust.clone())
    }
    fn pin(&self, network: &str, other: &Keys) {
        let network: BareJid = network.parse().expect("jid");
        self.trust
            .pin(&network, &other.identity.fingerprint(), TrustSource::Manual)
            .expect("pin");
    }
}

async fn phone(session: SessionConfig, keys: &Keys, owner: bool) -> Controller {
    let mut config = ControllerConfig::new(session, keys.settings());
    config.rpc_timeout = Duration::from_secs(5);
    if owner {
        config.access = Some(OwnerAccess::new(keys.store.clone(), "owner-approval"));
    }
    Controller::connect(config).await.expect("controller")
}

/// Every device of the home network hears guests' requests: the tests with a host take turns.
static HOUSEHOLD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The home: a TV taking guests with `limits`, and the owner's phone, paired.
struct Home {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    tv: Provider,
    tv_keys: Keys,
    phone: Controller,
    _phone_keys: Keys,
    gate: watch::Sender<bool>,
}

impl Home {
    async fn start(limits: ProviderLimits) -> Home {
        let turn = HOUSEHOLD.lock().await;
        let tv_keys = keys("tv");
        let phone_keys = keys("julia");
        tv_keys.pin(HOME.jid, &phone_keys);
        phone_keys.pin(HOME.jid, &tv_keys);
        let (gate, open) = watch::channel(false);
        let mut config = ProviderConfig::new(session_config(&HOME, "tv"), "TV", tv_keys.settings());
        config.access = Some(AccessSettings::default());
        config.limits = limits;
        let tv = Provider::start(config, services(open)).await.expect("tv");
        let phone = phone(session_config(&HOME, "julia"), &phone_keys, true).await;
        discover(&phone, &tv).await;
        Home {
            _turn: turn,
            tv,
            tv_keys,
            phone,
            _phone_keys: phone_keys,
            gate,
        }
    }

    fn tv_jid(&self) -> FullJid {
        self.tv.session().jid().expect("online")
    }

    /// A guest household with a `playback` grant for its phone's key; returns the account, the
    /// key and the phone.
    async fn guest(&self) -> (Account, Keys, Controller) {
        let account = fresh_account("romeo");
        let keys = keys("romeo-phone");
        keys.pin(HOME.jid, &self.tv_keys);
        let issued = self
            .phone
            .grant_access(
                account.jid.parse().expect("jid"),
                DeviceFingerprint(keys.identity.fingerprint()),
                vec![Scope::Playback],
                None,
                unix_now() + 7200,
            )
            .await
            .expect("grant");
        assert_eq!(issued.installed_on.len(), 1, "{issued:?}");
        let phone = phone(session_config(&account, "phone"), &keys, false).await;
        (account, keys, phone)
    }

    async fn stop(self) {
        self.phone.close().await;
        self.tv.stop().await;
    }
}

/// A fresh account on friend.test (another household, or a stranger).
fn fresh_account(prefix: &str) -> Account {
    let user = unique(prefix).replace('-', "_");
    server()
        .register(&user, "friend.test", "secret")
        .expect("register");
    Account {
        jid: Box::leak(format!("{user}@friend.test").into_boxed_str()),
        password: "secret",
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_calls_take_only_their_share_of_the_slots() {
    let home = Home::start(ProviderLimits {
        calls_in_flight: 4,
        calls_per_caller: 4,
        calls_for_guests: 1,
        ..ProviderLimits::default()
    })
    .await;
    let (account, _keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    // The guest's film loads slowly: his one call holds the guests' only slot.
    let nas: FullJid = format!("{}/nas", account.jid).parse().expect("jid");
    let slow_play = || {
        let player = romeo.player(tv.clone());
        let film = shared_item_uri(&nas, "slow-film");
        tokio::spawn(async move { player.play(&film).await })
    };
    let mut held = slow_play();
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let second = romeo.player(tv.clone()).status().await;
        if is_busy(&second) {
            refused += 1;
            break;
        }
        if held.is_finished() {
            // The status call took the slot just before the film arrived: the film was refused.
            let played = held.await.expect("task");
            assert!(is_busy(&played), "{played:?}");
            refused += 1;
            held = slow_play();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never busy: {second:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(home.tv.stats().calls_refused_busy, refused);
    // The household's calls do not wait for the guest's share.
    let channels = home.phone.recorder(tv.clone()).channels().await;
    assert!(channels.is_ok(), "{channels:?}");
    home.gate.send(true).expect("gate");
    let played = tokio::time::timeout(T, held)
        .await
        .expect("in time")
        .expect("task");
    assert!(played.is_ok(), "{played:?}");
    assert!(romeo.player(tv.clone()).status().await.is_ok());
    romeo.close().await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_with_many_resources_cannot_take_the_households_subscriptions() {
    let home = Home::start(ProviderLimits {
        subscriptions_per_guest: 2,
        subscriptions_for_guests: 3,
        ..ProviderLimits::default()
    })
    .await;
    let (account, keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    // The same guest device key on more resources (a guest may run several sessions).
    let r2 = phone(session_config(&account, "tablet"), &keys, false).await;
    let r3 = phone(session_config(&account, "laptop"), &keys, false).await;
    let _s1 = romeo.subscribe(&tv, "player").await.expect("first");
    let _s2 = r2.subscribe(&tv, "player").await.expect("second");
    let third = r3.subscribe(&tv, "player").await;
    assert!(is_busy(&third), "{third:?}");
    assert_eq!(home.tv.stats().subscriptions_refused, 1);
    // The household subscribes and hears events while the guest is at its quota.
    let mut events = home.phone.events();
    let _own = home.phone.subscribe(&tv, "player").await.expect("own");
    home.phone
        .player(tv.clone())
        .play("file:///movies/a.mkv")
        .await
        .expect("play");
    let event = tokio::time::timeout(T, events.recv())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(event.provider, tv);
    // The guest's calls still work too: the quota is on subscriptions only.
    assert!(r3.player(tv.clone()).status().await.is_ok());
    for c in [romeo, r2, r3] {
        c.close().await;
    }
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_keeps_grants_and_refusals_through_a_flood() {
    let home = Home::start(ProviderLimits {
        audit_records: 8,
        ..ProviderLimits::default()
    })
    .await;
    let (_account, _keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    assert!(is_forbidden(&romeo.recorder(tv.clone()).channels().await));
    let player = romeo.player(tv.clone());
    for _ in 0..10 {
        // Alternating calls: folded into two records, however they interleave.
        player.status().await.expect("status");
        romeo
            .call(&tv, "player.set_volume", vec![Value::Int(30)])
            .await
            .expect("volume");
    }
    // Strangers flood the network with requests (each the burst the intake lets through).
    let network = Jid::from(HOME.jid.parse::<BareJid>().expect("jid"));
    let mut strangers = Vec::new();
    for s in 0..4u8 {
        let (session, rx) = Session::connect(session_config(&fresh_account("eve"), "x"))
            .await
            .expect("session");
        for r in 0..3u8 {
            let request = pmn::core::access::AccessRequest::new(
                DeviceFingerprint([s * 8 + r + 1; 32]),
                vec![Scope::Playback],
                None,
            );
            let mut message = Message::new_with_type(MessageType::Headline, Some(network.clone()));
            message.payloads.push(request.into());
            session.send(message).expect("send");
        }
        strangers.push((session, rx));
    }
    let guard = home.tv.access().expect("access").clone();
    let deadline = tokio::time::Instant::now() + T;
    while guard.audit_evictions().requests < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "flood not seen: {:?}",
            guard.audit_evictions()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let evicted = guard.audit_evictions();
    assert_eq!(evicted.uses, 2, "{evicted:?}");
    assert_eq!(
        evicted.denials + evicted.grants_and_revocations,
        0,
        "{evicted:?}"
    );
    // The owner still reads what matters.
    let audit = home.phone.access_audit(&tv, 0).await.expect("audit");
    assert!(audit.len() <= 8);
    assert!(
        audit.iter().any(|r| r.kind == AuditKind::Grant),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.kind == AuditKind::Deny && r.method.as_deref() == Some("recorder.channels")),
        "{audit:?}"
    );
    // And the household and the guest still work.
    assert!(home.phone.player(tv.clone()).status().await.is_ok());
    assert!(player.status().await.is_ok());
    for (s, _rx) in strangers {
        s.close().await;
    }
    romeo.close().await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_play_only_what_is_shared_and_nobody_plays_mpv_pseudo_protocols() {
    let home = Home::start(ProviderLimits::default()).await;
    let (account, _keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    let player = romeo.player(tv.clone());
    let refused_for_guest = [
        "file:///etc/passwd",
        "/etc/passwd",
        "http://192.168.1.1/admin",
        "https://example.org/film.mkv",
        "edl://file:///etc/passwd",
        "av://lavfi:sine",
        "memory://x",
    ];
    for uri in refused_for_guest {
        let r = player.play(uri).await;
        assert!(is_forbidden(&r), "guest played {uri}: {r:?}");
    }
    // The film he brought, from a library of his own network, is his to play.
    let nas: FullJid = format!("{}/nas", account.jid).parse().expect("jid");
    player
        .play(&shared_item_uri(&nas, "videos/7"))
        .await
        .expect("the shared item plays");
    // Own devices play files and streams, never mpv's pseudo-protocols.
    let own = home.phone.player(tv.clone());
    own.play("file:///movies/a.mkv").await.expect("own file");
    own.play("http://192.168.1.20/film.mkv")
        .await
        .expect("own LAN stream");
    for uri in ["edl://x", "av://lavfi:sine", "fd://0", "subfile://x"] {
        assert!(
            is_forbidden(&own.play(uri).await),
            "own device played {uri}"
        );
        assert!(
            is_forbidden(&own.enqueue(uri, None).await),
            "own enqueued {uri}"
        );
    }
    assert_eq!(
        home.tv.stats().media_refused,
        refused_for_guest.len() as u64 + 8
    );
    // Each refusal is in the owner's audit log with its reason.
    let audit = home.phone.access_audit(&tv, 0).await.expect("audit");
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|r| r.kind == AuditKind::Deny)
        .map(|r| r.detail.as_str())
        .collect();
    assert!(reasons.contains(&"media-not-shared"), "{audit:?}");
    assert!(reasons.contains(&"media-pseudo-protocol"), "{audit:?}");
    romeo.close().await;
    home.stop().await;
}
