//! Android platform init: the JNI entry point Kotlin calls once, before anything else in pmn
//! (`org.pmn.PmnPlatform.nativeInit(context)`).
//!
//! UniFFI loads `libpmn.so` through JNA, so `JNI_OnLoad` never runs; this explicit call is where the
//! library gets its `JavaVM` (for the Android Keystore, `platform::jvm`) and where
//! rustls-platform-verifier gets the application context it needs for system trust — without it the
//! verifier panics on first use ("Expect rustls-platform-verifier to be initialized").

use std::sync::atomic::{AtomicBool, Ordering};

use jni::errors::{Error as JniError, ThrowRuntimeExAndDefault};
use jni::objects::JObject;
use jni::{Env, EnvUnowned};

/// Set once both the key store VM and rustls-platform-verifier are initialised.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Records the VM for the key store and initialises rustls-platform-verifier with `context` (an
/// `android.content.Context`). Idempotent: both parts keep the first initialisation.
pub fn init_with_env(env: &mut Env<'_>, context: JObject<'_>) -> Result<(), JniError> {
    super::jvm::init_with_env(env)?;
    rustls_platform_verifier::android::init_with_env(env, context)?;
    INITIALISED.store(true, Ordering::Release);
    Ok(())
}

/// Whether [`init_with_env`] has completed, i.e. the platform certificate verifier can be used
/// without its "not initialized" panic.
pub fn is_initialised() -> bool {
    INITIALISED.load(Ordering::Acquire)
}

/// JNI entry point for `org.pmn.PmnPlatform.nativeInit(context: Any?)` on Android.
///
/// A panic is caught by `with_env` and a failure becomes a Java `RuntimeException` thrown from
/// `nativeInit`, so nothing unwinds into the JVM and the app sees why init failed.
#[no_mangle]
pub extern "system" fn Java_org_pmn_PmnPlatform_nativeInit<'caller>(
    mut env: EnvUnowned<'caller>,
    _this: JObject<'caller>,
    context: JObject<'caller>,
) {
    env.with_env(|env| -> Result<(), JniError> {
        if context.is_null() {
            // The verifier needs a real Context on Android; fail loudly instead of panicking later.
            return Err(JniError::NullPtr(
                "PmnPlatform.nativeInit(context): context",
            ));
        }
        init_with_env(env, context)
    })
    .resolve::<ThrowRuntimeExAndDefault>()
}
