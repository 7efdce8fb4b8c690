//! XEP-0189 key publishing and owner attestation (DESIGN §4): each device publishes its certificate
//! to the PEP node `urn:xmpp:pubkey:2` of the network's bare JID (item id = fingerprint hex); an owner
//! device that trusts a newly paired device re-publishes that device's item with an attestation — its
//! signature over the subject's SPKI — so the other devices trust the new key without pairing again.
//!
//! Rules: an attestation counts only if its signer's key is itself pinned (paired or manual) on the
//! verifying device and the signature verifies against the signer's *published* SPKI whose hash is
//! that pinned fingerprint. Revocation: the owner retracts the item; [`sync_attested`] then removes
//! every pin that was trusted only through an attestation and whose item is gone.

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xso::text::Base64;
use xso::{AsXml, FromXml};

use super::trust::{TrustSource, TrustStore};
use super::xml::parse_fingerprint_hex;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{certificate_spki, fingerprint_hex, spki_sha256, DeviceIdentity};
use crate::core::session::{IqReply, Session};

/// The PEP node and payload namespace of XEP-0189.
pub const NS_PUBKEY: &str = "urn:xmpp:pubkey:2";
/// The caps feature that asks the server for notifications of the key node (XEP-0163 +notify).
pub const NOTIFY_PUBKEY: &str = "urn:xmpp:pubkey:2+notify";
/// Namespace of our attestation element.
pub const NS_ATTEST: &str = "urn:xmpp:tmp:pmn:attest:0";
const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const ATTEST_CONTEXT: &[u8] = b"pmn-attest-v1\0";

/// `<key>` of XEP-0189: the DER certificate, base64.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBKEY, name = "key", on_unknown_child = Fail)]
pub struct KeyData {
    /// The DER certificate.
    #[xml(text = Base64)]
    pub der: Vec<u8>,
}

/// An owner device's signature over the subject's SPKI.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_ATTEST, name = "attestation", on_unknown_child = Fail)]
pub struct Attestation {
    /// Fingerprint (hex) of the signing device.
    #[xml(attribute)]
    pub by: String,
    /// DER ECDSA P-256/SHA-256 signature over `"pmn-attest-v1\0" || bare JID || "\0" || SPKI`.
    #[xml(text = Base64)]
    pub signature: Vec<u8>,
}

/// `<pubkey xmlns='urn:xmpp:pubkey:2'>`: one device's certificate and its attestations.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBKEY, name = "pubkey", on_unknown_child = Fail)]
pub struct PubKey {
    /// The certificate.
    #[xml(child)]
    pub key: KeyData,
    /// Attestations by owner devices.
    #[xml(child(n = ..))]
    pub attestations: Vec<Attestation>,
}

fn attest_message(jid: &BareJid, spki: &[u8]) -> Vec<u8> {
    let mut msg = ATTEST_CONTEXT.to_vec();
    msg.extend_from_slice(jid.as_str().as_bytes());
    msg.push(0);
    msg.extend_from_slice(spki);
    msg
}

/// Signs an attestation of `subject_spki` (a device of `jid`) with this device's key in its store.
pub fn attest(
    identity: &DeviceIdentity,
    jid: &BareJid,
    subject_spki: &[u8],
) -> Result<Attestation> {
    let signer = identity
        .signing_key()
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or_else(|| Error::new(ErrorKind::Internal, "identity key cannot sign P-256"))?;
    let signature = signer
        .sign(&attest_message(jid, subject_spki))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("attestation: {e}")))?;
    Ok(Attestation {
        by: fingerprint_hex(&identity.fingerprint()),
        signature,
    })
}

/// Checks `attestation` of `subject_spki` against the signer's SPKI.
pub fn verify_attestation(
    attestation: &Attestation,
    jid: &BareJid,
    subject_spki: &[u8],
    signer_spki: &[u8],
) -> bool {
    let Ok(point) = crate::core::identity::p256_point_from_spki(signer_spki) else {
        return false;
    };
    parse_fingerprint_hex(&attestation.by) == Some(spki_sha256(signer_spki))
        && UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(&attest_message(jid, subject_spki), &attestation.signature)
            .is_ok()
}

fn pubsub_iq(set: bool, to: Option<Jid>, child: Element) -> Iq {
    let payload = Element::builder("pubsub", NS_PUBSUB).append(child).build();
    let iq = if set {
        Iq::Set {
            from: None,
            to: None,
            id: String::new(),
            payload,
        }
    } else {
        Iq::Get {
            from: None,
            to: None,
            id: String::new(),
            payload,
        }
    };
    match to {
        Some(to) => iq.with_to(to),
        None => iq,
    }
}

fn expect_result(reply: IqReply, what: &str) -> Result<Option<Element>> {
    match reply {
        IqReply::Result(payload) => Ok(payload),
        IqReply::Error(e) => Err(Error::new(
            ErrorKind::Protocol,
            format!("{what} refused by the server ({:?})", e.defined_condition),
        )),
    }
}

/// Publishes `certificate` (with `attestations`) as item `fingerprint hex` of our own PEP node.
pub async fn publish(
    session: &Session,
    certificate: &[u8],
    attestations: Vec<Attestation>,
    timeout: std::time::Duration,
) -> Result<()> {
    let spki = certificate_spki(certificate)
        .map_err(|e| Error::new(ErrorKind::BadParams, format!("certificate: {e}")))?;
    let item = Element::builder("item", NS_PUBSUB)
        .attr(
            xso::exports::rxml::NcName::try_from("id").map_err(|_| internal())?,
            fingerprint_hex(&spki_sha256(spki)),
        )
        .append(Element::from(PubKey {
            key: KeyData {
                der: certificate.to_vec(),
            },
            attestations,
        }))
        .build();
    let publish = Element::builder("publish", NS_PUBSUB)
        .attr(node_attr()?, NS_PUBKEY)
        .append(item)
        .build();
    // PEP nodes keep one item by default; every device needs its own item on this node.
    let options: Element = "<publish-options xmlns='http://jabber.org/protocol/pubsub'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#max_items'><value>max</value></field></x></publish-options>"
        .parse()
        .map_err(|_| internal())?;
    let mut iq = pubsub_iq(true, None, publish);
    if let Iq::Set { payload, .. } = &mut iq {
        payload.append_child(options);
    }
    expect_result(
        session.request(iq, timeout).await?,
        "publishing the device key",
    )
    .map(|_| ())
}

fn internal() -> Error {
    Error::new(ErrorKind::Internal, "bad attribute name")
}

fn node_attr() -> Result<xso::exports::rxml::NcName> {
    xso::exports::rxml::NcName::try_from("node").map_err(|_| internal())
}

/// Publishes this device's own certificate.
pub async fn publish_own(
    session: &Session,
    identity: &DeviceIdentity,
    timeout: std::time::Duration,
) -> Result<()> {
    publish(session, identity.certificate(), Vec::new(), timeout).await
}

/// Publishes this device's key unless it is already published: republishing would replace the
/// item and drop the attestations owners added to it.
pub async fn ensure_own_published(
    session: &Session,
    identity: &DeviceIdentity,
    timeout: std::time::Duration,
) -> Result<()> {
    let own = session
        .jid()
        .map(|j| j.to_bare())
        .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the session is not online"))?;
    let fingerprint = identity.fingerprint();
    let published = fetch(session, &own, timeout).await?;
    if published.iter().any(|k| k.fingerprint == fingerprint) {
        return Ok(());
    }
    publish_own(session, identity, timeout).await
}

/// Retracts the item of `fingerprint` (revocation of a lost device by an owner device).
pub async fn retract(
    session: &Session,
    fingerprint: &[u8; 32],
    timeout: std::time::Duration,
) -> Result<()> {
    let id = xso::exports::rxml::NcName::try_from("id").map_err(|_| internal())?;
    let retract = Element::builder("retract", NS_PUBSUB)
        .attr(node_attr()?, NS_PUBKEY)
        .attr(
            xso::exports::rxml::NcName::try_from("notify").map_err(|_| internal())?,
            "true",
        )
        .append(
            Element::builder("item", NS_PUBSUB)
                .attr(id, fingerprint_hex(fingerprint))
                .build(),
        )
        .build();
    expect_result(
        session
            .request(pubsub_iq(true, None, retract), timeout)
            .await?,
        "retracting the device key",
    )
    .map(|_| ())
}

/// One published device key.
#[derive(Debug, Clone)]
pub struct PublishedKey {
    /// The device's certificate (DER), as published.
    pub certificate: Vec<u8>,
    /// The device's SPKI (DER).
    pub spki: Vec<u8>,
    /// SHA-256 of the SPKI.
    pub fingerprint: [u8; 32],
    /// Its attestations.
    pub attestations: Vec<Attestation>,
}

/// Fetches the published keys of `jid` (malformed items are skipped, not fatal).
pub async fn fetch(
    session: &Session,
    jid: &BareJid,
    timeout: std::time::Duration,
) -> Result<Vec<PublishedKey>> {
    let items = Element::builder("items", NS_PUBSUB)
        .attr(node_attr()?, NS_PUBKEY)
        .build();
    let reply = session
        .request(
            pubsub_iq(false, Some(Jid::from(jid.clone())), items),
            timeout,
        )
        .await?;
    let payload = match reply {
        IqReply::Error(e)
            if e.defined_condition
                == xmpp_parsers::stanza_error::DefinedCondition::ItemNotFound =>
        {
            return Ok(Vec::new())
        }
        other => expect_result(other, "fetching device keys")?,
    };
    Ok(payload.map(|p| published_keys(&p)).unwrap_or_default())
}

/// The well-formed device keys in a `<pubsub>` answer to an items request; malformed items are
/// skipped.
pub(crate) fn published_keys(pubsub: &Element) -> Vec<PublishedKey> {
    let mut keys = Vec::new();
    for items in pubsub.children().filter(|c| c.is("items", NS_PUBSUB)) {
        for item in items.children().filter(|c| c.is("item", NS_PUBSUB)) {
            for pk in item.children().filter(|c| c.is("pubkey", NS_PUBKEY)) {
                let Ok(pk) = PubKey::try_from(pk.clone()) else {
                    continue;
                };
                let Ok(spki) = certificate_spki(&pk.key.der) else {
                    continue;
                };
                keys.push(PublishedKey {
                    certificate: pk.key.der.clone(),
                    spki: spki.to_vec(),
                    fingerprint: spki_sha256(spki),
                    attestations: pk.attestations,
                });
            }
        }
    }
    keys
}

/// `(fingerprint, signer)` of every key in `keys` that carries a valid attestation by another key
/// in `keys` for which `may_vouch` holds.
pub(crate) fn vouched_keys(
    keys: &[PublishedKey],
    jid: &BareJid,
    may_vouch: impl Fn(&[u8; 32]) -> bool,
) -> Vec<([u8; 32], [u8; 32])> {
    keys.iter()
        .filter_map(|key| {
            key.attestations.iter().find_map(|a| {
                let by = parse_fingerprint_hex(&a.by)?;
                if !may_vouch(&by) {
                    return None;
                }
                let signer = keys.iter().find(|k| k.fingerprint == by)?;
                verify_attestation(a, jid, &key.spki, &signer.spki).then_some((key.fingerprint, by))
            })
        })
        .collect()
}

/// What [`sync_attested`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Newly pinned fingerprints (attested by a trusted owner device).
    pub pinned: Vec<[u8; 32]>,
    /// Attested pins removed because their item was retracted.
    pub revoked: Vec<[u8; 32]>,
}

/// Pins every published key of `jid` attested by a device this one already trusts, and removes
/// every attested pin whose key is no longer published **with** such an attestation (revocation:
/// the item was retracted, or republished without the owner's signature, e.g. by a stolen device).
pub async fn sync_attested(
    session: &Session,
    trust: &TrustStore,
    jid: &BareJid,
    timeout: std::time::Duration,
) -> Result<SyncOutcome> {
    let keys = fetch(session, jid, timeout).await?;
    let mut outcome = SyncOutcome::default();
    // Only first-hand trust may vouch: a key trusted by attestation cannot attest further.
    let vouched = vouched_keys(&keys, jid, |by| {
        matches!(
            trust.source(jid, by),
            Some(TrustSource::Paired | TrustSource::Manual)
        )
    });
    for (fingerprint, by) in &vouched {
        if trust.is_trusted(jid, fingerprint) {
            continue;
        }
        trust.pin(
            jid,
            fingerprint,
            TrustSource::Attested {
                by: fingerprint_hex(by),
            },
        )?;
        outcome.pinned.push(*fingerprint);
    }
    for device in trust.list() {
        if device.jid != jid.as_str() || !matches!(device.source, TrustSource::Attested { .. }) {
            continue;
        }
        let Some(fp) = parse_fingerprint_hex(&device.fingerprint) else {
            continue;
        };
        if !vouched.iter().any(|(v, _)| *v == fp) && trust.revoke(jid, &fp)? {
            outcome.revoked.push(fp);
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn attestation_verifies_only_for_its_subject_jid_and_signer() {
        let dir = tempfile::tempdir().unwrap();
        let id = |n: &str| {
            let store = Arc::new(
                crate::platform::software::SoftwareKeyStore::open(dir.path().join(n)).unwrap(),
            );
            DeviceIdentity::load_or_generate(store, "tls", n).unwrap()
        };
        let (owner, newbie, other) = (id("owner"), id("newbie"), id("other"));
        let jid: BareJid = "home@home.test".parse().unwrap();
        let a = attest(&owner, &jid, newbie.spki()).unwrap();
        assert!(verify_attestation(&a, &jid, newbie.spki(), owner.spki()));
        assert!(!verify_attestation(&a, &jid, other.spki(), owner.spki()));
        assert!(!verify_attestation(&a, &jid, newbie.spki(), other.spki()));
        let elsewhere: BareJid = "romeo@away.test".parse().unwrap();
        assert!(!verify_attestation(
            &a,
            &elsewhere,
            newbie.spki(),
            owner.spki()
        ));
        let pk = PubKey {
            key: KeyData {
                der: newbie.certificate().to_vec(),
            },
            attestations: vec![a],
        };
        assert_eq!(PubKey::try_from(Element::from(pk.clone())).unwrap(), pk);
        let bad: Element = format!("<pubkey xmlns='{NS_PUBKEY}'><x/></pubkey>")
            .parse()
            .unwrap();
        assert!(PubKey::try_from(bad).is_err());
    }
}
