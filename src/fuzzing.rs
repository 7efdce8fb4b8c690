//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer) and of the corpus replay
//! test below, which runs every committed input of `fuzz/corpus/<target>/` on the stable toolchain
//! so that a crash once found stays fixed.
//!
//! One function per inbound parser. Each takes raw bytes as they could arrive from the network,
//! builds what the real receive path builds (an XML element, the way tokio-xmpp builds stanza
//! payloads: rxml events fed to minidom's builder), calls pmn's parser, and where it is cheap checks
//! an invariant (a parsed value re-serialises and parses back to itself, a fingerprint is the hex it
//! was read from, …). A panic is a finding: either the parser panicked on input, or an invariant
//! broke.
//!
//! Compiled only for tests and with the `fuzzing` feature: it is not an API.

use std::sync::{Arc, OnceLock};

use minidom::Element;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::jingle::Jingle;
use xmpp_parsers::presence::Presence;
use xso::exports::rxml::{self, error::EndOrError, Parse as _, WithOptions as _};
use xso::{FromEventsBuilder as _, FromXml as _};

use crate::core::access::{
    AccessDecision, AccessRequest, AclState, AuditPage, DeviceFingerprint, OwnerKey, OwnerKeys,
    SignedGrant, SignedRevoke,
};
use crate::core::discovery::{caps_for, Advertised, DiscoAnswer, HashInput, ProviderDirectory};
use crate::core::e2e::{endpoint, ibb, pairing, pubkey, xml as e2e_xml};
use crate::core::events::EventNotice;
use crate::core::identity::{
    certificate_spki, fingerprint_hex, p256_point_from_spki, p256_spki_from_point, spki_sha256,
    PinnedPeerKey,
};
use crate::core::pubsub::entry::{parse_item, NS_PLAYLIST};
use crate::core::pubsub::iq::NS_PUBSUB;
use crate::core::pubsub::signature::verify_entry;
use crate::core::rpc::xmlrpc::{self, Limits, RpcPayload};

/// Deepest element nesting the harness builds. minidom and xso build and drop elements
/// recursively, so an unbounded nesting would overflow the stack before any pmn code runs; the
/// session layer's stream reader bounds the depth of inbound stanzas the same way, and every pmn
/// payload is far shallower (an XML-RPC value at the codec's depth limit of 32 is the deepest).
pub const MAX_DEPTH: usize = 64;

/// Longest token (name, attribute value, text chunk) the parser accepts, as on a stream.
pub const MAX_TOKEN_LENGTH: usize = 256 * 1024;

/// The entry function of a fuzz target.
pub type Target = fn(&[u8]);

/// Every target: its name (the file name in `fuzz/fuzz_targets/` and the corpus directory) and its
/// entry function.
pub const TARGETS: &[(&str, Target)] = &[
    ("xmlrpc_value", xmlrpc_value),
    ("xmlrpc_query", xmlrpc_query),
    ("event", event),
    ("access", access),
    ("jingle", jingle),
    ("ibb", ibb),
    ("pairing", pairing),
    ("caps", caps),
    ("pubkey", pubkey),
    ("cert", cert),
    ("fingerprint", fingerprint),
    ("stream", stream),
    ("playlist", playlist),
];

fn parser() -> rxml::Parser {
    rxml::Parser::with_options(rxml::Options {
        max_token_length: MAX_TOKEN_LENGTH,
        ..rxml::Options::default()
    })
}

/// The first element of `data`, built as a stream reader builds a stanza payload; `None` when the
/// XML is malformed or nests deeper than `max_depth`.
fn element_with_depth(data: &[u8], max_depth: usize) -> Option<Element> {
    let mut parser = parser();
    let mut buf = data;
    let ctx = xso::Context::empty();
    let mut builder = None;
    let mut depth = 0usize;
    loop {
        let ev = match parser.parse(&mut buf, true) {
            Ok(Some(ev)) => ev,
            Ok(None) | Err(_) => return None,
        };
        match ev {
            rxml::Event::StartElement(..) => {
                depth += 1;
                if depth > max_depth {
                    return None;
                }
            }
            rxml::Event::EndElement(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        match builder.as_mut() {
            None => {
                if let rxml::Event::StartElement(_, name, attrs) = ev {
                    builder = Some(Element::from_events(name, attrs, &ctx).ok()?);
                }
            }
            Some(b) => {
                if let Some(el) = b.feed(ev, &ctx).ok()? {
                    return Some(el);
                }
            }
        }
    }
}

/// [`element_with_depth`] at [`MAX_DEPTH`].
pub fn element(data: &[u8]) -> Option<Element> {
    element_with_depth(data, MAX_DEPTH)
}

/// Serialises `el` and parses it back, as the peer on the other end of the wire would.
fn rewire(el: &Element) -> Element {
    let xml = String::from(el);
    // Re-encoding may add a level (bare `<value>` text becomes `<string>`): allow some room.
    element_with_depth(xml.as_bytes(), 4 * MAX_DEPTH)
        .unwrap_or_else(|| panic!("what pmn serialised does not parse back: {xml}"))
}

/// Limits for re-parsing what pmn wrote: the encoder may add nodes (a bare string gets a
/// `<string>`), so only the depth limit stays.
fn relaxed() -> Limits {
    Limits {
        max_nodes: usize::MAX,
        max_text_bytes: usize::MAX,
        ..Limits::default()
    }
}

fn bare(jid: &str) -> Option<BareJid> {
    jid.parse().ok()
}

fn full(jid: &str) -> Option<FullJid> {
    jid.parse().ok()
}

// ---- XML-RPC, events ------------------------------------------------------------------------

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

// ---- access ---------------------------------------------------------------------------------

/// Checks that a parsed wire element re-serialises to one that parses back to the same value.
fn round_trip<T>(value: &T, parse: impl Fn(Element) -> Option<T>, what: &str)
where
    T: Clone + PartialEq + std::fmt::Debug + Into<Element>,
{
    let again = parse(rewire(&value.clone().into()));
    assert_eq!(again.as_ref(), Some(value), "<{what}> round trip");
}

/// The access wire elements, by root name: `<request>`, `<grant>`, `<revoke>`, `<decision>`,
/// `<owner>`, `<acl>`, `<audit>`. Each parses as the receiving role parses it and re-serialises.
/// A `<session>` root holds several, handled in order as a provider would: `<owner>` keys
/// registered first make the signatures of later `<grant>`s and `<revoke>`s verifiable.
pub fn access(data: &[u8]) {
    let Some(el) = element(data) else { return };
    let Some(network) = bare("home@home.test") else {
        return;
    };
    let mut owners = OwnerKeys::new(network);
    if el.name() == "session" {
        for child in el.children().take(64) {
            access_element(child.clone(), &mut owners);
        }
    } else {
        access_element(el, &mut owners);
    }
}

fn access_element(el: Element, owners: &mut OwnerKeys) {
    match el.name() {
        "request" => {
            let Ok(req) = AccessRequest::parse(el) else {
                return;
            };
            round_trip(&req, |e| AccessRequest::parse(e).ok(), "request");
        }
        "grant" => {
            let Ok(grant) = SignedGrant::parse(el) else {
                return;
            };
            round_trip(&grant, |e| SignedGrant::parse(e).ok(), "grant");
            // The signed bytes depend on the fields only, never on how the XML was written.
            let again = SignedGrant::parse(rewire(&grant.clone().into())).ok();
            assert_eq!(
                again.map(|g| g.signed_bytes()),
                Some(grant.signed_bytes()),
                "grant signed bytes"
            );
            let _ = owners.verify_grant(&grant);
        }
        "revoke" => {
            let Ok(revoke) = SignedRevoke::parse(el) else {
                return;
            };
            round_trip(&revoke, |e| SignedRevoke::parse(e).ok(), "revoke");
            let again = SignedRevoke::parse(rewire(&revoke.clone().into())).ok();
            assert_eq!(
                again.map(|r| r.signed_bytes()),
                Some(revoke.signed_bytes()),
                "revoke signed bytes"
            );
            let _ = owners.verify_revoke(&revoke);
        }
        "decision" => {
            let Ok(decision) = AccessDecision::try_from(el) else {
                return;
            };
            round_trip(&decision, |e| AccessDecision::try_from(e).ok(), "decision");
        }
        "owner" => {
            let Ok(owner) = OwnerKey::try_from(el) else {
                return;
            };
            round_trip(&owner, |e| OwnerKey::try_from(e).ok(), "owner");
            if let Ok(fp) = owners.add(&owner.key) {
                assert_eq!(fp, DeviceFingerprint::from_spki(&owner.key));
            }
        }
        "acl" => {
            let Ok(acl) = AclState::try_from(el) else {
                return;
            };
            round_trip(&acl, |e| AclState::try_from(e).ok(), "acl");
            for entry in &acl.entries {
                let _ = entry.grant.validate();
                let _ = owners.verify_grant(&entry.grant);
            }
        }
        "audit" => {
            let Ok(page) = AuditPage::try_from(el) else {
                return;
            };
            round_trip(&page, |e| AuditPage::try_from(e).ok(), "audit");
        }
        _ => {}
    }
}

// ---- end to end: Jingle/XTLS, IBB, pairing, XEP-0189 ----------------------------------------

/// A Jingle element (or a bare XTLS `<security>`): the offer and accept checks of the endpoint.
pub fn jingle(data: &[u8]) {
    let Some(el) = element(data) else { return };
    if el.name() == "security" {
        if let Ok(sec) = e2e_xml::XtlsSecurity::try_from(el) {
            round_trip(
                &sec,
                |e| e2e_xml::XtlsSecurity::try_from(e).ok(),
                "security",
            );
            if let Some(fp) = sec.fingerprint.sha256() {
                assert_eq!(e2e_xml::Fingerprint::new(&fp).sha256(), Some(fp));
            }
        }
        return;
    }
    let Ok(jingle) = Jingle::try_from(el) else {
        return;
    };
    match endpoint::parse_offer(&jingle) {
        Ok(offer) => {
            // An element that passes as an offer passes as the matching accept, with the same key.
            let accepted = endpoint::parse_accept(&jingle, &offer.ibb_sid, offer.method);
            match accepted {
                Ok((fp, block_size)) => {
                    assert_eq!(fp, offer.fingerprint, "offer and accept fingerprint");
                    assert!(offer.block_size <= block_size);
                    assert!(offer.block_size <= ibb::MAX_BLOCK_SIZE);
                }
                Err(e) => panic!("a valid offer is not a valid accept: {e}"),
            }
        }
        Err(_) => {
            let _ = endpoint::parse_accept(&jingle, "s1", e2e_xml::SecurityMethod::X509);
        }
    }
}

/// IBB `<open/>`, `<data/>`, `<close/>` through the registry of a negotiated stream `s1`
/// (block size 16): one element, or the children of a `<seq>` root in order (a sequence of blocks).
pub fn ibb(data: &[u8]) {
    let Some(root) = element(data) else { return };
    let (Some(peer), Some(stranger)) = (full("home@home.test/tv"), full("eve@evil.test/x")) else {
        return;
    };
    let registry = ibb::IbbRegistry::default();
    let Ok(mut rx) = registry.register("s1", peer.clone(), 16) else {
        return;
    };
    let payloads: Vec<&Element> = if root.name() == "seq" {
        root.children().take(256).collect()
    } else {
        vec![&root]
    };
    for (i, payload) in payloads.into_iter().enumerate() {
        // Every eighth block comes from a third party that learnt the sid.
        let from = Jid::from(if i % 8 == 7 {
            stranger.clone()
        } else {
            peer.clone()
        });
        let reply = registry.handle(&from, &i.to_string(), payload);
        assert!(matches!(reply, Iq::Result { .. } | Iq::Error { .. }));
        while let Ok(event) = rx.try_recv() {
            if let ibb::IbbEvent::Data(block) = event {
                assert!(
                    block.bytes.len() <= 16,
                    "a block above the negotiated size got through"
                );
            }
        }
    }
}

/// A pairing step `<pair>`: parses, re-serialises, and runs the responder's SPAKE2 and MAC checks
/// on what it carries.
pub fn pairing(data: &[u8]) {
    let Some(el) = element(data) else { return };
    let Ok(pair) = e2e_xml::Pair::try_from(el) else {
        return;
    };
    round_trip(&pair, |e| e2e_xml::Pair::try_from(e).ok(), "pair");
    let binding = [7u8; 32];
    if let Some(pake) = &pair.pake {
        let (state, _) = pairing::spake("123456", &binding);
        if let Ok(key) = state.finish(&pake.message) {
            if let Some(confirm) = &pair.confirm {
                let _ = pairing::verify(&key, pairing::INITIATOR_LABEL, &binding, &confirm.mac);
            }
        }
    }
}

/// A `<pubsub>` items answer of the XEP-0189 key node (or one `<pubkey>`): the published keys and
/// which of them carry a valid attestation by another.
pub fn pubkey(data: &[u8]) {
    let Some(el) = element(data) else { return };
    if el.is("pubkey", pubkey::NS_PUBKEY) {
        if let Ok(pk) = pubkey::PubKey::try_from(el.clone()) {
            round_trip(&pk, |e| pubkey::PubKey::try_from(e).ok(), "pubkey");
        }
    }
    let directory = pubkey::parse_directory(&el);
    let keys = &directory.keys;
    for key in keys {
        assert_eq!(spki_sha256(&key.spki), key.fingerprint);
        assert_eq!(
            certificate_spki(&key.certificate).ok(),
            Some(key.spki.as_slice())
        );
    }
    let Some(jid) = bare("home@home.test") else {
        return;
    };
    // Every attestation checked against every published key, as a device that trusted them all
    // would: a signature either verifies for its signer or not, never panics.
    for key in keys {
        for attestation in &key.attestations {
            for signer in keys {
                let _ = pubkey::verify_attestation(attestation, &jid, &key.spki, &signer.spki);
            }
        }
    }
    // The trust decisions on it, from a device that trusts nothing yet: lists from unknown
    // signers are refused, nothing is pinned.
    let trust = crate::core::e2e::TrustStore::in_memory();
    if let Ok(outcome) = pubkey::apply_directory(&trust, &jid, None, &directory) {
        assert!(outcome.pinned.is_empty(), "pinned without first-hand trust");
    }
}

// ---- certificates, SPKIs, fingerprints ------------------------------------------------------

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Whether `part` lies inside `whole`.
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

/// A DER certificate as a peer presents it in the tunnel's TLS handshake or publishes it
/// (XEP-0189), and the same bytes as a bare SPKI (an owner key).
pub fn cert(data: &[u8]) {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    if let Ok(spki) = certificate_spki(data) {
        assert!(within(spki, data), "SPKI outside the certificate");
        if let Ok(point) = p256_point_from_spki(spki) {
            assert_eq!(p256_spki_from_point(point).as_deref(), Ok(spki));
        }
    }
    if let Ok(point) = p256_point_from_spki(data) {
        assert_eq!(p256_spki_from_point(point).as_deref(), Ok(data));
    }
    let verifier = PinnedPeerKey::new(spki_sha256(data), crypto_provider());
    if let Ok(name) = ServerName::try_from("pmn.invalid") {
        let _ = verifier.verify_server_cert(
            &CertificateDer::from(data),
            &[],
            &name,
            &[],
            UnixTime::now(),
        );
    }
}

/// Fingerprint text (XTLS `<fingerprint>`, attestations, access elements): what parses is the hex
/// of the digest it yields, and the two hex readers agree.
pub fn fingerprint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = e2e_xml::parse_fingerprint_hex(text);
    if let Some(fp) = parsed {
        assert!(
            fingerprint_hex(&fp).eq_ignore_ascii_case(text.trim()),
            "{text:?} parsed as a fingerprint it does not spell"
        );
    }
    if let Some(device) = DeviceFingerprint::from_hex(text) {
        assert_eq!(device.to_hex(), text.to_ascii_lowercase());
        assert_eq!(parsed, Some(device.0), "the two hex readers disagree");
    }
}

// ---- caps -----------------------------------------------------------------------------------

/// A presence `<c/>` and the disco#info `<query/>` answering it, as children of any root, through
/// the provider directory; our own caps over any disco#info verify.
pub fn caps(data: &[u8]) {
    let Some(root) = element(data) else { return };
    let (Some(network), Some(from)) = (bare("home@home.test"), full("home@home.test/tv")) else {
        return;
    };
    let mut directory = ProviderDirectory::new(network);
    let mut presence = Presence::available().with_from(from.clone());
    for c in root.children().filter(|c| c.name() == "c") {
        presence.payloads.push(c.clone());
    }
    let _ = directory.on_presence(&presence);
    let announced = Advertised::from_presence(&presence);
    for query in root.children().filter(|c| c.name() == "query") {
        // Both readers of a disco#info answer: ill-formed ones must be refused, never panic.
        let input = HashInput::from_element(query);
        if let Some(advertised) = &announced {
            for key in advertised.keys() {
                let _ = key.verify(&input);
            }
        }
        let Ok(answer) = DiscoAnswer::from_element(query.clone()) else {
            continue;
        };
        let _ = directory.on_info(from.clone(), announced.as_ref(), &answer);
        let Ok(info) = DiscoInfoResult::try_from(query.clone()) else {
            continue;
        };
        // Our own caps over any well-formed answer verify against that answer.
        let own = Advertised::from_caps(&caps_for(&info));
        let own_input = HashInput::from_info(&info);
        if let (Some(key), Ok(_)) = (own.primary(), own_input.caps_string()) {
            assert_eq!(
                key.verify(&own_input),
                Ok(true),
                "our own caps hash does not verify"
            );
        }
    }
}

// ---- the stream reader ----------------------------------------------------------------------

/// Bytes of an XMPP stream (`<stream:stream …>` then top-level elements) read the way the session's
/// reader reads them: arriving in pieces (the first byte picks the piece size), rxml with a 256 KiB
/// token limit, nesting bounded at [`MAX_DEPTH`] below the stream element, every top-level element
/// built as tokio-xmpp's `XmppStreamElement` (stanzas, SASL, STARTTLS, stream errors, …).
pub fn stream(data: &[u8]) {
    use tokio_xmpp::xmlstream::XmppStreamElement;

    enum State {
        Building(Box<<XmppStreamElement as xso::FromXml>::Builder>),
        Skipping,
        Idle,
    }

    let Some((piece, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(*piece).max(1);
    let ctx = xso::Context::empty();
    let mut parser = parser();
    let mut depth = 0usize;
    let mut state = State::Idle;
    let pieces = data.chunks(piece);
    let count = pieces.len();
    for (i, chunk) in pieces.enumerate() {
        let at_eof = i + 1 == count;
        let mut buf = chunk;
        loop {
            let ev = match parser.parse(&mut buf, at_eof) {
                Ok(Some(ev)) => ev,
                Err(EndOrError::NeedMoreData) => break,
                Ok(None) | Err(EndOrError::Error(_)) => return,
            };
            let end = matches!(ev, rxml::Event::EndElement(_));
            if let rxml::Event::StartElement(..) = ev {
                depth += 1;
                // The stream element itself is depth 1.
                if depth > MAX_DEPTH + 1 {
                    return;
                }
            }
            match depth {
                0 => {}
                1 => {
                    if end {
                        return; // the stream footer
                    }
                    // Start of the stream, or whitespace keepalives between stanzas.
                }
                _ => {
                    state = match (state, ev) {
                        (State::Idle, rxml::Event::StartElement(_, name, attrs)) => {
                            match XmppStreamElement::from_events(name, attrs, &ctx) {
                                Ok(builder) => State::Building(Box::new(builder)),
                                Err(_) => State::Skipping,
                            }
                        }
                        (State::Building(mut builder), ev) => match builder.feed(ev, &ctx) {
                            Ok(Some(_element)) => State::Idle,
                            Ok(None) => State::Building(builder),
                            Err(_) => State::Skipping,
                        },
                        (other, _) => other,
                    };
                    if end && depth == 2 {
                        if let State::Skipping = state {
                            state = State::Idle;
                        }
                    }
                }
            }
            if end {
                depth = depth.saturating_sub(1);
            }
        }
    }
}

// ---- playlists ------------------------------------------------------------------------------

/// The playlist parsers, on what a subscriber receives: an `<entry>` payload, a `<pubsub>` items
/// answer (catch-up fetch) or a `<message>` with a pubsub notification. A `<session>` root holds
/// several, in order: `<owner>` keys (access namespace) registered first make the signatures of
/// later entries verifiable, for playlist `radio` of `home@home.test`, which the notification
/// handler is subscribed to. Parsed entries re-serialise to themselves.
pub fn playlist(data: &[u8]) {
    let Some(el) = element(data) else { return };
    let Some(network) = bare("home@home.test") else {
        return;
    };
    let mut owners = OwnerKeys::new(network.clone());
    let counters = Arc::new(crate::core::pubsub::stats::Counters::default());
    let watch = crate::core::pubsub::PlaylistWatch::new(counters);
    let children: Vec<Element> = if el.name() == "session" {
        el.children().take(64).cloned().collect()
    } else {
        vec![el]
    };
    for child in children {
        if child.name() == "owner" {
            if let Ok(owner) = OwnerKey::try_from(child) {
                let _ = owners.add(&owner.key);
            }
        } else if child.is("entry", NS_PLAYLIST) {
            playlist_entry(Some("e1"), Some(&child), &owners, &network);
        } else if child.is("pubsub", NS_PUBSUB) {
            for (id, payload) in crate::core::pubsub::fetch::answer_items(&child)
                .into_iter()
                .take(256)
            {
                playlist_entry(id.as_deref(), payload.as_ref(), &owners, &network);
            }
        } else if child.name() == "message" {
            if let Ok(message) = xmpp_parsers::message::Message::try_from(child) {
                watch.insert_subscription(network.clone(), "radio", owners.clone());
                watch.handle_message(&message);
            }
        }
    }
}

fn playlist_entry(
    id: Option<&str>,
    payload: Option<&Element>,
    owners: &OwnerKeys,
    network: &BareJid,
) {
    let Ok(parsed) = parse_item(id, payload) else {
        return;
    };
    let el = parsed
        .entry
        .to_element(parsed.updated, parsed.signature.clone());
    let again = parse_item(id, Some(&rewire(&el)));
    assert_eq!(again.as_ref(), Ok(&parsed), "<entry> round trip");
    let _ = verify_entry(owners, network, "radio", parsed);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Every committed corpus input of every target runs through the target's entry function: the
    /// inputs of crashes found while fuzzing are among them, so the fixes stay fixed.
    #[test]
    fn fuzz_corpus_replays_cleanly() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join("corpus");
        let targets = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz")
            .join("fuzz_targets");
        for (name, target) in TARGETS {
            assert!(
                targets.join(format!("{name}.rs")).is_file(),
                "no fuzz target file for {name}"
            );
            let dir = corpus.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
            let mut inputs = 0;
            for entry in entries {
                let path = entry.expect("corpus entry").path();
                let data = std::fs::read(&path).expect("corpus file");
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name}: {} fails", path.display());
                inputs += 1;
            }
            assert!(inputs > 0, "empty corpus for {name}");
        }
    }

    #[test]
    fn the_harness_refuses_deep_nesting_before_building() {
        let deep = "<a>".repeat(100_000);
        assert!(element(deep.as_bytes()).is_none());
        let ok = format!("{}{}", "<a>".repeat(64), "</a>".repeat(64));
        assert!(element(ok.as_bytes()).is_some());
        let too_deep = format!("{}{}", "<a>".repeat(65), "</a>".repeat(65));
        assert!(element(too_deep.as_bytes()).is_none());
        // The stream target stops at the same depth instead of overflowing.
        stream(format!("\x40<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>{deep}").as_bytes());
    }
}

#[cfg(test)]
mod seeds;
