//! The XML-RPC codec's entry points (a `<value>`, a `jabber:iq:rpc` query) and a provider's
//! `<event/>`: decode, encode, decode again.

use crate::core::rpc::events::EventNotice;
use crate::core::rpc::xmlrpc::{self, Limits, RpcPayload};

use super::{element, relaxed, rewire};

/// One `<value>` (event parameters): decode → encode → decode gives the same value.
pub fn xmlrpc_value(data: &[u8]) {
    let Some(el) = element(data) else { return };
    let Ok(value) = xmlrpc::parse_value(&el, &Limits::default()) else {
        return;
    };
    let encoded = xmlrpc::value_to_element(&value).expect("a decoded value encodes");
    let again = xmlrpc::parse_value(&rewire(&encoded), &relaxed());
    assert_eq!(again.as_ref(), Ok(&value), "XML-RPC value round trip");
}

/// A `<query xmlns='jabber:iq:rpc'>` (a call or a response): decode → encode → decode.
pub fn xmlrpc_query(data: &[u8]) {
    let Some(el) = element(data) else { return };
    let Ok(payload) = xmlrpc::parse_query(&el, &Limits::default()) else {
        return;
    };
    let encoded = match &payload {
        RpcPayload::Call(call) => xmlrpc::call_to_query(call),
        RpcPayload::Response(resp) => xmlrpc::response_to_query(resp),
    }
    .expect("a decoded call or response encodes");
    let again = xmlrpc::parse_query(&rewire(&encoded), &relaxed());
    // The equality also means a fault never comes back as a success, nor the reverse.
    assert_eq!(again.as_ref(), Ok(&payload), "Jabber-RPC query round trip");
}

/// An `<event/>` of a provider: decode → encode → decode.
pub fn event(data: &[u8]) {
    let Some(el) = element(data) else { return };
    let Ok(notice) = EventNotice::from_element(&el, &Limits::default()) else {
        return;
    };
    let encoded = notice.to_element().expect("a decoded event encodes");
    let again = EventNotice::from_element(&rewire(&encoded), &relaxed());
    assert_eq!(again.as_ref().ok(), Some(&notice), "event round trip");
}
