//! Guest access through UniFFI (issue 6): the owner's phone hears requests
//! ([`AccessListener`]), approves, denies, lists and revokes grants and reads the audit log; a
//! guest's phone asks ([`Controller::request_access`]); a provider enforces with
//! [`ConnectionConfig::guests`]. Conversions only; every rule lives in `crate::core::access` and
//! the core roles.

use std::sync::Arc;

use super::error::{config, PmnError};
use super::keystore::DeviceKeyStore;
use super::numbers::{out32, out64};
use crate::core::access::{
    AuditRecord as CoreAuditRecord, GrantInfo, PendingRequest, Scope, SignedGrant,
};
use crate::core::controller::{GuestAccess as CoreGuestAccess, Issued};

/// Makes a controller an owner device of its network: it hears guests' requests and signs grants
/// with the owner-approval key `key_alias` of `key_store` (created on first use).
#[derive(Debug, Clone, uniffi::Record)]
pub struct OwnerOptions {
    /// Where the owner-approval key lives (Android Keystore / keychain on a phone).
    pub key_store: Arc<DeviceKeyStore>,
    /// The key's alias.
    #[uniffi(default = "owner-approval")]
    pub key_alias: String,
    /// Whether a newly created key asks for the user (fingerprint, PIN) at every approval.
    #[uniffi(default = false)]
    pub user_presence: bool,
    /// A file (0600) where the ids of the grants this phone revoked are kept, so a provider that
    /// missed a revocation cannot spread the grant back after the phone restarts. `None`: memory.
    #[uniffi(default = None)]
    pub revoked_grants_file: Option<String>,
}

/// Lets a provider take guests of other networks (needs `e2e`): the ACL it enforces.
#[derive(Debug, Clone, uniffi::Record)]
pub struct GuestPolicy {
    /// The ACL file (0600); grants survive restarts. `None` keeps them in memory only.
    #[uniffi(default = None)]
    pub acl_file: Option<String>,
    /// URI schemes (e.g. `https`) a guest may play besides the item shared with it. Default:
    /// none — a guest cannot make the TV open its own files (`file:`) or addresses of the home
    /// network.
    #[uniffi(default = [])]
    pub guest_media_schemes: Vec<String>,
}

/// A guest's request, as the owner's phone shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AccessRequest {
    /// Pass to `approve_access` / `deny_access`.
    pub id: i64,
    /// The asking device (full JID).
    pub guest: String,
    /// The guest's network (bare JID): who is asking.
    pub guest_network: String,
    /// The asking device's key fingerprint (hex). Show its first digits on both phones so the
    /// guest can confirm it is his.
    pub device_fingerprint: String,
    /// The scopes asked for (`playback`, `library-item`).
    pub scopes: Vec<String>,
    /// The item, for `library-item`.
    pub item: Option<String>,
    /// The guest's reason.
    pub reason: Option<String>,
    /// When it arrived, seconds since the epoch.
    pub received_at: i64,
}

impl From<PendingRequest> for AccessRequest {
    fn from(p: PendingRequest) -> Self {
        AccessRequest {
            id: out64(p.id),
            guest_network: p.guest.to_bare().to_string(),
            guest: p.guest.to_string(),
            device_fingerprint: p.device.to_hex(),
            scopes: p.scopes.iter().map(|s| s.name().to_owned()).collect(),
            item: p.item.map(|i| i.as_str().to_owned()),
            reason: p.reason.map(|r| r.as_str().to_owned()),
            received_at: out64(p.received_at),
        }
    }
}

/// A grant held by the network's providers.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Grant {
    /// The grant id (pass to `revoke_grant`).
    pub id: String,
    /// The guest's network (bare JID).
    pub guest: String,
    /// The guest device's key fingerprint (hex).
    pub device_fingerprint: String,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The one item, for `library-item`.
    pub item: Option<String>,
    /// Valid from, seconds since the epoch.
    pub not_before: i64,
    /// Valid until, seconds since the epoch.
    pub expires: i64,
    /// Whether it allows calls now.
    pub active: bool,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

fn grant_record(g: &SignedGrant, active: bool, revoked_at: Option<u64>) -> Grant {
    Grant {
        id: g.id.to_string(),
        guest: g.guest.to_string(),
        device_fingerprint: g.device.to_hex(),
        scopes: g.scopes.iter().map(|s| s.name().to_owned()).collect(),
        item: g.item.as_ref().map(|i| i.as_str().to_owned()),
        not_before: out64(g.not_before),
        expires: out64(g.expires),
        active,
        revoked_at: revoked_at.map(out64),
    }
}

impl From<GrantInfo> for Grant {
    fn from(g: GrantInfo) -> Self {
        grant_record(&g.grant, g.active, g.revoked_at)
    }
}

/// What approving (or granting) did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Approval {
    /// The grant.
    pub grant: Grant,
    /// The providers (full JIDs) that installed it.
    pub installed_on: Vec<String>,
    /// The providers that did not, each as `jid: reason`.
    pub failed: Vec<String>,
    /// For an approved request: six digits to show, which the guest's phone must show too
    /// (`GuestAccess.confirmationCode`); `null` for a grant made without a request.
    pub confirmation_code: Option<String>,
}

impl From<Issued> for Approval {
    fn from(i: Issued) -> Self {
        Approval {
            grant: grant_record(&i.grant, true, None),
            installed_on: i.installed_on.iter().map(|(j, _)| j.to_string()).collect(),
            failed: i.failed.iter().map(|(j, e)| format!("{j}: {e}")).collect(),
            confirmation_code: i.confirmation_code,
        }
    }
}

/// One record of a provider's audit log.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AuditRecord {
    /// Sequence number (ask for records after the last one seen).
    pub seq: i64,
    /// First occurrence, seconds since the epoch.
    pub at: i64,
    /// Last occurrence.
    pub last_at: i64,
    /// How many identical events this record stands for.
    pub count: i32,
    /// `request`, `grant`, `use`, `deny` or `revoke`.
    pub kind: String,
    /// Who.
    pub subject: String,
    /// The device fingerprint (hex), when known.
    pub device: Option<String>,
    /// The grant involved.
    pub grant_id: Option<String>,
    /// The method, for use and deny.
    pub method: Option<String>,
    /// A short detail.
    pub detail: String,
}

impl From<CoreAuditRecord> for AuditRecord {
    fn from(r: CoreAuditRecord) -> Self {
        AuditRecord {
            seq: out64(r.seq),
            at: out64(r.at),
            last_at: out64(r.last_at),
            count: out32(r.count),
            kind: r.kind.name().to_owned(),
            subject: r.subject,
            device: r.device,
            grant_id: r.grant_id,
            method: r.method,
            detail: r.detail,
        }
    }
}

/// What a guest obtained.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GuestAccess {
    /// The host network.
    pub network: String,
    /// The grant id.
    pub grant_id: String,
    /// When it expires, seconds since the epoch (host's clock).
    pub expires: i64,
    /// The host devices' key fingerprints (hex), pinned by `confirmAccess`.
    pub devices: Vec<String>,
    /// Six digits to compare with the owner's phone (`Approval.confirmationCode`) before calling
    /// `confirmAccess`; different digits mean the server changed a key: call `rejectAccess`.
    pub confirmation_code: String,
}

impl From<CoreGuestAccess> for GuestAccess {
    fn from(g: CoreGuestAccess) -> Self {
        GuestAccess {
            network: g.network.to_string(),
            grant_id: g.grant.to_string(),
            expires: out64(g.expires),
            devices: g
                .devices
                .iter()
                .map(crate::core::identity::DeviceFingerprint::to_hex)
                .collect(),
            confirmation_code: g.confirmation_code,
        }
    }
}

/// The owner's phone is told of guests' requests here (after de-duplication and rate limiting).
#[uniffi::export(with_foreign)]
pub trait AccessListener: Send + Sync {
    /// A guest asks; answer with `approve_access` or `deny_access`.
    fn on_access_request(&self, request: AccessRequest) -> Result<(), PmnError>;
}

pub(super) fn scopes(names: &[String]) -> Result<Vec<Scope>, PmnError> {
    names
        .iter()
        .map(|n| Scope::from_name(n).ok_or_else(|| config(format!("unknown scope {n:?}"))))
        .collect()
}
