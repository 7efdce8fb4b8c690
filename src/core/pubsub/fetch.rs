//! Catching up on a playlist: every entry, page by page, in bounded memory (XEP-0060 §6.5).
//!
//! Prosody 0.12 implements neither RSM on items nor an offset for `max_items` (it returns the
//! newest N), so paging cannot rely on either. Instead the item ids are listed first (disco#items
//! on the node, XEP-0060 §5.5, answered with one `<item name='id'/>` per item), then fetched by
//! id, [`FetchLimits::page_size`] per request. Memory stays bounded: at most
//! [`FetchLimits::max_entries`] ids and entries are kept, each entry at most
//! [`super::MAX_ENTRY_BYTES`]; listed ids beyond the cap are counted, not fetched.
//!
//! Prosody answers that listing only to the account itself and to its presence-subscribed
//! contacts (mod_disco); anyone else gets `service-unavailable`. Then the fetch falls back to one
//! request for the newest [`MAX_PAGE_SIZE`] entries and says so ([`FetchOutcome::complete`] is
//! false): a friend household that shares presence with the publisher, or a server with RSM on
//! items, gets everything. The listing itself is one stanza, so a node with more ids than fit the
//! session's reader bound ([`crate::core::session::MAX_ELEMENT_BYTES`], about 10 000 ids) is
//! refused by the reader and the fetch times out.

use std::time::Duration;

use xmpp_parsers::disco::{DiscoItemsQuery, DiscoItemsResult};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::pubsub::pubsub::{Item, Items, PubSub};
use xmpp_parsers::pubsub::ItemId;

use super::entry::parse_item;
use super::error::{IgnoredReason, PlaylistError};
use super::iq::{self, NS_PUBSUB};
use super::node::playlist_node;
use super::replay::{Arrival, VersionBook};
use super::signature::{verify_entry, VerifiedEntry};
use super::stats::Counters;
use crate::core::access::OwnerKeys;
use crate::core::error::ErrorKind;
use crate::core::session::Session;

/// Most ids one items request asks for: 100 entries at [`super::MAX_ENTRY_BYTES`] stay under the
/// session reader's bound on one stanza.
pub const MAX_PAGE_SIZE: usize = 100;

/// Bounds of one catch-up fetch ([`super::Playlists::fetch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Entries asked for per request (clamped to 1..=[`MAX_PAGE_SIZE`]).
    pub page_size: usize,
    /// Most entries kept; more are counted as [`IgnoredReason::OverCap`].
    pub max_entries: usize,
}

impl Default for FetchLimits {
    /// 100 per page, at most 10 000 entries (about 80 MiB in the worst case, far less in practice:
    /// a typical entry is a few hundred bytes).
    fn default() -> Self {
        FetchLimits {
            page_size: MAX_PAGE_SIZE,
            max_entries: 10_000,
        }
    }
}

/// What a fetch brought back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The verified entries, in playlist order (position, then id).
    pub entries: Vec<VerifiedEntry>,
    /// How many items the node listed.
    pub listed: usize,
    /// Items requests made.
    pub pages: usize,
    /// Items ignored (malformed, oversized, unsigned, badly signed, over the cap); the reasons
    /// are in [`super::Playlists::stats`].
    pub ignored: usize,
    /// False when the server would not list the node's items to us, so only the newest
    /// [`MAX_PAGE_SIZE`] were fetched (see the module notes).
    pub complete: bool,
}

/// Fetches every entry of `publisher`'s playlist `playlist` and keeps those signed by one of
/// `owners` (that household's owner keys). Refusals are typed: [`PlaylistError::Forbidden`] when
/// the access model keeps us out, [`PlaylistError::NotFound`] for no such playlist.
pub(crate) async fn fetch_playlist(
    session: &Session,
    publisher: &BareJid,
    playlist: &str,
    owners: &OwnerKeys,
    limits: FetchLimits,
    (counters, versions): (&Counters, &VersionBook),
    timeout: Duration,
) -> Result<FetchOutcome, PlaylistError> {
    let node = playlist_node(playlist)?;
    // Our own nodes are asked without `to`: Prosody lists a node's items to the account itself
    // only when the request is addressed to no one.
    let own = session.jid().map(|j| j.to_bare()).as_ref() == Some(publisher);
    let to = (!own).then(|| Jid::from(publisher.clone()));
    let listing = iq::request(
        session,
        iq::iq(
            false,
            to.clone(),
            Element::from(DiscoItemsQuery {
                node: Some(node.0.clone()),
                rsm: None,
            }),
        ),
        timeout,
        "listing the playlist",
    )
    .await;
    let listing = match listing {
        Ok(listing) => listing,
        Err(PlaylistError::Unavailable(_)) => {
            tracing::debug!(%publisher, playlist, "the server will not list the playlist; fetching the newest entries");
            return fetch_newest(
                session,
                to,
                publisher,
                playlist,
                owners,
                limits,
                (counters, versions),
                timeout,
            )
            .await;
        }
        Err(e) => return Err(e),
    };
    let mut ids: Vec<String> = match listing {
        None => Vec::new(),
        Some(el) => DiscoItemsResult::try_from(el)
            .map_err(|e| PlaylistError::Server(format!("listing answer: {e}")))?
            .items
            .into_iter()
            .filter_map(|i| i.name)
            .collect(),
    };
    if ids.is_empty() {
        // ejabberd lists a missing node as empty where Prosody says item-not-found: ask for the
        // items themselves, which tells the two apart on both (and costs one request).
        let mut outcome = fetch_newest(
            session,
            to,
            publisher,
            playlist,
            owners,
            limits,
            (counters, versions),
            timeout,
        )
        .await?;
        outcome.complete = outcome.listed == 0;
        return Ok(outcome);
    }
    let mut outcome = FetchOutcome {
        listed: ids.len(),
        complete: true,
        ..FetchOutcome::default()
    };
    let max = limits.max_entries;
    if ids.len() > max {
        let over = ids.len() - max;
        counters.ignore(IgnoredReason::OverCap, over as u64);
        outcome.ignored += over;
        ids.truncate(max);
        tracing::info!(%publisher, playlist, over, "playlist larger than the cap; entries dropped");
    }
    ids.shrink_to_fit();
    let page_size = limits.page_size.clamp(1, MAX_PAGE_SIZE);
    outcome.entries.reserve(ids.len());
    for page in ids.chunks(page_size) {
        outcome.pages += 1;
        let items = match request_items(session, &to, &node.0, page, timeout).await {
            Ok(items) => items,
            // One item too large for the session's reader makes the whole page vanish (the reader
            // drops it): ask for the page's ids one at a time, so only that item is lost.
            Err(PlaylistError::Session(e)) if e.kind() == ErrorKind::Timeout && page.len() > 1 => {
                tracing::info!(%publisher, playlist, "a page timed out; fetching its items one by one");
                let mut items = Vec::new();
                for id in page {
                    outcome.pages += 1;
                    match request_items(session, &to, &node.0, std::slice::from_ref(id), timeout)
                        .await
                    {
                        Ok(mut one) => items.append(&mut one),
                        Err(PlaylistError::Session(e)) if e.kind() == ErrorKind::Timeout => {
                            counters.ignore(IgnoredReason::Oversized, 1);
                            outcome.ignored += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
                items
            }
            Err(e) => return Err(e),
        };
        keep(
            &mut outcome,
            items,
            publisher,
            playlist,
            owners,
            max,
            (counters, versions),
        );
    }
    Ok(in_playlist_order(outcome))
}

/// The entries in playlist order (position, then id: a stable order for equal positions).
fn in_playlist_order(mut outcome: FetchOutcome) -> FetchOutcome {
    outcome
        .entries
        .sort_by(|a, b| (a.entry.position, &a.entry.id).cmp(&(b.entry.position, &b.entry.id)));
    outcome
}

/// Verifies each fetched item and keeps the valid ones, up to `max`; counts the rest.
fn keep(
    outcome: &mut FetchOutcome,
    items: Vec<(Option<String>, Option<Element>)>,
    publisher: &BareJid,
    playlist: &str,
    owners: &OwnerKeys,
    max: usize,
    (counters, versions): (&Counters, &VersionBook),
) {
    for (id, payload) in items {
        let verdict = parse_item(id.as_deref(), payload.as_ref())
            .and_then(|parsed| verify_entry(owners, publisher, playlist, parsed))
            .and_then(|e| {
                versions
                    .accept(
                        publisher,
                        playlist,
                        &e.entry.id,
                        e.updated,
                        Arrival::Fetched,
                        counters,
                    )
                    .map(|()| e)
            });
        match verdict {
            Ok(entry) if outcome.entries.len() < max => outcome.entries.push(entry),
            Ok(_) => {
                counters.ignore(IgnoredReason::OverCap, 1);
                outcome.ignored += 1;
            }
            Err(reason) => {
                tracing::debug!(%publisher, playlist, id = ?id, %reason, "entry ignored");
                counters.ignore(reason, 1);
                outcome.ignored += 1;
            }
        }
    }
}

/// The fallback when the node's items cannot be listed: one request for the newest entries
/// (`max_items`, which every server honours and which bounds the answer).
#[allow(clippy::too_many_arguments)] // the same inputs as fetch_playlist, passed through once
async fn fetch_newest(
    session: &Session,
    to: Option<Jid>,
    publisher: &BareJid,
    playlist: &str,
    owners: &OwnerKeys,
    limits: FetchLimits,
    (counters, versions): (&Counters, &VersionBook),
    timeout: Duration,
) -> Result<FetchOutcome, PlaylistError> {
    let max = limits.max_entries.min(MAX_PAGE_SIZE);
    let request = PubSub::Items(Items {
        max_items: Some(u32::try_from(max).unwrap_or(u32::MAX)),
        node: playlist_node(playlist)?,
        subid: None,
        items: vec![],
    });
    let reply = iq::request(
        session,
        iq::iq(false, to, Element::from(request)),
        timeout,
        "fetching playlist entries",
    )
    .await?;
    let items = reply
        .map(|pubsub| answer_items(&pubsub))
        .unwrap_or_default();
    let mut outcome = FetchOutcome {
        listed: items.len(),
        pages: 1,
        complete: false,
        ..FetchOutcome::default()
    };
    keep(
        &mut outcome,
        items,
        publisher,
        playlist,
        owners,
        max,
        (counters, versions),
    );
    Ok(in_playlist_order(outcome))
}

/// One items request for `ids`; returns (id, payload) of every item in the answer.
async fn request_items(
    session: &Session,
    to: &Option<Jid>,
    node: &str,
    ids: &[String],
    timeout: Duration,
) -> Result<Vec<(Option<String>, Option<Element>)>, PlaylistError> {
    let request = PubSub::Items(Items {
        max_items: None,
        node: xmpp_parsers::pubsub::NodeName(node.to_owned()),
        subid: None,
        items: ids
            .iter()
            .map(|id| Item {
                id: Some(ItemId(id.clone())),
                publisher: None,
                payload: None,
            })
            .collect(),
    });
    let reply = iq::request(
        session,
        iq::iq(false, to.clone(), Element::from(request)),
        timeout,
        "fetching playlist entries",
    )
    .await?;
    Ok(reply
        .map(|pubsub| answer_items(&pubsub))
        .unwrap_or_default())
}

/// The (id, first child) of every `<item>` of a `<pubsub><items>` answer. Read by hand rather
/// than with the derived parser so one odd item costs that item, not the page.
pub(crate) fn answer_items(pubsub: &Element) -> Vec<(Option<String>, Option<Element>)> {
    pubsub
        .children()
        .filter(|c| c.is("items", NS_PUBSUB))
        .flat_map(|items| items.children().filter(|c| c.is("item", NS_PUBSUB)))
        .map(|item| {
            (
                item.attr("id").map(str::to_owned),
                item.children().next().cloned(),
            )
        })
        .collect()
}
