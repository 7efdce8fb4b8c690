//! The UniFFI facade: thin wrappers over [`crate::core`], converting with `From`. No protocol rule
//! lives here; everything exported is also a plain Rust API tested in Rust.

mod access;
#[cfg(feature = "test-ca")]
mod bench;
mod config;
mod controller;
mod diagnostics;
mod e2e;
mod error;
mod gate;
mod guest;
mod keystore;
mod library;
mod listener;
mod logging;
mod numbers;
mod owner;
mod player;
mod playlists;
mod provider;
mod recorder;
mod records;
mod runtime;
mod services;
mod task;
mod trust;

pub use access::*;
#[cfg(feature = "test-ca")]
pub use bench::*;
pub use config::ConnectionConfig;
pub use controller::Controller;
pub use diagnostics::{live_objects, LiveObjects};
pub use e2e::*;
pub use error::{CallOutcome, KeyErrorKind, PmnError};
pub use guest::GuestPass;
pub use keystore::*;
pub use library::MediaLibrary;
pub use listener::{ControllerListener, EventBatchListener, ResyncListener};
pub use logging::{
    clear_log_sink, log_stats, set_log_level, set_log_sink, LogLevel, LogSink, LogStats,
};
pub use owner::{OwnerConsole, OwnerKey};
pub use player::Player;
pub use playlists::{
    playlist_address, MediaKind, PlaylistAccess, PlaylistChange, PlaylistEntry, PlaylistListener,
    Playlists,
};
pub use provider::{start_simulated_player, Provider};
pub use recorder::Recorder;
pub use records::{
    Channel, ConnectionState, ItemKind, LibraryChunk, LibraryItem, LibraryPage, Playback,
    PlaybackState, PlayerStatus, ProviderInfo, Queue, QueueItem, Recording, RecordingState,
    ServiceEvent, VolumeState,
};
#[cfg(feature = "sources")]
pub use services::start_source_provider;
pub use services::{start_demo_provider, start_player_provider, MediaPlayerBackend};
pub use task::TaskHandle;
pub use trust::{MissedDevice, NetworkPasswordListener, PasswordRotation, Trust};
