//! One rule for the crate's locks, in one place.
//!
//! Every critical section in pmn is short and leaves its data consistent (a single map
//! operation, a counter update, a complete value swapped in), so a panic on another thread while
//! it held a lock leaves nothing half-written. Poisoning would only turn that one panic into a
//! failure of every later caller — a provider that stops answering, a controller whose events
//! stop — so pmn takes the guard of a poisoned lock as it is.

use std::sync::{Mutex, MutexGuard};

/// [`Mutex::lock`] that takes the guard of a poisoned lock as it is (see the module doc).
pub(crate) trait Locked<T: ?Sized> {
    /// The guard, poisoned or not.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_yields_its_value() {
        let m = Arc::new(Mutex::new(41));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _guard = m2.locked();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *m.locked() += 1;
        assert_eq!(*m.locked(), 42);
    }
}
