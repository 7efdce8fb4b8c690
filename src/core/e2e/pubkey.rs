//! XEP-0189 key publishing and owner attestation (DESIGN §4): each device publishes its certificate
//! to the PEP node `urn:xmpp:pubkey:2` of the network's bare JID (item id = fingerprint hex); an owner
//! device that trusts a newly paired device re-publishes that device's item with an attestation — its
//! signature over the subject's SPKI — so the other devices trust the new key without pairing again.
//!
//! Rules: an attestation counts only if its signer's key is itself pinned first-hand (paired or
//! manual) on the verifying device, or is the signer of the newest revocation list it verified (the
//! *anchor*), the signature verifies against the signer's *published* SPKI whose hash is that
//! fingerprint, and its epoch is not older than that list's: every revocation makes older
//! attestations void until re-issued. Revocation is the owner-signed list of
//! [`super::revocation`], published on this node as item `revocations-<signer hex>`;
//! [`sync_attested`] verifies the lists first, drops every pin they name (first-hand ones too),
//! then removes every attested pin no longer vouched for. Keys and lists come in one fetch: if it
//! fails, attested keys are refused.

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use rustls::sign::SigningKey;
use rustls::SignatureScheme;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xso::text::Base64;
use xso::{AsXml, FromXml};

use super::revocation::{self, ListError, RevocationList, NS_REVOCATIONS};
use super::trust::{Accepted, TrustSource, TrustStore};
use super::xml::parse_fingerprint_hex;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{certificate_spki, fingerprint_hex, spki_sha256, DeviceIdentity};
use crate::core::pubsub::iq::{expect_result, pubsub_iq, NS_PUBSUB};
use crate::core::session::{IqReply, Session};

/// The PEP node and payload namespace of XEP-0189.
pub const NS_PUBKEY: &str = "urn:xmpp:pubkey:2";
/// The caps feature that asks the server for notifications of the key node (XEP-0163 +notify).
pub const NOTIFY_PUBKEY: &str = "urn:xmpp:pubkey:2+notify";
/// Namespace of our attestation element.
pub const NS_ATTEST: &str = "urn:xmpp:tmp:pmn:attest:0";
const ATTEST_CONTEXT: &[u8] = b"pmn-attest-v2\0";

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
    /// The signer's revocation epoch when it signed: void once a newer revocation list is known.
    /// (Absent on attestations of the first format, which then fail to verify.)
    #[xml(attribute(default))]
    pub epoch: u64,
    /// DER ECDSA P-256/SHA-256 signature over
    /// `"pmn-attest-v2\0" || bare JID || "\0" || epoch (u64 BE) || SPKI`.
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

fn attest_message(jid: &BareJid, epoch: u64, spki: &[u8]) -> Vec<u8> {
    let mut msg = ATTEST_CONTEXT.to_vec();
    msg.extend_from_slice(jid.as_str().as_bytes());
    msg.push(0);
    msg.extend_from_slice(&epoch.to_be_bytes());
    msg.extend_from_slice(spki);
    msg
}

/// Signs an attestation of `subject_spki` (a device of `jid`) at revocation `epoch` (the newest
/// this device knows) with this device's key in its store.
pub fn attest(
    identity: &DeviceIdentity,
    jid: &BareJid,
    subject_spki: &[u8],
    epoch: u64,
) -> Result<Attestation> {
    let signer = identity
        .signing_key()
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or_else(|| Error::new(ErrorKind::Internal, "identity key cannot sign P-256"))?;
    let signature = signer
        .sign(&attest_message(jid, epoch, subject_spki))
        .map_err(|e| Error::new(ErrorKind::Internal, format!("attestation: {e}")))?;
    Ok(Attestation {
        by: fingerprint_hex(&identity.fingerprint()),
        epoch,
        signature,
    })
}

/// Checks `attestation` of `subject_spki` against the signer's SPKI (not its epoch: see
/// [`sync_attested`]).
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
            .verify(
                &attest_message(jid, attestation.epoch, subject_spki),
                &attestation.signature,
            )
            .is_ok()
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
    let payload = Element::from(PubKey {
        key: KeyData {
            der: certificate.to_vec(),
        },
        attestations,
    });
    publish_item(
        session,
        &fingerprint_hex(&spki_sha256(spki)),
        payload,
        timeout,
    )
    .await
}

/// Publishes our revocation list as item `revocations-<our fingerprint hex>` of the key node.
pub async fn publish_revocations(
    session: &Session,
    signer: &[u8; 32],
    list: RevocationList,
    timeout: std::time::Duration,
) -> Result<()> {
    let id = format!("{}{}", revocation::ITEM_PREFIX, fingerprint_hex(signer));
    publish_item(session, &id, Element::from(list), timeout).await
}

/// Publishes `payload` as item `id` of our own key node (replacing an item of that id).
pub async fn publish_item(
    session: &Session,
    id: &str,
    payload: Element,
    timeout: std::time::Duration,
) -> Result<()> {
    let item = Element::builder("item", NS_PUBSUB)
        .attr(
            xso::exports::rxml::NcName::try_from("id").map_err(|_| internal())?,
            id,
        )
        .append(payload)
        .build();
    let publish = Element::builder("publish", NS_PUBSUB)
        .attr(node_attr()?, NS_PUBKEY)
        .append(item)
        .build();
    // PEP nodes keep one item by default; every device needs its own item on this node.
    let options: Element = "<publish-options xmlns='http://jabber.org/protocol/pubsub'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#max_items'><value>max</value></field></x></publish-options>"
        .parse()
        .map_err(|_| internal())?;
    let mut iq = pubsub_iq(true, None, publish.clone());
    if let Iq::Set { payload, .. } = &mut iq {
        payload.append_child(options);
    }
    let first = expect_result(
        session.request(iq, timeout).await?,
        "publishing the device key",
    );
    let Err(refused) = first else {
        return Ok(());
    };
    // ejabberd 23.01 refuses the publish-option `pubsub#max_items` ("Unknown field"): configure
    // the node to keep many items and notify retractions instead (best effort: the node may not exist yet, in which
    // case the publish below creates it and the configuration is retried once), then publish
    // without options.
    tracing::debug!(error = %refused, "publish-options refused; configuring the node instead");
    let configured = configure_max_items(session, timeout).await;
    expect_result(
        session
            .request(pubsub_iq(true, None, publish), timeout)
            .await?,
        "publishing the device key",
    )?;
    if configured.is_err() {
        if let Err(e) = configure_max_items(session, timeout).await {
            tracing::warn!(error = %e, "could not make the key node keep one item per device");
        }
    }
    Ok(())
}

/// Owner configuration of our key node: keep up to 1000 items (one per device and one revocation
/// list per signer), and notify retractions (ejabberd's default is not to; a retraction changes
/// what the devices trust, so they should re-check at once).
async fn configure_max_items(session: &Session, timeout: std::time::Duration) -> Result<()> {
    let configure: Element = format!(
        "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='{NS_PUBKEY}'>\
         <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         <field var='pubsub#max_items'><value>1000</value></field>\
         <field var='pubsub#notify_retract'><value>1</value></field></x></configure></pubsub>"
    )
    .parse()
    .map_err(|_| internal())?;
    let iq = Iq::Set {
        from: None,
        to: None,
        id: String::new(),
        payload: configure,
    };
    expect_result(
        session.request(iq, timeout).await?,
        "configuring the key node",
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

/// Retracts the item of `fingerprint`. Not a revocation by itself (the server or the device can
/// publish the item again): the signed list of [`revocation`] is; this only tidies the node.
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
    Ok(fetch_directory(session, jid, timeout).await?.keys)
}

/// Everything on a network's key node: the device keys and the revocation lists (as parsed; a
/// malformed list is kept as its error, so the caller can say why it was ignored).
#[derive(Debug, Default)]
pub struct Directory {
    /// The published device keys.
    pub keys: Vec<PublishedKey>,
    /// The published revocation lists (not yet verified).
    pub lists: Vec<std::result::Result<RevocationList, ListError>>,
}

/// Fetches the key node of `jid`: keys and revocation lists in one request, so a trust decision
/// sees both as of the same moment. An empty or missing node is an empty directory.
pub async fn fetch_directory(
    session: &Session,
    jid: &BareJid,
    timeout: std::time::Duration,
) -> Result<Directory> {
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
            return Ok(Directory::default())
        }
        other => expect_result(other, "fetching device keys")?,
    };
    Ok(payload
        .map(|pubsub| parse_directory(&pubsub))
        .unwrap_or_default())
}

/// The keys and revocation lists in a `<pubsub>` answer to an items request of the key node;
/// malformed keys are skipped, lists are returned with their parse result.
pub(crate) fn parse_directory(pubsub: &Element) -> Directory {
    let mut keys = Vec::new();
    let mut lists = Vec::new();
    for items in pubsub.children().filter(|c| c.is("items", NS_PUBSUB)) {
        for item in items.children().filter(|c| c.is("item", NS_PUBSUB)) {
            for list in item
                .children()
                .filter(|c| c.is("revocations", NS_REVOCATIONS))
            {
                lists.push(revocation::parse_list(list));
            }
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
    Directory { keys, lists }
}

/// What [`sync_attested`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Newly pinned fingerprints (attested by a trusted owner device).
    pub pinned: Vec<[u8; 32]>,
    /// Pins removed: named by a revocation list, or attested pins no longer vouched for.
    pub revoked: Vec<[u8; 32]>,
    /// Published revocation lists refused (forged, unknown or revoked signer, older epoch). They
    /// change nothing: the device keeps the newest list it verified.
    pub refused_lists: Vec<ListError>,
}

/// Verifies the revocation lists of `directory` and accepts the valid ones (oldest first, so a
/// newer one from another owner still counts). Returns the pins dropped and the lists refused.
pub fn apply_revocations(
    trust: &TrustStore,
    jid: &BareJid,
    own: &[u8; 32],
    lists: &[std::result::Result<RevocationList, ListError>],
) -> (Vec<[u8; 32]>, Vec<ListError>) {
    let mut refused = Vec::new();
    let mut verified = Vec::new();
    for list in lists {
        match list
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|l| revocation::verify_list(l, jid))
        {
            Ok(v) => verified.push(v),
            Err(e) => refused.push(e),
        }
    }
    verified.sort_by_key(|v| v.epoch);
    let mut dropped = Vec::new();
    for list in &verified {
        match trust.accept_revocations(jid, list, own) {
            Ok(Accepted::Newer { dropped: d }) => dropped.extend(d),
            Ok(Accepted::Unchanged) => {}
            Err(e) => refused.push(e),
        }
    }
    for e in &refused {
        // Lists of devices this one never trusted are normal on a shared account; say why anyway.
        tracing::debug!(error = %e, "revocation list refused");
    }
    (dropped, refused)
}

/// Reads `jid`'s key node and applies it: first the revocation lists (every pin a valid list
/// names is dropped, first-hand ones too; refused lists are reported in the outcome), then every
/// published key with a current attestation by a device that may vouch is pinned, and every
/// attested pin no longer published **with** such an attestation is removed. If the newest list
/// this device verified is no longer served, it is published again.
pub async fn sync_attested(
    session: &Session,
    trust: &TrustStore,
    jid: &BareJid,
    timeout: std::time::Duration,
) -> Result<SyncOutcome> {
    sync_attested_except(session, trust, jid, None, timeout).await
}

/// As [`sync_attested`], never pinning `own` (this device's key: an owner that paired with us
/// attests it, and we must not end up trusting ourselves as a peer).
pub async fn sync_attested_except(
    session: &Session,
    trust: &TrustStore,
    jid: &BareJid,
    own: Option<&[u8; 32]>,
    timeout: std::time::Duration,
) -> Result<SyncOutcome> {
    let directory = fetch_directory(session, jid, timeout).await?;
    let outcome = apply_directory(trust, jid, own, &directory)?;
    // The server no longer serves the newest list we verified (retracted, or replaced by an
    // older one): publish it again, so devices that have not seen it yet still can. Its
    // signature is the signer's, so any device of the network may put it back.
    if let (Some(kept), Some(anchor)) = (trust.kept_list(jid), trust.revocation_anchor(jid)) {
        if !directory.lists.iter().any(|l| l.as_ref() == Ok(&kept)) {
            match publish_revocations(session, &anchor, kept, timeout).await {
                Ok(()) => tracing::info!(
                    network = %jid,
                    "published the newest revocation list again: the server had dropped it"
                ),
                Err(e) => tracing::warn!(error = %e, "could not publish the revocation list again"),
            }
        }
    }
    Ok(outcome)
}

/// The trust decisions of [`sync_attested_except`] on a fetched `directory`: revocation lists
/// first, then the attested pins.
pub fn apply_directory(
    trust: &TrustStore,
    jid: &BareJid,
    own: Option<&[u8; 32]>,
    directory: &Directory,
) -> Result<SyncOutcome> {
    let own_fp = own.copied().unwrap_or([0; 32]);
    let (dropped, refused_lists) = apply_revocations(trust, jid, &own_fp, &directory.lists);
    let keys = &directory.keys;
    let mut outcome = SyncOutcome {
        revoked: dropped,
        refused_lists,
        ..SyncOutcome::default()
    };
    let epoch = trust.revocation_epoch(jid);
    let anchor = trust.revocation_anchor(jid);
    // Who may vouch: a device trusted first-hand, or the signer of the newest list we verified
    // (it proved to be an owner at that epoch; it re-attests the devices it still trusts).
    let vouches = |by: &[u8; 32]| {
        if trust.is_revoked(jid, by) {
            return false;
        }
        // The anchor only while this device still trusts it (or is it): a pin removed here by
        // hand must not keep vouching through an old list.
        if anchor.as_ref() == Some(by) && (own == Some(by) || trust.is_trusted(jid, by)) {
            return true;
        }
        // Only first-hand trust may vouch: a key trusted by attestation cannot attest further.
        matches!(
            trust.source(jid, by),
            Some(TrustSource::Paired | TrustSource::Manual)
        )
    };
    // Published keys that carry a valid, current attestation by a device that may vouch.
    let vouched: Vec<([u8; 32], [u8; 32])> = keys
        .iter()
        .filter(|key| own != Some(&key.fingerprint) && !trust.is_revoked(jid, &key.fingerprint))
        .filter_map(|key| {
            key.attestations.iter().find_map(|a| {
                // Older than the newest revocation: the signer may have vouched for a key it
                // would not vouch for now.
                if a.epoch < epoch {
                    return None;
                }
                let by = parse_fingerprint_hex(&a.by)?;
                if !vouches(&by) {
                    return None;
                }
                let signer = keys.iter().find(|k| k.fingerprint == by)?;
                verify_attestation(a, jid, &key.spki, &signer.spki).then_some((key.fingerprint, by))
            })
        })
        .collect();
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
        // The anchor is kept: the list it signed is what re-anchors the devices it still trusts.
        if anchor == Some(fp) && !trust.is_revoked(jid, &fp) {
            continue;
        }
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
        let a = attest(&owner, &jid, newbie.spki(), 4).unwrap();
        assert_eq!(a.epoch, 4);
        let mut moved = a.clone();
        moved.epoch = 5;
        assert!(!verify_attestation(
            &moved,
            &jid,
            newbie.spki(),
            owner.spki()
        ));
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

    struct Net {
        _dir: tempfile::TempDir,
        jid: BareJid,
    }

    fn net() -> Net {
        Net {
            _dir: tempfile::tempdir().unwrap(),
            jid: "home@home.test".parse().unwrap(),
        }
    }

    impl Net {
        fn id(&self, n: &str) -> DeviceIdentity {
            let store = Arc::new(
                crate::platform::software::SoftwareKeyStore::open(self._dir.path().join(n))
                    .unwrap(),
            );
            DeviceIdentity::load_or_generate(store, "tls", n).unwrap()
        }

        /// `subject`'s published item with attestations by `by` at their epochs.
        fn key(&self, subject: &DeviceIdentity, by: &[(&DeviceIdentity, u64)]) -> PublishedKey {
            PublishedKey {
                certificate: subject.certificate().to_vec(),
                spki: subject.spki().to_vec(),
                fingerprint: subject.fingerprint(),
                attestations: by
                    .iter()
                    .map(|(owner, epoch)| attest(owner, &self.jid, subject.spki(), *epoch).unwrap())
                    .collect(),
            }
        }

        fn list(
            &self,
            signer: &DeviceIdentity,
            epoch: u64,
            revoked: &[[u8; 32]],
        ) -> std::result::Result<RevocationList, ListError> {
            Ok(
                revocation::sign_list(signer, &self.jid, epoch, &revoked.iter().copied().collect())
                    .unwrap(),
            )
        }
    }

    #[test]
    fn epochs_only_move_forward_and_a_revoked_key_is_refused_even_first_hand() {
        let n = net();
        let (owner, lost, stranger) = (n.id("owner"), n.id("lost"), n.id("stranger"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trust.json");
        let trust = TrustStore::open(&path).unwrap();
        let me = [9u8; 32];
        trust
            .pin(&n.jid, &owner.fingerprint(), TrustSource::Paired)
            .unwrap();
        trust
            .pin(&n.jid, &lost.fingerprint(), TrustSource::Paired)
            .unwrap();

        let two = n.list(&owner, 2, &[lost.fingerprint()]);
        let (dropped, refused) = apply_revocations(&trust, &n.jid, &me, std::slice::from_ref(&two));
        assert_eq!(
            dropped,
            vec![lost.fingerprint()],
            "the first-hand pin is dropped"
        );
        assert!(refused.is_empty(), "{refused:?}");
        assert!(!trust.is_trusted(&n.jid, &lost.fingerprint()));
        assert_eq!(trust.revocation_epoch(&n.jid), 2);
        assert_eq!(trust.revocation_anchor(&n.jid), Some(owner.fingerprint()));
        let again = trust
            .pin(&n.jid, &lost.fingerprint(), TrustSource::Paired)
            .unwrap_err();
        assert_eq!(
            again.kind(),
            ErrorKind::Forbidden,
            "a revoked key is never pinned again"
        );

        // The same list again changes nothing; an older one is a rollback; an empty newer list
        // does not bring the key back.
        let (_, refused) = apply_revocations(&trust, &n.jid, &me, &[two]);
        assert!(refused.is_empty());
        let one = n.list(&owner, 1, &[]);
        let (_, refused) = apply_revocations(&trust, &n.jid, &me, &[one]);
        assert_eq!(refused, vec![ListError::Rollback { known: 2, got: 1 }]);
        let three = n.list(&owner, 3, &[]);
        apply_revocations(&trust, &n.jid, &me, &[three]);
        assert_eq!(trust.revocation_epoch(&n.jid), 3);
        assert!(trust.is_revoked(&n.jid, &lost.fingerprint()));

        // Signers: one never trusted here, one revoked earlier.
        let (_, refused) = apply_revocations(
            &trust,
            &n.jid,
            &me,
            &[n.list(&stranger, 9, &[owner.fingerprint()])],
        );
        assert_eq!(
            refused,
            vec![ListError::UnknownSigner(stranger.fingerprint())]
        );
        let (_, refused) = apply_revocations(
            &trust,
            &n.jid,
            &me,
            &[n.list(&lost, 9, &[owner.fingerprint()])],
        );
        assert_eq!(refused, vec![ListError::RevokedSigner(lost.fingerprint())]);
        // A forged list is refused the same way, never a panic.
        let mut forged = n.list(&owner, 10, &[]).unwrap();
        forged.revoked.push(revocation::Revoked {
            fingerprint: fingerprint_hex(&[1; 32]),
        });
        let (_, refused) = apply_revocations(&trust, &n.jid, &me, &[Ok(forged)]);
        assert_eq!(refused, vec![ListError::BadSignature]);
        assert_eq!(trust.revocation_epoch(&n.jid), 3);
        assert!(trust.is_trusted(&n.jid, &owner.fingerprint()));

        // Survives a restart (the file beside the trust file).
        let reopened = TrustStore::open(&path).unwrap();
        assert_eq!(reopened.revocation_epoch(&n.jid), 3);
        assert!(reopened.is_revoked(&n.jid, &lost.fingerprint()));
        assert!(dir.path().join("trust.json.revocations.json").exists());
    }

    #[test]
    fn attestations_older_than_the_newest_revocation_are_void_until_reissued() {
        let n = net();
        let (tv, phone, tablet, laptop) =
            (n.id("tv"), n.id("phone"), n.id("tablet"), n.id("laptop"));
        let trust = TrustStore::in_memory();
        let own = tv.fingerprint();
        trust
            .pin(&n.jid, &phone.fingerprint(), TrustSource::Paired)
            .unwrap();
        let dir = |keys: Vec<PublishedKey>, lists| Directory { keys, lists };
        let base = || {
            vec![
                n.key(&phone, &[]),
                n.key(&tv, &[(&phone, 0)]),
                n.key(&tablet, &[(&phone, 0)]),
                n.key(&laptop, &[(&phone, 0)]),
            ]
        };
        let out = apply_directory(&trust, &n.jid, Some(&own), &dir(base(), vec![])).unwrap();
        assert_eq!(out.pinned.len(), 2, "tablet and laptop, never ourselves");
        assert!(!trust.is_trusted(&n.jid, &own));

        // The phone revokes the tablet at epoch 1: the tablet goes, and so does the laptop until
        // its attestation is re-issued; the saved item with its old attestation changes nothing.
        let list = n.list(&phone, 1, &[tablet.fingerprint()]);
        let out =
            apply_directory(&trust, &n.jid, Some(&own), &dir(base(), vec![list.clone()])).unwrap();
        assert!(out.revoked.contains(&tablet.fingerprint()));
        assert!(out.revoked.contains(&laptop.fingerprint()));
        let reissued = vec![
            n.key(&phone, &[]),
            n.key(&tablet, &[(&phone, 0), (&phone, 1)]),
            n.key(&laptop, &[(&phone, 1)]),
        ];
        let out = apply_directory(&trust, &n.jid, Some(&own), &dir(reissued, vec![list])).unwrap();
        assert_eq!(out.pinned, vec![laptop.fingerprint()]);
        assert!(
            !trust.is_trusted(&n.jid, &tablet.fingerprint()),
            "revoked stays revoked"
        );
    }

    #[test]
    fn the_signer_of_the_newest_list_vouches_when_the_revoked_key_was_the_only_first_hand_one() {
        // TV paired with the phone only; the tablet is trusted through the phone. The phone is
        // stolen and revoked from the tablet: the TV drops the phone and keeps the tablet.
        let n = net();
        let (tv, phone, tablet, laptop) =
            (n.id("tv"), n.id("phone"), n.id("tablet"), n.id("laptop"));
        let trust = TrustStore::in_memory();
        let own = tv.fingerprint();
        trust
            .pin(&n.jid, &phone.fingerprint(), TrustSource::Paired)
            .unwrap();
        let keys = || {
            vec![
                n.key(&phone, &[]),
                n.key(&tablet, &[(&phone, 0)]),
                n.key(&laptop, &[(&phone, 0), (&tablet, 1)]),
            ]
        };
        apply_directory(
            &trust,
            &n.jid,
            Some(&own),
            &Directory {
                keys: keys(),
                lists: vec![],
            },
        )
        .unwrap();
        assert!(trust.is_trusted(&n.jid, &tablet.fingerprint()));
        let list = n.list(&tablet, 1, &[phone.fingerprint()]);
        let out = apply_directory(
            &trust,
            &n.jid,
            Some(&own),
            &Directory {
                keys: keys(),
                lists: vec![list],
            },
        )
        .unwrap();
        assert!(out.revoked.contains(&phone.fingerprint()));
        assert!(!trust.is_trusted(&n.jid, &phone.fingerprint()));
        assert!(
            trust.is_trusted(&n.jid, &tablet.fingerprint()),
            "the list's signer stays"
        );
        assert!(
            trust.is_trusted(&n.jid, &laptop.fingerprint()),
            "re-attested by the list's signer at the new epoch"
        );
    }
}
