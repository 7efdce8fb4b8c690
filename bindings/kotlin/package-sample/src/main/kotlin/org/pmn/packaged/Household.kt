package org.pmn.packaged

import java.io.File
import java.nio.file.Files
import java.util.concurrent.CopyOnWriteArrayList
import org.pmn.DeviceKeyStore
import org.pmn.E2eOptions
import org.pmn.GuestPolicy
import org.pmn.OwnerOptions
import org.pmn.Provider
import org.pmn.RemoteControl
import org.pmn.startSimulatedPlayer

/**
 * What the README's snippets take from "the app", made real on the test server: the household's
 * identifier and password, a TV showing a pairing code, the guest's phone in its own household,
 * a screen ([show]) and a user ([userSaysTheCodesMatch]). The snippets are extension functions
 * of this class (generated into Snippets.kt by `cargo xtask` from the README), so every name they
 * use without defining it is a member here — and nothing else is.
 */
class Household(
    /** `host:port` of the test server. */
    private val server: String,
    /** The test server's CA (PEM). */
    private val caPem: String,
    /** Julia's network identifier: the README's `"home@example.org"`. */
    val household: String,
    /** Its password. */
    val secret: String,
    /** Romeo's network, the guest's household. */
    private val guestNetwork: String,
    /** Its password. */
    private val guestSecret: String,
) : AutoCloseable {
    /** Where the phone keeps its files (Android's `Context.filesDir`). */
    val filesDir: String = Files.createTempDirectory("pmn-readme-phone").toString()
    private val tvDir = Files.createTempDirectory("pmn-readme-tv").toString()
    private val guestDir = Files.createTempDirectory("pmn-readme-guest").toString()

    /** What the snippets put on the screen, in order. */
    val shown = CopyOnWriteArrayList<Any?>()

    /** The codes the guest's user was asked to compare. */
    val compared = CopyOnWriteArrayList<String>()

    /** The app's screen. */
    fun show(value: Any?) {
        println("readme: shown $value")
        shown.add(value)
    }

    /** The guest's user compares the code on both phones; here they always match. */
    fun userSaysTheCodesMatch(code: String): Boolean {
        compared.add(code)
        return true
    }

    /**
     * The README's `ConnectionConfig(…)`, with the same fields, pointed at the test server (its
     * address and CA; an app's network is found through DNS and trusted through the platform).
     * A member, so inside the snippets it is found before the generated constructor.
     */
    @Suppress("FunctionName")
    fun ConnectionConfig(
        network: String,
        password: String,
        device: String,
        e2e: E2eOptions? = null,
        owner: OwnerOptions? = null,
        guests: GuestPolicy? = null,
    ) = org.pmn.ConnectionConfig(
        network = network,
        password = password,
        device = device,
        server = server,
        testCaPem = caPem,
        e2e = e2e,
        owner = owner,
        guests = guests,
    )

    private val tvKeys = DeviceKeyStore.software("$tvDir/keys")
    private val guestKeys = DeviceKeyStore.software("$guestDir/keys")
    private var tv: Provider? = null

    /** The code the TV shows (valid for a few minutes from [startTheTv]). */
    lateinit var codeTheTvShows: String
        private set

    /** The guest's phone, connected to its own household. */
    lateinit var guestController: RemoteControl
        private set

    /** Julia's TV: a simulated player that takes guests, with the tunnel, showing a code. */
    suspend fun startTheTv() {
        val config = ConnectionConfig(
            network = household,
            password = secret,
            device = "tv",
            e2e = E2eOptions(keyStore = tvKeys, trustFile = "$tvDir/trust.json"),
            guests = GuestPolicy(aclFile = "$tvDir/acl.json"),
        )
        val provider = startSimulatedPlayer(config, "Living room TV")
        tv = provider
        codeTheTvShows = provider.trust().startPairing()
    }

    /** Romeo's phone, online in his household, ready to ask. */
    suspend fun connectTheGuest() {
        val config = org.pmn.ConnectionConfig(
            network = guestNetwork,
            password = guestSecret,
            device = "romeo-phone",
            server = server,
            testCaPem = caPem,
            e2e = E2eOptions(keyStore = guestKeys, trustFile = "$guestDir/trust.json"),
        )
        guestController = RemoteControl(config).also { it.connect() }
    }

    /** The TV's count of devices it trusts (the phone, once paired). */
    suspend fun devicesTheTvTrusts(): Int = tv?.trust()?.trustedDevices()?.size ?: 0

    /** Stops the TV (its session ends; [close] then frees it). */
    suspend fun stopTheTv() {
        tv?.stop()
    }

    override fun close() {
        if (::guestController.isInitialized) guestController.close()
        tv?.close()
        tvKeys.close()
        guestKeys.close()
        listOf(filesDir, tvDir, guestDir).forEach { File(it).deleteRecursively() }
    }
}
