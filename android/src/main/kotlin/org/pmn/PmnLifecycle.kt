package org.pmn

import android.app.Activity
import android.app.Application
import android.content.Context
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.os.Bundle
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch

/**
 * Drives pmn like the OS drives the app: a change of the default network (Wi-Fi ↔ mobile, a new
 * address, the link back) calls `networkChanged()` — pmn probes the server at once, resumes the
 * session on a new connection if the old one is dead, and restarts its reconnect backoff — and the
 * app going to the background or coming back calls `setForeground` (XEP-0352 client state, a
 * longer keepalive in the background).
 *
 * ```kotlin
 * class App : Application() {
 *     lateinit var lifecycle: PmnLifecycle
 *     override fun onCreate() {
 *         super.onCreate()
 *         Pmn.initAndroid(this)
 *         lifecycle = PmnLifecycle.forController(this, controller)  // or forProvider(this, provider)
 *     }
 * }
 * ```
 *
 * Needs `android.permission.ACCESS_NETWORK_STATE` (declared in the library's manifest). [close]
 * unregisters both callbacks.
 */
class PmnLifecycle(
    private val application: Application,
    private val onNetworkChanged: suspend () -> Unit,
    private val onForeground: (Boolean) -> Unit,
) : AutoCloseable {
    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.IO)
    private val connectivity = application.getSystemService(Context.CONNECTIVITY_SERVICE) as ConnectivityManager

    /** The default network and its capabilities, as last reported (the first report is no change). */
    private var current: Network? = null
    private var started = 0

    private val networkCallback = object : ConnectivityManager.NetworkCallback() {
        override fun onAvailable(network: Network) {
            val previous = current
            current = network
            if (previous != null && previous != network) changed()
        }

        override fun onLost(network: Network) {
            if (network == current) {
                current = null
                changed()
            }
        }

        override fun onCapabilitiesChanged(network: Network, capabilities: NetworkCapabilities) {
            // Validation regained (a captive portal passed, the link came back): try at once.
            if (network == current && capabilities.hasCapability(NetworkCapabilities.NET_CAPABILITY_VALIDATED)) {
                changed()
            }
        }
    }

    private val activityCallbacks = object : Application.ActivityLifecycleCallbacks {
        override fun onActivityStarted(activity: Activity) {
            if (started++ == 0) onForeground(true)
        }

        override fun onActivityStopped(activity: Activity) {
            if (--started == 0) onForeground(false)
        }

        override fun onActivityCreated(activity: Activity, savedInstanceState: Bundle?) {}
        override fun onActivityResumed(activity: Activity) {}
        override fun onActivityPaused(activity: Activity) {}
        override fun onActivitySaveInstanceState(activity: Activity, outState: Bundle) {}
        override fun onActivityDestroyed(activity: Activity) {}
    }

    init {
        connectivity.registerDefaultNetworkCallback(networkCallback)
        application.registerActivityLifecycleCallbacks(activityCallbacks)
    }

    private fun changed() {
        scope.launch { onNetworkChanged() }
    }

    override fun close() {
        connectivity.unregisterNetworkCallback(networkCallback)
        application.unregisterActivityLifecycleCallbacks(activityCallbacks)
        scope.cancel()
    }

    companion object {
        /** Drives [controller]. */
        @JvmStatic
        fun forController(application: Application, controller: Controller) =
            PmnLifecycle(application, { controller.networkChanged() }, { controller.setForeground(it) })

        /** Drives [provider] (a TV app: it rarely goes to the background, but its network changes). */
        @JvmStatic
        fun forProvider(application: Application, provider: Provider) =
            PmnLifecycle(application, { provider.networkChanged() }, { provider.setForeground(it) })
    }
}
