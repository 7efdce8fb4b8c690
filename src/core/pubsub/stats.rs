//! Counters of what this device ignored, so a refusal is visible without being fatal.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::IgnoredReason;

/// What the playlist layer has refused or dropped since it started (see
/// [`super::Playlists::stats`]). Every entry that did not reach the app is in exactly one counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PubsubStats {
    /// Items that were not a valid entry.
    pub malformed: u64,
    /// Items over [`super::MAX_ENTRY_BYTES`].
    pub oversized: u64,
    /// Entries without an owner signature.
    pub unsigned: u64,
    /// Entries whose signature does not verify.
    pub bad_signature: u64,
    /// Entries signed by a key that is not an owner key of the publisher.
    pub unknown_signer: u64,
    /// Notifications about nodes this device did not subscribe to.
    pub not_subscribed: u64,
    /// Valid entries dropped because a fetch already held its cap of entries.
    pub over_cap: u64,
    /// Signed versions older than one already seen, or since retracted ([`super::replay`]).
    pub replayed: u64,
    /// Entries accepted without replay protection because the version book was full
    /// ([`super::replay::MAX_TRACKED_VERSIONS`]).
    pub versions_untracked: u64,
    /// Changes handed to the app's change stream (verified publishes, retractions, purges).
    pub changes_published: u64,
}

impl PubsubStats {
    /// The counter of `reason`.
    pub fn ignored(&self, reason: IgnoredReason) -> u64 {
        match reason {
            IgnoredReason::Malformed => self.malformed,
            IgnoredReason::Oversized => self.oversized,
            IgnoredReason::Unsigned => self.unsigned,
            IgnoredReason::BadSignature => self.bad_signature,
            IgnoredReason::UnknownSigner => self.unknown_signer,
            IgnoredReason::NotSubscribed => self.not_subscribed,
            IgnoredReason::OverCap => self.over_cap,
            IgnoredReason::Replayed => self.replayed,
        }
    }
}

/// The live counters behind [`PubsubStats`], shared by fetches and the notification handler.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    reasons: [AtomicU64; 8],
    changes: AtomicU64,
    untracked: AtomicU64,
}

fn index(reason: IgnoredReason) -> usize {
    match reason {
        IgnoredReason::Malformed => 0,
        IgnoredReason::Oversized => 1,
        IgnoredReason::Unsigned => 2,
        IgnoredReason::BadSignature => 3,
        IgnoredReason::UnknownSigner => 4,
        IgnoredReason::NotSubscribed => 5,
        IgnoredReason::OverCap => 6,
        IgnoredReason::Replayed => 7,
    }
}

impl Counters {
    /// Counts one entry ignored for `reason`.
    pub(crate) fn ignore(&self, reason: IgnoredReason, n: u64) {
        self.reasons[index(reason)].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one entry accepted without replay protection (the version book is full).
    pub(crate) fn untracked(&self) {
        self.untracked.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one change handed to the app.
    pub(crate) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> PubsubStats {
        let r = |reason| self.reasons[index(reason)].load(Ordering::Relaxed);
        PubsubStats {
            malformed: r(IgnoredReason::Malformed),
            oversized: r(IgnoredReason::Oversized),
            unsigned: r(IgnoredReason::Unsigned),
            bad_signature: r(IgnoredReason::BadSignature),
            unknown_signer: r(IgnoredReason::UnknownSigner),
            not_subscribed: r(IgnoredReason::NotSubscribed),
            over_cap: r(IgnoredReason::OverCap),
            replayed: r(IgnoredReason::Replayed),
            versions_untracked: self.untracked.load(Ordering::Relaxed),
            changes_published: self.changes.load(Ordering::Relaxed),
        }
    }
}
