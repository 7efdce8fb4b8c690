package org.pmn

import java.io.ByteArrayOutputStream
import java.io.PrintStream
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.pmn.sample.RemoteShell
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/** The command-line sample remote, driven by a script against the real Prosody. */
class SampleRemoteTest {
    @BeforeEach
    fun needsServer() = assumeTrue(TestServer.server != null, "needs -Dpmn.server")

    @Test
    fun scriptedSessionListsPlaysPausesAndWatches(): Unit = runBlocking {
        val tv = startSimulatedPlayer(TestServer.config("tv"), "Shell TV")
        val script = """
            wait Shell TV
            list
            watch 1
            play 1 file:///movies/shell.mkv
            pause 1
            status 1
            play 1
            bogus
            quit
        """.trimIndent()
        val bytes = ByteArrayOutputStream()
        RemoteControl(TestServer.config("cli")).use { remote ->
            remote.connect()
            withTimeout(30_000) {
                RemoteShell(remote, script.reader().buffered(), PrintStream(bytes, true)).run()
            }
        }
        tv.stop()
        tv.close()
        val out = bytes.toString()
        assertTrue("online: Shell TV" in out, out)
        assertTrue(Regex("""\d+\. Shell TV \(home@home\.test/tv-""").containsMatchIn(out), out)
        assertTrue("playing file:///movies/shell.mkv" in out, out)
        assertTrue("paused file:///movies/shell.mkv" in out, out)
        assertTrue("usage: play N URI" in out, out)
        assertTrue("unknown command bogus" in out, out)
        // Quitting ended the watch: its subscription was closed.
        assertEquals(0L, liveObjects().taskHandles)
    }
}
