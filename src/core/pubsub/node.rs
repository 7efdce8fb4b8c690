//! Playlist nodes on the network's PEP service: their names, their access model, and the owner
//! requests that create, configure and delete them.
//!
//! Access models map to what Prosody's and ejabberd's PEP both implement (XEP-0060 §4.5):
//! - [`Access::OwnNetwork`] is `whitelist` with no member: every device of the household shares
//!   the bare JID that owns the node, so they all read it and nobody else does;
//! - [`Access::Friends`] is `whitelist` with each friend household's bare JID as `member`
//!   (affiliations are replaced, so a friend taken off the list loses access at once);
//! - [`Access::Open`] is `open`: any account may read and subscribe.
//!
//! `presence` is not used: on a pmn network every guest with a presence subscription would read
//! the playlists too, which is not what "own network only" promises.

use std::time::Duration;

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::pubsub::owner::{Owner, Payload as OwnerPayload};
use xmpp_parsers::pubsub::pubsub::{Configure, Create, PubSub};
use xmpp_parsers::pubsub::{AffiliationAttribute, NodeName};
use xso::{AsXml, FromXml};

use super::entry::NS_PLAYLIST;
use super::error::PlaylistError;
use super::iq;
use crate::core::session::Session;

/// The most friend households one playlist can name (each is one affiliation on the server).
pub const MAX_FRIENDS: usize = 256;
/// Longest playlist name, in characters of `A-Z a-z 0-9 . _ -`.
pub const MAX_PLAYLIST_NAME_LEN: usize = 64;
const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";

/// Who may read (fetch and subscribe to) a playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The household's own devices only.
    OwnNetwork,
    /// The household and these friend households (bare JIDs of their networks).
    Friends(Vec<BareJid>),
    /// Anyone (a public channel).
    Open,
}

impl Access {
    fn model(&self) -> &'static str {
        match self {
            Access::OwnNetwork | Access::Friends(_) => "whitelist",
            Access::Open => "open",
        }
    }
}

/// Checks a playlist name: 1–[`MAX_PLAYLIST_NAME_LEN`] characters of `A-Z a-z 0-9 . _ -`.
pub fn check_playlist_name(name: &str) -> Result<(), PlaylistError> {
    if name.is_empty()
        || name.len() > MAX_PLAYLIST_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(PlaylistError::Invalid(format!(
            "playlist name {name:?} must have 1 to {MAX_PLAYLIST_NAME_LEN} characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

/// The node of playlist `name`: `urn:xmpp:tmp:pmn:playlist:0/<name>`.
pub fn playlist_node(name: &str) -> Result<NodeName, PlaylistError> {
    check_playlist_name(name)?;
    Ok(NodeName(format!("{NS_PLAYLIST}/{name}")))
}

/// The playlist name of a node, if it is one of ours (and a valid name).
pub fn playlist_name(node: &str) -> Option<&str> {
    let name = node.strip_prefix(NS_PLAYLIST)?.strip_prefix('/')?;
    check_playlist_name(name).ok().map(|()| name)
}

/// The node configuration for a playlist: the access model, as many items as the server keeps
/// (`max`, which both servers accept in a node configuration; ejabberd refuses it only as a
/// publish-option), retractions notified, and no "last item" pushed on subscribe — a device
/// catches up with a fetch, so the live stream carries only changes.
fn config_form(name: &str, access: &Access) -> DataForm {
    let mut form = DataForm::new(
        DataFormType::Submit,
        NODE_CONFIG,
        vec![
            Field::text_single("pubsub#title", name),
            Field::new("pubsub#access_model", FieldType::ListSingle).with_value(access.model()),
            Field::text_single("pubsub#max_items", "max"),
            Field::new("pubsub#persist_items", FieldType::Boolean).with_value("1"),
            Field::new("pubsub#notify_retract", FieldType::Boolean).with_value("1"),
            Field::new("pubsub#send_last_published_item", FieldType::ListSingle)
                .with_value("never"),
        ],
    );
    form.title = None;
    form
}

/// `<affiliation jid='…' affiliation='…'/>` of the owner namespace (xmpp-parsers' own type has
/// private fields, so it cannot be built outside that crate).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBSUB_OWNER, name = "affiliation")]
struct OwnerAffiliation {
    #[xml(attribute)]
    jid: BareJid,
    #[xml(attribute)]
    affiliation: AffiliationAttribute,
}

/// `<affiliations node='…'>` of the owner namespace.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBSUB_OWNER, name = "affiliations")]
struct OwnerAffiliations {
    #[xml(attribute)]
    node: String,
    #[xml(child(n = ..))]
    affiliations: Vec<OwnerAffiliation>,
}

/// `<subscription jid='…' subscription='…'/>` of the owner namespace. xmpp-parsers' type writes
/// no attribute for the state `none` (its default), which servers then ignore.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBSUB_OWNER, name = "subscription")]
struct OwnerSubscription {
    #[xml(attribute)]
    jid: BareJid,
    #[xml(attribute)]
    subscription: String,
}

/// `<subscriptions node='…'>` of the owner namespace.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PUBSUB_OWNER, name = "subscriptions")]
struct OwnerSubscriptions {
    #[xml(attribute)]
    node: String,
    #[xml(child(n = ..))]
    subscriptions: Vec<OwnerSubscription>,
}

fn owner_iq(set: bool, payload: Element) -> xmpp_parsers::iq::Iq {
    let pubsub = Element::builder("pubsub", NS_PUBSUB_OWNER)
        .append(payload)
        .build();
    iq::iq(set, None, pubsub)
}

/// Creates playlist `name` on our PEP service with `access`, or reconfigures it if it exists,
/// then sets the friends' affiliations. Idempotent: the app calls it to change the access too.
pub async fn ensure_playlist(
    session: &Session,
    name: &str,
    access: &Access,
    timeout: Duration,
) -> Result<(), PlaylistError> {
    let node = playlist_node(name)?;
    if let Access::Friends(friends) = access {
        if friends.len() > MAX_FRIENDS {
            return Err(PlaylistError::Invalid(format!(
                "{} friends (at most {MAX_FRIENDS})",
                friends.len()
            )));
        }
    }
    let create = PubSub::Create {
        create: Create {
            node: Some(node.clone()),
        },
        configure: Some(Configure {
            form: Some(config_form(name, access)),
        }),
    };
    match iq::request(
        session,
        iq::iq(true, None, Element::from(create)),
        timeout,
        "creating the playlist",
    )
    .await
    {
        Ok(_) => tracing::debug!(playlist = name, "playlist node created"),
        // It exists (a conflict) or the server wants it configured apart: configure it.
        Err(PlaylistError::Server(why)) | Err(PlaylistError::Forbidden(why)) => {
            tracing::debug!(playlist = name, %why, "creating refused; configuring instead");
            let configure = Owner {
                payload: OwnerPayload::Configure {
                    node: Some(node.clone()),
                    form: Some(config_form(name, access)),
                },
            };
            iq::request(
                session,
                iq::iq(true, None, Element::from(configure)),
                timeout,
                "configuring the playlist",
            )
            .await?;
        }
        Err(e) => return Err(e),
    }
    set_members(session, &node, access, timeout).await
}

/// Makes the members of `node` exactly the friends of `access` (none for the other models).
async fn set_members(
    session: &Session,
    node: &NodeName,
    access: &Access,
    timeout: Duration,
) -> Result<(), PlaylistError> {
    let wanted: &[BareJid] = match access {
        Access::Friends(friends) => friends,
        _ => &[],
    };
    let mut changes: Vec<OwnerAffiliation> = read_members(session, node, timeout)
        .await?
        .into_iter()
        .filter(|jid| !wanted.contains(jid))
        .map(|jid| OwnerAffiliation {
            jid,
            affiliation: AffiliationAttribute::None,
        })
        .collect();
    let removed: Vec<BareJid> = changes.iter().map(|a| a.jid.clone()).collect();
    if !removed.is_empty() {
        end_subscriptions(session, node, removed, timeout).await?;
    }
    changes.extend(wanted.iter().map(|jid| OwnerAffiliation {
        jid: jid.clone(),
        affiliation: AffiliationAttribute::Member,
    }));
    if changes.is_empty() {
        return Ok(());
    }
    let set = OwnerAffiliations {
        node: node.0.clone(),
        affiliations: changes,
    };
    iq::request(
        session,
        owner_iq(true, Element::from(set)),
        timeout,
        "setting the playlist's members",
    )
    .await
    .map(|_| ())
}

/// The members of our `node` (owner affiliations `member`), our own account left out.
async fn read_members(
    session: &Session,
    node: &NodeName,
    timeout: Duration,
) -> Result<Vec<BareJid>, PlaylistError> {
    let own = session.jid().map(|j| j.to_bare());
    let query = OwnerAffiliations {
        node: node.0.clone(),
        affiliations: vec![],
    };
    let current = iq::request(
        session,
        owner_iq(false, Element::from(query)),
        timeout,
        "reading the playlist's members",
    )
    .await?;
    let mut members = Vec::new();
    let Some(pubsub) = current else {
        return Ok(members);
    };
    for list in pubsub
        .children()
        .filter(|c| c.is("affiliations", NS_PUBSUB_OWNER))
    {
        let Ok(list) = OwnerAffiliations::try_from(list.clone()) else {
            continue;
        };
        for a in list.affiliations {
            if own.as_ref() != Some(&a.jid)
                && a.affiliation == AffiliationAttribute::Member
                && members.len() < MAX_FRIENDS
            {
                members.push(a.jid);
            }
        }
    }
    Ok(members)
}

/// Who may read our playlist `name`, as the server has it configured: its access model and, for
/// a whitelist, its members. A model pmn does not set (`presence`, `roster`, `authorize`) reads as
/// [`Access::OwnNetwork`]: it shares the playlist with nobody pmn could name. At most
/// [`MAX_FRIENDS`] members are read.
pub async fn read_access(
    session: &Session,
    name: &str,
    timeout: Duration,
) -> Result<Access, PlaylistError> {
    let node = playlist_node(name)?;
    let get = Owner {
        payload: OwnerPayload::Configure {
            node: Some(node.clone()),
            form: None,
        },
    };
    let reply = iq::request(
        session,
        iq::iq(false, None, Element::from(get)),
        timeout,
        "reading the playlist's configuration",
    )
    .await?
    .ok_or_else(|| PlaylistError::Server("an empty node configuration".into()))?;
    let model = access_model(&reply).ok_or_else(|| {
        PlaylistError::Server("the node configuration has no access model".into())
    })?;
    match model.as_str() {
        "open" => Ok(Access::Open),
        "whitelist" => {
            let members = read_members(session, &node, timeout).await?;
            Ok(if members.is_empty() {
                Access::OwnNetwork
            } else {
                Access::Friends(members)
            })
        }
        _ => Ok(Access::OwnNetwork),
    }
}

/// The `pubsub#access_model` of a `<pubsub xmlns='…#owner'><configure><x/>` answer.
fn access_model(reply: &Element) -> Option<String> {
    let form = reply
        .get_child("configure", NS_PUBSUB_OWNER)?
        .children()
        .find(|c| c.is("x", "jabber:x:data"))?;
    let form = DataForm::try_from(form.clone()).ok()?;
    form.fields
        .iter()
        .find(|f| f.var.as_deref() == Some("pubsub#access_model"))
        .and_then(|f| f.values.first().cloned())
}

/// Ends the subscriptions of `jids` to `node` (XEP-0060 §8.8.2). Done before their membership
/// is withdrawn: Prosody 0.12 answers `forbidden` to removing the affiliation of a subscribed
/// member (util/pubsub `set_affiliation` re-adds the subscription it should remove), although the
/// affiliation is gone by then.
async fn end_subscriptions(
    session: &Session,
    node: &NodeName,
    jids: Vec<BareJid>,
    timeout: Duration,
) -> Result<(), PlaylistError> {
    let request = OwnerSubscriptions {
        node: node.0.clone(),
        subscriptions: jids
            .into_iter()
            .map(|jid| OwnerSubscription {
                jid,
                subscription: "none".into(),
            })
            .collect(),
    };
    iq::request(
        session,
        owner_iq(true, Element::from(request)),
        timeout,
        "ending the subscriptions of former members",
    )
    .await
    .map(|_| ())
}

/// Removes every entry of playlist `name` (subscribers get a purge notification).
pub async fn purge_playlist(
    session: &Session,
    name: &str,
    timeout: Duration,
) -> Result<(), PlaylistError> {
    let purge = Owner {
        payload: OwnerPayload::Purge {
            node: playlist_node(name)?,
        },
    };
    iq::request(
        session,
        iq::iq(true, None, Element::from(purge)),
        timeout,
        "purging the playlist",
    )
    .await
    .map(|_| ())
}

/// Deletes playlist `name` and its entries (subscribers get a delete notification).
pub async fn delete_playlist(
    session: &Session,
    name: &str,
    timeout: Duration,
) -> Result<(), PlaylistError> {
    let delete = Owner {
        payload: OwnerPayload::Delete {
            node: playlist_node(name)?,
            redirect_uri: None,
        },
    };
    iq::request(
        session,
        iq::iq(true, None, Element::from(delete)),
        timeout,
        "deleting the playlist",
    )
    .await
    .map(|_| ())
}

/// The playlists `publisher` shows this account (disco#items of its PEP service, filtered to
/// our node names); at most `max` are returned. Prosody answers only the account itself and its
/// presence contacts ([`PlaylistError::Unavailable`] for anyone else).
pub async fn list_playlists(
    session: &Session,
    publisher: &BareJid,
    max: usize,
    timeout: Duration,
) -> Result<Vec<String>, PlaylistError> {
    let query = xmpp_parsers::disco::DiscoItemsQuery {
        node: None,
        rsm: None,
    };
    // Our own account is asked without `to`: Prosody answers account disco#items addressed to
    // the account only for its presence contacts, not for the account itself.
    let own = session.jid().map(|j| j.to_bare()).as_ref() == Some(publisher);
    let to = (!own).then(|| Jid::from(publisher.clone()));
    let reply = iq::request(
        session,
        iq::iq(false, to, Element::from(query)),
        timeout,
        "listing playlists",
    )
    .await?;
    let Some(reply) = reply else {
        return Ok(Vec::new());
    };
    let result = xmpp_parsers::disco::DiscoItemsResult::try_from(reply)
        .map_err(|e| PlaylistError::Server(format!("disco#items answer: {e}")))?;
    let mut names: Vec<String> = result
        .items
        .iter()
        .filter_map(|i| i.node.as_deref().and_then(playlist_name))
        .map(str::to_owned)
        .take(max)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_round_trip_and_refuse_what_is_not_ours() {
        let node = playlist_node("jazz.2026").unwrap();
        assert_eq!(node.0, "urn:xmpp:tmp:pmn:playlist:0/jazz.2026");
        assert_eq!(playlist_name(&node.0), Some("jazz.2026"));
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(playlist_node(bad).is_err(), "{bad:?}");
        }
        assert_eq!(playlist_name("urn:xmpp:pubkey:2"), None);
        assert_eq!(playlist_name("urn:xmpp:tmp:pmn:playlist:0"), None);
        assert_eq!(playlist_name("urn:xmpp:tmp:pmn:playlist:0/a/b"), None);
    }

    #[test]
    fn the_access_model_is_read_from_a_configuration_answer() {
        let answer = |model: &str| -> Element {
            format!(
                "<pubsub xmlns='{NS_PUBSUB_OWNER}'><configure node='n'>\
                 <x xmlns='jabber:x:data' type='form'>\
                 <field var='FORM_TYPE' type='hidden'><value>{NODE_CONFIG}</value></field>\
                 <field var='pubsub#access_model' type='list-single'><value>{model}</value></field>\
                 </x></configure></pubsub>"
            )
            .parse()
            .unwrap()
        };
        assert_eq!(access_model(&answer("open")).as_deref(), Some("open"));
        assert_eq!(
            access_model(&answer("whitelist")).as_deref(),
            Some("whitelist")
        );
        let empty: Element = format!("<pubsub xmlns='{NS_PUBSUB_OWNER}'/>")
            .parse()
            .unwrap();
        assert_eq!(access_model(&empty), None);
    }

    #[test]
    fn the_config_form_names_the_access_model() {
        let form = config_form("p", &Access::Open);
        let model = form
            .fields
            .iter()
            .find(|f| f.var.as_deref() == Some("pubsub#access_model"))
            .unwrap();
        assert_eq!(model.values, vec!["open".to_owned()]);
        assert_eq!(Access::Friends(vec![]).model(), "whitelist");
        assert_eq!(Access::OwnNetwork.model(), "whitelist");
    }
}
