//! A raw XMPP client for hostile-input tests: it logs in (STARTTLS, SASL PLAIN, bind) and then
//! writes whatever bytes the test gives it. An attacker needs no XML library: building a stanza
//! nested 36 000 levels deep with xso takes minutes (its serialiser is quadratic in the depth) and
//! a huge stack, while the bytes are one `format!` away.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use pmn::core::session::{client_config, ServerTrust};
use pmn_testkit::{Account, TestServer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How long a read waits: generous, as a debug-build victim reading a 256 KiB stanza on a loaded
/// 2-core machine takes seconds.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A logged-in raw c2s connection.
pub struct RawClient {
    tls: TlsStream<TcpStream>,
    buffer: String,
    /// The full JID the server bound.
    pub jid: String,
}

fn header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams'>"
    )
}

async fn read_until<S: AsyncRead + Unpin>(io: &mut S, buffer: &mut String, marker: &str) -> String {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(at) = buffer.find(marker) {
            let end = at + marker.len();
            let head: String = buffer.drain(..end).collect();
            return head;
        }
        let n = tokio::time::timeout_at(deadline, io.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!("raw client: no {marker:?} within {READ_TIMEOUT:?}; got {buffer:?}")
            })
            .expect("raw client read");
        assert!(
            n > 0,
            "raw client: stream closed while waiting for {marker:?}: {buffer:?}"
        );
        buffer.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

async fn write<S: AsyncWrite + Unpin>(io: &mut S, data: &str) {
    io.write_all(data.as_bytes())
        .await
        .expect("raw client write");
    io.flush().await.expect("raw client flush");
}

impl RawClient {
    /// Logs in as `account` with `resource` on `server`.
    pub async fn connect(server: &TestServer, account: &Account, resource: &str) -> RawClient {
        let domain = account.host();
        let mut tcp = TcpStream::connect(server.addr()).await.expect("tcp");
        tcp.set_nodelay(true).expect("nodelay");
        let mut buffer = String::new();
        write(&mut tcp, &header(domain)).await;
        read_until(&mut tcp, &mut buffer, "</stream:features>").await;
        write(
            &mut tcp,
            "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        )
        .await;
        read_until(&mut tcp, &mut buffer, "<proceed").await;
        buffer.clear();
        let config: Arc<rustls::ClientConfig> =
            client_config(&ServerTrust::TestCa(server.ca_pem())).expect("tls config");
        let name = rustls_pki_types::ServerName::try_from(domain.to_owned()).expect("name");
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("tls");
        write(&mut tls, &header(domain)).await;
        read_until(&mut tls, &mut buffer, "</stream:features>").await;
        let plain = format!("\0{}\0{}", account.user(), account.password);
        let auth = base64::engine::general_purpose::STANDARD.encode(plain);
        write(
            &mut tls,
            &format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{auth}</auth>"
            ),
        )
        .await;
        read_until(&mut tls, &mut buffer, "<success").await;
        read_until(&mut tls, &mut buffer, ">").await;
        write(&mut tls, &header(domain)).await;
        read_until(&mut tls, &mut buffer, "</stream:features>").await;
        write(
            &mut tls,
            &format!(
                "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                 <resource>{resource}</resource></bind></iq>"
            ),
        )
        .await;
        let bound = read_until(&mut tls, &mut buffer, "</iq>").await;
        let jid = bound
            .split("<jid>")
            .nth(1)
            .and_then(|rest| rest.split("</jid>").next())
            .expect("bound jid")
            .to_owned();
        RawClient { tls, buffer, jid }
    }

    /// Writes `data` as it is.
    pub async fn send(&mut self, data: &str) {
        write(&mut self.tls, data).await;
    }

    /// Reads until `marker` has arrived; returns everything up to and including it.
    pub async fn read_until(&mut self, marker: &str) -> String {
        read_until(&mut self.tls, &mut self.buffer, marker).await
    }

    /// Sends `<iq type='set' id=ID to=TO>PAYLOAD</iq>` and returns the answer with that id.
    pub async fn request(&mut self, to: &str, id: &str, payload: &str) -> String {
        self.send(&format!(
            "<iq type='set' id='{id}' to='{to}'>{payload}</iq>"
        ))
        .await;
        let upto = self.read_until(&format!("id='{id}'")).await;
        let start = upto.rfind("<iq").unwrap_or(0);
        let rest = self.read_until("</iq>").await;
        format!("{}{rest}", &upto[start..])
    }

    /// Ends the stream.
    pub async fn close(mut self) {
        let _ = self.tls.write_all(b"</stream:stream>").await;
        let _ = self.tls.shutdown().await;
    }
}
