//! The TLS 1.3 layer of the tunnel, independent of XMPP: it runs over any byte pipe
//! (`AsyncRead + AsyncWrite`), an in-memory duplex in unit tests and IBB in production.
//!
//! Rules enforced here (DESIGN §4): TLS 1.3 only; the initiator is the TLS client; both sides present
//! their self-signed device certificate and sign through the [`KeyStore`](crate::core::identity::KeyStore);
//! each side accepts exactly one peer key — the SPKI SHA-256 it was told to expect — with no CA and no
//! server name. Whether that expected fingerprint is *trusted* is decided before the handshake (pinned
//! set, or pairing mode followed by SPAKE2), so this layer stays a pure "this key or nothing" check.

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls12Resumption};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::SingleCertAndKey;
use rustls::{CertificateError, ClientConfig, HandshakeKind, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{certificate_spki, DeviceFingerprint, DeviceIdentity, PinnedPeerKey};

/// Exporter label binding pairing to this TLS session (DESIGN §4).
pub const PAIRING_EXPORTER_LABEL: &[u8] = b"EXPORTER-pmn-pair";

/// Which end of the tunnel this device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRole {
    /// The Jingle initiator: TLS client.
    Initiator,
    /// The Jingle responder: TLS server.
    Responder,
}

/// An established TLS 1.3 channel with an authenticated peer key.
pub struct SecureChannel<S> {
    /// The TLS stream; read and write plaintext.
    pub stream: TlsStream<S>,
    /// SHA-256 of the peer's SPKI (equal to the expected one, or the handshake would have failed).
    pub peer_fingerprint: DeviceFingerprint,
    /// `export_keying_material(32, "EXPORTER-pmn-pair", initiator SPKI || responder SPKI)`: what
    /// pairing binds SPAKE2 to, so a relay with its own keys gets a different value on each side.
    pub pairing_binding: [u8; 32],
    /// Whether this session was resumed from a ticket of an earlier full handshake (see
    /// [`Resumption`]): no certificate or signature was exchanged, the peer's key is the one the
    /// ticket's full handshake authenticated, and it equals `peer_fingerprint`.
    pub resumed: bool,
}

impl<S> std::fmt::Debug for SecureChannel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureChannel")
            .field("peer", &self.peer_fingerprint.to_hex())
            .finish_non_exhaustive()
    }
}

fn config_error(e: rustls::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("tunnel TLS configuration: {e}"),
    )
}

/// Maps a failed handshake to a typed error people can read.
fn handshake_error(e: std::io::Error) -> Error {
    let text = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )) => {
            "the peer presented a key that is not the pinned one (possible interception)".to_owned()
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the peer refused the handshake ({alert:?}): it does not accept our key or saw altered data")
        }
        Some(other) => format!("handshake failed: {other}"),
        None => format!("handshake failed: {e}"),
    };
    Error::new(ErrorKind::Tls, format!("end-to-end tunnel: {text}"))
}

/// Peers whose tickets a device keeps, on each side (the oldest goes first).
pub const RESUMPTION_PEERS: usize = 64;
/// How long after a full handshake with a peer its session may be resumed: each device proves
/// its key by signature at least this often.
pub const RESUMPTION_LIFETIME: Duration = Duration::from_secs(4 * 3600);
/// Tickets per cached configuration (one is issued per handshake and each is used once).
const TICKETS_PER_PEER: usize = 2;

/// Which tunnels may resume each other's sessions: the same peer device (full JID), the same
/// pinned peer key and the same own key. One cached rustls configuration per scope holds that
/// scope's tickets, so a ticket can never cross scopes (see [`Resumption`]).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Scope {
    peer: String,
    peer_key: DeviceFingerprint,
    own_key: DeviceFingerprint,
}

struct Cached<C> {
    config: Arc<C>,
    created: Instant,
    /// Client side: the scope's ticket store (how many tickets it holds).
    tickets: Option<Arc<CountedTickets>>,
}

/// A client's ticket store that knows whether it holds a ticket, so the opener can tell a peer
/// it can resume with (worth sending the ClientHello early) from one it cannot.
#[derive(Debug)]
struct CountedTickets {
    store: ClientSessionMemoryCache,
    held: AtomicUsize,
}

impl ClientSessionStore for CountedTickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.store.set_kx_hint(name, group);
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.store.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        _: ServerName<'static>,
        _: rustls::client::Tls12ClientSessionValue,
    ) {
        // TLS 1.2 is never used by the tunnel.
    }
    fn tls12_session(&self, _: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        None
    }
    fn remove_tls12_session(&self, _: &ServerName<'static>) {}
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.store.insert_tls13_ticket(name, value);
        // The store keeps at most TICKETS_PER_PEER (the oldest goes).
        let _ = self
            .held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some((n + 1).min(TICKETS_PER_PEER))
            });
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let ticket = self.store.take_tls13_ticket(name);
        if ticket.is_some() {
            let _ = self
                .held
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        ticket
    }
}

/// TLS 1.3 session resumption for the tunnels of one device, kept in memory only.
///
/// Why this is safe (DESIGN §4):
/// - **Bound to the pinned keys.** Each [`Scope`] (peer full JID, pinned peer key, own key) has
///   its own rustls configuration, and rustls only resumes a ticket with the configuration that
///   made it: on the client, `ClientSessionCommon::compatible_config` requires the *same*
///   verifier and client-certificate resolver objects (pointer equality), and the server keeps
///   its session states in that configuration's own store. A ticket offered under another JID,
///   another peer key or after a rotation of our own key is not found: the handshake is a full
///   one (certificates and signatures), never a resumption. A resumed session's peer key is the
///   one restored from the ticket (rustls does not call the verifier then); [`handshake_resuming`]
///   checks it equals the expected key anyway.
/// - **Trust is decided before TLS, as for a full handshake.** Resumption changes nothing before
///   the handshake: revocation and the pinned set are consulted first, and a revoked key gets no
///   TLS byte at all. [`Resumption::forget_key`] also drops every ticket of a key when it is
///   revoked or unpinned, so nothing of its sessions is left to resume.
/// - **In memory only, single use, bounded.** The server's tickets are stateful (`ticketer`
///   disabled): the ticket on the wire is a random identifier, the secret stays in this process
///   and is taken (removed) when used, so a replayed ticket is refused. Nothing is written to
///   disk: a stolen device's storage holds no ticket, and a restart forgets them all (the next
///   tunnel is a full handshake). A scope lives at most `lifetime` after its first full
///   handshake, so each peer proves its key by signature at least that often; at most `capacity`
///   scopes are kept on each side (the oldest goes first).
/// - **Forward secret, no early data.** rustls only offers and accepts `psk_dhe_ke`, so each
///   resumed session still runs a fresh ECDHE exchange: a later leak of a ticket secret does not
///   decrypt recorded traffic. 0-RTT data is never enabled (it could be replayed).
pub struct Resumption {
    capacity: usize,
    lifetime: Duration,
    clients: Mutex<HashMap<Scope, Cached<ClientConfig>>>,
    servers: Mutex<HashMap<Scope, Cached<ServerConfig>>>,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption")
            .field("clients", &self.clients.locked().len())
            .field("servers", &self.servers.locked().len())
            .finish_non_exhaustive()
    }
}

impl Resumption {
    /// Keeps at most `capacity` peers' tickets on each side, each for at most `lifetime` after
    /// the full handshake that started them (a zero lifetime never resumes).
    pub fn new(capacity: usize, lifetime: Duration) -> Self {
        Self {
            capacity,
            lifetime,
            clients: Mutex::default(),
            servers: Mutex::default(),
        }
    }

    /// Forgets every ticket of sessions with `key` (revoked, unpinned or rotated away): the next
    /// tunnel with it, if it is trusted again, is a full handshake.
    pub fn forget_key(&self, key: &DeviceFingerprint) {
        self.clients.locked().retain(|s, _| s.peer_key != *key);
        self.servers.locked().retain(|s, _| s.peer_key != *key);
    }

    /// Forgets every ticket (the next tunnel with any peer is a full handshake).
    pub fn clear(&self) {
        self.clients.locked().clear();
        self.servers.locked().clear();
    }

    /// Peers (scopes) with tickets, on the client and the server side.
    pub fn len(&self) -> (usize, usize) {
        (self.clients.locked().len(), self.servers.locked().len())
    }

    /// The key of `peer` (full JID) that this device holds a ticket for as a client, with its own
    /// key `own`: a device seen before, to which a tunnel can resume. A peer that answers with
    /// another key gets a full handshake.
    pub fn ticket_for(&self, peer: &str, own: &DeviceFingerprint) -> Option<DeviceFingerprint> {
        let now = Instant::now();
        self.clients
            .locked()
            .iter()
            .filter(|(s, c)| {
                s.peer == peer
                    && s.own_key == *own
                    && now.saturating_duration_since(c.created) < self.lifetime
                    && c.tickets
                        .as_ref()
                        .is_some_and(|t| t.held.load(Ordering::SeqCst) > 0)
            })
            .max_by_key(|(_, c)| c.created)
            .map(|(s, _)| s.peer_key)
    }

    /// Whether no peer has tickets.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// The scope's configuration, made by `build` when there is none or it has expired.
    fn config<C>(
        &self,
        map: &Mutex<HashMap<Scope, Cached<C>>>,
        scope: Scope,
        build: impl FnOnce() -> Result<(C, Option<Arc<CountedTickets>>)>,
    ) -> Result<Arc<C>> {
        let now = Instant::now();
        let mut map = map.locked();
        map.retain(|_, c| now.saturating_duration_since(c.created) < self.lifetime);
        if let Some(cached) = map.get(&scope) {
            return Ok(cached.config.clone());
        }
        let (config, tickets) = build()?;
        let config = Arc::new(config);
        if self.capacity == 0 || self.lifetime.is_zero() {
            return Ok(config);
        }
        while map.len() >= self.capacity {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, c)| c.created)
                .map(|(s, _)| s.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(
            scope,
            Cached {
                config: config.clone(),
                created: now,
                tickets,
            },
        );
        Ok(config)
    }
}

fn client_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<PinnedPeerKey>,
    identity: &DeviceIdentity,
    tickets: bool,
) -> Result<(ClientConfig, Option<Arc<CountedTickets>>)> {
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified_key())));
    let store = tickets.then(|| {
        Arc::new(CountedTickets {
            store: ClientSessionMemoryCache::new(TICKETS_PER_PEER),
            held: AtomicUsize::new(0),
        })
    });
    config.resumption = match &store {
        Some(store) => rustls::client::Resumption::store(store.clone())
            .tls12_resumption(Tls12Resumption::Disabled),
        None => rustls::client::Resumption::disabled(),
    };
    // Never 0-RTT: early data can be replayed by whoever relays it.
    config.enable_early_data = false;
    Ok((config, store))
}

fn server_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<PinnedPeerKey>,
    identity: &DeviceIdentity,
    tickets: bool,
) -> Result<(ServerConfig, Option<Arc<CountedTickets>>)> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified_key())));
    if tickets {
        // Stateful tickets in this configuration's own store: an identifier on the wire, the
        // secret in memory, taken when used.
        config.session_storage = ServerSessionMemoryCache::new(TICKETS_PER_PEER);
        config.send_tls13_tickets = 1;
    } else {
        // No tickets: nothing could resume them.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    config.max_early_data_size = 0;
    Ok((config, None))
}

/// Runs the TLS 1.3 handshake over `io` as `role`, presenting `identity` and accepting exactly the
/// peer key whose SPKI SHA-256 is `expected_peer`. Bounded by `timeout`. Always a full handshake:
/// no ticket is offered, issued or accepted.
///
/// Errors: [`ErrorKind::Tls`] when the peer's key is not the expected one, the peer refused ours,
/// or the bytes were altered; [`ErrorKind::Timeout`] when the handshake did not finish in time.
pub async fn handshake<S>(
    io: S,
    role: TlsRole,
    identity: &DeviceIdentity,
    expected_peer: DeviceFingerprint,
    timeout: Duration,
) -> Result<SecureChannel<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    handshake_resuming(io, role, identity, expected_peer, timeout, None).await
}

/// [`handshake`], resuming an earlier session with the same peer when `resume` has a ticket for
/// it: `resume` is the device's [`Resumption`] and the peer's full JID. A ticket the other side
/// no longer holds (or never issued for this scope) gives a full handshake, as without `resume`.
/// Only for peers whose key is trusted already: pairing, which proves the key afterwards, never
/// resumes.
pub async fn handshake_resuming<S>(
    io: S,
    role: TlsRole,
    identity: &DeviceIdentity,
    expected_peer: DeviceFingerprint,
    timeout: Duration,
    resume: Option<(&Resumption, &str)>,
) -> Result<SecureChannel<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedPeerKey::new(expected_peer, provider.clone()));
    let own_spki = identity.spki().to_vec();
    let scope = resume.map(|(cache, peer)| {
        (
            cache,
            Scope {
                peer: peer.to_owned(),
                peer_key: expected_peer,
                own_key: identity.fingerprint(),
            },
        )
    });
    let work = async {
        let (stream, peer, resumed, binding) = match role {
            TlsRole::Initiator => {
                let config = match scope {
                    Some((cache, scope)) => cache.config(&cache.clients, scope, || {
                        client_config(provider, verifier, identity, true)
                    })?,
                    None => Arc::new(client_config(provider, verifier, identity, false)?.0),
                };
                // No name is checked (pinning only); rustls still wants one for SNI.
                let name = ServerName::try_from("pmn.invalid")
                    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                let stream = TlsConnector::from(config)
                    .connect(name, io)
                    .await
                    .map_err(handshake_error)?;
                let conn = stream.get_ref().1;
                let peer = peer_spki(conn.peer_certificates())?;
                let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
                let binding = export(conn, &own_spki, &peer)?;
                (TlsStream::Client(stream), peer, resumed, binding)
            }
            TlsRole::Responder => {
                let config = match scope {
                    Some((cache, scope)) => cache.config(&cache.servers, scope, || {
                        server_config(provider, verifier, identity, true)
                    })?,
                    None => Arc::new(server_config(provider, verifier, identity, false)?.0),
                };
                let stream = TlsAcceptor::from(config)
                    .accept(io)
                    .await
                    .map_err(handshake_error)?;
                let conn = stream.get_ref().1;
                let peer = peer_spki(conn.peer_certificates())?;
                let resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
                let binding = export(conn, &peer, &own_spki)?;
                (TlsStream::Server(stream), peer, resumed, binding)
            }
        };
        // A full handshake's verifier has checked this; a resumed one restores the key from the
        // ticket without calling it, so the rule is checked here for both.
        let peer_fingerprint = DeviceFingerprint::from_spki(&peer);
        if peer_fingerprint != expected_peer {
            return Err(Error::new(
                ErrorKind::Tls,
                "end-to-end tunnel: the peer's key is not the pinned one (possible interception)",
            ));
        }
        Ok(SecureChannel {
            stream,
            peer_fingerprint,
            pairing_binding: binding,
            resumed,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("end-to-end handshake did not finish within {timeout:?}"),
        )),
    }
}

fn peer_spki(certs: Option<&[CertificateDer<'static>]>) -> Result<Vec<u8>> {
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| Error::new(ErrorKind::Tls, "peer presented no certificate"))?;
    certificate_spki(cert)
        .map(<[u8]>::to_vec)
        .map_err(|e| Error::new(ErrorKind::Tls, format!("peer certificate: {e}")))
}

fn export<D>(
    conn: &rustls::ConnectionCommon<D>,
    initiator_spki: &[u8],
    responder_spki: &[u8],
) -> Result<[u8; 32]> {
    let mut context = Vec::with_capacity(initiator_spki.len() + responder_spki.len());
    context.extend_from_slice(initiator_spki);
    context.extend_from_slice(responder_spki);
    conn.export_keying_material([0u8; 32], PAIRING_EXPORTER_LABEL, Some(&context))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS exporter: {e}")))
}
