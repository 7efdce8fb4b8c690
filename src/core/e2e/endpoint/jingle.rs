//! Jingle negotiation (XEP-0166) of tunnels: opening one (session-initiate, wait for the accept,
//! TLS, optionally pairing) and answering one (trust decision, session-accept, TLS, optionally
//! pairing); the offers and accepts are read by `offer.rs`. Every half-open session is held by a
//! [`HalfOpen`] guard (`half_open.rs`), so whichever way setup ends (error, timeout, a dropped
//! future), its pending accept and IBB registration are removed and, once the peer knows the
//! session, it is terminated.
//!
//! What a new tunnel waits for (issue 16): two relayed round trips on the opener's side —
//! session-initiate → (its result, session-accept), then (IBB open, ClientHello) → the server's
//! TLS flight; the opener's last flight goes out, without a wait, just before its first stanza —
//! and nine relayed stanzas on the way, since IBB data needs no acknowledgement (`ibb.rs`), plus
//! the session ticket the responder sends once the handshake is done (not waited for). Neither
//! side waits for its own server on the way.
//!
//! A tunnel to a device seen before (the opener holds a ticket for a key it still trusts, see
//! `Resumption` in `tls.rs`) waits for one relayed round trip: the ClientHello rides in the
//! initiate (`early.rs`), and the responder answers it over IBB right after its accept, without
//! waiting for the accept's result. The responder's confirming read (below) then is on the
//! opener's path, since nothing relayed hides it any more; the trust rules are the same. Each must read the network's published keys and
//! revocation lists (XEP-0189) before it trusts a key of its own network, and that read overlaps
//! the relayed round trip instead of following it:
//! - the opener starts it with the initiate (it is about the peer's bare JID, not about the key the
//!   accept will name) and decides, once the accept is in, by the same rule as before;
//! - the responder accepts at once a key it already trusts (pinned first-hand, or attested as of
//!   its last read, and not revoked), reads meanwhile, and confirms the key by the same rule before
//!   it reads the ClientHello or sends any TLS byte. A key withdrawn or revoked since ends the
//!   session there (`decline`, the same words as a refusal), so a revoked device still gets no TLS
//!   handshake and no stanza, only the accept it would also learn from a refusal (our fingerprint,
//!   which is public on the node anyway). A key it does not know yet waits for the read before
//!   anything is answered, so an unknown or substituted key never sees an accept.

use crate::core::sync::Locked;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use xmpp_parsers::ibb::Stanza as IbbStanzaKind;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::jingle::{Action, Jingle, Reason, ReasonElement, SessionId};
use xmpp_parsers::jingle_ibb::Transport as IbbTransport;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::directory::TrustNow;
use super::half_open::HalfOpen;
use super::offer::{
    accept_took_flight, accepted_stanza, parse_accept, parse_offer, write_jingle, Offer,
};
use super::{iq_error, random_id, E2eEndpoint, E2eInbound, PeerEnded};
use crate::core::e2e::early::{early_pair, EarlyIo, Prefixed};
use crate::core::e2e::ibb::{IbbEvent, IbbParams, IbbStatus, IbbStream};
use crate::core::e2e::limits::{E2eCounters, Slot, SlotRefusal};
use crate::core::e2e::pairing::{pair_as_initiator, pair_as_responder};
use crate::core::e2e::tls::{handshake_resuming, SecureChannel, TlsRole};
use crate::core::e2e::trust::TrustSource;
use crate::core::e2e::tunnel::Tunnel;
use crate::core::e2e::xml::SecurityMethod;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::DeviceFingerprint;
use crate::core::session::IqReply;

/// How a tunnel is to be authenticated when we open it.
pub(super) enum Mode<'a> {
    Pinned,
    Pairing(&'a str),
}

impl E2eEndpoint {
    fn own_fingerprint_advertised(&self) -> DeviceFingerprint {
        self.inner
            .config
            .advertise_fingerprint
            .unwrap_or_else(|| self.inner.config.identity.fingerprint())
    }

    /// The stanza stream over an established channel, with the endpoint's outbound bound.
    fn start_tunnel<S>(
        &self,
        channel: SecureChannel<S>,
        me: FullJid,
        peer: &FullJid,
    ) -> (Tunnel, mpsc::Receiver<Stanza>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        Tunnel::start_bounded(
            channel,
            me,
            peer.clone(),
            self.inner.config.limits.tunnel_outbound,
            Some(self.inner.counters.clone()),
        )
    }

    fn jingle_iq(&self, to: &FullJid, jingle: Jingle) -> Iq {
        Iq::from_set(String::new(), jingle).with_to(Jid::from(to.clone()))
    }

    pub(super) fn terminate(&self, peer: &FullJid, sid: &str, reason: Reason, text: &str) {
        let mut jingle = Jingle::new(Action::SessionTerminate, SessionId(sid.to_owned()));
        let mut element = ReasonElement {
            reason,
            texts: Default::default(),
        };
        element.texts.insert(Default::default(), text.to_owned());
        jingle = jingle.set_reason(element);
        let mut iq = self.jingle_iq(peer, jingle);
        *iq.id_mut() = self.inner.session.next_id();
        let _ = self.inner.session.send(iq);
    }

    fn build(
        &self,
        action: Action,
        sid: &str,
        transport: IbbTransport,
        method: SecurityMethod,
        me: &FullJid,
        flight: Option<Vec<u8>>,
    ) -> Jingle {
        let fingerprint = self.own_fingerprint_advertised();
        write_jingle(action, sid, transport, &fingerprint, method, me, flight)
    }

    pub(super) async fn open(&self, peer: &FullJid, mode: Mode<'_>) -> Result<Tunnel> {
        let inner = &self.inner;
        let timeout = inner.config.setup_timeout;
        let me = inner
            .session
            .jid()
            .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the session is not online"))?;
        let sid = random_id();
        let ibb_sid = random_id();
        let method = match mode {
            Mode::Pinned => SecurityMethod::X509,
            Mode::Pairing(_) => SecurityMethod::Pake,
        };
        let resets = inner.resets.load(Ordering::SeqCst);
        let bare = peer.to_bare();
        // The trust decision below reads our network's published keys and revocation lists;
        // the read does not depend on the key the peer will present, so it starts now and runs
        // while the Jingle round trip does, instead of after it (the decision itself still
        // waits for it: a revocation published while we were away is known before any TLS byte).
        let read = (matches!(mode, Mode::Pinned) && self.is_own_network(&bare)).then(|| {
            let (this, bare) = (self.clone(), bare.clone());
            AbortOnDrop(tokio::spawn(async move { this.confirm_keys(&bare).await }))
        });
        let ibb_rx = inner
            .ibb
            .register(&ibb_sid, peer.clone(), inner.config.block_size)
            .map_err(|refusal| refusal.error())?;
        let (accept_tx, accept_rx) = oneshot::channel();
        inner
            .pending_accepts
            .locked()
            .insert(sid.clone(), (peer.clone(), accept_tx));
        let mut half = HalfOpen::new(self, peer, &sid, &ibb_sid, true);
        // After its accept the peer may still end the session (it confirms our key while we start
        // TLS, see `respond`): its terminate ends the handshake at once, with its reason. The
        // watch is set before the initiate leaves, not when we get to the accept: a resumed
        // responder terminates right behind its accept, and a terminate that came while we were
        // still judging the accept would find no session and leave us waiting for TLS until the
        // timeout. (`HalfOpen` removes the watch on every way out.)
        let (ended_tx, ended_rx) = oneshot::channel();
        let ended_key = (peer.clone(), sid.clone());
        if matches!(mode, Mode::Pinned) {
            inner
                .responding
                .locked()
                .insert(ended_key.clone(), ended_tx);
        }

        // A device seen before, whose ticket we hold for a key we still trust: our ClientHello
        // (offering that ticket) rides in the initiate, and the responder answers it right after
        // its accept, so the tunnel is up after one relayed round trip. Whom we trust is decided
        // exactly as below, on the key the accept names, before the answer is read.
        let peer_name = peer.to_string();
        let resume =
            matches!(mode, Mode::Pinned).then_some((&inner.resumption, peer_name.as_str()));
        let early_key = match mode {
            Mode::Pinned => inner
                .resumption
                .ticket_for(&peer_name, &inner.config.identity.fingerprint())
                .filter(|key| inner.config.trust.is_trusted(&bare, key)),
            Mode::Pairing(_) => None,
        };
        let mut early = None;
        let mut flight = None;
        if let Some(key) = early_key {
            let (io, mut handle) = early_pair::<IbbStream>();
            let mut tls = Box::pin(handshake_resuming(
                io,
                TlsRole::Initiator,
                &inner.config.identity,
                key,
                timeout,
                resume,
            ));
            let first = tokio::select! {
                first = handle.first_flight() => first?,
                done = &mut tls => {
                    return Err(done.err().unwrap_or_else(|| {
                        Error::new(ErrorKind::Internal, "the TLS client finished on its own")
                    }))
                }
            };
            let mut first = first;
            if inner.config.hooks.corrupt_flight {
                let at = first.len() / 2;
                first[at] ^= 0x01;
            }
            flight = Some(first);
            early = Some((key, tls, handle));
        }

        let initiate = self.build(
            Action::SessionInitiate,
            &sid,
            ibb_transport(&ibb_sid, inner.config.block_size, IbbStanzaKind::Message),
            method,
            &me,
            flight,
        );
        match inner
            .session
            .request(self.jingle_iq(peer, initiate), timeout)
            .await?
        {
            IqReply::Result(_) => half.known_to_peer(),
            IqReply::Error(e) => {
                // The server's or the peer's words, when it gave any (an offline device's server
                // usually gives none).
                let text = e
                    .texts
                    .values()
                    .next()
                    .map(|t| format!(": {t}"))
                    .unwrap_or_default();
                let kind = match e.defined_condition {
                    DefinedCondition::Forbidden | DefinedCondition::NotAuthorized => {
                        ErrorKind::Forbidden
                    }
                    // Not there, or one of its bounds was hit (resource-constraint): busy,
                    // worth trying again later.
                    DefinedCondition::ServiceUnavailable
                    | DefinedCondition::RecipientUnavailable
                    | DefinedCondition::ItemNotFound
                    | DefinedCondition::ResourceConstraint => ErrorKind::ProviderUnavailable,
                    _ => ErrorKind::Protocol,
                };
                return Err(Error::new(
                    kind,
                    format!(
                        "{peer} refused the end-to-end tunnel ({:?}){text}",
                        e.defined_condition
                    ),
                ));
            }
        }
        let accept = match tokio::time::timeout(timeout, accept_rx).await {
            Ok(Ok(accept)) => accept,
            Ok(Err(_)) if inner.resets.load(Ordering::SeqCst) != resets => {
                // Our session was reset meanwhile: the peer's answer can no longer reach us.
                half.gone_at_peer();
                return Err(Error::new(
                    ErrorKind::NotConnected,
                    format!("the session was reset while opening the end-to-end tunnel to {peer}"),
                ));
            }
            Ok(Err(_)) => {
                // The peer terminated the session itself: nothing to terminate.
                half.gone_at_peer();
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("{peer} terminated the end-to-end session before accepting"),
                ));
            }
            Err(_) => {
                half.end_with(Reason::Timeout, "no session-accept in time");
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{peer} did not accept the end-to-end session in time"),
                ));
            }
        };
        let (peer_fp, block_size) = parse_accept(&accept, &ibb_sid, method)
            .map_err(|e| half.failed(Reason::FailedApplication, e))?;
        if matches!(mode, Mode::Pinned) && !self.trusted_after(&bare, &peer_fp, read).await {
            half.end_with(Reason::SecurityError, "untrusted key");
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "{peer} uses key {} which is not trusted (pair with it first)",
                    peer_fp.to_hex()
                ),
            ));
        }
        let taken =
            accept_took_flight(&accept).map_err(|e| half.failed(Reason::FailedApplication, e))?;
        if taken && early.is_none() {
            let e = Error::new(
                ErrorKind::Protocol,
                format!("{peer} says it took a TLS flight that was never sent"),
            );
            return Err(half.failed(Reason::FailedApplication, e));
        }
        if let Some((key, _, _)) = &early {
            if *key != peer_fp {
                // The device answers with another key (trusted too) than the one our ticket and
                // ClientHello were for: this session's TLS cannot authenticate it. Its tickets
                // go, and a fresh session does the full handshake with the key it names.
                inner.resumption.forget_key(key);
                half.end_with(Reason::Cancel, "the device's key changed");
                drop(early);
                drop(half);
                return Box::pin(self.open(peer, Mode::Pinned)).await;
            }
        }
        let block_size = block_size.min(inner.config.block_size);
        let (io, status) = IbbStream::new(
            IbbParams {
                session: inner.session.clone(),
                peer: peer.clone(),
                sid: ibb_sid.clone(),
                block_size,
                stanza: accepted_stanza(&accept),
                send_open: true,
                ack_timeout: timeout,
                hooks: inner.config.hooks.clone(),
            },
            ibb_rx,
        );
        let tls = match early {
            Some((_, tls, handle)) => {
                // The responder's answer is read only now, after the trust decision above.
                handle.attach(io, taken);
                tls
            }
            None => Box::pin(handshake_resuming(
                EarlyIo::direct(io),
                TlsRole::Initiator,
                &inner.config.identity,
                peer_fp,
                timeout,
                resume,
            )),
        };
        let channel = tokio::select! {
            channel = tls => channel.map_err(|e| half.failed(Reason::SecurityError, explain(e, &status)))?,
            Ok(ended) = ended_rx => {
                half.gone_at_peer();
                return Err(peer_ended(peer, false, ended));
            }
        };
        inner.responding.locked().remove(&ended_key);
        // TLS is up and reads what arrives: the stream's setup allowance no longer applies.
        inner.ibb.established(peer, &ibb_sid);
        // Accepted: a late accept or terminate for this sid no longer concerns the opener.
        inner.pending_accepts.locked().remove(&sid);
        let (tunnel, rx) = self.start_tunnel(channel, me, peer);
        half.holds(&tunnel);
        if let Mode::Pairing(code) = mode {
            pair_as_initiator(&tunnel, code, timeout)
                .await
                .map_err(|e| half.failed(Reason::SecurityError, e))?;
            inner
                .config
                .trust
                .pin(&peer.to_bare(), &peer_fp, TrustSource::Paired)?;
        }
        half.established();
        self.install(tunnel.clone(), sid, ibb_sid, rx, status);
        Ok(tunnel)
    }

    pub(super) fn on_jingle(&self, from: &Jid, id: &str, payload: &Element) {
        let session = &self.inner.session;
        let reply_error = |condition, text: &str| {
            let _ = session.send(iq_error(from.clone(), id, condition, text));
        };
        let Ok(peer) = from.clone().try_into_full() else {
            return reply_error(DefinedCondition::BadRequest, "Jingle needs a full JID");
        };
        let jingle = match Jingle::try_from(payload.clone()) {
            Ok(j) => j,
            Err(e) => {
                return reply_error(
                    DefinedCondition::BadRequest,
                    &format!("malformed Jingle: {e}"),
                )
            }
        };
        let ack = || {
            let _ = session.send(Iq::empty_result(from.clone(), id.to_owned()));
        };
        match jingle.action {
            Action::SessionInitiate => self.on_initiate(peer, id, jingle),
            Action::SessionAccept => {
                let waiter = {
                    let mut pending = self.inner.pending_accepts.locked();
                    match pending.get(&jingle.sid.0) {
                        Some((expected, _)) if *expected == peer => pending.remove(&jingle.sid.0),
                        _ => None,
                    }
                };
                match waiter {
                    Some((_, tx)) => {
                        ack();
                        let _ = tx.send(jingle);
                    }
                    None => reply_error(DefinedCondition::ItemNotFound, "unknown Jingle session"),
                }
            }
            Action::SessionTerminate => {
                let found = {
                    let mut tunnels = self.inner.tunnels.locked();
                    match tunnels.get(&peer) {
                        Some(e) if e.jingle_sid == jingle.sid.0 => tunnels.remove(&peer),
                        _ => None,
                    }
                };
                let pending = {
                    let mut pending = self.inner.pending_accepts.locked();
                    match pending.get(&jingle.sid.0) {
                        Some((expected, _)) if *expected == peer => pending.remove(&jingle.sid.0),
                        _ => None,
                    }
                };
                let responding = self
                    .inner
                    .responding
                    .locked()
                    .remove(&(peer.clone(), jingle.sid.0.clone()));
                if found.is_none() && pending.is_none() && responding.is_none() {
                    return reply_error(DefinedCondition::ItemNotFound, "unknown Jingle session");
                }
                ack();
                if let Some(cancel) = responding {
                    // The peer gave up on a session we are still setting up: free it now
                    // rather than when its steps time out.
                    let _ = cancel.send(PeerEnded {
                        reason: jingle.reason.as_ref().map(|r| r.reason.clone()),
                        text: jingle
                            .reason
                            .as_ref()
                            .and_then(|r| r.texts.values().next().cloned())
                            .unwrap_or_default(),
                    });
                }
                if let Some(entry) = found {
                    // The peer's reason says whether this was a clean goodbye or a failure it
                    // saw (a record that did not decrypt: tampering in the path).
                    let kind = match jingle.reason.as_ref().map(|r| &r.reason) {
                        Some(Reason::SecurityError) => Some(ErrorKind::Tls),
                        Some(Reason::FailedTransport) => Some(ErrorKind::NotConnected),
                        _ => None,
                    };
                    match (kind, &jingle.reason) {
                        (Some(kind), Some(r)) => {
                            let text = r.texts.values().next().cloned().unwrap_or_default();
                            entry.tunnel.fail(Error::new(
                                kind,
                                format!("{peer} ended the end-to-end tunnel: {text}"),
                            ));
                        }
                        _ => entry.tunnel.close(),
                    }
                }
                // Dropping a pending accept's sender tells the opener the peer gave up.
            }
            _ => reply_error(
                DefinedCondition::FeatureNotImplemented,
                "only session-initiate/accept/terminate are supported",
            ),
        }
    }

    fn on_initiate(&self, peer: FullJid, id: &str, jingle: Jingle) {
        let offer = match parse_offer(&jingle) {
            Ok(o) => o,
            Err((condition, text)) => {
                let _ = self
                    .inner
                    .session
                    .send(iq_error(Jid::from(peer), id, condition, &text));
                return;
            }
        };
        let inner = &self.inner;
        let pairing = offer.method == SecurityMethod::Pake;
        let foreign = !self.is_own_network(&peer.to_bare());
        let refuse = |condition, text: &str| {
            let _ = inner
                .session
                .send(iq_error(Jid::from(peer.clone()), id, condition, text));
        };
        if pairing && foreign {
            // Only the household's own devices pair; a guest gets access through the owner's
            // approval instead. Refused before the gate: a stranger never uses anyone's tries,
            // and is not reported to the screen (it could flood it).
            if E2eCounters::bump(&inner.counters.pairing_strangers_refused) {
                tracing::info!(%peer, "refused pairing from another network");
            }
            return refuse(
                DefinedCondition::Forbidden,
                "pairing is only open to devices of this network",
            );
        }
        // The slot is held from here until the tunnel is installed or the session abandoned,
        // the trust decision included (it may wait for the network's published keys).
        let slot = match inner.slots.acquire(&peer, foreign, pairing) {
            Ok(slot) => slot,
            Err(refusal) => {
                let counter = match refusal {
                    SlotRefusal::Pairing => &inner.counters.pairing_sessions_refused,
                    SlotRefusal::Total | SlotRefusal::PerPeer => &inner.counters.half_open_refused,
                };
                if E2eCounters::bump(counter) {
                    tracing::warn!(%peer, ?refusal, "refused a session-initiate: half-open bound");
                }
                return refuse(DefinedCondition::ResourceConstraint, refusal.text());
            }
        };
        match offer.method {
            SecurityMethod::Pake => {
                let refusal = inner
                    .gate
                    .locked()
                    .is_open(&peer, Instant::now())
                    .err()
                    .map(|e| e.message().to_owned());
                self.decided(peer, id.to_owned(), jingle, offer, slot, refusal, None);
            }
            SecurityMethod::X509 => {
                // The decision may need the network's published keys: answer once it is made
                // (the initiator waits for our result before anything else).
                let this = self.clone();
                let id = id.to_owned();
                tokio::spawn(async move {
                    let bare = peer.to_bare();
                    let fingerprint = offer.fingerprint;
                    let admitted = this
                        .inner
                        .config
                        .admission
                        .as_ref()
                        .is_some_and(|admit| admit(&bare, &fingerprint));
                    let (ok, confirm) = if admitted {
                        (true, None)
                    } else {
                        match this.trust_without_reading(&bare, &fingerprint) {
                            TrustNow::Decided(ok) => (ok, None),
                            // A key we trust as far as we know: accepted now, and confirmed
                            // by reading the network's keys while the accept travels; `respond`
                            // sends no TLS byte before that read has confirmed it.
                            TrustNow::AfterReading { first_hand }
                                if this.inner.config.trust.is_trusted(&bare, &fingerprint) =>
                            {
                                (true, Some(first_hand))
                            }
                            // A key we do not know yet (perhaps attested since): the read decides
                            // before we answer, so an unknown key never sees an accept.
                            TrustNow::AfterReading { first_hand } => {
                                let read = this.confirm_keys(&bare).await;
                                let ok =
                                    this.trust_after_reading(&bare, &fingerprint, first_hand, read);
                                (ok, None)
                            }
                        }
                    };
                    let refusal = (!ok).then(|| refusal_text(&fingerprint));
                    this.decided(peer, id, jingle, offer, slot, refusal, confirm);
                });
            }
        }
    }

    /// Answers a session-initiate once trust is decided: refused (`forbidden`, reported), or
    /// accepted and answered by [`Self::respond`]. `confirm` is `Some(first_hand)` when the key
    /// is accepted before our network's keys were read: `respond` reads them before any TLS.
    #[allow(clippy::too_many_arguments)]
    fn decided(
        &self,
        peer: FullJid,
        id: String,
        jingle: Jingle,
        offer: Offer,
        slot: Slot,
        refusal: Option<String>,
        confirm: Option<bool>,
    ) {
        let inner = &self.inner;
        let from = Jid::from(peer.clone());
        if let Some(text) = refusal {
            let _ = inner
                .session
                .send(iq_error(from, &id, DefinedCondition::Forbidden, &text));
            let error = Error::new(ErrorKind::Forbidden, text);
            self.emit(match offer.method {
                SecurityMethod::Pake => E2eInbound::PairingFailed { peer, error },
                SecurityMethod::X509 => E2eInbound::TunnelRefused { peer, error },
            });
            return;
        }
        let block_size = offer.block_size.min(inner.config.block_size);
        let key = (peer.clone(), jingle.sid.0.clone());
        if inner.responding.locked().contains_key(&key) {
            let _ = inner.session.send(iq_error(
                from,
                &id,
                DefinedCondition::Conflict,
                "this Jingle session is already being set up",
            ));
            return;
        }
        // Keyed by (peer, sid): a live stream of this or any other peer is never replaced.
        let ibb_rx = match inner.ibb.register(&offer.ibb_sid, peer.clone(), block_size) {
            Ok(rx) => rx,
            Err(refusal) => {
                let _ =
                    inner
                        .session
                        .send(iq_error(from, &id, refusal.condition(), refusal.text()));
                return;
            }
        };
        // The peer knows the session from its own initiate, but until it has our accept a failure
        // needs no terminate (the original code never sent one before the accept went through).
        let mut half = HalfOpen::new(self, &peer, &jingle.sid.0, &offer.ibb_sid, false);
        half.slot = Some(slot);
        let (cancel_tx, cancel_rx) = oneshot::channel();
        inner.responding.locked().insert(key.clone(), cancel_tx);
        let _ = inner.session.send(Iq::empty_result(from, id));
        let this = self.clone();
        let lifetime = inner.config.limits.half_open_lifetime;
        tokio::spawn(async move {
            let pairing = offer.method == SecurityMethod::Pake;
            // The whole setup is bounded, not only each step: a peer that drips each step just
            // within its timeout still loses the session (the guard frees it when dropped here).
            let setup = tokio::time::timeout(
                lifetime,
                this.respond(peer.clone(), half, offer, block_size, ibb_rx, confirm),
            );
            let outcome = tokio::select! {
                outcome = setup => outcome.unwrap_or_else(|_| {
                    let _ = E2eCounters::bump(&this.inner.counters.half_open_expired);
                    tracing::info!(%peer, ?lifetime, "half-open session expired");
                    Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "the end-to-end session with {peer} was not set up within {lifetime:?}"
                        ),
                    ))
                }),
                Ok(ended) = cancel_rx => Err(peer_ended(&peer, pairing, ended)),
            };
            this.inner.responding.locked().remove(&key);
            if let Err(error) = outcome {
                this.emit(if pairing {
                    E2eInbound::PairingFailed { peer, error }
                } else {
                    E2eInbound::TunnelRefused { peer, error }
                });
            }
        });
    }

    async fn respond(
        &self,
        peer: FullJid,
        mut half: HalfOpen,
        offer: Offer,
        block_size: u16,
        ibb_rx: mpsc::Receiver<IbbEvent>,
        confirm: Option<bool>,
    ) -> Result<()> {
        let inner = &self.inner;
        let timeout = inner.config.setup_timeout;
        let sid = half.sid.clone();
        let me = inner
            .session
            .jid()
            .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the session is not online"))?;
        // The opener's ClientHello came with its initiate (x509 only): we say we took it (an
        // empty flight), and answer it over IBB right after the accept (below, once the key is
        // confirmed).
        let early = offer.flight.is_some();
        let accept = self.build(
            Action::SessionAccept,
            &sid,
            ibb_transport(&offer.ibb_sid, block_size, offer.stanza.clone()),
            offer.method,
            &me,
            early.then(Vec::new),
        );
        // The key accepted before our network's keys were read is confirmed meanwhile (the read
        // takes one round trip to our own server, the accept and the peer's first flight one
        // relayed round trip), with the rule `trusted` applies.
        let bare = peer.to_bare();
        let confirmation = async {
            match confirm {
                Some(first_hand) => {
                    let read = self.confirm_keys(&bare).await;
                    Some(self.trust_after_reading(&bare, &offer.fingerprint, first_hand, read))
                }
                None => None,
            }
        };
        let rejected = |e: xmpp_parsers::stanza_error::StanzaError| {
            Error::new(
                ErrorKind::Protocol,
                format!(
                    "{peer} rejected our session-accept ({:?})",
                    e.defined_condition
                ),
            )
        };
        let mut request = std::pin::pin!(inner
            .session
            .request(self.jingle_iq(&peer, accept), timeout));
        let mut confirmation = std::pin::pin!(confirmation);
        let (accepted, confirmed) = if early {
            // Our server flight follows the accept without waiting for its result (the server
            // keeps their order), or the opener would wait a second relayed round trip. The
            // accept leaves first (`biased`), the confirming read runs meanwhile.
            let mut accepted = None;
            let confirmed = tokio::select! {
                biased;
                reply = &mut request => {
                    accepted = Some(reply);
                    (&mut confirmation).await
                }
                confirmed = &mut confirmation => confirmed,
            };
            // From here on the opener has our accept (or will): giving up means terminating.
            half.known_to_peer();
            (accepted, confirmed)
        } else {
            let (accepted, confirmed) = tokio::join!(&mut request, &mut confirmation);
            (Some(accepted), confirmed)
        };
        let accepted = match accepted {
            Some(reply) => match reply? {
                IqReply::Result(_) => {
                    half.known_to_peer();
                    true
                }
                IqReply::Error(e) => return Err(rejected(e)),
            },
            None => false,
        };
        if confirmed == Some(false) {
            // Revoked (or no longer attested) after all: the session ends before any TLS byte,
            // and the peer hears why (its opener reports it as a refusal).
            let error = Error::new(ErrorKind::Forbidden, refusal_text(&offer.fingerprint));
            return Err(half.failed(Reason::Decline, error));
        }
        let (io, status) = IbbStream::new(
            IbbParams {
                session: inner.session.clone(),
                peer: peer.clone(),
                sid: offer.ibb_sid.clone(),
                block_size,
                stanza: offer.stanza.clone(),
                send_open: false,
                ack_timeout: timeout,
                hooks: inner.config.hooks.clone(),
            },
            ibb_rx,
        );
        let peer_name = peer.to_string();
        let resume = (offer.method == SecurityMethod::X509)
            .then_some((&inner.resumption, peer_name.as_str()));
        let tls = handshake_resuming(
            Prefixed::new(offer.flight.clone().unwrap_or_default(), io),
            TlsRole::Responder,
            &inner.config.identity,
            offer.fingerprint,
            timeout,
            resume,
        );
        let channel = if accepted {
            tls.await
        } else {
            // The accept's result is still on its way: anything but a result ends the session.
            let result = async {
                match (&mut request).await? {
                    IqReply::Result(_) => Ok(()),
                    IqReply::Error(e) => Err(rejected(e)),
                }
            };
            tokio::try_join!(result, tls).map(|((), channel)| channel)
        }
        .map_err(|e| half.failed(Reason::SecurityError, explain(e, &status)))?;
        // TLS is up and reads what arrives: the stream's setup allowance no longer applies.
        inner.ibb.established(&peer, &offer.ibb_sid);
        let (tunnel, mut rx) = self.start_tunnel(channel, me, &peer);
        half.holds(&tunnel);
        if offer.method == SecurityMethod::Pake {
            pair_as_responder(&tunnel, &mut rx, &inner.gate, timeout)
                .await
                .map_err(|e| half.failed(Reason::SecurityError, e))?;
            inner
                .config
                .trust
                .pin(&peer.to_bare(), &offer.fingerprint, TrustSource::Paired)?;
            self.emit(E2eInbound::Paired {
                peer: peer.clone(),
                fingerprint: offer.fingerprint,
            });
        }
        half.established();
        self.install(tunnel, sid, offer.ibb_sid, rx, status);
        Ok(())
    }
}

/// The IBB transport of our offers and accepts. pmn offers data in messages (no acknowledgement
/// per block, see `ibb.rs` for the pacing) and answers with the kind the initiator offered.
fn ibb_transport(sid: &str, block_size: u16, stanza: IbbStanzaKind) -> IbbTransport {
    IbbTransport {
        block_size,
        sid: xmpp_parsers::ibb::StreamId(sid.to_owned()),
        stanza,
    }
}

/// Why a key is refused (the words the opener and the tests see, however late the decision).
fn refusal_text(fingerprint: &DeviceFingerprint) -> String {
    format!(
        "key {} is neither paired with this device nor granted access",
        fingerprint.to_hex()
    )
}

/// A task aborted when its handle is dropped (an opener that gives up stops its read too).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl E2eEndpoint {
    /// [`Self::trusted`] with the read of our network's keys already started (`read`), or done
    /// here when there is none.
    async fn trusted_after(
        &self,
        jid: &xmpp_parsers::jid::BareJid,
        fingerprint: &DeviceFingerprint,
        read: Option<AbortOnDrop<Result<()>>>,
    ) -> bool {
        let Some(mut read) = read else {
            return self.trusted(jid, fingerprint).await;
        };
        // Read first, then decide: the read may have revoked the key or attested it.
        let read = (&mut read.0).await.unwrap_or_else(|e| {
            Err(Error::new(
                ErrorKind::Internal,
                format!("reading the network's keys failed: {e}"),
            ))
        });
        match self.trust_without_reading(jid, fingerprint) {
            TrustNow::Decided(ok) => ok,
            TrustNow::AfterReading { first_hand } => {
                self.trust_after_reading(jid, fingerprint, first_hand, read)
            }
        }
    }
}

/// The error of a setup the peer ended, in the terms the setup itself would have failed with: for
/// pairing, the other device rejected the exchange (a wrong code, as the gate sees it); otherwise
/// the peer's reason (a failed handshake is `Tls`, as on our side).
fn peer_ended(peer: &FullJid, pairing: bool, ended: PeerEnded) -> Error {
    let PeerEnded { reason, text } = ended;
    if pairing {
        return Error::new(
            ErrorKind::Forbidden,
            format!("pairing failed: {peer} ended it (wrong code?): {text}"),
        );
    }
    let kind = match reason {
        Some(Reason::SecurityError) => ErrorKind::Tls,
        Some(Reason::FailedTransport | Reason::ConnectivityError) => ErrorKind::NotConnected,
        Some(Reason::Timeout) => ErrorKind::Timeout,
        _ => ErrorKind::Forbidden,
    };
    Error::new(
        kind,
        format!("{peer} ended the end-to-end session before it was set up: {text}"),
    )
}

/// Prefers the transport's reason (e.g. refused IBB data) over TLS's generic "unexpected EOF".
pub(super) fn explain(e: Error, status: &IbbStatus) -> Error {
    match status.reason() {
        Some(transport) if e.kind() != ErrorKind::Tls || e.message().contains("eof") => Error::new(
            e.kind(),
            format!("{}; transport: {}", e.message(), transport.message()),
        ),
        _ => e,
    }
}
