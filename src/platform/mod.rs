//! Key store backends (shared/DESIGN.md §4 "Keys") and the explicit platform init.
//!
//! - [`software`]: PKCS#8 files (desktop providers, tests).
//! - [`jvm`]: `java.security.KeyStore` through JNI — the Android Keystore on phones, a PKCS12 file on
//!   a desktop JVM so the same JNI code is tested on the build machine. Compiled on every target.
//! - `android` (Android only): the JNI init entry point, which also initialises
//!   rustls-platform-verifier.
//! - `apple` (Apple targets only): keychain / Secure Enclave through security-framework.
//!
//! [`platform_key_store`] picks the store of the platform the library runs on.

#[cfg(target_os = "android")]
pub mod android;
#[cfg(target_vendor = "apple")]
pub mod apple;
pub mod jvm;
pub mod software;

use std::sync::Arc;

use crate::core::identity::{KeyStore, KeyStoreError};

/// Whether the Android init (`PmnPlatform.nativeInit(context)`) has run: the session layer checks
/// this before using rustls-platform-verifier, which panics when uninitialised.
#[cfg(target_os = "android")]
pub fn android_initialised() -> bool {
    android::is_initialised()
}

/// The key store of the running platform: the Apple keychain (Secure Enclave when present) on Apple
/// targets; elsewhere the JNI store (Android Keystore, or the desktop JVM's PKCS12 test store), which
/// needs `PmnPlatform.nativeInit` first and otherwise fails with
/// [`KeyStoreError::PlatformNotInitialised`].
pub fn platform_key_store() -> Result<Arc<dyn KeyStore>, KeyStoreError> {
    #[cfg(target_vendor = "apple")]
    {
        // A JVM on macOS (tests) initialised explicitly gets the JNI store it asked for.
        if jvm::is_initialised() {
            return Ok(Arc::new(jvm::JvmKeyStore::platform_default()?));
        }
        Ok(Arc::new(apple::AppleKeyStore::new()))
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        Ok(Arc::new(jvm::JvmKeyStore::platform_default()?))
    }
}
