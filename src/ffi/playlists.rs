//! Shared playlists through UniFFI: the `Playlists` facet of a controller, its records and the
//! listener of a followed playlist. Conversions only; the rules live in `crate::core::pubsub`.

use std::sync::Arc;

use tokio::sync::broadcast;
use xmpp_parsers::jid::BareJid;

use super::error::{config, PmnError};
use super::runtime;
use super::task::TaskHandle;
use crate::core::access::OwnerKeys;
use crate::core::pubsub::{
    Access, MediaKind as CoreKind, PlaylistChange as CoreChange, PlaylistEntry as CoreEntry,
    Playlists as CorePlaylists,
};

/// What a playlist entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum MediaKind {
    /// Audio with a length (a song, a podcast episode).
    Audio,
    /// Video with a length.
    Video,
    /// A still image.
    Image,
    /// A live stream (internet radio, IPTV).
    Stream,
}

impl From<CoreKind> for MediaKind {
    fn from(k: CoreKind) -> Self {
        match k {
            CoreKind::Audio => MediaKind::Audio,
            CoreKind::Video => MediaKind::Video,
            CoreKind::Image => MediaKind::Image,
            CoreKind::Stream => MediaKind::Stream,
        }
    }
}

impl From<MediaKind> for CoreKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Audio => CoreKind::Audio,
            MediaKind::Video => CoreKind::Video,
            MediaKind::Image => CoreKind::Image,
            MediaKind::Stream => CoreKind::Stream,
        }
    }
}

/// One entry of a playlist.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PlaylistEntry {
    /// Its id in the playlist; publishing the same id again updates it.
    pub id: String,
    /// Shown to people.
    pub title: String,
    /// What a player opens.
    pub uri: String,
    /// What the URI points at.
    pub kind: MediaKind,
    /// Length in milliseconds, when known (a negative one is published as unknown).
    pub duration_ms: Option<i64>,
    /// A picture for the entry.
    pub artwork: Option<String>,
    /// Order in the playlist (ascending; a negative one is published as 0).
    pub position: i32,
}

impl From<CoreEntry> for PlaylistEntry {
    fn from(e: CoreEntry) -> Self {
        PlaylistEntry {
            id: e.id,
            title: e.title,
            uri: e.uri,
            kind: e.kind.into(),
            duration_ms: e.duration_ms.map(super::numbers::out64),
            artwork: e.artwork,
            position: super::numbers::out32(e.position),
        }
    }
}

impl From<PlaylistEntry> for CoreEntry {
    fn from(e: PlaylistEntry) -> Self {
        CoreEntry {
            id: e.id,
            title: e.title,
            uri: e.uri,
            kind: e.kind.into(),
            duration_ms: e.duration_ms.and_then(|d| u64::try_from(d).ok()),
            artwork: e.artwork,
            position: u32::try_from(e.position).unwrap_or(0),
        }
    }
}

/// Who may read a playlist.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PlaylistAccess {
    /// The household's own devices only.
    OwnNetwork,
    /// The household and these friend households (bare JIDs of their networks).
    Friends {
        /// The friends' network JIDs.
        networks: Vec<String>,
    },
    /// Anyone.
    Open,
}

/// A change of a followed playlist.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PlaylistChange {
    /// An entry was published or updated (owner signature verified).
    Published {
        /// The household's network JID.
        publisher: String,
        /// The playlist.
        playlist: String,
        /// The entry.
        entry: PlaylistEntry,
    },
    /// An entry was removed.
    Retracted {
        /// The household's network JID.
        publisher: String,
        /// The playlist.
        playlist: String,
        /// The entry id.
        id: String,
    },
    /// Every entry was removed.
    Purged {
        /// The household's network JID.
        publisher: String,
        /// The playlist.
        playlist: String,
    },
    /// The playlist was deleted.
    Deleted {
        /// The household's network JID.
        publisher: String,
        /// The playlist.
        playlist: String,
    },
}

impl From<CoreChange> for PlaylistChange {
    fn from(c: CoreChange) -> Self {
        match c {
            CoreChange::Published {
                publisher,
                playlist,
                entry,
            } => PlaylistChange::Published {
                publisher: publisher.to_string(),
                playlist,
                entry: entry.entry.into(),
            },
            CoreChange::Retracted {
                publisher,
                playlist,
                id,
            } => PlaylistChange::Retracted {
                publisher: publisher.to_string(),
                playlist,
                id,
            },
            CoreChange::Purged {
                publisher,
                playlist,
            } => PlaylistChange::Purged {
                publisher: publisher.to_string(),
                playlist,
            },
            CoreChange::Deleted {
                publisher,
                playlist,
            } => PlaylistChange::Deleted {
                publisher: publisher.to_string(),
                playlist,
            },
        }
    }
}

/// Receives the changes of a followed playlist. Called from a pmn thread, one change at a time; a
/// method that throws is logged and delivery goes on. (Kotlin: a `callbackFlow` around
/// `Playlists.follow` makes it a Flow; the changes published before `follow` returned are not in
/// it, so a collector that must see a change it causes waits for `follow` first.)
#[uniffi::export(with_foreign)]
pub trait PlaylistListener: Send + Sync {
    /// One change.
    fn on_change(&self, change: PlaylistChange) -> Result<(), PmnError>;
    /// Changes were missed (the app fell behind): fetch the playlist again.
    fn on_missed(&self, count: i64) -> Result<(), PmnError>;
}

/// The household's shared playlists and the friends' ones (spec §3.2), from
/// `Controller.playlists()`. Publishing signs with the controller's owner key (`OwnerConfig`).
#[derive(uniffi::Object)]
pub struct Playlists {
    inner: CorePlaylists,
}

impl std::fmt::Debug for Playlists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playlists").finish_non_exhaustive()
    }
}

fn network(jid: &str) -> Result<BareJid, PmnError> {
    jid.parse()
        .map_err(|e| config(format!("{jid:?} is not a network JID: {e}")))
}

/// The owner keys (DER SPKIs) of `publisher`'s household, as the app learned them.
fn owners(publisher: &BareJid, keys: &[Vec<u8>]) -> Result<OwnerKeys, PmnError> {
    let mut owners = OwnerKeys::new(publisher.clone());
    for key in keys {
        owners
            .add(key)
            .map_err(|e| config(format!("owner key: {e}")))?;
    }
    Ok(owners)
}

/// The address of the playlist `name` of the household `publisher` (its network's bare JID),
/// which a TV plays in playlist order: `player.play(playlistAddress("home@home.test", "radio"))`
/// (or `enqueue`). The TV fetches the playlist itself and plays only the entries its owners
/// signed; a guest may play it when the playlist is open or names the guest's network.
/// `PmnException.Config` for a JID that is not bare, `BadParams` for an invalid name.
#[uniffi::export]
pub fn playlist_address(publisher: String, name: String) -> Result<String, PmnError> {
    let publisher = super::error::bare_jid(&publisher)?;
    let uri = crate::core::pubsub::playlist_uri(&publisher, &name);
    // The TV reads the address with the same strict parser: refuse here what it would refuse.
    match crate::core::pubsub::PlaylistAddress::parse(&uri) {
        Some(_) => Ok(uri),
        None => Err(PmnError::BadParams {
            detail: format!("{name:?} is not a playlist name (A-Z a-z 0-9 . _ - only)"),
        }),
    }
}

impl Playlists {
    pub(super) fn new(inner: CorePlaylists) -> Self {
        Self { inner }
    }
}

#[uniffi::export]
impl Playlists {
    /// Creates our playlist `name` readable by `access`, or changes who may read it.
    pub async fn create(&self, name: String, access: PlaylistAccess) -> Result<(), PmnError> {
        let access = match access {
            PlaylistAccess::OwnNetwork => Access::OwnNetwork,
            PlaylistAccess::Open => Access::Open,
            PlaylistAccess::Friends { networks } => Access::Friends(
                networks
                    .iter()
                    .map(|n| network(n))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let inner = self.inner.clone();
        runtime::run(async move { Ok(inner.create(&name, &access).await.map_err(to_core)?) }).await
    }

    /// Signs and publishes `entry` in our playlist `name` (replaces an entry with its id).
    pub async fn publish(&self, name: String, entry: PlaylistEntry) -> Result<(), PmnError> {
        let inner = self.inner.clone();
        runtime::run(async move {
            inner.publish(&name, &entry.into()).await.map_err(to_core)?;
            Ok(())
        })
        .await
    }

    /// Removes entry `id` from our playlist `name`.
    pub async fn retract(&self, name: String, id: String) -> Result<(), PmnError> {
        let inner = self.inner.clone();
        runtime::run(async move { Ok(inner.retract(&name, &id).await.map_err(to_core)?) }).await
    }

    /// Removes every entry of our playlist `name`.
    pub async fn purge(&self, name: String) -> Result<(), PmnError> {
        let inner = self.inner.clone();
        runtime::run(async move { Ok(inner.purge(&name).await.map_err(to_core)?) }).await
    }

    /// The playlists household `publisher` lets us see.
    pub async fn list(&self, publisher: String) -> Result<Vec<String>, PmnError> {
        let inner = self.inner.clone();
        let publisher = network(&publisher)?;
        runtime::run(async move { Ok(inner.list(&publisher).await.map_err(to_core)?) }).await
    }

    /// Every entry of `publisher`'s playlist `name` signed by one of `owner_keys` (DER SPKIs of
    /// that household's owner keys), in playlist order.
    pub async fn fetch(
        &self,
        publisher: String,
        name: String,
        owner_keys: Vec<Vec<u8>>,
    ) -> Result<Vec<PlaylistEntry>, PmnError> {
        let inner = self.inner.clone();
        let publisher = network(&publisher)?;
        let owners = owners(&publisher, &owner_keys)?;
        runtime::run(async move {
            let outcome = inner
                .fetch(&publisher, &name, &owners)
                .await
                .map_err(to_core)?;
            Ok(outcome
                .entries
                .into_iter()
                .map(|e| e.entry.into())
                .collect())
        })
        .await
    }

    /// Follows `publisher`'s playlist `name`: its changes reach `listener` until the returned
    /// handle is cancelled or closed (which also unsubscribes).
    pub async fn follow(
        &self,
        publisher: String,
        name: String,
        owner_keys: Vec<Vec<u8>>,
        listener: Arc<dyn PlaylistListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let inner = self.inner.clone();
        let publisher = network(&publisher)?;
        let owners = owners(&publisher, &owner_keys)?;
        let mut changes = inner.changes();
        let (who, which) = (publisher.clone(), name.clone());
        runtime::run({
            let inner = inner.clone();
            async move {
                Ok(inner
                    .subscribe(&who, &which, owners)
                    .await
                    .map_err(to_core)?)
            }
        })
        .await?;
        let (who, which) = (publisher.clone(), name.clone());
        let forwarder = runtime::handle().spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) if concerns(&change, &who, &which) => {
                        if let Err(e) = listener.on_change(change.into()) {
                            tracing::warn!(error = %e, "playlist listener failed");
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        if let Err(e) = listener.on_missed(super::numbers::out64(n)) {
                            tracing::warn!(error = %e, "playlist listener failed");
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Arc::new(TaskHandle::new(Following {
            playlists: inner,
            publisher,
            name,
            forwarder: forwarder.abort_handle(),
        })))
    }
}

fn to_core(e: crate::core::pubsub::PlaylistError) -> crate::core::error::Error {
    e.into()
}

fn concerns(change: &CoreChange, publisher: &BareJid, name: &str) -> bool {
    let (p, n) = match change {
        CoreChange::Published {
            publisher,
            playlist,
            ..
        }
        | CoreChange::Retracted {
            publisher,
            playlist,
            ..
        }
        | CoreChange::Purged {
            publisher,
            playlist,
        }
        | CoreChange::Deleted {
            publisher,
            playlist,
        } => (publisher, playlist),
    };
    p == publisher && n == name
}

/// A followed playlist: dropping it stops the forwarder and unsubscribes.
struct Following {
    playlists: CorePlaylists,
    publisher: BareJid,
    name: String,
    forwarder: tokio::task::AbortHandle,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.forwarder.abort();
        let (playlists, publisher, name) = (
            self.playlists.clone(),
            self.publisher.clone(),
            std::mem::take(&mut self.name),
        );
        runtime::handle().spawn(async move {
            if let Err(e) = playlists.unsubscribe(&publisher, &name).await {
                tracing::debug!(error = %e, "could not unsubscribe from the playlist");
            }
        });
    }
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn a_playlist_address_is_what_the_tv_parses_and_bad_input_is_typed() {
        let uri = playlist_address("home@home.test".into(), "radio".into()).expect("address");
        let parsed = crate::core::pubsub::PlaylistAddress::parse(&uri).expect("parses");
        assert_eq!(
            (parsed.publisher.to_string(), parsed.name),
            ("home@home.test".into(), "radio".into())
        );
        assert!(matches!(
            playlist_address("home@home.test/tv".into(), "radio".into()),
            Err(PmnError::Config { .. })
        ));
        assert!(matches!(
            playlist_address("home@home.test".into(), "no spaces".into()),
            Err(PmnError::BadParams { .. })
        ));
    }
}
