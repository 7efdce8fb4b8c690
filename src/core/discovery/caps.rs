//! XEP-0115 entity capabilities: building our own, verifying and caching others'.

use std::collections::{BTreeSet, HashMap};

use xmpp_parsers::caps::{compute_disco, hash_caps, Caps};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::hashes::Algo;

use super::{IDENTITY_CATEGORY, IDENTITY_TYPE};

/// The caps `node` pmn devices announce.
pub const CAPS_NODE: &str = "https://pmn.invalid/caps";

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
    all.insert(xmpp_parsers::ns::DISCO_INFO.into());
    all.insert(xmpp_parsers::ns::CAPS.into());
    all.insert(xmpp_parsers::ns::PING.into());
    DiscoInfoResult {
        node: None,
        identities,
        features: all,
        extensions: vec![],
    }
}

/// The `<c/>` element announcing `info`.
pub fn caps_for(info: &DiscoInfoResult) -> Caps {
    let hash =
        hash_caps(&compute_disco(info), Algo::Sha_1).expect("sha-1 is a supported caps algorithm");
    Caps::new(CAPS_NODE, hash)
}

/// Whether `info` hashes to the `ver` announced in `caps`.
pub fn verify_caps(caps: &Caps, info: &DiscoInfoResult) -> bool {
    // disco#info answers to a caps query carry node='node#ver'; the hash is over the content only.
    let mut plain = info.clone();
    plain.node = None;
    match hash_caps(&compute_disco(&plain), caps.hash.clone()) {
        Ok(hash) => hash.hash == caps.ver,
        Err(_) => false,
    }
}

/// disco#info results by verified caps hash, shared by all devices announcing the same hash.
#[derive(Debug, Default)]
pub struct CapsCache {
    by_ver: HashMap<Vec<u8>, DiscoInfoResult>,
}

impl CapsCache {
    /// The cached result for `caps`, if its hash was seen and verified before.
    pub fn get(&self, caps: &Caps) -> Option<&DiscoInfoResult> {
        self.by_ver.get(&caps.ver)
    }

    /// Caches `info` under `caps` if (and only if) it verifies. Returns whether it did.
    pub fn insert_verified(&mut self, caps: &Caps, info: &DiscoInfoResult) -> bool {
        if !verify_caps(caps, info) {
            return false;
        }
        self.by_ver.insert(caps.ver.clone(), info.clone());
        true
    }

    /// Number of cached hashes.
    pub fn len(&self) -> usize {
        self.by_ver.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.by_ver.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_caps_verify_and_tampered_info_does_not() {
        let info = disco_info_for(Some("Living room TV"), &["urn.xmpp.tmp.media.player"]);
        let caps = caps_for(&info);
        assert!(verify_caps(&caps, &info));
        let mut forged = info.clone();
        forged.features.insert("urn:xmpp:tmp:pmn:recorder:0".into());
        assert!(!verify_caps(&caps, &forged));

        let mut cache = CapsCache::default();
        assert!(!cache.insert_verified(&caps, &forged));
        assert!(cache.is_empty());
        assert!(cache.insert_verified(&caps, &info));
        assert_eq!(cache.get(&caps).map(|i| &i.features), Some(&info.features));
    }

    #[test]
    fn controller_announces_no_service_feature() {
        let info = disco_info_for(None, &[]);
        assert!(info
            .identities
            .iter()
            .all(|i| i.category != IDENTITY_CATEGORY));
        assert!(!info.features.iter().any(|f| f.contains("media.player")));
    }
}
