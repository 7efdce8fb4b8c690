package org.pmn.packaged

import java.io.File
import java.nio.file.Files
import kotlin.system.exitProcess
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.pmn.LiveObjects
import org.pmn.PmnPlatform
import org.pmn.ServiceEvent
import org.pmn.PlaybackState
import org.pmn.liveObjects

/**
 * Runs the README's newcomer flow (its ```kotlin blocks `Household.ownerPhone()` and
 * `Household.guestPhone()`, generated into Snippets.kt) through the packaged library only — no
 * jna.library.path, no source directory of the checkout — against the test server, and checks
 * what it showed. Arguments: SERVER(host:port) CA_PEM_FILE NETWORK PASSWORD GUEST_NETWORK
 * GUEST_PASSWORD.
 */
fun main(args: Array<String>) {
    if (args.size != 6) {
        System.err.println("usage: Main SERVER CA_PEM NETWORK PASSWORD GUEST_NETWORK GUEST_PASSWORD")
        exitProcess(2)
    }
    val (server, ca, network, password, guestNetwork) = args
    val guestPassword = args[5]
    // The README's phone uses the platform key store: on a desktop JVM a PKCS12 file.
    val keystore = Files.createTempDirectory("pmn-readme-keystore").resolve("keys.p12")
    System.setProperty("pmn.keystore.file", keystore.toString())
    // The one platform init (Android: Pmn.initAndroid(context), which calls this). From the jar,
    // it finds the native library JNA extracted.
    PmnPlatform.init(null)
    val started = System.nanoTime()
    runBlocking {
        withTimeout(60_000) {
            Household(server, File(ca).readText(), network, password, guestNetwork, guestPassword).use { home ->
                home.startTheTv()
                home.connectTheGuest()
                // The guest asks once the phone has paired: an owner device is online by then to
                // hear the request (it keeps it until the README's flow reads it).
                val guest = launch {
                    while (home.devicesTheTvTrusts() == 0) delay(50)
                    home.guestPhone()
                }
                home.ownerPhone()
                guest.join()
                check(home.shown.size == 3) { "the README's flow showed ${home.shown}" }
                val (playing, paused, code) = home.shown
                check(playing is ServiceEvent.PlayerStateChanged && playing.status.state == PlaybackState.PLAYING) {
                    "first event: $playing"
                }
                check(paused is ServiceEvent.PlayerStateChanged && paused.status.state == PlaybackState.PAUSED) {
                    "second event: $paused"
                }
                check(code is String && code.length == 6) { "confirmation code: $code" }
                check(home.compared == listOf(code)) { "the guest compared ${home.compared}, the owner showed $code" }
                home.stopTheTv()
            }
        }
    }
    // The suite's budget for this stage: what the flow itself takes, JVM and Maven aside.
    println("packaged sample: the README's flow took ${(System.nanoTime() - started) / 1_000_000} ms")
    File(keystore.parent.toString()).deleteRecursively()
    val live = liveObjects()
    check(live == LiveObjects(controllers = 0L, providers = 0L, taskHandles = 0L)) { "left alive: $live" }
    println("packaged sample: the README's flow ran (pair, play, events, guest approved and revoked); $live")
}
