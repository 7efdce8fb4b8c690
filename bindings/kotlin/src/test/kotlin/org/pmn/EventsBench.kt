package org.pmn

import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.atomic.AtomicLong
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/**
 * Issue 16 goal 6, "events into Kotlin": what one event costs to reach Kotlin, as a ratio to one
 * no-op Kotlin→Rust call measured in the same JVM and run. Runs only through
 * `cargo xtask bench kotlin` (`-Dpmn.bench=true`, a fresh Prosody, the release libpmn).
 *
 * - crossing: the controller's own delivery code (a pmn runtime thread, the listener gate, the
 *   core event converted) calls a `ControllerListener` per event, or an `EventBatchListener` per
 *   batch, with no network in between (`benchDeliverEvents`, test builds only);
 * - flow: the same deliveries into RemoteControl's flow bridge (per event) or the
 *   `batchedEvents` adapter (per batch), until a collector has taken every event;
 * - end to end: a real provider's `volume-changed` events through Prosody, each caused by a
 *   `setVolume` call (many in flight), into a listener, a RemoteControl subscription and
 *   `batchedEvents`. Bound by the network, not the crossing: it says how much of a real event's
 *   cost the crossing is.
 */
class EventsBench {
    private val bench = System.getProperty("pmn.bench") == "true"
    private val provider = "home@home.test/tv-bench"

    /** The JVM's CPU time, all threads (pmn's included: they run in this process). */
    private val os = java.lang.management.ManagementFactory.getOperatingSystemMXBean()
        as com.sun.management.OperatingSystemMXBean

    /**
     * Wall and CPU nanoseconds per operation of [runs] timed runs of [ops] operations, after
     * [warmups] untimed ones. CPU time is the process's (every thread: pmn's, the collectors',
     * the GC's), which a busy shared machine inflates far less than wall time.
     */
    private inline fun measure(name: String, runs: Int, warmups: Int, ops: Int, body: () -> Unit): Figure {
        repeat(warmups) { body() }
        val wall = ArrayList<Double>()
        val cpu = ArrayList<Double>()
        repeat(runs) {
            val cpu0 = os.processCpuTime
            val start = System.nanoTime()
            body()
            wall.add((System.nanoTime() - start).toDouble() / ops)
            cpu.add((os.processCpuTime - cpu0).toDouble() / ops)
        }
        return Figure(name, wall, cpu)
    }

    private class Figure(val name: String, val wall: List<Double>, val cpu: List<Double>)

    private fun List<Double>.median() = sorted().let { (it[(it.size - 1) / 2] + it[it.size / 2]) / 2 }

    private fun report(figures: List<Figure>, baseline: Figure) {
        println(
            "events-bench: ns per call or event, medians of ${baseline.wall.size} runs (min..max); " +
                "ratio = median / no-op median; CPU = the JVM process's, all threads",
        )
        for (f in figures) {
            println(
                "events-bench: %-40s wall %9.1f (%.1f..%.1f) %6.2fx | CPU %9.1f (%.1f..%.1f) %6.2fx no-op".format(
                    f.name, f.wall.median(), f.wall.min(), f.wall.max(), f.wall.median() / baseline.wall.median(),
                    f.cpu.median(), f.cpu.min(), f.cpu.max(), f.cpu.median() / baseline.cpu.median(),
                ),
            )
        }
    }

    /** Consumes each event as an app would read it (so the JIT cannot drop the work). */
    private class CountingListener : ControllerListener {
        val events = AtomicInteger()
        val lastAt = AtomicLong()
        val checksum = AtomicLong()
        override fun onProviderOnline(provider: ProviderInfo) {}
        override fun onProviderOffline(jid: String) {}
        override fun onEvent(event: ServiceEvent) = count(event)
        override fun onConnectionState(state: ConnectionState) {}

        fun count(event: ServiceEvent) {
            if (event is ServiceEvent.PlayerStateChanged) checksum.addAndGet(event.status.positionMs)
            lastAt.set(System.nanoTime())
            events.incrementAndGet()
        }
    }

    private class CountingBatchListener : EventBatchListener {
        val inner = CountingListener()
        override fun onEvents(events: List<ServiceEvent>) = events.forEach(inner::count)
    }

    /** The isolated crossing: deliveries from Rust with no network, into listeners and flows. */
    @Test
    fun crossingIntoKotlin() {
        assumeTrue(bench, "a benchmark: run by `cargo xtask bench kotlin` (-Dpmn.bench=true)")
        val runs = 7
        val warmups = 3
        val calls = 50_000
        val events = 5_000
        val batch = DEFAULT_EVENT_BATCH

        // More warm-up for the baseline: it is the cheapest loop, and the JIT is still settling early.
        val noop = measure("no-op call Kotlin->Rust", runs, 10, calls) { repeat(calls) { benchNoop() } }

        val listener = CountingListener()
        val perEvent = measure("listener: onEvent per event", runs, warmups, events) {
            runBlocking { benchDeliverEvents(listener, provider, events) }
        }
        assertEquals((runs + warmups) * events, listener.events.get())

        val batchListener = CountingBatchListener()
        val perBatch = measure("listener: onEvents, batches of $batch", runs, warmups, events) {
            runBlocking { benchDeliverEventBatches(batchListener, provider, events, batch) }
        }
        assertEquals((runs + warmups) * events, batchListener.inner.events.get())

        // RemoteControl's bridge with one subscription's sink, large enough that none is dropped.
        val bridge = FlowBridge(events)
        val flowPerEvent = measure("flow: RemoteControl bridge, per event", runs, warmups, events) {
            runBlocking {
                val sink = EventSink(provider, "player", events, bridge.dropped)
                bridge.sinks.add(sink)
                val collected = AtomicInteger()
                val collector = launch(Dispatchers.Default) {
                    for (e in sink.channel) if (collected.incrementAndGet() == events) break
                }
                benchDeliverEvents(bridge, provider, events)
                collector.join()
                bridge.sinks.remove(sink)
                assertEquals(events, collected.get())
            }
        }
        assertEquals(0L, bridge.dropped.get())

        val flowPerBatch = measure("flow: batchedEvents, batches of $batch", runs, warmups, events) {
            runBlocking {
                val flow: Flow<ServiceEvent> = callbackFlow {
                    val sender = batchSender()
                    launch { benchDeliverEventBatches(sender, provider, events, batch) }
                    awaitClose {}
                }.buffer(Channel.UNLIMITED)
                var collected = 0
                launch(Dispatchers.Default) { flow.take(events).collect { collected++ } }.join()
                assertEquals(events, collected)
            }
        }

        // The baseline again: the machine is shared, so a drift during the run shows here.
        val noopAfter = measure("no-op call Kotlin->Rust (again, last)", runs, 1, calls) { repeat(calls) { benchNoop() } }
        report(listOf(noop, perEvent, perBatch, flowPerEvent, flowPerBatch, noopAfter), noop)
        println(
            ("events-bench: one crossing per event costs %.2fx a no-op call in CPU, %.2fx in wall time " +
                "(threshold 2x; against the last no-op: %.2fx, %.2fx); in batches of %d: %.2fx, %.2fx").format(
                perEvent.cpu.median() / noop.cpu.median(), perEvent.wall.median() / noop.wall.median(),
                perEvent.cpu.median() / noopAfter.cpu.median(), perEvent.wall.median() / noopAfter.wall.median(), batch,
                perBatch.cpu.median() / noop.cpu.median(), perBatch.wall.median() / noop.wall.median(),
            ),
        )
    }

    /** The real path: a provider's events through Prosody. */
    @Test
    fun realEventsThroughProsody(): Unit = runBlocking {
        assumeTrue(bench, "a benchmark: run by `cargo xtask bench kotlin` (-Dpmn.bench=true)")
        assumeTrue(TestServer.server != null, "needs -Dpmn.server")
        val runs = 5
        val calls = 1_000
        val inFlight = 50
        val tv = startSimulatedPlayer(TestServer.config("tv"), "Bench TV")
        val noop = measure("no-op call Kotlin->Rust", 7, 3, 50_000) { repeat(50_000) { benchNoop() } }

        /** Sets the volume [calls] times, [inFlight] at a time, alternating 30/31 within each wave. */
        suspend fun drive(player: Player) = coroutineScope {
            for (wave in 0 until calls / inFlight) {
                (0 until inFlight).map { i -> async { player.setVolume(30 + i % 2) } }.awaitAll()
            }
        }

        /**
         * Wall and CPU ns per event received, from the first call to the last event (events
         * counted by [count]); CPU is this JVM's, which holds the provider too.
         */
        suspend fun timed(player: Player, count: () -> Int, lastAt: () -> Long): Pair<Double, Double> {
            val before = count()
            val cpu0 = os.processCpuTime
            val start = System.nanoTime()
            drive(player)
            // Calls made in the same instant may land in any order, so not every call changes the
            // volume: wait until the events stop coming.
            var seen = count()
            do {
                delay(200)
                val now = count()
                val quiet = now == seen
                seen = now
            } while (!quiet)
            val cpu = os.processCpuTime - cpu0
            val received = seen - before
            assertTrue(received > calls / 4, "only $received events for $calls calls")
            return (lastAt() - start).toDouble() / received to cpu.toDouble() / received
        }

        /** [runs] timed runs after one untimed. */
        suspend fun figure(name: String, run: suspend () -> Pair<Double, Double>): Figure {
            run()
            val results = List(runs) { run() }
            return Figure(name, results.map { it.first }, results.map { it.second })
        }

        val listener = CountingListener()
        val viaListener = Controller(TestServer.config("phone"), listener).use { controller ->
            controller.connect()
            val jid = withTimeout(10_000) {
                while (controller.providers().none { it.name == "Bench TV" }) delay(20)
                controller.providers().first { it.name == "Bench TV" }.jid
            }
            val player = controller.player(jid)
            val perEvent = controller.subscribeEvents(jid, "player", listOf("volume-changed")).use {
                figure("end to end: onEvent per event") { timed(player, listener.events::get, listener.lastAt::get) }
            }
            val batches = CountingBatchListener()
            val perBatch = controller.subscribeEvents(jid, "player", listOf("volume-changed")).use {
                controller.watchEventBatches(batches, DEFAULT_EVENT_BATCH).use {
                    val before = listener.events.get()
                    val figure = figure("end to end: onEvents batches") {
                        timed(player, batches.inner.events::get, batches.inner.lastAt::get)
                    }
                    // The batches replaced onEvent while they were watched.
                    assertEquals(before, listener.events.get())
                    figure
                }
            }
            listOf(perEvent, perBatch)
        }

        val viaFlow = RemoteControl(TestServer.config("phone"), eventBuffer = calls * 2).use { remote ->
            remote.connect()
            val jid = withTimeout(10_000) {
                while (remote.providers().none { it.name == "Bench TV" }) delay(20)
                remote.providers().first { it.name == "Bench TV" }.jid
            }
            val player = remote.player(jid)
            val counted = CountingListener()
            remote.subscription(jid, "player").use { subscription ->
                val collector = launch(Dispatchers.Default) { subscription.collect { counted.count(it) } }
                val figure = figure("end to end: RemoteControl subscription flow") {
                    timed(player, counted.events::get, counted.lastAt::get)
                }
                subscription.close()
                collector.join()
                assertEquals(0L, remote.droppedEvents)
                figure
            }
        }
        tv.stop()
        tv.close()
        report(listOf(noop) + viaListener + viaFlow, noop)
    }
}
