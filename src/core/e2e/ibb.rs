//! In-Band Bytestreams (XEP-0047, iq stanzas only) as an `AsyncRead + AsyncWrite` byte pipe over a
//! [`Session`], the transport of the tunnel (XEP-0261).
//!
//! Inbound blocks arrive through `IbbRegistry::handle`, which the endpoint calls from the role
//! layer's dispatch loop; it validates every block *before* acknowledging it: the stream must be
//! known **for that sender** (streams are keyed by (peer full JID, sid), so a third party that learnt
//! or reuses a sid reaches nothing and cannot replace or end the real stream), blocks must be in
//! sequence (no gap, no duplicate) and at most the negotiated block size. A violation ends that
//! bytestream with an error reply; the XMPP connection stays up.
//!
//! Bounds (see [`super::limits::E2eLimits`]): the registry holds a bounded number of streams (a
//! further registration is refused, as is a second one of the same (peer, sid)); each stream
//! buffers at most [`INBOUND_DEPTH`] unread blocks (a peer that sends more ends its own stream
//! with `resource-constraint`); a stream whose TLS handshake has not succeeded yet accepts at most
//! [`SETUP_BYTES`] in all (a handshake needs a few kB; a peer that parks data in a
//! half-open session it never completes cannot hold more, so half-open sessions can never take the
//! whole budget below); and all streams together buffer a bounded number of bytes (a block beyond
//! is refused with `resource-constraint`, ending only the stream that sent it).
//!
//! Outbound, up to [`WINDOW`] data iqs are in flight at once (the server keeps their order), so a TLS
//! flight split across blocks costs no extra round trip; each block waits for its acknowledgement with
//! a timeout, and a refused block ends the stream.

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use xmpp_parsers::ibb::{Close, Data, Open, Stanza as IbbStanzaKind, StreamId};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::limits::E2eCounters;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::session::{IqReply, Session};

/// Namespace of XEP-0047.
pub const NS_IBB: &str = "http://jabber.org/protocol/ibb";
/// Largest block size we send or accept (base64 makes a 4096-byte block a ~5.5 kB stanza).
pub const MAX_BLOCK_SIZE: u16 = 4096;
/// Unacknowledged data iqs allowed in flight.
pub const WINDOW: usize = 8;
/// Inbound blocks buffered per stream before the peer is considered to ignore flow control.
pub const INBOUND_DEPTH: usize = 64;
/// Inbound bytes a stream accepts before the TLS handshake over it has succeeded.
pub const SETUP_BYTES: usize = 64 * 1024;

/// What the registry hands to a stream's pump.
#[derive(Debug)]
pub(crate) enum IbbEvent {
    Data(Block),
    Close,
    Fail(Error),
}

/// One inbound block, charged to the registry's byte budget until it is dropped (read by the pump,
/// or thrown away with its stream): the budget can never leak.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) bytes: Vec<u8>,
    budget: Arc<AtomicUsize>,
}

impl Drop for Block {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// Why a stream could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisterRefusal {
    /// This peer already has a live stream with this sid (it is left alone).
    Conflict,
    /// The registry holds as many streams as it may.
    Full,
}

impl RegisterRefusal {
    /// The stanza error to answer the session-initiate with.
    pub(crate) fn condition(self) -> DefinedCondition {
        match self {
            RegisterRefusal::Conflict => DefinedCondition::Conflict,
            RegisterRefusal::Full => DefinedCondition::ResourceConstraint,
        }
    }

    /// As a local error (our own open).
    pub(crate) fn error(self) -> Error {
        match self {
            RegisterRefusal::Conflict => Error::new(
                ErrorKind::Internal,
                "in-band bytestream id already in use with this peer",
            ),
            RegisterRefusal::Full => Error::new(
                ErrorKind::ProviderUnavailable,
                "too many in-band bytestreams are open on this device; try again later",
            ),
        }
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            RegisterRefusal::Conflict => "this stream id is already in use",
            RegisterRefusal::Full => "too many in-band bytestreams; try again later",
        }
    }
}

struct InboundState {
    /// Bytes still accepted while the tunnel is being set up; `None` once it is established.
    setup_budget: Option<usize>,
    block_size: u16,
    expected_seq: u16,
    tx: mpsc::Sender<IbbEvent>,
}

/// The inbound side of every IBB stream of one session, keyed by (peer, stream id).
pub(crate) struct IbbRegistry {
    streams: Mutex<HashMap<(FullJid, String), InboundState>>,
    max_streams: usize,
    max_buffered: usize,
    buffered: Arc<AtomicUsize>,
    counters: Arc<E2eCounters>,
}

impl Default for IbbRegistry {
    fn default() -> Self {
        let limits = super::limits::E2eLimits::default();
        IbbRegistry::new(
            limits.ibb_streams,
            limits.ibb_buffered_bytes,
            Arc::default(),
        )
    }
}

fn error_reply(to: Jid, id: &str, condition: DefinedCondition, text: &str) -> Iq {
    let error_type = match condition {
        DefinedCondition::ResourceConstraint => ErrorType::Wait,
        _ => ErrorType::Cancel,
    };
    Iq::from_error(
        id.to_owned(),
        StanzaError::new(error_type, condition, "en", text),
    )
    .with_to(to)
}

impl IbbRegistry {
    /// A registry of at most `max_streams` streams buffering at most `max_buffered` bytes in
    /// total; refusals are counted in `counters`.
    pub(crate) fn new(max_streams: usize, max_buffered: usize, counters: Arc<E2eCounters>) -> Self {
        IbbRegistry {
            streams: Mutex::new(HashMap::new()),
            max_streams,
            max_buffered,
            buffered: Arc::new(AtomicUsize::new(0)),
            counters,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(FullJid, String), InboundState>> {
        // Single map operations: a poisoned lock still holds a consistent map.
        self.streams.locked()
    }

    /// Registers the stream `sid` with `peer`; returns the receiver of its blocks. A live stream
    /// of the same (peer, sid) is never replaced.
    pub(crate) fn register(
        &self,
        sid: &str,
        peer: FullJid,
        block_size: u16,
    ) -> std::result::Result<mpsc::Receiver<IbbEvent>, RegisterRefusal> {
        let mut streams = self.lock();
        let key = (peer, sid.to_owned());
        if streams.contains_key(&key) {
            if E2eCounters::bump(&self.counters.ibb_sid_conflicts) {
                tracing::info!(peer = %key.0, sid, "refused a second in-band bytestream with a live sid");
            }
            return Err(RegisterRefusal::Conflict);
        }
        if streams.len() >= self.max_streams {
            if E2eCounters::bump(&self.counters.ibb_streams_refused) {
                tracing::warn!(peer = %key.0, streams = streams.len(), "in-band bytestream registry full");
            }
            return Err(RegisterRefusal::Full);
        }
        let (tx, rx) = mpsc::channel(INBOUND_DEPTH);
        streams.insert(
            key,
            InboundState {
                block_size,
                expected_seq: 0,
                setup_budget: Some(SETUP_BYTES),
                tx,
            },
        );
        Ok(rx)
    }

    /// Forgets the stream `sid` of `peer` (it ended).
    pub(crate) fn remove(&self, peer: &FullJid, sid: &str) {
        self.lock().remove(&(peer.clone(), sid.to_owned()));
    }

    /// The TLS handshake over the stream `sid` of `peer` succeeded: its setup allowance no longer
    /// applies (the tunnel reads what arrives from now on).
    pub(crate) fn established(&self, peer: &FullJid, sid: &str) {
        if let Some(state) = self.lock().get_mut(&(peer.clone(), sid.to_owned())) {
            state.setup_budget = None;
        }
    }

    /// Forgets every stream (the session was reset: the peers' ends are gone too).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Inbound bytes buffered over all streams, not yet read.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Registered streams.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Handles an iq `set` whose payload is in the IBB namespace; returns the reply to send.
    pub(crate) fn handle(&self, from: &Jid, id: &str, payload: &Element) -> Iq {
        let from_full = match from.clone().try_into_full() {
            Ok(full) => full,
            Err(_) => {
                return error_reply(
                    from.clone(),
                    id,
                    DefinedCondition::BadRequest,
                    "IBB needs a full JID",
                )
            }
        };
        let ok = Iq::empty_result(from.clone(), id.to_owned());
        let fail = |condition, text: &str| error_reply(from.clone(), id, condition, text);
        match payload.name() {
            "open" => {
                let Ok(open) = Open::try_from(payload.clone()) else {
                    return fail(DefinedCondition::BadRequest, "malformed <open/>");
                };
                let streams = self.lock();
                match streams.get(&(from_full, open.sid.0)) {
                    // The Jingle negotiation already fixed sid and block size; `open` confirms them.
                    Some(s) if open.block_size <= s.block_size => ok,
                    Some(_) => fail(DefinedCondition::ResourceConstraint, "block size too large"),
                    None => fail(DefinedCondition::ItemNotFound, "unknown stream"),
                }
            }
            "data" => {
                let Ok(data) = Data::try_from(payload.clone()) else {
                    return fail(DefinedCondition::BadRequest, "malformed <data/>");
                };
                let mut streams = self.lock();
                let key = (from_full, data.sid.0);
                // Someone else who learnt the sid finds nothing under its own JID: refused, and
                // the real stream is left alone.
                let Some(state) = streams.get_mut(&key) else {
                    return fail(DefinedCondition::ItemNotFound, "unknown stream");
                };
                let violation = if data.data.len() > state.block_size as usize {
                    Some((
                        DefinedCondition::PolicyViolation,
                        format!(
                            "block of {} bytes exceeds the negotiated {}",
                            data.data.len(),
                            state.block_size
                        ),
                    ))
                } else if data.seq != state.expected_seq {
                    Some((
                        DefinedCondition::UnexpectedRequest,
                        format!(
                            "block {} out of sequence (expected {})",
                            data.seq, state.expected_seq
                        ),
                    ))
                } else if state
                    .setup_budget
                    .is_some_and(|left| data.data.len() > left)
                {
                    let _ = E2eCounters::bump(&self.counters.ibb_setup_overflows);
                    Some((
                        DefinedCondition::PolicyViolation,
                        format!("more than {SETUP_BYTES} bytes before the tunnel was set up"),
                    ))
                } else if self.buffered.load(Ordering::Relaxed) + data.data.len()
                    > self.max_buffered
                {
                    let _ = E2eCounters::bump(&self.counters.ibb_total_overflows);
                    Some((
                        DefinedCondition::ResourceConstraint,
                        "this device buffers too much in-band data; try again later".to_owned(),
                    ))
                } else {
                    state.expected_seq = state.expected_seq.wrapping_add(1);
                    if let Some(left) = &mut state.setup_budget {
                        *left = left.saturating_sub(data.data.len());
                    }
                    // Charged now, released when the block is dropped (read or discarded).
                    self.buffered.fetch_add(data.data.len(), Ordering::Relaxed);
                    let block = Block {
                        bytes: data.data,
                        budget: self.buffered.clone(),
                    };
                    match state.tx.try_send(IbbEvent::Data(block)) {
                        Ok(()) => None,
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            let _ = E2eCounters::bump(&self.counters.ibb_stream_overflows);
                            Some((
                                DefinedCondition::ResourceConstraint,
                                "peer ignored flow control".to_owned(),
                            ))
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => Some((
                            DefinedCondition::ItemNotFound,
                            "stream already ended".to_owned(),
                        )),
                    }
                };
                match violation {
                    None => ok,
                    Some((condition, text)) => {
                        tracing::info!(%from, %text, "ending an in-band bytestream");
                        if let Some(state) = streams.remove(&key) {
                            let _ = state.tx.try_send(IbbEvent::Fail(Error::new(
                                ErrorKind::Protocol,
                                format!("in-band bytestream from {from}: {text}"),
                            )));
                        }
                        fail(condition, &text)
                    }
                }
            }
            "close" => {
                let Ok(close) = Close::try_from(payload.clone()) else {
                    return fail(DefinedCondition::BadRequest, "malformed <close/>");
                };
                match self.lock().remove(&(from_full, close.sid.0)) {
                    Some(state) => {
                        let _ = state.tx.try_send(IbbEvent::Close);
                        ok
                    }
                    None => fail(DefinedCondition::ItemNotFound, "unknown stream"),
                }
            }
            _ => fail(DefinedCondition::BadRequest, "unknown IBB element"),
        }
    }
}

/// Test knobs for attack tests: what a hostile relay could do to our outbound blocks.
#[derive(Debug, Clone, Default)]
pub struct TransportHooks {
    /// Flip one bit in outbound data block number `n` (0-based) before sending it.
    pub corrupt_block: Option<u16>,
}

/// Why an IBB stream ended, shared between the pump and the tunnel above it.
#[derive(Debug, Default)]
pub(crate) struct IbbStatus {
    reason: Mutex<Option<Error>>,
}

impl IbbStatus {
    fn set(&self, e: Error) {
        let mut r = self.reason.locked();
        if r.is_none() {
            *r = Some(e);
        }
    }

    /// The error that ended the stream, if one did.
    pub(crate) fn reason(&self) -> Option<Error> {
        self.reason.locked().clone()
    }
}

/// An IBB stream as a byte pipe. Dropping it (or shutting down its write side) closes the stream.
#[derive(Debug)]
pub struct IbbStream {
    app: DuplexStream,
}

/// Parameters of one IBB stream.
pub(crate) struct IbbParams {
    pub(crate) session: Session,
    pub(crate) peer: FullJid,
    pub(crate) sid: String,
    pub(crate) block_size: u16,
    /// The initiator opens the stream (XEP-0261: after session-accept).
    pub(crate) send_open: bool,
    pub(crate) ack_timeout: Duration,
    pub(crate) hooks: TransportHooks,
}

type Pending = Pin<Box<dyn Future<Output = Result<IbbAck>> + Send>>;

enum IbbAck {
    Ok,
    Refused(String),
}

impl IbbStream {
    /// Starts the pump task of a stream whose inbound blocks arrive on `inbound`.
    pub(crate) fn spawn(
        params: IbbParams,
        inbound: mpsc::Receiver<IbbEvent>,
    ) -> (IbbStream, Arc<IbbStatus>) {
        let (app, pump) = tokio::io::duplex(64 * 1024);
        let status = Arc::new(IbbStatus::default());
        tokio::spawn(pump_task(params, pump, inbound, status.clone()));
        (IbbStream { app }, status)
    }
}

fn ack_request(session: &Session, iq: Iq, timeout: Duration) -> Pending {
    let session = session.clone();
    Box::pin(async move {
        match session.request(iq, timeout).await? {
            IqReply::Result(_) => Ok(IbbAck::Ok),
            IqReply::Error(e) => Ok(IbbAck::Refused(format!("{:?}", e.defined_condition))),
        }
    })
}

async fn pump_task(
    params: IbbParams,
    pump: DuplexStream,
    mut inbound: mpsc::Receiver<IbbEvent>,
    status: Arc<IbbStatus>,
) {
    let IbbParams {
        session,
        peer,
        sid,
        block_size,
        send_open,
        ack_timeout,
        hooks,
    } = params;
    let to = Jid::from(peer.clone());
    let (mut from_app, mut to_app) = tokio::io::split(pump);
    let mut inflight: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut seq: u16 = 0;
    let mut buf = vec![0u8; block_size as usize];
    let (mut outbound_open, mut inbound_open) = (true, true);

    // Queues a request now (so the server sees them in order) and tracks its acknowledgement.
    macro_rules! push {
        ($iq:expr) => {{
            let mut fut = ack_request(&session, $iq, ack_timeout);
            // The first poll hands the iq to the session task; later polls only wait for the ack.
            // A request that is over at once (the session is gone) must never be polled again:
            // an `async fn` polled after completion panics, and the pump would die with it.
            match futures::poll!(&mut fut) {
                std::task::Poll::Ready(done) => {
                    inflight.push(Box::pin(futures::future::ready(done)))
                }
                std::task::Poll::Pending => inflight.push(fut),
            }
        }};
    }

    if send_open {
        let open = Open {
            block_size,
            sid: StreamId(sid.clone()),
            stanza: IbbStanzaKind::Iq,
        };
        push!(Iq::from_set(String::new(), open).with_to(to.clone()));
    }

    let failure = loop {
        if !outbound_open && !inbound_open && inflight.is_empty() {
            break None;
        }
        tokio::select! {
            read = from_app.read(&mut buf), if outbound_open && inflight.len() < WINDOW => match read {
                Ok(0) => {
                    outbound_open = false;
                    push!(Iq::from_set(String::new(), Close { sid: StreamId(sid.clone()) }).with_to(to.clone()));
                }
                Ok(n) => {
                    let mut block = buf[..n].to_vec();
                    if hooks.corrupt_block == Some(seq) {
                        block[n / 2] ^= 0x01;
                    }
                    let data = Data { seq, sid: StreamId(sid.clone()), data: block };
                    seq = seq.wrapping_add(1);
                    push!(Iq::from_set(String::new(), data).with_to(to.clone()));
                }
                Err(e) => break Some(Error::new(ErrorKind::Internal, format!("tunnel pipe: {e}"))),
            },
            Some(ack) = inflight.next(), if !inflight.is_empty() => match ack {
                Ok(IbbAck::Ok) => {}
                Ok(IbbAck::Refused(condition)) => break Some(Error::new(
                    ErrorKind::Protocol,
                    format!("{peer} refused in-band bytestream data ({condition})"),
                )),
                Err(e) => break Some(e),
            },
            event = inbound.recv(), if inbound_open => match event {
                Some(IbbEvent::Data(block)) => {
                    // Bounded: an app that stops reading must not pin this task forever.
                    let write = tokio::time::timeout(ack_timeout, to_app.write_all(&block.bytes)).await;
                    if !matches!(write, Ok(Ok(()))) {
                        break Some(Error::new(ErrorKind::NotConnected, "tunnel reader went away"));
                    }
                }
                Some(IbbEvent::Close) | None => {
                    inbound_open = false;
                    let _ = to_app.shutdown().await;
                }
                Some(IbbEvent::Fail(e)) => break Some(e),
            },
        }
    };
    if let Some(e) = failure {
        tracing::debug!(%peer, sid, error = %e, "in-band bytestream ended");
        status.set(e);
        if outbound_open {
            // Tell the peer (best effort) so it does not wait for its timeouts.
            let close = Iq::from_set(
                session.next_id(),
                Close {
                    sid: StreamId(sid.clone()),
                },
            )
            .with_to(to);
            let _ = session.send(close);
        }
    }
    // Dropping both halves of the pump ends the app side (EOF / broken pipe).
}

impl AsyncRead for IbbStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.app).poll_read(cx, buf)
    }
}

impl AsyncWrite for IbbStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.app).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.app).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.app).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(sid: &str, seq: u16, len: usize) -> Element {
        Element::from(Data {
            seq,
            sid: StreamId(sid.into()),
            data: vec![0x5a; len],
        })
    }

    fn is_error(iq: &Iq, condition: DefinedCondition) -> bool {
        matches!(iq, Iq::Error { error, .. } if error.defined_condition == condition)
    }

    #[tokio::test]
    async fn registry_refuses_strangers_gaps_duplicates_and_oversized_blocks() {
        let reg = IbbRegistry::default();
        let peer: FullJid = "home@home.test/tv".parse().unwrap();
        let stranger: Jid = "evil@stranger.test/x".parse().unwrap();
        let from = Jid::from(peer.clone());
        let mut rx = reg.register("s1", peer.clone(), 16).unwrap();

        assert!(matches!(
            reg.handle(&from, "1", &data("s1", 0, 4)),
            Iq::Result { .. }
        ));
        assert!(matches!(rx.recv().await, Some(IbbEvent::Data(d)) if d.bytes.len() == 4));
        // A third party that knows the sid is refused and the stream survives.
        assert!(is_error(
            &reg.handle(&stranger, "2", &data("s1", 1, 4)),
            DefinedCondition::ItemNotFound
        ));
        assert!(is_error(
            &reg.handle(&from, "3", &data("nope", 0, 4)),
            DefinedCondition::ItemNotFound
        ));
        assert!(matches!(
            reg.handle(&from, "4", &data("s1", 1, 4)),
            Iq::Result { .. }
        ));
        assert!(matches!(rx.recv().await, Some(IbbEvent::Data(_))));
        // A duplicate ends the stream with an error.
        assert!(is_error(
            &reg.handle(&from, "5", &data("s1", 1, 4)),
            DefinedCondition::UnexpectedRequest
        ));
        assert!(
            matches!(rx.recv().await, Some(IbbEvent::Fail(e)) if e.kind() == ErrorKind::Protocol)
        );
        assert!(is_error(
            &reg.handle(&from, "6", &data("s1", 2, 4)),
            DefinedCondition::ItemNotFound
        ));

        let mut rx = reg.register("s2", peer.clone(), 16).unwrap();
        assert!(is_error(
            &reg.handle(&from, "7", &data("s2", 0, 17)),
            DefinedCondition::PolicyViolation
        ));
        assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(_))));

        let mut rx = reg.register("s3", peer, 16).unwrap();
        assert!(is_error(
            &reg.handle(&from, "8", &data("s3", 5, 1)),
            DefinedCondition::UnexpectedRequest
        ));
        assert!(matches!(rx.recv().await, Some(IbbEvent::Fail(_))));
        let junk: Element = "<data xmlns='http://jabber.org/protocol/ibb' sid='s3'>AAAA</data>"
            .parse()
            .unwrap();
        assert!(is_error(
            &reg.handle(&from, "9", &junk),
            DefinedCondition::BadRequest
        ));
    }

    #[tokio::test]
    async fn a_reused_sid_from_another_jid_neither_replaces_nor_ends_the_live_stream() {
        let reg = IbbRegistry::default();
        let tv: FullJid = "home@home.test/tv".parse().unwrap();
        let guest: FullJid = "romeo@friend.test/phone".parse().unwrap();
        let mut live = reg.register("s1", tv.clone(), 16).unwrap();
        // Another JID registers (after its own session-initiate) the same sid: its own stream.
        let mut other = reg.register("s1", guest.clone(), 16).unwrap();
        // The same peer cannot register a live sid twice.
        assert_eq!(
            reg.register("s1", tv.clone(), 16).unwrap_err(),
            RegisterRefusal::Conflict
        );
        // Each sender's blocks reach its own stream only; the other's close ends only its own.
        let (from_tv, from_guest) = (Jid::from(tv.clone()), Jid::from(guest.clone()));
        assert!(matches!(
            reg.handle(&from_guest, "1", &data("s1", 0, 3)),
            Iq::Result { .. }
        ));
        let close: Element = Element::from(Close {
            sid: StreamId("s1".into()),
        });
        assert!(matches!(
            reg.handle(&from_guest, "2", &close),
            Iq::Result { .. }
        ));
        assert!(matches!(other.recv().await, Some(IbbEvent::Data(d)) if d.bytes.len() == 3));
        assert!(matches!(other.recv().await, Some(IbbEvent::Close)));
        assert!(matches!(
            reg.handle(&from_tv, "3", &data("s1", 0, 4)),
            Iq::Result { .. }
        ));
        assert!(matches!(live.recv().await, Some(IbbEvent::Data(d)) if d.bytes.len() == 4));
        reg.remove(&guest, "s1");
        assert_eq!(reg.len(), 1);
    }

    #[tokio::test]
    async fn the_registry_is_bounded_in_streams_and_in_buffered_bytes() {
        let counters = Arc::new(E2eCounters::default());
        let reg = IbbRegistry::new(2, 10, counters.clone());
        let peer: FullJid = "home@home.test/tv".parse().unwrap();
        let from = Jid::from(peer.clone());
        let mut a = reg.register("a", peer.clone(), 16).unwrap();
        let _b = reg.register("b", peer.clone(), 16).unwrap();
        assert_eq!(
            reg.register("c", peer.clone(), 16).unwrap_err(),
            RegisterRefusal::Full
        );
        assert_eq!(counters.snapshot().ibb_streams_refused, 1);
        // 8 unread bytes on a, then 4 more on b would exceed 10: refused, b ends, a lives.
        assert!(matches!(
            reg.handle(&from, "1", &data("a", 0, 8)),
            Iq::Result { .. }
        ));
        assert_eq!(reg.buffered(), 8);
        assert!(is_error(
            &reg.handle(&from, "2", &data("b", 0, 4)),
            DefinedCondition::ResourceConstraint
        ));
        assert_eq!(counters.snapshot().ibb_total_overflows, 1);
        assert_eq!(reg.len(), 1);
        // Reading frees the budget.
        assert!(matches!(a.recv().await, Some(IbbEvent::Data(_))));
        assert_eq!(reg.buffered(), 0);
        assert!(matches!(
            reg.handle(&from, "3", &data("a", 1, 8)),
            Iq::Result { .. }
        ));
        // A stream dropped with unread blocks gives their bytes back too.
        drop(a);
        reg.remove(&peer, "a");
        assert_eq!(reg.buffered(), 0);
    }

    #[tokio::test]
    async fn a_peer_that_overfills_its_stream_ends_only_that_stream() {
        let counters = Arc::new(E2eCounters::default());
        let reg = IbbRegistry::new(8, 1 << 20, counters.clone());
        let peer: FullJid = "home@home.test/tv".parse().unwrap();
        let from = Jid::from(peer.clone());
        let _slow = reg.register("slow", peer.clone(), 16).unwrap();
        let mut other = reg.register("other", peer.clone(), 16).unwrap();
        for seq in 0..INBOUND_DEPTH as u16 {
            assert!(matches!(
                reg.handle(&from, "x", &data("slow", seq, 1)),
                Iq::Result { .. }
            ));
        }
        assert!(is_error(
            &reg.handle(&from, "y", &data("slow", INBOUND_DEPTH as u16, 1)),
            DefinedCondition::ResourceConstraint
        ));
        assert_eq!(counters.snapshot().ibb_stream_overflows, 1);
        assert!(matches!(
            reg.handle(&from, "z", &data("other", 0, 1)),
            Iq::Result { .. }
        ));
        assert!(matches!(other.recv().await, Some(IbbEvent::Data(_))));
    }

    #[tokio::test]
    async fn a_stream_takes_only_a_setup_allowance_until_its_tunnel_is_established() {
        let counters = Arc::new(E2eCounters::default());
        let reg = IbbRegistry::new(8, 16 * SETUP_BYTES, counters.clone());
        let peer: FullJid = "home@home.test/mallory".parse().unwrap();
        let from = Jid::from(peer.clone());
        let block = 4096;
        let _parked = reg.register("half", peer.clone(), block as u16).unwrap();
        let mut live = reg.register("live", peer.clone(), block as u16).unwrap();
        let blocks = (SETUP_BYTES / block) as u16;
        for seq in 0..blocks {
            assert!(matches!(
                reg.handle(&from, "x", &data("half", seq, block)),
                Iq::Result { .. }
            ));
        }
        // Nobody reads the half-open stream: one more block ends it instead of piling up.
        assert!(is_error(
            &reg.handle(&from, "y", &data("half", blocks, block)),
            DefinedCondition::PolicyViolation
        ));
        assert_eq!(counters.snapshot().ibb_setup_overflows, 1);
        // An established stream is not held to the allowance.
        reg.established(&peer, "live");
        for seq in 0..(blocks + 4) {
            assert!(matches!(
                reg.handle(&from, "z", &data("live", seq, block)),
                Iq::Result { .. }
            ));
            assert!(matches!(live.recv().await, Some(IbbEvent::Data(_))));
        }
    }
}
