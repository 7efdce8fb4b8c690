//! The end-to-end endpoint of one device: Jingle negotiation (XEP-0166) of tunnels, the IBB
//! registry, the per-peer tunnel cache, the pairing gate, and routing of stanzas into and out of
//! tunnels.
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
//! pairing is armed. TLS then checks that the peer really holds the advertised key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::jingle::{
    Action, Content, ContentId, Creator, Description, Jingle, Reason, ReasonElement, Senders,
    SessionId, Transport,
};
use xmpp_parsers::jingle_ibb::Transport as IbbTransport;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::presence::Type as PresenceType;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::ibb::{
    IbbParams, IbbRegistry, IbbStatus, IbbStream, TransportHooks, MAX_BLOCK_SIZE, NS_IBB,
};
use super::pairing::{pair_as_initiator, pair_as_responder, PairingGate};
use super::pubkey;
use super::tls::{handshake, TlsRole};
use super::trust::{TrustSource, TrustStore};
use super::tunnel::Tunnel;
use super::xml::{SecurityMethod, XmlStreamDescription, XtlsSecurity, NS_XMLSTREAM, NS_XTLS};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{fingerprint_hex, DeviceIdentity};
use crate::core::session::{IqReply, Session};

/// Configuration of an [`E2eEndpoint`].
#[derive(Clone)]
pub struct E2eConfig {
    /// This device's TLS identity (key in a KeyStore).
    pub identity: DeviceIdentity,
    /// The pinned peer keys.
    pub trust: Arc<TrustStore>,
    /// IBB block size offered (at most 4096).
    pub block_size: u16,
    /// Bound on each step of tunnel setup (each Jingle exchange, the TLS handshake, pairing).
    pub timeout: Duration,
    /// Attack-test knob: corrupt outbound transport bytes (never set in production).
    pub hooks: TransportHooks,
    /// Attack-test knob: advertise this fingerprint in Jingle instead of our own (a relay that
    /// substitutes its key). Never set in production.
    pub advertise_fingerprint: Option<[u8; 32]>,
    /// Besides the trust store, who may open a tunnel to us: a provider admits a guest device
    /// whose key an active grant names (see [`crate::core::access::AccessGuard::admits`]).
    pub admission: Option<Admission>,
}

/// Decides whether an inbound tunnel from (bare JID, key fingerprint) is accepted although the key
/// is not in the trust store.
pub type Admission = Arc<dyn Fn(&BareJid, &[u8; 32]) -> bool + Send + Sync>;

impl std::fmt::Debug for E2eConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eConfig")
            .field(
                "fingerprint",
                &fingerprint_hex(&self.identity.fingerprint()),
            )
            .field("block_size", &self.block_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl E2eConfig {
    /// Defaults: 4096-byte blocks, 10 s per setup step, no test knobs.
    pub fn new(identity: DeviceIdentity, trust: Arc<TrustStore>) -> Self {
        E2eConfig {
            identity,
            trust,
            block_size: MAX_BLOCK_SIZE,
            timeout: Duration::from_secs(10),
            hooks: TransportHooks::default(),
            advertise_fingerprint: None,
            admission: None,
        }
    }
}

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
        fingerprint: [u8; 32],
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
        fingerprint: [u8; 32],
    },
}

struct TunnelEntry {
    tunnel: Tunnel,
    jingle_sid: String,
}

struct Inner {
    session: Session,
    config: E2eConfig,
    ibb: IbbRegistry,
    pending_accepts: Mutex<HashMap<String, (FullJid, oneshot::Sender<Jingle>)>>,
    tunnels: Mutex<HashMap<FullJid, TunnelEntry>>,
    opening: Mutex<HashMap<FullJid, Arc<tokio::sync::Mutex<()>>>>,
    gate: Mutex<PairingGate>,
    events: mpsc::Sender<E2eInbound>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section here is a single map operation: a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn iq_error(to: Jid, id: &str, condition: DefinedCondition, text: &str) -> Iq {
    let error_type = match condition {
        DefinedCondition::Forbidden | DefinedCondition::NotAuthorized => ErrorType::Auth,
        _ => ErrorType::Cancel,
    };
    Iq::from_error(
        id.to_owned(),
        StanzaError::new(error_type, condition, "en", text),
    )
    .with_to(to)
}

/// Namespace of PEP notifications (XEP-0060 §7).
const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// Depth of the endpoint's event channel.
const EVENT_DEPTH: usize = 256;

/// How a tunnel is to be authenticated when we open it.
enum Mode<'a> {
    Pinned,
    Pairing(&'a str),
}

impl E2eEndpoint {
    /// Creates the endpoint over `session`; returns it and the receiver of [`E2eInbound`] events
    /// (tunnelled stanzas and tunnel state), which the role layer must keep draining.
    pub fn new(session: Session, config: E2eConfig) -> (E2eEndpoint, mpsc::Receiver<E2eInbound>) {
        let (events, rx) = mpsc::channel(EVENT_DEPTH);
        let mut config = config;
        config.block_size = config.block_size.clamp(1, MAX_BLOCK_SIZE);
        let inner = Inner {
            session,
            config,
            ibb: IbbRegistry::default(),
            pending_accepts: Mutex::new(HashMap::new()),
            tunnels: Mutex::new(HashMap::new()),
            opening: Mutex::new(HashMap::new()),
            gate: Mutex::new(PairingGate::default()),
            events,
        };
        (
            E2eEndpoint {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// This device's fingerprint (SHA-256 of its SPKI).
    pub fn fingerprint(&self) -> [u8; 32] {
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

    /// Offers a session stanza to the end-to-end layer. Returns `true` when it was a Jingle or IBB
    /// request, which has then been answered here; the caller must not process it further.
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
            // A change of the network's published keys (PEP notification, XEP-0163): re-check
            // the attested pins now, so a revoked device loses its open tunnels at once.
            Stanza::Message(m) if self.is_key_notification(m) => {
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
            Stanza::Presence(p) if p.type_ == PresenceType::Unavailable => {
                if let Some(Ok(peer)) = p.from.clone().map(Jid::try_into_full) {
                    self.peer_unavailable(&peer);
                }
                false
            }
            _ => false,
        }
    }

    /// Whether `message` is our own account's PEP notification about the published keys.
    fn is_key_notification(&self, message: &xmpp_parsers::message::Message) -> bool {
        let from_own = match (&message.from, self.own_network()) {
            (Some(from), Ok(own)) => from.to_bare() == own && from.resource().is_none(),
            _ => false,
        };
        from_own
            && message.payloads.iter().any(|p| {
                p.is("event", NS_PUBSUB_EVENT)
                    && p.children()
                        .any(|c| c.attr("node") == Some(pubkey::NS_PUBKEY))
            })
    }

    /// Closes the tunnel to `peer` (it went offline); the next request opens a new one.
    pub fn peer_unavailable(&self, peer: &FullJid) {
        let entry = lock(&self.inner.tunnels).remove(peer);
        if let Some(entry) = entry {
            entry.tunnel.fail(Error::new(
                ErrorKind::ProviderUnavailable,
                format!("{peer} went offline"),
            ));
        }
    }

    /// Removes `fingerprint` of `jid` from the trust store and closes every tunnel using it.
    pub fn revoke(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> Result<bool> {
        let removed = self.inner.config.trust.revoke(jid, fingerprint)?;
        self.close_where(
            |peer, fp| peer.to_bare() == *jid && fp == fingerprint,
            "its key was revoked",
        );
        Ok(removed)
    }

    /// Closes every tunnel to a device of `jid` (a guest whose grant was revoked). Returns how
    /// many were closed.
    pub fn close_peer(&self, jid: &BareJid, why: &str) -> usize {
        self.close_where(|peer, _| peer.to_bare() == *jid, why)
    }

    /// Closes every tunnel: the server forgot our session, so the peers' IBB sessions are gone
    /// too (the next call opens a fresh tunnel).
    pub fn close_all(&self, why: &str) -> usize {
        self.close_where(|_, _| true, why)
    }

    fn close_where(&self, doomed: impl Fn(&FullJid, &[u8; 32]) -> bool, why: &str) -> usize {
        let closing: Vec<Tunnel> = {
            let mut tunnels = lock(&self.inner.tunnels);
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

    /// Arms pairing with a fresh 6-digit code to show on this device's screen (valid 5 minutes,
    /// single use). Fails while pairing is locked after too many wrong codes.
    pub fn start_pairing(&self) -> Result<String> {
        lock(&self.inner.gate).arm(Instant::now())
    }

    /// Arms pairing with a code chosen by the app (e.g. printed on a device label).
    pub fn start_pairing_with(&self, code: &str) -> Result<()> {
        lock(&self.inner.gate).arm_with(code, Instant::now())
    }

    /// Disarms pairing.
    pub fn stop_pairing(&self) {
        lock(&self.inner.gate).disarm();
    }

    /// The established tunnel to `peer`, if one is up.
    pub fn existing_tunnel(&self, peer: &FullJid) -> Option<Tunnel> {
        lock(&self.inner.tunnels)
            .get(peer)
            .map(|e| e.tunnel.clone())
            .filter(Tunnel::is_up)
    }

    /// The tunnel to `peer`: reused if up, otherwise opened (the peer's key must be pinned).
    pub async fn tunnel(&self, peer: &FullJid) -> Result<Tunnel> {
        if let Some(t) = self.existing_tunnel(peer) {
            return Ok(t);
        }
        let gate = lock(&self.inner.opening)
            .entry(peer.clone())
            .or_default()
            .clone();
        let _guard = gate.lock().await;
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

    /// Pairs with `peer`, which shows `code`: opens a pairing-mode tunnel, runs SPAKE2, and on
    /// success pins the peer's key and keeps the tunnel as the one to that peer.
    ///
    /// A device of our own network that we just paired with is then attested on the network's
    /// XEP-0189 node (in the background), so the network's other devices trust it too.
    pub async fn pair(&self, peer: &FullJid, code: &str) -> Result<Tunnel> {
        let tunnel = self.open(peer, Mode::Pairing(code)).await?;
        if self.is_own_network(&peer.to_bare()) {
            let this = self.clone();
            let (peer, fingerprint) = (peer.clone(), tunnel.peer_fingerprint());
            tokio::spawn(async move {
                match this.attest(&fingerprint).await {
                    Ok(()) => tracing::info!(%peer, "attested the newly paired device"),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "could not attest the paired device")
                    }
                }
            });
        }
        Ok(tunnel)
    }

    /// Publishes this device's certificate on the network's XEP-0189 node unless it is there
    /// already (roles do it once online), so devices that trust an owner who attests it can verify
    /// it. An existing item is kept: it may carry owners' attestations.
    pub async fn publish_key(&self) -> Result<()> {
        pubkey::ensure_own_published(
            &self.inner.session,
            &self.inner.config.identity,
            self.inner.config.timeout,
        )
        .await
    }

    /// Adds our attestation to the published key `fingerprint` of our network (an owner device
    /// vouching for a device it paired with). Fails if that device has not published its key.
    pub async fn attest(&self, fingerprint: &[u8; 32]) -> Result<()> {
        let inner = &self.inner;
        let network = self.own_network()?;
        let keys = pubkey::fetch(&inner.session, &network, inner.config.timeout).await?;
        let key = keys
            .into_iter()
            .find(|k| k.fingerprint == *fingerprint)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ProviderUnavailable,
                    format!(
                        "device key {} is not published on {network}",
                        fingerprint_hex(fingerprint)
                    ),
                )
            })?;
        let ours = pubkey::attest(&inner.config.identity, &network, &key.spki)?;
        let mut attestations: Vec<_> = key
            .attestations
            .into_iter()
            .filter(|a| a.by != ours.by)
            .collect();
        attestations.push(ours);
        pubkey::publish(
            &inner.session,
            &key.certificate,
            attestations,
            inner.config.timeout,
        )
        .await
    }

    /// Revokes `fingerprint` of `jid` here (as [`E2eEndpoint::revoke`]) and, for a device of our
    /// own network, retracts its published key, so every device that trusted it only through an
    /// attestation drops it at its next trust decision.
    pub async fn revoke_everywhere(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> Result<bool> {
        let removed = self.revoke(jid, fingerprint)?;
        self.retract_published(jid, fingerprint).await?;
        Ok(removed)
    }

    /// Retracts the published key `fingerprint` if `jid` is our own network (nothing otherwise):
    /// the network-wide half of a revocation.
    pub async fn retract_published(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> Result<()> {
        if self.is_own_network(jid) {
            pubkey::retract(&self.inner.session, fingerprint, self.inner.config.timeout).await?;
        }
        Ok(())
    }

    fn own_network(&self) -> Result<BareJid> {
        self.inner
            .session
            .jid()
            .map(|j| j.to_bare())
            .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the session is not online"))
    }

    fn is_own_network(&self, jid: &BareJid) -> bool {
        self.own_network().is_ok_and(|own| own == *jid)
    }

    /// The trust decision for `fingerprint` of `jid`: first-hand pins (paired, manual, host)
    /// count at once; for our own network, an attested pin is re-checked and an unknown key looked
    /// up against the network's published keys (XEP-0189) first. If that lookup fails, attested
    /// keys are refused: revocation must not depend on the server's goodwill.
    async fn trusted(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> bool {
        let inner = &self.inner;
        let trust = &inner.config.trust;
        let source = trust.source(jid, fingerprint);
        if matches!(
            source,
            Some(TrustSource::Paired | TrustSource::Manual | TrustSource::Host { .. })
        ) {
            return true;
        }
        if !self.is_own_network(jid) {
            return false;
        }
        match self.resync(jid).await {
            Ok(()) => trust.is_trusted(jid, fingerprint),
            Err(e) => {
                tracing::info!(error = %e, "could not read the network's published keys");
                false
            }
        }
    }

    /// Brings the attested pins of `jid` (our network) in line with its published keys, and
    /// closes the tunnels of keys that lost their attestation.
    async fn resync(&self, jid: &BareJid) -> Result<()> {
        let inner = &self.inner;
        let outcome = pubkey::sync_attested(
            &inner.session,
            &inner.config.trust,
            jid,
            inner.config.timeout,
        )
        .await?;
        for revoked in &outcome.revoked {
            let closed = self.close_where(
                |peer, fp| peer.to_bare() == *jid && fp == revoked,
                "its key was revoked on the network",
            );
            tracing::info!(key = %fingerprint_hex(revoked), closed, "attested key revoked");
        }
        Ok(())
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
    /// `timeout` for the answer. Tunnel setup has its own bound ([`E2eConfig::timeout`]).
    pub async fn request(&self, iq: Iq, timeout: Duration) -> Result<IqReply> {
        let peer = stanza_to(&Stanza::Iq(iq.clone()))?;
        let tunnel = self.tunnel(&peer).await?;
        tunnel.request(iq, timeout).await
    }

    fn emit(&self, event: E2eInbound) {
        if self.inner.events.try_send(event).is_err() {
            tracing::warn!("e2e event channel full or closed; dropping an event");
        }
    }

    fn own_fingerprint_advertised(&self) -> [u8; 32] {
        self.inner
            .config
            .advertise_fingerprint
            .unwrap_or_else(|| self.inner.config.identity.fingerprint())
    }

    fn jingle_iq(&self, to: &FullJid, jingle: Jingle) -> Iq {
        Iq::from_set(String::new(), jingle).with_to(Jid::from(to.clone()))
    }

    fn terminate(&self, peer: &FullJid, sid: &str, reason: Reason, text: &str) {
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
        ibb_sid: &str,
        block_size: u16,
        method: SecurityMethod,
        me: &FullJid,
    ) -> Jingle {
        let content = Content::new(Creator::Initiator, ContentId("xmlstream".into()))
            .with_senders(Senders::Both)
            .with_description(Description::Unknown(Element::from(XmlStreamDescription)))
            .with_transport(Transport::Ibb(IbbTransport {
                block_size,
                sid: xmpp_parsers::ibb::StreamId(ibb_sid.to_owned()),
                stanza: xmpp_parsers::ibb::Stanza::Iq,
            }));
        let initiate = action == Action::SessionInitiate;
        let mut jingle = Jingle::new(action, SessionId(sid.to_owned())).add_content(content);
        jingle = if initiate {
            jingle.with_initiator(Jid::from(me.clone()))
        } else {
            jingle.with_responder(Jid::from(me.clone()))
        };
        // xmpp-parsers 0.23's <content> only admits its own stub <security/>, so the XTLS element
        // rides as a direct child of <jingle>; with exactly one content it is unambiguous.
        jingle.other.push(Element::from(XtlsSecurity::new(
            &self.own_fingerprint_advertised(),
            method,
        )));
        jingle
    }

    async fn open(&self, peer: &FullJid, mode: Mode<'_>) -> Result<Tunnel> {
        let inner = &self.inner;
        let timeout = inner.config.timeout;
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
        let (accept_tx, accept_rx) = oneshot::channel();
        lock(&inner.pending_accepts).insert(sid.clone(), (peer.clone(), accept_tx));
        let ibb_rx = inner
            .ibb
            .register(&ibb_sid, peer.clone(), inner.config.block_size);
        let cleanup = |inner: &Inner| {
            lock(&inner.pending_accepts).remove(&sid);
            inner.ibb.remove(&ibb_sid);
        };

        let initiate = self.build(
            Action::SessionInitiate,
            &sid,
            &ibb_sid,
            inner.config.block_size,
            method,
            &me,
        );
        match inner
            .session
            .request(self.jingle_iq(peer, initiate), timeout)
            .await
        {
            Ok(IqReply::Result(_)) => {}
            Ok(IqReply::Error(e)) => {
                cleanup(inner);
                let text = e.texts.values().next().cloned().unwrap_or_default();
                let kind = match e.defined_condition {
                    DefinedCondition::Forbidden | DefinedCondition::NotAuthorized => {
                        ErrorKind::Forbidden
                    }
                    DefinedCondition::ServiceUnavailable
                    | DefinedCondition::RecipientUnavailable
                    | DefinedCondition::ItemNotFound => ErrorKind::ProviderUnavailable,
                    _ => ErrorKind::Protocol,
                };
                return Err(Error::new(
                    kind,
                    format!(
                        "{peer} refused the end-to-end tunnel ({:?}): {text}",
                        e.defined_condition
                    ),
                ));
            }
            Err(e) => {
                cleanup(inner);
                return Err(e);
            }
        }
        let accept = match tokio::time::timeout(timeout, accept_rx).await {
            Ok(Ok(accept)) => accept,
            Ok(Err(_)) => {
                cleanup(inner);
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!("{peer} terminated the end-to-end session before accepting"),
                ));
            }
            Err(_) => {
                cleanup(inner);
                self.terminate(peer, &sid, Reason::Timeout, "no session-accept in time");
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{peer} did not accept the end-to-end session in time"),
                ));
            }
        };
        let (peer_fp, block_size) = match parse_accept(&accept, &ibb_sid, method) {
            Ok(v) => v,
            Err(e) => {
                cleanup(inner);
                self.terminate(peer, &sid, Reason::FailedApplication, e.message());
                return Err(e);
            }
        };
        if matches!(mode, Mode::Pinned) && !self.trusted(&peer.to_bare(), &peer_fp).await {
            cleanup(inner);
            self.terminate(peer, &sid, Reason::SecurityError, "untrusted key");
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "{peer} uses key {} which is not trusted (pair with it first)",
                    fingerprint_hex(&peer_fp)
                ),
            ));
        }
        let block_size = block_size.min(inner.config.block_size);
        let (io, status) = IbbStream::spawn(
            IbbParams {
                session: inner.session.clone(),
                peer: peer.clone(),
                sid: ibb_sid.clone(),
                block_size,
                send_open: true,
                ack_timeout: timeout,
                hooks: inner.config.hooks.clone(),
            },
            ibb_rx,
        );
        let channel = match handshake(
            io,
            TlsRole::Initiator,
            &inner.config.identity,
            peer_fp,
            timeout,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                let e = explain(e, &status);
                cleanup(inner);
                self.terminate(peer, &sid, Reason::SecurityError, e.message());
                return Err(e);
            }
        };
        lock(&inner.pending_accepts).remove(&sid);
        let (tunnel, rx) = Tunnel::start(channel, me, peer.clone());
        if let Mode::Pairing(code) = mode {
            if let Err(e) = pair_as_initiator(&tunnel, code, timeout).await {
                tunnel.close();
                inner.ibb.remove(&ibb_sid);
                self.terminate(peer, &sid, Reason::SecurityError, e.message());
                return Err(e);
            }
            inner
                .config
                .trust
                .pin(&peer.to_bare(), &peer_fp, TrustSource::Paired)?;
        }
        self.install(tunnel.clone(), sid, ibb_sid, rx, status);
        Ok(tunnel)
    }

    /// Records an established tunnel and forwards its stanzas until it ends.
    fn install(
        &self,
        tunnel: Tunnel,
        jingle_sid: String,
        ibb_sid: String,
        mut rx: mpsc::Receiver<Stanza>,
        status: Arc<IbbStatus>,
    ) {
        let peer = tunnel.peer().clone();
        let old = lock(&self.inner.tunnels).insert(
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
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some(stanza) => {
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
                let mut tunnels = lock(&this.inner.tunnels);
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
            this.inner.ibb.remove(&ibb_sid);
            this.emit(E2eInbound::TunnelDown { peer, reason });
        });
    }

    fn on_jingle(&self, from: &Jid, id: &str, payload: &Element) {
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
                    let mut pending = lock(&self.inner.pending_accepts);
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
                    let mut tunnels = lock(&self.inner.tunnels);
                    match tunnels.get(&peer) {
                        Some(e) if e.jingle_sid == jingle.sid.0 => tunnels.remove(&peer),
                        _ => None,
                    }
                };
                let pending = {
                    let mut pending = lock(&self.inner.pending_accepts);
                    match pending.get(&jingle.sid.0) {
                        Some((expected, _)) if *expected == peer => pending.remove(&jingle.sid.0),
                        _ => None,
                    }
                };
                if found.is_none() && pending.is_none() {
                    return reply_error(DefinedCondition::ItemNotFound, "unknown Jingle session");
                }
                ack();
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
        match offer.method {
            SecurityMethod::Pake => {
                let refusal = lock(&self.inner.gate)
                    .is_open(Instant::now())
                    .err()
                    .map(|e| e.message().to_owned());
                self.decided(peer, id.to_owned(), jingle, offer, refusal);
            }
            SecurityMethod::X509 => {
                // The decision may need the network's published keys: answer once it is made
                // (the initiator waits for our result before anything else).
                let this = self.clone();
                let id = id.to_owned();
                tokio::spawn(async move {
                    let bare = peer.to_bare();
                    let admitted = this
                        .inner
                        .config
                        .admission
                        .as_ref()
                        .is_some_and(|admit| admit(&bare, &offer.fingerprint));
                    let ok = admitted || this.trusted(&bare, &offer.fingerprint).await;
                    let refusal = (!ok).then(|| {
                        format!(
                            "key {} is neither paired with this device nor granted access",
                            fingerprint_hex(&offer.fingerprint)
                        )
                    });
                    this.decided(peer, id, jingle, offer, refusal);
                });
            }
        }
    }

    /// Answers a session-initiate once trust is decided: refused (`forbidden`, reported), or
    /// accepted and answered by [`Self::respond`].
    fn decided(
        &self,
        peer: FullJid,
        id: String,
        jingle: Jingle,
        offer: Offer,
        refusal: Option<String>,
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
        let ibb_rx = inner.ibb.register(&offer.ibb_sid, peer.clone(), block_size);
        let _ = inner.session.send(Iq::empty_result(from, id));
        let this = self.clone();
        tokio::spawn(async move {
            let sid = jingle.sid.0.clone();
            let pairing = offer.method == SecurityMethod::Pake;
            if let Err(error) = this
                .respond(peer.clone(), &sid, offer, block_size, ibb_rx)
                .await
            {
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
        sid: &str,
        offer: Offer,
        block_size: u16,
        ibb_rx: mpsc::Receiver<super::ibb::IbbEvent>,
    ) -> Result<()> {
        let inner = &self.inner;
        let timeout = inner.config.timeout;
        let me = inner
            .session
            .jid()
            .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the session is not online"))?;
        let accept = self.build(
            Action::SessionAccept,
            sid,
            &offer.ibb_sid,
            block_size,
            offer.method,
            &me,
        );
        let fail = |e: Error| {
            inner.ibb.remove(&offer.ibb_sid);
            e
        };
        match inner
            .session
            .request(self.jingle_iq(&peer, accept), timeout)
            .await
            .map_err(fail)?
        {
            IqReply::Result(_) => {}
            IqReply::Error(e) => {
                return Err(fail(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "{peer} rejected our session-accept ({:?})",
                        e.defined_condition
                    ),
                )))
            }
        }
        let (io, status) = IbbStream::spawn(
            IbbParams {
                session: inner.session.clone(),
                peer: peer.clone(),
                sid: offer.ibb_sid.clone(),
                block_size,
                send_open: false,
                ack_timeout: timeout,
                hooks: inner.config.hooks.clone(),
            },
            ibb_rx,
        );
        let channel = match handshake(
            io,
            TlsRole::Responder,
            &inner.config.identity,
            offer.fingerprint,
            timeout,
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                let e = explain(e, &status);
                self.terminate(&peer, sid, Reason::SecurityError, e.message());
                return Err(fail(e));
            }
        };
        let (tunnel, mut rx) = Tunnel::start(channel, me, peer.clone());
        if offer.method == SecurityMethod::Pake {
            if let Err(e) = pair_as_responder(&tunnel, &mut rx, &inner.gate, timeout).await {
                tunnel.close();
                self.terminate(&peer, sid, Reason::SecurityError, e.message());
                return Err(fail(e));
            }
            inner
                .config
                .trust
                .pin(&peer.to_bare(), &offer.fingerprint, TrustSource::Paired)
                .map_err(fail)?;
            self.emit(E2eInbound::Paired {
                peer: peer.clone(),
                fingerprint: offer.fingerprint,
            });
        }
        self.install(tunnel, sid.to_owned(), offer.ibb_sid, rx, status);
        Ok(())
    }
}

/// Prefers the transport's reason (e.g. refused IBB data) over TLS's generic "unexpected EOF".
fn explain(e: Error, status: &IbbStatus) -> Error {
    match status.reason() {
        Some(transport) if e.kind() != ErrorKind::Tls || e.message().contains("eof") => Error::new(
            e.kind(),
            format!("{}; transport: {}", e.message(), transport.message()),
        ),
        _ => e,
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

/// What a session-initiate offers.
pub(crate) struct Offer {
    pub(crate) fingerprint: [u8; 32],
    pub(crate) method: SecurityMethod,
    pub(crate) ibb_sid: String,
    pub(crate) block_size: u16,
}

fn security_of(jingle: &Jingle) -> std::result::Result<XtlsSecurity, String> {
    let mut found = jingle.other.iter().filter(|e| e.is("security", NS_XTLS));
    let elem = found
        .next()
        .ok_or_else(|| "no XTLS security element".to_owned())?;
    if found.next().is_some() {
        return Err("more than one XTLS security element".into());
    }
    XtlsSecurity::try_from(elem.clone()).map_err(|e| format!("malformed XTLS security: {e}"))
}

fn single_content(
    jingle: &Jingle,
) -> std::result::Result<(&Content, &IbbTransport), (DefinedCondition, String)> {
    let bad = |t: &str| (DefinedCondition::BadRequest, t.to_owned());
    let [content] = jingle.contents.as_slice() else {
        return Err(bad("exactly one content expected"));
    };
    match &content.description {
        Some(Description::Unknown(d)) if d.is("description", NS_XMLSTREAM) => {
            XmlStreamDescription::try_from(d.clone()).map_err(|_| bad("malformed description"))?;
        }
        _ => {
            return Err((
                DefinedCondition::FeatureNotImplemented,
                "unsupported application (want urn:xmpp:jingle:apps:xmlstream:0)".into(),
            ))
        }
    }
    match &content.transport {
        Some(Transport::Ibb(t)) if t.stanza == xmpp_parsers::ibb::Stanza::Iq => {
            if t.block_size == 0 || t.sid.0.is_empty() || t.sid.0.len() > 64 {
                return Err(bad("bad IBB transport parameters"));
            }
            Ok((content, t))
        }
        _ => Err((
            DefinedCondition::FeatureNotImplemented,
            "unsupported transport (want IBB over iq)".into(),
        )),
    }
}

pub(crate) fn parse_offer(
    jingle: &Jingle,
) -> std::result::Result<Offer, (DefinedCondition, String)> {
    let (_, transport) = single_content(jingle)?;
    let security = security_of(jingle).map_err(|t| (DefinedCondition::BadRequest, t))?;
    let fingerprint = security.fingerprint.sha256().ok_or_else(|| {
        (
            DefinedCondition::BadRequest,
            "fingerprint must be sha-256 hex".to_owned(),
        )
    })?;
    Ok(Offer {
        fingerprint,
        method: security.method.name,
        ibb_sid: transport.sid.0.clone(),
        block_size: transport.block_size.min(MAX_BLOCK_SIZE),
    })
}

pub(crate) fn parse_accept(
    jingle: &Jingle,
    ibb_sid: &str,
    method: SecurityMethod,
) -> Result<([u8; 32], u16)> {
    let protocol = |t: String| Error::new(ErrorKind::Protocol, format!("bad session-accept: {t}"));
    let (_, transport) = single_content(jingle).map_err(|(_, t)| protocol(t))?;
    if transport.sid.0 != ibb_sid {
        return Err(protocol("transport sid changed".into()));
    }
    let security = security_of(jingle).map_err(protocol)?;
    if security.method.name != method {
        return Err(protocol("security method changed".into()));
    }
    let fp = security
        .fingerprint
        .sha256()
        .ok_or_else(|| protocol("fingerprint must be sha-256 hex".into()))?;
    Ok((fp, transport.block_size))
}
