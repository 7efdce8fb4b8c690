//! Tests of what is built on a store: the device certificate and a real TLS 1.3 handshake whose
//! `CertificateVerify` signatures come from the store, checked by SPKI-pinning verifiers.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use rustls::sign::SingleCertAndKey;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Error, ServerConfig, ServerConnection,
    SignatureScheme,
};
use rustls_pki_types::ServerName;

use super::cert::CertParts;
use super::*;
use crate::platform::software::SoftwareKeyStore;

/// A store that counts signatures, to prove the handshake really signed through the store.
struct CountingStore {
    inner: SoftwareKeyStore,
    signatures: AtomicUsize,
}

impl KeyStore for CountingStore {
    fn generate(&self, alias: &str, policy: KeyPolicy) -> Result<Vec<u8>, KeyStoreError> {
        self.inner.generate(alias, policy)
    }
    fn public_key(&self, alias: &str) -> Result<Vec<u8>, KeyStoreError> {
        self.inner.public_key(alias)
    }
    fn sign(&self, alias: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        self.signatures.fetch_add(1, Ordering::SeqCst);
        self.inner.sign(alias, message)
    }
    fn delete(&self, alias: &str) -> Result<(), KeyStoreError> {
        self.inner.delete(alias)
    }
    fn list(&self) -> Result<Vec<String>, KeyStoreError> {
        self.inner.list()
    }
    fn backend(&self) -> &'static str {
        "counting"
    }
}

fn counting_store(dir: &std::path::Path) -> Arc<CountingStore> {
    Arc::new(CountingStore {
        inner: SoftwareKeyStore::open(dir).unwrap(),
        signatures: AtomicUsize::new(0),
    })
}

#[test]
fn device_certificate_parses_and_its_spki_is_the_store_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SoftwareKeyStore::open(dir.path()).unwrap();
    let spki = store.generate("tls", KeyPolicy::TlsIdentity).unwrap();
    let cert = device_certificate(&store, "tls", "living-room-tv").unwrap();

    let parts = CertParts::parse(&cert).unwrap();
    assert_eq!(parts.spki, &spki[..]);
    assert_eq!(certificate_spki(&cert).unwrap(), &spki[..]);
    // The self-signature was made by the store's key: verify it independently with p256.
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
    let sig = p256::ecdsa::Signature::from_der(parts.signature).unwrap();
    key.verify(parts.tbs, &sig).unwrap();
    assert!(cert
        .windows(b"living-room-tv".len())
        .any(|w| w == b"living-room-tv"));
}

#[test]
fn device_certificate_for_a_missing_key_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = SoftwareKeyStore::open(dir.path()).unwrap();
    assert_eq!(
        device_certificate(&store, "nope", "tv").unwrap_err(),
        KeyStoreError::NotFound {
            alias: "nope".into()
        }
    );
}

/// Shuttles TLS records between the two connections in memory until neither is handshaking.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Result<(), Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        server.read_tls(&mut &buf[..]).unwrap();
        server.process_new_packets()?;
        buf.clear();
        server.write_tls(&mut buf).unwrap();
        client.read_tls(&mut &buf[..]).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

fn configs(
    client_id: &DeviceIdentity,
    server_id: &DeviceIdentity,
    client_pins: DeviceFingerprint,
    server_pins: DeviceFingerprint,
) -> (ClientConnection, ServerConnection) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedPeerKey::new(
            client_pins,
            provider.clone(),
        )))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(client_id.certified_key())));
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(PinnedPeerKey::new(server_pins, provider)))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(server_id.certified_key())));
    // No server name is checked (pinning only); rustls still wants one for SNI.
    let client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("pmn.invalid").unwrap(),
    )
    .unwrap();
    let server = ServerConnection::new(Arc::new(server_config)).unwrap();
    (client, server)
}

#[test]
fn tls13_mutual_handshake_signs_through_the_store_and_pins_spki() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (phone_store, tv_store) = (counting_store(dir_a.path()), counting_store(dir_b.path()));
    let phone = DeviceIdentity::load_or_generate(phone_store.clone(), "tls", "phone").unwrap();
    let tv = DeviceIdentity::load_or_generate(tv_store.clone(), "tls", "tv").unwrap();
    let signed_for_certs = (
        phone_store.signatures.load(Ordering::SeqCst),
        tv_store.signatures.load(Ordering::SeqCst),
    );

    // The phone (initiator) is the TLS client and pins the TV; the TV pins the phone.
    let (mut client, mut server) = configs(&phone, &tv, tv.fingerprint(), phone.fingerprint());
    handshake(&mut client, &mut server).unwrap();
    assert_eq!(
        client.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // Each side made exactly one CertificateVerify signature through its store.
    assert_eq!(
        phone_store.signatures.load(Ordering::SeqCst),
        signed_for_certs.0 + 1
    );
    assert_eq!(
        tv_store.signatures.load(Ordering::SeqCst),
        signed_for_certs.1 + 1
    );
    let seen_by_tv = server.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        DeviceFingerprint::from_spki(certificate_spki(&seen_by_tv).unwrap()),
        phone.fingerprint()
    );

    // Application data flows both ways.
    client.writer().write_all(b"player.play").unwrap();
    let mut buf = Vec::new();
    client.write_tls(&mut buf).unwrap();
    server.read_tls(&mut &buf[..]).unwrap();
    server.process_new_packets().unwrap();
    let mut got = [0u8; 11];
    server.reader().read_exact(&mut got).unwrap();
    assert_eq!(&got, b"player.play");
}

#[test]
fn tls13_handshake_with_an_unpinned_peer_fails() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let phone =
        DeviceIdentity::load_or_generate(counting_store(dir_a.path()), "tls", "phone").unwrap();
    let tv = DeviceIdentity::load_or_generate(counting_store(dir_b.path()), "tls", "tv").unwrap();
    // The phone pins some other key: the TV's certificate must be rejected.
    let (mut client, mut server) = configs(
        &phone,
        &tv,
        DeviceFingerprint::from([0u8; 32]),
        phone.fingerprint(),
    );
    let err = handshake(&mut client, &mut server).unwrap_err();
    assert_eq!(
        err,
        Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    );
}

#[test]
fn signing_key_offers_only_p256_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let store = counting_store(dir.path());
    store.generate("tls", KeyPolicy::TlsIdentity).unwrap();
    let key = KeyStoreSigningKey::new(store, "tls").unwrap();
    use rustls::sign::SigningKey;
    assert!(key
        .choose_scheme(&[SignatureScheme::ED25519, SignatureScheme::RSA_PSS_SHA256])
        .is_none());
    let signer = key
        .choose_scheme(&[
            SignatureScheme::ED25519,
            SignatureScheme::ECDSA_NISTP256_SHA256,
        ])
        .unwrap();
    assert_eq!(signer.scheme(), SignatureScheme::ECDSA_NISTP256_SHA256);
    let sig = signer.sign(b"transcript").unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(key.spki()).unwrap();
    vk.verify(
        b"transcript",
        &p256::ecdsa::Signature::from_der(&sig).unwrap(),
    )
    .unwrap();
    assert_eq!(key.public_key().unwrap().as_ref(), key.spki());
}
