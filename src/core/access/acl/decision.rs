//! The ACL's answer to a call ([`Decision`]: allowed, as whom, or denied, why) and the one rule
//! that judges a grant against a call ([`evaluate`]). The ACL itself (`acl.rs`) picks the grants
//! to judge and audits the answer.

use super::Entry;
use crate::core::access::{DeviceFingerprint, GrantId, Scope};
use crate::core::error::{Error, ErrorKind};

/// Who was allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// A device of the network itself.
    Owner,
    /// A guest, by this grant.
    Guest {
        /// The grant that allowed the call.
        grant_id: GrantId,
    },
}

/// Why a call was refused. Ordered by how far the check got: with several grants, the guest is told
/// the reason of the grant that came closest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyReason {
    /// No grant names the caller's bare JID (a stranger).
    NoGrant,
    /// The grant was revoked.
    Revoked,
    /// The call came from another device than the one the grant names (or without a tunnel).
    WrongDevice,
    /// The grant is not valid yet (provider's clock).
    NotYetValid,
    /// The grant has expired (provider's clock).
    Expired,
    /// The grant does not cover this method (or this item).
    OutOfScope,
}

impl DenyReason {
    /// A short stable name for logs, audit records and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoGrant => "no-grant",
            DenyReason::Revoked => "revoked",
            DenyReason::WrongDevice => "wrong-device",
            DenyReason::NotYetValid => "not-yet-valid",
            DenyReason::Expired => "expired",
            DenyReason::OutOfScope => "out-of-scope",
        }
    }
}

/// The answer of [`Acl::check`](super::Acl::check).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Dispatch the call.
    Allow(Allowed),
    /// Answer `<forbidden/>`.
    Deny(DenyReason),
}

impl Decision {
    /// Whether the call may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// `Ok` to dispatch, or a [`ErrorKind::Forbidden`] error (→ XMPP `forbidden`) naming the reason.
    pub fn into_result(self) -> Result<Allowed, Error> {
        match self {
            Decision::Allow(who) => Ok(who),
            Decision::Deny(reason) => Err(Error::new(
                ErrorKind::Forbidden,
                format!("access denied: {}", reason.as_str()),
            )),
        }
    }
}

/// Whether `entry` allows a call that needs `scope` (`None`: closed to guests); otherwise why not.
/// The order of the checks defines the reason a guest is given: revoked, device, time, scope.
pub(super) fn evaluate(
    entry: &Entry,
    device: Option<&DeviceFingerprint>,
    scope: Option<Scope>,
    item: Option<&str>,
    now: u64,
) -> Result<(), DenyReason> {
    let g = &entry.grant;
    if entry.revoked_at.is_some() {
        return Err(DenyReason::Revoked);
    }
    if device != Some(&g.device) {
        return Err(DenyReason::WrongDevice);
    }
    if now < g.not_before {
        return Err(DenyReason::NotYetValid);
    }
    if now >= g.expires {
        return Err(DenyReason::Expired);
    }
    let in_scope = scope.is_some_and(|needed| {
        g.scopes.contains(&needed)
            && (!needed.targets_one_item()
                || matches!((item, &g.item), (Some(asked), Some(granted)) if asked == granted.as_str()))
    });
    if in_scope {
        Ok(())
    } else {
        Err(DenyReason::OutOfScope)
    }
}
