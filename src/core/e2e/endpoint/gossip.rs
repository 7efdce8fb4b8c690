//! The revocation list travels in every tunnel between devices of one network (issue 12): the
//! first thing each side sends once TLS is up is the newest list it verified. A server that
//! withholds the PEP notification of a revocation, or serves an old key node, can then delay a
//! revocation only until the next tunnel between two devices, never for ever. The list is signed,
//! so it is checked exactly as one read from the key node.

use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;

use super::E2eEndpoint;
use crate::core::e2e::pubkey;
use crate::core::e2e::revocation::{RevocationList, NS_REVOCATIONS};
use crate::core::e2e::tunnel::Tunnel;

impl E2eEndpoint {
    /// Sends `tunnel`'s peer, a device of this network, the newest revocation list we verified.
    pub(super) fn send_revocations(&self, tunnel: &Tunnel) {
        let network = tunnel.peer().to_bare();
        if !self.is_own_network(&network) {
            return;
        }
        let Some(xml) = self.inner.config.trust.revocations(&network).signed else {
            return;
        };
        let Ok(list) = xml.parse::<Element>() else {
            tracing::warn!("the stored revocation list does not parse; not sent");
            return;
        };
        let mut message = Message::new(None);
        message.payloads.push(list);
        if let Err(e) = tunnel.send(message) {
            tracing::debug!(error = %e, "revocation list not sent through the tunnel");
        }
    }

    /// Applies a revocation list a device of this network sent through its tunnel; `false` when
    /// `stanza` is not one (it goes up to the role layer then).
    pub(super) fn on_tunnel_revocations(&self, stanza: &Stanza) -> bool {
        let Stanza::Message(message) = stanza else {
            return false;
        };
        let Some(payload) = message
            .payloads
            .iter()
            .find(|p| p.is("revocations", NS_REVOCATIONS))
        else {
            return false;
        };
        let Some(from) = message.from.as_ref().map(|j| j.to_bare()) else {
            return true;
        };
        if !self.is_own_network(&from) {
            tracing::debug!(%from, "a revocation list from another network's tunnel ignored");
            return true;
        }
        let list = RevocationList::try_from(payload.clone())
            .map_err(|e| crate::core::e2e::revocation::ListError::Malformed(e.to_string()));
        let own = self.inner.config.identity.fingerprint();
        let (dropped, refused) =
            pubkey::apply_revocations(&self.inner.config.trust, &from, &own, &[list]);
        if !dropped.is_empty() {
            tracing::info!(
                keys = dropped.len(),
                "a revocation list from a tunnel revoked keys the server had not told us of"
            );
            self.close_revoked(&from, &dropped);
        }
        for e in refused {
            tracing::debug!(error = %e, "revocation list from a tunnel refused");
        }
        true
    }
}
