//! The `Provider` object: a device that offers services. Apps can be providers too (a phone acting
//! as a player); this version offers the simulated media player, used by demos and tests.

use crate::core::sync::Locked;
use std::sync::{Arc, Mutex};

use super::config::ConnectionConfig;
use super::diagnostics::{self, Live};
use super::error::{config as config_error, CallOutcome, PmnError};
use super::runtime;
use super::trust::Trust;
use crate::core::provider::{Provider as CoreProvider, ProviderConfig};
use crate::core::rpc::Service;
use crate::core::services::player::{PlayerService, SimulatedPlayer};

/// A running provider. `stop()` takes it offline; dropping it does too.
#[derive(uniffi::Object)]
pub struct Provider {
    inner: Mutex<Option<CoreProvider>>,
    _live: Live,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").finish_non_exhaustive()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Some(core) = self.inner.get_mut().ok().and_then(Option::take) {
            runtime::handle().spawn(core.stop());
        }
    }
}

impl Provider {
    /// Wraps a started core provider.
    pub(super) fn from_core(core: CoreProvider) -> Arc<Self> {
        Arc::new(Provider {
            inner: Mutex::new(Some(core)),
            _live: Live::new(&diagnostics::PROVIDERS),
        })
    }

    /// Runs `f` on the core provider; `PmnException.NotConnected` once stopped.
    pub(super) fn with_core<T>(&self, f: impl FnOnce(&CoreProvider) -> T) -> Result<T, PmnError> {
        self.inner
            .locked()
            .as_ref()
            .map(f)
            .ok_or_else(|| PmnError::NotConnected {
                detail: "the provider is stopped".into(),
                outcome: CallOutcome::NotRun,
            })
    }
}

/// Starts a provider named `name` that offers a simulated media player (position advances with
/// time; no audio or video).
#[uniffi::export]
pub async fn start_simulated_player(
    config: ConnectionConfig,
    name: String,
) -> Result<Arc<Provider>, PmnError> {
    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    start(config, name, vec![player]).await
}

#[uniffi::export]
impl Provider {
    /// This device's trust: pairing (show a code), trusted devices, revocation, the network
    /// password. `PmnException.Config` without `ConnectionConfig.e2e`.
    pub fn trust(&self) -> Result<Arc<Trust>, PmnError> {
        Ok(Arc::new(Trust::new(self.with_core(|core| core.trust())??)))
    }

    /// How many controllers are subscribed (summed over services).
    pub fn subscription_count(&self) -> i32 {
        self.inner
            .locked()
            .as_ref()
            .map(|p| i32::try_from(p.subscription_count()).unwrap_or(i32::MAX))
            .unwrap_or(0)
    }

    /// The provider's full JID while online.
    pub fn jid(&self) -> Option<String> {
        self.inner
            .locked()
            .as_ref()
            .and_then(|p| p.session().jid())
            .map(|j| j.to_string())
    }

    /// Tells the library the device's network changed (see `Controller.networkChanged`): a
    /// waiting reconnect starts at once, a dead connection is replaced and the session resumed.
    pub async fn network_changed(&self) {
        let session = self.inner.locked().as_ref().map(|p| p.session().clone());
        if let Some(session) = session {
            let _ = runtime::run(async move {
                session.network_changed().await;
                Ok(())
            })
            .await;
        }
    }

    /// Tells the library whether the app is in the foreground (see
    /// `Controller.setForeground`). Does nothing before `start` or after `stop`.
    pub fn set_foreground(&self, foreground: bool) {
        if let Some(p) = self.inner.locked().as_ref() {
            p.set_foreground(foreground);
        }
    }

    /// Goes offline. Idempotent.
    pub async fn stop(&self) {
        let core = self.inner.locked().take();
        if let Some(core) = core {
            let _ = runtime::run(async move {
                core.stop().await;
                Ok(())
            })
            .await;
        }
    }
}

/// Starts a core provider offering `services` under `config` and wraps it.
pub(super) async fn start(
    config: ConnectionConfig,
    name: String,
    services: Vec<Arc<dyn Service>>,
) -> Result<Arc<Provider>, PmnError> {
    if name.trim().is_empty() {
        return Err(config_error("the provider needs a name"));
    }
    let session = config.to_session()?;
    let e2e = config.e2e_settings()?;
    let access = config.access_settings();
    let media = config.media_policy();
    let core = runtime::run(async move {
        let provider_config = ProviderConfig {
            e2e,
            access,
            media,
            ..ProviderConfig::plain(session, name)
        };
        CoreProvider::start(provider_config, services)
            .await
            .map_err(PmnError::from)
    })
    .await?;
    Ok(Provider::from_core(core))
}
