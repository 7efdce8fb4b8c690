//! The Java `KeyStore` object behind a [`JvmKeyStore`]: attaching and loading it, the PKCS12
//! file's password and atomic rewrite, and generating a key pair into either store (on the desktop
//! JVM with the self-signed certificate a PKCS12 key entry needs).

use std::cell::RefCell;

use jni::errors::Error as JniError;
use jni::objects::{JObject, JString, JValue};
use jni::{jni_sig, jni_str, Env};

use crate::core::identity::{check_p256_spki, self_signed_certificate, KeyPolicy, KeyStoreError};
use crate::core::sync::Locked;

use super::android::android_generate;
use super::java::{encoded, generate_key_pair, java_sign, p256_spec, public_of};
use super::{java_vm, Backing, JvmFailure, JvmKeyStore};

/// Password of the desktop PKCS12 file. The desktop JVM store is a test vehicle: its secrecy rests on
/// the file's 0600 mode, like the software store; the password only satisfies the PKCS12 format.
const DESKTOP_PKCS12_PASSWORD: &str = "pmn-desktop-jvm";

impl JvmKeyStore {
    /// Runs `f` with an attached `Env` and the loaded Java `KeyStore`, under the store lock.
    pub(super) fn with_keystore<T>(
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

    pub(super) fn password<'local>(
        &self,
        env: &mut Env<'local>,
    ) -> Result<JObject<'local>, JniError> {
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

    pub(super) fn load<'local>(
        &self,
        env: &mut Env<'local>,
    ) -> Result<JObject<'local>, JvmFailure> {
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
    pub(super) fn persist(
        &self,
        env: &mut Env<'_>,
        keystore: &JObject<'_>,
    ) -> Result<(), JvmFailure> {
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

    pub(super) fn contains(
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
    pub(super) fn generate_in(
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
                let public = public_of(env, &pair)?;
                Ok(encoded(env, &public)?)
            }
            Backing::Pkcs12File(_) => {
                if policy.requires_user_presence() {
                    return Err(KeyStoreError::Unsupported(
                        "the desktop JVM store cannot require user presence".into(),
                    )
                    .into());
                }
                let spec = p256_spec(env)?;
                let pair = generate_key_pair(env, None, &spec)?;
                let public = public_of(env, &pair)?;
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
