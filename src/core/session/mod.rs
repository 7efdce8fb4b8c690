//! One XMPP connection of a device: login, reconnection, stanza routing and our own iq tracker.
//!
//! The connection is a tokio-xmpp [`StanzaStream`] owned by exactly one task (the *session task*);
//! everything else talks to it through channels. We never use `tokio_xmpp::Client` and never split
//! the stream: in tokio-xmpp 6.0.0 `StanzaReceiver::poll_next` and `ClientReceiver::poll_next` return
//! `Poll::Pending` without registering a waker when `try_lock()` on their shared mutex fails, so on a
//! multi-thread runtime a response can be left unread forever (shared/FACTS.md). Owning the unsplit
//! stream in one task avoids that mutex entirely; this workaround can go once tokio-xmpp is fixed
//! (no upstream report was found when this was written).
//!
//! tokio-xmpp's iq helper has no timeout and its reconnect loop only *logs* why a login failed, so
//! this module tracks iqs itself (every request has a deadline; all pending requests fail at once on
//! a stream reset) and performs the login itself, reporting bad passwords and untrusted certificates
//! as typed errors.

mod backoff;
mod connector;
mod link;
mod password;
mod tls;

use crate::core::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sasl::common::{ChannelBinding, Credentials};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::error::{AuthError, ProtocolError};
use tokio_xmpp::stanzastream::{Connection, Event, InvalidStanza, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::{StreamHeader, Timeouts, XmppStream};
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

pub use backoff::Backoff;
pub use connector::{ConnectorError, PmnConnector, ServerAddress};
pub use tls::{client_config, ServerTrust};
pub use tokio_xmpp::xmlstream::{MAX_ELEMENT_BYTES, MAX_ELEMENT_DEPTH};

use crate::core::error::{CallOutcome, Error, ErrorKind, Result};
use password::NetworkPassword;

/// How to log in.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The device's full JID: the network identifier plus this device's resource,
    /// e.g. `home@example.org/living-room-tv`.
    pub jid: FullJid,
    /// The network's password (shared by all devices of the network).
    pub password: String,
    /// Where the server is.
    pub server: ServerAddress,
    /// Which server certificates to trust.
    pub trust: ServerTrust,
    /// Bound on one login attempt (TCP + TLS + SASL + bind).
    pub connect_timeout: Duration,
    /// Silence on the stream after which the server is probed (an XEP-0198 `<r/>`, or a ping).
    pub keepalive: Duration,
    /// How long the probe may go unanswered before the connection is considered dead and a new
    /// one (resuming the session where the server supports XEP-0198) is made. A dead link is thus
    /// noticed at most `keepalive + probe_timeout` after the last byte; the app can shorten that
    /// with [`Session::network_changed`].
    pub probe_timeout: Duration,
    /// The keepalive while the app is in the background ([`Session::set_foreground`]): longer,
    /// so an idle phone wakes its radio less often. Takes effect on the next connection (a
    /// stream's timeouts are fixed when it is made).
    pub background_keepalive: Duration,
    /// For tests and diagnostics: receives a copy of every stanza this session sends.
    pub outbound_tap: Option<mpsc::UnboundedSender<Stanza>>,
}

/// Default [`SessionConfig::background_keepalive`].
pub const DEFAULT_BACKGROUND_KEEPALIVE: Duration = Duration::from_secs(120);

/// Default [`SessionConfig::keepalive`]: with the default probe timeout a dead link is noticed
/// within 20 s of silence.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);
/// Default [`SessionConfig::probe_timeout`].
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`Session::network_changed`] waits for the server to answer its probe before it cuts
/// the connection and resumes on a new one.
pub const NETWORK_CHANGE_PROBE: Duration = Duration::from_secs(3);

impl SessionConfig {
    /// A configuration with default timeouts, connecting through DNS SRV and trusting the platform.
    pub fn new(jid: FullJid, password: impl Into<String>) -> Self {
        Self {
            jid,
            password: password.into(),
            server: ServerAddress::Srv,
            trust: ServerTrust::Platform,
            connect_timeout: Duration::from_secs(15),
            keepalive: DEFAULT_KEEPALIVE,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            background_keepalive: DEFAULT_BACKGROUND_KEEPALIVE,
            outbound_tap: None,
        }
    }
}

/// The connection as the app sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionState {
    /// Logging in for the first time.
    Connecting,
    /// Logged in and bound to this full JID.
    Online {
        /// The JID the server bound us to.
        jid: FullJid,
    },
    /// The connection was lost; the session is reconnecting by itself.
    Reconnecting {
        /// Why the connection was lost or the last attempt failed.
        reason: String,
    },
    /// The session has ended: closed by the app, or stopped by a fatal error.
    Offline {
        /// The fatal error, or `None` when the app closed the session.
        error: Option<Error>,
    },
}

/// What the session task hands to the role layer (provider or controller) above it.
#[derive(Debug)]
pub enum Inbound {
    /// The stream is (again) online. When `resumed` is false the server lost our state (presence,
    /// pending iqs): the role layer must announce itself again.
    Online {
        /// The bound full JID.
        jid: FullJid,
        /// True when XEP-0198 resumed the old stream without loss.
        resumed: bool,
    },
    /// A stanza that is not a response to one of our iqs (boxed: stanzas are large).
    Stanza(Box<Stanza>),
}

/// XEP-0077 in-band registration, used here only for changing the password.
const NS_REGISTER: &str = "jabber:iq:register";

/// The answer to an iq request.
#[derive(Debug, Clone, PartialEq)]
pub enum IqReply {
    /// `type='result'` with its payload, if any.
    Result(Option<Element>),
    /// `type='error'`.
    Error(StanzaError),
}

enum Command {
    Send(Stanza),
    Request {
        iq: Iq,
        deadline: Instant,
        reply: oneshot::Sender<Result<IqReply>>,
    },
    Close(oneshot::Sender<()>),
    /// XEP-0352: the app went to the foreground (`true`) or the background.
    SetForeground(bool),
}

struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnectionState>,
    next_id: AtomicU64,
    id_prefix: String,
    reconnect: Arc<ReconnectShared>,
    stats: Arc<Counters>,
    link: link::LinkSwitch,
    /// Our server's JID, the target of the network-change probe.
    server: Jid,
    /// The keepalives in the foreground and in the background.
    keepalives: (Duration, Duration),
    /// The password logins use (and the one a rotation announced).
    password: NetworkPassword,
    /// How this session logged in (no tap), for [`Session::evict`].
    config: SessionConfig,
}

/// What the session has counted since it started (see [`Session::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Logins attempted after the first one (successful or not).
    pub relogins: u64,
    /// Stanzas that arrived but could not be parsed; each was answered (iq get/set) or dropped.
    pub invalid_stanzas: u64,
    /// Of those, the ones skipped for going over the reader's depth or size limit
    /// ([`MAX_ELEMENT_DEPTH`], [`MAX_ELEMENT_BYTES`]).
    pub over_limit_stanzas: u64,
    /// Connections cut by [`Session::network_changed`] because the server did not answer.
    pub links_cut: u64,
    /// XEP-0352 client states (`<active/>`, `<inactive/>`) sent to a server that advertised
    /// `urn:xmpp:csi:0` (each [`Session::set_foreground`], and again on every new or resumed
    /// stream once one was set).
    pub client_states_sent: u64,
}

#[derive(Debug, Default)]
struct Counters {
    relogins: AtomicU64,
    invalid_stanzas: AtomicU64,
    over_limit_stanzas: AtomicU64,
    links_cut: AtomicU64,
    /// Shared with the stream worker, which counts the client states it queued (set once the
    /// stream exists).
    client_states: std::sync::OnceLock<Arc<AtomicU64>>,
}

impl Counters {
    fn snapshot(&self) -> SessionStats {
        SessionStats {
            relogins: self.relogins.load(Ordering::Relaxed),
            invalid_stanzas: self.invalid_stanzas.load(Ordering::Relaxed),
            over_limit_stanzas: self.over_limit_stanzas.load(Ordering::Relaxed),
            links_cut: self.links_cut.load(Ordering::Relaxed),
            client_states_sent: self
                .client_states
                .get()
                .map_or(0, |c| c.load(Ordering::Relaxed)),
        }
    }
}

/// Backoff shared between the reconnect attempts and [`Session::network_changed`].
#[derive(Debug, Default)]
struct ReconnectShared {
    state: Mutex<ReconnectState>,
    /// Woken by `network_changed`: a waiting attempt starts at once.
    wake: Notify,
}

#[derive(Debug, Default)]
struct ReconnectState {
    backoff: Backoff,
    /// When the connection in use was handed to the stream.
    up_since: Option<Instant>,
    /// The keepalive for the next connection, when the app set one ([`Session::set_foreground`]).
    keepalive: Option<Duration>,
}

impl ReconnectShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReconnectState> {
        self.state.locked()
    }
}

/// A handle to a running session. Cheap to clone; the session ends when [`Session::close`] is called
/// or when the last handle is dropped.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("state", &*self.shared.state.borrow())
            .finish()
    }
}

/// Depth of tokio-xmpp's internal queues and of our inbound channel.
const QUEUE_DEPTH: usize = 256;

impl Session {
    /// Logs in and starts the session task on the current tokio runtime.
    ///
    /// Returns once the stream is online, or with a typed error: [`ErrorKind::Auth`] for a wrong
    /// password, [`ErrorKind::Tls`] for an untrusted certificate, [`ErrorKind::Unreachable`] when no
    /// TCP connection could be made, [`ErrorKind::Timeout`] when the attempt took longer than
    /// `connect_timeout`. The receiver yields [`Inbound`] items until the session ends.
    pub async fn connect(config: SessionConfig) -> Result<(Session, mpsc::Receiver<Inbound>)> {
        let tls = client_config(&config.trust)?;
        let domain = config.jid.domain().as_str().to_owned();
        let connector = PmnConnector::new(&domain, &config.server, tls);
        let jid = Jid::from(config.jid.clone());
        let timeouts = Timeouts {
            read_timeout: config.keepalive,
            response_timeout: config.probe_timeout,
        };
        tracing::debug!(%jid, "logging in");
        let first = login_bounded(
            &connector,
            &jid,
            &config.password,
            timeouts,
            config.connect_timeout,
        )
        .await?;

        let (failures_tx, failures_rx) = mpsc::unbounded_channel();
        let reconnect = Arc::new(ReconnectShared::default());
        reconnect.lock().up_since = Some(Instant::now());
        let stats = Arc::new(Counters::default());
        let link = connector.link_switch().clone();
        let password = NetworkPassword::new(config.password.clone());
        let reconnector = Reconnector {
            first: Some(first),
            connector,
            jid,
            password: password.clone(),
            timeouts,
            connect_timeout: config.connect_timeout,
            failures: failures_tx,
            shared: reconnect.clone(),
            stats: stats.clone(),
        };
        let stream = StanzaStream::new(Box::new(reconnector.into_fn()), QUEUE_DEPTH);
        let _ = stats.client_states.set(stream.client_states_queued());

        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connecting);
        let (inbound_tx, inbound_rx) = mpsc::channel(QUEUE_DEPTH);
        let task = SessionTask {
            stream,
            commands: commands_rx,
            failures: failures_rx,
            inbound: inbound_tx,
            state: state_tx,
            pending: HashMap::new(),
            tap: config.outbound_tap.clone(),
            own_jid: config.jid.clone(),
            stats: stats.clone(),
        };
        let mut online = state_rx.clone();
        tokio::spawn(task.run());

        // The first login already succeeded; wait for resource binding.
        let bound = tokio::time::timeout(config.connect_timeout, async {
            loop {
                match &*online.borrow_and_update() {
                    ConnectionState::Online { .. } => return Ok(()),
                    ConnectionState::Offline { error } => {
                        return Err(error.clone().unwrap_or_else(|| {
                            Error::new(ErrorKind::NotConnected, "session closed while binding")
                        }))
                    }
                    _ => {}
                }
                if online.changed().await.is_err() {
                    return Err(Error::new(ErrorKind::Internal, "session task ended"));
                }
            }
        })
        .await;
        let session = Session {
            shared: Arc::new(Shared {
                commands: commands_tx,
                state: state_rx,
                next_id: AtomicU64::new(1),
                id_prefix: format!("pmn{:08x}", rand::random::<u32>()),
                reconnect,
                stats,
                link,
                server: xmpp_parsers::jid::BareJid::from_parts(None, config.jid.domain()).into(),
                keepalives: (config.keepalive, config.background_keepalive),
                password,
                config: SessionConfig {
                    outbound_tap: None,
                    ..config.clone()
                },
            }),
        };
        match bound {
            Ok(Ok(())) => Ok((session, inbound_rx)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                session.close().await;
                Err(Error::new(
                    ErrorKind::Timeout,
                    "server did not bind a resource in time",
                ))
            }
        }
    }

    /// Queues a stanza for sending. Fails only when the session has ended.
    pub fn send(&self, stanza: impl Into<Stanza>) -> Result<()> {
        self.shared
            .commands
            .send(Command::Send(stanza.into()))
            .map_err(|_| not_connected())
    }

    /// Sends an iq `get` or `set` and waits at most `timeout` for its answer.
    ///
    /// Errors say whether the request left ([`CallOutcome`]): `NotRun` when the session had ended
    /// before it was queued, `Unknown` for anything after (deadline, reset, end of the session).
    /// The iq's `id` is replaced by a fresh one. A response is accepted only from the JID the
    /// request was sent to, so another entity cannot answer in its place.
    pub async fn request(&self, mut iq: Iq, timeout: Duration) -> Result<IqReply> {
        match &mut iq {
            Iq::Get { id, .. } | Iq::Set { id, .. } => *id = self.next_id(),
            _ => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "only iq get/set can be requests",
                ))
            }
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        self.shared
            .commands
            .send(Command::Request {
                iq,
                deadline,
                reply: reply_tx,
            })
            .map_err(|_| not_connected())?;
        // From here on the request may have left: whatever fails it (its deadline, a reset, the
        // session ending) cannot tell whether the peer acted on it.
        match reply_rx.await {
            Ok(reply) => reply.map_err(|e| e.with_outcome(CallOutcome::Unknown)),
            Err(_) => Err(not_connected().with_outcome(CallOutcome::Unknown)),
        }
    }

    /// A fresh stanza id, unique within this session.
    pub fn next_id(&self) -> String {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.shared.id_prefix)
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.shared.state.borrow().clone()
    }

    /// A receiver that sees every change of the connection state.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.clone()
    }

    /// The full JID the server bound, while online.
    pub fn jid(&self) -> Option<FullJid> {
        match &*self.shared.state.borrow() {
            ConnectionState::Online { jid } => Some(jid.clone()),
            _ => None,
        }
    }

    /// What the session has counted so far: reconnect logins, refused stanzas, cut links.
    pub fn stats(&self) -> SessionStats {
        self.shared.stats.snapshot()
    }

    /// Tells the session that the device's network changed (Wi-Fi to mobile, a new address, the
    /// link came back). Call it from the platform's connectivity callback.
    ///
    /// The reconnect backoff starts over and a waiting reconnect attempt starts at once. When the
    /// session believes it is online, the server is probed; if it does not answer within
    /// [`NETWORK_CHANGE_PROBE`] the connection is cut and a new one made, which resumes the session
    /// (XEP-0198) without losing stanzas. Returns once that is decided; it never fails.
    pub async fn network_changed(&self) {
        self.shared.reconnect.lock().backoff.reset();
        self.shared.reconnect.wake.notify_waiters();
        if !matches!(self.state(), ConnectionState::Online { .. }) {
            return;
        }
        let ping = Iq::from_get(String::new(), xmpp_parsers::ping::Ping)
            .with_to(self.shared.server.clone());
        match self.request(ping, NETWORK_CHANGE_PROBE).await {
            // Any answer, even an error, proves the link carries data both ways.
            Ok(_) => tracing::debug!("network changed; the connection still works"),
            Err(e) if e.kind() == ErrorKind::Timeout => {
                if self.shared.link.cut() {
                    self.shared.stats.links_cut.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("network changed and the server did not answer; reconnecting");
                }
            }
            Err(e) => tracing::debug!(error = %e, "network changed; probe ended"),
        }
    }

    /// Tells the session whether the app is in the foreground. Call it from the platform's
    /// lifecycle (Android `ProcessLifecycleOwner` `onStart`/`onStop`, iOS
    /// `didBecomeActive`/`didEnterBackground`).
    ///
    /// - XEP-0352: the server is told `<active/>` or `<inactive/>` when it advertised
    ///   `urn:xmpp:csi:0` (and told again on every new or resumed stream): an inactive client's
    ///   server may hold back what is not urgent (presence, headline events) until it is active
    ///   again or something urgent comes (iq requests and answers always go at once, so calls
    ///   keep working). Counted in [`SessionStats::client_states_sent`].
    /// - Keepalive: [`SessionConfig::background_keepalive`] in the background,
    ///   [`SessionConfig::keepalive`] in the foreground, from the next connection on.
    ///
    /// Never fails; does nothing once the session has ended.
    pub fn set_foreground(&self, foreground: bool) {
        let (fore, back) = self.shared.keepalives;
        self.shared.reconnect.lock().keepalive = Some(if foreground { fore } else { back });
        if self
            .shared
            .commands
            .send(Command::SetForeground(foreground))
            .is_ok()
        {
            tracing::debug!(foreground, "app lifecycle changed");
        }
    }

    /// The network password this session logs in with, as it changes: after a rotation this
    /// device made ([`Session::change_password`]) or learnt of (a login with the announced password
    /// succeeded, or the rotating device confirmed it). The app stores the new value where it keeps
    /// the password, so its next start logs in.
    pub fn watch_password(&self) -> watch::Receiver<String> {
        self.shared.password.watch()
    }

    /// Remembers `next` as the password another device of the network is about to set: when the
    /// server refuses the current one, the next login tries `next` (and keeps it if it works).
    pub(crate) fn offer_password(&self, next: String) {
        self.shared.password.offer(next);
    }

    /// The rotating device confirmed that the announced `password` is now the account's.
    pub(crate) fn confirm_password(&self, password: &str) -> bool {
        self.shared.password.promote(Some(password))
    }

    /// Changes the account's password on the server (XEP-0077 §3.3) and logs in with it from now
    /// on. The server closes the account's other sessions (Prosody does, with `reset`): every
    /// other device must hold the new password first ([`crate::core::e2e::E2eEndpoint::rotate_network_password`]
    /// does that). Errors: the server's refusal as a typed error (`Forbidden` when it does not
    /// allow changes or has no XEP-0077, `NotConnected`, `Timeout`).
    pub async fn change_password(&self, new: &str, timeout: Duration) -> Result<()> {
        let Some(jid) = self.jid() else {
            return Err(not_connected());
        };
        let Some(node) = jid.node() else {
            return Err(Error::new(
                ErrorKind::Config,
                "the network identifier has no local part",
            ));
        };
        if new.is_empty() {
            return Err(Error::new(ErrorKind::BadParams, "an empty password"));
        }
        let query = Element::builder("query", NS_REGISTER)
            .append(
                Element::builder("username", NS_REGISTER)
                    .append(node.as_str())
                    .build(),
            )
            .append(
                Element::builder("password", NS_REGISTER)
                    .append(new)
                    .build(),
            )
            .build();
        let iq = Iq::Set {
            from: None,
            to: Some(self.shared.server.clone()),
            id: String::new(),
            payload: query,
        };
        match self.request(iq, timeout).await? {
            IqReply::Result(_) => {
                self.shared.password.set(new.to_owned());
                tracing::info!("the network password was changed on the server");
                Ok(())
            }
            IqReply::Error(error) => {
                let kind = match error.defined_condition {
                    DefinedCondition::NotAllowed
                    | DefinedCondition::Forbidden
                    | DefinedCondition::NotAuthorized
                    // No in-band password change on this server: as far as we can tell, no.
                    | DefinedCondition::FeatureNotImplemented
                    | DefinedCondition::ServiceUnavailable => ErrorKind::Forbidden,
                    _ => ErrorKind::Protocol,
                };
                Err(Error::new(
                    kind,
                    format!(
                        "the server refused the password change ({:?})",
                        error.defined_condition
                    ),
                ))
            }
        }
    }

    /// Ends the session of another resource of this account: logs in briefly as `device` (same
    /// server, current password), which makes the server close the session holding that resource
    /// (`conflict`; Prosody's default `kick_old`, ejabberd's only policy), then leaves. Used after
    /// a password rotation: servers that keep the other sessions open (ejabberd) would otherwise
    /// leave a revoked device connected until it drops.
    pub async fn evict(&self, device: &FullJid) -> Result<()> {
        let own = self.jid().ok_or_else(not_connected)?;
        if device.to_bare() != own.to_bare() || *device == own {
            return Err(Error::new(
                ErrorKind::BadParams,
                "only another resource of this account can be evicted",
            ));
        }
        let config = SessionConfig {
            jid: device.clone(),
            password: self.shared.password.current(),
            ..self.shared.config.clone()
        };
        let (session, _inbound) = Box::pin(Session::connect(config)).await?;
        session.close().await;
        tracing::info!(%device, "evicted a session of this account");
        Ok(())
    }

    /// Ends the session: sends unavailable presence (the server does that for us on stream close),
    /// closes the stream and fails pending requests. Idempotent.
    pub async fn close(&self) {
        let (ack_tx, ack_rx) = oneshot::channel();
        if self.shared.commands.send(Command::Close(ack_tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), ack_rx).await;
        }
    }
}

fn not_connected() -> Error {
    Error::new(ErrorKind::NotConnected, "the session has ended")
}

/// Classifies a login failure; `fatal` ones are not retried.
fn classify(e: &tokio_xmpp::Error) -> Error {
    use tokio_xmpp::Error as X;
    match e {
        X::Auth(AuthError::Fail(cond)) => Error::new(
            ErrorKind::Auth,
            format!("server refused the credentials ({cond:?})"),
        ),
        X::Auth(other) => Error::new(ErrorKind::Auth, other.to_string()),
        X::Connection(inner) => {
            let inner: &(dyn std::error::Error + 'static) = &**inner;
            match inner.downcast_ref::<ConnectorError>() {
                Some(c) => Error::new(ErrorKind::Tls, c.to_string()),
                None => Error::new(ErrorKind::Unreachable, inner.to_string()),
            }
        }
        X::Protocol(ProtocolError::NoTls) => {
            Error::new(ErrorKind::Tls, "server does not offer TLS")
        }
        X::Io(io) => Error::new(ErrorKind::Unreachable, io.to_string()),
        X::Disconnected => Error::new(
            ErrorKind::Unreachable,
            "server closed the connection during login",
        ),
        other => Error::new(ErrorKind::Protocol, other.to_string()),
    }
}

fn is_fatal(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Auth | ErrorKind::Tls)
}

async fn login(
    connector: &PmnConnector,
    jid: &Jid,
    password: &str,
    timeouts: Timeouts,
) -> Result<Connection, tokio_xmpp::Error> {
    let may_bind = !connector.binding_refused();
    match login_once(connector, jid, password, timeouts, may_bind).await {
        Err(LoginError {
            error: tokio_xmpp::Error::Auth(AuthError::Fail(cond)),
            guessed_binding: true,
        }) => {
            // The server offered -PLUS without saying which binding it has (XEP-0440), and
            // refused ours: ejabberd 23.01 on TLS 1.3 (it has only tls-unique). Once more without
            // binding; a wrong password fails again, and is then reported as such.
            tracing::info!(
                ?cond,
                "SCRAM-PLUS with tls-exporter refused; retrying without channel binding"
            );
            let conn = login_once(connector, jid, password, timeouts, false)
                .await
                .map_err(|e| e.error)?;
            connector.note_binding_refused();
            Ok(conn)
        }
        other => other.map_err(|e| e.error),
    }
}

struct LoginError {
    error: tokio_xmpp::Error,
    /// The attempt bound to a channel the server never said it supports.
    guessed_binding: bool,
}

impl<E: Into<tokio_xmpp::Error>> From<E> for LoginError {
    fn from(error: E) -> Self {
        LoginError {
            error: error.into(),
            guessed_binding: false,
        }
    }
}

async fn login_once(
    connector: &PmnConnector,
    jid: &Jid,
    password: &str,
    timeouts: Timeouts,
    may_bind: bool,
) -> Result<Connection, LoginError> {
    let username = jid
        .node()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    let (stream, binding) = connector
        .connect(jid, xmpp_parsers::ns::JABBER_CLIENT, timeouts)
        .await?;
    let (features, stream): (_, XmppStream<_>) = stream.recv_features().await?;
    let binding = if may_bind {
        choose_channel_binding(binding, &features)
    } else {
        ChannelBinding::None
    };
    let guessed_binding =
        matches!(binding, ChannelBinding::TlsExporter(_)) && features.sasl_cb.is_none();
    let creds = Credentials::default()
        .with_username(username)
        .with_password(password)
        .with_channel_binding(binding);
    let stream = tokio_xmpp::client_login(stream, features.sasl_mechanisms, creds)
        .await
        .map_err(|error| LoginError {
            error,
            guessed_binding,
        })?;
    let stream = stream
        .send_header(StreamHeader {
            to: Some(std::borrow::Cow::Borrowed(jid.domain().as_str())),
            from: None,
            id: None,
        })
        .await?;
    let (features, stream): (_, XmppStream<_>) = stream.recv_features().await?;
    Ok(Connection {
        stream: stream.box_stream(),
        features,
        identity: jid.clone(),
    })
}

/// Which channel binding SCRAM uses, given the one this TLS connection can give (`tls-exporter`
/// on TLS 1.3, none on TLS 1.2) and what the server offers.
///
/// - The server offers no `-PLUS` mechanism (Prosody 0.12 on TLS 1.3: it knows only
///   `tls-unique`): plain SCRAM with the `y` flag, which makes a server that does support
///   binding refuse the login if someone stripped `-PLUS` from the list.
/// - It offers `-PLUS` and advertises (XEP-0440) `tls-exporter`: bind with it.
/// - It advertises XEP-0440 without `tls-exporter`: no binding (`n`).
/// - It offers `-PLUS` and advertises nothing: bind with `tls-exporter`, and [`login`] retries
///   once without binding if that is refused — ejabberd 23.01 does exactly this on TLS 1.3 (it
///   implements only `tls-unique`) and every login used to fail as "wrong password". The retry
///   gives up binding only against a man in the middle who already holds a certificate the
///   device trusts for the server.
fn choose_channel_binding(
    ours: ChannelBinding,
    features: &xmpp_parsers::stream_features::StreamFeatures,
) -> ChannelBinding {
    use xmpp_parsers::sasl_cb::Type;
    let offers_plus = features
        .sasl_mechanisms
        .iter()
        .any(|m| m.ends_with("-PLUS"));
    let have = !matches!(ours, ChannelBinding::None | ChannelBinding::Unsupported);
    match (&features.sasl_cb, offers_plus, have) {
        (_, _, false) => ChannelBinding::None,
        (_, false, true) => ChannelBinding::Unsupported,
        (Some(cb), true, true) if !cb.types.contains(&Type::TlsExporter) => ChannelBinding::None,
        _ => ours,
    }
}

async fn login_bounded(
    connector: &PmnConnector,
    jid: &Jid,
    password: &str,
    timeouts: Timeouts,
    limit: Duration,
) -> Result<Connection> {
    match tokio::time::timeout(limit, login(connector, jid, password, timeouts)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let err = classify(&e);
            tracing::warn!(%jid, error = %err, "login failed");
            Err(err)
        }
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("login did not complete within {limit:?}"),
        )),
    }
}

/// [`login_bounded`] with the current password and, when the server refuses it and another
/// device announced a new one (a rotation, [`Session::offer_password`]), with that one, which then
/// becomes the current password.
async fn login_rotating(
    connector: &PmnConnector,
    jid: &Jid,
    password: &NetworkPassword,
    timeouts: Timeouts,
    limit: Duration,
) -> Result<Connection> {
    match login_bounded(connector, jid, &password.current(), timeouts, limit).await {
        Err(e) if e.kind() == ErrorKind::Auth => {
            let Some(next) = password.next() else {
                return Err(e);
            };
            let conn = login_bounded(connector, jid, &next, timeouts, limit).await?;
            if password.promote(Some(&next)) {
                tracing::info!(%jid, "logged in with the network's new password");
            }
            Ok(conn)
        }
        other => other,
    }
}

/// Produces connections for the [`StanzaStream`]: first the one [`Session::connect`] already made,
/// then fresh logins with backoff ([`Backoff`]: a connection that drops soon after it was made
/// backs off like a failed login, so no server answer can make us log in in a tight loop). A
/// fatal failure is reported and the slot is parked rather than dropped: tokio-xmpp 6's worker
/// panics (inside its own task) when a slot is dropped.
struct Reconnector {
    first: Option<Connection>,
    connector: PmnConnector,
    jid: Jid,
    password: NetworkPassword,
    timeouts: Timeouts,
    connect_timeout: Duration,
    failures: mpsc::UnboundedSender<Error>,
    shared: Arc<ReconnectShared>,
    stats: Arc<Counters>,
}

/// Waits `delay`, or less if the app reports a network change; false when the stream went away.
async fn wait_or_wake(
    shared: &ReconnectShared,
    slot: &mut oneshot::Sender<Connection>,
    delay: Duration,
) -> bool {
    if delay.is_zero() {
        return !slot.is_closed();
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shared.wake.notified() => true,
        _ = slot.closed() => false,
    }
}

impl Reconnector {
    fn into_fn(
        mut self,
    ) -> impl FnMut(Option<String>, oneshot::Sender<Connection>) + Send + 'static {
        move |_preferred_location, slot| {
            if let Some(first) = self.first.take() {
                let _ = slot.send(first);
                return;
            }
            let connector = self.connector.clone();
            let jid = self.jid.clone();
            let password = self.password.clone();
            let mut timeouts = self.timeouts;
            if let Some(keepalive) = self.shared.lock().keepalive {
                timeouts.read_timeout = keepalive;
            }
            let limit = self.connect_timeout;
            let failures = self.failures.clone();
            let shared = self.shared.clone();
            let stats = self.stats.clone();
            let mut slot = slot;
            tokio::spawn(async move {
                let delay = {
                    let mut state = shared.lock();
                    let up_since = state.up_since.take();
                    state.backoff.next_delay(up_since, Instant::now())
                };
                if !delay.is_zero() {
                    tracing::debug!(?delay, "connection lost soon after login; backing off");
                }
                if !wait_or_wake(&shared, &mut slot, delay).await {
                    return;
                }
                loop {
                    stats.relogins.fetch_add(1, Ordering::Relaxed);
                    match login_rotating(&connector, &jid, &password, timeouts, limit).await {
                        Ok(conn) => {
                            shared.lock().up_since = Some(Instant::now());
                            let _ = slot.send(conn);
                            return;
                        }
                        Err(e) => {
                            let fatal = is_fatal(&e);
                            if failures.send(e).is_err() || fatal {
                                // Parked until the stream worker goes away (see above).
                                slot.closed().await;
                                return;
                            }
                            let delay = shared.lock().backoff.next_delay(None, Instant::now());
                            if !wait_or_wake(&shared, &mut slot, delay).await {
                                return;
                            }
                        }
                    }
                }
            });
        }
    }
}

struct Pending {
    to: Option<Jid>,
    deadline: Instant,
    reply: oneshot::Sender<Result<IqReply>>,
}

struct SessionTask {
    stream: StanzaStream,
    commands: mpsc::UnboundedReceiver<Command>,
    failures: mpsc::UnboundedReceiver<Error>,
    inbound: mpsc::Sender<Inbound>,
    state: watch::Sender<ConnectionState>,
    pending: HashMap<String, Pending>,
    tap: Option<mpsc::UnboundedSender<Stanza>>,
    own_jid: FullJid,
    stats: Arc<Counters>,
}

impl SessionTask {
    async fn run(mut self) {
        let mut sweep = tokio::time::interval(Duration::from_millis(250));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut close_ack = None;
        let mut fatal = None;
        loop {
            tokio::select! {
                event = self.stream.next() => match event {
                    Some(event) => {
                        if !self.on_event(event).await {
                            break;
                        }
                    }
                    None => {
                        fatal = Some(Error::new(ErrorKind::NotConnected, "stream ended"));
                        break;
                    }
                },
                command = self.commands.recv() => match command {
                    Some(Command::Send(stanza)) => self.transmit(stanza).await,
                    Some(Command::Request { iq, deadline, reply }) => {
                        let id = match &iq {
                            Iq::Get { id, .. } | Iq::Set { id, .. } => id.clone(),
                            _ => continue,
                        };
                        let to = iq.to().cloned();
                        self.pending.insert(id, Pending { to, deadline, reply });
                        self.transmit(Stanza::Iq(iq)).await;
                    }
                    Some(Command::Close(ack)) => {
                        close_ack = Some(ack);
                        break;
                    }
                    // Sent now if the server advertised CSI, and on every later stream.
                    Some(Command::SetForeground(foreground)) => self.stream.set_client_state(foreground),
                    // Every handle is gone: nobody can use this session any more.
                    None => break,
                },
                Some(error) = self.failures.recv() => {
                    if is_fatal(&error) {
                        fatal = Some(error);
                        break;
                    }
                    self.state.send_replace(ConnectionState::Reconnecting { reason: error.to_string() });
                },
                _ = sweep.tick() => self.expire(Instant::now()),
            }
        }
        self.fail_all(|| Error::new(ErrorKind::NotConnected, "the session has ended"));
        self.state
            .send_replace(ConnectionState::Offline { error: fatal });
        drop(self.inbound);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.stream.close()).await;
        if let Some(ack) = close_ack {
            let _ = ack.send(());
        }
    }

    async fn transmit(&mut self, stanza: Stanza) {
        if let Some(tap) = &self.tap {
            let copy = match &stanza {
                Stanza::Iq(iq) => Stanza::Iq(iq.clone()),
                Stanza::Message(m) => Stanza::Message(m.clone()),
                Stanza::Presence(p) => Stanza::Presence(p.clone()),
            };
            let _ = tap.send(copy);
        }
        // The token only tracks delivery to the server; replies are matched by id.
        let _token = self.stream.send(Box::new(stanza)).await;
    }

    /// Returns false when the role layer is gone and the session should end.
    async fn on_event(&mut self, event: Event) -> bool {
        match event {
            Event::Stream(StreamEvent::Reset { bound_jid, .. }) => {
                // A new stream: responses to requests sent on the old one will never come.
                self.fail_all(|| {
                    Error::new(
                        ErrorKind::NotConnected,
                        "connection was reset before the answer arrived",
                    )
                });
                let jid = match bound_jid.try_into_full() {
                    Ok(jid) => jid,
                    Err(_) => self.own_jid.clone(),
                };
                tracing::info!(%jid, "online");
                self.state
                    .send_replace(ConnectionState::Online { jid: jid.clone() });
                self.inbound
                    .send(Inbound::Online {
                        jid,
                        resumed: false,
                    })
                    .await
                    .is_ok()
            }
            Event::Stream(StreamEvent::Suspended) => {
                tracing::info!("connection lost, reconnecting");
                self.state.send_replace(ConnectionState::Reconnecting {
                    reason: "connection lost".into(),
                });
                true
            }
            Event::Stream(StreamEvent::Resumed) => {
                let jid = self.own_jid.clone();
                self.state
                    .send_replace(ConnectionState::Online { jid: jid.clone() });
                self.inbound
                    .send(Inbound::Online { jid, resumed: true })
                    .await
                    .is_ok()
            }
            Event::Stanza(Stanza::Iq(iq)) if matches!(iq, Iq::Result { .. } | Iq::Error { .. }) => {
                self.on_response(iq);
                true
            }
            Event::Invalid(invalid) => {
                self.on_invalid(invalid).await;
                true
            }
            Event::Stanza(stanza) => self
                .inbound
                .send(Inbound::Stanza(Box::new(stanza)))
                .await
                .is_ok(),
        }
    }

    /// A stanza the reader could not parse, or skipped for going over its limits. The stream is
    /// intact (tokio-xmpp counted the stanza for XEP-0198, so it is never replayed): answer a
    /// request with an error, fail our own request it answers, and drop the rest with a count.
    async fn on_invalid(&mut self, invalid: InvalidStanza) {
        self.stats.invalid_stanzas.fetch_add(1, Ordering::Relaxed);
        if invalid.over_limit {
            self.stats
                .over_limit_stanzas
                .fetch_add(1, Ordering::Relaxed);
        }
        let from = invalid.from.as_deref().and_then(|f| f.parse::<Jid>().ok());
        tracing::warn!(
            stanza = invalid.name,
            from = invalid.from.as_deref().unwrap_or(""),
            over_limit = invalid.over_limit,
            error = %invalid.error,
            "refused a stanza that could not be read"
        );
        if invalid.name != "iq" {
            return;
        }
        let Some(id) = invalid.id else { return };
        match invalid.type_.as_deref() {
            Some("get") | Some("set") => {
                // RFC 6120 §8.3.3: policy-violation for a stanza over a limit, else bad-request.
                let Some(to) = from else { return };
                let condition = if invalid.over_limit {
                    DefinedCondition::PolicyViolation
                } else {
                    DefinedCondition::BadRequest
                };
                let text = if invalid.over_limit {
                    "stanza nested too deep or too large for this device"
                } else {
                    "stanza could not be parsed"
                };
                let error = StanzaError::new(ErrorType::Modify, condition, "en", text);
                self.transmit(Stanza::Iq(Iq::from_error(id, error).with_to(to)))
                    .await;
            }
            Some("result") | Some("error") => {
                // Only the addressee may fail our request, as for well-formed answers.
                let matches = self.pending.get(&id).is_some_and(|p| {
                    response_from_matches(p.to.as_ref(), from.as_ref(), &self.own_jid)
                });
                if matches {
                    if let Some(p) = self.pending.remove(&id) {
                        let _ = p.reply.send(Err(Error::new(
                            ErrorKind::Protocol,
                            format!("unreadable answer: {}", invalid.error),
                        )));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_response(&mut self, iq: Iq) {
        let (id, from, reply) = match iq {
            Iq::Result {
                id, from, payload, ..
            } => (id, from, IqReply::Result(payload)),
            Iq::Error {
                id, from, error, ..
            } => (id, from, IqReply::Error(error)),
            _ => return,
        };
        let Some(pending) = self.pending.get(&id) else {
            tracing::debug!(%id, "response to no pending request (late or unsolicited), dropped");
            return;
        };
        if !response_from_matches(pending.to.as_ref(), from.as_ref(), &self.own_jid) {
            tracing::warn!(%id, ?from, to = ?pending.to, "response from the wrong JID, ignored");
            return;
        }
        if let Some(pending) = self.pending.remove(&id) {
            let _ = pending.reply.send(Ok(reply));
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now || p.reply.is_closed())
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let to = p.to.map(|j| j.to_string()).unwrap_or_default();
                let _ = p.reply.send(Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer from {to} in time"),
                )));
            }
        }
    }

    fn fail_all(&mut self, error: impl Fn() -> Error) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(error()));
        }
    }
}

/// RFC 6120 §8.1.2.1: a response comes from the entity the request went to; a request without `to`
/// goes to our own account, whose answers may carry no `from`, our bare JID or our full JID.
fn response_from_matches(to: Option<&Jid>, from: Option<&Jid>, own: &FullJid) -> bool {
    let own_bare = own.to_bare();
    let is_own_bare = |j: &Jid| j.try_as_full().is_err() && j.to_bare() == own_bare;
    let is_own_full = |j: &Jid| j.try_as_full().is_ok_and(|f| f == own);
    match (to, from) {
        (Some(to), Some(from)) => to == from || (is_own_bare(to) && is_own_full(from)),
        (Some(to), None) => is_own_bare(to),
        (None, None) => true,
        (None, Some(from)) => is_own_bare(from) || is_own_full(from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        s.parse().expect("test JID")
    }

    #[test]
    fn response_must_come_from_the_addressee() {
        let own: FullJid = "home@home.test/phone".parse().expect("jid");
        let tv = jid("home@home.test/tv");
        assert!(response_from_matches(Some(&tv), Some(&tv), &own));
        assert!(!response_from_matches(
            Some(&tv),
            Some(&jid("home@home.test/evil")),
            &own
        ));
        assert!(!response_from_matches(Some(&tv), None, &own));
        assert!(response_from_matches(None, None, &own));
        assert!(response_from_matches(
            None,
            Some(&jid("home@home.test")),
            &own
        ));
        assert!(!response_from_matches(
            None,
            Some(&jid("stranger@home.test")),
            &own
        ));
    }

    fn features(
        mechanisms: &[&str],
        cb: Option<&[xmpp_parsers::sasl_cb::Type]>,
    ) -> xmpp_parsers::stream_features::StreamFeatures {
        xmpp_parsers::stream_features::StreamFeatures {
            sasl_mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
            sasl_cb: cb.map(|types| xmpp_parsers::sasl_cb::SaslChannelBinding {
                types: types.to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn channel_binding_follows_what_the_server_offers() {
        use xmpp_parsers::sasl_cb::Type;
        let exporter = || ChannelBinding::TlsExporter(vec![7; 32]);
        let plus = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"];
        let no_plus = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"];
        // No -PLUS offered (Prosody 0.12 on TLS 1.3): SCRAM with the 'y' flag.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&no_plus, None)),
            ChannelBinding::Unsupported
        ));
        // -PLUS and XEP-0440 listing tls-exporter: bind.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&plus, Some(&[Type::TlsExporter]))),
            ChannelBinding::TlsExporter(_)
        ));
        // XEP-0440 without tls-exporter: no binding.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&plus, Some(&[Type::TlsUnique]))),
            ChannelBinding::None
        ));
        // -PLUS, nothing advertised (ejabberd 23.01): bind, and login() retries without.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&plus, None)),
            ChannelBinding::TlsExporter(_)
        ));
        // TLS 1.2: nothing to bind with.
        assert!(matches!(
            choose_channel_binding(ChannelBinding::None, &features(&plus, None)),
            ChannelBinding::None
        ));
    }

    #[test]
    fn auth_and_tls_failures_are_fatal_io_is_not() {
        let auth = classify(&tokio_xmpp::Error::Auth(AuthError::NoMechanism));
        assert_eq!(auth.kind(), ErrorKind::Auth);
        assert!(is_fatal(&auth));
        let tls = classify(&tokio_xmpp::Error::Connection(Box::new(
            ConnectorError::Tls("bad cert".into()),
        )));
        assert_eq!(tls.kind(), ErrorKind::Tls);
        assert!(is_fatal(&tls));
        let io = classify(&tokio_xmpp::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert_eq!(io.kind(), ErrorKind::Unreachable);
        assert!(!is_fatal(&io));
    }
}
