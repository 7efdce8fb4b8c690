package org.pmn

import android.app.Application
import android.content.Context
import android.util.Log
import java.nio.file.Files
import org.junit.Assert.assertEquals
import org.junit.Assert.assertSame
import org.junit.BeforeClass
import org.junit.Test
import org.junit.runner.RunWith
import org.pmn.sample.SampleApp
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.annotation.Config
import org.robolectric.shadows.ShadowLog

/**
 * `Pmn.initAndroid` with a real `android.content.Context` (Robolectric's), through the sample app's
 * own `SampleApp.onCreate` — the code path an app runs first. On this host the native side is the
 * Linux build of libpmn, so what runs is the JNI entry, the VM hand-over and the JVM key store;
 * the Android-only branch (rustls-platform-verifier's `init_with_env`, the Android Keystore) needs a
 * device and is not exercised here.
 */
@RunWith(RobolectricTestRunner::class)
@Config(sdk = [34], application = SampleApp::class)
class InitAndroidTest {
    companion object {
        /** The JVM key store needs a file (on a phone the Android Keystore needs none). */
        @BeforeClass
        @JvmStatic
        fun keyStoreFile() {
            val dir = Files.createTempDirectory("pmn-robolectric")
            System.setProperty("pmn.keystore.file", dir.resolve("keys.p12").toString())
        }
    }

    @Test
    fun sampleAppOnCreateInitialisesPmnWithTheRealApplicationContext() {
        // Robolectric created SampleApp and ran its onCreate (Pmn.initAndroid(this), logToLogcat).
        val app: Application = RuntimeEnvironment.getApplication()
        assertSame(SampleApp::class.java, app.javaClass)
        val context: Context = app.applicationContext
        Pmn.initAndroid(context) // idempotent: a second init (another entry point) is harmless
        Pmn.initAndroid(app.createDeviceProtectedStorageContext()) // any Context: its application context is used
        // The platform key store needs the init above; before it, this throws PlatformNotInitialised.
        DeviceKeyStore.platform().close()
    }

    @Test
    fun logcatSinkWritesToTheFrameworkLogAtTheRecordsPriority() {
        ShadowLog.clear()
        val sink = LogcatSink("pmn-test")
        sink.log(LogLevel.WARN, "pmn::core::session", "connection lost")
        sink.log(LogLevel.TRACE, "pmn::core::rpc", "stanza")
        val logged = ShadowLog.getLogsForTag("pmn-test").map { it.type to it.msg }
        assertEquals(
            listOf(Log.WARN to "pmn::core::session: connection lost", Log.VERBOSE to "pmn::core::rpc: stanza"),
            logged,
        )
    }
}
