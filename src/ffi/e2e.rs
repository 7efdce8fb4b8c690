//! The end-to-end tunnel through UniFFI: the options that turn it on for a role ([`E2eOptions`] in
//! `ConnectionConfig::e2e`), and the records and listeners of pairing and trust that
//! [`Trust`](super::Trust) hands out. Conversions only; every rule (pinning, SPAKE2, rate limits,
//! which traffic must be tunnelled) lives in `crate::core::e2e`.

use std::sync::Arc;

use super::error::{config, PmnError};
use super::keystore::DeviceKeyStore;
use crate::core::e2e::{
    E2eSettings, TrustSource as CoreSource, TrustStore, TrustedDevice as CoreTrustedDevice,
};
use crate::core::identity::DeviceIdentity;

/// Turns on the end-to-end tunnel for a controller or provider (put it in
/// [`crate::ConnectionConfig::e2e`]). The TLS key `key_alias` of `key_store` is created on first
/// use and never leaves the store.
///
/// Kotlin:
/// ```kotlin e2eOptionsDoc(dir: String, network: String, password: String)
/// val keys = DeviceKeyStore.software(dir)
/// val config = ConnectionConfig(
///     network = network, password = password, device = "tv",
///     e2e = E2eOptions(keys, trustFile = "$dir/trust.json"),
/// )
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
    /// Lower-case hex SHA-256 of its public key (SPKI): what [`crate::Trust::revoke_device`]
    /// takes.
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

/// Told of every end-to-end tunnel that fails or is refused: `error` is `PmnException.Tls` for altered
/// bytes or a failed handshake (the server or the path tampers), `PmnException.Forbidden` for a key
/// that is not trusted. Called from a pmn thread; a method that throws is logged.
#[uniffi::export(with_foreign)]
pub trait TunnelFailureListener: Send + Sync {
    /// The tunnel with `peer` (full JID) failed or was refused.
    fn on_tunnel_failure(&self, peer: String, error: PmnError) -> Result<(), PmnError>;
}
