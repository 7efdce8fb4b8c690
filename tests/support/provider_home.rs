//! Fixtures of the provider's bounds and refusals tests (tests/provider_bounds.rs,
//! tests/provider_refusals.rs): a slow `gate` service and a player whose loads can be held, raw iq
//! helpers, and a home with a TV that takes guests and the owner's phone.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use pmn::core::access::{unix_now, AccessSettings, Scope};
use pmn::core::controller::{Controller, ControllerConfig, OwnerAccess};
use pmn::core::e2e::{E2eSettings, TrustSource, TrustStore};
use pmn::core::error::{Error, ErrorKind, Result};
use pmn::core::identity::DeviceIdentity;
use pmn::core::provider::{Provider, ProviderConfig, ProviderLimits};
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
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

pub const T: Duration = Duration::from_secs(10);

/// A service whose `gate.wait` returns only once the test opens the gate: calls stay in flight.
pub struct Gate {
    pub open: watch::Receiver<bool>,
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
pub struct GatedPlayer {
    pub inner: SimulatedPlayer,
    pub open: watch::Receiver<bool>,
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

pub fn services(open: watch::Receiver<bool>) -> Vec<Arc<dyn Service>> {
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
pub async fn raw(from: &Session, to: &Jid, payload: Element, set: bool) -> IqReply {
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

pub fn rpc(method: &str, params: Vec<Value>) -> Element {
    xmlrpc::call_to_query(&MethodCall::new(method, params)).expect("test call encodes")
}

pub fn condition(reply: &IqReply) -> Option<(DefinedCondition, ErrorType)> {
    match reply {
        IqReply::Error(e) => Some((e.defined_condition.clone(), e.type_.clone())),
        IqReply::Result(_) => None,
    }
}

pub const BUSY: Option<(DefinedCondition, ErrorType)> =
    Some((DefinedCondition::ResourceConstraint, ErrorType::Wait));

pub fn is_busy<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.to_string().contains("ResourceConstraint"))
}

pub fn is_forbidden<T: std::fmt::Debug>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.kind() == ErrorKind::Forbidden)
}

/// One device's keys.
pub struct Keys {
    pub store: Arc<SoftwareKeyStore>,
    pub identity: DeviceIdentity,
    pub trust: Arc<TrustStore>,
    _dir: tempfile::TempDir,
}

pub fn keys(name: &str) -> Keys {
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
    pub fn settings(&self) -> E2eSettings {
        E2eSettings::new(self.identity.clone(), self.trust.clone())
    }
    pub fn pin(&self, network: &str, other: &Keys) {
        let network: BareJid = network.parse().expect("jid");
        self.trust
            .pin(&network, &other.identity.fingerprint(), TrustSource::Manual)
            .expect("pin");
    }
}

pub async fn phone(session: SessionConfig, keys: &Keys, owner: bool) -> Controller {
    let mut config = ControllerConfig::new(session, keys.settings());
    config.rpc_timeout = Duration::from_secs(5);
    if owner {
        config.access = Some(OwnerAccess::new(keys.store.clone(), "owner-approval"));
    }
    Controller::connect(config).await.expect("controller")
}

/// Every device of the home network hears guests' requests: the tests with a host take turns.
pub static HOUSEHOLD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The home: a TV taking guests with `limits`, and the owner's phone, paired.
pub struct Home {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    pub tv: Provider,
    pub tv_keys: Keys,
    pub phone: Controller,
    _phone_keys: Keys,
    pub gate: watch::Sender<bool>,
}

impl Home {
    pub async fn start(limits: ProviderLimits) -> Home {
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

    pub fn tv_jid(&self) -> FullJid {
        self.tv.session().jid().expect("online")
    }

    /// A guest household with a `playback` grant for its phone's key; returns the account, the
    /// key and the phone.
    pub async fn guest(&self) -> (Account, Keys, Controller) {
        let account = fresh_account("romeo");
        let keys = keys("romeo-phone");
        keys.pin(HOME.jid, &self.tv_keys);
        let issued = self
            .phone
            .owner()
            .expect("an owner device")
            .grant_access(
                account.jid.parse().expect("jid"),
                keys.identity.fingerprint(),
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

    pub async fn stop(self) {
        self.phone.close().await;
        self.tv.stop().await;
    }
}

/// A fresh account on friend.test (another household, or a stranger).
pub fn fresh_account(prefix: &str) -> Account {
    let user = unique(prefix).replace('-', "_");
    server()
        .register(&user, "friend.test", "secret")
        .expect("register");
    Account {
        jid: Box::leak(format!("{user}@friend.test").into_boxed_str()),
        password: "secret",
    }
}
