//! How the roles ([`Provider`](crate::core::provider::Provider),
//! [`Controller`](crate::core::controller::Controller)) opt into the end-to-end tunnel: the one
//! end-to-end configuration type ([`E2eSettings`]), and what a role needs around its endpoint.

use std::sync::Arc;

use std::time::Duration;
use xmpp_parsers::jid::BareJid;

use super::ibb::{TransportHooks, MAX_BLOCK_SIZE};
use super::limits::E2eLimits;
use super::trust::TrustStore;
use crate::core::identity::{DeviceFingerprint, DeviceIdentity};

/// Decides whether an inbound tunnel from (bare JID, key fingerprint) is accepted although the key
/// is not in the trust store.
pub type Admission = Arc<dyn Fn(&BareJid, &DeviceFingerprint) -> bool + Send + Sync>;

/// The end-to-end configuration of a device: its TLS identity, the keys it pins, the policy of
/// its role, and the bounds and knobs of its [`E2eEndpoint`](crate::core::e2e::E2eEndpoint). One
/// type for both levels: a role ([`Provider`](crate::core::provider::Provider),
/// [`Controller`](crate::core::controller::Controller)) takes it and builds its endpoint from it
/// (adding its own [`Admission`]), and a bare endpoint
/// ([`E2eEndpoint::new`](crate::core::e2e::E2eEndpoint::new)) runs with it directly;
/// `require_tunnel` is read by the roles only.
///
/// With it, a controller sends every RPC call (and subscribe/unsubscribe) through a tunnel
/// to the provider, never in clear, and a provider answers tunnelled calls and sends events to
/// tunnel subscribers only through the tunnel.
#[derive(Clone)]
pub struct E2eSettings {
    /// This device's TLS identity (key in a KeyStore).
    pub identity: DeviceIdentity,
    /// The pinned peer keys (shared with pairing and revocation).
    pub trust: Arc<TrustStore>,
    /// Provider: refuse RPC that arrives in clear from devices of the network (`forbidden`,
    /// "end-to-end tunnel required"); disco#info and ping stay plain. Controller: ignore events
    /// that arrive in clear. When `false`, plain traffic is still served (interop with clients that
    /// lack the tunnel), but what came through a tunnel is answered only through it.
    pub require_tunnel: bool,
    /// Bound on each step of tunnel setup (each Jingle exchange, the TLS handshake, pairing);
    /// 10 s by default. A phone on a slow mobile link may want more.
    pub setup_timeout: Duration,
    /// The bounds on what peers can make this device hold (half-open sessions, pairing sessions,
    /// IBB buffers, tunnel queues); the defaults suit a household.
    pub limits: E2eLimits,
    /// IBB block size offered (at most 4096).
    pub block_size: u16,
    /// Besides the trust store, who may open a tunnel to us: a provider admits a guest device
    /// whose key an active grant names (see [`crate::core::access::AccessGuard::admits`]); a
    /// provider sets its own when it builds its endpoint.
    pub admission: Option<Admission>,
    /// Attack-test knob: corrupt outbound transport bytes (never set in production).
    pub hooks: TransportHooks,
    /// Attack-test knob: advertise this fingerprint in Jingle instead of our own (a relay that
    /// substitutes its key). Never set in production.
    pub advertise_fingerprint: Option<DeviceFingerprint>,
}

/// Default [`E2eSettings::setup_timeout`].
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

impl E2eSettings {
    /// Settings that require the tunnel (the default policy of DESIGN §4), with 4096-byte
    /// blocks, [`DEFAULT_SETUP_TIMEOUT`], default [`E2eLimits`] and no test knobs.
    pub fn new(identity: DeviceIdentity, trust: Arc<TrustStore>) -> Self {
        Self {
            identity,
            trust,
            require_tunnel: true,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
            limits: E2eLimits::default(),
            block_size: MAX_BLOCK_SIZE,
            admission: None,
            hooks: TransportHooks::default(),
            advertise_fingerprint: None,
        }
    }
}

impl std::fmt::Debug for E2eSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2eSettings")
            .field("fingerprint", &self.identity.fingerprint().to_hex())
            .field("trusted", &self.trust.list().len())
            .field("require_tunnel", &self.require_tunnel)
            .field("block_size", &self.block_size)
            .field("setup_timeout", &self.setup_timeout)
            .finish_non_exhaustive()
    }
}

/// An end-to-end tunnel that failed or was refused: what an app shows as "this connection was
/// tampered with or the device is unknown". `error`'s kind says which: `Tls` for altered bytes or
/// a failed handshake, `Forbidden` for a key that is not trusted.
#[derive(Debug, Clone)]
pub struct TunnelFailure {
    /// The other device.
    pub peer: xmpp_parsers::jid::FullJid,
    /// What went wrong.
    pub error: crate::core::error::Error,
}

/// Capacity of a role's tunnel-failure broadcast.
pub(crate) const FAILURE_CAPACITY: usize = 64;
