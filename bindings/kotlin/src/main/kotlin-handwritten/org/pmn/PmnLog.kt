package org.pmn

import java.io.PrintStream

/**
 * pmn's logs on a JVM: `PmnLog.toStdout(LogLevel.DEBUG)` prints them; [setLogLevel] changes the
 * level at run time. On Android use `Pmn.logToLogcat()`, on iOS `PMNLog.toOSLog()`.
 *
 * Delivery never blocks pmn: records go through a bounded queue to one thread of pmn's that calls
 * the sink; when the sink falls behind, records are dropped and counted ([logStats]).
 */
object PmnLog {
    /** Prints pmn's logs at [level] and above to `System.out`, replacing any previous sink. */
    fun toStdout(level: LogLevel = LogLevel.INFO) = setLogSink(PrintStreamLogSink(System.out), level)
}

/** A [LogSink] that prints one line per record: `pmn INFO pmn::core::session: online jid=…`. */
class PrintStreamLogSink(private val out: PrintStream) : LogSink {
    override fun log(level: LogLevel, target: String, message: String) {
        out.println("pmn ${level.name} $target: $message")
    }
}
