//! The recorder of one provider, as one object ([`Controller::recorder`](super::Controller::recorder)).
//! Conversions only; the methods are declared in `crate::core::services::recorder`.

use crate::core::rpc::Remote;
use crate::core::services::recorder::Recorder as RecorderSpec;

use super::error::PmnError;
use super::records::{Channel, Recording};
use super::runtime;

/// The recorder of one provider (`controller.recorder(pvr.jid)`).
#[derive(uniffi::Object)]
pub struct Recorder {
    inner: Remote<RecorderSpec>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Recorder")
            .field(self.inner.provider())
            .finish()
    }
}

impl Recorder {
    pub(super) fn new(inner: Remote<RecorderSpec>) -> Self {
        Self { inner }
    }
}

#[uniffi::export]
impl Recorder {
    /// The provider's full JID.
    pub fn provider(&self) -> String {
        self.inner.provider().to_string()
    }

    /// The channels.
    pub async fn channels(&self) -> Result<Vec<Channel>, PmnError> {
        let r = self.inner.clone();
        runtime::run(async move { Ok(r.channels().await?.into_iter().map(Into::into).collect()) })
            .await
    }

    /// Schedules a recording of `channel` from `start` to `end` (Unix seconds, UTC). A conflict,
    /// a start in the past or an unknown channel is `PmnException.Fault` with code 409, 422 or 404.
    pub async fn schedule(
        &self,
        channel: String,
        start: i64,
        end: i64,
        title: String,
    ) -> Result<Recording, PmnError> {
        let r = self.inner.clone();
        runtime::run(async move { Ok(r.schedule(&channel, start, end, &title).await?.into()) })
            .await
    }

    /// The recordings that have not finished yet.
    pub async fn scheduled(&self) -> Result<Vec<Recording>, PmnError> {
        let r = self.inner.clone();
        runtime::run(async move { Ok(r.scheduled().await?.into_iter().map(Into::into).collect()) })
            .await
    }

    /// Cancels recording `id`.
    pub async fn cancel(&self, id: i32) -> Result<Recording, PmnError> {
        let id = super::numbers::in32("id", id)?;
        let r = self.inner.clone();
        runtime::run(async move { Ok(r.cancel(id).await?.into()) }).await
    }
}
