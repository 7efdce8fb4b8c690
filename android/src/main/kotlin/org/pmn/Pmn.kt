package org.pmn

import android.content.Context
import android.util.Log

/**
 * The Android entry point of pmn. Call [initAndroid] once, before any other pmn call — in
 * `Application.onCreate()`:
 *
 * ```kotlin
 * class App : Application() {
 *     override fun onCreate() {
 *         super.onCreate()
 *         Pmn.initAndroid(this)
 *         Pmn.logToLogcat(LogLevel.INFO)
 *     }
 * }
 * ```
 *
 * Without it, connecting fails with `PmnException.Config` ("call Pmn.initAndroid(context) …")
 * instead of the "rustls-platform-verifier not initialized" panic other libraries hit.
 */
object Pmn {
    /**
     * Gives pmn the JavaVM (for the Android Keystore) and the application context (for
     * rustls-platform-verifier, which checks the XMPP server's certificate against the system trust
     * store). Idempotent. Throws a RuntimeException if the native init fails.
     */
    @JvmStatic
    fun initAndroid(context: Context) = PmnPlatform.init(context.applicationContext ?: context)

    /** Sends pmn's logs at [level] and above to Logcat under [tag]. */
    @JvmStatic
    @JvmOverloads
    fun logToLogcat(level: LogLevel = LogLevel.INFO, tag: String = "pmn") = setLogSink(LogcatSink(tag), level)
}

/** A [LogSink] writing to Logcat: one line per record, `target: message`, at the record's priority. */
class LogcatSink(private val tag: String = "pmn") : LogSink {
    override fun log(level: LogLevel, target: String, message: String) {
        val priority = when (level) {
            LogLevel.ERROR -> Log.ERROR
            LogLevel.WARN -> Log.WARN
            LogLevel.INFO -> Log.INFO
            LogLevel.DEBUG -> Log.DEBUG
            LogLevel.TRACE -> Log.VERBOSE
        }
        Log.println(priority, tag, "$target: $message")
    }
}
