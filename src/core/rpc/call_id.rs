//! Call ids: the identity of one logical call, so that a retry can be told from a new call.
//!
//! Wire format: the call id rides in the iq's own `id`, as `pmnc` + the call id + `.` + a
//! per-request suffix:
//!
//! ```xml
//! <iq type='set' id='pmncq3Vx0Jk9c2Lw8mZr1Tn4Aa.17'>
//!   <query xmlns='jabber:iq:rpc'><methodCall>…</methodCall></query>
//! </iq>
//! ```
//!
//! The suffix (the session's or the tunnel's request counter) keeps every request's id unique,
//! so the iq trackers match each response to its one request as for any other iq (RFC 6120
//! §8.1.3), even with two attempts of one call in flight; the part before the `.` stays the same
//! across the retries of one call, and the provider de-duplicates on it (see [`super::CallLog`]).
//! It costs no element: an RPC is as large on the wire as a foreign client's.
//!
//! The older form, an element inside `<query>` (an iq carries one payload, RFC 6120 §8.2.3),
//! is still read, and wins when both are present — the form pmn controllers sent before:
//!
//! ```xml
//! <call xmlns='urn:xmpp:tmp:pmn:call:0' id='5f0c…'/>
//! ```
//!
//! A call with neither (slixmpp, any foreign client) is simply never de-duplicated: a foreign id
//! is taken for a call id only in this exact shape (`pmnc`, 22 characters of base64url, `.`), so
//! a client that reuses its ids cannot be handed another call's answer by accident.

use minidom::Element;
use xso::{AsXml, FromXml};

/// Namespace of the call-id element.
pub const NS_CALL: &str = "urn:xmpp:tmp:pmn:call:0";
/// Longest call id a provider accepts (ours are 22 base64url characters; older controllers
/// sent 32 hex digits in the element form).
pub const MAX_CALL_ID_LEN: usize = 64;
/// What starts an iq id that carries a call id.
pub const IQ_ID_PREFIX: &str = "pmnc";
/// Characters of a call id as [`CallId::new`] makes it (128 bits, base64url without padding).
const NEW_ID_LEN: usize = 22;

/// The identity of one logical call; retries of the call carry the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(String);

impl CallId {
    /// A fresh random id (128 bits: unguessable, so a third party cannot make a provider answer a
    /// caller's call from another's cache — and the cache is per caller anyway).
    pub fn new() -> Self {
        use base64::Engine;
        let bits = rand::random::<u128>().to_be_bytes();
        CallId(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bits))
    }

    /// The id a request of this call is sent with: [`IQ_ID_PREFIX`], the call id, `.`, then
    /// `suffix` (unique per request on its stream or tunnel).
    pub(crate) fn iq_id(&self, suffix: impl std::fmt::Display) -> String {
        format!("{IQ_ID_PREFIX}{}.{suffix}", self.0)
    }

    /// The call id an iq id carries ([`CallId::iq_id`]'s shape exactly), if any.
    pub fn from_iq_id(iq_id: &str) -> Option<Self> {
        let rest = iq_id.strip_prefix(IQ_ID_PREFIX)?;
        let (id, tail) = rest.split_at_checked(NEW_ID_LEN)?;
        if !tail.starts_with('.') {
            return None;
        }
        CallId::parse(id)
    }

    /// Reads an id from the wire: 1 to [`MAX_CALL_ID_LEN`] characters of `[A-Za-z0-9_-]`.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_CALL_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| CallId(s.to_owned()))
    }

    /// The id as written on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for CallId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `<call xmlns='urn:xmpp:tmp:pmn:call:0' id='…'/>` element; children are refused.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_CALL, name = "call", on_unknown_child = Fail)]
pub struct CallElement {
    /// The call id as written ([`CallId::parse`] decides whether it is one).
    #[xml(attribute)]
    pub id: String,
}

/// What a `<query>` says about its call id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallIdField {
    /// No call-id element: a foreign client; the call is not de-duplicated.
    Absent,
    /// A well-formed id.
    Present(CallId),
    /// An element that is not a valid id (empty, too long, odd characters, twice): refused as
    /// bad parameters, before anything runs.
    Invalid,
}

/// Adds the call-id element (the older form, still read) to a `<query xmlns='jabber:iq:rpc'>`
/// built by [`crate::core::rpc::xmlrpc::call_to_query`].
pub fn attach(query: Element, id: &CallId) -> Element {
    let mut query = query;
    query.append_child(Element::from(CallElement {
        id: id.as_str().to_owned(),
    }));
    query
}

/// The call id of a `<query xmlns='jabber:iq:rpc'>`.
pub fn of_query(query: &Element) -> CallIdField {
    let mut found = query.children().filter(|c| c.is("call", NS_CALL));
    let (Some(first), None) = (found.next(), found.next()) else {
        return if query.has_child("call", NS_CALL) {
            CallIdField::Invalid
        } else {
            CallIdField::Absent
        };
    };
    match CallElement::try_from(first.clone()) {
        Ok(element) => match CallId::parse(&element.id) {
            Some(id) => CallIdField::Present(id),
            None => CallIdField::Invalid,
        },
        Err(_) => CallIdField::Invalid,
    }
}

/// Whether `child` of a `<query>` is the call-id element (which the XML-RPC reader skips).
pub(crate) fn is_call_element(child: &Element) -> bool {
    child.is("call", NS_CALL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rpc::xmlrpc::{call_to_query, parse_query, Limits, MethodCall, RpcPayload};

    #[test]
    fn an_id_rides_next_to_the_method_call_and_the_call_still_parses() {
        let call = MethodCall::new("player.next", vec![]);
        let id = CallId::new();
        let query = attach(call_to_query(&call).expect("encodes"), &id);
        assert_eq!(of_query(&query), CallIdField::Present(id.clone()));
        assert_eq!(
            parse_query(&query, &Limits::DEFAULT),
            Ok(RpcPayload::Call(call.clone()))
        );
        let plain = call_to_query(&call).expect("encodes");
        assert_eq!(of_query(&plain), CallIdField::Absent);
        // Twice, or malformed: refused.
        let twice = attach(query.clone(), &id);
        assert_eq!(of_query(&twice), CallIdField::Invalid);
        let bad = attach(plain.clone(), &CallId("has space".into()));
        assert_eq!(of_query(&bad), CallIdField::Invalid);
        // No id, or a child inside: refused.
        let mut no_id = plain.clone();
        no_id.append_child(Element::builder("call", NS_CALL).build());
        assert_eq!(of_query(&no_id), CallIdField::Invalid);
        let mut nested = plain;
        nested.append_child(
            Element::builder("call", NS_CALL)
                .attr(xso::exports::rxml::xml_ncname!("id").into(), "abc")
                .append(Element::builder("x", NS_CALL).build())
                .build(),
        );
        assert_eq!(of_query(&nested), CallIdField::Invalid);
        assert!(CallId::parse(&"a".repeat(MAX_CALL_ID_LEN + 1)).is_none());
        assert!(CallId::parse(id.as_str()).is_some());
    }

    #[test]
    fn a_call_id_rides_in_the_iq_id_and_only_in_that_exact_shape() {
        let id = CallId::new();
        assert_eq!(id.as_str().len(), NEW_ID_LEN);
        let (first, retry) = (id.iq_id(1), id.iq_id(2));
        assert_ne!(first, retry, "every request has its own iq id");
        assert_eq!(CallId::from_iq_id(&first), Some(id.clone()));
        assert_eq!(CallId::from_iq_id(&retry), Some(id.clone()));
        // A session's own ids, foreign ids and near misses carry none.
        let near_misses = [
            "pmn1a2b3c4d-17".to_owned(),
            "1".to_owned(),
            IQ_ID_PREFIX.to_owned(),
            "pmncshort.1".to_owned(),
            format!("{IQ_ID_PREFIX}{}", id.as_str()),
            format!("{IQ_ID_PREFIX}{}x.1", id.as_str()),
            format!("{IQ_ID_PREFIX}{}c.1", "a b".repeat(7)),
            format!("x{first}"),
        ];
        for other in &near_misses {
            assert_eq!(CallId::from_iq_id(other), None, "{other}");
        }
    }

    #[test]
    fn any_other_extra_child_is_still_refused() {
        let call = MethodCall::new("player.next", vec![]);
        let mut query = call_to_query(&call).expect("encodes");
        query.append_child(Element::builder("call", "urn:other").build());
        assert!(parse_query(&query, &Limits::DEFAULT).is_err());
    }
}
