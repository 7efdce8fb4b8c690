//! The one tracker of outstanding iq requests, used by the session task (requests over the
//! server) and by every end-to-end tunnel (requests inside it): each request is keyed by its id,
//! has a deadline, and is answered exactly once — by the response from the entity it was sent to,
//! by [`IqTracker::expire`] when its deadline passes or its caller went away, or by
//! [`IqTracker::fail_all`] / [`IqTracker::clear`] when the stream under it ends.
//!
//! Bounded: at most [`MAX_OUTSTANDING`] requests wait at once; one more is refused before it is
//! sent (a peer that never answers cannot make a device hold unbounded state), and every entry
//! leaves at its deadline at the latest. The tracker never sends anything itself: its owner
//! transmits a request only once [`IqTracker::track`] accepted it.

use std::collections::HashMap;

use tokio::sync::oneshot;
use tokio::time::Instant;
use xmpp_parsers::jid::{FullJid, Jid};

use super::IqReply;
use crate::core::error::{Error, ErrorKind, Result};

/// The most requests one tracker holds at once (per session, per tunnel). Far above what a
/// device has in flight (a flood bench keeps 100), low enough that the map stays small.
pub(crate) const MAX_OUTSTANDING: usize = 4096;

/// Where a request's answer goes.
pub(crate) type ReplySender = oneshot::Sender<Result<IqReply>>;

/// One request waiting for its answer.
struct PendingIq {
    /// The addressee: the only entity whose response is taken (see [`response_from_matches`]).
    to: Option<Jid>,
    deadline: Instant,
    reply: ReplySender,
}

/// Outstanding iq requests by id (see the module doc).
pub(crate) struct IqTracker {
    pending: HashMap<String, PendingIq>,
    capacity: usize,
}

impl Default for IqTracker {
    fn default() -> Self {
        Self::new(MAX_OUTSTANDING)
    }
}

impl IqTracker {
    /// A tracker holding at most `capacity` requests (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        IqTracker {
            pending: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Tracks the request `id` sent to `to`, answered through `reply` by its deadline. Refused
    /// (the error also goes to `reply`) when the tracker is full; the caller must then not send
    /// the request. A second request with a live id replaces the first, whose caller then sees
    /// its reply channel closed (ids are fresh per tracker, so this does not happen in use).
    pub(crate) fn track(
        &mut self,
        id: String,
        to: Option<Jid>,
        deadline: Instant,
        reply: ReplySender,
    ) -> Result<()> {
        if self.pending.len() >= self.capacity && !self.pending.contains_key(&id) {
            let error = Error::new(
                ErrorKind::ProviderUnavailable,
                format!(
                    "{} requests are already waiting for an answer; try again",
                    self.capacity
                ),
            );
            let _ = reply.send(Err(error.clone()));
            return Err(error);
        }
        self.pending.insert(
            id,
            PendingIq {
                to,
                deadline,
                reply,
            },
        );
        Ok(())
    }

    /// Answers request `id` with `reply` when `from` may answer it (its addressee, `own` being
    /// this end's full JID). Returns whether a request took it: a response to no request (late,
    /// unsolicited) or from the wrong entity is left to the caller to drop.
    pub(crate) fn answer(
        &mut self,
        id: &str,
        from: Option<&Jid>,
        own: &FullJid,
        reply: Result<IqReply>,
    ) -> Answered {
        let Some(pending) = self.pending.get(id) else {
            return Answered::Unknown;
        };
        if !response_from_matches(pending.to.as_ref(), from, own) {
            return Answered::WrongSender {
                to: pending.to.clone(),
            };
        }
        if let Some(pending) = self.pending.remove(id) {
            let _ = pending.reply.send(reply);
        }
        Answered::Taken
    }

    /// Forgets request `id` without answering it (its caller gave up).
    pub(crate) fn forget(&mut self, id: &str) {
        self.pending.remove(id);
    }

    /// Fails every request whose deadline is at or before `now` with a timeout, and forgets
    /// those whose caller is gone.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now || p.reply.is_closed())
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let to = p.to.map(|j| j.to_string()).unwrap_or_default();
                let _ = p.reply.send(Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer from {to} in time"),
                )));
            }
        }
    }

    /// Fails every request with `error()` (the stream under them was reset or ended).
    pub(crate) fn fail_all(&mut self, error: impl Fn() -> Error) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(error()));
        }
    }

    /// Drops every request unanswered: each caller sees its reply channel closed and reports
    /// why in its own terms (a tunnel says why it ended).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
    }

    /// Requests waiting for their answer.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether request `id` waits for its answer.
    #[cfg(test)]
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.pending.contains_key(id)
    }
}

/// What [`IqTracker::answer`] did with a response.
#[derive(Debug, PartialEq)]
pub(crate) enum Answered {
    /// It answered its request.
    Taken,
    /// No request waits under that id.
    Unknown,
    /// It came from another entity than the request's addressee `to`: ignored.
    WrongSender {
        /// Whom the request went to.
        to: Option<Jid>,
    },
}

/// RFC 6120 §8.1.2.1: a response comes from the entity the request went to; a request without `to`
/// goes to our own account, whose answers may carry no `from`, our bare JID or our full JID.
pub(crate) fn response_from_matches(to: Option<&Jid>, from: Option<&Jid>, own: &FullJid) -> bool {
    let own_bare = own.to_bare();
    let is_own_bare = |j: &Jid| j.try_as_full().is_err() && j.to_bare() == own_bare;
    let is_own_full = |j: &Jid| j.try_as_full().is_ok_and(|f| f == own);
    match (to, from) {
        (Some(to), Some(from)) => to == from || (is_own_bare(to) && is_own_full(from)),
        (Some(to), None) => is_own_bare(to),
        (None, None) => true,
        (None, Some(from)) => is_own_bare(from) || is_own_full(from),
    }
}

#[cfg(test)]
#[path = "iq_tracker_tests.rs"]
mod tests;
