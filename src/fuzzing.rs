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
//!
//! This file holds the harness every target shares (bounded XML building, the re-parse of what pmn
//! wrote) and the target list; the targets themselves are split by the parsers they reach.

// A panic is what the targets report a finding with: their `expect`s state invariants of pmn's
// own encoders (what was decoded encodes again), so the crate's no-`expect` rule does not apply.
#![allow(clippy::expect_used)]

use minidom::Element;
use xmpp_parsers::jid::{BareJid, FullJid};
use xso::exports::rxml;

use crate::core::rpc::xmlrpc::Limits;

mod access;
mod caps;
mod certs;
mod e2e;
#[cfg(feature = "sources")]
mod feed;
mod playlist;
mod rpc;
mod stream;

pub use access::access;
pub use caps::caps;
pub use certs::{cert, fingerprint};
pub use e2e::{ibb, jingle, pairing, pubkey};
#[cfg(feature = "sources")]
pub use feed::feed;
pub use playlist::playlist;
pub use rpc::{event, xmlrpc_query, xmlrpc_value};
pub use stream::stream;

/// Deepest element nesting the harness builds. minidom and xso build and drop elements
/// recursively, so an unbounded nesting would overflow the stack before any pmn code runs; the
/// session layer's stream reader bounds the depth of inbound stanzas the same way, and every pmn
/// payload is far shallower (an XML-RPC value at the codec's depth limit of 32 is the deepest).
pub const MAX_DEPTH: usize = 64;

/// Longest token (name, attribute value, text chunk) the parser accepts, as on a stream.
pub const MAX_TOKEN_LENGTH: usize = crate::core::xml_bounded::MAX_TOKEN_LENGTH;

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
    #[cfg(feature = "sources")]
    ("feed", feed),
];

fn parser() -> rxml::Parser {
    crate::core::xml_bounded::stream_parser()
}

/// The first element of `data`, built as a stream reader builds a stanza payload; `None` when the
/// XML is malformed or nests deeper than `max_depth`.
fn element_with_depth(data: &[u8], max_depth: usize) -> Option<Element> {
    crate::core::xml_bounded::parse_element(
        data,
        crate::core::xml_bounded::ElementLimits { max_depth },
    )
    .ok()
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

/// Checks that a parsed wire element re-serialises to one that parses back to the same value.
fn round_trip<T>(value: &T, parse: impl Fn(Element) -> Option<T>, what: &str)
where
    T: Clone + PartialEq + std::fmt::Debug + Into<Element>,
{
    let again = parse(rewire(&value.clone().into()));
    assert_eq!(again.as_ref(), Some(value), "<{what}> round trip");
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
