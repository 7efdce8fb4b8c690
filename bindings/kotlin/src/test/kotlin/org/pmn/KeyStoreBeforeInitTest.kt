package org.pmn

import org.junit.jupiter.api.Test
import kotlin.test.assertEquals

/**
 * Runs in its own JVM (surefire reuseForks=false): PmnPlatform.init has never been called here, so
 * the platform store must answer with a typed exception — not crash, not panic.
 */
class KeyStoreBeforeInitTest {
    @Test
    fun `platform store before init is PlatformNotInitialised`() {
        val e = assertKeyError(KeyErrorKind.PLATFORM_NOT_INITIALISED) { DeviceKeyStore.platform() }
        assertEquals(
            "platform key store not initialised: call PmnPlatform.init (Android: Pmn.initAndroid) first",
            e.message,
        )
    }
}
