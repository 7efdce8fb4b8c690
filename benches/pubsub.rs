//! Shared playlists and sources, each against its baseline from the same run (issue 15 figures).
//!
//! 1. **Publish → 50 devices.** A friend household publishes a signed entry on its playlist node;
//!    50 devices of the bench household (one subscription per device, all of the household's
//!    bare JID) each receive the notification and verify the owner signature. Timed from the
//!    publish call until the 50th device has the verified entry. **Baseline:** one headline
//!    message of the same size from the same sender to the household's bare JID, which Prosody
//!    delivers to the same 50 sessions. The two alternate sample by sample (which goes first
//!    alternates too), [`SAMPLES`] of each per run, [`RUNS`] runs.
//! 2. **Browse 10 000 entries.** A controller pages through a 10 000-entry podcast feed bridged by
//!    the source provider (served by an HTTP server of the bench's own on loopback), 200 per
//!    `library.browse`, against the same paging of a local library of 10 000 films. Alternating,
//!    [`RUNS`] runs.
//!
//! Run: `cargo xtask bench pubsub` (needs the `sources` feature, which the xtask adds). Compare
//! the ratios only within one run: the machine is shared.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmn::core::access::OwnerKeys;
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::identity::{KeyPolicy, KeyStore};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::pubsub::{
    Access, MediaKind, PlaylistChange, PlaylistEntry, Playlists, PlaylistsConfig,
};
use pmn::core::services::library::{GeneratedLibrary, LibraryService, MAX_PAGE};
use pmn::core::session::{Inbound, Session, SessionConfig};
use pmn::core::sources::{SourceConfig, SourceProvider};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::{Account, TestServer, BENCH, FRIEND};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_xmpp::Stanza;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;

const DEVICES: usize = 50;
const RUNS: usize = 3;
const SAMPLES: usize = 20;
const ENTRIES: u32 = 10_000;
const OWNER: &str = "owner-approval";
const NS_RAW: &str = "urn:pmn:bench:raw";
const WAIT: Duration = Duration::from_secs(60);

fn config(server: &TestServer, account: &Account, device: &str) -> SessionConfig {
    common::session_config(server, account, device)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn spread(ratios: &mut [f64]) -> (f64, f64, f64) {
    ratios.sort_by(|a, b| a.total_cmp(b));
    (
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1],
    )
}

/// Counts arrivals and wakes the waiter at the target.
#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
}

impl Arrivals {
    fn arm(&self, target: usize) {
        self.count.store(0, Ordering::SeqCst);
        self.target.store(target, Ordering::SeqCst);
    }
    fn hit(&self) {
        if self.count.fetch_add(1, Ordering::SeqCst) + 1 == self.target.load(Ordering::SeqCst) {
            self.done.notify_one();
        }
    }
    async fn wait(&self) {
        tokio::time::timeout(WAIT, self.done.notified())
            .await
            .expect("every device received in time");
    }
}

fn entry(n: usize) -> PlaylistEntry {
    PlaylistEntry {
        id: format!("e{n}"),
        title: format!("Bench episode {n}"),
        uri: format!("https://podcasts.example/bench/{n}.mp3"),
        kind: MediaKind::Audio,
        duration_ms: Some(1_800_000),
        artwork: Some(format!("https://podcasts.example/bench/{n}.jpg")),
        position: u32::try_from(n).unwrap_or(u32::MAX),
    }
}

async fn publish_fanout(server: &TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SoftwareKeyStore::open(dir.path()).expect("key store"));
    let spki = store
        .generate(
            OWNER,
            KeyPolicy::OwnerApproval {
                user_presence: false,
            },
        )
        .expect("owner key");
    let publisher_jid = FRIEND.jid.parse().expect("jid");
    let mut owners = OwnerKeys::new(publisher_jid);
    owners.add(&spki).expect("owner key");
    let (pub_session, _pub_inbound) = Session::connect(config(server, &FRIEND, "bench-pub"))
        .await
        .expect("publisher");
    let store: Arc<dyn KeyStore> = store;
    let publisher = Playlists::new(
        pub_session.clone(),
        PlaylistsConfig {
            owner_key: Some((store, OWNER.to_owned())),
            ..PlaylistsConfig::default()
        },
    );
    let playlist = format!("bench-{}", std::process::id());
    publisher
        .create(&playlist, &Access::Open)
        .await
        .expect("create");

    let published = Arc::new(Arrivals::default());
    let raw = Arc::new(Arrivals::default());
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let (session, mut inbound) = Session::connect(config(server, &BENCH, &format!("pl-{i}")))
            .await
            .expect("device");
        let playlists = Playlists::new(session.clone(), PlaylistsConfig::default());
        let mut changes = playlists.changes();
        let handler = playlists.clone();
        let raw = raw.clone();
        tokio::spawn(async move {
            while let Some(item) = inbound.recv().await {
                let Inbound::Stanza(stanza) = item else {
                    continue;
                };
                if handler.handle_stanza(&stanza) {
                    continue;
                }
                if let Stanza::Message(m) = &*stanza {
                    if m.payloads.iter().any(|p| p.is("raw", NS_RAW)) {
                        raw.hit();
                    }
                }
            }
        });
        let published = published.clone();
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                if matches!(change, PlaylistChange::Published { .. }) {
                    published.hit();
                }
            }
        });
        session.send(Presence::available()).expect("presence");
        playlists
            .subscribe(&FRIEND.jid.parse().expect("jid"), &playlist, owners.clone())
            .await
            .expect("subscribe");
        devices.push(playlists);
    }
    let household = Jid::from(
        BENCH
            .jid
            .parse::<xmpp_parsers::jid::BareJid>()
            .expect("jid"),
    );
    // The baseline's payload is as large as a signed entry.
    let filler = "x".repeat(600);
    let raw_message = || {
        let mut m = Message::new_with_type(MessageType::Headline, Some(household.clone()));
        m.payloads.push(
            Element::builder("raw", NS_RAW)
                .append(filler.as_str())
                .build(),
        );
        m
    };
    let one_publish = |n: usize| {
        let (publisher, playlist, published) = (&publisher, &playlist, published.clone());
        async move {
            published.arm(DEVICES);
            let t = Instant::now();
            publisher
                .publish(playlist, &entry(n))
                .await
                .expect("publish");
            published.wait().await;
            t.elapsed()
        }
    };
    let one_raw = || {
        let (pub_session, raw) = (&pub_session, raw.clone());
        let m = raw_message();
        async move {
            raw.arm(DEVICES);
            let t = Instant::now();
            pub_session.send(m).expect("send");
            raw.wait().await;
            t.elapsed()
        }
    };
    // Warm-up: one of each.
    one_publish(usize::MAX / 2).await;
    one_raw().await;

    println!("publish → {DEVICES} subscribed devices (verified entry), vs one headline to the same {DEVICES} (Prosody, same run)");
    let mut ratios = Vec::new();
    let mut n = 0;
    for run in 1..=RUNS {
        let (mut pubs, mut raws) = (Vec::new(), Vec::new());
        for s in 0..SAMPLES {
            n += 1;
            if s % 2 == 0 {
                pubs.push(one_publish(n).await);
                raws.push(one_raw().await);
            } else {
                raws.push(one_raw().await);
                pubs.push(one_publish(n).await);
            }
        }
        let (p, r) = (median(pubs), median(raws));
        let ratio = p.as_secs_f64() / r.as_secs_f64();
        println!(
            "  run {run}: publish median {:7.2} ms, headline median {:7.2} ms, ratio {ratio:5.2}x  ({SAMPLES} samples each)",
            ms(p),
            ms(r)
        );
        ratios.push(ratio);
    }
    let (lo, mid, hi) = spread(&mut ratios);
    println!("  ratio over {RUNS} runs: min {lo:.2}x, median {mid:.2}x, max {hi:.2}x");
    for d in devices {
        d.session().close().await;
    }
    pub_session.close().await;
}

/// An RSS feed of `n` episodes.
fn big_feed(n: u32) -> Vec<u8> {
    let mut xml = String::from(
        r#"<?xml version="1.0"?><rss version="2.0"><channel><title>Bench feed</title>"#,
    );
    for i in 0..n {
        xml.push_str(&format!(
            r#"<item><title>Episode {i}</title><guid>ep{i}</guid><enclosure url="https://cdn.example/ep{i}.mp3" type="audio/mpeg" length="1000"/></item>"#
        ));
    }
    xml.push_str("</channel></rss>");
    xml.into_bytes()
}

/// Serves `body` as RSS on every path, on 127.0.0.1; returns the port.
async fn feed_server(body: Arc<Vec<u8>>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(&body);
                let _ = conn.write_all(&out).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

async fn browse_all(
    controller: &Controller,
    jid: &xmpp_parsers::jid::FullJid,
    container: &str,
) -> (Duration, u32) {
    let library = controller.library(jid.clone());
    let t = Instant::now();
    let (mut offset, mut seen) = (0u32, 0u32);
    loop {
        let page = library
            .browse(container, offset, MAX_PAGE)
            .await
            .expect("browse");
        seen += u32::try_from(page.items.len()).unwrap_or(u32::MAX);
        offset += MAX_PAGE;
        if offset >= page.total {
            break;
        }
    }
    (t.elapsed(), seen)
}

async fn browse_sources(server: &TestServer) {
    let port = feed_server(Arc::new(big_feed(ENTRIES))).await;
    let sources = SourceProvider::start(
        ProviderConfig::plain(config(server, &BENCH, "src"), "Bench sources"),
        SourceConfig {
            refresh: Duration::from_secs(3600),
            ..SourceConfig::feeds(vec![format!("http://127.0.0.1:{port}/feed")])
        },
        vec![],
    )
    .await
    .expect("source provider");
    assert_eq!(
        sources.library().status()[0].items,
        ENTRIES,
        "the feed was read whole"
    );
    let local = Provider::start(
        ProviderConfig::plain(config(server, &BENCH, "nas"), "Bench NAS"),
        vec![Arc::new(LibraryService::new(Arc::new(
            GeneratedLibrary::new(ENTRIES),
        )))],
    )
    .await
    .expect("local library");
    let mut controller_config = ControllerConfig::plain(config(server, &BENCH, "browser"));
    controller_config.rpc_timeout = Duration::from_secs(30);
    let controller = Controller::connect(controller_config)
        .await
        .expect("controller");
    let source_jid = sources.provider().session().jid().expect("online");
    let local_jid = local.session().jid().expect("online");
    for jid in [&source_jid, &local_jid] {
        controller
            .wait_for_provider(|p| &p.jid == jid, WAIT)
            .await
            .expect("discovered");
    }
    // Warm-up: one page each.
    browse_all(&controller, &source_jid, "feed0").await;
    browse_all(&controller, &local_jid, "videos").await;

    println!("browse {ENTRIES} entries, {MAX_PAGE} per page: source provider (RSS feed) vs local library (same run)");
    let mut ratios = Vec::new();
    for run in 1..=RUNS {
        let ((s, s_seen), (l, l_seen)) = if run % 2 == 1 {
            let s = browse_all(&controller, &source_jid, "feed0").await;
            (s, browse_all(&controller, &local_jid, "videos").await)
        } else {
            let l = browse_all(&controller, &local_jid, "videos").await;
            (browse_all(&controller, &source_jid, "feed0").await, l)
        };
        assert_eq!((s_seen, l_seen), (ENTRIES, ENTRIES));
        let ratio = s.as_secs_f64() / l.as_secs_f64();
        println!(
            "  run {run}: source {:8.1} ms, local {:8.1} ms, ratio {ratio:5.2}x",
            ms(s),
            ms(l)
        );
        ratios.push(ratio);
    }
    let (lo, mid, hi) = spread(&mut ratios);
    println!("  ratio over {RUNS} runs: min {lo:.2}x, median {mid:.2}x, max {hi:.2}x");
    controller.close().await;
    sources.stop().await;
    local.stop().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");
    publish_fanout(&server).await;
    browse_sources(&server).await;
}
