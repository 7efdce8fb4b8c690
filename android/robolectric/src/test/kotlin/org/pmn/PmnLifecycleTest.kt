package org.pmn

import android.app.Activity
import android.app.Application
import android.content.Context
import android.net.ConnectivityManager
import android.net.NetworkCapabilities
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import org.robolectric.Robolectric
import org.robolectric.RobolectricTestRunner
import org.robolectric.RuntimeEnvironment
import org.robolectric.Shadows.shadowOf
import org.robolectric.annotation.Config
import org.robolectric.shadows.ShadowNetwork
import org.robolectric.shadows.ShadowNetworkCapabilities

/**
 * android/src/main/kotlin/org/pmn/PmnLifecycle.kt against the framework's own ConnectivityManager
 * and activity lifecycle (Robolectric plays the OS): default-network changes become
 * `networkChanged()`, the first activity started and the last one stopped become
 * `setForeground(true/false)`, and `close()` unregisters both.
 */
@RunWith(RobolectricTestRunner::class)
@Config(sdk = [34])
class PmnLifecycleTest {
    @Test
    fun networkAndActivityCallbacksBecomeNetworkChangedAndSetForeground() {
        val app: Application = RuntimeEnvironment.getApplication()
        val connectivity = app.getSystemService(Context.CONNECTIVITY_SERVICE) as ConnectivityManager
        val changes = LinkedBlockingQueue<Unit>()
        val foreground = LinkedBlockingQueue<Boolean>()
        val lifecycle = PmnLifecycle(app, { changes.add(Unit) }, { foreground.add(it) })

        val net = shadowOf(connectivity).networkCallbacks.single()
        val (wifi, mobile) = ShadowNetwork.newInstance(1) to ShadowNetwork.newInstance(2)
        val validated = ShadowNetworkCapabilities.newInstance().also {
            shadowOf(it).addCapability(NetworkCapabilities.NET_CAPABILITY_VALIDATED)
        }
        net.onAvailable(wifi) // the network at start: no change
        assertNull(changes.poll(200, TimeUnit.MILLISECONDS))
        net.onAvailable(mobile) // Wi-Fi → mobile
        assertEquals(Unit, changes.poll(2, TimeUnit.SECONDS))
        net.onCapabilitiesChanged(mobile, validated)
        assertEquals(Unit, changes.poll(2, TimeUnit.SECONDS))
        net.onCapabilitiesChanged(wifi, validated)
        assertNull("not the default network", changes.poll(200, TimeUnit.MILLISECONDS))
        net.onLost(mobile)
        assertEquals(Unit, changes.poll(2, TimeUnit.SECONDS))

        // Real activities through their lifecycle: the framework dispatches to the application's
        // registered callbacks, as on a phone.
        val main = Robolectric.buildActivity(Activity::class.java).setup()
        val settings = Robolectric.buildActivity(Activity::class.java).setup()
        main.pause().stop()
        assertEquals(true, foreground.poll())
        assertNull("one activity still started", foreground.poll())
        settings.pause().stop()
        assertEquals(false, foreground.poll())

        lifecycle.close()
        assertTrue(shadowOf(connectivity).networkCallbacks.isEmpty())
        Robolectric.buildActivity(Activity::class.java).setup() // no callback any more
        assertNull(foreground.poll())
    }

    /**
     * `forController` wires a real generated Controller (through JNA into libpmn, inside
     * Robolectric's sandbox): network changes and activity starts/stops reach Rust without an
     * error before `connect` (both are documented as doing nothing then), and `close` unregisters.
     */
    @Test
    fun forControllerDrivesARealControllerBeforeConnect() {
        val app: Application = RuntimeEnvironment.getApplication()
        val connectivity = app.getSystemService(Context.CONNECTIVITY_SERVICE) as ConnectivityManager
        val config = ConnectionConfig(
            network = "home@home.test",
            password = "unused",
            device = "robolectric",
            server = "127.0.0.1:1",
            plainTransport = true,
        )
        RemoteControl(config).use { remote ->
            PmnLifecycle.forController(app, remote.controller).use {
                val net = shadowOf(connectivity).networkCallbacks.single()
                net.onAvailable(ShadowNetwork.newInstance(1))
                net.onAvailable(ShadowNetwork.newInstance(2)) // a change: networkChanged() in Rust
                Robolectric.buildActivity(Activity::class.java).setup().pause().stop() // setForeground(true, false)
            }
            assertTrue(shadowOf(connectivity).networkCallbacks.isEmpty())
        }
    }
}
