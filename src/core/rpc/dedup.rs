//! The provider's memory of recent calls, so that a retried call runs once.
//!
//! Keyed by (caller, [`CallId`]): the caller is whatever identity the provider established
//! itself (its full JID and, through a tunnel, the key the tunnel pinned), never anything the
//! payload claims, so one caller can neither read nor poison another's entries.
//!
//! - A repeat of a call that finished gets the first answer again, without running.
//! - A repeat of a call still running waits for that run and gets its answer.
//! - An answer is remembered for [`CallLog::window`] after the call finished.
//!
//! Bounded, since the keys come from outside: at most `per_caller` entries for one caller and
//! `total` in all; when full, the oldest entry (of that caller, or of everyone) is forgotten and
//! counted ([`CallLogStats::forgotten`]). A flood of fresh ids from one caller thus only pushes out
//! its own entries, never another caller's, as long as `per_caller × callers ≤ total`.
//!
//! Answers are remembered up to [`MAX_REMEMBERED_ANSWER`] bytes each and a byte budget in all (the
//! oldest go first when it is spent). A repeat of a call whose answer was too large to keep is not
//! run again either: it gets fault [`FAULT_ANSWER_NOT_KEPT`], which says the call ran.
//!
//! What it cannot promise: a provider that restarts has forgotten everything, and so has one whose
//! entry was pushed out by the caller's own flood; a retry then runs again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::call_id::CallId;
use super::xmlrpc::Value;
use crate::core::error::{Error, Result};

/// The answer of a finished call, as remembered (cheap to clone for each repeat).
pub type Answer = Result<Value>;

/// Default [`CallLog::window`]: longer than any controller's retries (10 s timeout, a reconnect
/// or two), short enough that the table stays small.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);

/// Largest answer remembered as it was (an estimate of its size in memory); a larger one is
/// remembered as [`FAULT_ANSWER_NOT_KEPT`].
pub const MAX_REMEMBERED_ANSWER: usize = 64 * 1024;

/// The fault a repeat gets when its call ran but its answer was too large to remember: the call
/// is not run again, and the caller learns it ran (HTTP's 410 Gone: the answer is gone).
pub const FAULT_ANSWER_NOT_KEPT: i32 = 410;

/// Default byte budget of a [`CallLog`].
pub const DEFAULT_BYTES: usize = 4 * 1024 * 1024;

/// An estimate of what `answer` takes in memory: string and byte lengths plus a fixed cost per
/// value.
fn answer_bytes(answer: &Answer) -> usize {
    const NODE: usize = 32;
    let value = match answer {
        Ok(value) => value,
        Err(e) => return NODE + e.message().len(),
    };
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(NODE);
        match v {
            Value::String(t) | Value::DateTime(t) => total = total.saturating_add(t.len()),
            Value::Base64(b) => total = total.saturating_add(b.len()),
            Value::Array(items) => stack.extend(items.iter()),
            Value::Struct(members) => {
                for (name, member) in members {
                    total = total.saturating_add(name.len());
                    stack.push(member);
                }
            }
            Value::Int(_) | Value::Bool(_) | Value::Double(_) | Value::Nil => {}
        }
    }
    total
}

/// Counts of a [`CallLog`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallLogStats {
    /// Entries held now.
    pub entries: u64,
    /// Repeats answered from memory or by sharing a run, instead of running again.
    pub deduplicated: u64,
    /// Entries pushed out by a bound before their window ended.
    pub forgotten: u64,
}

enum State {
    /// The call runs; repeats wait on this.
    Running(watch::Receiver<Option<Answer>>),
    /// Finished at `at` with this answer.
    Done { at: Instant, answer: Answer },
}

struct Entry {
    seq: u64,
    state: State,
    /// What the remembered answer takes (0 while running).
    bytes: usize,
}

/// What [`CallLog::begin`] found.
pub enum Begin {
    /// A new call: run it, then [`CallLog::finish`] (or [`CallLog::abandon`] if it is refused
    /// before running).
    Run(Ticket),
    /// A repeat of a finished call: its answer.
    Done(Answer),
    /// A repeat of a running call: its answer arrives here.
    Wait(watch::Receiver<Option<Answer>>),
}

/// The right to record a call's answer; whoever waits on a repeat hears it through here.
pub struct Ticket {
    seq: u64,
    answer: watch::Sender<Option<Answer>>,
}

impl Ticket {
    /// Tells the repeats waiting for this run its answer (whether or not the log still holds the
    /// entry).
    fn publish(&self, answer: &Answer) {
        self.answer.send_replace(Some(answer.clone()));
    }
}

/// Recent calls by (caller, call id); see the module documentation.
pub struct CallLog<K> {
    window: Duration,
    per_caller: usize,
    total: usize,
    /// Byte budget for remembered answers, and what they take now.
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<(K, CallId), Entry>,
    /// Every entry by age (its sequence number), oldest first.
    order: BTreeMap<u64, (K, CallId)>,
    /// Each caller's entries by age; a caller is here only while it has entries.
    per: HashMap<K, BTreeSet<u64>>,
    next_seq: u64,
    deduplicated: u64,
    forgotten: u64,
}

impl<K> std::fmt::Debug for CallLog<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallLog")
            .field("window", &self.window)
            .field("entries", &self.entries.len())
            .field("per_caller", &self.per_caller)
            .field("total", &self.total)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> CallLog<K> {
    /// A log remembering answers for `window`, at most `per_caller` entries per caller,
    /// `total` in all (each at least 1) and answers of `max_bytes` together.
    pub fn new(window: Duration, per_caller: usize, total: usize, max_bytes: usize) -> Self {
        CallLog {
            window,
            per_caller: per_caller.max(1),
            total: total.max(1),
            max_bytes,
            bytes: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            per: HashMap::new(),
            next_seq: 0,
            deduplicated: 0,
            forgotten: 0,
        }
    }

    /// How long an answer is remembered after its call finished.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The counts.
    pub fn stats(&self) -> CallLogStats {
        CallLogStats {
            entries: self.entries.len() as u64,
            deduplicated: self.deduplicated,
            forgotten: self.forgotten,
        }
    }

    /// Entries held for `caller`.
    pub fn len_of(&self, caller: &K) -> usize {
        self.per.get(caller).map_or(0, BTreeSet::len)
    }

    /// A call `id` of `caller` arrives at `now`: a new one to run, or a repeat.
    pub fn begin(&mut self, caller: &K, id: &CallId, now: Instant) -> Begin {
        self.expire(now);
        let key = (caller.clone(), id.clone());
        if let Some(entry) = self.entries.get(&key) {
            self.deduplicated += 1;
            return match &entry.state {
                State::Done { answer, .. } => Begin::Done(answer.clone()),
                State::Running(rx) => Begin::Wait(rx.clone()),
            };
        }
        while self.len_of(caller) >= self.per_caller {
            let oldest = self.per.get(caller).and_then(|s| s.first().copied());
            match oldest {
                Some(seq) => self.forget(seq, true),
                None => break,
            }
        }
        while self.entries.len() >= self.total {
            let oldest = self.order.keys().next().copied();
            match oldest {
                Some(seq) => self.forget(seq, true),
                None => break,
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let (tx, rx) = watch::channel(None);
        self.entries.insert(
            key.clone(),
            Entry {
                seq,
                state: State::Running(rx),
                bytes: 0,
            },
        );
        self.order.insert(seq, key);
        self.per.entry(caller.clone()).or_default().insert(seq);
        Begin::Run(Ticket { seq, answer: tx })
    }

    /// The call of `ticket` finished with `answer` at `now`: remembered for the window, and
    /// handed to the repeats waiting for it.
    pub fn finish(
        &mut self,
        caller: &K,
        id: &CallId,
        ticket: Ticket,
        answer: Answer,
        now: Instant,
    ) {
        ticket.publish(&answer);
        let key = (caller.clone(), id.clone());
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        if entry.seq != ticket.seq {
            return;
        }
        let mut bytes = answer_bytes(&answer);
        let answer = if bytes > MAX_REMEMBERED_ANSWER {
            let kept = Err(Error::fault(
                FAULT_ANSWER_NOT_KEPT,
                "the call ran; its answer was too large to remember for a repeat",
            ));
            bytes = answer_bytes(&kept);
            kept
        } else {
            answer
        };
        entry.state = State::Done { at: now, answer };
        entry.bytes = bytes;
        self.bytes = self.bytes.saturating_add(bytes);
        // Over the budget: the oldest go, this one too if it is the only one left.
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.order.keys().next().copied() else {
                break;
            };
            self.forget(oldest, true);
        }
    }

    /// The call of `ticket` was refused before it ran (a bound was hit): forget it, so that a
    /// retry may run; repeats waiting for it get `answer` (the same refusal).
    pub fn abandon(&mut self, caller: &K, id: &CallId, ticket: Ticket, answer: Answer) {
        ticket.publish(&answer);
        let key = (caller.clone(), id.clone());
        if self.entries.get(&key).is_some_and(|e| e.seq == ticket.seq) {
            self.forget(ticket.seq, false);
        }
    }

    /// Drops finished entries whose window has passed, oldest first. A running entry stops the
    /// sweep: it is bounded by the calls in flight, and the entries behind it wait for the next
    /// sweep or for the bounds.
    fn expire(&mut self, now: Instant) {
        while let Some((&seq, key)) = self.order.iter().next() {
            let expired = match self.entries.get(key).map(|e| &e.state) {
                // A window too long to add (`Duration::MAX` for "forever") never ends.
                Some(State::Done { at, .. }) => {
                    at.checked_add(self.window).is_some_and(|end| end <= now)
                }
                Some(State::Running(_)) => false,
                None => true,
            };
            if !expired {
                break;
            }
            self.forget(seq, false);
        }
    }

    fn forget(&mut self, seq: u64, early: bool) {
        let Some(key) = self.order.remove(&seq) else {
            return;
        };
        if let Some(entry) = self.entries.remove(&key) {
            self.bytes = self.bytes.saturating_sub(entry.bytes);
        }
        if let Some(set) = self.per.get_mut(&key.0) {
            set.remove(&seq);
            if set.is_empty() {
                self.per.remove(&key.0);
            }
        }
        if early {
            self.forgotten += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;

    fn id(n: u32) -> CallId {
        CallId::parse(&format!("id{n}")).expect("valid id")
    }

    #[test]
    fn a_repeat_gets_the_first_answer_and_a_running_repeat_shares_the_run() {
        let mut log: CallLog<&str> = CallLog::new(Duration::from_secs(120), 8, 32, DEFAULT_BYTES);
        let t0 = Instant::now();
        let Begin::Run(ticket) = log.begin(&"phone", &id(1), t0) else {
            panic!("a new call runs");
        };
        let Begin::Wait(mut waiting) = log.begin(&"phone", &id(1), t0) else {
            panic!("a repeat of a running call waits");
        };
        // Another caller's same id is another call.
        assert!(matches!(log.begin(&"tablet", &id(1), t0), Begin::Run(_)));
        log.finish(&"phone", &id(1), ticket, Ok(Value::from(7)), t0);
        assert_eq!(
            waiting.borrow_and_update().clone(),
            Some(Ok(Value::from(7)))
        );
        assert!(
            matches!(log.begin(&"phone", &id(1), t0), Begin::Done(Ok(v)) if v == Value::from(7))
        );
        assert_eq!(log.stats().deduplicated, 2);
        // After the window the answer is gone and the id would run again.
        let later = t0 + Duration::from_secs(121);
        assert!(matches!(log.begin(&"phone", &id(1), later), Begin::Run(_)));
    }

    #[test]
    fn a_window_of_duration_max_remembers_without_overflowing() {
        let mut log: CallLog<&str> = CallLog::new(Duration::MAX, 8, 32, DEFAULT_BYTES);
        let t0 = Instant::now();
        let Begin::Run(ticket) = log.begin(&"phone", &id(1), t0) else {
            panic!("a new call runs");
        };
        log.finish(&"phone", &id(1), ticket, Ok(Value::from(7)), t0);
        let later = t0 + Duration::from_secs(86_400);
        assert!(
            matches!(log.begin(&"phone", &id(1), later), Begin::Done(Ok(v)) if v == Value::from(7))
        );
    }

    #[test]
    fn a_refused_run_is_forgotten_so_its_retry_runs() {
        let mut log: CallLog<&str> = CallLog::new(Duration::from_secs(120), 8, 32, DEFAULT_BYTES);
        let now = Instant::now();
        let Begin::Run(ticket) = log.begin(&"phone", &id(1), now) else {
            panic!("runs");
        };
        let busy = Err(Error::new(ErrorKind::ProviderUnavailable, "busy"));
        log.abandon(&"phone", &id(1), ticket, busy);
        assert_eq!(log.stats().entries, 0);
        assert!(matches!(log.begin(&"phone", &id(1), now), Begin::Run(_)));
    }

    #[test]
    fn answers_are_bounded_in_bytes_and_a_large_one_is_remembered_as_ran() {
        let mut log: CallLog<&str> = CallLog::new(Duration::from_secs(120), 64, 64, 100_000);
        let now = Instant::now();
        let big = Value::String("x".repeat(MAX_REMEMBERED_ANSWER + 1));
        let Begin::Run(t) = log.begin(&"phone", &id(1), now) else {
            panic!("runs");
        };
        log.finish(&"phone", &id(1), t, Ok(big), now);
        match log.begin(&"phone", &id(1), now) {
            Begin::Done(Err(e)) => {
                assert_eq!(e.fault_code(), Some(FAULT_ANSWER_NOT_KEPT));
                assert!(e.did_run());
            }
            _ => panic!("a repeat of a call with a large answer is not run again"),
        }
        // 40 kB answers: two fit the 100 kB budget, the third pushes out the oldest.
        for n in 2..5 {
            let Begin::Run(t) = log.begin(&"phone", &id(n), now) else {
                panic!("runs");
            };
            log.finish(&"phone", &id(n), t, Ok(Value::Base64(vec![0; 40_000])), now);
        }
        assert!(log.bytes <= 100_000, "{} bytes", log.bytes);
        assert!(matches!(
            log.begin(&"phone", &id(4), now),
            Begin::Done(Ok(_))
        ));
        assert!(log.stats().forgotten >= 1);
    }

    #[test]
    fn a_flood_from_one_caller_stays_within_its_share_and_spares_the_others() {
        let mut log: CallLog<&str> = CallLog::new(Duration::from_secs(120), 4, 10, DEFAULT_BYTES);
        let now = Instant::now();
        let Begin::Run(t) = log.begin(&"tablet", &id(0), now) else {
            panic!("runs");
        };
        log.finish(&"tablet", &id(0), t, Ok(Value::Nil), now);
        for n in 0..1000 {
            if let Begin::Run(t) = log.begin(&"flooder", &id(n), now) {
                log.finish(&"flooder", &id(n), t, Ok(Value::Nil), now);
            }
            assert!(log.len_of(&"flooder") <= 4);
            assert!(log.stats().entries <= 10);
        }
        assert_eq!(log.stats().forgotten, 996);
        assert!(matches!(log.begin(&"tablet", &id(0), now), Begin::Done(_)));
        // Many callers: the total bound holds, the oldest go first.
        for (n, caller) in ["a", "b", "c", "d", "e", "f", "g", "h"].iter().enumerate() {
            let _ = log.begin(caller, &id(n as u32), now);
        }
        assert_eq!(log.stats().entries, 10);
    }
}
