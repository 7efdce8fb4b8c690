//! How a device logs in, as the app says it ([`ConnectionConfig`]), and its translation into the
//! core's configurations. The rules (what a network identifier is, the transport rule) are the
//! core's (`crate::core::config`); this file only moves fields.

use std::time::Duration;

use super::access::{GuestPolicy, OwnerOptions};
use super::e2e::E2eOptions;
use super::error::{config, PmnError};
use super::numbers::{in32, in64};
use crate::core::access::{AccessSettings, IntakeLimits};
use crate::core::controller::OwnerAccess;
use crate::core::e2e::E2eSettings;
use crate::core::provider::MediaPolicy;
use crate::core::session::{ServerAddress, ServerTrust, SessionConfig};

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
    /// `None` in apps; a release build refuses it with `PmnException.Config`.
    #[uniffi(default = None)]
    pub test_ca_pem: Option<String>,
    /// Bound on one login attempt, in milliseconds.
    #[uniffi(default = 15000)]
    pub connect_timeout_ms: i64,
    /// Bound on each RPC call, in milliseconds.
    #[uniffi(default = 10000)]
    pub rpc_timeout_ms: i64,
    /// Silence on the connection after which the server is probed, in milliseconds; 0 keeps the
    /// default (15 s). With `probe_timeout_ms` it bounds how long a dead connection goes
    /// unnoticed when the app does not call `networkChanged()`.
    #[uniffi(default = 0)]
    pub keepalive_ms: i64,
    /// How long that probe may go unanswered before the connection is replaced (and the session
    /// resumed), in milliseconds; 0 keeps the default (5 s).
    #[uniffi(default = 0)]
    pub probe_timeout_ms: i64,
    /// How many times a controller's call is tried again when its way was lost (a timeout, the
    /// connection lost with the call in flight, not connected): each retry waits for the
    /// connection to be back (up to 30 s) and reuses the call's id, so a provider that already ran
    /// it answers with its first answer instead of running it twice. 0: no retry; the error then
    /// says whether the call ran (`PmnException.outcome()`).
    #[uniffi(default = 0)]
    pub call_retries: i32,
    /// The end-to-end tunnel between devices (keys, pinned peers, policy). Required unless
    /// `plain_transport` is set.
    #[uniffi(default = None)]
    pub e2e: Option<E2eOptions>,
    /// Talk **in clear** through the server, which can then read and forge control traffic: only
    /// for peers without the tunnel (other XMPP clients) or a server you control. Mutually
    /// exclusive with `e2e`; with neither, every role refuses to start (`PmnException.Config`).
    #[uniffi(default = false)]
    pub plain_transport: bool,
    /// Controllers: make this phone an owner device that approves guests (needs `e2e`).
    #[uniffi(default = None)]
    pub owner: Option<OwnerOptions>,
    /// Providers: take guests of other networks under a signed, scoped grant (needs `e2e`).
    #[uniffi(default = None)]
    pub guests: Option<GuestPolicy>,
    /// Controllers: the text `Controller.capsCacheSnapshot()` returned at an earlier run, so that
    /// devices seen before are listed from their presence alone, without a disco#info round trip
    /// each. Every entry is checked against its hash when read; text that is not a saved cache is
    /// ignored (logged at warn): a cache never keeps the app from starting.
    #[uniffi(default = None)]
    pub caps_cache: Option<String>,
}

impl ConnectionConfig {
    pub(crate) fn to_session(&self) -> Result<SessionConfig, PmnError> {
        let jid = crate::core::config::device_jid(&self.network, &self.device)?;
        let server = match &self.server {
            None => ServerAddress::Srv,
            Some(s) => s.parse().map_err(config)?,
        };
        if self.connect_timeout_ms <= 0 || self.rpc_timeout_ms <= 0 {
            return Err(config("timeouts must be positive"));
        }
        let keepalive = in64("keepaliveMs", self.keepalive_ms)?;
        let probe_timeout = in64("probeTimeoutMs", self.probe_timeout_ms)?;
        in32("callRetries", self.call_retries)?;
        let mut session = SessionConfig::new(jid, self.password.clone());
        session.server = server;
        session.trust = match &self.test_ca_pem {
            Some(pem) => ServerTrust::TestCa(pem.clone()),
            None => ServerTrust::Platform,
        };
        session.connect_timeout = millis(self.connect_timeout_ms);
        // `Long.MAX_VALUE` ms passes through: `Session::connect` cuts every wait to what the
        // clock can hold, for the FFI and Rust callers alike.
        if keepalive > 0 {
            session.keepalive = Duration::from_millis(keepalive);
        }
        if probe_timeout > 0 {
            session.probe_timeout = Duration::from_millis(probe_timeout);
        }
        Ok(session)
    }

    pub(crate) fn rpc_timeout(&self) -> Duration {
        millis(self.rpc_timeout_ms)
    }

    /// The controller's retry of calls whose way was lost ([`ConnectionConfig::call_retries`]).
    pub(crate) fn retry(&self) -> crate::core::controller::RetryPolicy {
        crate::core::controller::RetryPolicy::new(
            // Negative retries were refused by `to_session`, which every role runs first.
            u32::try_from(self.call_retries)
                .unwrap_or(0)
                .saturating_add(1),
            Duration::from_secs(30),
        )
    }

    /// The saved caps cache, if one was given and it reads ([`ConnectionConfig::caps_cache`]).
    pub(crate) fn caps_cache(&self) -> Option<crate::core::discovery::CapsSnapshot> {
        let text = self.caps_cache.as_deref()?;
        match text.parse() {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                tracing::warn!(error = %e, "saved caps cache ignored");
                None
            }
        }
    }

    /// The core owner role, if this configuration asks for it.
    pub(crate) fn owner_access(&self) -> Option<OwnerAccess> {
        self.owner.as_ref().map(|o| OwnerAccess {
            store: o.key_store.key_store(),
            alias: o.key_alias.clone(),
            user_presence: o.user_presence,
            limits: IntakeLimits::default(),
            revoked_grants_file: o.revoked_grants_file.as_ref().map(Into::into),
        })
    }

    /// The core media policy of a provider: the guest schemes its owner allows.
    pub(crate) fn media_policy(&self) -> MediaPolicy {
        MediaPolicy {
            guest_schemes: self
                .guests
                .as_ref()
                .map(|g| {
                    g.guest_media_schemes
                        .iter()
                        .map(|s| s.to_ascii_lowercase())
                        .collect()
                })
                .unwrap_or_default(),
            ..MediaPolicy::default()
        }
    }

    /// The core access settings of a provider, if this configuration asks for guests.
    pub(crate) fn access_settings(&self) -> Option<AccessSettings> {
        self.guests.as_ref().map(|g| AccessSettings {
            acl_path: g.acl_file.as_ref().map(Into::into),
            owner_keys: vec![],
        })
    }

    /// The end-to-end settings of this configuration: `None` only with `plain_transport`.
    pub(crate) fn e2e_settings(&self) -> Result<Option<E2eSettings>, PmnError> {
        crate::core::config::check_transport(self.e2e.is_some(), self.plain_transport)?;
        self.e2e
            .as_ref()
            .map(|o| o.to_settings(&self.device))
            .transpose()
    }
}

/// A timeout the app gave in milliseconds (checked positive by `to_session`; anything else is
/// no time at all).
fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(keepalive_ms: i64, probe_timeout_ms: i64) -> ConnectionConfig {
        ConnectionConfig {
            network: "home@home.test".into(),
            password: "secret".into(),
            device: "tv".into(),
            server: None,
            test_ca_pem: None,
            connect_timeout_ms: 15_000,
            rpc_timeout_ms: 10_000,
            keepalive_ms,
            probe_timeout_ms,
            call_retries: 0,
            e2e: None,
            plain_transport: true,
            owner: None,
            guests: None,
            caps_cache: None,
        }
    }

    #[test]
    fn the_largest_keepalive_and_probe_timeout_pass_through_to_the_core() {
        // The core caps them (`SessionConfig::within_clock`, tests/session.rs logs in with them).
        let session = plain(i64::MAX, i64::MAX).to_session().expect("valid");
        assert_eq!(session.keepalive, Duration::from_millis(i64::MAX as u64));
        assert_eq!(
            session.probe_timeout,
            Duration::from_millis(i64::MAX as u64)
        );
        let session = plain(20_000, 3_000).to_session().expect("valid");
        assert_eq!(session.keepalive, Duration::from_millis(20_000));
        assert_eq!(session.probe_timeout, Duration::from_millis(3_000));
        assert!(
            plain(-1, 0).to_session().is_err(),
            "negative is a config error"
        );
    }
}
