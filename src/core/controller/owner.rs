//! The owner console: what an owner phone does for guests (DESIGN §5, spec §3.3) — hears their
//! requests, approves (signs a grant with the owner-approval key of its [`KeyStore`], pushes it to
//! every online provider of the network through the end-to-end tunnel, opens mutual presence
//! subscription with the guest, tells the guest which device keys to pin), denies, lists and
//! revokes grants, reads the providers' audit logs and manages the household's owner keys.
//!
//! The providers decide; nothing here is enforcement. The owner side only signs and delivers.

use crate::core::sync::Locked;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::guest::no_tunnel;
use super::Controller;
use crate::core::access::{
    unix_now, AccessDecision, AccessError, AclState, AuditPage, AuditRecord, DecisionDevice,
    DeviceFingerprint, GrantDraft, GrantId, GrantInfo, IntakeLimits, ItemId, OwnerKey, OwnerList,
    PendingRequest, RequestIntake, RevokedGrants, Scope, SignedGrant, SignedRevoke, Transcript,
    APPROVED, DENIED,
};
use crate::core::e2e::E2eEndpoint;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{KeyPolicy, KeyStore, KeyStoreError};

/// The owner role of a controller: the key that signs grants.
#[derive(Clone)]
pub struct OwnerAccess {
    /// Where the owner-approval key lives (on a phone: the platform keystore).
    pub store: Arc<dyn KeyStore>,
    /// The key's alias; created with [`KeyPolicy::OwnerApproval`] if missing.
    pub alias: String,
    /// Whether a newly created key demands user presence for every signature.
    pub user_presence: bool,
    /// How guest requests are de-duplicated and rate-limited before they reach the owner.
    pub limits: IntakeLimits,
    /// Where the ids of the grants this phone revoked are kept (0600), so that no provider that
    /// missed a revocation spreads the grant back, even after the phone restarts. `None`: only in
    /// memory.
    pub revoked_grants_file: Option<std::path::PathBuf>,
}

impl OwnerAccess {
    /// An owner role signing with `alias` of `store`, default limits, no user presence.
    pub fn new(store: Arc<dyn KeyStore>, alias: impl Into<String>) -> Self {
        OwnerAccess {
            store,
            alias: alias.into(),
            user_presence: false,
            limits: IntakeLimits::default(),
            revoked_grants_file: None,
        }
    }
}

impl std::fmt::Debug for OwnerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerAccess")
            .field("alias", &self.alias)
            .field("user_presence", &self.user_presence)
            .finish_non_exhaustive()
    }
}

/// Capacity of the access-request broadcast.
const REQUEST_CAPACITY: usize = 64;

pub(super) struct OwnerState {
    pub(super) config: OwnerAccess,
    pub(super) spki: Vec<u8>,
    pub(super) intake: Mutex<RequestIntake>,
    pub(super) requests: broadcast::Sender<PendingRequest>,
    /// The grants this phone revoked: never copied to a provider, revoked wherever still held.
    pub(super) revoked: Mutex<RevokedGrants>,
}

impl OwnerState {
    pub(super) fn open(config: OwnerAccess) -> Result<Self> {
        let spki = match config.store.public_key(&config.alias) {
            Ok(spki) => spki,
            Err(KeyStoreError::NotFound { .. }) => config
                .store
                .generate(
                    &config.alias,
                    KeyPolicy::OwnerApproval {
                        user_presence: config.user_presence,
                    },
                )
                .map_err(|e| Error::from(AccessError::Signing(e)))?,
            Err(e) => return Err(AccessError::Signing(e).into()),
        };
        let revoked = match &config.revoked_grants_file {
            Some(path) => RevokedGrants::open(path)?,
            None => RevokedGrants::in_memory(),
        };
        Ok(OwnerState {
            revoked: Mutex::new(revoked),
            intake: Mutex::new(RequestIntake::new(config.limits.clone())),
            requests: broadcast::channel(REQUEST_CAPACITY).0,
            spki,
            config,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Issued {
    /// The signed grant.
    pub grant: SignedGrant,
    /// The providers that installed it, with their tunnel key.
    pub installed_on: Vec<(FullJid, DeviceFingerprint)>,
    /// The providers that refused it or could not be reached, and why.
    pub failed: Vec<(FullJid, Error)>,
    /// For an approved request: the six digits the owner's phone shows, which the guest's phone
    /// must show too ([`crate::core::controller::GuestAccess::confirmation_code`]); `None` for a
    /// grant without a request.
    pub confirmation_code: Option<String>,
}

/// An owner-approval key of the network, as its providers hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerKeyInfo {
    /// The key's fingerprint.
    pub key: DeviceFingerprint,
    /// The key (DER SPKI), what [`crate::core::controller::OwnerConsole::remove_owner`] takes.
    pub spki: Vec<u8>,
    /// The device (TLS key) that holds it, when the provider knows (keys configured at a
    /// provider's start have none).
    pub device: Option<DeviceFingerprint>,
    /// The online providers that hold it.
    pub providers: Vec<FullJid>,
}

/// A revocation delivered to the providers of this network.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The providers that applied it.
    pub applied_on: Vec<FullJid>,
    /// The providers that refused it or could not be reached, and why.
    pub failed: Vec<(FullJid, Error)>,
}

/// The owner console of an owner device ([`Controller::owner`]): guests' requests, grants, owner
/// keys, audit. Cheap to clone; holds the controller.
#[derive(Clone, Debug)]
pub struct OwnerConsole {
    controller: Controller,
}

impl OwnerConsole {
    pub(super) fn new(controller: Controller) -> Self {
        Self { controller }
    }

    fn owner(&self) -> Result<&OwnerState> {
        self.controller.shared.owner.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "this controller is not an owner device (set ControllerConfig::access)",
            )
        })
    }

    fn tunnel_layer(&self) -> Result<&E2eEndpoint> {
        self.controller.shared.e2e.as_ref().ok_or_else(no_tunnel)
    }

    /// Guests' requests from now on (owner devices). Each arrives once, after de-duplication and
    /// rate limiting; [`OwnerConsole::pending_access_requests`] lists those not answered yet.
    pub fn access_requests(&self) -> Result<broadcast::Receiver<PendingRequest>> {
        Ok(self.owner()?.requests.subscribe())
    }

    /// The requests waiting for an answer.
    pub fn pending_access_requests(&self) -> Result<Vec<PendingRequest>> {
        Ok(self.owner()?.intake.locked().pending())
    }

    /// Approves request `request` for `scopes` until `expires` (seconds since the epoch): signs
    /// the grant, installs it on every online provider of the network, subscribes the guest to
    /// our presence (and us to his), and tells the guest. The request stays pending if no
    /// provider installed the grant.
    pub async fn approve(&self, request: u64, scopes: Vec<Scope>, expires: u64) -> Result<Issued> {
        let owner = self.owner()?;
        let pending = owner
            .intake
            .locked()
            .pending()
            .into_iter()
            .find(|p| p.id == request)
            .ok_or_else(|| no_request(request))?;
        let item = if scopes.contains(&Scope::LibraryItem) {
            pending.item.clone()
        } else {
            None
        };
        let guest = pending.guest.to_bare();
        let issued = self
            .grant_access(guest.clone(), pending.device, scopes, item, expires)
            .await?;
        owner.intake.locked().take(request);
        self.controller
            .shared
            .guest
            .granted
            .locked()
            .insert(guest.clone());
        // Mutual subscription (spec §6): the guest sees the providers, they see him leave.
        for type_ in [PresenceType::Subscribed, PresenceType::Subscribe] {
            self.controller
                .shared
                .session
                .send(Presence::new(type_).with_to(Jid::from(guest.clone())))?;
        }
        let devices: Vec<DeviceFingerprint> =
            issued.installed_on.iter().map(|(_, fp)| *fp).collect();
        let transcript = Transcript {
            host: &self.controller.shared.network,
            guest: &guest,
            guest_device: &pending.device,
            grant: &issued.grant.id,
            expires: issued.grant.expires,
            devices: &devices,
        };
        let introduction = transcript.sign(owner.config.store.as_ref(), &owner.config.alias)?;
        let code = transcript.confirmation_code(&introduction.owner);
        let decision = AccessDecision {
            result: APPROVED.into(),
            for_device: pending.device,
            grant: Some(issued.grant.id.clone()),
            expires: Some(issued.grant.expires),
            devices: devices
                .iter()
                .map(|fp| DecisionDevice {
                    jid: self.controller.shared.network.clone(),
                    fingerprint: *fp,
                })
                .collect(),
            introduction: Some(introduction),
        };
        self.send_decision(&pending.guest, decision)?;
        Ok(Issued {
            confirmation_code: Some(code),
            ..issued
        })
    }

    /// Refuses request `request` and tells the guest.
    pub async fn deny(&self, request: u64) -> Result<()> {
        let owner = self.owner()?;
        let pending = owner
            .intake
            .locked()
            .take(request)
            .ok_or_else(|| no_request(request))?;
        self.controller.shared.session.send(
            Presence::new(PresenceType::Unsubscribed).with_to(Jid::from(pending.guest.to_bare())),
        )?;
        let decision = AccessDecision {
            result: DENIED.into(),
            for_device: pending.device,
            grant: None,
            expires: None,
            devices: vec![],
            introduction: None,
        };
        self.send_decision(&pending.guest, decision)
    }

    fn send_decision(&self, to: &FullJid, decision: AccessDecision) -> Result<()> {
        let mut message =
            Message::new_with_type(MessageType::Headline, Some(Jid::from(to.clone())));
        message.payloads.push(decision.into());
        self.controller.shared.session.send(message)
    }

    /// Signs and installs a grant without a request: e.g. a guest's phone lets the host's TV
    /// (`guest` = the host network, `device` = the TV's key) read one item of its own library
    /// (`scopes = [LibraryItem]`, `item`).
    pub async fn grant_access(
        &self,
        guest: BareJid,
        device: DeviceFingerprint,
        scopes: Vec<Scope>,
        item: Option<ItemId>,
        expires: u64,
    ) -> Result<Issued> {
        let owner = self.owner()?;
        let targets = self.controller.shared.own_providers()?;
        let register = Element::from(OwnerKey::register(owner.spki.clone()));
        let (ready, mut failed) = self
            .controller
            .shared
            .each_provider(&targets, true, register)
            .await;
        let version = ready.values().map(|s| s.version).max().unwrap_or(0);
        let now = unix_now();
        let mut draft = GrantDraft::new(
            self.controller.shared.network.clone(),
            guest,
            device,
            scopes,
            now,
            expires,
            version,
        );
        if let Some(item) = item {
            draft = draft.for_item(item);
        }
        let grant = draft.sign(owner.config.store.as_ref(), &owner.config.alias)?;
        let reached: Vec<FullJid> = ready.into_keys().collect();
        let (installed, refused) = self
            .controller
            .shared
            .each_provider(&reached, true, Element::from(grant.clone()))
            .await;
        failed.extend(refused);
        let e2e = self.tunnel_layer()?;
        let installed_on: Vec<(FullJid, DeviceFingerprint)> = installed
            .into_keys()
            .filter_map(|jid| {
                let fp = e2e.existing_tunnel(&jid)?.peer_fingerprint();
                Some((jid, fp))
            })
            .collect();
        if installed_on.is_empty() {
            return Err(first_failure(failed, "no provider installed the grant"));
        }
        tracing::info!(grant = %grant.id, providers = installed_on.len(), "grant issued");
        Ok(Issued {
            grant,
            installed_on,
            failed,
            confirmation_code: None,
        })
    }

    /// This phone's owner-approval key (DER SPKI). Another owner phone makes this one an owner
    /// with [`OwnerConsole::add_owner`]; until then the providers refuse this key (it is not the
    /// household's first).
    pub fn owner_public_key(&self) -> Result<Vec<u8>> {
        Ok(self.owner()?.spki.clone())
    }

    /// The owner keys the network's online providers hold (merged by key), with the device that
    /// holds each when known.
    pub async fn owner_keys(&self) -> Result<Vec<OwnerKeyInfo>> {
        self.owner()?;
        let targets = self.controller.shared.own_providers()?;
        let calls = targets.iter().map(|jid| async move {
            let query = Element::from(OwnerList { owners: vec![] });
            let answer = self.controller.shared.access_iq(jid, false, query).await;
            (
                jid,
                answer.and_then(|el| {
                    OwnerList::try_from(el)
                        .map_err(|e| Error::new(ErrorKind::Protocol, format!("<owners>: {e}")))
                }),
            )
        });
        let mut merged: BTreeMap<DeviceFingerprint, OwnerKeyInfo> = BTreeMap::new();
        let mut failed = Vec::new();
        for (jid, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok(list) => {
                    for owner in list.owners {
                        let key = DeviceFingerprint::from_spki(&owner.key);
                        let info = merged.entry(key).or_insert_with(|| OwnerKeyInfo {
                            key,
                            spki: owner.key.clone(),
                            device: None,
                            providers: vec![],
                        });
                        info.device = info.device.or(owner.device);
                        info.providers.push(jid.clone());
                    }
                }
                Err(e) => failed.push((jid.clone(), e)),
            }
        }
        if merged.is_empty() && !failed.is_empty() {
            return Err(first_failure(failed, "no provider listed its owner keys"));
        }
        Ok(merged.into_values().collect())
    }

    /// Makes another phone an owner: registers its owner-approval key `spki` (from
    /// [`crate::core::controller::OwnerConsole::owner_public_key`] on that phone), held by the
    /// device whose TLS key is `device`, on every online provider. Only an owner device may;
    /// returns where it took.
    pub async fn add_owner(
        &self,
        spki: Vec<u8>,
        device: DeviceFingerprint,
    ) -> Result<Vec<FullJid>> {
        self.owner_change(OwnerKey {
            key: spki,
            device: Some(device),
            remove: false,
        })
        .await
    }

    /// Removes the owner key `spki` on every online provider: every grant it signed ends there.
    /// Only an owner device may; returns where it took.
    pub async fn remove_owner(&self, spki: Vec<u8>) -> Result<Vec<FullJid>> {
        let took = self
            .owner_change(OwnerKey {
                key: spki.clone(),
                device: None,
                remove: true,
            })
            .await?;
        // Remembered, so a provider that was off hears of it when it comes back (sync_access).
        if let Err(e) = self.owner()?.revoked.locked().remove_owner(spki) {
            tracing::warn!(error = %e, "could not store the owner key's removal on this phone");
        }
        Ok(took)
    }

    async fn owner_change(&self, change: OwnerKey) -> Result<Vec<FullJid>> {
        self.owner()?;
        let targets = self.controller.shared.own_providers()?;
        let (applied, failed) = self
            .controller
            .shared
            .each_provider(&targets, true, Element::from(change))
            .await;
        if applied.is_empty() {
            return Err(first_failure(failed, "no provider took the owner change"));
        }
        Ok(applied.into_keys().collect())
    }

    /// Every grant held by the online providers of this network (merged by id; a grant revoked
    /// on one provider shows as revoked).
    pub async fn access_grants(&self) -> Result<Vec<GrantInfo>> {
        self.owner()?;
        let targets = self.controller.shared.own_providers()?;
        let (states, failed) = self
            .controller
            .shared
            .each_provider(&targets, false, Element::from(empty_acl()))
            .await;
        if states.is_empty() {
            return Err(first_failure(failed, "no provider answered"));
        }
        Ok(merge_grants(states.into_values()))
    }

    /// Revokes grant `id` on every online provider of the network; when the guest holds no other
    /// active grant, ends the mutual presence subscription too.
    pub async fn revoke_grant(&self, id: &GrantId) -> Result<Revoked> {
        let owner = self.owner()?;
        let targets = self.controller.shared.own_providers()?;
        let (states, mut failed) = self
            .controller
            .shared
            .each_provider(&targets, false, Element::from(empty_acl()))
            .await;
        let version = revoke_version(states.values());
        let grants = merge_grants(states.values().cloned());
        let revoke = SignedRevoke::sign(
            self.controller.shared.network.clone(),
            id.clone(),
            version,
            owner.config.store.as_ref(),
            &owner.config.alias,
        )?;
        let reached: Vec<FullJid> = states.into_keys().collect();
        let (applied, refused) = self
            .controller
            .shared
            .each_provider(&reached, true, Element::from(revoke))
            .await;
        failed.extend(refused);
        if applied.is_empty() {
            return Err(first_failure(failed, "no provider applied the revocation"));
        }
        if let Err(e) = owner.revoked.locked().insert(id.clone()) {
            tracing::warn!(grant = %id, error = %e, "could not store the revocation on this phone");
        }
        let guest = grants
            .iter()
            .find(|g| &g.grant.id == id)
            .map(|g| g.grant.guest.clone());
        if let Some(guest) = guest {
            let still = grants
                .iter()
                .any(|g| g.active && &g.grant.id != id && g.grant.guest == guest);
            if !still {
                self.controller.shared.guest.granted.locked().remove(&guest);
                for type_ in [PresenceType::Unsubscribed, PresenceType::Unsubscribe] {
                    self.controller
                        .shared
                        .session
                        .send(Presence::new(type_).with_to(Jid::from(guest.clone())))?;
                }
            }
        }
        tracing::info!(grant = %id, providers = applied.len(), "grant revoked");
        Ok(Revoked {
            applied_on: applied.into_keys().collect(),
            failed,
        })
    }

    /// The audit records of `provider` after sequence number `after` (at most a page).
    pub async fn access_audit(&self, provider: &FullJid, after: u64) -> Result<Vec<AuditRecord>> {
        self.owner()?;
        let query = AuditPage {
            after,
            records: vec![],
        };
        let answer = self
            .controller
            .shared
            .access_iq(provider, false, query.into())
            .await?;
        let page = AuditPage::try_from(answer)
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("<audit>: {e}")))?;
        Ok(page.records.into_iter().map(AuditRecord::from).collect())
    }
}

fn no_request(id: u64) -> Error {
    Error::new(
        ErrorKind::BadParams,
        format!("no pending access request {id}"),
    )
}

pub(super) fn empty_acl() -> AclState {
    AclState {
        version: 0,
        entries: vec![],
    }
}

fn first_failure(failed: Vec<(FullJid, Error)>, what: &str) -> Error {
    match failed.into_iter().next() {
        Some((jid, e)) => Error::new(e.kind(), format!("{what}: {jid}: {}", e.message())),
        None => Error::new(ErrorKind::ProviderUnavailable, what),
    }
}

/// The version a revocation is signed with: one past the highest the providers answered. The
/// versions are the providers' word, so one at `u64::MAX` saturates instead of overflowing (the
/// provider moves its ACL to at least `current + 1` on a revoke anyway).
pub(super) fn revoke_version<'a>(states: impl Iterator<Item = &'a AclState>) -> u64 {
    states
        .map(|s| s.version)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

/// One list from the lists of several providers: by grant id; revoked anywhere wins.
pub(super) fn merge_grants(states: impl Iterator<Item = AclState>) -> Vec<GrantInfo> {
    let mut merged: BTreeMap<GrantId, GrantInfo> = BTreeMap::new();
    for entry in states.flat_map(|s| s.entries) {
        let info = GrantInfo {
            active: entry.active,
            revoked_at: entry.revoked_at,
            grant: entry.grant,
        };
        merged
            .entry(info.grant.id.clone())
            .and_modify(|seen| {
                if info.revoked_at.is_some() {
                    seen.revoked_at = seen.revoked_at.or(info.revoked_at);
                    seen.active = false;
                }
            })
            .or_insert(info);
    }
    merged.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_answering_the_last_version_does_not_overflow_the_revoke_version() {
        let state = |version| AclState {
            version,
            entries: vec![],
        };
        assert_eq!(revoke_version([].iter()), 1);
        assert_eq!(revoke_version([state(3), state(7)].iter()), 8);
        assert_eq!(revoke_version([state(2), state(u64::MAX)].iter()), u64::MAX);
    }
}
