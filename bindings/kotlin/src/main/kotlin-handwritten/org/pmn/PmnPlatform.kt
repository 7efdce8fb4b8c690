package org.pmn

import java.io.File

/**
 * Explicit platform init for pmn. Call [init] once, before using pmn:
 * - Android: `PmnPlatform.init(applicationContext)` — gives Rust the JavaVM for the Android Keystore
 *   and initialises rustls-platform-verifier (system trust for the XMPP server's certificate).
 * - Desktop JVM (tests): `PmnPlatform.init(null)` — enables the JNI key store (PKCS12 file named by
 *   the `pmn.keystore.file` system property).
 *
 * UniFFI loads libpmn through JNA, so `JNI_OnLoad` never runs; this object loads the *same* file
 * with `System.loadLibrary`/`System.load` so the JVM can bind [nativeInit]. Loading the same path
 * twice maps one copy of the library, so both see the same Rust state.
 */
object PmnPlatform {
    init {
        loadPmnLibrary()
    }

    /** Initialises the platform layer; [context] is an `android.content.Context` on Android, null on a JVM. */
    fun init(context: Any?) = nativeInit(context)

    /** The JNI entry point (`Java_org_pmn_PmnPlatform_nativeInit` in src/platform): call [init]. Throws a RuntimeException if init fails. */
    private external fun nativeInit(context: Any?)

    private fun loadPmnLibrary() {
        try {
            System.loadLibrary("pmn")
        } catch (notOnJavaPath: UnsatisfiedLinkError) {
            // Desktop tests point JNA at the library with jna.library.path; load that very file.
            val fileName = System.mapLibraryName("pmn")
            val candidate = (System.getProperty("jna.library.path") ?: "")
                .split(File.pathSeparator)
                .filter { it.isNotEmpty() }
                .map { File(it, fileName) }
                .firstOrNull { it.isFile }
                // From the packaged jar (org.pmn:pmn-kotlin) JNA extracted its own copy: that one.
                ?: runCatching { com.sun.jna.NativeLibrary.getInstance("pmn").file }.getOrNull()
                ?: throw notOnJavaPath
            System.load(candidate.absolutePath)
        }
    }
}
