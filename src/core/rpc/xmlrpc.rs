//! XEP-0009 Jabber-RPC codec: XML-RPC method calls and responses carried inside
//! `<query xmlns='jabber:iq:rpc'>`.
//!
//! The interop peer is slixmpp's `xep_0009` plugin, so this module reads everything it writes and
//! writes what it reads:
//!
//! - scalars: `<i4>`/`<int>`/`<i8>`, `<boolean>`, `<string>` (or bare text in `<value>`), `<double>`,
//!   `<base64>` (also the old `<Base64>`), `<dateTime.iso8601>` and `<nil/>`;
//! - `<struct><member><name>…</name><value>…</value></member></struct>` (member order is kept);
//! - `<array><data><value>…</value></data></array>`;
//! - faults as `<methodResponse><fault><value><struct>` with `faultCode` and `faultString`.
//!
//! Parsing walks the [`minidom`] tree only (never the raw string) and enforces [`Limits`] while it
//! walks, so a hostile payload yields [`CodecError::TooDeep`] or [`CodecError::TooLarge`] instead of
//! unbounded recursion or allocation. Nothing here panics on input.
//!
//! Decisions worth knowing:
//! - **Integers**: `<i4>`/`<int>` must fit `i32`, `<i8>` must fit `i64`; all become [`Value::Int`].
//!   On output an `Int` is `<i4>` when it fits `i32`, else `<i8>` (slixmpp cannot read `<i8>`).
//! - **Booleans**: `0`/`1` on output; `0`, `1`, `true`, `false` (any case) accepted on input.
//! - **Doubles**: non-finite values (NaN, ±inf, overflowing literals) are rejected on input. The
//!   encoders cannot fail, so use the checked constructor [`Value::double`] to keep non-finite values
//!   out; a non-finite [`Value::Double`] built by hand is written as `nan`/`inf`/`-inf` (what Python's
//!   `str(float)` writes and slixmpp reads back) with a `tracing` warning. Finite doubles are written
//!   in plain decimal notation (no exponent, as XML-RPC requires); exponents are accepted on input.
//! - **dateTime.iso8601**: kept as an opaque, whitespace-trimmed string (slixmpp writes
//!   `YYYYMMDDTHH:MM:SS`, other peers add dashes or zones); it is not validated.
//! - **Whitespace**: whitespace-only text between elements is ignored; `<string>` and bare `<value>`
//!   text is kept exactly; numbers, booleans, base64, dates and method names are trimmed, and base64
//!   may contain line breaks and may omit padding.
//! - **Responses**: an empty `<params/>` (what slixmpp sends when a method returns `None`) parses as
//!   `Success(Value::Nil)`; more than one `<param>` is rejected.
//! - **Structs**: a repeated member name is rejected, so no two parsers can disagree on which wins;
//!   the encoders refuse to write one ([`CodecError::DuplicateMember`]), since [`Value::Struct`] is a
//!   list and can hold it, and a payload this module would not read back must never be sent.
//! - **Unencodable text**: characters that XML 1.0 cannot carry (controls other than tab, LF, CR,
//!   and U+FFFE/U+FFFF) are replaced by U+FFFD on output, with a `tracing` warning.

use std::collections::HashSet;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use minidom::{Element, Node};

pub use super::value_serde::{from_value, to_value, Bytes, DateTime, ValueError};

/// The Jabber-RPC namespace (XEP-0009), used by `<query>` and every element inside it.
pub const NS: &str = "jabber:iq:rpc";

/// Hard ceiling on the nesting depth, whatever [`Limits::max_depth`] says: the parser recurses once
/// per nesting level, and this keeps that recursion far from the end of any thread's stack.
pub const MAX_SUPPORTED_DEPTH: usize = 256;

/// Longest excerpt of offending input kept in an error.
const SNIPPET_CHARS: usize = 32;

/// Base64 decoder that accepts input with or without padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An XML-RPC value.
///
/// ```
/// use pmn::core::rpc::xmlrpc::Value;
///
/// let v = Value::Struct(vec![
///     ("volume".into(), Value::from(12)),
///     ("muted".into(), Value::from(false)),
/// ]);
/// assert_eq!(v.get("volume").and_then(Value::as_i64), Some(12));
/// assert_eq!(v.get("muted").and_then(Value::as_bool), Some(false));
/// assert!(v.get("missing").is_none());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<i4>`, `<int>` or `<i8>`.
    Int(i64),
    /// `<boolean>`: `0` or `1`.
    Bool(bool),
    /// `<string>`, or bare text directly inside `<value>`.
    String(String),
    /// `<double>`. Should be finite: see [`Value::double`].
    Double(f64),
    /// `<base64>`, decoded.
    Base64(Vec<u8>),
    /// `<dateTime.iso8601>`, kept as an opaque string (slixmpp writes `YYYYMMDDTHH:MM:SS`).
    DateTime(String),
    /// `<struct>`: members in document order; names are unique when parsed.
    Struct(Vec<(String, Value)>),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<nil/>` (the common XML-RPC extension; slixmpp's `None`).
    Nil,
}

impl Value {
    /// Checked constructor for [`Value::Double`]: rejects NaN and infinities, which XML-RPC
    /// cannot carry.
    ///
    /// ```
    /// use pmn::core::rpc::xmlrpc::{CodecError, Value};
    ///
    /// assert_eq!(Value::double(0.5), Ok(Value::Double(0.5)));
    /// assert_eq!(Value::double(f64::NAN), Err(CodecError::NonFiniteDouble));
    /// ```
    pub fn double(x: f64) -> Result<Value, CodecError> {
        if x.is_finite() {
            Ok(Value::Double(x))
        } else {
            Err(CodecError::NonFiniteDouble)
        }
    }

    /// The value of the first member named `key`, if `self` is a struct that has one.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Struct(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if `self` is [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if `self` is [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The text, if `self` is [`Value::String`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if `self` is [`Value::Double`] (integers are not converted).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            _ => None,
        }
    }

    /// The items, if `self` is [`Value::Array`].
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The members, if `self` is [`Value::Struct`].
    pub fn as_struct(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Struct(members) => Some(members),
            _ => None,
        }
    }

    /// The decoded bytes, if `self` is [`Value::Base64`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Base64(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// Whether `self` is [`Value::Nil`].
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }
}

impl From<i32> for Value {
    /// An [`Value::Int`].
    fn from(v: i32) -> Self {
        Value::Int(v.into())
    }
}

impl From<i64> for Value {
    /// An [`Value::Int`] (written as `<i8>` when it does not fit `i32`).
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    /// An [`Value::Int`] (written as `<i8>` above `i32::MAX`).
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

impl From<bool> for Value {
    /// A [`Value::Bool`].
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    /// A [`Value::String`].
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}

impl From<String> for Value {
    /// A [`Value::String`].
    fn from(v: String) -> Self {
        Value::String(v)
    }
}

impl From<f64> for Value {
    /// A [`Value::Double`], unchecked: prefer [`Value::double`] when `v` may be non-finite.
    fn from(v: f64) -> Self {
        Value::Double(v)
    }
}

impl From<Vec<Value>> for Value {
    /// A [`Value::Array`].
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}

/// An XML-RPC `<methodCall>`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// The `<methodName>`, whitespace-trimmed, never empty when parsed.
    pub method: String,
    /// The `<param>` values, in order.
    pub params: Vec<Value>,
}

impl MethodCall {
    /// A call of `method` with `params`.
    pub fn new(method: impl Into<String>, params: Vec<Value>) -> Self {
        MethodCall {
            method: method.into(),
            params,
        }
    }
}

/// An XML-RPC `<methodResponse>`: one result value or a fault.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodResponse {
    /// `<params><param><value>…`; an empty `<params/>` parses as `Success(Value::Nil)`.
    Success(Value),
    /// `<fault>` with its `faultCode` and `faultString`.
    Fault {
        /// `faultCode`.
        code: i32,
        /// `faultString`.
        message: String,
    },
}

/// What a `<query xmlns='jabber:iq:rpc'>` carries.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcPayload {
    /// A `<methodCall>` (sent in an IQ of type `set`).
    Call(MethodCall),
    /// A `<methodResponse>` (sent in an IQ of type `result`).
    Response(MethodResponse),
}

/// Bounds enforced while parsing one `<query>`.
///
/// A provider sets them per router ([`RpcRouter::set_limits`](crate::core::rpc::RpcRouter::set_limits))
/// or per service ([`Service::limits`](crate::core::rpc::Service::limits)); [`Limits::DEFAULT`] is
/// what applies otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest `<value>` nesting; a top-level parameter is at depth 1, an item of an array at
    /// depth 2, and so on. Capped at [`MAX_SUPPORTED_DEPTH`] whatever is set here. Default 32.
    pub max_depth: usize,
    /// Most elements visited, `<query>` included. Default 10 000.
    pub max_nodes: usize,
    /// Most bytes of text visited in total, whitespace between elements included. Default 1 MiB.
    pub max_text_bytes: usize,
}

impl Limits {
    /// 32 levels, 10 000 elements, 1 MiB of text: room for any pmn service's calls (a queue of a
    /// few thousand items) while a hostile payload costs at most a few milliseconds to refuse.
    pub const DEFAULT: Limits = Limits {
        max_depth: 32,
        max_nodes: 10_000,
        max_text_bytes: 1024 * 1024,
    };
}

impl Default for Limits {
    /// [`Limits::DEFAULT`].
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The `<methodName>` of a `<query><methodCall>`, read without walking the parameters, so that the
/// limits of the service it names can be chosen before the parameters are parsed. `None` for
/// anything else (which [`parse_query`] then reports properly).
pub fn peek_method_name(query: &Element) -> Option<String> {
    let call = query.get_child("methodCall", NS)?;
    let name = call.get_child("methodName", NS)?.text();
    Some(name.trim().to_owned())
}

/// Which size limit a payload exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// [`Limits::max_nodes`].
    Nodes,
    /// [`Limits::max_text_bytes`].
    TextBytes,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::Nodes => "element count",
            LimitKind::TextBytes => "text size",
        })
    }
}

/// Why a Jabber-RPC payload was rejected. Excerpts of input in errors are cut to a few characters.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    /// The element handed to [`parse_query`] is not named `query`.
    #[error("<{0}> is not a Jabber-RPC <query>")]
    NotAQuery(String),
    /// An element is outside the `jabber:iq:rpc` namespace (the namespace found is given).
    #[error("element in namespace {0:?}, expected {NS:?}")]
    WrongNamespace(String),
    /// The named element has no child where one is required.
    #[error("<{0}> is empty")]
    Empty(&'static str),
    /// The named element has more children (or a repeated child) than allowed.
    #[error("<{0}> has too many children")]
    ExtraChildren(&'static str),
    /// An element that is not allowed inside `parent`.
    #[error("unexpected <{found}> inside <{parent}>")]
    UnexpectedElement {
        /// Where it was found.
        parent: &'static str,
        /// Its name.
        found: String,
    },
    /// Non-whitespace text inside the named element, which allows elements only.
    #[error("unexpected text inside <{0}>")]
    UnexpectedText(&'static str),
    /// `<methodCall>` lacks `<methodName>`, or it is empty.
    #[error("<methodCall> has no method name")]
    MissingMethodName,
    /// A `<value>` holds an element that is not an XML-RPC type.
    #[error("unknown XML-RPC type <{0}>")]
    UnknownType(String),
    /// An integer that does not parse.
    #[error("bad integer {0:?}")]
    BadInt(String),
    /// An integer outside the range of its tag (`i32` for `<i4>`/`<int>`, `i64` for `<i8>`).
    #[error("integer {0:?} out of range")]
    IntOutOfRange(String),
    /// A `<boolean>` that is not `0`, `1`, `true` or `false`.
    #[error("bad boolean {0:?}")]
    BadBool(String),
    /// A `<double>` that does not parse or is not finite.
    #[error("bad double {0:?}")]
    BadDouble(String),
    /// A non-finite number handed to [`Value::double`].
    #[error("NaN and infinities cannot be sent as XML-RPC doubles")]
    NonFiniteDouble,
    /// A `<base64>` that does not decode.
    #[error("bad base64")]
    BadBase64,
    /// A `<struct>` or `<member>` that breaks the grammar (the reason is given).
    #[error("malformed struct: {0}")]
    MalformedStruct(&'static str),
    /// An `<array>` or `<data>` that breaks the grammar (the reason is given).
    #[error("malformed array: {0}")]
    MalformedArray(&'static str),
    /// A `<fault>` whose value is not a struct with an `i32` `faultCode` and a string
    /// `faultString` (the reason is given).
    #[error("malformed fault: {0}")]
    MalformedFault(&'static str),
    /// Values nested deeper than [`Limits::max_depth`] (or [`MAX_SUPPORTED_DEPTH`]).
    #[error("values nested too deeply")]
    TooDeep,
    /// The payload exceeds a size limit.
    #[error("payload too large: {0} limit exceeded")]
    TooLarge(LimitKind),
    /// Encoding only: a [`Value::Struct`] with this member name twice (cut to a few characters),
    /// which every reader of this codec would reject.
    #[error("struct member {0:?} appears twice")]
    DuplicateMember(String),
}

/// Parses a `<query xmlns='jabber:iq:rpc'>` element (the child of an IQ) into a call or a response,
/// enforcing `limits` as it walks.
///
/// ```
/// use pmn::core::rpc::xmlrpc::{parse_query, Limits, MethodCall, RpcPayload, Value};
///
/// let query: minidom::Element = "<query xmlns='jabber:iq:rpc'><methodCall>\
///     <methodName>tv.setVolume</methodName>\
///     <params><param><value><i4>12</i4></value></param></params>\
///     </methodCall></query>"
///     .parse()
///     .unwrap();
/// assert_eq!(
///     parse_query(&query, &Limits::default()),
///     Ok(RpcPayload::Call(MethodCall::new("tv.setVolume", vec![Value::Int(12)])))
/// );
/// ```
pub fn parse_query(query: &Element, limits: &Limits) -> Result<RpcPayload, CodecError> {
    if query.name() != "query" {
        return Err(CodecError::NotAQuery(snippet(query.name())));
    }
    let mut walker = Walker::new(limits);
    walker.enter(query)?;
    // Our call-id element (super::call_id) rides beside the payload; it is not XML-RPC.
    let children = walker.children_except(query, "query", super::call_id::is_call_element)?;
    let payload = match children.as_slice() {
        [] => return Err(CodecError::Empty("query")),
        [one] => *one,
        _ => return Err(CodecError::ExtraChildren("query")),
    };
    match payload.name() {
        "methodCall" => walker.method_call(payload).map(RpcPayload::Call),
        "methodResponse" => walker.method_response(payload).map(RpcPayload::Response),
        other => Err(CodecError::UnexpectedElement {
            parent: "query",
            found: snippet(other),
        }),
    }
}

/// Builds the `<query xmlns='jabber:iq:rpc'><methodCall>…` element for `call`.
///
/// `<params>` is always written, empty when there are no parameters (as slixmpp does).
///
/// ```
/// use pmn::core::rpc::xmlrpc::{call_to_query, parse_query, Limits, MethodCall, RpcPayload, Value};
///
/// let call = MethodCall::new("player.seek", vec![Value::from(90), Value::from("relative")]);
/// let query = call_to_query(&call)?;
/// assert_eq!(parse_query(&query, &Limits::default()), Ok(RpcPayload::Call(call)));
/// # Ok::<(), pmn::core::rpc::xmlrpc::CodecError>(())
/// ```
///
/// Fails with [`CodecError::DuplicateMember`] if a parameter holds a struct with a repeated name.
pub fn call_to_query(call: &MethodCall) -> Result<Element, CodecError> {
    let params = call
        .params
        .iter()
        .map(param_element)
        .collect::<Result<Vec<_>, _>>()?;
    let method_call = Element::builder("methodCall", NS)
        .append(text_element("methodName", &call.method))
        .append(Element::builder("params", NS).append_all(params).build())
        .build();
    Ok(Element::builder("query", NS).append(method_call).build())
}

/// Builds the `<query xmlns='jabber:iq:rpc'><methodResponse>…` element for `resp`.
///
/// A fault is written as `<fault><value><struct>` with `faultCode` (`<i4>`) then `faultString`
/// (`<string>`), like slixmpp.
///
/// ```
/// use pmn::core::rpc::xmlrpc::{parse_query, response_to_query, Limits, MethodResponse, RpcPayload};
///
/// let fault = MethodResponse::Fault { code: 4, message: "Too many parameters.".into() };
/// let query = response_to_query(&fault)?;
/// assert_eq!(parse_query(&query, &Limits::default()), Ok(RpcPayload::Response(fault)));
/// # Ok::<(), pmn::core::rpc::xmlrpc::CodecError>(())
/// ```
///
/// Fails with [`CodecError::DuplicateMember`] if a success value holds a struct with a repeated
/// name; a fault always encodes (see [`fault_to_query`]).
pub fn response_to_query(resp: &MethodResponse) -> Result<Element, CodecError> {
    let body = match resp {
        MethodResponse::Success(value) => Element::builder("params", NS)
            .append(param_element(value)?)
            .build(),
        MethodResponse::Fault { code, message } => return Ok(fault_to_query(*code, message)),
    };
    Ok(wrap_response(body))
}

/// The `<query><methodResponse><fault>…` for a fault: infallible, as its struct's two member names
/// are fixed, so a provider can always answer one (e.g. when its result does not encode).
pub fn fault_to_query(code: i32, message: &str) -> Element {
    // The scalars are written as `value_element` writes an `Int` that fits i32 and a `String`.
    let fault = Element::builder("struct", NS)
        .append(member_element(
            "faultCode",
            typed_value(text_element("i4", &code.to_string())),
        ))
        .append(member_element(
            "faultString",
            typed_value(text_element("string", message)),
        ))
        .build();
    let body = Element::builder("fault", NS)
        .append(typed_value(fault))
        .build();
    wrap_response(body)
}

fn wrap_response(body: Element) -> Element {
    let method_response = Element::builder("methodResponse", NS).append(body).build();
    Element::builder("query", NS)
        .append(method_response)
        .build()
}

/// One `<value>` element (in the Jabber-RPC namespace), for payloads outside a method call such as
/// event parameters. Fails with [`CodecError::DuplicateMember`] like [`call_to_query`].
pub fn value_to_element(value: &Value) -> Result<Element, CodecError> {
    value_element(value)
}

/// Parses one `<value>` element (in the Jabber-RPC namespace) under `limits`.
pub fn parse_value(el: &Element, limits: &Limits) -> Result<Value, CodecError> {
    let mut walker = Walker::new(limits);
    walker.enter(el)?;
    if el.name() != "value" {
        return Err(CodecError::UnexpectedElement {
            parent: "event",
            found: snippet(el.name()),
        });
    }
    walker.value(el, 1)
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Walks one `<query>` tree, counting what it visits against the limits.
struct Walker<'l> {
    limits: &'l Limits,
    max_depth: usize,
    nodes: usize,
    text_bytes: usize,
}

impl<'l> Walker<'l> {
    fn new(limits: &'l Limits) -> Self {
        Walker {
            limits,
            max_depth: limits.max_depth.min(MAX_SUPPORTED_DEPTH),
            nodes: 0,
            text_bytes: 0,
        }
    }

    /// Counts `el` and checks its namespace.
    fn enter(&mut self, el: &Element) -> Result<(), CodecError> {
        self.count_node()?;
        if !el.has_ns(NS) {
            return Err(CodecError::WrongNamespace(snippet(&el.ns())));
        }
        Ok(())
    }

    fn count_node(&mut self) -> Result<(), CodecError> {
        self.nodes = self.nodes.saturating_add(1);
        if self.nodes > self.limits.max_nodes {
            return Err(CodecError::TooLarge(LimitKind::Nodes));
        }
        Ok(())
    }

    fn count_text(&mut self, text: &str) -> Result<(), CodecError> {
        self.text_bytes = self.text_bytes.saturating_add(text.len());
        if self.text_bytes > self.limits.max_text_bytes {
            return Err(CodecError::TooLarge(LimitKind::TextBytes));
        }
        Ok(())
    }

    /// The element children of `el`, which may hold whitespace text but no other text.
    fn children<'e>(
        &mut self,
        el: &'e Element,
        context: &'static str,
    ) -> Result<Vec<&'e Element>, CodecError> {
        self.children_except(el, context, |_| false)
    }

    /// [`Walker::children`] without the children `skip` names (counted as one node each, never
    /// walked: they are not XML-RPC).
    fn children_except<'e>(
        &mut self,
        el: &'e Element,
        context: &'static str,
        skip: impl Fn(&Element) -> bool,
    ) -> Result<Vec<&'e Element>, CodecError> {
        let mut out = Vec::new();
        for node in el.nodes() {
            match node {
                Node::Element(child) if skip(child) => self.count_node()?,
                Node::Element(child) => {
                    self.enter(child)?;
                    out.push(child);
                }
                Node::Text(text) => {
                    self.count_text(text)?;
                    if !is_xml_whitespace(text) {
                        return Err(CodecError::UnexpectedText(context));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The text of `el`, which must have no element children.
    fn leaf_text(&mut self, el: &Element, context: &'static str) -> Result<String, CodecError> {
        let mut out = String::new();
        for node in el.nodes() {
            match node {
                Node::Element(child) => {
                    return Err(CodecError::UnexpectedElement {
                        parent: context,
                        found: snippet(child.name()),
                    })
                }
                Node::Text(text) => {
                    self.count_text(text)?;
                    out.push_str(text);
                }
            }
        }
        Ok(out)
    }

    fn method_call(&mut self, el: &Element) -> Result<MethodCall, CodecError> {
        let mut method = None;
        let mut params = None;
        for child in self.children(el, "methodCall")? {
            match child.name() {
                "methodName" if method.is_none() => {
                    method = Some(self.leaf_text(child, "methodName")?);
                }
                "params" if params.is_none() => params = Some(self.params(child)?),
                "methodName" | "params" => return Err(CodecError::ExtraChildren("methodCall")),
                other => {
                    return Err(CodecError::UnexpectedElement {
                        parent: "methodCall",
                        found: snippet(other),
                    })
                }
            }
        }
        let method = method
            .map(|m| trim_xml_whitespace(&m).to_owned())
            .filter(|m| !m.is_empty())
            .ok_or(CodecError::MissingMethodName)?;
        Ok(MethodCall {
            method,
            params: params.unwrap_or_default(),
        })
    }

    fn method_response(&mut self, el: &Element) -> Result<MethodResponse, CodecError> {
        let children = self.children(el, "methodResponse")?;
        let body = match children.as_slice() {
            [] => return Err(CodecError::Empty("methodResponse")),
            [one] => *one,
            _ => return Err(CodecError::ExtraChildren("methodResponse")),
        };
        match body.name() {
            "params" => {
                let mut params = self.params(body)?;
                match params.len() {
                    0 => Ok(MethodResponse::Success(Value::Nil)),
                    1 => Ok(MethodResponse::Success(params.remove(0))),
                    _ => Err(CodecError::ExtraChildren("params")),
                }
            }
            "fault" => self.fault(body),
            other => Err(CodecError::UnexpectedElement {
                parent: "methodResponse",
                found: snippet(other),
            }),
        }
    }

    fn params(&mut self, el: &Element) -> Result<Vec<Value>, CodecError> {
        let mut out = Vec::new();
        for param in self.children(el, "params")? {
            if param.name() != "param" {
                return Err(CodecError::UnexpectedElement {
                    parent: "params",
                    found: snippet(param.name()),
                });
            }
            let value = self.single_value(param, "param")?;
            out.push(self.value(value, 1)?);
        }
        Ok(out)
    }

    /// The one `<value>` child of `el`.
    fn single_value<'e>(
        &mut self,
        el: &'e Element,
        context: &'static str,
    ) -> Result<&'e Element, CodecError> {
        let children = self.children(el, context)?;
        match children.as_slice() {
            [] => Err(CodecError::Empty(context)),
            [one] if one.name() == "value" => Ok(*one),
            [other] => Err(CodecError::UnexpectedElement {
                parent: context,
                found: snippet(other.name()),
            }),
            _ => Err(CodecError::ExtraChildren(context)),
        }
    }

    fn fault(&mut self, el: &Element) -> Result<MethodResponse, CodecError> {
        let value = self.single_value(el, "fault")?;
        let value = self.value(value, 1)?;
        if !matches!(value, Value::Struct(_)) {
            return Err(CodecError::MalformedFault("value is not a struct"));
        }
        let code = match value.get("faultCode") {
            Some(Value::Int(code)) => i32::try_from(*code)
                .map_err(|_| CodecError::MalformedFault("faultCode out of range"))?,
            Some(_) => return Err(CodecError::MalformedFault("faultCode is not an int")),
            None => return Err(CodecError::MalformedFault("missing faultCode")),
        };
        let message = match value.get("faultString") {
            Some(Value::String(message)) => message.clone(),
            Some(_) => return Err(CodecError::MalformedFault("faultString is not a string")),
            None => return Err(CodecError::MalformedFault("missing faultString")),
        };
        Ok(MethodResponse::Fault { code, message })
    }

    /// Parses a `<value>` at nesting `depth` (1 for a top-level parameter).
    fn value(&mut self, el: &Element, depth: usize) -> Result<Value, CodecError> {
        if depth > self.max_depth {
            return Err(CodecError::TooDeep);
        }
        let mut typed: Option<&Element> = None;
        let mut text = String::new();
        for node in el.nodes() {
            match node {
                Node::Element(child) => {
                    self.enter(child)?;
                    if typed.is_some() {
                        return Err(CodecError::ExtraChildren("value"));
                    }
                    typed = Some(child);
                }
                Node::Text(t) => {
                    self.count_text(t)?;
                    text.push_str(t);
                }
            }
        }
        let Some(typed) = typed else {
            // No type element: the text is a string, taken as is.
            return Ok(Value::String(text));
        };
        if !is_xml_whitespace(&text) {
            return Err(CodecError::UnexpectedText("value"));
        }
        match typed.name() {
            "i4" => parse_int(&self.leaf_text(typed, "i4")?, true),
            "int" => parse_int(&self.leaf_text(typed, "int")?, true),
            "i8" => parse_int(&self.leaf_text(typed, "i8")?, false),
            "boolean" => parse_bool(&self.leaf_text(typed, "boolean")?),
            "string" => Ok(Value::String(self.leaf_text(typed, "string")?)),
            "double" => parse_double(&self.leaf_text(typed, "double")?),
            "base64" => parse_base64(&self.leaf_text(typed, "base64")?),
            "Base64" => parse_base64(&self.leaf_text(typed, "Base64")?),
            "dateTime.iso8601" => {
                let raw = self.leaf_text(typed, "dateTime.iso8601")?;
                Ok(Value::DateTime(trim_xml_whitespace(&raw).to_owned()))
            }
            "nil" => {
                if is_xml_whitespace(&self.leaf_text(typed, "nil")?) {
                    Ok(Value::Nil)
                } else {
                    Err(CodecError::UnexpectedText("nil"))
                }
            }
            "struct" => self.parse_struct(typed, depth),
            "array" => self.parse_array(typed, depth),
            other => Err(CodecError::UnknownType(snippet(other))),
        }
    }

    fn parse_struct(&mut self, el: &Element, depth: usize) -> Result<Value, CodecError> {
        let members = self.children(el, "struct")?;
        let mut out = Vec::with_capacity(members.len());
        let mut seen = HashSet::with_capacity(members.len());
        for member in members {
            if member.name() != "member" {
                return Err(CodecError::MalformedStruct(
                    "unexpected element in <struct>",
                ));
            }
            let mut name = None;
            let mut value = None;
            for child in self.children(member, "member")? {
                match child.name() {
                    "name" if name.is_none() => name = Some(self.leaf_text(child, "name")?),
                    "value" if value.is_none() => value = Some(child),
                    "name" => return Err(CodecError::MalformedStruct("member with two names")),
                    "value" => return Err(CodecError::MalformedStruct("member with two values")),
                    _ => {
                        return Err(CodecError::MalformedStruct(
                            "unexpected element in <member>",
                        ))
                    }
                }
            }
            let name = name.ok_or(CodecError::MalformedStruct("member without <name>"))?;
            let value = value.ok_or(CodecError::MalformedStruct("member without <value>"))?;
            if !seen.insert(name.clone()) {
                return Err(CodecError::MalformedStruct("duplicate member name"));
            }
            let value = self.value(value, depth + 1)?;
            out.push((name, value));
        }
        Ok(Value::Struct(out))
    }

    fn parse_array(&mut self, el: &Element, depth: usize) -> Result<Value, CodecError> {
        let children = self.children(el, "array")?;
        let data = match children.as_slice() {
            [data] if data.name() == "data" => *data,
            [] => return Err(CodecError::MalformedArray("missing <data>")),
            [_] => return Err(CodecError::MalformedArray("unexpected element in <array>")),
            _ => return Err(CodecError::MalformedArray("more than one child in <array>")),
        };
        let values = self.children(data, "data")?;
        let mut out = Vec::with_capacity(values.len());
        for value in values {
            if value.name() != "value" {
                return Err(CodecError::MalformedArray("unexpected element in <data>"));
            }
            out.push(self.value(value, depth + 1)?);
        }
        Ok(Value::Array(out))
    }
}

fn parse_int(raw: &str, fits_i32: bool) -> Result<Value, CodecError> {
    use std::num::IntErrorKind;
    let text = trim_xml_whitespace(raw);
    let n: i64 = text
        .parse()
        .map_err(|e: std::num::ParseIntError| match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                CodecError::IntOutOfRange(snippet(text))
            }
            _ => CodecError::BadInt(snippet(text)),
        })?;
    if fits_i32 && i32::try_from(n).is_err() {
        return Err(CodecError::IntOutOfRange(snippet(text)));
    }
    Ok(Value::Int(n))
}

fn parse_bool(raw: &str) -> Result<Value, CodecError> {
    let text = trim_xml_whitespace(raw);
    match text {
        "1" => Ok(Value::Bool(true)),
        "0" => Ok(Value::Bool(false)),
        t if t.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        t if t.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        _ => Err(CodecError::BadBool(snippet(text))),
    }
}

fn parse_double(raw: &str) -> Result<Value, CodecError> {
    let text = trim_xml_whitespace(raw);
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(Value::Double(x)),
        _ => Err(CodecError::BadDouble(snippet(text))),
    }
}

fn parse_base64(raw: &str) -> Result<Value, CodecError> {
    let compact: String = raw.chars().filter(|c| !is_xml_space_char(*c)).collect();
    LENIENT_BASE64
        .decode(compact.as_bytes())
        .map(Value::Base64)
        .map_err(|_| CodecError::BadBase64)
}

fn is_xml_space_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_xml_whitespace(text: &str) -> bool {
    text.chars().all(is_xml_space_char)
}

fn trim_xml_whitespace(text: &str) -> &str {
    text.trim_matches(is_xml_space_char)
}

/// At most [`SNIPPET_CHARS`] characters of `text`, for error messages.
fn snippet(text: &str) -> String {
    match text.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

fn param_element(value: &Value) -> Result<Element, CodecError> {
    Ok(Element::builder("param", NS)
        .append(value_element(value)?)
        .build())
}

/// `<name>text</name>`, with no text node at all when `text` is empty.
fn text_element(name: &str, text: &str) -> Element {
    let mut el = Element::bare(name, NS);
    if !text.is_empty() {
        el.append_text_node(xml_safe(text));
    }
    el
}

/// `text` with the characters XML 1.0 cannot carry replaced by U+FFFD (minidom would refuse to
/// serialise them, failing the whole stanza).
fn xml_safe(text: &str) -> String {
    let invalid = |c: char| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}')
            || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    if text.chars().any(invalid) {
        tracing::warn!("Jabber-RPC text holds characters XML cannot carry; replaced by U+FFFD");
        text.chars()
            .map(|c| if invalid(c) { '\u{fffd}' } else { c })
            .collect()
    } else {
        text.to_owned()
    }
}

fn format_double(x: f64) -> String {
    if x.is_finite() {
        // `Display` for f64 is plain decimal (never an exponent) with the shortest digits that
        // read back to the same number.
        format!("{x}")
    } else {
        tracing::warn!("non-finite double in a Jabber-RPC value; written as Python spells it");
        if x.is_nan() {
            "nan".to_owned()
        } else if x > 0.0 {
            "inf".to_owned()
        } else {
            "-inf".to_owned()
        }
    }
}

fn value_element(value: &Value) -> Result<Element, CodecError> {
    let typed = match value {
        Value::Int(i) => match i32::try_from(*i) {
            Ok(small) => text_element("i4", &small.to_string()),
            Err(_) => text_element("i8", &i.to_string()),
        },
        Value::Bool(b) => text_element("boolean", if *b { "1" } else { "0" }),
        Value::String(s) => text_element("string", s),
        Value::Double(x) => text_element("double", &format_double(*x)),
        Value::Base64(bytes) => text_element("base64", &STANDARD.encode(bytes)),
        Value::DateTime(s) => text_element("dateTime.iso8601", s),
        Value::Struct(members) => {
            let mut names = HashSet::with_capacity(members.len());
            let mut out = Vec::with_capacity(members.len());
            for (name, value) in members {
                if !names.insert(name.as_str()) {
                    return Err(CodecError::DuplicateMember(snippet(name)));
                }
                out.push(member_element(name, value_element(value)?));
            }
            Element::builder("struct", NS).append_all(out).build()
        }
        Value::Array(items) => {
            let items = items
                .iter()
                .map(value_element)
                .collect::<Result<Vec<_>, _>>()?;
            let data = Element::builder("data", NS).append_all(items).build();
            Element::builder("array", NS).append(data).build()
        }
        Value::Nil => Element::bare("nil", NS),
    };
    Ok(typed_value(typed))
}

/// `<value>typed</value>`.
fn typed_value(typed: Element) -> Element {
    Element::builder("value", NS).append(typed).build()
}

/// `<member><name>name</name>value</member>`.
fn member_element(name: &str, value: Element) -> Element {
    Element::builder("member", NS)
        .append(text_element("name", name))
        .append(value)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(xml: &str) -> Element {
        match xml.parse() {
            Ok(el) => el,
            Err(e) => panic!("test XML does not parse: {e}"),
        }
    }

    fn parse_str(xml: &str) -> Result<RpcPayload, CodecError> {
        let el: Element = match xml.parse() {
            Ok(el) => el,
            Err(e) => panic!("test XML does not parse: {e}"),
        };
        parse_query(&el, &Limits::default())
    }

    /// Wraps `inner` (the content of one `<value>`) into a call with one parameter.
    fn call_with_value(inner: &str) -> String {
        format!(
            "<query xmlns='jabber:iq:rpc'><methodCall><methodName>m</methodName>\
             <params><param><value>{inner}</value></param></params></methodCall></query>"
        )
    }

    fn parse_value(inner: &str) -> Result<Value, CodecError> {
        match parse_str(&call_with_value(inner))? {
            RpcPayload::Call(mut call) if call.params.len() == 1 => Ok(call.params.remove(0)),
            other => panic!("unexpected payload {other:?}"),
        }
    }

    /// Serialises to a string and parses back, as the wire would.
    fn wire_round_trip(query: &Element) -> RpcPayload {
        let xml = String::from(query);
        match parse_str(&xml) {
            Ok(p) => p,
            Err(e) => panic!("round trip failed: {e} for {xml}"),
        }
    }

    fn round_trip_value(v: Value) {
        let call = MethodCall::new("test.echo", vec![v]);
        assert_eq!(
            wire_round_trip(&call_to_query(&call).expect("encodes")),
            RpcPayload::Call(call.clone())
        );
        let resp = MethodResponse::Success(call.params[0].clone());
        assert_eq!(
            wire_round_trip(&response_to_query(&resp).expect("encodes")),
            RpcPayload::Response(resp)
        );
    }

    #[test]
    fn round_trips_every_scalar() {
        for v in [
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i32::MAX.into()),
            Value::Int(i32::MIN.into()),
            Value::Int(i64::from(i32::MAX) + 1),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Bool(true),
            Value::Bool(false),
            Value::String(String::new()),
            Value::String("  spaced\n\ttext\r\n <&>\"' ünïcödé 🎬 ".into()),
            Value::Double(0.0),
            Value::Double(-2.5),
            Value::Double(0.1),
            Value::Double(1e300),
            Value::Double(-1e-300),
            Value::Double(f64::MAX),
            Value::Double(f64::MIN_POSITIVE),
            Value::Base64(Vec::new()),
            Value::Base64((0..=255).collect()),
            Value::DateTime("20240131T23:59:59".into()),
            Value::Nil,
        ] {
            round_trip_value(v);
        }
    }

    #[test]
    fn round_trips_nested_structs_and_arrays() {
        let nested = Value::Struct(vec![
            ("zeta".into(), Value::from(1)),
            ("alpha".into(), Value::Array(vec![])),
            ("".into(), Value::Struct(vec![])),
            (
                "list".into(),
                Value::Array(vec![
                    Value::from("a"),
                    Value::Array(vec![Value::Nil, Value::from(true)]),
                    Value::Struct(vec![
                        ("x".into(), Value::from(1.5)),
                        ("bytes".into(), Value::Base64(b"\x00\xff".to_vec())),
                        (
                            "deep".into(),
                            Value::Array(vec![Value::Struct(vec![(
                                "k".into(),
                                Value::from(-7_i64),
                            )])]),
                        ),
                    ]),
                ]),
            ),
        ]);
        round_trip_value(nested.clone());
        let call = MethodCall::new("many", vec![nested, Value::from(2), Value::Nil]);
        assert_eq!(
            wire_round_trip(&call_to_query(&call).expect("encodes")),
            RpcPayload::Call(call)
        );
        let empty = MethodCall::new("noargs", vec![]);
        assert_eq!(
            wire_round_trip(&call_to_query(&empty).expect("encodes")),
            RpcPayload::Call(empty)
        );
    }

    #[test]
    fn round_trips_faults() {
        for resp in [
            MethodResponse::Fault {
                code: 500,
                message: "boom".into(),
            },
            MethodResponse::Fault {
                code: i32::MIN,
                message: String::new(),
            },
        ] {
            assert_eq!(
                wire_round_trip(&response_to_query(&resp).expect("encodes")),
                RpcPayload::Response(resp)
            );
        }
    }

    #[test]
    fn struct_with_a_repeated_member_is_refused_at_encode_time() {
        let dup = Value::Struct(vec![
            ("a".into(), Value::from(1)),
            ("b".into(), Value::from(2)),
            ("a".into(), Value::from(3)),
        ]);
        let refused = Err(CodecError::DuplicateMember("a".into()));
        // Anywhere it sits: a parameter, a result, inside an array, an event value.
        let nested = Value::Array(vec![Value::Nil, dup.clone()]);
        assert_eq!(
            call_to_query(&MethodCall::new("x.y", vec![nested])),
            refused
        );
        assert_eq!(
            response_to_query(&MethodResponse::Success(dup.clone())),
            refused
        );
        assert_eq!(value_to_element(&dup), refused);
        // What would have gone out is what our own parser rejects.
        let members = |v: &Value| match v {
            Value::Struct(m) => m.clone(),
            _ => vec![],
        };
        let unique = Value::Struct(members(&dup).into_iter().take(2).collect());
        assert!(value_to_element(&unique).is_ok());
        // Long names are cut in the error.
        let long = "n".repeat(100);
        let dup_long = Value::Struct(vec![(long.clone(), Value::Nil), (long.clone(), Value::Nil)]);
        assert!(matches!(
            value_to_element(&dup_long),
            Err(CodecError::DuplicateMember(name)) if name.chars().count() <= SNIPPET_CHARS + 1
        ));
    }

    #[test]
    fn fault_to_query_is_what_response_to_query_writes_for_a_fault() {
        let fault = MethodResponse::Fault {
            code: -7,
            message: "no <such> & item".into(),
        };
        let query = fault_to_query(-7, "no <such> & item");
        // The same bytes as the generic encoding of the fault struct.
        let generic = Value::Struct(vec![
            ("faultCode".into(), Value::Int(-7)),
            ("faultString".into(), Value::from("no <such> & item")),
        ]);
        let body = Element::builder("fault", NS)
            .append(value_element(&generic).expect("encodes"))
            .build();
        assert_eq!(String::from(&wrap_response(body)), String::from(&query));
        assert_eq!(response_to_query(&fault).expect("encodes"), query);
        assert_eq!(
            parse_query(&query, &Limits::default()),
            Ok(RpcPayload::Response(fault))
        );
    }

    #[test]
    fn int_is_i4_when_it_fits_else_i8() {
        let small = value_element(&Value::Int(i32::MAX.into())).expect("encodes");
        assert!(small.has_child("i4", NS));
        let big = value_element(&Value::Int(i64::from(i32::MAX) + 1)).expect("encodes");
        assert!(big.has_child("i8", NS));
        assert_eq!(
            value_element(&Value::Bool(true)).expect("encodes"),
            element("<value xmlns='jabber:iq:rpc'><boolean>1</boolean></value>")
        );
    }

    #[test]
    fn encoder_output_matches_slixmpp_shape() {
        let call = MethodCall::new(
            "thermostat.set",
            vec![Value::Struct(vec![("temp".into(), Value::from(21))])],
        );
        assert_eq!(
            call_to_query(&call).expect("encodes"),
            element(
            "<query xmlns=\"jabber:iq:rpc\"><methodCall><methodName>thermostat.set</methodName>\
             <params><param><value><struct><member><name>temp</name><value><i4>21</i4></value>\
             </member></struct></value></param></params></methodCall></query>"
            )
        );
        let fault = MethodResponse::Fault {
            code: 500,
            message: "nope".into(),
        };
        assert_eq!(
            response_to_query(&fault).expect("encodes"),
            element(
                "<query xmlns=\"jabber:iq:rpc\"><methodResponse><fault><value><struct>\
             <member><name>faultCode</name><value><i4>500</i4></value></member>\
             <member><name>faultString</name><value><string>nope</string></value></member>\
             </struct></value></fault></methodResponse></query>"
            )
        );
    }

    /// A call as slixmpp 1.17 writes it (`py2xml` in `xep_0009/binding.py`: ElementTree with the
    /// namespace on each element, `str(int)` in `<i4>`, `str(int(bool))`, `str(float)`, and a dict
    /// as `<struct>` with `<name>` then `<value>`).
    #[test]
    fn parses_slixmpp_method_call() {
        let xml = "<iq xmlns='jabber:client' type='set' id='1' to='tv@example.org/tv'>\
<query xmlns=\"jabber:iq:rpc\"><methodCall><methodName>tv.configure</methodName>\
<params><param><value><i4>42</i4></value></param>\
<param><value><boolean>1</boolean></value></param>\
<param><value><string>living room</string></value></param>\
<param><value><double>1e+100</double></value></param>\
<param><value><double>0.5</double></value></param>\
<param><value><base64>aGVsbG8=</base64></value></param>\
<param><value><dateTime.iso8601>20240131T23:59:59</dateTime.iso8601></value></param>\
<param><value><nil /></value></param>\
<param><value><array><data><value><i4>1</i4></value><value><string>two</string></value></data></array></value></param>\
<param><value><struct><member><name>volume</name><value><i4>12</i4></value></member>\
<member><name>muted</name><value><boolean>0</boolean></value></member></struct></value></param>\
</params></methodCall></query></iq>";
        let iq: Element = match xml.parse() {
            Ok(el) => el,
            Err(e) => panic!("{e}"),
        };
        let Some(query) = iq.get_child("query", NS) else {
            panic!("no query")
        };
        let parsed = parse_query(query, &Limits::default());
        assert_eq!(
            parsed,
            Ok(RpcPayload::Call(MethodCall::new(
                "tv.configure",
                vec![
                    Value::Int(42),
                    Value::Bool(true),
                    Value::String("living room".into()),
                    Value::Double(1e100),
                    Value::Double(0.5),
                    Value::Base64(b"hello".to_vec()),
                    Value::DateTime("20240131T23:59:59".into()),
                    Value::Nil,
                    Value::Array(vec![Value::Int(1), Value::String("two".into())]),
                    Value::Struct(vec![
                        ("volume".into(), Value::Int(12)),
                        ("muted".into(), Value::Bool(false)),
                    ]),
                ]
            )))
        );
    }

    /// A result and a fault as slixmpp writes them (`make_iq_method_response` and `fault2xml`,
    /// which puts `xmlns` on `<fault>` itself; `None` returns give an empty `<params />`).
    #[test]
    fn parses_slixmpp_method_responses() {
        let ok = "<query xmlns=\"jabber:iq:rpc\"><methodResponse><params><param><value>\
                  <string>done</string></value></param></params></methodResponse></query>";
        assert_eq!(
            parse_str(ok),
            Ok(RpcPayload::Response(MethodResponse::Success(
                Value::String("done".into())
            )))
        );
        let none =
            "<query xmlns=\"jabber:iq:rpc\"><methodResponse><params /></methodResponse></query>";
        assert_eq!(
            parse_str(none),
            Ok(RpcPayload::Response(MethodResponse::Success(Value::Nil)))
        );
        let fault = "<query xmlns=\"jabber:iq:rpc\"><methodResponse><fault xmlns=\"jabber:iq:rpc\">\
                     <value><struct><member><name>faultCode</name><value><i4>500</i4></value></member>\
                     <member><name>faultString</name><value><string>Invocation failed</string></value>\
                     </member></struct></value></fault></methodResponse></query>";
        assert_eq!(
            parse_str(fault),
            Ok(RpcPayload::Response(MethodResponse::Fault {
                code: 500,
                message: "Invocation failed".into()
            }))
        );
    }

    #[test]
    fn lenient_forms_are_accepted() {
        assert_eq!(parse_value("<int> 7 </int>"), Ok(Value::Int(7)));
        assert_eq!(parse_value("<i4>+7</i4>"), Ok(Value::Int(7)));
        assert_eq!(
            parse_value("<i8>-9000000000</i8>"),
            Ok(Value::Int(-9_000_000_000))
        );
        assert_eq!(
            parse_value("<boolean>true</boolean>"),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            parse_value("<boolean> FALSE </boolean>"),
            Ok(Value::Bool(false))
        );
        assert_eq!(
            parse_value("<double>-1.5E3</double>"),
            Ok(Value::Double(-1500.0))
        );
        assert_eq!(
            parse_value("<Base64>aGk</Base64>"),
            Ok(Value::Base64(b"hi".to_vec()))
        );
        assert_eq!(
            parse_value("<base64>\n  aGVs\n  bG8=\n</base64>"),
            Ok(Value::Base64(b"hello".to_vec()))
        );
        assert_eq!(
            parse_value("  bare text "),
            Ok(Value::String("  bare text ".into()))
        );
        assert_eq!(parse_value(""), Ok(Value::String(String::new())));
        assert_eq!(parse_value("<string/>"), Ok(Value::String(String::new())));
        assert_eq!(
            parse_value("<string> x </string>"),
            Ok(Value::String(" x ".into()))
        );
        assert_eq!(parse_value("\n  <i4>1</i4>\n"), Ok(Value::Int(1)));
        assert_eq!(parse_value("<nil></nil>"), Ok(Value::Nil));
        let pretty =
            "<query xmlns='jabber:iq:rpc'>\n <methodCall>\n  <methodName> a.b </methodName>\n \
                      </methodCall>\n</query>";
        assert_eq!(
            parse_str(pretty),
            Ok(RpcPayload::Call(MethodCall::new("a.b", vec![])))
        );
        // Member children in either order.
        assert_eq!(
            parse_value(
                "<struct><member><value><i4>1</i4></value><name>k</name></member></struct>"
            ),
            Ok(Value::Struct(vec![("k".into(), Value::Int(1))]))
        );
    }

    #[test]
    fn helpers_and_conversions() {
        assert_eq!(Value::from(3_i32), Value::Int(3));
        assert_eq!(Value::from(u32::MAX), Value::Int(4_294_967_295));
        assert_eq!(Value::from(5_i64).as_i64(), Some(5));
        assert_eq!(Value::from(true).as_bool(), Some(true));
        assert_eq!(Value::from("s").as_str(), Some("s"));
        assert_eq!(Value::from(String::from("t")).as_str(), Some("t"));
        assert_eq!(Value::from(2.5).as_f64(), Some(2.5));
        assert_eq!(Value::from(1).as_f64(), None);
        let arr = Value::from(vec![Value::Nil]);
        assert_eq!(arr.as_array(), Some(&[Value::Nil][..]));
        assert!(arr.get("x").is_none());
        assert_eq!(Value::Base64(vec![1]).as_bytes(), Some(&[1_u8][..]));
        assert!(Value::Nil.is_nil());
        let st = Value::Struct(vec![("a".into(), Value::from(1))]);
        assert_eq!(st.as_struct().map(<[_]>::len), Some(1));
        assert_eq!(st.get("a"), Some(&Value::Int(1)));
        assert_eq!(
            Value::double(f64::INFINITY),
            Err(CodecError::NonFiniteDouble)
        );
        assert_eq!(Value::double(1.0), Ok(Value::Double(1.0)));
    }

    #[test]
    fn non_finite_and_unencodable_output() {
        let v = value_element(&Value::Double(f64::NAN)).expect("encodes");
        assert_eq!(
            v.get_child("double", NS).map(Element::text).as_deref(),
            Some("nan")
        );
        let v = value_element(&Value::Double(f64::NEG_INFINITY)).expect("encodes");
        assert_eq!(
            v.get_child("double", NS).map(Element::text).as_deref(),
            Some("-inf")
        );
        // What we write for non-finite doubles, we refuse to read.
        assert_eq!(
            parse_value("<double>inf</double>"),
            Err(CodecError::BadDouble("inf".into()))
        );
        // Control characters would make minidom refuse the whole stanza.
        let call = MethodCall::new("m", vec![Value::from("a\u{0}b\u{1b}")]);
        let xml = String::from(&call_to_query(&call).expect("encodes"));
        assert!(xml.contains("a\u{fffd}b\u{fffd}"));
    }

    #[test]
    fn rejects_wrong_root() {
        assert_eq!(
            parse_str("<query xmlns='jabber:iq:version'/>"),
            Err(CodecError::WrongNamespace("jabber:iq:version".into()))
        );
        assert_eq!(
            parse_str("<methodCall xmlns='jabber:iq:rpc'/>"),
            Err(CodecError::NotAQuery("methodCall".into()))
        );
        assert_eq!(
            parse_str("<query xmlns='jabber:iq:rpc'/>"),
            Err(CodecError::Empty("query"))
        );
        assert_eq!(
            parse_str("<query xmlns='jabber:iq:rpc'>junk</query>"),
            Err(CodecError::UnexpectedText("query"))
        );
        assert_eq!(
            parse_str("<query xmlns='jabber:iq:rpc'><methodCall><methodName>m</methodName></methodCall><methodCall/></query>"),
            Err(CodecError::ExtraChildren("query"))
        );
        assert_eq!(
            parse_str("<query xmlns='jabber:iq:rpc'><other/></query>"),
            Err(CodecError::UnexpectedElement {
                parent: "query",
                found: "other".into()
            })
        );
        // A child in a foreign namespace.
        assert_eq!(
            parse_str("<query xmlns='jabber:iq:rpc'><methodCall xmlns='urn:x'/></query>"),
            Err(CodecError::WrongNamespace("urn:x".into()))
        );
        assert_eq!(
            parse_value("<i4 xmlns='urn:x'>1</i4>"),
            Err(CodecError::WrongNamespace("urn:x".into()))
        );
    }

    #[test]
    fn rejects_bad_method_call() {
        let q = |inner: &str| {
            parse_str(&format!(
                "<query xmlns='jabber:iq:rpc'><methodCall>{inner}</methodCall></query>"
            ))
        };
        assert_eq!(q("<params/>"), Err(CodecError::MissingMethodName));
        assert_eq!(
            q("<methodName> </methodName>"),
            Err(CodecError::MissingMethodName)
        );
        assert_eq!(
            q("<methodName>a</methodName><methodName>b</methodName>"),
            Err(CodecError::ExtraChildren("methodCall"))
        );
        assert_eq!(
            q("<methodName><b/></methodName>"),
            Err(CodecError::UnexpectedElement {
                parent: "methodName",
                found: "b".into()
            })
        );
        assert_eq!(
            q("<methodName>m</methodName><params><param/></params>"),
            Err(CodecError::Empty("param"))
        );
        assert_eq!(
            q("<methodName>m</methodName><params><value/></params>"),
            Err(CodecError::UnexpectedElement {
                parent: "params",
                found: "value".into()
            })
        );
        assert_eq!(
            q("<methodName>m</methodName><params><param><value/><value/></param></params>"),
            Err(CodecError::ExtraChildren("param"))
        );
    }

    #[test]
    fn rejects_bad_responses_and_faults() {
        let r = |inner: &str| {
            parse_str(&format!(
                "<query xmlns='jabber:iq:rpc'><methodResponse>{inner}</methodResponse></query>"
            ))
        };
        assert_eq!(r(""), Err(CodecError::Empty("methodResponse")));
        assert_eq!(
            r("<params/><fault/>"),
            Err(CodecError::ExtraChildren("methodResponse"))
        );
        assert_eq!(
            r("<params><param><value>a</value></param><param><value>b</value></param></params>"),
            Err(CodecError::ExtraChildren("params"))
        );
        assert_eq!(r("<fault/>"), Err(CodecError::Empty("fault")));
        assert_eq!(
            r("<fault><value><i4>1</i4></value></fault>"),
            Err(CodecError::MalformedFault("value is not a struct"))
        );
        let fault = |members: &str| {
            r(&format!(
                "<fault><value><struct>{members}</struct></value></fault>"
            ))
        };
        let code = "<member><name>faultCode</name><value><i4>3</i4></value></member>";
        let string = "<member><name>faultString</name><value>bare</value></member>";
        assert_eq!(
            fault(&format!("{code}{string}")),
            Ok(RpcPayload::Response(MethodResponse::Fault {
                code: 3,
                message: "bare".into()
            }))
        );
        assert_eq!(
            fault(string),
            Err(CodecError::MalformedFault("missing faultCode"))
        );
        assert_eq!(
            fault(code),
            Err(CodecError::MalformedFault("missing faultString"))
        );
        assert_eq!(
            fault(&format!(
                "<member><name>faultCode</name><value>3</value></member>{string}"
            )),
            Err(CodecError::MalformedFault("faultCode is not an int"))
        );
        assert_eq!(
            fault(&format!(
                "<member><name>faultCode</name><value><i8>9999999999</i8></value></member>{string}"
            )),
            Err(CodecError::MalformedFault("faultCode out of range"))
        );
        assert_eq!(
            fault(&format!(
                "{code}<member><name>faultString</name><value><i4>1</i4></value></member>"
            )),
            Err(CodecError::MalformedFault("faultString is not a string"))
        );
    }

    #[test]
    fn rejects_bad_scalars() {
        assert_eq!(
            parse_value("<float>1</float>"),
            Err(CodecError::UnknownType("float".into()))
        );
        assert_eq!(
            parse_value("<i4>12a</i4>"),
            Err(CodecError::BadInt("12a".into()))
        );
        assert_eq!(
            parse_value("<int></int>"),
            Err(CodecError::BadInt(String::new()))
        );
        assert_eq!(
            parse_value("<i8>1.0</i8>"),
            Err(CodecError::BadInt("1.0".into()))
        );
        assert_eq!(
            parse_value("<i4>2147483648</i4>"),
            Err(CodecError::IntOutOfRange("2147483648".into()))
        );
        assert_eq!(
            parse_value("<int>-2147483649</int>"),
            Err(CodecError::IntOutOfRange("-2147483649".into()))
        );
        assert_eq!(
            parse_value("<i8>9223372036854775808</i8>"),
            Err(CodecError::IntOutOfRange("9223372036854775808".into()))
        );
        assert_eq!(
            parse_value("<boolean>2</boolean>"),
            Err(CodecError::BadBool("2".into()))
        );
        assert_eq!(
            parse_value("<boolean/>"),
            Err(CodecError::BadBool(String::new()))
        );
        assert_eq!(
            parse_value("<double>abc</double>"),
            Err(CodecError::BadDouble("abc".into()))
        );
        assert_eq!(
            parse_value("<double>NaN</double>"),
            Err(CodecError::BadDouble("NaN".into()))
        );
        assert_eq!(
            parse_value("<double>1e400</double>"),
            Err(CodecError::BadDouble("1e400".into()))
        );
        assert_eq!(
            parse_value("<double/>"),
            Err(CodecError::BadDouble(String::new()))
        );
        assert_eq!(
            parse_value("<base64>!!!!</base64>"),
            Err(CodecError::BadBase64)
        );
        assert_eq!(
            parse_value("<base64>aGVsbG8=x</base64>"),
            Err(CodecError::BadBase64)
        );
        assert_eq!(
            parse_value("<nil>x</nil>"),
            Err(CodecError::UnexpectedText("nil"))
        );
        assert_eq!(
            parse_value("<string><b/></string>"),
            Err(CodecError::UnexpectedElement {
                parent: "string",
                found: "b".into()
            })
        );
        assert_eq!(
            parse_value("text<i4>1</i4>"),
            Err(CodecError::UnexpectedText("value"))
        );
        assert_eq!(
            parse_value("<i4>1</i4><i4>2</i4>"),
            Err(CodecError::ExtraChildren("value"))
        );
        // Long offending text is cut in the error.
        let long = "9".repeat(100);
        assert_eq!(
            parse_value(&format!("<boolean>{long}</boolean>")),
            Err(CodecError::BadBool(format!("{}…", "9".repeat(32))))
        );
    }

    #[test]
    fn rejects_bad_structs_and_arrays() {
        let st = |members: &str| parse_value(&format!("<struct>{members}</struct>"));
        assert_eq!(
            st("<member><value>v</value></member>"),
            Err(CodecError::MalformedStruct("member without <name>"))
        );
        assert_eq!(
            st("<member><name>k</name></member>"),
            Err(CodecError::MalformedStruct("member without <value>"))
        );
        assert_eq!(
            st("<member><name>k</name><name>j</name><value/></member>"),
            Err(CodecError::MalformedStruct("member with two names"))
        );
        assert_eq!(
            st("<member><name>k</name><value/><value/></member>"),
            Err(CodecError::MalformedStruct("member with two values"))
        );
        assert_eq!(
            st("<member><name>k</name><value/><extra/></member>"),
            Err(CodecError::MalformedStruct(
                "unexpected element in <member>"
            ))
        );
        assert_eq!(
            st("<value/>"),
            Err(CodecError::MalformedStruct(
                "unexpected element in <struct>"
            ))
        );
        assert_eq!(
            st("<member><name>k</name><value>1</value></member><member><name>k</name><value>2</value></member>"),
            Err(CodecError::MalformedStruct("duplicate member name"))
        );
        assert_eq!(st("stray"), Err(CodecError::UnexpectedText("struct")));
        assert_eq!(
            parse_value("<array/>"),
            Err(CodecError::MalformedArray("missing <data>"))
        );
        assert_eq!(
            parse_value("<array><value/></array>"),
            Err(CodecError::MalformedArray("unexpected element in <array>"))
        );
        assert_eq!(
            parse_value("<array><data/><data/></array>"),
            Err(CodecError::MalformedArray("more than one child in <array>"))
        );
        assert_eq!(
            parse_value("<array><data><i4>1</i4></data></array>"),
            Err(CodecError::MalformedArray("unexpected element in <data>"))
        );
        assert_eq!(
            parse_value("<array><data><value><bogus/></value></data></array>"),
            Err(CodecError::UnknownType("bogus".into()))
        );
    }

    #[test]
    fn depth_limit() {
        let nest = |n: usize| {
            format!(
                "{}<i4>1</i4>{}",
                "<array><data><value>".repeat(n),
                "</value></data></array>".repeat(n)
            )
        };
        // A top-level value is depth 1, so 31 arrays put the scalar at depth 32: allowed.
        assert!(parse_value(&nest(31)).is_ok());
        assert_eq!(parse_value(&nest(32)), Err(CodecError::TooDeep));
        // The hard cap applies even when the caller asks for more.
        let unlimited = Limits {
            max_depth: usize::MAX,
            max_nodes: usize::MAX,
            max_text_bytes: usize::MAX,
        };
        let el: Element = match call_with_value(&nest(MAX_SUPPORTED_DEPTH)).parse() {
            Ok(el) => el,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(parse_query(&el, &unlimited), Err(CodecError::TooDeep));
    }

    #[test]
    fn depth_bomb_is_refused() {
        // Run on a thread with a known stack: the parse is bounded by our depth cap, but dropping
        // a 30 000-level minidom tree recurses inside minidom.
        let handle = std::thread::Builder::new()
            .stack_size(64 * 1024 * 1024)
            .spawn(|| {
                let n = 10_000;
                let xml = call_with_value(&format!(
                    "{}{}",
                    "<array><data><value>".repeat(n),
                    "</value></data></array>".repeat(n)
                ));
                match xml.parse::<Element>() {
                    // minidom may refuse the nesting itself; either way it is an error.
                    Err(_) => None,
                    Ok(el) => Some(parse_query(&el, &Limits::default())),
                }
            });
        let result = match handle.map(|h| h.join()) {
            Ok(Ok(r)) => r,
            _ => panic!("depth bomb thread failed"),
        };
        if let Some(r) = result {
            assert_eq!(r, Err(CodecError::TooDeep));
        }
    }

    #[test]
    fn too_many_nodes() {
        let values = "<value><i4>1</i4></value>".repeat(6_000);
        let xml = call_with_value(&format!("<array><data>{values}</data></array>"));
        assert_eq!(parse_str(&xml), Err(CodecError::TooLarge(LimitKind::Nodes)));
        // query, methodCall, methodName, params, param, value, i4: 7 elements.
        let el: Element = match call_with_value("<i4>1</i4>").parse() {
            Ok(el) => el,
            Err(e) => panic!("{e}"),
        };
        let limits = |max_nodes| Limits {
            max_nodes,
            ..Limits::default()
        };
        assert!(parse_query(&el, &limits(7)).is_ok());
        assert_eq!(
            parse_query(&el, &limits(6)),
            Err(CodecError::TooLarge(LimitKind::Nodes))
        );
    }

    #[test]
    fn too_much_text() {
        let big = "x".repeat(1024 * 1024 + 1);
        assert_eq!(
            parse_value(&format!("<string>{big}</string>")),
            Err(CodecError::TooLarge(LimitKind::TextBytes))
        );
        // Many small strings add up too.
        let chunk = format!("<value>{}</value>", "y".repeat(1024));
        let xml = call_with_value(&format!(
            "<array><data>{}</data></array>",
            chunk.repeat(1100)
        ));
        assert_eq!(
            parse_str(&xml),
            Err(CodecError::TooLarge(LimitKind::TextBytes))
        );
        // Whitespace between elements counts as well.
        let limits = Limits {
            max_text_bytes: 10,
            ..Limits::default()
        };
        let el: Element = match call_with_value(&format!("{}<nil/>", " ".repeat(11))).parse() {
            Ok(el) => el,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            parse_query(&el, &limits),
            Err(CodecError::TooLarge(LimitKind::TextBytes))
        );
    }
}
