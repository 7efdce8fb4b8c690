//! The network's key directory (XEP-0189 on PEP): publishing this device's key, attesting the keys
//! of devices we paired with, publishing signed revocation lists, and the trust decision for keys
//! that only an attestation vouches for (re-checked against the published keys and lists, refused
//! if they cannot be read).

use std::collections::BTreeSet;

use crate::core::sync::Locked;

use xmpp_parsers::jid::BareJid;

use super::{E2eEndpoint, NS_PUBSUB_EVENT};
use crate::core::e2e::limits::E2eCounters;
use crate::core::e2e::pubkey;
use crate::core::e2e::revocation;
use crate::core::e2e::trust::TrustSource;
use crate::core::e2e::xml::parse_fingerprint_hex;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::DeviceFingerprint;

/// What [`E2eEndpoint::trust_without_reading`] could decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrustNow {
    /// Decided without the server.
    Decided(bool),
    /// Our own network: decided by [`E2eEndpoint::trust_after_reading`] once its published keys
    /// and revocation lists are read; `first_hand` says the key is paired or pinned by hand.
    AfterReading { first_hand: bool },
}

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
            self.inner.config.setup_timeout,
        )
        .await
    }

    /// Adds our attestation to the published key `fingerprint` of our network (an owner device
    /// vouching for a device it paired with), at the newest revocation epoch published (read
    /// first, so the attestation is not void on devices that know a newer list than we did).
    /// Fails if that device has not published its key, or was revoked (`Forbidden`).
    pub async fn attest(&self, fingerprint: &DeviceFingerprint) -> Result<()> {
        let inner = &self.inner;
        let network = self.own_network()?;
        let directory =
            pubkey::fetch_directory(&inner.session, &network, inner.config.setup_timeout).await?;
        let own = inner.config.identity.fingerprint();
        let (dropped, _refused) =
            pubkey::apply_revocations(&inner.config.trust, &network, &own, &directory.lists);
        self.close_revoked(&network, &dropped);
        if inner.config.trust.is_revoked(&network, fingerprint) {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "device key {} was revoked on {network}",
                    fingerprint.to_hex()
                ),
            ));
        }
        let key = directory
            .keys
            .into_iter()
            .find(|k| k.fingerprint == *fingerprint)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::ProviderUnavailable,
                    format!(
                        "device key {} is not published on {network}",
                        fingerprint.to_hex()
                    ),
                )
            })?;
        self.publish_attestation(&network, key).await
    }

    /// Re-publishes `key` with our attestation at the newest revocation epoch we know, replacing
    /// our older one and dropping those of revoked signers (void anyway; they only take room).
    async fn publish_attestation(
        &self,
        network: &BareJid,
        key: pubkey::PublishedKey,
    ) -> Result<()> {
        let inner = &self.inner;
        let trust = &inner.config.trust;
        let epoch = trust.revocation_epoch(network);
        let ours = pubkey::attest(&inner.config.identity, network, &key.spki, epoch)?;
        let mut attestations: Vec<_> = key
            .attestations
            .into_iter()
            .filter(|a| a.by != ours.by)
            .filter(|a| {
                parse_fingerprint_hex(&a.by).is_some_and(|by| !trust.is_revoked(network, &by))
            })
            .collect();
        attestations.push(ours);
        pubkey::publish(
            &inner.session,
            &key.certificate,
            attestations,
            inner.config.setup_timeout,
        )
        .await
    }

    /// Revokes `fingerprint` of `jid` here (as [`E2eEndpoint::revoke`]) and, for a device of our
    /// own network, everywhere: signs a revocation list one epoch above every list published
    /// (naming every key revoked so far and this one), re-attests at that epoch every published
    /// key we still trust (a device vouched for only by the revoked key keeps its trust), and
    /// publishes the list. Every device of the network that hears of it drops the key, first-hand
    /// pins included, and never takes it back. Returns once the list is published (whether the
    /// key was trusted here); an error means the network was not told, and the call may be
    /// repeated. This device's own key cannot be revoked by itself (`BadParams`).
    pub async fn revoke_everywhere(
        &self,
        jid: &BareJid,
        fingerprint: &DeviceFingerprint,
    ) -> Result<bool> {
        let inner = &self.inner;
        let own = inner.config.identity.fingerprint();
        if self.is_own_network(jid) && *fingerprint == own {
            return Err(Error::new(
                ErrorKind::BadParams,
                "a device cannot revoke its own key; revoke it from another owner device",
            ));
        }
        let removed = self.revoke(jid, fingerprint)?;
        if !self.is_own_network(jid) {
            return Ok(removed);
        }
        let trust = &inner.config.trust;
        let timeout = inner.config.setup_timeout;
        // Catch up first: the new list must be newer than any list out there and repeat it.
        let directory = pubkey::fetch_directory(&inner.session, jid, timeout).await?;
        let (dropped, _refused) = pubkey::apply_revocations(trust, jid, &own, &directory.lists);
        self.close_revoked(jid, &dropped);
        // Above every well-signed list, even of signers we do not trust: a device that trusts
        // them must still find ours newer.
        let published_max = directory
            .lists
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .filter_map(|l| revocation::verify_list(l, jid).ok())
            .map(|v| v.epoch)
            .max()
            .unwrap_or(0);
        let epoch = published_max
            .max(trust.revocation_epoch(jid))
            .checked_add(1)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "revocation epoch exhausted"))?;
        let mut revoked: BTreeSet<DeviceFingerprint> = trust
            .revocations(jid)
            .revoked
            .iter()
            .filter_map(|hex| parse_fingerprint_hex(hex))
            .collect();
        revoked.insert(*fingerprint);
        let list = revocation::sign_list(&inner.config.identity, jid, epoch, &revoked)?;
        let verified = revocation::verify_list(&list, jid)?;
        // Kept here first: our own attestations below are made at the new epoch.
        trust.accept_revocations(jid, &verified, &own)?;
        // Re-attest at the new epoch, before the list goes out: a device that sees the list
        // finds the new attestations already there.
        let mut reattested = 0usize;
        for key in directory.keys {
            if key.fingerprint == own
                || revoked.contains(&key.fingerprint)
                || !trust.is_trusted(jid, &key.fingerprint)
            {
                continue;
            }
            let fp = key.fingerprint;
            match self.publish_attestation(jid, key).await {
                Ok(()) => reattested += 1,
                Err(e) => tracing::warn!(
                    key = %fp.to_hex(),
                    error = %e,
                    "could not re-attest a trusted device after a revocation"
                ),
            }
        }
        pubkey::publish_revocations(&inner.session, &own, list, timeout).await?;
        tracing::info!(
            key = %fingerprint.to_hex(),
            epoch,
            reattested,
            "revocation list published"
        );
        // The revoked device's item is no longer needed; the list is what counts (best effort).
        if let Err(e) = pubkey::retract(&inner.session, fingerprint, timeout).await {
            tracing::debug!(error = %e, "could not retract the revoked device's key item");
        }
        Ok(removed)
    }

    /// Closes the tunnels of keys a revocation list just dropped.
    pub(super) fn close_revoked(&self, jid: &BareJid, dropped: &[DeviceFingerprint]) {
        for revoked in dropped {
            let closed = self.close_where(
                |peer, fp| peer.to_bare() == *jid && fp == revoked,
                "its key was revoked on the network",
            );
            tracing::info!(key = %revoked.to_hex(), closed, "key revoked");
        }
    }

    /// Whether the network's keys as last read still stand, so the next trust decision before a
    /// tunnel needs no read of the key node (see [`E2eStats::key_reads_spared`]).
    ///
    /// [`E2eStats::key_reads_spared`]: crate::core::e2e::E2eStats::key_reads_spared
    pub fn keys_read_current(&self) -> bool {
        self.inner
            .key_view
            .locked()
            .is_current(std::time::Instant::now())
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

    /// The trust decision for `fingerprint` of `jid`: a key a verified revocation list named is
    /// refused whatever its source; a host pin (another network) counts at once; for our own
    /// network the published keys and revocation lists (XEP-0189 node) are read first. A
    /// first-hand pin (paired, manual) still counts if that read fails (as it would without any
    /// server), unless the lists read name it; an attested pin or an unknown key is refused then:
    /// revocation must not depend on the server's goodwill.
    pub(super) async fn trusted(&self, jid: &BareJid, fingerprint: &DeviceFingerprint) -> bool {
        match self.trust_without_reading(jid, fingerprint) {
            TrustNow::Decided(ok) => ok,
            TrustNow::AfterReading { first_hand } => {
                let read = self.confirm_keys(jid).await;
                self.trust_after_reading(jid, fingerprint, first_hand, read)
            }
        }
    }

    /// The part of [`Self::trusted`] that needs no server: decided at once (a revoked key, a host
    /// pin, another network), or to be decided once our network's published keys are read.
    pub(super) fn trust_without_reading(
        &self,
        jid: &BareJid,
        fingerprint: &DeviceFingerprint,
    ) -> TrustNow {
        let trust = &self.inner.config.trust;
        if trust.is_revoked(jid, fingerprint) {
            return TrustNow::Decided(false);
        }
        let source = trust.source(jid, fingerprint);
        if let Some(TrustSource::Host { expires, .. }) = source {
            // A guest's pin lives as long as its grant: after, the host is a stranger again.
            return TrustNow::Decided(expires == 0 || crate::core::access::unix_now() < expires);
        }
        let first_hand = matches!(source, Some(TrustSource::Paired | TrustSource::Manual));
        if !self.is_own_network(jid) {
            return TrustNow::Decided(first_hand);
        }
        TrustNow::AfterReading { first_hand }
    }

    /// The rest of [`Self::trusted`] once the read of our network's keys (`read`, started after
    /// [`Self::trust_without_reading`]) is over.
    pub(super) fn trust_after_reading(
        &self,
        jid: &BareJid,
        fingerprint: &DeviceFingerprint,
        first_hand: bool,
        read: Result<()>,
    ) -> bool {
        let trust = &self.inner.config.trust;
        match read {
            Ok(()) => trust.is_trusted(jid, fingerprint),
            Err(e) if first_hand => {
                // Best effort: a revocation published while we were away must reach us before
                // the revoked device does; without the server, what we know still holds.
                tracing::debug!(error = %e, "could not re-read the network's keys; first-hand pin kept");
                !trust.is_revoked(jid, fingerprint)
            }
            Err(e) => {
                tracing::info!(error = %e, "could not read the network's published keys");
                false
            }
        }
    }

    /// What a trust decision before a tunnel needs of our network `jid`'s key node: nothing when
    /// the last read still stands ([`super::key_view`]: read on this connection, no change
    /// notified since, young enough), else a read ([`Self::resync`]).
    pub(super) async fn confirm_keys(&self, jid: &BareJid) -> Result<()> {
        if self.is_own_network(jid) && self.keys_read_current() {
            E2eCounters::bump_by(&self.inner.counters.key_reads_spared, 1);
            tracing::trace!(network = %jid, "the network's keys as last read still stand");
            return Ok(());
        }
        self.resync(jid).await
    }

    /// Brings the attested pins of `jid` (our network) in line with its published keys, and
    /// closes the tunnels of keys that lost their attestation.
    pub(super) async fn resync(&self, jid: &BareJid) -> Result<()> {
        let inner = &self.inner;
        // Only a read of our own network's node can make our view of it current.
        let ticket = self.is_own_network(jid).then(|| {
            E2eCounters::bump_by(&inner.counters.key_reads, 1);
            inner
                .key_view
                .locked()
                .read_starts(std::time::Instant::now())
        });
        // Our own key is attested by the owner that paired with us; it is not a peer to trust.
        let own = inner.config.identity.fingerprint();
        let outcome = pubkey::sync_attested_except(
            &inner.session,
            &inner.config.trust,
            jid,
            Some(&own),
            inner.config.setup_timeout,
        )
        .await?;
        if let Some(ticket) = ticket {
            inner.key_view.locked().read_done(ticket);
        }
        self.close_revoked(jid, &outcome.revoked);
        for refused in &outcome.refused_lists {
            if matches!(refused, revocation::ListError::Rollback { .. }) {
                // A replayed older list: the server (or a thief) is trying to undo a revocation.
                tracing::warn!(error = %refused, "older revocation list refused");
            }
        }
        Ok(())
    }
}
