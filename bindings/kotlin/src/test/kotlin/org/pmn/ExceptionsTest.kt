package org.pmn

import java.nio.file.Path
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import kotlin.test.assertEquals
import kotlin.test.assertIs

/**
 * Issue 14: one exception family whose message reads as a sentence, and records that print their
 * name. No server needed.
 */
class ExceptionsTest {
    @Test
    fun keyStoreFailuresArePmnExceptionsWithTheirDetailAsMessage(@TempDir dir: Path) {
        DeviceKeyStore.software(dir.toString()).use { store ->
            // `catch (e: PmnException)` is all an app writes: key store failures are in the family.
            val e: PmnException = assertThrows<PmnException> { store.sign("ghost", byteArrayOf(1)) }
            val key = assertIs<PmnException.Key>(e)
            assertEquals(KeyErrorKind.NOT_FOUND, key.kind)
            assertEquals("no key with alias `ghost`", e.message)
            assertEquals(key.detail, e.message)
        }
    }

    @Test
    fun theMessageIsTheDetailNotAFieldList() {
        // Neither e2e nor plainTransport: refused before anything starts.
        val config = ConnectionConfig(network = "home@home.test", password = "x", device = "phone")
        val e = assertThrows<PmnException.Config> { Controller(config, RecordingListener()) }
        assertEquals(e.detail, e.message)
        assert(!e.message.startsWith("detail=")) { e.message }
        // Variants with more fields (outcome, code) too.
        assertEquals("late", PmnException.Timeout("late", CallOutcome.UNKNOWN).message)
        assertEquals("busy", PmnException.Fault(409, "busy").message)
    }

    @Test
    fun variantsWithoutFieldsPrintTheirName() {
        assertEquals("Paired", TrustSource.Paired.toString())
        assertEquals("Idle", ConnectionState.Idle.toString())
        assertEquals("Connecting", ConnectionState.Connecting.toString())
    }

    @Test
    fun numbersAreSignedAndOutOfRangeIsAConfigError() {
        // Long and Int, never ULong/UInt/UByte, at the generated surface: these lines compile.
        val config: ConnectionConfig = TestServer.config("x").copy(rpcTimeoutMs = 5_000L, callRetries = 1)
        assertEquals(5_000L, config.rpcTimeoutMs)
        val negative = TestServer.config("x").copy(keepaliveMs = -1L)
        val e = assertThrows<PmnException.Config> { Controller(negative, RecordingListener()) }
        assert(e.message.contains("keepaliveMs")) { e.message }
    }
}
