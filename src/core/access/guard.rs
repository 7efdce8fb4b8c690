//! The provider's side of guest access: its [`Acl`] behind a lock, the owner's management requests
//! (`<owner/>`, `<grant/>`, `<revoke/>`, `<acl/>`, `<audit/>`), and the per-call check.
//!
//! The provider's dispatcher decides *who may ask what* before calling in here: management
//! requests only from an own-network device through its end-to-end tunnel, guest calls only
//! through a tunnel whose key the ACL admits. This type never reads a JID or key from a payload.

use crate::core::sync::Locked;
use std::path::PathBuf;
use std::sync::Mutex;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, FullJid};

use super::{
    unix_now, AccessError, AccessRequest, Acl, AclEntry, AclState, AuditEntry, AuditEvictions,
    AuditKind, AuditPage, AuditRecord, Decision, DeviceFingerprint, Intake, IntakeLimits, OwnerKey,
    OwnerKeys, RequestIntake, RevokeOutcome, Scope, SignedGrant, SignedRevoke, MAX_AUDIT_PAGE,
    NS_ACCESS,
};
use crate::core::error::{Error, ErrorKind, Result};

/// How a provider keeps guest access.
#[derive(Debug, Clone, Default)]
pub struct AccessSettings {
    /// Where the ACL is stored (0600); `None` keeps it in memory only, so grants end with the
    /// process. A provider in a home should always have a file: grants must survive a restart.
    pub acl_path: Option<PathBuf>,
    /// Owner-approval keys (DER SPKI) trusted from the start, besides those that owner devices
    /// register through the tunnel.
    pub owner_keys: Vec<Vec<u8>>,
}

/// What a management request changed, beyond its answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Nothing the dispatcher must act on.
    None,
    /// A grant of `guest` was revoked: close its tunnels and forget its subscriptions now.
    Revoked(BareJid),
}

/// The provider's ACL and audit log, shared by its dispatcher and call tasks.
#[derive(Debug)]
pub struct AccessGuard {
    acl: Mutex<Acl>,
    /// Bounds what guests' requests may write into the audit log (and so into the owners' audit
    /// feed): per guest, the same burst an owner device accepts.
    requests: Mutex<RequestIntake>,
    /// The highest audit sequence number already handed out as an event.
    emitted: Mutex<u64>,
    /// Whether a device key is revoked on the network (the provider's end-to-end trust store):
    /// an owner device revoked there loses its owner keys here, and its grants with them.
    revoked: std::sync::OnceLock<Revocations>,
}

struct Revocations(RevokedCheck);

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Revocations")
    }
}

/// Tells whether a device key (TLS SPKI fingerprint) of the network has been revoked.
pub type RevokedCheck = std::sync::Arc<dyn Fn(&DeviceFingerprint) -> bool + Send + Sync>;

impl AccessGuard {
    /// Opens the ACL of `network` as `settings` say, with an audit log of the default size.
    pub fn open(network: BareJid, settings: &AccessSettings) -> Result<Self> {
        Self::open_with_audit_capacity(network, settings, super::DEFAULT_AUDIT_CAPACITY)
    }

    /// As [`AccessGuard::open`], keeping at most `audit_records` audit records.
    pub fn open_with_audit_capacity(
        network: BareJid,
        settings: &AccessSettings,
        audit_records: usize,
    ) -> Result<Self> {
        let mut owners = OwnerKeys::new(network);
        for key in &settings.owner_keys {
            owners.add(key).map_err(Error::from)?;
        }
        let mut acl = match &settings.acl_path {
            Some(path) => Acl::open(path, owners, unix_now())?,
            None => Acl::in_memory(owners),
        };
        // The log is not persisted (see the audit module), so it starts empty at any size.
        if audit_records != acl.audit().capacity() {
            *acl.audit_mut() = super::AuditLog::new(audit_records);
        }
        Ok(AccessGuard {
            requests: Mutex::new(RequestIntake::new(IntakeLimits::default())),
            emitted: Mutex::new(acl.audit().records().last().map_or(0, |r| r.seq)),
            acl: Mutex::new(acl),
            revoked: std::sync::OnceLock::new(),
        })
    }

    /// Connects the network's revocations (set once, by the provider that has the trust store):
    /// from then on an owner device whose key is revoked stops being an owner, and every grant its
    /// owner keys signed stops working, before any decision is made.
    pub fn watch_revocations(&self, revoked: RevokedCheck) {
        let _ = self.revoked.set(Revocations(revoked));
    }

    /// The ACL, with the owner keys of revoked devices dropped first.
    fn acl(&self) -> std::sync::MutexGuard<'_, Acl> {
        let mut acl = self.acl.locked();
        if let Some(revoked) = self.revoked.get() {
            match acl.drop_revoked_owners(|d| (revoked.0)(d), unix_now()) {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "owner keys of revoked devices removed"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not store the removal of revoked owners")
                }
            }
        }
        acl
    }

    /// Whether the tunnel of `guest`'s device `device` may be accepted (an active grant names it).
    pub fn admits(&self, guest: &BareJid, device: &DeviceFingerprint) -> bool {
        self.acl().admits(guest, device, unix_now())
    }

    /// The network's owner keys as the ACL holds them now (revoked owners' keys dropped): what a
    /// TV verifies the household's signed playlist entries with.
    pub fn owner_keys(&self) -> super::OwnerKeys {
        self.acl().owner_keys().clone()
    }

    /// Whether `guest` holds an active grant (then it may read disco#info in clear).
    pub fn knows_guest(&self, guest: &BareJid) -> bool {
        self.acl().knows_guest(guest, unix_now())
    }

    /// The decision for a guest's call; `item` is the item a `library.*` call targets.
    pub fn check(
        &self,
        caller: &FullJid,
        device: Option<&DeviceFingerprint>,
        method: &str,
        scope: Option<Scope>,
        item: Option<&str>,
    ) -> Decision {
        self.acl()
            .check_item(caller, device, method, scope, item, unix_now())
    }

    /// Whether `guest`'s device `device` holds an active `library-item` grant for item `id` of
    /// this network (the one item shared with it).
    pub fn shares_item(
        &self,
        guest: &BareJid,
        device: Option<&DeviceFingerprint>,
        id: &str,
    ) -> bool {
        let Some(device) = device.copied() else {
            return false;
        };
        self.acl().grants(unix_now()).iter().any(|g| {
            g.active
                && g.grant.guest == *guest
                && g.grant.device == device
                && g.grant.scopes.contains(&Scope::LibraryItem)
                && g.grant
                    .item
                    .as_ref()
                    .is_some_and(|item| item.as_str() == id)
        })
    }

    /// Records a refusal the provider's policy made on its own (not the ACL's: those are recorded
    /// by [`AccessGuard::check`]), e.g. a media URI a caller may not play.
    pub fn record_refusal(
        &self,
        caller: &FullJid,
        device: Option<&DeviceFingerprint>,
        method: &str,
        reason: &str,
    ) {
        let device = device.map(DeviceFingerprint::to_hex);
        self.acl.locked().audit_mut().record(
            unix_now(),
            AuditKind::Deny,
            caller.as_str(),
            device.as_deref(),
            None,
            Some(method),
            reason,
        );
    }

    /// How many audit records were evicted (or not kept), by kind, since the provider started.
    pub fn audit_evictions(&self) -> AuditEvictions {
        self.acl.locked().audit().evictions()
    }

    /// Records a guest's request that this provider saw (the owner decides elsewhere). Repeats
    /// and floods are not recorded: a guest gets the same small burst per window as on an owner's
    /// phone. Returns whether it was recorded.
    pub fn record_request(&self, from: &FullJid, request: &AccessRequest) -> bool {
        let now = unix_now();
        let fresh = match self.requests.locked().offer(from, request, now) {
            Intake::Notify(p) => Some(p.id),
            Intake::Queued(id) => Some(id),
            Intake::Duplicate(_) | Intake::RateLimited | Intake::Full => None,
        };
        let Some(id) = fresh else {
            return false;
        };
        // Only the window counts here; nothing waits for an answer on a provider.
        self.requests.locked().take(id);
        self.acl.locked().record_request(from, request, now);
        true
    }

    /// The grants that allow calls now (after dropping those of revoked owner devices).
    pub fn active_grants(&self) -> Vec<super::GrantInfo> {
        self.acl().active_grants(unix_now())
    }

    /// The registered owner keys, each with the device (TLS key) that holds it.
    pub fn owner_devices(&self) -> Vec<(DeviceFingerprint, DeviceFingerprint)> {
        self.acl().owner_devices()
    }

    /// The ACL version now.
    pub fn version(&self) -> u64 {
        self.acl.locked().version()
    }

    /// Audit records not handed out yet (the provider sends them to the owner as events).
    pub fn new_records(&self) -> Vec<AuditRecord> {
        let mut emitted = self.emitted.locked();
        let records = self.acl.locked().audit().since(*emitted);
        if let Some(last) = records.last() {
            *emitted = last.seq;
        }
        records
    }

    /// Whether `payload` is a management request for this module.
    pub fn is_management(payload: &Element) -> bool {
        payload.ns() == NS_ACCESS
    }

    /// Answers a management request of an own-network device (the dispatcher has checked that it
    /// came through a tunnel). Returns the iq result payload and what changed.
    /// `device` is the TLS key of the asking device's tunnel: owner-key changes are an owner
    /// device's privilege.
    pub fn manage(
        &self,
        payload: Element,
        is_set: bool,
        device: Option<&DeviceFingerprint>,
    ) -> Result<(Element, Change)> {
        let now = unix_now();
        let mut acl = self.acl();
        let state = |acl: &Acl| AclState {
            version: acl.version(),
            entries: vec![],
        };
        match (payload.name(), is_set) {
            ("owner", true) => {
                let owner = OwnerKey::try_from(payload)
                    .map_err(|e| AccessError::Malformed(format!("<owner>: {e}")))?;
                let by = device.copied().ok_or_else(|| {
                    AccessError::Malformed("owner keys are managed through a tunnel".into())
                })?;
                if owner.remove {
                    let key = DeviceFingerprint::from_spki(&owner.key);
                    if acl.remove_owner_key(&key, &by, now)? {
                        tracing::info!(owner = %key, "owner-approval key removed");
                    }
                } else {
                    let holder = owner.device.unwrap_or(by);
                    let (fp, new) = acl.add_owner_key(&owner.key, holder, by)?;
                    if new {
                        tracing::info!(owner = %fp, device = %holder, "owner-approval key registered");
                    }
                }
                Ok((state(&acl).into(), Change::None))
            }
            ("grant", true) => {
                let grant = SignedGrant::parse(payload)?;
                let id = grant.id.clone();
                acl.install(grant, now)?;
                tracing::info!(grant = %id, "grant installed");
                Ok((state(&acl).into(), Change::None))
            }
            ("revoke", true) => {
                let revoke = SignedRevoke::parse(payload)?;
                let outcome = acl.revoke(&revoke, now)?;
                tracing::info!(grant = %revoke.id, ?outcome, "grant revoked");
                let change = match outcome {
                    RevokeOutcome::Revoked { guest } => Change::Revoked(guest),
                    _ => Change::None,
                };
                Ok((state(&acl).into(), change))
            }
            ("owners", false) => {
                let devices: std::collections::BTreeMap<_, _> =
                    acl.owner_devices().into_iter().collect();
                let mut owners = Vec::new();
                for spki in acl.owner_keys().spkis() {
                    let fp = DeviceFingerprint::from_spki(&spki);
                    owners.push(OwnerKey {
                        key: spki,
                        device: devices.get(&fp).copied(),
                        remove: false,
                    });
                }
                Ok((super::OwnerList { owners }.into(), Change::None))
            }
            ("acl", false) => {
                let entries = acl
                    .grants(now)
                    .into_iter()
                    .map(|g| AclEntry {
                        active: g.active,
                        revoked_at: g.revoked_at,
                        grant: g.grant,
                    })
                    .collect();
                let answer = AclState {
                    version: acl.version(),
                    entries,
                };
                Ok((answer.into(), Change::None))
            }
            ("audit", false) => {
                let query = AuditPage::try_from(payload)
                    .map_err(|e| AccessError::Malformed(format!("<audit>: {e}")))?;
                let records = acl
                    .audit()
                    .since(query.after)
                    .into_iter()
                    .take(MAX_AUDIT_PAGE)
                    .map(AuditEntry::from)
                    .collect();
                let page = AuditPage {
                    after: query.after,
                    records,
                };
                Ok((page.into(), Change::None))
            }
            (name, set) => Err(Error::new(
                ErrorKind::BadParams,
                format!(
                    "no access request <{name}/> as iq {}",
                    if set { "set" } else { "get" }
                ),
            )),
        }
    }
}
