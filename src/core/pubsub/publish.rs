//! Publishing and retracting entries of our own playlists (XEP-0060 §7.1, §7.2).

use std::time::Duration;

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::pubsub::pubsub::{Item, PubSub, Publish, Retract};
use xmpp_parsers::pubsub::ItemId;

use super::entry::PlaylistEntry;
use super::error::PlaylistError;
use super::iq;
use super::node::playlist_node;
use super::signature::{sign_entry, VerifiedEntry};
use crate::core::identity::KeyStore;
use crate::core::session::Session;

/// Signs `entry` with the owner key `alias` of `store` and publishes it as item `entry.id` of
/// playlist `playlist` on our PEP service (replacing an entry of that id). `updated` is the
/// owner's clock (seconds since the epoch). The node must exist ([`super::ensure_playlist`]): a
/// node auto-created by a publish would have the server's default access model.
pub async fn publish_entry(
    session: &Session,
    network: &BareJid,
    playlist: &str,
    entry: &PlaylistEntry,
    updated: u64,
    (store, alias): (&dyn KeyStore, &str),
    timeout: Duration,
) -> Result<VerifiedEntry, PlaylistError> {
    let signature = sign_entry(network, playlist, entry, updated, store, alias)?;
    let issuer = signature.issuer;
    publish_element(
        session,
        playlist,
        &entry.id,
        entry.to_element(updated, Some(signature)),
        timeout,
    )
    .await?;
    tracing::debug!(playlist, entry = %entry.id, "playlist entry published");
    Ok(VerifiedEntry {
        entry: entry.clone(),
        updated,
        issuer,
    })
}

/// Publishes `payload` as item `id` of playlist `playlist` as it is, signed or not. The signed
/// path is [`publish_entry`]; this one is what a bridge of someone else's signed entries (or a
/// test of what subscribers refuse) needs.
pub async fn publish_element(
    session: &Session,
    playlist: &str,
    id: &str,
    payload: Element,
    timeout: Duration,
) -> Result<(), PlaylistError> {
    let publish = PubSub::Publish {
        publish: Publish {
            node: playlist_node(playlist)?,
            items: vec![Item {
                id: Some(ItemId(id.to_owned())),
                publisher: None,
                payload: Some(payload),
            }],
        },
        publish_options: None,
    };
    iq::request(
        session,
        iq::iq(true, None, Element::from(publish)),
        timeout,
        "publishing a playlist entry",
    )
    .await
    .map(|_| ())
}

/// Retracts entry `id` of playlist `playlist`, notifying subscribers.
pub async fn retract_entry(
    session: &Session,
    playlist: &str,
    id: &str,
    timeout: Duration,
) -> Result<(), PlaylistError> {
    let retract = PubSub::Retract(Retract {
        node: playlist_node(playlist)?,
        notify: true,
        items: vec![Item {
            id: Some(ItemId(id.to_owned())),
            publisher: None,
            payload: None,
        }],
    });
    iq::request(
        session,
        iq::iq(true, None, Element::from(retract)),
        timeout,
        "retracting a playlist entry",
    )
    .await
    .map(|_| ())
}
