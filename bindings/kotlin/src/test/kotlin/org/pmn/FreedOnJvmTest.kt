package org.pmn

import java.lang.ref.WeakReference
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.CoroutineStart
import kotlinx.coroutines.async
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/**
 * Issue 16 goal 7, "on the JVM every Controller/Provider freed": the Kotlin objects (controllers,
 * providers, handles, the listeners pmn held, flows collected and cancelled) become unreachable
 * and are collected, and the Rust side is freed too ([liveObjects]) — after `close()`, and for
 * objects the app simply dropped, by UniFFI's cleaner. Each test class runs in a JVM of its own
 * (Surefire `reuseForks=false`), so the counters start at zero here.
 */
class FreedOnJvmTest {
    @BeforeEach
    fun needsServer() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
    }

    private val none = LiveObjects(controllers = 0L, providers = 0L, taskHandles = 0L)

    /**
     * Collects garbage until every reference in [refs] is cleared and [liveObjects] reports
     * nothing alive, for at most 20 s; returns the references still set (and the counters) when
     * the time ran out. The cleaner frees the Rust side on its own thread after a collection, and
     * a listener pmn held becomes unreachable only once Rust released it: hence the loop.
     */
    private fun awaitFreed(refs: Map<String, WeakReference<Any>>): String? {
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
        while (true) {
            val alive = refs.filterValues { it.get() != null }.keys
            val live = liveObjects()
            if (alive.isEmpty() && live == none) return null
            if (System.nanoTime() > deadline) return "still reachable: $alive; Rust side: $live"
            System.gc()
            Thread.sleep(50)
        }
    }

    /** Makes, uses and closes every kind of object; returns weak references to them only. */
    private suspend fun useAndClose(): Map<String, WeakReference<Any>> {
        val refs = mutableMapOf<String, WeakReference<Any>>()
        val provider = startSimulatedPlayer(TestServer.config("tv"), "Freed TV")
        refs["provider"] = weak(provider)
        val listener = RecordingListener()
        refs["listener"] = weak(listener)
        val controller = Controller(TestServer.config("phone"), listener)
        refs["controller"] = weak(controller)
        controller.connect()
        val tv = listener.awaitProvider { it.name == "Freed TV" }
        val player = controller.player(tv.jid)
        refs["player"] = weak(player)
        val subscription = controller.subscribeEvents(tv.jid, "player", listOf("state-changed"))
        refs["subscription"] = weak(subscription)
        // A flow collected until it has an event, and one cancelled while it waits.
        coroutineScope {
            val batched = async(start = CoroutineStart.UNDISPATCHED) {
                controller.batchedEvents().filterIsInstance<ServiceEvent.PlayerStateChanged>().first()
            }
            val resyncs = launch(start = CoroutineStart.UNDISPATCHED) { controller.resyncs().first() }
            player.play("file:///movies/freed.mkv")
            withTimeout(10_000) { batched.await() }
            resyncs.cancelAndJoin()
        }
        // Before closing, the counters see everything made above.
        assertEquals(LiveObjects(controllers = 1L, providers = 1L, taskHandles = 1L), liveObjects())
        subscription.close()
        player.close()
        controller.close()

        val remote = RemoteControl(TestServer.config("phone"))
        refs["remote"] = weak(remote)
        refs["remote.controller"] = weak(remote.controller)
        remote.connect()
        val jid = withTimeout(10_000) {
            remote.providersOffering(RemoteControl.PLAYER_FEATURE).first { list -> list.any { it.name == "Freed TV" } }
        }.first { it.name == "Freed TV" }.jid
        val events = remote.subscription(jid, "player")
        refs["remote subscription"] = weak(events)
        coroutineScope {
            val paused = async(start = CoroutineStart.UNDISPATCHED) {
                events.filterIsInstance<ServiceEvent.PlayerStateChanged>().first()
            }
            remote.player(jid).pause()
            assertEquals(PlaybackState.PAUSED, withTimeout(10_000) { paused.await() }.status.state)
        }
        remote.close()
        provider.stop()
        provider.close()
        return refs
    }

    /** Makes the same kinds of objects and drops them without closing anything. */
    private suspend fun useAndDrop(): Map<String, WeakReference<Any>> {
        val refs = mutableMapOf<String, WeakReference<Any>>()
        val provider = startSimulatedPlayer(TestServer.config("tv"), "Dropped TV")
        refs["provider"] = weak(provider)
        val listener = RecordingListener()
        refs["listener"] = weak(listener)
        val controller = Controller(TestServer.config("phone"), listener)
        refs["controller"] = weak(controller)
        controller.connect()
        val tv = listener.awaitProvider { it.name == "Dropped TV" }
        val subscription = controller.subscribeEvents(tv.jid, "player", listOf("state-changed"))
        refs["subscription"] = weak(subscription)
        val idle = Controller(TestServer.config("phone"), RecordingListener())
        refs["never connected controller"] = weak(idle)
        assertEquals(LiveObjects(controllers = 2L, providers = 1L, taskHandles = 1L), liveObjects())
        return refs
    }

    @Test
    fun closedObjectsAreCollectedAndFreedInRust() {
        val refs = runBlocking { useAndClose() }
        assertTrue(refs.isNotEmpty())
        awaitFreed(refs)?.let { kotlin.test.fail(it) }
    }

    @Test
    fun droppedObjectsAreFreedByTheCleaner() {
        val refs = runBlocking { useAndDrop() }
        // Nothing was closed: only the collection of the Kotlin objects can free the Rust side.
        awaitFreed(refs)?.let { kotlin.test.fail(it) }
    }
}

/** A weak reference typed as the map above holds them. */
private fun weak(value: Any): WeakReference<Any> = WeakReference(value)
