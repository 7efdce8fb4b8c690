//! How a call leaves a controller: through the tunnel when configured, else in clear; never
//! while offline, failing at once when the session is interrupted, and retried under one call id
//! ([`RetryPolicy`]).

use super::{Shared, RETRY_PAUSE};
use std::time::Duration;

use tokio::sync::watch;
use xmpp_parsers::jid::{FullJid, Jid};

use crate::core::error::{CallOutcome, Error, ErrorKind, Result};
use crate::core::rpc::{self, xmlrpc::MethodCall, xmlrpc::Value, CallId};
use futures::future::Either;

use crate::core::session::ConnectionState;

/// Resolves when the session is not online (now, or from some later change): the moment a call
/// in flight can no longer count on its answer.
pub(super) async fn interrupted(mut state: watch::Receiver<ConnectionState>) {
    loop {
        if !matches!(*state.borrow_and_update(), ConnectionState::Online { .. }) {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

impl Shared {
    /// The one way calls leave this controller: through the tunnel when configured (no plaintext
    /// fallback, so a refused or failed tunnel is the caller's error), else in clear.
    ///
    /// A call is never sent while the session is not online (`NotConnected`, not run), and a call
    /// in flight fails **at once** when the session is interrupted (`NotConnected`, outcome
    /// unknown), tunnelled or not, instead of waiting out its timeout: the caller learns at once
    /// that it must retry — with the same `id`, which the provider de-duplicates, see
    /// [`Controller::call_with_retry`].
    pub(super) async fn call(
        &self,
        provider: &FullJid,
        method: &str,
        params: Vec<Value>,
        id: &CallId,
    ) -> Result<Value> {
        let to = Jid::from(provider.clone());
        let call = MethodCall::new(method, params);
        let state = self.session.watch_state();
        if !matches!(*state.borrow(), ConnectionState::Online { .. }) {
            return Err(Error::new(
                ErrorKind::NotConnected,
                format!("{method}: not sent, the session is not online"),
            ));
        }
        let lost = || {
            Error::new(
                ErrorKind::NotConnected,
                format!("{method} on {provider}: the connection was lost before the answer came"),
            )
            .with_outcome(CallOutcome::Unknown)
        };
        // The one way out: through the tunnel when there is one, else in clear (`Either`: no
        // allocation per call for choosing).
        let request = |iq, t| match &self.e2e {
            Some(e2e) => Either::Left(e2e.request_call(iq, t, id)),
            None => Either::Right(self.session.request_call(iq, t, |n| id.iq_id(n))),
        };
        let sent = rpc::call_with(request, &to, &call, self.rpc_timeout, &self.rpc_limits);
        let result = tokio::select! {
            result = sent => result,
            () = interrupted(state) => {
                tracing::debug!(%provider, %method, %id, "call in flight failed: the session was interrupted");
                if let Some(e2e) = &self.e2e {
                    // The next call (a retry) starts on a fresh tunnel, whatever the interruption
                    // did to this one's bytes.
                    e2e.reset_tunnel(provider, "a call in it was cut off by a session interruption");
                }
                Err(lost())
            }
        };
        if let Err(e) = &result {
            tracing::debug!(%provider, %method, %id, error = %e, outcome = %e.outcome(), "call failed");
        }
        result
    }

    /// Waits until the session is online, at most `within`; false if it did not come back.
    pub(super) async fn wait_online(&self, within: Duration) -> bool {
        let mut state = self.session.watch_state();
        tokio::time::timeout(within, async {
            loop {
                match &*state.borrow_and_update() {
                    ConnectionState::Online { .. } => return true,
                    ConnectionState::Offline { .. } => return false,
                    _ => {}
                }
                if state.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// [`Shared::call`] under `retry`: one call id for every attempt; see
    /// [`Controller::call_with_retry`].
    pub(super) async fn call_with_retry(
        &self,
        provider: &FullJid,
        method: &str,
        params: Vec<Value>,
        retry: &RetryPolicy,
    ) -> Result<Value> {
        let id = CallId::new();
        let attempts = retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            let result = self.call(provider, method, params.clone(), &id).await;
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if attempt >= attempts || !RetryPolicy::may_retry(&error) {
                return Err(error);
            }
            attempt += 1;
            tracing::info!(%provider, %method, %id, attempt, error = %error, outcome = %error.outcome(), "retrying the call with the same id");
            // A short pause first, growing (0.2, 0.4, … 2 s): a provider that is itself just
            // reconnecting gets a moment, and a retry loop never spins.
            let pause = RETRY_PAUSE
                .saturating_mul(1 << (attempt - 2).min(4))
                .min(Duration::from_secs(2));
            tokio::time::sleep(pause).await;
            if !self.wait_online(retry.reconnect_wait).await {
                return Err(error);
            }
        }
    }
}

/// How [`crate::core::controller::Controller::call_with_retry`] (and every call, with
/// [`crate::core::controller::ControllerConfig::retry`]) tries again.
///
/// Only calls that may be retried safely are: every attempt carries the **same** [`CallId`], so
/// a provider that already ran the call answers with its first answer (for
/// [`crate::core::provider::ProviderLimits::call_memory`], 2 minutes by default) instead of
/// running it again. Retried are errors whose outcome is not [`CallOutcome::Ran`] and whose kind
/// says the way was lost (`Timeout`, `NotConnected`, `ProviderUnavailable`); a refusal or a fault
/// is returned at once. Before each retry: a pause (0.2 s, doubling, at most 2 s), then the
/// session must be online again, waited for at most `reconnect_wait`.
///
/// What it cannot promise: a provider that restarted in between has forgotten the call (it may
/// run twice), and a foreign provider (one that ignores call ids) may run it twice too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry).
    pub attempts: u32,
    /// How long to wait for the session to be online again before a retry.
    pub reconnect_wait: Duration,
}

impl RetryPolicy {
    /// One attempt, no retry: the error of the call is the caller's to judge.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        reconnect_wait: Duration::ZERO,
    };

    /// `attempts` in all, waiting at most `reconnect_wait` for the session before each retry.
    pub fn new(attempts: u32, reconnect_wait: Duration) -> Self {
        RetryPolicy {
            attempts,
            reconnect_wait,
        }
    }

    /// Whether an attempt that ended in `error` is retried.
    pub fn may_retry(error: &Error) -> bool {
        error.outcome() != CallOutcome::Ran
            && matches!(
                error.kind(),
                ErrorKind::Timeout | ErrorKind::NotConnected | ErrorKind::ProviderUnavailable
            )
    }
}

impl Default for RetryPolicy {
    /// Three attempts, waiting up to 30 s for the connection before each retry.
    fn default() -> Self {
        RetryPolicy::new(3, Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn only_a_lost_way_is_retried_and_never_a_call_that_ran() {
        let lost = Error::new(ErrorKind::NotConnected, "x").with_outcome(CallOutcome::Unknown);
        let not_sent = Error::new(ErrorKind::NotConnected, "x");
        let timeout = Error::new(ErrorKind::Timeout, "x");
        assert!(RetryPolicy::may_retry(&lost));
        assert!(RetryPolicy::may_retry(&not_sent));
        assert!(RetryPolicy::may_retry(&timeout));
        for refused in [
            Error::new(ErrorKind::Forbidden, "x"),
            Error::new(ErrorKind::UnknownMethod, "x"),
            Error::new(ErrorKind::BadParams, "x"),
            Error::fault(409, "x"),
            Error::new(ErrorKind::Protocol, "x").with_outcome(CallOutcome::Unknown),
        ] {
            assert!(!RetryPolicy::may_retry(&refused), "{refused}");
        }
        assert_eq!(RetryPolicy::NONE.attempts, 1);
        assert_eq!(RetryPolicy::default().attempts, 3);
    }
}
