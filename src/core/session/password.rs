//! The network password as the session knows it: the one it logs in with, and the one another
//! device of the network announced it is about to set (a rotation in progress).
//!
//! Why two: changing the account password on the server (XEP-0077) makes Prosody close every
//! other session of the account at once (`reset`), so a device must already hold the new
//! password when that happens, or it is locked out. Until the change is proven, the old one stays
//! first: a rotation that failed on the server costs nothing.

use crate::core::sync::Locked;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Shared between the [`super::Session`] handle and its reconnector.
#[derive(Debug, Clone)]
pub(crate) struct NetworkPassword {
    inner: Arc<Mutex<Passwords>>,
    /// The password in use, for the app to persist when it changes.
    current: Arc<watch::Sender<String>>,
}

#[derive(Debug)]
struct Passwords {
    current: String,
    next: Option<String>,
}

impl NetworkPassword {
    pub(crate) fn new(password: String) -> Self {
        let (current, _) = watch::channel(password.clone());
        Self {
            inner: Arc::new(Mutex::new(Passwords {
                current: password,
                next: None,
            })),
            current: Arc::new(current),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Passwords> {
        self.inner.locked()
    }

    /// The password to log in with first.
    pub(crate) fn current(&self) -> String {
        self.lock().current.clone()
    }

    /// The announced password to try when the current one is refused.
    pub(crate) fn next(&self) -> Option<String> {
        self.lock().next.clone()
    }

    /// Remembers `next` as the password a rotation is about to set (the newest announcement wins).
    pub(crate) fn offer(&self, next: String) {
        let mut p = self.lock();
        if p.current != next {
            p.next = Some(next);
        }
    }

    /// The announced password is now the account's: it becomes the current one. Returns whether
    /// anything changed. `only` guards against promoting a newer offer than the one proven.
    pub(crate) fn promote(&self, only: Option<&str>) -> bool {
        let promoted = {
            let mut p = self.lock();
            match (&p.next, only) {
                (Some(next), Some(only)) if next != only => None,
                (Some(_), _) => {
                    let next = p.next.take();
                    if let Some(next) = &next {
                        p.current = next.clone();
                    }
                    next
                }
                (None, _) => None,
            }
        };
        match promoted {
            Some(password) => {
                self.current.send_replace(password);
                true
            }
            None => false,
        }
    }

    /// Sets the current password outright (this device changed it on the server).
    pub(crate) fn set(&self, password: String) {
        {
            let mut p = self.lock();
            p.current = password.clone();
            if p.next.as_deref() == Some(password.as_str()) {
                p.next = None;
            }
        }
        self.current.send_replace(password);
    }

    pub(crate) fn watch(&self) -> watch::Receiver<String> {
        self.current.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::NetworkPassword;

    #[test]
    fn an_offer_is_tried_second_and_promoted_only_when_proven() {
        let c = NetworkPassword::new("old".into());
        let mut seen = c.watch();
        assert_eq!(c.next(), None);
        c.offer("new".into());
        assert_eq!(
            (c.current().as_str(), c.next().as_deref()),
            ("old", Some("new"))
        );
        // A proof for another offer than the one held changes nothing.
        assert!(!c.promote(Some("other")));
        assert_eq!(c.current(), "old");
        assert!(c.promote(Some("new")));
        assert_eq!((c.current().as_str(), c.next()), ("new", None));
        assert!(seen.has_changed().unwrap_or(false));
        assert_eq!(*seen.borrow_and_update(), "new");
        // Nothing left to promote.
        assert!(!c.promote(None));
    }

    #[test]
    fn offering_the_current_password_is_no_offer() {
        let c = NetworkPassword::new("same".into());
        c.offer("same".into());
        assert_eq!(c.next(), None);
        c.offer("x".into());
        c.set("x".into());
        assert_eq!((c.current().as_str(), c.next()), ("x", None));
    }
}
