package org.pmn

import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * Runs in its own JVM (surefire reuseForks=false): PmnPlatform.init has never been called here, so
 * the platform store must answer with a typed exception — not crash, not panic.
 */
class KeyStoreBeforeInitTest {
    @Test
    fun `platform store before init is PlatformNotInitialised`() {
        assertThrows<KeyException.PlatformNotInitialised> { DeviceKeyStore.platform() }
    }
}
