//! The guest introduction, authenticated (issue 12). Before any tunnel exists the guest's key
//! (in his request) and the TV keys (in the owner's answer) cross the server, which could swap
//! them: answer "approved" itself, with its own key as "the TV". So the owner's decision is signed
//! with the owner-approval key over the whole transcript, and both phones — in the same room in
//! the spec's scenario — show a six-digit *confirmation code* derived from that transcript
//! (request: host, guest, guest key; decision: grant, expiry, every TV key; the owner key). The
//! guest's phone pins the TV keys only once its user confirmed that the codes match
//! ([`crate::core::controller::Controller::confirm_access`]). A server that changed any key makes
//! the codes differ with probability 1 − 10⁻⁶.

use ring::digest::{digest, SHA256};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use xmpp_parsers::jid::BareJid;
use xso::text::Base64;
use xso::{AsXml, FromXml};

use super::grant::sign_with;
use super::{AccessError, DeviceFingerprint, GrantId, NS_ACCESS};
use crate::core::identity::{p256_point_from_spki, KeyStore};

/// The owner's signature over an introduction, carried in the `<decision>`.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ACCESS, name = "introduction", on_unknown_child = Fail, on_unknown_attribute = Fail)]
pub struct Introduction {
    /// DER SPKI of the owner-approval key that signed (the guest learns it here).
    #[xml(attribute(codec = Base64))]
    pub owner: Vec<u8>,
    /// ECDSA P-256 / SHA-256 (ASN.1 DER) over [`Transcript::bytes`].
    #[xml(attribute(codec = Base64))]
    pub signature: Vec<u8>,
}

/// Everything both phones must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript<'a> {
    /// The host network (asked).
    pub host: &'a BareJid,
    /// The guest's network (asking).
    pub guest: &'a BareJid,
    /// The guest device's key, as its request named it.
    pub guest_device: &'a DeviceFingerprint,
    /// The grant approved.
    pub grant: &'a GrantId,
    /// Its expiry.
    pub expires: u64,
    /// The host's devices (TV keys) the guest is to pin.
    pub devices: &'a [DeviceFingerprint],
}

impl Transcript<'_> {
    /// The signed bytes: a domain separator, then each field length-prefixed, the devices sorted,
    /// then the owner key.
    pub fn bytes(&self, owner_spki: &[u8]) -> Vec<u8> {
        let mut out = b"pmn-guest-introduction-v1\0".to_vec();
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.host.as_str().as_bytes());
        field(self.guest.as_str().as_bytes());
        field(&self.guest_device.0);
        field(self.grant.as_str().as_bytes());
        field(&self.expires.to_be_bytes());
        // Sorted by bytes (the fingerprints' order), once each: the list is a set.
        let mut devices: Vec<DeviceFingerprint> = self.devices.to_vec();
        devices.sort_unstable();
        devices.dedup();
        let devices: Vec<u8> = devices.iter().flat_map(|d| d.0).collect();
        field(&devices);
        field(owner_spki);
        out
    }

    /// Signs with the owner-approval key `alias` of `store` (the owner's phone, at approval).
    pub fn sign(&self, store: &dyn KeyStore, alias: &str) -> Result<Introduction, AccessError> {
        let owner = store.public_key(alias).map_err(AccessError::Signing)?;
        let (_, signature) = sign_with(store, alias, |_| self.bytes(&owner))?;
        Ok(Introduction { owner, signature })
    }

    /// Checks the owner's signature (the guest's phone, on the decision).
    pub fn verify(&self, intro: &Introduction) -> Result<(), AccessError> {
        let point = p256_point_from_spki(&intro.owner).map_err(AccessError::Malformed)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(&self.bytes(&intro.owner), &intro.signature)
            .map_err(|_| AccessError::BadSignature {
                id: self.grant.to_string(),
            })
    }

    /// The six digits both phones show: from the SHA-256 of the signed bytes.
    pub fn confirmation_code(&self, owner_spki: &[u8]) -> String {
        let hash = digest(&SHA256, &self.bytes(owner_spki));
        let mut first = [0u8; 4];
        first.copy_from_slice(&hash.as_ref()[..4]);
        format!("{:06}", u32::from_be_bytes(first) % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::identity::KeyPolicy;
    use crate::platform::software::SoftwareKeyStore;

    fn owner() -> (tempfile::TempDir, SoftwareKeyStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SoftwareKeyStore::open(dir.path().join("keys")).expect("store");
        store
            .generate(
                "owner",
                KeyPolicy::OwnerApproval {
                    user_presence: false,
                },
            )
            .expect("key");
        (dir, store)
    }

    #[test]
    fn a_swapped_key_changes_the_code_and_breaks_the_signature() {
        let (_dir, store) = owner();
        let host: BareJid = "home@home.test".parse().unwrap();
        let guest: BareJid = "romeo@friend.test".parse().unwrap();
        let grant = GrantId::new("g1").unwrap();
        let tv = [DeviceFingerprint([1; 32])];
        let honest = Transcript {
            host: &host,
            guest: &guest,
            guest_device: &DeviceFingerprint([7; 32]),
            grant: &grant,
            expires: 1_700_000_000,
            devices: &tv,
        };
        let intro = honest.sign(&store, "owner").expect("sign");
        honest.verify(&intro).expect("verifies");
        let code = honest.confirmation_code(&intro.owner);
        assert_eq!(code.len(), 6);
        // The server's own key as "the TV".
        let servers = [DeviceFingerprint([2; 32])];
        let swapped_tv = Transcript {
            devices: &servers,
            ..honest.clone()
        };
        assert!(swapped_tv.verify(&intro).is_err());
        assert_ne!(swapped_tv.confirmation_code(&intro.owner), code);
        // The server's key as the guest's (it relays a request of its own).
        let swapped_guest = Transcript {
            guest_device: &DeviceFingerprint([8; 32]),
            ..honest.clone()
        };
        assert!(swapped_guest.verify(&intro).is_err());
        assert_ne!(swapped_guest.confirmation_code(&intro.owner), code);
        // The server signs with its own "owner" key: the signature verifies, the code differs.
        let (_dir2, forger) = owner();
        let forged = honest.sign(&forger, "owner").expect("sign");
        honest.verify(&forged).expect("self-consistent");
        assert_ne!(honest.confirmation_code(&forged.owner), code);
        // Device order does not matter.
        let two = [DeviceFingerprint([1; 32]), DeviceFingerprint([3; 32])];
        let rev = [DeviceFingerprint([3; 32]), DeviceFingerprint([1; 32])];
        assert_eq!(
            Transcript {
                devices: &two,
                ..honest.clone()
            }
            .bytes(b"k"),
            Transcript {
                devices: &rev,
                ..honest
            }
            .bytes(b"k")
        );
    }
}
