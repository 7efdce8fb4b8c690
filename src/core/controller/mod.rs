//! The controller role: a phone (or any remote) that finds the network's providers and drives them.
//!
//! A controller announces no service feature (spec §6), keeps a [`ProviderDirectory`] from presence
//! and disco#info, calls methods over Jabber-RPC and receives the events of the services it
//! subscribed to. Subscriptions are restored by themselves when a provider comes back (after its own
//! or our reconnect).
//!
//! With [`ControllerConfig::e2e`] set, every call (subscribe and unsubscribe included) travels
//! through an end-to-end tunnel to the provider, opened on the first call, reused, closed when the
//! provider goes offline and re-opened by the next call; it never falls back to plaintext. Events
//! then arrive through the tunnel. Discovery (presence, disco#info) stays plain.

mod access_inbox;
mod agreement;
mod calls;
mod dispatcher;
mod guest;
mod owner;
mod subscription;

pub use calls::RetryPolicy;
use dispatcher::Dispatcher;
pub use guest::{GuestAccess, GuestPass};
pub use owner::{Issued, OwnerAccess, OwnerConsole, OwnerKeyInfo, Revoked};
pub use subscription::Subscription;

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use xmpp_parsers::jid::{BareJid, FullJid};

use crate::core::access::OwnerKeys;
use crate::core::discovery::{
    disco_info_for, CapsSnapshot, DirectoryUpdate, InfoQueries, ProviderDirectory, ProviderInfo,
    QueryLimits,
};
use crate::core::e2e::settings::FAILURE_CAPACITY;
use crate::core::e2e::{E2eEndpoint, E2eSettings, TunnelFailure};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::lazy_broadcast::LazyBroadcast;
use crate::core::plumbing;
use crate::core::pubsub::{Playlists, PlaylistsConfig};
use crate::core::rpc::events::{EventFilter, EventNotice};
use crate::core::rpc::{self, xmlrpc::Limits, xmlrpc::Value, CallId};
use crate::core::rpc::{Caller, Event, Remote, ServiceSpec};
use crate::core::services::library::Library;
use crate::core::services::player::{Player, Queue};
use crate::core::services::recorder::Recorder;
use crate::core::session::{ConnectionState, Session, SessionConfig};
use crate::core::trust::Trust;

/// Capacity of the update and event broadcast channels; a receiver that falls further behind is
/// told it lagged (and should re-read [`Controller::providers`]).
const BROADCAST_CAPACITY: usize = 1024;
/// The pause before the first retry of a call (doubling for each further one, at most 2 s).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long a subscription to restore waits for the session to be online.
const RESTORE_WAIT: Duration = Duration::from_secs(30);

/// How to start a controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The session (network identifier, device resource, password, server).
    pub session: SessionConfig,
    /// Bound on every RPC call and disco query (tunnel setup has its own bound on top).
    pub rpc_timeout: Duration,
    /// End-to-end tunnel settings (see [`ControllerConfig::new`]); `None` calls providers in
    /// clear, which only [`ControllerConfig::plain`] or an explicit `None` asks for.
    pub e2e: Option<E2eSettings>,
    /// The owner role (approve guests, sign grants); `None` for a phone that only controls or
    /// only visits as a guest.
    pub access: Option<OwnerAccess>,
    /// Bounds on decoding providers' answers and events ([`Limits::DEFAULT`] unless set).
    pub rpc_limits: Limits,
    /// How [`Controller::call`] (and so every typed client) retries a call whose way was lost;
    /// [`RetryPolicy::NONE`] unless set. Retries reuse the call id, so they never run a call twice
    /// on a provider that remembers it.
    pub retry: RetryPolicy,
    /// Bounds on the disco#info queries that providers' presences trigger
    /// ([`QueryLimits::default`] unless set): presences are outside input.
    pub discovery: QueryLimits,
    /// The caps cache saved at an earlier start ([`Controller::caps_snapshot`]): devices seen
    /// before are then shown from their presence alone, without a disco#info round trip each.
    /// `None` starts with an empty cache.
    pub caps_cache: Option<CapsSnapshot>,
}

impl ControllerConfig {
    /// The default policy (DESIGN §4): every call through an end-to-end tunnel, never in clear;
    /// a 10 s RPC timeout.
    pub fn new(session: SessionConfig, e2e: E2eSettings) -> Self {
        Self {
            e2e: Some(e2e),
            ..Self::plain(session)
        }
    }

    /// Calls providers **in clear**: the server can read and forge the control traffic. Only for
    /// peers without the tunnel (interop with other XMPP clients) or a server you control.
    pub fn plain(session: SessionConfig) -> Self {
        Self {
            session,
            rpc_timeout: Duration::from_secs(10),
            e2e: None,
            access: None,
            rpc_limits: Limits::DEFAULT,
            retry: RetryPolicy::NONE,
            discovery: QueryLimits::default(),
            caps_cache: None,
        }
    }
}

/// An event received from a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEvent {
    /// The provider that sent it.
    pub provider: FullJid,
    /// The event.
    pub notice: EventNotice,
}

impl ServiceEvent {
    /// The typed payload when this is event `E` (`None` for any other event).
    pub fn decode<E: Event>(&self) -> Option<Result<E::Payload>> {
        rpc::decode_notice::<E>(&self.notice)
    }
}

/// Events of `service` from `provider` may have been missed, and the subscription is live again
/// (see [`Controller::resyncs`]): the provider forgot this controller (it restarted, or this
/// controller's session could not be resumed and started afresh) and was subscribed to again.
/// Whatever the app shows from those events may be stale: read the state again (e.g.
/// `player.status`). A stream resumed by XEP-0198 loses nothing and sends none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// The provider whose events may have been missed.
    pub provider: FullJid,
    /// The service whose subscription was restored.
    pub service: String,
}

/// (provider, service name).
type SubscriptionKey = (FullJid, String);

struct Shared {
    session: Session,
    /// Our network (bare JID).
    network: BareJid,
    /// The owner role, when configured.
    owner: Option<owner::OwnerState>,
    /// Our requests as a guest, and the networks that granted them.
    guest: guest::GuestState,
    /// The tunnel layer, when configured: then every call goes through it.
    e2e: Option<E2eEndpoint>,
    /// Ignore events that arrive in clear.
    require_tunnel: bool,
    rpc_timeout: Duration,
    rpc_limits: Limits,
    retry: RetryPolicy,
    directory: Mutex<ProviderDirectory>,
    updates: LazyBroadcast<DirectoryUpdate>,
    events: LazyBroadcast<ServiceEvent>,
    /// Subscriptions restored after a gap (see [`Controller::resyncs`]).
    resyncs: LazyBroadcast<Resync>,
    /// Tunnels that failed or were refused (see [`Controller::tunnel_failures`]).
    failures: LazyBroadcast<TunnelFailure>,
    /// (provider, service) → the event filters of the live [`Subscription`]s, by subscription id.
    /// The provider holds their union.
    subscriptions: Mutex<HashMap<SubscriptionKey, Vec<(u64, EventFilter)>>>,
    next_subscription: std::sync::atomic::AtomicU64,
    /// Shared playlists (XEP-0060): ours, signed with the owner key when there is one, and the
    /// friends' we follow; their notifications are routed here by the dispatcher.
    playlists: Playlists,
}

/// A connected controller. Cheap to clone; [`Controller::close`] ends it for every clone.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
    /// Aborts the dispatcher when the last clone goes.
    _task: Arc<TaskGuard>,
}

struct TaskGuard(JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("session", &self.shared.session)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Logs in and starts discovering providers.
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     session: pmn::core::session::SessionConfig,
    /// #     e2e: pmn::core::e2e::E2eSettings,
    /// # ) -> pmn::core::error::Result<()> {
    /// use std::time::Duration;
    /// use pmn::core::controller::{Controller, ControllerConfig};
    /// let controller = Controller::connect(ControllerConfig::new(session, e2e)).await?;
    /// let tv = controller
    ///     .wait_for_provider(|p| p.services.iter().any(|s| s == "urn.xmpp.tmp.media.player"), Duration::from_secs(5))
    ///     .await?;
    /// let status = controller.player(tv.jid).play("file:///movies/a.mkv").await?;
    /// println!("{:?}", status.state);
    /// controller.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: ControllerConfig) -> Result<Self> {
        let network = config.session.jid.to_bare();
        // The owner-approval key also signs the household's playlist entries.
        let playlist_key = config
            .access
            .as_ref()
            .map(|a| (a.store.clone(), a.alias.clone()));
        let owner = config.access.map(owner::OwnerState::open).transpose()?;
        let (session, inbound) = Session::connect(config.session).await?;
        let playlists = Playlists::new(
            session.clone(),
            PlaylistsConfig {
                owner_key: playlist_key,
                timeout: config.rpc_timeout,
                ..PlaylistsConfig::default()
            },
        );
        let (e2e, e2e_rx) = match &config.e2e {
            Some(settings) => {
                let (endpoint, rx) = settings.endpoint(session.clone(), None);
                (Some(endpoint), Some(rx))
            }
            None => (None, None),
        };
        let mut directory = ProviderDirectory::new(network.clone());
        if let Some(snapshot) = &config.caps_cache {
            directory.restore_caps(snapshot);
            tracing::debug!(entries = snapshot.len(), "caps cache restored");
        }
        let shared = Arc::new(Shared {
            session,
            network: network.clone(),
            owner,
            guest: guest::GuestState::default(),
            e2e,
            require_tunnel: config.e2e.as_ref().is_some_and(|s| s.require_tunnel),
            rpc_timeout: config.rpc_timeout,
            rpc_limits: config.rpc_limits,
            retry: config.retry,
            directory: Mutex::new(directory),
            // Made on their first subscriber: most apps listen to one or two of them.
            updates: LazyBroadcast::new(BROADCAST_CAPACITY),
            events: LazyBroadcast::new(BROADCAST_CAPACITY),
            resyncs: LazyBroadcast::new(BROADCAST_CAPACITY),
            failures: LazyBroadcast::new(FAILURE_CAPACITY),
            subscriptions: Mutex::new(HashMap::new()),
            next_subscription: std::sync::atomic::AtomicU64::new(1),
            playlists,
        });
        // No service feature (spec §6); with the tunnel, interest in the network's device keys.
        let notify: &[&str] = if shared.e2e.is_some() {
            &[crate::core::e2e::pubkey::NOTIFY_PUBKEY]
        } else {
            &[]
        };
        let info = disco_info_for(None, notify);
        let (infos_tx, infos_rx) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher {
            shared: shared.clone(),
            network,
            caps_ver: plumbing::caps_ver(&info),
            info,
            infos: infos_tx,
            queries: InfoQueries::new(config.discovery),
        };
        let task = tokio::spawn(dispatcher.run(inbound, infos_rx, e2e_rx));
        Ok(Self {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// The providers online now.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.shared.directory.locked().providers()
    }

    /// The verified disco#info answers seen so far, to store and give back as
    /// [`ControllerConfig::caps_cache`] at the next start. Holds no secret: only what devices
    /// announce to everyone on their network, each entry re-verified against its hash when read.
    pub fn caps_snapshot(&self) -> CapsSnapshot {
        self.shared.directory.locked().caps_cache().snapshot()
    }

    /// Changes of the provider list from now on.
    pub fn updates(&self) -> broadcast::Receiver<DirectoryUpdate> {
        self.shared.updates.subscribe()
    }

    /// Events of subscribed services from now on.
    pub fn events(&self) -> broadcast::Receiver<ServiceEvent> {
        self.shared.events.subscribe()
    }

    /// Subscriptions restored after a gap in their events, from now on: one [`Resync`] per
    /// (provider, service) each time the controller subscribed again because the provider had
    /// forgotten it — the provider came back online, or this controller's own session was not
    /// resumed (a server restart, an absence longer than the server keeps a session). Events
    /// sent in between are lost; read the state again when one arrives. A subscription that could
    /// not be restored is logged, not sent.
    pub fn resyncs(&self) -> broadcast::Receiver<Resync> {
        self.shared.resyncs.subscribe()
    }

    /// The household's shared playlists and the friends' ones this device follows (spec §3.2).
    /// Publishing signs with the owner key of [`ControllerConfig::access`]; without it the
    /// handle only reads and follows.
    pub fn playlists(&self) -> &Playlists {
        &self.shared.playlists
    }

    /// Fetches `publisher`'s playlist `name` (entries verified against `owners`) and appends it,
    /// in order, to the queue of the media player `tv` (spec §3.2: a shared playlist plays like a
    /// local one). Returns the queue.
    pub async fn enqueue_playlist(
        &self,
        tv: FullJid,
        publisher: &BareJid,
        name: &str,
        owners: &OwnerKeys,
    ) -> Result<Queue> {
        let fetched = self.shared.playlists.fetch(publisher, name, owners).await?;
        tracing::debug!(%publisher, playlist = name, entries = fetched.entries.len(), "enqueueing a playlist");
        // In playlist order, each with its title; the first refusal (a full queue is fault
        // `player::FAULT_QUEUE_FULL`) stops here with what was enqueued before it left in place.
        let player = self.player(tv);
        let mut queue = None;
        for e in &fetched.entries {
            queue = Some(player.enqueue(&e.entry.uri, Some(&e.entry.title)).await?);
        }
        match queue {
            Some(q) => Ok(q),
            None => player.queue().await,
        }
    }

    /// End-to-end tunnels that fail or are refused from now on (the call that needed one also
    /// fails with the same error): altered bytes in the path (`Tls`), an untrusted key
    /// (`Forbidden`).
    pub fn tunnel_failures(&self) -> broadcast::Receiver<TunnelFailure> {
        self.shared.failures.subscribe()
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.shared.session.state()
    }

    /// The underlying session.
    pub fn session(&self) -> &Session {
        &self.shared.session
    }

    /// The owner console (guests' requests, grants, owner keys, audit): `Config` error unless this
    /// is an owner device ([`ControllerConfig::access`]).
    pub fn owner(&self) -> Result<OwnerConsole> {
        if self.shared.owner.is_none() {
            return Err(Error::new(
                ErrorKind::Config,
                "this controller is not an owner device (set ControllerConfig::access)",
            ));
        }
        Ok(OwnerConsole::new(self.clone()))
    }

    /// The guest side: ask another household for access. `Config` error without the end-to-end
    /// tunnel ([`ControllerConfig::e2e`]), which guest access needs.
    pub fn guest(&self) -> Result<GuestPass> {
        if self.shared.e2e.is_none() {
            return Err(guest::no_tunnel());
        }
        Ok(GuestPass::new(self.clone()))
    }

    /// The trust facet (pairing, trusted devices, revocation, the network password): `Config`
    /// error without the end-to-end tunnel ([`ControllerConfig::e2e`]).
    pub fn trust(&self) -> Result<Trust> {
        let e2e = self.shared.e2e.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "the end-to-end tunnel is off (set ControllerConfig::e2e)",
            )
        })?;
        Ok(Trust::new(e2e, self.shared.failures.clone(), None))
    }

    /// The end-to-end endpoint (pairing, trusted devices, revocation), when configured.
    pub fn e2e(&self) -> Option<&E2eEndpoint> {
        self.shared.e2e.as_ref()
    }

    /// Waits until a provider matching `accept` is online (or is already), at most `timeout`.
    pub async fn wait_for_provider(
        &self,
        accept: impl Fn(&ProviderInfo) -> bool,
        timeout: Duration,
    ) -> Result<ProviderInfo> {
        let mut updates = self.updates();
        if let Some(p) = self.providers().into_iter().find(|p| accept(p)) {
            return Ok(p);
        }
        tokio::time::timeout(timeout, async {
            loop {
                match updates.recv().await {
                    Ok(DirectoryUpdate::Added(p)) | Ok(DirectoryUpdate::Changed(p))
                        if accept(&p) =>
                    {
                        return Ok(p)
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(p) = self.providers().into_iter().find(|p| accept(p)) {
                            return Ok(p);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(Error::new(ErrorKind::NotConnected, "controller closed"))
                    }
                }
            }
        })
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "no matching provider came online"))?
    }

    /// Calls `method` (`<service>.<verb>`) on `provider`, retrying as
    /// [`ControllerConfig::retry`] says (by default not at all).
    ///
    /// Call semantics — what an error says about whether the call ran ([`Error::outcome`]):
    /// - `NotRun`: refused before the method ran (`Forbidden`, `UnknownMethod`, `BadParams`, a
    ///   bound hit), or never sent (`NotConnected` while the session is not online, a tunnel that
    ///   could not be opened).
    /// - `Ran`: the method ran and failed (`Fault`).
    /// - `Unknown`: sent, and no answer came: `Timeout`, or `NotConnected` when the session (or
    ///   the tunnel) was lost with the call in flight — which fails the call at once, not at its
    ///   timeout. Retry with the same id: [`Controller::call_as`] or
    ///   [`Controller::call_with_retry`].
    pub async fn call(
        &self,
        provider: &FullJid,
        method: &str,
        params: Vec<Value>,
    ) -> Result<Value> {
        let retry = self.shared.retry;
        self.shared
            .call_with_retry(provider, method, params, &retry)
            .await
    }

    /// Calls `method` on `provider` once, as the call `id`: pass the id of an earlier attempt
    /// whose outcome was [`crate::core::error::CallOutcome::Unknown`] and the provider, if it ran
    /// that attempt, answers with its first answer instead of running the method again.
    pub async fn call_as(
        &self,
        provider: &FullJid,
        method: &str,
        params: Vec<Value>,
        id: &CallId,
    ) -> Result<Value> {
        self.shared.call(provider, method, params, id).await
    }

    /// Calls `method` on `provider`, retrying under `retry` with one call id for all attempts,
    /// so that the call runs at most once on a provider that remembers call ids (every pmn
    /// provider does, see [`RetryPolicy`]): after a timeout or a lost connection, the retry waits
    /// for the session to be back and gets the first run's answer, or runs the call if the first
    /// attempt never arrived.
    pub async fn call_with_retry(
        &self,
        provider: &FullJid,
        method: &str,
        params: Vec<Value>,
        retry: &RetryPolicy,
    ) -> Result<Value> {
        self.shared
            .call_with_retry(provider, method, params, retry)
            .await
    }

    /// Service `S` of `provider`: typed calls through this controller (its tunnel, its retry
    /// policy). Each service's file adds its named calls to `Remote<ItsSpec>` (`play`, `schedule`,
    /// `browse`, …), so [`Controller::player`] and its siblings are only shorthands.
    pub fn remote<S: ServiceSpec>(&self, provider: FullJid) -> Remote<S> {
        Remote::new(Arc::new(self.clone()), provider)
    }

    /// The media player of `provider`.
    pub fn player(&self, provider: FullJid) -> Remote<Player> {
        self.remote(provider)
    }

    /// The recorder of `provider`.
    pub fn recorder(&self, provider: FullJid) -> Remote<Recorder> {
        self.remote(provider)
    }

    /// The media library of `provider`.
    pub fn library(&self, provider: FullJid) -> Remote<Library> {
        self.remote(provider)
    }

    /// The app went to the foreground (`true`) or the background: XEP-0352 client state and the
    /// keepalive, see [`Session::set_foreground`]. In the background the server may hold back
    /// events sent in clear (headline messages) until the app is active again; calls work
    /// either way.
    pub fn set_foreground(&self, foreground: bool) {
        self.shared.session.set_foreground(foreground);
    }

    /// Goes offline and ends the session. Pending calls fail with `NotConnected`.
    pub async fn close(&self) {
        self.shared.session.close().await;
    }
}

/// Typed remotes ([`Controller::remote`]) call through the controller: its tunnel, its retry policy.
impl Caller for Controller {
    fn call_method<'a>(
        &'a self,
        provider: &'a FullJid,
        method: String,
        params: Vec<Value>,
    ) -> futures::future::BoxFuture<'a, Result<Value>> {
        Box::pin(async move { self.call(provider, &method, params).await })
    }
}
