//! The playlist parsers, on what a subscriber receives (an entry, a catch-up answer, a
//! notification).

use std::sync::Arc;

use minidom::Element;
use xmpp_parsers::jid::BareJid;

use crate::core::access::{OwnerKey, OwnerKeys};
use crate::core::pubsub::entry::{parse_item, NS_PLAYLIST};
use crate::core::pubsub::iq::NS_PUBSUB;
use crate::core::pubsub::signature::verify_entry;

use super::{bare, element, rewire};

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
