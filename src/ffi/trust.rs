//! Trust through UniFFI, one object for both roles ([`Controller::trust`](super::Controller::trust),
//! [`Provider::trust`](super::Provider::trust)): pairing (the provider shows a code, the
//! controller types it), the trusted-device list, revocation everywhere, and the network password
//! after a revocation (rotate it from one device, learn it on the others; the app owns where the
//! password is stored and hears every change through [`NetworkPasswordListener`]). Conversions
//! only; the rules live in `crate::core::trust` and `crate::core::e2e`.

use std::sync::Arc;

use super::e2e::{
    PairingListener, PairingResult, ProviderPairingListener, TrustedDevice, TunnelFailureListener,
};
use super::error::parse_provider;
use super::error::{bare_jid, config, PmnError};
use super::runtime;
use super::task::{forward, AbortOnDrop, TaskHandle};
use crate::core::e2e::PasswordRotation as CorePasswordRotation;
use crate::core::identity::DeviceFingerprint;
use crate::core::trust::{PairingOutcome, Trust as CoreTrust};

#[derive(Debug, Clone, uniffi::Record)]
pub struct MissedDevice {
    /// Its full JID.
    pub device: String,
    /// Why it did not get the new password (a revoked key is `Forbidden`).
    pub error: PmnError,
}

/// What [`Trust::rotate_network_password`] did.
#[derive(Debug, Clone, uniffi::Record)]
pub struct PasswordRotation {
    /// The new network password. Store it where the app keeps the password (the
    /// [`NetworkPasswordListener`] hears it too).
    pub password: String,
    /// Devices (full JIDs) that hold the new password.
    pub delivered: Vec<String>,
    /// Devices online that did not get it; each is logged out and stays out until given the
    /// new password by hand (or set up again).
    pub missed: Vec<MissedDevice>,
}

impl From<CorePasswordRotation> for PasswordRotation {
    fn from(r: CorePasswordRotation) -> Self {
        PasswordRotation {
            password: r.password,
            delivered: r.delivered.iter().map(ToString::to_string).collect(),
            missed: r
                .missed
                .into_iter()
                .map(|(device, error)| MissedDevice {
                    device: device.to_string(),
                    error: error.into(),
                })
                .collect(),
        }
    }
}

/// Hears the network password change on this device, whether it changed it or another device of
/// the network did. Called on the library's runtime; store the value and return quickly.
#[uniffi::export(with_foreign)]
pub trait NetworkPasswordListener: Send + Sync {
    /// `password` is now the network's password: persist it for the next start.
    fn on_network_password_changed(&self, password: String) -> Result<(), PmnError>;
}

fn report(result: Result<(), PmnError>, what: &str) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "trust listener {what} failed");
    }
}

/// The trust of this device (`controller.trust()`, `provider.trust()`).
#[derive(uniffi::Object)]
pub struct Trust {
    inner: CoreTrust,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust").finish_non_exhaustive()
    }
}

impl Trust {
    pub(super) fn new(inner: CoreTrust) -> Self {
        Self { inner }
    }
}

#[uniffi::export]
impl Trust {
    /// Controllers: pairs with the provider `provider` (full JID), which shows `code`
    /// (`startPairing` there). On success both devices pin each other's key, the tunnel stays up
    /// for the calls that follow, and the provider is returned as now trusted. A wrong, expired
    /// or reused code is `PmnException.Forbidden` (and counts towards the provider's lock-out).
    /// `listener`, when given, hears the same (for a "pairing…" screen); the result is enough.
    #[uniffi::method(default(listener = None))]
    pub async fn pair(
        &self,
        provider: String,
        code: String,
        listener: Option<Arc<dyn PairingListener>>,
    ) -> Result<TrustedDevice, PmnError> {
        let trust = self.inner.clone();
        let peer = parse_provider(&provider)?;
        let result: Result<TrustedDevice, PmnError> = runtime::run({
            let listener = listener.clone();
            async move {
                if let Some(listener) = &listener {
                    report(
                        listener.on_pairing_code(peer.to_string(), code.clone()),
                        "on_pairing_code",
                    );
                }
                Ok(trust.pair(&peer, &code).await?.into())
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
        if let Some(listener) = &listener {
            report(listener.on_pairing_result(outcome), "on_pairing_result");
        }
        result
    }

    /// Providers: arms pairing and returns a fresh 6-digit code to show on this device's screen
    /// (valid 5 minutes, single use). Only devices of this network can use it; a device that
    /// tried too many wrong codes is locked out by itself and does not stop the screen from
    /// showing a code.
    pub fn start_pairing(&self) -> Result<String, PmnError> {
        Ok(self.inner.start_pairing()?)
    }

    /// Providers: reports every pairing attempt's outcome to `listener` (close the screen showing
    /// the code on success, say "wrong code" on failure) until the handle is cancelled.
    /// `PmnException.Config` on a controller.
    pub fn watch_pairing(
        &self,
        listener: Arc<dyn ProviderPairingListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let outcomes = self.inner.pairing_outcomes()?;
        let trust = self.inner.clone();
        Ok(forward(
            vec![],
            outcomes,
            "pairing listener",
            move |outcome| match outcome {
                PairingOutcome::Paired { peer, fingerprint } => {
                    let device = trust.trusted(&peer.to_bare(), &fingerprint);
                    report(
                        listener.on_paired(peer.to_string(), device.into()),
                        "on_paired",
                    );
                }
                PairingOutcome::Failed { peer, error } => report(
                    listener.on_pairing_failed(peer.to_string(), error.into()),
                    "on_pairing_failed",
                ),
            },
        ))
    }

    /// Providers: disarms pairing (the code shown is no longer accepted).
    pub fn stop_pairing(&self) {
        self.inner.stop_pairing();
    }

    /// Reports every end-to-end tunnel of this device that fails or is refused (tampering in the
    /// path, an untrusted key) until the handle is cancelled; the call that needed the tunnel
    /// fails with the same error.
    pub fn watch_tunnel_failures(
        &self,
        listener: Arc<dyn TunnelFailureListener>,
    ) -> Arc<TaskHandle> {
        forward(
            vec![],
            self.inner.tunnel_failures(),
            "tunnel failure listener",
            move |f| {
                report(
                    listener.on_tunnel_failure(f.peer.to_string(), f.error.into()),
                    "on_tunnel_failure",
                )
            },
        )
    }

    /// The devices whose keys this device trusts.
    pub fn trusted_devices(&self) -> Vec<TrustedDevice> {
        self.inner
            .trusted_devices()
            .into_iter()
            .map(Into::into)
            .collect()
    }

    /// Stops trusting the key `fingerprint_hex` of the devices of `jid` (bare JID), e.g. a lost
    /// phone, and closes every tunnel using it. For a device of this network it also publishes a
    /// signed revocation list, so every device of the network drops the key (paired ones too)
    /// and never takes it back. Returns, once the list is published, whether the key was trusted
    /// here; an error means the network was not told (repeat the call). Follow it with
    /// `rotateNetworkPassword`.
    pub async fn revoke_device(
        &self,
        jid: String,
        fingerprint_hex: String,
    ) -> Result<bool, PmnError> {
        let jid = bare_jid(&jid)?;
        let fingerprint: DeviceFingerprint = fingerprint_hex.parse().map_err(|_| {
            config(format!(
                "{fingerprint_hex:?} is not a SHA-256 fingerprint in hex"
            ))
        })?;
        let trust = self.inner.clone();
        // Awaited: the caller must learn whether the network was told, not just this device.
        runtime::run(async move { Ok(trust.revoke(&jid, &fingerprint).await?) }).await
    }

    /// This device's key fingerprint (hex), to show or to revoke elsewhere.
    pub fn device_fingerprint(&self) -> String {
        self.inner.fingerprint().to_hex()
    }

    /// Changes the network password and hands the new one, through the end-to-end tunnels, to
    /// every trusted device of the network that is online. Call it right after `revokeDevice`
    /// for a lost or stolen device: the revoked device is refused a tunnel, never learns the new
    /// password and is logged out. Returns once the server has the new password; an error means
    /// it did not change (the old one still works).
    pub async fn rotate_network_password(&self) -> Result<PasswordRotation, PmnError> {
        let trust = self.inner.clone();
        runtime::run(async move { Ok(trust.rotate_network_password().await?.into()) }).await
    }

    /// Reports every change of the network password on this device (its own rotation, or one
    /// made by another device) until the handle is cancelled. A TV learns the new password this
    /// way and must store it, or it cannot log in after its next restart.
    pub fn watch_network_password(
        &self,
        listener: Arc<dyn NetworkPasswordListener>,
    ) -> Arc<TaskHandle> {
        let mut rx = self.inner.watch_password();
        // The value at subscription time is the one the app already has.
        rx.borrow_and_update();
        let task = runtime::handle().spawn(async move {
            while rx.changed().await.is_ok() {
                let password = rx.borrow_and_update().clone();
                if let Err(e) = listener.on_network_password_changed(password) {
                    tracing::warn!(error = %e, "network password listener failed");
                }
            }
        });
        Arc::new(TaskHandle::new(AbortOnDrop(task.abort_handle())))
    }
}
