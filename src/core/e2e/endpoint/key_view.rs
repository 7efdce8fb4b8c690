//! How current this device's view of its network's key node (XEP-0189 keys and revocation lists)
//! is: whether the trust decision before a tunnel may rest on the last read instead of reading
//! the node again.
//!
//! Every tunnel used to read the node first, so that a revocation published by another device
//! is known before any TLS byte flows. For the responder that read sat between its accept and its
//! TLS answer: the one relayed round trip of a resumed tunnel became two. Now a read is skipped
//! while the view is **current**, which takes all of:
//! - a read of the node succeeded on this connection (the session has not been interrupted since:
//!   no reconnection, no XEP-0198 resumption either);
//! - before that read started, the server had pushed us a notification of the node on this
//!   connection (XEP-0163 `+notify`), which shows it knows we want the node's changes;
//! - no notification of the node arrived since that read started (one means the node changed:
//!   the next decision reads again, and the notification itself triggers a read at once);
//! - the read started less than [`KEY_VIEW_MAX_AGE`] ago.
//!
//! Why this keeps the security model: the read goes through the same server as the
//! notification, so a server that hides a revocation can hide it from a read just as well (the
//! model never relied on it; revocation lists are signed and rollbacks refused either way). What
//! the read guarded against is an honest server's change not yet seen, and the server pushes
//! that change into this stream before anything a later stanza asks of us: a tunnel request that
//! reaches us after the revocation's notification finds the view stale. The age bound covers a
//! subscription the server dropped without telling us.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::core::session::ConnectionState;

/// How long a read of the key node may stand in for the next one while no notification says the
/// node changed.
pub(crate) const KEY_VIEW_MAX_AGE: Duration = Duration::from_secs(300);

/// The state behind [`KeyView::is_current`]; one per endpoint, behind its mutex.
#[derive(Debug)]
pub(crate) struct KeyView {
    /// The session's state: any change since we last looked is an interruption.
    state: watch::Receiver<ConnectionState>,
    /// Bumped by every notification and every interruption: a read whose start saw another value
    /// may predate a change.
    generation: u64,
    /// A notification of the node arrived on this connection.
    notified: bool,
    /// When the last read that counts started.
    read_at: Option<Instant>,
    max_age: Duration,
}

/// What a read remembers of the view when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadTicket {
    generation: u64,
    notified: bool,
    at: Instant,
}

impl KeyView {
    pub(crate) fn new(mut state: watch::Receiver<ConnectionState>, max_age: Duration) -> Self {
        state.borrow_and_update();
        KeyView {
            state,
            generation: 0,
            notified: false,
            read_at: None,
            max_age,
        }
    }

    /// Forgets everything learnt on a connection that has since been interrupted.
    fn catch_up(&mut self) {
        if self.state.has_changed().unwrap_or(true) {
            self.state.borrow_and_update();
            self.generation += 1;
            self.notified = false;
            self.read_at = None;
        }
    }

    /// A notification of the key node arrived: the node changed, the view is stale.
    pub(crate) fn notified(&mut self) {
        self.catch_up();
        self.generation += 1;
        self.notified = true;
        self.read_at = None;
    }

    /// A read of the key node starts now.
    pub(crate) fn read_starts(&mut self, now: Instant) -> ReadTicket {
        self.catch_up();
        ReadTicket {
            generation: self.generation,
            notified: self.notified,
            at: now,
        }
    }

    /// The read of `ticket` succeeded: it makes the view current if nothing happened meanwhile.
    pub(crate) fn read_done(&mut self, ticket: ReadTicket) {
        self.catch_up();
        if ticket.notified && ticket.generation == self.generation {
            // Of two reads, the later start counts (an earlier one may finish last).
            self.read_at = Some(self.read_at.map_or(ticket.at, |at| at.max(ticket.at)));
        }
    }

    /// Whether a trust decision may use the last read instead of reading now.
    pub(crate) fn is_current(&mut self, now: Instant) -> bool {
        self.catch_up();
        self.read_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.max_age)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::jid::FullJid;

    fn online() -> ConnectionState {
        ConnectionState::Online {
            jid: "net@example.org/tv"
                .parse::<FullJid>()
                .expect("literal JID"),
        }
    }

    fn view() -> (watch::Sender<ConnectionState>, KeyView) {
        let (tx, rx) = watch::channel(online());
        (tx, KeyView::new(rx, Duration::from_secs(60)))
    }

    #[test]
    fn a_read_counts_only_after_the_server_showed_it_pushes_the_node() {
        let (_tx, mut view) = view();
        let t0 = Instant::now();
        let ticket = view.read_starts(t0);
        view.read_done(ticket);
        assert!(!view.is_current(t0), "no notification yet: read every time");
        view.notified();
        assert!(!view.is_current(t0), "a notification makes the view stale");
        let ticket = view.read_starts(t0);
        view.read_done(ticket);
        assert!(view.is_current(t0));
    }

    #[test]
    fn a_notification_during_a_read_leaves_the_view_stale() {
        let (_tx, mut view) = view();
        let t0 = Instant::now();
        view.notified();
        let ticket = view.read_starts(t0);
        view.notified();
        view.read_done(ticket);
        assert!(!view.is_current(t0));
    }

    #[test]
    fn a_notification_after_the_read_makes_it_stale() {
        let (_tx, mut view) = view();
        let t0 = Instant::now();
        view.notified();
        let ticket = view.read_starts(t0);
        view.read_done(ticket);
        assert!(view.is_current(t0));
        view.notified();
        assert!(!view.is_current(t0));
    }

    #[test]
    fn an_interruption_forgets_the_read_and_the_notification() {
        let (tx, mut view) = view();
        let t0 = Instant::now();
        view.notified();
        let ticket = view.read_starts(t0);
        view.read_done(ticket);
        assert!(view.is_current(t0));
        tx.send_replace(ConnectionState::Reconnecting {
            reason: "cut".into(),
        });
        tx.send_replace(online());
        assert!(!view.is_current(t0));
        // Without a notification on the new connection, a read does not count.
        let ticket = view.read_starts(t0);
        view.read_done(ticket);
        assert!(!view.is_current(t0));
    }

    #[test]
    fn an_interruption_during_a_read_voids_it() {
        let (tx, mut view) = view();
        let t0 = Instant::now();
        view.notified();
        let ticket = view.read_starts(t0);
        tx.send_replace(online());
        view.notified();
        view.read_done(ticket);
        assert!(!view.is_current(t0));
    }

    #[test]
    fn a_read_stops_counting_at_its_age_bound() {
        let (_tx, mut view) = view();
        let t0 = Instant::now();
        view.notified();
        let ticket = view.read_starts(t0);
        view.read_done(ticket);
        assert!(view.is_current(t0 + Duration::from_secs(59)));
        assert!(!view.is_current(t0 + Duration::from_secs(60)));
        // A clock read before the read started is not "older".
        assert!(view.is_current(t0.checked_sub(Duration::from_secs(1)).unwrap_or(t0)));
    }

    #[test]
    fn a_closed_session_never_counts_as_current() {
        let (tx, mut view) = view();
        let t0 = Instant::now();
        view.notified();
        let ticket = view.read_starts(t0);
        view.read_done(ticket);
        drop(tx);
        assert!(!view.is_current(t0));
    }
}
