//! The media library service (`urn:xmpp:tmp:pmn:media-library:0`).
//!
//! Methods: `library.browse(container, offset, limit)` and `library.search(query, offset, limit)`
//! answer a [`Page`]; `library.item(id)` answers one [`Item`]; `library.read(id, offset, length)`
//! answers a [`Chunk`] of the item's bytes, so a file can travel inside the end-to-end tunnel (the
//! way a guest's library hands the host's TV the one film it shares, under a `library-item`
//! grant). A page holds at most [`MAX_PAGE`]
//! items, so neither side ever holds a whole large library: the provider's [`MediaLibrary`] produces
//! one page at a time, and [`LibraryClient::browse_all`] is a stream that fetches the next page only
//! when the previous one has been consumed. The root container is `""`.
//!
//! A library whose content changes by itself (a source provider refreshing a podcast feed, see
//! `crate::core::sources`) sends [`EVENT_CHANGED`] ([`Changed`]) to the controllers subscribed to
//! `library`: which items of which container appeared, disappeared or were edited.

use std::sync::Arc;

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc::xmlrpc::Bytes;
use crate::core::rpc::{event, method, Emitter, Remote, ServiceSpec, TypedService};

/// The disco#info feature of the media library.
pub const FEATURE: &str = "urn:xmpp:tmp:pmn:media-library:0";
/// The method prefix.
pub const SERVICE: &str = "library";
/// Most items in one page.
pub const MAX_PAGE: u32 = 200;
/// Longest search query or id.
pub const MAX_QUERY_BYTES: usize = 1024;
/// Fault code: no such container or item.
pub const FAULT_NOT_FOUND: i32 = 404;
/// Fault code: this library serves metadata only, no bytes.
pub const FAULT_NO_BYTES: i32 = 501;
/// Event: the items of a container changed ([`LibraryChange`]).
pub const EVENT_CHANGED: &str = "changed";
/// Most item ids a [`LibraryChange`] lists in `added` and in `removed`: a feed replaced whole
/// (10 000 entries) would not fit one stanza; past this the counts say how many, and a controller
/// browses the container again.
pub const MAX_CHANGE_IDS: usize = 100;
/// Most bytes in one [`Chunk`]: 48 KiB, about 64 KiB once base64-encoded, well under a server's
/// stanza limit (Prosody's default is 256 KiB) and a dozen 4 KiB IBB blocks.
pub const MAX_CHUNK: u32 = 48 * 1024;

/// The media library service definition.
#[derive(Debug, Clone, Copy)]
pub struct Library;

impl ServiceSpec for Library {
    const NAME: &'static str = SERVICE;
    const FEATURE: &'static str = FEATURE;
    const EVENTS: &'static [&'static str] = &[EVENT_CHANGED];
}

event!(
    /// `library.changed`: items appeared in, disappeared from or changed in a container.
    Changed, Library, EVENT_CHANGED, LibraryChange);

/// What changed in one container of a library (the payload of [`Changed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryChange {
    /// The container whose children changed.
    pub container: String,
    /// Ids of items that appeared, at most [`MAX_CHANGE_IDS`].
    pub added: Vec<String>,
    /// Ids of items that disappeared, at most [`MAX_CHANGE_IDS`].
    pub removed: Vec<String>,
    /// How many items appeared (may exceed `added.len()`).
    pub added_count: u32,
    /// How many items disappeared (may exceed `removed.len()`).
    pub removed_count: u32,
    /// Ids of items still there whose title, URI, kind or length changed (an edited feed entry),
    /// at most [`MAX_CHANGE_IDS`]. Absent on the wire from older providers: none.
    #[serde(default)]
    pub changed: Vec<String>,
    /// How many items changed (may exceed `changed.len()`).
    #[serde(default)]
    pub changed_count: u32,
    /// The container's number of children now.
    pub total: u32,
}

impl LibraryChange {
    /// The change from `before` to `after` (the ids of `container`'s children), `None` when the
    /// two hold the same ids. Ids keep the order of the listing they come from.
    pub fn between(container: &str, before: &[String], after: &[String]) -> Option<Self> {
        Self::diff(container, before, after, Vec::new())
    }

    /// The change from `before` to `after` (`container`'s children): ids that appeared or
    /// disappeared, and items kept under the same id whose content differs. `None` when nothing
    /// changed.
    pub fn between_items(container: &str, before: &[Item], after: &[Item]) -> Option<Self> {
        let old: std::collections::HashMap<&str, &Item> =
            before.iter().map(|i| (i.id.as_str(), i)).collect();
        let changed: Vec<&String> = after
            .iter()
            .filter(|i| old.get(i.id.as_str()).is_some_and(|was| **was != **i))
            .map(|i| &i.id)
            .collect();
        let ids = |items: &[Item]| items.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        Self::diff(container, &ids(before), &ids(after), changed)
    }

    fn diff(
        container: &str,
        before: &[String],
        after: &[String],
        changed: Vec<&String>,
    ) -> Option<Self> {
        let old: std::collections::HashSet<&str> = before.iter().map(String::as_str).collect();
        let new: std::collections::HashSet<&str> = after.iter().map(String::as_str).collect();
        let added: Vec<&String> = after
            .iter()
            .filter(|id| !old.contains(id.as_str()))
            .collect();
        let removed: Vec<&String> = before
            .iter()
            .filter(|id| !new.contains(id.as_str()))
            .collect();
        if added.is_empty() && removed.is_empty() && changed.is_empty() {
            return None;
        }
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some(LibraryChange {
            container: container.to_owned(),
            added_count: count(added.len()),
            removed_count: count(removed.len()),
            changed_count: count(changed.len()),
            changed: changed.into_iter().take(MAX_CHANGE_IDS).cloned().collect(),
            added: added.into_iter().take(MAX_CHANGE_IDS).cloned().collect(),
            removed: removed.into_iter().take(MAX_CHANGE_IDS).cloned().collect(),
            total: count(after.len()),
        })
    }
}

// A `library-item` grant opens the two read methods that take an item id (the ACL also requires
// the id to be the grant's item); browse and search stay closed: they would reveal the rest of
// the library.
method!(
    /// `library.browse(container, offset, limit)`.
    Browse, Library, "browse", (String, u32, u32) => Page);
method!(
    /// `library.search(query, offset, limit)`.
    Search, Library, "search", (String, u32, u32) => Page);
method!(
    /// `library.item(id)`.
    GetItem, Library, "item", (String,) => Item, scope = LibraryItem);
method!(
    /// `library.read(id, offset, length)`: at most `length` (≤ [`MAX_CHUNK`]) bytes of the item.
    Read, Library, "read", (String, u64, u32) => Chunk, scope = LibraryItem);

/// Some bytes of an item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The bytes, starting at `offset`; empty at or past the end.
    pub data: Bytes,
    /// Where they start.
    pub offset: u64,
    /// The item's whole size in bytes.
    pub size: u64,
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    /// Holds other items.
    Container,
    /// A video.
    Video,
    /// Audio.
    Audio,
    /// A picture.
    Image,
}

/// One entry of the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Stable identifier.
    pub id: String,
    /// The container holding it (`""` for the root's children).
    pub parent: String,
    /// Display title.
    pub title: String,
    /// What it is.
    pub kind: ItemKind,
    /// Where to play it from (not for containers).
    #[serde(default)]
    pub uri: Option<String>,
    /// Length in milliseconds, when known.
    #[serde(default, rename = "duration")]
    pub duration_ms: Option<u64>,
    /// Number of children, for containers.
    #[serde(default)]
    pub child_count: Option<u32>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The items, at most the `limit` asked for.
    pub items: Vec<Item>,
    /// Offset of the first item.
    pub offset: u32,
    /// Total number of items of the listing.
    pub total: u32,
}

/// What a provider's library does; it returns one page at a time and never needs to hold the whole
/// library in memory. `limit` is already checked (1..=[`MAX_PAGE`]).
pub trait MediaLibrary: Send + Sync + 'static {
    /// The children of `container`, `offset..offset+limit`. Unknown container: fault
    /// [`FAULT_NOT_FOUND`].
    fn browse(&self, container: &str, offset: u32, limit: u32) -> Result<Page>;
    /// Items whose title contains `query` (case-insensitive).
    fn search(&self, query: &str, offset: u32, limit: u32) -> Result<Page>;
    /// One item.
    fn item(&self, id: &str) -> Result<Item>;
    /// At most `length` (already checked: 1..=[`MAX_CHUNK`]) bytes of item `id` from `offset`.
    /// The default serves none (fault [`FAULT_NO_BYTES`]): a library that only indexes files
    /// played from elsewhere.
    fn read(&self, id: &str, offset: u64, length: u32) -> Result<Chunk> {
        let _ = (offset, length);
        Err(Error::fault(
            FAULT_NO_BYTES,
            format!("this library serves no bytes (item {id:?})"),
        ))
    }
}

/// The generated content of `videos/<i>` and `music/<i>`: `size` bytes of a pattern that depends
/// on the index, so a reader can check what it got.
pub fn generated_bytes(index: u32, offset: u64, length: u64) -> Vec<u8> {
    (offset..offset + length)
        .map(|p| ((p + u64::from(index) * 31) % 251) as u8)
        .collect()
}

fn not_found(what: &str) -> Error {
    Error::fault(FAULT_NOT_FOUND, format!("no {what}"))
}

/// The size of every generated item's content ([`generated_bytes`]).
pub const GENERATED_ITEM_BYTES: u64 = 100_000;

/// A library whose items are computed from their index, not stored: `music` with 100 tracks and
/// `videos` with any number of films (tests use ≥ 10 000).
#[derive(Debug, Clone)]
pub struct GeneratedLibrary {
    videos: u32,
    tracks: u32,
}

impl GeneratedLibrary {
    /// `videos` films and 100 tracks.
    pub fn new(videos: u32) -> Self {
        Self {
            videos,
            tracks: 100,
        }
    }

    fn container(&self, id: &str) -> Option<(u32, ItemKind, &'static str)> {
        match id {
            "music" => Some((self.tracks, ItemKind::Audio, "Track")),
            "videos" => Some((self.videos, ItemKind::Video, "Film")),
            _ => None,
        }
    }

    fn child(&self, container: &str, i: u32) -> Option<Item> {
        let (count, kind, word) = self.container(container)?;
        (i < count).then(|| Item {
            id: format!("{container}/{i}"),
            parent: container.to_owned(),
            title: format!("{word} {i}"),
            kind,
            uri: Some(format!("file:///media/{container}/{i}")),
            duration_ms: Some(60_000 + u64::from(i) * 1000),
            child_count: None,
        })
    }

    fn root(&self) -> Vec<Item> {
        ["music", "videos"]
            .iter()
            .filter_map(|id| {
                let (count, _, _) = self.container(id)?;
                Some(Item {
                    id: (*id).to_owned(),
                    parent: String::new(),
                    title: (*id).to_owned(),
                    kind: ItemKind::Container,
                    uri: None,
                    duration_ms: None,
                    child_count: Some(count),
                })
            })
            .collect()
    }

    fn all(&self) -> impl Iterator<Item = Item> + '_ {
        self.root()
            .into_iter()
            .chain(["music", "videos"].into_iter().flat_map(move |c| {
                let n = self.container(c).map(|(n, _, _)| n).unwrap_or(0);
                (0..n).filter_map(move |i| self.child(c, i))
            }))
    }
}

impl MediaLibrary for GeneratedLibrary {
    fn browse(&self, container: &str, offset: u32, limit: u32) -> Result<Page> {
        if container.is_empty() {
            let root = self.root();
            let total = root.len() as u32;
            let items = root
                .into_iter()
                .skip(offset as usize)
                .take(limit as usize)
                .collect();
            return Ok(Page {
                items,
                offset,
                total,
            });
        }
        let (total, _, _) = self
            .container(container)
            .ok_or_else(|| not_found(&format!("container {container:?}")))?;
        let end = offset.saturating_add(limit).min(total);
        let items = (offset..end)
            .filter_map(|i| self.child(container, i))
            .collect();
        Ok(Page {
            items,
            offset,
            total,
        })
    }

    fn search(&self, query: &str, offset: u32, limit: u32) -> Result<Page> {
        let q = query.to_lowercase();
        let mut total = 0u32;
        let mut items = Vec::new();
        // One pass, keeping only the page: memory stays at one page whatever the library's size.
        for item in self.all().filter(|i| i.title.to_lowercase().contains(&q)) {
            if total >= offset && items.len() < limit as usize {
                items.push(item);
            }
            total = total.saturating_add(1);
        }
        Ok(Page {
            items,
            offset,
            total,
        })
    }

    fn read(&self, id: &str, offset: u64, length: u32) -> Result<Chunk> {
        let item = self.item(id)?;
        if item.kind == ItemKind::Container {
            return Err(not_found(&format!("bytes of container {id:?}")));
        }
        let index = id
            .rsplit_once('/')
            .and_then(|(_, i)| i.parse::<u32>().ok())
            .ok_or_else(|| not_found(&format!("item {id:?}")))?;
        let size = GENERATED_ITEM_BYTES;
        let start = offset.min(size);
        let end = offset.saturating_add(u64::from(length)).min(size);
        Ok(Chunk {
            data: Bytes(generated_bytes(index, start, end - start)),
            offset: start,
            size,
        })
    }

    fn item(&self, id: &str) -> Result<Item> {
        if let Some(root) = self.root().into_iter().find(|i| i.id == id) {
            return Ok(root);
        }
        let (container, index) = id
            .split_once('/')
            .ok_or_else(|| not_found(&format!("item {id:?}")))?;
        index
            .parse::<u32>()
            .ok()
            .and_then(|i| self.child(container, i))
            .ok_or_else(|| not_found(&format!("item {id:?}")))
    }
}

/// The library service over any [`MediaLibrary`].
pub struct LibraryService {
    typed: TypedService<Library>,
}

impl std::fmt::Debug for LibraryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibraryService").finish_non_exhaustive()
    }
}

fn check(method: &str, text: &str, limit: Option<u32>) -> Result<()> {
    let bad = |why: String| Error::new(ErrorKind::BadParams, format!("{method}: {why}"));
    if text.len() > MAX_QUERY_BYTES {
        return Err(bad(format!("longer than {MAX_QUERY_BYTES} bytes")));
    }
    match limit {
        Some(l) if l == 0 || l > MAX_PAGE => Err(bad(format!("limit must be 1..={MAX_PAGE}"))),
        _ => Ok(()),
    }
}

impl LibraryService {
    /// Offers `library`.
    pub fn new(library: Arc<dyn MediaLibrary>) -> Self {
        Self {
            typed: Self::routes(library),
        }
    }

    /// Offers `library`, whose content changes by itself: `start` runs once when a provider starts
    /// offering the service (inside its runtime) and gets the [`Emitter`] that sends
    /// [`Changed`] events to the subscribed controllers — the place to spawn a refresh loop.
    pub fn watched(
        library: Arc<dyn MediaLibrary>,
        start: impl FnOnce(Emitter<Library>) + Send + 'static,
    ) -> Self {
        let typed = Self::routes(library);
        let emitter = typed.emitter();
        Self {
            typed: typed.on_bind(move || start(emitter)),
        }
    }

    fn routes(library: Arc<dyn MediaLibrary>) -> TypedService<Library> {
        let l = library.clone();
        let typed = TypedService::<Library>::new().handle::<Browse, _, _>(
            move |(container, offset, limit), _| {
                let out = check("library.browse", &container, Some(limit))
                    .and_then(|()| l.browse(&container, offset, limit));
                async move { out }
            },
        );
        let l = library.clone();
        let typed = typed.handle::<Search, _, _>(move |(query, offset, limit), _| {
            let out = check("library.search", &query, Some(limit))
                .and_then(|()| l.search(&query, offset, limit));
            async move { out }
        });
        let l = library.clone();
        let typed = typed.handle::<GetItem, _, _>(move |(id,), _| {
            let out = check("library.item", &id, None).and_then(|()| l.item(&id));
            async move { out }
        });
        let typed = typed.handle::<Read, _, _>(move |(id, offset, length), _| {
            let out = check("library.read", &id, None)
                .and_then(|()| {
                    if length == 0 || length > MAX_CHUNK {
                        return Err(Error::new(
                            ErrorKind::BadParams,
                            format!("library.read: length must be 1..={MAX_CHUNK}"),
                        ));
                    }
                    Ok(())
                })
                .and_then(|()| library.read(&id, offset, length));
            async move { out }
        });
        typed
    }
}

crate::core::rpc::service_via_typed!(LibraryService);

/// Typed calls to a media library provider.
pub type LibraryClient = Remote<Library>;

impl Remote<Library> {
    /// One page of `container`'s children.
    pub async fn browse(&self, container: &str, offset: u32, limit: u32) -> Result<Page> {
        self.call::<Browse>(&(container.to_owned(), offset, limit))
            .await
    }

    /// One page of search results.
    pub async fn search(&self, query: &str, offset: u32, limit: u32) -> Result<Page> {
        self.call::<Search>(&(query.to_owned(), offset, limit))
            .await
    }

    /// One item's metadata.
    pub async fn item(&self, id: &str) -> Result<Item> {
        self.call::<GetItem>(&(id.to_owned(),)).await
    }

    /// At most `length` (≤ [`MAX_CHUNK`]) bytes of item `id` from `offset`.
    pub async fn read(&self, id: &str, offset: u64, length: u32) -> Result<Chunk> {
        self.call::<Read>(&(id.to_owned(), offset, length)).await
    }

    /// The whole content of item `id`, chunk by chunk; refuses items larger than `max_bytes` (the
    /// caller's memory is the bound) with `BadParams` before reading them. A provider that sends
    /// more bytes than the size it announced is refused (`Protocol`) before they are kept, so
    /// the result never holds more than `max_bytes`, whatever the provider answers.
    pub async fn read_all(&self, id: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let mut chunk = self.read(id, 0, MAX_CHUNK).await?;
        let size = chunk.size;
        if size > max_bytes {
            return Err(Error::new(
                ErrorKind::BadParams,
                format!("item {id:?} has {size} bytes, more than {max_bytes}"),
            ));
        }
        // Not reserved up front: the size is the provider's word, the bytes are what it sends.
        let mut data = Vec::new();
        loop {
            let got = data.len() as u64;
            if chunk.offset != got {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("item {id:?}: the library answered a chunk out of order"),
                ));
            }
            // Checked before the bytes are kept: size ≤ max_bytes bounds the result.
            if chunk.data.0.len() as u64 > size - got {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!(
                        "item {id:?}: the library sent more than the {size} bytes it announced"
                    ),
                ));
            }
            data.extend_from_slice(&chunk.data.0);
            if data.len() as u64 >= size {
                return Ok(data);
            }
            chunk = self.read(id, data.len() as u64, MAX_CHUNK).await?;
            if chunk.data.0.is_empty() {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("item {id:?}: the library answered a chunk out of order"),
                ));
            }
        }
    }

    /// Every child of `container`, fetched `page_size` at a time as the stream is consumed (at most
    /// one page is held). Ends after the last item or the first error.
    pub fn browse_all(
        &self,
        container: &str,
        page_size: u32,
    ) -> impl Stream<Item = Result<Item>> + Send + 'static {
        let client = self.clone();
        let container = container.to_owned();
        let page_size = page_size.clamp(1, MAX_PAGE);
        struct Cursor {
            buffered: std::vec::IntoIter<Item>,
            next_offset: u32,
            done: bool,
        }
        let start = Cursor {
            buffered: Vec::new().into_iter(),
            next_offset: 0,
            done: false,
        };
        futures::stream::unfold(start, move |mut cur| {
            let client = client.clone();
            let container = container.clone();
            async move {
                loop {
                    if let Some(item) = cur.buffered.next() {
                        return Some((Ok(item), cur));
                    }
                    if cur.done {
                        return None;
                    }
                    match client.browse(&container, cur.next_offset, page_size).await {
                        Ok(page) => {
                            let got = page.items.len() as u32;
                            cur.next_offset = cur.next_offset.saturating_add(got);
                            cur.done = got == 0 || cur.next_offset >= page.total;
                            cur.buffered = page.items.into_iter();
                        }
                        Err(e) => {
                            cur.done = true;
                            return Some((Err(e), cur));
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rpc::xmlrpc::Value;
    use crate::core::rpc::{CallContext, Service};

    #[test]
    fn generated_library_pages_and_searches_without_storing() {
        let lib = GeneratedLibrary::new(10_000);
        let root = lib.browse("", 0, 10).expect("root");
        assert_eq!(root.total, 2);
        assert_eq!(root.items[1].child_count, Some(10_000));
        let page = lib.browse("videos", 9_990, 50).expect("last page");
        assert_eq!((page.items.len(), page.total), (10, 10_000));
        assert_eq!(page.items[0].id, "videos/9990");
        assert!(lib
            .browse("videos", 20_000, 50)
            .expect("past the end")
            .items
            .is_empty());
        let hits = lib.search("film 999", 0, 100).expect("search");
        assert_eq!(hits.total, 11); // 999 and 9990..=9999
        assert_eq!(lib.item("videos/42").expect("item").title, "Film 42");
        for missing in ["videos/10000", "videos/x", "nothing", "x/1"] {
            let e = lib.item(missing).expect_err("missing");
            assert_eq!(e.fault_code(), Some(FAULT_NOT_FOUND), "{missing}");
        }
        assert_eq!(
            lib.browse("photos", 0, 1)
                .expect_err("container")
                .fault_code(),
            Some(FAULT_NOT_FOUND)
        );
    }

    #[test]
    fn a_change_lists_bounded_ids_and_counts_all() {
        let ids = |r: std::ops::Range<u32>| r.map(|i| format!("f/{i}")).collect::<Vec<_>>();
        assert_eq!(LibraryChange::between("f", &ids(0..3), &ids(0..3)), None);
        let c = LibraryChange::between("f", &ids(0..3), &ids(1..4)).expect("changed");
        assert_eq!(
            (c.added, c.removed),
            (vec!["f/3".to_owned()], vec!["f/0".to_owned()])
        );
        assert_eq!((c.added_count, c.removed_count, c.total), (1, 1, 3));
        let c = LibraryChange::between("f", &ids(0..500), &ids(500..1500)).expect("replaced");
        assert_eq!(
            (c.added.len(), c.removed.len()),
            (MAX_CHANGE_IDS, MAX_CHANGE_IDS)
        );
        assert_eq!((c.added_count, c.removed_count, c.total), (1000, 500, 1000));
    }

    #[test]
    fn an_edited_item_is_a_change_of_its_own() {
        let item = |id: &str, title: &str| Item {
            id: id.into(),
            parent: "f".into(),
            title: title.into(),
            kind: ItemKind::Audio,
            uri: Some(format!("https://cdn.example/{id}.mp3")),
            duration_ms: Some(1000),
            child_count: None,
        };
        let before = [item("a", "A"), item("b", "B")];
        assert_eq!(LibraryChange::between_items("f", &before, &before), None);
        let after = [item("a", "A (fixed)"), item("b", "B"), item("c", "C")];
        let c = LibraryChange::between_items("f", &before, &after).expect("changed");
        assert_eq!(c.changed, vec!["a".to_owned()]);
        assert_eq!(c.added, vec!["c".to_owned()]);
        assert_eq!((c.changed_count, c.added_count, c.removed_count), (1, 1, 0));
        // An older provider's payload (no `changed`) still reads.
        let mut old = crate::core::rpc::xmlrpc::to_value(&c).expect("value");
        if let Value::Struct(fields) = &mut old {
            fields.retain(|(k, _)| k != "changed" && k != "changed_count");
        }
        let read: LibraryChange = crate::core::rpc::xmlrpc::from_value(old).expect("reads");
        assert!(read.changed.is_empty());
    }

    #[tokio::test]
    async fn page_limits_are_bad_params() {
        let s = LibraryService::new(Arc::new(GeneratedLibrary::new(10)));
        let ctx = CallContext {
            caller: "home@home.test/phone".parse().expect("jid"),
            tunnel: false,
        };
        for params in [
            vec![Value::String("videos".into()), Value::Int(0), Value::Int(0)],
            vec![
                Value::String("videos".into()),
                Value::Int(0),
                Value::Int(201),
            ],
            vec![
                Value::String("videos".into()),
                Value::Int(-1),
                Value::Int(10),
            ],
            vec![Value::String("videos".into()), Value::Int(0)],
            vec![
                Value::String("x".repeat(MAX_QUERY_BYTES + 1)),
                Value::Int(0),
                Value::Int(1),
            ],
        ] {
            let e = s.call("browse", params, &ctx).await.expect_err("bad");
            assert_eq!(e.kind(), ErrorKind::BadParams, "{e}");
        }
    }

    /// A library of one item, `f`, that announces `size` bytes and answers every read with
    /// `per_read` bytes, whatever was asked: a hostile provider.
    struct Oversending {
        size: u64,
        per_read: usize,
    }

    impl MediaLibrary for Oversending {
        fn browse(&self, _: &str, _: u32, _: u32) -> Result<Page> {
            Err(not_found("containers"))
        }
        fn search(&self, _: &str, _: u32, _: u32) -> Result<Page> {
            Err(not_found("search"))
        }
        fn item(&self, id: &str) -> Result<Item> {
            Err(not_found(id))
        }
        fn read(&self, _: &str, offset: u64, _: u32) -> Result<Chunk> {
            Ok(Chunk {
                data: Bytes(vec![7; self.per_read]),
                offset,
                size: self.size,
            })
        }
    }

    /// Calls a library service in the same process, as a provider would answer them.
    struct Local(LibraryService);

    impl crate::core::rpc::Caller for Local {
        fn call_method<'a>(
            &'a self,
            _provider: &'a xmpp_parsers::jid::FullJid,
            method: String,
            params: Vec<Value>,
        ) -> futures::future::BoxFuture<'a, Result<Value>> {
            Box::pin(async move {
                let verb = method
                    .strip_prefix("library.")
                    .ok_or_else(|| Error::new(ErrorKind::UnknownMethod, method.clone()))?;
                let ctx = CallContext {
                    caller: "home@home.test/phone".parse().expect("jid"),
                    tunnel: false,
                };
                self.0.call(verb, params, &ctx).await
            })
        }
    }

    fn client(library: impl MediaLibrary) -> LibraryClient {
        let local = Local(LibraryService::new(Arc::new(library)));
        LibraryClient::new(Arc::new(local), "home@home.test/nas".parse().expect("jid"))
    }

    #[tokio::test]
    async fn read_all_reads_a_whole_item_and_refuses_one_over_the_bound() {
        let c = client(GeneratedLibrary::new(10));
        let bytes = c
            .read_all("videos/3", GENERATED_ITEM_BYTES)
            .await
            .expect("exactly at the bound");
        assert_eq!(bytes, generated_bytes(3, 0, GENERATED_ITEM_BYTES));
        let e = c
            .read_all("videos/3", GENERATED_ITEM_BYTES - 1)
            .await
            .expect_err("one byte too big");
        assert_eq!(e.kind(), ErrorKind::BadParams, "{e}");
    }

    #[tokio::test]
    async fn read_all_never_keeps_more_than_the_announced_size() {
        let max = 100_000;
        // Full chunks for an item whose size is not a multiple of them: the third would end
        // 47 456 bytes past the announced size (and past max_bytes); the old loop kept it.
        let c = client(Oversending {
            size: max,
            per_read: MAX_CHUNK as usize,
        });
        let e = c.read_all("f", max).await.expect_err("oversent");
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        // A first chunk bigger than the whole announced item.
        let c = client(Oversending {
            size: 10,
            per_read: 1000,
        });
        let e = c.read_all("f", max).await.expect_err("oversent first");
        assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        // The same provider, honest about the size, is read whole.
        let c = client(Oversending {
            size: 3 * u64::from(MAX_CHUNK),
            per_read: MAX_CHUNK as usize,
        });
        let bytes = c
            .read_all("f", 3 * u64::from(MAX_CHUNK))
            .await
            .expect("honest");
        assert_eq!(bytes.len(), 3 * MAX_CHUNK as usize);
    }
}
