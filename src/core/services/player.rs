//! The media player service (`urn.xmpp.tmp.media.player`, spec §6 example).
//!
//! Methods (all answer the resulting state): `player.play(uri)`, `pause()`, `resume()`, `stop()`,
//! `seek(position_ms)`, `set_volume(0..=100)`, `mute(bool)`, `next()`, `previous()`,
//! `enqueue(uri, title|nil)`, `clear_queue()`, `queue()`, `status()`.
//! Events: `state-changed` ([`PlayerStatus`]), `position` ([`PositionUpdate`], at most one per
//! position interval), `queue-changed` ([`Queue`]), `volume-changed` ([`VolumeState`]).
//! `player.subscribe` / `player.unsubscribe` are handled by the provider for every service.
//!
//! The queue, the argument checks and the events live here, in [`PlayerService`]; a [`MediaPlayer`]
//! only plays one URI at a time (the simulated one, mpv, a chained remote player, or an app's own
//! player implemented in Kotlin/Swift).

use crate::core::sync::Locked;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::core::access::Scope;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::events::EventNotice;
use crate::core::events::Throttle;
use crate::core::rpc::xmlrpc::{from_value, to_value, Value};
use crate::core::rpc::{decode_notice, event, method, Emitter, Remote, ServiceSpec, TypedService};

/// The disco#info feature of the media player (kept from the spec's example).
pub const FEATURE: &str = "urn.xmpp.tmp.media.player";
/// The method prefix.
pub const SERVICE: &str = "player";
/// Event sent after every change of playback state or media; payload [`PlayerStatus`].
pub const EVENT_STATE_CHANGED: &str = "state-changed";
/// Event sent periodically while playing and after a seek; payload [`PositionUpdate`].
pub const EVENT_POSITION: &str = "position";
/// Event sent when the queue changes; payload [`Queue`].
pub const EVENT_QUEUE_CHANGED: &str = "queue-changed";
/// Event sent when volume or mute change; payload [`VolumeState`].
pub const EVENT_VOLUME_CHANGED: &str = "volume-changed";
/// Longest URI accepted.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Longest title accepted.
pub const MAX_TITLE_BYTES: usize = 1024;
/// Most items in the queue.
pub const MAX_QUEUE_ITEMS: usize = 1000;
/// Loudest volume.
pub const MAX_VOLUME: u8 = 100;
/// Default period of `position` events while playing.
pub const DEFAULT_POSITION_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest period of `position` events, whatever is configured (the rate limit).
pub const MIN_POSITION_INTERVAL: Duration = Duration::from_millis(100);

/// Fault code: valid call, wrong state (pause while stopped, next at the end of the queue).
pub const FAULT_INVALID_STATE: i32 = 409;
/// Fault code: the position is beyond the end of the media.
pub const FAULT_OUT_OF_RANGE: i32 = 416;
/// Fault code: the queue is full.
pub const FAULT_QUEUE_FULL: i32 = 507;

/// The media player service definition.
#[derive(Debug, Clone, Copy)]
pub struct Player;

impl ServiceSpec for Player {
    const NAME: &'static str = SERVICE;
    const FEATURE: &'static str = FEATURE;
    const EVENTS: &'static [&'static str] = &[
        EVENT_STATE_CHANGED,
        EVENT_POSITION,
        EVENT_QUEUE_CHANGED,
        EVENT_VOLUME_CHANGED,
    ];
    // A playback guest follows what the TV plays (its state, position, volume, queue).
    const EVENTS_SCOPE: Option<Scope> = Some(Scope::Playback);
}

// Which methods a guest's `playback` grant opens is declared here, method by method:
// `enqueue` / `clear_queue` / `queue` stay closed — they let a guest see and rewrite what the
// household queued, which is more than "control the film I brought".
method!(
    /// `player.play(uri)`: replaces the queue with `uri` and plays it.
    Play, Player, "play", (String,) => PlayerStatus, scope = Playback);
method!(
    /// `player.pause()`.
    Pause, Player, "pause", () => PlayerStatus, scope = Playback);
method!(
    /// `player.resume()`.
    Resume, Player, "resume", () => PlayerStatus, scope = Playback);
method!(
    /// `player.stop()`: stops and unloads (the queue stays).
    Stop, Player, "stop", () => PlayerStatus, scope = Playback);
method!(
    /// `player.seek(position_ms)`.
    Seek, Player, "seek", (u64,) => PlayerStatus, scope = Playback);
method!(
    /// `player.set_volume(0..=100)`.
    SetVolume, Player, "set_volume", (u8,) => VolumeState, scope = Playback);
method!(
    /// `player.mute(muted)`.
    Mute, Player, "mute", (bool,) => VolumeState, scope = Playback);
method!(
    /// `player.next()`: plays the next queue item.
    Next, Player, "next", () => PlayerStatus, scope = Playback);
method!(
    /// `player.previous()`: plays the previous queue item.
    Previous, Player, "previous", () => PlayerStatus, scope = Playback);
method!(
    /// `player.enqueue(uri, title|nil)`: appends to the queue (does not start playing).
    Enqueue, Player, "enqueue", (String, Option<String>) => Queue);
method!(
    /// `player.clear_queue()`: removes every item except the one playing.
    ClearQueue, Player, "clear_queue", () => Queue);
method!(
    /// `player.queue()`.
    GetQueue, Player, "queue", () => Queue);
method!(
    /// `player.status()`.
    Status, Player, "status", () => PlayerStatus, scope = Playback);

event!(
    /// `state-changed`.
    StateChanged, Player, EVENT_STATE_CHANGED, PlayerStatus);
event!(
    /// `position` (rate-limited).
    Position, Player, EVENT_POSITION, PositionUpdate);
event!(
    /// `queue-changed`.
    QueueChanged, Player, EVENT_QUEUE_CHANGED, Queue);
event!(
    /// `volume-changed`.
    VolumeChanged, Player, EVENT_VOLUME_CHANGED, VolumeState);

/// Every event a media player sends, typed: what a controller's app shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayerEvent {
    /// `state-changed`.
    StateChanged(PlayerStatus),
    /// `position`.
    Position(PositionUpdate),
    /// `queue-changed`.
    QueueChanged(Queue),
    /// `volume-changed`.
    VolumeChanged(VolumeState),
}

impl PlayerEvent {
    /// The player event `notice` carries; `None` for another service's or an unknown event,
    /// `Some(Err)` (`Protocol`) for a payload of the wrong shape.
    pub fn decode(notice: &EventNotice) -> Option<Result<Self>> {
        decode_notice::<StateChanged>(notice)
            .map(|r| r.map(Self::StateChanged))
            .or_else(|| decode_notice::<Position>(notice).map(|r| r.map(Self::Position)))
            .or_else(|| decode_notice::<QueueChanged>(notice).map(|r| r.map(Self::QueueChanged)))
            .or_else(|| decode_notice::<VolumeChanged>(notice).map(|r| r.map(Self::VolumeChanged)))
    }
}

/// Playback state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackState {
    /// Nothing loaded, or stopped.
    Stopped,
    /// Playing.
    Playing,
    /// Paused at a position.
    Paused,
}

impl PlaybackState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaybackState::Stopped => "stopped",
            PlaybackState::Playing => "playing",
            PlaybackState::Paused => "paused",
        }
    }
}

/// What the player is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerStatus {
    /// The loaded media, if any.
    #[serde(default)]
    pub uri: Option<String>,
    /// Its title, when known.
    #[serde(default)]
    pub title: Option<String>,
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// Position in the media, in milliseconds.
    #[serde(rename = "position")]
    pub position_ms: u64,
    /// Length of the media in milliseconds, when known.
    #[serde(default, rename = "duration")]
    pub duration_ms: Option<u64>,
    /// Volume, 0..=100.
    #[serde(default)]
    pub volume: u8,
    /// Whether the output is muted.
    #[serde(default)]
    pub muted: bool,
}

impl PlayerStatus {
    /// The XML-RPC struct of this status (`uri`, `title` and `duration` are left out when unknown).
    pub fn to_value(&self) -> Value {
        // Every field of a status is encodable; the fallback is unreachable in practice.
        to_value(self).unwrap_or(Value::Nil)
    }

    /// Reads the struct written by [`PlayerStatus::to_value`] (an empty `uri` counts as none).
    pub fn from_value(value: &Value) -> Result<Self> {
        let mut status: PlayerStatus = from_value(value.clone())
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("player status: {e}")))?;
        if status.uri.as_deref() == Some("") {
            status.uri = None;
        }
        Ok(status)
    }
}

/// Position report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionUpdate {
    /// Position in milliseconds.
    #[serde(rename = "position")]
    pub position_ms: u64,
    /// Length in milliseconds, when known.
    #[serde(default, rename = "duration")]
    pub duration_ms: Option<u64>,
}

/// Volume and mute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeState {
    /// 0..=100.
    pub volume: u8,
    /// Muted.
    pub muted: bool,
}

/// One queue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// What to play.
    pub uri: String,
    /// Its title.
    #[serde(default)]
    pub title: Option<String>,
}

/// The play queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Queue {
    /// The entries, in order.
    pub items: Vec<QueueItem>,
    /// Index of the current entry, if one is loaded.
    #[serde(default)]
    pub current: Option<u32>,
}

/// What a [`MediaPlayer`] reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Playback {
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// Position in milliseconds.
    pub position_ms: u64,
    /// Length in milliseconds, when known.
    pub duration_ms: Option<u64>,
    /// 0..=100.
    pub volume: u8,
    /// Muted.
    pub muted: bool,
}

/// A media player a provider drives: [`SimulatedPlayer`], [`super::mpv::MpvPlayer`], a
/// [`RemotePlayer`] (chaining), or an app's own player through the FFI. It plays one URI at a time;
/// the service keeps the queue and checks every argument before it gets here.
pub trait MediaPlayer: Send + Sync + 'static {
    /// Loads `uri` and plays it from the beginning.
    fn load(&self, uri: String) -> BoxFuture<'_, Result<()>>;
    /// Pauses (only called while playing).
    fn pause(&self) -> BoxFuture<'_, Result<()>>;
    /// Resumes (only called while paused).
    fn resume(&self) -> BoxFuture<'_, Result<()>>;
    /// Stops and unloads.
    fn stop(&self) -> BoxFuture<'_, Result<()>>;
    /// Jumps to `position_ms` (only called with media loaded, within its duration when known).
    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>>;
    /// Sets the volume, 0..=100.
    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>>;
    /// Mutes or unmutes.
    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>>;
    /// The current state.
    fn playback(&self) -> BoxFuture<'_, Result<Playback>>;
}

/// A player without output whose position advances with the clock while it plays. Every medium
/// is [`SimulatedPlayer::DURATION_MS`] long.
#[derive(Debug)]
pub struct SimulatedPlayer {
    state: Mutex<Simulation>,
}

#[derive(Debug)]
struct Simulation {
    state: PlaybackState,
    /// Position at `mark`.
    position_ms: u64,
    mark: Instant,
    volume: u8,
    muted: bool,
}

impl Default for SimulatedPlayer {
    fn default() -> Self {
        Self {
            state: Mutex::new(Simulation {
                state: PlaybackState::Stopped,
                position_ms: 0,
                mark: Instant::now(),
                volume: 50,
                muted: false,
            }),
        }
    }
}

impl Simulation {
    fn position_now(&self) -> u64 {
        let at = match self.state {
            PlaybackState::Playing => self
                .position_ms
                .saturating_add(self.mark.elapsed().as_millis().min(u64::MAX as u128) as u64),
            _ => self.position_ms,
        };
        at.min(SimulatedPlayer::DURATION_MS)
    }

    fn set(&mut self, state: PlaybackState, position_ms: u64) {
        self.state = state;
        self.position_ms = position_ms;
        self.mark = Instant::now();
    }
}

impl SimulatedPlayer {
    /// Length of every simulated medium: one hour.
    pub const DURATION_MS: u64 = 3_600_000;

    fn with<T>(&self, f: impl FnOnce(&mut Simulation) -> T) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
    {
        // A poisoned lock only means another call panicked mid-update; the state is still usable.
        let out = f(&mut self.state.locked());
        async move { Ok(out) }.boxed()
    }
}

impl MediaPlayer for SimulatedPlayer {
    fn load(&self, _uri: String) -> BoxFuture<'_, Result<()>> {
        self.with(|s| s.set(PlaybackState::Playing, 0))
    }

    fn pause(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|s| {
            let at = s.position_now();
            s.set(PlaybackState::Paused, at)
        })
    }

    fn resume(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|s| {
            let at = s.position_ms;
            s.set(PlaybackState::Playing, at)
        })
    }

    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|s| s.set(PlaybackState::Stopped, 0))
    }

    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>> {
        self.with(move |s| {
            let state = s.state;
            s.set(state, position_ms)
        })
    }

    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        self.with(move |s| s.volume = volume)
    }

    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        self.with(move |s| s.muted = muted)
    }

    fn playback(&self) -> BoxFuture<'_, Result<Playback>> {
        self.with(|s| Playback {
            state: s.state,
            position_ms: s.position_now(),
            duration_ms: (s.state != PlaybackState::Stopped).then_some(Self::DURATION_MS),
            volume: s.volume,
            muted: s.muted,
        })
    }
}

/// A [`MediaPlayer`] that is itself the player of another provider: a provider that is also a
/// controller (spec §4, "it MAY also be a controller for that other service"), e.g. a receiver that
/// forwards to the TV it is plugged into.
#[derive(Debug, Clone)]
pub struct RemotePlayer {
    client: PlayerClient,
}

impl RemotePlayer {
    /// Forwards every call to the player behind `client`.
    pub fn new(client: PlayerClient) -> Self {
        Self { client }
    }
}

impl MediaPlayer for RemotePlayer {
    fn load(&self, uri: String) -> BoxFuture<'_, Result<()>> {
        async move { self.client.play(&uri).await.map(drop) }.boxed()
    }
    fn pause(&self) -> BoxFuture<'_, Result<()>> {
        async move { self.client.pause().await.map(drop) }.boxed()
    }
    fn resume(&self) -> BoxFuture<'_, Result<()>> {
        async move { self.client.resume().await.map(drop) }.boxed()
    }
    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        async move { self.client.stop().await.map(drop) }.boxed()
    }
    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>> {
        async move { self.client.seek(position_ms).await.map(drop) }.boxed()
    }
    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        async move { self.client.set_volume(volume).await.map(drop) }.boxed()
    }
    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        async move { self.client.mute(muted).await.map(drop) }.boxed()
    }
    fn playback(&self) -> BoxFuture<'_, Result<Playback>> {
        async move {
            let s = self.client.status().await?;
            Ok(Playback {
                state: s.state,
                position_ms: s.position_ms,
                duration_ms: s.duration_ms,
                volume: s.volume,
                muted: s.muted,
            })
        }
        .boxed()
    }
}

/// The player service over any [`MediaPlayer`]: queue, checks and events.
pub struct PlayerService {
    typed: TypedService<Player>,
}

impl std::fmt::Debug for PlayerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerService").finish_non_exhaustive()
    }
}

struct Engine {
    player: Arc<dyn MediaPlayer>,
    emitter: Emitter<Player>,
    /// One operation at a time, so queue and player never disagree.
    ops: tokio::sync::Mutex<EngineState>,
    position_throttle: Mutex<Throttle>,
}

#[derive(Default)]
struct EngineState {
    queue: Queue,
    /// (state, uri) last announced, to send `state-changed` only on change.
    announced: Option<(PlaybackState, Option<String>)>,
    volume: Option<VolumeState>,
}

fn invalid_state(what: &str) -> Error {
    Error::fault(FAULT_INVALID_STATE, what)
}

fn bad(what: String) -> Error {
    Error::new(ErrorKind::BadParams, what)
}

fn check_uri(method: &str, uri: &str) -> Result<()> {
    if uri.is_empty() || uri.len() > MAX_URI_BYTES {
        return Err(bad(format!(
            "{method}: uri must be 1..={MAX_URI_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Engine {
    async fn status_of(&self, st: &EngineState) -> Result<PlayerStatus> {
        let p = self.player.playback().await?;
        let item = match p.state {
            PlaybackState::Stopped => None,
            _ => st
                .queue
                .current
                .and_then(|i| st.queue.items.get(i as usize)),
        };
        Ok(PlayerStatus {
            uri: item.map(|i| i.uri.clone()),
            title: item.and_then(|i| i.title.clone()),
            state: p.state,
            position_ms: p.position_ms,
            duration_ms: p.duration_ms,
            volume: p.volume,
            muted: p.muted,
        })
    }

    /// The status after a change; `state-changed` when state or media changed.
    async fn settle(&self, st: &mut EngineState) -> Result<PlayerStatus> {
        let status = self.status_of(st).await?;
        let key = (status.state, status.uri.clone());
        if st.announced.as_ref() != Some(&key) {
            st.announced = Some(key);
            self.emitter.emit::<StateChanged>(&status);
        }
        Ok(status)
    }

    async fn volume(&self, st: &mut EngineState) -> Result<VolumeState> {
        let p = self.player.playback().await?;
        let v = VolumeState {
            volume: p.volume,
            muted: p.muted,
        };
        if st.volume != Some(v) {
            st.volume = Some(v);
            self.emitter.emit::<VolumeChanged>(&v);
        }
        Ok(v)
    }

    async fn load_current(&self, st: &mut EngineState) -> Result<PlayerStatus> {
        let uri = st
            .queue
            .current
            .and_then(|i| st.queue.items.get(i as usize))
            .map(|i| i.uri.clone())
            .ok_or_else(|| invalid_state("the queue is empty"))?;
        self.player.load(uri).await?;
        self.emitter.emit::<QueueChanged>(&st.queue);
        self.settle(st).await
    }

    async fn play(&self, uri: String) -> Result<PlayerStatus> {
        check_uri("player.play", &uri)?;
        let mut st = self.ops.lock().await;
        st.queue = Queue {
            items: vec![QueueItem { uri, title: None }],
            current: Some(0),
        };
        // A new medium is always news, even when it is the same URI again.
        st.announced = None;
        self.load_current(&mut st).await
    }

    async fn require_loaded(&self, what: &str) -> Result<Playback> {
        let p = self.player.playback().await?;
        if p.state == PlaybackState::Stopped {
            return Err(invalid_state(&format!("{what}: nothing is loaded")));
        }
        Ok(p)
    }

    async fn pause(&self) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        if self.require_loaded("player.pause").await?.state == PlaybackState::Playing {
            self.player.pause().await?;
        }
        self.settle(&mut st).await
    }

    async fn resume(&self) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        if self.require_loaded("player.resume").await?.state == PlaybackState::Paused {
            self.player.resume().await?;
        }
        self.settle(&mut st).await
    }

    async fn stop(&self) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        self.player.stop().await?;
        st.queue.current = None;
        self.settle(&mut st).await
    }

    async fn seek(&self, position_ms: u64) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        let p = self.require_loaded("player.seek").await?;
        if let Some(duration) = p.duration_ms.filter(|d| position_ms > *d) {
            return Err(Error::fault(
                FAULT_OUT_OF_RANGE,
                format!("player.seek: {position_ms} ms is beyond the end ({duration} ms)"),
            ));
        }
        self.player.seek(position_ms).await?;
        let status = self.settle(&mut st).await?;
        self.position(&status, true);
        Ok(status)
    }

    /// Sends a `position` event when the throttle allows (or always, for an explicit seek).
    fn position(&self, status: &PlayerStatus, seek: bool) {
        let ready = self.position_throttle.locked().ready(Instant::now());
        if ready || seek {
            self.emitter.emit::<Position>(&PositionUpdate {
                position_ms: status.position_ms,
                duration_ms: status.duration_ms,
            });
        }
    }

    async fn set_volume(&self, volume: u8) -> Result<VolumeState> {
        if volume > MAX_VOLUME {
            return Err(bad(format!(
                "player.set_volume: {volume} is above {MAX_VOLUME}"
            )));
        }
        let mut st = self.ops.lock().await;
        self.player.set_volume(volume).await?;
        self.volume(&mut st).await
    }

    async fn mute(&self, muted: bool) -> Result<VolumeState> {
        let mut st = self.ops.lock().await;
        self.player.set_muted(muted).await?;
        self.volume(&mut st).await
    }

    async fn step(&self, forward: bool) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        let len = st.queue.items.len() as u32;
        let next = match (st.queue.current, forward) {
            (Some(i), true) if i + 1 < len => i + 1,
            (Some(i), false) if i > 0 => i - 1,
            // Nothing current: next starts the queue, previous has nowhere to go.
            (None, true) if len > 0 => 0,
            _ => {
                return Err(invalid_state(if forward {
                    "player.next: at the end of the queue"
                } else {
                    "player.previous: at the start of the queue"
                }))
            }
        };
        st.queue.current = Some(next);
        self.load_current(&mut st).await
    }

    async fn enqueue(&self, uri: String, title: Option<String>) -> Result<Queue> {
        check_uri("player.enqueue", &uri)?;
        if title.as_ref().is_some_and(|t| t.len() > MAX_TITLE_BYTES) {
            return Err(bad(format!(
                "player.enqueue: title longer than {MAX_TITLE_BYTES} bytes"
            )));
        }
        let mut st = self.ops.lock().await;
        if st.queue.items.len() >= MAX_QUEUE_ITEMS {
            return Err(Error::fault(
                FAULT_QUEUE_FULL,
                format!("the queue holds at most {MAX_QUEUE_ITEMS} items"),
            ));
        }
        st.queue.items.push(QueueItem { uri, title });
        self.emitter.emit::<QueueChanged>(&st.queue);
        Ok(st.queue.clone())
    }

    async fn clear_queue(&self) -> Result<Queue> {
        let mut st = self.ops.lock().await;
        let current = st
            .queue
            .current
            .and_then(|i| st.queue.items.get(i as usize).cloned());
        st.queue = Queue {
            current: current.as_ref().map(|_| 0),
            items: current.into_iter().collect(),
        };
        self.emitter.emit::<QueueChanged>(&st.queue);
        Ok(st.queue.clone())
    }

    async fn status(&self) -> Result<PlayerStatus> {
        let st = self.ops.lock().await;
        self.status_of(&st).await
    }

    /// Periodic `position` events while playing; ends with the provider.
    async fn tick(weak: Weak<Engine>, interval: Duration) {
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let Some(engine) = weak.upgrade() else { break };
            if engine.emitter.is_closed() {
                break;
            }
            let status = {
                let st = engine.ops.lock().await;
                engine.status_of(&st).await
            };
            match status {
                Ok(s) if s.state == PlaybackState::Playing => engine.position(&s, false),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "position poll failed"),
            }
        }
    }
}

impl PlayerService {
    /// Offers `player` as the media player service, with a `position` event every second while
    /// playing.
    pub fn new(player: Arc<dyn MediaPlayer>) -> Self {
        Self::with_position_interval(player, DEFAULT_POSITION_INTERVAL)
    }

    /// Like [`PlayerService::new`], with `position` events every `interval` (at least
    /// [`MIN_POSITION_INTERVAL`]: that is the rate limit, whatever the app asks for).
    pub fn with_position_interval(player: Arc<dyn MediaPlayer>, interval: Duration) -> Self {
        let interval = interval.max(MIN_POSITION_INTERVAL);
        let typed = TypedService::<Player>::new();
        let engine = Arc::new(Engine {
            player,
            emitter: typed.emitter(),
            ops: tokio::sync::Mutex::new(EngineState::default()),
            position_throttle: Mutex::new(Throttle::new(interval)),
        });
        let weak = Arc::downgrade(&engine);
        macro_rules! route {
            ($typed:expr, $m:ty, |$e:ident, $p:pat_param| $body:expr) => {{
                let engine = engine.clone();
                $typed.handle::<$m, _, _>(move |$p, _ctx| {
                    let $e = engine.clone();
                    async move { $body.await }
                })
            }};
        }
        let typed = route!(typed, Play, |e, (uri,)| e.play(uri));
        let typed = route!(typed, Pause, |e, ()| e.pause());
        let typed = route!(typed, Resume, |e, ()| e.resume());
        let typed = route!(typed, Stop, |e, ()| e.stop());
        let typed = route!(typed, Seek, |e, (at,)| e.seek(at));
        let typed = route!(typed, SetVolume, |e, (v,)| e.set_volume(v));
        let typed = route!(typed, Mute, |e, (m,)| e.mute(m));
        let typed = route!(typed, Next, |e, ()| e.step(true));
        let typed = route!(typed, Previous, |e, ()| e.step(false));
        let typed = route!(typed, Enqueue, |e, (uri, title)| e.enqueue(uri, title));
        let typed = route!(typed, ClearQueue, |e, ()| e.clear_queue());
        let typed = route!(typed, GetQueue, |e, ()| async move {
            Ok(e.ops.lock().await.queue.clone())
        });
        let typed = route!(typed, Status, |e, ()| e.status());
        let typed = typed.on_bind(move || {
            tokio::spawn(Engine::tick(weak, interval));
        });
        Self { typed }
    }
}

crate::core::rpc::service_via_typed!(PlayerService);

/// Typed calls to a media player provider: `controller.player(jid)`.
pub type PlayerClient = Remote<Player>;

impl Remote<Player> {
    /// Replaces the queue with `uri` and plays it.
    pub async fn play(&self, uri: &str) -> Result<PlayerStatus> {
        self.call::<Play>(&(uri.to_owned(),)).await
    }

    /// Pauses.
    pub async fn pause(&self) -> Result<PlayerStatus> {
        self.call::<Pause>(&()).await
    }

    /// Resumes after a pause.
    pub async fn resume(&self) -> Result<PlayerStatus> {
        self.call::<Resume>(&()).await
    }

    /// Stops.
    pub async fn stop(&self) -> Result<PlayerStatus> {
        self.call::<Stop>(&()).await
    }

    /// Jumps to `position_ms`.
    pub async fn seek(&self, position_ms: u64) -> Result<PlayerStatus> {
        self.call::<Seek>(&(position_ms,)).await
    }

    /// Sets the volume (0..=100).
    pub async fn set_volume(&self, volume: u8) -> Result<VolumeState> {
        self.call::<SetVolume>(&(volume,)).await
    }

    /// Mutes or unmutes.
    pub async fn mute(&self, muted: bool) -> Result<VolumeState> {
        self.call::<Mute>(&(muted,)).await
    }

    /// Plays the next queue item.
    pub async fn next(&self) -> Result<PlayerStatus> {
        self.call::<Next>(&()).await
    }

    /// Plays the previous queue item.
    pub async fn previous(&self) -> Result<PlayerStatus> {
        self.call::<Previous>(&()).await
    }

    /// Appends `uri` to the queue.
    pub async fn enqueue(&self, uri: &str, title: Option<&str>) -> Result<Queue> {
        self.call::<Enqueue>(&(uri.to_owned(), title.map(str::to_owned)))
            .await
    }

    /// Empties the queue except the current item.
    pub async fn clear_queue(&self) -> Result<Queue> {
        self.call::<ClearQueue>(&()).await
    }

    /// The queue.
    pub async fn queue(&self) -> Result<Queue> {
        self.call::<GetQueue>(&()).await
    }

    /// The current status.
    pub async fn status(&self) -> Result<PlayerStatus> {
        self.call::<Status>(&()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::EventSink;
    use crate::core::rpc::encode_event;
    use crate::core::rpc::xmlrpc::Value;
    use crate::core::rpc::{decode_event, decode_output, encode_params, Method};
    use crate::core::rpc::{CallContext, Service};
    use tokio::sync::mpsc;

    fn ctx() -> CallContext {
        CallContext {
            caller: "home@home.test/phone".parse().expect("jid"),
            tunnel: false,
        }
    }

    async fn call<M: Method<Service = Player>>(
        s: &PlayerService,
        params: M::Params,
    ) -> Result<M::Output> {
        let params = encode_params::<M>(&params)?;
        let v = s.call(M::VERB, params, &ctx()).await?;
        decode_output::<M>(v)
    }

    fn bound(interval: Duration) -> (PlayerService, mpsc::UnboundedReceiver<EventNotice>) {
        let service =
            PlayerService::with_position_interval(Arc::new(SimulatedPlayer::default()), interval);
        let (tx, rx) = mpsc::unbounded_channel();
        service.bind_events(EventSink::new(SERVICE, tx));
        (service, rx)
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<EventNotice>) -> Vec<EventNotice> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[tokio::test]
    async fn play_pause_resume_emit_state_changes() {
        let (service, mut rx) = bound(Duration::from_secs(60));
        let status = call::<Play>(&service, ("file:///a.mkv".into(),))
            .await
            .expect("play");
        assert_eq!(status.state, PlaybackState::Playing);
        assert_eq!(status.uri.as_deref(), Some("file:///a.mkv"));
        assert_eq!(status.duration_ms, Some(SimulatedPlayer::DURATION_MS));
        let paused = call::<Pause>(&service, ()).await.expect("pause");
        assert_eq!(paused.state, PlaybackState::Paused);
        let events: Vec<_> = drain(&mut rx)
            .into_iter()
            .filter(|e| e.name == EVENT_STATE_CHANGED)
            .collect();
        assert_eq!(events.len(), 2);
        // Status and a second pause change nothing: no event.
        call::<Status>(&service, ()).await.expect("status");
        call::<Pause>(&service, ()).await.expect("pause again");
        assert!(drain(&mut rx).iter().all(|e| e.name != EVENT_STATE_CHANGED));
    }

    #[tokio::test]
    async fn wrong_shapes_are_bad_params_and_unknown_verbs_unknown() {
        let (service, _rx) = bound(Duration::from_secs(60));
        for (verb, params) in [
            ("play", vec![]),
            ("play", vec![Value::Int(3)]),
            ("play", vec![Value::String(String::new())]),
            ("play", vec![Value::String("x".repeat(MAX_URI_BYTES + 1))]),
            ("pause", vec![Value::Int(3)]),
            ("seek", vec![Value::Int(-1)]),
            ("seek", vec![Value::String("10".into())]),
            ("set_volume", vec![Value::Int(101)]),
            ("set_volume", vec![Value::Int(-1)]),
            ("mute", vec![Value::String("yes".into())]),
            ("enqueue", vec![Value::String("u".into())]),
            (
                "enqueue",
                vec![
                    Value::String("u".into()),
                    Value::String("t".repeat(MAX_TITLE_BYTES + 1)),
                ],
            ),
        ] {
            let e = service
                .call(verb, params.clone(), &ctx())
                .await
                .expect_err("bad");
            assert_eq!(e.kind(), ErrorKind::BadParams, "{verb}{params:?}: {e}");
        }
        let e = service
            .call("explode", vec![], &ctx())
            .await
            .expect_err("unknown");
        assert_eq!(e.kind(), ErrorKind::UnknownMethod);
        for verb in ["pause", "resume", "next", "previous"] {
            let e = service
                .call(verb, vec![], &ctx())
                .await
                .expect_err("stopped");
            assert_eq!(e.fault_code(), Some(FAULT_INVALID_STATE), "{verb}");
        }
        let e = call::<Seek>(&service, (5,)).await.expect_err("stopped");
        assert_eq!(e.fault_code(), Some(FAULT_INVALID_STATE));
        call::<Play>(&service, ("u".into(),)).await.expect("play");
        let e = call::<Seek>(&service, (SimulatedPlayer::DURATION_MS + 1,))
            .await
            .expect_err("beyond the end");
        assert_eq!(e.fault_code(), Some(FAULT_OUT_OF_RANGE));
    }

    #[tokio::test]
    async fn queue_next_previous_volume_and_mute() {
        let (service, mut rx) = bound(Duration::from_secs(60));
        call::<Play>(&service, ("a".into(),)).await.expect("play");
        call::<Enqueue>(&service, ("b".into(), Some("Bee".into())))
            .await
            .expect("enqueue");
        let q = call::<Enqueue>(&service, ("c".into(), None))
            .await
            .expect("enqueue");
        assert_eq!(q.items.len(), 3);
        assert_eq!(q.current, Some(0));
        let s = call::<Next>(&service, ()).await.expect("next");
        assert_eq!(
            (s.uri.as_deref(), s.title.as_deref()),
            (Some("b"), Some("Bee"))
        );
        call::<Next>(&service, ()).await.expect("next");
        let e = call::<Next>(&service, ()).await.expect_err("end");
        assert_eq!(e.fault_code(), Some(FAULT_INVALID_STATE));
        let s = call::<Previous>(&service, ()).await.expect("previous");
        assert_eq!(s.uri.as_deref(), Some("b"));
        let q = call::<ClearQueue>(&service, ()).await.expect("clear");
        assert_eq!(q.items.len(), 1);
        assert_eq!(q.current, Some(0));
        assert_eq!(call::<GetQueue>(&service, ()).await.expect("queue"), q);

        let v = call::<SetVolume>(&service, (80,)).await.expect("volume");
        assert_eq!(
            v,
            VolumeState {
                volume: 80,
                muted: false
            }
        );
        let v = call::<Mute>(&service, (true,)).await.expect("mute");
        assert!(v.muted);
        call::<Mute>(&service, (true,)).await.expect("mute again");
        let s = call::<Status>(&service, ()).await.expect("status");
        assert_eq!((s.volume, s.muted), (80, true));

        let events = drain(&mut rx);
        let volume: Vec<VolumeState> = events
            .iter()
            .filter(|e| e.name == EVENT_VOLUME_CHANGED)
            .map(|e| decode_event::<VolumeChanged>(e.params.clone()).expect("payload"))
            .collect();
        assert_eq!(volume.len(), 2, "no event for an unchanged mute");
        let queues = events
            .iter()
            .filter(|e| e.name == EVENT_QUEUE_CHANGED)
            .count();
        assert!(queues >= 5, "{queues}");
    }

    #[tokio::test]
    async fn position_events_are_rate_limited() {
        let (service, mut rx) = bound(Duration::from_millis(100));
        call::<Play>(&service, ("a".into(),)).await.expect("play");
        tokio::time::sleep(Duration::from_millis(550)).await;
        let positions: Vec<PositionUpdate> = drain(&mut rx)
            .into_iter()
            .filter(|e| e.name == EVENT_POSITION)
            .map(|e| decode_event::<Position>(e.params).expect("payload"))
            .collect();
        assert!(
            (3..=7).contains(&positions.len()),
            "about 5 position events in 550 ms at 100 ms, got {}",
            positions.len()
        );
        assert!(positions
            .windows(2)
            .all(|w| w[0].position_ms <= w[1].position_ms));
        // Asking for a faster rate than the limit still gets the limit.
        let s = PlayerService::with_position_interval(
            Arc::new(SimulatedPlayer::default()),
            Duration::from_millis(1),
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        s.bind_events(EventSink::new(SERVICE, tx));
        call::<Play>(&s, ("a".into(),)).await.expect("play");
        tokio::time::sleep(Duration::from_millis(350)).await;
        let n = drain(&mut rx)
            .iter()
            .filter(|e| e.name == EVENT_POSITION)
            .count();
        assert!(
            n <= 5,
            "rate limit of 100 ms exceeded: {n} events in 350 ms"
        );
    }

    #[test]
    fn status_value_round_trips_and_rejects_garbage() {
        let status = PlayerStatus {
            uri: Some("u".into()),
            title: None,
            state: PlaybackState::Paused,
            position_ms: 1234,
            duration_ms: Some(5000),
            volume: 10,
            muted: false,
        };
        assert_eq!(
            PlayerStatus::from_value(&status.to_value()).expect("parse"),
            status
        );
        assert!(PlayerStatus::from_value(&Value::Int(1)).is_err());
        let unknown_state = Value::Struct(vec![
            ("state".into(), Value::String("flying".into())),
            ("position".into(), Value::Int(0)),
        ]);
        assert!(PlayerStatus::from_value(&unknown_state).is_err());
    }

    #[test]
    fn a_notice_decodes_to_its_typed_player_event_and_nothing_else() {
        let update = PositionUpdate {
            position_ms: 1500,
            duration_ms: Some(9000),
        };
        let notice = EventNotice {
            service: "player".into(),
            name: EVENT_POSITION.into(),
            params: encode_event::<Position>(&update).expect("encode"),
        };
        assert_eq!(
            PlayerEvent::decode(&notice)
                .expect("a player event")
                .expect("its shape"),
            PlayerEvent::Position(update)
        );
        // Another service's event of the same name is not a player event.
        let other = EventNotice {
            service: "recorder".into(),
            ..notice.clone()
        };
        assert!(PlayerEvent::decode(&other).is_none());
        // The right name with the wrong payload is a protocol error, not a silent drop.
        let wrong = EventNotice {
            params: vec![Value::Int(3)],
            ..notice
        };
        let e = PlayerEvent::decode(&wrong)
            .expect("named")
            .expect_err("shape");
        assert_eq!(e.kind(), ErrorKind::Protocol);
    }
}
