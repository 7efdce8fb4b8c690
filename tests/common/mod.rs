//! Shared fixtures of the integration tests: sessions, providers and controllers on the project's
//! real Prosody (started once per test binary by pmn-testkit).

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::core::session::{ServerAddress, ServerTrust, SessionConfig};
pub mod raw;

use pmn_testkit::{Account, TestServer};

#[allow(unused_imports)]
pub use pmn_testkit::{HOME, STRANGER};

/// The feature of the media player service.
pub const PLAYER: &str = "urn.xmpp.tmp.media.player";

/// A resource name unique in this process, so that tests never meet stale (hibernated) sessions of
/// one another.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn server() -> &'static TestServer {
    TestServer::shared()
}

/// A session configuration for `account` with a fresh resource derived from `device`.
pub fn session_config(account: &Account, device: &str) -> SessionConfig {
    let server = server();
    let jid = format!("{}/{}", account.jid, unique(device))
        .parse()
        .expect("valid full JID");
    let mut config = SessionConfig::new(jid, account.password);
    config.server = ServerAddress::HostPort("127.0.0.1".into(), server.port());
    config.trust = ServerTrust::TestCa(server.ca_pem());
    config.connect_timeout = Duration::from_secs(10);
    config
}

/// The same login as [`session_config`], as the exported (UniFFI) API takes it.
pub fn ffi_config(device: &str) -> pmn::ConnectionConfig {
    let server = server();
    pmn::ConnectionConfig {
        network: HOME.jid.into(),
        password: HOME.password.into(),
        device: unique(device),
        server: Some(server.addr()),
        test_ca_pem: Some(server.ca_pem()),
        connect_timeout_ms: 10_000,
        rpc_timeout_ms: 10_000,
        keepalive_ms: 0,
        probe_timeout_ms: 0,
        call_retries: 0,
        e2e: None,
        owner: None,
        guests: None,
        caps_cache: None,
        plain_transport: true,
    }
}

/// A provider of the home network offering the simulated media player.
pub async fn start_player(name: &str) -> Provider {
    start_player_with(session_config(&HOME, "tv"), name).await
}

pub async fn start_player_with(session: SessionConfig, name: &str) -> Provider {
    let service = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    Provider::start(ProviderConfig::plain(session, name), vec![service])
        .await
        .expect("provider starts")
}

/// A controller of the home network with a short RPC timeout.
pub async fn start_controller() -> Controller {
    let mut config = ControllerConfig::plain(session_config(&HOME, "phone"));
    config.rpc_timeout = Duration::from_secs(5);
    Controller::connect(config)
        .await
        .expect("controller connects")
}

/// Waits for the provider whose full JID is `jid` to appear in `controller`'s directory.
pub async fn discover(
    controller: &Controller,
    provider: &Provider,
) -> pmn::core::discovery::ProviderInfo {
    let jid = provider.session().jid().expect("provider online");
    controller
        .wait_for_provider(|p| p.jid == jid, Duration::from_secs(10))
        .await
        .expect("provider discovered")
}

/// A `ControllerListener` that forwards providers and events into channels (the receivers may be
/// dropped when a test does not care).
pub struct ChannelListener {
    /// Providers reported online.
    pub providers: tokio::sync::mpsc::UnboundedSender<pmn::ProviderInfo>,
    /// Events reported.
    pub events: tokio::sync::mpsc::UnboundedSender<pmn::ServiceEvent>,
}

impl ChannelListener {
    /// A listener that reports into nothing.
    pub fn quiet() -> Arc<Self> {
        Arc::new(Self {
            providers: tokio::sync::mpsc::unbounded_channel().0,
            events: tokio::sync::mpsc::unbounded_channel().0,
        })
    }
}

impl pmn::ControllerListener for ChannelListener {
    fn on_provider_online(&self, p: pmn::ProviderInfo) -> Result<(), pmn::PmnError> {
        let _ = self.providers.send(p);
        Ok(())
    }
    fn on_provider_offline(&self, _: String) -> Result<(), pmn::PmnError> {
        Ok(())
    }
    fn on_event(&self, e: pmn::ServiceEvent) -> Result<(), pmn::PmnError> {
        let _ = self.events.send(e);
        Ok(())
    }
    fn on_connection_state(&self, _: pmn::ConnectionState) -> Result<(), pmn::PmnError> {
        Ok(())
    }
}

/// A TCP relay to Prosody that the test can cut and keep closed, to take a client's connection
/// away (tests/services.rs has its own copy).
pub struct Relay {
    /// The port clients connect to.
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays 127.0.0.1:<new port> to 127.0.0.1:`upstream`.
    pub async fn start(upstream: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o, l) = (open.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection closed at once
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut out) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                l.lock().expect("lock").push(link.abort_handle());
            }
        });
        Relay {
            port,
            open,
            links,
            accept,
        }
    }

    /// Cuts every connection and refuses new ones until [`Relay::reopen`].
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub fn reopen(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
