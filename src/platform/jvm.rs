//! The JNI key store: `java.security.KeyStore` driven through `jni` 0.22.
//!
//! One code path for two stores:
//! - **Android**: the `AndroidKeyStore` provider; keys are generated inside it (StrongBox when the
//!   device has one) and only ever used through `Signature("SHA256withECDSA")`.
//! - **Desktop JVM** (tests): a file-backed `PKCS12` store. It exists so that a Kotlin test on the
//!   build machine runs exactly the JNI calls the phone runs; it is not a production key store.
//!
//! The module is compiled on every target. It holds the `JavaVM` recorded by an explicit init
//! (`PmnPlatform.nativeInit`, see [`init_with_env`]); UniFFI loads the library through JNA, so
//! `JNI_OnLoad` never runs and nothing here may assume a VM exists. Without init every entry point
//! returns [`KeyStoreError::PlatformNotInitialised`]; nothing panics.
//!
//! Key storage on the desktop JVM: a PKCS12 `PrivateKeyEntry` must carry a certificate chain, and
//! the JDK has no public API to make a certificate. Rather than keep keys in a Java-side map (which
//! would not be a `java.security.KeyStore` at all, and would lose keys on restart), `generate` makes
//! the key pair with `KeyPairGenerator`, builds the self-signed device certificate with rcgen while
//! the *Java* private key signs it through `Signature` (the same external-key path the device
//! certificate uses), and stores key + certificate with `setKeyEntry`. On Android the provider makes
//! its own certificate and none of this is needed.
//!
//! Split by job: this file holds the VM, the error plumbing and the [`KeyStore`] operations;
//! `store` loads, persists and generates into the Java `KeyStore` object; `java` has the JCA calls
//! both stores share (key pair generator, `getEncoded`, `Signature`); `android` builds the Android
//! Keystore key (StrongBox first).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use jni::errors::Error as JniError;
use jni::objects::{JObject, JString, JValue};
use jni::refs::Global;
use jni::{jni_sig, jni_str, Env, JavaVM};

use crate::core::identity::{check_p256_spki, validate_alias, KeyPolicy, KeyStore, KeyStoreError};

mod android;
mod java;
mod store;

use java::{encoded, java_sign};

/// The VM recorded by the explicit init. A process has at most one JVM, and it outlives us.
static JAVA_VM: OnceLock<JavaVM> = OnceLock::new();

/// Prefix of every alias this crate creates in a platform store, so `list` never shows (and
/// `delete` never touches) keys the app keeps in the same store for other purposes.
const ALIAS_PREFIX: &str = "pmn.";

/// System property naming the desktop JVM's PKCS12 file (see [`JvmKeyStore::platform_default`]).
pub const KEYSTORE_FILE_PROPERTY: &str = "pmn.keystore.file";

/// Records the Java VM of `env` for later key store calls. Called by the JNI init entry points
/// (`Java_org_pmn_PmnPlatform_nativeInit`); calling it again is harmless.
pub fn init_with_env(env: &mut Env<'_>) -> Result<(), JniError> {
    let vm = env.get_java_vm()?;
    let _ = JAVA_VM.set(vm);
    Ok(())
}

/// Whether the explicit init has run in this process.
pub fn is_initialised() -> bool {
    JAVA_VM.get().is_some()
}

fn java_vm() -> Result<&'static JavaVM, KeyStoreError> {
    JAVA_VM.get().ok_or(KeyStoreError::PlatformNotInitialised)
}

/// The error type of a JNI closure: jni errors (including caught Java exceptions) convert into it, so
/// `?` works on both, and the attach wrapper can report an exception left pending as a caught one.
struct JvmFailure(KeyStoreError);

impl From<JniError> for JvmFailure {
    fn from(e: JniError) -> Self {
        JvmFailure(match e {
            JniError::CaughtJavaException { name, msg, .. } => {
                KeyStoreError::Platform(format!("{name}: {msg}"))
            }
            other => KeyStoreError::Platform(format!("JNI: {other}")),
        })
    }
}

impl From<KeyStoreError> for JvmFailure {
    fn from(e: KeyStoreError) -> Self {
        JvmFailure(e)
    }
}

/// Turns a pending Java exception into `CaughtJavaException` (clearing it) so the caller can look at
/// its class; other errors pass through.
fn caught(env: &Env<'_>, e: JniError) -> JniError {
    if matches!(e, JniError::JavaException) {
        if let Err(caught) = env.exception_catch() {
            return caught;
        }
    }
    e
}

fn exception_class(e: &JniError) -> Option<&str> {
    match e {
        JniError::CaughtJavaException { name, .. } => Some(name),
        _ => None,
    }
}

#[derive(Debug, Clone)]
enum Backing {
    /// `KeyStore.getInstance("AndroidKeyStore")`.
    AndroidKeyStore,
    /// A PKCS12 file on the desktop JVM.
    Pkcs12File(PathBuf),
}

/// A key store backed by `java.security.KeyStore` through JNI. See the module docs.
pub struct JvmKeyStore {
    backing: Backing,
    /// The loaded `java.security.KeyStore`. Java `KeyStore` objects are not thread-safe and the PKCS12
    /// file is rewritten after each change, so every operation holds this lock. The PKCS12 file is
    /// read once per instance: two live instances over one file do not see each other's later
    /// changes (acceptable for the desktop test store; the Android Keystore has no such cache issue
    /// because the provider itself is the shared state).
    keystore: Mutex<Option<Global<JObject<'static>>>>,
}

impl std::fmt::Debug for JvmKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JvmKeyStore")
            .field("backing", &self.backing)
            .finish_non_exhaustive()
    }
}

impl JvmKeyStore {
    fn with_backing(backing: Backing) -> Result<Self, KeyStoreError> {
        java_vm()?;
        Ok(JvmKeyStore {
            backing,
            keystore: Mutex::new(None),
        })
    }

    /// The Android Keystore (only meaningful on Android).
    pub fn android_keystore() -> Result<Self, KeyStoreError> {
        Self::with_backing(Backing::AndroidKeyStore)
    }

    /// A PKCS12 file at `path`, created on first write (desktop JVM tests).
    pub fn pkcs12_file(path: impl Into<PathBuf>) -> Result<Self, KeyStoreError> {
        Self::with_backing(Backing::Pkcs12File(path.into()))
    }

    /// The platform's store: the Android Keystore on Android; on a desktop JVM the PKCS12 file named
    /// by the system property `pmn.keystore.file` (no silent default: an unset property is an
    /// [`KeyStoreError::Unsupported`] error, because the desktop store exists for tests only).
    pub fn platform_default() -> Result<Self, KeyStoreError> {
        if cfg!(target_os = "android") {
            return Self::android_keystore();
        }
        let vm = java_vm()?;
        let path = vm
            .attach_current_thread_for_scope(|env| -> Result<Option<String>, JvmFailure> {
                let key = env.new_string(KEYSTORE_FILE_PROPERTY)?;
                let value = env
                    .call_static_method(
                        jni_str!("java/lang/System"),
                        jni_str!("getProperty"),
                        jni_sig!("(Ljava/lang/String;)Ljava/lang/String;"),
                        &[JValue::from(&key)],
                    )?
                    .l()?;
                if value.is_null() {
                    return Ok(None);
                }
                let value = env.cast_local::<JString>(value)?;
                Ok(Some(value.try_to_string(env)?))
            })
            .map_err(|f| f.0)?;
        match path {
            Some(path) => Self::pkcs12_file(path),
            None => Err(KeyStoreError::Unsupported(format!(
                "no platform key store on a desktop JVM unless the system property \
                 {KEYSTORE_FILE_PROPERTY} names a PKCS12 file"
            ))),
        }
    }
}

impl KeyStore for JvmKeyStore {
    fn generate(&self, alias: &str, policy: KeyPolicy) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        self.with_keystore(|env, keystore| {
            let name = env.new_string(format!("{ALIAS_PREFIX}{alias}"))?;
            if Self::contains(env, keystore, &name)? {
                return Err(KeyStoreError::AlreadyExists {
                    alias: alias.to_owned(),
                }
                .into());
            }
            let spki = self.generate_in(env, keystore, alias, &name, policy)?;
            tracing::debug!(alias, backend = self.backend(), "generated JVM key");
            Ok(check_p256_spki(alias, spki)?)
        })
    }

    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        self.with_keystore(|env, keystore| {
            let name = env.new_string(format!("{ALIAS_PREFIX}{alias}"))?;
            let cert = env
                .call_method(
                    keystore,
                    jni_str!("getCertificate"),
                    jni_sig!("(Ljava/lang/String;)Ljava/security/cert/Certificate;"),
                    &[JValue::from(&name)],
                )?
                .l()?;
            if cert.is_null() {
                return Err(KeyStoreError::NotFound {
                    alias: alias.to_owned(),
                }
                .into());
            }
            let public = env
                .call_method(
                    &cert,
                    jni_str!("getPublicKey"),
                    jni_sig!("()Ljava/security/PublicKey;"),
                    &[],
                )?
                .l()?;
            Ok(check_p256_spki(alias, encoded(env, &public)?)?)
        })
    }

    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        validate_alias(alias)?;
        self.with_keystore(|env, keystore| {
            let name = env.new_string(format!("{ALIAS_PREFIX}{alias}"))?;
            let password = self.password(env)?;
            let key = env
                .call_method(
                    keystore,
                    jni_str!("getKey"),
                    jni_sig!("(Ljava/lang/String;[C)Ljava/security/Key;"),
                    &[JValue::from(&name), JValue::from(&password)],
                )?
                .l()?;
            if key.is_null() {
                return Err(KeyStoreError::NotFound {
                    alias: alias.to_owned(),
                }
                .into());
            }
            java_sign(env, &key, message).map_err(|e| {
                let e = caught(env, e);
                if exception_class(&e)
                    == Some("android.security.keystore.UserNotAuthenticatedException")
                {
                    JvmFailure(KeyStoreError::UserAuthenticationRequired {
                        alias: alias.to_owned(),
                    })
                } else {
                    e.into()
                }
            })
        })
    }

    fn delete(&self, alias: &str) -> Result<(), KeyStoreError> {
        validate_alias(alias)?;
        self.with_keystore(|env, keystore| {
            let name = env.new_string(format!("{ALIAS_PREFIX}{alias}"))?;
            if !Self::contains(env, keystore, &name)? {
                return Err(KeyStoreError::NotFound {
                    alias: alias.to_owned(),
                }
                .into());
            }
            env.call_method(
                keystore,
                jni_str!("deleteEntry"),
                jni_sig!("(Ljava/lang/String;)V"),
                &[JValue::from(&name)],
            )?;
            self.persist(env, keystore)
        })
    }

    fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        self.with_keystore(|env, keystore| {
            let aliases = env
                .call_method(
                    keystore,
                    jni_str!("aliases"),
                    jni_sig!("()Ljava/util/Enumeration;"),
                    &[],
                )?
                .l()?;
            let mut out = Vec::new();
            while env
                .call_method(&aliases, jni_str!("hasMoreElements"), jni_sig!("()Z"), &[])?
                .z()?
            {
                let next = env
                    .call_method(
                        &aliases,
                        jni_str!("nextElement"),
                        jni_sig!("()Ljava/lang/Object;"),
                        &[],
                    )?
                    .l()?;
                let next = env.cast_local::<JString>(next)?;
                let name = next.try_to_string(env)?;
                // Each iteration makes local references; free them so a big store cannot overflow the
                // local frame.
                env.delete_local_ref(next);
                if let Some(alias) = name.strip_prefix(ALIAS_PREFIX) {
                    if validate_alias(alias).is_ok() {
                        out.push(alias.to_owned());
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn backend(&self) -> &'static str {
        match self.backing {
            Backing::AndroidKeyStore => "android-keystore",
            Backing::Pkcs12File(_) => "jvm-pkcs12",
        }
    }
}

/// JNI init entry point on a desktop JVM (`org.pmn.PmnPlatform.nativeInit(null)`): records the VM.
/// On Android the entry point lives in `platform::android` and also initialises the TLS verifier.
/// No panic crosses into the JVM: `with_env` catches it and the policy throws a RuntimeException.
#[cfg(not(target_os = "android"))]
#[no_mangle]
pub extern "system" fn Java_org_pmn_PmnPlatform_nativeInit<'caller>(
    mut env: jni::EnvUnowned<'caller>,
    _this: JObject<'caller>,
    _context: JObject<'caller>,
) {
    env.with_env(|env| -> Result<(), JniError> { init_with_env(env) })
        .resolve::<jni::errors::ThrowRuntimeExAndDefault>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jvm_store_before_init_is_a_typed_error_not_a_panic() {
        // No JVM exists in a cargo test process, so init can never have run.
        assert!(!is_initialised());
        assert_eq!(
            JvmKeyStore::pkcs12_file("/nonexistent/never-created.p12").unwrap_err(),
            KeyStoreError::PlatformNotInitialised
        );
        assert_eq!(
            JvmKeyStore::platform_default().unwrap_err(),
            KeyStoreError::PlatformNotInitialised
        );
        assert_eq!(
            JvmKeyStore::android_keystore().unwrap_err(),
            KeyStoreError::PlatformNotInitialised
        );
    }
}
