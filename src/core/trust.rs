//! The trust facet, the same for both roles: pair (a phone enters the code a TV shows), list the
//! trusted devices, revoke one everywhere (the network's signed revocation list), rotate the
//! network password after a revocation, and hear how tunnels and pairing attempts end. A
//! controller hands it out as [`crate::core::controller::Controller::trust`], a provider as
//! [`crate::core::provider::Provider::trust`]; both hold the same [`E2eEndpoint`].

use tokio::sync::{broadcast, watch};
use xmpp_parsers::jid::{BareJid, FullJid};

use crate::core::e2e::{E2eEndpoint, PasswordRotation, TrustSource, TrustedDevice, TunnelFailure};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::DeviceFingerprint;
use crate::core::lazy_broadcast::LazyBroadcast;

/// How a pairing attempt on a (code-showing) provider ended.
#[derive(Debug, Clone)]
pub enum PairingOutcome {
    /// `peer`'s key `fingerprint` is now pinned.
    Paired {
        /// The controller that paired.
        peer: FullJid,
        /// Its key.
        fingerprint: DeviceFingerprint,
    },
    /// The attempt failed (wrong or expired code, pairing not armed or locked); nothing pinned.
    Failed {
        /// Who tried.
        peer: FullJid,
        /// Why it failed.
        error: Error,
    },
}

/// The trust of one device: its pins, pairing, revocation and the network password. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Trust {
    e2e: E2eEndpoint,
    failures: LazyBroadcast<TunnelFailure>,
    /// Providers only: the outcomes of pairing attempts with the code this device shows.
    pairings: Option<LazyBroadcast<PairingOutcome>>,
}

impl Trust {
    /// The trust facet over `e2e`; `failures` and `pairings` are the role's broadcasts.
    pub(crate) fn new(
        e2e: E2eEndpoint,
        failures: LazyBroadcast<TunnelFailure>,
        pairings: Option<LazyBroadcast<PairingOutcome>>,
    ) -> Self {
        Self {
            e2e,
            failures,
            pairings,
        }
    }

    /// Pairs with `provider`, which shows `code`: both devices pin each other's key, the tunnel
    /// stays up for the calls that follow, and the provider is returned as now trusted. A wrong,
    /// expired or reused code is `Forbidden` (and counts towards the provider's lock-out); so is
    /// a device of another network (a guest asks the owner instead).
    pub async fn pair(&self, provider: &FullJid, code: &str) -> Result<TrustedDevice> {
        let tunnel = self.e2e.pair(provider, code).await?;
        Ok(self.trusted(&provider.to_bare(), &tunnel.peer_fingerprint()))
    }

    /// Arms pairing on this device and returns a fresh 6-digit code to show (valid 5 minutes,
    /// single use; only devices of this network can use it).
    pub fn start_pairing(&self) -> Result<String> {
        self.e2e.start_pairing()
    }

    /// Disarms pairing: the code shown is no longer accepted.
    pub fn stop_pairing(&self) {
        self.e2e.stop_pairing();
    }

    /// How pairing attempts with the code this device shows end from now on: providers only
    /// (`Config` error on a controller, which never shows a code).
    pub fn pairing_outcomes(&self) -> Result<broadcast::Receiver<PairingOutcome>> {
        self.pairings
            .as_ref()
            .map(|p| p.subscribe())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    "only a provider shows a pairing code; a controller pairs with Trust::pair",
                )
            })
    }

    /// The trusted-device record of `fingerprint` of `jid` as this device holds it.
    pub fn trusted(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> TrustedDevice {
        TrustedDevice {
            jid: jid.to_string(),
            fingerprint: fingerprint.to_hex(),
            source: self
                .e2e
                .trust()
                .source(jid, fingerprint)
                .unwrap_or(TrustSource::Paired),
        }
    }

    /// The devices whose keys this device trusts.
    pub fn trusted_devices(&self) -> Vec<TrustedDevice> {
        self.e2e.trust().list()
    }

    /// Stops trusting `fingerprint` of the devices of `jid` and closes every tunnel using it;
    /// for a device of this network it also publishes a signed revocation list, so every device
    /// of the network drops the key and never takes it back (see
    /// [`E2eEndpoint::revoke_everywhere`]). Returns, once the list is published, whether the key
    /// was trusted here; an error means the network was not told (repeat the call).
    pub async fn revoke(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> Result<bool> {
        self.e2e.revoke_everywhere(jid, fingerprint).await
    }

    /// This device's key fingerprint, to show or to revoke elsewhere.
    pub fn fingerprint(&self) -> DeviceFingerprint {
        self.e2e.fingerprint()
    }

    /// Tunnels that fail or are refused from now on: altered bytes in the path (`Tls`), an
    /// untrusted key (`Forbidden`).
    pub fn tunnel_failures(&self) -> broadcast::Receiver<TunnelFailure> {
        self.failures.subscribe()
    }

    /// Gives the network a new random password and hands it to every trusted device online,
    /// through the tunnel, so a revoked device is out for good (see
    /// [`E2eEndpoint::rotate_network_password`]).
    pub async fn rotate_network_password(&self) -> Result<PasswordRotation> {
        self.e2e.rotate_network_password().await
    }

    /// The network password this device logs in with, now and at every change (a rotation from
    /// here or from another device): the app stores it where it keeps the password.
    pub fn watch_password(&self) -> watch::Receiver<String> {
        self.e2e.session().watch_password()
    }

    /// The end-to-end endpoint underneath (tunnels, the XEP-0189 key directory).
    pub fn endpoint(&self) -> &E2eEndpoint {
        &self.e2e
    }
}
