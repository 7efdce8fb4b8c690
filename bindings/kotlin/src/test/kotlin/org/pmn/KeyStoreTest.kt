package org.pmn

import java.io.ByteArrayInputStream
import java.io.FileInputStream
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.attribute.PosixFilePermission
import java.security.KeyFactory
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.KeyStore
import java.security.Signature
import java.security.cert.CertificateFactory
import java.security.cert.X509Certificate
import java.security.spec.ECGenParameterSpec
import java.security.spec.X509EncodedKeySpec
import java.util.concurrent.ConcurrentHashMap
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.io.TempDir
import kotlin.test.assertContentEquals
import kotlin.test.assertEquals
import kotlin.test.assertTrue

/** Verifies a DER ECDSA P-256/SHA-256 signature with java.security against an SPKI: an independent verifier. */
fun verifies(spki: ByteArray, message: ByteArray, signature: ByteArray): Boolean {
    val key = KeyFactory.getInstance("EC").generatePublic(X509EncodedKeySpec(spki))
    return Signature.getInstance("SHA256withECDSA").run {
        initVerify(key)
        update(message)
        verify(signature)
    }
}

/** An app-supplied store in plain Kotlin: keys in memory, java.security for crypto. */
class MemoryKeyStore : ForeignKeyStore {
    private val keys = ConcurrentHashMap<String, KeyPair>()
    var throwOnSign = false

    override fun generate(alias: String, policy: KeyPolicy): ByteArray {
        if (keys.containsKey(alias)) throw KeyException.AlreadyExists(alias)
        val pair = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair()
        keys[alias] = pair
        return pair.public.encoded
    }

    override fun publicKey(alias: String): ByteArray =
        (keys[alias] ?: throw KeyException.NotFound(alias)).public.encoded

    override fun sign(alias: String, message: ByteArray): ByteArray {
        if (throwOnSign) throw IllegalStateException("token unplugged")
        val pair = keys[alias] ?: throw KeyException.NotFound(alias)
        return Signature.getInstance("SHA256withECDSA").run {
            initSign(pair.private)
            update(message)
            sign()
        }
    }

    override fun delete(alias: String) {
        keys.remove(alias) ?: throw KeyException.NotFound(alias)
    }

    override fun list(): List<String> = keys.keys().toList().sorted()
}

class KeyStoreTest {
    companion object {
        @JvmStatic
        @BeforeAll
        fun initPlatform() {
            // Desktop JVM: no Context. Records the JavaVM for the Rust JNI key store.
            PmnPlatform.init(null)
        }
    }

    @Test
    fun `JVM platform store generates and signs through the Rust JNI code and java security verifies`(@TempDir dir: Path) {
        val file = dir.resolve("device-keys.p12")
        System.setProperty("pmn.keystore.file", file.toString())
        DeviceKeyStore.platform().use { store ->
            assertEquals("jvm-pkcs12", store.backend())
            val spki = store.generate("tls", KeyPolicy.TlsIdentity)
            assertContentEquals(spki, store.publicKey("tls"))
            val message = "CertificateVerify transcript".toByteArray()
            assertTrue(verifies(spki, message, store.sign("tls", message)))
            assertEquals(listOf("tls"), store.list())
            assertEquals(32, store.fingerprint("tls").size)
            assertThrows<KeyException.AlreadyExists> { store.generate("tls", KeyPolicy.TlsIdentity) }
            // The desktop store cannot enforce user presence and says so instead of ignoring it.
            assertThrows<KeyException.Unsupported> { store.generate("owner", KeyPolicy.OwnerApproval(true)) }

            // The key really lives in a PKCS12 java.security.KeyStore file, private to the user,
            // with the rcgen certificate that the Java private key signed.
            assertEquals(
                setOf(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE),
                Files.getPosixFilePermissions(file),
            )
            val p12 = KeyStore.getInstance("PKCS12")
            FileInputStream(file.toFile()).use { p12.load(it, "pmn-desktop-jvm".toCharArray()) }
            assertTrue(p12.isKeyEntry("pmn.tls"))
            val cert = p12.getCertificate("pmn.tls") as X509Certificate
            cert.verify(cert.publicKey)
            assertContentEquals(spki, cert.publicKey.encoded)

            // A second store instance (an app restart) finds the same key.
            DeviceKeyStore.platform().use { again ->
                assertContentEquals(spki, again.publicKey("tls"))
                assertTrue(verifies(spki, message, again.sign("tls", message)))
            }

            store.delete("tls")
            assertThrows<KeyException.NotFound> { store.sign("tls", message) }
            assertEquals(emptyList(), store.list())
        }
    }

    @Test
    fun `device certificate parses in java security and carries the store key`(@TempDir dir: Path) {
        DeviceKeyStore.software(dir.toString()).use { store ->
            val spki = store.generate("tls", KeyPolicy.TlsIdentity)
            val der = store.deviceCertificate("tls", "living-room-tv")
            val cert = CertificateFactory.getInstance("X.509")
                .generateCertificate(ByteArrayInputStream(der)) as X509Certificate
            cert.verify(cert.publicKey)
            assertContentEquals(spki, cert.publicKey.encoded)
            assertTrue(cert.subjectX500Principal.name.contains("living-room-tv"))
        }
    }

    @Test
    fun `software store round trip and typed errors`(@TempDir dir: Path) {
        val keys = dir.resolve("keys")
        DeviceKeyStore.software(keys.toString()).use { store ->
            assertEquals("software", store.backend())
            val spki = store.generate("tls", KeyPolicy.TlsIdentity)
            val message = ByteArray(1000) { it.toByte() }
            assertTrue(verifies(spki, message, store.sign("tls", message)))
            val missing = assertThrows<KeyException.NotFound> { store.sign("ghost", message) }
            assertEquals("ghost", missing.alias)
            assertThrows<KeyException.InvalidAlias> { store.generate("../escape", KeyPolicy.TlsIdentity) }
            assertThrows<KeyException.Unsupported> { store.generate("owner", KeyPolicy.OwnerApproval(true)) }
        }
        // A key file others can read is refused (fresh store = first load of the file).
        val keyFile = keys.resolve("tls.p8")
        Files.setPosixFilePermissions(
            keyFile,
            setOf(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OTHERS_READ),
        )
        DeviceKeyStore.software(keys.toString()).use { store ->
            val insecure = assertThrows<KeyException.InsecurePermissions> { store.sign("tls", byteArrayOf(1)) }
            assertEquals(0b110_000_100u, insecure.mode)
        }
        // A corrupted key file is Corrupt, not a crash.
        Files.write(keyFile, byteArrayOf(0x30, 0x03, 0x02, 0x01, 0x00))
        Files.setPosixFilePermissions(keyFile, setOf(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE))
        DeviceKeyStore.software(keys.toString()).use { store ->
            assertThrows<KeyException.Corrupt> { store.sign("tls", byteArrayOf(1)) }
        }
    }

    @Test
    fun `foreign store implemented in Kotlin is driven by Rust`() {
        val memory = MemoryKeyStore()
        DeviceKeyStore.foreign(memory).use { store ->
            assertEquals("foreign", store.backend())
            val spki = store.generate("tls", KeyPolicy.TlsIdentity)
            val message = "grant".toByteArray()
            assertTrue(verifies(spki, message, store.sign("tls", message)))
            assertEquals(listOf("tls"), store.list())
            // Rust builds the certificate; Kotlin's key signs it through the callback.
            val cert = CertificateFactory.getInstance("X.509")
                .generateCertificate(ByteArrayInputStream(store.deviceCertificate("tls", "phone"))) as X509Certificate
            cert.verify(cert.publicKey)
            // A KeyException thrown in Kotlin comes back typed; anything else becomes Platform.
            assertThrows<KeyException.NotFound> { store.publicKey("ghost") }
            assertThrows<KeyException.AlreadyExists> { store.generate("tls", KeyPolicy.TlsIdentity) }
            memory.throwOnSign = true
            assertThrows<KeyException.Platform> { store.sign("tls", message) }
            // Rust validates aliases before the app sees them.
            assertThrows<KeyException.InvalidAlias> { store.delete("Not Valid") }
            store.delete("tls")
            assertEquals(emptyList(), store.list())
        }
    }
}
