//! What an owner device does with incoming guest requests before a person sees them.
//!
//! Requests come from strangers, so everything here is bounded: at most `max_pending` requests wait
//! for the owner, at most `max_tracked_guests` guests are remembered for rate limiting and
//! de-duplication, and the owner is notified at most `notify_burst` times at once and then once per
//! `notify_interval_secs`, whatever the number of JIDs a flood comes from. The same guest, device,
//! scopes and item within `dedupe_window_secs` is one request, however often it is sent.
//!
//! Memory is O(max_pending + max_tracked_guests × per_guest_burst), independent of the flood.

use std::collections::{BTreeMap, HashMap, VecDeque};

use xmpp_parsers::jid::{BareJid, FullJid};

use super::{AccessRequest, DeviceFingerprint, ItemId, Reason, Scope};

/// The bounds of a [`RequestIntake`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntakeLimits {
    /// Requests waiting for the owner at once.
    pub max_pending: usize,
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
    /// Too many requests are pending, or too many guests are tracked: dropped.
    Full,
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
                return Intake::RateLimited;
            }
        } else if self.guests.len() >= self.limits.max_tracked_guests {
            return Intake::Full;
        }
        if self.pending.len() >= self.limits.max_pending {
            return Intake::Full;
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
