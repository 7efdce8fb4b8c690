//! The per-peer tunnel cache: at most one tunnel per peer full JID, opened on demand (one opener at
//! a time per peer), installed once established, and closed when the peer goes offline, its key is
//! revoked, or our session is gone.

use crate::core::sync::Locked;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmpp_parsers::jingle::Reason;
use xmpp_parsers::stanza::Stanza;

use super::jingle::{explain, Mode};
use super::{E2eEndpoint, E2eInbound};
use crate::core::e2e::ibb::IbbStatus;
use crate::core::e2e::limits::E2eCounters;
use crate::core::e2e::tunnel::Tunnel;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::DeviceFingerprint;

/// A place in the queue of openers of one peer's tunnel; the map entry goes with its last holder,
/// so `opening` holds only peers being opened right now (however the opener ends, cancelled too).
pub(super) struct Opening {
    endpoint: E2eEndpoint,
    peer: FullJid,
    pub(super) gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Opening {
    fn drop(&mut self) {
        let mut opening = self.endpoint.inner.opening.locked();
        // The map's reference and ours: nobody else waits (clones are made under this lock).
        let last = opening
            .get(&self.peer)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate) && Arc::strong_count(g) <= 2);
        if last {
            opening.remove(&self.peer);
        }
    }
}

/// One established tunnel and the Jingle session it belongs to.
pub(super) struct TunnelEntry {
    pub(super) tunnel: Tunnel,
    pub(super) jingle_sid: String,
}

impl E2eEndpoint {
    /// Closes the tunnel to `peer` (it went offline); the next request opens a new one.
    pub fn peer_unavailable(&self, peer: &FullJid) {
        let entry = self.inner.tunnels.locked().remove(peer);
        if let Some(entry) = entry {
            entry.tunnel.fail(Error::new(
                ErrorKind::ProviderUnavailable,
                format!("{peer} went offline"),
            ));
        }
    }

    /// Ends the tunnel to `peer`, if one is up, with `NotConnected` (requests waiting in it fail
    /// at once), so that the next request opens a fresh one. The controller does this when a call
    /// in the tunnel was cut off by an interruption of the session: whether the tunnel's bytes
    /// survived depends on both sides' streams resuming, which this device cannot see; a new
    /// tunnel costs one handshake and is certain. Returns whether a tunnel was ended.
    pub fn reset_tunnel(&self, peer: &FullJid, why: &str) -> bool {
        // Left in the map: the tunnel's task removes it and tells the peer (session-terminate,
        // sent once the session is back); a failed tunnel is never reused meanwhile.
        let tunnel = self
            .inner
            .tunnels
            .locked()
            .get(peer)
            .map(|e| e.tunnel.clone())
            .filter(Tunnel::is_up);
        match tunnel {
            Some(tunnel) => {
                tunnel.fail(Error::new(
                    ErrorKind::NotConnected,
                    format!("the end-to-end tunnel to {peer} was reset: {why}"),
                ));
                true
            }
            None => false,
        }
    }

    /// Removes `fingerprint` of `jid` from the trust store and closes every tunnel using it.
    pub fn revoke(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> Result<bool> {
        let removed = self.inner.config.trust.revoke(jid, fingerprint)?;
        // Its tickets go too: nothing of its sessions is left to resume (the trust decision
        // before every handshake would refuse it anyway).
        self.inner.resumption.forget_key(fingerprint);
        self.close_where(
            |peer, fp| peer.to_bare() == *jid && fp == fingerprint,
            "its key was revoked",
        );
        Ok(removed)
    }

    /// Forgets every TLS session ticket this device holds, as client and as server: the next
    /// tunnel with any peer is a full handshake (certificates and signatures). Tunnels that are
    /// up stay up.
    pub fn forget_sessions(&self) {
        self.inner.resumption.clear();
    }

    /// Closes every tunnel to a device of `jid` (a guest whose grant was revoked). Returns how
    /// many were closed.
    pub fn close_peer(&self, jid: &BareJid, why: &str) -> usize {
        self.close_where(|peer, _| peer.to_bare() == *jid, why)
    }

    /// The XMPP session was reset (a new stream, not an XEP-0198 resume): the server forgot our
    /// session, so the peers' IBB sessions are gone too. Every tunnel ends with `NotConnected`, and
    /// so do the requests waiting in them, at once rather than at their deadlines (as plain iqs do
    /// on a reset); half-open sessions are dropped. The next call opens a fresh tunnel. Returns
    /// how many tunnels were closed.
    ///
    /// The role layer calls this on [`crate::core::session::Inbound::Online`] with
    /// `resumed == false`; never on a resume, where nothing was lost. The first online of the
    /// session (also `resumed == false`) is recognised and changes nothing: a tunnel being opened
    /// right after login must not be failed by a late look at that first event.
    pub fn close_all(&self, why: &str) -> usize {
        let inner = &self.inner;
        let interrupted = {
            let mut seen = inner.state_seen.locked();
            let changed = seen.has_changed().unwrap_or(true);
            seen.borrow_and_update();
            changed
        };
        if !interrupted {
            tracing::debug!("first online of this session: no end-to-end state to lose");
            return 0;
        }
        inner.resets.fetch_add(1, Ordering::SeqCst);
        let closing: Vec<Tunnel> = inner
            .tunnels
            .locked()
            .drain()
            .map(|(_, e)| e.tunnel)
            .collect();
        for tunnel in &closing {
            tunnel.fail(Error::new(
                ErrorKind::NotConnected,
                format!("the end-to-end tunnel to {} was lost: {why}", tunnel.peer()),
            ));
        }
        // Dropping the pending accepts' senders wakes their openers (which see the reset); the
        // IBB streams' pumps see their registrations go and end.
        let abandoned = {
            let mut pending = inner.pending_accepts.locked();
            let n = pending.len();
            pending.clear();
            n
        };
        inner.ibb.clear();
        E2eCounters::bump_by(&inner.counters.reset_failures, closing.len() as u64);
        if !closing.is_empty() || abandoned > 0 {
            tracing::info!(tunnels = closing.len(), abandoned, %why, "session reset: end-to-end tunnels failed");
        }
        closing.len()
    }

    /// Joins the openers of `peer`'s tunnel (one runs at a time). Refused with
    /// `ProviderUnavailable` when [`E2eLimits::opening_total`](crate::core::e2e::E2eLimits) other
    /// peers are being opened already.
    pub(super) fn opening(&self, peer: &FullJid) -> Result<Opening> {
        let inner = &self.inner;
        let mut opening = inner.opening.locked();
        let gate = match opening.get(peer) {
            Some(gate) => gate.clone(),
            None => {
                if opening.len() >= inner.config.limits.opening_total {
                    let _ = E2eCounters::bump(&inner.counters.opening_refused);
                    tracing::warn!(%peer, opening = opening.len(), "too many tunnels being opened");
                    return Err(Error::new(
                        ErrorKind::ProviderUnavailable,
                        format!(
                            "too many end-to-end tunnels are being opened at once ({}); try again",
                            opening.len()
                        ),
                    ));
                }
                let gate = Arc::new(tokio::sync::Mutex::new(()));
                opening.insert(peer.clone(), gate.clone());
                gate
            }
        };
        Ok(Opening {
            endpoint: self.clone(),
            peer: peer.clone(),
            gate,
        })
    }

    pub(super) fn close_where(
        &self,
        doomed: impl Fn(&FullJid, &DeviceFingerprint) -> bool,
        why: &str,
    ) -> usize {
        let closing: Vec<Tunnel> = {
            let mut tunnels = self.inner.tunnels.locked();
            let peers: Vec<FullJid> = tunnels
                .iter()
                .filter(|(peer, e)| doomed(peer, &e.tunnel.peer_fingerprint()))
                .map(|(peer, _)| peer.clone())
                .collect();
            peers
                .iter()
                .filter_map(|p| tunnels.remove(p))
                .map(|e| e.tunnel)
                .collect()
        };
        for tunnel in &closing {
            tunnel.fail(Error::new(
                ErrorKind::Forbidden,
                format!("tunnel to {} closed: {why}", tunnel.peer()),
            ));
        }
        closing.len()
    }

    /// The established tunnel to `peer`, if one is up.
    pub fn existing_tunnel(&self, peer: &FullJid) -> Option<Tunnel> {
        self.inner
            .tunnels
            .locked()
            .get(peer)
            .map(|e| e.tunnel.clone())
            .filter(Tunnel::is_up)
    }

    /// The tunnel to `peer`: reused if up, otherwise opened (the peer's key must be pinned).
    pub async fn tunnel(&self, peer: &FullJid) -> Result<Tunnel> {
        if let Some(t) = self.existing_tunnel(peer) {
            return Ok(t);
        }
        let opening = self.opening(peer)?;
        let _turn = opening.gate.lock().await;
        if let Some(t) = self.existing_tunnel(peer) {
            return Ok(t);
        }
        let opened = self.open(peer, Mode::Pinned).await;
        if let Err(error) = &opened {
            // The caller gets the error; the role's failure feed hears of it too.
            self.emit(E2eInbound::TunnelRefused {
                peer: peer.clone(),
                error: error.clone(),
            });
        }
        opened
    }

    /// Records an established tunnel and forwards its stanzas until it ends.
    pub(super) fn install(
        &self,
        tunnel: Tunnel,
        jingle_sid: String,
        ibb_sid: String,
        mut rx: mpsc::Receiver<Stanza>,
        status: Arc<IbbStatus>,
    ) {
        let peer = tunnel.peer().clone();
        let old = self.inner.tunnels.locked().insert(
            peer.clone(),
            TunnelEntry {
                tunnel: tunnel.clone(),
                jingle_sid: jingle_sid.clone(),
            },
        );
        if let Some(old) = old {
            old.tunnel.close();
        }
        self.emit(E2eInbound::TunnelUp {
            peer: peer.clone(),
            fingerprint: tunnel.peer_fingerprint(),
        });
        self.send_revocations(&tunnel);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(stanza) => {
                            // The revocation list and the password hand-over are the
                            // endpoint's own business.
                            if this.on_tunnel_revocations(&stanza) {
                                continue;
                            }
                            if let Some(reply) = this.on_tunnel_password(&stanza) {
                                if let Err(e) = tunnel.send(reply) {
                                    tracing::debug!(error = %e, "password hand-over answer not sent");
                                }
                                continue;
                            }
                            if this.inner.events.send(E2eInbound::Stanza(Box::new(stanza))).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = tunnel.closed() => break,
                }
            }
            tunnel.close();
            let reason = match tunnel.end_reason() {
                Some(Some(e)) => Some(explain(e, &status)),
                _ => status.reason(),
            };
            // Still registered means the peer did not terminate: tell it.
            let ours = {
                let mut tunnels = this.inner.tunnels.locked();
                match tunnels.get(&peer) {
                    Some(e) if e.jingle_sid == jingle_sid => {
                        tunnels.remove(&peer);
                        true
                    }
                    _ => false,
                }
            };
            if ours {
                let (r, text) = match &reason {
                    None => (Reason::Success, "closed"),
                    Some(e) if e.kind() == ErrorKind::Tls => (Reason::SecurityError, e.message()),
                    Some(e) => (Reason::FailedTransport, e.message()),
                };
                this.terminate(&peer, &jingle_sid, r, text);
            }
            this.inner.ibb.remove(&peer, &ibb_sid);
            this.emit(E2eInbound::TunnelDown { peer, reason });
        });
    }
}
