//! The source provider (`pmn::core::sources`, `sources` feature): podcast feeds served by a tiny
//! HTTP server of the test's own on 127.0.0.1 (RSS and Atom), and radio stations from a PEP node
//! on the test Prosody, offered as an ordinary media library. A controller browses it and the TV
//! plays an item by its URI; a feed that changes sends `library.changed`; a malformed, oversized,
//! overlong or slow feed is a typed error in the source's status, counted, with the last good
//! items kept.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pmn::core::provider::ProviderConfig;
use pmn::core::services::library::{self, Changed, ItemKind};
use pmn::core::services::player::PlaybackState;
use pmn::core::sources::{
    create_station_node, publish_station, SourceConfig, SourceError, SourceLibrary, SourceLimits,
    SourceProvider, Station, StationNode, RADIO_CONTAINER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;

/// What the test server answers on a path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body (and its Content-Length).
    Body(&'static str, Vec<u8>),
    /// 200 with this body and no Content-Length: the client learns the size only by reading.
    Unsized(Vec<u8>),
    /// Accepts and never answers.
    Hang,
    /// 200 with this RSS body and these validators (ETag, Last-Modified), or 304 when the
    /// request's `If-None-Match` / `If-Modified-Since` names them.
    Versioned(Option<&'static str>, Option<&'static str>, Vec<u8>),
    /// 304 whatever was asked.
    NotModified,
}

/// An HTTP/1.1 server on 127.0.0.1 serving fixed replies by path; the test changes them.
struct FeedServer {
    port: u16,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    /// How many 304s it sent.
    not_modified: Arc<std::sync::atomic::AtomicU32>,
    accept: tokio::task::JoinHandle<()>,
}

impl FeedServer {
    async fn start() -> FeedServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let replies: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let not_modified: Arc<std::sync::atomic::AtomicU32> = Arc::default();
        let r = replies.clone();
        let counted = not_modified.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let replies = r.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let reply = replies.lock().expect("lock").get(&path).cloned();
                    let header = |name: &str| {
                        text.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_owned())
                        })
                    };
                    let not_modified =
                        b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_vec();
                    let out = match reply {
                        Some(Reply::Versioned(etag, modified, body)) => {
                            let unchanged = match (etag, header("if-none-match")) {
                                (Some(e), Some(asked)) => asked == e,
                                _ => modified.is_some() && header("if-modified-since").as_deref() == modified,
                            };
                            if unchanged {
                                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                not_modified
                            } else {
                                let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n".to_vec();
                                if let Some(e) = etag {
                                    out.extend_from_slice(format!("ETag: {e}\r\n").as_bytes());
                                }
                                if let Some(m) = modified {
                                    out.extend_from_slice(format!("Last-Modified: {m}\r\n").as_bytes());
                                }
                                out.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
                                out.extend_from_slice(&body);
                                out
                            }
                        }
                        Some(Reply::NotModified) => not_modified,
                        Some(Reply::Body(kind, body)) => {
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            out.extend_from_slice(&body);
                            out
                        }
                        Some(Reply::Unsized(body)) => {
                            let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n".to_vec();
                            out.extend_from_slice(&body);
                            out
                        }
                        Some(Reply::Hang) => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = conn.write_all(&out).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        FeedServer {
            port,
            replies,
            not_modified,
            accept,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(&self, path: &str, reply: Reply) {
        self.replies
            .lock()
            .expect("lock")
            .insert(path.to_owned(), reply);
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// An RSS feed with episodes `numbers`.
fn rss(numbers: &[u32]) -> Reply {
    let mut xml = String::from(
        r#"<?xml version="1.0"?><rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"><channel><title>Night Talks</title>"#,
    );
    for n in numbers {
        xml.push_str(&format!(
            r#"<item><title>Episode {n}</title><guid>ep{n}</guid><enclosure url="https://cdn.example/ep{n}.mp3" type="audio/mpeg" length="1000"/><itunes:duration>00:10:0{n}</itunes:duration></item>"#
        ));
    }
    xml.push_str("</channel></rss>");
    Reply::Body("application/rss+xml", xml.into_bytes())
}

fn atom() -> Reply {
    let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom Cast</title><id>urn:cast</id><updated>2026-01-01T00:00:00Z</updated>
<entry><title>Film night</title><id>urn:cast:1</id><updated>2026-01-01T00:00:00Z</updated>
<link rel="enclosure" href="https://cdn.example/film.mp4" type="video/mp4" length="5000"/></entry>
</feed>"#;
    Reply::Body("application/atom+xml", xml.as_bytes().to_vec())
}

fn fast_config(feeds: Vec<String>) -> SourceConfig {
    SourceConfig {
        refresh: Duration::from_secs(1),
        limits: SourceLimits {
            fetch_timeout: Duration::from_millis(800),
            ..SourceLimits::default()
        },
        ..SourceConfig::feeds(feeds)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_are_browsed_played_on_the_tv_and_their_changes_are_events() {
    let http = FeedServer::start().await;
    http.serve("/rss", rss(&[1, 2]));
    http.serve("/atom", atom());
    let controller = start_controller().await;
    let tv = start_player("TV").await;
    let sources = SourceProvider::start(
        ProviderConfig::plain(session_config(&HOME, "sources"), "Podcasts"),
        fast_config(vec![http.url("/rss"), http.url("/atom")]),
        vec![],
    )
    .await
    .expect("source provider starts");
    let found = discover(&controller, sources.provider()).await;
    assert!(found.services.iter().any(|s| s == library::FEATURE));
    let tv = discover(&controller, &tv).await;

    let lib = controller.library(found.jid.clone());
    let root = lib.browse("", 0, 10).await.expect("root");
    let titles: Vec<(&str, Option<u32>)> = root
        .items
        .iter()
        .map(|i| (i.title.as_str(), i.child_count))
        .collect();
    assert_eq!(
        titles,
        vec![("Night Talks", Some(2)), ("Atom Cast", Some(1))]
    );
    let episodes = lib.browse("feed0", 0, 10).await.expect("feed0");
    assert_eq!(episodes.total, 2);
    let first = &episodes.items[0];
    assert_eq!(
        (first.title.as_str(), first.kind, first.duration_ms),
        ("Episode 1", ItemKind::Audio, Some(601_000))
    );
    assert_eq!(first.uri.as_deref(), Some("https://cdn.example/ep1.mp3"));
    assert_eq!(lib.item(&first.id).await.expect("item"), *first);
    let film = lib.browse("feed1", 0, 10).await.expect("feed1");
    assert_eq!(film.items[0].kind, ItemKind::Video);
    assert_eq!(
        lib.search("film", 0, 10).await.expect("search").items,
        film.items
    );
    // A remote item's bytes do not travel through pmn.
    let e = lib.read(&first.id, 0, 1024).await.expect_err("remote");
    assert_eq!(e.fault_code(), Some(library::FAULT_NO_BYTES), "{e}");

    // The TV plays it by its URI.
    let uri = first.uri.clone().expect("uri");
    let status = controller
        .player(tv.jid.clone())
        .play(&uri)
        .await
        .expect("play");
    assert_eq!(status.state, PlaybackState::Playing);
    assert_eq!(status.uri.as_deref(), Some(uri.as_str()));

    // The feed changes: episode 1 goes, 3 comes; subscribers hear it at the next refresh.
    let mut events = controller.events();
    let _sub = controller
        .subscribe(&found.jid, library::SERVICE)
        .await
        .expect("subscribe to the library");
    http.serve("/rss", rss(&[2, 3]));
    let change = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.expect("events");
            if let Some(change) = event.decode::<Changed>() {
                assert_eq!(event.provider, found.jid);
                return change.expect("typed change");
            }
        }
    })
    .await
    .expect("a library.changed event");
    assert_eq!(change.container, "feed0");
    assert_eq!(
        (change.added_count, change.removed_count, change.total),
        (1, 1, 2)
    );
    assert_eq!(change.removed, vec![first.id.clone()]);
    let now = lib.browse("feed0", 0, 10).await.expect("feed0 again");
    assert_eq!(now.items[1].title, "Episode 3");
    assert_eq!(now.items[1].id, change.added[0]);
    assert_eq!(
        lib.item(&first.id).await.expect_err("gone").fault_code(),
        Some(library::FAULT_NOT_FOUND)
    );
    sources.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feeds_are_typed_errors_counted_and_the_last_good_items_stay() {
    let http = FeedServer::start().await;
    http.serve("/turns-bad", rss(&[1, 2, 3]));
    let big = vec![b' '; 5 * 1024 * 1024];
    http.serve("/big", Reply::Body("application/rss+xml", big.clone()));
    http.serve("/big-unsized", Reply::Unsized(big));
    let many: Vec<u32> = (0..50).collect();
    http.serve("/many", rss(&many));
    http.serve("/slow", Reply::Hang);
    let mut config = fast_config(
        [
            "/turns-bad",
            "/big",
            "/big-unsized",
            "/many",
            "/slow",
            "/missing",
        ]
        .iter()
        .map(|p| http.url(p))
        .collect(),
    );
    config.limits.max_entries = 10;
    let library = SourceLibrary::new(config).expect("library");
    let started = std::time::Instant::now();
    let changes = library.refresh().await;
    // Read four at a time: the slow feed costs its own timeout (0.8 s), not the others'.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the slow feed held the refresh for {:?}",
        started.elapsed()
    );
    let containers: Vec<&str> = changes.iter().map(|c| c.container.as_str()).collect();
    assert_eq!(containers, vec!["feed0", "feed3"]);

    http.serve(
        "/turns-bad",
        Reply::Body("application/rss+xml", b"<rss><channel><item>".to_vec()),
    );
    assert!(
        library.refresh().await.is_empty(),
        "a failed read changes nothing"
    );
    let status = library.status();
    // The feed read once, then malformed: one failure counted, its three items kept.
    assert_eq!(
        (status[0].items, status[0].refreshed, status[0].malformed),
        (3, 1, 1)
    );
    assert!(
        matches!(status[0].last_error, Some(SourceError::Malformed(_))),
        "{:?}",
        status[0]
    );
    for big in &status[1..3] {
        assert_eq!(big.items, 0);
        assert_eq!(big.oversized, 2, "{big:?}");
        assert_eq!(big.last_error, Some(SourceError::TooLarge(4 * 1024 * 1024)));
    }
    assert_eq!(
        (status[3].items, status[3].dropped),
        (10, 40),
        "{:?}",
        status[3]
    );
    assert_eq!(status[3].last_error, None);
    assert_eq!(status[4].timeouts, 2, "{:?}", status[4]);
    assert!(matches!(
        status[4].last_error,
        Some(SourceError::Timeout(_))
    ));
    assert_eq!(status[5].last_error, Some(SourceError::Status(404)));
    assert_eq!(status[5].failures, 2);
    // The library still answers from the last good snapshot.
    use pmn::core::services::library::MediaLibrary;
    assert_eq!(library.browse("feed0", 0, 10).expect("kept").total, 3);
    assert_eq!(library.browse("feed3", 0, 200).expect("capped").total, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radio_stations_from_a_pubsub_node_are_a_container() {
    let controller = start_controller().await;
    let node = unique("urn:xmpp:tmp:pmn:stations");
    let sources = SourceProvider::start(
        ProviderConfig::plain(session_config(&HOME, "radio"), "Radio"),
        SourceConfig {
            stations: Some(StationNode::own(node.clone())),
            ..fast_config(vec![])
        },
        vec![],
    )
    .await
    .expect("source provider starts");
    let session = sources.provider().session().clone();
    create_station_node(&session, &node, false, Duration::from_secs(10))
        .await
        .expect("create the station node");
    for (id, name) in [("jazz", "Jazz FM"), ("news", "News 24")] {
        let station = Station {
            name: name.into(),
            uri: format!("https://radio.example/{id}"),
        };
        publish_station(&session, &node, id, &station, Duration::from_secs(10))
            .await
            .expect("publish a station");
    }
    let found = discover(&controller, sources.provider()).await;
    let mut events = controller.events();
    let _sub = controller
        .subscribe(&found.jid, library::SERVICE)
        .await
        .expect("subscribe");
    // The periodic refresh picks the stations up and says so (in one change, or two when a
    // refresh fell between the two publishes).
    let change = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.expect("events");
            if let Some(change) = event.decode::<Changed>() {
                let change = change.expect("typed");
                if change.total == 2 {
                    return change;
                }
            }
        }
    })
    .await
    .expect("a library.changed event for the radio");
    assert_eq!(
        (change.container.as_str(), change.total),
        (RADIO_CONTAINER, 2)
    );
    let lib = controller.library(found.jid.clone());
    let stations = lib.browse(RADIO_CONTAINER, 0, 10).await.expect("radio");
    let mut names: Vec<(&str, Option<&str>)> = stations
        .items
        .iter()
        .map(|i| (i.title.as_str(), i.uri.as_deref()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("Jazz FM", Some("https://radio.example/jazz")),
            ("News 24", Some("https://radio.example/news"))
        ]
    );
    assert!(sources.library().status()[0].last_error.is_none());
    sources.stop().await;
    controller.close().await;
}

/// `pmn source` as a user runs it: a feed on the command line, browsed by a controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_source_command_serves_a_feed() {
    let http = FeedServer::start().await;
    http.serve("/rss", rss(&[1, 2, 3]));
    let controller = start_controller().await;
    let server = server();
    let name = unique("CLI podcasts");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pmn"))
        .args(["source", "--server", &server.addr(), "--ca"])
        .arg(server.ca_path())
        .args(["--network", HOME.jid, "--password", HOME.password])
        .args([
            "--device",
            &unique("cli-sources"),
            "--name",
            &name,
            "--plain",
        ])
        .args(["--feed", &http.url("/rss"), "--refresh", "60"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run pmn source");
    let found = controller
        .wait_for_provider(|p| p.name == name, Duration::from_secs(20))
        .await
        .expect("the CLI's source provider is discovered");
    let lib = controller.library(found.jid.clone());
    // The first read happens right after login: wait for it rather than race it.
    let page = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let page = lib.browse("feed0", 0, 10).await.expect("browse");
            if page.total == 3 {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("three episodes");
    assert_eq!(
        page.items[2].uri.as_deref(),
        Some("https://cdn.example/ep3.mp3")
    );
    child.kill().await.expect("stop pmn source");
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out).await;
    }
    assert!(out.contains("feed0: \"Night Talks\", 3 items"), "{out}");
    controller.close().await;
}

/// The exported (UniFFI) way to start one: `start_source_provider(config, name, feeds)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_api_starts_a_source_provider() {
    let http = FeedServer::start().await;
    http.serve("/atom", atom());
    let name = unique("FFI podcasts");
    assert!(matches!(
        pmn::start_source_provider(
            ffi_config("ffi-src"),
            name.clone(),
            vec!["file:///x".into()]
        )
        .await,
        Err(pmn::PmnError::Config { .. })
    ));
    let provider =
        pmn::start_source_provider(ffi_config("ffi-src"), name.clone(), vec![http.url("/atom")])
            .await
            .expect("source provider");
    let controller = start_controller().await;
    let found = controller
        .wait_for_provider(|p| p.name == name, Duration::from_secs(10))
        .await
        .expect("discovered");
    let page = controller
        .library(found.jid.clone())
        .browse("feed0", 0, 10)
        .await
        .expect("browse");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].title, "Film night");
    provider.stop().await;
    controller.close().await;
}

/// RSS with episodes `(number, title)`.
fn rss_titled(episodes: &[(u32, &str)]) -> Vec<u8> {
    let mut xml = String::from(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Night Talks</title>"#,
    );
    for (n, title) in episodes {
        xml.push_str(&format!(
            r#"<item><title>{title}</title><guid>ep{n}</guid><enclosure url="https://cdn.example/ep{n}.mp3" type="audio/mpeg" length="1000"/></item>"#
        ));
    }
    xml.push_str("</channel></rss>");
    xml.into_bytes()
}

/// An entry edited in place (same guid, new title) is a change of its own; a feed read again
/// with its ETag or Last-Modified costs a 304 and keeps its items; a 304 nobody asked for is a
/// typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_entry_is_a_change_and_an_unchanged_feed_costs_a_304() {
    use pmn::core::services::library::MediaLibrary;
    let http = FeedServer::start().await;
    let lm = "Tue, 01 Dec 2026 10:00:00 GMT";
    http.serve(
        "/etag",
        Reply::Versioned(
            Some("\"v1\""),
            Some(lm),
            rss_titled(&[(1, "One"), (2, "Two")]),
        ),
    );
    http.serve(
        "/dated",
        Reply::Versioned(None, Some(lm), rss_titled(&[(3, "Three")])),
    );
    let library = SourceLibrary::new(fast_config(vec![http.url("/etag"), http.url("/dated")]))
        .expect("library");
    let first = library.refresh().await;
    assert_eq!(first.iter().map(|c| c.added_count).sum::<u32>(), 3);

    // Unchanged: both feeds answer 304 (one by ETag, one by date); nothing changes.
    assert!(library.refresh().await.is_empty());
    assert_eq!(
        http.not_modified.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let status = library.status();
    assert_eq!(
        status
            .iter()
            .map(|s| (s.not_modified, s.items))
            .collect::<Vec<_>>(),
        [(1, 2), (1, 1)]
    );
    assert_eq!(
        library.browse("feed0", 0, 10).expect("browse").items.len(),
        2
    );

    // Episode 1 edited (same guid, new title), a new version: one change listing it as changed.
    http.serve(
        "/etag",
        Reply::Versioned(
            Some("\"v2\""),
            Some(lm),
            rss_titled(&[(1, "One (fixed)"), (2, "Two")]),
        ),
    );
    let edited = library.refresh().await;
    assert_eq!(edited.len(), 1, "{edited:?}");
    let change = &edited[0];
    assert_eq!(change.container, "feed0");
    assert_eq!(
        (
            change.added_count,
            change.removed_count,
            change.changed_count
        ),
        (0, 0, 1)
    );
    let item = library.item(&change.changed[0]).expect("the edited item");
    assert_eq!(item.title, "One (fixed)");

    // A 304 to a request that asked nothing: a typed error, the last good items kept.
    http.serve("/etag", Reply::NotModified);
    let fresh = SourceLibrary::new(fast_config(vec![http.url("/etag")])).expect("library");
    assert!(fresh.refresh().await.is_empty());
    assert_eq!(fresh.status()[0].last_error, Some(SourceError::Status(304)));
    // To the library that asked with v2's ETag, the same 304 means unchanged.
    assert!(library.refresh().await.is_empty());
    assert_eq!(library.status()[0].items, 2);
}
