//! A stanza stream inside an established TLS channel: the transparent pipe that RPC iqs and event
//! messages take between two devices once the tunnel is up.
//!
//! Framing: each stanza is a 4-byte big-endian length followed by its XML (`jabber:client`), at most
//! [`MAX_FRAME`] bytes. A length-prefixed frame instead of an open `<stream:stream>` keeps the parser
//! to one complete element at a time (no incremental XML parser state to attack) while the content
//! stays plain XMPP stanzas, unchanged from what travels over the server.
//!
//! What this module guarantees: every stanza handed up has `from` set to the authenticated peer's full
//! JID (whatever the peer wrote), responses to [`Tunnel::request`] never reach the inbound channel, and
//! any malformed frame ends the tunnel with a typed error (it never panics and never tears down the
//! XMPP connection, which the tunnel does not own).
//!
//! The writer takes every stanza queued at the moment into one write and one flush (up to
//! `BATCH_BYTES`): below, the IBB stream sends on flush, so a burst of stanzas is one block, not
//! one block each.
//!
//! The outbound queue is bounded ([`DEFAULT_OUTBOUND_DEPTH`] stanzas unless the endpoint says
//! otherwise): [`Tunnel::send`] fails with a typed error when it is full (the caller decides: an
//! event for a slow subscriber is dropped and logged), [`Tunnel::request`] waits for room within
//! its own timeout (backpressure).

use crate::core::sync::Locked;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::stanza::Stanza;

use super::limits::E2eCounters;
use super::tls::SecureChannel;
use crate::core::error::{CallOutcome, Error, ErrorKind, Result};
use crate::core::identity::DeviceFingerprint;
use crate::core::rpc::CallId;
use crate::core::session::iq_tracker::IqTracker;
use crate::core::session::IqReply;

/// Largest stanza accepted inside a tunnel.
pub const MAX_FRAME: usize = 256 * 1024;
/// Depth of the inbound stanza channel.
const INBOUND_DEPTH: usize = 256;
/// Bytes of queued stanzas the writer gathers into one write and one flush.
const BATCH_BYTES: usize = 16 * 1024;
/// Stanzas queued for the writer of a tunnel started with [`Tunnel::start`].
pub const DEFAULT_OUTBOUND_DEPTH: usize = 256;

struct TunnelShared {
    peer: FullJid,
    local: FullJid,
    fingerprint: DeviceFingerprint,
    pairing_binding: [u8; 32],
    resumed: bool,
    outbound: mpsc::Sender<Stanza>,
    outbound_depth: usize,
    counters: Option<Arc<E2eCounters>>,
    /// Our requests waiting for their answer (the session's tracker type, with its bound).
    pending: Mutex<IqTracker>,
    next_id: AtomicU64,
    /// `None` while up; `Some(reason)` once ended (`reason` is `None` for a clean close).
    ended: watch::Sender<Option<Option<Error>>>,
}

impl TunnelShared {
    fn end(&self, reason: Option<Error>) {
        self.ended.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(reason);
                true
            } else {
                false
            }
        });
        // Fail pending requests now rather than at their deadlines.
        self.pending.locked().clear();
    }
}

/// An end-to-end tunnel to one peer device. Cheap to clone; all clones share one TLS channel.
#[derive(Clone)]
pub struct Tunnel {
    shared: Arc<TunnelShared>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("peer", &self.shared.peer)
            .field("fingerprint", &self.shared.fingerprint.to_hex())
            .field("up", &self.is_up())
            .finish()
    }
}

impl Tunnel {
    /// Starts the stanza stream over an established channel. `local` is this device's full JID and
    /// `peer` the authenticated peer's. Returns the tunnel and the receiver of inbound stanzas
    /// (requests and messages; never responses to our own requests).
    pub fn start<S>(
        channel: SecureChannel<S>,
        local: FullJid,
        peer: FullJid,
    ) -> (Tunnel, mpsc::Receiver<Stanza>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::start_bounded(channel, local, peer, DEFAULT_OUTBOUND_DEPTH, None)
    }

    /// As [`Tunnel::start`], with at most `outbound_depth` stanzas queued for the writer; refusals
    /// are counted in `counters`.
    pub(crate) fn start_bounded<S>(
        channel: SecureChannel<S>,
        local: FullJid,
        peer: FullJid,
        outbound_depth: usize,
        counters: Option<Arc<E2eCounters>>,
    ) -> (Tunnel, mpsc::Receiver<Stanza>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let outbound_depth = outbound_depth.max(1);
        let (out_tx, out_rx) = mpsc::channel(outbound_depth);
        let (in_tx, in_rx) = mpsc::channel(INBOUND_DEPTH);
        let (ended, _) = watch::channel(None);
        let shared = Arc::new(TunnelShared {
            peer,
            local,
            fingerprint: channel.peer_fingerprint,
            pairing_binding: channel.pairing_binding,
            resumed: channel.resumed,
            outbound: out_tx,
            outbound_depth,
            counters,
            pending: Mutex::new(IqTracker::default()),
            next_id: AtomicU64::new(1),
            ended,
        });
        let (reader, writer) = tokio::io::split(channel.stream);
        tokio::spawn(write_loop(shared.clone(), writer, out_rx));
        tokio::spawn(read_loop(shared.clone(), reader, in_tx));
        (Tunnel { shared }, in_rx)
    }

    /// The peer's full JID.
    pub fn peer(&self) -> &FullJid {
        &self.shared.peer
    }

    /// SHA-256 of the peer's SPKI (authenticated by the TLS handshake).
    pub fn peer_fingerprint(&self) -> DeviceFingerprint {
        self.shared.fingerprint
    }

    /// The TLS exporter value pairing binds to (see [`super::tls::SecureChannel`]).
    pub fn pairing_binding(&self) -> [u8; 32] {
        self.shared.pairing_binding
    }

    /// Whether the tunnel's TLS session was resumed from a ticket of an earlier full handshake
    /// with the same pinned keys (see [`super::tls::Resumption`]).
    pub fn resumed(&self) -> bool {
        self.shared.resumed
    }

    /// Whether the tunnel is still up.
    pub fn is_up(&self) -> bool {
        self.shared.ended.borrow().is_none()
    }

    /// Why the tunnel ended: `None` while up, `Some(None)` after a clean close.
    pub fn end_reason(&self) -> Option<Option<Error>> {
        self.shared.ended.borrow().clone()
    }

    /// Waits until the tunnel has ended and returns the reason (`None` for a clean close).
    pub async fn closed(&self) -> Option<Error> {
        let mut rx = self.shared.ended.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }

    fn down_error(&self) -> Error {
        match self.end_reason() {
            Some(Some(e)) => e,
            _ => Error::new(
                ErrorKind::NotConnected,
                format!("the end-to-end tunnel to {} is closed", self.shared.peer),
            ),
        }
    }

    /// Sends a stanza to the peer inside the tunnel (`to`/`from` are set by the tunnel). Fails
    /// with `ProviderUnavailable` when the outbound queue is full (the peer or the path is not
    /// keeping up); nothing is queued then.
    pub fn send(&self, stanza: impl Into<Stanza>) -> Result<()> {
        if !self.is_up() {
            return Err(self.down_error());
        }
        match self.shared.outbound.try_send(stanza.into()) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let log = match &self.shared.counters {
                    Some(counters) => E2eCounters::bump(&counters.tunnel_outbound_full),
                    None => true,
                };
                if log {
                    tracing::warn!(peer = %self.shared.peer, depth = self.shared.outbound_depth, "end-to-end tunnel congested, stanza refused");
                }
                Err(Error::new(
                    ErrorKind::ProviderUnavailable,
                    format!(
                        "the end-to-end tunnel to {} is congested ({} stanzas queued); try again",
                        self.shared.peer, self.shared.outbound_depth
                    ),
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.down_error()),
        }
    }

    /// Queues a stanza, waiting for room in the outbound queue until `deadline`.
    async fn send_within(&self, stanza: Stanza, deadline: tokio::time::Instant) -> Result<()> {
        if !self.is_up() {
            return Err(self.down_error());
        }
        match tokio::time::timeout_at(deadline, self.shared.outbound.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(stanza);
                Ok(())
            }
            Ok(Err(_)) => Err(self.down_error()),
            Err(_) => {
                if let Some(counters) = &self.shared.counters {
                    let _ = E2eCounters::bump(&counters.tunnel_outbound_full);
                }
                tracing::info!(peer = %self.shared.peer, "end-to-end tunnel congested, request not sent");
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the end-to-end tunnel to {} stayed congested; the request was not sent",
                        self.shared.peer
                    ),
                ))
            }
        }
    }

    /// Sends an iq `get`/`set` through the tunnel and waits at most `timeout` for the answer.
    /// The iq's id is replaced by a fresh one. Errors say whether the request left
    /// ([`CallOutcome`]): `NotRun` when it could not be queued, `Unknown` once it was (the tunnel
    /// ended, or the deadline passed).
    pub async fn request(&self, iq: Iq, timeout: Duration) -> Result<IqReply> {
        let id = format!(
            "e2e-{}",
            self.shared.next_id.fetch_add(1, Ordering::Relaxed)
        );
        self.request_as(iq, timeout, id).await
    }

    /// [`Tunnel::request`] for one attempt of the RPC call `call`: the id carries the call id
    /// ([`CallId::iq_id`], with this tunnel's request counter after it).
    pub(crate) async fn request_call(
        &self,
        iq: Iq,
        timeout: Duration,
        call: &CallId,
    ) -> Result<IqReply> {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.request_as(iq, timeout, call.iq_id(n)).await
    }

    /// [`Tunnel::request`] with the id `id`, unique among this tunnel's requests.
    async fn request_as(&self, mut iq: Iq, timeout: Duration, id: String) -> Result<IqReply> {
        match &mut iq {
            Iq::Get { id: i, .. } | Iq::Set { id: i, .. } => *i = id.clone(),
            _ => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "only iq get/set can be requests",
                ))
            }
        }
        let deadline = crate::core::clock::deadline(tokio::time::Instant::now(), timeout);
        let (tx, rx) = oneshot::channel();
        // The peer is the only one who can answer inside the tunnel; a full tracker means it
        // never left.
        self.shared
            .pending
            .locked()
            .track(
                id.clone(),
                Some(Jid::from(self.shared.peer.clone())),
                deadline,
                tx,
            )
            .map_err(|e| e.with_outcome(CallOutcome::NotRun))?;
        // However this call ends (error, timeout, or the caller dropping it), its entry goes.
        let _forget = Forget {
            tunnel: self,
            id: &id,
        };
        // Not queued: it never left.
        self.send_within(Stanza::Iq(iq), deadline)
            .await
            .map_err(|e| e.with_outcome(CallOutcome::NotRun))?;
        // Queued: the peer may act on it whatever happens to the answer.
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Ok(reply))) => Ok(reply),
            Ok(Ok(Err(e))) => Err(e.with_outcome(CallOutcome::Unknown)),
            Ok(Err(_)) => Err(self.down_error().with_outcome(CallOutcome::Unknown)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{} did not answer within {timeout:?} (end-to-end tunnel)",
                    self.shared.peer
                ),
            )
            .with_outcome(CallOutcome::Unknown)),
        }
    }

    /// Requests waiting for their answer.
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.shared.pending.locked().len()
    }

    fn forget(&self, id: &str) {
        self.shared.pending.locked().forget(id);
    }

    /// Closes the tunnel (TLS close_notify, then the transport ends). Idempotent.
    pub fn close(&self) {
        self.shared.end(None);
    }

    /// Ends the tunnel with an error (e.g. the peer's key was revoked).
    pub(crate) fn fail(&self, reason: Error) {
        self.shared.end(Some(reason));
    }
}

fn encode(stanza: &Stanza) -> Result<Vec<u8>> {
    let xml = xso::to_vec(stanza)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot serialise stanza: {e}")))?;
    if xml.len() > MAX_FRAME {
        return Err(Error::new(
            ErrorKind::BadParams,
            format!("stanza of {} bytes exceeds the tunnel limit", xml.len()),
        ));
    }
    let mut frame = Vec::with_capacity(4 + xml.len());
    frame.extend_from_slice(&(xml.len() as u32).to_be_bytes());
    frame.extend_from_slice(&xml);
    Ok(frame)
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<TunnelShared>,
    mut writer: W,
    mut outbound: mpsc::Receiver<Stanza>,
) {
    let mut ended = shared.ended.subscribe();
    loop {
        tokio::select! {
            next = outbound.recv() => {
                let Some(first) = next else { break };
                // Everything queued goes out in one flush: one IBB block (up to its size) for a
                // batch of stanzas rather than one block per stanza.
                let mut frames = Vec::new();
                let mut stanza = Some(first);
                while let Some(mut next) = stanza.take() {
                    address(&mut next, &shared.local, &shared.peer);
                    match encode(&next) {
                        Ok(frame) => frames.extend_from_slice(&frame),
                        Err(e) => {
                            tracing::warn!(error = %e, "dropping a stanza that cannot go through the tunnel");
                        }
                    }
                    if frames.len() < BATCH_BYTES {
                        stanza = outbound.try_recv().ok();
                    }
                }
                if frames.is_empty() {
                    continue;
                }
                let write = async {
                    writer.write_all(&frames).await?;
                    writer.flush().await
                };
                if let Err(e) = write.await {
                    shared.end(Some(Error::new(
                        ErrorKind::NotConnected,
                        format!("end-to-end tunnel to {} broke: {e}", shared.peer),
                    )));
                    break;
                }
            }
            _ = ended.changed() => break,
        }
        if ended.borrow().is_some() {
            break;
        }
    }
    // Best effort close_notify; bounded so a dead transport cannot hold this task.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer.shutdown()).await;
}

/// Removes a request's pending entry when the request ends, cancelled ones included.
struct Forget<'a> {
    tunnel: &'a Tunnel,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.tunnel.forget(self.id);
    }
}

/// Sets `from`/`to` of an outbound stanza to the tunnel's two ends.
fn address(stanza: &mut Stanza, local: &FullJid, peer: &FullJid) {
    let (from, to) = (
        Some(Jid::from(local.clone())),
        Some(Jid::from(peer.clone())),
    );
    match stanza {
        Stanza::Iq(iq) => {
            *iq.from_mut() = from;
            *iq.to_mut() = to;
        }
        Stanza::Message(m) => {
            m.from = from;
            m.to = to;
        }
        Stanza::Presence(p) => {
            p.from = from;
            p.to = to;
        }
    }
}

/// Why a stanza that came out of the tunnel was not written for it: its `from` is not the peer
/// this tunnel was opened with, or its `to` not this device. Every sender sets both ([`address`]).
fn misaddressed(stanza: &Stanza, local: &FullJid, peer: &FullJid) -> Option<String> {
    let (from, to) = match stanza {
        Stanza::Iq(iq) => (iq.from(), iq.to()),
        Stanza::Message(m) => (m.from.as_ref(), m.to.as_ref()),
        Stanza::Presence(p) => (p.from.as_ref(), p.to.as_ref()),
    };
    let is = |jid: Option<&Jid>, want: &FullJid| {
        jid.is_some_and(|j| j.try_as_full().is_ok_and(|f| f == want))
    };
    if !is(from, peer) {
        Some(format!(
            "the end-to-end tunnel opened for {peer} reached {}: the server redirected it",
            from.map_or_else(
                || "a device that did not say who it is".into(),
                Jid::to_string
            )
        ))
    } else if !is(to, local) {
        Some(format!(
            "{peer} addressed its tunnel to {}, not to this device ({local}): the server \
             redirected it",
            to.map_or_else(|| "nobody".into(), Jid::to_string)
        ))
    } else {
        None
    }
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    reader.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: Arc<TunnelShared>,
    mut reader: R,
    inbound: mpsc::Sender<Stanza>,
) {
    let mut ended = shared.ended.subscribe();
    let reason = loop {
        // Ended first: once the tunnel has ended (and our side may have sent its alert), the TLS
        // reader must not be polled again (rustls asserts on that in debug builds).
        let frame = tokio::select! {
            biased;
            _ = ended.changed() => return,
            frame = read_frame(&mut reader) => frame,
        };
        let bytes = match frame {
            Ok(Some(bytes)) => bytes,
            Ok(None) => break None,
            Err(e) => {
                // A record that fails to decrypt is tampering in the path (or a broken peer):
                // report it as TLS, which apps can tell apart from a protocol bug.
                let kind = if e
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
                {
                    ErrorKind::Tls
                } else {
                    ErrorKind::Protocol
                };
                break Some(Error::new(
                    kind,
                    format!("end-to-end tunnel from {} failed: {e}", shared.peer),
                ));
            }
        };
        let mut stanza: Stanza = match xso::from_bytes(&bytes) {
            Ok(s) => s,
            Err(e) => {
                break Some(Error::new(
                    ErrorKind::Protocol,
                    format!("{} sent a malformed stanza in the tunnel: {e}", shared.peer),
                ))
            }
        };
        // The ends each side wrote (inside TLS, so the server cannot change them) must be the
        // ends this tunnel was opened for: otherwise the server delivered our Jingle to another
        // device of the network than the one we asked for (both hold trusted keys, so TLS alone
        // cannot tell `home/tv` from `home/tablet`).
        if let Some(why) = misaddressed(&stanza, &shared.local, &shared.peer) {
            break Some(Error::new(ErrorKind::Forbidden, why));
        }
        // The peer is who TLS authenticated.
        let from = Jid::from(shared.peer.clone());
        let to = Jid::from(shared.local.clone());
        match &mut stanza {
            Stanza::Iq(iq) => {
                *iq.from_mut() = Some(from);
                *iq.to_mut() = Some(to);
                if matches!(iq, Iq::Result { .. } | Iq::Error { .. }) {
                    let id = iq.id().to_owned();
                    let reply = match std::mem::replace(
                        iq,
                        Iq::empty_result(Jid::from(shared.peer.clone()), ""),
                    ) {
                        Iq::Result { payload, .. } => IqReply::Result(payload),
                        Iq::Error { error, .. } => IqReply::Error(error),
                        _ => continue,
                    };
                    // An unsolicited response is dropped, as on the server stream.
                    let from = Jid::from(shared.peer.clone());
                    let _ =
                        shared
                            .pending
                            .locked()
                            .answer(&id, Some(&from), &shared.local, Ok(reply));
                    continue;
                }
            }
            Stanza::Message(m) => {
                m.from = Some(from);
                m.to = Some(to);
            }
            Stanza::Presence(p) => {
                p.from = Some(from);
                p.to = Some(to);
            }
        }
        if inbound.send(stanza).await.is_err() {
            // Nobody listens any more: keep the tunnel for requests but stop delivering.
            tracing::debug!(peer = %shared.peer, "tunnel inbound receiver dropped");
        }
    };
    shared.end(reason);
}
