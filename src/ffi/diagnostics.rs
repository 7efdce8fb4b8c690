//! Counters of live exported objects, so that apps (and our Kotlin tests) can check that closing a
//! Kotlin/Swift object really dropped the Rust side.

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) static CONTROLLERS: AtomicU64 = AtomicU64::new(0);
pub(crate) static PROVIDERS: AtomicU64 = AtomicU64::new(0);
pub(crate) static TASK_HANDLES: AtomicU64 = AtomicU64::new(0);

/// How many exported objects are alive on the Rust side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct LiveObjects {
    /// `Controller`s not yet dropped.
    pub controllers: i64,
    /// `Provider`s not yet dropped.
    pub providers: i64,
    /// `TaskHandle`s not yet dropped.
    pub task_handles: i64,
}

/// Counts the exported objects alive now (Kotlin: after `close()` they are gone).
#[uniffi::export]
pub fn live_objects() -> LiveObjects {
    LiveObjects {
        controllers: super::numbers::out64(CONTROLLERS.load(Ordering::SeqCst)),
        providers: super::numbers::out64(PROVIDERS.load(Ordering::SeqCst)),
        task_handles: super::numbers::out64(TASK_HANDLES.load(Ordering::SeqCst)),
    }
}

/// Increments on creation, decrements on drop.
#[derive(Debug)]
pub(crate) struct Live(&'static AtomicU64);

impl Live {
    pub(crate) fn new(counter: &'static AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
