package org.pmn

import android.app.Activity
import android.app.Application
import android.net.Network
import android.net.NetworkCapabilities
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import kotlin.test.assertEquals
import kotlin.test.assertNull
import kotlin.test.assertTrue

/**
 * android/src/main/kotlin/org/pmn/PmnLifecycle.kt on the JVM, with the test playing the OS
 * (android.* stubs): default-network changes become networkChanged(), the first activity started
 * and the last one stopped become setForeground(true/false), and close() unregisters both.
 */
class AndroidLifecycleTest {
    @Test
    fun networkAndLifecycleCallbacksBecomeNetworkChangedAndSetForeground() {
        val app = Application()
        val changes = LinkedBlockingQueue<Unit>()
        val foreground = LinkedBlockingQueue<Boolean>()
        val lifecycle = PmnLifecycle(app, { changes.add(Unit) }, { foreground.add(it) })
        val net = app.connectivity.callbacks.single()
        val (wifi, mobile) = Network(1) to Network(2)

        net.onAvailable(wifi) // the network at start: no change
        assertNull(changes.poll(200, TimeUnit.MILLISECONDS))
        net.onAvailable(mobile) // Wi-Fi → mobile
        assertEquals(Unit, changes.poll(2, TimeUnit.SECONDS))
        net.onCapabilitiesChanged(mobile, NetworkCapabilities(setOf(NetworkCapabilities.NET_CAPABILITY_VALIDATED)))
        assertEquals(Unit, changes.poll(2, TimeUnit.SECONDS))
        net.onCapabilitiesChanged(wifi, NetworkCapabilities(setOf(NetworkCapabilities.NET_CAPABILITY_VALIDATED)))
        assertNull(changes.poll(200, TimeUnit.MILLISECONDS), "not the default network")
        net.onLost(mobile)
        assertEquals(Unit, changes.poll(2, TimeUnit.SECONDS))

        val activities = app.lifecycleCallbacks.single()
        val (main, settings) = Activity() to Activity()
        activities.onActivityStarted(main)
        activities.onActivityStarted(settings)
        activities.onActivityStopped(main)
        activities.onActivityStopped(settings)
        assertEquals(listOf(true, false), listOf(foreground.poll(), foreground.poll()))
        assertNull(foreground.poll())

        lifecycle.close()
        assertTrue(app.connectivity.callbacks.isEmpty())
        assertTrue(app.lifecycleCallbacks.isEmpty())
    }

    @Test
    fun forControllerDrivesARealController(): Unit = runBlocking {
        if (TestServer.server == null) return@runBlocking
        val provider = startSimulatedPlayer(TestServer.config("lifecycle-tv"), "Lifecycle TV")
        val listener = RecordingListener()
        Controller(TestServer.config("lifecycle-phone"), listener).use { controller ->
            controller.connect()
            val tv = listener.awaitProvider { it.name == "Lifecycle TV" }
            val app = Application()
            PmnLifecycle.forController(app, controller).use {
                val net = app.connectivity.callbacks.single()
                net.onAvailable(Network(1))
                net.onAvailable(Network(2)) // networkChanged(): the probe finds the link alive
                app.lifecycleCallbacks.single().onActivityStarted(Activity())
                app.lifecycleCallbacks.single().onActivityStopped(Activity()) // background
                // Calls still work in the background, and after the change.
                assertEquals(PlaybackState.PLAYING, controller.player(tv.jid).play("file:///m.mkv").state)
            }
        }
        provider.stop()
        provider.close()
    }
}
