package org.pmn

import java.util.concurrent.CountDownLatch
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import kotlin.test.assertTrue
import kotlin.test.fail

/** The foreign-trait log sink from Kotlin: delivery, run-time level, a throwing and a stuck sink. */
class LogSinkTest {
    data class Line(val level: LogLevel, val target: String, val message: String)

    class Recording : LogSink {
        val lines = LinkedBlockingQueue<Line>()
        override fun log(level: LogLevel, target: String, message: String) {
            lines.add(Line(level, target, message))
        }

        fun await(match: (Line) -> Boolean): Line {
            val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10)
            while (System.nanoTime() < deadline) {
                val line = lines.poll(100, TimeUnit.MILLISECONDS) ?: continue
                if (match(line)) return line
            }
            fail("no matching log line")
        }
    }

    @BeforeEach
    fun needsServer() = assumeTrue(TestServer.server != null, "needs -Dpmn.server")

    @AfterEach
    fun stdoutAgain() = PmnLog.toStdout(LogLevel.INFO)

    private suspend fun connectOnce() {
        Controller(TestServer.config("log-phone"), RecordingListener()).use { withTimeout(15_000) { it.connect() } }
    }

    @Test
    fun recordsArriveWithLevelAndTargetAndTheLevelChangesAtRunTime(): Unit = runBlocking {
        val sink = Recording()
        setLogSink(sink, LogLevel.DEBUG)
        connectOnce()
        val debug = sink.await { it.level == LogLevel.DEBUG && it.target.startsWith("pmn::") }
        assertTrue(debug.message.isNotEmpty())
        sink.await { it.level == LogLevel.INFO && it.message.startsWith("online") }

        setLogLevel(LogLevel.WARN)
        Thread.sleep(200) // let records of the first connection drain
        sink.lines.clear()
        connectOnce()
        Thread.sleep(500)
        val verbose = sink.lines.filter { it.level > LogLevel.WARN && it.target.startsWith("pmn") }
        assertTrue(verbose.isEmpty(), "at WARN got $verbose")
    }

    @Test
    fun aThrowingSinkDoesNotHurtTheLibrary(): Unit = runBlocking {
        val before = logStats().failed
        setLogSink(object : LogSink {
            override fun log(level: LogLevel, target: String, message: String) =
                throw IllegalStateException("the app's logger is broken")
        }, LogLevel.DEBUG)
        connectOnce() // works although every record throws
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5)
        while (logStats().failed == before && System.nanoTime() < deadline) Thread.sleep(20)
        assertTrue(logStats().failed > before, "${logStats()}")
    }

    @Test
    fun aStuckSinkNeverBlocksTheLibrary(): Unit = runBlocking {
        val release = CountDownLatch(1)
        setLogSink(object : LogSink {
            override fun log(level: LogLevel, target: String, message: String) {
                release.await() // an app logger that hangs
            }
        }, LogLevel.TRACE)
        try {
            // Several connections' worth of trace logging, all while the sink is stuck.
            repeat(3) { connectOnce() }
        } finally {
            release.countDown()
        }
    }
}
