//! The access audit log: what happened, for the owner to read (DESIGN §5 "the provider logs request /
//! grant / use / revoke").
//!
//! Bounded: a ring buffer of at most `capacity` records, oldest dropped first, and runs of identical
//! records (a guest pressing pause twenty times, a stranger hammering one method) are folded into one
//! record with a count — so a flood cannot push the grant and revoke records out within seconds.
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

impl AuditRecord {
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
        if let Some(last) = self.records.back_mut() {
            if last.same_event(&record) {
                last.count = last.count.saturating_add(1);
                last.last_at = last.last_at.max(at);
                return last.seq;
            }
        }
        let seq = record.seq;
        self.next_seq += 1;
        if self.records.len() == self.capacity {
            self.records.pop_front();
        }
        self.records.push_back(record);
        seq
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
    pub fn from_json(json: &str, capacity: usize) -> Result<Self, serde_json::Error> {
        let records: Vec<AuditRecord> = serde_json::from_str(json)?;
        let mut log = AuditLog::new(capacity);
        let skip = records.len().saturating_sub(log.capacity);
        log.next_seq = records.iter().map(|r| r.seq + 1).max().unwrap_or(1);
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
}
