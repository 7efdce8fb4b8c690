package org.pmn

import java.io.ByteArrayOutputStream
import java.io.File
import java.io.PrintStream
import java.nio.file.Path
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
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

    /**
     * The script of sample/README.md, as written there, against a TV that serves only through the
     * tunnel: the `play` before `pair` is refused and printed (the shell goes on), the pairing
     * with the TV's code succeeds, and then the watch, play and pause work.
     */
    @Test
    fun theReadmeScriptPairsAndSurvivesTheRefusalBeforeIt(@TempDir tvDir: Path, @TempDir cliDir: Path): Unit = runBlocking {
        val readme = File("sample/README.md").readText()
        val script = readme.lines().filter { it.startsWith("> ") }.map { it.removePrefix("> ") }
        assertTrue(script.any { it.startsWith("pair ") } && script.last() == "quit", readme)
        fun e2e(dir: Path) = E2eOptions(
            keyStore = DeviceKeyStore.software(dir.resolve("keys").toString()),
            trustFile = dir.resolve("trust.json").toString(),
        )
        val name = script.first { it.startsWith("wait ") }.removePrefix("wait ")
        val tv = startSimulatedPlayer(TestServer.config("tv").copy(e2e = e2e(tvDir), plainTransport = false), name)
        val code = tv.trust().startPairing()
        val input = script.joinToString("\n") { line ->
            if (line.startsWith("pair ")) line.replace(Regex("""\d{6}$"""), code) else line
        }
        val bytes = ByteArrayOutputStream()
        RemoteControl(TestServer.config("cli").copy(e2e = e2e(cliDir), plainTransport = false)).use { remote ->
            remote.connect()
            withTimeout(60_000) {
                RemoteShell(remote, input.reader().buffered(), PrintStream(bytes, true)).run()
            }
        }
        tv.stop()
        tv.close()
        val out = bytes.toString()
        assertTrue("online: $name" in out, out)
        assertTrue("error: Forbidden: " in out.substringBefore("paired: key"), "the unpaired call is refused (Forbidden) and printed:\n$out")
        assertTrue("paired: key " in out, out)
        assertTrue("watching $name" in out, out)
        assertTrue("playing file:///movies/a.mkv" in out, out)
        assertTrue("paused file:///movies/a.mkv" in out, out)
    }
}
