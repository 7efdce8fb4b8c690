//! Shared playlists and personal channels over XEP-0060 (spec §3.2): a household publishes
//! playlists, one pubsub item per entry, signed by its owner key; friends' households subscribe,
//! get every change live, and catch up with a paged fetch when a device comes online.
//!
//! **Where the nodes live: PEP on the network's bare JID** (`urn:xmpp:tmp:pmn:playlist:0/<name>`),
//! not a pubsub component such as `pubsub.home.test`. Every device of a network logs in with that
//! bare JID, so each of them is the nodes' owner without any affiliation management; PEP is part
//! of the server profile pmn already needs (the key directory of XEP-0189 lives there), while a
//! component is an extra server deployment many hosted accounts do not offer; and the node's
//! address names the household, which is what a subscriber verifies signatures for. What PEP
//! costs: servers bound the items per node (`pep_max_items`, 256 by default on Prosody 0.12; the
//! test server raises it), and paging has to work without RSM (see [`fetch`]).
//!
//! One file per job:
//! - [`address`]: a playlist named in a media URI (`xmpp:<publisher>?pmn-playlist;name=<name>`),
//!   which a TV resolves itself;
//! - [`entry`]: the `<entry>` payload, its bounds, the strict parser;
//! - [`signature`]: owner signatures on entries (the guest-grant signing path, its own tag);
//! - [`node`]: node names, access models (own network, friends, open), create/configure/purge;
//! - [`publish`]: publish and retract entries;
//! - [`fetch`]: catch-up, page by page, bounded;
//! - [`watch`]: subscriptions and notifications as typed [`PlaylistChange`]s;
//! - [`replay`]: the newest version seen of each entry, so an old one replayed is not news;
//! - [`stats`]: counters of everything ignored ([`IgnoredReason`]);
//! - [`iq`]: the pubsub iq helpers shared with the key directory.
//!
//! [`Playlists`] ties them to one session for the role layer above.

pub mod address;
pub mod entry;
pub mod error;
pub mod fetch;
pub mod iq;
pub mod node;
pub mod publish;
pub mod replay;
pub mod signature;
pub mod stats;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::stanza::Stanza;

pub use address::{playlist_uri, PlaylistAddress};
pub use entry::{MediaKind, PlaylistEntry, MAX_ENTRY_BYTES, NS_PLAYLIST};
pub use error::{IgnoredReason, PlaylistError};
pub use fetch::{FetchLimits, FetchOutcome};
pub use node::{ensure_playlist, read_access, Access};
pub use signature::VerifiedEntry;
pub use stats::PubsubStats;
pub use watch::{PlaylistChange, PlaylistWatch, MAX_SUBSCRIPTIONS};

use crate::core::access::OwnerKeys;
use crate::core::error::{Error, ErrorKind};
use crate::core::identity::KeyStore;
use crate::core::session::Session;
use crate::core::sync::Locked;

/// How many entries' last signed versions [`Playlists`] holds before it forgets those of past
/// seconds.
const LAST_SIGNED_SWEEP: usize = 1024;

/// Most playlist names [`Playlists::list`] returns for one household.
pub const MAX_LISTED_PLAYLISTS: usize = 1024;

/// How a [`Playlists`] handle works.
#[derive(Clone)]
pub struct PlaylistsConfig {
    /// The owner-approval key that signs our entries (store, alias); `None` on a device that only
    /// reads friends' playlists.
    pub owner_key: Option<(Arc<dyn KeyStore>, String)>,
    /// Bound on each request to the server.
    pub timeout: Duration,
    /// Bounds of a catch-up fetch.
    pub fetch: FetchLimits,
}

impl std::fmt::Debug for PlaylistsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaylistsConfig")
            .field("owner_key", &self.owner_key.as_ref().map(|(_, a)| a))
            .field("timeout", &self.timeout)
            .field("fetch", &self.fetch)
            .finish()
    }
}

impl Default for PlaylistsConfig {
    /// Read-only, 10 s per request, default fetch bounds.
    fn default() -> Self {
        PlaylistsConfig {
            owner_key: None,
            timeout: Duration::from_secs(10),
            fetch: FetchLimits::default(),
        }
    }
}

/// The playlists of one device: ours to publish, and friends' to read and follow. Cheap to clone.
///
/// The role layer must offer every inbound stanza to [`Playlists::handle_stanza`] (that is how
/// notifications arrive); the device must have sent presence, or the server keeps the
/// notifications to the bare JID from it.
#[derive(Clone, Debug)]
pub struct Playlists {
    session: Session,
    config: PlaylistsConfig,
    counters: Arc<stats::Counters>,
    watch: PlaylistWatch,
    /// The `updated` this handle last signed, per (playlist, entry id) (see [`Playlists::publish`]).
    last_signed: Arc<Mutex<HashMap<(String, String), u64>>>,
}

impl Playlists {
    /// A handle over `session`.
    pub fn new(session: Session, config: PlaylistsConfig) -> Self {
        let counters = Arc::new(stats::Counters::default());
        Playlists {
            session,
            config,
            watch: PlaylistWatch::new(counters.clone()),
            counters,
            last_signed: Arc::default(),
        }
    }

    fn network(&self) -> Result<BareJid, PlaylistError> {
        self.session
            .jid()
            .map(|j| j.to_bare())
            .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the session is not online").into())
    }

    /// Creates our playlist `name` readable by `access`, or changes the access of an existing one.
    pub async fn create(&self, name: &str, access: &Access) -> Result<(), PlaylistError> {
        ensure_playlist(&self.session, name, access, self.config.timeout).await
    }

    /// Signs (owner key) and publishes `entry` in our playlist `name`, replacing an entry of the
    /// same id. Without an owner key configured this is a [`ErrorKind::Config`] error.
    ///
    /// The version signed (`updated`) is the time in seconds, but always later than the last
    /// one this handle signed for that entry: subscribers take only a newer version of an entry as news
    /// ([`replay`]), so two edits within one second must not carry the same version.
    pub async fn publish(
        &self,
        name: &str,
        entry: &PlaylistEntry,
    ) -> Result<VerifiedEntry, PlaylistError> {
        let Some((store, alias)) = &self.config.owner_key else {
            return Err(Error::new(
                ErrorKind::Config,
                "publishing playlists needs the owner key (PlaylistsConfig::owner_key)",
            )
            .into());
        };
        let network = self.network()?;
        let now = crate::core::access::unix_now();
        let updated = {
            let mut last = self.last_signed.locked();
            // Only versions of this second or later can collide; the rest are forgotten, which
            // bounds the table by the entries signed within about a second.
            if last.len() >= LAST_SIGNED_SWEEP {
                last.retain(|_, v| *v >= now);
            }
            let slot = last.entry((name.to_owned(), entry.id.clone())).or_insert(0);
            *slot = now.max(slot.saturating_add(1));
            *slot
        };
        publish::publish_entry(
            &self.session,
            &network,
            name,
            entry,
            updated,
            (store.as_ref(), alias),
            self.config.timeout,
        )
        .await
    }

    /// Who may read our playlist `name`, as the server has it configured.
    pub async fn access(&self, name: &str) -> Result<Access, PlaylistError> {
        read_access(&self.session, name, self.config.timeout).await
    }

    /// Removes entry `id` from our playlist `name`.
    pub async fn retract(&self, name: &str, id: &str) -> Result<(), PlaylistError> {
        publish::retract_entry(&self.session, name, id, self.config.timeout).await
    }

    /// Removes every entry of our playlist `name`.
    pub async fn purge(&self, name: &str) -> Result<(), PlaylistError> {
        node::purge_playlist(&self.session, name, self.config.timeout).await
    }

    /// Deletes our playlist `name`.
    pub async fn delete(&self, name: &str) -> Result<(), PlaylistError> {
        node::delete_playlist(&self.session, name, self.config.timeout).await
    }

    /// The playlists `publisher` lets us see.
    pub async fn list(&self, publisher: &BareJid) -> Result<Vec<String>, PlaylistError> {
        node::list_playlists(
            &self.session,
            publisher,
            MAX_LISTED_PLAYLISTS,
            self.config.timeout,
        )
        .await
    }

    /// Every entry of `publisher`'s playlist `name` signed by one of `owners` (catch-up).
    pub async fn fetch(
        &self,
        publisher: &BareJid,
        name: &str,
        owners: &OwnerKeys,
    ) -> Result<FetchOutcome, PlaylistError> {
        fetch::fetch_playlist(
            &self.session,
            publisher,
            name,
            owners,
            self.config.fetch,
            (&self.counters, self.watch.versions()),
            self.config.timeout,
        )
        .await
    }

    /// Follows `publisher`'s playlist `name`; its changes arrive on [`Playlists::changes`].
    pub async fn subscribe(
        &self,
        publisher: &BareJid,
        name: &str,
        owners: OwnerKeys,
    ) -> Result<(), PlaylistError> {
        self.watch
            .subscribe(&self.session, publisher, name, owners, self.config.timeout)
            .await
    }

    /// Stops following `publisher`'s playlist `name`.
    pub async fn unsubscribe(&self, publisher: &BareJid, name: &str) -> Result<(), PlaylistError> {
        self.watch
            .unsubscribe(&self.session, publisher, name, self.config.timeout)
            .await
    }

    /// Changes of followed playlists from now on.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<PlaylistChange> {
        self.watch.changes()
    }

    /// The subscriptions held.
    pub fn subscriptions(&self) -> Vec<(BareJid, String)> {
        self.watch.subscriptions()
    }

    /// Offers an inbound stanza; `true` when it was a playlist notification (consumed here).
    pub fn handle_stanza(&self, stanza: &Stanza) -> bool {
        match stanza {
            Stanza::Message(m) => self.watch.handle_message(m),
            _ => false,
        }
    }

    /// What was ignored so far, by reason.
    pub fn stats(&self) -> PubsubStats {
        self.counters.snapshot()
    }

    /// The session underneath.
    pub fn session(&self) -> &Session {
        &self.session
    }
}
