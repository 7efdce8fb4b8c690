@file:Suppress("unused")

package android.util

/** Stub of android.util.Log (test classpath only): records instead of writing to Logcat. */
object Log {
    const val VERBOSE = 2
    const val DEBUG = 3
    const val INFO = 4
    const val WARN = 5
    const val ERROR = 6

    /** What was "logged", for tests. */
    val lines = java.util.concurrent.LinkedBlockingQueue<Triple<Int, String, String>>()

    @JvmStatic
    fun println(priority: Int, tag: String, msg: String): Int {
        lines.add(Triple(priority, tag, msg))
        return msg.length
    }
}
