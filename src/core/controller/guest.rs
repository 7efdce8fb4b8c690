//! The guest pass: a phone of another household asks for access ([`GuestPass::request_access`]),
//! shows the confirmation code, and once the user confirmed it pins the host's device keys and
//! drives the host's providers like its own; every call goes through a tunnel the host's provider
//! admits only while the grant is active (DESIGN §5, spec §3.3).

use crate::core::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::Controller;
use crate::core::access::{
    AccessDecision, AccessRequest, DeviceFingerprint, GrantId, ItemId, Reason, Scope, Transcript,
    APPROVED,
};
use crate::core::e2e::{E2eEndpoint, TrustSource};
use crate::core::error::{Error, ErrorKind, Result};

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

#[derive(Debug, Clone, PartialEq)]
pub struct GuestAccess {
    /// The host network.
    pub network: BareJid,
    /// The grant id.
    pub grant: GrantId,
    /// When it expires (host's clock, seconds since the epoch).
    pub expires: u64,
    /// The host devices whose keys [`crate::core::controller::GuestPass::confirm_access`] pins.
    pub devices: Vec<DeviceFingerprint>,
    /// The six digits to compare with the ones on the owner's phone
    /// ([`crate::core::controller::Issued::confirmation_code`]) before confirming: different
    /// digits mean the server changed a key on the way.
    pub confirmation_code: String,
    /// Fingerprint of the owner-approval key that signed the approval.
    pub owner_key: DeviceFingerprint,
}

/// The guest side of a controller ([`Controller::guest`]): ask another household for access,
/// confirm or reject its answer. Cheap to clone; holds the controller.
#[derive(Clone, Debug)]
pub struct GuestPass {
    controller: Controller,
}

impl GuestPass {
    pub(super) fn new(controller: Controller) -> Self {
        Self { controller }
    }

    fn state(&self) -> &GuestState {
        &self.controller.shared.guest
    }

    fn tunnel_layer(&self) -> Result<&E2eEndpoint> {
        self.controller.shared.e2e.as_ref().ok_or_else(no_tunnel)
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
        if network == self.controller.shared.network {
            return Err(Error::new(
                ErrorKind::BadParams,
                "a device needs no guest access to its own network",
            ));
        }
        let mut request = AccessRequest::new(
            e2e.fingerprint(),
            scopes,
            reason.map(Reason::new).transpose()?,
        );
        request.item = item;
        request.validate()?;
        let (tx, rx) = oneshot::channel();
        {
            let mut asked = self.controller.shared.guest.asked.locked();
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
        self.controller
            .shared
            .directory
            .locked()
            .trust_network(network.clone());
        let to = Jid::from(network.clone());
        self.controller
            .shared
            .session
            .send(Presence::new(PresenceType::Subscribe).with_to(to.clone()))?;
        let mut message = Message::new_with_type(MessageType::Headline, Some(to));
        message.payloads.push(request.into());
        self.controller.shared.session.send(message)?;
        let decision = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(d)) => d,
            Ok(Err(_)) => return Err(Error::new(ErrorKind::Cancelled, "controller closed")),
            Err(_) => {
                self.controller.shared.guest.asked.locked().remove(&network);
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
            guest: &self.controller.shared.network,
            guest_device: &e2e.fingerprint(),
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
            owner_key: DeviceFingerprint::from_spki(&introduction.owner),
            network: network.clone(),
            grant: grant.clone(),
            expires,
            devices: fingerprints,
        };
        self.state()
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
            .state()
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
        self.state().granted.locked().insert(network.clone());
        tracing::info!(%network, grant = %access.grant, devices = access.devices.len(), "guest access confirmed");
        Ok(access)
    }

    /// The codes differed (or the user changed his mind): forgets the approval; nothing of the
    /// host was trusted. Returns whether one was waiting.
    pub fn reject_access(&self, network: &BareJid) -> bool {
        let had = self.state().introduced.locked().remove(network).is_some();
        self.distrust(network);
        had
    }

    fn distrust(&self, network: &BareJid) {
        let gone = self
            .controller
            .shared
            .directory
            .locked()
            .distrust_network(network);
        for update in gone {
            let _ = self.controller.shared.updates.send(update);
        }
    }
}

pub(super) fn no_tunnel() -> Error {
    Error::new(
        ErrorKind::Config,
        "guest access needs the end-to-end tunnel (set ControllerConfig::e2e)",
    )
}
