//! The provider's bounds on what callers may hold, and the counters of how often they were hit.
//!
//! Every map and queue keyed by input from outside has a bound and a policy: calls in flight and
//! subscriptions are refused with `resource-constraint` (type `wait`: try again later) when full,
//! never queued without bound; the audit log evicts routine records first (see [`crate::core::access::AuditLog`]).
//! Guests get a share, never the whole: a household's own devices always find room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::core::error::{Error, ErrorKind, Result};

/// The bounds of one provider. The defaults suit a TV in a home; tests make them small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderLimits {
    /// Calls taken in at once (running, or waiting for one of the
    /// [`ProviderLimits::calls_running`] places), every caller together; one more is answered
    /// `resource-constraint`.
    pub calls_in_flight: usize,
    /// Calls in flight at once for one caller (full JID). The default lets a phone keep 100
    /// calls in flight (tests/stress.rs does).
    pub calls_per_caller: usize,
    /// Calls in flight at once for all guests together, fewer than
    /// [`ProviderLimits::calls_running`]: the rest of the slots and of the running places is kept
    /// for the household's own devices.
    pub calls_for_guests: usize,
    /// Calls whose service runs at once; the other calls in flight wait their turn (bounded by
    /// [`ProviderLimits::calls_in_flight`], so the wait is never unbounded).
    pub calls_running: usize,
    /// Subscriptions (service × full JID) one guest network (bare JID) may hold, over all its
    /// resources: a guest with many resources cannot take the household's slots.
    pub subscriptions_per_guest: usize,
    /// Subscriptions all guests together may hold; each service accepts
    /// [`crate::core::rpc::events::MAX_SUBSCRIBERS_PER_SERVICE`], so at least that minus this stays
    /// for own devices.
    pub subscriptions_for_guests: usize,
    /// Records the access audit log keeps ([`crate::core::access::DEFAULT_AUDIT_CAPACITY`]).
    pub audit_records: usize,
    /// How long the answer of a call that carried a call id is remembered after it finished, so
    /// that a retry of it gets that answer instead of running the method again
    /// ([`crate::core::rpc::CallLog`]).
    pub call_memory: Duration,
    /// Calls remembered for one caller (full JID and tunnel key); its oldest is forgotten first.
    /// As large as [`ProviderLimits::calls_per_caller`] by default, so calls in flight are never
    /// pushed out by their own caller's newer calls.
    pub calls_remembered_per_caller: usize,
    /// Calls remembered for the household's own devices together; the oldest is forgotten
    /// first.
    pub calls_remembered: usize,
    /// Calls remembered for all guests together, apart from the household's (so a guest's
    /// flood of fresh ids never pushes out an own device's call); the oldest is forgotten first.
    pub calls_remembered_for_guests: usize,
    /// Bytes the remembered answers of own devices may take together (an estimate; guests get a
    /// quarter of it on top); the oldest are forgotten first. An answer over [`crate::core::rpc::dedup::MAX_REMEMBERED_ANSWER`] is remembered
    /// only as "it ran" ([`crate::core::rpc::dedup::FAULT_ANSWER_NOT_KEPT`]).
    pub calls_remembered_bytes: usize,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self {
            calls_in_flight: 256,
            calls_per_caller: 128,
            calls_for_guests: 32,
            calls_running: 64,
            subscriptions_per_guest: 8,
            subscriptions_for_guests: 256,
            audit_records: crate::core::access::DEFAULT_AUDIT_CAPACITY,
            call_memory: crate::core::rpc::dedup::DEFAULT_WINDOW,
            calls_remembered_per_caller: 128,
            calls_remembered: 1024,
            calls_remembered_for_guests: 256,
            calls_remembered_bytes: crate::core::rpc::dedup::DEFAULT_BYTES,
        }
    }
}

impl ProviderLimits {
    /// Refuses bounds that would lock everyone out or give guests everything.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::new(ErrorKind::Config, format!("limits: {why}")));
        if [
            self.calls_in_flight,
            self.calls_per_caller,
            self.calls_running,
            self.audit_records,
            self.calls_remembered_per_caller,
            self.calls_remembered,
            self.calls_remembered_for_guests,
        ]
        .contains(&0)
        {
            return bad(
                "calls in flight, per caller, running, remembered, and audit records must be ≥ 1",
            );
        }
        if self.calls_for_guests >= self.calls_in_flight.min(self.calls_running) {
            // Else slow guest calls could hold every place where services run.
            return bad("guests' calls must leave room (and running places) for own devices");
        }
        if self.subscriptions_for_guests >= crate::core::rpc::events::MAX_SUBSCRIBERS_PER_SERVICE {
            return bad("guests' subscriptions must leave room for the household's own devices");
        }
        Ok(())
    }
}

/// How often callers were refused by a bound or by the media policy since the provider started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderStats {
    /// Calls answered `resource-constraint` because too many were in flight.
    pub calls_refused_busy: u64,
    /// Subscriptions answered `resource-constraint` (guest quota, guests' share, service full).
    pub subscriptions_refused: u64,
    /// `player.play` / `player.enqueue` refused by the media policy.
    pub media_refused: u64,
    /// Calls remembered now (by call id, for retries).
    pub calls_remembered: u64,
    /// Retries answered from memory (or by waiting for the first run) instead of running again.
    pub calls_deduplicated: u64,
    /// Remembered calls forgotten early because a bound on the memory was reached.
    pub calls_forgotten: u64,
}

/// The live counters behind [`ProviderStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls_refused_busy: AtomicU64,
    pub(crate) subscriptions_refused: AtomicU64,
    pub(crate) media_refused: AtomicU64,
}

impl Counters {
    /// Counts one more.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ProviderStats {
        ProviderStats {
            calls_refused_busy: self.calls_refused_busy.load(Ordering::Relaxed),
            subscriptions_refused: self.subscriptions_refused.load(Ordering::Relaxed),
            media_refused: self.media_refused.load(Ordering::Relaxed),
            ..ProviderStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_guests_never_get_everything() {
        assert!(ProviderLimits::default().validate().is_ok());
        let greedy = ProviderLimits {
            calls_for_guests: 256,
            ..ProviderLimits::default()
        };
        assert_eq!(greedy.validate().unwrap_err().kind(), ErrorKind::Config);
        let none = ProviderLimits {
            calls_in_flight: 0,
            ..ProviderLimits::default()
        };
        assert!(none.validate().is_err());
    }
}
