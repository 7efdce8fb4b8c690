//! UniFFI surface of the device key stores: [`DeviceKeyStore`] (software, platform, or app-supplied
//! through the [`ForeignKeyStore`] foreign trait), [`KeyPolicy`] and the [`KeyError`] error enum.
//!
//! Thin by design: every method forwards to a `crate::core::identity::KeyStore` and converts types;
//! the rules (alias syntax, P-256 only, permissions) live in `core::identity` and `platform`.
//! Methods are synchronous and may block (StrongBox and Secure Enclave signatures take tens of
//! milliseconds, a user-presence key may wait for the user): call them off the UI thread.

use std::sync::Arc;

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

/// A key store failure, one variant per `KeyStoreError` kind (Kotlin: `KeyException.*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum KeyError {
    /// No key with this alias.
    #[error("no key with alias `{alias}`")]
    NotFound {
        /// The alias asked for.
        alias: String,
    },
    /// The alias already holds a key; keys are never overwritten.
    #[error("a key with alias `{alias}` already exists")]
    AlreadyExists {
        /// The alias asked for.
        alias: String,
    },
    /// The alias is not 1–64 characters of `a-z 0-9 . _ -`.
    #[error("invalid key alias `{alias}`: {reason}")]
    InvalidAlias {
        /// The alias given.
        alias: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file is readable by other users and was refused.
    #[error("key file {path} has insecure permissions {mode:o}")]
    InsecurePermissions {
        /// The key file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The stored key is not a valid P-256 key.
    #[error("key `{alias}` is corrupt: {reason}")]
    Corrupt {
        /// The alias of the key.
        alias: String,
        /// What failed to parse.
        reason: String,
    },
    /// `PmnPlatform.init` (Android: `Pmn.initAndroid`) has not been called yet.
    #[error("platform key store not initialised: call PmnPlatform.init (Android: Pmn.initAndroid) first")]
    PlatformNotInitialised,
    /// The key needs the user to authenticate first (show the system prompt, then retry).
    #[error("key `{alias}` requires user authentication")]
    UserAuthenticationRequired {
        /// The alias of the key.
        alias: String,
    },
    /// The store cannot do this (e.g. user presence on a software store).
    #[error("unsupported: {detail}")]
    Unsupported {
        /// Why.
        detail: String,
    },
    /// File-system failure of a file-backed store.
    #[error("I/O error: {detail}")]
    Io {
        /// What failed.
        detail: String,
    },
    /// The platform (or a foreign store) reported an error.
    #[error("platform error: {detail}")]
    Platform {
        /// The platform's description.
        detail: String,
    },
}

impl From<KeyStoreError> for KeyError {
    fn from(e: KeyStoreError) -> Self {
        match e {
            KeyStoreError::NotFound { alias } => KeyError::NotFound { alias },
            KeyStoreError::AlreadyExists { alias } => KeyError::AlreadyExists { alias },
            KeyStoreError::InvalidAlias { alias, reason } => {
                KeyError::InvalidAlias { alias, reason }
            }
            KeyStoreError::InsecurePermissions { path, mode } => {
                KeyError::InsecurePermissions { path, mode }
            }
            KeyStoreError::Corrupt { alias, reason } => KeyError::Corrupt { alias, reason },
            KeyStoreError::PlatformNotInitialised => KeyError::PlatformNotInitialised,
            KeyStoreError::UserAuthenticationRequired { alias } => {
                KeyError::UserAuthenticationRequired { alias }
            }
            KeyStoreError::Unsupported(detail) => KeyError::Unsupported { detail },
            KeyStoreError::Io(detail) => KeyError::Io { detail },
            KeyStoreError::Platform(detail) => KeyError::Platform { detail },
        }
    }
}

impl From<KeyError> for KeyStoreError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotFound { alias } => KeyStoreError::NotFound { alias },
            KeyError::AlreadyExists { alias } => KeyStoreError::AlreadyExists { alias },
            KeyError::InvalidAlias { alias, reason } => {
                KeyStoreError::InvalidAlias { alias, reason }
            }
            KeyError::InsecurePermissions { path, mode } => {
                KeyStoreError::InsecurePermissions { path, mode }
            }
            KeyError::Corrupt { alias, reason } => KeyStoreError::Corrupt { alias, reason },
            KeyError::PlatformNotInitialised => KeyStoreError::PlatformNotInitialised,
            KeyError::UserAuthenticationRequired { alias } => {
                KeyStoreError::UserAuthenticationRequired { alias }
            }
            KeyError::Unsupported { detail } => KeyStoreError::Unsupported(detail),
            KeyError::Io { detail } => KeyStoreError::Io(detail),
            KeyError::Platform { detail } => KeyStoreError::Platform(detail),
        }
    }
}

/// A foreign callback that threw something other than a `KeyException` (a Kotlin bug, say) arrives
/// here instead of panicking.
impl From<uniffi::UnexpectedUniFFICallbackError> for KeyError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        KeyError::Platform {
            detail: format!("foreign key store callback failed: {}", e.reason),
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
    fn generate(&self, alias: String, policy: KeyPolicy) -> Result<Vec<u8>, KeyError>;
    /// The SPKI DER of `alias`.
    fn public_key(&self, alias: String) -> Result<Vec<u8>, KeyError>;
    /// DER ECDSA P-256/SHA-256 signature over `message` (unhashed).
    fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, KeyError>;
    /// Deletes `alias`.
    fn delete(&self, alias: String) -> Result<(), KeyError>;
    /// All aliases.
    fn list(&self) -> Result<Vec<String>, KeyError>;
}

/// Adapts an app-supplied store to the core trait, enforcing the core rules on both directions:
/// aliases are validated before the app sees them and public keys must be P-256 SPKIs.
struct ForeignStoreAdapter(Arc<dyn ForeignKeyStore>);

impl KeyStore for ForeignStoreAdapter {
    fn generate(&self, alias: &str, policy: identity::KeyPolicy) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        let spki = self.0.generate(alias.to_owned(), policy.into())?;
        check_p256_spki(alias, spki)
    }

    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        check_p256_spki(alias, self.0.public_key(alias.to_owned())?)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        Ok(self.0.sign(alias.to_owned(), message.to_vec())?)
    }

    fn delete(&self, alias: &str) -> Result<(), KeyStoreError> {
        validate_alias(alias)?;
        Ok(self.0.delete(alias.to_owned())?)
    }

    fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let mut aliases = self.0.list()?;
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
    pub fn software(dir: String) -> Result<Arc<Self>, KeyError> {
        Ok(Arc::new(DeviceKeyStore {
            inner: Arc::new(platform::software::SoftwareKeyStore::open(dir)?),
        }))
    }

    /// The platform store: Android Keystore, Apple keychain / Secure Enclave, or on a desktop JVM the
    /// PKCS12 test store named by the `pmn.keystore.file` system property. On Android and the JVM,
    /// `PmnPlatform.init` (Android: `Pmn.initAndroid`) must have run, otherwise `KeyException.PlatformNotInitialised`.
    #[uniffi::constructor]
    pub fn platform() -> Result<Arc<Self>, KeyError> {
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
    pub fn generate(&self, alias: String, policy: KeyPolicy) -> Result<Vec<u8>, KeyError> {
        Ok(self.inner.generate(&alias, policy.into())?)
    }

    /// The public key of `alias` (SPKI DER).
    pub fn public_key(&self, alias: String) -> Result<Vec<u8>, KeyError> {
        Ok(self.inner.public_key(&alias)?)
    }

    /// Signs `message` (unhashed); returns a DER ECDSA P-256/SHA-256 signature.
    pub fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, KeyError> {
        Ok(self.inner.sign(&alias, &message)?)
    }

    /// Deletes `alias`.
    pub fn delete(&self, alias: String) -> Result<(), KeyError> {
        Ok(self.inner.delete(&alias)?)
    }

    /// The aliases in this store, sorted.
    pub fn list(&self) -> Result<Vec<String>, KeyError> {
        Ok(self.inner.list()?)
    }

    /// SHA-256 of the key's SPKI (32 bytes): the fingerprint peers pin.
    pub fn fingerprint(&self, alias: String) -> Result<Vec<u8>, KeyError> {
        let spki = self.inner.public_key(&alias)?;
        Ok(identity::spki_sha256(&spki).to_vec())
    }

    /// A fresh self-signed device certificate (DER) for `alias`, signed inside the store.
    pub fn device_certificate(
        &self,
        alias: String,
        device_name: String,
    ) -> Result<Vec<u8>, KeyError> {
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
        fn generate(&self, alias: String, policy: KeyPolicy) -> Result<Vec<u8>, KeyError> {
            Ok(self.0.generate(&alias, policy.into())?)
        }
        fn public_key(&self, alias: String) -> Result<Vec<u8>, KeyError> {
            if self.1 {
                // A broken app store that returns something that is not a P-256 SPKI.
                return Ok(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
            }
            Ok(self.0.public_key(&alias)?)
        }
        fn sign(&self, alias: String, message: Vec<u8>) -> Result<Vec<u8>, KeyError> {
            Ok(self.0.sign(&alias, &message)?)
        }
        fn delete(&self, alias: String) -> Result<(), KeyError> {
            Ok(self.0.delete(&alias)?)
        }
        fn list(&self) -> Result<Vec<String>, KeyError> {
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
            KeyError::NotFound {
                alias: "missing".into()
            }
        );
        assert!(matches!(
            store.sign("../etc".into(), vec![]).unwrap_err(),
            KeyError::InvalidAlias { .. }
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
            KeyError::Corrupt { .. }
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
            assert_eq!(
                DeviceKeyStore::platform().unwrap_err(),
                KeyError::PlatformNotInitialised
            );
        }
    }
}
