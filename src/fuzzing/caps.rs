//! Entity capabilities: a presence's caps and the disco#info answering them, through the
//! provider directory and both hash readers.

use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::presence::Presence;

use crate::core::discovery::{
    caps_for, Advertised, CapsSnapshot, DiscoAnswer, HashInput, ProviderDirectory,
};

use super::{bare, element, full};

/// A presence `<c/>` and the disco#info `<query/>` answering it, as children of any root, through
/// the provider directory; our own caps over any disco#info verify; the cache saved and read back
/// keeps every entry; the input read as a saved cache is refused or re-verified, never a panic.
pub fn caps(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<CapsSnapshot>();
    }
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
    // What verified once verifies again after a save and a read: no entry lost on the way.
    let saved = directory.caps_cache().snapshot();
    let text = saved.to_string();
    match text.parse::<CapsSnapshot>() {
        Ok(back) => assert_eq!(
            (back.len(), back.refused()),
            (saved.len(), 0),
            "a saved caps cache lost entries: {text}"
        ),
        Err(e) => panic!("a saved caps cache does not read back: {e}"),
    }
}
