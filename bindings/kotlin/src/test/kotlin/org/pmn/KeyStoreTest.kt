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

/** Runs [block], which must fail with a key store error of [kind]: one exception family, `PmnException`. */
fun assertKeyError(kind: KeyErrorKind, block: () -> Unit): PmnException.Key {
    val e = assertThrows<PmnException.Key> { block() }
    assertEquals(kind, e.kind, e.message)
    return e
}

/** An app-supplied store in plain Kotlin: keys in memory, java.security for crypto. */
class MemoryKeyStore : ForeignKeyStore {
    private val keys = ConcurrentHashMap<String, KeyPair>()
    var throwOnSign = false

    override fun generate(alias: String, policy: KeyPolicy): ByteArray {
        if (keys.containsKey(alias)) throw PmnException.Key(KeyErrorKind.ALREADY_EXISTS, alias, "$alias exists")
        val pair = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }.generateKeyPair()
        keys[alias] = pair
        return pair.public.encoded
    }

    override fun publicKey(alias: String): ByteArray =
        (keys[alias] ?: throw PmnException.Key(KeyErrorKind.NOT_FOUND, alias, "no $alias")).public.encoded

    override fun sign(alias: String, message: ByteArray): ByteArray {
        if (throwOnSign) throw IllegalStateException("token unplugged")
        val pair = keys[alias] ?: throw PmnException.Key(KeyErrorKind.NOT_FOUND, alias, "no $alias")
        return Signature.getInstance("SHA256withECDSA").run {
            initSign(pair.private)
            update(message)
            sign()
        }
    }

    override fun delete(alias: String) {
        keys.remove(alias) ?: throw PmnException.Key(KeyErrorKind.NOT_FOUND, alias, "no $alias")
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
            assertKeyError(KeyErrorKind.ALREADY_EXISTS) { store.generate("tls", KeyPolicy.TlsIdentity) }
            // The desktop store cannot enforce user presence and says so instead of ignoring it.
            assertKeyError(KeyErrorKind.UNSUPPORTED) { store.generate("owner", KeyPolicy.OwnerApproval(true)) }

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
            assertKeyError(KeyErrorKind.NOT_FOUND) { store.sign("tls", message) }
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
            val missing = assertKeyError(KeyErrorKind.NOT_FOUND) { store.sign("ghost", message) }
            assertEquals("ghost", missing.alias)
            assertEquals("no key with alias `ghost`", missing.message)
            assertKeyError(KeyErrorKind.INVALID_ALIAS) { store.generate("../escape", KeyPolicy.TlsIdentity) }
            assertKeyError(KeyErrorKind.UNSUPPORTED) { store.generate("owner", KeyPolicy.OwnerApproval(true)) }
        }
        // A key file others can read is refused (fresh store = first load of the file).
        val keyFile = keys.resolve("tls.p8")
        Files.setPosixFilePermissions(
            keyFile,
            setOf(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OTHERS_READ),
        )
        DeviceKeyStore.software(keys.toString()).use { store ->
            val insecure = assertKeyError(KeyErrorKind.INSECURE_PERMISSIONS) { store.sign("tls", byteArrayOf(1)) }
            assertTrue(insecure.alias!!.endsWith("tls.p8"), insecure.alias)
            assertTrue(insecure.detail.contains("permissions 604"), insecure.detail)
        }
        // A corrupted key file is Corrupt, not a crash.
        Files.write(keyFile, byteArrayOf(0x30, 0x03, 0x02, 0x01, 0x00))
        Files.setPosixFilePermissions(keyFile, setOf(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE))
        DeviceKeyStore.software(keys.toString()).use { store ->
            assertKeyError(KeyErrorKind.CORRUPT) { store.sign("tls", byteArrayOf(1)) }
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
            // A PmnException.Key thrown in Kotlin comes back with its kind; anything else becomes PLATFORM.
            assertKeyError(KeyErrorKind.NOT_FOUND) { store.publicKey("ghost") }
            assertKeyError(KeyErrorKind.ALREADY_EXISTS) { store.generate("tls", KeyPolicy.TlsIdentity) }
            memory.throwOnSign = true
            assertKeyError(KeyErrorKind.PLATFORM) { store.sign("tls", message) }
            // Rust validates aliases before the app sees them.
            assertKeyError(KeyErrorKind.INVALID_ALIAS) { store.delete("Not Valid") }
            store.delete("tls")
            assertEquals(emptyList(), store.list())
        }
    }
}
