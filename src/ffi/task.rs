//! Handles for things that run until cancelled (subscriptions). UniFFI cannot cancel a foreign
//! future, so long-lived work is owned by a handle the app keeps and cancels or closes.

use crate::core::sync::Locked;
use std::sync::Mutex;

use super::diagnostics::{self, Live};

/// A running subscription (or other background work). `cancel()` stops it; so does dropping the
/// handle (Kotlin: `close()` / `use {}`; Swift: release).
#[derive(uniffi::Object)]
pub struct TaskHandle {
    work: Mutex<Option<Box<dyn Send + 'static>>>,
    _live: Live,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl TaskHandle {
    /// A handle that ends `work` (by dropping it) on cancel.
    pub(crate) fn new(work: impl Send + 'static) -> Self {
        Self {
            work: Mutex::new(Some(Box::new(work))),
            _live: Live::new(&diagnostics::TASK_HANDLES),
        }
    }
}

#[uniffi::export]
impl TaskHandle {
    /// Stops the work. Idempotent.
    pub fn cancel(&self) {
        let work = self.work.locked().take();
        // Dropped outside the lock: dropping may spawn (an unsubscribe) but never calls back.
        drop(work);
    }

    /// Whether the work has stopped.
    pub fn is_finished(&self) -> bool {
        self.work.locked().is_none()
    }
}

/// Aborts a task when the handle that owns it is cancelled or dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Hands `present`, then every value of `rx`, to `deliver` on the library's runtime (never on the
/// caller's thread) until the returned handle is cancelled or the sender goes away; a listener
/// that falls behind is logged as `what`.
pub(crate) fn forward<T: Clone + Send + 'static>(
    present: Vec<T>,
    mut rx: tokio::sync::broadcast::Receiver<T>,
    what: &'static str,
    deliver: impl Fn(T) + Send + 'static,
) -> std::sync::Arc<TaskHandle> {
    use tokio::sync::broadcast::error::RecvError;
    let task = super::runtime::handle().spawn(async move {
        present.into_iter().for_each(&deliver);
        loop {
            match rx.recv().await {
                Ok(value) => deliver(value),
                Err(RecvError::Lagged(n)) => tracing::warn!(n, "{what} fell behind"),
                Err(RecvError::Closed) => break,
            }
        }
    });
    std::sync::Arc::new(TaskHandle::new(AbortOnDrop(task.abort_handle())))
}
