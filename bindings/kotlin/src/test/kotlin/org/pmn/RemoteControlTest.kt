package org.pmn

import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertIs
import kotlin.test.assertTrue

/** The idiomatic layer (RemoteControl) against the real Prosody: flows, structured cancellation, close. */
class RemoteControlTest {
    @BeforeEach
    fun needsServer() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
        // On the JVM, pmn's logs go to stdout (Surefire keeps them with the test report).
        PmnLog.toStdout(LogLevel.INFO)
    }

    /** Suspends (never blocks: the collectors run on this runBlocking thread too). */
    private suspend fun awaitSubscriptions(provider: Provider, n: Int) {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5)
        while (provider.subscriptionCount() != n && System.nanoTime() < deadline) delay(20)
        assertEquals(n, provider.subscriptionCount())
    }

    @Test
    fun providersFlowFollowsPresenceAndEventsFlowIsTheSubscription(): Unit = runBlocking {
        val tv = startSimulatedPlayer(TestServer.config("tv"), "Flow TV")
        RemoteControl(TestServer.config("phone")).use { remote ->
            remote.connect()
            assertIs<ConnectionState.Online>(remote.connection.first { it is ConnectionState.Online })
            val players = withTimeout(10_000) {
                remote.providersOffering(RemoteControl.PLAYER_FEATURE).first { list -> list.any { it.name == "Flow TV" } }
            }
            val jid = players.single { it.name == "Flow TV" }.jid

            // Collecting subscribes; the collector's cancellation unsubscribes in Rust.
            val received = Channel<ServiceEvent>(Channel.UNLIMITED)
            val collector = launch { remote.events(jid, "player").collect { received.send(it) } }
            awaitSubscriptions(tv, 1)
            // The provider may see the subscription before subscribe() has returned its handle.
            withTimeout(5_000) { while (liveObjects().taskHandles != 1L) delay(10) }
            remote.player(jid).play("file:///movies/flow.mkv") // delegated to the generated Controller
            // play also reports the queue; every variant knows its provider.
            var event: ServiceEvent
            do {
                event = withTimeout(10_000) { received.receive() }
                assertEquals(jid, event.providerJid)
            } while (event !is ServiceEvent.PlayerStateChanged)
            assertEquals(PlaybackState.PLAYING, event.status.state)
            collector.cancelAndJoin()
            awaitSubscriptions(tv, 0)
            assertEquals(0L, liveObjects().taskHandles)

            // A flow that completes by itself (take) also unsubscribes.
            val two = async(start = CoroutineStart.UNDISPATCHED) {
                remote.events(jid, "player").filterIsInstance<ServiceEvent.PlayerStateChanged>().take(2).toList()
            }
            awaitSubscriptions(tv, 1)
            remote.player(jid).pause()
            remote.player(jid).resume()
            val states = withTimeout(10_000) { two.await() }.map { it.status.state }
            assertEquals(listOf(PlaybackState.PAUSED, PlaybackState.PLAYING), states)
            awaitSubscriptions(tv, 0)

            // The provider going offline leaves the list.
            tv.stop()
            withTimeout(10_000) { remote.onlineProviders.first { list -> list.none { it.jid == jid } } }
        }
        tv.close()
        assertEquals(LiveObjects(controllers = 0L, providers = 0L, taskHandles = 0L), liveObjects())
    }

    /**
     * Issue 14: `subscribe` returns once the provider has acknowledged, so the event of a call made
     * right after it — no delay, no polling the provider — is always there; several rounds, since a
     * lost event was a race.
     */
    @Test
    fun anEventRightAfterSubscribeIsNeverLost(): Unit = runBlocking {
        val tv = startSimulatedPlayer(TestServer.config("tv"), "Acknowledging TV")
        RemoteControl(TestServer.config("phone")).use { remote ->
            remote.connect()
            val jid = withTimeout(10_000) {
                remote.onlineProviders.first { list -> list.any { it.name == "Acknowledging TV" } }
            }.single { it.name == "Acknowledging TV" }.jid
            repeat(6) { round ->
                remote.subscription(jid, "player").use { events ->
                    // Acknowledged: the provider holds the subscription already.
                    assertEquals(1, tv.subscriptionCount())
                    val player = remote.player(jid)
                    val status = if (round % 2 == 0) player.play("file:///movies/$round.mkv") else player.pause()
                    val event = withTimeout(10_000) {
                        events.filterIsInstance<ServiceEvent.PlayerStateChanged>().first()
                    }
                    assertEquals(status.state, event.status.state, "round $round")
                }
                // close() unsubscribed.
                awaitSubscriptions(tv, 0)
            }
            // A subscription to a provider that is not there fails typed, and leaves nothing.
            assertIs<PmnException>(runCatching { remote.subscription("home@home.test/nobody-here", "player") }.exceptionOrNull())
            assertEquals(0L, liveObjects().taskHandles)
        }
        tv.stop()
        tv.close()
    }

    @Test
    fun closingTheRemoteEndsItsFlowsAndFreesRust(): Unit = runBlocking {
        val tv = startSimulatedPlayer(TestServer.config("tv"), "Closing TV")
        val remote = RemoteControl(TestServer.config("phone"))
        remote.connect()
        val jid = withTimeout(10_000) {
            remote.onlineProviders.first { list -> list.any { it.name == "Closing TV" } }
        }.single { it.name == "Closing TV" }.jid
        val collected = async { remote.events(jid, "player").toList() }
        awaitSubscriptions(tv, 1)
        remote.close()
        // The flow completes (not hangs) and nothing of the remote is left in Rust.
        withTimeout(10_000) { collected.await() }
        awaitSubscriptions(tv, 0)
        assertEquals(0L, liveObjects().controllers)
        assertEquals(0L, liveObjects().taskHandles)
        remote.close() // idempotent
        tv.stop()
        tv.close()
    }

    @Test
    fun aFailedSubscribeFailsTheFlowWithTheTypedException(): Unit = runBlocking {
        RemoteControl(TestServer.config("phone")).use { remote ->
            remote.connect()
            val error = runCatching { remote.events("home@home.test/nobody-here", "player").first() }
            assertTrue(error.exceptionOrNull() is PmnException, "got $error")
            assertEquals(0L, liveObjects().taskHandles)
        }
    }
}
