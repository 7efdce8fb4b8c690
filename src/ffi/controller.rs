//! The `Controller` object: what a remote-control app uses.

use crate::core::sync::Locked;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::config::ConnectionConfig;
use super::diagnostics::{self, Live};
use super::error::{config, parse_provider, CallOutcome, PmnError};
use super::gate::{ListenerGate, CLOSE_WAIT};
use super::guest::GuestPass;
use super::library::MediaLibrary;
use super::listener::{ControllerListener, EventBatchListener, ResyncListener};
use super::owner::OwnerConsole;
use super::player::Player;
use super::playlists::Playlists;
use super::recorder::Recorder;
use super::records::{ConnectionState, ProviderInfo, ServiceEvent};
use super::runtime;
use super::task::{forward, AbortOnDrop, TaskHandle};
use super::trust::Trust;
use crate::core::controller::{Controller as CoreController, ControllerConfig as CoreConfig};
use crate::core::discovery::DirectoryUpdate;
use crate::core::session::ConnectionState as CoreState;

/// A remote control: finds the network's providers and drives them.
///
/// Kotlin (most apps use `RemoteControl`, which turns the listener into flows):
/// ```kotlin controllerDoc(config: ConnectionConfig, listener: ControllerListener)
/// Controller(config, listener).use { c ->
///     c.connect()
///     // Providers arrive through listener.onProviderOnline, some milliseconds after connect().
///     val tv = c.providers().firstOrNull { RemoteControl.PLAYER_FEATURE in it.services }
///         ?: return@use
///     c.player(tv.jid).play("file:///movies/a.mkv")
/// }
/// ```
#[derive(uniffi::Object)]
pub struct Controller {
    config: ConnectionConfig,
    /// The app's listener: closed before `connect` and after `disconnect`/`close`.
    listener: Arc<ListenerGate>,
    inner: Mutex<Option<CoreController>>,
    /// The state while there is no core controller: `Idle`, `Connecting`, or `Offline` after a
    /// failed login or a disconnect.
    state: Mutex<ConnectionState>,
    /// Forwarders from the core to the listener; aborted when the controller is dropped.
    forwarders: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Live `watch_event_batches` handles: while there is one, events go to the batches and
    /// `on_event` is not called, so each event crosses into the app once.
    batch_watchers: Arc<AtomicUsize>,
    _live: Live,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("network", &self.config.network)
            .field("device", &self.config.device)
            .finish_non_exhaustive()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        // The app's close(): nothing reaches the listener once it returns.
        self.listener.close(CLOSE_WAIT);
        for f in self
            .forwarders
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default()
        {
            f.abort();
        }
        if let Some(core) = self.inner.get_mut().ok().and_then(Option::take) {
            runtime::handle().spawn(async move { core.close().await });
        }
        tracing::debug!("controller dropped");
    }
}

impl Controller {
    pub(super) fn core(&self) -> Result<CoreController, PmnError> {
        self.inner
            .locked()
            .clone()
            .ok_or_else(|| PmnError::NotConnected {
                detail: "call connect() first".into(),
                outcome: CallOutcome::NotRun,
            })
    }

    /// Records `state` as the state while there is no core controller, and tells the listener.
    fn set_state(&self, state: ConnectionState) {
        *self.state.locked() = state.clone();
        self.listener
            .deliver("on_connection_state", |l| l.on_connection_state(state));
    }

    fn abort_forwarders(&self) {
        for f in std::mem::take(&mut *self.forwarders.locked()) {
            f.abort();
        }
    }

    fn start_forwarding(&self, core: &CoreController) {
        let listener = self.listener.clone();
        let mut updates = core.updates();
        let snapshot_source = core.clone();
        let directory = runtime::handle().spawn(async move {
            // Current state first, then changes (STYLE: deliver the present, then diffs).
            for p in snapshot_source.providers() {
                listener.deliver("on_provider_online", |l| l.on_provider_online(p.into()));
            }
            loop {
                match updates.recv().await {
                    Ok(DirectoryUpdate::Added(p)) | Ok(DirectoryUpdate::Changed(p)) => {
                        listener.deliver("on_provider_online", |l| l.on_provider_online(p.into()))
                    }
                    Ok(DirectoryUpdate::Removed(jid)) => listener
                        .deliver("on_provider_offline", |l| {
                            l.on_provider_offline(jid.to_string())
                        }),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(n, "listener fell behind; resending the provider list");
                        for p in snapshot_source.providers() {
                            listener
                                .deliver("on_provider_online", |l| l.on_provider_online(p.into()));
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let listener = self.listener.clone();
        let mut events = core.events();
        let batch_watchers = self.batch_watchers.clone();
        let events = runtime::handle().spawn(async move {
            loop {
                match events.recv().await {
                    Ok(_) if batch_watchers.load(Ordering::SeqCst) > 0 => {}
                    Ok(e) => listener.deliver("on_event", |l| l.on_event(e.into())),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(n, "listener fell behind; events dropped")
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let listener = self.listener.clone();
        let mut state = core.session().watch_state();
        let states = runtime::handle().spawn(async move {
            loop {
                let current: CoreState = state.borrow_and_update().clone();
                let done = matches!(current, CoreState::Offline { .. });
                listener.deliver("on_connection_state", |l| {
                    l.on_connection_state(current.into())
                });
                if done || state.changed().await.is_err() {
                    break;
                }
            }
        });
        self.forwarders.locked().extend([
            directory.abort_handle(),
            events.abort_handle(),
            states.abort_handle(),
        ]);
    }
}

/// One live `watch_event_batches`: counted while its forwarder exists (it is dropped with the
/// task, when the handle aborts it or the connection ends).
struct BatchWatcher(Arc<AtomicUsize>);

impl BatchWatcher {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for BatchWatcher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[uniffi::export]
impl Controller {
    /// Creates a controller; nothing happens on the network until [`Controller::connect`].
    /// Fails with `PmnException.Config` for an invalid configuration.
    #[uniffi::constructor]
    pub fn new(
        config: ConnectionConfig,
        listener: Arc<dyn ControllerListener>,
    ) -> Result<Arc<Self>, PmnError> {
        config.to_session()?;
        crate::core::config::check_transport(config.e2e.is_some(), config.plain_transport)?;
        Ok(Arc::new(Self {
            config,
            listener: ListenerGate::new(listener),
            inner: Mutex::new(None),
            state: Mutex::new(ConnectionState::Idle),
            forwarders: Mutex::new(Vec::new()),
            batch_watchers: Arc::new(AtomicUsize::new(0)),
            _live: Live::new(&diagnostics::CONTROLLERS),
        }))
    }

    /// Logs in and starts discovery. The listener hears `Connecting`, then `Online` (providers
    /// then arrive through it) or `Offline(error)` with the failure this call also throws. A
    /// controller can connect again after `disconnect()`.
    pub async fn connect(&self) -> Result<(), PmnError> {
        {
            let mut inner = self.inner.locked();
            match inner.as_ref().map(|core| core.state()) {
                // A session that ended on a fatal error may be replaced; a live one may not.
                Some(CoreState::Offline { .. }) => *inner = None,
                Some(_) => return Err(config("already connected")),
                None => {}
            }
        }
        self.abort_forwarders();
        let core_config = CoreConfig {
            rpc_timeout: self.config.rpc_timeout(),
            retry: self.config.retry(),
            e2e: self.config.e2e_settings()?,
            access: self.config.owner_access(),
            caps_cache: self.config.caps_cache(),
            ..CoreConfig::plain(self.config.to_session()?)
        };
        self.listener.open();
        self.set_state(ConnectionState::Connecting);
        let connected = runtime::run(async move {
            CoreController::connect(core_config)
                .await
                .map_err(PmnError::from)
        })
        .await;
        match connected {
            Ok(core) => {
                self.start_forwarding(&core);
                *self.inner.locked() = Some(core);
                Ok(())
            }
            Err(e) => {
                self.set_state(ConnectionState::Offline {
                    error: Some(e.clone()),
                });
                Err(e)
            }
        }
    }

    /// The providers online now.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        match self.core() {
            Ok(core) => core.providers().into_iter().map(Into::into).collect(),
            Err(_) => vec![],
        }
    }

    /// The devices' capabilities verified so far, as text to store (it holds no secret: only
    /// what devices announce on their network) and give back as `ConnectionConfig.capsCache` at
    /// the next start. Empty of entries before `connect()`.
    pub fn caps_cache_snapshot(&self) -> String {
        match self.core() {
            Ok(core) => core.caps_snapshot().to_string(),
            Err(_) => crate::core::discovery::CapsSnapshot::default().to_string(),
        }
    }

    /// The connection state: `Idle` before `connect()`, then what the listener was last told.
    pub fn connection_state(&self) -> ConnectionState {
        match self.core() {
            Ok(core) => core.state().into(),
            Err(_) => self.state.locked().clone(),
        }
    }

    /// The media player of `provider` (a full JID from [`ProviderInfo::jid`]): the JID is parsed
    /// once here (`PmnException.Config` if it is not a provider's full JID), and every call of the
    /// returned object goes through this controller.
    pub fn player(&self, provider: String) -> Result<Arc<Player>, PmnError> {
        Ok(Arc::new(Player::new(
            self.core()?.player(parse_provider(&provider)?),
        )))
    }

    /// The recorder of `provider` (a full JID).
    pub fn recorder(&self, provider: String) -> Result<Arc<Recorder>, PmnError> {
        Ok(Arc::new(Recorder::new(
            self.core()?.recorder(parse_provider(&provider)?),
        )))
    }

    /// The media library of `provider` (a full JID).
    pub fn library(&self, provider: String) -> Result<Arc<MediaLibrary>, PmnError> {
        Ok(Arc::new(MediaLibrary::new(
            self.core()?.library(parse_provider(&provider)?),
        )))
    }

    /// This device's trust: pairing, trusted devices, revocation, the network password.
    /// `PmnException.Config` without `ConnectionConfig.e2e`.
    pub fn trust(&self) -> Result<Arc<Trust>, PmnError> {
        Ok(Arc::new(Trust::new(self.core()?.trust()?)))
    }

    /// The owner console (guests' requests, grants, owner keys, audit). `PmnException.Config` unless
    /// this is an owner device (`ConnectionConfig.owner`).
    pub fn owner(&self) -> Result<Arc<OwnerConsole>, PmnError> {
        Ok(Arc::new(OwnerConsole::new(self.core()?.owner()?)))
    }

    /// The household's shared playlists and the friends' ones this device follows.
    pub fn playlists(&self) -> Result<Arc<Playlists>, PmnError> {
        Ok(Arc::new(Playlists::new(self.core()?.playlists().clone())))
    }

    /// The guest side: ask another household for access. `PmnException.Config` without
    /// `ConnectionConfig.e2e`.
    pub fn guest(&self) -> Result<Arc<GuestPass>, PmnError> {
        Ok(Arc::new(GuestPass::new(self.core()?.guest()?)))
    }

    /// Subscribes to the events of `service` (e.g. `player`) on `provider`; they arrive through
    /// `ControllerListener.on_event` until the returned handle is cancelled or closed.
    pub async fn subscribe(
        &self,
        provider: String,
        service: String,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let core = self.core()?;
        let provider = parse_provider(&provider)?;
        let subscription = runtime::run(async move {
            core.subscribe(&provider, &service)
                .await
                .map_err(PmnError::from)
        })
        .await?;
        Ok(Arc::new(TaskHandle::new(subscription)))
    }

    /// Subscribes to the events of `service` on `provider` named in `events` (e.g.
    /// `["state-changed"]`); an unknown name is `PmnException.BadParams`. They arrive through
    /// `ControllerListener.on_event` until the handle is cancelled or closed.
    pub async fn subscribe_events(
        &self,
        provider: String,
        service: String,
        events: Vec<String>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let core = self.core()?;
        let provider = parse_provider(&provider)?;
        let subscription = runtime::run(async move {
            let names: Vec<&str> = events.iter().map(String::as_str).collect();
            core.subscribe_events(&provider, &service, Some(&names))
                .await
                .map_err(PmnError::from)
        })
        .await?;
        Ok(Arc::new(TaskHandle::new(subscription)))
    }

    /// Reports, until the handle is cancelled, each subscription restored after a gap in which
    /// events may have been lost (see [`ResyncListener`]): the app's cue to read the state again.
    /// `PmnException.NotConnected` before `connect`.
    pub fn watch_resyncs(
        &self,
        listener: Arc<dyn ResyncListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let core = self.core()?;
        Ok(forward(
            vec![],
            core.resyncs(),
            "resync listener",
            move |r| {
                if let Err(e) = listener.on_resync(r.provider.to_string(), r.service) {
                    tracing::warn!(error = %e, "resync listener failed");
                }
            },
        ))
    }

    /// Delivers the events of every subscription of this controller to `listener` in batches of
    /// at most `max_batch` (0 counts as 1; negative is
    /// `PmnException.Config`): whatever arrived while the previous call ran goes in the
    /// next, so a burst crosses into the app in a few calls and a lone event is not held back.
    /// While the returned handle is live, `ControllerListener.on_event` is not called (each
    /// event crosses once); cancelling or closing it brings `on_event` back. Subscribe as usual
    /// (`subscribe`, `subscribe_events`). An event arriving just as the handle is made may reach
    /// both. Ends with the connection (`disconnect`); `PmnException.NotConnected` before `connect`.
    pub fn watch_event_batches(
        &self,
        listener: Arc<dyn EventBatchListener>,
        max_batch: i32,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let max_batch = super::numbers::in32("maxBatch", max_batch)?.max(1);
        let max_batch = usize::try_from(max_batch).unwrap_or(usize::MAX);
        let mut rx = self.core()?.events();
        // Counted after the receiver exists: an event in between is delivered twice, never lost.
        let watching = BatchWatcher::new(self.batch_watchers.clone());
        let task = runtime::handle().spawn(async move {
            use broadcast::error::{RecvError, TryRecvError};
            let _watching = watching;
            loop {
                let first = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(n, "event batch listener fell behind; events dropped");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                };
                let mut batch: Vec<ServiceEvent> = vec![first.into()];
                let mut closed = false;
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e.into()),
                        Err(TryRecvError::Lagged(n)) => {
                            tracing::warn!(n, "event batch listener fell behind; events dropped")
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => {
                            closed = true;
                            break;
                        }
                    }
                }
                if let Err(e) = listener.on_events(batch) {
                    tracing::warn!(error = %e, "event batch listener failed");
                }
                if closed {
                    break;
                }
            }
        });
        Ok(Arc::new(TaskHandle::new(AbortOnDrop(task.abort_handle()))))
    }

    /// Tells the library the device's network changed: call it from Android's
    /// `ConnectivityManager.NetworkCallback` (`onAvailable`, `onLost`, `onCapabilitiesChanged`) or
    /// iOS's `NWPathMonitor` handler. A waiting reconnect starts at once with its backoff reset;
    /// an apparently live connection is probed and, if the server does not answer within 3 s,
    /// replaced by a new one that resumes the session without loss. Returns when that is decided;
    /// never fails (does nothing before `connect`).
    pub async fn network_changed(&self) {
        if let Ok(core) = self.core() {
            let session = core.session().clone();
            let _ = runtime::run(async move {
                session.network_changed().await;
                Ok(())
            })
            .await;
        }
    }

    /// Tells the library whether the app is in the foreground: call it from Android's
    /// `ProcessLifecycleOwner` (`onStart` → true, `onStop` → false) or iOS's
    /// `didBecomeActive`/`didEnterBackground`. In the background the server is told the client
    /// is inactive (XEP-0352, when it supports it), so it may hold back presence and events until
    /// the app returns, and later connections use a longer keepalive; calls work either way.
    /// Does nothing before `connect`.
    pub fn set_foreground(&self, foreground: bool) {
        if let Ok(core) = self.core() {
            core.set_foreground(foreground);
        }
    }

    /// Goes offline. The listener hears `Offline(null)` last: no callback starts after this
    /// returns (one in progress is waited for, up to 2 s). `connect()` may be called again.
    pub async fn disconnect(&self) {
        let core = self.inner.locked().take();
        let Some(core) = core else { return };
        self.abort_forwarders();
        let _ = runtime::run(async move {
            core.close().await;
            Ok(())
        })
        .await;
        self.set_state(ConnectionState::Offline { error: None });
        let listener = self.listener.clone();
        // The wait for a callback in progress blocks: off the runtime's workers.
        let _ = runtime::handle()
            .spawn_blocking(move || listener.close(CLOSE_WAIT))
            .await;
    }
}
