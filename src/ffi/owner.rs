//! The owner console through UniFFI, one object ([`Controller::owner`](super::Controller::owner)):
//! the owner's phone hears guests' requests ([`AccessListener`](super::AccessListener)), approves,
//! denies, lists and revokes grants, reads the audit log and manages the household's owner keys
//! (which phones may approve guests; the first owner key a provider sees is taken at set-up,
//! every later one is added by an owner phone). Conversions only; every rule lives in
//! `crate::core::access` and `crate::core::controller::OwnerConsole`.

use std::sync::Arc;

use base64::Engine;

use super::access::{scopes, AccessListener, AccessRequest, Approval, AuditRecord, Grant};
use super::error::parse_provider;
use super::error::{bare_jid, config, PmnError};
use super::numbers::in64;
use super::runtime;
use super::task::{forward, TaskHandle};
use crate::core::access::{DeviceFingerprint, GrantId, ItemId, PendingRequest, Scope};
use crate::core::controller::{OwnerConsole as CoreOwnerConsole, OwnerKeyInfo};

/// An owner-approval key of the network, as its providers hold it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OwnerKey {
    /// The key's fingerprint (hex).
    pub fingerprint: String,
    /// The key (base64 DER SPKI), what `removeOwner` takes.
    pub public_key: String,
    /// The device (TLS key fingerprint, hex) that holds it, when known.
    pub device: Option<String>,
    /// The online providers (full JIDs) that hold it.
    pub providers: Vec<String>,
}

impl From<OwnerKeyInfo> for OwnerKey {
    fn from(o: OwnerKeyInfo) -> Self {
        OwnerKey {
            fingerprint: o.key.to_hex(),
            public_key: base64::engine::general_purpose::STANDARD.encode(&o.spki),
            device: o.device.map(|d| d.to_hex()),
            providers: o.providers.iter().map(ToString::to_string).collect(),
        }
    }
}

fn public_key(b64: &str) -> Result<Vec<u8>, PmnError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| config(format!("not a base64 public key: {e}")))
}

/// The owner console of an owner device (`controller.owner()`).
#[derive(uniffi::Object)]
pub struct OwnerConsole {
    inner: CoreOwnerConsole,
}

impl std::fmt::Debug for OwnerConsole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerConsole").finish_non_exhaustive()
    }
}

impl OwnerConsole {
    pub(super) fn new(inner: CoreOwnerConsole) -> Self {
        Self { inner }
    }
}

#[uniffi::export]
impl OwnerConsole {
    /// Owner devices: delivers the pending requests, then each new one, to `listener` until the
    /// handle is cancelled.
    pub fn watch_access_requests(
        &self,
        listener: Arc<dyn AccessListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let core = self.inner.clone();
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
            .inner
            .pending_access_requests()?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Owner devices: approves request `request_id` for `scopes` until `expires_at` (seconds
    /// since the epoch, at most 90 days ahead: the core's `MAX_GRANT_LIFETIME_SECS`). The owner
    /// key signs (it may ask for the user), the providers install the grant, and the guest is
    /// told.
    pub async fn approve_access(
        &self,
        request_id: i64,
        scopes: Vec<String>,
        expires_at: i64,
    ) -> Result<Approval, PmnError> {
        let core = self.inner.clone();
        let scopes = self::scopes(&scopes)?;
        let (request_id, expires_at) = (
            in64("requestId", request_id)?,
            in64("expiresAt", expires_at)?,
        );
        runtime::run(async move { Ok(core.approve(request_id, scopes, expires_at).await?.into()) })
            .await
    }

    /// Owner devices: refuses request `request_id` and tells the guest.
    pub async fn deny_access(&self, request_id: i64) -> Result<(), PmnError> {
        let core = self.inner.clone();
        let request_id = in64("requestId", request_id)?;
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
        expires_at: i64,
    ) -> Result<Approval, PmnError> {
        let core = self.inner.clone();
        let expires_at = in64("expiresAt", expires_at)?;
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
        let core = self.inner.clone();
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
        let core = self.inner.clone();
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
        after: i64,
    ) -> Result<Vec<AuditRecord>, PmnError> {
        let core = self.inner.clone();
        let after = in64("after", after)?;
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

    /// Owner devices: this phone's owner-approval key (base64 DER SPKI), to hand to an owner
    /// phone that makes this one an owner too (`addOwner`).
    pub fn owner_public_key(&self) -> Result<String, PmnError> {
        let spki = self.inner.owner_public_key()?;
        Ok(base64::engine::general_purpose::STANDARD.encode(spki))
    }

    /// Owner devices: the owner keys the network's online providers hold.
    pub async fn owner_keys(&self) -> Result<Vec<OwnerKey>, PmnError> {
        let core = self.inner.clone();
        runtime::run(async move {
            Ok(core
                .owner_keys()
                .await?
                .into_iter()
                .map(Into::into)
                .collect())
        })
        .await
    }

    /// Owner devices: makes another phone an owner — its `ownerPublicKey()` (base64), held by the
    /// device whose key fingerprint is `device_fingerprint` (hex). Returns the providers that
    /// took it; a phone that is no owner itself gets `PmnException.Forbidden`.
    pub async fn add_owner(
        &self,
        public_key: String,
        device_fingerprint: String,
    ) -> Result<Vec<String>, PmnError> {
        let core = self.inner.clone();
        let spki = self::public_key(&public_key)?;
        let device = DeviceFingerprint::from_hex(&device_fingerprint).ok_or_else(|| {
            config(format!(
                "{device_fingerprint:?} is not a fingerprint in hex"
            ))
        })?;
        runtime::run(async move {
            let took = core.add_owner(spki, device).await?;
            Ok(took.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// Owner devices: removes the owner key `public_key` (base64) on every online provider; every
    /// grant it signed ends there. Returns the providers that applied it.
    pub async fn remove_owner(&self, public_key: String) -> Result<Vec<String>, PmnError> {
        let core = self.inner.clone();
        let spki = self::public_key(&public_key)?;
        runtime::run(async move {
            let took = core.remove_owner(spki).await?;
            Ok(took.iter().map(ToString::to_string).collect())
        })
        .await
    }
}

#[cfg(test)]
mod doc_tests {
    /// The limit the app reads in `approveAccess`'s KDoc (generated from the doc comment above)
    /// is the one the core enforces: the doc cannot drift from the constant again.
    #[test]
    fn the_documented_grant_limit_is_the_enforced_one() {
        let source = include_str!("owner.rs");
        let days: u64 = source
            .split("at most ")
            .nth(1)
            .and_then(|rest| rest.split(" days ahead").next())
            .and_then(|n| n.trim().parse().ok())
            .expect("approve_access documents its limit in days");
        assert_eq!(
            days * 24 * 3600,
            crate::core::access::MAX_GRANT_LIFETIME_SECS
        );
    }
}
