//! Guest access from the phones' side (DESIGN §5, spec §3.3).
//!
//! - **Owner** (a phone of the host network with [`ControllerConfig::access`]): hears guests'
//!   requests ([`Controller::access_requests`]), and approves, denies, lists and revokes grants.
//!   Approving signs a grant with the owner-approval key of its [`KeyStore`], pushes it to every
//!   online provider of the network through the end-to-end tunnel, opens mutual presence
//!   subscription with the guest, and tells the guest which device keys to pin.
//! - **Guest** (a phone of another network with end-to-end settings): asks with
//!   [`Controller::request_access`] and, once approved, discovers and drives the host's providers
//!   like its own; every call goes through a tunnel the host's provider admits only while the
//!   grant is active.
//!
//! The providers decide; nothing here is enforcement. The owner side only signs and delivers.

use crate::core::sync::Locked;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::{Controller, Dispatcher, Shared};
use crate::core::access::{
    unix_now, AccessDecision, AccessError, AccessRequest, AclEntry, AclState, AuditPage,
    AuditRecord, DecisionDevice, DeviceFingerprint, GrantDraft, GrantId, GrantInfo, Intake,
    IntakeLimits, ItemId, OwnerKey, OwnerList, PendingRequest, Reason, RequestIntake,
    RevokedGrants, Scope, SignedGrant, SignedRevoke, Transcript, APPROVED, DENIED,
    MAX_DECISION_DEVICES, NS_ACCESS,
};
use crate::core::e2e::{E2eEndpoint, TrustSource};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{KeyPolicy, KeyStore, KeyStoreError};
use crate::core::rpc;
use crate::core::session::IqReply;

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
    config: OwnerAccess,
    spki: Vec<u8>,
    intake: Mutex<RequestIntake>,
    requests: broadcast::Sender<PendingRequest>,
    /// The grants this phone revoked: never copied to a provider, revoked wherever still held.
    revoked: Mutex<RevokedGrants>,
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

/// What a guest device waits for: network → (our device, waiter).
#[derive(Default)]
pub(super) struct GuestState {
    pub(super) asked: Mutex<HashMap<BareJid, oneshot::Sender<AccessDecision>>>,
    /// Networks that approved us (guest side) or that we approved (owner side): their
    /// subscription requests and disco#info queries are answered.
    pub(super) granted: Mutex<HashSet<BareJid>>,
    /// Approvals this guest device received whose confirmation code the user has not confirmed
    /// yet: their host keys are not pinned (at most one per host, as asks are).
    pub(super) introduced: Mutex<HashMap<BareJid, GuestAccess>>,
}

/// A grant delivered to the providers of this network.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The signed grant.
    pub grant: SignedGrant,
    /// The providers that installed it, with their tunnel key.
    pub installed_on: Vec<(FullJid, [u8; 32])>,
    /// The providers that refused it or could not be reached, and why.
    pub failed: Vec<(FullJid, Error)>,
    /// For an approved request: the six digits the owner's phone shows, which the guest's phone
    /// must show too ([`GuestAccess::confirmation_code`]); `None` for a grant without a request.
    pub confirmation_code: Option<String>,
}

/// An owner-approval key of the network, as its providers hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerKeyInfo {
    /// The key's fingerprint.
    pub key: DeviceFingerprint,
    /// The key (DER SPKI), what [`Controller::remove_owner`] takes.
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

/// What a guest obtained from a host network.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestAccess {
    /// The host network.
    pub network: BareJid,
    /// The grant id.
    pub grant: GrantId,
    /// When it expires (host's clock, seconds since the epoch).
    pub expires: u64,
    /// The host devices whose keys [`Controller::confirm_access`] pins.
    pub devices: Vec<[u8; 32]>,
    /// The six digits to compare with the ones on the owner's phone ([`Issued::confirmation_code`])
    /// before confirming: different digits mean the server changed a key on the way.
    pub confirmation_code: String,
    /// Fingerprint of the owner-approval key that signed the approval.
    pub owner_key: [u8; 32],
}

impl Controller {
    fn owner(&self) -> Result<&OwnerState> {
        self.shared.owner.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "this controller is not an owner device (set ControllerConfig::access)",
            )
        })
    }

    fn tunnel_layer(&self) -> Result<&E2eEndpoint> {
        self.shared.e2e.as_ref().ok_or_else(no_tunnel)
    }

    /// Guests' requests from now on (owner devices). Each arrives once, after de-duplication and
    /// rate limiting; [`Controller::pending_access_requests`] lists those not answered yet.
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
        self.shared.guest.granted.locked().insert(guest.clone());
        // Mutual subscription (spec §6): the guest sees the providers, they see him leave.
        for type_ in [PresenceType::Subscribed, PresenceType::Subscribe] {
            self.shared
                .session
                .send(Presence::new(type_).with_to(Jid::from(guest.clone())))?;
        }
        let devices: Vec<DeviceFingerprint> = issued
            .installed_on
            .iter()
            .map(|(_, fp)| DeviceFingerprint(*fp))
            .collect();
        let transcript = Transcript {
            host: &self.shared.network,
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
                    jid: self.shared.network.clone(),
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
        self.shared.session.send(
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
        self.shared.session.send(message)
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
        let targets = self.shared.own_providers()?;
        let register = Element::from(OwnerKey::register(owner.spki.clone()));
        let (ready, mut failed) = self.shared.each_provider(&targets, true, register).await;
        let version = ready.values().map(|s| s.version).max().unwrap_or(0);
        let now = unix_now();
        let mut draft = GrantDraft::new(
            self.shared.network.clone(),
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
            .shared
            .each_provider(&reached, true, Element::from(grant.clone()))
            .await;
        failed.extend(refused);
        let e2e = self.tunnel_layer()?;
        let installed_on: Vec<(FullJid, [u8; 32])> = installed
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
    /// with [`Controller::add_owner`]; until then the providers refuse this key (it is not the
    /// household's first).
    pub fn owner_public_key(&self) -> Result<Vec<u8>> {
        Ok(self.owner()?.spki.clone())
    }

    /// The owner keys the network's online providers hold (merged by key), with the device that
    /// holds each when known.
    pub async fn owner_keys(&self) -> Result<Vec<OwnerKeyInfo>> {
        self.owner()?;
        let targets = self.shared.own_providers()?;
        let calls = targets.iter().map(|jid| async move {
            let query = Element::from(OwnerList { owners: vec![] });
            let answer = self.shared.access_iq(jid, false, query).await;
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
    /// [`Controller::owner_public_key`] on that phone), held by the device whose TLS key is
    /// `device`, on every online provider. Only an owner device may; returns where it took.
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
        let targets = self.shared.own_providers()?;
        let (applied, failed) = self
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
        let targets = self.shared.own_providers()?;
        let (states, failed) = self
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
        let targets = self.shared.own_providers()?;
        let (states, mut failed) = self
            .shared
            .each_provider(&targets, false, Element::from(empty_acl()))
            .await;
        let version = states.values().map(|s| s.version).max().unwrap_or(0) + 1;
        let grants = merge_grants(states.values().cloned());
        let revoke = SignedRevoke::sign(
            self.shared.network.clone(),
            id.clone(),
            version,
            owner.config.store.as_ref(),
            &owner.config.alias,
        )?;
        let reached: Vec<FullJid> = states.into_keys().collect();
        let (applied, refused) = self
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
                self.shared.guest.granted.locked().remove(&guest);
                for type_ in [PresenceType::Unsubscribed, PresenceType::Unsubscribe] {
                    self.shared
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
        let answer = self.shared.access_iq(provider, false, query.into()).await?;
        let page = AuditPage::try_from(answer)
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("<audit>: {e}")))?;
        Ok(page.records.into_iter().map(AuditRecord::from).collect())
    }

    /// Asks `network` (another household) for access, as a guest, and waits at most `timeout`
    /// for the owner's answer. On approval the host's device keys are pinned and its providers
    /// appear in [`Controller::providers`] as their presence arrives.
    pub async fn request_access(
        &self,
        network: BareJid,
        scopes: Vec<Scope>,
        item: Option<ItemId>,
        reason: Option<&str>,
        timeout: Duration,
    ) -> Result<GuestAccess> {
        let e2e = self.tunnel_layer()?;
        if network == self.shared.network {
            return Err(Error::new(
                ErrorKind::BadParams,
                "a device needs no guest access to its own network",
            ));
        }
        let mut request = AccessRequest::new(
            DeviceFingerprint(e2e.fingerprint()),
            scopes,
            reason.map(Reason::new).transpose()?,
        );
        request.item = item;
        request.validate()?;
        let (tx, rx) = oneshot::channel();
        {
            let mut asked = self.shared.guest.asked.locked();
            if asked
                .get(&network)
                .is_some_and(|waiter| !waiter.is_closed())
            {
                return Err(Error::new(
                    ErrorKind::BadParams,
                    format!("already waiting for {network} to answer an access request"),
                ));
            }
            asked.insert(network.clone(), tx);
        }
        // Presence of the host arrives as soon as it accepts: be ready to list its providers.
        self.shared
            .directory
            .locked()
            .trust_network(network.clone());
        let to = Jid::from(network.clone());
        self.shared
            .session
            .send(Presence::new(PresenceType::Subscribe).with_to(to.clone()))?;
        let mut message = Message::new_with_type(MessageType::Headline, Some(to));
        message.payloads.push(request.into());
        self.shared.session.send(message)?;
        let decision = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(d)) => d,
            Ok(Err(_)) => return Err(Error::new(ErrorKind::Cancelled, "controller closed")),
            Err(_) => {
                self.shared.guest.asked.locked().remove(&network);
                self.distrust(&network);
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{network} did not answer the access request"),
                ));
            }
        };
        if decision.result != APPROVED {
            self.distrust(&network);
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("{network} denied access"),
            ));
        }
        let (Some(grant), Some(expires)) = (decision.grant.clone(), decision.expires) else {
            return Err(Error::new(
                ErrorKind::Protocol,
                "approval without grant id or expiry",
            ));
        };
        let Some(introduction) = decision.introduction.as_ref() else {
            self.distrust(&network);
            return Err(Error::new(
                ErrorKind::Forbidden,
                "an approval without the owner's signature (a server answering for the host?)",
            ));
        };
        let fingerprints: Vec<DeviceFingerprint> =
            decision.devices.iter().map(|d| d.fingerprint).collect();
        let transcript = Transcript {
            host: &network,
            guest: &self.shared.network,
            guest_device: &DeviceFingerprint(e2e.fingerprint()),
            grant: &grant,
            expires,
            devices: &fingerprints,
        };
        if let Err(e) = transcript.verify(introduction) {
            self.distrust(&network);
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!("the approval's signature does not verify: {e}"),
            ));
        }
        let access = GuestAccess {
            confirmation_code: transcript.confirmation_code(&introduction.owner),
            owner_key: DeviceFingerprint::from_spki(&introduction.owner).0,
            network: network.clone(),
            grant: grant.clone(),
            expires,
            devices: fingerprints.iter().map(|d| d.0).collect(),
        };
        self.shared
            .guest
            .introduced
            .locked()
            .insert(network.clone(), access.clone());
        tracing::info!(%network, %grant, "guest access approved; waiting for the user to confirm the code");
        Ok(access)
    }

    /// The user saw the same confirmation code on both phones: pins the host's device keys (for
    /// as long as the grant lasts) so its providers can be driven. Until then nothing of the host
    /// is trusted. `Forbidden` when there is no approval from `network` waiting.
    pub fn confirm_access(&self, network: &BareJid) -> Result<GuestAccess> {
        let e2e = self.tunnel_layer()?;
        let access = self
            .shared
            .guest
            .introduced
            .locked()
            .remove(network)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Forbidden,
                    format!("no approval from {network} is waiting for confirmation"),
                )
            })?;
        for device in &access.devices {
            e2e.trust().pin(
                network,
                device,
                TrustSource::Host {
                    grant: access.grant.to_string(),
                    expires: access.expires,
                },
            )?;
        }
        self.shared.guest.granted.locked().insert(network.clone());
        tracing::info!(%network, grant = %access.grant, devices = access.devices.len(), "guest access confirmed");
        Ok(access)
    }

    /// The codes differed (or the user changed his mind): forgets the approval; nothing of the
    /// host was trusted. Returns whether one was waiting.
    pub fn reject_access(&self, network: &BareJid) -> bool {
        let had = self
            .shared
            .guest
            .introduced
            .locked()
            .remove(network)
            .is_some();
        self.distrust(network);
        had
    }

    fn distrust(&self, network: &BareJid) {
        let gone = self.shared.directory.locked().distrust_network(network);
        for update in gone {
            let _ = self.shared.updates.send(update);
        }
    }
}

fn no_tunnel() -> Error {
    Error::new(
        ErrorKind::Config,
        "guest access needs the end-to-end tunnel (set ControllerConfig::e2e)",
    )
}

/// The owner's side of keeping the network's providers in agreement.
impl Shared {
    /// Online providers of our own network.
    pub(super) fn own_providers(&self) -> Result<Vec<FullJid>> {
        let network = &self.network;
        let targets: Vec<FullJid> = self
            .directory
            .locked()
            .providers()
            .into_iter()
            .map(|p| p.jid)
            .filter(|j| j.to_bare() == *network)
            .collect();
        if targets.is_empty() {
            return Err(Error::new(
                ErrorKind::ProviderUnavailable,
                "no provider of this network is online",
            ));
        }
        Ok(targets)
    }

    /// Sends one management request to each of `targets` (concurrently); the `<acl/>` states of
    /// those that answered, and the failures of the others.
    pub(super) async fn each_provider(
        &self,
        targets: &[FullJid],
        set: bool,
        payload: Element,
    ) -> (BTreeMap<FullJid, AclState>, Vec<(FullJid, Error)>) {
        let calls = targets.iter().map(|jid| {
            let payload = payload.clone();
            async move {
                let answer = self.access_iq(jid, set, payload).await.and_then(|el| {
                    AclState::try_from(el)
                        .map_err(|e| Error::new(ErrorKind::Protocol, format!("<acl>: {e}")))
                });
                (jid.clone(), answer)
            }
        });
        let mut ok = BTreeMap::new();
        let mut failed = Vec::new();
        for (jid, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok(state) => {
                    ok.insert(jid, state);
                }
                Err(e) => {
                    tracing::info!(provider = %jid, error = %e, "access request failed");
                    failed.push((jid, e));
                }
            }
        }
        (ok, failed)
    }

    /// One management iq through the tunnel to `provider`.
    pub(super) async fn access_iq(
        &self,
        provider: &FullJid,
        set: bool,
        payload: Element,
    ) -> Result<Element> {
        let e2e = self.e2e.as_ref().ok_or_else(no_tunnel)?;
        let to = Jid::from(provider.clone());
        let iq = if set {
            Iq::Set {
                from: None,
                to: Some(to),
                id: String::new(),
                payload,
            }
        } else {
            Iq::Get {
                from: None,
                to: Some(to),
                id: String::new(),
                payload,
            }
        };
        match e2e.request(iq, self.rpc_timeout).await? {
            IqReply::Result(Some(el)) => Ok(el),
            IqReply::Result(None) => Err(Error::new(ErrorKind::Protocol, "empty access answer")),
            IqReply::Error(e) => Err(rpc::error_from_stanza("access", &e)),
        }
    }

    /// A provider of our network came (back) online: bring its ACL in line with the others'. Grants
    /// active elsewhere that it lacks are installed (a provider that was off when the owner
    /// approved); grants revoked elsewhere that it still holds are revoked (a provider that was off
    /// when the owner revoked: revocation must reach every provider). Runs on owner devices only.
    pub(super) async fn sync_access(self: Arc<Self>, newcomer: FullJid) {
        let Some(owner) = &self.owner else { return };
        let Ok(targets) = self.own_providers() else {
            return;
        };
        let register = Element::from(OwnerKey::register(owner.spki.clone()));
        if let Err(e) = self.access_iq(&newcomer, true, register).await {
            // A provider that takes no guests, or not reachable: nothing to keep in agreement.
            tracing::debug!(provider = %newcomer, error = %e, "no access sync");
            return;
        }
        // Owner keys this phone removed while the newcomer was away go there too (their grants
        // with them). Only asked when there is something to catch up on: one iq less per sync.
        let removed_any = owner.revoked.locked().removed_any_owner();
        let listed = if removed_any {
            self.access_iq(
                &newcomer,
                false,
                Element::from(OwnerList { owners: vec![] }),
            )
            .await
            .ok()
        } else {
            None
        };
        if let Some(el) = listed {
            for held in OwnerList::try_from(el)
                .map(|l| l.owners)
                .unwrap_or_default()
            {
                if !owner.revoked.locked().owner_removed(&held.key) {
                    continue;
                }
                let removal = OwnerKey {
                    key: held.key,
                    device: None,
                    remove: true,
                };
                match self
                    .access_iq(&newcomer, true, Element::from(removal))
                    .await
                {
                    Ok(_) => tracing::info!(provider = %newcomer, "removed owner key caught up"),
                    Err(e) => tracing::info!(provider = %newcomer, error = %e,
                        "owner key removal refused"),
                }
            }
        }
        let (states, _) = self
            .each_provider(&targets, false, Element::from(empty_acl()))
            .await;
        let Some(theirs) = states.get(&newcomer) else {
            return;
        };
        let others = merge_grants(
            states
                .iter()
                .filter(|(jid, _)| **jid != newcomer)
                .map(|(_, s)| s.clone()),
        );
        let held: BTreeMap<GrantId, &AclEntry> = theirs
            .entries
            .iter()
            .map(|e| (e.grant.id.clone(), e))
            .collect();
        let version = states.values().map(|s| s.version).max().unwrap_or(0) + 1;
        // What this phone revoked counts as revoked, whatever the providers online say: the one
        // that knew may be off, and the newcomer (or the only other one) may have missed it.
        let revoked_here = |id: &GrantId| owner.revoked.locked().contains(id);
        let mut infos = others;
        for entry in &theirs.entries {
            if revoked_here(&entry.grant.id) && !infos.iter().any(|i| i.grant.id == entry.grant.id)
            {
                infos.push(GrantInfo {
                    grant: entry.grant.clone(),
                    revoked_at: Some(unix_now()),
                    active: false,
                });
            }
        }
        for info in infos {
            let mine = held.get(&info.grant.id);
            let revoked_elsewhere = info.revoked_at.is_some() || revoked_here(&info.grant.id);
            let payload = match (mine, revoked_elsewhere) {
                (Some(entry), true) if entry.revoked_at.is_none() => {
                    match SignedRevoke::sign(
                        self.network.clone(),
                        info.grant.id.clone(),
                        version,
                        owner.config.store.as_ref(),
                        &owner.config.alias,
                    ) {
                        Ok(revoke) => Element::from(revoke),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot sign a catch-up revocation");
                            continue;
                        }
                    }
                }
                (None, false) if info.active => Element::from(info.grant.clone()),
                _ => continue,
            };
            match self.access_iq(&newcomer, true, payload).await {
                Ok(_) => tracing::info!(provider = %newcomer, grant = %info.grant.id,
                    revoked = revoked_elsewhere, "access caught up"),
                Err(e) => tracing::info!(provider = %newcomer, grant = %info.grant.id,
                    error = %e, "access catch-up refused"),
            }
        }
    }
}

fn no_request(id: u64) -> Error {
    Error::new(
        ErrorKind::BadParams,
        format!("no pending access request {id}"),
    )
}

fn empty_acl() -> AclState {
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

/// One list from the lists of several providers: by grant id; revoked anywhere wins.
fn merge_grants(states: impl Iterator<Item = AclState>) -> Vec<GrantInfo> {
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

impl Dispatcher {
    /// Access payloads in a headline message: a guest's `<request>` (owner devices) or an owner's
    /// `<decision>` (guest devices). Returns whether the message was one of those.
    pub(super) fn on_access_message(&self, message: &Message) -> bool {
        let Some(payload) = message
            .payloads
            .iter()
            .find(|p| p.ns() == NS_ACCESS && (p.name() == "request" || p.name() == "decision"))
        else {
            return false;
        };
        let Some(Ok(from)) = message.from.clone().map(Jid::try_into_full) else {
            return true;
        };
        if from.to_bare() == self.network {
            return true;
        }
        if payload.name() == "request" {
            self.on_request(from, payload.clone());
        } else {
            self.on_decision(from, payload.clone());
        }
        true
    }

    fn on_request(&self, from: FullJid, payload: Element) {
        let Some(owner) = &self.shared.owner else {
            return;
        };
        let request = match AccessRequest::parse(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(%from, error = %e, "malformed access request ignored");
                return;
            }
        };
        let intake = owner.intake.locked().offer(&from, &request, unix_now());
        match intake {
            Intake::Notify(pending) => {
                tracing::info!(%from, id = pending.id, "access request");
                let _ = owner.requests.send(pending);
            }
            other => tracing::debug!(%from, ?other, "access request not notified"),
        }
    }

    fn on_decision(&self, from: FullJid, payload: Element) {
        let network = from.to_bare();
        let decision = match AccessDecision::try_from(payload) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(%from, error = %e, "malformed access decision ignored");
                return;
            }
        };
        let bad = decision.devices.len() > MAX_DECISION_DEVICES
            || decision.devices.iter().any(|d| d.jid != network)
            || !matches!(decision.result.as_str(), APPROVED | DENIED);
        if bad {
            tracing::info!(%from, "access decision with foreign or too many devices ignored");
            return;
        }
        let own_device = self.shared.e2e.as_ref().map(|e| e.fingerprint());
        if own_device != Some(decision.for_device.0) {
            tracing::debug!(%from, "access decision for another device ignored");
            return;
        }
        match self.shared.guest.asked.locked().remove(&network) {
            Some(waiter) => {
                let _ = waiter.send(decision);
            }
            None => tracing::debug!(%from, "unsolicited access decision ignored"),
        }
    }

    /// A subscription request: accepted only from a network we asked for access (or that
    /// granted it); others stay pending on the server for the app to decide.
    pub(super) fn on_subscription(&self, presence: &Presence) {
        let Some(from) = presence.from.as_ref().map(Jid::to_bare) else {
            return;
        };
        let known = self.shared.guest.asked.locked().contains_key(&from)
            || self.shared.guest.granted.locked().contains(&from);
        if !known {
            tracing::debug!(%from, "subscription request left pending");
            return;
        }
        let answer = Presence::new(PresenceType::Subscribed).with_to(Jid::from(from.clone()));
        if self.shared.session.send(answer).is_err() {
            tracing::debug!(%from, "could not accept subscription: session ended");
        }
    }
}
