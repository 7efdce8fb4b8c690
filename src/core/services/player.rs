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
use crate::core::rpc::events::EventNotice;
use crate::core::rpc::events::Throttle;
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

mod engine;
mod simulated;

pub use engine::PlayerService;
pub use simulated::{RemotePlayer, SimulatedPlayer};

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
mod tests;
