//! What an owner device does with incoming guest requests before a person sees them.
//!
//! Requests come from strangers, so everything here is bounded: at most `max_pending` requests wait
//! for the owner, at most `max_tracked_guests` guests are remembered for rate limiting and
//! de-duplication, and the owner is notified at most `notify_burst` times at once and then once per
//! `notify_interval_secs`, whatever the number of JIDs a flood comes from. The same guest, device,
//! scopes and item within `dedupe_window_secs` is one request, however often it is sent.
//!
//! Memory is O(max_pending + max_tracked_guests × per_guest_burst), independent of the flood.
//!
//! Fairness, so strangers cannot crowd a real guest out: one server domain holds at most
//! `max_pending_per_domain` of the pending requests (a flood from one server fills only its share),
//! and when all places are taken a request from another domain replaces the oldest request of the
//! domain holding the most; when `max_tracked_guests` is reached the oldest window is forgotten
//! rather than the newcomer refused. What was refused or evicted is counted ([`IntakeStats`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use xmpp_parsers::jid::{BareJid, FullJid};

use super::{AccessRequest, DeviceFingerprint, ItemId, Reason, Scope};

/// The bounds of a [`RequestIntake`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntakeLimits {
    /// Requests waiting for the owner at once.
    pub max_pending: usize,
    /// Of those, requests from one server domain (the part after `@`).
    pub max_pending_per_domain: usize,
    /// How long a request waits before it is dropped unanswered.
    pub pending_ttl_secs: u64,
    /// Guests remembered for rate limiting and de-duplication.
    pub max_tracked_guests: usize,
    /// Window for de-duplication and the per-guest limit.
    pub dedupe_window_secs: u64,
    /// Distinct requests one guest (bare JID) may make per window.
    pub per_guest_burst: usize,
    /// Notifications the owner may receive at once.
    pub notify_burst: u32,
    /// Then one more notification per this many seconds.
    pub notify_interval_secs: u64,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            max_pending: 32,
            max_pending_per_domain: 8,
            pending_ttl_secs: 15 * 60,
            max_tracked_guests: 1024,
            dedupe_window_secs: 10 * 60,
            per_guest_burst: 3,
            notify_burst: 5,
            notify_interval_secs: 30,
        }
    }
}

/// A request waiting for the owner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingRequest {
    /// Local id, to answer with [`RequestIntake::take`].
    pub id: u64,
    /// The asking guest's full JID (the stanza's `from`).
    pub guest: FullJid,
    /// The device fingerprint the request names.
    pub device: DeviceFingerprint,
    /// The scopes wanted.
    pub scopes: Vec<Scope>,
    /// The item, for `library-item`.
    pub item: Option<ItemId>,
    /// The guest's reason.
    pub reason: Option<Reason>,
    /// When it arrived (this device's clock).
    pub received_at: u64,
}

/// What [`RequestIntake::offer`] did with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Intake {
    /// New: show it to the owner now (`on_access_request`).
    Notify(PendingRequest),
    /// New and pending, but the owner was notified too often lately: it is in
    /// [`RequestIntake::pending`] without a new notification.
    Queued(u64),
    /// The same request was seen within the window (pending id, if still pending).
    Duplicate(Option<u64>),
    /// This guest sent too many distinct requests within the window.
    RateLimited,
    /// The requester's server domain holds its share of the pending places (or all of them):
    /// dropped.
    Full,
}

/// What a [`RequestIntake`] refused or evicted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntakeStats {
    /// Requests refused because their domain held its share, or every place was held by it.
    pub refused_full: u64,
    /// Pending requests evicted to make room for a request from another domain.
    pub evicted_pending: u64,
    /// Guests forgotten (oldest window first) to make room for a new one.
    pub evicted_guests: u64,
    /// Requests over a guest's per-window burst.
    pub rate_limited: u64,
}

/// What makes two requests of one guest the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RequestKey {
    device: DeviceFingerprint,
    scopes: Vec<Scope>,
    item: Option<ItemId>,
}

#[derive(Debug)]
struct GuestWindow {
    started: u64,
    /// Distinct requests this window, with their pending id (≤ per_guest_burst entries).
    seen: Vec<(RequestKey, u64)>,
}

/// De-duplicates, rate-limits and bounds guest requests on an owner device.
///
/// ```
/// use pmn::core::access::{AccessRequest, DeviceFingerprint, Intake, IntakeLimits, RequestIntake, Scope};
/// let mut intake = RequestIntake::new(IntakeLimits::default());
/// let romeo = "romeo@friend.test/phone".parse().unwrap();
/// let req = AccessRequest::new(DeviceFingerprint([1; 32]), vec![Scope::Playback], None);
/// let Intake::Notify(pending) = intake.offer(&romeo, &req, 100) else { panic!() };
/// assert!(matches!(intake.offer(&romeo, &req, 101), Intake::Duplicate(Some(_))));
/// assert_eq!(intake.take(pending.id).map(|p| p.guest), Some(romeo));
/// ```
#[derive(Debug)]
pub struct RequestIntake {
    limits: IntakeLimits,
    pending: BTreeMap<u64, PendingRequest>,
    guests: HashMap<BareJid, GuestWindow>,
    /// Guests in the order their windows started (so expired windows are found at the front).
    window_order: VecDeque<(BareJid, u64)>,
    notify_tokens: u32,
    last_refill: u64,
    next_id: u64,
    stats: IntakeStats,
}

impl RequestIntake {
    /// An empty intake with these bounds.
    pub fn new(limits: IntakeLimits) -> Self {
        RequestIntake {
            notify_tokens: limits.notify_burst,
            limits,
            pending: BTreeMap::new(),
            guests: HashMap::new(),
            window_order: VecDeque::new(),
            last_refill: 0,
            next_id: 1,
            stats: IntakeStats::default(),
        }
    }

    /// What was refused or evicted so far.
    pub fn stats(&self) -> IntakeStats {
        self.stats
    }

    fn pending_of(&self, domain: &str) -> usize {
        self.pending
            .values()
            .filter(|p| p.guest.domain().as_str() == domain)
            .count()
    }

    /// Makes a place for a request from `domain`, or says it cannot have one.
    fn make_room(&mut self, domain: &str) -> bool {
        if self.pending_of(domain) >= self.limits.max_pending_per_domain {
            return false;
        }
        if self.pending.len() < self.limits.max_pending {
            return true;
        }
        // Full: the domain holding the most gives up its oldest request (ids grow with time).
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for p in self.pending.values() {
            *counts.entry(p.guest.domain().as_str()).or_default() += 1;
        }
        let heaviest = counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(d, _)| d.to_owned());
        let Some(heaviest) = heaviest.filter(|d| d != domain) else {
            return false;
        };
        let oldest = self
            .pending
            .iter()
            .find(|(_, p)| p.guest.domain().as_str() == heaviest)
            .map(|(id, _)| *id);
        match oldest {
            Some(id) => {
                self.pending.remove(&id);
                self.stats.evicted_pending += 1;
                true
            }
            None => false,
        }
    }

    /// Forgets the oldest guest window so a new guest can be tracked.
    fn forget_oldest_guest(&mut self) {
        while let Some((bare, started)) = self.window_order.pop_front() {
            if self.guests.get(&bare).is_some_and(|w| w.started == started) {
                self.guests.remove(&bare);
                self.stats.evicted_guests += 1;
                return;
            }
        }
    }

    /// Takes in a validated request from `from` at `now` and says what to do with it.
    pub fn offer(&mut self, from: &FullJid, request: &AccessRequest, now: u64) -> Intake {
        self.expire(now);
        let bare = from.to_bare();
        let mut scopes = request.scopes.clone();
        scopes.sort_unstable();
        scopes.dedup();
        let key = RequestKey {
            device: request.device,
            scopes,
            item: request.item.clone(),
        };

        if let Some(window) = self.guests.get(&bare) {
            if let Some((_, id)) = window.seen.iter().find(|(k, _)| *k == key) {
                let id = *id;
                return Intake::Duplicate(self.pending.contains_key(&id).then_some(id));
            }
            if window.seen.len() >= self.limits.per_guest_burst {
                self.stats.rate_limited += 1;
                return Intake::RateLimited;
            }
        }
        if !self.make_room(from.domain().as_str()) {
            self.stats.refused_full += 1;
            return Intake::Full;
        }
        if !self.guests.contains_key(&bare) && self.guests.len() >= self.limits.max_tracked_guests {
            self.forget_oldest_guest();
        }

        let id = self.next_id;
        self.next_id += 1;
        let window = self.guests.entry(bare.clone()).or_insert_with(|| {
            self.window_order.push_back((bare, now));
            GuestWindow {
                started: now,
                seen: Vec::new(),
            }
        });
        window.seen.push((key.clone(), id));
        let pending = PendingRequest {
            id,
            guest: from.clone(),
            device: key.device,
            scopes: key.scopes,
            item: key.item,
            reason: request.reason.clone(),
            received_at: now,
        };
        self.pending.insert(id, pending.clone());

        self.refill(now);
        if self.notify_tokens > 0 {
            self.notify_tokens -= 1;
            Intake::Notify(pending)
        } else {
            Intake::Queued(id)
        }
    }

    /// Removes a pending request (the owner approved or denied it). Its window entry stays, so the
    /// guest re-sending the same request within the window does not ring the owner again.
    pub fn take(&mut self, id: u64) -> Option<PendingRequest> {
        self.pending.remove(&id)
    }

    /// The requests waiting for the owner, oldest first.
    pub fn pending(&self) -> Vec<PendingRequest> {
        self.pending.values().cloned().collect()
    }

    /// How many requests are pending.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// How many guests are tracked for rate limiting.
    pub fn tracked_guests(&self) -> usize {
        self.guests.len()
    }

    /// The bounds.
    pub fn limits(&self) -> &IntakeLimits {
        &self.limits
    }

    fn refill(&mut self, now: u64) {
        let interval = self.limits.notify_interval_secs.max(1);
        if self.last_refill == 0 || now < self.last_refill {
            // First use, or the clock went back: restart the schedule without minting tokens.
            self.last_refill = now;
            return;
        }
        let earned = (now - self.last_refill) / interval;
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.notify_tokens = self
                .notify_tokens
                .saturating_add(earned)
                .min(self.limits.notify_burst);
            self.last_refill += u64::from(earned) * interval;
        }
    }

    fn expire(&mut self, now: u64) {
        let ttl = self.limits.pending_ttl_secs;
        // Ids grow with arrival time, so the oldest pending requests are first.
        while let Some((&id, p)) = self.pending.iter().next() {
            if p.received_at.saturating_add(ttl) > now {
                break;
            }
            self.pending.remove(&id);
        }
        let window = self.limits.dedupe_window_secs;
        while let Some((bare, started)) = self.window_order.front() {
            if started.saturating_add(window) > now {
                break;
            }
            if self.guests.get(bare).is_some_and(|w| w.started == *started) {
                self.guests.remove(bare);
            }
            self.window_order.pop_front();
        }
    }
}

#[cfg(test)]
impl RequestIntake {
    /// Entries held across every internal collection: what the flood tests bound.
    pub(super) fn footprint(&self) -> usize {
        self.pending.len()
            + self.guests.len()
            + self.window_order.len()
            + self.guests.values().map(|w| w.seen.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod fairness_tests {
    use super::*;

    fn req(device: u8) -> AccessRequest {
        AccessRequest::new(DeviceFingerprint([device; 32]), vec![Scope::Playback], None)
    }

    #[test]
    fn a_flood_from_one_server_takes_only_its_share_and_a_real_guest_gets_in() {
        let mut intake = RequestIntake::new(IntakeLimits::default());
        let limits = intake.limits().clone();
        for i in 0..200 {
            let from: FullJid = format!("bot{i}@flood.test/x").parse().expect("jid");
            intake.offer(&from, &req(1), 1_000);
        }
        assert_eq!(intake.pending_len(), limits.max_pending_per_domain);
        assert!(intake.stats().refused_full >= 190);
        let romeo: FullJid = "romeo@friend.test/phone".parse().expect("jid");
        let outcome = intake.offer(&romeo, &req(2), 1_001);
        assert!(
            matches!(outcome, Intake::Notify(_) | Intake::Queued(_)),
            "{outcome:?}"
        );
        assert!(intake.pending().iter().any(|p| p.guest == romeo));
    }

    #[test]
    fn floods_from_many_servers_cannot_fill_every_place_against_a_newcomer() {
        let mut intake = RequestIntake::new(IntakeLimits::default());
        for d in 0..40 {
            for i in 0..20 {
                let from: FullJid = format!("bot{i}@flood{d}.test/x").parse().expect("jid");
                intake.offer(&from, &req(1), 1_000);
            }
        }
        assert_eq!(intake.pending_len(), intake.limits().max_pending);
        let romeo: FullJid = "romeo@friend.test/phone".parse().expect("jid");
        assert!(matches!(
            intake.offer(&romeo, &req(2), 1_001),
            Intake::Notify(_) | Intake::Queued(_)
        ));
        assert!(intake.pending().iter().any(|p| p.guest == romeo));
        assert!(intake.pending_len() <= intake.limits().max_pending);
        assert!(intake.stats().evicted_pending >= 1);
    }

    #[test]
    fn a_full_guest_table_forgets_its_oldest_window_instead_of_refusing() {
        let limits = IntakeLimits {
            max_tracked_guests: 4,
            max_pending_per_domain: 100,
            max_pending: 100,
            ..IntakeLimits::default()
        };
        let mut intake = RequestIntake::new(limits);
        for i in 0..10 {
            let from: FullJid = format!("g{i}@d{i}.test/x").parse().expect("jid");
            assert!(!matches!(
                intake.offer(&from, &req(1), 1_000 + i),
                Intake::Full
            ));
        }
        assert!(intake.tracked_guests() <= 4);
        assert_eq!(intake.stats().evicted_guests, 6);
    }
}
