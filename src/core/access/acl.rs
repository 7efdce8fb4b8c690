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
//! Persistence: a JSON file, written `0600` through a temporary file and a rename, so a crash leaves
//! the old or the new ACL, never half of one. Grants are stored as the signed XML the owner sent and
//! re-verified on load (the file is not trusted more than the network). A file that exists but does
//! not parse, or fails verification, is [`AccessError::Corrupt`]: starting with an empty ACL instead
//! would silently forget revocations. This type does blocking file I/O on install/revoke (small
//! files, rare events); callers hold it in a `Mutex` and never across an `.await`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use xmpp_parsers::jid::{BareJid, FullJid};

use super::audit::{AuditKind, AuditLog};
use super::grant::MAX_GRANT_LIFETIME_SECS;
use super::{AccessError, AccessRequest, DeviceFingerprint, GrantId, OwnerKeys};
use super::{SignedGrant, SignedRevoke};
use crate::core::error::{Error, ErrorKind};

/// Most grants (live, revoked or recently expired) one provider holds; a bound on memory and on the
/// file, far above what a household hands out.
pub const MAX_GRANTS: usize = 256;
/// Most revocations of grants this provider never saw that it remembers.
const MAX_TOMBSTONES: usize = 1024;
/// An expired or revoked grant is kept this long after its expiry, so the guest is told "expired" or
/// "revoked" rather than "no grant", and then forgotten.
const EXPIRED_GRACE_SECS: u64 = 24 * 3600;
/// Version of the file layout.
const FILE_FORMAT: u32 = 1;

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

/// The answer of [`Acl::check`].
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclFile {
    format: u32,
    network: String,
    version: u64,
    grants: Vec<StoredGrant>,
    tombstones: Vec<StoredTombstone>,
    /// Owner-approval keys registered over the tunnel (base64 DER SPKI), on top of those the
    /// provider is configured with.
    #[serde(default)]
    owners: Vec<String>,
    /// Which device (TLS key fingerprint, hex) holds each registered owner key (fingerprint, hex):
    /// those devices are the household's owners, the only ones that register or remove owner keys.
    #[serde(default)]
    owner_devices: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGrant {
    /// The `<grant>` exactly as parsed from the owner, re-verified on load.
    xml: String,
    revoked_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTombstone {
    id: GrantId,
    forget_after: u64,
}

/// The provider's ACL.
///
/// ```
/// use pmn::core::access::{Acl, Decision, DenyReason, OwnerKeys};
/// let mut acl = Acl::in_memory(OwnerKeys::new("home@home.test".parse().unwrap()));
/// let now = 1_700_000_000;
/// let owner = "home@home.test/phone".parse().unwrap();
/// assert!(acl.check(&owner, None, "recorder.schedule", now).is_allowed());
/// let stranger = "eve@evil.test/x".parse().unwrap();
/// assert_eq!(acl.check(&stranger, None, "player.play", now), Decision::Deny(DenyReason::NoGrant));
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

    /// Opens the ACL file at `path`, or starts an empty ACL (and writes it) if there is none.
    /// A file that exists but cannot be trusted is an error, never an empty ACL.
    pub fn open(
        path: impl Into<PathBuf>,
        owners: OwnerKeys,
        now: u64,
    ) -> Result<Self, AccessError> {
        let path = path.into();
        let mut acl = Acl::in_memory(owners);
        acl.path = Some(path.clone());
        match fs::metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                acl.persist()?;
                return Ok(acl);
            }
            Err(e) => {
                return Err(AccessError::Storage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        }
        check_permissions(&path)?;
        let text = fs::read_to_string(&path)
            .map_err(|e| AccessError::Storage(format!("cannot read {}: {e}", path.display())))?;
        acl.load(&path, &text, now)?;
        Ok(acl)
    }

    fn load(&mut self, path: &Path, text: &str, now: u64) -> Result<(), AccessError> {
        let corrupt = |reason: String| AccessError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let file: AclFile =
            serde_json::from_str(text).map_err(|e| corrupt(format!("not an ACL file: {e}")))?;
        if file.format != FILE_FORMAT {
            return Err(corrupt(format!("unknown format {}", file.format)));
        }
        let network: BareJid = file
            .network
            .parse()
            .map_err(|e| corrupt(format!("bad network JID: {e}")))?;
        if &network != self.owners.network() {
            return Err(corrupt(format!(
                "ACL of network {network}, this provider is {}",
                self.owners.network()
            )));
        }
        if file.grants.len() > MAX_GRANTS || file.tombstones.len() > MAX_TOMBSTONES {
            return Err(corrupt(
                "more entries than a provider ever holds".to_owned(),
            ));
        }
        for owner in &file.owners {
            let spki = base64::engine::general_purpose::STANDARD
                .decode(owner)
                .map_err(|e| corrupt(format!("bad owner key: {e}")))?;
            self.owners
                .add(&spki)
                .map_err(|e| corrupt(format!("bad owner key: {e}")))?;
        }
        for (key, device) in &file.owner_devices {
            let (Some(key), Some(device)) = (
                DeviceFingerprint::from_hex(key),
                DeviceFingerprint::from_hex(device),
            ) else {
                return Err(corrupt(format!("bad owner device {key} → {device}")));
            };
            if !self.owners.contains(&key) {
                return Err(corrupt(format!("owner device for an unknown key {key}")));
            }
            self.owner_devices.insert(key, device);
        }
        self.version = file.version;
        for stored in file.grants {
            let grant: SignedGrant = xso::from_bytes(stored.xml.as_bytes())
                .map_err(|e| corrupt(format!("unreadable grant: {e}")))?;
            if grant.version > file.version {
                return Err(corrupt(format!(
                    "grant {} is newer than the ACL version",
                    grant.id
                )));
            }
            match self.owners.verify_grant(&grant) {
                Ok(()) => {}
                // The issuing device left the network: its grants end (never grants more access).
                Err(AccessError::UnknownIssuer { issuer }) => {
                    self.audit_grant(now, AuditKind::Revoke, &grant, "issuer removed");
                    tracing::info!(grant = %grant.id, %issuer, "dropping grant of a removed owner device");
                    continue;
                }
                Err(e) => return Err(corrupt(format!("grant {}: {e}", grant.id))),
            }
            if self.grants.contains_key(&grant.id) {
                return Err(corrupt(format!("grant {} stored twice", grant.id)));
            }
            let entry = Entry {
                grant,
                revoked_at: stored.revoked_at,
            };
            self.grants.insert(entry.grant.id.clone(), entry);
        }
        for t in file.tombstones {
            self.tombstones.insert(t.id, t.forget_after);
        }
        self.prune(now);
        Ok(())
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
    /// without a tunnel), at `now` by the provider's clock. Use [`Acl::check_item`] for methods that
    /// take an item id (`library.item`, `library.read`).
    pub fn check(
        &mut self,
        caller: &FullJid,
        device: Option<&DeviceFingerprint>,
        method: &str,
        now: u64,
    ) -> Decision {
        self.check_item(caller, device, method, None, now)
    }

    /// As [`Acl::check`], for a call that targets `item`: a `library-item` grant allows it only for
    /// its own item. Guest uses and every refusal are recorded in the audit log; owner calls are not
    /// (they are the household using its own devices).
    pub fn check_item(
        &mut self,
        caller: &FullJid,
        device: Option<&DeviceFingerprint>,
        method: &str,
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
            match evaluate(entry, device, method, item, now) {
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

    fn persist(&self) -> Result<(), AccessError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut grants = Vec::with_capacity(self.grants.len());
        for entry in self.grants.values() {
            let xml = xso::to_vec(&entry.grant)
                .map_err(|e| AccessError::Storage(format!("cannot serialise a grant: {e}")))?;
            let xml = String::from_utf8(xml)
                .map_err(|e| AccessError::Storage(format!("grant is not UTF-8: {e}")))?;
            grants.push(StoredGrant {
                xml,
                revoked_at: entry.revoked_at,
            });
        }
        let file = AclFile {
            format: FILE_FORMAT,
            network: self.owners.network().to_string(),
            version: self.version,
            grants,
            tombstones: self
                .tombstones
                .iter()
                .map(|(id, until)| StoredTombstone {
                    id: id.clone(),
                    forget_after: *until,
                })
                .collect(),
            owners: self
                .owners
                .spkis()
                .iter()
                .map(|k| base64::engine::general_purpose::STANDARD.encode(k))
                .collect(),
            owner_devices: self
                .owner_devices
                .iter()
                .map(|(k, d)| (k.to_hex(), d.to_hex()))
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| AccessError::Storage(format!("cannot serialise the ACL: {e}")))?;
        write_atomically(path, &bytes)
    }
}

/// Whether `entry` allows the call; otherwise why not. The order of the checks defines the reason a
/// guest is given: revoked, device, time, scope.
fn evaluate(
    entry: &Entry,
    device: Option<&DeviceFingerprint>,
    method: &str,
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
    let in_scope = g.scopes.iter().any(|s| {
        s.allows(method)
            && (!s.targets_one_item()
                || matches!((item, &g.item), (Some(asked), Some(granted)) if asked == granted.as_str()))
    });
    if in_scope {
        Ok(())
    } else {
        Err(DenyReason::OutOfScope)
    }
}

fn scopes_text(grant: &SignedGrant) -> String {
    let names: Vec<&str> = grant.scopes.iter().map(|s| s.name()).collect();
    names.join(" ")
}

#[cfg(unix)]
pub(super) fn check_permissions(path: &Path) -> Result<(), AccessError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path)
        .map_err(|e| AccessError::Storage(format!("cannot stat {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AccessError::InsecurePermissions {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn check_permissions(_path: &Path) -> Result<(), AccessError> {
    // No POSIX mode bits; desktop providers run on Linux and macOS.
    Ok(())
}

/// Writes `bytes` to `path` via `<path>.tmp` (created `0600`), fsync and rename.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), AccessError> {
    let storage = |what: &str, p: &Path, e: std::io::Error| {
        AccessError::Storage(format!("cannot {what} {}: {e}", p.display()))
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage("remove", &tmp, e)),
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| storage("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| storage("write", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| storage("replace", path, e))?;
    // Make the rename itself durable; not every platform lets a directory be opened, so best effort.
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
