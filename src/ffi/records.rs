//! Records and enums that cross the FFI boundary, with their conversions from the core.

use std::time::Duration;

use xmpp_parsers::jid::{BareJid, FullJid};

use super::error::{config, PmnError};
use crate::core::discovery::ProviderInfo as CoreProviderInfo;
use crate::core::services::player::{PlaybackState as CoreState2, PlayerStatus as CoreStatus};
use crate::core::session::{
    ConnectionState as CoreState, ServerAddress, ServerTrust, SessionConfig,
};

/// How a device logs in. All devices of one household share `network` and `password`; each has its
/// own `device` name (the XMPP resource).
#[derive(Debug, Clone, uniffi::Record)]
pub struct ConnectionConfig {
    /// The network identifier, a bare JID such as `home@example.org`.
    pub network: String,
    /// The network's password.
    pub password: String,
    /// This device's resource, unique in the network, e.g. `julia-phone`.
    pub device: String,
    /// `host:port` of the server; `None` looks it up through DNS SRV of the network's domain.
    #[uniffi(default = None)]
    pub server: Option<String>,
    /// Test builds only (`test-ca` feature): trust this CA (PEM) instead of the platform. Leave
    /// `None` in apps; a release build refuses it with `PmnError.Config`.
    #[uniffi(default = None)]
    pub test_ca_pem: Option<String>,
    /// Bound on one login attempt, in milliseconds.
    #[uniffi(default = 15000)]
    pub connect_timeout_ms: u64,
    /// Bound on each RPC call, in milliseconds.
    #[uniffi(default = 10000)]
    pub rpc_timeout_ms: u64,
}

impl ConnectionConfig {
    pub(crate) fn to_session(&self) -> Result<SessionConfig, PmnError> {
        let network: BareJid = self
            .network
            .parse()
            .map_err(|e| config(format!("network {:?} is not a bare JID: {e}", self.network)))?;
        if network.node().is_none() {
            return Err(config(
                "the network identifier needs a local part (name@domain)",
            ));
        }
        if self.device.is_empty() {
            return Err(config("device must not be empty"));
        }
        let jid: FullJid = network.with_resource_str(&self.device).map_err(|e| {
            config(format!(
                "device {:?} is not a valid resource: {e}",
                self.device
            ))
        })?;
        let server = match &self.server {
            None => ServerAddress::Srv,
            Some(s) => {
                let (host, port) = s
                    .rsplit_once(':')
                    .ok_or_else(|| config(format!("server {s:?} is not host:port")))?;
                let port: u16 = port
                    .parse()
                    .map_err(|_| config(format!("server {s:?} has no valid port")))?;
                ServerAddress::HostPort(host.trim_matches(['[', ']']).to_owned(), port)
            }
        };
        if self.connect_timeout_ms == 0 || self.rpc_timeout_ms == 0 {
            return Err(config("timeouts must be positive"));
        }
        let mut session = SessionConfig::new(jid, self.password.clone());
        session.server = server;
        session.trust = match &self.test_ca_pem {
            Some(pem) => ServerTrust::TestCa(pem.clone()),
            None => ServerTrust::Platform,
        };
        session.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        Ok(session)
    }

    pub(crate) fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }
}

/// A provider online in the network.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProviderInfo {
    /// Its full JID: the address to call.
    pub jid: String,
    /// Its display name.
    pub name: String,
    /// Its service features (e.g. `urn.xmpp.tmp.media.player`).
    pub services: Vec<String>,
}

impl From<CoreProviderInfo> for ProviderInfo {
    fn from(p: CoreProviderInfo) -> Self {
        Self {
            jid: p.jid.to_string(),
            name: p.name,
            services: p.services,
        }
    }
}

/// Playback state of a media player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum PlaybackState {
    /// Nothing loaded, or stopped.
    Stopped,
    /// Playing.
    Playing,
    /// Paused.
    Paused,
}

impl From<CoreState2> for PlaybackState {
    fn from(s: CoreState2) -> Self {
        match s {
            CoreState2::Stopped => PlaybackState::Stopped,
            CoreState2::Playing => PlaybackState::Playing,
            CoreState2::Paused => PlaybackState::Paused,
        }
    }
}

/// What a media player is doing.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PlayerStatus {
    /// The loaded media.
    pub uri: Option<String>,
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// Position in milliseconds.
    pub position_ms: u64,
}

impl From<CoreStatus> for PlayerStatus {
    fn from(s: CoreStatus) -> Self {
        Self {
            uri: s.uri,
            state: s.state.into(),
            position_ms: s.position_ms,
        }
    }
}

/// The connection to the server.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ConnectionState {
    /// Logging in.
    Connecting,
    /// Online as `jid`.
    Online {
        /// The bound full JID.
        jid: String,
    },
    /// Lost; reconnecting by itself.
    Reconnecting {
        /// Why.
        reason: String,
    },
    /// Ended. `error` is `None` when the app closed it.
    Offline {
        /// The fatal error, if any.
        error: Option<PmnError>,
    },
}

impl From<CoreState> for ConnectionState {
    fn from(s: CoreState) -> Self {
        match s {
            CoreState::Connecting => ConnectionState::Connecting,
            CoreState::Online { jid } => ConnectionState::Online {
                jid: jid.to_string(),
            },
            CoreState::Reconnecting { reason } => ConnectionState::Reconnecting { reason },
            CoreState::Offline { error } => ConnectionState::Offline {
                error: error.map(PmnError::from),
            },
        }
    }
}

/// An event from a provider.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum ServiceEvent {
    /// A media player changed state.
    PlayerStateChanged {
        /// The provider's JID.
        provider: String,
        /// Its new status.
        status: PlayerStatus,
    },
    /// Any other event (of a service this version has no typed form for).
    Other {
        /// The provider's JID.
        provider: String,
        /// The service name, e.g. `recorder`.
        service: String,
        /// The event name.
        name: String,
    },
}

impl From<crate::core::controller::ServiceEvent> for ServiceEvent {
    fn from(e: crate::core::controller::ServiceEvent) -> Self {
        use crate::core::services::player;
        let provider = e.provider.to_string();
        let n = &e.notice;
        if n.service == player::SERVICE && n.name == player::EVENT_STATE_CHANGED {
            if let Some(Ok(status)) = n.params.first().map(CoreStatus::from_value) {
                return ServiceEvent::PlayerStateChanged {
                    provider,
                    status: status.into(),
                };
            }
        }
        ServiceEvent::Other {
            provider,
            service: e.notice.service,
            name: e.notice.name,
        }
    }
}
