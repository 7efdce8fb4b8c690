//! Entity capabilities: building our own (XEP-0115 `<c/>` and XEP-0390 ecaps2), verifying and
//! caching others'.
//!
//! This file builds what a device announces: its disco#info, the two caps elements over it and the
//! presence carrying them. The rest is split by job:
//! - [`input`]: the XEP-0115 and XEP-0390 hash inputs over an answer as received, and why an
//!   answer has none ([`IllFormed`]);
//! - [`key`]: the announced hashes ([`CapsKey`], [`Advertised`]) and the answers verified against
//!   them ([`DiscoAnswer`]);
//! - [`cache`]: the bounded cache of verified answers ([`CapsCache`]);
//! - [`snapshot`]: that cache saved across starts, re-verified when read ([`CapsSnapshot`]).

use std::collections::BTreeSet;

use xmpp_parsers::caps::Caps;
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::ecaps2::ECaps2;
use xmpp_parsers::hashes::{Algo, Hash};
use xmpp_parsers::ns;
use xmpp_parsers::presence::Presence;

use super::{IDENTITY_CATEGORY, IDENTITY_TYPE};

mod cache;
mod input;
mod key;
mod snapshot;
#[cfg(test)]
mod tests;

pub use cache::{CapsCache, Verdict, DEFAULT_CACHE_CAPACITY};
pub use input::{HashInput, IllFormed};
use key::query_node;
pub use key::{Advertised, CapsKey, DiscoAnswer, Scheme};
pub use snapshot::{CapsSnapshot, SnapshotError, MAX_SNAPSHOT_BYTES};

/// The caps `node` pmn devices announce.
pub const CAPS_NODE: &str = "https://pmn.invalid/caps";

/// The algorithms our own ecaps2 element carries: the one XEP-0390 §4.2 requires support for and
/// a second family, as the XEP's own examples do.
const OWN_ECAPS2_ALGOS: [Algo; 2] = [Algo::Sha_256, Algo::Sha3_256];

/// The disco#info a device answers: for a provider, the `automation/service` identity named after the
/// device and one feature per service; a controller passes `name = None` and no service features
/// (spec §6: a controller never announces a service).
pub fn disco_info_for(name: Option<&str>, features: &[&str]) -> DiscoInfoResult {
    let identities = match name {
        Some(name) => vec![Identity {
            category: IDENTITY_CATEGORY.into(),
            type_: IDENTITY_TYPE.into(),
            lang: None,
            name: Some(name.into()),
        }],
        None => vec![Identity {
            category: "client".into(),
            type_: "phone".into(),
            lang: None,
            name: None,
        }],
    };
    let mut all: BTreeSet<String> = features.iter().map(|f| f.to_string()).collect();
    all.insert(ns::DISCO_INFO.into());
    all.insert(ns::CAPS.into());
    all.insert(ns::ECAPS2.into());
    all.insert(ns::PING.into());
    DiscoInfoResult {
        node: None,
        identities,
        features: all,
        extensions: vec![],
    }
}

/// The XEP-0115 `<c/>` element announcing `info` (SHA-1, as every XEP-0115 client understands).
pub fn caps_for(info: &DiscoInfoResult) -> Caps {
    Caps::new(CAPS_NODE, own_hash(info, Scheme::Caps, Algo::Sha_1))
}

/// The XEP-0390 `<c xmlns='urn:xmpp:caps'/>` element announcing `info` (SHA-256 and SHA3-256).
pub fn ecaps2_for(info: &DiscoInfoResult) -> ECaps2 {
    ECaps2::new(
        OWN_ECAPS2_ALGOS
            .iter()
            .map(|algo| own_hash(info, Scheme::Ecaps2, algo.clone()))
            .collect(),
    )
}

/// The available presence a device sends: both caps elements, so that XEP-0115-only and
/// XEP-0390-aware peers can each skip the disco#info query for a hash they know. The ecaps2 element
/// adds about 230 bytes to each presence (measured in the tests), sent once per (re)connection.
pub fn presence_for(info: &DiscoInfoResult) -> Presence {
    Presence::available()
        .with_payload(caps_for(info))
        .with_payload(ecaps2_for(info))
}

/// Whether `node` is one of the XEP-0390 hash nodes (`urn:xmpp:caps#<algo>.<hash>`) of `info`, so
/// that a disco#info query for it is answered with the node echoed. (The XEP-0115 node is
/// `<CAPS_NODE>#<ver>`, which the roles compare with their precomputed `ver`.)
pub fn is_own_ecaps2_node(info: &DiscoInfoResult, node: &str) -> bool {
    if !node.starts_with(ns::ECAPS2) {
        return false; // not worth hashing for
    }
    ecaps2_for(info)
        .hashes
        .into_iter()
        .any(|h| node == query_node(&CapsKey::from_ecaps2(h), None))
}

/// Our own info is built by [`disco_info_for`] and always hashes; the algorithms are fixed above.
fn own_hash(info: &DiscoInfoResult, scheme: Scheme, algo: Algo) -> Hash {
    let input = HashInput::from_info(info);
    match CapsKey::digest(scheme, &algo, &input) {
        Ok(hash) => Hash { algo, hash },
        Err(e) => {
            // Unreachable for what disco_info_for builds; announce an empty hash rather than panic
            // (peers then just ask disco#info).
            tracing::error!(error = %e, "own disco#info does not hash");
            Hash { algo, hash: vec![] }
        }
    }
}
