//! The pairing gate as the endpoint applies it: arming and disarming the code this device shows, and
//! pairing with a device that shows one (the state machine itself is [`crate::core::e2e::gate`]).

use crate::core::sync::Locked;
use std::time::Instant;

use xmpp_parsers::jid::FullJid;

use super::jingle::Mode;
use super::E2eEndpoint;
use crate::core::e2e::tunnel::Tunnel;
use crate::core::error::{Error, ErrorKind, Result};

impl E2eEndpoint {
    /// Arms pairing with a fresh 6-digit code to show on this device's screen (valid 5 minutes,
    /// single use). Only devices of this network can use it; a device that tried too many wrong
    /// codes is locked out on its own, the others keep their tries.
    pub fn start_pairing(&self) -> Result<String> {
        self.inner.gate.locked().arm(Instant::now())
    }

    /// Arms pairing with a code chosen by the app (e.g. printed on a device label).
    pub fn start_pairing_with(&self, code: &str) -> Result<()> {
        self.inner.gate.locked().arm_with(code, Instant::now())
    }

    /// Disarms pairing.
    pub fn stop_pairing(&self) {
        self.inner.gate.locked().disarm();
    }

    /// Pairs with `peer`, which shows `code`: opens a pairing-mode tunnel, runs SPAKE2, and on
    /// success pins the peer's key and keeps the tunnel as the one to that peer.
    ///
    /// Only devices of one network pair (same bare JID): pairing with another network's device
    /// is refused (`Forbidden`) before anything is sent — a guest gets access through the owner's
    /// approval instead. The device we just paired with is then attested on the network's
    /// XEP-0189 node (in the background), so the network's other devices trust it too.
    pub async fn pair(&self, peer: &FullJid, code: &str) -> Result<Tunnel> {
        if peer.to_bare() != self.own_network()? {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "{peer} is not a device of this network: only the network's own devices pair \
                     (a guest asks the owner for access)"
                ),
            ));
        }
        // In line with the other openers of this peer (and within their bound).
        let opening = self.opening(peer)?;
        let _turn = opening.gate.lock().await;
        let tunnel = self.open(peer, Mode::Pairing(code)).await?;
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
        Ok(tunnel)
    }
}
