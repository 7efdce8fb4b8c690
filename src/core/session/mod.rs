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
//!
//! This file holds the [`Session`] handle and its configuration; each job has its own file:
//! `task.rs` the session task (the run loop, routing), `iq_tracker.rs` the one iq tracker (also
//! used by end-to-end tunnels), `login.rs` a login attempt and its typed failures,
//! `reconnect.rs` the reconnections with backoff, and `connector.rs`, `tls.rs`, `link.rs`,
//! `backoff.rs`, `password.rs` the pieces under those.

mod backoff;
mod connector;
pub(crate) mod iq_tracker;
mod link;
mod login;
mod password;
mod reconnect;
mod task;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_xmpp::stanzastream::StanzaStream;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

pub use backoff::Backoff;
pub use connector::{ConnectorError, PmnConnector, ServerAddress};
pub use tls::{client_config, ServerTrust};
pub use tokio_xmpp::xmlstream::{MAX_ELEMENT_BYTES, MAX_ELEMENT_DEPTH};

use crate::core::error::{CallOutcome, Error, ErrorKind, Result};
use iq_tracker::IqTracker;
use login::login_bounded;
use password::NetworkPassword;
use reconnect::{ReconnectShared, Reconnector};
use task::{Command, SessionTask};

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

    /// This configuration with every wait cut to [`FAR_FUTURE`](crate::core::clock::FAR_FUTURE).
    ///
    /// The stream's reader re-arms its keepalive timer as `now + keepalive` after every read, a
    /// sum that panics inside the session task when it does not fit the clock; `Duration::MAX`
    /// is the natural way for a caller to say "never probe", so it is capped here, once, for
    /// every layer below.
    fn within_clock(mut self) -> Self {
        use crate::core::clock::FAR_FUTURE;
        for wait in [
            &mut self.connect_timeout,
            &mut self.keepalive,
            &mut self.probe_timeout,
            &mut self.background_keepalive,
        ] {
            *wait = (*wait).min(FAR_FUTURE);
        }
        self
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
    /// New streams the server bound (the first login included): each one started without the
    /// server's memory of an earlier stream, so presence and pending requests began afresh.
    pub streams_started: u64,
    /// Streams resumed by XEP-0198 after a lost connection (`<resumed/>`): nothing was lost.
    /// A resume the server refused counts in [`SessionStats::streams_started`] instead.
    pub streams_resumed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    relogins: AtomicU64,
    invalid_stanzas: AtomicU64,
    over_limit_stanzas: AtomicU64,
    links_cut: AtomicU64,
    streams_started: AtomicU64,
    streams_resumed: AtomicU64,
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
            streams_started: self.streams_started.load(Ordering::Relaxed),
            streams_resumed: self.streams_resumed.load(Ordering::Relaxed),
        }
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
        let config = config.within_clock();
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
            pending: IqTracker::default(),
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
            .send(Command::Send(Box::new(stanza.into())))
            .map_err(|_| not_connected())
    }

    /// Sends an iq `get` or `set` and waits at most `timeout` for its answer.
    ///
    /// Errors say whether the request left ([`CallOutcome`]): `NotRun` when the session had ended
    /// before it was queued, `Unknown` for anything after (deadline, reset, end of the session).
    /// The iq's `id` is replaced by a fresh one. A response is accepted only from the JID the
    /// request was sent to, so another entity cannot answer in its place.
    pub async fn request(&self, iq: Iq, timeout: Duration) -> Result<IqReply> {
        self.request_as(iq, timeout, self.next_id()).await
    }

    /// [`Session::request`] for one attempt of an RPC call: the iq's id is `id_for(n)`, `n` this
    /// session's request counter, so it is still unique and carries what `id_for` puts in it
    /// (the call id the provider de-duplicates on: `CallId::iq_id` in `rpc`, which builds on this
    /// layer and not the other way round).
    pub(crate) async fn request_call(
        &self,
        iq: Iq,
        timeout: Duration,
        id_for: impl FnOnce(u64) -> String,
    ) -> Result<IqReply> {
        let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.request_as(iq, timeout, id_for(n)).await
    }

    /// [`Session::request`] with the id `fresh`, unique among this session's requests.
    async fn request_as(&self, mut iq: Iq, timeout: Duration, fresh: String) -> Result<IqReply> {
        match &mut iq {
            Iq::Get { id, .. } | Iq::Set { id, .. } => *id = fresh,
            _ => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "only iq get/set can be requests",
                ))
            }
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let deadline = crate::core::clock::deadline(Instant::now(), timeout);
        self.shared
            .commands
            .send(Command::Request {
                iq: Box::new(iq),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::FAR_FUTURE;

    #[test]
    fn waits_past_the_clock_are_cut_and_ordinary_ones_kept() {
        let jid: FullJid = "home@example.org/tv".parse().expect("jid");
        let mut config = SessionConfig::new(jid.clone(), "pw");
        config.connect_timeout = Duration::MAX;
        config.keepalive = Duration::MAX;
        config.probe_timeout = Duration::MAX;
        config.background_keepalive = Duration::MAX;
        let config = config.within_clock();
        for wait in [
            config.connect_timeout,
            config.keepalive,
            config.probe_timeout,
            config.background_keepalive,
        ] {
            assert_eq!(wait, FAR_FUTURE);
        }
        // What tokio-xmpp's reader computes after every read must not overflow.
        let _ = tokio::time::Instant::now() + config.keepalive + config.probe_timeout / 2;
        let plain = SessionConfig::new(jid, "pw").within_clock();
        assert_eq!(plain.keepalive, DEFAULT_KEEPALIVE);
        assert_eq!(plain.probe_timeout, DEFAULT_PROBE_TIMEOUT);
        assert_eq!(plain.background_keepalive, DEFAULT_BACKGROUND_KEEPALIVE);
    }
}
