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

use crate::core::sync::Locked;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use jni::errors::Error as JniError;
use jni::objects::{JByteArray, JObject, JString, JValue};
use jni::refs::Global;
use jni::{jni_sig, jni_str, Env, JavaVM};

use crate::core::identity::{
    check_p256_spki, self_signed_certificate, validate_alias, KeyPolicy, KeyStore, KeyStoreError,
};

/// The VM recorded by the explicit init. A process has at most one JVM, and it outlives us.
static JAVA_VM: OnceLock<JavaVM> = OnceLock::new();

/// Prefix of every alias this crate creates in a platform store, so `list` never shows (and
/// `delete` never touches) keys the app keeps in the same store for other purposes.
const ALIAS_PREFIX: &str = "pmn.";

/// Password of the desktop PKCS12 file. The desktop JVM store is a test vehicle: its secrecy rests on
/// the file's 0600 mode, like the software store; the password only satisfies the PKCS12 format.
const DESKTOP_PKCS12_PASSWORD: &str = "pmn-desktop-jvm";

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

    /// Runs `f` with an attached `Env` and the loaded Java `KeyStore`, under the store lock.
    fn with_keystore<T>(
        &self,
        f: impl FnOnce(&mut Env<'_>, &JObject<'static>) -> Result<T, JvmFailure>,
    ) -> Result<T, KeyStoreError> {
        let vm = java_vm()?;
        let mut loaded = self.keystore.locked();
        // Scoped: the library's runtime threads live as long as the process, and a thread left
        // attached is a non-daemon Java thread, so `DestroyJavaVM` would wait for it for ever
        // (a desktop JVM never exited after using this store). A key operation is one per
        // handshake, so attaching each time costs little.
        vm.attach_current_thread_for_scope(|env| -> Result<T, JvmFailure> {
            let keystore = match loaded.as_ref() {
                Some(keystore) => keystore,
                None => {
                    let keystore = self.load(env)?;
                    loaded.insert(env.new_global_ref(keystore)?)
                }
            };
            f(env, keystore.as_obj())
        })
        .map_err(|f| f.0)
    }

    fn password<'local>(&self, env: &mut Env<'local>) -> Result<JObject<'local>, JniError> {
        match self.backing {
            // Android Keystore entries have no password.
            Backing::AndroidKeyStore => Ok(JObject::null()),
            Backing::Pkcs12File(_) => {
                let password = env.new_string(DESKTOP_PKCS12_PASSWORD)?;
                env.call_method(&password, jni_str!("toCharArray"), jni_sig!("()[C"), &[])?
                    .l()
            }
        }
    }

    fn load<'local>(&self, env: &mut Env<'local>) -> Result<JObject<'local>, JvmFailure> {
        let store_type = match self.backing {
            Backing::AndroidKeyStore => "AndroidKeyStore",
            Backing::Pkcs12File(_) => "PKCS12",
        };
        let store_type = env.new_string(store_type)?;
        let keystore = env
            .call_static_method(
                jni_str!("java/security/KeyStore"),
                jni_str!("getInstance"),
                jni_sig!("(Ljava/lang/String;)Ljava/security/KeyStore;"),
                &[JValue::from(&store_type)],
            )?
            .l()?;
        let null = JObject::null();
        let existing = match &self.backing {
            Backing::Pkcs12File(path) => std::fs::metadata(path)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
                .then(|| path.to_string_lossy().into_owned()),
            Backing::AndroidKeyStore => None,
        };
        let password = self.password(env)?;
        match existing {
            Some(path) => {
                let path = env.new_string(path)?;
                let input = env.new_object(
                    jni_str!("java/io/FileInputStream"),
                    jni_sig!("(Ljava/lang/String;)V"),
                    &[JValue::from(&path)],
                )?;
                let loaded = env.call_method(
                    &keystore,
                    jni_str!("load"),
                    jni_sig!("(Ljava/io/InputStream;[C)V"),
                    &[JValue::from(&input), JValue::from(&password)],
                );
                env.call_method(&input, jni_str!("close"), jni_sig!("()V"), &[])?;
                loaded?;
            }
            None => {
                // `load(null, null)`: an empty PKCS12 store, or the AndroidKeyStore's own contents.
                env.call_method(
                    &keystore,
                    jni_str!("load"),
                    jni_sig!("(Ljava/io/InputStream;[C)V"),
                    &[JValue::from(&null), JValue::from(&null)],
                )?;
            }
        }
        Ok(keystore)
    }

    /// Writes the PKCS12 file after a change (no-op for the Android Keystore, which persists itself).
    /// Written to a 0600 temporary file and renamed, so a crash never leaves a half-written store.
    fn persist(&self, env: &mut Env<'_>, keystore: &JObject<'_>) -> Result<(), JvmFailure> {
        let Backing::Pkcs12File(path) = &self.backing else {
            return Ok(());
        };
        let tmp = path.with_extension("p12.tmp");
        create_private_file(&tmp)?;
        let tmp_name = env.new_string(tmp.to_string_lossy())?;
        let output = env.new_object(
            jni_str!("java/io/FileOutputStream"),
            jni_sig!("(Ljava/lang/String;)V"),
            &[JValue::from(&tmp_name)],
        )?;
        let password = self.password(env)?;
        let stored = env.call_method(
            keystore,
            jni_str!("store"),
            jni_sig!("(Ljava/io/OutputStream;[C)V"),
            &[JValue::from(&output), JValue::from(&password)],
        );
        env.call_method(&output, jni_str!("close"), jni_sig!("()V"), &[])?;
        stored?;
        std::fs::rename(&tmp, path)
            .map_err(|e| KeyStoreError::Io(format!("cannot replace {}: {e}", path.display())))?;
        Ok(())
    }

    fn contains(
        env: &mut Env<'_>,
        keystore: &JObject<'_>,
        name: &JString<'_>,
    ) -> Result<bool, JniError> {
        env.call_method(
            keystore,
            jni_str!("containsAlias"),
            jni_sig!("(Ljava/lang/String;)Z"),
            &[JValue::from(name)],
        )?
        .z()
    }

    /// Generates the key pair for `name` and stores it; returns the SPKI.
    fn generate_in(
        &self,
        env: &mut Env<'_>,
        keystore: &JObject<'_>,
        alias: &str,
        name: &JString<'_>,
        policy: KeyPolicy,
    ) -> Result<Vec<u8>, JvmFailure> {
        match self.backing {
            Backing::AndroidKeyStore => {
                let pair = android_generate(env, name, policy)?;
                let public = env
                    .call_method(
                        &pair,
                        jni_str!("getPublic"),
                        jni_sig!("()Ljava/security/PublicKey;"),
                        &[],
                    )?
                    .l()?;
                Ok(encoded(env, &public)?)
            }
            Backing::Pkcs12File(_) => {
                if policy.requires_user_presence() {
                    return Err(KeyStoreError::Unsupported(
                        "the desktop JVM store cannot require user presence".into(),
                    )
                    .into());
                }
                let generator = key_pair_generator(env, None)?;
                let curve = env.new_string("secp256r1")?;
                let spec = env.new_object(
                    jni_str!("java/security/spec/ECGenParameterSpec"),
                    jni_sig!("(Ljava/lang/String;)V"),
                    &[JValue::from(&curve)],
                )?;
                env.call_method(
                    &generator,
                    jni_str!("initialize"),
                    jni_sig!("(Ljava/security/spec/AlgorithmParameterSpec;)V"),
                    &[JValue::from(&spec)],
                )?;
                let pair = env
                    .call_method(
                        &generator,
                        jni_str!("generateKeyPair"),
                        jni_sig!("()Ljava/security/KeyPair;"),
                        &[],
                    )?
                    .l()?;
                let public = env
                    .call_method(
                        &pair,
                        jni_str!("getPublic"),
                        jni_sig!("()Ljava/security/PublicKey;"),
                        &[],
                    )?
                    .l()?;
                let private = env
                    .call_method(
                        &pair,
                        jni_str!("getPrivate"),
                        jni_sig!("()Ljava/security/PrivateKey;"),
                        &[],
                    )?
                    .l()?;
                let spki = check_p256_spki(alias, encoded(env, &public)?)?;
                // The certificate is signed by the new Java private key, inside the JVM.
                let cert_der = {
                    let env_cell = RefCell::new(&mut *env);
                    self_signed_certificate(&spki, alias, |tbs| {
                        let mut env = env_cell.borrow_mut();
                        java_sign(&mut env, &private, tbs).map_err(|e| JvmFailure::from(e).0)
                    })?
                };
                let der = env.byte_array_from_slice(&cert_der)?;
                let input = env.new_object(
                    jni_str!("java/io/ByteArrayInputStream"),
                    jni_sig!("([B)V"),
                    &[JValue::from(&der)],
                )?;
                let x509 = env.new_string("X.509")?;
                let factory = env
                    .call_static_method(
                        jni_str!("java/security/cert/CertificateFactory"),
                        jni_str!("getInstance"),
                        jni_sig!("(Ljava/lang/String;)Ljava/security/cert/CertificateFactory;"),
                        &[JValue::from(&x509)],
                    )?
                    .l()?;
                let cert = env
                    .call_method(
                        &factory,
                        jni_str!("generateCertificate"),
                        jni_sig!("(Ljava/io/InputStream;)Ljava/security/cert/Certificate;"),
                        &[JValue::from(&input)],
                    )?
                    .l()?;
                let chain =
                    env.new_object_array(1, jni_str!("java/security/cert/Certificate"), &cert)?;
                let password = self.password(env)?;
                env.call_method(
                    keystore,
                    jni_str!("setKeyEntry"),
                    jni_sig!("(Ljava/lang/String;Ljava/security/Key;[C[Ljava/security/cert/Certificate;)V"),
                    &[
                        JValue::from(name),
                        JValue::from(&private),
                        JValue::from(&password),
                        JValue::from(&chain),
                    ],
                )?;
                self.persist(env, keystore)?;
                Ok(spki)
            }
        }
    }
}

/// Creates (or truncates) `path` with mode 0600 so the JVM writes the key file into a private file.
fn create_private_file(path: &std::path::Path) -> Result<(), KeyStoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| KeyStoreError::Io(format!("cannot create {}: {e}", path.display())))
}

/// `KeyPairGenerator.getInstance("EC"[, provider])`.
fn key_pair_generator<'local>(
    env: &mut Env<'local>,
    provider: Option<&str>,
) -> Result<JObject<'local>, JniError> {
    let algorithm = env.new_string("EC")?;
    match provider {
        None => env
            .call_static_method(
                jni_str!("java/security/KeyPairGenerator"),
                jni_str!("getInstance"),
                jni_sig!("(Ljava/lang/String;)Ljava/security/KeyPairGenerator;"),
                &[JValue::from(&algorithm)],
            )?
            .l(),
        Some(provider) => {
            let provider = env.new_string(provider)?;
            env.call_static_method(
                jni_str!("java/security/KeyPairGenerator"),
                jni_str!("getInstance"),
                jni_sig!("(Ljava/lang/String;Ljava/lang/String;)Ljava/security/KeyPairGenerator;"),
                &[JValue::from(&algorithm), JValue::from(&provider)],
            )?
            .l()
        }
    }
}

/// `key.getEncoded()` as bytes (SPKI DER for a public key).
fn encoded(env: &mut Env<'_>, key: &JObject<'_>) -> Result<Vec<u8>, JniError> {
    let bytes = env
        .call_method(key, jni_str!("getEncoded"), jni_sig!("()[B"), &[])?
        .l()?;
    let bytes = env.cast_local::<JByteArray>(bytes)?;
    env.convert_byte_array(&bytes)
}

/// `Signature("SHA256withECDSA")` over `message` with `private_key`; returns the DER signature.
fn java_sign(
    env: &mut Env<'_>,
    private_key: &JObject<'_>,
    message: &[u8],
) -> Result<Vec<u8>, JniError> {
    let algorithm = env.new_string("SHA256withECDSA")?;
    let signature = env
        .call_static_method(
            jni_str!("java/security/Signature"),
            jni_str!("getInstance"),
            jni_sig!("(Ljava/lang/String;)Ljava/security/Signature;"),
            &[JValue::from(&algorithm)],
        )?
        .l()?;
    env.call_method(
        &signature,
        jni_str!("initSign"),
        jni_sig!("(Ljava/security/PrivateKey;)V"),
        &[JValue::from(private_key)],
    )?;
    let data = env.byte_array_from_slice(message)?;
    env.call_method(
        &signature,
        jni_str!("update"),
        jni_sig!("([B)V"),
        &[JValue::from(&data)],
    )?;
    let der = env
        .call_method(&signature, jni_str!("sign"), jni_sig!("()[B"), &[])?
        .l()?;
    let der = env.cast_local::<JByteArray>(der)?;
    env.convert_byte_array(&der)
}

/// Generates a key inside the Android Keystore: StrongBox first, and without it when the device has
/// none (`StrongBoxUnavailableException`) or predates it (API < 28: no `setIsStrongBoxBacked`).
#[cfg(target_os = "android")]
fn android_generate<'local>(
    env: &mut Env<'local>,
    name: &JString<'_>,
    policy: KeyPolicy,
) -> Result<JObject<'local>, JvmFailure> {
    match android_generate_with(env, name, policy, true) {
        Ok(pair) => Ok(pair),
        Err(e) => {
            let e = caught(env, e);
            if !strongbox_unavailable(env, &e) {
                return Err(e.into());
            }
            tracing::info!("no StrongBox on this device; generating the key in the TEE keystore");
            Ok(android_generate_with(env, name, policy, false)?)
        }
    }
}

/// Whether StrongBox could not be used: `StrongBoxUnavailableException` itself or anywhere in the
/// cause chain (some releases wrap it in a `ProviderException`), or no `setIsStrongBoxBacked` at all
/// (API < 28).
#[cfg(target_os = "android")]
fn strongbox_unavailable(env: &mut Env<'_>, e: &JniError) -> bool {
    const CLASS: &jni::strings::JNIStr =
        jni_str!("android/security/keystore/StrongBoxUnavailableException");
    if matches!(
        e,
        JniError::MethodNotFound { .. } | JniError::NoSuchMethod(_)
    ) {
        return true;
    }
    let JniError::CaughtJavaException { exception, .. } = e else {
        return false;
    };
    // Any JNI failure while inspecting means "not proven unavailable": the original error is kept.
    let mut inspect = || -> Result<bool, JniError> {
        if env.is_instance_of(exception.as_obj(), CLASS)? {
            return Ok(true);
        }
        let mut cause = env
            .call_method(
                exception.as_obj(),
                jni_str!("getCause"),
                jni_sig!("()Ljava/lang/Throwable;"),
                &[],
            )?
            .l()?;
        for _ in 0..8 {
            if cause.is_null() {
                return Ok(false);
            }
            if env.is_instance_of(&cause, CLASS)? {
                return Ok(true);
            }
            cause = env
                .call_method(
                    &cause,
                    jni_str!("getCause"),
                    jni_sig!("()Ljava/lang/Throwable;"),
                    &[],
                )?
                .l()?;
        }
        Ok(false)
    };
    let unavailable = inspect().unwrap_or(false);
    env.exception_clear();
    unavailable
}

#[cfg(target_os = "android")]
fn android_generate_with<'local>(
    env: &mut Env<'local>,
    name: &JString<'_>,
    policy: KeyPolicy,
    strongbox: bool,
) -> Result<JObject<'local>, JniError> {
    const PURPOSE_SIGN: i32 = 4; // KeyProperties.PURPOSE_SIGN
    /// How long after the user authenticates an owner-approval key may sign: the app shows the
    /// system prompt (BiometricPrompt / device credential), then approves within this window.
    const USER_PRESENCE_SECONDS: i32 = 30;
    let builder = env.new_object(
        jni_str!("android/security/keystore/KeyGenParameterSpec$Builder"),
        jni_sig!("(Ljava/lang/String;I)V"),
        &[JValue::from(name), JValue::Int(PURPOSE_SIGN)],
    )?;
    let curve = env.new_string("secp256r1")?;
    let curve_spec = env.new_object(
        jni_str!("java/security/spec/ECGenParameterSpec"),
        jni_sig!("(Ljava/lang/String;)V"),
        &[JValue::from(&curve)],
    )?;
    env.call_method(
        &builder,
        jni_str!("setAlgorithmParameterSpec"),
        jni_sig!("(Ljava/security/spec/AlgorithmParameterSpec;)Landroid/security/keystore/KeyGenParameterSpec$Builder;"),
        &[JValue::from(&curve_spec)],
    )?;
    let sha256 = env.new_string("SHA-256")?; // KeyProperties.DIGEST_SHA256
    let digests = env.new_object_array(1, jni_str!("java/lang/String"), &sha256)?;
    env.call_method(
        &builder,
        jni_str!("setDigests"),
        jni_sig!("([Ljava/lang/String;)Landroid/security/keystore/KeyGenParameterSpec$Builder;"),
        &[JValue::from(&digests)],
    )?;
    if policy.requires_user_presence() {
        env.call_method(
            &builder,
            jni_str!("setUserAuthenticationRequired"),
            jni_sig!("(Z)Landroid/security/keystore/KeyGenParameterSpec$Builder;"),
            &[JValue::Bool(true)],
        )?;
        // Deprecated in API 30 for setUserAuthenticationParameters, but the only call from API 23.
        env.call_method(
            &builder,
            jni_str!("setUserAuthenticationValidityDurationSeconds"),
            jni_sig!("(I)Landroid/security/keystore/KeyGenParameterSpec$Builder;"),
            &[JValue::Int(USER_PRESENCE_SECONDS)],
        )?;
    }
    if strongbox {
        env.call_method(
            &builder,
            jni_str!("setIsStrongBoxBacked"),
            jni_sig!("(Z)Landroid/security/keystore/KeyGenParameterSpec$Builder;"),
            &[JValue::Bool(true)],
        )?;
    }
    let spec = env
        .call_method(
            &builder,
            jni_str!("build"),
            jni_sig!("()Landroid/security/keystore/KeyGenParameterSpec;"),
            &[],
        )?
        .l()?;
    let generator = key_pair_generator(env, Some("AndroidKeyStore"))?;
    env.call_method(
        &generator,
        jni_str!("initialize"),
        jni_sig!("(Ljava/security/spec/AlgorithmParameterSpec;)V"),
        &[JValue::from(&spec)],
    )?;
    env.call_method(
        &generator,
        jni_str!("generateKeyPair"),
        jni_sig!("()Ljava/security/KeyPair;"),
        &[],
    )?
    .l()
}

#[cfg(not(target_os = "android"))]
fn android_generate<'local>(
    _env: &mut Env<'local>,
    _name: &JString<'_>,
    _policy: KeyPolicy,
) -> Result<JObject<'local>, JvmFailure> {
    // KeyGenParameterSpec is android.* API; off Android the AndroidKeyStore provider does not exist.
    Err(KeyStoreError::Unsupported("the Android Keystore exists only on Android".into()).into())
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
