//! The network password after a revocation (issue 12): rotate it from one device, learn it on
//! the others. The app owns where the password is stored; it hears every change through
//! [`NetworkPasswordListener`] and writes it back there.

use std::sync::Arc;

use super::controller::Controller;
use super::error::PmnError;
use super::provider::Provider;
use super::runtime;
use super::task::{AbortOnDrop, TaskHandle};
use crate::core::e2e::{E2eEndpoint, PasswordRotation as CorePasswordRotation};
use crate::core::session::Session;

/// A device left out of a password rotation.
#[derive(Debug, Clone, uniffi::Record)]
pub struct MissedDevice {
    /// Its full JID.
    pub device: String,
    /// Why it did not get the new password (a revoked key is `Forbidden`).
    pub error: PmnError,
}

/// What [`Controller::rotate_network_password`] did.
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

async fn rotate(e2e: E2eEndpoint) -> Result<PasswordRotation, PmnError> {
    runtime::run(async move { Ok(e2e.rotate_network_password().await?.into()) }).await
}

fn watch(session: Session, listener: Arc<dyn NetworkPasswordListener>) -> Arc<TaskHandle> {
    let mut rx = session.watch_password();
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

#[uniffi::export]
impl Controller {
    /// Changes the network password and hands the new one, through the end-to-end tunnels, to
    /// every trusted device of the network that is online. Call it right after
    /// [`Controller::revoke_device`] for a lost or stolen device: the revoked device is refused a
    /// tunnel, never learns the new password and is logged out. Returns once the server has the
    /// new password; an error means it did not change (the old one still works).
    pub async fn rotate_network_password(&self) -> Result<PasswordRotation, PmnError> {
        rotate(self.e2e()?).await
    }

    /// Reports every change of the network password on this device (its own rotation, or one made
    /// by another device) until the handle is cancelled.
    pub fn watch_network_password(
        &self,
        listener: Arc<dyn NetworkPasswordListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        Ok(watch(self.core()?.session().clone(), listener))
    }
}

#[uniffi::export]
impl Provider {
    /// [`Controller::rotate_network_password`], from a provider.
    pub async fn rotate_network_password(&self) -> Result<PasswordRotation, PmnError> {
        rotate(self.e2e()?).await
    }

    /// [`Controller::watch_network_password`]: a TV learns the new password this way and must
    /// store it, or it cannot log in after its next restart.
    pub fn watch_network_password(
        &self,
        listener: Arc<dyn NetworkPasswordListener>,
    ) -> Result<Arc<TaskHandle>, PmnError> {
        let session = self.with_core(|core| core.session().clone())?;
        Ok(watch(session, listener))
    }
}
