//! The end-to-end tunnel through UniFFI (issue 5, item 6): the options that turn it on for a role
//! ([`E2eOptions`] in [`ConnectionConfig::e2e`]), pairing (the provider shows a code, the controller
//! types it), the trusted-device list and revocation. Conversions only; every rule (pinning, SPAKE2,
//! rate limits, which traffic must be tunnelled) lives in `crate::core::e2e`.

use std::sync::Arc;

use super::controller::{parse_provider, Controller};
use super::error::{bare_jid, config, PmnError};
use super::keystore::DeviceKeyStore;
use super::provider::Provider;
use super::records::ConnectionConfig;
use super::runtime;
use super::task::{forward, TaskHandle};
use crate::core::e2e::xml::parse_fingerprint_hex;
use crate::core::e2e::{
    E2eEndpoint, E2eSettings, TrustSource as CoreSource, TrustStore,
    TrustedDevice as CoreTrustedDevice,
};
use crate::core::identity::{fingerprint_hex, DeviceIdentity};
use crate::core::provider::PairingOutcome;

/// Turns on the end-to-end tunnel for a controller or provider (put it in
/// [`ConnectionConfig::e2e`]). The TLS key `key_alias` of `key_store` is created on first use and
/// never leaves the store.
///
/// Kotlin:
/// ```kotlin
/// val keys = DeviceKeyStore.software(dir)
/// val config = ConnectionConfig(..., e2e = E2eOptions(keys, trustFile = "$dir/trust.json"))
/// ```
#[derive(Debug, Clone, uniffi::Record)]
pub struct E2eOptions {
    /// Where this device's TLS identity key lives.
    pub key_store: Arc<DeviceKeyStore>,
    /// The alias of the TLS identity key in `key_store`.
    #[uniffi(default = "tls")]
    pub key_alias: String,
    /// JSON file of the pinned peer keys (created on the first pairing); `None` keeps them in
    /// memory only, so they are lost when the object is closed. Use one file per role object.
    #[uniffi(default = None)]
    pub trust_file: Option<String>,
    /// Control traffic only through the tunnel (the default). `false` also serves and accepts
    /// plain traffic, for interop with clients that lack the tunnel.
    #[uniffi(default = true)]
    pub require_tunnel: bool,
}

impl E2eOptions {
    /// The core settings: loads (or creates) the identity key and opens the trust store.
    pub(crate) fn to_settings(&self, device: &str) -> Result<E2eSettings, PmnError> {
        let identity =
            DeviceIdentity::load_or_generate(self.key_store.key_store(), &self.key_alias, device)
                .map_err(|e| config(format!("device identity key {:?}: {e}", self.key_alias)))?;
        let trust = match &self.trust_file {
            Some(path) => TrustStore::open(path)?,
            None => TrustStore::in_memory(),
        };
        let mut settings = E2eSettings::new(identity, Arc::new(trust));
        settings.require_tunnel = self.require_tunnel;
        Ok(settings)
    }
}

impl ConnectionConfig {
    /// Checks the transport policy: the tunnel, or plain only when asked for explicitly.
    pub(crate) fn check_transport(&self) -> Result<(), PmnError> {
        match (&self.e2e, self.plain_transport) {
            (Some(_), false) | (None, true) => Ok(()),
            (Some(_), true) => Err(config("set either e2e or plain_transport, not both")),
            (None, false) => Err(config(
                "the end-to-end tunnel is required: set e2e (and pair the device), or \
                 plain_transport = true for a peer without the tunnel",
            )),
        }
    }

    /// The end-to-end settings of this configuration: `None` only with `plain_transport`.
    pub(crate) fn e2e_settings(&self) -> Result<Option<E2eSettings>, PmnError> {
        self.check_transport()?;
        self.e2e
            .as_ref()
            .map(|o| o.to_settings(&self.device))
            .transpose()
    }
}

/// How a peer key came to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum TrustSource {
    /// Paired with this device (short code).
    Paired,
    /// Attested by the trusted owner device whose fingerprint (hex) is `by`.
    Attested {
        /// The attesting device's fingerprint (hex).
        by: String,
    },
    /// Pinned explicitly.
    Manual,
    /// A device of a host network that granted this device guest access.
    Host {
        /// The grant id.
        grant: String,
    },
}

impl From<CoreSource> for TrustSource {
    fn from(s: CoreSource) -> Self {
        match s {
            CoreSource::Paired => TrustSource::Paired,
            CoreSource::Attested { by } => TrustSource::Attested { by },
            CoreSource::Manual => TrustSource::Manual,
            CoreSource::Host { grant, .. } => TrustSource::Host { grant },
        }
    }
}

/// A peer device whose key this device trusts.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TrustedDevice {
    /// The peer's bare JID (its network).
    pub jid: String,
    /// Lower-case hex SHA-256 of its public key (SPKI): what [`Controller::revoke_device`] takes.
    pub fingerprint: String,
    /// How it became trusted.
    pub source: TrustSource,
}

impl From<CoreTrustedDevice> for TrustedDevice {
    fn from(d: CoreTrustedDevice) -> Self {
        TrustedDevice {
            jid: d.jid,
            fingerprint: d.fingerprint,
            source: d.source.into(),
        }
    }
}

/// The outcome of a pairing, as [`PairingListener::on_pairing_result`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PairingResult {
    /// Both keys are pinned; `device` is the provider as now trusted.
    Paired {
        /// The provider's JID (full) the pairing ran with.
        provider: String,
        /// Its pinned key.
        device: TrustedDevice,
    },
    /// Pairing failed (wrong or expired code, locked, unreachable); nothing was pinned.
    Failed {
        /// The provider's JID.
        provider: String,
        /// The error, as `pair` also throws it.
        error: PmnError,
    },
}

/// What a pairing tells the app, e.g. to update a "pairing…" screen. Called from a pmn thread; a
/// method that throws is logged and changes nothing.
#[uniffi::export(with_foreign)]
pub trait PairingListener: Send + Sync {
    /// The code was sent to the provider; the key exchange runs now.
    fn on_pairing_code(&self, provider: String, code: String) -> Result<(), PmnError>;
    /// The pairing ended.
    fn on_pairing_result(&self, result: PairingResult) -> Result<(), PmnError>;
}

/// What a code-showing provider's screen is told: each pairing attempt's outcome. Called from a
/// pmn thread; a method that throws is logged and changes nothing.
#[uniffi::export(with_foreign)]
pub trait ProviderPairingListener: Send + Sync {
    /// `peer` (a controller's full JID) typed the right code: `device` is now trusted.
    fn on_paired(&self, peer: String, device: TrustedDevice) -> Result<(), PmnError>;
    /// `peer` tried and failed (wrong or expired code, pairing locked); nothing was pinned.
    fn on_pairing_failed(&self, peer: String, error: PmnError) -> Result<(), PmnError>;
}

/// Told of every end-to-end tunnel that fails or is refused: `error` is `PmnError.Tls` for altered
/// bytes or a failed handshake (the server or the path tampers), `PmnError.Forbidden` for a key
/// that is not trusted. Called from a pmn thread; a method that throws is logged.
#[uniffi::export(with_foreign)]
pub trait TunnelFailureListener: Send + Sync {
    /// The tunnel with `peer` (full JID) failed or was refused.
    fn on_tunnel_failure(&self, peer: String, error: PmnError) -> Result<(), PmnError>;
}

/// Forwards `failures` to `listener` until the returned handle is cancelled.
fn forward_failures(
    failures: tokio::sync::broadcast::Receiver<crate::core::e2e::TunnelFailure>,
    listener: Arc<dyn TunnelFailureListener>,
) -> Arc<TaskHandle> {
    forward(vec![], failures, "tunnel failure listener", move |f| {
        report(
            listener.on_tunnel_failure(f.peer.to_string(), f.error.into()),
            "on_tunnel_failure",
        )
    })
}

fn report(result: Result<(), PmnError>, what: &str) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "pairing listener {what} failed");
    }
}

fn no_tunnel() -> PmnError {
    config("the end-to-end tunnel is off: set ConnectionConfig.e2e")
}

/// The trusted-device record of a peer just paired with.
fn paired_device(
    e2e: &E2eEndpoint,
    peer: &xmpp_parsers::jid::FullJid,
    fingerprint: &[u8; 32],
) -> TrustedDevice {
    let bare = peer.to_bare();
    TrustedDevice {
        jid: bare.to_string(),
        fingerprint: fingerprint_hex(fingerprint),
        source: e2e
            .trust()
            .source(&bare, fingerprint)
            .map(Into::into)
            .unwrap_or(TrustSource::Paired),
    }
}

fn trusted_devices(e2e: &E2eEndpoint) -> Vec<TrustedDevice> {
    e2e.trust().list().into_iter().map(Into::into).collect()
}

async fn revoke(e2e: E2eEndpoint, jid: String, fingerprint_hex: String) -> Result<bool, PmnError> {
    let jid = bare_jid(&jid)?;
    let fingerprint = parse_fingerprint_hex(&fingerprint_hex).ok_or_else(|| {
        config(format!(
            "{fingerprint_hex:?} is not a SHA-256 fingerprint in hex"
        ))
    })?;
    // Awaited: the caller must learn whether the network was told (the signed revocation list
    // published), not just this device.
    runtime::run(async move { Ok(e2e.revoke_everywhere(&jid, &fingerprint).await?) }).await
}

impl Controller {
    pub(super) fn e2e(&self) -> Result<E2eEndpoint, PmnError> {
        self.core()?.e2e().cloned().ok_or_else(no_tunnel)
    }
}

#[uniffi::export]
impl Controller {
    /// Pairs with the provider `provider` (full JID), which shows `code` (`Provider.start_pairing`).
    /// On success both devices pin each other's key, the tunnel stays up for the calls that follow,
    /// and the provider is returned as now trusted. A wrong, expired or reused code is
    /// `PmnError.Forbidden` (and counts towards the provider's lock-out). `listener` hears the same.
    pub async fn pair(
        &self,
        provider: String,
        code: String,
        listener: Arc<dyn PairingListener>,
    ) -> Result<TrustedDevice, PmnError> {
        let e2e = self.e2e()?;
        let peer = parse_provider(&provider)?;
        let result = runtime::run({
            let listener = listener.clone();
            async move {
                report(
                    listener.on_pairing_code(peer.to_string(), code.clone()),
                    "on_pairing_code",
                );
                let tunnel = e2e.pair(&peer, &code).await?;
                Ok(paired_device(&e2e, &peer, &tunnel.peer_fingerprint()))
            }
        })
        .await;
        let outcome = match &result {
            Ok(device) => PairingResult::Paired {
                provider,
                device: device.clone(),
            },
            Err(error) => PairingResult::Failed {
                provider,
                error: error.clone(),
            },
        };
        report(listener.on_pairing_result(outcome), "on_pairing_result");
        result
    }

    /// Reports every end-to-end tunnel of this controller that fails or is refused until the
    /// handle is cancelled (the call that needed the tunnel fails with the same error).
    pub fn watch_tunnel_failures(
        &self,
        listener: Arc<dyn TunnelFailureListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        self.e2e()?;
        Ok(forward_failures(self.core()?.tunnel_failures(), listener))
    }

    /// The devices whose keys this controller trusts. `PmnError.Config` without `ConnectionConfig.e2e`.
    pub fn trusted_devices(&self) -> Result<Vec<TrustedDevice>, PmnError> {
        Ok(trusted_devices(&self.e2e()?))
    }

    /// Stops trusting the key `fingerprint_hex` of the devices of `jid` (bare JID) and closes every
    /// tunnel using it; calls to such a device then fail. For a device of this network it also
    /// publishes a signed revocation list, so every device of the network drops the key (paired
    /// ones too) and never takes it back, and re-attests the devices this one still trusts.
    /// Returns, once the list is published, whether the key was trusted here; an error means the
    /// network was not told (repeat the call).
    pub async fn revoke_device(
        &self,
        jid: String,
        fingerprint_hex: String,
    ) -> Result<bool, PmnError> {
        revoke(self.e2e()?, jid, fingerprint_hex).await
    }

    /// This device's key fingerprint (hex), to show or to revoke elsewhere.
    pub fn device_fingerprint(&self) -> Result<String, PmnError> {
        Ok(fingerprint_hex(&self.e2e()?.fingerprint()))
    }
}

impl Provider {
    pub(super) fn e2e(&self) -> Result<E2eEndpoint, PmnError> {
        self.with_core(|core| core.e2e().cloned())?
            .ok_or_else(no_tunnel)
    }
}

#[uniffi::export]
impl Provider {
    /// Arms pairing and returns a fresh 6-digit code to show on this device's screen (valid 5
    /// minutes, single use). Only devices of this network can use it; a device that tried too
    /// many wrong codes is locked out by itself and does not stop the screen from showing a code.
    pub fn start_pairing(&self) -> Result<String, PmnError> {
        Ok(self.e2e()?.start_pairing()?)
    }

    /// Reports every pairing attempt's outcome to `listener` (close the screen showing the code
    /// on success, say "wrong code" on failure) until the handle is cancelled.
    pub fn watch_pairing(
        &self,
        listener: Arc<dyn ProviderPairingListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let e2e = self.e2e()?;
        let outcomes = self.with_core(|core| core.pairing_outcomes())?;
        Ok(forward(
            vec![],
            outcomes,
            "pairing listener",
            move |outcome| match outcome {
                PairingOutcome::Paired { peer, fingerprint } => {
                    let device = paired_device(&e2e, &peer, &fingerprint.0);
                    report(listener.on_paired(peer.to_string(), device), "on_paired");
                }
                PairingOutcome::Failed { peer, error } => report(
                    listener.on_pairing_failed(peer.to_string(), error.into()),
                    "on_pairing_failed",
                ),
            },
        ))
    }

    /// Reports every end-to-end tunnel to this provider that fails or is refused (tampering in the
    /// path, an unknown device) until the handle is cancelled.
    pub fn watch_tunnel_failures(
        &self,
        listener: Arc<dyn TunnelFailureListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        self.e2e()?;
        let failures = self.with_core(|core| core.tunnel_failures())?;
        Ok(forward_failures(failures, listener))
    }

    /// Disarms pairing (the code shown is no longer accepted).
    pub fn stop_pairing(&self) -> Result<(), PmnError> {
        self.e2e()?.stop_pairing();
        Ok(())
    }

    /// The devices whose keys this provider trusts.
    pub fn trusted_devices(&self) -> Result<Vec<TrustedDevice>, PmnError> {
        Ok(trusted_devices(&self.e2e()?))
    }

    /// Stops trusting the key `fingerprint_hex` of the devices of `jid` (bare JID), e.g. a lost
    /// phone, and closes its tunnels; for a device of this network, publishes the signed
    /// revocation list as [`Controller::revoke_device`] does. Returns, once published, whether
    /// the key was trusted here.
    pub async fn revoke_device(
        &self,
        jid: String,
        fingerprint_hex: String,
    ) -> Result<bool, PmnError> {
        revoke(self.e2e()?, jid, fingerprint_hex).await
    }

    /// This device's key fingerprint (hex).
    pub fn device_fingerprint(&self) -> Result<String, PmnError> {
        Ok(fingerprint_hex(&self.e2e()?.fingerprint()))
    }
}
