//! The network's revocation list (DESIGN §4, "Revocation is a signed, ordered fact"): an owner
//! device signs the set of revoked device keys (SPKI fingerprints) of its network together with a
//! monotonic epoch, and publishes it on the network's key node (`urn:xmpp:pubkey:2`) as the item
//! `revocations-<signer fingerprint hex>`.
//!
//! This module is the wire format, signing and the signature check; what a device does with a
//! verified list (is the signer trusted, is the epoch newer than the one it keeps, which pins drop)
//! is [`crate::core::e2e::trust::TrustStore::accept_revocations`].
//!
//! Wire format:
//! ```xml
//! <revocations xmlns='urn:xmpp:tmp:pmn:revocations:0' epoch='2'>
//!   <signer>base64 SPKI DER of the signing device</signer>
//!   <revoked fingerprint='hex SHA-256 of a revoked SPKI'/>   (0..1024)
//!   <signature>base64 DER ECDSA P-256/SHA-256</signature>
//! </revocations>
//! ```
//! The signature covers `"pmn-revocations-v1\0" || bare JID || "\0" || epoch (u64 BE) ||
//! len(SPKI) (u32 BE) || SPKI || count (u32 BE) || the revoked fingerprints, sorted, deduplicated`:
//! bound to the network, the epoch, the signer and the exact set, so no part can be swapped.

use std::collections::BTreeSet;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;
use xso::text::Base64;
use xso::{AsXml, FromXml};

use super::xml::parse_fingerprint_hex;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{DeviceFingerprint, DeviceIdentity};

/// Namespace of the revocation list payload.
pub const NS_REVOCATIONS: &str = "urn:xmpp:tmp:pmn:revocations:0";
/// Prefix of the key node item ids that carry a revocation list (followed by the signer's
/// fingerprint hex): one item per signer, so two owners never overwrite each other's list.
pub const ITEM_PREFIX: &str = "revocations-";
/// The most entries a list may carry (input from the server: bounded before any work).
pub const MAX_REVOKED: usize = 1024;
const CONTEXT: &[u8] = b"pmn-revocations-v1\0";

/// `<signer>`: the signing device's SPKI.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_REVOCATIONS, name = "signer")]
pub struct Signer {
    /// SPKI DER.
    #[xml(text = Base64)]
    pub spki: Vec<u8>,
}

/// `<revoked fingerprint='…'/>`: one revoked device key.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_REVOCATIONS, name = "revoked")]
pub struct Revoked {
    /// Lower-case hex SHA-256 of the revoked SPKI.
    #[xml(attribute)]
    pub fingerprint: String,
}

/// `<signature>`: DER ECDSA over the list's signed bytes.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_REVOCATIONS, name = "signature")]
pub struct ListSignature {
    /// DER ECDSA P-256/SHA-256 signature.
    #[xml(text = Base64)]
    pub der: Vec<u8>,
}

/// `<revocations>` as on the wire (not yet verified).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_REVOCATIONS, name = "revocations", on_unknown_child = Fail)]
pub struct RevocationList {
    /// Monotonic epoch: a device never accepts a list older than the newest it verified.
    #[xml(attribute)]
    pub epoch: u64,
    /// Who signed.
    #[xml(child)]
    pub signer: Signer,
    /// Every revoked key (cumulative: a new list repeats the older ones' entries).
    #[xml(child(n = ..))]
    pub revoked: Vec<Revoked>,
    /// The signature.
    #[xml(child)]
    pub signature: ListSignature,
}

/// A list whose signature verified (its signer is not yet known to be trusted).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedList {
    /// Its epoch.
    pub epoch: u64,
    /// Fingerprint of the signing device.
    pub signer: DeviceFingerprint,
    /// The revoked fingerprints.
    pub revoked: BTreeSet<DeviceFingerprint>,
    /// The list as signed, to publish again if the server stops serving it.
    pub signed: RevocationList,
}

/// Why a revocation list was refused. Never fatal to the session: a refused list leaves the
/// device with the newest list it verified before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// Not a well-formed list (bad XML, bad fingerprint, bad key).
    Malformed(String),
    /// More entries than [`MAX_REVOKED`].
    TooLarge(usize),
    /// The signature does not verify against the signer's key.
    BadSignature,
    /// The list names its own signer (a key cannot vouch for a list that revokes it).
    SignerRevokedInList,
    /// The signer is not trusted on this device (neither first-hand nor by attestation).
    UnknownSigner(DeviceFingerprint),
    /// The signer was revoked by a list this device verified earlier.
    RevokedSigner(DeviceFingerprint),
    /// The epoch is lower than the newest this device verified (a replay by the server).
    Rollback {
        /// The newest epoch this device knows.
        known: u64,
        /// The epoch of the refused list.
        got: u64,
    },
    /// The verified list could not be persisted (nothing changed).
    Storage(String),
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::Malformed(why) => write!(f, "malformed revocation list: {why}"),
            ListError::TooLarge(n) => {
                write!(
                    f,
                    "revocation list with {n} entries (at most {MAX_REVOKED})"
                )
            }
            ListError::BadSignature => write!(f, "revocation list signature does not verify"),
            ListError::SignerRevokedInList => write!(f, "revocation list revokes its own signer"),
            ListError::UnknownSigner(fp) => {
                write!(f, "revocation list signed by untrusted key {}", fp.to_hex())
            }
            ListError::RevokedSigner(fp) => {
                write!(f, "revocation list signed by revoked key {}", fp.to_hex())
            }
            ListError::Rollback { known, got } => write!(
                f,
                "revocation list epoch {got} is older than the known epoch {known}"
            ),
            ListError::Storage(why) => write!(f, "cannot save the revocation list: {why}"),
        }
    }
}

impl std::error::Error for ListError {}

impl From<ListError> for Error {
    fn from(e: ListError) -> Self {
        let kind = match &e {
            ListError::Malformed(_) | ListError::TooLarge(_) => ErrorKind::Protocol,
            ListError::Storage(_) => ErrorKind::Config,
            _ => ErrorKind::Forbidden,
        };
        Error::new(kind, e.to_string())
    }
}

fn signed_bytes(
    jid: &BareJid,
    epoch: u64,
    signer_spki: &[u8],
    revoked: &BTreeSet<DeviceFingerprint>,
) -> Vec<u8> {
    let mut msg = CONTEXT.to_vec();
    msg.extend_from_slice(jid.as_str().as_bytes());
    msg.push(0);
    msg.extend_from_slice(&epoch.to_be_bytes());
    // Lengths are bounded (an SPKI, at most MAX_REVOKED entries); saturate rather than wrap.
    msg.extend_from_slice(
        &u32::try_from(signer_spki.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    msg.extend_from_slice(signer_spki);
    msg.extend_from_slice(
        &u32::try_from(revoked.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for fp in revoked {
        msg.extend_from_slice(fp.as_bytes());
    }
    msg
}

/// Signs the list `revoked` at `epoch` for network `jid` with this device's key.
pub fn sign_list(
    identity: &DeviceIdentity,
    jid: &BareJid,
    epoch: u64,
    revoked: &BTreeSet<DeviceFingerprint>,
) -> Result<RevocationList> {
    if revoked.len() > MAX_REVOKED {
        return Err(ListError::TooLarge(revoked.len()).into());
    }
    let signer = identity
        .signing_key()
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or_else(|| Error::new(ErrorKind::Internal, "identity key cannot sign P-256"))?;
    let der = signer
        .sign(&signed_bytes(jid, epoch, identity.spki(), revoked))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("revocation list: {e}")))?;
    Ok(RevocationList {
        epoch,
        signer: Signer {
            spki: identity.spki().to_vec(),
        },
        revoked: revoked
            .iter()
            .map(|fp| Revoked {
                fingerprint: fp.to_hex(),
            })
            .collect(),
        signature: ListSignature { der },
    })
}

/// Parses a `<revocations>` payload.
pub fn parse_list(element: &Element) -> std::result::Result<RevocationList, ListError> {
    RevocationList::try_from(element.clone()).map_err(|e| ListError::Malformed(e.to_string()))
}

/// Checks the list's shape and signature for network `jid` (not whether its signer is trusted).
pub fn verify_list(
    list: &RevocationList,
    jid: &BareJid,
) -> std::result::Result<VerifiedList, ListError> {
    if list.revoked.len() > MAX_REVOKED {
        return Err(ListError::TooLarge(list.revoked.len()));
    }
    let mut revoked = BTreeSet::new();
    for entry in &list.revoked {
        let fp = parse_fingerprint_hex(&entry.fingerprint).ok_or_else(|| {
            ListError::Malformed(format!("bad fingerprint {:?}", entry.fingerprint))
        })?;
        revoked.insert(fp);
    }
    let point = crate::core::identity::p256_point_from_spki(&list.signer.spki)
        .map_err(|_| ListError::Malformed("the signer is not a P-256 key".into()))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(
            &signed_bytes(jid, list.epoch, &list.signer.spki, &revoked),
            &list.signature.der,
        )
        .map_err(|_| ListError::BadSignature)?;
    let signer = DeviceFingerprint::from_spki(&list.signer.spki);
    if revoked.contains(&signer) {
        return Err(ListError::SignerRevokedInList);
    }
    Ok(VerifiedList {
        epoch: list.epoch,
        signer,
        revoked,
        signed: list.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn identity(dir: &tempfile::TempDir, name: &str) -> DeviceIdentity {
        let store = Arc::new(
            crate::platform::software::SoftwareKeyStore::open(dir.path().join(name)).unwrap(),
        );
        DeviceIdentity::load_or_generate(store, "tls", name).unwrap()
    }

    #[test]
    fn a_signed_list_verifies_and_round_trips_but_not_for_another_network() {
        let dir = tempfile::tempdir().unwrap();
        let owner = identity(&dir, "owner");
        let jid: BareJid = "home@home.test".parse().unwrap();
        let revoked: BTreeSet<_> =
            [DeviceFingerprint([1u8; 32]), DeviceFingerprint([2u8; 32])].into();
        let list = sign_list(&owner, &jid, 3, &revoked).unwrap();
        let parsed = parse_list(&Element::from(list.clone())).unwrap();
        assert_eq!(parsed, list);
        let verified = verify_list(&parsed, &jid).unwrap();
        assert_eq!(verified.epoch, 3);
        assert_eq!(verified.signer, owner.fingerprint());
        assert_eq!(verified.revoked, revoked);
        let elsewhere: BareJid = "romeo@away.test".parse().unwrap();
        assert_eq!(verify_list(&list, &elsewhere), Err(ListError::BadSignature));
    }

    #[test]
    fn forged_and_malformed_lists_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (owner, thief) = (identity(&dir, "owner"), identity(&dir, "thief"));
        let jid: BareJid = "home@home.test".parse().unwrap();
        let list = sign_list(&owner, &jid, 2, &[DeviceFingerprint([1u8; 32])].into()).unwrap();

        // A higher epoch, an entry removed, or another signer's key: the signature breaks.
        let mut bumped = list.clone();
        bumped.epoch = 9;
        assert_eq!(verify_list(&bumped, &jid), Err(ListError::BadSignature));
        let mut emptied = list.clone();
        emptied.revoked.clear();
        assert_eq!(verify_list(&emptied, &jid), Err(ListError::BadSignature));
        let mut resigned = list.clone();
        resigned.signer.spki = thief.spki().to_vec();
        assert_eq!(verify_list(&resigned, &jid), Err(ListError::BadSignature));
        let mut garbage = list.clone();
        garbage.signature.der = vec![0x30, 0x02, 0x00];
        assert_eq!(verify_list(&garbage, &jid), Err(ListError::BadSignature));

        // A list that revokes its own signer.
        let suicide = sign_list(&owner, &jid, 3, &[owner.fingerprint()].into()).unwrap();
        assert_eq!(
            verify_list(&suicide, &jid),
            Err(ListError::SignerRevokedInList)
        );

        // Shape: a bad fingerprint, a signer that is no key, too many entries, bad XML.
        let mut bad_fp = list.clone();
        bad_fp.revoked.push(Revoked {
            fingerprint: "zz".into(),
        });
        assert!(matches!(
            verify_list(&bad_fp, &jid),
            Err(ListError::Malformed(_))
        ));
        let mut no_key = list.clone();
        no_key.signer.spki = b"not a key".to_vec();
        assert!(matches!(
            verify_list(&no_key, &jid),
            Err(ListError::Malformed(_))
        ));
        let mut huge = list.clone();
        huge.revoked = (0..=MAX_REVOKED)
            .map(|i| Revoked {
                fingerprint: format!("{i:064x}"),
            })
            .collect();
        assert_eq!(
            verify_list(&huge, &jid),
            Err(ListError::TooLarge(MAX_REVOKED + 1))
        );
        for xml in [
            format!("<revocations xmlns='{NS_REVOCATIONS}' epoch='x'/>"),
            format!("<revocations xmlns='{NS_REVOCATIONS}' epoch='1'><signer>AA==</signer></revocations>"),
            format!("<revocations xmlns='{NS_REVOCATIONS}' epoch='1'><signer>AA==</signer><signature>AA==</signature><x/></revocations>"),
        ] {
            let el: Element = xml.parse().unwrap();
            assert!(matches!(parse_list(&el), Err(ListError::Malformed(_))), "{xml}");
        }
        // Converted for callers: typed kinds, never a panic.
        assert_eq!(
            Error::from(ListError::BadSignature).kind(),
            ErrorKind::Forbidden
        );
        assert_eq!(
            Error::from(ListError::Malformed("x".into())).kind(),
            ErrorKind::Protocol
        );
    }
}
