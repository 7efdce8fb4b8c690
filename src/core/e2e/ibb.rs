//! In-Band Bytestreams (XEP-0047) as an `AsyncRead + AsyncWrite` byte pipe over a [`Session`], the
//! transport of the tunnel (XEP-0261).
//!
//! Inbound blocks arrive through `IbbRegistry::handle` (iq) or `IbbRegistry::handle_message`
//! (message), which the endpoint calls from the role layer's dispatch loop; every block is validated
//! *before* it is accepted: the stream must be known **for that sender** (streams are keyed by (peer
//! full JID, sid), so a third party that learnt or reuses a sid reaches nothing and cannot replace or
//! end the real stream), blocks must be in sequence (no gap, no duplicate) and at most the negotiated
//! block size. A violation ends that bytestream (an error reply to an iq, a `<close/>` to the peer
//! either way); the XMPP connection stays up.
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
//! Outbound, the stream negotiated with `stanza='message'` (what pmn offers) sends its data blocks
//! in `<message type='headline'>` stanzas, which need no reply: a block costs the server one
//! stanza, not two, and nothing on the way waits for an acknowledgement (a stream negotiated with
//! `stanza='iq'`, from another implementation, gets one iq per block as before). Every
//! [`ACK_EVERY`]-th block still travels in an iq, whose result (the server keeps the order, so it
//! vouches for every block before it) paces the sender: at most [`WINDOW`] blocks are ever sent past
//! the last acknowledged one, fewer than the [`INBOUND_DEPTH`] the receiver buffers, so a fast
//! sender slows down instead of overrunning its peer, and a refused block still ends the stream.
//! (Strict XEP-0047 has one kind of stanza per stream; pmn's receiver accepts both, which is all
//! this relies on.) Headline messages are never stored offline by the server (RFC 6121 §8.5.2) and
//! have no body, so neither carbons nor archives copy them.
//!
//! Writes are buffered until the writer flushes (TLS flushes after each flight and the tunnel after
//! each batch of stanzas) or a block is full, so one TLS flight or one stanza is one block, and
//! there is no task between the TLS layer and the session: blocks go straight to the session's
//! queue, in order, and inbound blocks are read straight from the registry's queue.
//!
//! This file is the stream; the inbound registry and its checks are `ibb/registry.rs`.

use crate::core::sync::Locked;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use xmpp_parsers::ibb::{Close, Data, Open, Stanza as IbbStanzaKind, StreamId};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::session::{IqReply, Session};

mod registry;
#[cfg(test)]
mod tests;

#[cfg(test)]
use registry::RegisterRefusal;
pub(crate) use registry::{IbbEvent, IbbRegistry};

/// Namespace of XEP-0047.
pub const NS_IBB: &str = "http://jabber.org/protocol/ibb";
/// Largest block size we send or accept (base64 makes a 4096-byte block a ~5.5 kB stanza).
pub const MAX_BLOCK_SIZE: u16 = 4096;
/// Data blocks a sender may have sent past the last one acknowledged (below [`INBOUND_DEPTH`]).
pub const WINDOW: u64 = 32;
/// In a message stream, every this many blocks one travels in an iq whose result paces the sender.
pub const ACK_EVERY: u64 = 8;
/// Inbound blocks buffered per stream before the peer is considered to ignore flow control.
pub const INBOUND_DEPTH: usize = 64;
/// Inbound bytes a stream accepts before the TLS handshake over it has succeeded.
pub const SETUP_BYTES: usize = 64 * 1024;
/// Bytes written and not yet sent that a stream holds before a write waits (for its window).
const OUTBOUND_BUFFER: usize = 4 * MAX_BLOCK_SIZE as usize;

/// Test knobs for attack tests: what a hostile relay could do to our outbound blocks.
#[derive(Debug, Clone, Default)]
pub struct TransportHooks {
    /// Flip one bit in outbound data block number `n` (0-based) before sending it.
    pub corrupt_block: Option<u16>,
    /// Flip one bit in the first TLS flight (the ClientHello) carried in a session-initiate.
    pub corrupt_flight: bool,
}

/// Why an IBB stream ended, shared between the stream and the tunnel above it.
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

/// Parameters of one IBB stream.
pub(crate) struct IbbParams {
    pub(crate) session: Session,
    pub(crate) peer: FullJid,
    pub(crate) sid: String,
    pub(crate) block_size: u16,
    /// The stanza kind negotiated for data (`message` unless the peer asked for `iq`).
    pub(crate) stanza: IbbStanzaKind,
    /// The initiator opens the stream (XEP-0261: after session-accept).
    pub(crate) send_open: bool,
    pub(crate) ack_timeout: Duration,
    pub(crate) hooks: TransportHooks,
}

/// An acknowledgement under way: the count of data blocks it vouches for, and its outcome.
type Pending = Pin<Box<dyn Future<Output = (u64, Result<IbbAck>)> + Send>>;

enum IbbAck {
    Ok,
    Refused(String),
}

/// An IBB stream as a byte pipe. Dropping it (or shutting down its write side) closes the stream.
pub struct IbbStream {
    session: Session,
    peer: FullJid,
    to: Jid,
    sid: String,
    block_size: usize,
    /// Data blocks in messages (with a paced iq every [`ACK_EVERY`]); otherwise all in iqs.
    messages: bool,
    ack_timeout: Duration,
    hooks: TransportHooks,
    /// Written, not yet sent.
    outbound: Vec<u8>,
    seq: u16,
    /// Data blocks sent, and how many of them an acknowledgement has vouched for.
    sent: u64,
    acked: u64,
    since_ack_request: u64,
    acks: FuturesUnordered<Pending>,
    /// Our `<close/>` went out (or the stream failed): nothing more is sent.
    closed: bool,
    /// Inbound: the block being read, and how much of it was.
    reading: Option<(registry::Block, usize)>,
    inbound: mpsc::Receiver<IbbEvent>,
    eof: bool,
    status: Arc<IbbStatus>,
}

impl std::fmt::Debug for IbbStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IbbStream")
            .field("peer", &self.peer)
            .field("sid", &self.sid)
            .field("sent", &self.sent)
            .field("acked", &self.acked)
            .finish_non_exhaustive()
    }
}

fn ack_request(session: &Session, iq: Iq, timeout: Duration, through: u64) -> Pending {
    let session = session.clone();
    let mut fut: Pending = Box::pin(async move {
        let ack = match session.request(iq, timeout).await {
            Ok(IqReply::Result(_)) => Ok(IbbAck::Ok),
            Ok(IqReply::Error(e)) => Ok(IbbAck::Refused(format!("{:?}", e.defined_condition))),
            Err(e) => Err(e),
        };
        (through, ack)
    });
    // The first poll hands the iq to the session's queue now, so it keeps its place among the
    // stream's other stanzas (later polls, from the writer, only wait for the answer). A request
    // that is over at once (the session is gone) must never be polled again: it is kept as a
    // finished value instead.
    let waker = futures::task::noop_waker();
    match fut.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(done) => Box::pin(futures::future::ready(done)),
        Poll::Pending => fut,
    }
}

fn broken_pipe(text: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, text.into())
}

impl IbbStream {
    /// The stream over `params.session` whose inbound blocks arrive on `inbound`; sends the
    /// `<open/>` when `params.send_open`.
    pub(crate) fn new(
        params: IbbParams,
        inbound: mpsc::Receiver<IbbEvent>,
    ) -> (IbbStream, Arc<IbbStatus>) {
        let IbbParams {
            session,
            peer,
            sid,
            block_size,
            stanza,
            send_open,
            ack_timeout,
            hooks,
        } = params;
        let status = Arc::new(IbbStatus::default());
        let stream = IbbStream {
            session,
            to: Jid::from(peer.clone()),
            peer,
            sid,
            block_size: usize::from(block_size.max(1)),
            messages: stanza == IbbStanzaKind::Message,
            ack_timeout,
            hooks,
            outbound: Vec::new(),
            seq: 0,
            sent: 0,
            acked: 0,
            since_ack_request: 0,
            acks: FuturesUnordered::new(),
            closed: false,
            reading: None,
            inbound,
            eof: false,
            status: status.clone(),
        };
        if send_open {
            let open = Open {
                block_size,
                sid: StreamId(stream.sid.clone()),
                stanza,
            };
            let iq = Iq::from_set(String::new(), open).with_to(stream.to.clone());
            stream
                .acks
                .push(ack_request(&stream.session, iq, ack_timeout, 0));
        }
        (stream, status)
    }

    /// Ends the stream with `e` (kept for the tunnel's error) and tells the peer, best effort.
    fn fail(&mut self, e: Error) -> std::io::Error {
        tracing::debug!(peer = %self.peer, sid = self.sid, error = %e, "in-band bytestream ended");
        let text = e.message().to_owned();
        self.status.set(e);
        self.close_now();
        broken_pipe(text)
    }

    /// Sends our `<close/>` without waiting for its answer (once).
    fn close_now(&mut self) {
        if !self.closed {
            self.closed = true;
            let close = Iq::from_set(
                self.session.next_id(),
                Close {
                    sid: StreamId(self.sid.clone()),
                },
            )
            .with_to(self.to.clone());
            let _ = self.session.send(close);
        }
    }

    /// Takes in the acknowledgements that came back; a refused or lost one ends the stream.
    /// Registers `cx` for the next one.
    fn take_acks(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        while let Poll::Ready(Some((through, ack))) = self.acks.poll_next_unpin(cx) {
            match ack {
                Ok(IbbAck::Ok) => self.acked = self.acked.max(through),
                Ok(IbbAck::Refused(condition)) => {
                    let peer = self.peer.clone();
                    return Err(self.fail(Error::new(
                        ErrorKind::Protocol,
                        format!("{peer} refused in-band bytestream data ({condition})"),
                    )));
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(())
    }

    fn window_open(&self) -> bool {
        self.sent - self.acked < WINDOW
    }

    /// Sends what is buffered, in blocks, while the window allows: full blocks only, or (when
    /// `flush`) the rest too.
    fn send_blocks(&mut self, flush: bool) -> std::io::Result<()> {
        while self.window_open()
            && (self.outbound.len() >= self.block_size || (flush && !self.outbound.is_empty()))
        {
            let n = self.outbound.len().min(self.block_size);
            let mut block: Vec<u8> = self.outbound.drain(..n).collect();
            if self.hooks.corrupt_block == Some(self.seq) {
                block[n / 2] ^= 0x01;
            }
            let data = Data {
                seq: self.seq,
                sid: StreamId(self.sid.clone()),
                data: block,
            };
            self.seq = self.seq.wrapping_add(1);
            self.sent += 1;
            self.since_ack_request += 1;
            if !self.messages || self.since_ack_request >= ACK_EVERY {
                self.since_ack_request = 0;
                let iq = Iq::from_set(String::new(), data).with_to(self.to.clone());
                let ack = ack_request(&self.session, iq, self.ack_timeout, self.sent);
                self.acks.push(ack);
            } else {
                let mut message = Message::new_with_type(MessageType::Headline, self.to.clone());
                message.payloads.push(Element::from(data));
                if self.session.send(message).is_err() {
                    return Err(self.fail(Error::new(
                        ErrorKind::NotConnected,
                        "the session ended under the in-band bytestream",
                    )));
                }
            }
        }
        Ok(())
    }

    /// Common start of every write-side call.
    fn writable(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if self.closed {
            return Err(broken_pipe(match self.status.reason() {
                Some(e) => e.message().to_owned(),
                None => "the in-band bytestream is closed".to_owned(),
            }));
        }
        self.take_acks(cx)
    }
}

impl Drop for IbbStream {
    fn drop(&mut self) {
        // The peer learns at once that nothing more comes (TLS already sent its close_notify
        // when the tunnel was shut down cleanly).
        self.close_now();
    }
}

impl AsyncRead for IbbStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some((block, offset)) = &mut this.reading {
                let n = (block.bytes.len() - *offset).min(buf.remaining());
                buf.put_slice(&block.bytes[*offset..*offset + n]);
                *offset += n;
                if *offset == block.bytes.len() {
                    // Dropping the block gives its bytes back to the registry's budget.
                    this.reading = None;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(this.inbound.poll_recv(cx)) {
                Some(IbbEvent::Data(block)) => {
                    if !block.bytes.is_empty() {
                        this.reading = Some((block, 0));
                    }
                }
                Some(IbbEvent::Close) | None => this.eof = true,
                Some(IbbEvent::Fail(e)) => {
                    // The registry ended the stream (a violation by the peer, or a bound):
                    // the reader sees the end, the tunnel the reason, the peer our close.
                    let _ = this.fail(e);
                    this.eof = true;
                }
            }
        }
    }
}

impl AsyncWrite for IbbStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        loop {
            this.writable(cx)?;
            this.send_blocks(false)?;
            if this.outbound.len() < OUTBOUND_BUFFER {
                break;
            }
            // The buffer is full and the window shut: wait for an acknowledgement (`cx` is
            // registered with every one under way, those just sent included).
            this.take_acks(cx)?;
            if !this.window_open() {
                return Poll::Pending;
            }
        }
        let n = buf.len().min(OUTBOUND_BUFFER - this.outbound.len());
        this.outbound.extend_from_slice(&buf[..n]);
        this.send_blocks(false)?;
        this.take_acks(cx)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            this.writable(cx)?;
            this.send_blocks(true)?;
            this.take_acks(cx)?;
            if this.outbound.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if !this.window_open() {
                return Poll::Pending;
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.closed {
            std::task::ready!(self.as_mut().poll_flush(cx))?;
            let this = &mut *self;
            this.closed = true;
            let close = Iq::from_set(
                String::new(),
                Close {
                    sid: StreamId(this.sid.clone()),
                },
            )
            .with_to(this.to.clone());
            let sent = this.sent;
            this.acks
                .push(ack_request(&this.session, close, this.ack_timeout, sent));
        }
        // Done once every acknowledgement is in (bounded: each has the stream's timeout).
        let this = &mut *self;
        loop {
            match std::task::ready!(this.acks.poll_next_unpin(cx)) {
                Some((_, Ok(IbbAck::Ok))) => {}
                Some((_, Ok(IbbAck::Refused(condition)))) => {
                    return Poll::Ready(Err(broken_pipe(format!(
                        "{} refused in-band bytestream data ({condition})",
                        this.peer
                    ))))
                }
                Some((_, Err(e))) => return Poll::Ready(Err(broken_pipe(e.message().to_owned()))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}
