package org.pmn.sample

import android.app.Application
import org.pmn.LogLevel
import org.pmn.Pmn

/** Initialises pmn once per process, before any activity uses it. */
class SampleApp : Application() {
    override fun onCreate() {
        super.onCreate()
        Pmn.initAndroid(this)
        Pmn.logToLogcat(LogLevel.INFO)
    }
}
