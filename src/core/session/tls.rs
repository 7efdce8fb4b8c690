//! The rustls client configuration for the connection to the XMPP server (c2s).
//!
//! Production trusts the platform (Android / Apple / system trust store) through
//! `rustls-platform-verifier`. Tests and the demo talk to a Prosody with a certificate from a
//! throw-away CA; trusting that CA is possible only in builds with the `test-ca` cargo feature, so no
//! configuration mistake can switch it on in a release.

use std::sync::Arc;

use crate::core::error::{Error, ErrorKind, Result};

/// Which certificates the c2s TLS connection accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerTrust {
    /// The platform's trust store (production).
    #[default]
    Platform,
    /// Only certificates issued by this CA (PEM). Test builds only (`test-ca` feature).
    TestCa(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration for `trust`.
pub fn client_config(trust: &ServerTrust) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Tls, format!("TLS setup: {e}")))?;
    let config = match trust {
        ServerTrust::Platform => {
            platform_ready()?;
            let verifier = rustls_platform_verifier::Verifier::new(provider())
                .map_err(|e| Error::new(ErrorKind::Tls, format!("platform verifier: {e}")))?;
            builder
                .dangerous() // not dangerous: this *is* the platform's verification
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        ServerTrust::TestCa(pem) => test_ca_config(builder, pem)?,
    };
    Ok(Arc::new(config))
}

/// rustls-platform-verifier panics on Android when it was not initialised; we refuse instead.
fn platform_ready() -> Result<()> {
    #[cfg(target_os = "android")]
    if !crate::platform::android_initialised() {
        return Err(Error::new(
            ErrorKind::Config,
            "call Pmn.initAndroid(context) before connecting: the platform certificate verifier is not initialised",
        ));
    }
    Ok(())
}

#[cfg(feature = "test-ca")]
fn test_ca_config(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    pem: &str,
) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| Error::new(ErrorKind::Config, format!("test CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| Error::new(ErrorKind::Config, format!("test CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::new(
            ErrorKind::Config,
            "test CA PEM holds no certificate",
        ));
    }
    tracing::info!("trusting a test CA for the server connection (test build)");
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(not(feature = "test-ca"))]
fn test_ca_config(
    _builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
    _pem: &str,
) -> Result<rustls::ClientConfig> {
    Err(Error::new(
        ErrorKind::Config,
        "this build does not accept a test CA (built without the `test-ca` feature)",
    ))
}
