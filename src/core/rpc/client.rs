//! The calling side: one method call, bounded by a timeout, answered or failed with a typed error.

use std::time::Duration;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use super::xmlrpc::{self, Limits, MethodCall, MethodResponse, RpcPayload, Value};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::session::{IqReply, Session};

/// Calls `method` on `to` and waits at most `timeout`; the answer is decoded under
/// [`Limits::DEFAULT`].
///
/// Errors: [`ErrorKind::Timeout`], [`ErrorKind::UnknownMethod`], [`ErrorKind::BadParams`],
/// [`ErrorKind::Forbidden`], [`ErrorKind::ProviderUnavailable`], [`ErrorKind::Fault`] (with the
/// provider's fault code), [`ErrorKind::Protocol`] for an answer that is not a method response.
pub async fn call(
    session: &Session,
    to: &Jid,
    method: &str,
    params: Vec<Value>,
    timeout: Duration,
) -> Result<Value> {
    call_with(
        |iq, t| session.request(iq, t),
        to,
        method,
        params,
        timeout,
        &Limits::DEFAULT,
    )
    .await
}

/// [`call`] over any request path: the roles pass the end-to-end tunnel's `request` here, so the
/// call is built and its answer decoded the same way whichever way it travels, under `limits`.
pub(crate) async fn call_with<F, Fut>(
    request: F,
    to: &Jid,
    method: &str,
    params: Vec<Value>,
    timeout: Duration,
    limits: &Limits,
) -> Result<Value>
where
    F: FnOnce(Iq, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<IqReply>>,
{
    let call = MethodCall {
        method: method.to_owned(),
        params,
    };
    // Parameters our own codec would not read back (a struct member named twice) are the caller's
    // mistake: refuse before anything is sent.
    let payload = xmlrpc::call_to_query(&call)
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
        } else {
            e
        }
    })?;
    match reply {
        IqReply::Error(error) => Err(super::error_from_stanza(method, &error)),
        IqReply::Result(None) => Err(Error::new(
            ErrorKind::Protocol,
            format!("{method}: empty result"),
        )),
        IqReply::Result(Some(query)) => match xmlrpc::parse_query(&query, limits) {
            Ok(RpcPayload::Response(MethodResponse::Success(value))) => Ok(value),
            Ok(RpcPayload::Response(MethodResponse::Fault { code, message })) => {
                Err(Error::fault(code, format!("{method}: {message}")))
            }
            Ok(RpcPayload::Call(_)) => Err(Error::new(
                ErrorKind::Protocol,
                format!("{method}: answered with a method call"),
            )),
            Err(e) => Err(Error::new(
                ErrorKind::Protocol,
                format!("{method}: malformed response: {e}"),
            )),
        },
    }
}
