//! A broadcast channel made on its first subscriber.
//!
//! tokio's broadcast channel allocates and initialises every slot when it is made, and each role
//! offers several broadcasts of which an app listens to one or two (a controller's updates,
//! events, resyncs and tunnel failures are 330 KB of slots). [`LazyBroadcast`] makes the channel
//! when the first receiver subscribes. Until then nobody can receive a value, so a send drops it
//! as tokio's does when no receiver is left: what a receiver sees does not change.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

/// A [`broadcast`] sender whose channel is made on the first [`LazyBroadcast::subscribe`].
/// Clones share one channel; receivers see `Closed` once the last clone is gone.
pub(crate) struct LazyBroadcast<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    capacity: usize,
    sender: OnceLock<broadcast::Sender<T>>,
}

impl<T: Clone> LazyBroadcast<T> {
    /// A channel of `capacity` values (as [`broadcast::channel`]), not made yet.
    ///
    /// # Panics
    ///
    /// When `capacity` is 0 or above `usize::MAX / 2`, as [`broadcast::channel`] does: here, and
    /// not at the first subscriber, so a wrong capacity shows where it is set.
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "broadcast channel capacity cannot be zero");
        assert!(
            capacity <= usize::MAX >> 1,
            "broadcast channel capacity exceeded `usize::MAX / 2`"
        );
        Self {
            inner: Arc::new(Inner {
                capacity,
                sender: OnceLock::new(),
            }),
        }
    }

    /// A receiver of the values sent from now on; the first one makes the channel.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<T> {
        self.inner
            .sender
            .get_or_init(|| broadcast::channel(self.inner.capacity).0)
            .subscribe()
    }

    /// Sends `value` to every receiver, as [`broadcast::Sender::send`]: the number of receivers,
    /// or the value back when there is none (never one subscribed, or all gone).
    pub(crate) fn send(&self, value: T) -> Result<usize, broadcast::error::SendError<T>> {
        match self.inner.sender.get() {
            Some(sender) => sender.send(value),
            None => Err(broadcast::error::SendError(value)),
        }
    }
}

impl<T> Clone for LazyBroadcast<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> std::fmt::Debug for LazyBroadcast<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyBroadcast")
            .field("capacity", &self.inner.capacity)
            .field(
                "receivers",
                &self.inner.sender.get().map_or(0, |s| s.receiver_count()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broadcast::error::TryRecvError;

    fn made<T>(b: &LazyBroadcast<T>) -> bool {
        b.inner.sender.get().is_some()
    }

    #[test]
    fn no_channel_until_the_first_subscriber() {
        let b = LazyBroadcast::<u32>::new(1024);
        assert!(b.send(1).is_err());
        assert!(!made(&b), "a send makes no channel");
        let _rx = b.subscribe();
        assert!(made(&b));
    }

    #[test]
    fn a_send_before_any_subscriber_is_dropped() {
        let b = LazyBroadcast::new(8);
        let err = b.send(7u32).unwrap_err();
        assert_eq!(
            err.0, 7,
            "the value comes back, as from tokio with no receiver"
        );
        let mut rx = b.subscribe();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(b.send(8).unwrap(), 1);
        assert_eq!(rx.try_recv(), Ok(8));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_subscriber_sees_only_later_sends() {
        let b = LazyBroadcast::new(8);
        let mut first = b.subscribe();
        b.send(1u32).unwrap();
        let mut second = b.subscribe();
        assert_eq!(b.send(2).unwrap(), 2);
        assert_eq!(first.try_recv(), Ok(1));
        assert_eq!(first.try_recv(), Ok(2));
        assert_eq!(second.try_recv(), Ok(2));
        assert_eq!(second.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn clones_share_one_channel() {
        let a = LazyBroadcast::new(8);
        let b = a.clone();
        let mut from_b = b.subscribe();
        assert!(made(&a), "subscribing on a clone makes the channel for all");
        let mut from_a = a.subscribe();
        assert_eq!(a.send(1u32).unwrap(), 2);
        assert_eq!(b.send(2).unwrap(), 2);
        for rx in [&mut from_a, &mut from_b] {
            assert_eq!(rx.try_recv(), Ok(1));
            assert_eq!(rx.try_recv(), Ok(2));
        }
    }

    #[test]
    fn the_last_clone_gone_closes_the_receivers() {
        let a = LazyBroadcast::new(8);
        let b = a.clone();
        let mut rx = a.subscribe();
        drop(a);
        b.send(1u32).unwrap();
        drop(b);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn a_send_after_every_receiver_left_fails_as_in_tokio() {
        let b = LazyBroadcast::new(8);
        drop(b.subscribe());
        assert_eq!(b.send(3u32).unwrap_err().0, 3);
        let (tokio_tx, tokio_rx) = broadcast::channel(8);
        drop(tokio_rx);
        assert_eq!(tokio_tx.send(3u32).unwrap_err().0, 3);
    }

    /// Capacity and lag as tokio's own channel: the same sends give the same receives, a
    /// capacity not a power of two included (tokio rounds it up).
    #[test]
    fn capacity_and_lag_as_tokio() {
        for capacity in [1, 3, 4, 64] {
            let lazy = LazyBroadcast::new(capacity);
            let (tokio_tx, mut tokio_rx) = broadcast::channel(capacity);
            let mut lazy_rx = lazy.subscribe();
            let sends = 2 * capacity + 3;
            for v in 0..sends {
                assert_eq!(lazy.send(v).unwrap(), tokio_tx.send(v).unwrap());
            }
            let drain = |rx: &mut broadcast::Receiver<usize>| {
                let mut seen = Vec::new();
                loop {
                    match rx.try_recv() {
                        Err(TryRecvError::Empty) => return seen,
                        other => seen.push(other),
                    }
                }
            };
            let seen = drain(&mut lazy_rx);
            assert_eq!(seen, drain(&mut tokio_rx), "capacity {capacity}");
            assert!(
                matches!(seen[0], Err(TryRecvError::Lagged(n)) if n > 0),
                "capacity {capacity}: {seen:?}"
            );
            assert_eq!(seen.last(), Some(&Ok(sends - 1)));
        }
    }

    #[test]
    #[should_panic(expected = "capacity cannot be zero")]
    fn a_zero_capacity_panics_at_once() {
        let _ = LazyBroadcast::<u32>::new(0);
    }
}
