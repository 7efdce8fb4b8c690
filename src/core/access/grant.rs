//! Signing and verifying grants and revocations.
//!
//! **Canonical bytes.** What is signed is not the XML but a length-prefixed binary encoding of the
//! fields, in a fixed order, after a domain-separation tag:
//!
//! ```text
//! field(b)  = u32 big-endian length of b || b
//! grant     = field("pmn/access/grant/v1") field(id) field(network) field(guest) field(device, 32 B)
//!             u32 count || field(scope name)… (sorted by name)
//!             u64 not-before || u64 expires || u64 version || field(issuer, 32 B)
//!             (0x00 | 0x01 field(item))
//! revoke    = field("pmn/access/revoke/v1") field(id) field(network) u64 version field(issuer, 32 B)
//! ```
//!
//! Why not sign the XML or canonical JSON: XML canonicalisation (namespaces, attribute order,
//! whitespace, escaping) and JSON canonicalisation (key order, number and string escaping) are easy to
//! get subtly different between two implementations, and a signature over "the same" document that
//! serialises differently fails — or worse, two parsers read one signed document differently. A
//! length prefix makes every field boundary unambiguous (no `"a|b" + "c"` vs `"a" + "b|c"`), integers
//! are fixed width, and scopes are sorted, so equal grants always give equal bytes whatever carried
//! them. The tag stops a signature over a revocation (or anything else the owner key signs later, such
//! as device attestations) from being accepted as a grant. JIDs are signed in the normalised form the
//! `jid` crate gives them, so `Home@Home.test` and `home@home.test` sign the same.

use std::collections::HashMap;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use xmpp_parsers::jid::BareJid;

use super::{AccessError, DeviceFingerprint, GrantId, ItemId, Scope, SignedGrant, SignedRevoke};
use crate::core::identity::{p256_point_from_spki, KeyStore};

/// Longest validity of one grant (90 days): a guest who stays longer gets a new grant, and a lost
/// phone's grants end by themselves.
pub const MAX_GRANT_LIFETIME_SECS: u64 = 90 * 24 * 3600;

const GRANT_TAG: &[u8] = b"pmn/access/grant/v1";
const REVOKE_TAG: &[u8] = b"pmn/access/revoke/v1";

/// Appends `bytes` with its u32 length prefix (the canonical encoding of every signed field; also
/// used by the owner-signed playlist entries of [`crate::core::pubsub`]).
pub(crate) fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every field we sign is bounded far below 4 GiB (ids 64 B, JIDs 3 KiB, items 256 B).
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

pub(super) fn grant_signed_bytes(g: &SignedGrant) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    put_field(&mut out, GRANT_TAG);
    put_field(&mut out, g.id.as_str().as_bytes());
    put_field(&mut out, g.network.as_str().as_bytes());
    put_field(&mut out, g.guest.as_str().as_bytes());
    put_field(&mut out, g.device.as_bytes());
    let mut names: Vec<&str> = g.scopes.iter().map(|s| s.name()).collect();
    names.sort_unstable();
    let count = u32::try_from(names.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for name in names {
        put_field(&mut out, name.as_bytes());
    }
    out.extend_from_slice(&g.not_before.to_be_bytes());
    out.extend_from_slice(&g.expires.to_be_bytes());
    out.extend_from_slice(&g.version.to_be_bytes());
    put_field(&mut out, g.issuer.as_bytes());
    match &g.item {
        None => out.push(0),
        Some(item) => {
            out.push(1);
            put_field(&mut out, item.as_str().as_bytes());
        }
    }
    out
}

pub(super) fn revoke_signed_bytes(r: &SignedRevoke) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    put_field(&mut out, REVOKE_TAG);
    put_field(&mut out, r.id.as_str().as_bytes());
    put_field(&mut out, r.network.as_str().as_bytes());
    out.extend_from_slice(&r.version.to_be_bytes());
    put_field(&mut out, r.issuer.as_bytes());
    out
}

/// Signs `message` with `alias` and returns the signature and the fingerprint of the key.
/// The signature is checked against the store's own public key before it leaves, so a broken
/// backend is found on the owner's phone, not as a mysterious refusal on the TV. Shared with the
/// owner-signed playlist entries of [`crate::core::pubsub`], so the owner key signs one way.
pub(crate) fn sign_with(
    store: &dyn KeyStore,
    alias: &str,
    message: impl Fn(&DeviceFingerprint) -> Vec<u8>,
) -> Result<(DeviceFingerprint, Vec<u8>), AccessError> {
    let spki = store.public_key(alias).map_err(AccessError::Signing)?;
    let issuer = DeviceFingerprint::from_spki(&spki);
    let bytes = message(&issuer);
    let signature = store.sign(alias, &bytes).map_err(AccessError::Signing)?;
    let point = p256_point_from_spki(&spki).map_err(|e| {
        AccessError::Signing(crate::core::identity::KeyStoreError::Corrupt {
            alias: alias.to_owned(),
            reason: e,
        })
    })?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
        .verify(&bytes, &signature)
        .map_err(|_| {
            AccessError::Signing(crate::core::identity::KeyStoreError::Platform(
                "the key store returned a signature that does not verify".to_owned(),
            ))
        })?;
    Ok((issuer, signature))
}

/// A grant the owner is about to approve: everything but the issuer and the signature.
///
/// ```
/// use pmn::core::access::{GrantDraft, DeviceFingerprint, OwnerKeys, Scope};
/// use pmn::core::identity::{KeyPolicy, KeyStore};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = pmn::platform::software::SoftwareKeyStore::open(dir.path()).unwrap();
/// let spki = store.generate("owner-approval", KeyPolicy::OwnerApproval { user_presence: false }).unwrap();
///
/// let draft = GrantDraft::new(
///     "home@home.test".parse().unwrap(),          // this network
///     "romeo@friend.test".parse().unwrap(),       // the guest
///     DeviceFingerprint::from_spki(b"romeo's phone SPKI"),
///     vec![Scope::Playback],
///     1_700_000_000,                               // not before
///     1_700_000_000 + 2 * 3600,                    // expires
///     7,                                           // ACL version
/// );
/// let grant = draft.sign(&store, "owner-approval").unwrap();
///
/// let mut owners = OwnerKeys::new("home@home.test".parse().unwrap());
/// owners.add(&spki).unwrap();
/// assert!(owners.verify_grant(&grant).is_ok());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GrantDraft {
    /// A fresh random id unless set.
    pub id: GrantId,
    /// The network whose devices honour the grant.
    pub network: BareJid,
    /// The guest's bare JID.
    pub guest: BareJid,
    /// The guest device allowed to call.
    pub device: DeviceFingerprint,
    /// What the guest may do.
    pub scopes: Vec<Scope>,
    /// Valid from (seconds since the epoch).
    pub not_before: u64,
    /// Valid until (seconds since the epoch).
    pub expires: u64,
    /// The ACL version the owner's phone knows (the provider refuses anything lower).
    pub version: u64,
    /// The one item, for `library-item`.
    pub item: Option<ItemId>,
}

impl GrantDraft {
    /// A draft with a fresh random id and no item.
    pub fn new(
        network: BareJid,
        guest: BareJid,
        device: DeviceFingerprint,
        scopes: Vec<Scope>,
        not_before: u64,
        expires: u64,
        version: u64,
    ) -> Self {
        GrantDraft {
            id: GrantId::random(),
            network,
            guest,
            device,
            scopes,
            not_before,
            expires,
            version,
            item: None,
        }
    }

    /// The same draft limited to one item (add [`Scope::LibraryItem`] to the scopes too).
    pub fn for_item(mut self, item: ItemId) -> Self {
        self.item = Some(item);
        self
    }

    /// Signs with the owner-approval key `alias` of `store`; the issuer is that key's fingerprint.
    /// On a phone the store may ask for user presence here (then [`AccessError::Signing`] with
    /// `UserAuthenticationRequired` until the user confirmed).
    pub fn sign(self, store: &dyn KeyStore, alias: &str) -> Result<SignedGrant, AccessError> {
        let mut scopes = self.scopes;
        scopes.sort_unstable();
        let mut grant = SignedGrant {
            id: self.id,
            network: self.network,
            guest: self.guest,
            device: self.device,
            not_before: self.not_before,
            expires: self.expires,
            version: self.version,
            // Replaced by the key's own fingerprint below, so a grant can never name another issuer.
            issuer: DeviceFingerprint([0; 32]),
            item: self.item,
            scopes,
            signature: Vec::new(),
        };
        grant.validate()?;
        let (issuer, signature) = sign_with(store, alias, |issuer| {
            let mut g = grant.clone();
            g.issuer = *issuer;
            g.signed_bytes()
        })?;
        grant.issuer = issuer;
        grant.signature = signature;
        Ok(grant)
    }
}

impl SignedRevoke {
    /// Signs the revocation of grant `id` on `network`, moving the ACL to at least `version`.
    pub fn sign(
        network: BareJid,
        id: GrantId,
        version: u64,
        store: &dyn KeyStore,
        alias: &str,
    ) -> Result<SignedRevoke, AccessError> {
        let mut revoke = SignedRevoke {
            id,
            network,
            version,
            issuer: DeviceFingerprint([0; 32]),
            signature: Vec::new(),
        };
        let (issuer, signature) = sign_with(store, alias, |issuer| {
            let mut r = revoke.clone();
            r.issuer = *issuer;
            r.signed_bytes()
        })?;
        revoke.issuer = issuer;
        revoke.signature = signature;
        Ok(revoke)
    }
}

/// The owner-approval keys of one network's devices: who may issue grants and revocations.
///
/// A provider fills it from the owner devices it trusts (paired or attested, DESIGN §4); keys are
/// P-256 SPKIs, addressed by fingerprint.
#[derive(Clone, Debug)]
pub struct OwnerKeys {
    network: BareJid,
    /// Fingerprint → (uncompressed P-256 point, what ring verifies with; the SPKI, what is stored).
    keys: HashMap<DeviceFingerprint, (Vec<u8>, Vec<u8>)>,
}

impl OwnerKeys {
    /// An empty set for `network` (nobody can issue grants yet).
    pub fn new(network: BareJid) -> Self {
        OwnerKeys {
            network,
            keys: HashMap::new(),
        }
    }

    /// The network these keys belong to.
    pub fn network(&self) -> &BareJid {
        &self.network
    }

    /// Adds an owner-approval key (DER SPKI); returns its fingerprint. Only P-256 keys are accepted.
    pub fn add(&mut self, spki: &[u8]) -> Result<DeviceFingerprint, AccessError> {
        let point = p256_point_from_spki(spki).map_err(AccessError::Malformed)?;
        let fp = DeviceFingerprint::from_spki(spki);
        self.keys.insert(fp, (point.to_vec(), spki.to_vec()));
        Ok(fp)
    }

    /// Removes a key (a device left the household); returns whether it was there. Its grants stop
    /// verifying, and [`super::Acl::set_owner_keys`] drops them.
    pub fn remove(&mut self, fingerprint: &DeviceFingerprint) -> bool {
        self.keys.remove(fingerprint).is_some()
    }

    /// Whether `fingerprint` is an owner key.
    pub fn contains(&self, fingerprint: &DeviceFingerprint) -> bool {
        self.keys.contains_key(fingerprint)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The DER SPKI of key `fingerprint`.
    pub fn spki(&self, fingerprint: &DeviceFingerprint) -> Option<&[u8]> {
        self.keys.get(fingerprint).map(|(_, spki)| spki.as_slice())
    }

    /// The keys as DER SPKIs, in fingerprint order (what an ACL file stores).
    pub fn spkis(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_by_key(|(fp, _)| **fp);
        keys.into_iter()
            .map(|(_, (_, spki))| spki.clone())
            .collect()
    }

    fn verify(
        &self,
        network: &BareJid,
        issuer: &DeviceFingerprint,
        id: &GrantId,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), AccessError> {
        if network != &self.network {
            return Err(AccessError::WrongNetwork {
                expected: self.network.to_string(),
                got: network.to_string(),
            });
        }
        let (point, _) = self
            .keys
            .get(issuer)
            .ok_or_else(|| AccessError::UnknownIssuer {
                issuer: issuer.to_hex(),
            })?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(message, signature)
            .map_err(|_| AccessError::BadSignature { id: id.to_string() })
    }

    /// Checks an owner signature over `message` by `issuer` (not bound to a grant id): the
    /// playlist entries of [`crate::core::pubsub`] reuse the owner keys a household already keeps.
    pub(crate) fn verify_signature(
        &self,
        issuer: &DeviceFingerprint,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), AccessError> {
        let (point, _) = self
            .keys
            .get(issuer)
            .ok_or_else(|| AccessError::UnknownIssuer {
                issuer: issuer.to_hex(),
            })?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(message, signature)
            .map_err(|_| AccessError::BadSignature { id: String::new() })
    }

    /// Checks a grant's fields, network, issuer and signature (not its time window: that is the
    /// provider's clock's business, in [`super::Acl`]).
    pub fn verify_grant(&self, grant: &SignedGrant) -> Result<(), AccessError> {
        grant.validate()?;
        self.verify(
            &grant.network,
            &grant.issuer,
            &grant.id,
            &grant.signed_bytes(),
            &grant.signature,
        )
    }

    /// Checks a revocation's network, issuer and signature.
    pub fn verify_revoke(&self, revoke: &SignedRevoke) -> Result<(), AccessError> {
        self.verify(
            &revoke.network,
            &revoke.issuer,
            &revoke.id,
            &revoke.signed_bytes(),
            &revoke.signature,
        )
    }
}
