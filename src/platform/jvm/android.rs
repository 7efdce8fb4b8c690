//! Generating a key inside the Android Keystore (`KeyGenParameterSpec`), StrongBox first. Off
//! Android only a stub is compiled: the `AndroidKeyStore` provider does not exist there.

#[cfg(target_os = "android")]
use jni::errors::Error as JniError;
#[cfg(target_os = "android")]
use jni::objects::JValue;
use jni::objects::{JObject, JString};
use jni::Env;
#[cfg(target_os = "android")]
use jni::{jni_sig, jni_str};

use crate::core::identity::KeyPolicy;
#[cfg(not(target_os = "android"))]
use crate::core::identity::KeyStoreError;

#[cfg(target_os = "android")]
use super::caught;
#[cfg(target_os = "android")]
use super::java::{generate_key_pair, p256_spec};
use super::JvmFailure;

/// Generates a key inside the Android Keystore: StrongBox first, and without it when the device has
/// none (`StrongBoxUnavailableException`) or predates it (API < 28: no `setIsStrongBoxBacked`).
#[cfg(target_os = "android")]
pub(super) fn android_generate<'local>(
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
    let curve_spec = p256_spec(env)?;
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
    generate_key_pair(env, Some("AndroidKeyStore"), &spec)
}

#[cfg(not(target_os = "android"))]
pub(super) fn android_generate<'local>(
    _env: &mut Env<'local>,
    _name: &JString<'_>,
    _policy: KeyPolicy,
) -> Result<JObject<'local>, JvmFailure> {
    // KeyGenParameterSpec is android.* API; off Android the AndroidKeyStore provider does not exist.
    Err(KeyStoreError::Unsupported("the Android Keystore exists only on Android".into()).into())
}
