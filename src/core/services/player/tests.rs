//! The media player service's tests: shapes, bounds, queue, events.

use super::*;
use crate::core::rpc::encode_event;
use crate::core::rpc::events::EventSink;
use crate::core::rpc::xmlrpc::Value;
use crate::core::rpc::{decode_event, decode_output, encode_params, Method};
use crate::core::rpc::{CallContext, Service};
use tokio::sync::mpsc;

fn ctx() -> CallContext {
    CallContext {
        caller: "home@home.test/phone".parse().expect("jid"),
        tunnel: false,
    }
}

async fn call<M: Method<Service = Player>>(
    s: &PlayerService,
    params: M::Params,
) -> Result<M::Output> {
    let params = encode_params::<M>(&params)?;
    let v = s.call(M::VERB, params, &ctx()).await?;
    decode_output::<M>(v)
}

fn bound(interval: Duration) -> (PlayerService, mpsc::UnboundedReceiver<EventNotice>) {
    let service =
        PlayerService::with_position_interval(Arc::new(SimulatedPlayer::default()), interval);
    let (tx, rx) = mpsc::unbounded_channel();
    service.bind_events(EventSink::new(SERVICE, tx));
    (service, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<EventNotice>) -> Vec<EventNotice> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::test]
async fn play_pause_resume_emit_state_changes() {
    let (service, mut rx) = bound(Duration::from_secs(60));
    let status = call::<Play>(&service, ("file:///a.mkv".into(),))
        .await
        .expect("play");
    assert_eq!(status.state, PlaybackState::Playing);
    assert_eq!(status.uri.as_deref(), Some("file:///a.mkv"));
    assert_eq!(status.duration_ms, Some(SimulatedPlayer::DURATION_MS));
    let paused = call::<Pause>(&service, ()).await.expect("pause");
    assert_eq!(paused.state, PlaybackState::Paused);
    let events: Vec<_> = drain(&mut rx)
        .into_iter()
        .filter(|e| e.name == EVENT_STATE_CHANGED)
        .collect();
    assert_eq!(events.len(), 2);
    // Status and a second pause change nothing: no event.
    call::<Status>(&service, ()).await.expect("status");
    call::<Pause>(&service, ()).await.expect("pause again");
    assert!(drain(&mut rx).iter().all(|e| e.name != EVENT_STATE_CHANGED));
}

#[tokio::test]
async fn wrong_shapes_are_bad_params_and_unknown_verbs_unknown() {
    let (service, _rx) = bound(Duration::from_secs(60));
    for (verb, params) in [
        ("play", vec![]),
        ("play", vec![Value::Int(3)]),
        ("play", vec![Value::String(String::new())]),
        ("play", vec![Value::String("x".repeat(MAX_URI_BYTES + 1))]),
        ("pause", vec![Value::Int(3)]),
        ("seek", vec![Value::Int(-1)]),
        ("seek", vec![Value::String("10".into())]),
        ("set_volume", vec![Value::Int(101)]),
        ("set_volume", vec![Value::Int(-1)]),
        ("mute", vec![Value::String("yes".into())]),
        ("enqueue", vec![Value::String("u".into())]),
        (
            "enqueue",
            vec![
                Value::String("u".into()),
                Value::String("t".repeat(MAX_TITLE_BYTES + 1)),
            ],
        ),
    ] {
        let e = service
            .call(verb, params.clone(), &ctx())
            .await
            .expect_err("bad");
        assert_eq!(e.kind(), ErrorKind::BadParams, "{verb}{params:?}: {e}");
    }
    let e = service
        .call("explode", vec![], &ctx())
        .await
        .expect_err("unknown");
    assert_eq!(e.kind(), ErrorKind::UnknownMethod);
    for verb in ["pause", "resume", "next", "previous"] {
        let e = service
            .call(verb, vec![], &ctx())
            .await
            .expect_err("stopped");
        assert_eq!(e.fault_code(), Some(FAULT_INVALID_STATE), "{verb}");
    }
    let e = call::<Seek>(&service, (5,)).await.expect_err("stopped");
    assert_eq!(e.fault_code(), Some(FAULT_INVALID_STATE));
    call::<Play>(&service, ("u".into(),)).await.expect("play");
    let e = call::<Seek>(&service, (SimulatedPlayer::DURATION_MS + 1,))
        .await
        .expect_err("beyond the end");
    assert_eq!(e.fault_code(), Some(FAULT_OUT_OF_RANGE));
}

#[tokio::test]
async fn queue_next_previous_volume_and_mute() {
    let (service, mut rx) = bound(Duration::from_secs(60));
    call::<Play>(&service, ("a".into(),)).await.expect("play");
    call::<Enqueue>(&service, ("b".into(), Some("Bee".into())))
        .await
        .expect("enqueue");
    let q = call::<Enqueue>(&service, ("c".into(), None))
        .await
        .expect("enqueue");
    assert_eq!(q.items.len(), 3);
    assert_eq!(q.current, Some(0));
    let s = call::<Next>(&service, ()).await.expect("next");
    assert_eq!(
        (s.uri.as_deref(), s.title.as_deref()),
        (Some("b"), Some("Bee"))
    );
    call::<Next>(&service, ()).await.expect("next");
    let e = call::<Next>(&service, ()).await.expect_err("end");
    assert_eq!(e.fault_code(), Some(FAULT_INVALID_STATE));
    let s = call::<Previous>(&service, ()).await.expect("previous");
    assert_eq!(s.uri.as_deref(), Some("b"));
    let q = call::<ClearQueue>(&service, ()).await.expect("clear");
    assert_eq!(q.items.len(), 1);
    assert_eq!(q.current, Some(0));
    assert_eq!(call::<GetQueue>(&service, ()).await.expect("queue"), q);

    let v = call::<SetVolume>(&service, (80,)).await.expect("volume");
    assert_eq!(
        v,
        VolumeState {
            volume: 80,
            muted: false
        }
    );
    let v = call::<Mute>(&service, (true,)).await.expect("mute");
    assert!(v.muted);
    call::<Mute>(&service, (true,)).await.expect("mute again");
    let s = call::<Status>(&service, ()).await.expect("status");
    assert_eq!((s.volume, s.muted), (80, true));

    let events = drain(&mut rx);
    let volume: Vec<VolumeState> = events
        .iter()
        .filter(|e| e.name == EVENT_VOLUME_CHANGED)
        .map(|e| decode_event::<VolumeChanged>(e.params.clone()).expect("payload"))
        .collect();
    assert_eq!(volume.len(), 2, "no event for an unchanged mute");
    let queues = events
        .iter()
        .filter(|e| e.name == EVENT_QUEUE_CHANGED)
        .count();
    assert!(queues >= 5, "{queues}");
}

#[tokio::test]
async fn position_events_are_rate_limited() {
    let (service, mut rx) = bound(Duration::from_millis(100));
    call::<Play>(&service, ("a".into(),)).await.expect("play");
    tokio::time::sleep(Duration::from_millis(550)).await;
    let positions: Vec<PositionUpdate> = drain(&mut rx)
        .into_iter()
        .filter(|e| e.name == EVENT_POSITION)
        .map(|e| decode_event::<Position>(e.params).expect("payload"))
        .collect();
    assert!(
        (3..=7).contains(&positions.len()),
        "about 5 position events in 550 ms at 100 ms, got {}",
        positions.len()
    );
    assert!(positions
        .windows(2)
        .all(|w| w[0].position_ms <= w[1].position_ms));
    // Asking for a faster rate than the limit still gets the limit.
    let s = PlayerService::with_position_interval(
        Arc::new(SimulatedPlayer::default()),
        Duration::from_millis(1),
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    s.bind_events(EventSink::new(SERVICE, tx));
    call::<Play>(&s, ("a".into(),)).await.expect("play");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let n = drain(&mut rx)
        .iter()
        .filter(|e| e.name == EVENT_POSITION)
        .count();
    assert!(
        n <= 5,
        "rate limit of 100 ms exceeded: {n} events in 350 ms"
    );
}

#[test]
fn status_value_round_trips_and_rejects_garbage() {
    let status = PlayerStatus {
        uri: Some("u".into()),
        title: None,
        state: PlaybackState::Paused,
        position_ms: 1234,
        duration_ms: Some(5000),
        volume: 10,
        muted: false,
    };
    assert_eq!(
        PlayerStatus::from_value(&status.to_value()).expect("parse"),
        status
    );
    assert!(PlayerStatus::from_value(&Value::Int(1)).is_err());
    let unknown_state = Value::Struct(vec![
        ("state".into(), Value::String("flying".into())),
        ("position".into(), Value::Int(0)),
    ]);
    assert!(PlayerStatus::from_value(&unknown_state).is_err());
}

#[test]
fn a_notice_decodes_to_its_typed_player_event_and_nothing_else() {
    let update = PositionUpdate {
        position_ms: 1500,
        duration_ms: Some(9000),
    };
    let notice = EventNotice {
        service: "player".into(),
        name: EVENT_POSITION.into(),
        params: encode_event::<Position>(&update).expect("encode"),
    };
    assert_eq!(
        PlayerEvent::decode(&notice)
            .expect("a player event")
            .expect("its shape"),
        PlayerEvent::Position(update)
    );
    // Another service's event of the same name is not a player event.
    let other = EventNotice {
        service: "recorder".into(),
        ..notice.clone()
    };
    assert!(PlayerEvent::decode(&other).is_none());
    // The right name with the wrong payload is a protocol error, not a silent drop.
    let wrong = EventNotice {
        params: vec![Value::Int(3)],
        ..notice
    };
    let e = PlayerEvent::decode(&wrong)
        .expect("named")
        .expect_err("shape");
    assert_eq!(e.kind(), ErrorKind::Protocol);
}
