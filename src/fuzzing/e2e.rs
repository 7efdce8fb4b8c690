//! The end-to-end parsers: Jingle/XTLS offers and accepts, IBB blocks, pairing steps and the
//! XEP-0189 key node.

use minidom::Element;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::jingle::Jingle;

use crate::core::e2e::{endpoint, ibb, pairing, pubkey, xml as e2e_xml};

use crate::core::identity::{certificate_spki, DeviceFingerprint};

use super::{bare, element, full, round_trip};

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
        assert_eq!(DeviceFingerprint::from_spki(&key.spki), key.fingerprint);
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
