package org.pmn

import java.util.concurrent.TimeUnit
import android.content.Context
import android.util.Log
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.fail

/**
 * The Android module's Kotlin (android/src/main/kotlin) on the JVM, against android.* stubs: the
 * `Pmn.initAndroid` entry the docs promise reaches the native init, and LogcatSink maps levels.
 */
class AndroidShimTest {
    @Test
    fun initAndroidRunsTheNativeInitAndEnablesThePlatformKeyStore() {
        val dir = java.nio.file.Files.createTempDirectory("pmn-shim")
        System.setProperty("pmn.keystore.file", dir.resolve("keys.p12").toString())
        Pmn.initAndroid(Context()) // on a desktop JVM: records the VM (PKCS12 store) and ignores the context
        Pmn.initAndroid(Context()) // idempotent
        DeviceKeyStore.platform().close() // no PlatformNotInitialised any more
    }

    @Test
    fun logcatSinkWritesAtTheRecordsPriority() {
        val sink = LogcatSink("pmn-test")
        sink.log(LogLevel.WARN, "pmn::core::session", "connection lost")
        sink.log(LogLevel.TRACE, "pmn::core::rpc", "stanza")
        assertEquals(Triple(Log.WARN, "pmn-test", "pmn::core::session: connection lost"), Log.lines.poll(1, TimeUnit.SECONDS))
        assertEquals(Log.VERBOSE, Log.lines.poll(1, TimeUnit.SECONDS)?.first)

        // Installed as pmn's sink, records from Rust reach "Logcat".
        if (TestServer.server == null) return
        Pmn.logToLogcat(LogLevel.INFO)
        runBlocking { Controller(TestServer.config("logcat-phone"), RecordingListener()).use { it.connect() } }
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
        while (System.nanoTime() < deadline) {
            val (priority, tag, line) = Log.lines.poll(100, TimeUnit.MILLISECONDS) ?: continue
            if (line.startsWith("pmn::core::session") && "online" in line) {
                assertEquals(Pair(Log.INFO, "pmn"), Pair(priority, tag))
                return
            }
        }
        fail("no 'online' record from Rust reached the sink")
    }
}
