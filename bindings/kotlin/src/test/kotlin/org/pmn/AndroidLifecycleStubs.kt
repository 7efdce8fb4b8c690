// Stand-ins for the android.* classes PmnLifecycle uses (test classpath only, never shipped): they
// record registrations so a test can play the OS's part.
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.net

/** Stub of android.net.Network: an id. */
data class Network(val id: Int)

/** Stub of android.net.NetworkCapabilities: the capabilities it was made with. */
class NetworkCapabilities(private val caps: Set<Int>) {
    fun hasCapability(capability: Int) = capability in caps

    companion object {
        const val NET_CAPABILITY_VALIDATED = 16
    }
}

/** Stub of android.net.ConnectivityManager: keeps the registered default-network callbacks. */
class ConnectivityManager {
    open class NetworkCallback {
        open fun onAvailable(network: Network) {}
        open fun onLost(network: Network) {}
        open fun onCapabilitiesChanged(network: Network, capabilities: NetworkCapabilities) {}
    }

    val callbacks = mutableListOf<NetworkCallback>()

    fun registerDefaultNetworkCallback(callback: NetworkCallback) {
        callbacks.add(callback)
    }

    fun unregisterNetworkCallback(callback: NetworkCallback) {
        callbacks.remove(callback)
    }
}
