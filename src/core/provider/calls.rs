//! Running an RPC call the dispatcher read, the policy allowed and the router resolved ([`Call`]),
//! and answering it — under the bounds on calls in flight. Knows nothing of who may call what.
//!
//! A call takes its slot **before** a task is spawned for it: when the provider, the caller, or
//! the guests' share is full, the caller is answered `resource-constraint` (type `wait`) at once
//! instead of queueing without bound. An admitted call then waits for one of the
//! [`ProviderLimits::calls_running`] places to run its service: that wait is bounded by the slots.
//!
//! A call that carries a call id is remembered ([`CallLog`]) from the moment it is admitted until
//! [`ProviderLimits::call_memory`] after it finished: a repeat of it (a controller's retry after a
//! timeout or a lost connection) gets the first answer, or waits for the run still going, and
//! never runs the method again. Refusals (policy, unknown method, bad parameters, a bound hit) are
//! not remembered: they ran nothing, and a retry is judged afresh. `<service>.subscribe` and
//! `unsubscribe` ([`run_at_once`]) are idempotent and not remembered either.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};

use super::answer::{answer, Outcome};
use super::caller::Route;
use super::limits::{Counters, ProviderLimits};
use crate::core::access::DeviceFingerprint;
use crate::core::error::{Error, ErrorKind};
use crate::core::rpc::dedup::Begin;
use crate::core::rpc::xmlrpc::Value;
use crate::core::rpc::Target;
use crate::core::rpc::{CallContext, CallId, CallLog};
use crate::core::sync::Locked;

/// Who a remembered call belongs to: the caller's full JID and the key of the tunnel it came
/// through (`None` in clear). Established by the provider, never taken from the payload.
pub(crate) type CallerKey = (FullJid, Option<DeviceFingerprint>);

/// The provider's memory of recent calls by call id.
pub(crate) type SharedCallLog = Arc<Mutex<CallLog<CallerKey>>>;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    guests: usize,
    /// Only callers with a call running: at most `total` entries.
    per_caller: HashMap<FullJid, usize>,
}

/// The calls running now, bounded in total, per caller and for guests together.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    counts: Arc<Mutex<Counts>>,
    total: usize,
    per_caller: usize,
    for_guests: usize,
    /// Places for services to run; admitted calls wait here (at most `total` of them).
    running: Arc<Semaphore>,
    stats: Arc<Counters>,
    /// Recent calls of the household's own devices by (caller, call id), so that a retry runs
    /// once.
    log: SharedCallLog,
    /// The same for guests, with its own bounds: a guest's flood never pushes out what the
    /// household's devices need remembered.
    guest_log: SharedCallLog,
}

/// A call's slot; given back when dropped (the call task ended, however it ended).
pub(crate) struct Slot {
    counts: Arc<Mutex<Counts>>,
    caller: FullJid,
    guest: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.locked();
        counts.total = counts.total.saturating_sub(1);
        if self.guest {
            counts.guests = counts.guests.saturating_sub(1);
        }
        if let Some(n) = counts.per_caller.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_caller.remove(&self.caller);
            }
        }
    }
}

impl InFlight {
    pub(crate) fn new(limits: &ProviderLimits, stats: Arc<Counters>) -> Self {
        Self {
            counts: Arc::default(),
            total: limits.calls_in_flight,
            per_caller: limits.calls_per_caller,
            for_guests: limits.calls_for_guests,
            // tokio panics above `MAX_PERMITS` (~2^61); `usize::MAX` for "no bound" means the same.
            running: Arc::new(Semaphore::new(
                limits.calls_running.min(Semaphore::MAX_PERMITS),
            )),
            stats,
            log: Arc::new(Mutex::new(CallLog::new(
                limits.call_memory,
                limits.calls_remembered_per_caller,
                limits.calls_remembered,
                limits.calls_remembered_bytes,
            ))),
            guest_log: Arc::new(Mutex::new(CallLog::new(
                limits.call_memory,
                limits.calls_remembered_per_caller,
                limits.calls_remembered_for_guests,
                limits.calls_remembered_bytes / 4,
            ))),
        }
    }

    /// The memories of recent calls, own devices' and guests' (shared with
    /// [`super::Provider::stats`]).
    pub(crate) fn logs(&self) -> [&SharedCallLog; 2] {
        [&self.log, &self.guest_log]
    }

    /// The memory a caller's calls go to.
    fn log_for(&self, guest: bool) -> &SharedCallLog {
        if guest {
            &self.guest_log
        } else {
            &self.log
        }
    }

    /// A slot for a call of `caller`, or the name of the bound that is full.
    pub(crate) fn admit(&self, caller: &FullJid, guest: bool) -> std::result::Result<Slot, String> {
        let mut counts = self.counts.locked();
        let mine = counts.per_caller.get(caller).copied().unwrap_or(0);
        let full = if counts.total >= self.total {
            Some("too many calls in flight")
        } else if mine >= self.per_caller {
            Some("too many calls in flight from this device")
        } else if guest && counts.guests >= self.for_guests {
            Some("too many guest calls in flight")
        } else {
            None
        };
        if let Some(why) = full {
            Counters::bump(&self.stats.calls_refused_busy);
            return Err(why.to_owned());
        }
        counts.total += 1;
        if guest {
            counts.guests += 1;
        }
        *counts.per_caller.entry(caller.clone()).or_insert(0) += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            caller: caller.clone(),
            guest,
        })
    }
}

/// A call the policy allowed and the router resolved, ready to run.
pub(super) struct Call {
    /// The caller's full JID (every call needs a resource).
    pub(super) full: FullJid,
    /// The key of the tunnel the call came through; `None` in clear.
    pub(super) key: Option<DeviceFingerprint>,
    /// Whether the caller is a guest (its calls count against the guests' share).
    pub(super) guest: bool,
    /// Where the answer goes.
    pub(super) to: Jid,
    /// The iq id the answer carries.
    pub(super) id: String,
    /// The call id, when the caller sent one: the call is remembered under it.
    pub(super) call_id: Option<CallId>,
    /// `<service>.<verb>`, for the logs.
    pub(super) method: String,
    /// Where the router sends it.
    pub(super) target: Target,
    /// Its parameters.
    pub(super) params: Vec<Value>,
}

impl InFlight {
    /// Runs `call` under the bounds and answers it by `route`: a repeat of a remembered call gets
    /// the first answer, a full bound `resource-constraint`.
    pub(super) fn run(&self, call: Call, route: &Route) {
        let Call {
            full,
            key,
            guest,
            to,
            id,
            call_id,
            method,
            target,
            params,
        } = call;
        let reply = |iq: Iq| {
            if route.send(iq).is_err() {
                tracing::debug!("reply dropped: session or tunnel ended");
            }
        };
        // Checked after the policy, so a retry is refused like the first attempt would be now
        // (a revoked guest gets no remembered answer).
        let key: CallerKey = (full.clone(), key);
        let log = self.log_for(guest);
        let ticket = match &call_id {
            None => None,
            Some(call_id) => match log.locked().begin(&key, call_id, Instant::now()) {
                Begin::Run(ticket) => Some((call_id.clone(), ticket)),
                Begin::Done(remembered) => {
                    tracing::debug!(from = %full, %method, %call_id, "repeat of a finished call: its first answer");
                    return reply(answer(to, id, Outcome::Done(remembered)));
                }
                Begin::Wait(run) => {
                    tracing::debug!(from = %full, %method, %call_id, "repeat of a running call: waits for that run");
                    return self.await_run(full, guest, to, id, run, route);
                }
            },
        };
        let slot = match self.admit(&full, guest) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::info!(from = %full, %method, %why, "call refused: busy");
                if let Some((call_id, ticket)) = ticket {
                    // Not run: a retry may run it; a repeat waiting meanwhile hears the refusal.
                    let busy = Err(Error::new(ErrorKind::ProviderUnavailable, why.clone()));
                    log.locked().abandon(&key, &call_id, ticket, busy);
                }
                return reply(answer(to, id, Outcome::Busy(why)));
            }
        };
        let tunnel = route.is_tunnel();
        let route = route.clone();
        let running = self.running.clone();
        let log = log.clone();
        tokio::spawn(async move {
            // The semaphore is never closed; if it were, running without a place beats no answer.
            let _place = running.acquire_owned().await.ok();
            let ctx = CallContext {
                caller: full,
                tunnel,
            };
            // A service that panics must not leave its caller waiting for an answer that never
            // comes: the panic becomes an error answer, like any unexpected failure.
            let outcome = AssertUnwindSafe(target.call(params, &ctx))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    let (service, verb) = (target.service().name(), target.verb());
                    tracing::error!(service, verb, "service call panicked");
                    Err(Error::new(ErrorKind::Internal, "the service failed"))
                });
            // Remembered before the caller can learn the answer, so its retry finds it.
            if let Some((call_id, ticket)) = ticket {
                log.locked()
                    .finish(&key, &call_id, ticket, outcome.clone(), Instant::now());
            }
            // Free the slot before the caller can learn the answer and send its next call.
            drop(slot);
            if route.send(answer(to, id, Outcome::Done(outcome))).is_err() {
                tracing::debug!("reply dropped: session or tunnel ended");
            }
        });
    }

    /// A repeat of a call that is running: wait (in a slot of the caller's, like any call) for
    /// that run's answer and give it to this request too.
    fn await_run(
        &self,
        full: FullJid,
        guest: bool,
        to: Jid,
        id: String,
        mut run: tokio::sync::watch::Receiver<Option<crate::core::rpc::dedup::Answer>>,
        route: &Route,
    ) {
        let slot = match self.admit(&full, guest) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::info!(from = %full, %why, "repeat of a running call: no slot to wait in");
                let why = format!("the call is still running ({why}); ask again later");
                if route.send(answer(to, id, Outcome::Unsure(why))).is_err() {
                    tracing::debug!("reply dropped: session or tunnel ended");
                }
                return;
            }
        };
        let route = route.clone();
        tokio::spawn(async move {
            let outcome = loop {
                if let Some(answer) = run.borrow_and_update().clone() {
                    break Outcome::Done(answer);
                }
                if run.changed().await.is_err() {
                    break Outcome::Unsure("the call's first run ended without an answer".into());
                }
            };
            drop(slot);
            if route.send(answer(to, id, outcome)).is_err() {
                tracing::debug!("reply dropped: session or tunnel ended");
            }
        });
    }
}

/// Runs a verb served for every service ([`Target::EveryService`]: the subscriptions) at once,
/// in the dispatcher: it only touches the provider's tables, so it takes no slot, and it is
/// idempotent, so it is not remembered. Its "no room" ([`ErrorKind::ProviderUnavailable`]) is a
/// bound hit, answered `resource-constraint`.
pub(super) fn run_at_once(target: &Target, params: Vec<Value>, ctx: &CallContext) -> Outcome {
    match target.call(params, ctx).now_or_never() {
        Some(Err(e)) if e.kind() == ErrorKind::ProviderUnavailable => {
            Outcome::Busy(e.message().to_owned())
        }
        Some(outcome) => Outcome::Done(outcome),
        // Never for the provider's own verbs; an answer beats a dispatcher that waits.
        None => Outcome::Done(Err(Error::new(
            ErrorKind::Internal,
            "the provider's verb did not answer at once",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_in_total_per_caller_and_for_guests_and_come_back() {
        let limits = ProviderLimits {
            calls_in_flight: 4,
            calls_per_caller: 2,
            calls_for_guests: 2,
            ..ProviderLimits::default()
        };
        let stats = Arc::new(Counters::default());
        let calls = InFlight::new(&limits, stats.clone());
        let phone: FullJid = "home@home.test/phone".parse().expect("jid");
        let tablet: FullJid = "home@home.test/tablet".parse().expect("jid");
        let r1: FullJid = "romeo@friend.test/a".parse().expect("jid");
        let r2: FullJid = "romeo@friend.test/b".parse().expect("jid");
        let r3: FullJid = "romeo@friend.test/c".parse().expect("jid");
        let a = calls.admit(&phone, false).expect("1");
        let _b = calls.admit(&phone, false).expect("2");
        assert!(calls.admit(&phone, false).is_err(), "per caller");
        let _g1 = calls.admit(&r1, true).expect("guest 1");
        let _g2 = calls.admit(&r2, true).expect("guest 2");
        assert!(calls.admit(&r3, true).is_err(), "guests' share");
        assert!(calls.admit(&tablet, false).is_err(), "total");
        drop(a);
        let _t = calls.admit(&tablet, false).expect("a slot came back");
        assert_eq!(stats.snapshot().calls_refused_busy, 3);
        drop(_t);
        drop(_b);
        drop(_g1);
        drop(_g2);
        assert!(calls.counts.locked().per_caller.is_empty());
    }

    #[test]
    fn unbounded_running_calls_are_capped_instead_of_panicking() {
        let limits = ProviderLimits {
            calls_running: usize::MAX,
            ..ProviderLimits::default()
        };
        let calls = InFlight::new(&limits, Arc::new(Counters::default()));
        assert_eq!(calls.running.available_permits(), Semaphore::MAX_PERMITS);
    }
}
