//! The network's key directory (XEP-0189 on PEP): publishing this device's key, attesting the keys
//! of devices we paired with, retracting revoked ones, and the trust decision for keys that only an
//! attestation vouches for (re-checked against the published keys, refused if they cannot be read).

use xmpp_parsers::jid::BareJid;

use super::{E2eEndpoint, NS_PUBSUB_EVENT};
use crate::core::e2e::pubkey;
use crate::core::e2e::trust::TrustSource;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::fingerprint_hex;

impl E2eEndpoint {
    /// Whether `message` is our own account's PEP notification about the published keys.
    pub(super) fn is_key_notification(&self, message: &xmpp_parsers::message::Message) -> bool {
        let from_own = match (&message.from, self.own_network()) {
            (Some(from), Ok(own)) => from.to_bare() == own && from.resource().is_none(),
            _ => false,
        };
        from_own
            && message.payloads.iter().any(|p| {
                p.is("event", NS_PUBSUB_EVENT)
                    && p.children()
                        .any(|c| c.attr("node") == Some(pubkey::NS_PUBKEY))
            })
    }

    /// Publishes this device's certificate on the network's XEP-0189 node unless it is there
    /// already (roles do it once online), so devices that trust an owner who attests it can verify
    /// it. An existing item is kept: it may carry owners' attestations.
    pub async fn publish_key(&self) -> Result<()> {
        pubkey::ensure_own_published(
            &self.inner.session,
            &self.inner.config.identity,
            self.inner.config.timeout,
        )
        .await
    }

    /// Adds our attestation to the published key `fingerprint` of our network (an owner device
    /// vouching for a device it paired with). Fails if that device has not published its key.
    pub async fn attest(&self, fingerprint: &[u8; 32]) -> Result<()> {
        let inner = &self.inner;
        let network = self.own_network()?;
        let keys = pubkey::fetch(&inner.session, &network, inner.config.timeout).await?;
        let key = keys
            .into_iter()
            .find(|k| k.fingerprint == *fingerprint)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ProviderUnavailable,
                    format!(
                        "device key {} is not published on {network}",
                        fingerprint_hex(fingerprint)
                    ),
                )
            })?;
        let ours = pubkey::attest(&inner.config.identity, &network, &key.spki)?;
        let mut attestations: Vec<_> = key
            .attestations
            .into_iter()
            .filter(|a| a.by != ours.by)
            .collect();
        attestations.push(ours);
        pubkey::publish(
            &inner.session,
            &key.certificate,
            attestations,
            inner.config.timeout,
        )
        .await
    }

    /// Revokes `fingerprint` of `jid` here (as [`E2eEndpoint::revoke`]) and, for a device of our
    /// own network, retracts its published key, so every device that trusted it only through an
    /// attestation drops it at its next trust decision.
    pub async fn revoke_everywhere(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> Result<bool> {
        let removed = self.revoke(jid, fingerprint)?;
        self.retract_published(jid, fingerprint).await?;
        Ok(removed)
    }

    /// Retracts the published key `fingerprint` if `jid` is our own network (nothing otherwise):
    /// the network-wide half of a revocation.
    pub async fn retract_published(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> Result<()> {
        if self.is_own_network(jid) {
            pubkey::retract(&self.inner.session, fingerprint, self.inner.config.timeout).await?;
        }
        Ok(())
    }

    pub(super) fn own_network(&self) -> Result<BareJid> {
        self.inner
            .session
            .jid()
            .map(|j| j.to_bare())
            .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the session is not online"))
    }

    pub(super) fn is_own_network(&self, jid: &BareJid) -> bool {
        self.own_network().is_ok_and(|own| own == *jid)
    }

    /// The trust decision for `fingerprint` of `jid`: first-hand pins (paired, manual, host)
    /// count at once; for our own network, an attested pin is re-checked and an unknown key looked
    /// up against the network's published keys (XEP-0189) first. If that lookup fails, attested
    /// keys are refused: revocation must not depend on the server's goodwill.
    pub(super) async fn trusted(&self, jid: &BareJid, fingerprint: &[u8; 32]) -> bool {
        let inner = &self.inner;
        let trust = &inner.config.trust;
        let source = trust.source(jid, fingerprint);
        if matches!(
            source,
            Some(TrustSource::Paired | TrustSource::Manual | TrustSource::Host { .. })
        ) {
            return true;
        }
        if !self.is_own_network(jid) {
            return false;
        }
        match self.resync(jid).await {
            Ok(()) => trust.is_trusted(jid, fingerprint),
            Err(e) => {
                tracing::info!(error = %e, "could not read the network's published keys");
                false
            }
        }
    }

    /// Brings the attested pins of `jid` (our network) in line with its published keys, and
    /// closes the tunnels of keys that lost their attestation.
    pub(super) async fn resync(&self, jid: &BareJid) -> Result<()> {
        let inner = &self.inner;
        // Our own key is attested by the owner that paired with us; it is not a peer to trust.
        let own = inner.config.identity.fingerprint();
        let outcome = pubkey::sync_attested_except(
            &inner.session,
            &inner.config.trust,
            jid,
            Some(&own),
            inner.config.timeout,
        )
        .await?;
        for revoked in &outcome.revoked {
            let closed = self.close_where(
                |peer, fp| peer.to_bare() == *jid && fp == revoked,
                "its key was revoked on the network",
            );
            tracing::info!(key = %fingerprint_hex(revoked), closed, "attested key revoked");
        }
        Ok(())
    }
}
