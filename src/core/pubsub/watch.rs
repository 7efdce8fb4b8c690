//! Live changes of friends' playlists: subscriptions (XEP-0060 §6.1) and the notifications they
//! bring (§7.1.2 publish, §7.2.2 retract, §8.5 purge, §8.4 delete), turned into typed changes.
//!
//! The household subscribes with its **bare** JID: the server then sends each notification to
//! the bare JID, which reaches every online device of the network (a headline to a bare JID goes
//! to every available resource), and devices that were offline catch up with
//! [`super::Playlists::fetch`]. A notification is accepted only from a (publisher, node) this
//! device subscribed to — `from` is the publisher's bare JID, set by the server — and each
//! published entry only with a valid owner signature of that publisher; anything else is counted
//! and dropped, never an error of the session. A verified entry must also be a newer version
//! than any this device saw of it ([`super::replay`]): the server replaying an old one is
//! counted as [`IgnoredReason::Replayed`].

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::pubsub::event::{Event, Payload};
use xmpp_parsers::pubsub::pubsub::{PubSub, Subscribe};
use xso::{AsXml, FromXml};

use super::entry::{parse_item, NS_PLAYLIST};
use super::error::{IgnoredReason, PlaylistError};
use super::iq::{self, NS_PUBSUB};
use super::node::{playlist_name, playlist_node};
use super::replay::{Arrival, VersionBook};
use super::signature::{verify_entry, VerifiedEntry};
use super::stats::Counters;
use crate::core::access::OwnerKeys;
use crate::core::lazy_broadcast::LazyBroadcast;
use crate::core::session::Session;

/// Most (publisher, playlist) subscriptions one device keeps.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// Most changes queued per receiver; a receiver further behind is told it lagged and should
/// fetch again.
pub const CHANGE_CAPACITY: usize = 1024;
/// Most items one notification may carry before the rest are dropped (a server may batch).
pub const MAX_ITEMS_PER_NOTIFICATION: usize = 64;
const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// A change of a subscribed playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistChange {
    /// An entry was published or updated (its signature verified).
    Published {
        /// The household that owns the playlist.
        publisher: BareJid,
        /// The playlist.
        playlist: String,
        /// The entry.
        entry: VerifiedEntry,
    },
    /// An entry was removed. Retractions carry no signature (XEP-0060 has none): the server
    /// could fake one, which at worst hides an entry until the next fetch.
    Retracted {
        /// The household.
        publisher: BareJid,
        /// The playlist.
        playlist: String,
        /// The entry id.
        id: String,
    },
    /// Every entry was removed.
    Purged {
        /// The household.
        publisher: BareJid,
        /// The playlist.
        playlist: String,
    },
    /// The playlist is gone; the subscription with it.
    Deleted {
        /// The household.
        publisher: BareJid,
        /// The playlist.
        playlist: String,
    },
}

/// `<unsubscribe>` (xmpp-parsers' own type has private fields, so it cannot be built outside it).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBSUB, name = "unsubscribe")]
struct UnsubscribeElement {
    #[xml(attribute)]
    jid: Jid,
    #[xml(attribute)]
    node: String,
}

/// (publisher, playlist) → that publisher's owner keys.
type Subscriptions = HashMap<(BareJid, String), Arc<OwnerKeys>>;

/// The subscriptions of this device and the stream of their changes. Cheap to clone.
#[derive(Clone)]
pub struct PlaylistWatch {
    subscriptions: Arc<Mutex<Subscriptions>>,
    /// Made on its first subscriber: 240 KB of slots, for an app that may never listen.
    changes: LazyBroadcast<PlaylistChange>,
    counters: Arc<Counters>,
    /// The newest version seen of each entry, shared with the catch-up fetches.
    versions: Arc<VersionBook>,
}

impl std::fmt::Debug for PlaylistWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaylistWatch")
            .field("subscriptions", &self.subscriptions.locked().len())
            .finish_non_exhaustive()
    }
}

impl PlaylistWatch {
    /// An empty watch counting into `counters`.
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        PlaylistWatch {
            subscriptions: Arc::new(Mutex::new(HashMap::new())),
            changes: LazyBroadcast::new(CHANGE_CAPACITY),
            counters,
            versions: Arc::new(VersionBook::default()),
        }
    }

    /// The version book the fetches of the same handle consult and update.
    pub(crate) fn versions(&self) -> &VersionBook {
        &self.versions
    }

    /// Changes of subscribed playlists from now on.
    pub fn changes(&self) -> broadcast::Receiver<PlaylistChange> {
        self.changes.subscribe()
    }

    /// The subscriptions held, as (publisher, playlist).
    pub fn subscriptions(&self) -> Vec<(BareJid, String)> {
        let mut subs: Vec<_> = self.subscriptions.locked().keys().cloned().collect();
        subs.sort();
        subs
    }

    /// Subscribes our network (bare JID) to `publisher`'s playlist `playlist`; entries are
    /// verified against `owners`. Registered before the request goes out, so no notification
    /// sent right after the server's answer is lost; removed again if the server refuses.
    pub async fn subscribe(
        &self,
        session: &Session,
        publisher: &BareJid,
        playlist: &str,
        owners: OwnerKeys,
        timeout: Duration,
    ) -> Result<(), PlaylistError> {
        let node = playlist_node(playlist)?;
        let own = session.jid().map(|j| j.to_bare()).ok_or_else(|| {
            crate::core::error::Error::new(
                crate::core::error::ErrorKind::NotConnected,
                "the session is not online",
            )
        })?;
        let key = (publisher.clone(), playlist.to_owned());
        {
            let mut subs = self.subscriptions.locked();
            if !subs.contains_key(&key) && subs.len() >= MAX_SUBSCRIPTIONS {
                return Err(PlaylistError::TooManySubscriptions(MAX_SUBSCRIPTIONS));
            }
            subs.insert(key.clone(), Arc::new(owners));
        }
        let request = PubSub::Subscribe {
            subscribe: Some(Subscribe {
                jid: Jid::from(own),
                node: Some(node),
            }),
            options: None,
        };
        let answer = iq::request(
            session,
            iq::iq(
                true,
                Some(Jid::from(publisher.clone())),
                Element::from(request),
            ),
            timeout,
            "subscribing to the playlist",
        )
        .await;
        if let Err(e) = answer {
            self.subscriptions.locked().remove(&key);
            return Err(e);
        }
        tracing::debug!(%publisher, playlist, "subscribed to playlist");
        Ok(())
    }

    /// Ends the subscription to `publisher`'s `playlist` (locally at once, then on the server).
    pub async fn unsubscribe(
        &self,
        session: &Session,
        publisher: &BareJid,
        playlist: &str,
        timeout: Duration,
    ) -> Result<(), PlaylistError> {
        let node = playlist_node(playlist)?;
        self.subscriptions
            .locked()
            .remove(&(publisher.clone(), playlist.to_owned()));
        let own = session.jid().map(|j| Jid::from(j.to_bare()));
        let Some(own) = own else {
            return Ok(());
        };
        let request = UnsubscribeElement {
            jid: own,
            node: node.0,
        };
        iq::request(
            session,
            iq::pubsub_iq(
                true,
                Some(Jid::from(publisher.clone())),
                Element::from(request),
            ),
            timeout,
            "unsubscribing from the playlist",
        )
        .await
        .map(|_| ())
    }

    /// Registers a subscription without asking a server: the fuzz harness drives
    /// [`PlaylistWatch::handle_message`] with it.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn insert_subscription(
        &self,
        publisher: BareJid,
        playlist: &str,
        owners: OwnerKeys,
    ) {
        self.subscriptions
            .locked()
            .insert((publisher, playlist.to_owned()), Arc::new(owners));
    }

    /// Offers an inbound message to the playlist layer. Returns `true` when it was a pubsub
    /// notification about a playlist node (handled here, accepted or counted); `false` for
    /// anything else, which the caller processes as before (the key directory's notifications
    /// among them).
    pub fn handle_message(&self, message: &Message) -> bool {
        let Some(event) = message
            .payloads
            .iter()
            .find(|p| p.is("event", NS_PUBSUB_EVENT))
        else {
            return false;
        };
        // Cheap pre-check on the raw element: is this about a node of ours at all?
        let Some(node) = event
            .children()
            .next()
            .and_then(|c| c.attr("node"))
            .filter(|n| n.starts_with(NS_PLAYLIST))
            .map(str::to_owned)
        else {
            return false;
        };
        let Some(publisher) = message.from.as_ref().map(Jid::to_bare) else {
            self.counters.ignore(IgnoredReason::NotSubscribed, 1);
            return true;
        };
        let Some(playlist) = playlist_name(&node).map(str::to_owned) else {
            self.counters.ignore(IgnoredReason::Malformed, 1);
            return true;
        };
        let owners = self
            .subscriptions
            .locked()
            .get(&(publisher.clone(), playlist.clone()))
            .cloned();
        let Some(owners) = owners else {
            tracing::debug!(%publisher, playlist, "notification for a playlist we did not subscribe to");
            self.counters.ignore(IgnoredReason::NotSubscribed, 1);
            return true;
        };
        let Ok(event) = Event::try_from(event.clone()) else {
            self.counters.ignore(IgnoredReason::Malformed, 1);
            return true;
        };
        match event.payload {
            Payload::Items {
                published,
                retracted,
                ..
            } => {
                let total = published.len() + retracted.len();
                if total > MAX_ITEMS_PER_NOTIFICATION {
                    self.counters.ignore(
                        IgnoredReason::OverCap,
                        (total - MAX_ITEMS_PER_NOTIFICATION) as u64,
                    );
                }
                let mut budget = MAX_ITEMS_PER_NOTIFICATION;
                for item in published.into_iter().take(budget) {
                    budget -= 1;
                    let id = item.id.map(|i| i.0);
                    let verdict = parse_item(id.as_deref(), item.payload.as_ref())
                        .and_then(|p| verify_entry(&owners, &publisher, &playlist, p))
                        .and_then(|e| {
                            // Checked after the signature: only the owner's versions count.
                            self.versions
                                .accept(
                                    &publisher,
                                    &playlist,
                                    &e.entry.id,
                                    e.updated,
                                    Arrival::Notified,
                                    &self.counters,
                                )
                                .map(|()| e)
                        });
                    match verdict {
                        Ok(entry) => self.emit(PlaylistChange::Published {
                            publisher: publisher.clone(),
                            playlist: playlist.clone(),
                            entry,
                        }),
                        Err(reason) => {
                            tracing::debug!(%publisher, playlist, ?id, %reason, "notified entry ignored");
                            self.counters.ignore(reason, 1);
                        }
                    }
                }
                for id in retracted.into_iter().take(budget) {
                    self.versions.retracted(&publisher, &playlist, &id.0);
                    self.emit(PlaylistChange::Retracted {
                        publisher: publisher.clone(),
                        playlist: playlist.clone(),
                        id: id.0,
                    });
                }
            }
            Payload::Purge { .. } => {
                self.versions.purged(&publisher, &playlist);
                self.emit(PlaylistChange::Purged {
                    publisher,
                    playlist,
                })
            }
            Payload::Delete { .. } => {
                self.versions.purged(&publisher, &playlist);
                self.subscriptions
                    .locked()
                    .remove(&(publisher.clone(), playlist.clone()));
                self.emit(PlaylistChange::Deleted {
                    publisher,
                    playlist,
                });
            }
            // Configuration and subscription state changes carry no entry.
            _ => {}
        }
        true
    }

    fn emit(&self, change: PlaylistChange) {
        self.counters.changed();
        // No receiver is not an error: the app may look later with a fetch.
        let _ = self.changes.send(change);
    }
}
