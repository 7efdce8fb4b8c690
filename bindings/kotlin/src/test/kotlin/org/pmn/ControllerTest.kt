package org.pmn

import java.io.File
import java.util.UUID
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import kotlin.test.assertEquals
import kotlin.test.assertIs
import kotlin.test.assertTrue
import kotlin.test.fail

/** Collects what the library reports, so the test can wait for it. */
class RecordingListener(private val throwOnEvent: Boolean = false) : ControllerListener {
    val providers = ConcurrentHashMap<String, ProviderInfo>()
    val online = LinkedBlockingQueue<ProviderInfo>()
    val offline = LinkedBlockingQueue<String>()
    val events = LinkedBlockingQueue<ServiceEvent>()
    val states = LinkedBlockingQueue<ConnectionState>()

    override fun onProviderOnline(provider: ProviderInfo) {
        providers[provider.jid] = provider
        online.add(provider)
    }

    override fun onProviderOffline(jid: String) {
        providers.remove(jid)
        offline.add(jid)
    }

    override fun onEvent(event: ServiceEvent) {
        events.add(event)
        if (throwOnEvent) throw IllegalStateException("a listener bug in the app")
    }

    override fun onConnectionState(state: ConnectionState) {
        states.add(state)
    }

    fun awaitProvider(match: (ProviderInfo) -> Boolean): ProviderInfo {
        providers.values.firstOrNull(match)?.let { return it }
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
        while (System.nanoTime() < deadline) {
            val p = online.poll(100, TimeUnit.MILLISECONDS) ?: continue
            if (match(p)) return p
        }
        fail("provider did not appear; known: ${providers.values}")
    }

    fun awaitEvent(): ServiceEvent =
        events.poll(10, TimeUnit.SECONDS) ?: fail("no event within 10 s")
}

/** The test Prosody started by `cargo xtask test` (system properties pmn.server / pmn.ca). */
object TestServer {
    val server: String? = System.getProperty("pmn.server")?.takeIf { it.isNotBlank() }
    private val caPem: String? =
        System.getProperty("pmn.ca")?.takeIf { it.isNotBlank() }?.let { File(it).readText() }

    /**
     * A device of the test household talking in clear (the service-layer tests); tests of the
     * tunnel replace it with `.copy(e2e = …, plainTransport = false)`.
     */
    fun config(
        device: String,
        password: String = "home-secret",
        network: String = "home@home.test",
    ) = ConnectionConfig(
        network = network,
        password = password,
        device = "$device-${UUID.randomUUID().toString().take(8)}",
        server = server,
        testCaPem = caPem,
        plainTransport = true,
    )

    /** An account of its own for the test that changes its password (registered by xtask). */
    val rotateNetwork: String? = System.getProperty("pmn.rotate.network")?.takeIf { it.isNotBlank() }
    val rotatePassword: String = System.getProperty("pmn.rotate.password") ?: ""
}

class ControllerTest {
    @BeforeEach
    fun needsServer() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
    }

    @Test
    fun discoversAProviderPlaysPausesAndReceivesEvents(): Unit = runBlocking {
        val provider = startSimulatedPlayer(TestServer.config("tv"), "Kotlin TV")
        val listener = RecordingListener()
        Controller(TestServer.config("phone"), listener).use { controller ->
            controller.connect()
            val tv = listener.awaitProvider { it.name == "Kotlin TV" }
            assertEquals(listOf("urn.xmpp.tmp.media.player"), tv.services)
            assertTrue(controller.providers().any { it.jid == tv.jid })

            controller.subscribeEvents(tv.jid, "player", listOf("state-changed")).use { subscription ->
                assertEquals(1, provider.subscriptionCount())
                val playing = controller.player(tv.jid).play("file:///movies/kotlin.mkv")
                assertEquals(PlaybackState.PLAYING, playing.state)
                assertEquals("file:///movies/kotlin.mkv", playing.uri)
                val paused = controller.player(tv.jid).pause()
                assertEquals(PlaybackState.PAUSED, paused.state)
                assertEquals(paused, controller.player(tv.jid).status())

                val first = assertIs<ServiceEvent.PlayerStateChanged>(listener.awaitEvent())
                assertEquals(tv.jid, first.provider)
                assertEquals(PlaybackState.PLAYING, first.status.state)
                val second = assertIs<ServiceEvent.PlayerStateChanged>(listener.awaitEvent())
                assertEquals(PlaybackState.PAUSED, second.status.state)
                assertTrue(!subscription.isFinished())
            }
            // Closing the handle unsubscribed on the provider.
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5)
            while (provider.subscriptionCount() != 0 && System.nanoTime() < deadline) Thread.sleep(20)
            assertEquals(0, provider.subscriptionCount())

            // Typed errors.
            controller.player(tv.jid).stop()
            val fault = assertThrows<PmnException.Fault> { runBlocking { controller.player(tv.jid).pause() } }
            assertEquals(409, fault.code)
            // A fault ran; the error says so.
            assertEquals(CallOutcome.RAN, fault.outcome())
            assertTrue(fault.didRun())

            // The app's lifecycle: calls work in the background and back in the foreground.
            controller.setForeground(false)
            assertEquals(PlaybackState.STOPPED, controller.player(tv.jid).status().state)
            controller.setForeground(true)
            assertEquals(PlaybackState.STOPPED, controller.player(tv.jid).status().state)
            assertThrows<PmnException.Config> { runBlocking { controller.player("not a jid").play("x") } }
            assertIs<ConnectionState.Online>(controller.connectionState())

            provider.stop()
            val gone = listener.offline.poll(10, TimeUnit.SECONDS)
            assertEquals(tv.jid, gone)
            val unavailable =
                assertThrows<PmnException.ProviderUnavailable> { runBlocking { controller.player(tv.jid).status() } }
            // The server refused to deliver it: certainly not run.
            assertEquals(CallOutcome.NOT_RUN, unavailable.outcome)
            assertEquals(CallOutcome.NOT_RUN, unavailable.outcome())
        }
        provider.close()
        // close() dropped the Rust objects.
        assertEquals(LiveObjects(controllers = 0L, providers = 0L, taskHandles = 0L), liveObjects())
        assertTrue(listener.states.any { it is ConnectionState.Online })
    }

    @Test
    fun theSavedCapsCacheComesBackAtTheNextStart(): Unit = runBlocking {
        val provider = startSimulatedPlayer(TestServer.config("tv"), "Cached Kotlin TV")
        val saved = Controller(TestServer.config("phone"), RecordingListener()).use { controller ->
            controller.connect()
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
            while (controller.providers().none { it.name == "Cached Kotlin TV" }) {
                if (System.nanoTime() > deadline) fail("the TV was not listed")
                Thread.sleep(20)
            }
            controller.capsCacheSnapshot()
        }
        assertTrue(saved.contains("urn:pmn:caps-cache:0"), saved)
        val listener = RecordingListener()
        Controller(TestServer.config("phone").copy(capsCache = saved), listener).use { controller ->
            controller.connect()
            val tv = listener.awaitProvider { it.name == "Cached Kotlin TV" }
            assertEquals(listOf("urn.xmpp.tmp.media.player"), tv.services)
        }
        // Text that is not a saved cache does not keep the app from starting.
        Controller(TestServer.config("phone").copy(capsCache = "garbage"), RecordingListener()).use { controller ->
            controller.connect()
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5)
            while (controller.connectionState() !is ConnectionState.Online && System.nanoTime() < deadline) {
                Thread.sleep(20)
            }
            assertIs<ConnectionState.Online>(controller.connectionState())
        }
        provider.stop()
        provider.close()
    }

    @Test
    fun wrongPasswordIsAnAuthException(): Unit = runBlocking {
        val listener = RecordingListener()
        Controller(TestServer.config("phone", password = "wrong"), listener).use { controller ->
            assertIs<ConnectionState.Idle>(controller.connectionState())
            assertThrows<PmnException.Auth> { runBlocking { controller.connect() } }
            // The failure is the state, and the listener was told of each step.
            val offline = assertIs<ConnectionState.Offline>(controller.connectionState())
            assertIs<PmnException.Auth>(offline.error)
            val told = listener.states.toList()
            assertIs<ConnectionState.Connecting>(told.first())
            assertIs<PmnException.Auth>(assertIs<ConnectionState.Offline>(told.last()).error)
        }
        assertEquals(0L, liveObjects().controllers)
    }

    @Test
    fun callsBeforeConnectAreNotConnected(): Unit = runBlocking {
        Controller(TestServer.config("phone"), RecordingListener()).use { controller ->
            val notSent =
                assertThrows<PmnException.NotConnected> { runBlocking { controller.player("home@home.test/tv").status() } }
            assertEquals(CallOutcome.NOT_RUN, notSent.outcome())
            assertTrue(!notSent.didRun())
            // Before connect there is nothing to tell the server.
            controller.setForeground(false)
        }
    }

    @Test
    fun invalidConfigIsRejectedAtConstruction() {
        val bad = TestServer.config("phone").copy(network = "no-local-part")
        assertThrows<PmnException.Config> { Controller(bad, RecordingListener()) }
    }

    @Test
    fun aThrowingListenerDoesNotStopDelivery(): Unit = runBlocking {
        val listener = RecordingListener(throwOnEvent = true)
        withPlayerAndController("Fragile TV", listener) { controller, tv ->
            controller.subscribeEvents(tv.jid, "player", listOf("state-changed")).use {
                controller.player(tv.jid).play("file:///a")
                controller.player(tv.jid).pause()
                // Both events arrive although the listener threw on the first.
                assertIs<ServiceEvent.PlayerStateChanged>(listener.awaitEvent())
                assertIs<ServiceEvent.PlayerStateChanged>(listener.awaitEvent())
            }
        }
    }

    /**
     * A flow of Flows.kt watches as soon as its collector starts, before that collector first
     * suspends: the state change of a `play()` made right after `async(UNDISPATCHED)` returned is in
     * it, even when the test's thread never yields in between. With `callbackFlow` the watch ran in
     * a coroutine of its own, queued on this thread: the event went to `onEvent` and the flow
     * missed it (a CI run timed out in FreedOnJvmTest that way).
     */
    @Test
    fun aFlowWatchesBeforeItsCollectorFirstSuspends(): Unit = runBlocking {
        val listener = RecordingListener()
        withPlayerAndController("Eager TV", listener) { controller, tv ->
            controller.subscribeEvents(tv.jid, "player", listOf("state-changed")).use {
                val batched = async(start = CoroutineStart.UNDISPATCHED) {
                    controller.batchedEvents().filterIsInstance<ServiceEvent.PlayerStateChanged>().first()
                }
                // The call on another thread and this one blocked, not suspended: nothing queued
                // on runBlocking's loop runs until the event has arrived.
                val call = Thread { runBlocking { controller.player(tv.jid).play("file:///movies/eager.mkv") } }
                call.start()
                call.join()
                // Had no watcher been live, the event would reach the listener within this wait.
                assertEquals(null, listener.events.poll(1, TimeUnit.SECONDS), "the event went past the flow")
                assertEquals(PlaybackState.PLAYING, withTimeout(10_000) { batched.await() }.status.state)
            }
        }
    }

    /**
     * A simulated player named [name] and a connected controller reporting to [listener] that has
     * seen it; [body] gets both, and the player is stopped afterwards, also when [body] throws.
     */
    private suspend fun withPlayerAndController(
        name: String,
        listener: RecordingListener,
        body: suspend (Controller, ProviderInfo) -> Unit,
    ) {
        val provider = startSimulatedPlayer(TestServer.config("tv"), name)
        try {
            Controller(TestServer.config("phone"), listener).use { controller ->
                controller.connect()
                body(controller, listener.awaitProvider { it.name == name })
            }
        } finally {
            provider.stop()
            provider.close()
        }
    }
}
