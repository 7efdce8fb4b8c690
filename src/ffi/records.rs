//! Records and enums that cross the FFI boundary, with their conversions from the core.

use super::error::PmnError;
use super::numbers::{out32, out64};
use crate::core::discovery::ProviderInfo as CoreProviderInfo;
use crate::core::services::player::{PlaybackState as CoreState2, PlayerStatus as CoreStatus};
use crate::core::session::ConnectionState as CoreState;

/// A provider online in the network.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProviderInfo {
    /// Its full JID: the address to call.
    pub jid: String,
    /// Its display name.
    pub name: String,
    /// Its service features (e.g. `urn.xmpp.tmp.media.player`).
    pub services: Vec<String>,
}

impl From<CoreProviderInfo> for ProviderInfo {
    fn from(p: CoreProviderInfo) -> Self {
        Self {
            jid: p.jid.to_string(),
            name: p.name,
            services: p.services,
        }
    }
}

/// Playback state of a media player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PlaybackState {
    /// Nothing loaded, or stopped.
    Stopped,
    /// Playing.
    Playing,
    /// Paused.
    Paused,
}

impl From<CoreState2> for PlaybackState {
    fn from(s: CoreState2) -> Self {
        match s {
            CoreState2::Stopped => PlaybackState::Stopped,
            CoreState2::Playing => PlaybackState::Playing,
            CoreState2::Paused => PlaybackState::Paused,
        }
    }
}

/// What a media player is doing.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PlayerStatus {
    /// The loaded media.
    pub uri: Option<String>,
    /// Its title, when known.
    pub title: Option<String>,
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// Position in milliseconds.
    pub position_ms: i64,
    /// Length in milliseconds, when known.
    pub duration_ms: Option<i64>,
    /// Volume, 0..=100.
    pub volume: i32,
    /// Muted.
    pub muted: bool,
}

impl From<CoreStatus> for PlayerStatus {
    fn from(s: CoreStatus) -> Self {
        Self {
            uri: s.uri,
            title: s.title,
            state: s.state.into(),
            position_ms: out64(s.position_ms),
            duration_ms: s.duration_ms.map(out64),
            volume: i32::from(s.volume),
            muted: s.muted,
        }
    }
}

impl From<PlaybackState> for CoreState2 {
    fn from(s: PlaybackState) -> Self {
        match s {
            PlaybackState::Stopped => CoreState2::Stopped,
            PlaybackState::Playing => CoreState2::Playing,
            PlaybackState::Paused => CoreState2::Paused,
        }
    }
}

/// The connection to the server.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ConnectionState {
    /// Created; `connect()` not called yet.
    Idle,
    /// Logging in.
    Connecting,
    /// Online as `jid`.
    Online {
        /// The bound full JID.
        jid: String,
    },
    /// Lost; reconnecting by itself.
    Reconnecting {
        /// Why.
        reason: String,
    },
    /// Ended: `error` is `None` when the app disconnected, the failure when a login failed or the
    /// session stopped on a fatal error.
    Offline {
        /// The fatal error, if any.
        error: Option<PmnError>,
    },
}

impl From<CoreState> for ConnectionState {
    fn from(s: CoreState) -> Self {
        match s {
            CoreState::Connecting => ConnectionState::Connecting,
            CoreState::Online { jid } => ConnectionState::Online {
                jid: jid.to_string(),
            },
            CoreState::Reconnecting { reason } => ConnectionState::Reconnecting { reason },
            CoreState::Offline { error } => ConnectionState::Offline {
                error: error.map(PmnError::from),
            },
        }
    }
}

/// An event from a provider.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ServiceEvent {
    /// A media player changed state or media.
    PlayerStateChanged {
        /// The provider's JID.
        provider: String,
        /// Its new status.
        status: PlayerStatus,
    },
    /// Where a media player is (at most once per the provider's position interval).
    PlayerPosition {
        /// The provider's JID.
        provider: String,
        /// Position in milliseconds.
        position_ms: i64,
        /// Length in milliseconds, when known.
        duration_ms: Option<i64>,
    },
    /// A media player's queue changed.
    PlayerQueueChanged {
        /// The provider's JID.
        provider: String,
        /// The new queue.
        queue: Queue,
    },
    /// A media player's volume or mute changed.
    PlayerVolumeChanged {
        /// The provider's JID.
        provider: String,
        /// The new volume.
        volume: VolumeState,
    },
    /// A recording started, finished or failed (see `recording.state`).
    Recording {
        /// The provider's JID.
        provider: String,
        /// The recording, in its new state.
        recording: Recording,
    },
    /// Any other event (of a service this version has no typed form for, or a malformed one).
    Other {
        /// The provider's JID.
        provider: String,
        /// The service name, e.g. `recorder`.
        service: String,
        /// The event name.
        name: String,
    },
}

impl From<crate::core::controller::ServiceEvent> for ServiceEvent {
    fn from(e: crate::core::controller::ServiceEvent) -> Self {
        use crate::core::services::player::PlayerEvent;
        use crate::core::services::recorder::RecorderEvent;
        let provider = e.provider.to_string();
        if let Some(Ok(event)) = PlayerEvent::decode(&e.notice) {
            return match event {
                PlayerEvent::StateChanged(status) => ServiceEvent::PlayerStateChanged {
                    provider,
                    status: status.into(),
                },
                PlayerEvent::Position(p) => ServiceEvent::PlayerPosition {
                    provider,
                    position_ms: out64(p.position_ms),
                    duration_ms: p.duration_ms.map(out64),
                },
                PlayerEvent::QueueChanged(q) => ServiceEvent::PlayerQueueChanged {
                    provider,
                    queue: q.into(),
                },
                PlayerEvent::VolumeChanged(v) => ServiceEvent::PlayerVolumeChanged {
                    provider,
                    volume: v.into(),
                },
            };
        }
        if let Some(Ok(event)) = RecorderEvent::decode(&e.notice) {
            return ServiceEvent::Recording {
                provider,
                recording: event.recording().clone().into(),
            };
        }
        ServiceEvent::Other {
            provider,
            service: e.notice.service,
            name: e.notice.name,
        }
    }
}

/// Volume and mute of a media player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct VolumeState {
    /// 0..=100.
    pub volume: i32,
    /// Muted.
    pub muted: bool,
}

impl From<crate::core::services::player::VolumeState> for VolumeState {
    fn from(v: crate::core::services::player::VolumeState) -> Self {
        Self {
            volume: i32::from(v.volume),
            muted: v.muted,
        }
    }
}

/// One entry of a play queue.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct QueueItem {
    /// What to play.
    pub uri: String,
    /// Its title.
    pub title: Option<String>,
}

/// A media player's play queue.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Queue {
    /// The entries.
    pub items: Vec<QueueItem>,
    /// Index of the current entry.
    pub current: Option<i32>,
}

impl From<crate::core::services::player::Queue> for Queue {
    fn from(q: crate::core::services::player::Queue) -> Self {
        Self {
            items: q
                .items
                .into_iter()
                .map(|i| QueueItem {
                    uri: i.uri,
                    title: i.title,
                })
                .collect(),
            current: q.current.map(out32),
        }
    }
}

/// What a media player implemented by the app reports (see `MediaPlayerBackend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Playback {
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// Position in milliseconds.
    pub position_ms: i64,
    /// Length in milliseconds, when known.
    pub duration_ms: Option<i64>,
    /// 0..=100.
    pub volume: i32,
    /// Muted.
    pub muted: bool,
}

/// A channel of a recorder.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Channel {
    /// Identifier, used to schedule.
    pub id: String,
    /// Display name.
    pub name: String,
}

impl From<crate::core::services::recorder::Channel> for Channel {
    fn from(c: crate::core::services::recorder::Channel) -> Self {
        Self {
            id: c.id,
            name: c.name,
        }
    }
}

/// Where a recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RecordingState {
    /// Waiting for its start.
    Scheduled,
    /// Recording now.
    Recording,
    /// Done.
    Finished,
    /// Could not be made.
    Failed,
}

/// A scheduled recording.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Recording {
    /// Identifier, used to cancel.
    pub id: i32,
    /// The channel id.
    pub channel: String,
    /// Start, Unix seconds (UTC).
    pub start: i64,
    /// End, Unix seconds (UTC).
    pub end: i64,
    /// Title.
    pub title: String,
    /// Where it is.
    pub state: RecordingState,
}

impl From<crate::core::services::recorder::Recording> for Recording {
    fn from(r: crate::core::services::recorder::Recording) -> Self {
        use crate::core::services::recorder::{parse_datetime, RecordingState as S};
        Self {
            id: out32(r.id),
            channel: r.channel,
            start: parse_datetime(&r.start.0).unwrap_or(0),
            end: parse_datetime(&r.end.0).unwrap_or(0),
            title: r.title,
            state: match r.state {
                S::Scheduled => RecordingState::Scheduled,
                S::Recording => RecordingState::Recording,
                S::Finished => RecordingState::Finished,
                S::Failed => RecordingState::Failed,
            },
        }
    }
}

/// What a library item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ItemKind {
    /// Holds other items.
    Container,
    /// A video.
    Video,
    /// Audio.
    Audio,
    /// A picture.
    Image,
}

/// An entry of a media library.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LibraryItem {
    /// Identifier.
    pub id: String,
    /// The container holding it (`""`: the root).
    pub parent: String,
    /// Title.
    pub title: String,
    /// What it is.
    pub kind: ItemKind,
    /// Where to play it from (not for containers).
    pub uri: Option<String>,
    /// Length in milliseconds, when known.
    pub duration_ms: Option<i64>,
    /// Number of children, for containers.
    pub child_count: Option<i32>,
}

/// Some bytes of a library item (`library_read`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LibraryChunk {
    /// The bytes from `offset`; empty at or past the end.
    pub data: Vec<u8>,
    /// Where they start.
    pub offset: i64,
    /// The item's whole size.
    pub size: i64,
}

impl From<crate::core::services::library::Chunk> for LibraryChunk {
    fn from(c: crate::core::services::library::Chunk) -> Self {
        LibraryChunk {
            data: c.data.0,
            offset: out64(c.offset),
            size: out64(c.size),
        }
    }
}

impl From<crate::core::services::library::Item> for LibraryItem {
    fn from(i: crate::core::services::library::Item) -> Self {
        use crate::core::services::library::ItemKind as K;
        Self {
            id: i.id,
            parent: i.parent,
            title: i.title,
            kind: match i.kind {
                K::Container => ItemKind::Container,
                K::Video => ItemKind::Video,
                K::Audio => ItemKind::Audio,
                K::Image => ItemKind::Image,
            },
            uri: i.uri,
            duration_ms: i.duration_ms.map(out64),
            child_count: i.child_count.map(out32),
        }
    }
}

/// One page of a library listing.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LibraryPage {
    /// The items.
    pub items: Vec<LibraryItem>,
    /// Offset of the first item.
    pub offset: i32,
    /// Total number of items of the listing.
    pub total: i32,
}

impl From<crate::core::services::library::Page> for LibraryPage {
    fn from(p: crate::core::services::library::Page) -> Self {
        Self {
            items: p.items.into_iter().map(Into::into).collect(),
            offset: out32(p.offset),
            total: out32(p.total),
        }
    }
}
