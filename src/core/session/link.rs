//! The transport under one XMPP stream, with a switch that cuts it from our side.
//!
//! When the phone changes networks its old TCP connection is usually dead, but nothing says so
//! until a keepalive times out (tens of seconds). The app knows at once (Android's
//! `ConnectivityManager`, iOS's `NWPathMonitor`), so [`super::Session::network_changed`] probes
//! the stream and, when the probe is not answered quickly, *cuts* the link: reads and writes fail
//! with `ConnectionAborted`, tokio-xmpp sees an I/O error, keeps its XEP-0198 state and asks for a
//! new connection, which resumes the old session without loss. tokio-xmpp has no API to drop a
//! connection while keeping stream-management state; failing the transport is the one way that
//! goes through its ordinary recovery path.

use crate::core::sync::Locked;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One connection's cut switch.
#[derive(Default)]
struct Switch {
    cut: AtomicBool,
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Switch {
    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }
}

/// Hands out [`Link`]s and cuts the newest one. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct LinkSwitch {
    current: Arc<Mutex<Weak<Switch>>>,
}

impl std::fmt::Debug for LinkSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSwitch").finish_non_exhaustive()
    }
}

impl LinkSwitch {
    /// Wraps the transport of a new connection; it becomes the one [`LinkSwitch::cut`] acts on.
    pub(crate) fn wrap<S>(&self, inner: S) -> Link<S> {
        let switch = Arc::new(Switch::default());
        *self.current.locked() = Arc::downgrade(&switch);
        Link { inner, switch }
    }

    /// Cuts the newest connection, if it is still open. Returns whether there was one.
    pub(crate) fn cut(&self) -> bool {
        let current = self.current.locked().upgrade();
        match current {
            Some(switch) => {
                switch.cut.store(true, Ordering::Release);
                switch.reader.wake();
                switch.writer.wake();
                true
            }
            None => false,
        }
    }
}

/// A transport that fails every read and write once its switch is cut.
pub struct Link<S> {
    inner: S,
    switch: Arc<Switch>,
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection cut after a network change",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Link<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.switch.reader.register(cx.waker());
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Link<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.switch.writer.register(cx.waker());
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.switch.writer.register(cx.waker());
        if self.switch.is_cut() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.switch.is_cut() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_cut_link_fails_a_pending_read_and_later_writes() {
        let (a, mut b) = tokio::io::duplex(64);
        let switch = LinkSwitch::default();
        let mut link = switch.wrap(a);
        b.write_all(b"x").await.expect("write");
        let mut one = [0u8; 1];
        link.read_exact(&mut one)
            .await
            .expect("read before the cut");
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let read = link.read(&mut buf).await;
            (read, link)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(switch.cut());
        let (read, mut link) = reader.await.expect("reader task");
        assert_eq!(
            read.expect_err("cut").kind(),
            io::ErrorKind::ConnectionAborted
        );
        assert_eq!(
            link.write(b"y").await.expect_err("cut").kind(),
            io::ErrorKind::ConnectionAborted
        );
    }

    #[test]
    fn cutting_with_no_open_link_reports_none() {
        let switch = LinkSwitch::default();
        assert!(!switch.cut());
        let link = switch.wrap(());
        drop(link);
        assert!(!switch.cut());
    }
}
