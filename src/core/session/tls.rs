//! The rustls client configuration for the connection to the XMPP server (c2s).
//!
//! Production trusts the platform (Android / Apple / system trust store) through
//! `rustls-platform-verifier`. Tests and the demo talk to a Prosody with a certificate from a
//! throw-away CA; trusting that CA is possible only in builds with the `test-ca` cargo feature, so no
//! configuration mistake can switch it on in a release.

use std::sync::{Arc, Mutex, Weak};

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

/// The configurations in use, one per trust, held weakly so the last session to drop one frees it.
static SHARED: Mutex<Vec<(ServerTrust, Weak<rustls::ClientConfig>)>> = Mutex::new(Vec::new());

/// The client configuration for `trust`, shared by every session of the process that trusts the
/// same: a `ClientConfig` carries a TLS session cache sized for 256 servers (~15 KB) and, for the
/// platform, the verifier and its roots, which 100 providers in one process held 100 times.
/// Sessions share only what a browser's connections share (the verifier, resumption tickets keyed
/// by server name); authentication is SASL's, per connection, bound to each connection's own keys.
pub fn client_config(trust: &ServerTrust) -> Result<Arc<rustls::ClientConfig>> {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    shared.retain(|(_, config)| config.strong_count() > 0);
    if let Some(config) = shared
        .iter()
        .find(|(t, _)| t == trust)
        .and_then(|(_, config)| config.upgrade())
    {
        return Ok(config);
    }
    let config = build_config(trust)?;
    shared.push((trust.clone(), Arc::downgrade(&config)));
    Ok(config)
}

/// Builds a new client configuration for `trust`.
fn build_config(trust: &ServerTrust) -> Result<Arc<rustls::ClientConfig>> {
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

#[cfg(all(test, feature = "test-ca"))]
mod tests {
    use super::*;

    fn fresh_ca() -> ServerTrust {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).expect("CA");
        ServerTrust::TestCa(ca.cert.pem())
    }

    #[test]
    fn one_config_per_trust_while_a_session_holds_it() {
        let (a, b) = (fresh_ca(), fresh_ca());
        let a1 = client_config(&a).expect("config a");
        let a2 = client_config(&a).expect("config a again");
        assert!(Arc::ptr_eq(&a1, &a2), "the same trust shares one config");
        let b1 = client_config(&b).expect("config b");
        assert!(!Arc::ptr_eq(&a1, &b1), "another CA gets its own config");
        let weak = Arc::downgrade(&a1);
        drop((a1, a2));
        assert!(
            weak.upgrade().is_none(),
            "freed with the last session using it"
        );
        let a3 = client_config(&a).expect("config a rebuilt");
        assert!(!Arc::ptr_eq(&a3, &b1));
        let entries = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            entries.iter().filter(|(t, _)| t == &a).count(),
            1,
            "the dead entry was pruned"
        );
    }
}
