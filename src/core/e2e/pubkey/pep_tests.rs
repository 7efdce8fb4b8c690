//! The key node requests built from `xmpp_parsers` types are the same XML as the hand-built
//! elements they replaced (the bytes Prosody and ejabberd were tested with).

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::*;

fn payload(iq: Iq) -> Element {
    match iq {
        Iq::Set { payload, to, .. } | Iq::Get { payload, to, .. } => {
            assert!(to.is_none(), "requests to our own PEP service have no `to`");
            payload
        }
        other => panic!("not a request: {other:?}"),
    }
}

fn xml(s: &str) -> Element {
    s.parse().unwrap()
}

const ITEM: &str = "<x xmlns='urn:example'>payload</x>";

#[test]
fn publish_with_options_is_the_hand_built_element() {
    let iq = publish_request("abc", xml(ITEM), true);
    assert!(matches!(iq, Iq::Set { .. }));
    let expected = xml(&format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='urn:xmpp:pubkey:2'><item id='abc'>{ITEM}</item></publish>\
         <publish-options><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='pubsub#max_items'><value>max</value></field></x></publish-options></pubsub>"
    ));
    assert_eq!(payload(iq), expected);
}

#[test]
fn publish_without_options_is_the_hand_built_element() {
    let expected = xml(&format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <publish node='urn:xmpp:pubkey:2'><item id='abc'>{ITEM}</item></publish></pubsub>"
    ));
    assert_eq!(payload(publish_request("abc", xml(ITEM), false)), expected);
}

#[test]
fn configure_is_the_hand_built_element() {
    let expected = xml("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
         <configure node='urn:xmpp:pubkey:2'>\
         <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         <field var='pubsub#max_items'><value>1000</value></field>\
         <field var='pubsub#notify_retract'><value>1</value></field></x></configure></pubsub>");
    let iq = configure_request();
    assert!(matches!(iq, Iq::Set { .. }));
    assert_eq!(payload(iq), expected);
}

#[test]
fn retract_is_the_hand_built_element() {
    let expected = xml("<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <retract node='urn:xmpp:pubkey:2' notify='true'><item id='0a0b'/></retract></pubsub>");
    let iq = retract_request("0a0b");
    assert!(matches!(iq, Iq::Set { .. }));
    assert_eq!(payload(iq), expected);
}

#[test]
fn items_is_the_hand_built_element_to_the_network() {
    let home: BareJid = "home@home.test".parse().unwrap();
    let Iq::Get { payload, to, .. } = items_request(&home) else {
        panic!("an items request is a get");
    };
    assert_eq!(to, Some(home.into()));
    let expected = xml("<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <items node='urn:xmpp:pubkey:2'/></pubsub>");
    assert_eq!(payload, expected);
}
