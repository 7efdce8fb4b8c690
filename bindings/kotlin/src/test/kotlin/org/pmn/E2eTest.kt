package org.pmn

import java.nio.file.Path
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import kotlin.test.assertEquals
import kotlin.test.assertIs
import kotlin.test.assertTrue
import kotlin.test.fail

/** Records what a pairing reports. */
class RecordingPairingListener : PairingListener {
    val codes = LinkedBlockingQueue<String>()
    val results = LinkedBlockingQueue<PairingResult>()

    override fun onPairingCode(provider: String, code: String) {
        codes.add(code)
    }

    override fun onPairingResult(result: PairingResult) {
        results.add(result)
    }

    fun awaitResult(): PairingResult = results.poll(10, TimeUnit.SECONDS) ?: fail("no pairing result")
}

/** The TV's pairing screen. */
class RecordingTvScreen : ProviderPairingListener {
    val paired = LinkedBlockingQueue<TrustedDevice>()
    val failed = LinkedBlockingQueue<PmnException>()

    override fun onPaired(peer: String, device: TrustedDevice) {
        paired.add(device)
    }

    override fun onPairingFailed(peer: String, error: PmnException) {
        failed.add(error)
    }
}

/**
 * The end-to-end tunnel from Kotlin (the Rust twin is tests/ffi_e2e.rs): the TV shows a code, the
 * phone types it, then control and events travel through the tunnel; a wrong code and a revoked key
 * are typed exceptions.
 */
class E2eTest {
    @BeforeEach
    fun needsServer() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
    }

    private fun options(store: DeviceKeyStore, dir: Path) =
        E2eOptions(keyStore = store, trustFile = dir.resolve("trust.json").toString())

    @Test
    fun pairsWithTheShownCodeThenControlsThroughTheTunnel(
        @TempDir tvDir: Path,
        @TempDir phoneDir: Path,
    ): Unit = runBlocking {
        val tvKeys = DeviceKeyStore.software(tvDir.resolve("keys").toString())
        val phoneKeys = DeviceKeyStore.software(phoneDir.resolve("keys").toString())
        val tvConfig = TestServer.config("tv").copy(e2e = options(tvKeys, tvDir), plainTransport = false)
        val provider = startSimulatedPlayer(tvConfig, "Kotlin tunnel TV")
        assertTrue(provider.trust().trustedDevices().isEmpty())
        val listener = RecordingListener()
        val phoneConfig = TestServer.config("phone").copy(e2e = options(phoneKeys, phoneDir), plainTransport = false)
        Controller(phoneConfig, listener).use { controller ->
            controller.connect()
            val tv = listener.awaitProvider { it.name == "Kotlin tunnel TV" }

            // Not paired: the tunnel is required and the keys are unknown, so the call is refused,
            // and the TV's app hears of the refused tunnel.
            val alerts = LinkedBlockingQueue<PmnException>()
            val alerting = provider.trust().watchTunnelFailures(object : TunnelFailureListener {
                override fun onTunnelFailure(peer: String, error: PmnException) {
                    alerts.add(error)
                }
            })
            val refused = assertThrows<PmnException> { runBlocking { controller.player(tv.jid).status() } }
            assertTrue(refused is PmnException.Forbidden || refused is PmnException.Tls, "$refused")
            assertIs<PmnException.Forbidden>(alerts.poll(10, TimeUnit.SECONDS))
            alerting.close()

            // The TV shows a code; a wrong one is a typed error and pins nothing.
            val screen = RecordingTvScreen()
            val watch = provider.trust().watchPairing(screen)
            val code = provider.trust().startPairing()
            assertEquals(6, code.length)
            val pairing = RecordingPairingListener()
            val wrong = if (code == "000000") "111111" else "000000"
            assertThrows<PmnException.Forbidden> {
                runBlocking { controller.trust().pair(tv.jid, wrong, pairing) }
            }
            val failed = assertIs<PairingResult.Failed>(pairing.awaitResult())
            assertIs<PmnException.Forbidden>(failed.error)
            assertTrue(controller.trust().trustedDevices().isEmpty())

            // The right code pins both keys.
            val device = controller.trust().pair(tv.jid, code, pairing)
            assertEquals(listOf(wrong, code), pairing.codes.toList())
            val paired = assertIs<PairingResult.Paired>(pairing.awaitResult())
            assertEquals(device, paired.device)
            assertEquals(tv.jid, paired.provider)
            assertEquals(provider.trust().deviceFingerprint(), device.fingerprint)
            assertEquals(TrustSource.Paired, device.source)
            assertEquals(listOf(device), controller.trust().trustedDevices())
            val phoneOnTv = provider.trust().trustedDevices().single()
            assertEquals(controller.trust().deviceFingerprint(), phoneOnTv.fingerprint)
            // The TV's screen heard both: the wrong code, then the phone it now trusts.
            assertIs<PmnException.Forbidden>(screen.failed.poll(10, TimeUnit.SECONDS))
            assertEquals(phoneOnTv, screen.paired.poll(10, TimeUnit.SECONDS))
            watch.close()

            // Control and events through the tunnel.
            controller.subscribeEvents(tv.jid, "player", listOf("state-changed")).use {
                assertEquals(PlaybackState.PLAYING, controller.player(tv.jid).play("file:///movies/e2e.mkv").state)
                assertEquals(PlaybackState.PAUSED, controller.player(tv.jid).pause().state)
                val first = assertIs<ServiceEvent.PlayerStateChanged>(listener.awaitEvent())
                assertEquals(tv.jid, first.provider)
                assertEquals(PlaybackState.PLAYING, first.status.state)
                val second = assertIs<ServiceEvent.PlayerStateChanged>(listener.awaitEvent())
                assertEquals(PlaybackState.PAUSED, second.status.state)
            }

            // The phone stops trusting the TV: the next call is refused.
            val network = tv.jid.substringBefore('/')
            assertTrue(runBlocking { controller.trust().revokeDevice(network, device.fingerprint) })
            assertTrue(controller.trust().trustedDevices().isEmpty())
            val afterRevoke = assertThrows<PmnException> { runBlocking { controller.player(tv.jid).status() } }
            assertTrue(
                afterRevoke is PmnException.Forbidden || afterRevoke is PmnException.Tls,
                "$afterRevoke",
            )
            // Bad input to revoke is a config error.
            assertThrows<PmnException.Config> { runBlocking { controller.trust().revokeDevice(network, "not hex") } }
        }
        provider.stop()
        provider.close()
        tvKeys.close()
        phoneKeys.close()
        assertEquals(LiveObjects(controllers = 0L, providers = 0L, taskHandles = 0L), liveObjects())
    }

    /** Hears the network password change. */
    class RecordingPassword : NetworkPasswordListener {
        val changes = LinkedBlockingQueue<String>()

        override fun onNetworkPasswordChanged(password: String) {
            changes.add(password)
        }
    }

    @Test
    fun revokingAStolenDeviceAndRotatingThePasswordLocksItOut(
        @TempDir tvDir: Path,
        @TempDir phoneDir: Path,
        @TempDir thiefDir: Path,
    ): Unit = runBlocking {
        val network = TestServer.rotateNetwork
        assumeTrue(network != null, "needs -Dpmn.rotate.network (cargo xtask test registers it)")
        network!!
        val old = TestServer.rotatePassword
        fun device(name: String, dir: Path, keys: DeviceKeyStore) = TestServer.config(name, old, network)
            .copy(e2e = options(keys, dir), plainTransport = false)
        val tvKeys = DeviceKeyStore.software(tvDir.resolve("keys").toString())
        val phoneKeys = DeviceKeyStore.software(phoneDir.resolve("keys").toString())
        val thiefKeys = DeviceKeyStore.software(thiefDir.resolve("keys").toString())
        val provider = startSimulatedPlayer(device("tv", tvDir, tvKeys), "Rotating TV")
        val tvHears = RecordingPassword()
        val tvWatch = provider.trust().watchNetworkPassword(tvHears)
        val listener = RecordingListener()
        val thiefListener = RecordingListener()
        Controller(device("phone", phoneDir, phoneKeys), listener).use { phone ->
            Controller(device("thief", thiefDir, thiefKeys), thiefListener).use { thief ->
                phone.connect()
                thief.connect()
                val tv = listener.awaitProvider { it.name == "Rotating TV" }
                phone.trust().pair(tv.jid, provider.trust().startPairing(), RecordingPairingListener())
                assertTrue(phone.trust().trustedDevices().isNotEmpty())

                // The thief's device is revoked, then the password rotated from the phone.
                phone.trust().revokeDevice(network, thief.trust().deviceFingerprint())
                val phoneHears = RecordingPassword()
                phone.trust().watchNetworkPassword(phoneHears).use {
                    val rotation = phone.trust().rotateNetworkPassword()
                    assertTrue(rotation.password != old && rotation.password.isNotEmpty())
                    assertEquals(listOf(tv.jid), rotation.delivered)
                    val missed = rotation.missed.single()
                    assertTrue(missed.device.contains("/thief-"), missed.device)
                    assertIs<PmnException.Forbidden>(missed.error)
                    assertEquals(rotation.password, phoneHears.changes.poll(10, TimeUnit.SECONDS))
                    // The TV learns it (it logs in with it after the server closed its session).
                    assertEquals(rotation.password, tvHears.changes.poll(20, TimeUnit.SECONDS))
                }
                // The phone reaches the TV again once it is back.
                var status: PlayerStatus? = null
                val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
                while (status == null && System.nanoTime() < deadline) {
                    status = runCatching { phone.player(tv.jid).status() }.getOrNull()
                    if (status == null) Thread.sleep(200)
                }
                assertTrue(status != null, "the TV is reachable after the rotation")
                // The thief is out: its session ends and the old password is refused.
                val deadlineOut = System.nanoTime() + TimeUnit.SECONDS.toNanos(20)
                while (System.nanoTime() < deadlineOut &&
                    thiefListener.states.none { it is ConnectionState.Offline }
                ) {
                    Thread.sleep(100)
                }
                val offline = thiefListener.states.filterIsInstance<ConnectionState.Offline>()
                assertTrue(offline.isNotEmpty(), "the thief's session ended: ${thiefListener.states}")
                assertIs<PmnException.Auth>(offline.first().error, "the old password is refused")
            }
        }
        tvWatch.close()
        provider.stop()
        provider.close()
        listOf(tvKeys, phoneKeys, thiefKeys).forEach { it.close() }
    }

    @Test
    fun theTunnelIsTheDefaultAndPlainMustBeAskedFor(@TempDir dir: Path): Unit = runBlocking {
        val neither = TestServer.config("x").copy(plainTransport = false)
        assertThrows<PmnException.Config> { Controller(neither, RecordingListener()) }
        assertThrows<PmnException.Config> { runBlocking { startSimulatedPlayer(neither, "nope") } }
        val keys = DeviceKeyStore.software(dir.resolve("keys").toString())
        val both = TestServer.config("x").copy(e2e = options(keys, dir))
        assertThrows<PmnException.Config> { Controller(both, RecordingListener()) }
        keys.close()
    }

    @Test
    fun withoutTheTunnelPairingIsAConfigError(): Unit = runBlocking {
        val provider = startSimulatedPlayer(TestServer.config("tv"), "Kotlin plain TV")
        assertThrows<PmnException.Config> { provider.trust().startPairing() }
        assertThrows<PmnException.Config> { provider.trust().trustedDevices() }
        provider.stop()
        provider.close()
    }
}
