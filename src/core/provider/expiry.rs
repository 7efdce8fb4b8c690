//! A guest whose last grant expires loses the household's presence too (issue 12): the roster
//! subscription made at approval (spec §6) would otherwise outlive the grant, and the guest would
//! keep seeing which devices are on. Revocation already ends it (the owner's phone unsubscribes);
//! expiry has nobody to act at that moment but the providers, which hold the grants.
//!
//! Only a guest seen *active* by this provider and then not is ended: a provider that starts with
//! old expired grants in its file does nothing for them, so one that missed a newer grant (it was
//! off when the owner approved) cannot cut a guest who holds that newer grant elsewhere.

use std::collections::BTreeSet;
use std::time::Duration;

use xmpp_parsers::jid::BareJid;

use crate::core::access::AccessGuard;

/// How often the grants are looked at: a guest loses presence at most this long after expiry.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The guests with an active grant at the last look.
#[derive(Debug, Default)]
pub(super) struct GuestExpiry {
    active: BTreeSet<BareJid>,
}

impl GuestExpiry {
    /// Starts from the grants active now.
    pub(super) fn new(guard: Option<&AccessGuard>) -> Self {
        let mut this = Self::default();
        if let Some(guard) = guard {
            this.active = active_guests(guard);
        }
        this
    }

    /// The guests that had an active grant at the last look and have none now.
    pub(super) fn ended(&mut self, guard: &AccessGuard) -> Vec<BareJid> {
        let now = active_guests(guard);
        let ended = self.active.difference(&now).cloned().collect();
        self.active = now;
        ended
    }
}

fn active_guests(guard: &AccessGuard) -> BTreeSet<BareJid> {
    guard
        .active_grants()
        .into_iter()
        .map(|g| g.grant.guest)
        .collect()
}
