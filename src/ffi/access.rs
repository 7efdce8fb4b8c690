//! Guest access through UniFFI (issue 6): the owner's phone hears requests
//! ([`AccessListener`]), approves, denies, lists and revokes grants and reads the audit log; a
//! guest's phone asks ([`Controller::request_access`]); a provider enforces with
//! [`ConnectionConfig::guests`]. Conversions only; every rule lives in `crate::core::access` and
//! the core roles.

use std::sync::Arc;

use super::controller::{parse_provider, Controller};
use super::error::{bare_jid, config, PmnError};
use super::keystore::DeviceKeyStore;
use super::records::ConnectionConfig;
use super::runtime;
use super::task::{forward, TaskHandle};
use crate::core::access::{
    AccessSettings, AuditRecord as CoreAuditRecord, DeviceFingerprint, GrantId, GrantInfo,
    IntakeLimits, ItemId, PendingRequest, Scope, SignedGrant,
};
use crate::core::controller::{GuestAccess as CoreGuestAccess, Issued, OwnerAccess};
use crate::core::provider::MediaPolicy;

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

impl ConnectionConfig {
    /// The core owner role, if this configuration asks for it.
    pub(crate) fn owner_access(&self) -> Option<OwnerAccess> {
        self.owner.as_ref().map(|o| OwnerAccess {
            store: o.key_store.key_store(),
            alias: o.key_alias.clone(),
            user_presence: o.user_presence,
            limits: IntakeLimits::default(),
            revoked_grants_file: o.revoked_grants_file.as_ref().map(Into::into),
        })
    }

    /// The core media policy of a provider: the guest schemes its owner allows.
    pub(crate) fn media_policy(&self) -> MediaPolicy {
        MediaPolicy {
            guest_schemes: self
                .guests
                .as_ref()
                .map(|g| {
                    g.guest_media_schemes
                        .iter()
                        .map(|s| s.to_ascii_lowercase())
                        .collect()
                })
                .unwrap_or_default(),
            ..MediaPolicy::default()
        }
    }

    /// The core access settings of a provider, if this configuration asks for guests.
    pub(crate) fn access_settings(&self) -> Option<AccessSettings> {
        self.guests.as_ref().map(|g| AccessSettings {
            acl_path: g.acl_file.as_ref().map(Into::into),
            owner_keys: vec![],
        })
    }
}

/// A guest's request, as the owner's phone shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AccessRequest {
    /// Pass to `approve_access` / `deny_access`.
    pub id: u64,
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
    pub received_at: u64,
}

impl From<PendingRequest> for AccessRequest {
    fn from(p: PendingRequest) -> Self {
        AccessRequest {
            id: p.id,
            guest_network: p.guest.to_bare().to_string(),
            guest: p.guest.to_string(),
            device_fingerprint: p.device.to_hex(),
            scopes: p.scopes.iter().map(|s| s.name().to_owned()).collect(),
            item: p.item.map(|i| i.as_str().to_owned()),
            reason: p.reason.map(|r| r.as_str().to_owned()),
            received_at: p.received_at,
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
    pub not_before: u64,
    /// Valid until, seconds since the epoch.
    pub expires: u64,
    /// Whether it allows calls now.
    pub active: bool,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
}

fn grant_record(g: &SignedGrant, active: bool, revoked_at: Option<u64>) -> Grant {
    Grant {
        id: g.id.to_string(),
        guest: g.guest.to_string(),
        device_fingerprint: g.device.to_hex(),
        scopes: g.scopes.iter().map(|s| s.name().to_owned()).collect(),
        item: g.item.as_ref().map(|i| i.as_str().to_owned()),
        not_before: g.not_before,
        expires: g.expires,
        active,
        revoked_at,
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
    pub seq: u64,
    /// First occurrence, seconds since the epoch.
    pub at: u64,
    /// Last occurrence.
    pub last_at: u64,
    /// How many identical events this record stands for.
    pub count: u32,
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
            seq: r.seq,
            at: r.at,
            last_at: r.last_at,
            count: r.count,
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
    pub expires: u64,
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
            expires: g.expires,
            devices: g
                .devices
                .iter()
                .map(crate::core::identity::fingerprint_hex)
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

fn scopes(names: &[String]) -> Result<Vec<Scope>, PmnError> {
    names
        .iter()
        .map(|n| Scope::from_name(n).ok_or_else(|| config(format!("unknown scope {n:?}"))))
        .collect()
}

#[uniffi::export]
impl Controller {
    /// Owner devices: delivers the pending requests, then each new one, to `listener` until the
    /// handle is cancelled.
    pub fn watch_access_requests(
        &self,
        listener: Arc<dyn AccessListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let core = self.core()?;
        let requests = core.access_requests()?;
        let pending = core.pending_access_requests()?;
        Ok(forward(
            pending,
            requests,
            "access listener (see pending_access_requests)",
            move |r: PendingRequest| {
                if let Err(e) = listener.on_access_request(r.into()) {
                    tracing::warn!(error = %e, "listener on_access_request failed");
                }
            },
        ))
    }

    /// Owner devices: the requests not answered yet.
    pub fn pending_access_requests(&self) -> Result<Vec<AccessRequest>, PmnError> {
        Ok(self
            .core()?
            .pending_access_requests()?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Owner devices: approves request `request_id` for `scopes` until `expires_at` (seconds
    /// since the epoch, at most 30 days ahead). The owner key signs (it may ask for the user), the
    /// providers install the grant, and the guest is told.
    pub async fn approve_access(
        &self,
        request_id: u64,
        scopes: Vec<String>,
        expires_at: u64,
    ) -> Result<Approval, PmnError> {
        let core = self.core()?;
        let scopes = self::scopes(&scopes)?;
        runtime::run(async move { Ok(core.approve(request_id, scopes, expires_at).await?.into()) })
            .await
    }

    /// Owner devices: refuses request `request_id` and tells the guest.
    pub async fn deny_access(&self, request_id: u64) -> Result<(), PmnError> {
        let core = self.core()?;
        runtime::run(async move { Ok(core.deny(request_id).await?) }).await
    }

    /// Owner devices: grants `device_fingerprint` (hex) of `guest_network` read access to one
    /// `item` of this network's library until `expires_at` — e.g. a guest lets the host's TV
    /// play the one film he shares.
    pub async fn grant_item_access(
        &self,
        guest_network: String,
        device_fingerprint: String,
        item: String,
        expires_at: u64,
    ) -> Result<Approval, PmnError> {
        let core = self.core()?;
        let guest = bare_jid(&guest_network)?;
        let device = DeviceFingerprint::from_hex(&device_fingerprint)
            .ok_or_else(|| config("device_fingerprint must be 64 hex digits"))?;
        let item = ItemId::new(item).map_err(|e| config(e.to_string()))?;
        runtime::run(async move {
            Ok(core
                .grant_access(
                    guest,
                    device,
                    vec![Scope::LibraryItem],
                    Some(item),
                    expires_at,
                )
                .await?
                .into())
        })
        .await
    }

    /// Owner devices: every grant the online providers hold.
    pub async fn access_grants(&self) -> Result<Vec<Grant>, PmnError> {
        let core = self.core()?;
        runtime::run(async move {
            Ok(core
                .access_grants()
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Owner devices: revokes grant `grant_id` on every online provider; the guest's next call
    /// is refused. Returns the providers that applied it.
    pub async fn revoke_grant(&self, grant_id: String) -> Result<Vec<String>, PmnError> {
        let core = self.core()?;
        let id = GrantId::new(grant_id).map_err(|e| config(e.to_string()))?;
        runtime::run(async move {
            let revoked = core.revoke_grant(&id).await?;
            Ok(revoked.applied_on.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// Owner devices: the audit records of `provider` after sequence number `after`. New records
    /// also arrive as events of service `access` after `subscribe(provider, "access")`.
    pub async fn access_audit(
        &self,
        provider: String,
        after: u64,
    ) -> Result<Vec<AuditRecord>, PmnError> {
        let core = self.core()?;
        let provider = parse_provider(&provider)?;
        runtime::run(async move {
            Ok(core
                .access_audit(&provider, after)
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Guests: asks `network` (the host household, a bare JID) for `scopes`, and waits at most
    /// `timeout_ms` for its owner to answer. Denied → `PmnError.Forbidden`. Approved: show
    /// `confirmationCode`, have the user compare it with the owner's phone, then `confirmAccess`;
    /// the host's providers arrive through the listener like the network's own.
    pub async fn request_access(
        &self,
        network: String,
        scopes: Vec<String>,
        reason: Option<String>,
        timeout_ms: u64,
    ) -> Result<GuestAccess, PmnError> {
        let core = self.core()?;
        let network = bare_jid(&network)?;
        let scopes = self::scopes(&scopes)?;
        let timeout = std::time::Duration::from_millis(timeout_ms);
        runtime::run(async move {
            Ok(core
                .request_access(network, scopes, None, reason.as_deref(), timeout)
                .await?
                .into())
        })
        .await
    }

    /// Guests: the user saw the same confirmation code on both phones; pins the host's device
    /// keys so its providers can be driven (nothing of the host is trusted before). No approval
    /// from `network` waiting → `PmnError.Forbidden`.
    pub fn confirm_access(&self, network: String) -> Result<GuestAccess, PmnError> {
        let network = bare_jid(&network)?;
        Ok(self.core()?.confirm_access(&network)?.into())
    }

    /// Guests: the codes differed (a server in the middle) or the user declined; forgets the
    /// approval. Returns whether one was waiting.
    pub fn reject_access(&self, network: String) -> Result<bool, PmnError> {
        let network = bare_jid(&network)?;
        Ok(self.core()?.reject_access(&network))
    }
}
