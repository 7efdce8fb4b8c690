package org.pmn

import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/**
 * What an app's process does at its end, in a JVM of its own: the platform key store (JNI)
 * signs on pmn's runtime threads during a tunnel's set-up, everything is closed, `main` returns —
 * and the JVM must exit. A runtime thread left attached to the JVM would be a non-daemon Java
 * thread that `DestroyJavaVM` waits for, for ever (issue 14).
 */
class ChildJvmExitTest {
    @Test
    fun aJvmThatUsedThePlatformKeyStoreExitsWhenMainReturns() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
        val java = File(System.getProperty("java.home"), "bin/java").path
        val dir = Files.createTempDirectory("pmn-child-jvm")
        val props = listOf("jna.library.path", "pmn.server", "pmn.ca").mapNotNull { key ->
            System.getProperty(key)?.let { "-D$key=$it" }
        }
        val process = ProcessBuilder(
            listOf(java, "-cp", System.getProperty("java.class.path")) + props +
                listOf("-Dpmn.keystore.file=${dir.resolve("keys.p12")}", ChildJvmMain::class.java.name, dir.toString()),
        ).redirectErrorStream(true).start()
        val exited = process.waitFor(60, TimeUnit.SECONDS)
        val output = process.inputStream.bufferedReader().readText()
        if (!exited) process.destroyForcibly()
        assertTrue(exited, "the child JVM did not exit after main returned:\n$output")
        assertEquals(0, process.exitValue(), output)
        assertTrue("child: done" in output, output)
    }
}

/** The child JVM's program: the platform key store, a tunnelled TV and phone, close, return. */
object ChildJvmMain {
    @JvmStatic
    fun main(args: Array<String>): Unit = runBlocking {
        val dir = java.nio.file.Path.of(args[0])
        // What Pmn.initAndroid calls (android/, compiled against the real framework elsewhere): on the
        // desktop JVM, with no Context, the PKCS12 platform store.
        PmnPlatform.init(null)
        val keys = DeviceKeyStore.platform()
        fun e2e(name: String) = E2eOptions(keyStore = keys, keyAlias = "$name-tls", trustFile = dir.resolve("$name-trust.json").toString())
        val tvConfig = TestServer.config("child-tv").copy(e2e = e2e("tv"), plainTransport = false)
        val tv = startSimulatedPlayer(tvConfig, "Child TV")
        val listener = RecordingListener()
        Controller(TestServer.config("child-phone").copy(e2e = e2e("phone"), plainTransport = false), listener).use { phone ->
            phone.connect()
            val info = listener.awaitProvider { it.name == "Child TV" }
            // Pairing signs with both keys on pmn's runtime threads (JNI into the key store).
            phone.trust().pair(info.jid, tv.trust().startPairing(), RecordingPairingListener())
            phone.player(info.jid).status()
        }
        tv.stop()
        tv.close()
        keys.close()
        println("child: done")
    }
}
