//! The exported (UniFFI) service API, tested in Rust with the same scenarios as the Kotlin
//! ServicesTest: an app-implemented media player as a provider, typed player/recorder/library calls,
//! event selection, and what an app's player throws.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pmn::{
    ConnectionConfig, Controller, ItemKind, MediaPlayerBackend, Playback, PlaybackState, PmnError,
    ProviderInfo, RecordingState, ServiceEvent, VolumeState,
};
use tokio::sync::mpsc;

fn config(device: &str) -> ConnectionConfig {
    ffi_config(device)
}

struct Phone {
    controller: Arc<Controller>,
    providers: mpsc::UnboundedReceiver<ProviderInfo>,
    events: mpsc::UnboundedReceiver<ServiceEvent>,
}

async fn phone() -> Phone {
    let (ptx, providers) = mpsc::unbounded_channel();
    let (etx, events) = mpsc::unbounded_channel();
    let controller = Controller::new(
        config("phone"),
        Arc::new(ChannelListener {
            providers: ptx,
            events: etx,
        }),
    )
    .expect("controller");
    controller.connect().await.expect("connect");
    Phone {
        controller,
        providers,
        events,
    }
}

impl Phone {
    async fn provider(&mut self, name: &str) -> ProviderInfo {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let p = self.providers.recv().await.expect("listener open");
                if p.name == name {
                    return p;
                }
            }
        })
        .await
        .expect("provider appears")
    }

    async fn event(&mut self, accept: impl Fn(&ServiceEvent) -> bool) -> ServiceEvent {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let e = self.events.recv().await.expect("listener open");
                if accept(&e) {
                    return e;
                }
            }
        })
        .await
        .expect("event arrives")
    }
}

/// An app's player, in Rust here (Kotlin in ServicesTest.kt).
#[derive(Default)]
struct AppPlayer {
    calls: Mutex<Vec<String>>,
    state: Mutex<Option<Playback>>,
    fail_load: Option<PmnError>,
}

impl AppPlayer {
    fn note(&self, call: String) {
        self.calls.lock().expect("lock").push(call);
    }
    fn update(&self, f: impl FnOnce(&mut Playback)) {
        let mut s = self.state.lock().expect("lock");
        let p = s.get_or_insert(Playback {
            state: PlaybackState::Stopped,
            position_ms: 0,
            duration_ms: None,
            volume: 50,
            muted: false,
        });
        f(p);
    }
}

impl MediaPlayerBackend for AppPlayer {
    fn load(&self, uri: String) -> Result<(), PmnError> {
        if let Some(e) = &self.fail_load {
            return Err(e.clone());
        }
        self.note(format!("load {uri}"));
        self.update(|p| {
            p.state = PlaybackState::Playing;
            p.position_ms = 0;
            p.duration_ms = Some(600_000);
        });
        Ok(())
    }
    fn pause(&self) -> Result<(), PmnError> {
        self.note("pause".into());
        self.update(|p| p.state = PlaybackState::Paused);
        Ok(())
    }
    fn resume(&self) -> Result<(), PmnError> {
        self.note("resume".into());
        self.update(|p| p.state = PlaybackState::Playing);
        Ok(())
    }
    fn stop(&self) -> Result<(), PmnError> {
        self.note("stop".into());
        self.update(|p| {
            p.state = PlaybackState::Stopped;
            p.duration_ms = None;
        });
        Ok(())
    }
    fn seek(&self, position_ms: i64) -> Result<(), PmnError> {
        self.note(format!("seek {position_ms}"));
        self.update(|p| p.position_ms = position_ms);
        Ok(())
    }
    fn set_volume(&self, volume: i32) -> Result<(), PmnError> {
        self.note(format!("volume {volume}"));
        self.update(|p| p.volume = volume);
        Ok(())
    }
    fn set_muted(&self, muted: bool) -> Result<(), PmnError> {
        self.note(format!("muted {muted}"));
        self.update(|p| p.muted = muted);
        Ok(())
    }
    fn playback(&self) -> Result<Playback, PmnError> {
        let mut out = None;
        self.update(|p| out = Some(*p));
        out.ok_or_else(|| PmnError::Internal {
            detail: "unreachable".into(),
            outcome: pmn::CallOutcome::NotRun,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_player_is_a_provider_driven_through_the_exported_api() {
    let backend = Arc::new(AppPlayer::default());
    let provider =
        pmn::start_player_provider(config("app-tv"), "App Player".into(), backend.clone())
            .await
            .expect("provider");
    let mut phone = phone().await;
    let tv = phone.provider("App Player").await.jid;
    let c = phone.controller.clone();
    let s = c
        .player(tv.clone())
        .unwrap()
        .play("file:///one".into())
        .await
        .expect("play");
    assert_eq!(
        (s.state, s.duration_ms),
        (PlaybackState::Playing, Some(600_000))
    );
    assert_eq!(
        c.player(tv.clone())
            .unwrap()
            .seek(1234)
            .await
            .expect("seek")
            .position_ms,
        1234
    );
    c.player(tv.clone())
        .unwrap()
        .enqueue("file:///two".into(), Some("Two".into()))
        .await
        .expect("enqueue");
    assert_eq!(
        c.player(tv.clone())
            .unwrap()
            .queue()
            .await
            .expect("queue")
            .items
            .len(),
        2
    );
    assert_eq!(
        c.player(tv.clone())
            .unwrap()
            .next()
            .await
            .expect("next")
            .title
            .as_deref(),
        Some("Two")
    );
    assert_eq!(
        c.player(tv.clone())
            .unwrap()
            .previous()
            .await
            .expect("previous")
            .uri
            .as_deref(),
        Some("file:///one")
    );
    assert_eq!(
        c.player(tv.clone())
            .unwrap()
            .clear_queue()
            .await
            .expect("clear")
            .items
            .len(),
        1
    );
    let handle = c
        .subscribe_events(tv.clone(), "player".into(), vec!["volume-changed".into()])
        .await
        .expect("subscribe");
    assert_eq!(
        c.player(tv.clone())
            .unwrap()
            .set_volume(30)
            .await
            .expect("volume"),
        VolumeState {
            volume: 30,
            muted: false
        }
    );
    let e = phone
        .event(|e| matches!(e, ServiceEvent::PlayerVolumeChanged { .. }))
        .await;
    assert!(matches!(e, ServiceEvent::PlayerVolumeChanged { volume, .. } if volume.volume == 30));
    assert!(
        c.player(tv.clone())
            .unwrap()
            .mute(true)
            .await
            .expect("mute")
            .muted
    );
    handle.cancel();
    assert!(matches!(
        c.player(tv.clone()).unwrap().set_volume(101).await,
        Err(PmnError::BadParams { .. })
    ));
    assert!(matches!(
        c.player(tv.clone()).unwrap().seek(700_000).await,
        Err(PmnError::Fault { code: 416, .. })
    ));
    assert!(matches!(
        c.library(tv.clone())
            .unwrap()
            .browse(String::new(), 0, 10)
            .await,
        Err(PmnError::UnknownMethod { .. })
    ));
    assert!(matches!(
        c.subscribe_events(tv.clone(), "player".into(), vec!["nope".into()])
            .await,
        Err(PmnError::BadParams { .. })
    ));
    assert_eq!(
        backend.calls.lock().expect("lock").clone(),
        vec![
            "load file:///one",
            "seek 1234",
            "load file:///two",
            "load file:///one",
            "volume 30",
            "muted true"
        ]
    );
    // What the app's player throws: its fault code, or 500 for anything else.
    let typed = pmn::start_player_provider(
        config("app-tv"),
        "Refusing".into(),
        Arc::new(AppPlayer {
            fail_load: Some(PmnError::Fault {
                code: 451,
                detail: "not here".into(),
            }),
            ..AppPlayer::default()
        }),
    )
    .await
    .expect("provider");
    let refusing = phone.provider("Refusing").await.jid;
    assert!(matches!(
        c.player(refusing.clone())
            .unwrap()
            .play("file:///x".into())
            .await,
        Err(PmnError::Fault { code: 451, .. })
    ));
    let broken = pmn::start_player_provider(
        config("app-tv"),
        "Broken".into(),
        Arc::new(AppPlayer {
            fail_load: Some(PmnError::Timeout {
                detail: "decoder hung".into(),
                outcome: pmn::CallOutcome::Unknown,
            }),
            ..AppPlayer::default()
        }),
    )
    .await
    .expect("provider");
    let broken_jid = phone.provider("Broken").await.jid;
    assert!(matches!(
        c.player(broken_jid.clone())
            .unwrap()
            .play("file:///x".into())
            .await,
        Err(PmnError::Fault { code: 500, .. })
    ));
    assert_eq!(
        c.player(broken_jid)
            .unwrap()
            .status()
            .await
            .expect("still serving")
            .state,
        PlaybackState::Stopped
    );
    for p in [provider, typed, broken] {
        p.stop().await;
    }
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_and_library_through_the_exported_api() {
    let provider = pmn::start_demo_provider(config("box"), "Demo Box".into(), 10_000)
        .await
        .expect("provider");
    assert!(matches!(
        pmn::start_demo_provider(config("box"), "  ".into(), 1).await,
        Err(PmnError::Config { .. })
    ));
    let mut phone = phone().await;
    let info = phone.provider("Demo Box").await;
    assert_eq!(info.services.len(), 3);
    let (c, box_) = (phone.controller.clone(), info.jid);
    assert!(c
        .recorder(box_.clone())
        .unwrap()
        .channels()
        .await
        .expect("channels")
        .iter()
        .any(|ch| ch.id == "one"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let _sub = c
        .subscribe(box_.clone(), "recorder".into())
        .await
        .expect("subscribe");
    let rec = c
        .recorder(box_.clone())
        .unwrap()
        .schedule("one".into(), now + 1, now + 2, "News".into())
        .await
        .expect("schedule");
    assert_eq!((rec.start, rec.state), (now + 1, RecordingState::Scheduled));
    assert!(matches!(
        c.recorder(box_.clone())
            .unwrap()
            .schedule("two".into(), now + 1, now + 3, "Clash".into())
            .await,
        Err(PmnError::Fault { code: 409, .. })
    ));
    assert!(matches!(
        c.recorder(box_.clone())
            .unwrap()
            .schedule("two".into(), now - 9, now - 1, "Past".into())
            .await,
        Err(PmnError::Fault { code: 422, .. })
    ));
    let later = c
        .recorder(box_.clone())
        .unwrap()
        .schedule("two".into(), now + 600, now + 700, "Later".into())
        .await
        .expect("schedule");
    assert_eq!(
        c.recorder(box_.clone())
            .unwrap()
            .scheduled()
            .await
            .expect("list")
            .len(),
        2
    );
    assert_eq!(
        c.recorder(box_.clone())
            .unwrap()
            .cancel(later.id)
            .await
            .expect("cancel")
            .id,
        later.id
    );
    let finished = phone
        .event(|e| {
            matches!(e, ServiceEvent::Recording { recording, .. } if recording.state == RecordingState::Finished)
        })
        .await;
    assert!(
        matches!(finished, ServiceEvent::Recording { recording, .. } if recording.id == rec.id)
    );

    let page = c
        .library(box_.clone())
        .unwrap()
        .browse("videos".into(), 9_900, 200)
        .await
        .expect("browse");
    assert_eq!((page.items.len(), page.total), (100, 10_000));
    let hits = c
        .library(box_.clone())
        .unwrap()
        .search("Film 4242".into(), 0, 10)
        .await
        .expect("search");
    assert_eq!(hits.total, 1);
    let item = c
        .library(box_.clone())
        .unwrap()
        .item("videos/4242".into())
        .await
        .expect("item");
    assert_eq!(item.kind, ItemKind::Video);
    assert!(matches!(
        c.library(box_.clone())
            .unwrap()
            .browse("videos".into(), 0, 0)
            .await,
        Err(PmnError::BadParams { .. })
    ));
    assert!(matches!(
        c.library(box_.clone())
            .unwrap()
            .item("videos/10000".into())
            .await,
        Err(PmnError::Fault { code: 404, .. })
    ));
    let chunk = c
        .library(box_.clone())
        .unwrap()
        .read("videos/4242".into(), 99_990, 1000)
        .await
        .expect("read");
    assert_eq!(
        (chunk.offset, chunk.size, chunk.data.len()),
        (99_990, 100_000, 10)
    );
    assert_eq!(
        chunk.data,
        pmn::core::services::library::generated_bytes(4242, 99_990, 10)
    );
    assert!(matches!(
        c.library(box_.clone())
            .unwrap()
            .read("videos/4242".into(), 0, 1 << 20)
            .await,
        Err(PmnError::BadParams { .. })
    ));
    assert!(matches!(
        c.library(box_.clone())
            .unwrap()
            .read("videos".into(), 0, 10)
            .await,
        Err(PmnError::Fault { code: 404, .. })
    ));
    // The provider's JID is parsed once, when the app takes the facet.
    assert!(matches!(
        c.recorder("not a jid".into()),
        Err(PmnError::Config { .. })
    ));
    provider.stop().await;
    c.disconnect().await;
}

/// A resync listener that reports into a channel.
struct Resyncs(mpsc::UnboundedSender<(String, String)>);

impl pmn::ResyncListener for Resyncs {
    fn on_resync(&self, provider: String, service: String) -> Result<(), PmnError> {
        let _ = self.0.send((provider, service));
        Ok(())
    }
}

/// The app hears when a subscription was restored after a gap (here: the TV restarted and forgot
/// its subscribers), so it knows to read the state again; before `connect` the watch is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_told_when_a_subscription_was_restored_after_a_gap() {
    let unconnected =
        Controller::new(config("phone-early"), ChannelListener::quiet()).expect("new");
    let (tx, mut resyncs) = mpsc::unbounded_channel();
    assert!(matches!(
        unconnected.watch_resyncs(Arc::new(Resyncs(tx.clone()))),
        Err(PmnError::NotConnected { .. })
    ));

    let backend = Arc::new(AppPlayer::default());
    // The same config twice: the same full JID comes back.
    let tv_config = config("app-tv");
    let provider =
        pmn::start_player_provider(tv_config.clone(), "App Player".into(), backend.clone())
            .await
            .expect("provider");
    let mut phone = phone().await;
    let tv = phone.provider("App Player").await.jid;
    let _watch = phone
        .controller
        .watch_resyncs(Arc::new(Resyncs(tx)))
        .expect("watch");
    let _sub = phone
        .controller
        .subscribe(tv.clone(), "player".into())
        .await
        .expect("subscribe");
    provider.stop().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while phone.controller.providers().iter().any(|p| p.jid == tv) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the phone sees the TV go");
    let provider = pmn::start_player_provider(tv_config, "App Player".into(), backend.clone())
        .await
        .expect("provider again");
    phone.provider("App Player").await;
    let (who, service) = tokio::time::timeout(Duration::from_secs(10), resyncs.recv())
        .await
        .expect("a resync after the TV came back")
        .expect("listener open");
    assert_eq!((who.as_str(), service.as_str()), (tv.as_str(), "player"));
    // The restored subscription delivers again.
    phone
        .controller
        .player(tv.clone())
        .unwrap()
        .play("file:///again".into())
        .await
        .expect("play");
    phone
        .event(|e| matches!(e, ServiceEvent::PlayerStateChanged { .. }))
        .await;
    provider.stop().await;
    phone.controller.disconnect().await;
}
