//! The key node on PEP (XEP-0163 + XEP-0060): publishing a device's item or a revocation list,
//! retracting an item, configuring the node, and reading it back as a [`Directory`]. Requests are
//! built from `xmpp_parsers::pubsub` and `xmpp_parsers::data_forms` types, so this file holds the
//! node's policy (one item per device, retractions notified), not XML.

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::pubsub::owner::{Owner, Payload as OwnerPayload};
use xmpp_parsers::pubsub::pubsub::{Item, Items, Publish, PublishOptions, Retract};
use xmpp_parsers::pubsub::{ItemId, NodeName, PubSub, PubSubPayload};

use super::{Attestation, KeyData, PubKey, NS_PUBKEY};
use crate::core::e2e::revocation::{self, ListError, RevocationList, NS_REVOCATIONS};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::{certificate_spki, DeviceFingerprint, DeviceIdentity};
use crate::core::pubsub::iq::{expect_result, NS_PUBSUB};
use crate::core::session::{IqReply, Session};

/// FORM_TYPE of XEP-0060 publish options.
const PUBLISH_OPTIONS_FORM: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// Publishes `certificate` (with `attestations`) as item `fingerprint hex` of our own PEP node.
pub async fn publish(
    session: &Session,
    certificate: &[u8],
    attestations: Vec<Attestation>,
    timeout: std::time::Duration,
) -> Result<()> {
    let spki = certificate_spki(certificate)
        .map_err(|e| Error::new(ErrorKind::BadParams, format!("certificate: {e}")))?;
    let payload = PubKey {
        key: KeyData {
            der: certificate.to_vec(),
        },
        attestations,
    };
    publish_item(
        session,
        &DeviceFingerprint::from_spki(spki).to_hex(),
        payload,
        timeout,
    )
    .await
}

/// Publishes our revocation list as item `revocations-<our fingerprint hex>` of the key node.
pub async fn publish_revocations(
    session: &Session,
    signer: &DeviceFingerprint,
    list: RevocationList,
    timeout: std::time::Duration,
) -> Result<()> {
    let id = format!("{}{}", revocation::ITEM_PREFIX, signer.to_hex());
    publish_item(session, &id, list, timeout).await
}

/// Publishes `payload` as item `id` of our own key node (replacing an item of that id).
pub async fn publish_item(
    session: &Session,
    id: &str,
    payload: impl PubSubPayload,
    timeout: std::time::Duration,
) -> Result<()> {
    let payload: Element = payload.into();
    // PEP nodes keep one item by default; every device needs its own item on this node.
    let first = expect_result(
        session
            .request(publish_request(id, payload.clone(), true), timeout)
            .await?,
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
            .request(publish_request(id, payload, false), timeout)
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

fn key_node() -> NodeName {
    NodeName(NS_PUBKEY.to_owned())
}

/// The publish of `payload` as item `id` of our key node; `with_options` asks the node to keep
/// as many items as it can (`pubsub#max_items` = `max`), which ejabberd 23.01 refuses.
fn publish_request(id: &str, payload: Element, with_options: bool) -> Iq {
    let publish = Publish {
        node: key_node(),
        items: vec![Item {
            id: Some(ItemId(id.to_owned())),
            publisher: None,
            payload: Some(payload),
        }],
    };
    let publish_options = with_options.then(|| PublishOptions {
        form: Some(DataForm::new(
            DataFormType::Submit,
            PUBLISH_OPTIONS_FORM,
            vec![Field::text_single("pubsub#max_items", "max")],
        )),
    });
    Iq::from_set(
        String::new(),
        PubSub::Publish {
            publish,
            publish_options,
        },
    )
}

/// Owner configuration of our key node: keep up to 1000 items (one per device and one revocation
/// list per signer), and notify retractions (ejabberd's default is not to; a retraction changes
/// what the devices trust, so they should re-check at once).
fn configure_request() -> Iq {
    let form = DataForm::new(
        DataFormType::Submit,
        ns::PUBSUB_CONFIGURE,
        vec![
            Field::text_single("pubsub#max_items", "1000"),
            Field::text_single("pubsub#notify_retract", "1"),
        ],
    );
    Iq::from_set(
        String::new(),
        Owner {
            payload: OwnerPayload::Configure {
                node: Some(key_node()),
                form: Some(form),
            },
        },
    )
}

/// The retraction (notified to subscribers) of item `id` of our key node.
fn retract_request(id: &str) -> Iq {
    Iq::from_set(
        String::new(),
        PubSub::Retract(Retract {
            node: key_node(),
            notify: true,
            items: vec![Item {
                id: Some(ItemId(id.to_owned())),
                publisher: None,
                payload: None,
            }],
        }),
    )
}

/// The request for every item of `jid`'s key node.
fn items_request(jid: &BareJid) -> Iq {
    Iq::from_get(String::new(), PubSub::Items(Items::new(NS_PUBKEY)))
        .with_to(Jid::from(jid.clone()))
}

/// See [`configure_request`].
async fn configure_max_items(session: &Session, timeout: std::time::Duration) -> Result<()> {
    expect_result(
        session.request(configure_request(), timeout).await?,
        "configuring the key node",
    )
    .map(|_| ())
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
    fingerprint: &DeviceFingerprint,
    timeout: std::time::Duration,
) -> Result<()> {
    expect_result(
        session
            .request(retract_request(&fingerprint.to_hex()), timeout)
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
    pub fingerprint: DeviceFingerprint,
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
    let reply = session.request(items_request(jid), timeout).await?;
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
                    fingerprint: DeviceFingerprint::from_spki(spki),
                    attestations: pk.attestations,
                });
            }
        }
    }
    Directory { keys, lists }
}

#[cfg(test)]
#[path = "pep_tests.rs"]
mod tests;
