//! The first TLS flight of a tunnel carried in the Jingle negotiation (issue 16, goal 4), so that
//! a tunnel to a device seen before costs one relayed round trip instead of two: the opener's
//! ClientHello rides in its session-initiate, and the responder, once it has decided to trust the
//! key the initiate names, reads that ClientHello first and answers over IBB right after its
//! session-accept.
//!
//! Two byte pipes make this work without changing the TLS layer:
//! - [`EarlyIo`] (opener): the TLS client writes into it before any transport exists; its first
//!   flight is handed out ([`EarlyHandle::first_flight`]) to go into the initiate, and the client
//!   then waits until the IBB stream is attached ([`EarlyHandle::attach`]). If the responder did
//!   not take the flight (an older device ignores the element), the same bytes go out first
//!   over IBB, which is exactly the two-round-trip handshake of before.
//! - [`Prefixed`] (responder): the IBB stream, read after the ClientHello taken from the initiate.
//!
//! Nothing here decides trust: the opener's TLS client checks the responder's key only after the
//! opener has decided to trust the key the accept names (the server's flight is not read before
//! the IBB stream is attached, which happens after that decision), and the responder's TLS server
//! does not see the ClientHello before its own decision.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use crate::core::error::{Error, ErrorKind, Result};

/// The largest first flight carried in a session-initiate: a ClientHello with one ticket is a
/// few hundred bytes; anything beyond this is not a ClientHello of ours.
pub const MAX_EARLY_FLIGHT: usize = 2048;

/// The opener's pipe: captures the first flight, then runs over the attached transport.
pub struct EarlyIo<S> {
    captured: Vec<u8>,
    flight: Option<oneshot::Sender<Vec<u8>>>,
    attach: Option<oneshot::Receiver<(S, bool)>>,
    inner: Option<S>,
    /// Bytes still to write to the transport before anything else (the first flight, when the
    /// responder did not take it).
    resend: Vec<u8>,
}

/// The opener's side of an [`EarlyIo`]: gets the first flight and attaches the transport.
pub struct EarlyHandle<S> {
    flight: Option<oneshot::Receiver<Vec<u8>>>,
    attach: oneshot::Sender<(S, bool)>,
}

/// A pipe for a TLS client whose first flight travels out of band, and its handle.
pub fn early_pair<S>() -> (EarlyIo<S>, EarlyHandle<S>) {
    let (flight_tx, flight_rx) = oneshot::channel();
    let (attach_tx, attach_rx) = oneshot::channel();
    (
        EarlyIo {
            captured: Vec::new(),
            flight: Some(flight_tx),
            attach: Some(attach_rx),
            inner: None,
            resend: Vec::new(),
        },
        EarlyHandle {
            flight: Some(flight_rx),
            attach: attach_tx,
        },
    )
}

impl<S> EarlyIo<S> {
    /// A pipe whose transport is there from the start (the ClientHello travels over it).
    pub fn direct(io: S) -> Self {
        EarlyIo {
            captured: Vec::new(),
            flight: None,
            attach: None,
            inner: Some(io),
            resend: Vec::new(),
        }
    }
}

impl<S> EarlyHandle<S> {
    /// The client's first flight, once it has written it and waits for an answer. Poll it
    /// together with the handshake future (which produces it).
    pub async fn first_flight(&mut self) -> Result<Vec<u8>> {
        let rx = self
            .flight
            .take()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the first flight was already taken"))?;
        let flight = rx.await.map_err(|_| {
            Error::new(
                ErrorKind::Internal,
                "the TLS client ended before its first flight",
            )
        })?;
        if flight.is_empty() || flight.len() > MAX_EARLY_FLIGHT {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("a first flight of {} bytes", flight.len()),
            ));
        }
        Ok(flight)
    }

    /// Gives the client its transport; `taken` says whether the peer took the first flight from
    /// the initiate (otherwise it is sent over `io` first).
    pub fn attach(self, io: S, taken: bool) {
        // A client gone meanwhile (its handshake dropped) needs no transport.
        let _ = self.attach.send((io, taken));
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the tunnel's transport was never attached",
    )
}

impl<S: AsyncWrite + Unpin> EarlyIo<S> {
    /// Writes what must precede everything else on the transport. Ready once it is all out.
    fn poll_resend(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while !self.resend.is_empty() {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &self.resend))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            // `n <= self.resend.len()` by the `poll_write` contract (a count of bytes of `buf`).
            self.resend.drain(..n);
            if self.resend.is_empty() {
                ready!(Pin::new(&mut *inner).poll_flush(cx))?;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Before the transport is attached: hands out the captured flight and waits for it.
    fn poll_attached(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.inner.is_some() {
            return Poll::Ready(Ok(()));
        }
        if let Some(tx) = self.flight.take() {
            // The client reads only once its flight is written and flushed: that is the flight.
            let _ = tx.send(self.captured.clone());
        }
        let Some(rx) = self.attach.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        match ready!(Pin::new(rx).poll(cx)) {
            Ok((io, taken)) => {
                self.attach = None;
                self.inner = Some(io);
                let captured = std::mem::take(&mut self.captured);
                if !taken {
                    self.resend = captured;
                }
                Poll::Ready(Ok(()))
            }
            Err(_) => {
                self.attach = None;
                Poll::Ready(Err(gone()))
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for EarlyIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_attached(cx))?;
        ready!(this.poll_resend(cx))?;
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_read(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EarlyIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.inner.is_none() {
            if this.flight.is_none() {
                // A second flight before any answer: not a TLS 1.3 client of ours.
                return Poll::Ready(Err(gone()));
            }
            if this.captured.len() + buf.len() > MAX_EARLY_FLIGHT {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "first flight too large to travel in the session-initiate",
                )));
            }
            this.captured.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        ready!(this.poll_resend(cx))?;
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_resend(cx))?;
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The responder's pipe: `prefix` (the ClientHello from the initiate) is read first, then `inner`.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    read: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, read after `prefix`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            read: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let n = (this.prefix.len() - this.read).min(buf.remaining());
            buf.put_slice(&this.prefix[this.read..this.read + n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
