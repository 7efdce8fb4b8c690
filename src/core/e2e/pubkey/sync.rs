//! The trust decisions on a fetched key node: revocation lists first (every pin a valid list
//! names goes, first-hand ones too), then attested pins (pinned when vouched for by a device that
//! may vouch, removed when no longer). Never trusts this device itself as a peer.

use xmpp_parsers::jid::BareJid;

use super::pep::{fetch_directory, publish_revocations, Directory};
use super::verify_attestation;
use crate::core::e2e::revocation::{self, ListError, RevocationList};
use crate::core::e2e::trust::{Accepted, TrustSource, TrustStore};
use crate::core::e2e::xml::parse_fingerprint_hex;
use crate::core::error::Result;
use crate::core::identity::DeviceFingerprint;
use crate::core::session::Session;

/// What [`sync_attested`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Newly pinned fingerprints (attested by a trusted owner device).
    pub pinned: Vec<DeviceFingerprint>,
    /// Pins removed: named by a revocation list, or attested pins no longer vouched for.
    pub revoked: Vec<DeviceFingerprint>,
    /// Published revocation lists refused (forged, unknown or revoked signer, older epoch). They
    /// change nothing: the device keeps the newest list it verified.
    pub refused_lists: Vec<ListError>,
}

/// Verifies the revocation lists of `directory` and accepts the valid ones (oldest first, so a
/// newer one from another owner still counts). Returns the pins dropped and the lists refused.
pub fn apply_revocations(
    trust: &TrustStore,
    jid: &BareJid,
    own: &DeviceFingerprint,
    lists: &[std::result::Result<RevocationList, ListError>],
) -> (Vec<DeviceFingerprint>, Vec<ListError>) {
    let mut refused = Vec::new();
    let mut verified = Vec::new();
    for list in lists {
        match list
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|l| revocation::verify_list(l, jid))
        {
            Ok(v) => verified.push(v),
            Err(e) => refused.push(e),
        }
    }
    verified.sort_by_key(|v| v.epoch);
    let mut dropped = Vec::new();
    for list in &verified {
        match trust.accept_revocations(jid, list, own) {
            Ok(Accepted::Newer { dropped: d }) => dropped.extend(d),
            Ok(Accepted::Unchanged) => {}
            Err(e) => refused.push(e),
        }
    }
    for e in &refused {
        // Lists of devices this one never trusted are normal on a shared account; say why anyway.
        tracing::debug!(error = %e, "revocation list refused");
    }
    (dropped, refused)
}

/// Reads `jid`'s key node and applies it: first the revocation lists (every pin a valid list
/// names is dropped, first-hand ones too; refused lists are reported in the outcome), then every
/// published key with a current attestation by a device that may vouch is pinned, and every
/// attested pin no longer published **with** such an attestation is removed. If the newest list
/// this device verified is no longer served, it is published again.
pub async fn sync_attested(
    session: &Session,
    trust: &TrustStore,
    jid: &BareJid,
    timeout: std::time::Duration,
) -> Result<SyncOutcome> {
    sync_attested_except(session, trust, jid, None, timeout).await
}

/// As [`sync_attested`], never pinning `own` (this device's key: an owner that paired with us
/// attests it, and we must not end up trusting ourselves as a peer).
pub async fn sync_attested_except(
    session: &Session,
    trust: &TrustStore,
    jid: &BareJid,
    own: Option<&DeviceFingerprint>,
    timeout: std::time::Duration,
) -> Result<SyncOutcome> {
    let directory = fetch_directory(session, jid, timeout).await?;
    let outcome = apply_directory(trust, jid, own, &directory)?;
    // The server no longer serves the newest list we verified (retracted, or replaced by an
    // older one): publish it again, so devices that have not seen it yet still can. Its
    // signature is the signer's, so any device of the network may put it back.
    if let (Some(kept), Some(anchor)) = (trust.kept_list(jid), trust.revocation_anchor(jid)) {
        if !directory.lists.iter().any(|l| l.as_ref() == Ok(&kept)) {
            match publish_revocations(session, &anchor, kept, timeout).await {
                Ok(()) => tracing::info!(
                    network = %jid,
                    "published the newest revocation list again: the server had dropped it"
                ),
                Err(e) => tracing::warn!(error = %e, "could not publish the revocation list again"),
            }
        }
    }
    Ok(outcome)
}

/// The trust decisions of [`sync_attested_except`] on a fetched `directory`: revocation lists
/// first, then the attested pins.
pub fn apply_directory(
    trust: &TrustStore,
    jid: &BareJid,
    own: Option<&DeviceFingerprint>,
    directory: &Directory,
) -> Result<SyncOutcome> {
    let own_fp = own.copied().unwrap_or(DeviceFingerprint::from([0; 32]));
    let (dropped, refused_lists) = apply_revocations(trust, jid, &own_fp, &directory.lists);
    let keys = &directory.keys;
    let mut outcome = SyncOutcome {
        revoked: dropped,
        refused_lists,
        ..SyncOutcome::default()
    };
    let epoch = trust.revocation_epoch(jid);
    let anchor = trust.revocation_anchor(jid);
    // Who may vouch: a device trusted first-hand, or the signer of the newest list we verified
    // (it proved to be an owner at that epoch; it re-attests the devices it still trusts).
    let vouches = |by: &DeviceFingerprint| {
        if trust.is_revoked(jid, by) {
            return false;
        }
        // The anchor only while this device still trusts it (or is it): a pin removed here by
        // hand must not keep vouching through an old list.
        if anchor.as_ref() == Some(by) && (own == Some(by) || trust.is_trusted(jid, by)) {
            return true;
        }
        // Only first-hand trust may vouch: a key trusted by attestation cannot attest further.
        matches!(
            trust.source(jid, by),
            Some(TrustSource::Paired | TrustSource::Manual)
        )
    };
    // Published keys that carry a valid, current attestation by a device that may vouch.
    let vouched: Vec<(DeviceFingerprint, DeviceFingerprint)> = keys
        .iter()
        .filter(|key| own != Some(&key.fingerprint) && !trust.is_revoked(jid, &key.fingerprint))
        .filter_map(|key| {
            key.attestations.iter().find_map(|a| {
                // Older than the newest revocation: the signer may have vouched for a key it
                // would not vouch for now.
                if a.epoch < epoch {
                    return None;
                }
                let by = parse_fingerprint_hex(&a.by)?;
                if !vouches(&by) {
                    return None;
                }
                let signer = keys.iter().find(|k| k.fingerprint == by)?;
                verify_attestation(a, jid, &key.spki, &signer.spki).then_some((key.fingerprint, by))
            })
        })
        .collect();
    for (fingerprint, by) in &vouched {
        if trust.is_trusted(jid, fingerprint) {
            continue;
        }
        trust.pin(jid, fingerprint, TrustSource::Attested { by: by.to_hex() })?;
        outcome.pinned.push(*fingerprint);
    }
    for device in trust.list() {
        if device.jid != jid.as_str() || !matches!(device.source, TrustSource::Attested { .. }) {
            continue;
        }
        let Some(fp) = parse_fingerprint_hex(&device.fingerprint) else {
            continue;
        };
        // The anchor is kept: the list it signed is what re-anchors the devices it still trusts.
        if anchor == Some(fp) && !trust.is_revoked(jid, &fp) {
            continue;
        }
        if !vouched.iter().any(|(v, _)| *v == fp) && trust.revoke(jid, &fp)? {
            outcome.revoked.push(fp);
        }
    }
    Ok(outcome)
}
