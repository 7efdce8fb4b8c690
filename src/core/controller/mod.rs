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

mod access;

pub use access::{GuestAccess, Issued, OwnerAccess, OwnerKeyInfo, Revoked};

use crate::core::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_xmpp::Stanza;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::Presence;

use crate::core::access::OwnerKeys;
use crate::core::discovery::{
    disco_info_for, presence_for, Advertised, DirectoryUpdate, DiscoAnswer, InfoQueries,
    PresenceOutcome, ProviderDirectory, ProviderInfo, QueryStart, Verdict,
};
use crate::core::e2e::settings::next_inbound;
use crate::core::e2e::settings::FAILURE_CAPACITY;
use crate::core::e2e::{E2eEndpoint, E2eInbound, E2eSettings, TunnelFailure};
use crate::core::error::{CallOutcome, Error, ErrorKind, Result};
use crate::core::events::{self, EventFilter, EventNotice};
use crate::core::plumbing;
use crate::core::pubsub::{Playlists, PlaylistsConfig};
use crate::core::rpc::{self, xmlrpc::Limits, xmlrpc::MethodCall, xmlrpc::Value, CallId};
use crate::core::rpc::{Caller, Event, Remote, ServiceSpec};
use crate::core::services::library::Library;
use crate::core::services::player::{Player, Queue};
use crate::core::services::recorder::Recorder;
use crate::core::session::{ConnectionState, Inbound, IqReply, Session, SessionConfig};

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
        (self.notice.service == E::Service::NAME && self.notice.name == E::NAME)
            .then(|| rpc::decode_event::<E>(self.notice.params.clone()))
    }
}

/// (provider, service name).
type SubscriptionKey = (FullJid, String);

struct Shared {
    session: Session,
    /// Our network (bare JID).
    network: BareJid,
    /// The owner role, when configured.
    owner: Option<access::OwnerState>,
    /// Our requests as a guest, and the networks that granted them.
    guest: access::GuestState,
    /// The tunnel layer, when configured: then every call goes through it.
    e2e: Option<E2eEndpoint>,
    /// Ignore events that arrive in clear.
    require_tunnel: bool,
    rpc_timeout: Duration,
    rpc_limits: Limits,
    retry: RetryPolicy,
    directory: Mutex<ProviderDirectory>,
    updates: broadcast::Sender<DirectoryUpdate>,
    events: broadcast::Sender<ServiceEvent>,
    /// Tunnels that failed or were refused (see [`Controller::tunnel_failures`]).
    failures: broadcast::Sender<TunnelFailure>,
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

/// Resolves when the session is not online (now, or from some later change): the moment a call
/// in flight can no longer count on its answer.
async fn interrupted(mut state: watch::Receiver<ConnectionState>) {
    loop {
        if !matches!(*state.borrow_and_update(), ConnectionState::Online { .. }) {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

impl Shared {
    /// The one way calls leave this controller: through the tunnel when configured (no plaintext
    /// fallback, so a refused or failed tunnel is the caller's error), else in clear.
    ///
    /// A call is never sent while the session is not online (`NotConnected`, not run), and a call
    /// in flight fails **at once** when the session is interrupted (`NotConnected`, outcome
    /// unknown), tunnelled or not, instead of waiting out its timeout: the caller learns at once
    /// that it must retry — with the same `id`, which the provider de-duplicates, see
    /// [`Controller::call_with_retry`].
    async fn call(
        &self,
        provider: &FullJid,
        method: &str,
        params: Vec<Value>,
        id: &CallId,
    ) -> Result<Value> {
        let to = Jid::from(provider.clone());
        let call = MethodCall::new(method, params);
        let state = self.session.watch_state();
        if !matches!(*state.borrow(), ConnectionState::Online { .. }) {
            return Err(Error::new(
                ErrorKind::NotConnected,
                format!("{method}: not sent, the session is not online"),
            ));
        }
        let lost = || {
            Error::new(
                ErrorKind::NotConnected,
                format!("{method} on {provider}: the connection was lost before the answer came"),
            )
            .with_outcome(CallOutcome::Unknown)
        };
        let sent = async {
            match &self.e2e {
                Some(e2e) => {
                    rpc::call_with(
                        |iq, t| e2e.request(iq, t),
                        &to,
                        &call,
                        self.rpc_timeout,
                        &self.rpc_limits,
                        Some(id),
                    )
                    .await
                }
                None => {
                    rpc::call_with(
                        |iq, t| self.session.request(iq, t),
                        &to,
                        &call,
                        self.rpc_timeout,
                        &self.rpc_limits,
                        Some(id),
                    )
                    .await
                }
            }
        };
        let result = tokio::select! {
            result = sent => result,
            () = interrupted(state) => {
                tracing::debug!(%provider, %method, %id, "call in flight failed: the session was interrupted");
                if let Some(e2e) = &self.e2e {
                    // The next call (a retry) starts on a fresh tunnel, whatever the interruption
                    // did to this one's bytes.
                    e2e.reset_tunnel(provider, "a call in it was cut off by a session interruption");
                }
                Err(lost())
            }
        };
        if let Err(e) = &result {
            tracing::debug!(%provider, %method, %id, error = %e, outcome = %e.outcome(), "call failed");
        }
        result
    }

    /// Waits until the session is online, at most `within`; false if it did not come back.
    async fn wait_online(&self, within: Duration) -> bool {
        let mut state = self.session.watch_state();
        tokio::time::timeout(within, async {
            loop {
                match &*state.borrow_and_update() {
                    ConnectionState::Online { .. } => return true,
                    ConnectionState::Offline { .. } => return false,
                    _ => {}
                }
                if state.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// [`Shared::call`] under `retry`: one call id for every attempt; see
    /// [`Controller::call_with_retry`].
    async fn call_with_retry(
        &self,
        provider: &FullJid,
        method: &str,
        params: Vec<Value>,
        retry: &RetryPolicy,
    ) -> Result<Value> {
        let id = CallId::new();
        let attempts = retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = self.call(provider, method, params.clone(), &id).await;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if attempt >= attempts || !RetryPolicy::may_retry(&error) {
                return Err(error);
            }
            attempt += 1;
            tracing::info!(%provider, %method, %id, attempt, error = %error, outcome = %error.outcome(), "retrying the call with the same id");
            // A short pause first, growing (0.2, 0.4, … 2 s): a provider that is itself just
            // reconnecting gets a moment, and a retry loop never spins.
            let pause = RETRY_PAUSE
                .saturating_mul(1 << (attempt - 2).min(4))
                .min(Duration::from_secs(2));
            tokio::time::sleep(pause).await;
            if !self.wait_online(retry.reconnect_wait).await {
                return Err(error);
            }
        }
    }
}

/// How [`Controller::call_with_retry`] (and every call, with [`ControllerConfig::retry`]) tries
/// again.
///
/// Only calls that may be retried safely are: every attempt carries the **same** [`CallId`], so
/// a provider that already ran the call answers with its first answer (for
/// [`crate::core::provider::ProviderLimits::call_memory`], 2 minutes by default) instead of
/// running it again. Retried are errors whose outcome is not [`CallOutcome::Ran`] and whose kind
/// says the way was lost (`Timeout`, `NotConnected`, `ProviderUnavailable`); a refusal or a fault
/// is returned at once. Before each retry: a pause (0.2 s, doubling, at most 2 s), then the
/// session must be online again, waited for at most `reconnect_wait`.
///
/// What it cannot promise: a provider that restarted in between has forgotten the call (it may
/// run twice), and a foreign provider (one that ignores call ids) may run it twice too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: u32,
    /// How long to wait for the session to be online again before a retry.
    pub reconnect_wait: Duration,
}

impl RetryPolicy {
    /// One attempt, no retry: the error of the call is the caller's to judge.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        reconnect_wait: Duration::ZERO,
    };

    /// `attempts` in all, waiting at most `reconnect_wait` for the session before each retry.
    pub fn new(attempts: u32, reconnect_wait: Duration) -> Self {
        RetryPolicy {
            attempts,
            reconnect_wait,
        }
    }

    /// Whether an attempt that ended in `error` is retried.
    pub fn may_retry(error: &Error) -> bool {
        error.outcome() != CallOutcome::Ran
            && matches!(
                error.kind(),
                ErrorKind::Timeout | ErrorKind::NotConnected | ErrorKind::ProviderUnavailable
            )
    }
}

impl Default for RetryPolicy {
    /// Three attempts, waiting up to 30 s for the connection before each retry.
    fn default() -> Self {
        RetryPolicy::new(3, Duration::from_secs(30))
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
        let owner = config.access.map(access::OwnerState::open).transpose()?;
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
        let (updates, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let shared = Arc::new(Shared {
            session,
            network: network.clone(),
            owner,
            guest: access::GuestState::default(),
            e2e,
            require_tunnel: config.e2e.as_ref().is_some_and(|s| s.require_tunnel),
            rpc_timeout: config.rpc_timeout,
            rpc_limits: config.rpc_limits,
            retry: config.retry,
            directory: Mutex::new(ProviderDirectory::new(network.clone())),
            updates,
            events,
            failures: broadcast::channel(FAILURE_CAPACITY).0,
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
            queries: InfoQueries::default(),
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

    /// Changes of the provider list from now on.
    pub fn updates(&self) -> broadcast::Receiver<DirectoryUpdate> {
        self.shared.updates.subscribe()
    }

    /// Events of subscribed services from now on.
    pub fn events(&self) -> broadcast::Receiver<ServiceEvent> {
        self.shared.events.subscribe()
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
    /// whose outcome was [`CallOutcome::Unknown`] and the provider, if it ran that attempt,
    /// answers with its first answer instead of running the method again.
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

    /// Subscribes to every event of `service` on `provider`. Events arrive on
    /// [`Controller::events`] while the returned [`Subscription`] lives; dropping it unsubscribes.
    pub async fn subscribe(&self, provider: &FullJid, service: &str) -> Result<Subscription> {
        self.subscribe_events(provider, service, None).await
    }

    /// Subscribes to the events of `service` named in `events` (`None`: all of them). Several
    /// subscriptions to one provider's service are merged: the provider sends the union.
    pub async fn subscribe_events(
        &self,
        provider: &FullJid,
        service: &str,
        events: Option<&[&str]>,
    ) -> Result<Subscription> {
        let key = (provider.clone(), service.to_owned());
        let filter: EventFilter = events.map(|names| names.iter().map(|n| n.to_string()).collect());
        let id = self
            .shared
            .next_subscription
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let union = {
            let mut subs = self.shared.subscriptions.locked();
            let entry = subs.entry(key.clone()).or_default();
            entry.push((id, filter));
            union_of(entry)
        };
        if let Err(e) = self
            .call(
                provider,
                &format!("{service}.subscribe"),
                subscribe_params(&union),
            )
            .await
        {
            let mut subs = self.shared.subscriptions.locked();
            if let Some(entry) = subs.get_mut(&key) {
                entry.retain(|(i, _)| *i != id);
                if entry.is_empty() {
                    subs.remove(&key);
                }
            }
            return Err(e);
        }
        Ok(Subscription {
            controller: Some(self.clone()),
            key,
            id,
            runtime: tokio::runtime::Handle::current(),
        })
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

/// A live event subscription. Dropping it (or [`Subscription::cancel`]) unsubscribes.
pub struct Subscription {
    controller: Option<Controller>,
    key: (FullJid, String),
    id: u64,
    runtime: tokio::runtime::Handle,
}

/// What the provider must hold for these local subscriptions: `None` = every event.
fn union_of(entries: &[(u64, EventFilter)]) -> EventFilter {
    let mut all = std::collections::BTreeSet::new();
    for (_, filter) in entries {
        match filter {
            None => return None,
            Some(names) => all.extend(names.iter().cloned()),
        }
    }
    Some(all)
}

/// The parameters of `<service>.subscribe` for `filter`.
fn subscribe_params(filter: &EventFilter) -> Vec<Value> {
    match filter {
        None => vec![],
        Some(names) => vec![Value::Array(
            names.iter().map(|n| Value::String(n.clone())).collect(),
        )],
    }
}

/// What to tell the provider after a local subscription went away.
enum Release {
    Nothing,
    Unsubscribe,
    Narrow(EventFilter),
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Subscription").field(&self.key).finish()
    }
}

impl Subscription {
    /// Unsubscribes now (or narrows the provider's selection to what other live subscriptions
    /// still want) and waits for the provider's answer.
    pub async fn cancel(mut self) -> Result<()> {
        match self.release() {
            Some((controller, provider, service, action)) => {
                apply_release(&controller, &provider, &service, action).await
            }
            None => Ok(()),
        }
    }

    /// Drops our entry; returns what to tell the provider.
    fn release(&mut self) -> Option<(Controller, FullJid, String, Release)> {
        let controller = self.controller.take()?;
        let action = {
            let mut subs = controller.shared.subscriptions.locked();
            match subs.get_mut(&self.key) {
                Some(entry) => {
                    let before = union_of(entry);
                    entry.retain(|(i, _)| *i != self.id);
                    if entry.is_empty() {
                        subs.remove(&self.key);
                        Release::Unsubscribe
                    } else {
                        let after = union_of(entry);
                        if after == before {
                            Release::Nothing
                        } else {
                            Release::Narrow(after)
                        }
                    }
                }
                None => Release::Nothing,
            }
        };
        Some((controller, self.key.0.clone(), self.key.1.clone(), action))
    }
}

async fn apply_release(
    controller: &Controller,
    provider: &FullJid,
    service: &str,
    action: Release,
) -> Result<()> {
    match action {
        Release::Nothing => Ok(()),
        Release::Unsubscribe => controller
            .call(provider, &format!("{service}.unsubscribe"), vec![])
            .await
            .map(drop),
        Release::Narrow(filter) => controller
            .call(
                provider,
                &format!("{service}.subscribe"),
                subscribe_params(&filter),
            )
            .await
            .map(drop),
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((controller, provider, service, action)) = self.release() {
            self.runtime.spawn(async move {
                if let Err(e) = apply_release(&controller, &provider, &service, action).await {
                    tracing::debug!(%provider, error = %e, "unsubscribe on drop failed");
                }
            });
        }
    }
}

/// A disco#info answer (or failure) coming back to the dispatcher.
struct InfoAnswer {
    jid: FullJid,
    caps: Option<Advertised>,
    info: Result<DiscoAnswer>,
}

struct Dispatcher {
    shared: Arc<Shared>,
    network: BareJid,
    info: DiscoInfoResult,
    caps_ver: String,
    infos: mpsc::UnboundedSender<InfoAnswer>,
    /// The disco#info queries presences triggered: one per hash, bounded in all.
    queries: InfoQueries,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut infos: mpsc::UnboundedReceiver<InfoAnswer>,
        mut e2e_rx: Option<mpsc::Receiver<E2eInbound>>,
    ) {
        loop {
            tokio::select! {
                item = inbound.recv() => match item {
                    Some(Inbound::Online { jid, resumed }) => self.on_online(jid, resumed),
                    Some(Inbound::Stanza(stanza)) => {
                        // Jingle/IBB belong to the tunnel layer, which answers them itself.
                        if !self.shared.e2e.as_ref().is_some_and(|e| e.handle_stanza(&stanza))
                            && !self.shared.playlists.handle_stanza(&stanza)
                        {
                            self.on_stanza(*stanza);
                        }
                    }
                    None => break,
                },
                Some(answer) = infos.recv() => self.on_info(answer),
                Some(item) = next_inbound(&mut e2e_rx) => self.on_e2e(item),
            }
        }
        let gone = self.shared.directory.locked().clear();
        self.publish(gone);
    }

    fn publish(&self, updates: Vec<DirectoryUpdate>) {
        let mut back: HashSet<FullJid> = HashSet::new();
        for update in updates {
            if let DirectoryUpdate::Added(p) = &update {
                back.insert(p.jid.clone());
                if self.shared.owner.is_some() && p.jid.to_bare() == self.network {
                    // An owner device keeps the network's providers in agreement on guest access.
                    tokio::spawn(self.shared.clone().sync_access(p.jid.clone()));
                }
            }
            let _ = self.shared.updates.send(update);
        }
        if !back.is_empty() {
            self.restore_subscriptions(&back);
        }
    }

    /// A provider we had subscribed to came (back) online: it forgot us, so subscribe again.
    fn restore_subscriptions(&self, providers: &HashSet<FullJid>) {
        let wanted: Vec<(FullJid, String, EventFilter)> = self
            .shared
            .subscriptions
            .locked()
            .iter()
            .filter(|((p, _), _)| providers.contains(p))
            .map(|((p, s), entries)| (p.clone(), s.clone(), union_of(entries)))
            .collect();
        for (provider, service, filter) in wanted {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let method = format!("{service}.subscribe");
                let params = subscribe_params(&filter);
                // A tunnel may go down while the session reconnects: subscribe once it is back
                // (calls are not sent while it is not online).
                if !shared.wait_online(RESTORE_WAIT).await {
                    tracing::warn!(%provider, %service, "could not restore subscription: offline");
                    return;
                }
                let retry = RetryPolicy::new(2, RESTORE_WAIT);
                match shared
                    .call_with_retry(&provider, &method, params, &retry)
                    .await
                {
                    Ok(_) => tracing::info!(%provider, %service, "subscription restored"),
                    Err(e) => {
                        tracing::warn!(%provider, %service, error = %e, "could not restore subscription")
                    }
                }
            });
        }
    }

    fn on_online(&mut self, jid: FullJid, resumed: bool) {
        if !resumed {
            let gone = {
                let mut dir = self.shared.directory.locked();
                dir.set_own(jid);
                dir.clear()
            };
            self.queries.clear();
            self.publish(gone);
            // The IBB sessions of our tunnels died with the old stream: fail the calls waiting in
            // them now (NotConnected) instead of at their deadlines.
            if let Some(e2e) = &self.shared.e2e {
                e2e.close_all("the controller's session was not resumed");
            }
        }
        // Caps without service features: a controller announces no service (spec §6).
        let presence = presence_for(&self.info);
        if self.shared.session.send(presence).is_err() {
            tracing::warn!("could not announce presence: session ended");
        }
    }

    fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Presence(p) => self.on_presence(&p),
            Stanza::Message(m) => self.on_message(m, false),
            Stanza::Iq(iq) => self.on_iq(iq, false),
        }
    }

    fn on_e2e(&mut self, item: E2eInbound) {
        match item {
            // `from` is the authenticated peer; presence never travels in a tunnel.
            E2eInbound::Stanza(stanza) => match *stanza {
                Stanza::Message(m) => self.on_message(m, true),
                Stanza::Iq(iq) => self.on_iq(iq, true),
                Stanza::Presence(_) => {}
            },
            E2eInbound::TunnelDown { peer, reason } => {
                tracing::debug!(%peer, ?reason, "tunnel down");
                if let Some(error) = reason {
                    let _ = self.shared.failures.send(TunnelFailure {
                        peer: peer.clone(),
                        error,
                    });
                }
                // The provider now has no way to send us its events: if it is still online,
                // subscribe again, which opens a new tunnel.
                if self.shared.directory.locked().get(&peer).is_some() {
                    self.restore_subscriptions(&HashSet::from([peer]));
                }
            }
            E2eInbound::TunnelUp { peer, .. } => tracing::debug!(%peer, "tunnel up"),
            E2eInbound::TunnelRefused { peer, error } => {
                tracing::info!(%peer, %error, "end-to-end tunnel refused");
                let _ = self.shared.failures.send(TunnelFailure { peer, error });
            }
            E2eInbound::Paired { peer, .. } => tracing::info!(%peer, "paired"),
            E2eInbound::PairingFailed { peer, error } => {
                tracing::info!(%peer, %error, "pairing failed")
            }
        }
    }

    /// Sends `iq` back the way its request came.
    fn reply(&self, iq: Iq, via_tunnel: bool) {
        let sent = match (&self.shared.e2e, via_tunnel) {
            (Some(e2e), true) => e2e.send(iq),
            _ => self.shared.session.send(iq),
        };
        if sent.is_err() {
            tracing::debug!("reply dropped: session or tunnel ended");
        }
    }

    fn on_presence(&mut self, presence: &Presence) {
        if presence.type_ == xmpp_parsers::presence::Type::Subscribe {
            return self.on_subscription(presence);
        }
        let outcome = self.shared.directory.locked().on_presence(presence);
        match outcome {
            PresenceOutcome::Ignored => {}
            PresenceOutcome::Updated(updates) => self.publish(updates),
            PresenceOutcome::NeedInfo { jid, caps } => self.request_info(jid, caps),
        }
    }

    /// Queries `jid`'s disco#info within the bounds of [`InfoQueries`]: one query per hash, a cap
    /// on the total.
    fn request_info(&mut self, jid: FullJid, caps: Option<Advertised>) {
        match self.queries.request(jid.clone(), caps.as_ref()) {
            QueryStart::Send => self.query_info(jid, caps),
            QueryStart::Joined | QueryStart::Queued => {}
            // Its next presence will be looked at afresh, instead of being taken for a status change.
            QueryStart::Dropped => self.shared.directory.locked().forget(&jid),
        }
    }

    fn query_info(&self, jid: FullJid, caps: Option<Advertised>) {
        let node = caps.as_ref().and_then(Advertised::query_node);
        let shared = self.shared.clone();
        let infos = self.infos.clone();
        tokio::spawn(async move {
            let iq = Iq::Get {
                from: None,
                to: Some(Jid::from(jid.clone())),
                id: String::new(),
                payload: DiscoInfoQuery { node: node.clone() }.into(),
            };
            let info = match shared.session.request(iq, shared.rpc_timeout).await {
                Ok(IqReply::Result(Some(payload))) => DiscoAnswer::from_element(payload)
                    .map_err(|e| Error::new(ErrorKind::Protocol, format!("disco#info: {e}"))),
                Ok(IqReply::Result(None)) => {
                    Err(Error::new(ErrorKind::Protocol, "empty disco#info"))
                }
                Ok(IqReply::Error(e)) => Err(rpc::error_from_stanza("disco#info", &e)),
                Err(e) => Err(e),
            };
            let _ = infos.send(InfoAnswer { jid, caps, info });
        });
    }

    fn on_info(&mut self, answer: InfoAnswer) {
        let waiting = self.queries.finished(answer.caps.as_ref());
        match answer.info {
            Ok(info) => {
                let mut updates = Vec::new();
                let verdict = {
                    let mut dir = self.shared.directory.locked();
                    let (u, verdict) = dir.on_info(answer.jid, answer.caps.as_ref(), &info);
                    updates.extend(u);
                    verdict
                };
                if verdict == Some(Verdict::Verified) {
                    // Everyone who announced the same hash gets the verified answer.
                    let mut dir = self.shared.directory.locked();
                    for jid in waiting {
                        updates.extend(dir.on_info(jid, answer.caps.as_ref(), &info).0);
                    }
                } else {
                    // The hash cannot be trusted: ask each waiting device for its own answer.
                    for jid in waiting {
                        self.request_info(jid, None);
                    }
                }
                self.publish(updates);
            }
            Err(e) => {
                if answer.jid.to_bare() == self.network {
                    tracing::warn!(jid = %answer.jid, error = %e, "disco#info failed");
                } else {
                    // A host's device that does not know us (yet): not our problem to report.
                    tracing::debug!(jid = %answer.jid, error = %e, "disco#info failed");
                }
                // Someone else with the same caps may answer.
                for jid in waiting {
                    self.request_info(jid, answer.caps.clone());
                }
            }
        }
        for (jid, caps) in self.queries.next_ready() {
            self.query_info(jid, caps);
        }
    }

    fn on_message(&self, message: Message, via_tunnel: bool) {
        if message.type_ != MessageType::Headline {
            return;
        }
        if !via_tunnel && self.on_access_message(&message) {
            return;
        }
        if self.shared.require_tunnel && !via_tunnel {
            tracing::debug!(from = ?message.from, "plaintext event ignored: tunnel required");
            return;
        }
        let Some(from) = message.from.clone().and_then(|j| j.try_into_full().ok()) else {
            return;
        };
        // Events count only from providers we know (our network, or one that granted us access).
        if self.shared.directory.locked().get(&from).is_none() {
            tracing::debug!(%from, "event from an unknown device ignored");
            return;
        }
        for payload in message
            .payloads
            .iter()
            .filter(|p| p.is("event", events::NS))
        {
            match EventNotice::from_element(payload, &self.shared.rpc_limits) {
                Ok(notice) => {
                    let _ = self.shared.events.send(ServiceEvent {
                        provider: from.clone(),
                        notice,
                    });
                }
                Err(e) => tracing::warn!(%from, error = %e, "malformed event ignored"),
            }
        }
    }

    fn on_iq(&self, iq: Iq, via_tunnel: bool) {
        let (from, id, payload) = match iq {
            Iq::Get {
                from, id, payload, ..
            } => (from, id, payload),
            Iq::Set { from, id, .. } => {
                // A controller serves nothing.
                return self.reply(plumbing::unsupported(from, id), via_tunnel);
            }
            _ => return,
        };
        // Our network, our server (it resolves our caps for PEP notifications: ejabberd asks from
        // its domain), and guests we granted (their discovery asks every device it sees).
        let is_own_server = |f: &Jid| {
            f.node().is_none() && f.resource().is_none() && f.domain() == self.network.domain()
        };
        let reply = match &from {
            Some(f)
                if f.to_bare() != self.network
                    && !is_own_server(f)
                    && !self.shared.guest.granted.locked().contains(&f.to_bare()) =>
            {
                plumbing::error(from.clone(), id, plumbing::forbidden())
            }
            _ => plumbing::answer_get(from, id, &payload, &self.info, &self.caps_ver),
        };
        self.reply(reply, via_tunnel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_way_is_retried_and_never_a_call_that_ran() {
        let lost = Error::new(ErrorKind::NotConnected, "x").with_outcome(CallOutcome::Unknown);
        let not_sent = Error::new(ErrorKind::NotConnected, "x");
        let timeout = Error::new(ErrorKind::Timeout, "x");
        assert!(RetryPolicy::may_retry(&lost));
        assert!(RetryPolicy::may_retry(&not_sent));
        assert!(RetryPolicy::may_retry(&timeout));
        for refused in [
            Error::new(ErrorKind::Forbidden, "x"),
            Error::new(ErrorKind::UnknownMethod, "x"),
            Error::new(ErrorKind::BadParams, "x"),
            Error::fault(409, "x"),
            Error::new(ErrorKind::Protocol, "x").with_outcome(CallOutcome::Unknown),
        ] {
            assert!(!RetryPolicy::may_retry(&refused), "{refused}");
        }
        assert_eq!(RetryPolicy::NONE.attempts, 1);
        assert_eq!(RetryPolicy::default().attempts, 3);
    }
}
