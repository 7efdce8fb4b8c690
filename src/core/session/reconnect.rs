//! Reconnection: the connections the stanza stream asks for after the first one, made with
//! backoff ([`Backoff`]) and the network's current password, woken early when the app reports a
//! network change. Owns the backoff state shared with [`super::Session::network_changed`]; never retries
//! a fatal failure (a wrong password, an untrusted certificate), which it reports instead.

use crate::core::sync::Locked;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_xmpp::stanzastream::Connection;
use tokio_xmpp::xmlstream::Timeouts;
use xmpp_parsers::jid::Jid;

use super::login::{is_fatal, login_rotating};
use super::password::NetworkPassword;
use super::{Backoff, Counters, PmnConnector};
use crate::core::error::Error;

/// Backoff shared between the reconnect attempts and [`super::Session::network_changed`].
#[derive(Debug, Default)]
pub(super) struct ReconnectShared {
    state: Mutex<ReconnectState>,
    /// Woken by `network_changed`: a waiting attempt starts at once.
    pub(super) wake: Notify,
}

#[derive(Debug, Default)]
pub(super) struct ReconnectState {
    pub(super) backoff: Backoff,
    /// When the connection in use was handed to the stream.
    pub(super) up_since: Option<Instant>,
    /// The keepalive for the next connection, when the app set one ([`super::Session::set_foreground`]).
    pub(super) keepalive: Option<Duration>,
}

impl ReconnectShared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, ReconnectState> {
        self.state.locked()
    }
}

/// Produces connections for the [`StanzaStream`](tokio_xmpp::stanzastream::StanzaStream): first the one [`super::Session::connect`] already made,
/// then fresh logins with backoff ([`Backoff`]: a connection that drops soon after it was made
/// backs off like a failed login, so no server answer can make us log in in a tight loop). A
/// fatal failure is reported and the slot is parked rather than dropped: tokio-xmpp 6's worker
/// panics (inside its own task) when a slot is dropped.
pub(super) struct Reconnector {
    pub(super) first: Option<Connection>,
    pub(super) connector: PmnConnector,
    pub(super) jid: Jid,
    pub(super) password: NetworkPassword,
    pub(super) timeouts: Timeouts,
    pub(super) connect_timeout: Duration,
    pub(super) failures: mpsc::UnboundedSender<Error>,
    pub(super) shared: Arc<ReconnectShared>,
    pub(super) stats: Arc<Counters>,
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
    pub(super) fn into_fn(
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
