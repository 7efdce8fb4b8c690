//! The calling side: one method call, bounded by a timeout, answered or failed with a typed error.

use std::time::Duration;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use super::call_id::CallId;
use super::xmlrpc::{self, Limits, MethodCall, MethodResponse, RpcPayload, Value};
use crate::core::error::{CallOutcome, Error, ErrorKind, Result};
use crate::core::session::{IqReply, Session};

/// Calls `method` on `to` and waits at most `timeout`; the answer is decoded under
/// [`Limits::DEFAULT`]. The call carries a fresh [`CallId`]; use [`call_as`] to retry one.
///
/// Errors: [`ErrorKind::Timeout`], [`ErrorKind::UnknownMethod`], [`ErrorKind::BadParams`],
/// [`ErrorKind::Forbidden`], [`ErrorKind::ProviderUnavailable`], [`ErrorKind::Fault`] (with the
/// provider's fault code), [`ErrorKind::Protocol`] for an answer that is not a method response;
/// each says whether the call ran ([`Error::outcome`]).
pub async fn call(
    session: &Session,
    to: &Jid,
    method: &str,
    params: Vec<Value>,
    timeout: Duration,
) -> Result<Value> {
    call_as(session, to, method, params, timeout, &CallId::new()).await
}

/// [`call`] with the call id `id`: a retry of a call whose outcome was
/// [`CallOutcome::Unknown`] passes the id of the first attempt, and a provider that already ran
/// it answers with its first answer instead of running it again.
pub async fn call_as(
    session: &Session,
    to: &Jid,
    method: &str,
    params: Vec<Value>,
    timeout: Duration,
    id: &CallId,
) -> Result<Value> {
    call_with(
        |iq, t| session.request_call(iq, t, |n| id.iq_id(n)),
        to,
        &MethodCall::new(method, params),
        timeout,
        &Limits::DEFAULT,
    )
    .await
}

/// [`call`] over any request path: the roles pass the end-to-end tunnel's `request` here, so the
/// call is built and its answer decoded the same way whichever way it travels, under `limits`.
/// The request path gives the iq its id, which carries the call id ([`CallId::iq_id`]).
///
/// The outcome of an error: the request path says whether the request left (its own errors are
/// [`CallOutcome::NotRun`] before sending, [`CallOutcome::Unknown`] after); a stanza error is
/// judged by [`super::outcome_of_stanza_error`]; a fault ran; an answer that is not a readable
/// method response leaves the outcome unknown.
pub(crate) async fn call_with<F, Fut>(
    request: F,
    to: &Jid,
    call: &MethodCall,
    timeout: Duration,
    limits: &Limits,
) -> Result<Value>
where
    F: FnOnce(Iq, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<IqReply>>,
{
    let method = call.method.as_str();
    // Parameters our own codec would not read back (a struct member named twice) are the caller's
    // mistake: refuse before anything is sent.
    let payload = xmlrpc::call_to_query(call)
        .map_err(|e| Error::new(ErrorKind::BadParams, format!("{method}: {e}")))?;
    let iq = Iq::Set {
        from: None,
        to: Some(to.clone()),
        id: String::new(),
        payload,
    };
    let reply = request(iq, timeout).await.map_err(|e| {
        if e.kind() == ErrorKind::Timeout {
            Error::new(
                ErrorKind::Timeout,
                format!("{method} on {to}: no answer within {timeout:?}"),
            )
            .with_outcome(e.outcome())
        } else {
            e
        }
    })?;
    let unknown = |e: Error| e.with_outcome(CallOutcome::Unknown);
    match reply {
        IqReply::Error(error) => Err(super::error_from_stanza(method, &error)
            .with_outcome(super::outcome_of_stanza_error(&error))),
        IqReply::Result(None) => Err(unknown(Error::new(
            ErrorKind::Protocol,
            format!("{method}: empty result"),
        ))),
        IqReply::Result(Some(query)) => match xmlrpc::parse_query(&query, limits) {
            Ok(RpcPayload::Response(MethodResponse::Success(value))) => Ok(value),
            Ok(RpcPayload::Response(MethodResponse::Fault { code, message })) => {
                Err(Error::fault(code, format!("{method}: {message}")))
            }
            Ok(RpcPayload::Call(_)) => Err(unknown(Error::new(
                ErrorKind::Protocol,
                format!("{method}: answered with a method call"),
            ))),
            Err(e) => Err(unknown(Error::new(
                ErrorKind::Protocol,
                format!("{method}: malformed response: {e}"),
            ))),
        },
    }
}
