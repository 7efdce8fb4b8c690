//! Shared playlists over XEP-0060 on the real Prosody (PEP of the network's bare JID): live
//! changes to a subscribed friend household, catch-up of a device that was offline, access
//! models, every kind of bad item counted and never delivered, and a large playlist fetched page
//! by page in bounded memory.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use pmn::core::access::OwnerKeys;
use pmn::core::identity::{KeyPolicy, KeyStore};
use pmn::core::pubsub::publish::publish_element;
use pmn::core::pubsub::{
    Access, FetchLimits, IgnoredReason, MediaKind, PlaylistChange, PlaylistEntry, PlaylistError,
    Playlists, PlaylistsConfig, NS_PLAYLIST,
};
use pmn::core::session::{Inbound, Session};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::Account;
use tokio::sync::broadcast;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;

const OWNER_ALIAS: &str = "owner-approval";
const WAIT: Duration = Duration::from_secs(10);

/// A fresh account on `host`, so that no test meets another's nodes or subscriptions.
fn account(prefix: &str, host: &str) -> Account {
    let user = unique(prefix).replace('-', "_");
    let password = "pubsub-secret";
    server()
        .register(&user, host, password)
        .expect("register account");
    Account {
        jid: Box::leak(format!("{user}@{host}").into_boxed_str()),
        password,
    }
}

/// A household: its account, its owner-approval key, and the owner keys others verify with.
struct Household {
    account: Account,
    store: Arc<SoftwareKeyStore>,
    owners: OwnerKeys,
    _dir: tempfile::TempDir,
}

impl Household {
    fn new(prefix: &str, host: &str) -> Self {
        let account = account(prefix, host);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SoftwareKeyStore::open(dir.path()).expect("key store"));
        let spki = store
            .generate(
                OWNER_ALIAS,
                KeyPolicy::OwnerApproval {
                    user_presence: false,
                },
            )
            .expect("owner key");
        let mut owners = OwnerKeys::new(account.jid.parse().expect("jid"));
        owners.add(&spki).expect("owner key");
        Household {
            account,
            store,
            owners,
            _dir: dir,
        }
    }

    fn jid(&self) -> BareJid {
        self.account.jid.parse().expect("jid")
    }

    /// A device of this household, online with presence, its stanzas offered to the playlists.
    async fn device(&self, name: &str) -> Device {
        let store: Arc<dyn KeyStore> = self.store.clone();
        Device::connect(
            &self.account,
            name,
            PlaylistsConfig {
                owner_key: Some((store, OWNER_ALIAS.to_owned())),
                ..PlaylistsConfig::default()
            },
        )
        .await
    }
}

struct Device {
    playlists: Playlists,
    changes: broadcast::Receiver<PlaylistChange>,
    _pump: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn connect(account: &Account, name: &str, config: PlaylistsConfig) -> Device {
        let (session, mut inbound) = Session::connect(session_config(account, name))
            .await
            .expect("login");
        let playlists = Playlists::new(session.clone(), config);
        let changes = playlists.changes();
        let handler = playlists.clone();
        let pump = tokio::spawn(async move {
            while let Some(item) = inbound.recv().await {
                if let Inbound::Stanza(stanza) = item {
                    handler.handle_stanza(&stanza);
                }
            }
        });
        // Notifications to the bare JID reach only available resources.
        session.send(Presence::available()).expect("send presence");
        Device {
            playlists,
            changes,
            _pump: pump,
        }
    }

    async fn next_change(&mut self) -> PlaylistChange {
        tokio::time::timeout(WAIT, self.changes.recv())
            .await
            .expect("a change within the wait")
            .expect("change stream open")
    }

    /// Asserts that no change arrives for a short while.
    async fn no_change(&mut self) {
        if let Ok(change) =
            tokio::time::timeout(Duration::from_millis(500), self.changes.recv()).await
        {
            panic!("unexpected change {change:?}");
        }
    }

    async fn close(self) {
        self.playlists.session().close().await;
    }
}

fn entry(id: &str, position: u32) -> PlaylistEntry {
    PlaylistEntry {
        id: id.to_owned(),
        title: format!("Episode {id}"),
        uri: format!("https://podcasts.example/{id}.mp3"),
        kind: MediaKind::Audio,
        duration_ms: Some(1_800_000),
        artwork: Some(format!("https://podcasts.example/{id}.jpg")),
        position,
    }
}

/// Waits (bounded) until `stats` of `device` satisfy `ok`.
async fn wait_stats(device: &Device, ok: impl Fn(&pmn::core::pubsub::PubsubStats) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok(&device.playlists.stats()) {
        assert!(
            Instant::now() < deadline,
            "stats never matched: {:?}",
            device.playlists.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_follows_publish_retract_and_purge_live_and_an_offline_device_catches_up() {
    let home = Household::new("plhome", "home.test");
    let friend = Household::new("plfriend", "friend.test");
    let phone = home.device("phone").await;
    phone
        .playlists
        .create("podcasts", &Access::Friends(vec![friend.jid()]))
        .await
        .expect("create playlist");
    let mut tv = friend.device("tv").await;
    tv.playlists
        .subscribe(&home.jid(), "podcasts", home.owners.clone())
        .await
        .expect("subscribe");

    let published = phone
        .playlists
        .publish("podcasts", &entry("e1", 1))
        .await
        .expect("publish");
    match tv.next_change().await {
        PlaylistChange::Published {
            publisher,
            playlist,
            entry: got,
        } => {
            assert_eq!(publisher, home.jid());
            assert_eq!(playlist, "podcasts");
            assert_eq!(got, published, "the entry as signed");
        }
        other => panic!("expected a publish, got {other:?}"),
    }
    phone
        .playlists
        .publish("podcasts", &entry("e2", 2))
        .await
        .expect("publish");
    assert!(
        matches!(tv.next_change().await, PlaylistChange::Published { entry, .. } if entry.entry.id == "e2")
    );

    phone
        .playlists
        .retract("podcasts", "e1")
        .await
        .expect("retract");
    assert_eq!(
        tv.next_change().await,
        PlaylistChange::Retracted {
            publisher: home.jid(),
            playlist: "podcasts".into(),
            id: "e1".into()
        }
    );

    // A device of the friend's household that was offline all along catches up.
    let laptop = friend.device("laptop").await;
    let caught = laptop
        .playlists
        .fetch(&home.jid(), "podcasts", &home.owners)
        .await
        .expect("fetch");
    let ids: Vec<_> = caught.entries.iter().map(|e| e.entry.id.as_str()).collect();
    assert_eq!(ids, ["e2"]);
    assert_eq!(caught.entries[0].entry, entry("e2", 2));
    assert_eq!(caught.ignored, 0);
    assert_eq!(
        phone.playlists.list(&home.jid()).await.expect("list"),
        ["podcasts"]
    );

    phone.playlists.purge("podcasts").await.expect("purge");
    assert_eq!(
        tv.next_change().await,
        PlaylistChange::Purged {
            publisher: home.jid(),
            playlist: "podcasts".into()
        }
    );
    let after = laptop
        .playlists
        .fetch(&home.jid(), "podcasts", &home.owners)
        .await
        .expect("fetch");
    assert!(after.entries.is_empty(), "{after:?}");
    assert_eq!(
        tv.playlists.stats().ignored(IgnoredReason::NotSubscribed),
        0
    );
    for d in [phone, tv, laptop] {
        d.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_models_let_in_exactly_whom_the_owner_named() {
    let home = Household::new("placc", "home.test");
    let friend = Household::new("placcf", "friend.test");
    let stranger = Household::new("placcs", "friend.test");
    let phone = home.device("phone").await;
    let mut friend_tv = friend.device("tv").await;
    let stranger_tv = stranger.device("tv").await;
    let own_tv = home.device("tv").await;
    for (name, access) in [
        ("mine", Access::OwnNetwork),
        ("friends", Access::Friends(vec![friend.jid()])),
        ("public", Access::Open),
    ] {
        phone.playlists.create(name, &access).await.expect("create");
        phone
            .playlists
            .publish(name, &entry("e1", 0))
            .await
            .expect("publish");
    }
    let fetch = |d: &Device, name: &'static str| {
        let playlists = d.playlists.clone();
        let (jid, owners) = (home.jid(), home.owners.clone());
        async move { playlists.fetch(&jid, name, &owners).await }
    };
    // Own network: every device of the household, nobody else.
    assert_eq!(fetch(&own_tv, "mine").await.expect("own").entries.len(), 1);
    for outsider in [&friend_tv, &stranger_tv] {
        let err = fetch(outsider, "mine").await.expect_err("refused");
        assert!(matches!(err, PlaylistError::Forbidden(_)), "{err:?}");
    }
    // Friends: the named household, not a stranger, whether fetching or subscribing.
    assert_eq!(
        fetch(&friend_tv, "friends")
            .await
            .expect("friend")
            .entries
            .len(),
        1
    );
    let err = fetch(&stranger_tv, "friends").await.expect_err("refused");
    assert!(matches!(err, PlaylistError::Forbidden(_)), "{err:?}");
    assert_eq!(
        pmn::core::error::Error::from(err).kind(),
        pmn::core::error::ErrorKind::Forbidden
    );
    let err = stranger_tv
        .playlists
        .subscribe(&home.jid(), "friends", home.owners.clone())
        .await
        .expect_err("refused");
    assert!(matches!(err, PlaylistError::Forbidden(_)), "{err:?}");
    assert!(stranger_tv.playlists.subscriptions().is_empty());
    // Open: anyone.
    assert_eq!(
        fetch(&stranger_tv, "public")
            .await
            .expect("open")
            .entries
            .len(),
        1
    );
    // No such playlist is its own error (to the household; to others Prosody answers
    // `forbidden`, so as not to tell which playlists exist).
    let err = fetch(&own_tv, "nothing-here").await.expect_err("missing");
    assert!(matches!(err, PlaylistError::NotFound(_)), "{err:?}");

    // Taking the friend off the list shuts them out at once (and ends their subscription).
    friend_tv
        .playlists
        .subscribe(&home.jid(), "friends", home.owners.clone())
        .await
        .expect("subscribe");
    phone
        .playlists
        .create("friends", &Access::Friends(vec![]))
        .await
        .expect("reconfigure");
    let err = fetch(&friend_tv, "friends").await.expect_err("refused now");
    assert!(matches!(err, PlaylistError::Forbidden(_)), "{err:?}");
    phone
        .playlists
        .publish("friends", &entry("e2", 1))
        .await
        .expect("publish");
    friend_tv.no_change().await;
    for d in [phone, friend_tv, stranger_tv, own_tv] {
        d.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_items_are_counted_by_reason_and_never_delivered() {
    let home = Household::new("plbad", "home.test");
    let thief = Household::new("plthief", "home.test");
    let friend = Household::new("plbadf", "friend.test");
    let phone = home.device("phone").await;
    phone
        .playlists
        .create("radio", &Access::Open)
        .await
        .expect("create");
    let mut tv = friend.device("tv").await;
    tv.playlists
        .subscribe(&home.jid(), "radio", home.owners.clone())
        .await
        .expect("subscribe");
    let session = phone.playlists.session().clone();
    let net = home.jid();
    let t = Duration::from_secs(10);
    let signed = |e: &PlaylistEntry, store: &SoftwareKeyStore, net: &BareJid| {
        let sig = pmn::core::pubsub::signature::sign_entry(net, "radio", e, 7, store, OWNER_ALIAS)
            .expect("sign");
        (e.id.clone(), pmn_entry_element(e, 7, Some(sig)))
    };

    // Malformed: an unknown media kind.
    let malformed: Element = format!(
        "<entry xmlns='{NS_PLAYLIST}' kind='tape' updated='1'><title>t</title><uri>a:b</uri></entry>"
    )
    .parse()
    .expect("xml");
    publish_element(&session, "radio", "m1", malformed, t)
        .await
        .expect("publish malformed");
    // Oversized: a 20 kB title, signed and all.
    let huge = PlaylistEntry {
        title: "t".repeat(20_000),
        ..entry("big", 0)
    };
    let huge_el = pmn_entry_element(&huge, 7, None);
    publish_element(&session, "radio", "big", huge_el, t)
        .await
        .expect("publish oversized");
    // Unsigned.
    publish_element(
        &session,
        "radio",
        "u1",
        pmn_entry_element(&entry("u1", 0), 7, None),
        t,
    )
    .await
    .expect("publish unsigned");
    // Wrongly signed: a valid signature by a key that is not this household's owner key, and
    // the owner's signature on an entry that was altered afterwards.
    let (id, el) = signed(&entry("x1", 0), &thief.store, &net);
    publish_element(&session, "radio", &id, el, t)
        .await
        .expect("publish foreign-signed");
    let sig = pmn::core::pubsub::signature::sign_entry(
        &net,
        "radio",
        &entry("x2", 0),
        7,
        home.store.as_ref(),
        OWNER_ALIAS,
    )
    .expect("sign");
    let altered = PlaylistEntry {
        uri: "https://evil.example/".into(),
        ..entry("x2", 0)
    };
    publish_element(
        &session,
        "radio",
        "x2",
        pmn_entry_element(&altered, 7, Some(sig)),
        t,
    )
    .await
    .expect("publish altered");
    // And one good entry: the only change the friend sees.
    phone
        .playlists
        .publish("radio", &entry("ok", 0))
        .await
        .expect("publish");
    assert!(
        matches!(tv.next_change().await, PlaylistChange::Published { entry, .. } if entry.entry.id == "ok")
    );
    let stats = tv.playlists.stats();
    assert_eq!(stats.malformed, 1, "{stats:?}");
    assert_eq!(stats.oversized, 1, "{stats:?}");
    assert_eq!(stats.unsigned, 1, "{stats:?}");
    assert_eq!(stats.unknown_signer, 1, "{stats:?}");
    assert_eq!(stats.bad_signature, 1, "{stats:?}");
    assert_eq!(stats.changes_published, 1, "{stats:?}");

    // A fetch sees the same node: one entry, five ignored.
    let fetched = tv
        .playlists
        .fetch(&home.jid(), "radio", &home.owners)
        .await
        .expect("fetch");
    let ids: Vec<_> = fetched
        .entries
        .iter()
        .map(|e| e.entry.id.as_str())
        .collect();
    assert_eq!(ids, ["ok"]);
    assert_eq!(fetched.ignored, 5);

    // Notifications about nodes we did not subscribe to: a stranger forging one from its own
    // account, and a real one from a node subscribed behind the watch's back.
    let forged: Element = format!(
        "<message xmlns='jabber:client' type='headline' to='{}'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='{NS_PLAYLIST}/radio'><item id='f1'/></items></event></message>",
        friend.account.jid
    )
    .parse()
    .expect("xml");
    let forger = thief.device("forger").await;
    forger
        .playlists
        .session()
        .send(xmpp_parsers::message::Message::try_from(forged).expect("message"))
        .expect("send");
    phone
        .playlists
        .create("other", &Access::Open)
        .await
        .expect("create");
    let raw_subscribe = Element::builder("pubsub", "http://jabber.org/protocol/pubsub")
        .append(
            format!(
                "<subscribe xmlns='http://jabber.org/protocol/pubsub' node='{NS_PLAYLIST}/other' jid='{}'/>",
                friend.account.jid
            )
            .parse::<Element>()
            .expect("xml"),
        )
        .build();
    let iq = xmpp_parsers::iq::Iq::Set {
        from: None,
        to: Some(home.jid().into()),
        id: String::new(),
        payload: raw_subscribe,
    };
    let reply = tv
        .playlists
        .session()
        .request(iq, t)
        .await
        .expect("raw subscribe");
    assert!(
        matches!(reply, pmn::core::session::IqReply::Result(_)),
        "{reply:?}"
    );
    phone
        .playlists
        .publish("other", &entry("o1", 0))
        .await
        .expect("publish");
    wait_stats(&tv, |s| s.not_subscribed >= 2).await;
    tv.no_change().await;
    assert_eq!(tv.playlists.stats().not_subscribed, 2);
    for d in [phone, tv, forger] {
        d.close().await;
    }
}

/// The wire element of `e` as the publisher builds it (the tests publish odd ones by hand).
fn pmn_entry_element(
    e: &PlaylistEntry,
    updated: u64,
    signature: Option<pmn::core::pubsub::entry::EntrySignature>,
) -> Element {
    Element::from(pmn::core::pubsub::entry::EntryElement {
        kind: e.kind,
        duration_ms: e.duration_ms,
        position: e.position,
        updated,
        title: e.title.clone(),
        uri: e.uri.clone(),
        artwork: e.artwork.clone(),
        signature,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_playlist_is_fetched_page_by_page_within_its_bounds() {
    // Prosody's internal storage rewrites a PEP node's archive on every publish and scans it on
    // every read by id, so publishing is quadratic in the node's size (600 entries take about
    // 50 s on a loaded 2-core machine, 2 000 about ten minutes). 300 is three full pages, and
    // keeps the suite's budget.
    const N: usize = 300;
    const CAP: usize = 250;
    let home = Household::new("plbig", "home.test");
    let friend = Household::new("plbigf", "friend.test");
    let phone = home.device("phone").await;
    phone
        .playlists
        .create("archive", &Access::Friends(vec![friend.jid()]))
        .await
        .expect("create");
    let started = Instant::now();
    // 10 publishes in flight at a time.
    for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
        let publishes = chunk.iter().map(|i| {
            let playlists = phone.playlists.clone();
            async move {
                playlists
                    .publish("archive", &entry(&format!("e{i:05}"), *i as u32))
                    .await
            }
        });
        for r in futures::future::join_all(publishes).await {
            r.expect("publish");
        }
    }
    let published_in = started.elapsed();

    let tv = home.device("tv").await;
    let started = Instant::now();
    let all = tv
        .playlists
        .fetch(&home.jid(), "archive", &home.owners)
        .await
        .expect("fetch");
    let fetched_in = started.elapsed();
    assert_eq!(all.listed, N);
    assert_eq!(all.entries.len(), N);
    assert_eq!(all.pages, N / 100, "100 entries per page");
    assert_eq!(all.ignored, 0);
    assert!(all.complete, "our own devices list the node");
    assert!(
        all.entries
            .windows(2)
            .all(|w| w[0].entry.position < w[1].entry.position),
        "in playlist order"
    );
    assert!(fetched_in < Duration::from_secs(60), "took {fetched_in:?}");

    // With a cap of 250 entries and pages of 50: never more than the cap held.
    let capped = Device::connect(
        &home.account,
        "capped",
        PlaylistsConfig {
            fetch: FetchLimits {
                page_size: 50,
                max_entries: CAP,
            },
            ..PlaylistsConfig::default()
        },
    )
    .await;
    let some = capped
        .playlists
        .fetch(&home.jid(), "archive", &home.owners)
        .await
        .expect("fetch");
    assert_eq!(some.entries.len(), CAP);
    assert!(some.entries.capacity() <= CAP, "memory bounded by the cap");
    assert_eq!(some.pages, CAP / 50);
    assert_eq!(some.ignored, N - CAP);
    assert_eq!(capped.playlists.stats().over_cap, (N - CAP) as u64);

    // A friend household that is not a presence contact: Prosody will not list the node's items
    // to it, so it gets the newest page only, and is told so.
    let friend_tv = friend.device("tv").await;
    let newest = friend_tv
        .playlists
        .fetch(&home.jid(), "archive", &home.owners)
        .await
        .expect("fetch");
    assert!(!newest.complete, "{:?}", newest.listed);
    assert_eq!(newest.entries.len(), 100);
    assert_eq!(newest.pages, 1);
    eprintln!(
        "published {N} entries in {published_in:?}; fetched them in {fetched_in:?} ({} pages)",
        all.pages
    );
    for d in [phone, tv, capped, friend_tv] {
        d.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_publish_with_the_owner_key_and_follow_a_friends_playlist() {
    use pmn::core::controller::{Controller, ControllerConfig, OwnerAccess};
    let home = Household::new("plctl", "home.test");
    let friend = Household::new("plctlf", "friend.test");
    let store: Arc<dyn KeyStore> = home.store.clone();
    let phone = Controller::connect(ControllerConfig {
        access: Some(OwnerAccess::new(store, OWNER_ALIAS)),
        ..ControllerConfig::plain(session_config(&home.account, "phone"))
    })
    .await
    .expect("owner phone");
    let tv = Controller::connect(ControllerConfig::plain(session_config(
        &friend.account,
        "tv",
    )))
    .await
    .expect("friend tv");
    phone
        .playlists()
        .create("channel", &Access::Friends(vec![friend.jid()]))
        .await
        .expect("create");
    let mut changes = tv.playlists().changes();
    tv.playlists()
        .subscribe(&home.jid(), "channel", home.owners.clone())
        .await
        .expect("subscribe");
    let sent = phone
        .playlists()
        .publish("channel", &entry("c1", 0))
        .await
        .expect("publish");
    let got = tokio::time::timeout(WAIT, changes.recv())
        .await
        .expect("in time")
        .expect("open");
    assert!(matches!(got, PlaylistChange::Published { entry, .. } if entry == sent));
    // A controller without the owner key reads but cannot publish.
    let err = tv
        .playlists()
        .publish("channel", &entry("c2", 0))
        .await
        .expect_err("no owner key");
    assert_eq!(
        pmn::core::error::Error::from(err).kind(),
        pmn::core::error::ErrorKind::Config
    );
    phone.close().await;
    tv.close().await;
}

/// Collects what a followed playlist reports.
struct ChangeSink(tokio::sync::mpsc::UnboundedSender<pmn::PlaylistChange>);

impl pmn::PlaylistListener for ChangeSink {
    fn on_change(&self, change: pmn::PlaylistChange) -> Result<(), pmn::PmnError> {
        let _ = self.0.send(change);
        Ok(())
    }
    fn on_missed(&self, _: i64) -> Result<(), pmn::PmnError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_api_fetches_and_follows_a_playlist_until_the_handle_is_cancelled() {
    let publisher = Household::new("plffi", "home.test");
    let phone = publisher.device("phone").await;
    phone
        .playlists
        .create("radio", &Access::Open)
        .await
        .expect("create");
    phone
        .playlists
        .publish("radio", &entry("r1", 0))
        .await
        .expect("publish");

    let app =
        pmn::Controller::new(ffi_config("app"), ChannelListener::quiet()).expect("controller");
    app.connect().await.expect("connect");
    let playlists = app.playlists().expect("facet");
    let keys = vec![publisher.store.public_key(OWNER_ALIAS).expect("spki")];
    let fetched = playlists
        .fetch(publisher.account.jid.into(), "radio".into(), keys.clone())
        .await
        .expect("fetch");
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].id, "r1");
    assert_eq!(fetched[0].kind, pmn::MediaKind::Audio);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = playlists
        .follow(
            publisher.account.jid.into(),
            "radio".into(),
            keys,
            Arc::new(ChangeSink(tx)),
        )
        .await
        .expect("follow");
    phone
        .playlists
        .publish("radio", &entry("r2", 1))
        .await
        .expect("publish");
    let change = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("in time")
        .expect("open");
    assert!(
        matches!(&change, pmn::PlaylistChange::Published { entry, playlist, .. } if entry.id == "r2" && playlist == "radio"),
        "{change:?}"
    );
    // Without an owner key the app cannot publish; a bad JID is a config error.
    let err = playlists
        .publish(
            "radio".into(),
            pmn::PlaylistEntry {
                id: "x".into(),
                title: "x".into(),
                uri: "a:b".into(),
                kind: pmn::MediaKind::Stream,
                duration_ms: None,
                artwork: None,
                position: 0,
            },
        )
        .await
        .expect_err("no owner key");
    assert!(matches!(err, pmn::PmnError::Config { .. }), "{err:?}");
    assert!(matches!(
        playlists.list("not a jid".into()).await,
        Err(pmn::PmnError::Config { .. })
    ));

    // Cancelled: no more changes reach the app.
    handle.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    phone
        .playlists
        .publish("radio", &entry("r3", 2))
        .await
        .expect("publish");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .map_or(true, |c| c.is_none()),
        "no change after cancel"
    );
    app.disconnect().await;
    phone.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friends_playlist_is_enqueued_on_the_tv_in_order_and_plays() {
    use pmn::core::controller::{Controller, ControllerConfig};
    let friend = Household::new("plplay", "friend.test");
    let publisher = friend.device("phone").await;
    publisher
        .playlists
        .create("evening", &Access::Open)
        .await
        .expect("create");
    // Published out of order: the queue follows the playlist's positions.
    for (id, position) in [("b", 2), ("a", 1), ("c", 3)] {
        publisher
            .playlists
            .publish("evening", &entry(id, position))
            .await
            .expect("publish");
    }
    let tv = start_player("Living room").await;
    let phone = Controller::connect(ControllerConfig::plain(session_config(&HOME, "remote")))
        .await
        .expect("controller");
    let tv_info = phone
        .wait_for_provider(|p| p.name == "Living room", WAIT)
        .await
        .expect("tv online");
    let queue = phone
        .enqueue_playlist(
            tv_info.jid.clone(),
            &friend.jid(),
            "evening",
            &friend.owners,
        )
        .await
        .expect("enqueue");
    let uris: Vec<_> = queue.items.iter().map(|i| i.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "https://podcasts.example/a.mp3",
            "https://podcasts.example/b.mp3",
            "https://podcasts.example/c.mp3"
        ]
    );
    assert_eq!(queue.items[0].title.as_deref(), Some("Episode a"));
    let status = phone
        .player(tv_info.jid.clone())
        .next()
        .await
        .expect("next");
    assert_eq!(
        status.uri.as_deref(),
        Some("https://podcasts.example/a.mp3")
    );
    phone.close().await;
    tv.stop().await;
    publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tv_given_a_playlist_address_resolves_verifies_and_plays_it_in_order() {
    use pmn::core::controller::{Controller, ControllerConfig};
    use pmn::core::error::ErrorKind;
    use pmn::core::provider::{Provider, ProviderConfig};
    use pmn::core::pubsub::playlist_uri;
    use pmn::core::services::player::{PlaybackState, PlayerService, SimulatedPlayer};
    let friend = Household::new("pladdr", "friend.test");
    let unknown = Household::new("pladdru", "friend.test");
    let publisher = friend.device("phone").await;
    publisher
        .playlists
        .create("evening", &Access::Open)
        .await
        .expect("create");
    for (id, position) in [("b", 2), ("a", 1), ("c", 3)] {
        publisher
            .playlists
            .publish("evening", &entry(id, position))
            .await
            .expect("publish");
    }
    // Signed by the owner, but an mpv pseudo-protocol: skipped and counted by the TV.
    let edl = PlaylistEntry {
        uri: "edl://x;y".into(),
        ..entry("d", 4)
    };
    publisher
        .playlists
        .publish("evening", &edl)
        .await
        .expect("publish");
    // Put there by someone else than the owner (unsigned): dropped by the signature check.
    let session = publisher.playlists.session().clone();
    publish_element(
        &session,
        "evening",
        "z",
        pmn_entry_element(&entry("z", 0), 7, None),
        WAIT,
    )
    .await
    .expect("publish unsigned");
    let other = unknown.device("phone").await;
    other
        .playlists
        .create("noise", &Access::Open)
        .await
        .expect("create");
    other
        .playlists
        .publish("noise", &entry("n", 0))
        .await
        .expect("publish");

    let name = unique("Playlist TV");
    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    let tv = Provider::start(
        ProviderConfig {
            playlist_owners: vec![friend.owners.clone()],
            ..ProviderConfig::plain(session_config(&HOME, &unique("pltv")), &name)
        },
        vec![player],
    )
    .await
    .expect("tv");
    let phone = Controller::connect(ControllerConfig::plain(session_config(
        &HOME,
        &unique("plremote"),
    )))
    .await
    .expect("controller");
    let tv_jid = phone
        .wait_for_provider(|p| p.name == name, WAIT)
        .await
        .expect("tv online")
        .jid;
    let remote = phone.player(tv_jid.clone());
    let evening = playlist_uri(&friend.jid(), "evening");
    let in_order = [
        "https://podcasts.example/a.mp3",
        "https://podcasts.example/b.mp3",
        "https://podcasts.example/c.mp3",
    ];

    // Enqueue appends the verified entries in playlist order, each with its title.
    let queue = remote.enqueue(&evening, None).await.expect("enqueue");
    let uris: Vec<_> = queue.items.iter().map(|i| i.uri.as_str()).collect();
    assert_eq!(uris, in_order);
    assert_eq!(queue.items[1].title.as_deref(), Some("Episode b"));
    assert_eq!(queue.current, None, "enqueue does not start playing");
    // A title for a whole playlist is a bad request.
    let titled = remote.enqueue(&evening, Some("all")).await;
    assert!(
        matches!(&titled, Err(e) if e.kind() == ErrorKind::BadParams),
        "{titled:?}"
    );

    // Play replaces the queue with the playlist and starts its first entry.
    let status = remote.play(&evening).await.expect("play");
    assert_eq!(status.state, PlaybackState::Playing);
    assert_eq!(status.uri.as_deref(), Some(in_order[0]));
    assert_eq!(status.title.as_deref(), Some("Episode a"));
    let queue = remote.queue().await.expect("queue");
    let uris: Vec<_> = queue.items.iter().map(|i| i.uri.as_str()).collect();
    assert_eq!(uris, in_order, "replaced, not appended");
    assert_eq!(queue.current, Some(0));
    let next = remote.next().await.expect("next");
    assert_eq!(next.uri.as_deref(), Some(in_order[1]));

    // The pseudo-protocol entry was skipped each time, the unsigned one dropped each time.
    assert_eq!(tv.stats().media_refused, 2);
    assert_eq!(tv.playlist_stats().unsigned, 2);

    // A household whose owner keys the TV does not have: nothing can be verified, forbidden.
    let refused = remote
        .enqueue(&playlist_uri(&unknown.jid(), "noise"), None)
        .await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::Forbidden),
        "{refused:?}"
    );
    assert_eq!(remote.queue().await.expect("queue").items.len(), 3);

    phone.close().await;
    tv.stop().await;
    publisher.close().await;
    other.close().await;
}

/// The server replays signed entries: an old version of an entry after a newer one, the same
/// version again, a version the owner since retracted. The signatures verify, but none is taken
/// as news, live or in the catch-up; the owner's next edit is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_old_and_retracted_versions_are_not_taken_for_new() {
    let home = Household::new("plreplay", "home.test");
    let friend = Household::new("plreplayf", "friend.test");
    let phone = home.device("phone").await;
    phone
        .playlists
        .create("radio", &Access::Open)
        .await
        .expect("create");
    let mut tv = friend.device("tv").await;
    tv.playlists
        .subscribe(&home.jid(), "radio", home.owners.clone())
        .await
        .expect("subscribe");
    let session = phone.playlists.session().clone();
    let net = home.jid();
    // What the server holds and can send again: a version signed by the owner at `updated`.
    let replay = |e: &PlaylistEntry, updated: u64| {
        let sig = pmn::core::pubsub::signature::sign_entry(
            &net,
            "radio",
            e,
            updated,
            home.store.as_ref(),
            OWNER_ALIAS,
        )
        .expect("sign");
        pmn_entry_element(e, updated, Some(sig))
    };
    let e1 = entry("e1", 1);
    let current = phone
        .playlists
        .publish("radio", &e1)
        .await
        .expect("publish");
    assert!(matches!(
        tv.next_change().await,
        PlaylistChange::Published { .. }
    ));

    // The same version again, then an older one: no news.
    for (n, updated) in [(1, current.updated), (2, 5)] {
        publish_element(&session, "radio", "e1", replay(&e1, updated), WAIT)
            .await
            .expect("replay");
        wait_stats(&tv, |s| s.replayed == n).await;
    }
    // A version the owner retracted, sent again.
    let e2 = entry("e2", 2);
    let gone = phone
        .playlists
        .publish("radio", &e2)
        .await
        .expect("publish");
    assert!(matches!(
        tv.next_change().await,
        PlaylistChange::Published { .. }
    ));
    phone
        .playlists
        .retract("radio", "e2")
        .await
        .expect("retract");
    assert!(matches!(
        tv.next_change().await,
        PlaylistChange::Retracted { .. }
    ));
    publish_element(&session, "radio", "e2", replay(&e2, gone.updated), WAIT)
        .await
        .expect("replay");
    wait_stats(&tv, |s| s.replayed == 3).await;
    tv.no_change().await;

    // The catch-up holds e1 at version 5 and e2 retracted: neither is taken.
    let fetched = tv
        .playlists
        .fetch(&home.jid(), "radio", &home.owners)
        .await
        .expect("fetch");
    assert!(fetched.entries.is_empty(), "{:?}", fetched.entries);
    assert_eq!(tv.playlists.stats().replayed, 5);
    // Replayed under another id, the signature breaks (it binds the id).
    publish_element(
        &session,
        "radio",
        "e9",
        replay(&e1, current.updated + 1),
        WAIT,
    )
    .await
    .expect("moved");
    wait_stats(&tv, |s| s.bad_signature == 1).await;

    // The owner's next edit is a newer version: news, live and in the catch-up. Two edits in one
    // second still carry two versions.
    let edited = PlaylistEntry {
        title: "Episode e1 (edited)".into(),
        ..e1.clone()
    };
    let first = phone
        .playlists
        .publish("radio", &edited)
        .await
        .expect("edit");
    let again = phone
        .playlists
        .publish("radio", &edited)
        .await
        .expect("edit");
    assert!(again.updated > first.updated && first.updated > current.updated);
    for expected in [&first, &again] {
        match tv.next_change().await {
            PlaylistChange::Published { entry, .. } => assert_eq!(&entry, expected),
            other => panic!("expected the edit, got {other:?}"),
        }
    }
    let fetched = tv
        .playlists
        .fetch(&home.jid(), "radio", &home.owners)
        .await
        .expect("fetch");
    assert_eq!(fetched.entries, vec![again]);
    phone.close().await;
    tv.close().await;
}
