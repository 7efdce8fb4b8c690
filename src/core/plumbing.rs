//! Replies every device gives the same way, provider or controller: disco#info, ping, and
//! `service-unavailable` for anything it does not understand (RFC 6120 §8.4), plus the iq reply
//! builders. Policy (who may ask) is decided by the caller and passed in.

use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::core::discovery::CAPS_NODE;

/// An `<iq type='result'/>` answering `id` from `to`.
pub fn result(to: Option<Jid>, id: String, payload: Option<Element>) -> Iq {
    Iq::Result {
        from: None,
        to,
        id,
        payload,
    }
}

/// An `<iq type='error'/>` answering `id` from `to`.
pub fn error(to: Option<Jid>, id: String, error: StanzaError) -> Iq {
    Iq::Error {
        from: None,
        to,
        id,
        error,
        payload: None,
    }
}

/// A stanza error with a defined condition and an English text.
pub fn condition(type_: ErrorType, condition: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(type_, condition, "en", text)
}

/// `forbidden`: the sender is neither of this network nor granted access.
pub fn forbidden() -> StanzaError {
    forbidden_because("not a device of this network")
}

/// `forbidden` with the reason the sender should read (tunnel required, out of scope, …).
pub fn forbidden_because(text: &str) -> StanzaError {
    condition(ErrorType::Auth, DefinedCondition::Forbidden, text)
}

/// Answers an iq `get` that is plumbing (disco#info, ping) or not understood at all.
///
/// `info` is the disco#info of this device; `caps_ver` its caps hash (base64), so that a query for
/// `node='<node>#<ver>'` is answered with that node echoed (XEP-0115 §6.2).
pub fn answer_get(
    from: Option<Jid>,
    id: String,
    payload: &Element,
    info: &DiscoInfoResult,
    caps_ver: &str,
) -> Iq {
    if payload.is("query", ns::DISCO_INFO) {
        let node = payload.attr("node");
        let ours = format!("{CAPS_NODE}#{caps_ver}");
        return match node {
            None => result(from, id, Some(info.clone().into())),
            // Our XEP-0115 node, or one of our XEP-0390 hash nodes (`urn:xmpp:caps#<algo>.<hash>`).
            Some(n) if n == ours || crate::core::discovery::is_own_ecaps2_node(info, n) => {
                let mut answer = info.clone();
                answer.node = Some(n.to_owned());
                result(from, id, Some(answer.into()))
            }
            Some(_) => error(
                from,
                id,
                condition(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "no such node",
                ),
            ),
        };
    }
    if payload.is("ping", ns::PING) {
        return result(from, id, None);
    }
    unsupported(from, id)
}

/// `service-unavailable` for a request this device does not handle.
pub fn unsupported(from: Option<Jid>, id: String) -> Iq {
    error(
        from,
        id,
        condition(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "not supported by this device",
        ),
    )
}

/// The caps `ver` of `info`, base64 as on the wire.
pub fn caps_ver(info: &DiscoInfoResult) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crate::core::discovery::caps_for(info).ver)
}
