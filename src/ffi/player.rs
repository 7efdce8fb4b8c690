//! The media player of one provider, as one object: [`Controller::player`](super::Controller::player)
//! parses the provider's JID once, and every call here goes through the controller (its tunnel,
//! its retries). Conversions only; the methods are declared in `crate::core::services::player`.

use crate::core::rpc::Remote;
use crate::core::services::player::Player as PlayerSpec;

use super::error::PmnError;
use super::numbers::{in64, in8};
use super::records::{PlayerStatus, Queue, VolumeState};
use super::runtime;

/// The media player of one provider (`controller.player(tv.jid)`).
///
/// Kotlin:
/// ```kotlin playerDoc(controller: Controller, provider: ProviderInfo)
/// val tv = controller.player(provider.jid)
/// tv.play("file:///movies/a.mkv")
/// tv.setVolume(40)
/// ```
#[derive(uniffi::Object)]
pub struct Player {
    inner: Remote<PlayerSpec>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Player")
            .field(self.inner.provider())
            .finish()
    }
}

impl Player {
    pub(super) fn new(inner: Remote<PlayerSpec>) -> Self {
        Self { inner }
    }
}

/// Runs one call of the core remote on the pmn runtime and converts its answer.
macro_rules! call {
    ($self:ident, |$p:ident| $call:expr) => {{
        let $p = $self.inner.clone();
        runtime::run(async move { Ok($call.await?.into()) }).await
    }};
}

#[uniffi::export]
impl Player {
    /// The provider's full JID.
    pub fn provider(&self) -> String {
        self.inner.provider().to_string()
    }

    /// Replaces the queue with `uri` and plays it.
    pub async fn play(&self, uri: String) -> Result<PlayerStatus, PmnError> {
        call!(self, |p| p.play(&uri))
    }

    /// Pauses.
    pub async fn pause(&self) -> Result<PlayerStatus, PmnError> {
        call!(self, |p| p.pause())
    }

    /// Resumes after a pause.
    pub async fn resume(&self) -> Result<PlayerStatus, PmnError> {
        call!(self, |p| p.resume())
    }

    /// Stops.
    pub async fn stop(&self) -> Result<PlayerStatus, PmnError> {
        call!(self, |p| p.stop())
    }

    /// The current status.
    pub async fn status(&self) -> Result<PlayerStatus, PmnError> {
        call!(self, |p| p.status())
    }

    /// Jumps to `position_ms`.
    pub async fn seek(&self, position_ms: i64) -> Result<PlayerStatus, PmnError> {
        let position_ms = in64("positionMs", position_ms)?;
        call!(self, |p| p.seek(position_ms))
    }

    /// Sets the volume (0..=100).
    pub async fn set_volume(&self, volume: i32) -> Result<VolumeState, PmnError> {
        let volume = in8("volume", volume)?;
        call!(self, |p| p.set_volume(volume))
    }

    /// Mutes or unmutes.
    pub async fn mute(&self, muted: bool) -> Result<VolumeState, PmnError> {
        call!(self, |p| p.mute(muted))
    }

    /// Plays the next queue item.
    pub async fn next(&self) -> Result<PlayerStatus, PmnError> {
        call!(self, |p| p.next())
    }

    /// Plays the previous queue item.
    pub async fn previous(&self) -> Result<PlayerStatus, PmnError> {
        call!(self, |p| p.previous())
    }

    /// Appends `uri` (titled `title`) to the queue.
    pub async fn enqueue(&self, uri: String, title: Option<String>) -> Result<Queue, PmnError> {
        call!(self, |p| p.enqueue(&uri, title.as_deref()))
    }

    /// The queue.
    pub async fn queue(&self) -> Result<Queue, PmnError> {
        call!(self, |p| p.queue())
    }

    /// Empties the queue except the current item.
    pub async fn clear_queue(&self) -> Result<Queue, PmnError> {
        call!(self, |p| p.clear_queue())
    }
}
