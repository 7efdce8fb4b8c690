//! Guest access (DESIGN §5, spec §3.3): a visitor asks, an owner approves from a phone, and the
//! provider enforces a scoped, expiring, revocable grant.
//!
//! This module is the pure core of access control, with no XMPP session and no UI in it:
//! - [`Scope`]: the named, small permission sets and the one table of methods each allows;
//! - [`AccessRequest`], [`SignedGrant`], [`SignedRevoke`]: the wire elements of
//!   `urn:xmpp:tmp:pmn:access:0`, parsed strictly;
//! - [`GrantDraft::sign`] / [`OwnerKeys`]: grants and revocations signed by an owner-approval key of a
//!   [`KeyStore`](crate::core::identity::KeyStore) and verified against the owner devices' keys;
//! - [`Acl`]: the provider's grant store and the **source of truth** — every iq from a guest goes
//!   through [`Acl::check`]; the UI never decides;
//! - [`AuditLog`]: request / grant / use / deny / revoke records the owner reads;
//! - [`RequestIntake`]: what an owner device does with incoming requests (de-duplicate, rate limit,
//!   bounded memory) before it bothers a person.
//!
//! Rules enforced here:
//! - identity never comes from a payload: the guest's JID is the stanza's `from`, its device is the
//!   fingerprint of the key pinned by the end-to-end tunnel; a `<request>` carries the device only so
//!   the owner can see (and the grant can name) which phone asks;
//! - time is always a parameter (`now`, seconds since the Unix epoch) and, on a provider, it is the
//!   provider's own clock: a grant's validity is never taken from the guest or the issuer;
//! - a refusal is typed ([`DenyReason`], [`AccessError`]); a broken ACL file is an error, never an
//!   empty ACL that would silently drop revocations.

#![warn(missing_docs)]

mod acl;
mod audit;
mod grant;
mod guard;
mod intake;
mod introduction;
mod revoked;
mod scope;
mod wire;
mod xml;

#[cfg(test)]
mod tests;

use crate::core::error::{Error, ErrorKind};
pub use crate::core::identity::DeviceFingerprint;
use crate::core::identity::KeyStoreError;

pub use acl::{
    Acl, Allowed, Decision, DenyReason, GrantInfo, RevokeOutcome, MAX_GRANTS, MAX_OWNER_KEYS,
};
pub use audit::{AuditEvictions, AuditKind, AuditLog, AuditRecord, DEFAULT_AUDIT_CAPACITY};
pub(crate) use grant::{put_field, sign_with};
pub use grant::{GrantDraft, OwnerKeys, MAX_GRANT_LIFETIME_SECS};
pub use guard::{AccessGuard, AccessSettings, Change as AccessChange, RevokedCheck};
pub use intake::{Intake, IntakeLimits, IntakeStats, PendingRequest, RequestIntake};
pub use introduction::{Introduction, Transcript};
pub use revoked::{RevokedGrants, MAX_REVOKED_REMEMBERED};
pub use scope::Scope;
pub use wire::{
    AclEntry, AclState, AuditEntry, AuditPage, Decision as AccessDecision, DecisionDevice,
    OwnerKey, OwnerList, APPROVED, DENIED, MAX_AUDIT_PAGE, MAX_DECISION_DEVICES,
};
pub use xml::{
    AccessRequest, GrantId, ItemId, Reason, SignedGrant, SignedRevoke, MAX_ITEM_ID_BYTES,
    MAX_REASON_BYTES,
};

/// Namespace of the access payloads (`<request>`, `<grant>`, `<revoke>`).
pub const NS_ACCESS: &str = "urn:xmpp:tmp:pmn:access:0";

/// Seconds since the Unix epoch by this device's clock (0 if the clock is before 1970).
///
/// Only callers read the clock; everything in this module takes `now` as a parameter, so a provider
/// decides by its own clock and tests decide by theirs.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why an access operation (parse, sign, verify, install, revoke, load) was refused.
///
/// Stable variants so the provider can answer the right XMPP error and the app can tell the owner
/// what happened; [`Error`] conversion gives the core's [`ErrorKind`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// A payload or grant does not follow the rules (bad field, unknown scope, oversize reason, …).
    #[error("malformed access payload: {0}")]
    Malformed(String),
    /// The signature does not verify with the issuer's key: forged or tampered.
    #[error("grant {id}: signature does not verify (forged or tampered)")]
    BadSignature {
        /// The grant (or revoked grant) id.
        id: String,
    },
    /// The issuer is not an owner device of this network.
    #[error("issuer {issuer} is not an owner device of this network")]
    UnknownIssuer {
        /// The issuer's fingerprint (hex).
        issuer: String,
    },
    /// The grant or revocation was made for another network.
    #[error("signed for network {got}, this is {expected}")]
    WrongNetwork {
        /// This provider's network.
        expected: String,
        /// The network named in the payload.
        got: String,
    },
    /// The grant's ACL version is older than the provider's: an attempt to roll back a revocation.
    #[error("grant {id} has ACL version {grant_version}, provider is at {acl_version} (rollback refused)")]
    Rollback {
        /// The grant id.
        id: String,
        /// The version in the grant.
        grant_version: u64,
        /// The provider's current version.
        acl_version: u64,
    },
    /// A grant with this id was already installed.
    #[error("grant {id} was already installed (replay refused)")]
    Replayed {
        /// The grant id.
        id: String,
    },
    /// The grant id has been revoked; it can never be installed again.
    #[error("grant {id} has been revoked")]
    Revoked {
        /// The grant id.
        id: String,
    },
    /// The grant has already expired by the provider's clock.
    #[error("grant {id} expired at {expires}")]
    Expired {
        /// The grant id.
        id: String,
        /// Its expiry, seconds since the epoch.
        expires: u64,
    },
    /// Only an owner device (one holding a registered owner key) may do this.
    #[error("device {device} is not an owner device of this network")]
    NotOwner {
        /// The asking device's TLS key fingerprint (hex).
        device: String,
    },
    /// The provider holds [`MAX_OWNER_KEYS`] owner keys already.
    #[error("too many owner keys (at most {0}); remove one first")]
    TooManyOwners(usize),
    /// The store holds [`MAX_GRANTS`] live grants already.
    #[error("too many grants (at most {0}); revoke some first")]
    TooManyGrants(usize),
    /// The owner-approval key could not sign (missing, needs user presence, platform failure).
    #[error("cannot sign with the owner key: {0}")]
    Signing(KeyStoreError),
    /// The ACL file could not be read or written.
    #[error("ACL storage: {0}")]
    Storage(String),
    /// The ACL file exists but cannot be trusted; the provider must not start with an empty ACL.
    #[error("ACL file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The ACL file is accessible to other users.
    #[error("ACL file {path} has insecure permissions {mode:o} (chmod 600)")]
    InsecurePermissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

impl From<AccessError> for Error {
    fn from(e: AccessError) -> Self {
        let kind = match &e {
            AccessError::Malformed(_) => ErrorKind::BadParams,
            AccessError::BadSignature { .. }
            | AccessError::UnknownIssuer { .. }
            | AccessError::WrongNetwork { .. }
            | AccessError::Rollback { .. }
            | AccessError::Replayed { .. }
            | AccessError::Revoked { .. }
            | AccessError::Expired { .. }
            | AccessError::TooManyGrants(_)
            | AccessError::NotOwner { .. }
            | AccessError::TooManyOwners(_) => ErrorKind::Forbidden,
            AccessError::Signing(KeyStoreError::UserAuthenticationRequired { .. }) => {
                ErrorKind::Forbidden
            }
            AccessError::Signing(_) => ErrorKind::Config,
            AccessError::Storage(_)
            | AccessError::Corrupt { .. }
            | AccessError::InsecurePermissions { .. } => ErrorKind::Config,
        };
        Error::new(kind, e.to_string())
    }
}
