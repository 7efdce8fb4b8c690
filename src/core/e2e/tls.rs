//! The TLS 1.3 layer of the tunnel, independent of XMPP: it runs over any byte pipe
//! (`AsyncRead + AsyncWrite`), an in-memory duplex in unit tests and IBB in production.
//!
//! Rules enforced here (DESIGN §4): TLS 1.3 only; the initiator is the TLS client; both sides present
//! their self-signed device certificate and sign through the [`KeyStore`](crate::core::identity::KeyStore);
//! each side accepts exactly one peer key — the SPKI SHA-256 it was told to expect — with no CA and no
//! server name. Whether that expected fingerprint is *trusted* is decided before the handshake (pinned
//! set, or pairing mode followed by SPAKE2), so this layer stays a pure "this key or nothing" check.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::SingleCertAndKey;
use rustls::{CertificateError, ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{certificate_spki, DeviceFingerprint, DeviceIdentity, PinnedPeerKey};

/// Exporter label binding pairing to this TLS session (DESIGN §4).
pub const PAIRING_EXPORTER_LABEL: &[u8] = b"EXPORTER-pmn-pair";

/// Which end of the tunnel this device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRole {
    /// The Jingle initiator: TLS client.
    Initiator,
    /// The Jingle responder: TLS server.
    Responder,
}

/// An established TLS 1.3 channel with an authenticated peer key.
pub struct SecureChannel<S> {
    /// The TLS stream; read and write plaintext.
    pub stream: TlsStream<S>,
    /// SHA-256 of the peer's SPKI (equal to the expected one, or the handshake would have failed).
    pub peer_fingerprint: DeviceFingerprint,
    /// `export_keying_material(32, "EXPORTER-pmn-pair", initiator SPKI || responder SPKI)`: what
    /// pairing binds SPAKE2 to, so a relay with its own keys gets a different value on each side.
    pub pairing_binding: [u8; 32],
}

impl<S> std::fmt::Debug for SecureChannel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureChannel")
            .field("peer", &self.peer_fingerprint.to_hex())
            .finish_non_exhaustive()
    }
}

fn config_error(e: rustls::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("tunnel TLS configuration: {e}"),
    )
}

/// Maps a failed handshake to a typed error people can read.
fn handshake_error(e: std::io::Error) -> Error {
    let text = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        )) => {
            "the peer presented a key that is not the pinned one (possible interception)".to_owned()
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the peer refused the handshake ({alert:?}): it does not accept our key or saw altered data")
        }
        Some(other) => format!("handshake failed: {other}"),
        None => format!("handshake failed: {e}"),
    };
    Error::new(ErrorKind::Tls, format!("end-to-end tunnel: {text}"))
}

/// Runs the TLS 1.3 handshake over `io` as `role`, presenting `identity` and accepting exactly the
/// peer key whose SPKI SHA-256 is `expected_peer`. Bounded by `timeout`.
///
/// Errors: [`ErrorKind::Tls`] when the peer's key is not the expected one, the peer refused ours,
/// or the bytes were altered; [`ErrorKind::Timeout`] when the handshake did not finish in time.
pub async fn handshake<S>(
    io: S,
    role: TlsRole,
    identity: &DeviceIdentity,
    expected_peer: DeviceFingerprint,
    timeout: Duration,
) -> Result<SecureChannel<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedPeerKey::new(expected_peer, provider.clone()));
    let own_spki = identity.spki().to_vec();
    let work = async {
        match role {
            TlsRole::Initiator => {
                let config = ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(config_error)?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(
                        identity.certified_key(),
                    )));
                // No name is checked (pinning only); rustls still wants one for SNI.
                let name = ServerName::try_from("pmn.invalid")
                    .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                let stream = TlsConnector::from(Arc::new(config))
                    .connect(name, io)
                    .await
                    .map_err(handshake_error)?;
                let conn = stream.get_ref().1;
                let peer = peer_spki(conn.peer_certificates())?;
                let binding = export(conn, &own_spki, &peer)?;
                Ok(SecureChannel {
                    stream: TlsStream::Client(stream),
                    peer_fingerprint: DeviceFingerprint::from_spki(&peer),
                    pairing_binding: binding,
                })
            }
            TlsRole::Responder => {
                let config = ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(config_error)?
                    .with_client_cert_verifier(verifier)
                    .with_cert_resolver(Arc::new(SingleCertAndKey::from(identity.certified_key())));
                let mut config = config;
                // No tickets: a tunnel is a long-lived stream; resumption would only add state.
                config.send_tls13_tickets = 0;
                let stream = TlsAcceptor::from(Arc::new(config))
                    .accept(io)
                    .await
                    .map_err(handshake_error)?;
                let conn = stream.get_ref().1;
                let peer = peer_spki(conn.peer_certificates())?;
                let binding = export(conn, &peer, &own_spki)?;
                Ok(SecureChannel {
                    stream: TlsStream::Server(stream),
                    peer_fingerprint: DeviceFingerprint::from_spki(&peer),
                    pairing_binding: binding,
                })
            }
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("end-to-end handshake did not finish within {timeout:?}"),
        )),
    }
}

fn peer_spki(certs: Option<&[CertificateDer<'static>]>) -> Result<Vec<u8>> {
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| Error::new(ErrorKind::Tls, "peer presented no certificate"))?;
    certificate_spki(cert)
        .map(<[u8]>::to_vec)
        .map_err(|e| Error::new(ErrorKind::Tls, format!("peer certificate: {e}")))
}

fn export<D>(
    conn: &rustls::ConnectionCommon<D>,
    initiator_spki: &[u8],
    responder_spki: &[u8],
) -> Result<[u8; 32]> {
    let mut context = Vec::with_capacity(initiator_spki.len() + responder_spki.len());
    context.extend_from_slice(initiator_spki);
    context.extend_from_slice(responder_spki);
    conn.export_keying_material([0u8; 32], PAIRING_EXPORTER_LABEL, Some(&context))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS exporter: {e}")))
}
