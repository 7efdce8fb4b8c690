//! Bounds on the disco#info queries that presences trigger.
//!
//! Presence is outside input: a network's devices (or a host's, once trusted) can announce any
//! number of distinct hashes, and every unknown hash costs an iq round trip. So at most one query
//! is in flight per announced hash (the other devices announcing it wait for its answer), at most
//! [`QueryLimits::max_in_flight`] in all, and at most [`QueryLimits::max_queued`] more wait for a
//! slot; beyond that a presence is dropped, and the caller forgets it so that the device's next
//! presence is looked at again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use xmpp_parsers::jid::FullJid;

use super::caps::{Advertised, CapsKey};

/// disco#info queries sent by the controllers of this process.
static SENT: AtomicU64 = AtomicU64::new(0);

/// disco#info queries sent so far by every controller of this process (a benchmark's figure:
/// `cargo xtask soak` holds it to the number of distinct caps hashes).
pub fn info_queries_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// Counts one disco#info query sent.
pub(crate) fn count_info_query() {
    SENT.fetch_add(1, Ordering::Relaxed);
}

/// How many disco#info queries may be pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Queries sent and not answered yet (default 8: a household has a few devices, and each
    /// query is bounded by the iq timeout).
    pub max_in_flight: usize,
    /// Queries waiting for a slot (default 256).
    pub max_queued: usize,
    /// Devices waiting for the answer of one hash's query (default 64).
    pub max_waiting_per_hash: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_in_flight: 8,
            max_queued: 256,
            max_waiting_per_hash: 64,
        }
    }
}

/// What to do with a device whose disco#info is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryStart {
    /// Send the query now.
    Send,
    /// A query for the same hash is in flight: its answer will serve this device too.
    Joined,
    /// All slots are taken: [`InfoQueries::next_ready`] hands it out later.
    Queued,
    /// Over every bound: not queried (the caller should forget the presence).
    Dropped,
}

/// One disco#info query to make: the device and the caps it is made for.
pub type InfoQuery = (FullJid, Option<Advertised>);

/// The in-flight and queued disco#info queries of one controller.
#[derive(Debug, Default)]
pub struct InfoQueries {
    limits: QueryLimits,
    in_flight: usize,
    /// Hash of a query in flight → devices waiting for its answer.
    by_key: HashMap<CapsKey, Vec<FullJid>>,
    queued: VecDeque<InfoQuery>,
    dropped: u64,
}

impl InfoQueries {
    /// A tracker with `limits`.
    pub fn new(limits: QueryLimits) -> Self {
        InfoQueries {
            limits,
            ..Self::default()
        }
    }

    /// Asks for `jid`'s disco#info, made for `caps`.
    pub fn request(&mut self, jid: FullJid, caps: Option<&Advertised>) -> QueryStart {
        let key = caps.and_then(Advertised::primary);
        if let Some(waiting) = key.and_then(|k| self.by_key.get_mut(k)) {
            if waiting.contains(&jid) {
                return QueryStart::Joined;
            }
            if waiting.len() < self.limits.max_waiting_per_hash {
                waiting.push(jid);
                return QueryStart::Joined;
            }
            return self.drop_one(&jid);
        }
        if self.in_flight < self.limits.max_in_flight.max(1) {
            self.start(key);
            return QueryStart::Send;
        }
        // A device that changed its caps again while queued needs only its latest query.
        self.queued.retain(|(queued, _)| queued != &jid);
        if self.queued.len() < self.limits.max_queued {
            self.queued.push_back((jid, caps.cloned()));
            return QueryStart::Queued;
        }
        self.drop_one(&jid)
    }

    fn drop_one(&mut self, jid: &FullJid) -> QueryStart {
        self.dropped += 1;
        tracing::warn!(%jid, dropped = self.dropped, "too many disco#info queries pending; presence dropped");
        QueryStart::Dropped
    }

    fn start(&mut self, key: Option<&CapsKey>) {
        self.in_flight += 1;
        if let Some(key) = key {
            self.by_key.insert(key.clone(), vec![]);
        }
    }

    /// The query made for `caps` was answered (or failed): frees its slot and returns the devices
    /// that waited for the same hash.
    pub fn finished(&mut self, caps: Option<&Advertised>) -> Vec<FullJid> {
        // Saturating: after `clear`, queries of the old stream still finish.
        self.in_flight = self.in_flight.saturating_sub(1);
        caps.and_then(Advertised::primary)
            .and_then(|key| self.by_key.remove(key))
            .unwrap_or_default()
    }

    /// Queued queries that may be sent now (each already counted as in flight). A queued device
    /// whose hash got a query in flight meanwhile joins it instead.
    pub fn next_ready(&mut self) -> Vec<InfoQuery> {
        let mut ready = Vec::new();
        while self.in_flight < self.limits.max_in_flight.max(1) {
            let Some((jid, caps)) = self.queued.pop_front() else {
                break;
            };
            match self.request(jid.clone(), caps.as_ref()) {
                QueryStart::Send => ready.push((jid, caps)),
                QueryStart::Joined | QueryStart::Dropped => {}
                QueryStart::Queued => {
                    // Unreachable while a slot is free; keep it rather than lose it.
                    break;
                }
            }
        }
        ready
    }

    /// Forgets waiting and queued devices (the stream was reset). Queries already sent still count
    /// until they finish: they hold an iq each.
    pub fn clear(&mut self) {
        self.by_key.clear();
        self.queued.clear();
    }

    /// Queries sent and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queries waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// Presences dropped over the bounds since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::discovery::{caps_for, disco_info_for};

    fn jid(i: usize) -> FullJid {
        format!("home@home.test/dev{i}").parse().expect("full JID")
    }

    fn caps(i: usize) -> Advertised {
        Advertised::from_caps(&caps_for(&disco_info_for(Some(&format!("TV {i}")), &[])))
    }

    #[test]
    fn one_query_per_hash_and_a_cap_on_the_total() {
        let limits = QueryLimits {
            max_in_flight: 2,
            max_queued: 2,
            max_waiting_per_hash: 1,
        };
        let mut q = InfoQueries::new(limits);
        let a = caps(0);
        assert_eq!(q.request(jid(0), Some(&a)), QueryStart::Send);
        // Same hash: joins, once per device, bounded.
        assert_eq!(q.request(jid(1), Some(&a)), QueryStart::Joined);
        assert_eq!(q.request(jid(1), Some(&a)), QueryStart::Joined);
        assert_eq!(q.request(jid(2), Some(&a)), QueryStart::Dropped);
        // Other hashes: one more slot, then the queue, then dropped.
        assert_eq!(q.request(jid(3), Some(&caps(3))), QueryStart::Send);
        assert_eq!(q.request(jid(4), Some(&caps(4))), QueryStart::Queued);
        assert_eq!(q.request(jid(5), None), QueryStart::Queued);
        assert_eq!(q.request(jid(6), Some(&caps(6))), QueryStart::Dropped);
        assert_eq!((q.in_flight(), q.queued(), q.dropped()), (2, 2, 2));

        // The first answer frees a slot and hands out the waiting device and one queued query.
        assert_eq!(q.finished(Some(&a)), vec![jid(1)]);
        assert_eq!(q.next_ready(), vec![(jid(4), Some(caps(4)))]);
        assert_eq!((q.in_flight(), q.queued()), (2, 1));
        assert!(q.next_ready().is_empty(), "no free slot");
        assert!(q.finished(Some(&caps(3))).is_empty());
        assert_eq!(q.next_ready(), vec![(jid(5), None)]);
        assert_eq!((q.in_flight(), q.queued()), (2, 0));
    }

    #[test]
    fn a_device_is_queued_once_with_its_latest_caps() {
        let mut q = InfoQueries::new(QueryLimits {
            max_in_flight: 1,
            ..QueryLimits::default()
        });
        assert_eq!(q.request(jid(0), Some(&caps(0))), QueryStart::Send);
        for i in 1..10 {
            assert_eq!(q.request(jid(1), Some(&caps(i))), QueryStart::Queued);
        }
        assert_eq!(q.queued(), 1);
        q.finished(Some(&caps(0)));
        assert_eq!(q.next_ready(), vec![(jid(1), Some(caps(9)))]);
    }

    #[test]
    fn many_distinct_hashes_never_exceed_the_bounds() {
        let mut q = InfoQueries::default();
        let limits = QueryLimits::default();
        let mut sent = 0;
        for i in 0..10_000 {
            if q.request(jid(i), Some(&caps(i % 2_000))) == QueryStart::Send {
                sent += 1;
            }
            assert!(q.in_flight() <= limits.max_in_flight);
            assert!(q.queued() <= limits.max_queued);
        }
        assert_eq!(sent, limits.max_in_flight);
        q.clear();
        assert_eq!(q.queued(), 0);
        assert_eq!(
            q.in_flight(),
            limits.max_in_flight,
            "sent queries still hold their iq"
        );
    }
}
