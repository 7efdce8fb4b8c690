//! The media library of one provider, as one object
//! ([`Controller::library`](super::Controller::library)). Conversions only; the methods are
//! declared in `crate::core::services::library`.

use crate::core::rpc::Remote;
use crate::core::services::library::Library as LibrarySpec;

use super::error::PmnError;
use super::numbers::{in32, in64};
use super::records::{LibraryChunk, LibraryItem, LibraryPage};
use super::runtime;

/// The media library of one provider (`controller.library(nas.jid)`). Named `MediaLibrary`
/// because Kotlin bindings already use `Library` (JNA's).
#[derive(uniffi::Object)]
pub struct MediaLibrary {
    inner: Remote<LibrarySpec>,
}

impl std::fmt::Debug for MediaLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MediaLibrary")
            .field(self.inner.provider())
            .finish()
    }
}

impl MediaLibrary {
    pub(super) fn new(inner: Remote<LibrarySpec>) -> Self {
        Self { inner }
    }
}

#[uniffi::export]
impl MediaLibrary {
    /// The provider's full JID.
    pub fn provider(&self) -> String {
        self.inner.provider().to_string()
    }

    /// One page (`limit` ≤ 200) of the children of `container` (`""`: the root).
    pub async fn browse(
        &self,
        container: String,
        offset: i32,
        limit: i32,
    ) -> Result<LibraryPage, PmnError> {
        let (offset, limit) = (in32("offset", offset)?, in32("limit", limit)?);
        let l = self.inner.clone();
        runtime::run(async move { Ok(l.browse(&container, offset, limit).await?.into()) }).await
    }

    /// One page of the items whose title contains `query`.
    pub async fn search(
        &self,
        query: String,
        offset: i32,
        limit: i32,
    ) -> Result<LibraryPage, PmnError> {
        let (offset, limit) = (in32("offset", offset)?, in32("limit", limit)?);
        let l = self.inner.clone();
        runtime::run(async move { Ok(l.search(&query, offset, limit).await?.into()) }).await
    }

    /// One item.
    pub async fn item(&self, id: String) -> Result<LibraryItem, PmnError> {
        let l = self.inner.clone();
        runtime::run(async move { Ok(l.item(&id).await?.into()) }).await
    }

    /// At most `length` (≤ 48 KiB) bytes of item `id` from `offset`. Under a `library-item`
    /// grant this is how the host's TV fetches the one shared file.
    pub async fn read(
        &self,
        id: String,
        offset: i64,
        length: i32,
    ) -> Result<LibraryChunk, PmnError> {
        let (offset, length) = (in64("offset", offset)?, in32("length", length)?);
        let l = self.inner.clone();
        runtime::run(async move { Ok(l.read(&id, offset, length).await?.into()) }).await
    }
}
