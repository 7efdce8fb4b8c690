//! Our own `ServerConnector` for tokio-xmpp: TCP (no Nagle) + STARTTLS with *our* rustls
//! `ClientConfig`, so the library decides which server certificates it trusts.
//!
//! tokio-xmpp's built-in STARTTLS connector, with default features off, starts from an empty root
//! store and offers no hook for a verifier; hence this module. It also classifies failures into
//! [`ConnectorError`] so that the session can tell a bad certificate (fatal) from an unreachable
//! server (worth a retry).

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use sasl::common::ChannelBinding;
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_xmpp::connect::{DnsConfig, ServerConnector, ServerConnectorError};
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::xmlstream::{
    initiate_stream, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts, XmppStream,
    XmppStreamElement,
};
use xmpp_parsers::jid::Jid;

use super::link::{Link, LinkSwitch};

/// Why a connection attempt failed before SASL.
#[derive(Debug)]
pub enum ConnectorError {
    /// The TLS handshake failed (untrusted certificate, wrong name, protocol error).
    Tls(String),
    /// The server does not offer STARTTLS; we never log in in clear.
    NoStartTls,
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectorError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectorError::NoStartTls => f.write_str("server does not offer STARTTLS"),
        }
    }
}

impl std::error::Error for ConnectorError {}
impl ServerConnectorError for ConnectorError {}

/// Read buffer of the TLS connection (see `PmnConnector::connect`).
const READ_BUFFER: usize = 4 * 1024;
/// Write buffer of the TLS connection: tokio's default.
const WRITE_BUFFER: usize = 8 * 1024;

/// Where the server is: DNS SRV lookup of the JID's domain, or a fixed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// Look up `_xmpp-client._tcp.<domain>` (falls back to the domain on port 5222).
    Srv,
    /// Connect to `host:port` (an IP address or a host name), whatever the JID's domain.
    HostPort(String, u16),
}

impl std::str::FromStr for ServerAddress {
    type Err = String;

    /// Parses `host:port`, `a.b.c.d:port` or `[ipv6]:port`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("server {s:?} is not host:port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("server {s:?} has no valid port"))?;
        let host = host.trim_matches(['[', ']']);
        if host.is_empty() || port == 0 {
            return Err(format!("server {s:?} is not host:port"));
        }
        Ok(ServerAddress::HostPort(host.to_owned(), port))
    }
}

/// STARTTLS connector with a caller-supplied rustls configuration.
#[derive(Clone)]
pub struct PmnConnector {
    dns: DnsConfig,
    tls: Arc<rustls::ClientConfig>,
    link: LinkSwitch,
    /// Set once the server refused a channel binding it never advertised (see
    /// `session::login`), so later logins do not spend a connection on the same guess.
    binding_refused: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for PmnConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PmnConnector")
            .field("dns", &self.dns)
            .finish_non_exhaustive()
    }
}

impl PmnConnector {
    /// A connector for `domain` at `address`, trusting what `tls` trusts.
    pub fn new(domain: &str, address: &ServerAddress, tls: Arc<rustls::ClientConfig>) -> Self {
        let dns = match address {
            ServerAddress::Srv => DnsConfig::srv_default_client(domain),
            ServerAddress::HostPort(host, port) => match host.parse::<std::net::IpAddr>() {
                Ok(ip) => DnsConfig::addr(&std::net::SocketAddr::new(ip, *port).to_string()),
                Err(_) => DnsConfig::no_srv(host, *port),
            },
        };
        Self {
            dns,
            tls,
            link: LinkSwitch::default(),
            binding_refused: Arc::default(),
        }
    }

    /// Whether this server refused an unadvertised channel binding before.
    pub(crate) fn binding_refused(&self) -> bool {
        self.binding_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers that the server refused an unadvertised channel binding.
    pub(crate) fn note_binding_refused(&self) {
        self.binding_refused
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The switch that cuts the newest connection this connector made (and its clones make).
    pub(crate) fn link_switch(&self) -> &LinkSwitch {
        &self.link
    }
}

fn header(jid: &Jid) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(jid.domain().as_str())),
        from: None,
        id: None,
    }
}

impl ServerConnector for PmnConnector {
    type Stream = BufStream<Link<TlsStream<TcpStream>>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), tokio_xmpp::Error> {
        let tcp = self.dns.resolve().await?;
        // Without this every small stanza waits for the peer's delayed ACK (~40 ms a hop).
        tcp.set_nodelay(true)?;
        let plain = initiate_stream(BufStream::new(tcp), ns, header(jid), timeouts).await?;
        let (features, mut plain): (_, XmppStream<BufStream<TcpStream>>) =
            plain.recv_features().await?;
        if !features.can_starttls() {
            return Err(ConnectorError::NoStartTls.into());
        }
        plain
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await?;
        loop {
            match plain
                .next()
                .await
                .map(|v| v.and_then(|v| v.into_read_error()))
            {
                Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => (),
                Some(Err(ReadError::HardError(e))) => return Err(e.into()),
                Some(Err(ReadError::ParseError(e))) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e).into())
                }
                None | Some(Err(ReadError::StreamFooterReceived)) => {
                    return Err(tokio_xmpp::Error::Disconnected)
                }
            }
        }
        let tcp = plain.into_inner().into_inner();
        let name = rustls_pki_types::ServerName::try_from(jid.domain().as_str().to_owned())
            .map_err(|e| ConnectorError::Tls(format!("invalid server name: {e}")))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectorError::Tls(e.to_string()))?;
        let binding = channel_binding(&tls);
        // A 4 KiB read buffer (tokio's default is 8): rustls holds whole decrypted records
        // already, so this only bounds how much the parser takes per read, and it stays
        // allocated for the connection's life. Writes keep 8 KiB to batch small stanzas.
        let transport = BufStream::with_capacity(READ_BUFFER, WRITE_BUFFER, self.link.wrap(tls));
        let stream = initiate_stream(transport, ns, header(jid), timeouts).await?;
        Ok((stream, binding))
    }
}

/// RFC 9266 `tls-exporter` binding for TLS 1.3; TLS 1.2 has no safe binding we offer.
fn channel_binding(tls: &TlsStream<TcpStream>) -> ChannelBinding {
    let (_, conn) = tls.get_ref();
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return ChannelBinding::None;
    }
    match conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None) {
        Ok(data) => ChannelBinding::TlsExporter(data),
        Err(_) => ChannelBinding::None,
    }
}

#[cfg(test)]
mod tests {
    use super::ServerAddress;

    #[test]
    fn server_addresses_parse_with_ipv6_brackets_and_refuse_garbage() {
        assert_eq!(
            "xmpp.example.org:5222".parse(),
            Ok(ServerAddress::HostPort("xmpp.example.org".into(), 5222))
        );
        assert_eq!(
            "[::1]:5222".parse(),
            Ok(ServerAddress::HostPort("::1".into(), 5222))
        );
        for bad in [
            "example.org",
            "example.org:",
            ":5222",
            "example.org:0",
            "h:99999",
        ] {
            assert!(bad.parse::<ServerAddress>().is_err(), "{bad}");
        }
    }
}
