//! Call ids: the identity of one logical call, so that a retry can be told from a new call.
//!
//! Wire format (our own namespace, next to standard XML-RPC so foreign peers are unaffected):
//!
//! ```xml
//! <iq type='set' id='…'>
//!   <query xmlns='jabber:iq:rpc'>
//!     <methodCall>…</methodCall>
//!     <call xmlns='urn:xmpp:tmp:pmn:call:0' id='5f0c…'/>
//!   </query>
//! </iq>
//! ```
//!
//! The element sits inside `<query>` rather than beside it because an iq carries exactly one
//! payload (RFC 6120 §8.2.3). The iq's own `id` changes on every attempt (it matches a response
//! to one request); the call id stays the same across the retries of one call, and the provider
//! de-duplicates on it (see [`super::CallLog`]). A call without the element (slixmpp, any foreign
//! client) is simply never de-duplicated.

use minidom::Element;
use xso::{AsXml, FromXml};

/// Namespace of the call-id element.
pub const NS_CALL: &str = "urn:xmpp:tmp:pmn:call:0";
/// Longest call id a provider accepts (ours are 32 hex digits).
pub const MAX_CALL_ID_LEN: usize = 64;

/// The identity of one logical call; retries of the call carry the same id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(String);

impl CallId {
    /// A fresh random id (128 bits: unguessable, so a third party cannot make a provider answer a
    /// caller's call from another's cache — and the cache is per caller anyway).
    pub fn new() -> Self {
        CallId(format!("{:032x}", rand::random::<u128>()))
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

/// Adds the call-id element to a `<query xmlns='jabber:iq:rpc'>` built by
/// [`crate::core::rpc::xmlrpc::call_to_query`].
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
    fn any_other_extra_child_is_still_refused() {
        let call = MethodCall::new("player.next", vec![]);
        let mut query = call_to_query(&call).expect("encodes");
        query.append_child(Element::builder("call", "urn:other").build());
        assert!(parse_query(&query, &Limits::DEFAULT).is_err());
    }
}
