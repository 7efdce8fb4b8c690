// Minimal stand-ins for the android.* classes that android/src/main/kotlin uses, so that code is
// compiled (and Pmn.initAndroid exercised) on the desktop JVM. Test classpath only; never shipped.
@file:Suppress("unused")

package android.content

/** Stub of android.content.Context: only what pmn's Android shim touches. */
open class Context {
    open val applicationContext: Context? get() = this

    open fun getSystemService(name: String): Any? = null

    companion object {
        const val CONNECTIVITY_SERVICE = "connectivity"
    }
}
