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
//!
//! This file is the stream (the pump between the byte pipe and the session); the inbound
//! registry and its checks are `ibb/registry.rs`.

use crate::core::sync::Locked;
use std::future::Future;
use std::pin::Pin;
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
/// Unacknowledged data iqs allowed in flight.
pub const WINDOW: usize = 8;
/// Inbound blocks buffered per stream before the peer is considered to ignore flow control.
pub const INBOUND_DEPTH: usize = 64;
/// Inbound bytes a stream accepts before the TLS handshake over it has succeeded.
pub const SETUP_BYTES: usize = 64 * 1024;

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
