package org.pmn

import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import kotlin.test.assertEquals
import kotlin.test.assertIs
import kotlin.test.assertNull
import kotlin.test.assertTrue
import kotlin.test.fail

/** A media player written in Kotlin: what an app plugs in to become a provider. */
class KotlinPlayer(private val failLoadWith: Throwable? = null) : MediaPlayerBackend {
    val calls = CopyOnWriteArrayList<String>()
    @Volatile var state = PlaybackState.STOPPED
    @Volatile var position = 0L
    // Not `volume`/`muted`: their JVM setters would clash with setVolume()/setMuted() below.
    @Volatile var currentVolume: Int = 50
    @Volatile var currentlyMuted = false

    override fun load(uri: String) {
        failLoadWith?.let { throw it }
        calls.add("load $uri")
        state = PlaybackState.PLAYING
        position = 0L
    }
    override fun pause() { calls.add("pause"); state = PlaybackState.PAUSED }
    override fun resume() { calls.add("resume"); state = PlaybackState.PLAYING }
    override fun stop() { calls.add("stop"); state = PlaybackState.STOPPED }
    override fun seek(positionMs: Long) { calls.add("seek $positionMs"); position = positionMs }
    override fun setVolume(volume: Int) { calls.add("volume $volume"); currentVolume = volume }
    override fun setMuted(muted: Boolean) { calls.add("muted $muted"); currentlyMuted = muted }
    override fun playback() = Playback(
        state = state,
        positionMs = position,
        durationMs = if (state == PlaybackState.STOPPED) null else 600_000L,
        volume = currentVolume,
        muted = currentlyMuted,
    )
}

class ServicesTest {
    @BeforeEach
    fun needsServer() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
    }

    private inline fun <reified T : ServiceEvent> RecordingListener.awaitEventOf(): T {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
        while (System.nanoTime() < deadline) {
            val e = events.poll(100, TimeUnit.MILLISECONDS) ?: continue
            if (e is T) return e
        }
        fail("no ${T::class.simpleName} event within 10 s")
    }

    @Test
    fun aKotlinPlayerIsAProviderDrivenByAnotherController(): Unit = runBlocking {
        val backend = KotlinPlayer()
        val provider = startPlayerProvider(TestServer.config("kt-tv"), "Kotlin Player", backend)
        val listener = RecordingListener()
        Controller(TestServer.config("phone"), listener).use { controller ->
            controller.connect()
            val tv = listener.awaitProvider { it.name == "Kotlin Player" }
            assertEquals(listOf("urn.xmpp.tmp.media.player"), tv.services)

            val playing = controller.player(tv.jid).play("file:///kotlin/one.mkv")
            assertEquals(PlaybackState.PLAYING, playing.state)
            assertEquals("file:///kotlin/one.mkv", playing.uri)
            assertEquals(600_000L, playing.durationMs)
            assertEquals(123_000L, controller.player(tv.jid).seek(123_000L).positionMs)
            controller.player(tv.jid).enqueue("file:///kotlin/two.mkv", "Two")
            assertEquals(2, controller.player(tv.jid).queue().items.size)
            val next = controller.player(tv.jid).next()
            assertEquals("Two", next.title)
            assertEquals(PlaybackState.PAUSED, controller.player(tv.jid).pause().state)

            controller.subscribeEvents(tv.jid, "player", listOf("volume-changed")).use {
                assertEquals(VolumeState(30, false), controller.player(tv.jid).setVolume(30))
                val event = listener.awaitEventOf<ServiceEvent.PlayerVolumeChanged>()
                assertEquals(VolumeState(30, false), event.volume)
                assertTrue(controller.player(tv.jid).mute(true).muted)
            }
            assertEquals(
                listOf("load file:///kotlin/one.mkv", "seek 123000", "load file:///kotlin/two.mkv",
                    "pause", "volume 30", "muted true"),
                backend.calls.toList(),
            )
            // pmn checks arguments before the app's player sees them.
            assertThrows<PmnException.BadParams> { runBlocking { controller.player(tv.jid).setVolume(101) } }
            assertThrows<PmnException.Fault> { runBlocking { controller.player(tv.jid).seek(700_000L) } }
            assertThrows<PmnException.UnknownMethod> { runBlocking { controller.library(tv.jid).browse("", 0, 10) } }
            assertEquals(6, backend.calls.size)
        }
        provider.stop()
        provider.close()
    }

    @Test
    fun whatAKotlinPlayerThrowsReachesTheControllerAsAFault(): Unit = runBlocking {
        val typed = startPlayerProvider(TestServer.config("kt-tv"), "Typed refusal",
            KotlinPlayer(failLoadWith = PmnException.Fault(451, "not in this country")))
        val broken = startPlayerProvider(TestServer.config("kt-tv"), "Broken",
            KotlinPlayer(failLoadWith = IllegalStateException("a bug in the app")))
        val listener = RecordingListener()
        Controller(TestServer.config("phone"), listener).use { controller ->
            controller.connect()
            val t = listener.awaitProvider { it.name == "Typed refusal" }
            val b = listener.awaitProvider { it.name == "Broken" }
            val fault = assertThrows<PmnException.Fault> { runBlocking { controller.player(t.jid).play("file:///x") } }
            assertEquals(451, fault.code)
            val bug = assertThrows<PmnException.Fault> { runBlocking { controller.player(b.jid).play("file:///x") } }
            assertEquals(500, bug.code)
            // Both keep serving.
            assertEquals(PlaybackState.STOPPED, controller.player(b.jid).status().state)
        }
        typed.stop(); typed.close()
        broken.stop(); broken.close()
    }

    @Test
    fun recorderAndLibraryFromKotlin(): Unit = runBlocking {
        val provider = startDemoProvider(TestServer.config("box"), "Kotlin Box", 10_000)
        val listener = RecordingListener()
        Controller(TestServer.config("phone"), listener).use { controller ->
            controller.connect()
            val box = listener.awaitProvider { it.name == "Kotlin Box" }
            assertEquals(3, box.services.size)

            // Recorder.
            assertTrue(controller.recorder(box.jid).channels().any { it.id == "one" })
            val now = System.currentTimeMillis() / 1000
            controller.subscribe(box.jid, "recorder").use {
                val rec = controller.recorder(box.jid).schedule("one", now + 1, now + 2, "Kotlin news")
                assertEquals(RecordingState.SCHEDULED, rec.state)
                assertEquals(now + 1, rec.start)
                val clash = assertThrows<PmnException.Fault> {
                    runBlocking { controller.recorder(box.jid).schedule("two", now + 1, now + 5, "Clash") }
                }
                assertEquals(409, clash.code)
                val past = assertThrows<PmnException.Fault> {
                    runBlocking { controller.recorder(box.jid).schedule("two", now - 100, now - 50, "Past") }
                }
                assertEquals(422, past.code)
                assertThrows<PmnException.BadParams> {
                    runBlocking { controller.recorder(box.jid).schedule("two", now + 50, now + 10, "Backwards") }
                }
                val later = controller.recorder(box.jid).schedule("two", now + 600, now + 700, "Later")
                assertEquals(2, controller.recorder(box.jid).scheduled().size)
                assertEquals(later.id, controller.recorder(box.jid).cancel(later.id).id)
                val started = listener.awaitEventOf<ServiceEvent.Recording>()
                assertEquals(RecordingState.RECORDING, started.recording.state)
                val finished = listener.awaitEventOf<ServiceEvent.Recording>()
                assertEquals(RecordingState.FINISHED, finished.recording.state)
                assertEquals(rec.id, finished.recording.id)
            }

            // Library: page through 10 000 items without holding them.
            val root = controller.library(box.jid).browse("", 0, 10)
            assertEquals(10_000, root.items.first { it.id == "videos" }.childCount)
            var offset = 0
            var seen = 0
            while (true) {
                val page = controller.library(box.jid).browse("videos", offset, 200)
                if (page.items.isEmpty()) break
                seen += page.items.size
                offset += page.items.size
            }
            assertEquals(10_000, seen)
            val hits = controller.library(box.jid).search("Film 4242", 0, 10)
            assertEquals(1, hits.total)
            val item = controller.library(box.jid).item("videos/4242")
            assertEquals(ItemKind.VIDEO, item.kind)
            assertNull(item.childCount)
            assertThrows<PmnException.BadParams> { runBlocking { controller.library(box.jid).browse("videos", 0, 0) } }
            assertEquals(404, assertThrows<PmnException.Fault> {
                runBlocking { controller.library(box.jid).item("videos/10000") }
            }.code)
            assertThrows<PmnException.BadParams> {
                runBlocking { controller.subscribeEvents(box.jid, "player", listOf("no-such-event")) }
            }
        }
        provider.stop()
        provider.close()
        assertEquals(0L, liveObjects().providers)
    }
}
