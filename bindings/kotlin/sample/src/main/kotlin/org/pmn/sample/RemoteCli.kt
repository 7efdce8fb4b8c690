package org.pmn.sample

import java.io.BufferedReader
import java.io.File
import java.io.PrintStream
import kotlin.system.exitProcess
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withContext
import kotlinx.coroutines.withTimeoutOrNull
import kotlinx.coroutines.flow.first
import org.pmn.ConnectionConfig
import org.pmn.DeviceKeyStore
import org.pmn.E2eOptions
import org.pmn.PairingListener
import org.pmn.PairingResult
import org.pmn.LogLevel
import org.pmn.PlayerStatus
import org.pmn.PmnException
import org.pmn.PmnLog
import org.pmn.ProviderInfo
import org.pmn.RemoteControl
import org.pmn.ServiceEvent

/**
 * An interactive remote on the command line: the calls an Android activity makes, on a desktop JVM.
 *
 * ```
 * pmn-remote --network home@example.org --password … [--device cli] [--server host:port] [--ca ca.pem]
 *            [--state DIR | --plain true] [--log debug]
 * > list                      players online, numbered
 * > pair 1 123456             pair with player 1, which shows that code (once per player)
 * > play 1 file:///a.mkv      play on player 1
 * > pause 1 | resume 1 | stop 1 | status 1
 * > watch 1 | unwatch 1       print player 1's events while watched
 * > wait Living room TV       wait (10 s) until a player of that name is online
 * > quit
 * ```
 */
fun main(args: Array<String>) {
    val opts = args.toList().chunked(2).associate { (k, v) -> k.removePrefix("--") to v }
    val network = opts["network"]
    val password = opts["password"]
    if (network == null || password == null) {
        System.err.println("usage: pmn-remote --network NAME@DOMAIN --password PW [--device D] [--server H:P] [--ca PEM] [--state DIR | --plain true] [--log LEVEL]")
        exitProcess(2)
    }
    opts["log"]?.let { PmnLog.toStdout(LogLevel.valueOf(it.uppercase())) }
    // The end-to-end tunnel by default: this remote's key and pinned players live in --state.
    val plain = opts["plain"] == "true"
    val state = File(opts["state"] ?: "${System.getProperty("user.home")}/.local/share/pmn-remote")
    val config = ConnectionConfig(
        network = network,
        password = password,
        device = opts["device"] ?: "cli-remote",
        server = opts["server"],
        testCaPem = opts["ca"]?.let { File(it).readText() },
        e2e = if (plain) null else E2eOptions(
            keyStore = DeviceKeyStore.software(state.resolve("keys").path),
            trustFile = state.resolve("trust.json").path,
        ),
        plainTransport = plain,
    )
    runBlocking {
        RemoteControl(config).use { remote ->
            try {
                remote.connect()
            } catch (e: PmnException) {
                // A wrong password or an unreachable server: say so, without a stack trace.
                System.err.println("cannot connect: ${e::class.simpleName}: ${e.message}")
                exitProcess(1)
            }
            RemoteShell(remote, System.`in`.bufferedReader(), System.out).run()
        }
    }
}

/** The command loop, separate from [main] so tests drive it with scripted input. */
class RemoteShell(
    private val remote: RemoteControl,
    private val input: BufferedReader,
    private val out: PrintStream,
) {
    private val watches = mutableMapOf<String, Job>()

    /** Reads commands until `quit` or end of input; watched subscriptions end with it. */
    suspend fun run() = kotlinx.coroutines.coroutineScope {
        out.println("connected; type 'list' or 'help'")
        while (true) {
            val line = withContext(Dispatchers.IO) { input.readLine() } ?: break
            val words = line.trim().split(Regex("\\s+"), limit = 3)
            if (words.first() == "quit") break
            try {
                command(this, words)
            } catch (e: PmnException) {
                out.println("error: ${e::class.simpleName}: ${e.message}")
            } catch (e: kotlinx.coroutines.CancellationException) {
                throw e
            } catch (e: Exception) {
                // Anything else (a bug, an exception family of its own): one line, and the shell
                // goes on — an interactive remote should never die of one command.
                out.println("error: ${e::class.simpleName}: ${e.message}")
            }
        }
        watches.values.forEach { it.cancel() }
    }

    private suspend fun command(scope: CoroutineScope, words: List<String>) {
        when (words.first()) {
            "", "help" -> out.println("commands: list, pair N CODE, play N URI, pause N, resume N, stop N, status N, watch N, unwatch N, wait NAME, quit")
            "pair" -> {
                val code = words.getOrNull(2) ?: return usage("pair N CODE")
                val device = remote.controller.trust().pair(player(words).jid, code, QuietPairing)
                out.println("paired: key ${device.fingerprint.take(16)}…")
            }
            "list" -> players().forEachIndexed { i, p -> out.println("${i + 1}. ${p.name} (${p.jid})") }
            "play" -> show(remote.player(player(words).jid).play(words.getOrNull(2) ?: return usage("play N URI")))
            "pause" -> show(remote.player(player(words).jid).pause())
            "resume" -> show(remote.player(player(words).jid).resume())
            "stop" -> show(remote.player(player(words).jid).stop())
            "status" -> show(remote.player(player(words).jid).status())
            "watch" -> {
                val p = player(words)
                watches.remove(p.jid)?.cancel()
                watches[p.jid] = scope.launch {
                    // A refused subscription (Forbidden: not paired, or a guest without the scope)
                    // fails in this child coroutine, not in the command: caught here, or it would
                    // cancel the shell's scope and end the remote.
                    try {
                        remote.events(p.jid, "player").collect { out.println("event from ${p.name}: ${describe(it)}") }
                    } catch (e: PmnException) {
                        out.println("error: watch ${p.name}: ${e::class.simpleName}: ${e.message}")
                        watches.remove(p.jid, coroutineContext[Job]) // unless watched anew since
                    }
                }
                out.println("watching ${p.name}")
            }
            "unwatch" -> {
                val p = player(words)
                watches.remove(p.jid)?.cancel()
                out.println("stopped watching ${p.name}")
            }
            "wait" -> {
                val name = words.drop(1).joinToString(" ")
                val found = withTimeoutOrNull(10_000) {
                    remote.providersOffering(RemoteControl.PLAYER_FEATURE).first { list -> list.any { it.name == name } }
                }
                out.println(if (found != null) "online: $name" else "not online: $name")
            }
            else -> out.println("unknown command ${words.first()}; try 'help'")
        }
    }

    private fun players(): List<ProviderInfo> =
        remote.onlineProviders.value.filter { RemoteControl.PLAYER_FEATURE in it.services }

    private fun player(words: List<String>): ProviderInfo {
        val n = words.getOrNull(1)?.toIntOrNull()
        return n?.let { players().getOrNull(it - 1) }
            ?: throw PmnException.Config("no player ${words.getOrNull(1)}; see 'list'")
    }

    private fun usage(text: String) = out.println("usage: $text")

    private fun show(s: PlayerStatus) =
        out.println("${s.state.name.lowercase()} ${s.uri ?: "-"} at ${s.positionMs} ms")

    private fun describe(e: ServiceEvent): String = when (e) {
        is ServiceEvent.PlayerStateChanged -> "${e.status.state.name.lowercase()} ${e.status.uri ?: "-"}"
        else -> e.toString()
    }
}

/** The shell prints the pairing outcome itself, from the call's result. */
private object QuietPairing : PairingListener {
    override fun onPairingCode(provider: String, code: String) {}
    override fun onPairingResult(result: PairingResult) {}
}
