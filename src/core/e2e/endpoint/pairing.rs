//! The pairing gate as the endpoint applies it: arming and disarming the code this device shows, and
//! pairing with a device that shows one (the state machine itself is [`crate::core::e2e::gate`]).

use std::time::Instant;

use xmpp_parsers::jid::FullJid;

use super::jingle::Mode;
use super::{lock, E2eEndpoint};
use crate::core::e2e::tunnel::Tunnel;
use crate::core::error::Result;

impl E2eEndpoint {
    /// Arms pairing with a fresh 6-digit code to show on this device's screen (valid 5 minutes,
    /// single use). Fails while pairing is locked after too many wrong codes.
    pub fn start_pairing(&self) -> Result<String> {
        lock(&self.inner.gate).arm(Instant::now())
    }

    /// Arms pairing with a code chosen by the app (e.g. printed on a device label).
    pub fn start_pairing_with(&self, code: &str) -> Result<()> {
        lock(&self.inner.gate).arm_with(code, Instant::now())
    }

    /// Disarms pairing.
    pub fn stop_pairing(&self) {
        lock(&self.inner.gate).disarm();
    }

    /// Pairs with `peer`, which shows `code`: opens a pairing-mode tunnel, runs SPAKE2, and on
    /// success pins the peer's key and keeps the tunnel as the one to that peer.
    ///
    /// A device of our own network that we just paired with is then attested on the network's
    /// XEP-0189 node (in the background), so the network's other devices trust it too.
    pub async fn pair(&self, peer: &FullJid, code: &str) -> Result<Tunnel> {
        let tunnel = self.open(peer, Mode::Pairing(code)).await?;
        if self.is_own_network(&peer.to_bare()) {
            let this = self.clone();
            let (peer, fingerprint) = (peer.clone(), tunnel.peer_fingerprint());
            tokio::spawn(async move {
                match this.attest(&fingerprint).await {
                    Ok(()) => tracing::info!(%peer, "attested the newly paired device"),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "could not attest the paired device")
                    }
                }
            });
        }
        Ok(tunnel)
    }
}
