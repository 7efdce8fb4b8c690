//! The access audit log: what happened, for the owner to read (DESIGN §5 "the provider logs request /
//! grant / use / revoke").
//!
//! Bounded, and built so that a flood cannot erase what the owner needs to read:
//!
//! - **folding**: an event identical to one still held (same kind, caller, device, grant, method and
//!   detail — a guest alternating pause and resume, a stranger hammering one method) only raises
//!   that record's count and `last_at`; it costs no room, however the calls interleave;
//! - **priority eviction**: when the log is full, the record that goes is the oldest of the lowest
//!   tier held — routine `use` records first, then guests' `request`s, then refusals (`deny`), and
//!   grants and revocations last. A new record of a lower tier than everything held is not kept.
//!   So ~170 strangers each sending the three requests the intake lets through push out only
//!   `use` and older `request` records, never a refusal, a grant or a revocation;
//! - **per-caller quota**: a caller (bare JID) that already holds a quarter of the log pays for its
//!   next record with its own oldest, lowest-tier one: one guest's varied refusals cannot flush
//!   the other guests' records.
//!
//! Every eviction is counted by kind ([`AuditLog::evictions`]). The log is kept in memory, not
//! persisted: persisting would not remove the bound (a file must be bounded too), and writing on
//! every guest call would put blocking file I/O on the call path; grants and revocations, the
//! records that matter across a restart, are in the persisted ACL itself.
//! Serialisable with serde so the provider can hand it to the owner (RPC or a private PEP node).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Records kept by default.
pub const DEFAULT_AUDIT_CAPACITY: usize = 512;

/// Longest text copied into a record from the network (method names, JIDs); longer is cut, so a
/// stranger's 3 KiB method name costs the log no more than a real one.
const MAX_FIELD_BYTES: usize = 128;

/// What an [`AuditRecord`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// A guest asked for access.
    Request,
    /// A grant was installed.
    Grant,
    /// A guest's call was allowed by a grant.
    Use,
    /// A call was refused.
    Deny,
    /// A grant was revoked (or dropped because its issuer left the network).
    Revoke,
}

/// One event of the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Increasing sequence number (the owner's phone asks for records after the last it saw).
    pub seq: u64,
    /// When it (first) happened, seconds since the epoch by the recorder's clock.
    pub at: u64,
    /// When it last happened, for folded records.
    pub last_at: u64,
    /// How many identical events this record stands for (≥ 1).
    pub count: u32,
    /// What happened.
    pub kind: AuditKind,
    /// Who: the caller's full JID, or the guest's bare JID for grants and revocations.
    pub subject: String,
    /// The caller's device fingerprint (hex), when known.
    pub device: Option<String>,
    /// The grant involved.
    pub grant_id: Option<String>,
    /// The method called, for use and deny.
    pub method: Option<String>,
    /// A short detail (deny reason, scopes, …).
    pub detail: String,
}

/// How many records of each kind the log evicted (or did not keep) to stay within its capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuditEvictions {
    /// Routine `use` records.
    pub uses: u64,
    /// `request` records.
    pub requests: u64,
    /// `deny` records (refusals).
    pub denials: u64,
    /// `grant` and `revoke` records.
    pub grants_and_revocations: u64,
}

impl AuditKind {
    /// How much the owner needs this kind of record: the lowest tier goes first when full.
    fn tier(self) -> u8 {
        match self {
            AuditKind::Use => 0,
            AuditKind::Request => 1,
            AuditKind::Deny => 2,
            AuditKind::Grant | AuditKind::Revoke => 3,
        }
    }
}

impl AuditRecord {
    /// The caller a record is charged to: the bare JID of its subject.
    fn payer(&self) -> &str {
        self.subject.split('/').next().unwrap_or_default()
    }

    fn same_event(&self, other: &AuditRecord) -> bool {
        self.kind == other.kind
            && self.subject == other.subject
            && self.device == other.device
            && self.grant_id == other.grant_id
            && self.method == other.method
            && self.detail == other.detail
    }
}

fn clip(text: &str) -> String {
    if text.len() <= MAX_FIELD_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The index of the record of the lowest tier, oldest first among equals.
fn lowest_oldest<'a>(records: impl Iterator<Item = (usize, &'a AuditRecord)>) -> Option<usize> {
    records
        .min_by_key(|(i, r)| (r.kind.tier(), *i))
        .map(|(i, _)| i)
}

/// A bounded, serialisable log of access events.
///
/// ```
/// use pmn::core::access::{AuditKind, AuditLog};
/// let mut log = AuditLog::new(2);
/// log.record(10, AuditKind::Deny, "eve@evil.test/x", None, None, Some("player.play"), "no-grant");
/// log.record(11, AuditKind::Deny, "eve@evil.test/x", None, None, Some("player.play"), "no-grant");
/// assert_eq!(log.len(), 1);                    // folded
/// assert_eq!(log.records()[0].count, 2);
/// let json = log.to_json().unwrap();
/// assert_eq!(AuditLog::from_json(&json, 2).unwrap().records(), log.records());
/// ```
#[derive(Clone, Debug)]
pub struct AuditLog {
    capacity: usize,
    records: VecDeque<AuditRecord>,
    next_seq: u64,
    evictions: AuditEvictions,
}

impl Default for AuditLog {
    fn default() -> Self {
        AuditLog::new(DEFAULT_AUDIT_CAPACITY)
    }
}

impl AuditLog {
    /// An empty log keeping at most `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        AuditLog {
            capacity,
            records: VecDeque::with_capacity(capacity.min(64)),
            next_seq: 1,
            evictions: AuditEvictions::default(),
        }
    }

    /// Appends an event (or folds it into the newest record if identical); returns its record's seq.
    #[allow(clippy::too_many_arguments)] // one flat call per event reads better than a builder here
    pub fn record(
        &mut self,
        at: u64,
        kind: AuditKind,
        subject: &str,
        device: Option<&str>,
        grant_id: Option<&str>,
        method: Option<&str>,
        detail: &str,
    ) -> u64 {
        let record = AuditRecord {
            seq: self.next_seq,
            at,
            last_at: at,
            count: 1,
            kind,
            subject: clip(subject),
            device: device.map(clip),
            grant_id: grant_id.map(clip),
            method: method.map(clip),
            detail: clip(detail),
        };
        // Newest first: a repeat is most often of a recent event.
        if let Some(held) = self
            .records
            .iter_mut()
            .rev()
            .find(|r| r.same_event(&record))
        {
            held.count = held.count.saturating_add(1);
            held.last_at = held.last_at.max(at);
            return held.seq;
        }
        let seq = record.seq;
        // Saturates: a log read back from JSON may already stand at `u64::MAX`.
        self.next_seq = self.next_seq.saturating_add(1);
        if self.records.len() >= self.capacity && !self.make_room(&record) {
            self.count_eviction(record.kind);
            return seq;
        }
        self.records.push_back(record);
        seq
    }

    /// Evicts one record to make room for `new`; `false` when `new` itself is the one not to keep.
    fn make_room(&mut self, new: &AuditRecord) -> bool {
        let quota = (self.capacity / 4).max(1);
        let payer = new.payer();
        let held_by_payer = self.records.iter().filter(|r| r.payer() == payer).count();
        let victim = if held_by_payer >= quota {
            // The caller pays with its own records (lowest tier, then oldest).
            lowest_oldest(
                self.records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.payer() == payer),
            )
        } else {
            lowest_oldest(self.records.iter().enumerate())
        };
        let Some(index) = victim else {
            return false;
        };
        let victim_tier = self.records.get(index).map_or(0, |r| r.kind.tier());
        if victim_tier > new.kind.tier() {
            // Everything it could replace matters more than the newcomer.
            return false;
        }
        if let Some(gone) = self.records.remove(index) {
            self.count_eviction(gone.kind);
        }
        true
    }

    fn count_eviction(&mut self, kind: AuditKind) {
        let counter = match kind {
            AuditKind::Use => &mut self.evictions.uses,
            AuditKind::Request => &mut self.evictions.requests,
            AuditKind::Deny => &mut self.evictions.denials,
            AuditKind::Grant | AuditKind::Revoke => &mut self.evictions.grants_and_revocations,
        };
        *counter = counter.saturating_add(1);
    }

    /// How many records were evicted (or not kept), by kind.
    pub fn evictions(&self) -> AuditEvictions {
        self.evictions
    }

    /// All records, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records.iter().cloned().collect()
    }

    /// Records with `seq > after` (a folded record whose count grew keeps its seq; ask again with
    /// `after = seq - 1` to see it updated).
    pub fn since(&self, after: u64) -> Vec<AuditRecord> {
        // Records are in sequence order: find the first new one instead of scanning them all (the
        // provider asks after every guest call, and usually there is none).
        let first = self.records.partition_point(|r| r.seq <= after);
        self.records.range(first..).cloned().collect()
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The most records kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The records as a JSON array.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&self.records)
    }

    /// A log from a JSON array (as [`AuditLog::to_json`] wrote), keeping the newest `capacity`.
    ///
    /// The text may come from a file or a peer: records are put back in sequence order (which
    /// [`AuditLog::since`] relies on) and a sequence number at `u64::MAX` does not overflow.
    pub fn from_json(json: &str, capacity: usize) -> Result<Self, serde_json::Error> {
        let mut records: Vec<AuditRecord> = serde_json::from_str(json)?;
        records.sort_by_key(|r| r.seq);
        let mut log = AuditLog::new(capacity);
        let skip = records.len().saturating_sub(log.capacity);
        log.next_seq = records
            .iter()
            .map(|r| r.seq.saturating_add(1))
            .max()
            .unwrap_or(1);
        log.records = records.into_iter().skip(skip).collect();
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_buffer_drops_the_oldest_and_keeps_sequence_numbers() {
        let mut log = AuditLog::new(3);
        for i in 0..5u64 {
            log.record(
                i,
                AuditKind::Use,
                &format!("g{i}@x.test/p"),
                None,
                None,
                None,
                "",
            );
        }
        let recs = log.records();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(log.since(4).len(), 1);
    }

    #[test]
    fn floods_fold_into_one_record_and_long_fields_are_clipped() {
        let mut log = AuditLog::new(4);
        log.record(
            1,
            AuditKind::Grant,
            "romeo@friend.test",
            None,
            Some("g1"),
            None,
            "playback",
        );
        let long = "player.".repeat(1000);
        for t in 0..10_000u64 {
            log.record(
                t,
                AuditKind::Deny,
                "eve@evil.test/x",
                None,
                None,
                Some(&long),
                "no-grant",
            );
        }
        assert_eq!(log.len(), 2, "the grant record survives the flood");
        let deny = &log.records()[1];
        assert_eq!(deny.count, 10_000);
        assert_eq!(deny.last_at, 9_999);
        assert!(deny.method.as_deref().map_or(0, str::len) <= MAX_FIELD_BYTES + '…'.len_utf8());
    }

    #[test]
    fn json_round_trip_and_garbage_is_an_error() {
        let mut log = AuditLog::new(8);
        log.record(
            5,
            AuditKind::Revoke,
            "romeo@friend.test",
            Some("ab"),
            Some("g1"),
            None,
            "",
        );
        let back = AuditLog::from_json(&log.to_json().expect("json"), 8).expect("parse");
        assert_eq!(back.records(), log.records());
        assert!(AuditLog::from_json("{not json", 8).is_err());
        assert!(AuditLog::from_json(r#"[{"seq":1}]"#, 8).is_err());
    }

    fn push(log: &mut AuditLog, kind: AuditKind, subject: &str, method: &str) -> u64 {
        log.record(1, kind, subject, None, None, Some(method), "")
    }

    #[test]
    fn alternating_calls_fold_into_their_records_and_cost_no_room() {
        let mut log = AuditLog::new(4);
        push(&mut log, AuditKind::Grant, "romeo@friend.test", "");
        for _ in 0..1000 {
            for method in ["player.pause", "player.resume", "player.status"] {
                push(&mut log, AuditKind::Use, "romeo@friend.test/phone", method);
            }
        }
        assert_eq!(log.len(), 4);
        assert!(log.records().iter().skip(1).all(|r| r.count == 1000));
        assert_eq!(log.evictions(), AuditEvictions::default());
    }

    #[test]
    fn a_crowd_of_strangers_pushes_out_routine_records_never_refusals_or_grants() {
        let mut log = AuditLog::new(16);
        push(&mut log, AuditKind::Grant, "romeo@friend.test", "");
        push(
            &mut log,
            AuditKind::Deny,
            "romeo@friend.test/phone",
            "recorder.channels",
        );
        push(&mut log, AuditKind::Revoke, "tybalt@enemy.test", "");
        for i in 0..4 {
            push(
                &mut log,
                AuditKind::Use,
                "romeo@friend.test/phone",
                &format!("m{i}"),
            );
        }
        // ~170 strangers, each the three requests the intake lets through.
        for s in 0..170 {
            for r in 0..3 {
                push(
                    &mut log,
                    AuditKind::Request,
                    &format!("s{s}@evil.test/r{r}"),
                    "",
                );
            }
        }
        let kinds: Vec<AuditKind> = log.records().iter().map(|r| r.kind).collect();
        assert_eq!(log.len(), 16);
        assert_eq!(
            &kinds[..3],
            [AuditKind::Grant, AuditKind::Deny, AuditKind::Revoke]
        );
        assert!(kinds[3..].iter().all(|k| *k == AuditKind::Request));
        let evicted = log.evictions();
        assert_eq!(evicted.uses, 4);
        assert_eq!(evicted.requests, 170 * 3 - 13);
        assert_eq!(evicted.denials + evicted.grants_and_revocations, 0);
        // Sequence order holds after removals from the middle, so `since` still works.
        let seqs: Vec<u64> = log.records().iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(log.since(seqs[2]).len(), 13);
    }

    #[test]
    fn one_caller_pays_with_its_own_records_beyond_its_quota() {
        let mut log = AuditLog::new(8);
        push(&mut log, AuditKind::Grant, "juliet@friend.test", "");
        push(
            &mut log,
            AuditKind::Deny,
            "juliet@friend.test/p",
            "recorder.channels",
        );
        push(
            &mut log,
            AuditKind::Deny,
            "mercutio@friend.test/p",
            "library.browse",
        );
        // Romeo tries a thousand different methods: each a distinct refusal.
        for i in 0..1000 {
            push(
                &mut log,
                AuditKind::Deny,
                "romeo@friend.test/p",
                &format!("x.m{i}"),
            );
        }
        let records = log.records();
        let others: Vec<&str> = records
            .iter()
            .filter(|r| !r.subject.starts_with("romeo@"))
            .map(|r| r.subject.as_str())
            .collect();
        assert_eq!(
            others,
            [
                "juliet@friend.test",
                "juliet@friend.test/p",
                "mercutio@friend.test/p"
            ]
        );
        assert!(
            records
                .iter()
                .filter(|r| r.subject.starts_with("romeo@"))
                .count()
                <= 8 / 4 + 3
        );
        assert!(records
            .iter()
            .any(|r| r.method.as_deref() == Some("x.m999")));
    }

    #[test]
    fn a_log_full_of_what_matters_keeps_it_and_drops_the_routine_newcomer() {
        let mut log = AuditLog::new(2);
        push(&mut log, AuditKind::Grant, "a@x.test", "");
        push(&mut log, AuditKind::Revoke, "b@x.test", "");
        push(&mut log, AuditKind::Use, "c@x.test/p", "player.status");
        let kinds: Vec<AuditKind> = log.records().iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [AuditKind::Grant, AuditKind::Revoke]);
        assert_eq!(log.evictions().uses, 1);
    }

    #[test]
    fn hostile_json_with_the_last_sequence_number_or_out_of_order_reads_without_panic() {
        let record = |seq: u64, subject: &str| AuditRecord {
            seq,
            at: 1,
            last_at: 1,
            count: 1,
            kind: AuditKind::Deny,
            subject: subject.to_owned(),
            device: None,
            grant_id: None,
            method: Some("player.pause".to_owned()),
            detail: String::new(),
        };
        // Out of order, and one at u64::MAX (a file or a peer can say anything).
        let json =
            serde_json::to_string(&[record(u64::MAX, "a@x.test/p"), record(5, "b@x.test/p")])
                .expect("json");
        let mut log = AuditLog::from_json(&json, 8).expect("reads");
        let seqs: Vec<u64> = log.records().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [5, u64::MAX], "put back in sequence order");
        assert_eq!(log.since(5).len(), 1, "since() sees the sorted records");
        // The next record takes the last number instead of overflowing; so does the one after.
        assert_eq!(
            push(&mut log, AuditKind::Use, "c@x.test/p", "x.m"),
            u64::MAX
        );
        assert_eq!(
            push(&mut log, AuditKind::Use, "d@x.test/p", "x.m"),
            u64::MAX
        );
        assert_eq!(log.len(), 4);
    }
}
