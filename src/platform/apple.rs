//! The Apple key store: P-256 keys in the Secure Enclave when the device has one, otherwise in the
//! data-protection keychain, used through `security-framework` (`SecKey`).
//!
//! The private key is created by `SecKeyCreateRandomKey` inside the enclave/keychain and is only ever
//! referenced, never exported; signing is `ECDSASignatureMessageX962SHA256` (hash inside, DER out),
//! which is the encoding TLS 1.3 wants. Keys are found by their label `pmn.<alias>`.

use core_foundation::base::{TCFType, ToVoid};
use core_foundation::boolean::CFBoolean;
use core_foundation::dictionary::CFMutableDictionary;
use core_foundation::number::CFNumber;
use core_foundation::string::CFString;
use security_framework::access_control::{ProtectionMode, SecAccessControl};
use security_framework::item::{
    ItemClass, ItemSearchOptions, KeyClass, Limit, Reference, SearchResult,
};
use security_framework::key::{Algorithm, SecKey};
use security_framework_sys::access_control::{
    kSecAccessControlPrivateKeyUsage, kSecAccessControlUserPresence,
};
use security_framework_sys::base::errSecItemNotFound;
use security_framework_sys::item::{
    kSecAttrAccessControl, kSecAttrIsPermanent, kSecAttrKeySizeInBits, kSecAttrKeyType,
    kSecAttrKeyTypeECSECPrimeRandom, kSecAttrLabel, kSecAttrTokenID, kSecAttrTokenIDSecureEnclave,
    kSecPrivateKeyAttrs,
};

use crate::core::identity::{
    p256_spki_from_point, validate_alias, KeyPolicy, KeyStore, KeyStoreError,
};

/// Label prefix of every key this crate creates, so `list` and `delete` only see pmn's keys.
const LABEL_PREFIX: &str = "pmn.";

/// The keychain / Secure Enclave store. Stateless: the keychain is the state.
#[derive(Debug, Default)]
pub struct AppleKeyStore {
    _private: (),
}

fn label(alias: &str) -> String {
    format!("{LABEL_PREFIX}{alias}")
}

fn platform(context: &str, e: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::Platform(format!("{context}: {e}"))
}

impl AppleKeyStore {
    /// The store of this app's keychain access group.
    pub fn new() -> Self {
        AppleKeyStore { _private: () }
    }

    fn private_key(&self, alias: &str) -> Result<SecKey, KeyStoreError> {
        validate_alias(alias)?;
        let results = ItemSearchOptions::new()
            .class(ItemClass::key())
            .key_class(KeyClass::private())
            .label(&label(alias))
            .load_refs(true)
            .search();
        let results = match results {
            Ok(results) => results,
            Err(e) if e.code() == errSecItemNotFound => Vec::new(),
            Err(e) => return Err(platform("keychain search", e)),
        };
        results
            .into_iter()
            .find_map(|result| match result {
                SearchResult::Ref(Reference::Key(key)) => Some(key),
                _ => None,
            })
            .ok_or_else(|| KeyStoreError::NotFound {
                alias: alias.to_owned(),
            })
    }

    /// `SecKeyCreateRandomKey` with the private key permanent in the keychain (or the enclave).
    /// security-framework's `GenerateKeyOptions` only sets the private-key attributes on macOS, so
    /// the attribute dictionary is built here for every Apple target.
    fn create(&self, alias: &str, policy: KeyPolicy, enclave: bool) -> Result<SecKey, String> {
        let mut flags = 0;
        if enclave {
            flags |= kSecAccessControlPrivateKeyUsage;
        }
        if policy.requires_user_presence() {
            flags |= kSecAccessControlUserPresence;
        }
        // After first unlock: the TLS identity signs handshakes while the phone is locked in a
        // pocket. ThisDeviceOnly: the key never migrates to a backup or another device.
        let access = SecAccessControl::create_with_protection(
            Some(ProtectionMode::AccessibleAfterFirstUnlockThisDeviceOnly),
            flags,
        )
        .map_err(|e| format!("access control: {e}"))?;
        let label = CFString::new(&label(alias));
        let permanent = CFBoolean::true_value();
        let private_attrs = CFMutableDictionary::from_CFType_pairs(&[
            (
                unsafe { kSecAttrIsPermanent }.to_void(),
                permanent.to_void(),
            ),
            (unsafe { kSecAttrAccessControl }.to_void(), access.to_void()),
            (unsafe { kSecAttrLabel }.to_void(), label.to_void()),
        ]);
        let bits = CFNumber::from(256i32);
        let mut attrs: Vec<(*const std::ffi::c_void, *const std::ffi::c_void)> = vec![
            (
                unsafe { kSecAttrKeyType }.to_void(),
                unsafe { kSecAttrKeyTypeECSECPrimeRandom }.to_void(),
            ),
            (unsafe { kSecAttrKeySizeInBits }.to_void(), bits.to_void()),
            (unsafe { kSecAttrLabel }.to_void(), label.to_void()),
            (
                unsafe { kSecPrivateKeyAttrs }.to_void(),
                private_attrs.to_void(),
            ),
        ];
        if enclave {
            attrs.push((
                unsafe { kSecAttrTokenID }.to_void(),
                unsafe { kSecAttrTokenIDSecureEnclave }.to_void(),
            ));
        }
        // macOS keeps enclave keys only in the data-protection keychain (the iOS-style one).
        #[cfg(target_os = "macos")]
        let data_protection = CFBoolean::true_value();
        #[cfg(target_os = "macos")]
        attrs.push((
            unsafe { security_framework_sys::item::kSecUseDataProtectionKeychain }.to_void(),
            data_protection.to_void(),
        ));
        let dict = CFMutableDictionary::from_CFType_pairs(&attrs).to_immutable();
        #[allow(deprecated)] // `SecKey::new` only takes GenerateKeyOptions, see above.
        let key = SecKey::generate(dict);
        key.map_err(|e| format!("{} ({})", e.description(), e.code()))
    }
}

impl KeyStore for AppleKeyStore {
    fn generate(&self, alias: &str, policy: KeyPolicy) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        match self.private_key(alias) {
            Ok(_) => {
                return Err(KeyStoreError::AlreadyExists {
                    alias: alias.to_owned(),
                })
            }
            Err(KeyStoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        // The Secure Enclave when there is one; simulators and Macs without a T2/Apple silicon
        // fail here, and get a keychain key instead.
        if let Err(reason) = self.create(alias, policy, true) {
            tracing::info!(alias, %reason, "no Secure Enclave key; using the keychain");
            self.create(alias, policy, false)
                .map_err(|e| KeyStoreError::Platform(format!("key generation: {e}")))?;
        }
        self.public_key(alias)
    }

    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        let key = self.private_key(alias)?;
        let corrupt = |reason: String| KeyStoreError::Corrupt {
            alias: alias.to_owned(),
            reason,
        };
        let public = key
            .public_key()
            .ok_or_else(|| corrupt("no public key".into()))?;
        // X9.63 uncompressed point (0x04 || X || Y) for EC keys.
        let point = public
            .external_representation()
            .ok_or_else(|| corrupt("public key not exportable".into()))?;
        p256_spki_from_point(point.bytes()).map_err(corrupt)
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let key = self.private_key(alias)?;
        key.create_signature(Algorithm::ECDSASignatureMessageX962SHA256, message)
            .map_err(|e| {
                // errSecUserCanceled / errSecAuthFailed: the user-presence prompt was dismissed.
                if matches!(e.code(), -128 | -25293) {
                    KeyStoreError::UserAuthenticationRequired {
                        alias: alias.to_owned(),
                    }
                } else {
                    platform("signing", e.description())
                }
            })
    }

    fn delete(&self, alias: &str) -> Result<(), KeyStoreError> {
        let key = self.private_key(alias)?;
        key.delete().map_err(|e| platform("delete", e))
    }

    fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        let results = ItemSearchOptions::new()
            .class(ItemClass::key())
            .key_class(KeyClass::private())
            .load_attributes(true)
            .limit(Limit::All)
            .search();
        let results = match results {
            Ok(results) => results,
            Err(e) if e.code() == errSecItemNotFound => Vec::new(),
            Err(e) => return Err(platform("keychain search", e)),
        };
        let label_key = unsafe { CFString::wrap_under_get_rule(kSecAttrLabel) }.to_string();
        let mut aliases: Vec<String> = results
            .iter()
            .filter_map(|result| result.simplify_dict())
            .filter_map(|attrs| attrs.get(&label_key).cloned())
            .filter_map(|label| label.strip_prefix(LABEL_PREFIX).map(str::to_owned))
            .filter(|alias| validate_alias(alias).is_ok())
            .collect();
        aliases.sort();
        aliases.dedup();
        Ok(aliases)
    }

    fn backend(&self) -> &'static str {
        "apple-keychain"
    }
}
