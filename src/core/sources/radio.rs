//! Internet radio stations listed on a XEP-0060 node: one item per station, its payload
//! `<station xmlns='urn:xmpp:tmp:pmn:station:0' name='…' uri='…'/>`. The spec's "publicly
//! accessible pubsub servers could provide lists of Internet radio stations" (§3.2): the node may
//! be on the household's own PEP or on any other JID that lets us read it.
//!
//! One items request (`max_items`), bounded: at most [`MAX_STATIONS`] stations, so the answer
//! stays within the session reader's bound on one stanza.

use std::time::Duration;

use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::pubsub::pubsub::{Configure, Create, Items, PubSub};
use xmpp_parsers::pubsub::NodeName;
use xso::exports::rxml::xml_ncname;

use super::feed::{item_id, playable_uri};
use super::{SourceError, SourceLimits};
use crate::core::pubsub::fetch::answer_items;
use crate::core::pubsub::iq;
use crate::core::services::library::{Item, ItemKind};
use crate::core::session::Session;

/// Namespace of a station payload.
pub const NS_STATION: &str = "urn:xmpp:tmp:pmn:station:0";
/// Most stations read from a node: about 300 bytes each, 1 000 keep the answer well under the
/// session reader's 1 MiB per stanza.
pub const MAX_STATIONS: usize = 1000;

/// Where the stations are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationNode {
    /// The pubsub service or PEP account; `None`: our own network's PEP.
    pub jid: Option<BareJid>,
    /// The node name.
    pub node: String,
    /// Bound on the request to the server.
    pub timeout: Duration,
}

impl StationNode {
    /// Node `node` on our own network's PEP, 10 s per request.
    pub fn own(node: impl Into<String>) -> Self {
        StationNode {
            jid: None,
            node: node.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl std::fmt::Display for StationNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.jid {
            Some(jid) => write!(f, "{jid}#{}", self.node),
            None => write!(f, "pep#{}", self.node),
        }
    }
}

/// One radio station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    /// Display name.
    pub name: String,
    /// The stream's URI (`http(s)`).
    pub uri: String,
}

impl Station {
    fn to_element(&self) -> Element {
        Element::builder("station", NS_STATION)
            .attr(xml_ncname!("name").into(), self.name.as_str())
            .attr(xml_ncname!("uri").into(), self.uri.as_str())
            .build()
    }
}

/// What one read of the node brought.
pub(crate) struct StationsRead {
    pub(crate) items: Vec<Item>,
    pub(crate) dropped: u64,
    pub(crate) refused: u64,
}

fn pubsub_error(e: impl std::fmt::Display) -> SourceError {
    SourceError::Pubsub(e.to_string())
}

/// Creates our PEP node `node` for a station list: as many items as the server keeps (a node
/// the server creates on first publish keeps one item on Prosody), readable by our own network
/// only, or by anyone when `open` (a public station list). A node that exists already is kept as
/// it is.
pub async fn create_station_node(
    session: &Session,
    node: &str,
    open: bool,
    timeout: Duration,
) -> Result<(), SourceError> {
    let mut form = DataForm::new(
        DataFormType::Submit,
        "http://jabber.org/protocol/pubsub#node_config",
        vec![
            Field::new("pubsub#access_model", FieldType::ListSingle).with_value(if open {
                "open"
            } else {
                "whitelist"
            }),
            Field::text_single("pubsub#max_items", "max"),
            Field::new("pubsub#persist_items", FieldType::Boolean).with_value("1"),
        ],
    );
    form.title = None;
    let create = PubSub::Create {
        create: Create {
            node: Some(NodeName(node.to_owned())),
        },
        configure: Some(Configure { form: Some(form) }),
    };
    match iq::request(
        session,
        iq::iq(true, None, Element::from(create)),
        timeout,
        "creating the station node",
    )
    .await
    {
        Ok(_) => Ok(()),
        // `conflict`: it exists, which is what we wanted.
        Err(crate::core::pubsub::PlaylistError::Server(why)) if why.ends_with("Conflict") => Ok(()),
        Err(e) => Err(pubsub_error(e)),
    }
}

/// Publishes `station` as item `id` on our own PEP node `node` (created by the server on first
/// publish), replacing an item of the same id.
pub async fn publish_station(
    session: &Session,
    node: &str,
    id: &str,
    station: &Station,
    timeout: Duration,
) -> Result<(), SourceError> {
    let publish = Element::builder("publish", iq::NS_PUBSUB)
        .attr(xml_ncname!("node").into(), node)
        .append(
            Element::builder("item", iq::NS_PUBSUB)
                .attr(xml_ncname!("id").into(), id)
                .append(station.to_element())
                .build(),
        )
        .build();
    iq::request(
        session,
        iq::pubsub_iq(true, None, publish),
        timeout,
        "publishing a station",
    )
    .await
    .map(|_| ())
    .map_err(pubsub_error)
}

/// The stations of `node` as children of `container`.
pub(crate) async fn fetch_stations(
    session: &Session,
    node: &StationNode,
    container: &str,
    limits: &SourceLimits,
) -> Result<StationsRead, SourceError> {
    let max = limits.max_entries.min(MAX_STATIONS);
    let request = PubSub::Items(Items {
        max_items: Some(u32::try_from(max).unwrap_or(u32::MAX)),
        node: NodeName(node.node.clone()),
        subid: None,
        items: vec![],
    });
    let to = node.jid.clone().map(Jid::from);
    let reply = iq::request(
        session,
        iq::iq(false, to, Element::from(request)),
        node.timeout,
        "reading the station list",
    )
    .await
    .map_err(pubsub_error)?;
    let answered = reply.map(|p| answer_items(&p)).unwrap_or_default();
    Ok(map_stations(answered, container, limits))
}

/// Maps the (id, payload) items of the node; a payload that is not a station with a name and an
/// `http(s)` URI is refused and counted, never an error of the whole list.
pub(crate) fn map_stations(
    answered: Vec<(Option<String>, Option<Element>)>,
    container: &str,
    limits: &SourceLimits,
) -> StationsRead {
    let mut out = StationsRead {
        items: Vec::new(),
        dropped: 0,
        refused: 0,
    };
    let mut seen = std::collections::HashSet::new();
    for (id, payload) in answered {
        let station = payload
            .filter(|p| p.is("station", NS_STATION))
            .and_then(|p| {
                let name = p.attr("name")?.trim();
                let uri = playable_uri(p.attr("uri")?, limits.max_uri_bytes)?;
                (!name.is_empty()).then(|| (name.to_owned(), uri))
            });
        let Some((name, uri)) = station else {
            out.refused += 1;
            continue;
        };
        let id = item_id(container, id.as_deref().unwrap_or(&uri));
        if !seen.insert(id.clone()) {
            out.refused += 1;
            continue;
        }
        if out.items.len() >= limits.max_entries {
            out.dropped += 1;
            continue;
        }
        let mut title = name;
        if title.len() > limits.max_title_bytes {
            let mut end = limits.max_title_bytes;
            while !title.is_char_boundary(end) {
                end -= 1;
            }
            title.truncate(end);
        }
        out.items.push(Item {
            id,
            parent: container.to_owned(),
            title,
            kind: ItemKind::Audio,
            uri: Some(uri),
            duration_ms: None, // a live stream has no length
            child_count: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stations_map_to_audio_items_and_bad_ones_are_counted() {
        let good = Station {
            name: "Jazz FM".into(),
            uri: "https://radio.example/jazz".into(),
        };
        let answered = vec![
            (Some("jazz".into()), Some(good.to_element())),
            (
                Some("local".into()),
                Some(
                    Station {
                        name: "Local".into(),
                        uri: "file:///dev/dsp".into(),
                    }
                    .to_element(),
                ),
            ),
            (
                Some("other".into()),
                Some(Element::builder("x", "urn:other").build()),
            ),
            (Some("empty".into()), None),
            (Some("jazz".into()), Some(good.to_element())),
        ];
        let read = map_stations(answered, "radio", &SourceLimits::default());
        assert_eq!(read.items.len(), 1);
        assert_eq!(read.refused, 4);
        let item = &read.items[0];
        assert_eq!(
            (item.title.as_str(), item.kind),
            ("Jazz FM", ItemKind::Audio)
        );
        assert_eq!(item.uri.as_deref(), Some("https://radio.example/jazz"));
        assert_eq!(item.id, item_id("radio", "jazz"));
    }
}
