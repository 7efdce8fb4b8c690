//! The JCA calls both stores make through JNI: `KeyPairGenerator.getInstance`, `getEncoded` and
//! `Signature("SHA256withECDSA")`.

use jni::errors::Error as JniError;
use jni::objects::{JByteArray, JObject, JValue};
use jni::{jni_sig, jni_str, Env};

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

/// A new key pair from `KeyPairGenerator.getInstance("EC"[, provider])` initialised with `spec`
/// (an [`p256_spec`] for the desktop store, a `KeyGenParameterSpec` for the Android Keystore).
pub(super) fn generate_key_pair<'local>(
    env: &mut Env<'local>,
    provider: Option<&str>,
    spec: &JObject<'_>,
) -> Result<JObject<'local>, JniError> {
    let generator = key_pair_generator(env, provider)?;
    env.call_method(
        &generator,
        jni_str!("initialize"),
        jni_sig!("(Ljava/security/spec/AlgorithmParameterSpec;)V"),
        &[JValue::from(spec)],
    )?;
    env.call_method(
        &generator,
        jni_str!("generateKeyPair"),
        jni_sig!("()Ljava/security/KeyPair;"),
        &[],
    )?
    .l()
}

/// `new ECGenParameterSpec("secp256r1")`: the curve of every key either store makes.
pub(super) fn p256_spec<'local>(env: &mut Env<'local>) -> Result<JObject<'local>, JniError> {
    let curve = env.new_string("secp256r1")?;
    env.new_object(
        jni_str!("java/security/spec/ECGenParameterSpec"),
        jni_sig!("(Ljava/lang/String;)V"),
        &[JValue::from(&curve)],
    )
}

/// `pair.getPublic()` of a `java.security.KeyPair`.
pub(super) fn public_of<'local>(
    env: &mut Env<'local>,
    pair: &JObject<'_>,
) -> Result<JObject<'local>, JniError> {
    env.call_method(
        pair,
        jni_str!("getPublic"),
        jni_sig!("()Ljava/security/PublicKey;"),
        &[],
    )?
    .l()
}

/// `key.getEncoded()` as bytes (SPKI DER for a public key).
pub(super) fn encoded(env: &mut Env<'_>, key: &JObject<'_>) -> Result<Vec<u8>, JniError> {
    let bytes = env
        .call_method(key, jni_str!("getEncoded"), jni_sig!("()[B"), &[])?
        .l()?;
    let bytes = env.cast_local::<JByteArray>(bytes)?;
    env.convert_byte_array(&bytes)
}

/// `Signature("SHA256withECDSA")` over `message` with `private_key`; returns the DER signature.
pub(super) fn java_sign(
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
