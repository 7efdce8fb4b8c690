package org.pmn.packaged

import java.io.File
import kotlin.system.exitProcess
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.pmn.ConnectionConfig
import org.pmn.ConnectionState
import org.pmn.PmnPlatform
import org.pmn.RemoteControl
import org.pmn.liveObjects

/**
 * Logs in as a phone of the test household through the packaged library (no jna.library.path:
 * the native library comes out of the jar), waits to be online, and closes.
 * Arguments: SERVER(host:port) CA_PEM_FILE NETWORK PASSWORD.
 */
fun main(args: Array<String>) {
    if (args.size != 4) {
        System.err.println("usage: Main SERVER CA_PEM NETWORK PASSWORD")
        exitProcess(2)
    }
    val (server, ca, network, password) = args
    // The one platform init (Android: Pmn.initAndroid(context), which calls this). From the jar,
    // it finds the native library JNA extracted.
    PmnPlatform.init(null)
    val config = ConnectionConfig(
        network = network,
        password = password,
        device = "packaged-sample-${ProcessHandle.current().pid()}",
        server = server,
        testCaPem = File(ca).readText(),
        plainTransport = true,
    )
    runBlocking {
        RemoteControl(config).use { remote ->
            remote.connect()
            val online = withTimeout(10_000) { remote.connection.first { it is ConnectionState.Online } }
            println("packaged sample: $online")
        }
    }
    println("packaged sample: live objects after close: ${liveObjects()}")
}
