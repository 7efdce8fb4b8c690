//! The guest pass through UniFFI, one object ([`Controller::guest`](super::Controller::guest)):
//! a visitor's phone asks another household for access, shows the confirmation code, and confirms
//! or rejects. Conversions only; the rules live in `crate::core::controller::GuestPass`.

use super::access::{scopes, GuestAccess};
use super::error::{bare_jid, PmnError};
use super::runtime;
use crate::core::controller::GuestPass as CoreGuestPass;

/// The guest side of a controller (`controller.guest()`).
#[derive(uniffi::Object)]
pub struct GuestPass {
    inner: CoreGuestPass,
}

impl std::fmt::Debug for GuestPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPass").finish_non_exhaustive()
    }
}

impl GuestPass {
    pub(super) fn new(inner: CoreGuestPass) -> Self {
        Self { inner }
    }
}

#[uniffi::export]
impl GuestPass {
    /// Guests: asks `network` (the host household, a bare JID) for `scopes`, and waits at most
    /// `timeout_ms` for its owner to answer. Denied → `PmnException.Forbidden`. Approved: show
    /// `confirmationCode`, have the user compare it with the owner's phone, then `confirmAccess`;
    /// the host's providers arrive through the listener like the network's own.
    pub async fn request_access(
        &self,
        network: String,
        scopes: Vec<String>,
        reason: Option<String>,
        timeout_ms: i64,
    ) -> Result<GuestAccess, PmnError> {
        let core = self.inner.clone();
        let network = bare_jid(&network)?;
        let scopes = self::scopes(&scopes)?;
        let timeout =
            std::time::Duration::from_millis(super::numbers::in64("timeoutMs", timeout_ms)?);
        runtime::run(async move {
            Ok(core
                .request_access(network, scopes, None, reason.as_deref(), timeout)
                .await?
                .into())
        })
        .await
    }

    /// Guests: the user saw the same confirmation code on both phones; pins the host's device
    /// keys so its providers can be driven (nothing of the host is trusted before). No approval
    /// from `network` waiting → `PmnException.Forbidden`.
    pub fn confirm_access(&self, network: String) -> Result<GuestAccess, PmnError> {
        let network = bare_jid(&network)?;
        Ok(self.inner.confirm_access(&network)?.into())
    }

    /// Guests: the codes differed (a server in the middle) or the user declined; forgets the
    /// approval. Returns whether one was waiting.
    pub fn reject_access(&self, network: String) -> Result<bool, PmnError> {
        let network = bare_jid(&network)?;
        Ok(self.inner.reject_access(&network))
    }
}
