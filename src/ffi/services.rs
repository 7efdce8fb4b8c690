//! The three services through UniFFI: typed controller calls for the media player, the recorder and
//! the media library, and providers an app can start — including one whose media player is
//! implemented in Kotlin/Swift ([`MediaPlayerBackend`]). Conversions only; the rules live in
//! `crate::core::services`.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::controller::{parse_provider, Controller};
use super::error::{config, PmnError};
use super::provider::Provider;
use super::records::{
    Channel, ConnectionConfig, LibraryChunk, LibraryItem, LibraryPage, Playback, PlayerStatus,
    Queue, Recording, VolumeState,
};
use super::runtime;
use super::task::TaskHandle;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::provider::{Provider as CoreProvider, ProviderConfig};
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
    fn seek(&self, position_ms: u64) -> Result<(), PmnError>;
    /// Sets the volume, 0..=100.
    fn set_volume(&self, volume: u8) -> Result<(), PmnError>;
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
        self.run(move |b| b.seek(position_ms))
    }
    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        self.run(move |b| b.set_volume(volume))
    }
    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        self.run(move |b| b.set_muted(muted))
    }
    fn playback(&self) -> BoxFuture<'_, Result<player::Playback>> {
        self.run(|b| b.playback())
            .map(|r| {
                r.and_then(|p| {
                    if p.volume > player::MAX_VOLUME {
                        return Err(Error::new(
                            ErrorKind::Internal,
                            format!("app player reported volume {}", p.volume),
                        ));
                    }
                    Ok(player::Playback {
                        state: p.state.into(),
                        position_ms: p.position_ms,
                        duration_ms: p.duration_ms,
                        volume: p.volume,
                        muted: p.muted,
                    })
                })
            })
            .boxed()
    }
}

pub(super) async fn start(
    config: ConnectionConfig,
    name: String,
    services: Vec<Arc<dyn Service>>,
) -> Result<Arc<Provider>, PmnError> {
    if name.trim().is_empty() {
        return Err(config_error("the provider needs a name"));
    }
    let session = config.to_session()?;
    let e2e = config.e2e_settings()?;
    let access = config.access_settings();
    let media = config.media_policy();
    let core = runtime::run(async move {
        let provider_config = ProviderConfig {
            e2e,
            access,
            media,
            ..ProviderConfig::plain(session, name)
        };
        CoreProvider::start(provider_config, services)
            .await
            .map_err(PmnError::from)
    })
    .await?;
    Ok(Provider::from_core(core))
}

fn config_error(detail: &str) -> PmnError {
    config(detail)
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
    start(config, name, vec![player]).await
}

/// Starts a demo provider named `name` offering all three services, simulated: a media player, a
/// recorder (channels `one`, `two`, and `nosignal`, whose recordings fail) and a library of
/// `videos` generated films plus 100 tracks.
#[uniffi::export]
pub async fn start_demo_provider(
    config: ConnectionConfig,
    name: String,
    videos: u32,
) -> Result<Arc<Provider>, PmnError> {
    let services: Vec<Arc<dyn Service>> = vec![
        Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default()))),
        Arc::new(RecorderService::simulated()),
        Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(videos)))),
    ];
    start(config, name, services).await
}

macro_rules! player_call {
    ($self:ident, $provider:ident, |$p:ident| $body:expr) => {{
        let $p = $self.core()?.player(parse_provider(&$provider)?);
        runtime::run(async move { Ok($body.await?.into()) }).await
    }};
}

macro_rules! recorder_call {
    ($self:ident, $provider:ident, |$r:ident| $body:expr) => {{
        let $r = $self.core()?.recorder(parse_provider(&$provider)?);
        runtime::run(async move { Ok($body.await?) }).await
    }};
}

macro_rules! library_call {
    ($self:ident, $provider:ident, |$l:ident| $body:expr) => {{
        let $l = $self.core()?.library(parse_provider(&$provider)?);
        runtime::run(async move { Ok($body.await?.into()) }).await
    }};
}

#[uniffi::export]
impl Controller {
    /// Jumps to `position_ms` on the media player `provider`.
    pub async fn seek(&self, provider: String, position_ms: u64) -> Result<PlayerStatus, PmnError> {
        player_call!(self, provider, |p| p.seek(position_ms))
    }

    /// Sets the volume (0..=100) of the media player `provider`.
    pub async fn set_volume(&self, provider: String, volume: u8) -> Result<VolumeState, PmnError> {
        player_call!(self, provider, |p| p.set_volume(volume))
    }

    /// Mutes or unmutes the media player `provider`.
    pub async fn mute(&self, provider: String, muted: bool) -> Result<VolumeState, PmnError> {
        player_call!(self, provider, |p| p.mute(muted))
    }

    /// Plays the next queue item of the media player `provider`.
    pub async fn next(&self, provider: String) -> Result<PlayerStatus, PmnError> {
        player_call!(self, provider, |p| p.next())
    }

    /// Plays the previous queue item of the media player `provider`.
    pub async fn previous(&self, provider: String) -> Result<PlayerStatus, PmnError> {
        player_call!(self, provider, |p| p.previous())
    }

    /// Appends `uri` to the queue of the media player `provider`.
    pub async fn enqueue(
        &self,
        provider: String,
        uri: String,
        title: Option<String>,
    ) -> Result<Queue, PmnError> {
        player_call!(self, provider, |p| p.enqueue(&uri, title.as_deref()))
    }

    /// The queue of the media player `provider`.
    pub async fn queue(&self, provider: String) -> Result<Queue, PmnError> {
        player_call!(self, provider, |p| p.queue())
    }

    /// Empties the queue of the media player `provider`, except the current item.
    pub async fn clear_queue(&self, provider: String) -> Result<Queue, PmnError> {
        player_call!(self, provider, |p| p.clear_queue())
    }

    /// The channels of the recorder `provider`.
    pub async fn channels(&self, provider: String) -> Result<Vec<Channel>, PmnError> {
        recorder_call!(self, provider, |r| async move {
            r.channels()
                .await
                .map(|c| c.into_iter().map(Channel::from).collect::<Vec<_>>())
        })
    }

    /// Schedules a recording of `channel` from `start` to `end` (Unix seconds, UTC) on the recorder
    /// `provider`. A conflict, a start in the past or an unknown channel is `PmnError.Fault` with
    /// code 409, 422 or 404.
    pub async fn schedule_recording(
        &self,
        provider: String,
        channel: String,
        start: i64,
        end: i64,
        title: String,
    ) -> Result<Recording, PmnError> {
        recorder_call!(self, provider, |r| async move {
            r.schedule(&channel, start, end, &title)
                .await
                .map(Recording::from)
        })
    }

    /// The recordings of the recorder `provider` that have not finished yet.
    pub async fn scheduled_recordings(&self, provider: String) -> Result<Vec<Recording>, PmnError> {
        recorder_call!(self, provider, |r| async move {
            r.scheduled()
                .await
                .map(|l| l.into_iter().map(Recording::from).collect::<Vec<_>>())
        })
    }

    /// Cancels recording `id` on the recorder `provider`.
    pub async fn cancel_recording(&self, provider: String, id: u32) -> Result<Recording, PmnError> {
        recorder_call!(self, provider, |r| async move {
            r.cancel(id).await.map(Recording::from)
        })
    }

    /// One page (`limit` ≤ 200) of the children of `container` (`""`: the root) in the library
    /// `provider`.
    pub async fn browse(
        &self,
        provider: String,
        container: String,
        offset: u32,
        limit: u32,
    ) -> Result<LibraryPage, PmnError> {
        library_call!(self, provider, |l| l.browse(&container, offset, limit))
    }

    /// One page of the items whose title contains `query`, in the library `provider`.
    pub async fn search(
        &self,
        provider: String,
        query: String,
        offset: u32,
        limit: u32,
    ) -> Result<LibraryPage, PmnError> {
        library_call!(self, provider, |l| l.search(&query, offset, limit))
    }

    /// One item of the library `provider`.
    pub async fn library_item(
        &self,
        provider: String,
        id: String,
    ) -> Result<LibraryItem, PmnError> {
        library_call!(self, provider, |l| l.item(&id))
    }

    /// At most `length` (≤ 48 KiB) bytes of item `id` of the library `provider`, from `offset`.
    /// Under a `library-item` grant this is how the host's TV fetches the one shared file.
    pub async fn library_read(
        &self,
        provider: String,
        id: String,
        offset: u64,
        length: u32,
    ) -> Result<LibraryChunk, PmnError> {
        library_call!(self, provider, |l| l.read(&id, offset, length))
    }

    /// Subscribes to the events of `service` on `provider` named in `events` (e.g.
    /// `["state-changed"]`); an unknown name is `PmnError.BadParams`. They arrive through
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
}
