package org.pmn

import java.nio.file.Path
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeEach
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlin.test.fail

/**
 * Spec §3.3 from Kotlin, with two households on the test Prosody: Romeo (`home@friend.test`) asks
 * Julia's network (`home@home.test`) for access; Julia's phone approves `playback` for two hours;
 * Romeo plays on her TV, is refused the recorder; Julia lists the grant, reads the audit log and
 * revokes; Romeo's next call is refused. (The Rust twin with more cases is tests/guest.rs.)
 */
class GuestAccessTest {
    @BeforeEach
    fun needsServer() {
        assumeTrue(TestServer.server != null, "run through `cargo xtask test` (needs -Dpmn.server)")
    }

    private fun e2e(store: DeviceKeyStore, dir: Path) =
        E2eOptions(keyStore = store, trustFile = dir.resolve("trust.json").toString())

    @Test
    fun romeoAsksJuliaApprovesPlaybackRomeoPlaysThenJuliaRevokes(
        @TempDir tvDir: Path,
        @TempDir juliaDir: Path,
        @TempDir romeoDir: Path,
    ): Unit = runBlocking {
        val tvKeys = DeviceKeyStore.software(tvDir.resolve("keys").toString())
        val juliaKeys = DeviceKeyStore.software(juliaDir.resolve("keys").toString())
        val romeoKeys = DeviceKeyStore.software(romeoDir.resolve("keys").toString())

        // Julia's TV takes guests; its ACL is a file, so grants survive a restart.
        val tvConfig = TestServer.config("tv").copy(
            e2e = e2e(tvKeys, tvDir),
            plainTransport = false,
            // Julia lets guests play https streams; nothing from the TV's own disk or network.
            guests = GuestPolicy(
                aclFile = tvDir.resolve("acl.json").toString(),
                guestMediaSchemes = listOf("https"),
            ),
        )
        val tv = startDemoProvider(tvConfig, "Julia's TV", 10)
        // Julia's phone is an owner device: its owner-approval key signs grants.
        val juliaConfig = TestServer.config("julia").copy(
            e2e = e2e(juliaKeys, juliaDir),
            plainTransport = false,
            owner = OwnerOptions(keyStore = juliaKeys),
        )
        val julia = RemoteControl(juliaConfig)
        julia.connect()
        val tvInfo = withTimeout(10_000) {
            julia.onlineProviders.first { online -> online.any { it.name == "Julia's TV" } }
        }.first { it.name == "Julia's TV" }
        julia.trust().pair(tvInfo.jid, tv.trust().startPairing(), RecordingPairingListener())

        // Collected before Romeo asks or after: the pending requests come first.
        val requests = async { julia.owner().accessRequests().first() }

        // Romeo's phone, in his own household.
        val romeoConfig = TestServer.config("romeo").copy(
            network = "home@friend.test",
            password = "friend-secret",
            e2e = e2e(romeoKeys, romeoDir),
            plainTransport = false,
        )
        val romeoListener = RecordingListener()
        val romeo = Controller(romeoConfig, romeoListener)
        romeo.connect()
        val asking = async(Dispatchers.IO) {
            romeo.guest().requestAccess("home@home.test", listOf("playback"), "film night", 30_000L)
        }

        // Julia's phone shows who asks, from which device, for what.
        val request = withTimeout(10_000) { requests.await() }
        assertEquals("home@friend.test", request.guestNetwork)
        assertEquals(romeo.trust().deviceFingerprint(), request.deviceFingerprint)
        assertEquals(listOf("playback"), request.scopes)
        assertEquals("film night", request.reason)
        val twoHours = System.currentTimeMillis() / 1000 + 2 * 3600
        val approval = julia.owner().approveAccess(request.id, listOf("playback"), twoHours)
        assertEquals(listOf(tvInfo.jid), approval.installedOn)
        assertEquals(listOf("playback"), approval.grant.scopes)

        // Julia's phone is the household's owner (its key came first); the TV lists it.
        val owners = julia.owner().ownerKeys()
        assertEquals(1, owners.size)
        assertEquals(julia.trust().deviceFingerprint(), owners.single().device)
        assertEquals(julia.owner().ownerPublicKey(), owners.single().publicKey)

        val approved = asking.await()
        // Both phones show the same six digits; Romeo confirms, and only then is the TV trusted.
        assertEquals(6, approved.confirmationCode.length)
        assertEquals(approval.confirmationCode, approved.confirmationCode)
        assertThrows<PmnException.Forbidden> { romeo.guest().confirmAccess("home@elsewhere.test") }
        val access = romeo.guest().confirmAccess("home@home.test")
        assertEquals("home@home.test", access.network)
        assertEquals(approval.grant.id, access.grantId)
        assertEquals(listOf(tv.trust().deviceFingerprint()), access.devices)

        // Julia's phone follows the TV's audit log as a flow from now on.
        val playAudited = async {
            julia.auditRecords(tvInfo.jid).first { it.kind == "use" && it.method == "player.play" }
        }

        // Romeo discovers the TV (mutual presence) and plays through the tunnel.
        romeoListener.awaitProvider { it.jid == tvInfo.jid }
        assertThrows<PmnException.Forbidden> { runBlocking { romeo.player(tvInfo.jid).play("file:///etc/passwd") } }
        assertEquals(PlaybackState.PLAYING, romeo.player(tvInfo.jid).play("https://romeo.example/film.mkv").state)
        assertEquals(PlaybackState.PAUSED, romeo.player(tvInfo.jid).pause().state)
        // The recorder and the library are outside `playback`: the TV refuses them.
        assertThrows<PmnException.Forbidden> { runBlocking { romeo.recorder(tvInfo.jid).channels() } }
        assertThrows<PmnException.Forbidden> { runBlocking { romeo.library(tvInfo.jid).browse("videos", 0, 10) } }

        // Julia lists the grant and reads the TV's audit log.
        val grant = julia.owner().accessGrants().single { it.id == approval.grant.id }
        assertTrue(grant.active)
        assertEquals("home@friend.test", grant.guest)
        assertEquals(romeo.trust().deviceFingerprint(), grant.deviceFingerprint)
        assertEquals("player.play", withTimeout(10_000) { playAudited.await() }.method)
        val audit = julia.owner().accessAudit(tvInfo.jid, 0L)
        assertTrue(audit.any { it.kind == "use" && it.method == "player.play" }, "$audit")
        assertTrue(audit.any { it.kind == "deny" && it.method == "recorder.channels" }, "$audit")

        // Julia revokes: the TV refuses Romeo at once (a call racing the tunnel's close may see
        // the tunnel end instead; none succeeds).
        assertEquals(listOf(tvInfo.jid), julia.owner().revokeGrant(approval.grant.id))
        runCatching { romeo.player(tvInfo.jid).status() }.onSuccess { fail("a revoked guest was served: $it") }
        assertThrows<PmnException.Forbidden> { runBlocking { romeo.player(tvInfo.jid).status() } }
        assertTrue(julia.owner().accessGrants().none { it.id == approval.grant.id && it.active })

        // Bad input from the app is a typed error.
        assertThrows<PmnException.Config> {
            runBlocking { julia.owner().approveAccess(request.id, listOf("root"), twoHours) }
        }
        assertThrows<PmnException.BadParams> { runBlocking { julia.owner().denyAccess(999_999L) } }

        romeo.disconnect()
        romeo.close()
        julia.disconnect()
        julia.close()
        tv.stop()
        tv.close()
        listOf(tvKeys, juliaKeys, romeoKeys).forEach { it.close() }
    }
}
