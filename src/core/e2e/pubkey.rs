//! XEP-0189 key publishing and owner attestation (DESIGN §4): each device publishes its certificate
//! to the PEP node `urn:xmpp:pubkey:2` of the network's bare JID (item id = fingerprint hex); an owner
//! device that trusts a newly paired device re-publishes that device's item with an attestation — its
//! signature over the subject's SPKI — so the other devices trust the new key without pairing again.
//!
//! Rules: an attestation counts only if its signer's key is itself pinned first-hand (paired or
//! manual) on the verifying device, or is the signer of the newest revocation list it verified (the
//! *anchor*), the signature verifies against the signer's *published* SPKI whose hash is that
//! fingerprint, and its epoch is not older than that list's: every revocation makes older
//! attestations void until re-issued. Revocation is the owner-signed list of
//! [`super::revocation`], published on this node as item `revocations-<signer hex>`;
//! [`sync_attested`] verifies the lists first, drops every pin they name (first-hand ones too),
//! then removes every attested pin no longer vouched for. Keys and lists come in one fetch: if it
//! fails, attested keys are refused.

//!
//! Jobs, one file each: this file holds the payloads and their signatures; `pubkey/pep.rs` the
//! requests to the key node (publish, retract, configure, fetch); `pubkey/sync.rs` the trust
//! decisions on what was fetched (revocation lists, then attested pins).

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::pubsub::PubSubPayload;
use xso::text::Base64;
use xso::{AsXml, FromXml};

use super::revocation::RevocationList;
use super::xml::parse_fingerprint_hex;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{DeviceFingerprint, DeviceIdentity};

mod pep;
mod sync;
#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use pep::parse_directory;
pub use pep::{
    ensure_own_published, fetch, fetch_directory, publish, publish_item, publish_own,
    publish_revocations, retract, Directory, PublishedKey,
};
pub use sync::{
    apply_directory, apply_revocations, sync_attested, sync_attested_except, SyncOutcome,
};

/// The PEP node and payload namespace of XEP-0189.
pub const NS_PUBKEY: &str = "urn:xmpp:pubkey:2";
/// The caps feature that asks the server for notifications of the key node (XEP-0163 +notify).
pub const NOTIFY_PUBKEY: &str = "urn:xmpp:pubkey:2+notify";
/// Namespace of our attestation element.
pub const NS_ATTEST: &str = "urn:xmpp:tmp:pmn:attest:0";
const ATTEST_CONTEXT: &[u8] = b"pmn-attest-v2\0";

/// `<key>` of XEP-0189: the DER certificate, base64.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBKEY, name = "key", on_unknown_child = Fail)]
pub struct KeyData {
    /// The DER certificate.
    #[xml(text = Base64)]
    pub der: Vec<u8>,
}

/// An owner device's signature over the subject's SPKI.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ATTEST, name = "attestation", on_unknown_child = Fail)]
pub struct Attestation {
    /// Fingerprint (hex) of the signing device.
    #[xml(attribute)]
    pub by: String,
    /// The signer's revocation epoch when it signed: void once a newer revocation list is known.
    /// (Absent on attestations of the first format, which then fail to verify.)
    #[xml(attribute(default))]
    pub epoch: u64,
    /// DER ECDSA P-256/SHA-256 signature over
    /// `"pmn-attest-v2\0" || bare JID || "\0" || epoch (u64 BE) || SPKI`.
    #[xml(text = Base64)]
    pub signature: Vec<u8>,
}

/// `<pubkey xmlns='urn:xmpp:pubkey:2'>`: one device's certificate and its attestations.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBKEY, name = "pubkey", on_unknown_child = Fail)]
pub struct PubKey {
    /// The certificate.
    #[xml(child)]
    pub key: KeyData,
    /// Attestations by owner devices.
    #[xml(child(n = ..))]
    pub attestations: Vec<Attestation>,
}

// Both ride as items of the key node.
impl PubSubPayload for PubKey {}
impl PubSubPayload for RevocationList {}

fn attest_message(jid: &BareJid, epoch: u64, spki: &[u8]) -> Vec<u8> {
    let mut msg = ATTEST_CONTEXT.to_vec();
    msg.extend_from_slice(jid.as_str().as_bytes());
    msg.push(0);
    msg.extend_from_slice(&epoch.to_be_bytes());
    msg.extend_from_slice(spki);
    msg
}

/// Signs an attestation of `subject_spki` (a device of `jid`) at revocation `epoch` (the newest
/// this device knows) with this device's key in its store.
pub fn attest(
    identity: &DeviceIdentity,
    jid: &BareJid,
    subject_spki: &[u8],
    epoch: u64,
) -> Result<Attestation> {
    let signer = identity
        .signing_key()
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or_else(|| Error::new(ErrorKind::Internal, "identity key cannot sign P-256"))?;
    let signature = signer
        .sign(&attest_message(jid, epoch, subject_spki))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("attestation: {e}")))?;
    Ok(Attestation {
        by: identity.fingerprint().to_hex(),
        epoch,
        signature,
    })
}

/// Checks `attestation` of `subject_spki` against the signer's SPKI (not its epoch: see
/// [`sync_attested`]).
pub fn verify_attestation(
    attestation: &Attestation,
    jid: &BareJid,
    subject_spki: &[u8],
    signer_spki: &[u8],
) -> bool {
    let Ok(point) = crate::core::identity::p256_point_from_spki(signer_spki) else {
        return false;
    };
    parse_fingerprint_hex(&attestation.by) == Some(DeviceFingerprint::from_spki(signer_spki))
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(
                &attest_message(jid, attestation.epoch, subject_spki),
                &attestation.signature,
            )
            .is_ok()
}
