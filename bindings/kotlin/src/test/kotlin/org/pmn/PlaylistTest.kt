package org.pmn

import java.nio.file.Path
import java.util.Base64
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import kotlin.test.assertEquals
import kotlin.test.assertIs

/** Records a followed playlist's changes. */
class RecordingPlaylist : PlaylistListener {
    val changes = LinkedBlockingQueue<PlaylistChange>()

    override fun onChange(change: PlaylistChange) {
        changes.add(change)
    }

    override fun onMissed(count: Long) {}

    fun await(): PlaylistChange = changes.poll(15, TimeUnit.SECONDS) ?: error("no playlist change")
}

/**
 * Spec §3.2 from Kotlin (the Rust twin is tests/pubsub.rs): Julia's phone publishes a playlist her
 * friend Romeo's household may read; Romeo's phone follows it and hears each entry as it is
 * published (owner signature checked) and retracted, and fetches the whole list.
 */
class PlaylistTest {
    @BeforeEach
    fun needsServer() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
    }

    @Test
    fun aFriendFollowsAPublishedPlaylist(@TempDir juliaDir: Path): Unit = runBlocking {
        val juliaKeys = DeviceKeyStore.software(juliaDir.resolve("keys").toString())
        val julia = Controller(
            TestServer.config("julia-playlists").copy(owner = OwnerOptions(keyStore = juliaKeys)),
            RecordingListener(),
        )
        val romeo = Controller(
            TestServer.config("romeo-playlists", "friend-secret", "home@friend.test"),
            RecordingListener(),
        )
        julia.use {
            romeo.use {
                julia.connect()
                romeo.connect()
                val name = "film-night-${System.nanoTime()}"
                val mine = julia.playlists()
                mine.create(name, PlaylistAccess.Friends(listOf("home@friend.test")))
                val owner = Base64.getDecoder().decode(julia.owner().ownerPublicKey())
                val heard = RecordingPlaylist()
                romeo.playlists().follow("home@home.test", name, listOf(owner), heard).use {
                    val film = PlaylistEntry(
                        id = "1", title = "The Film", uri = "https://example.org/film.mkv",
                        kind = MediaKind.VIDEO, durationMs = 5_400_000L, artwork = null, position = 0,
                    )
                    mine.publish(name, film)
                    val published = assertIs<PlaylistChange.Published>(heard.await())
                    assertEquals(film, published.entry)
                    assertEquals("home@home.test", published.publisher)
                    mine.publish(name, film.copy(id = "2", title = "The Sequel", position = 1))
                    assertIs<PlaylistChange.Published>(heard.await())
                    assertEquals(
                        listOf("The Film", "The Sequel"),
                        romeo.playlists().fetch("home@home.test", name, listOf(owner)).map { it.title },
                    )
                    mine.retract(name, "1")
                    assertIs<PlaylistChange.Retracted>(heard.await())
                }
            }
        }
        juliaKeys.close()
    }
}
