//! External media sources that look like a local library (spec §3.2, "external media sources can
//! be accessed like local devices"): a **source provider** offers the ordinary media-library
//! service ([`crate::core::services::library`]) over catalogues that live elsewhere.
//!
//! - **Podcast feeds** (RSS or Atom, over HTTP(S)): each feed is a container of the root, each
//!   entry with an `http(s)` enclosure an item (title, enclosure URI, audio/video/image from the
//!   enclosure's media type, duration when the feed gives one). See [`feed`].
//! - **Internet radio stations** listed on a XEP-0060 node, one `<station name='…' uri='…'/>`
//!   per item: the container [`RADIO_CONTAINER`]. See [`radio`].
//!
//! Controllers browse and play them as any library: `library.browse` / `library.item` answer from
//! the last good snapshot, and the TV plays an item by its URI; `library.read` is refused with
//! fault [`FAULT_NO_BYTES`] (the bytes come from the source, not through pmn). The library
//! refreshes every [`SourceConfig::refresh`] and sends `library.changed` for each container whose
//! items appeared, disappeared or were edited (same id, another title, URI, kind or length). Feeds
//! are read with conditional GETs (`If-None-Match` / `If-Modified-Since` from the last good
//! read's `ETag` / `Last-Modified`): an unchanged feed costs a 304 and no parse.
//!
//! Everything from outside is bounded ([`SourceLimits`]); a feed that fails — unreachable, too
//! slow, too large, malformed — is a [`SourceError`] in that source's [`SourceStatus`] (with a
//! counter per kind), and the source keeps its last good items.
//!
//! Built only with the `sources` cargo feature (an HTTP client and a feed parser the phone
//! library does not need).

pub mod feed;
pub mod radio;

use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use std::time::Duration;

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::provider::{Provider, ProviderConfig};
use crate::core::rpc::{Emitter, Service};
use crate::core::services::library::{
    Changed, Chunk, Item, ItemKind, Library, LibraryChange, LibraryService, MediaLibrary, Page,
    FAULT_NOT_FOUND, FAULT_NO_BYTES,
};
use crate::core::session::Session;
use crate::core::sync::Locked;

pub use feed::{parse_feed, ParsedFeed, Validators};
pub use radio::{create_station_node, publish_station, Station, StationNode, NS_STATION};

/// The container of the radio stations.
pub const RADIO_CONTAINER: &str = "radio";
/// Sources read at the same time during a refresh.
pub const MAX_CONCURRENT_READS: usize = 4;
/// Shortest refresh interval: whatever the configuration says, a feed is not asked more often.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Why a source could not be read. The source keeps its last good items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The request failed (DNS, connection, TLS, redirects).
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// The server answered another status than 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body is larger than the bound (bytes).
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    /// The whole fetch took longer than the bound.
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// Not a feed (or a station list) that can be read.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The pubsub node could not be read.
    #[error("pubsub: {0}")]
    Pubsub(String),
    /// The configuration cannot work (a feed URL that is not `http(s)`, no TLS setup).
    #[error("configuration: {0}")]
    Config(String),
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        let kind = match &e {
            SourceError::Timeout(_) => ErrorKind::Timeout,
            SourceError::Config(_) => ErrorKind::Config,
            SourceError::Http(_) => ErrorKind::Unreachable,
            _ => ErrorKind::Protocol,
        };
        Error::new(kind, e.to_string())
    }
}

/// Bounds on everything a source sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceLimits {
    /// Largest feed body read, in bytes.
    pub max_body_bytes: usize,
    /// Most items kept per source; more are counted ([`SourceStatus::dropped`]).
    pub max_entries: usize,
    /// Longest title kept (longer ones are cut on a character boundary).
    pub max_title_bytes: usize,
    /// Longest URI kept (an entry with a longer one is refused).
    pub max_uri_bytes: usize,
    /// Longest time one fetch (request and whole body) may take.
    pub fetch_timeout: Duration,
}

impl Default for SourceLimits {
    /// 4 MiB, 10 000 entries, 512-byte titles, 2 KiB URIs, 20 s.
    fn default() -> Self {
        SourceLimits {
            max_body_bytes: 4 * 1024 * 1024,
            max_entries: 10_000,
            max_title_bytes: 512,
            max_uri_bytes: 2048,
            fetch_timeout: Duration::from_secs(20),
        }
    }
}

/// What a source library bridges.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Podcast feed URLs (`http://` or `https://`), one root container each (`feed0`, `feed1`, …
    /// in this order).
    pub feeds: Vec<String>,
    /// A pubsub node listing radio stations (container [`RADIO_CONTAINER`]).
    pub stations: Option<StationNode>,
    /// How often the sources are read again (at least [`MIN_REFRESH`]).
    pub refresh: Duration,
    /// Bounds on what they send.
    pub limits: SourceLimits,
}

impl SourceConfig {
    /// `feeds`, refreshed every 15 minutes, default bounds, no stations.
    pub fn feeds(feeds: Vec<String>) -> Self {
        SourceConfig {
            feeds,
            stations: None,
            refresh: Duration::from_secs(15 * 60),
            limits: SourceLimits::default(),
        }
    }
}

/// How one source fares: what it holds and what went wrong, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// The container id.
    pub container: String,
    /// The feed URL, or the node as `jid#node`.
    pub source: String,
    /// The title shown for the container.
    pub title: String,
    /// Items held (the last good snapshot).
    pub items: u32,
    /// Successful reads.
    pub refreshed: u64,
    /// Successful reads the feed's server answered "not modified" (HTTP 304 to a conditional
    /// request with the last version's `ETag` / `Last-Modified`): no body was sent.
    pub not_modified: u64,
    /// Failed reads (any kind; the items stayed as they were).
    pub failures: u64,
    /// Failed reads that were malformed.
    pub malformed: u64,
    /// Failed reads whose body was too large.
    pub oversized: u64,
    /// Failed reads that timed out.
    pub timeouts: u64,
    /// Entries beyond [`SourceLimits::max_entries`] at the last read.
    pub dropped: u64,
    /// Entries refused at the last read (no playable URI, too long, repeated).
    pub refused: u64,
    /// The last read's error, `None` once a read succeeds.
    pub last_error: Option<SourceError>,
}

#[derive(Debug, Clone)]
struct Container {
    status: SourceStatus,
    items: Arc<Vec<Item>>,
    /// What the feed's server said about the version `items` came from.
    validators: Validators,
}

impl Container {
    fn new(container: String, source: String) -> Self {
        Container {
            status: SourceStatus {
                title: source.clone(),
                container,
                source,
                ..SourceStatus::default()
            },
            items: Arc::new(Vec::new()),
            validators: Validators::default(),
        }
    }

    fn as_item(&self) -> Item {
        Item {
            id: self.status.container.clone(),
            parent: String::new(),
            title: self.status.title.clone(),
            kind: ItemKind::Container,
            uri: None,
            duration_ms: None,
            child_count: Some(self.status.items),
        }
    }
}

/// What one read of a source brought.
struct Read {
    title: Option<String>,
    items: Vec<Item>,
    dropped: u64,
    refused: u64,
    /// The feed's HTTP validators for the next conditional read (`None` for the station node).
    validators: Option<Validators>,
}

/// A media library over external sources: feeds and a station node, read again periodically,
/// served from the last good snapshot ([`MediaLibrary`]).
pub struct SourceLibrary {
    config: SourceConfig,
    client: reqwest::Client,
    containers: Mutex<Vec<Container>>,
    /// The session that reads the station node (the provider's own, set once it is online).
    session: Mutex<Option<Session>>,
    /// One refresh at a time: the periodic one and an app's [`SourceLibrary::refresh`] would
    /// otherwise fetch twice and report the same change twice.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SourceLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLibrary")
            .field("feeds", &self.config.feeds)
            .field("stations", &self.config.stations)
            .finish_non_exhaustive()
    }
}

impl SourceLibrary {
    /// A library over `config`'s sources, empty until the first [`SourceLibrary::refresh`].
    /// A feed URL that is not `http(s)` is a [`ErrorKind::Config`] error.
    pub fn new(config: SourceConfig) -> Result<Arc<Self>> {
        let mut containers = Vec::new();
        for (i, url) in config.feeds.iter().enumerate() {
            if feed::playable_uri(url, config.limits.max_uri_bytes).is_none() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("feed {url:?} is not an http(s) URL"),
                ));
            }
            containers.push(Container::new(format!("feed{i}"), url.clone()));
        }
        if let Some(node) = &config.stations {
            let mut radio = Container::new(RADIO_CONTAINER.into(), node.to_string());
            radio.status.title = "Radio".into();
            containers.push(radio);
        }
        let client = feed::client(&config.limits)?;
        Ok(Arc::new(SourceLibrary {
            config,
            client,
            containers: Mutex::new(containers),
            session: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }))
    }

    /// Uses `session` to read the station node (the provider's session).
    pub fn set_session(&self, session: Session) {
        *self.session.locked() = Some(session);
    }

    /// How each source fares, in container order.
    pub fn status(&self) -> Vec<SourceStatus> {
        self.containers
            .locked()
            .iter()
            .map(|c| c.status.clone())
            .collect()
    }

    /// Reads source `index`; `Ok(None)` when the feed answered that it did not change since the
    /// version `known` describes (HTTP 304).
    async fn read_source(
        &self,
        index: usize,
        container: &str,
        known: &Validators,
    ) -> std::result::Result<Option<Read>, SourceError> {
        let limits = &self.config.limits;
        if let Some(url) = self.config.feeds.get(index) {
            let (body, validators) = match feed::fetch(&self.client, url, limits, known).await? {
                feed::Fetched::NotModified => return Ok(None),
                feed::Fetched::Body(body, validators) => (body, validators),
            };
            let container = container.to_owned();
            let limits = *limits;
            // Parsing 4 MiB is CPU work: off the runtime's workers.
            let parsed =
                tokio::task::spawn_blocking(move || feed::parse_feed(&body, &container, &limits))
                    .await
                    .map_err(|_| SourceError::Malformed("the feed parser panicked".into()))??;
            return Ok(Some(Read {
                title: parsed.title,
                items: parsed.items,
                dropped: parsed.dropped,
                refused: parsed.refused,
                // Kept only with the items they describe: a body that did not parse leaves the
                // last good version's validators, so the next read asks for a fresh body.
                validators: Some(validators),
            }));
        }
        let node = self
            .config
            .stations
            .as_ref()
            .ok_or_else(|| SourceError::Config("no such source".into()))?;
        let session = self
            .session
            .locked()
            .clone()
            .ok_or_else(|| SourceError::Pubsub("no session to read the station node".into()))?;
        let read = radio::fetch_stations(&session, node, container, limits).await?;
        Ok(Some(Read {
            title: None,
            items: read.items,
            dropped: read.dropped,
            refused: read.refused,
            validators: None,
        }))
    }

    /// Reads every source once and returns what changed, one [`LibraryChange`] per container
    /// whose items changed. A source that fails keeps its items and counts the failure.
    pub async fn refresh(&self) -> Vec<LibraryChange> {
        let _one = self.refreshing.lock().await;
        let ids: Vec<String> = self
            .containers
            .locked()
            .iter()
            .map(|c| c.status.container.clone())
            .collect();
        // A few sources at a time: a slow feed costs the others nothing (up to this many slow
        // ones), and at most this many bodies of `max_body_bytes` are held at once.
        let reads: Vec<(usize, std::result::Result<Option<Read>, SourceError>)> =
            // Owned ids: a stream over borrowed ones makes the future not `Send` for every
            // lifetime (rustc's higher-ranked check), and the refresh loop is spawned.
            futures::stream::iter(ids.clone().into_iter().enumerate())
                .map(|(index, container)| async move {
                    let known = self
                        .containers
                        .locked()
                        .get(index)
                        .map(|c| c.validators.clone())
                        .unwrap_or_default();
                    (index, self.read_source(index, &container, &known).await)
                })
                .buffered(MAX_CONCURRENT_READS)
                .collect()
                .await;
        let mut changes = Vec::new();
        for (index, outcome) in reads {
            let container = &ids[index];
            let mut containers = self.containers.locked();
            let Some(c) = containers.get_mut(index) else {
                continue;
            };
            match outcome {
                Ok(None) => {
                    // 304: the feed is as it was; so are its items.
                    c.status.refreshed += 1;
                    c.status.not_modified += 1;
                    c.status.last_error = None;
                }
                Ok(Some(read)) => {
                    if let Some(validators) = read.validators {
                        c.validators = validators;
                    }
                    if let Some(title) = read.title {
                        c.status.title = title;
                    }
                    c.status.items = u32::try_from(read.items.len()).unwrap_or(u32::MAX);
                    c.status.refreshed += 1;
                    c.status.dropped = read.dropped;
                    c.status.refused = read.refused;
                    c.status.last_error = None;
                    let before = std::mem::replace(&mut c.items, Arc::new(read.items));
                    changes.extend(LibraryChange::between_items(container, &before, &c.items));
                }
                Err(e) => {
                    tracing::info!(source = %c.status.source, error = %e, "source not refreshed; keeping its last items");
                    c.status.failures += 1;
                    match &e {
                        SourceError::Malformed(_) => c.status.malformed += 1,
                        SourceError::TooLarge(_) => c.status.oversized += 1,
                        SourceError::Timeout(_) => c.status.timeouts += 1,
                        _ => {}
                    }
                    c.status.last_error = Some(e);
                }
            }
        }
        changes
    }

    /// The library service over this library: every [`SourceConfig::refresh`], once a provider
    /// offers it, the sources are read again and each change is sent as `library.changed`.
    pub fn service(self: &Arc<Self>) -> LibraryService {
        let weak = Arc::downgrade(self);
        let every = self.config.refresh.max(MIN_REFRESH);
        LibraryService::watched(self.clone(), move |emitter| {
            tokio::spawn(Self::run(weak, emitter, every));
        })
    }

    /// The refresh loop; ends with the library or the provider.
    async fn run(weak: Weak<SourceLibrary>, emitter: Emitter<Library>, every: Duration) {
        // `every` is the app's (`Duration::MAX` to refresh only on demand): tokio caps the period,
        // the first deadline is capped here.
        let start = crate::core::clock::deadline(tokio::time::Instant::now(), every);
        let mut timer = tokio::time::interval_at(start, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let Some(library) = weak.upgrade() else { break };
            if emitter.is_closed() {
                break;
            }
            for change in library.refresh().await {
                emitter.emit::<Changed>(&change);
            }
        }
    }

    fn container_items(&self, id: &str) -> Option<Arc<Vec<Item>>> {
        self.containers
            .locked()
            .iter()
            .find(|c| c.status.container == id)
            .map(|c| c.items.clone())
    }
}

fn page_of(items: impl Iterator<Item = Item>, total: usize, offset: u32, limit: u32) -> Page {
    Page {
        items: items.skip(offset as usize).take(limit as usize).collect(),
        offset,
        total: u32::try_from(total).unwrap_or(u32::MAX),
    }
}

impl MediaLibrary for SourceLibrary {
    fn browse(&self, container: &str, offset: u32, limit: u32) -> Result<Page> {
        if container.is_empty() {
            let roots: Vec<Item> = self
                .containers
                .locked()
                .iter()
                .map(Container::as_item)
                .collect();
            let total = roots.len();
            return Ok(page_of(roots.into_iter(), total, offset, limit));
        }
        let items = self
            .container_items(container)
            .ok_or_else(|| Error::fault(FAULT_NOT_FOUND, format!("no container {container:?}")))?;
        Ok(page_of(items.iter().cloned(), items.len(), offset, limit))
    }

    fn search(&self, query: &str, offset: u32, limit: u32) -> Result<Page> {
        let q = query.to_lowercase();
        let snapshot: Vec<Arc<Vec<Item>>> = self
            .containers
            .locked()
            .iter()
            .map(|c| c.items.clone())
            .collect();
        let mut total = 0u32;
        let mut items = Vec::new();
        for item in snapshot.iter().flat_map(|c| c.iter()) {
            if item.title.to_lowercase().contains(&q) {
                if total >= offset && items.len() < limit as usize {
                    items.push(item.clone());
                }
                total = total.saturating_add(1);
            }
        }
        Ok(Page {
            items,
            offset,
            total,
        })
    }

    fn item(&self, id: &str) -> Result<Item> {
        let missing = || Error::fault(FAULT_NOT_FOUND, format!("no item {id:?}"));
        if let Some(root) = self
            .containers
            .locked()
            .iter()
            .find(|c| c.status.container == id)
        {
            return Ok(root.as_item());
        }
        let (container, _) = id.split_once('/').ok_or_else(missing)?;
        self.container_items(container)
            .and_then(|items| items.iter().find(|i| i.id == id).cloned())
            .ok_or_else(missing)
    }

    fn read(&self, id: &str, _offset: u64, _length: u32) -> Result<Chunk> {
        let item = self.item(id)?;
        Err(Error::fault(
            FAULT_NO_BYTES,
            format!(
                "item {id:?} is remote: play it by its URI ({}); its bytes do not travel through pmn",
                item.uri.as_deref().unwrap_or("none")
            ),
        ))
    }
}

/// A provider offering a [`SourceLibrary`] as its media library.
#[derive(Debug)]
pub struct SourceProvider {
    provider: Provider,
    library: Arc<SourceLibrary>,
}

impl SourceProvider {
    /// Reads the sources once, then starts a provider under `config` offering them as its
    /// library (plus `extra` services) and refreshing them periodically. A source that fails the
    /// first read starts empty and is tried again at the next refresh.
    pub async fn start(
        config: ProviderConfig,
        sources: SourceConfig,
        extra: Vec<Arc<dyn Service>>,
    ) -> Result<SourceProvider> {
        let library = SourceLibrary::new(sources)?;
        let mut services: Vec<Arc<dyn Service>> = vec![Arc::new(library.service())];
        services.extend(extra);
        let provider = Provider::start(config, services).await?;
        library.set_session(provider.session().clone());
        library.refresh().await;
        Ok(SourceProvider { provider, library })
    }

    /// The provider underneath.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The library it offers.
    pub fn library(&self) -> &Arc<SourceLibrary> {
        &self.library
    }

    /// Goes offline (the refresh loop ends with it).
    pub async fn stop(self) {
        self.provider.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library_with(items: Vec<Item>) -> Arc<SourceLibrary> {
        let lib = SourceLibrary::new(SourceConfig::feeds(vec!["http://127.0.0.1:1/f".into()]))
            .expect("library");
        {
            let mut c = lib.containers.locked();
            c[0].status.items = items.len() as u32;
            c[0].items = Arc::new(items);
        }
        lib
    }

    fn item(n: u32) -> Item {
        Item {
            id: format!("feed0/{n}"),
            parent: "feed0".into(),
            title: format!("Episode {n}"),
            kind: ItemKind::Audio,
            uri: Some(format!("https://cdn.example/{n}.mp3")),
            duration_ms: None,
            child_count: None,
        }
    }

    #[test]
    fn the_snapshot_browses_searches_and_refuses_reads() {
        let lib = library_with((0..5).map(item).collect());
        let root = lib.browse("", 0, 10).expect("root");
        assert_eq!(root.total, 1);
        assert_eq!(root.items[0].child_count, Some(5));
        assert_eq!(root.items[0].kind, ItemKind::Container);
        let page = lib.browse("feed0", 3, 10).expect("page");
        assert_eq!((page.items.len(), page.total), (2, 5));
        assert_eq!(lib.search("episode 4", 0, 10).expect("search").total, 1);
        assert_eq!(lib.item("feed0/2").expect("item").title, "Episode 2");
        assert_eq!(lib.item("feed0").expect("container").id, "feed0");
        for missing in ["feed0/9", "feed9/1", "x"] {
            assert_eq!(
                lib.item(missing).expect_err(missing).fault_code(),
                Some(FAULT_NOT_FOUND)
            );
        }
        let e = lib.read("feed0/1", 0, 10).expect_err("remote");
        assert_eq!(e.fault_code(), Some(FAULT_NO_BYTES));
        assert!(e.to_string().contains("https://cdn.example/1.mp3"), "{e}");
    }

    #[tokio::test]
    async fn a_refresh_of_duration_max_waits_instead_of_panicking() {
        let mut config = SourceConfig::feeds(vec!["http://127.0.0.1:1/f".into()]);
        config.refresh = Duration::MAX;
        let lib = SourceLibrary::new(config).expect("library");
        let emitter = crate::core::rpc::TypedService::<Library>::new().emitter();
        let every = lib.config.refresh.max(MIN_REFRESH);
        // `Instant::now() + Duration::MAX` used to panic on the first poll; now the loop waits.
        let run = SourceLibrary::run(Arc::downgrade(&lib), emitter, every);
        assert!(tokio::time::timeout(Duration::from_millis(50), run)
            .await
            .is_err());
    }

    #[test]
    fn feed_urls_must_be_http() {
        let e = SourceLibrary::new(SourceConfig::feeds(vec!["file:///etc/feed.xml".into()]))
            .expect_err("file feed");
        assert_eq!(e.kind(), ErrorKind::Config);
    }
}
