//! The three services over a real Prosody: the full media player, the recorder and the media
//! library, several services in one provider, chaining (a provider that is also a controller),
//! event subscriptions per kind, and the provider rules under all of it.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pmn::core::controller::{Controller, ControllerConfig, ServiceEvent};
use pmn::core::error::ErrorKind;
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::xmlrpc::Value;
use pmn::core::rpc::Service;
use pmn::core::services::library::{self, GeneratedLibrary, LibraryService};
use pmn::core::services::player::{
    self, PlaybackState, PlayerService, PositionUpdate, RemotePlayer, SimulatedPlayer,
};
use pmn::core::services::recorder::{self, RecorderService, Refusal};
use pmn::core::session::SessionConfig;
use tokio::sync::broadcast;
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

use common::*;

async fn start(session: SessionConfig, name: &str, services: Vec<Arc<dyn Service>>) -> Provider {
    Provider::start(ProviderConfig::plain(session, name), services)
        .await
        .expect("provider starts")
}

fn all_services(position_interval: Duration) -> Vec<Arc<dyn Service>> {
    vec![
        Arc::new(PlayerService::with_position_interval(
            Arc::new(SimulatedPlayer::default()),
            position_interval,
        )),
        Arc::new(RecorderService::simulated()),
        Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(10_000)))),
    ]
}

/// Events received within `window`, or until `stop` says enough.
async fn collect(
    events: &mut broadcast::Receiver<ServiceEvent>,
    window: Duration,
    stop: impl Fn(&[ServiceEvent]) -> bool,
) -> Vec<ServiceEvent> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(window, async {
        while let Ok(e) = events.recv().await {
            got.push(e);
            if stop(&got) {
                break;
            }
        }
    })
    .await;
    got
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_player_queue_seek_volume_and_typed_events() {
    let controller = start_controller().await;
    let provider = start(
        session_config(&HOME, "tv"),
        "TV",
        all_services(Duration::from_millis(200)),
    )
    .await;
    let tv = discover(&controller, &provider).await;
    for feature in [player::FEATURE, recorder::FEATURE, library::FEATURE] {
        assert!(tv.services.iter().any(|s| s == feature), "{feature}");
    }
    let mut events = controller.events();
    let _sub = controller
        .subscribe(&tv.jid, "player")
        .await
        .expect("subscribe");
    let p = controller.player(tv.jid.clone());

    let s = p.play("file:///a.mkv").await.expect("play");
    assert_eq!(s.state, PlaybackState::Playing);
    assert_eq!(s.duration_ms, Some(SimulatedPlayer::DURATION_MS));
    p.enqueue("file:///b.mkv", Some("Bee"))
        .await
        .expect("enqueue");
    let s = p.next().await.expect("next");
    assert_eq!(
        (s.uri.as_deref(), s.title.as_deref()),
        (Some("file:///b.mkv"), Some("Bee"))
    );
    let s = p.previous().await.expect("previous");
    assert_eq!(s.uri.as_deref(), Some("file:///a.mkv"));
    let s = p.seek(120_000).await.expect("seek");
    assert!(s.position_ms >= 120_000);
    let v = p.set_volume(70).await.expect("volume");
    assert_eq!((v.volume, v.muted), (70, false));
    assert!(p.mute(true).await.expect("mute").muted);
    assert_eq!(p.queue().await.expect("queue").items.len(), 2);
    assert_eq!(p.clear_queue().await.expect("clear").items.len(), 1);

    // Typed refusals over the wire.
    let e = p.set_volume(101).await.expect_err("too loud");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    let e = p
        .seek(SimulatedPlayer::DURATION_MS + 1)
        .await
        .expect_err("beyond");
    assert_eq!(e.fault_code(), Some(player::FAULT_OUT_OF_RANGE));
    let e = p.next().await.expect_err("end of queue");
    assert_eq!(e.fault_code(), Some(player::FAULT_INVALID_STATE));

    let got = collect(&mut events, Duration::from_millis(1200), |_| false).await;
    let kinds: HashSet<&str> = got.iter().map(|e| e.notice.name.as_str()).collect();
    for kind in [
        player::EVENT_STATE_CHANGED,
        player::EVENT_QUEUE_CHANGED,
        player::EVENT_VOLUME_CHANGED,
        player::EVENT_POSITION,
    ] {
        assert!(kinds.contains(kind), "no {kind} event in {kinds:?}");
    }
    for e in &got {
        assert_eq!(e.provider, tv.jid);
        if let Some(update) = e.decode::<player::Position>() {
            let PositionUpdate { duration_ms, .. } = update.expect("typed position");
            assert_eq!(duration_ms, Some(SimulatedPlayer::DURATION_MS));
        }
        if let Some(status) = e.decode::<player::StateChanged>() {
            status.expect("typed status");
        }
    }
    // Position events are rate-limited: at 200 ms, at most ~6 per 1.2 s plus the seek's own.
    let positions = got
        .iter()
        .filter(|e| e.notice.name == player::EVENT_POSITION)
        .count();
    assert!(positions <= 8, "{positions} position events in 1.2 s");
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_select_event_kinds_and_merge() {
    let controller = start_controller().await;
    let provider = start(
        session_config(&HOME, "tv"),
        "TV",
        all_services(Duration::from_millis(100)),
    )
    .await;
    let tv = discover(&controller, &provider).await;
    let p = controller.player(tv.jid.clone());
    let mut events = controller.events();
    let volume_only = controller
        .subscribe_events(&tv.jid, "player", Some(&[player::EVENT_VOLUME_CHANGED]))
        .await
        .expect("subscribe");
    p.play("file:///a").await.expect("play");
    p.set_volume(10).await.expect("volume");
    let got = collect(&mut events, Duration::from_millis(600), |_| false).await;
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|e| e.notice.name == player::EVENT_VOLUME_CHANGED),
        "{:?}",
        got.iter().map(|e| &e.notice.name).collect::<Vec<_>>()
    );

    // A second local subscription widens what the provider sends; dropping it narrows again.
    let state_too = controller
        .subscribe_events(&tv.jid, "player", Some(&[player::EVENT_STATE_CHANGED]))
        .await
        .expect("subscribe");
    assert_eq!(provider.subscription_count(), 1, "one subscriber, merged");
    p.pause().await.expect("pause");
    let got = collect(&mut events, Duration::from_secs(5), |g| {
        g.iter()
            .any(|e| e.notice.name == player::EVENT_STATE_CHANGED)
    })
    .await;
    assert!(got
        .iter()
        .any(|e| e.notice.name == player::EVENT_STATE_CHANGED));
    state_too.cancel().await.expect("narrow");
    p.resume().await.expect("resume");
    p.set_volume(20).await.expect("volume");
    let got = collect(&mut events, Duration::from_millis(600), |_| false).await;
    assert!(got
        .iter()
        .all(|e| e.notice.name == player::EVENT_VOLUME_CHANGED));
    assert!(!got.is_empty());
    volume_only.cancel().await.expect("unsubscribe");
    assert_eq!(provider.subscription_count(), 0);

    // Unknown kinds and wrong shapes are refused, and the provider keeps serving.
    let e = controller
        .subscribe_events(&tv.jid, "player", Some(&["exploded"]))
        .await
        .expect_err("unknown kind");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    let e = controller
        .call(&tv.jid, "player.subscribe", vec![Value::Int(1)])
        .await
        .expect_err("shape");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    let e = controller
        .call(&tv.jid, "player.subscribe", vec![Value::Array(vec![])])
        .await
        .expect_err("empty selection");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    let e = controller
        .call(&tv.jid, "player.unsubscribe", vec![Value::Int(1)])
        .await
        .expect_err("unsubscribe takes nothing");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    assert_eq!(provider.subscription_count(), 0);
    p.status().await.expect("still serving");
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_schedules_refuses_conflicts_and_past_and_reports_recordings() {
    let controller = start_controller().await;
    let provider = start(
        session_config(&HOME, "recorder"),
        "Recorder",
        vec![Arc::new(RecorderService::simulated())],
    )
    .await;
    let info = discover(&controller, &provider).await;
    assert_eq!(info.services, vec![recorder::FEATURE.to_string()]);
    let mut events = controller.events();
    let _sub = controller
        .subscribe(&info.jid, "recorder")
        .await
        .expect("subscribe");
    let r = controller.recorder(info.jid.clone());
    let channels = r.channels().await.expect("channels");
    assert!(channels.iter().any(|c| c.id == "one"));

    let now = now_unix();
    let soon = r
        .schedule("one", now + 1, now + 2, "Short news")
        .await
        .expect("schedule");
    let e = r
        .schedule("two", now + 1, now + 3, "Clash")
        .await
        .expect_err("conflict");
    assert_eq!(Refusal::of(&e), Some(Refusal::Conflict));
    let e = r
        .schedule("two", now - 3600, now - 1800, "Yesterday")
        .await
        .expect_err("past");
    assert_eq!(Refusal::of(&e), Some(Refusal::InThePast));
    let e = r
        .schedule("nine", now + 100, now + 200, "Nowhere")
        .await
        .expect_err("channel");
    assert_eq!(Refusal::of(&e), Some(Refusal::UnknownChannel));
    let e = r
        .schedule("one", now + 200, now + 100, "Backwards")
        .await
        .expect_err("backwards");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    let later = r
        .schedule("two", now + 600, now + 700, "Later")
        .await
        .expect("schedule");
    let dark = r
        .schedule("nosignal", now + 2, now + 3, "Dark")
        .await
        .expect("schedule");
    assert_eq!(r.scheduled().await.expect("list").len(), 3);
    assert_eq!(r.cancel(later.id).await.expect("cancel").id, later.id);
    let e = r.cancel(later.id).await.expect_err("twice");
    assert_eq!(Refusal::of(&e), Some(Refusal::UnknownRecording));

    let got = collect(&mut events, Duration::from_secs(8), |g| g.len() >= 3).await;
    let seen: Vec<(String, u32)> = got
        .iter()
        .map(|e| {
            let rec = e
                .decode::<recorder::Started>()
                .or_else(|| e.decode::<recorder::Finished>())
                .or_else(|| e.decode::<recorder::Failed>())
                .expect("a recorder event")
                .expect("typed recording");
            (e.notice.name.clone(), rec.id)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (recorder::EVENT_STARTED.to_string(), soon.id),
            (recorder::EVENT_FINISHED.to_string(), soon.id),
            (recorder::EVENT_FAILED.to_string(), dark.id),
        ]
    );
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_of_ten_thousand_items_is_browsed_page_by_page() {
    let controller = start_controller().await;
    let provider = start(
        session_config(&HOME, "nas"),
        "NAS",
        vec![Arc::new(LibraryService::new(Arc::new(
            GeneratedLibrary::new(10_000),
        )))],
    )
    .await;
    let nas = discover(&controller, &provider).await;
    let lib = controller.library(nas.jid.clone());
    let root = lib.browse("", 0, 10).await.expect("root");
    let videos = root
        .items
        .iter()
        .find(|i| i.id == "videos")
        .expect("videos");
    assert_eq!(videos.child_count, Some(10_000));
    // Streams all 10 000 items, one page of 200 in memory at a time.
    let mut stream = std::pin::pin!(lib.browse_all("videos", library::MAX_PAGE));
    let mut n = 0u32;
    while let Some(item) = stream.next().await {
        let item = item.expect("item");
        assert_eq!(item.id, format!("videos/{n}"));
        n += 1;
    }
    assert_eq!(n, 10_000);
    let hits = lib.search("Film 999", 0, 5).await.expect("search");
    assert_eq!((hits.total, hits.items.len()), (11, 5));
    assert_eq!(
        lib.item("videos/4242").await.expect("item").title,
        "Film 4242"
    );
    let e = lib.item("videos/10000").await.expect_err("missing");
    assert_eq!(e.fault_code(), Some(library::FAULT_NOT_FOUND));
    let e = lib.browse("videos", 0, 0).await.expect_err("limit 0");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    let e = lib
        .browse("videos", 0, library::MAX_PAGE + 1)
        .await
        .expect_err("limit too big");
    assert_eq!(e.kind(), ErrorKind::BadParams);
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_provider_is_a_controller_of_another_player() {
    // The TV.
    let tv = start_player("TV").await;
    // A receiver that offers a player and forwards everything to the TV (spec §4: a provider MAY be
    // a controller of another service).
    let mut upstream_config = ControllerConfig::plain(session_config(&HOME, "receiver-ctl"));
    upstream_config.rpc_timeout = Duration::from_secs(5);
    let upstream = Controller::connect(upstream_config)
        .await
        .expect("controller");
    let tv_info = discover(&upstream, &tv).await;
    let receiver = start(
        session_config(&HOME, "receiver"),
        "Receiver",
        vec![Arc::new(PlayerService::new(Arc::new(RemotePlayer::new(
            upstream.player(tv_info.jid.clone()),
        ))))],
    )
    .await;
    let phone = start_controller().await;
    let rx_info = discover(&phone, &receiver).await;
    let s = phone
        .player(rx_info.jid.clone())
        .play("file:///chained.mkv")
        .await
        .expect("play via receiver");
    assert_eq!(s.state, PlaybackState::Playing);
    let on_tv = phone
        .player(tv_info.jid.clone())
        .status()
        .await
        .expect("tv status");
    assert_eq!(on_tv.uri.as_deref(), Some("file:///chained.mkv"));
    assert_eq!(on_tv.state, PlaybackState::Playing);
    phone
        .player(rx_info.jid.clone())
        .set_volume(33)
        .await
        .expect("volume via receiver");
    let on_tv = phone
        .player(tv_info.jid.clone())
        .status()
        .await
        .expect("tv");
    assert_eq!(on_tv.volume, 33);
    // A refusal of the TV reaches the phone as a fault of the receiver.
    phone
        .player(rx_info.jid.clone())
        .stop()
        .await
        .expect("stop");
    let e = phone
        .player(rx_info.jid.clone())
        .pause()
        .await
        .expect_err("nothing to pause");
    assert_eq!(e.fault_code(), Some(player::FAULT_INVALID_STATE));
    receiver.stop().await;
    upstream.close().await;
    tv.stop().await;
    phone.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_is_restored_when_the_provider_comes_back() {
    let session = session_config(&HOME, "tv");
    let provider = start(session.clone(), "TV", all_services(Duration::from_secs(10))).await;
    let controller = start_controller().await;
    let tv = discover(&controller, &provider).await;
    let mut updates = controller.updates();
    let _sub = controller
        .subscribe_events(&tv.jid, "player", Some(&[player::EVENT_VOLUME_CHANGED]))
        .await
        .expect("subscribe");
    let mut resyncs = controller.resyncs();
    provider.stop().await;
    // Same device (same full JID) comes back: it forgot its subscribers.
    let provider = start(session, "TV", all_services(Duration::from_secs(10))).await;
    assert_eq!(provider.subscription_count(), 0);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(u) = updates.recv().await {
            if matches!(u, pmn::core::discovery::DirectoryUpdate::Added(ref p) if p.jid == tv.jid) {
                break;
            }
        }
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while provider.subscription_count() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("controller re-subscribed by itself");
    // The app is told that events may have been missed in between.
    let resync = tokio::time::timeout(Duration::from_secs(5), resyncs.recv())
        .await
        .expect("a resync after the provider came back")
        .expect("resyncs open");
    assert_eq!(
        (&resync.provider, resync.service.as_str()),
        (&tv.jid, "player")
    );
    let mut events = controller.events();
    controller
        .player(tv.jid.clone())
        .set_volume(5)
        .await
        .expect("volume");
    let got = collect(&mut events, Duration::from_secs(5), |g| !g.is_empty()).await;
    assert_eq!(
        got.first().map(|e| e.notice.name.as_str()),
        Some(player::EVENT_VOLUME_CHANGED),
        "the restored subscription kept its event selection"
    );
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_multi_service_provider_only_writes_to_those_who_wrote_first() {
    let mut session = session_config(&HOME, "tv");
    let (tap_tx, mut tap) = tokio::sync::mpsc::unbounded_channel();
    session.outbound_tap = Some(tap_tx);
    let provider = start(session, "TV", all_services(Duration::from_millis(100))).await;
    // A bystander of the same network that never talks to the provider: it must get nothing.
    let bystander = start_controller().await;
    let controller = start_controller().await;
    let tv = discover(&controller, &provider).await;
    discover(&bystander, &provider).await;
    let sub_p = controller.subscribe(&tv.jid, "player").await.expect("sub");
    let sub_r = controller
        .subscribe(&tv.jid, "recorder")
        .await
        .expect("sub");
    controller
        .player(tv.jid.clone())
        .play("file:///x")
        .await
        .expect("play");
    let now = now_unix();
    controller
        .recorder(tv.jid.clone())
        .schedule("one", now, now + 1, "t")
        .await
        .expect("schedule");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The phone dies without unsubscribing; position events keep being produced.
    std::mem::forget(sub_p);
    std::mem::forget(sub_r);
    controller.close().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while provider.subscription_count() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("subscriber forgotten");
    let before: Vec<Stanza> = std::iter::from_fn(|| tap.try_recv().ok()).collect();
    // Still playing, still producing position events: none may leave now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: Vec<Stanza> = std::iter::from_fn(|| tap.try_recv().ok()).collect();
    assert!(
        !after.iter().any(|s| matches!(s, Stanza::Message(_))),
        "events sent after the only subscriber left"
    );
    let bystander_jid: Jid = bystander.session().jid().expect("online").into();
    let mut contacted: HashSet<Jid> = HashSet::new();
    let mut events = 0;
    for stanza in before.into_iter().chain(after) {
        match stanza {
            Stanza::Iq(Iq::Result { to: Some(to), .. })
            | Stanza::Iq(Iq::Error { to: Some(to), .. }) => {
                contacted.insert(to);
            }
            Stanza::Iq(Iq::Get { to, .. }) | Stanza::Iq(Iq::Set { to, .. }) => {
                panic!("provider sent a request to {to:?}")
            }
            Stanza::Message(m) => {
                let to = m.to.clone().expect("addressed");
                assert!(
                    contacted.contains(&to),
                    "event to {to} which never wrote first"
                );
                assert_ne!(to, bystander_jid);
                events += 1;
            }
            Stanza::Presence(p) => assert!(p.to.is_none(), "directed presence to {:?}", p.to),
            _ => {}
        }
    }
    assert!(
        events >= 4,
        "player and recorder events went out ({events})"
    );
    provider.stop().await;
    bystander.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpv_plays_for_real_when_installed() {
    use pmn::core::services::mpv::{mpv_available, write_tone, MpvPlayer};
    if !mpv_available() {
        eprintln!(
            "SKIPPED: mpv is not installed (apt-get install mpv; cargo xtask test installs it)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = dir.path().join("tone.wav");
    write_tone(&tone, 20).expect("tone");
    let mpv = MpvPlayer::spawn(&dir.path().join("mpv.sock"), &["--no-video", "--ao=null"])
        .await
        .expect("mpv starts");
    let provider = start(
        session_config(&HOME, "mpv-tv"),
        "mpv TV",
        vec![Arc::new(PlayerService::new(Arc::new(mpv)))],
    )
    .await;
    let controller = start_controller().await;
    let tv = discover(&controller, &provider).await;
    let p = controller.player(tv.jid.clone());
    let uri = format!("file://{}", tone.display());
    let s = p.play(&uri).await.expect("play");
    assert_eq!(s.state, PlaybackState::Playing);
    assert_eq!(s.uri.as_deref(), Some(uri.as_str()));
    let duration = s.duration_ms.expect("mpv knows the duration");
    assert!((19_000..=21_000).contains(&duration), "{duration}");
    let s = p.seek(10_000).await.expect("seek");
    assert!(s.position_ms >= 9_000, "{s:?}");
    let e = p.seek(60_000).await.expect_err("beyond the end");
    assert_eq!(e.fault_code(), Some(player::FAULT_OUT_OF_RANGE));
    assert_eq!(p.pause().await.expect("pause").state, PlaybackState::Paused);
    let v = p.set_volume(40).await.expect("volume");
    assert_eq!(v.volume, 40);
    assert!(p.mute(true).await.expect("mute").muted);
    assert_eq!(
        p.resume().await.expect("resume").state,
        PlaybackState::Playing
    );
    assert_eq!(p.stop().await.expect("stop").state, PlaybackState::Stopped);
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_that_lost_its_session_resubscribes_by_itself() {
    let provider = start(
        session_config(&HOME, "tv"),
        "TV",
        all_services(Duration::from_secs(10)),
    )
    .await;
    let relay = Relay::start(server().port()).await;
    let mut config = ControllerConfig::plain(session_config(&HOME, "phone"));
    config.session.server =
        pmn::core::session::ServerAddress::HostPort("127.0.0.1".into(), relay.port);
    config.rpc_timeout = Duration::from_secs(5);
    let controller = Controller::connect(config).await.expect("controller");
    let tv = discover(&controller, &provider).await;
    let _sub = controller
        .subscribe_events(&tv.jid, "player", Some(&[player::EVENT_VOLUME_CHANGED]))
        .await
        .expect("subscribe");
    assert_eq!(provider.subscription_count(), 1);
    let mut resyncs = controller.resyncs();

    // Gone for longer than the server keeps a hibernated session (smacks_hibernation_time = 10 s in
    // the test config): the server announces us unavailable, the provider forgets us, and the
    // stream cannot be resumed.
    relay.cut();
    tokio::time::timeout(Duration::from_secs(20), async {
        while provider.subscription_count() != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("provider forgot the vanished controller");
    relay.reopen();
    // Back online with a fresh stream: the controller re-subscribes with the same selection.
    tokio::time::timeout(Duration::from_secs(40), async {
        while provider.subscription_count() != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("controller re-subscribed by itself after reconnecting");
    // The resume was refused: the app is told that events may have been missed.
    let resync = tokio::time::timeout(Duration::from_secs(5), resyncs.recv())
        .await
        .expect("a resync after the fresh login")
        .expect("resyncs open");
    assert_eq!(
        (&resync.provider, resync.service.as_str()),
        (&tv.jid, "player")
    );
    let mut events = controller.events();
    controller
        .player(tv.jid.clone())
        .set_volume(7)
        .await
        .expect("volume");
    let got = collect(&mut events, Duration::from_secs(5), |g| !g.is_empty()).await;
    assert_eq!(
        got.first().map(|e| e.notice.name.as_str()),
        Some(player::EVENT_VOLUME_CHANGED)
    );
    provider.stop().await;
    controller.close().await;
}
