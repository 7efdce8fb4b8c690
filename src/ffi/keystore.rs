//! UniFFI surface of the device key stores: [`DeviceKeyStore`] (software, platform, or app-supplied
//! through the [`ForeignKeyStore`] foreign trait) and [`KeyPolicy`]. A key store failure is
//! `PmnError::Key` with a [`KeyErrorKind`] (Kotlin `PmnException.Key`), not an error type of its
//! own.
//!
//! Thin by design: every method forwards to a `crate::core::identity::KeyStore` and converts types;
//! the rules (alias syntax, P-256 only, permissions) live in `core::identity` and `platform`.
//! Methods are synchronous and may block (StrongBox and Secure Enclave signatures take tens of
//! milliseconds, a user-presence key may wait for the user): call them off the UI thread.

use std::sync::Arc;

use super::error::{KeyErrorKind, PmnError};
use crate::core::identity::{self, check_p256_spki, validate_alias, KeyStore, KeyStoreError};
use crate::platform;

/// What a key is for (mirrors `core::identity::KeyPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum KeyPolicy {
    /// The device's TLS identity key: signs every tunnel handshake, never asks the user.
    TlsIdentity,
    /// The owner-approval key that signs guest grants; `user_presence` gates each use behind the user.
    OwnerApproval {
        /// Require biometrics / device credential before the key signs.
        user_presence: bool,
    },
}

impl From<KeyPolicy> for identity::KeyPolicy {
    fn from(policy: KeyPolicy) -> Self {
        match policy {
            KeyPolicy::TlsIdentity => identity::KeyPolicy::TlsIdentity,
            KeyPolicy::OwnerApproval { user_presence } => {
                identity::KeyPolicy::OwnerApproval { user_presence }
            }
        }
    }
}

impl From<identity::KeyPolicy> for KeyPolicy {
    fn from(policy: identity::KeyPolicy) -> Self {
        match policy {
            identity::KeyPolicy::TlsIdentity => KeyPolicy::TlsIdentity,
            identity::KeyPolicy::OwnerApproval { user_presence } => {
                KeyPolicy::OwnerApproval { user_presence }
            }
        }
    }
}

impl From<KeyStoreError> for PmnError {
    fn from(e: KeyStoreError) -> Self {
        let detail = e.to_string();
        let (kind, alias) = match e {
            KeyStoreError::NotFound { alias } => (KeyErrorKind::NotFound, Some(alias)),
            KeyStoreError::AlreadyExists { alias } => (KeyErrorKind::AlreadyExists, Some(alias)),
            KeyStoreError::InvalidAlias { alias, .. } => (KeyErrorKind::InvalidAlias, Some(alias)),
            KeyStoreError::InsecurePermissions { path, .. } => {
                (KeyErrorKind::InsecurePermissions, Some(path))
            }
            KeyStoreError::Corrupt { alias, .. } => (KeyErrorKind::Corrupt, Some(alias)),
            KeyStoreError::PlatformNotInitialised => (KeyErrorKind::PlatformNotInitialised, None),
            KeyStoreError::UserAuthenticationRequired { alias } => {
                (KeyErrorKind::UserAuthenticationRequired, Some(alias))
            }
            KeyStoreError::Unsupported(_) => (KeyErrorKind::Unsupported, None),
            KeyStoreError::Io(_) => (KeyErrorKind::Io, None),
            KeyStoreError::Platform(_) => (KeyErrorKind::Platform, None),
        };
        PmnError::Key {
            kind,
            alias,
            detail,
        }
    }
}

/// What a foreign store's error means to the core: a `PmnException.Key` keeps its kind (with the
/// alias asked for when it names none); anything else the app threw — another `PmnException`, or
/// an unexpected exception, which UniFFI hands over as `Internal` — is a platform failure.
fn from_foreign(alias: &str, e: PmnError) -> KeyStoreError {
    let PmnError::Key {
        kind,
        alias: named,
        detail,
    } = e
    else {
        return KeyStoreError::Platform(format!("foreign key store: {e}"));
    };
    let alias = named.unwrap_or_else(|| alias.to_owned());
    match kind {
        KeyErrorKind::NotFound => KeyStoreError::NotFound { alias },
        KeyErrorKind::AlreadyExists => KeyStoreError::AlreadyExists { alias },
        KeyErrorKind::InvalidAlias => KeyStoreError::InvalidAlias {
            alias,
            reason: detail,
        },
        KeyErrorKind::Corrupt => KeyStoreError::Corrupt {
            alias,
            reason: detail,
        },
        KeyErrorKind::PlatformNotInitialised => KeyStoreError::PlatformNotInitialised,
        KeyErrorKind::UserAuthenticationRequired => {
            KeyStoreError::UserAuthenticationRequired { alias }
        }
        KeyErrorKind::Unsupported => KeyStoreError::Unsupported(detail),
        KeyErrorKind::Io => KeyStoreError::Io(detail),
        // A foreign store has no file modes to report: its refusal is its own platform's.
        KeyErrorKind::InsecurePermissions | KeyErrorKind::Platform => {
            KeyStoreError::Platform(detail)
        }
    }
}

/// A key store implemented by the app (Kotlin/Swift), e.g. over a hardware token. Same contract as
/// the built-in stores: P-256 keys, `public_key` returns SPKI DER, `sign` gets the *unhashed*
/// message and returns a DER ECDSA-SHA256 signature. Every method returns a result so a throwing
/// implementation is an error, never a crash.
#[uniffi::export(with_foreign)]
pub trait ForeignKeyStore: Send + Sync {
    /// Creates a key under `alias`; returns its SPKI DER.
    fn generate(&self, alias: String, policy: KeyPolicy) -> Result<Vec<u8>, PmnError>;
    /// The SPKI DER of `alias`.
    fn public_key(&self, alias: String) -> Result<Vec<u8>, PmnError>;
    /// DER ECDSA P-256/SHA-256 signature over `message` (unhashed).
    fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, PmnError>;
    /// Deletes `alias`.
    fn delete(&self, alias: String) -> Result<(), PmnError>;
    /// All aliases.
    fn list(&self) -> Result<Vec<String>, PmnError>;
}

/// Adapts an app-supplied store to the core trait, enforcing the core rules on both directions:
/// aliases are validated before the app sees them and public keys must be P-256 SPKIs.
struct ForeignStoreAdapter(Arc<dyn ForeignKeyStore>);

impl KeyStore for ForeignStoreAdapter {
    fn generate(&self, alias: &str, policy: identity::KeyPolicy) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        let spki = self
            .0
            .generate(alias.to_owned(), policy.into())
            .map_err(|e| from_foreign(alias, e))?;
        check_p256_spki(alias, spki)
    }

    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        let spki = self
            .0
            .public_key(alias.to_owned())
            .map_err(|e| from_foreign(alias, e))?;
        check_p256_spki(alias, spki)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        self.0
            .sign(alias.to_owned(), message.to_vec())
            .map_err(|e| from_foreign(alias, e))
    }

    fn delete(&self, alias: &str) -> Result<(), KeyStoreError> {
        validate_alias(alias)?;
        self.0
            .delete(alias.to_owned())
            .map_err(|e| from_foreign(alias, e))
    }

    fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let mut aliases = self.0.list().map_err(|e| from_foreign("", e))?;
        aliases.sort();
        Ok(aliases)
    }

    fn backend(&self) -> &'static str {
        "foreign"
    }
}

/// A device key store as seen from Kotlin/Swift. Close it (`use {}` in Kotlin) when done.
#[derive(uniffi::Object)]
pub struct DeviceKeyStore {
    inner: Arc<dyn KeyStore>,
}

impl std::fmt::Debug for DeviceKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKeyStore({})", self.inner.backend())
    }
}

impl DeviceKeyStore {
    /// The core store, for other parts of the FFI layer (e.g. building a `DeviceIdentity`).
    pub fn key_store(&self) -> Arc<dyn KeyStore> {
        self.inner.clone()
    }
}

#[uniffi::export]
impl DeviceKeyStore {
    /// A software store: one 0600 PKCS#8 file per key in `dir` (created 0700 if missing).
    #[uniffi::constructor]
    pub fn software(dir: String) -> Result<Arc<Self>, PmnError> {
        Ok(Arc::new(DeviceKeyStore {
            inner: Arc::new(platform::software::SoftwareKeyStore::open(dir)?),
        }))
    }

    /// The platform store: Android Keystore, Apple keychain / Secure Enclave, or on a desktop JVM the
    /// PKCS12 test store named by the `pmn.keystore.file` system property. On Android and the JVM,
    /// `PmnPlatform.init` (Android: `Pmn.initAndroid`) must have run, otherwise `PmnException.Key` of kind
    /// `PLATFORM_NOT_INITIALISED`.
    #[uniffi::constructor]
    pub fn platform() -> Result<Arc<Self>, PmnError> {
        Ok(Arc::new(DeviceKeyStore {
            inner: platform::platform_key_store()?,
        }))
    }

    /// A store implemented by the app.
    #[uniffi::constructor]
    pub fn foreign(store: Arc<dyn ForeignKeyStore>) -> Arc<Self> {
        Arc::new(DeviceKeyStore {
            inner: Arc::new(ForeignStoreAdapter(store)),
        })
    }

    /// Which backend this is (`software`, `android-keystore`, `apple-keychain`, `jvm-pkcs12`,
    /// `foreign`).
    pub fn backend(&self) -> String {
        self.inner.backend().to_owned()
    }

    /// Creates a key; returns its public key (SPKI DER).
    pub fn generate(&self, alias: String, policy: KeyPolicy) -> Result<Vec<u8>, PmnError> {
        Ok(self.inner.generate(&alias, policy.into())?)
    }

    /// The public key of `alias` (SPKI DER).
    pub fn public_key(&self, alias: String) -> Result<Vec<u8>, PmnError> {
        Ok(self.inner.public_key(&alias)?)
    }

    /// Signs `message` (unhashed); returns a DER ECDSA P-256/SHA-256 signature.
    pub fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, PmnError> {
        Ok(self.inner.sign(&alias, &message)?)
    }

    /// Deletes `alias`.
    pub fn delete(&self, alias: String) -> Result<(), PmnError> {
        Ok(self.inner.delete(&alias)?)
    }

    /// The aliases in this store, sorted.
    pub fn list(&self) -> Result<Vec<String>, PmnError> {
        Ok(self.inner.list()?)
    }

    /// SHA-256 of the key's SPKI (32 bytes): the fingerprint peers pin.
    pub fn fingerprint(&self, alias: String) -> Result<Vec<u8>, PmnError> {
        let spki = self.inner.public_key(&alias)?;
        Ok(identity::spki_sha256(&spki).to_vec())
    }

    /// A fresh self-signed device certificate (DER) for `alias`, signed inside the store.
    pub fn device_certificate(
        &self,
        alias: String,
        device_name: String,
    ) -> Result<Vec<u8>, PmnError> {
        Ok(identity::device_certificate(self.inner.as_ref(), &alias, &device_name)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;

    /// A "foreign" store written in Rust, delegating to the software store — stands in for Kotlin.
    struct RustForeign(platform::software::SoftwareKeyStore, bool);

    impl ForeignKeyStore for RustForeign {
        fn generate(&self, alias: String, policy: KeyPolicy) -> Result<Vec<u8>, PmnError> {
            Ok(self.0.generate(&alias, policy.into())?)
        }
        fn public_key(&self, alias: String) -> Result<Vec<u8>, PmnError> {
            if self.1 {
                // A broken app store that returns something that is not a P-256 SPKI.
                return Ok(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
            }
            Ok(self.0.public_key(&alias)?)
        }
        fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, PmnError> {
            Ok(self.0.sign(&alias, &message)?)
        }
        fn delete(&self, alias: String) -> Result<(), PmnError> {
            Ok(self.0.delete(&alias)?)
        }
        fn list(&self) -> Result<Vec<String>, PmnError> {
            Ok(self.0.list()?)
        }
    }

    #[test]
    fn foreign_store_round_trip_verifies_and_errors_stay_typed() {
        let dir = tempfile::tempdir().unwrap();
        let soft = platform::software::SoftwareKeyStore::open(dir.path()).unwrap();
        let store = DeviceKeyStore::foreign(Arc::new(RustForeign(soft, false)));
        assert_eq!(store.backend(), "foreign");
        let spki = store
            .generate("tls".into(), KeyPolicy::TlsIdentity)
            .unwrap();
        let sig = store.sign("tls".into(), b"hello".to_vec()).unwrap();
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
        key.verify(b"hello", &p256::ecdsa::Signature::from_der(&sig).unwrap())
            .unwrap();
        assert_eq!(store.fingerprint("tls".into()).unwrap().len(), 32);
        assert_eq!(store.list().unwrap(), vec!["tls".to_string()]);
        assert_eq!(
            store.sign("missing".into(), vec![]).unwrap_err(),
            PmnError::Key {
                kind: KeyErrorKind::NotFound,
                alias: Some("missing".into()),
                detail: "no key with alias `missing`".into(),
            }
        );
        assert!(matches!(
            store.sign("../etc".into(), vec![]).unwrap_err(),
            PmnError::Key {
                kind: KeyErrorKind::InvalidAlias,
                ..
            }
        ));
        store.delete("tls".into()).unwrap();
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn foreign_store_returning_a_non_p256_key_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let soft = platform::software::SoftwareKeyStore::open(dir.path()).unwrap();
        let store = DeviceKeyStore::foreign(Arc::new(RustForeign(soft, true)));
        assert!(matches!(
            store.public_key("x".into()).unwrap_err(),
            PmnError::Key {
                kind: KeyErrorKind::Corrupt,
                ..
            }
        ));
    }

    #[test]
    fn software_store_device_certificate_carries_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeviceKeyStore::software(dir.path().to_string_lossy().into_owned()).unwrap();
        let spki = store
            .generate("tls".into(), KeyPolicy::TlsIdentity)
            .unwrap();
        let cert = store
            .device_certificate("tls".into(), "living-room-tv".into())
            .unwrap();
        assert_eq!(identity::certificate_spki(&cert).unwrap(), &spki[..]);
    }

    #[test]
    fn platform_store_before_init_is_platform_not_initialised() {
        // cargo test has no JVM, so the JNI init cannot have run (on Apple hosts the keychain would
        // answer instead, so the check is for the other hosts).
        if cfg!(not(target_vendor = "apple")) {
            assert!(matches!(
                DeviceKeyStore::platform().unwrap_err(),
                PmnError::Key {
                    kind: KeyErrorKind::PlatformNotInitialised,
                    alias: None,
                    ..
                }
            ));
        }
    }
}
