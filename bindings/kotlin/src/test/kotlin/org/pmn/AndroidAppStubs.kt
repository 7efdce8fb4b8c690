// Stand-ins for android.app / android.os classes PmnLifecycle uses (test classpath only).
@file:Suppress("unused", "UNUSED_PARAMETER")

package android.app

import android.content.Context
import android.net.ConnectivityManager
import android.os.Bundle

/** Stub of android.app.Activity. */
open class Activity : Context()

/** Stub of android.app.Application: one ConnectivityManager and the lifecycle callbacks. */
open class Application : Context() {
    interface ActivityLifecycleCallbacks {
        fun onActivityCreated(activity: Activity, savedInstanceState: Bundle?)
        fun onActivityStarted(activity: Activity)
        fun onActivityResumed(activity: Activity)
        fun onActivityPaused(activity: Activity)
        fun onActivityStopped(activity: Activity)
        fun onActivitySaveInstanceState(activity: Activity, outState: Bundle)
        fun onActivityDestroyed(activity: Activity)
    }

    val connectivity = ConnectivityManager()
    val lifecycleCallbacks = mutableListOf<ActivityLifecycleCallbacks>()

    override fun getSystemService(name: String): Any? =
        if (name == CONNECTIVITY_SERVICE) connectivity else null

    fun registerActivityLifecycleCallbacks(callback: ActivityLifecycleCallbacks) {
        lifecycleCallbacks.add(callback)
    }

    fun unregisterActivityLifecycleCallbacks(callback: ActivityLifecycleCallbacks) {
        lifecycleCallbacks.remove(callback)
    }
}
