//! RPC in iq stanzas: XEP-0009 Jabber-RPC (XML-RPC in `<query xmlns='jabber:iq:rpc'/>`), and the
//! typed layer on top: services declared once ([`ServiceSpec`], [`Method`], [`Event`]), answered by
//! a [`TypedService`] and called through a [`Remote`] over any [`Caller`].
//!
//! Method names are `<service>.<verb>` (`player.play`). Failures travel two ways, kept distinct:
//! protocol-level refusals are XMPP stanza errors (unknown method → `item-not-found`, wrong params or
//! malformed payload → `bad-request`, caller not allowed → `forbidden`), while a method that ran and
//! failed answers an XML-RPC fault. [`stanza_error_for`] and [`error_from_stanza`] are the one place
//! where the two vocabularies are translated.
//!
//! Every call our controllers send carries a [`CallId`] (see [`call_id`] for the wire) that its
//! retries repeat; providers remember recent ids ([`CallLog`]) and answer a repeat with the first
//! answer instead of running the method again. Every error of a call says whether it ran
//! ([`crate::core::error::CallOutcome`]): [`outcome_of_stanza_error`] is the rule for refusals.

pub mod call_id;
mod client;
pub mod dedup;
pub mod events;
mod remote;
mod router;
mod typed;
mod value_serde;
pub mod xmlrpc;

pub use call_id::{CallId, NS_CALL};
pub(crate) use client::call_with;
pub use client::{call, call_as};
pub use dedup::{CallLog, CallLogStats};
pub use remote::{Caller, Remote};
pub use router::{CallContext, EveryServiceVerbs, RpcRouter, Service, Target};
pub use typed::{
    decode_event, decode_notice, decode_output, decode_params, encode_event, encode_params,
    method_name, Emitter, Event, Method, ServiceSpec, TypedService,
};
pub(crate) use typed::{event, method, service_via_typed};

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::core::error::{CallOutcome, Error, ErrorKind};

/// The stanza error a provider answers for a failed call.
pub fn stanza_error_for(error: &Error) -> StanzaError {
    let (type_, condition) = match error.kind() {
        ErrorKind::UnknownMethod => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
        ErrorKind::BadParams | ErrorKind::Protocol => {
            (ErrorType::Modify, DefinedCondition::BadRequest)
        }
        ErrorKind::Forbidden => (ErrorType::Auth, DefinedCondition::Forbidden),
        ErrorKind::ProviderUnavailable => (ErrorType::Cancel, DefinedCondition::ServiceUnavailable),
        ErrorKind::Timeout => (ErrorType::Wait, DefinedCondition::RemoteServerTimeout),
        _ => (ErrorType::Wait, DefinedCondition::InternalServerError),
    };
    StanzaError::new(type_, condition, "en", error.message())
}

/// The typed error a controller gets for a stanza error answered to `method`.
pub fn error_from_stanza(method: &str, error: &StanzaError) -> Error {
    let text = error
        .texts
        .values()
        .next()
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    let kind = match error.defined_condition {
        DefinedCondition::ItemNotFound | DefinedCondition::FeatureNotImplemented => {
            ErrorKind::UnknownMethod
        }
        DefinedCondition::BadRequest | DefinedCondition::NotAcceptable => ErrorKind::BadParams,
        DefinedCondition::Forbidden | DefinedCondition::NotAuthorized => ErrorKind::Forbidden,
        DefinedCondition::ServiceUnavailable
        | DefinedCondition::RecipientUnavailable
        | DefinedCondition::RemoteServerNotFound => ErrorKind::ProviderUnavailable,
        DefinedCondition::RemoteServerTimeout => ErrorKind::Timeout,
        _ => ErrorKind::Protocol,
    };
    Error::new(
        kind,
        format!("{method}: {:?}{text}", error.defined_condition),
    )
}

/// Whether a call answered with this stanza error ran. Stanza errors are refusals: the provider
/// (or a server on the way) said no before the method ran — except a server's
/// `remote-server-timeout`, which may come after the request went on, and conditions outside
/// the refusal vocabulary of [`stanza_error_for`], whose meaning we cannot know.
pub fn outcome_of_stanza_error(error: &StanzaError) -> CallOutcome {
    match error.defined_condition {
        DefinedCondition::ItemNotFound
        | DefinedCondition::FeatureNotImplemented
        | DefinedCondition::BadRequest
        | DefinedCondition::NotAcceptable
        | DefinedCondition::Forbidden
        | DefinedCondition::NotAuthorized
        | DefinedCondition::ServiceUnavailable
        | DefinedCondition::RecipientUnavailable
        | DefinedCondition::RemoteServerNotFound
        | DefinedCondition::ResourceConstraint
        | DefinedCondition::PolicyViolation
        | DefinedCondition::NotAllowed => CallOutcome::NotRun,
        _ => CallOutcome::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_survives_the_round_trip_through_xmpp() {
        for kind in [
            ErrorKind::UnknownMethod,
            ErrorKind::BadParams,
            ErrorKind::Forbidden,
            ErrorKind::ProviderUnavailable,
            ErrorKind::Timeout,
        ] {
            let wire = stanza_error_for(&Error::new(kind, "x"));
            assert_eq!(error_from_stanza("player.play", &wire).kind(), kind);
        }
    }

    #[test]
    fn refusals_did_not_run_and_a_lost_way_is_unknown() {
        for kind in [
            ErrorKind::UnknownMethod,
            ErrorKind::BadParams,
            ErrorKind::Forbidden,
            ErrorKind::ProviderUnavailable,
        ] {
            let wire = stanza_error_for(&Error::new(kind, "x"));
            assert_eq!(
                outcome_of_stanza_error(&wire),
                CallOutcome::NotRun,
                "{kind}"
            );
        }
        let busy = StanzaError::new(
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            "en",
            "full",
        );
        assert_eq!(outcome_of_stanza_error(&busy), CallOutcome::NotRun);
        for condition in [
            DefinedCondition::RemoteServerTimeout,
            DefinedCondition::UnexpectedRequest,
            DefinedCondition::InternalServerError,
        ] {
            let wire = StanzaError::new(ErrorType::Wait, condition.clone(), "en", "x");
            assert_eq!(
                outcome_of_stanza_error(&wire),
                CallOutcome::Unknown,
                "{condition:?}"
            );
        }
        assert_eq!(Error::fault(1, "x").outcome(), CallOutcome::Ran);
        assert_eq!(
            Error::new(ErrorKind::Timeout, "x").outcome(),
            CallOutcome::Unknown
        );
    }
}
