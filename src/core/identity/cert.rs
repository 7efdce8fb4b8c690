//! The self-signed device certificate (DESIGN §4): rcgen builds it and the key store signs it through
//! rcgen's external-key trait (`rcgen::SigningKey` + `rcgen::PublicKeyData`), so the private key stays
//! in the store. Peers never trust the certificate itself — they pin the SHA-256 of its SPKI — so it
//! carries only what TLS stacks insist on: the key, a subject name and end-entity key usages.

use std::cell::RefCell;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use super::{
    check_p256_spki, p256_point_from_spki, DeviceFingerprint, KeyPolicy, KeyStore, KeyStoreError,
    KeyStoreSigningKey,
};

/// A P-256 public key plus a signing callback, presented to rcgen as an external key pair.
struct ExternalP256Key<F> {
    point: Vec<u8>,
    sign: F,
    /// rcgen's error type has no room for ours; keep the real cause to return it afterwards.
    failure: RefCell<Option<KeyStoreError>>,
}

impl<F> rcgen::PublicKeyData for ExternalP256Key<F> {
    fn der_bytes(&self) -> &[u8] {
        // rcgen wants the BIT STRING contents of the SPKI, i.e. the bare uncompressed point.
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl<F> rcgen::SigningKey for ExternalP256Key<F>
where
    F: Fn(&[u8]) -> Result<Vec<u8>, KeyStoreError>,
{
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        (self.sign)(msg).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

/// Builds a self-signed end-entity certificate for `spki` (P-256), signed by `sign` (which receives
/// the unhashed TBSCertificate and returns a DER ECDSA-SHA256 signature).
///
/// Exposed separately from [`device_certificate`] for stores that need a certificate *while* creating
/// a key (the desktop JVM's PKCS12 store can only hold a private key together with a certificate).
pub fn self_signed_certificate<F>(
    spki: &[u8],
    device_name: &str,
    sign: F,
) -> Result<CertificateDer<'static>, KeyStoreError>
where
    F: Fn(&[u8]) -> Result<Vec<u8>, KeyStoreError>,
{
    let point = p256_point_from_spki(spki)
        .map_err(|reason| KeyStoreError::Corrupt {
            alias: device_name.to_owned(),
            reason,
        })?
        .to_vec();
    let key = ExternalP256Key {
        point,
        sign,
        failure: RefCell::new(None),
    };
    let rcgen_failure = |e: rcgen::Error| KeyStoreError::Platform(format!("certificate: {e}"));
    // No subject alternative names: verifiers pin the SPKI, there is no server name to match.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_failure)?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, device_name);
    params.distinguished_name = name;
    // An explicit CA:FALSE end-entity certificate usable on both ends of the tunnel (the initiator is
    // the TLS client, the responder the server).
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    match params.self_signed(&key) {
        Ok(cert) => Ok(cert.der().clone()),
        Err(e) => Err(key.failure.take().unwrap_or_else(|| rcgen_failure(e))),
    }
}

/// Makes the self-signed device certificate for the key `alias`, signed inside `store`.
///
/// ECDSA signatures are randomised, so two calls give different certificates with the same SPKI;
/// that is fine because identity is the SPKI fingerprint, not the certificate.
pub fn device_certificate(
    store: &dyn KeyStore,
    alias: &str,
    device_name: &str,
) -> Result<CertificateDer<'static>, KeyStoreError> {
    let spki = check_p256_spki(alias, store.public_key(alias)?)?;
    self_signed_certificate(&spki, device_name, |tbs| store.sign(alias, tbs))
}

/// The DER `SubjectPublicKeyInfo` inside an X.509 certificate (what pinning verifiers hash).
pub fn certificate_spki(cert_der: &[u8]) -> Result<&[u8], String> {
    Ok(CertParts::parse(cert_der)?.spki)
}

/// The parts of an X.509 certificate this crate needs, found by a minimal DER walk (no x509 parser
/// in the dependency tree is worth it for three fields).
pub(crate) struct CertParts<'a> {
    /// The whole `tbsCertificate` TLV: the bytes the issuer signed.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) tbs: &'a [u8],
    /// The whole `subjectPublicKeyInfo` TLV.
    pub(crate) spki: &'a [u8],
    /// The signature BIT STRING contents without the unused-bits byte (a DER ECDSA signature).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) signature: &'a [u8],
}

impl<'a> CertParts<'a> {
    pub(crate) fn parse(der: &'a [u8]) -> Result<Self, String> {
        let (tag, _, cert, rest) = tlv(der)?;
        if tag != 0x30 || !rest.is_empty() {
            return Err("certificate is not one DER SEQUENCE".into());
        }
        let (tag, tbs, mut fields, rest) = tlv(cert)?;
        if tag != 0x30 {
            return Err("tbsCertificate is not a SEQUENCE".into());
        }
        let (_, _, _, rest) = tlv(rest)?; // signatureAlgorithm
        let (tag, _, sig_bits, _) = tlv(rest)?;
        if tag != 0x03 || sig_bits.first() != Some(&0) {
            return Err("signatureValue is not a whole-byte BIT STRING".into());
        }
        // tbsCertificate: [0] version (optional), serial, signature, issuer, validity, subject, spki.
        if fields.first() == Some(&0xa0) {
            fields = tlv(fields)?.3;
        }
        for expected in [0x02u8, 0x30, 0x30, 0x30, 0x30] {
            let (tag, _, _, rest) = tlv(fields)?;
            if tag != expected {
                return Err(format!("unexpected tag {tag:#x} in tbsCertificate"));
            }
            fields = rest;
        }
        let (tag, spki, _, _) = tlv(fields)?;
        if tag != 0x30 {
            return Err("subjectPublicKeyInfo is not a SEQUENCE".into());
        }
        Ok(CertParts {
            tbs,
            spki,
            // Cannot panic: `sig_bits.first() == Some(&0)` was checked above.
            signature: &sig_bits[1..],
        })
    }
}

/// One DER TLV split as `(tag, whole TLV, contents, rest of the input)`.
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one DER TLV: `(tag, whole TLV, contents, rest)`. Single-byte tags, definite lengths only.
fn tlv(input: &[u8]) -> Result<Tlv<'_>, String> {
    let short = || "truncated DER".to_string();
    let tag = *input.first().ok_or_else(short)?;
    let first = *input.get(1).ok_or_else(short)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err("unsupported DER length".into());
        }
        let bytes = input.get(2..2 + n).ok_or_else(short)?;
        (
            bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize),
            2 + n,
        )
    };
    let end = header.checked_add(len).ok_or_else(short)?;
    if input.len() < end {
        return Err(short());
    }
    Ok((tag, &input[..end], &input[header..end], &input[end..]))
}

/// A device's TLS identity: its key in a store, the certificate over it, and the fingerprint peers pin.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    cert: CertificateDer<'static>,
    key: Arc<KeyStoreSigningKey>,
    fingerprint: DeviceFingerprint,
}

impl DeviceIdentity {
    /// Uses the key `alias` of `store`, creating it (as [`KeyPolicy::TlsIdentity`]) on first use,
    /// and makes a fresh certificate for it named `device_name`.
    pub fn load_or_generate(
        store: Arc<dyn KeyStore>,
        alias: &str,
        device_name: &str,
    ) -> Result<Self, KeyStoreError> {
        match store.public_key(alias) {
            Ok(_) => {}
            Err(KeyStoreError::NotFound { .. }) => {
                tracing::info!(
                    alias,
                    backend = store.backend(),
                    "generating device identity key"
                );
                store.generate(alias, KeyPolicy::TlsIdentity)?;
            }
            Err(e) => return Err(e),
        }
        let cert = device_certificate(store.as_ref(), alias, device_name)?;
        let key = Arc::new(KeyStoreSigningKey::new(store, alias)?);
        let fingerprint = DeviceFingerprint::from_spki(key.spki());
        Ok(DeviceIdentity {
            cert,
            key,
            fingerprint,
        })
    }

    /// The self-signed device certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The public key (SPKI DER).
    pub fn spki(&self) -> &[u8] {
        self.key.spki()
    }

    /// SHA-256 of the SPKI: what peers pin.
    pub fn fingerprint(&self) -> DeviceFingerprint {
        self.fingerprint
    }

    /// The rustls signing key over the store.
    pub fn signing_key(&self) -> Arc<KeyStoreSigningKey> {
        self.key.clone()
    }

    /// Certificate + key for rustls (`ResolvesServerCert` / `ResolvesClientCert` via
    /// `rustls::sign::SingleCertAndKey`).
    pub fn certified_key(&self) -> Arc<rustls::sign::CertifiedKey> {
        Arc::new(rustls::sign::CertifiedKey::new(
            vec![self.cert.clone()],
            self.key.clone(),
        ))
    }
}
