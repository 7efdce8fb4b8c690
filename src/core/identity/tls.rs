//! rustls signing over a [`KeyStore`]: the TLS 1.3 handshake of the end-to-end tunnel signs its
//! `CertificateVerify` through the store, so a platform key never has to be exported to do TLS.
//!
//! Only `ecdsa_secp256r1_sha256` is offered: every store holds P-256 keys and returns DER ECDSA over
//! SHA-256 of the unhashed message, which is exactly that scheme's encoding.

use std::fmt;
use std::sync::Arc;

use rustls::sign::{Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::SubjectPublicKeyInfoDer;

use super::{check_p256_spki, KeyStore};
use crate::core::identity::KeyStoreError;

/// A rustls [`SigningKey`] whose private half lives in a [`KeyStore`] under `alias`.
#[derive(Clone)]
pub struct KeyStoreSigningKey {
    store: Arc<dyn KeyStore>,
    alias: Arc<str>,
    spki: Arc<[u8]>,
}

impl KeyStoreSigningKey {
    /// Wraps the key `alias` of `store`; fails if the key is missing or is not P-256.
    pub fn new(store: Arc<dyn KeyStore>, alias: &str) -> Result<Self, KeyStoreError> {
        let spki = check_p256_spki(alias, store.public_key(alias)?)?;
        Ok(KeyStoreSigningKey {
            store,
            alias: alias.into(),
            spki: spki.into(),
        })
    }

    /// The public key (SPKI DER) read when this signer was made.
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The alias of the key in its store.
    pub fn alias(&self) -> &str {
        &self.alias
    }
}

impl fmt::Debug for KeyStoreSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStoreSigningKey")
            .field("backend", &self.store.backend())
            .field("alias", &self.alias)
            .finish()
    }
}

impl SigningKey for KeyStoreSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(KeyStoreSigner { key: self.clone() }) as Box<dyn Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(&self.spki[..]))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

/// The per-handshake [`Signer`] handed out by [`KeyStoreSigningKey::choose_scheme`].
#[derive(Debug)]
pub struct KeyStoreSigner {
    key: KeyStoreSigningKey,
}

impl Signer for KeyStoreSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.key
            .store
            .sign(&self.key.alias, message)
            .map_err(|e| rustls::Error::General(format!("key store signature failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}
