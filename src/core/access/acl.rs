//! The provider's access control list: the source of truth for who may call what (DESIGN §5).
//!
//! Every iq a provider receives goes through [`Acl::check`] (or [`Acl::check_item`] for methods that
//! take an item id) before dispatch; the UI never decides. Owner devices — the network's own bare
//! JID — are always allowed; everyone else needs a live grant that names their bare JID, the device
//! key their tunnel presented, and a scope containing the method.
//!
//! Grants enter only through [`Acl::install`], which verifies the owner signature, refuses replays,
//! rollbacks (ACL version lower than the store's) and expired grants. [`Acl::revoke`] applies at once
//! and moves the version forward, so nothing issued before the revocation can come back.
//!
//! This file holds the grants, the owner keys and the checks; `acl/decision.rs` the answer types
//! and the rule that judges one grant against a call; `acl/store.rs` the file.
//!
//! Persistence: a JSON file, written `0600` through a temporary file and a rename, so a crash leaves
//! the old or the new ACL, never half of one. Grants are stored as the signed XML the owner sent and
//! re-verified on load (the file is not trusted more than the network). A file that exists but does
//! not parse, or fails verification, is [`AccessError::Corrupt`]: starting with an empty ACL instead
//! would silently forget revocations. This type does blocking file I/O on install/revoke (small
//! files, rare events); callers hold it in a `Mutex` and never across an `.await`.

mod decision;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;

use xmpp_parsers::jid::{BareJid, FullJid};

use decision::evaluate;
pub use decision::{Allowed, Decision, DenyReason};
#[cfg(test)]
pub(super) use store::MAX_ACL_FILE_BYTES;
pub(super) use store::{check_permissions, write_atomically};

use super::audit::{AuditKind, AuditLog};
use super::grant::MAX_GRANT_LIFETIME_SECS;
use super::{AccessError, AccessRequest, DeviceFingerprint, GrantId, OwnerKeys, Scope};
use super::{SignedGrant, SignedRevoke};

/// Most grants (live, revoked or recently expired) one provider holds; a bound on memory and on the
/// file, far above what a household hands out.
pub const MAX_GRANTS: usize = 256;
/// Most revocations of grants this provider never saw that it remembers.
const MAX_TOMBSTONES: usize = 1024;
/// An expired or revoked grant is kept this long after its expiry, so the guest is told "expired" or
/// "revoked" rather than "no grant", and then forgotten.
const EXPIRED_GRACE_SECS: u64 = 24 * 3600;

/// What [`Acl::revoke`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The grant held for this guest ended now; end the guest's subscriptions and presence access.
    Revoked {
        /// The guest whose grant ended.
        guest: BareJid,
    },
    /// This provider never saw the grant; the id is remembered so it can never be installed here.
    Preemptive,
    /// Already revoked: nothing changed (a replayed revocation is harmless).
    AlreadyRevoked,
}

/// A grant as the owner's list shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantInfo {
    /// The signed grant.
    pub grant: SignedGrant,
    /// When it was revoked (provider's clock), if it was.
    pub revoked_at: Option<u64>,
    /// Whether it allows calls now (not revoked, within its time window).
    pub active: bool,
}

#[derive(Clone, Debug)]
struct Entry {
    grant: SignedGrant,
    revoked_at: Option<u64>,
}

/// The provider's ACL.
///
/// ```
/// use pmn::core::access::{Acl, Decision, DenyReason, OwnerKeys, Scope};
/// let mut acl = Acl::in_memory(OwnerKeys::new("home@home.test".parse().unwrap()));
/// let now = 1_700_000_000;
/// let owner = "home@home.test/phone".parse().unwrap();
/// // The household's own devices need no scope; `recorder.schedule` declares none.
/// assert!(acl.check(&owner, None, "recorder.schedule", None, now).is_allowed());
/// let stranger = "eve@evil.test/x".parse().unwrap();
/// let play = Some(Scope::Playback); // what `player.play` declares
/// assert_eq!(acl.check(&stranger, None, "player.play", play, now), Decision::Deny(DenyReason::NoGrant));
/// ```
#[derive(Debug)]
pub struct Acl {
    owners: OwnerKeys,
    version: u64,
    grants: BTreeMap<GrantId, Entry>,
    /// Revoked ids never seen here → when to forget them (after any grant with that id has expired).
    tombstones: BTreeMap<GrantId, u64>,
    audit: AuditLog,
    path: Option<PathBuf>,
    /// Owner key → the device (TLS key) that registered it; keys configured at start have none.
    owner_devices: BTreeMap<DeviceFingerprint, DeviceFingerprint>,
}

/// Most owner-approval keys one network registers with a provider (phones of the household's
/// owners): a bound on what a device can make a provider keep.
pub const MAX_OWNER_KEYS: usize = 16;

impl Acl {
    /// An ACL that lives only in memory (tests, controllers that cache a provider's state).
    pub fn in_memory(owners: OwnerKeys) -> Self {
        Acl {
            owners,
            version: 0,
            grants: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            audit: AuditLog::default(),
            path: None,
            owner_devices: BTreeMap::new(),
        }
    }

    /// The network whose ACL this is.
    pub fn network(&self) -> &BareJid {
        self.owners.network()
    }

    /// The current ACL version: the owner's phone signs new grants with at least this.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The owner keys grants are verified against.
    pub fn owner_keys(&self) -> &OwnerKeys {
        &self.owners
    }

    /// Adds one owner-approval key, held by `device` (its TLS key), registered through the tunnel
    /// of device `by`, and stores it, so grants it signs verify after a restart too. Returns its
    /// fingerprint and whether it is new.
    ///
    /// Owner keys are a privilege: the first key is taken from the first device that registers one
    /// (the household's set-up, when no key is configured or registered yet); after that only an
    /// owner device (one holding a registered key) registers keys, its own or another phone's.
    /// Anyone else — a stolen phone of the network that is not an owner — is refused
    /// ([`AccessError::NotOwner`]). At most [`MAX_OWNER_KEYS`].
    pub fn add_owner_key(
        &mut self,
        spki: &[u8],
        device: DeviceFingerprint,
        by: DeviceFingerprint,
    ) -> Result<(DeviceFingerprint, bool), AccessError> {
        let fp = DeviceFingerprint::from_spki(spki);
        if self.owners.contains(&fp) {
            return Ok((fp, false));
        }
        if !self.owners.is_empty() && !self.is_owner_device(&by) {
            return Err(AccessError::NotOwner {
                device: by.to_hex(),
            });
        }
        if self.owners.len() >= MAX_OWNER_KEYS {
            return Err(AccessError::TooManyOwners(MAX_OWNER_KEYS));
        }
        let before = self.owners.clone();
        self.owners.add(spki)?;
        self.owner_devices.insert(fp, device);
        if let Err(e) = self.persist() {
            self.owners = before;
            self.owner_devices.remove(&fp);
            return Err(e);
        }
        Ok((fp, true))
    }

    /// Whether `device` (a TLS key) holds one of the registered owner keys.
    pub fn is_owner_device(&self, device: &DeviceFingerprint) -> bool {
        self.owner_devices.values().any(|d| d == device)
    }

    /// The registered owner keys with the device holding each (configured keys are not listed).
    pub fn owner_devices(&self) -> Vec<(DeviceFingerprint, DeviceFingerprint)> {
        self.owner_devices.iter().map(|(k, d)| (*k, *d)).collect()
    }

    /// Removes the owner key `key` at the request of owner device `by`; every grant it signed ends
    /// at once. Returns whether it was there.
    pub fn remove_owner_key(
        &mut self,
        key: &DeviceFingerprint,
        by: &DeviceFingerprint,
        now: u64,
    ) -> Result<bool, AccessError> {
        if !self.is_owner_device(by) {
            return Err(AccessError::NotOwner {
                device: by.to_hex(),
            });
        }
        self.drop_owner_keys(&[*key], now, "owner key removed")
    }

    /// Ends the owner role of every device `revoked` names (a key revoked on the network, issue
    /// 12): their owner keys go, and so do the grants those keys signed. Returns how many keys went.
    pub fn drop_revoked_owners(
        &mut self,
        revoked: impl Fn(&DeviceFingerprint) -> bool,
        now: u64,
    ) -> Result<usize, AccessError> {
        let keys: Vec<DeviceFingerprint> = self
            .owner_devices
            .iter()
            .filter(|(_, device)| revoked(device))
            .map(|(key, _)| *key)
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        self.drop_owner_keys(&keys, now, "owner device revoked")?;
        Ok(keys.len())
    }

    /// Drops every grant whose issuer is no longer an owner key (audited as a revocation with
    /// `why`); returns how many.
    fn drop_orphaned_grants(&mut self, now: u64, why: &str) -> usize {
        let dropped: Vec<GrantId> = self
            .grants
            .values()
            .filter(|e| !self.owners.contains(&e.grant.issuer))
            .map(|e| e.grant.id.clone())
            .collect();
        for id in &dropped {
            if let Some(entry) = self.grants.remove(id) {
                self.audit_grant(now, AuditKind::Revoke, &entry.grant, why);
            }
        }
        dropped.len()
    }

    fn drop_owner_keys(
        &mut self,
        keys: &[DeviceFingerprint],
        now: u64,
        why: &str,
    ) -> Result<bool, AccessError> {
        let mut removed = false;
        for key in keys {
            removed |= self.owners.remove(key);
            self.owner_devices.remove(key);
        }
        if !removed {
            return Ok(false);
        }
        let dropped = self.drop_orphaned_grants(now, why);
        tracing::info!(
            keys = keys.len(),
            grants = dropped,
            why,
            "owner keys removed"
        );
        self.persist()?;
        Ok(true)
    }

    /// Whether `guest`'s device `device` holds a grant that allows calls at `now` (the provider
    /// admits its end-to-end tunnel only then).
    pub fn admits(&self, guest: &BareJid, device: &DeviceFingerprint, now: u64) -> bool {
        self.grants.values().any(|e| {
            e.grant.guest == *guest
                && e.grant.device == *device
                && e.revoked_at.is_none()
                && e.grant.not_before <= now
                && now < e.grant.expires
        })
    }

    /// Whether `guest` holds any grant that allows calls at `now` (any device): such a guest may
    /// read the provider's disco#info, which discovery needs before any tunnel exists.
    pub fn knows_guest(&self, guest: &BareJid, now: u64) -> bool {
        self.grants.values().any(|e| {
            e.grant.guest == *guest
                && e.revoked_at.is_none()
                && e.grant.not_before <= now
                && now < e.grant.expires
        })
    }

    /// Replaces the owner keys (a device joined or left the household) and stores the new set.
    /// Grants whose issuer is no longer an owner key are dropped at once. This is how an owner
    /// device is removed: [`Acl::open`] adds the stored keys to those it is given.
    pub fn set_owner_keys(&mut self, owners: OwnerKeys, now: u64) -> Result<(), AccessError> {
        if owners.network() != self.owners.network() {
            return Err(AccessError::WrongNetwork {
                expected: self.owners.network().to_string(),
                got: owners.network().to_string(),
            });
        }
        self.owners = owners;
        let owners = &self.owners;
        self.owner_devices.retain(|key, _| owners.contains(key));
        self.drop_orphaned_grants(now, "issuer removed");
        // The owner set itself is stored too (keys registered through the tunnel), so always write.
        self.persist()
    }

    /// The decision for a call of `method` by `caller`, whose tunnel presented `device` (`None`
    /// without a tunnel), at `now` by the provider's clock. `scope` is the grant scope the method
    /// declares (the provider's router reports it, [`crate::core::rpc::RpcRouter::scope_of`]);
    /// `None` closes it to guests. Use [`Acl::check_item`] for methods that take an item id
    /// (`library.item`, `library.read`).
    pub fn check(
        &mut self,
        caller: &FullJid,
        device: Option<&DeviceFingerprint>,
        method: &str,
        scope: Option<Scope>,
        now: u64,
    ) -> Decision {
        self.check_item(caller, device, method, scope, None, now)
    }

    /// As [`Acl::check`], for a call that targets `item`: a `library-item` grant allows it only for
    /// its own item. Guest uses and every refusal are recorded in the audit log; owner calls are not
    /// (they are the household using its own devices).
    pub fn check_item(
        &mut self,
        caller: &FullJid,
        device: Option<&DeviceFingerprint>,
        method: &str,
        scope: Option<Scope>,
        item: Option<&str>,
        now: u64,
    ) -> Decision {
        let bare = caller.to_bare();
        if &bare == self.owners.network() {
            return Decision::Allow(Allowed::Owner);
        }
        let mut best = DenyReason::NoGrant;
        let mut allowed_by = None;
        for entry in self.grants.values().filter(|e| e.grant.guest == bare) {
            match evaluate(entry, device, scope, item, now) {
                Ok(()) => {
                    allowed_by = Some(entry.grant.id.clone());
                    break;
                }
                Err(reason) => best = best.max(reason),
            }
        }
        let device_hex = device.map(DeviceFingerprint::to_hex);
        match allowed_by {
            Some(grant_id) => {
                self.audit.record(
                    now,
                    AuditKind::Use,
                    caller.as_str(),
                    device_hex.as_deref(),
                    Some(grant_id.as_str()),
                    Some(method),
                    "",
                );
                Decision::Allow(Allowed::Guest { grant_id })
            }
            None => {
                self.audit.record(
                    now,
                    AuditKind::Deny,
                    caller.as_str(),
                    device_hex.as_deref(),
                    None,
                    Some(method),
                    best.as_str(),
                );
                Decision::Deny(best)
            }
        }
    }

    /// Installs a grant pushed by an owner device, after verifying it. Refuses forged or tampered
    /// grants, unknown issuers, another network, replays, revoked ids, rollbacks and expired grants.
    pub fn install(&mut self, grant: SignedGrant, now: u64) -> Result<(), AccessError> {
        let result = self.try_install(grant.clone(), now);
        match &result {
            Ok(()) => self.audit_grant(now, AuditKind::Grant, &grant, &scopes_text(&grant)),
            Err(e) => {
                let detail = format!("grant refused: {e}");
                self.audit_grant(now, AuditKind::Deny, &grant, &detail);
            }
        }
        result
    }

    fn try_install(&mut self, grant: SignedGrant, now: u64) -> Result<(), AccessError> {
        self.owners.verify_grant(&grant)?;
        let id = grant.id.clone();
        match self.grants.get(&id) {
            Some(entry) if entry.revoked_at.is_some() => {
                return Err(AccessError::Revoked { id: id.to_string() })
            }
            Some(_) => return Err(AccessError::Replayed { id: id.to_string() }),
            None if self.tombstones.contains_key(&id) => {
                return Err(AccessError::Revoked { id: id.to_string() })
            }
            None => {}
        }
        if grant.expires <= now {
            return Err(AccessError::Expired {
                id: id.to_string(),
                expires: grant.expires,
            });
        }
        if grant.version < self.version {
            return Err(AccessError::Rollback {
                id: id.to_string(),
                grant_version: grant.version,
                acl_version: self.version,
            });
        }
        self.prune(now);
        if self.grants.len() >= MAX_GRANTS {
            return Err(AccessError::TooManyGrants(MAX_GRANTS));
        }
        let old_version = self.version;
        self.version = self.version.max(grant.version);
        self.grants.insert(
            id.clone(),
            Entry {
                grant,
                revoked_at: None,
            },
        );
        if let Err(e) = self.persist() {
            // A grant that would not survive a restart is not installed: the owner retries.
            self.grants.remove(&id);
            self.version = old_version;
            return Err(e);
        }
        Ok(())
    }

    /// Applies a revocation signed by an owner device: the grant ends now and the ACL version moves
    /// to `max(current + 1, revoke.version)`. The in-memory effect stays even if the file cannot be
    /// written (then the error says so): a revocation must never wait for a disk.
    pub fn revoke(
        &mut self,
        revoke: &SignedRevoke,
        now: u64,
    ) -> Result<RevokeOutcome, AccessError> {
        self.owners.verify_revoke(revoke)?;
        let outcome = match self.grants.get_mut(&revoke.id) {
            Some(entry) if entry.revoked_at.is_some() => RevokeOutcome::AlreadyRevoked,
            Some(entry) => {
                entry.revoked_at = Some(now);
                RevokeOutcome::Revoked {
                    guest: entry.grant.guest.clone(),
                }
            }
            None if self.tombstones.contains_key(&revoke.id) => RevokeOutcome::AlreadyRevoked,
            None => {
                if self.tombstones.len() >= MAX_TOMBSTONES {
                    // Forget the tombstone that expires first; the version bump below still
                    // keeps every grant issued before this revocation out.
                    if let Some(oldest) = self
                        .tombstones
                        .iter()
                        .min_by_key(|(_, until)| **until)
                        .map(|(id, _)| id.clone())
                    {
                        self.tombstones.remove(&oldest);
                    }
                }
                self.tombstones.insert(
                    revoke.id.clone(),
                    now.saturating_add(MAX_GRANT_LIFETIME_SECS + EXPIRED_GRACE_SECS),
                );
                RevokeOutcome::Preemptive
            }
        };
        if outcome == RevokeOutcome::AlreadyRevoked {
            return Ok(outcome);
        }
        self.version = self.version.saturating_add(1).max(revoke.version);
        let subject = match &outcome {
            RevokeOutcome::Revoked { guest } => guest.to_string(),
            _ => String::new(),
        };
        self.audit.record(
            now,
            AuditKind::Revoke,
            &subject,
            None,
            Some(revoke.id.as_str()),
            None,
            &format!("version {}", self.version),
        );
        self.persist()?;
        Ok(outcome)
    }

    /// Every grant held, oldest id order, with its state at `now` (for the owner's list).
    pub fn grants(&self, now: u64) -> Vec<GrantInfo> {
        self.grants
            .values()
            .map(|e| GrantInfo {
                grant: e.grant.clone(),
                revoked_at: e.revoked_at,
                active: e.revoked_at.is_none()
                    && e.grant.not_before <= now
                    && now < e.grant.expires,
            })
            .collect()
    }

    /// The grants that allow calls at `now`.
    pub fn active_grants(&self, now: u64) -> Vec<GrantInfo> {
        self.grants(now).into_iter().filter(|g| g.active).collect()
    }

    /// The audit log, to size it or to add records the ACL does not make itself (the provider's
    /// own refusals, such as a media URI a caller may not play).
    pub fn audit_mut(&mut self) -> &mut AuditLog {
        &mut self.audit
    }

    /// Records a guest's access request in the audit log (the provider saw it; the owner decides).
    pub fn record_request(&mut self, from: &FullJid, request: &AccessRequest, now: u64) {
        let scopes: Vec<&str> = request.scopes.iter().map(|s| s.name()).collect();
        self.audit.record(
            now,
            AuditKind::Request,
            from.as_str(),
            Some(&request.device.to_hex()),
            None,
            None,
            &scopes.join(" "),
        );
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Forgets grants that expired more than a day ago and tombstones past their time. Safe at any
    /// moment: a forgotten grant can never be installed again because it has expired.
    pub fn prune(&mut self, now: u64) {
        self.grants
            .retain(|_, e| e.grant.expires.saturating_add(EXPIRED_GRACE_SECS) > now);
        self.tombstones.retain(|_, until| *until > now);
    }

    fn audit_grant(&mut self, now: u64, kind: AuditKind, grant: &SignedGrant, detail: &str) {
        let device = grant.device.to_hex();
        self.audit.record(
            now,
            kind,
            grant.guest.as_str(),
            Some(&device),
            Some(grant.id.as_str()),
            None,
            detail,
        );
    }
}

fn scopes_text(grant: &SignedGrant) -> String {
    let names: Vec<&str> = grant.scopes.iter().map(|s| s.name()).collect();
    names.join(" ")
}
