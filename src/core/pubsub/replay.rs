//! Replay protection for signed entries: the server keeps and relays the items, so it can hand a
//! subscriber an entry the owner signed long ago — a version since replaced, or one since
//! retracted — and the signature still verifies. What the signature binds
//! ([`super::signature`]: network, playlist, entry id and the `updated` time) stops it moving an
//! entry to another household, playlist or id; this book stops it passing an old version for a
//! new one.
//!
//! For each (publisher, playlist, entry id) it remembers the newest `updated` this device has
//! seen and whether that version was retracted since:
//! - a **notification** is news only if its version is strictly newer than the newest seen (the
//!   same version again is a replay, not a change);
//! - a **fetch** keeps an entry whose version is the newest seen or newer (the catch-up returns
//!   entries the device already knows), and refuses older ones and a retracted version;
//! - a retraction or a purge marks the versions seen as retracted: the owner re-adding the entry
//!   signs a newer version ([`super::Playlists::publish`] never signs the same id twice with one
//!   `updated` from one device).
//!
//! What it cannot do: tell a version it never saw from a replayed one (a device that was off
//! accepts the newest version the server shows it), or outlive the process (the book is in
//! memory). Retractions are unsigned, so a server faking one hides that version until the owner
//! publishes it again — no more than the server can do by withholding the item. The book is
//! bounded ([`MAX_TRACKED_VERSIONS`]); entries beyond it are accepted untracked and counted.

use std::collections::HashMap;
use std::sync::Mutex;

use xmpp_parsers::jid::BareJid;

use super::error::IgnoredReason;
use super::stats::Counters;
use crate::core::sync::Locked;

/// Most entry versions remembered, over every playlist (about 100 bytes each).
pub const MAX_TRACKED_VERSIONS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    updated: u64,
    retracted: bool,
}

#[derive(Debug, Default)]
struct Book {
    marks: HashMap<(BareJid, String), HashMap<String, Mark>>,
    total: usize,
}

/// How a version arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// In a notification: only a newer version is news.
    Notified,
    /// In a catch-up fetch: the newest version seen is still current.
    Fetched,
}

/// The newest version seen of every entry (see the module notes).
#[derive(Debug, Default)]
pub(crate) struct VersionBook {
    book: Mutex<Book>,
}

impl VersionBook {
    /// Whether version `updated` of entry `id` of `publisher`'s `playlist`, arriving as
    /// `arrival`, is accepted; if so it is remembered. A refusal is
    /// [`IgnoredReason::Replayed`] (the caller counts it).
    pub(crate) fn accept(
        &self,
        publisher: &BareJid,
        playlist: &str,
        id: &str,
        updated: u64,
        arrival: Arrival,
        counters: &Counters,
    ) -> Result<(), IgnoredReason> {
        let mut book = self.book.locked();
        let book = &mut *book;
        let key = (publisher.clone(), playlist.to_owned());
        if let Some(mark) = book.marks.get_mut(&key).and_then(|m| m.get_mut(id)) {
            let fresh = match arrival {
                Arrival::Notified => updated > mark.updated,
                Arrival::Fetched => {
                    updated > mark.updated || (updated == mark.updated && !mark.retracted)
                }
            };
            if !fresh {
                return Err(IgnoredReason::Replayed);
            }
            *mark = Mark {
                updated,
                retracted: false,
            };
            return Ok(());
        }
        if book.total >= MAX_TRACKED_VERSIONS {
            counters.untracked();
            return Ok(());
        }
        book.total += 1;
        book.marks.entry(key).or_default().insert(
            id.to_owned(),
            Mark {
                updated,
                retracted: false,
            },
        );
        Ok(())
    }

    /// Entry `id` was retracted: the version seen may not come back.
    pub(crate) fn retracted(&self, publisher: &BareJid, playlist: &str, id: &str) {
        let key = (publisher.clone(), playlist.to_owned());
        if let Some(mark) = self
            .book
            .locked()
            .marks
            .get_mut(&key)
            .and_then(|m| m.get_mut(id))
        {
            mark.retracted = true;
        }
    }

    /// Every entry of `publisher`'s `playlist` was removed (purge, delete).
    pub(crate) fn purged(&self, publisher: &BareJid, playlist: &str) {
        let key = (publisher.clone(), playlist.to_owned());
        if let Some(marks) = self.book.locked().marks.get_mut(&key) {
            for mark in marks.values_mut() {
                mark.retracted = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_replayed_and_retracted_versions_are_refused_newer_ones_accepted() {
        let book = VersionBook::default();
        let counters = Counters::default();
        let home: BareJid = "home@home.test".parse().unwrap();
        let ok = |id: &str, v: u64, a: Arrival| book.accept(&home, "radio", id, v, a, &counters);
        assert_eq!(ok("e1", 5, Arrival::Notified), Ok(()));
        // The same version again is no news; the catch-up still lists it.
        assert_eq!(ok("e1", 5, Arrival::Notified), Err(IgnoredReason::Replayed));
        assert_eq!(ok("e1", 5, Arrival::Fetched), Ok(()));
        assert_eq!(ok("e1", 9, Arrival::Notified), Ok(()));
        // The older version replayed, live or in a fetch.
        assert_eq!(ok("e1", 5, Arrival::Notified), Err(IgnoredReason::Replayed));
        assert_eq!(ok("e1", 5, Arrival::Fetched), Err(IgnoredReason::Replayed));
        // Retracted: that version may not come back, a newer one may.
        book.retracted(&home, "radio", "e1");
        assert_eq!(ok("e1", 9, Arrival::Fetched), Err(IgnoredReason::Replayed));
        assert_eq!(ok("e1", 10, Arrival::Notified), Ok(()));
        // Purged: the same for every entry; other playlists and households are apart.
        assert_eq!(ok("e2", 3, Arrival::Fetched), Ok(()));
        book.purged(&home, "radio");
        assert_eq!(ok("e2", 3, Arrival::Fetched), Err(IgnoredReason::Replayed));
        assert_eq!(
            book.accept(&home, "jazz", "e2", 3, Arrival::Fetched, &counters),
            Ok(())
        );
        let friend: BareJid = "friend@friend.test".parse().unwrap();
        assert_eq!(
            book.accept(&friend, "radio", "e2", 1, Arrival::Fetched, &counters),
            Ok(())
        );
        assert_eq!(counters.snapshot().versions_untracked, 0);
    }

    #[test]
    fn the_book_is_bounded_and_counts_what_it_cannot_track() {
        let book = VersionBook::default();
        let counters = Counters::default();
        let home: BareJid = "home@home.test".parse().unwrap();
        book.book.locked().total = MAX_TRACKED_VERSIONS;
        for _ in 0..2 {
            assert_eq!(
                book.accept(&home, "radio", "new", 1, Arrival::Notified, &counters),
                Ok(())
            );
        }
        assert_eq!(counters.snapshot().versions_untracked, 2);
        assert!(book.book.locked().marks.is_empty());
    }
}
