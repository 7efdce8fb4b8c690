//! The three services through UniFFI: typed controller calls for the media player, the recorder and
//! the media library, and providers an app can start — including one whose media player is
//! implemented in Kotlin/Swift ([`MediaPlayerBackend`]). Conversions only; the rules live in
//! `crate::core::services`.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::config::ConnectionConfig;
use super::error::PmnError;
use super::provider::Provider;
use super::records::Playback;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc::Service;
use crate::core::services::library::{GeneratedLibrary, LibraryService};
use crate::core::services::player::{self, MediaPlayer, PlayerService, SimulatedPlayer};
use crate::core::services::recorder::RecorderService;

/// A media player implemented by the app (Kotlin/Swift), offered to the network by
/// [`start_player_provider`]. pmn keeps the queue, checks every argument and sends the events; the
/// app only plays one URI at a time. Methods are called from a pmn worker thread, one at a time,
/// and may block briefly. Throw `PmnException.Fault(code, detail)` to refuse with a fault code;
/// anything else thrown becomes fault 500.
#[uniffi::export(with_foreign)]
pub trait MediaPlayerBackend: Send + Sync {
    /// Loads `uri` and plays it from the beginning.
    fn load(&self, uri: String) -> Result<(), PmnError>;
    /// Pauses (only called while playing).
    fn pause(&self) -> Result<(), PmnError>;
    /// Resumes (only called while paused).
    fn resume(&self) -> Result<(), PmnError>;
    /// Stops and unloads.
    fn stop(&self) -> Result<(), PmnError>;
    /// Jumps to `position_ms`.
    fn seek(&self, position_ms: i64) -> Result<(), PmnError>;
    /// Sets the volume, 0..=100.
    fn set_volume(&self, volume: i32) -> Result<(), PmnError>;
    /// Mutes or unmutes.
    fn set_muted(&self, muted: bool) -> Result<(), PmnError>;
    /// The current state.
    fn playback(&self) -> Result<Playback, PmnError>;
}

/// What an app's backend threw, as a core error: its fault code survives, the rest is a failure of
/// the player (fault 500 on the wire).
fn from_app(e: PmnError) -> Error {
    match e {
        PmnError::Fault { code, detail } => Error::fault(code, detail),
        PmnError::BadParams { detail } => Error::new(ErrorKind::BadParams, detail),
        other => Error::new(ErrorKind::Internal, format!("app player: {other}")),
    }
}

/// The core's view of an app's player: each call runs on a blocking thread, so a slow app never
/// stalls the runtime.
struct ForeignPlayer(Arc<dyn MediaPlayerBackend>);

impl ForeignPlayer {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn MediaPlayerBackend) -> Result<T, PmnError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T>> {
        let backend = self.0.clone();
        async move {
            match tokio::task::spawn_blocking(move || f(backend.as_ref())).await {
                Ok(r) => r.map_err(from_app),
                Err(_) => Err(Error::new(ErrorKind::Internal, "app player panicked")),
            }
        }
        .boxed()
    }
}

impl MediaPlayer for ForeignPlayer {
    fn load(&self, uri: String) -> BoxFuture<'_, Result<()>> {
        self.run(move |b| b.load(uri))
    }
    fn pause(&self) -> BoxFuture<'_, Result<()>> {
        self.run(|b| b.pause())
    }
    fn resume(&self) -> BoxFuture<'_, Result<()>> {
        self.run(|b| b.resume())
    }
    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        self.run(|b| b.stop())
    }
    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>> {
        self.run(move |b| b.seek(super::numbers::out64(position_ms)))
    }
    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        self.run(move |b| b.set_volume(i32::from(volume)))
    }
    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        self.run(move |b| b.set_muted(muted))
    }
    fn playback(&self) -> BoxFuture<'_, Result<player::Playback>> {
        self.run(|b| b.playback())
            .map(|r| {
                r.and_then(|p| {
                    let volume = u8::try_from(p.volume)
                        .ok()
                        .filter(|v| *v <= player::MAX_VOLUME);
                    let (Some(volume), Ok(position_ms)) = (volume, u64::try_from(p.position_ms))
                    else {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            format!(
                                "app player reported volume {} at position {} ms",
                                p.volume, p.position_ms
                            ),
                        ));
                    };
                    Ok(player::Playback {
                        state: p.state.into(),
                        position_ms,
                        // A negative length is as good as none.
                        duration_ms: p.duration_ms.and_then(|d| u64::try_from(d).ok()),
                        volume,
                        muted: p.muted,
                    })
                })
            })
            .boxed()
    }
}

/// Starts a provider named `name` whose media player is `backend`, implemented by the app: the
/// phone (or TV app) becomes a player other devices can drive.
#[uniffi::export]
pub async fn start_player_provider(
    config: ConnectionConfig,
    name: String,
    backend: Arc<dyn MediaPlayerBackend>,
) -> Result<Arc<Provider>, PmnError> {
    let player: Arc<dyn Service> = Arc::new(PlayerService::new(Arc::new(ForeignPlayer(backend))));
    super::provider::start(config, name, vec![player]).await
}

/// Starts a demo provider named `name` offering all three services, simulated: a media player, a
/// recorder (channels `one`, `two`, and `nosignal`, whose recordings fail) and a library of
/// `videos` generated films plus 100 tracks.
#[uniffi::export]
pub async fn start_demo_provider(
    config: ConnectionConfig,
    name: String,
    videos: i32,
) -> Result<Arc<Provider>, PmnError> {
    let videos = super::numbers::in32("videos", videos)?;
    let services: Vec<Arc<dyn Service>> = vec![
        Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default()))),
        Arc::new(RecorderService::simulated()),
        Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(videos)))),
    ];
    super::provider::start(config, name, services).await
}

/// Starts a source provider named `name`: a media library whose containers are the podcast
/// `feeds` (RSS or Atom URLs, `http(s)`), read now and every 15 minutes, each entry an item the
/// TV plays by its URI. Subscribers to `library` get `library.changed` when entries come or go.
/// Only in builds with the `sources` cargo feature (the phone library does not carry it).
#[cfg(feature = "sources")]
#[uniffi::export]
pub async fn start_source_provider(
    config: ConnectionConfig,
    name: String,
    feeds: Vec<String>,
) -> Result<Arc<Provider>, PmnError> {
    use crate::core::sources::{SourceConfig, SourceLibrary};
    let library = SourceLibrary::new(SourceConfig::feeds(feeds)).map_err(PmnError::from)?;
    let service: Arc<dyn Service> = Arc::new(library.service());
    let provider = super::provider::start(config, name, vec![service]).await?;
    let session = provider.with_core(|core| core.session().clone())?;
    library.set_session(session);
    // The first read before the app gets the provider, so a controller's first browse has the
    // entries (a feed that fails starts empty and is read again at the next refresh).
    super::runtime::run(async move {
        library.refresh().await;
        Ok(())
    })
    .await?;
    Ok(provider)
}
