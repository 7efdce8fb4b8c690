//! The bounds of the end-to-end layer and the counters that show when they were hit.
//!
//! Everything a peer can make this device hold (half-open Jingle sessions, pairing sessions, IBB
//! streams and their buffers, queued tunnel stanzas, tunnels being opened) has a bound here, and
//! each bound a policy: a stanza from the peer is refused with a typed stanza error
//! (`resource-constraint`, so the peer knows to retry later), or a local caller gets a typed
//! [`Error`](crate::core::error::Error). Nothing is ever dropped silently: every refusal bumps a
//! counter in [`E2eCounters`] and is logged.
//!
//! The half-open budget keeps room for the household: peers of other networks (guests, strangers)
//! share at most [`E2eLimits::half_open_foreign`] of the [`E2eLimits::half_open_total`] slots, so
//! a flood from outside never leaves the network's own devices without a slot.

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xmpp_parsers::jid::FullJid;

/// The bounds of one endpoint. The defaults suit a household (a few phones, a few TVs); tests
/// lower them to hit each bound cheaply.
#[derive(Debug, Clone)]
pub struct E2eLimits {
    /// Inbound Jingle sessions between session-initiate and an established tunnel (trust decision,
    /// accept, TLS, pairing), over all peers. Beyond: `resource-constraint`.
    pub half_open_total: usize,
    /// Of those, how many peers of other networks may hold together. Beyond: `resource-constraint`.
    pub half_open_foreign: usize,
    /// Inbound half-open sessions of one peer (full JID). Beyond: `resource-constraint`.
    pub half_open_per_peer: usize,
    /// Inbound pairing sessions (method `pake`) at once, over all peers (each peer's also count
    /// against its `half_open_per_peer`, so a phone can retry at once after a wrong code while
    /// the TV still winds the failed attempt down). Beyond: `resource-constraint`.
    pub pairing_sessions: usize,
    /// How long an inbound session may stay half-open in total, whatever its steps' own timeouts:
    /// then it is terminated (reason `timeout`) and its state freed.
    pub half_open_lifetime: Duration,
    /// Peers whose tunnel this device is opening at once (outbound). Beyond: a local error.
    pub opening_total: usize,
    /// Registered IBB streams (open tunnels and those being set up). Beyond:
    /// `resource-constraint` on the session-initiate, a local error on our own open.
    pub ibb_streams: usize,
    /// Inbound IBB bytes queued over all streams and not yet read by TLS. Beyond: the block is
    /// refused with `resource-constraint` (ending that stream; the others are unharmed). Streams
    /// not yet established hold at most [`SETUP_BYTES`](crate::core::e2e::ibb::SETUP_BYTES)
    /// each, so keep this well above `(half_open_total + opening_total) × SETUP_BYTES` (3 MiB
    /// at the defaults, against 8 MiB): the household's established tunnels then always find
    /// room, however many sessions others keep half-open.
    pub ibb_buffered_bytes: usize,
    /// Stanzas queued for one tunnel's writer. Beyond: [`crate::core::e2e::Tunnel::send`] fails
    /// with a typed error; [`crate::core::e2e::Tunnel::request`] waits for room (backpressure)
    /// within its own timeout.
    pub tunnel_outbound: usize,
}

impl Default for E2eLimits {
    fn default() -> Self {
        E2eLimits {
            half_open_total: 16,
            half_open_foreign: 8,
            half_open_per_peer: 2,
            pairing_sessions: 4,
            half_open_lifetime: Duration::from_secs(20),
            opening_total: 32,
            ibb_streams: 64,
            ibb_buffered_bytes: 8 * 1024 * 1024,
            tunnel_outbound: 256,
        }
    }
}

/// How often each bound was hit (and a few other refusals worth watching), since the endpoint
/// started. Read with [`E2eCounters::snapshot`].
#[derive(Debug, Default)]
pub struct E2eCounters {
    pub(crate) half_open_refused: AtomicU64,
    pub(crate) half_open_expired: AtomicU64,
    pub(crate) pairing_sessions_refused: AtomicU64,
    pub(crate) pairing_strangers_refused: AtomicU64,
    pub(crate) opening_refused: AtomicU64,
    pub(crate) ibb_streams_refused: AtomicU64,
    pub(crate) ibb_sid_conflicts: AtomicU64,
    pub(crate) ibb_stream_overflows: AtomicU64,
    pub(crate) ibb_setup_overflows: AtomicU64,
    pub(crate) ibb_total_overflows: AtomicU64,
    pub(crate) tunnel_outbound_full: AtomicU64,
    pub(crate) reset_failures: AtomicU64,
    pub(crate) key_reads: AtomicU64,
    pub(crate) key_reads_spared: AtomicU64,
}

/// A copy of [`E2eCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct E2eStats {
    /// Inbound session-initiates refused for lack of a half-open slot (total, foreign, per peer).
    pub half_open_refused: u64,
    /// Inbound sessions terminated because they stayed half-open too long.
    pub half_open_expired: u64,
    /// Pairing session-initiates refused because enough pairing sessions were running.
    pub pairing_sessions_refused: u64,
    /// Pairing session-initiates refused because the peer is not of this network.
    pub pairing_strangers_refused: u64,
    /// Pairing try counters forgotten to keep the per-peer map bounded (oldest first).
    pub pairing_peers_evicted: u64,
    /// Shown codes disarmed because too many wrong codes were tried against them (all peers).
    pub pairing_codes_exhausted: u64,
    /// Our own tunnel opens refused because too many were under way.
    pub opening_refused: u64,
    /// IBB streams refused because the registry was full.
    pub ibb_streams_refused: u64,
    /// IBB registrations refused because that peer already had a stream with that sid.
    pub ibb_sid_conflicts: u64,
    /// IBB streams ended because their peer sent more than the stream's buffer holds.
    pub ibb_stream_overflows: u64,
    /// IBB streams ended because their peer sent more than a tunnel setup needs before the
    /// tunnel was established.
    pub ibb_setup_overflows: u64,
    /// IBB blocks refused because all streams together buffered too much.
    pub ibb_total_overflows: u64,
    /// Tunnel stanzas refused because the tunnel's outbound queue was full.
    pub tunnel_outbound_full: u64,
    /// Tunnels (and their pending requests) failed because the XMPP session was reset.
    pub reset_failures: u64,
    /// Reads of our network's key node (published keys and revocation lists) made for a trust
    /// decision or after a notification of the node.
    pub key_reads: u64,
    /// Trust decisions before a tunnel that used the last read instead of reading again (it
    /// still stood: read on this connection, no change notified since, recent enough).
    pub key_reads_spared: u64,
}

impl E2eCounters {
    /// Counts one more; returns whether this one should be logged. Refusals a stranger can
    /// trigger at will are logged at the 1st, 2nd, 4th, 8th… occurrence only, so a flood cannot
    /// flood the log (the counter has the exact number).
    pub(crate) fn bump(counter: &AtomicU64) -> bool {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        n.is_power_of_two()
    }

    pub(crate) fn bump_by(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> E2eStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        E2eStats {
            half_open_refused: get(&self.half_open_refused),
            half_open_expired: get(&self.half_open_expired),
            pairing_sessions_refused: get(&self.pairing_sessions_refused),
            pairing_strangers_refused: get(&self.pairing_strangers_refused),
            // Counted by the pairing gate under its own lock; the endpoint fills it in.
            pairing_peers_evicted: 0,
            pairing_codes_exhausted: 0,
            opening_refused: get(&self.opening_refused),
            ibb_streams_refused: get(&self.ibb_streams_refused),
            ibb_sid_conflicts: get(&self.ibb_sid_conflicts),
            ibb_stream_overflows: get(&self.ibb_stream_overflows),
            ibb_setup_overflows: get(&self.ibb_setup_overflows),
            ibb_total_overflows: get(&self.ibb_total_overflows),
            tunnel_outbound_full: get(&self.tunnel_outbound_full),
            reset_failures: get(&self.reset_failures),
            key_reads: get(&self.key_reads),
            key_reads_spared: get(&self.key_reads_spared),
        }
    }
}

/// Why no half-open slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotRefusal {
    /// All slots (or all slots peers of other networks may use) are taken.
    Total,
    /// This peer holds its share already.
    PerPeer,
    /// Enough pairing sessions are running.
    Pairing,
}

impl SlotRefusal {
    pub(crate) fn text(self) -> &'static str {
        match self {
            SlotRefusal::Total => "too many end-to-end sessions are being set up; try again later",
            SlotRefusal::PerPeer => "this device is already setting up sessions with you",
            SlotRefusal::Pairing => "a pairing is already in progress; try again later",
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    total: usize,
    foreign: usize,
    pairing: usize,
    per_peer: HashMap<FullJid, usize>,
}

/// The inbound half-open budget (see [`E2eLimits`]). Slots are released when their [`Slot`] drops.
#[derive(Debug)]
pub(crate) struct HalfOpenSlots {
    limits: E2eLimits,
    state: Mutex<SlotState>,
}

/// One held half-open slot; dropping it gives it back.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<HalfOpenSlots>,
    peer: FullJid,
    foreign: bool,
    pairing: bool,
}

impl HalfOpenSlots {
    pub(crate) fn new(limits: E2eLimits) -> Arc<Self> {
        Arc::new(HalfOpenSlots {
            limits,
            state: Mutex::new(SlotState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        // Counter updates only: a poisoned lock still holds consistent numbers.
        self.state.locked()
    }

    /// A slot for a session from `peer` (`foreign`: of another network; `pairing`: method pake).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        peer: &FullJid,
        foreign: bool,
        pairing: bool,
    ) -> std::result::Result<Slot, SlotRefusal> {
        let limits = &self.limits;
        let mut state = self.lock();
        if state.total >= limits.half_open_total
            || (foreign && state.foreign >= limits.half_open_foreign)
        {
            return Err(SlotRefusal::Total);
        }
        let mine = state.per_peer.get(peer).copied().unwrap_or(0);
        if mine >= limits.half_open_per_peer {
            return Err(SlotRefusal::PerPeer);
        }
        if pairing && state.pairing >= limits.pairing_sessions {
            return Err(SlotRefusal::Pairing);
        }
        state.total += 1;
        state.foreign += usize::from(foreign);
        state.pairing += usize::from(pairing);
        state.per_peer.insert(peer.clone(), mine + 1);
        Ok(Slot {
            slots: self.clone(),
            peer: peer.clone(),
            foreign,
            pairing,
        })
    }

    /// Slots in use (total, of which pairing).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> (usize, usize) {
        let state = self.lock();
        (state.total, state.pairing)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.total = state.total.saturating_sub(1);
        if self.foreign {
            state.foreign = state.foreign.saturating_sub(1);
        }
        if self.pairing {
            state.pairing = state.pairing.saturating_sub(1);
        }
        let emptied = match state.per_peer.get_mut(&self.peer) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        // Drop the peer's entry with its last slot: the map never outgrows the slots in use.
        if emptied {
            state.per_peer.remove(&self.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> FullJid {
        s.parse().unwrap()
    }

    fn limits() -> E2eLimits {
        E2eLimits {
            half_open_total: 4,
            half_open_foreign: 2,
            half_open_per_peer: 2,
            pairing_sessions: 1,
            ..E2eLimits::default()
        }
    }

    #[test]
    fn slots_are_bounded_per_peer_in_total_and_for_foreign_peers_and_come_back_on_drop() {
        let slots = HalfOpenSlots::new(limits());
        let phone = jid("home@home.test/phone");
        let a = slots.acquire(&phone, false, false).unwrap();
        let _b = slots.acquire(&phone, false, false).unwrap();
        assert_eq!(
            slots.acquire(&phone, false, false).unwrap_err(),
            SlotRefusal::PerPeer
        );
        // Strangers share the foreign part only…
        let _s1 = slots.acquire(&jid("evil@x.test/1"), true, false).unwrap();
        let _s2 = slots.acquire(&jid("evil@x.test/2"), true, false).unwrap();
        assert_eq!(
            slots
                .acquire(&jid("evil@x.test/3"), true, false)
                .unwrap_err(),
            SlotRefusal::Total
        );
        assert_eq!(slots.in_use(), (4, 0));
        // …and the total is the total.
        assert_eq!(
            slots
                .acquire(&jid("home@home.test/tablet"), false, false)
                .unwrap_err(),
            SlotRefusal::Total
        );
        drop(a);
        let _c = slots
            .acquire(&jid("home@home.test/tablet"), false, false)
            .unwrap();
    }

    #[test]
    fn pairing_sessions_are_bounded_in_total_and_per_peer() {
        let slots = HalfOpenSlots::new(limits());
        let phone = jid("home@home.test/phone");
        let p = slots.acquire(&phone, false, true).unwrap();
        assert_eq!(
            slots
                .acquire(&jid("home@home.test/tablet"), false, true)
                .unwrap_err(),
            SlotRefusal::Pairing
        );
        // A pinned session of the same peer is still fine, up to its share.
        let _x = slots.acquire(&phone, false, false).unwrap();
        assert_eq!(
            slots.acquire(&phone, false, false).unwrap_err(),
            SlotRefusal::PerPeer
        );
        drop(p);
        assert_eq!(slots.in_use(), (1, 0));
        let _q = slots
            .acquire(&jid("home@home.test/tablet"), false, true)
            .unwrap();
    }
}
