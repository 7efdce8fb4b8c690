//! The guard of a Jingle session being set up ([`HalfOpen`]): whatever ends the setup before
//! the tunnel is installed (an error, a timeout, a `?`, a dropped future), dropping the guard
//! removes what the setup registered and, once the peer knows the session, terminates it. No
//! error branch of `jingle.rs` cleans up by hand.

use crate::core::sync::Locked;

use xmpp_parsers::jid::FullJid;
use xmpp_parsers::jingle::Reason;

use super::E2eEndpoint;
use crate::core::e2e::limits::Slot;
use crate::core::e2e::tunnel::Tunnel;
use crate::core::error::Error;

/// A Jingle session being set up, in either direction. Dropping it before [`Self::established`]
/// undoes the setup: the pending accept and the IBB registration go, a tunnel started on it is
/// closed, and, once the peer knows the session, a session-terminate tells it why. This replaces
/// a cleanup in every error branch (and covers the ones a `?` or a cancelled future would miss).
pub(super) struct HalfOpen {
    endpoint: E2eEndpoint,
    peer: FullJid,
    pub(super) sid: String,
    ibb_sid: String,
    /// How to end the session at the peer; `None` while (or once) the peer needs no terminate.
    terminate: Option<(Reason, String)>,
    tunnel: Option<Tunnel>,
    /// The inbound half-open slot this session holds (freed with the guard).
    pub(super) slot: Option<Slot>,
    /// We opened the session, so its accept may still be pending in `pending_accepts`.
    initiator: bool,
    done: bool,
}

impl HalfOpen {
    pub(super) fn new(
        endpoint: &E2eEndpoint,
        peer: &FullJid,
        sid: &str,
        ibb_sid: &str,
        initiator: bool,
    ) -> HalfOpen {
        HalfOpen {
            endpoint: endpoint.clone(),
            peer: peer.clone(),
            sid: sid.to_owned(),
            ibb_sid: ibb_sid.to_owned(),
            terminate: None,
            tunnel: None,
            slot: None,
            initiator,
            done: false,
        }
    }

    /// The peer acknowledged the session: from now on, giving up means terminating it.
    pub(super) fn known_to_peer(&mut self) {
        self.terminate = Some((Reason::Cancel, "session setup abandoned".to_owned()));
    }

    /// The peer ended the session itself: nothing to terminate.
    pub(super) fn gone_at_peer(&mut self) {
        self.terminate = None;
    }

    /// Gives up with this reason for the peer (if it knows the session).
    pub(super) fn end_with(&mut self, reason: Reason, text: &str) {
        if self.terminate.is_some() {
            self.terminate = Some((reason, text.to_owned()));
        }
    }

    /// Gives up because of `error` (its message is the peer's reason text); returns it.
    pub(super) fn failed(&mut self, reason: Reason, error: Error) -> Error {
        self.end_with(reason, error.message());
        error
    }

    /// A tunnel runs on this session now; it is closed if setup still fails.
    pub(super) fn holds(&mut self, tunnel: &Tunnel) {
        self.tunnel = Some(tunnel.clone());
    }

    /// Setup succeeded: the tunnel cache owns the session from here on.
    pub(super) fn established(mut self) {
        self.done = true;
    }
}

impl Drop for HalfOpen {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let inner = &self.endpoint.inner;
        if self.initiator {
            inner.pending_accepts.locked().remove(&self.sid);
            // The opener's watch for the peer's terminate during its handshake.
            inner
                .responding
                .locked()
                .remove(&(self.peer.clone(), self.sid.clone()));
        }
        inner.ibb.remove(&self.peer, &self.ibb_sid);
        if let Some(tunnel) = &self.tunnel {
            tunnel.close();
        }
        if let Some((reason, text)) = self.terminate.take() {
            tracing::debug!(peer = %self.peer, sid = %self.sid, %text, "abandoning a half-open Jingle session");
            self.endpoint
                .terminate(&self.peer, &self.sid, reason, &text);
        }
    }
}
