//! Device identity: the [`KeyStore`] trait every key backend implements, the P-256 key formats they
//! exchange, and what is built on top of a store — the rustls signer ([`KeyStoreSigningKey`]) and the
//! self-signed device certificate ([`device_certificate`]).
//!
//! This module owns one rule: **a private key never leaves its store.** Everything here works from
//! the public key (SPKI DER) and from signatures the store returns; nothing in this module ever sees
//! private key bytes, so the same code serves the Android Keystore, the Apple Secure Enclave, the
//! software store and a store supplied by the app. Backends live in `crate::platform`.
//!
//! Keys are ECDSA P-256 and signatures are DER-encoded ECDSA over SHA-256 of the *unhashed* message,
//! which is what TLS 1.3 (`ecdsa_secp256r1_sha256`), Android `SHA256withECDSA` and Apple
//! `ECDSASignatureMessageX962SHA256` all agree on (shared/DESIGN.md §4 "Keys").

mod cert;
mod fingerprint;
mod pinned;
mod tls;

use std::fmt;

pub use cert::{certificate_spki, device_certificate, self_signed_certificate, DeviceIdentity};
pub use fingerprint::DeviceFingerprint;
pub use pinned::PinnedPeerKey;
pub use tls::{KeyStoreSigner, KeyStoreSigningKey};

/// What a key is for; backends turn it into platform protection settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPolicy {
    /// The device's TLS identity key (end-to-end tunnel, DESIGN §4). It signs during every handshake,
    /// often with no one looking at the screen, so it never requires user presence.
    TlsIdentity,
    /// The owner-approval key that signs guest grants (DESIGN §5). With `user_presence` the platform
    /// gates each use behind the user (biometrics / device credential), so signing must happen where
    /// the platform can show its prompt. Stores that cannot enforce it refuse to create such a key
    /// rather than silently creating a weaker one.
    OwnerApproval {
        /// Require the user to authenticate before the key signs.
        user_presence: bool,
    },
}

impl KeyPolicy {
    /// Whether a key with this policy must be gated behind user presence.
    pub fn requires_user_presence(self) -> bool {
        matches!(
            self,
            KeyPolicy::OwnerApproval {
                user_presence: true
            }
        )
    }
}

/// Why a key store operation failed. Stable variants so callers (and the FFI layer) can branch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyStoreError {
    /// No key with this alias exists in the store.
    #[error("no key with alias `{alias}`")]
    NotFound {
        /// The alias asked for.
        alias: String,
    },
    /// `generate` was called for an alias that already holds a key; keys are never overwritten.
    #[error("a key with alias `{alias}` already exists")]
    AlreadyExists {
        /// The alias asked for.
        alias: String,
    },
    /// The alias is not a valid key name (see [`validate_alias`]).
    #[error("invalid key alias `{alias}`: {reason}")]
    InvalidAlias {
        /// The alias given.
        alias: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file can be read by other users; the store refuses to use it.
    #[error("key file {path} has insecure permissions {mode:o} (must not be group/world accessible; chmod 600)")]
    InsecurePermissions {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The stored key (or what the platform returned for it) is not a valid P-256 key.
    #[error("key `{alias}` is corrupt: {reason}")]
    Corrupt {
        /// The alias of the key.
        alias: String,
        /// What failed to parse.
        reason: String,
    },
    /// The platform store was used before its explicit init (Kotlin `PmnPlatform.nativeInit`).
    #[error("platform key store not initialised: call PmnPlatform.init (Android: Pmn.initAndroid) first")]
    PlatformNotInitialised,
    /// The key requires user authentication and the user has not authenticated recently.
    #[error("key `{alias}` requires user authentication before it can sign")]
    UserAuthenticationRequired {
        /// The alias of the key.
        alias: String,
    },
    /// The store cannot do what was asked (e.g. user presence on a software store).
    #[error("unsupported by this key store: {0}")]
    Unsupported(String),
    /// An I/O failure of a file-backed store.
    #[error("key store I/O error: {0}")]
    Io(String),
    /// The platform reported an error (Java exception, OSStatus, foreign callback failure).
    #[error("platform key store error: {0}")]
    Platform(String),
}

/// A store of sign-only ECDSA P-256 keys, addressed by alias.
///
/// Implementations must be safe to call from any thread (the TLS stack signs from tokio workers) and
/// must never expose private key material through any method or log line.
pub trait KeyStore: Send + Sync {
    /// Creates a new key under `alias` and returns its public key (SPKI DER).
    /// Fails with [`KeyStoreError::AlreadyExists`] if the alias is taken.
    fn generate(&self, alias: &str, policy: KeyPolicy) -> Result<Vec<u8>, KeyStoreError>;
    /// The public key of `alias` as a DER `SubjectPublicKeyInfo`.
    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError>;
    /// Signs `message` (unhashed; the store hashes with SHA-256) and returns a DER ECDSA signature.
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError>;
    /// Deletes the key; [`KeyStoreError::NotFound`] if there is none.
    fn delete(&self, alias: &str) -> Result<(), KeyStoreError>;
    /// The aliases of the keys in this store, sorted.
    fn list(&self) -> Result<Vec<String>, KeyStoreError>;
    /// A short name of the backend for logs and diagnostics (`"software"`, `"android-keystore"`, …).
    fn backend(&self) -> &'static str;
}

impl fmt::Debug for dyn KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyStore({})", self.backend())
    }
}

/// Longest alias accepted; platform stores add a prefix and some limit label lengths.
pub const MAX_ALIAS_LEN: usize = 64;

/// Checks an alias: 1–64 characters of `a-z 0-9 . _ -`, not starting with `.` or `-`.
///
/// Lower case only because the desktop JVM's PKCS12 store folds aliases to lower case; one rule for
/// every backend keeps an alias meaning the same key everywhere. The software store also uses the
/// alias as a file name, which this charset keeps safe (no `/`, no `..`).
pub fn validate_alias(alias: &str) -> Result<(), KeyStoreError> {
    let invalid = |reason: &str| KeyStoreError::InvalidAlias {
        alias: alias.to_owned(),
        reason: reason.to_owned(),
    };
    if alias.is_empty() || alias.len() > MAX_ALIAS_LEN {
        return Err(invalid("must be 1 to 64 characters"));
    }
    if alias.starts_with('.') || alias.starts_with('-') {
        return Err(invalid("must not start with `.` or `-`"));
    }
    if !alias
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid("only a-z, 0-9, `.`, `_` and `-` are allowed"));
    }
    Ok(())
}

/// SHA-256 of a DER `SubjectPublicKeyInfo`: the digest behind the device fingerprint that DESIGN §4
/// pins and that the XTLS `<fingerprint hash='sha-256'>` element carries. Code that handles a key
/// fingerprint uses the typed [`DeviceFingerprint::from_spki`]; this is the bare hash.
pub fn spki_sha256(spki: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The fixed DER prefix of a P-256 `SubjectPublicKeyInfo` with an uncompressed point:
/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (66 bytes, 0 unused bits) }`.
/// Every backend (ring, Java `getEncoded()`, Apple's X9.63 point wrapped here) yields exactly this
/// form, so a byte comparison is a complete parser for the one key type we accept.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of an uncompressed P-256 point (`0x04 || X || Y`).
pub const P256_POINT_LEN: usize = 65;

/// Wraps an uncompressed P-256 point (65 bytes, X9.63) into a DER `SubjectPublicKeyInfo`.
pub fn p256_spki_from_point(point: &[u8]) -> Result<Vec<u8>, String> {
    if point.len() != P256_POINT_LEN || point[0] != 0x04 {
        return Err(format!(
            "expected a 65-byte uncompressed P-256 point, got {} bytes",
            point.len()
        ));
    }
    let mut spki = Vec::with_capacity(P256_SPKI_PREFIX.len() + P256_POINT_LEN);
    spki.extend_from_slice(&P256_SPKI_PREFIX);
    spki.extend_from_slice(point);
    Ok(spki)
}

/// The uncompressed point inside a P-256 `SubjectPublicKeyInfo`; an error for any other key type.
pub fn p256_point_from_spki(spki: &[u8]) -> Result<&[u8], String> {
    match spki.strip_prefix(&P256_SPKI_PREFIX[..]) {
        Some(point) if point.len() == P256_POINT_LEN && point[0] == 0x04 => Ok(point),
        _ => Err("not a P-256 SubjectPublicKeyInfo with an uncompressed point".to_owned()),
    }
}

/// Checks that what a backend returned is a P-256 SPKI (a store must not hand the TLS stack or a
/// peer anything else); maps a mismatch to [`KeyStoreError::Corrupt`].
pub fn check_p256_spki(alias: &str, spki: Vec<u8>) -> Result<Vec<u8>, KeyStoreError> {
    match p256_point_from_spki(&spki) {
        Ok(_) => Ok(spki),
        Err(reason) => Err(KeyStoreError::Corrupt {
            alias: alias.to_owned(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_rules_reject_path_tricks_and_upper_case() {
        for ok in ["device", "tls-identity", "owner.approval_1", "a"] {
            assert!(validate_alias(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "-x",
            "Device",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(validate_alias(bad), Err(KeyStoreError::InvalidAlias { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn spki_point_round_trip_and_rejects_other_keys() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[7u8; 64]);
        let spki = p256_spki_from_point(&point).unwrap();
        assert_eq!(spki.len(), 91);
        assert_eq!(p256_point_from_spki(&spki).unwrap(), &point[..]);
        assert!(p256_point_from_spki(&spki[..90]).is_err());
        assert!(p256_spki_from_point(&point[..64]).is_err());
        assert!(matches!(
            check_p256_spki("k", vec![0x30, 0x00]),
            Err(KeyStoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn fingerprint_is_sha256_of_the_spki() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            DeviceFingerprint::from_spki(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

#[cfg(test)]
mod store_tests;
