//! The hashes a presence announces: [`CapsKey`] (one hash, and whether an answer hashes to it),
//! [`Advertised`] (the few usable hashes of one presence) and [`DiscoAnswer`] (a disco#info answer
//! as parsed, with the hash input parsing loses).

use base64::Engine;
use minidom::Element;
use xmpp_parsers::caps::{hash_caps, Caps};
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::ecaps2::{hash_ecaps2, ECaps2};
use xmpp_parsers::hashes::{Algo, Hash};
use xmpp_parsers::ns;
use xmpp_parsers::presence::Presence;

use super::input::{HashInput, IllFormed, NS_DATA_FORMS};

/// Most hashes read from one presence: a `<c/>` with hundreds of `<hash/>` children must not make
/// us hash an answer hundreds of times.
const MAX_KEYS_PER_PRESENCE: usize = 4;

/// Which caps protocol a hash belongs to: the same algorithm over different inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// XEP-0115 `<c xmlns='http://jabber.org/protocol/caps'/>`.
    Caps,
    /// XEP-0390 `<c xmlns='urn:xmpp:caps'/>`.
    Ecaps2,
}

/// One announced hash of a device's disco#info: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapsKey {
    /// The protocol the hash belongs to.
    pub scheme: Scheme,
    /// The hash algorithm.
    pub algo: Algo,
    /// The digest.
    pub hash: Vec<u8>,
}

impl CapsKey {
    fn from_caps(caps: &Caps) -> Self {
        CapsKey {
            scheme: Scheme::Caps,
            algo: caps.hash.clone(),
            hash: caps.ver.clone(),
        }
    }

    pub(super) fn from_ecaps2(hash: Hash) -> Self {
        CapsKey {
            scheme: Scheme::Ecaps2,
            algo: hash.algo,
            hash: hash.hash,
        }
    }

    /// The hash we announce for `input`: the specification's input only.
    pub(super) fn digest(
        scheme: Scheme,
        algo: &Algo,
        input: &HashInput,
    ) -> Result<Vec<u8>, IllFormed> {
        let data = match scheme {
            Scheme::Caps => input.caps_string()?,
            Scheme::Ecaps2 => input.ecaps2_string()?,
        };
        Self::hash_of(scheme, algo, &data)
    }

    fn hash_of(scheme: Scheme, algo: &Algo, data: &[u8]) -> Result<Vec<u8>, IllFormed> {
        match scheme {
            Scheme::Caps => hash_caps(data, algo.clone())
                .map(|h| h.hash)
                .map_err(IllFormed::UnsupportedAlgo),
            Scheme::Ecaps2 => hash_ecaps2(data, algo.clone())
                .map(|h| h.hash)
                .map_err(|e| IllFormed::UnsupportedAlgo(e.to_string())),
        }
    }

    /// Whether `input` hashes to this key; `Err` if the answer is ill-formed (never cache it).
    ///
    /// A XEP-0115 hash is also accepted over identities sorted as joined strings, which is what
    /// slixmpp 1.17 computes (`sorted('/'.join(i) …)`): the two orders differ only when a
    /// category, type or xml:lang holds a character below `/` (`en` and `en-US`), and either is a
    /// hash of the same content, so accepting both costs no security.
    pub fn verify(&self, input: &HashInput) -> Result<bool, IllFormed> {
        let inputs = match self.scheme {
            Scheme::Caps => input.caps_strings()?,
            Scheme::Ecaps2 => vec![input.ecaps2_string()?],
        };
        for data in inputs {
            if Self::hash_of(self.scheme, &self.algo, &data)? == self.hash {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether we can compute this key's hash, and its length is the algorithm's: others are never
    /// queried for or cached.
    pub(super) fn usable(&self) -> bool {
        let len = match (&self.scheme, &self.algo) {
            (Scheme::Caps, Algo::Sha_1) => 20,
            (_, Algo::Sha_256 | Algo::Sha3_256 | Algo::Blake2b_256) => 32,
            (_, Algo::Sha_512 | Algo::Sha3_512 | Algo::Blake2b_512) => 64,
            _ => return false,
        };
        self.hash.len() == len
    }
}

/// The node to ask disco#info for `key` (XEP-0115 §6.2 / XEP-0390 §4.3).
pub(super) fn query_node(key: &CapsKey, legacy_node: Option<&str>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(&key.hash);
    match key.scheme {
        Scheme::Caps => format!("{}#{b64}", legacy_node.unwrap_or_default()),
        Scheme::Ecaps2 => format!("{}#{}.{b64}", ns::ECAPS2, String::from(key.algo.clone())),
    }
}

/// The hashes one presence announced, strongest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub(super) keys: Vec<CapsKey>,
    /// The XEP-0115 `node`, needed to ask for a [`Scheme::Caps`] key.
    node: Option<String>,
}

impl Advertised {
    /// The caps a presence carries, if any usable: ecaps2 hashes (kept in the order sent), then the
    /// XEP-0115 hash; at most a few, unknown algorithms and wrong lengths skipped.
    pub fn from_presence(presence: &Presence) -> Option<Self> {
        let mut keys = Vec::new();
        let mut node = None;
        if let Some(ecaps2) = presence
            .payloads
            .iter()
            .find(|p| p.is("c", ns::ECAPS2))
            .and_then(|p| ECaps2::try_from(p.clone()).ok())
        {
            keys.extend(ecaps2.hashes.into_iter().map(CapsKey::from_ecaps2));
        }
        if let Some(caps) = presence
            .payloads
            .iter()
            .find(|p| p.is("c", ns::CAPS))
            .and_then(|p| Caps::try_from(p.clone()).ok())
        {
            keys.push(CapsKey::from_caps(&caps));
            node = Some(caps.node);
        }
        keys.retain(CapsKey::usable);
        keys.truncate(MAX_KEYS_PER_PRESENCE);
        (!keys.is_empty()).then_some(Advertised { keys, node })
    }

    /// Caps announcing the one XEP-0115 hash in `caps`.
    pub fn from_caps(caps: &Caps) -> Self {
        Advertised {
            keys: vec![CapsKey::from_caps(caps)],
            node: Some(caps.node.clone()),
        }
    }

    /// The hashes, strongest first.
    pub fn keys(&self) -> &[CapsKey] {
        &self.keys
    }

    /// The key a query is made for, and in-flight queries are shared by.
    pub fn primary(&self) -> Option<&CapsKey> {
        self.keys.first()
    }

    /// The disco#info `node` to query for [`Advertised::primary`].
    pub fn query_node(&self) -> Option<String> {
        self.primary()
            .map(|key| query_node(key, self.node.as_deref()))
    }
}

/// A disco#info answer as received: the parsed result pmn uses, and what the hash algorithms need
/// that parsing loses.
#[derive(Debug, Clone)]
pub struct DiscoAnswer {
    /// The parsed result.
    pub info: DiscoInfoResult,
    pub(super) input: HashInput,
}

impl DiscoAnswer {
    /// Parses the `<query/>` of a disco#info result.
    ///
    /// xmpp-parsers refuses a whole result for an extension form it does not like (two FORM_TYPE
    /// fields, a FORM_TYPE with two values); pmn reads no form, so such a result is parsed without
    /// its forms instead, and the forms still count for the hash, which then refuses it
    /// ([`IllFormed::ConflictingFormType`]): the device is shown, its answer never cached.
    pub fn from_element(query: Element) -> Result<Self, xso::error::FromElementError> {
        let input = HashInput::from_element(&query);
        let info = match DiscoInfoResult::try_from(query.clone()) {
            Ok(info) => info,
            Err(e) => {
                let mut formless = query;
                if formless.remove_child("x", NS_DATA_FORMS).is_none() {
                    return Err(e);
                }
                while formless.remove_child("x", NS_DATA_FORMS).is_some() {}
                tracing::debug!(error = %e, "disco#info forms refused by the parser; read without them");
                DiscoInfoResult::try_from(formless)?
            }
        };
        Ok(DiscoAnswer { info, input })
    }

    /// An answer built from a parsed result (our own, or in tests).
    pub fn from_info(info: DiscoInfoResult) -> Self {
        DiscoAnswer {
            input: HashInput::from_info(&info),
            info,
        }
    }

    /// The hash input view.
    pub fn input(&self) -> &HashInput {
        &self.input
    }
}
