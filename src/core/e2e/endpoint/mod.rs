//! The end-to-end endpoint of one device: what the role layer talks to. This file owns the wiring
//! and the routing of stanzas into and out of tunnels; each job has its own file:
//! - `jingle.rs`: Jingle negotiation (XEP-0166) of tunnels, opening and answering, and the
//!   half-open bounds; `half_open.rs`: the drop guard that cleans up every half-open session
//!   however it ends; `offer.rs`: reading a peer's offer and accept;
//! - `cache.rs`: the per-peer tunnel cache (one tunnel per full JID), the bounded queue of
//!   openers, closing, revoking, and the session-reset hook [`E2eEndpoint::close_all`];
//! - `pairing.rs`: the pairing gate as the endpoint applies it (arming codes, pairing with a
//!   device of this network);
//! - `directory.rs`: the network's key directory (XEP-0189 on PEP): publishing, attesting, and
//!   the trust decision for attested keys.
//!
//! Wiring (the role layer calls these, nothing else):
//! - every inbound session stanza first goes to [`E2eEndpoint::handle_stanza`]; `true` means it was
//!   a Jingle/IBB iq consumed here (already answered);
//! - control traffic goes out with [`E2eEndpoint::send`] / [`E2eEndpoint::request`] (tunnel to the
//!   `to` JID, opened or reused on demand);
//! - stanzas that arrive *inside* tunnels come up as [`E2eInbound::Stanza`] with `from` set to the
//!   authenticated peer, to be dispatched exactly like session stanzas.
//!
//! Trust is decided here, before any TLS byte flows: an inbound session-initiate with method `x509`
//! is refused unless its fingerprint is pinned for the sender's bare JID; `pake` is refused unless
//! the sender is a device of this network and pairing is armed (and the sender not locked out).
//! TLS then checks that the peer really holds the advertised key.

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::jingle::Jingle;
use xmpp_parsers::ns;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::gate::PairingGate;
use super::ibb::{IbbRegistry, MAX_BLOCK_SIZE, NS_IBB};
use super::limits::{E2eCounters, E2eStats, HalfOpenSlots};
use super::settings::E2eSettings;
use super::tls::{Resumption, RESUMPTION_LIFETIME, RESUMPTION_PEERS};
use super::trust::TrustStore;
use crate::core::error::{CallOutcome, Error, ErrorKind, Result};
use crate::core::identity::DeviceFingerprint;
use crate::core::session::{ConnectionState, IqReply, Session};

mod cache;
mod directory;
mod gossip;
mod half_open;
mod jingle;
mod key_view;
mod offer;
/// For the seed writer of the fuzz corpus, which writes initiates and accepts as we send them.
#[cfg(test)]
pub(crate) use offer::{accept_took_flight, write_jingle};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use offer::{parse_accept, parse_offer};
mod pairing;
mod rotation;
pub use rotation::{PasswordRotation, NS_PASSWORD};

use cache::TunnelEntry;

pub use super::settings::Admission;

/// What the endpoint hands to the role layer.
#[derive(Debug)]
pub enum E2eInbound {
    /// A stanza that arrived inside a tunnel; `from` is the authenticated peer's full JID.
    Stanza(Box<Stanza>),
    /// A tunnel is up (opened by us or by the peer).
    TunnelUp {
        /// The peer.
        peer: FullJid,
        /// Its authenticated SPKI fingerprint.
        fingerprint: DeviceFingerprint,
    },
    /// A tunnel ended; `reason` is `None` for a clean close.
    TunnelDown {
        /// The peer.
        peer: FullJid,
        /// Why, if it failed.
        reason: Option<Error>,
    },
    /// A tunnel attempt was refused or failed, inbound or one we opened (unknown key, failed
    /// handshake, altered bytes): tell the user.
    TunnelRefused {
        /// Who tried.
        peer: FullJid,
        /// Why it was refused.
        error: Error,
    },
    /// Pairing with `peer` failed on this (code-showing) device: wrong or expired code, pairing
    /// not armed or locked, or a broken exchange. Nothing was pinned.
    PairingFailed {
        /// Who tried.
        peer: FullJid,
        /// Why it failed.
        error: Error,
    },
    /// Pairing with `peer` succeeded on this (code-showing) device; its key is now pinned.
    Paired {
        /// The new peer.
        peer: FullJid,
        /// Its pinned fingerprint.
        fingerprint: DeviceFingerprint,
    },
}

struct Inner {
    session: Session,
    config: E2eSettings,
    ibb: IbbRegistry,
    /// Our own session-initiates waiting for their accept, by Jingle sid (with the peer asked).
    pending_accepts: Mutex<HashMap<String, (FullJid, oneshot::Sender<Jingle>)>>,
    tunnels: Mutex<HashMap<FullJid, TunnelEntry>>,
    /// Sessions being set up, by (peer, Jingle sid): inbound ones, and our own between the
    /// peer's accept and the end of the TLS handshake. A session-terminate from the peer ends the
    /// setup at once (bounded by the half-open slots and by `opening_total`).
    responding: Mutex<HashMap<(FullJid, String), oneshot::Sender<PeerEnded>>>,
    /// One opener at a time per peer; entries live only while someone opens (bounded).
    opening: Mutex<HashMap<FullJid, Arc<tokio::sync::Mutex<()>>>>,
    gate: Mutex<PairingGate>,
    /// Inbound half-open sessions (bounded per peer, for foreign peers, and in total).
    slots: Arc<HalfOpenSlots>,
    counters: Arc<E2eCounters>,
    /// Bumped on every session reset, so an opener can tell "our session was reset" from "the
    /// peer gave up" when its pending accept disappears.
    resets: AtomicU64,
    /// The session's state as last looked at by [`E2eEndpoint::close_all`]: unchanged since means
    /// the session was never interrupted (its first online), so there is nothing to lose.
    state_seen: Mutex<watch::Receiver<ConnectionState>>,
    events: mpsc::Sender<E2eInbound>,
    /// The network's other resources online, as presence told us (bounded): who gets a new
    /// password when it is rotated.
    own_online: Mutex<std::collections::BTreeSet<FullJid>>,
    /// TLS session tickets of the tunnels (in memory only, see [`Resumption`]).
    resumption: Resumption,
    /// Whether the last read of our network's key node still stands (see [`key_view`]).
    key_view: Mutex<key_view::KeyView>,
}

/// The end-to-end layer of one device on one [`Session`]. Cheap to clone.
#[derive(Clone)]
pub struct E2eEndpoint {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for E2eEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eEndpoint")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn iq_error(to: Jid, id: &str, condition: DefinedCondition, text: &str) -> Iq {
    let error_type = match condition {
        DefinedCondition::Forbidden | DefinedCondition::NotAuthorized => ErrorType::Auth,
        // A bound was hit: the peer may retry later.
        DefinedCondition::ResourceConstraint => ErrorType::Wait,
        _ => ErrorType::Cancel,
    };
    Iq::from_error(
        id.to_owned(),
        StanzaError::new(error_type, condition, "en", text),
    )
    .with_to(to)
}

/// Why a peer ended a session we were still setting up (its session-terminate).
#[derive(Debug)]
struct PeerEnded {
    reason: Option<xmpp_parsers::jingle::Reason>,
    text: String,
}

/// Namespace of PEP notifications (XEP-0060 §7).
const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// Depth of the endpoint's event channel.
const EVENT_DEPTH: usize = 256;

impl E2eEndpoint {
    /// Creates the endpoint over `session`; returns it and the receiver of [`E2eInbound`] events
    /// (tunnelled stanzas and tunnel state), which the role layer must keep draining.
    pub fn new(session: Session, config: E2eSettings) -> (E2eEndpoint, mpsc::Receiver<E2eInbound>) {
        let (events, rx) = mpsc::channel(EVENT_DEPTH);
        let mut config = config;
        config.block_size = config.block_size.clamp(1, MAX_BLOCK_SIZE);
        let counters = Arc::new(E2eCounters::default());
        let mut state_seen = session.watch_state();
        state_seen.borrow_and_update();
        let key_view = key_view::KeyView::new(session.watch_state(), key_view::KEY_VIEW_MAX_AGE);
        let limits = config.limits.clone();
        let inner = Inner {
            session,
            config,
            ibb: IbbRegistry::new(
                limits.ibb_streams,
                limits.ibb_buffered_bytes,
                counters.clone(),
            ),
            slots: HalfOpenSlots::new(limits),
            counters,
            resets: AtomicU64::new(0),
            state_seen: Mutex::new(state_seen),
            pending_accepts: Mutex::new(HashMap::new()),
            tunnels: Mutex::new(HashMap::new()),
            responding: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            gate: Mutex::new(PairingGate::default()),
            events,
            own_online: Mutex::new(Default::default()),
            resumption: Resumption::new(RESUMPTION_PEERS, RESUMPTION_LIFETIME),
            key_view: Mutex::new(key_view),
        };
        (
            E2eEndpoint {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// This device's fingerprint (SHA-256 of its SPKI).
    pub fn fingerprint(&self) -> DeviceFingerprint {
        self.inner.config.identity.fingerprint()
    }

    /// The trust store in use.
    pub fn trust(&self) -> &Arc<TrustStore> {
        &self.inner.config.trust
    }

    /// The session underneath.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// How often each bound of [`crate::core::e2e::E2eLimits`] was hit, and other refusals worth
    /// watching.
    pub fn stats(&self) -> E2eStats {
        let mut stats = self.inner.counters.snapshot();
        let gate = self.inner.gate.locked();
        stats.pairing_peers_evicted = gate.evicted;
        stats.pairing_codes_exhausted = gate.codes_exhausted;
        stats
    }

    /// Offers a session stanza to the end-to-end layer. Returns `true` when it was a Jingle or IBB
    /// request (answered here) or an IBB data message (taken here); the caller must not process it further.
    /// Unavailable presence of a peer closes its tunnel (and returns `false`: the role layer still
    /// wants to see it).
    pub fn handle_stanza(&self, stanza: &Stanza) -> bool {
        match stanza {
            Stanza::Iq(Iq::Set {
                from, id, payload, ..
            }) => {
                let Some(from) = from else { return false };
                if payload.is("jingle", ns::JINGLE) {
                    self.on_jingle(from, id, payload);
                    true
                } else if payload.has_ns(NS_IBB) {
                    let reply = self.inner.ibb.handle(from, id, payload);
                    let _ = self.inner.session.send(reply);
                    true
                } else {
                    false
                }
            }
            // In-band data in a message (XEP-0047 §3): the default of pmn's streams.
            Stanza::Message(m) if m.payloads.iter().any(|p| p.is("data", NS_IBB)) => {
                self.inner.ibb.handle_message(m);
                true
            }
            // A change of the network's published keys (PEP notification, XEP-0163): re-check
            // the attested pins now, so a revoked device loses its open tunnels at once.
            Stanza::Message(m) if self.is_key_notification(m) => {
                // Stale from now on, before any later stanza is handled: a tunnel request that
                // reaches us after this notification is decided on a new read.
                self.inner.key_view.locked().notified();
                if let Ok(network) = self.own_network() {
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = this.resync(&network).await {
                            tracing::info!(error = %e, "could not re-check the published keys");
                        }
                    });
                }
                true
            }
            Stanza::Presence(p) => {
                self.track_own_presence(p);
                if p.type_ == PresenceType::Unavailable {
                    if let Some(Ok(peer)) = p.from.clone().map(Jid::try_into_full) {
                        self.peer_unavailable(&peer);
                    }
                }
                false
            }
            _ => false,
        }
    }

    /// Sends `stanza` through the tunnel to its `to` JID (which must be a full JID with a tunnel up).
    pub fn send(&self, stanza: impl Into<Stanza>) -> Result<()> {
        let stanza = stanza.into();
        let peer = stanza_to(&stanza)?;
        match self.existing_tunnel(&peer) {
            Some(t) => t.send(stanza),
            None => Err(Error::new(
                ErrorKind::NotConnected,
                format!("no end-to-end tunnel to {peer}"),
            )),
        }
    }

    /// Sends an iq request to its `to` JID through the tunnel (opened or reused) and waits at most
    /// `timeout` for the answer. Tunnel setup has its own bound ([`E2eSettings::setup_timeout`]).
    ///
    /// Errors say whether the request left: a tunnel that could not be opened is
    /// [`CallOutcome::NotRun`]; see [`super::tunnel::Tunnel::request`] for the rest.
    pub async fn request(&self, iq: Iq, timeout: Duration) -> Result<IqReply> {
        let peer = stanza_to(&Stanza::Iq(iq.clone()))?;
        let tunnel = self
            .tunnel(&peer)
            .await
            .map_err(|e| e.with_outcome(CallOutcome::NotRun))?;
        tunnel.request(iq, timeout).await
    }

    /// [`E2eEndpoint::request`] for one attempt of the RPC call `call` (see
    /// [`super::tunnel::Tunnel::request_call`]).
    pub(crate) async fn request_call(
        &self,
        iq: Iq,
        timeout: Duration,
        call: &crate::core::rpc::CallId,
    ) -> Result<IqReply> {
        let peer = stanza_to(&Stanza::Iq(iq.clone()))?;
        let tunnel = self
            .tunnel(&peer)
            .await
            .map_err(|e| e.with_outcome(CallOutcome::NotRun))?;
        tunnel.request_call(iq, timeout, call).await
    }

    fn emit(&self, event: E2eInbound) {
        if self.inner.events.try_send(event).is_err() {
            tracing::warn!("e2e event channel full or closed; dropping an event");
        }
    }
}

fn stanza_to(stanza: &Stanza) -> Result<FullJid> {
    let to = match stanza {
        Stanza::Iq(iq) => iq.to().cloned(),
        Stanza::Message(m) => m.to.clone(),
        Stanza::Presence(p) => p.to.clone(),
    };
    to.and_then(|j| j.try_into_full().ok()).ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            "a tunnelled stanza needs a full JID in `to`",
        )
    })
}

/// How a role builds its endpoint from its settings.
impl E2eSettings {
    /// The endpoint of a role over `session` with these settings and the role's `admission`.
    pub(crate) fn endpoint(
        &self,
        session: Session,
        admission: Option<Admission>,
    ) -> (E2eEndpoint, mpsc::Receiver<E2eInbound>) {
        let mut config = self.clone();
        config.admission = admission;
        let (endpoint, events) = E2eEndpoint::new(session, config);
        // Our key on the network's XEP-0189 node: what lets an owner attest us and the network's
        // devices verify that attestation.
        let publisher = endpoint.clone();
        tokio::spawn(async move {
            if let Err(e) = publisher.publish_key().await {
                tracing::warn!(error = %e, "could not publish this device's key");
            }
        });
        (endpoint, events)
    }
}

/// The next event of an optional endpoint; pends forever without one, so a `select!` arm over it
/// is simply never taken by a role that does not use the tunnel.
pub(crate) async fn next_inbound(
    rx: &mut Option<mpsc::Receiver<E2eInbound>>,
) -> Option<E2eInbound> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
