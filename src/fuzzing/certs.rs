//! Certificates, SPKIs and fingerprint text: what the tunnel's TLS handshake, XEP-0189 and the
//! access elements read.

use std::sync::{Arc, OnceLock};

use crate::core::access::DeviceFingerprint;
use crate::core::e2e::xml as e2e_xml;
use crate::core::identity::{
    certificate_spki, p256_point_from_spki, p256_spki_from_point, PinnedPeerKey,
};

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Whether `part` lies inside `whole`.
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

/// A DER certificate as a peer presents it in the tunnel's TLS handshake or publishes it
/// (XEP-0189), and the same bytes as a bare SPKI (an owner key).
pub fn cert(data: &[u8]) {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    if let Ok(spki) = certificate_spki(data) {
        assert!(within(spki, data), "SPKI outside the certificate");
        if let Ok(point) = p256_point_from_spki(spki) {
            assert_eq!(p256_spki_from_point(point).as_deref(), Ok(spki));
        }
    }
    if let Ok(point) = p256_point_from_spki(data) {
        assert_eq!(p256_spki_from_point(point).as_deref(), Ok(data));
    }
    let verifier = PinnedPeerKey::new(DeviceFingerprint::from_spki(data), crypto_provider());
    if let Ok(name) = ServerName::try_from("pmn.invalid") {
        let _ = verifier.verify_server_cert(
            &CertificateDer::from(data),
            &[],
            &name,
            &[],
            UnixTime::now(),
        );
    }
}

/// Fingerprint text (XTLS `<fingerprint>`, attestations, access elements): what parses is the hex
/// of the digest it yields, and the two hex readers agree.
pub fn fingerprint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = e2e_xml::parse_fingerprint_hex(text);
    if let Some(fp) = parsed {
        assert!(
            fp.to_hex().eq_ignore_ascii_case(text.trim()),
            "{text:?} parsed as a fingerprint it does not spell"
        );
    }
    if let Some(device) = DeviceFingerprint::from_hex(text) {
        assert_eq!(device.to_hex(), text.to_ascii_lowercase());
        assert_eq!(parsed, Some(device), "the two hex readers disagree");
    }
}
