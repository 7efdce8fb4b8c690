//! The answer to a call, whoever ran it: [`Outcome`] (how it ended) and [`answer`] (the iq that
//! says so). A small floor of its own so that the runner of calls (`calls.rs`), the subscription
//! verbs (`subscription.rs`) and the dispatcher all answer the same way without importing each
//! other.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use crate::core::error::{ErrorKind, Result};
use crate::core::plumbing;
use crate::core::rpc::stanza_error_for;
use crate::core::rpc::xmlrpc::{self, MethodResponse, Value};

/// How a call ended, as far as its answer goes.
pub(crate) enum Outcome {
    /// The method's result or error (refusals become stanza errors, failures XML-RPC faults).
    Done(Result<Value>),
    /// A bound was hit: `resource-constraint`, with the bound's name.
    Busy(String),
    /// A repeat of a call that is running (or whose run vanished) could not be given the run's
    /// answer: `unexpected-request` (type `wait`), which callers read as "may have run", never
    /// as a refusal — a refusal would invite a retry with a new id, and a second run.
    Unsure(String),
}

/// The iq answering a call: result with a methodResponse (success or fault), or a stanza error for
/// refusals (unknown method, bad params, forbidden, a bound hit).
pub(crate) fn answer(to: Jid, id: String, outcome: Outcome) -> Iq {
    let fault = |code: i32, message: String| {
        plumbing::result(
            Some(to.clone()),
            id.clone(),
            Some(xmlrpc::fault_to_query(code, &message)),
        )
    };
    let outcome = match outcome {
        Outcome::Busy(why) => {
            let busy =
                plumbing::condition(ErrorType::Wait, DefinedCondition::ResourceConstraint, &why);
            return plumbing::error(Some(to), id, busy);
        }
        Outcome::Unsure(why) => {
            let unsure =
                plumbing::condition(ErrorType::Wait, DefinedCondition::UnexpectedRequest, &why);
            return plumbing::error(Some(to), id, unsure);
        }
        Outcome::Done(outcome) => outcome,
    };
    match outcome {
        Ok(value) => match xmlrpc::response_to_query(&MethodResponse::Success(value)) {
            Ok(query) => plumbing::result(Some(to), id, Some(query)),
            Err(e) => {
                // The service built a value no reader accepts: answer a fault, never that payload.
                tracing::warn!(error = %e, "service result does not encode");
                fault(500, format!("result does not encode: {e}"))
            }
        },
        Err(e) if e.kind() == ErrorKind::Fault => {
            fault(e.fault_code().unwrap_or(0), e.message().to_owned())
        }
        Err(e) if is_refusal(e.kind()) => plumbing::error(Some(to), id, stanza_error_for(&e)),
        Err(e) => {
            // An unexpected failure inside the service: a fault, so the caller learns it failed.
            tracing::warn!(error = %e, "service call failed");
            fault(500, e.to_string())
        }
    }
}

fn is_refusal(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnknownMethod | ErrorKind::BadParams | ErrorKind::Forbidden
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_resource_constraint_of_type_wait() {
        let to: Jid = "home@home.test/phone".parse().expect("jid");
        match answer(to, "1".into(), Outcome::Busy("full".into())) {
            Iq::Error { error, .. } => {
                assert_eq!(
                    error.defined_condition,
                    DefinedCondition::ResourceConstraint
                );
                assert_eq!(error.type_, ErrorType::Wait);
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
