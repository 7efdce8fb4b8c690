//! Discovery, RPC and events between a real provider and controller through Prosody, and every kind
//! of bad input a provider must answer without falling over.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::discovery::DirectoryUpdate;
use pmn::core::error::ErrorKind;
use pmn::core::rpc::{self, xmlrpc::Value};
use pmn::core::services::player::{PlaybackState, EVENT_STATE_CHANGED};
use pmn::core::session::{IqReply, Session};
use tokio_xmpp::Stanza;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_discovers_provider_with_its_services_and_sees_it_leave() {
    let controller = start_controller().await;
    let mut updates = controller.updates();
    let provider = start_player("Living room TV").await;
    let found = discover(&controller, &provider).await;
    assert_eq!(found.name, "Living room TV");
    assert_eq!(found.services, vec![PLAYER.to_string()]);

    let jid = found.jid.clone();
    provider.stop().await;
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match updates.recv().await {
                Ok(DirectoryUpdate::Removed(j)) if j == jid => return,
                Ok(_) => {}
                Err(e) => panic!("updates ended: {e}"),
            }
        }
    })
    .await;
    assert!(gone.is_ok(), "provider never reported offline");
    assert!(controller.providers().iter().all(|p| p.jid != jid));
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_caps_are_queried_once() {
    let mut config = ControllerConfig::plain(session_config(&HOME, "phone"));
    let (tap_tx, mut tap) = tokio::sync::mpsc::unbounded_channel();
    config.session.outbound_tap = Some(tap_tx);
    let controller = Controller::connect(config).await.expect("controller");
    let a = start_player("Same model").await;
    let b = start_player("Same model").await;
    discover(&controller, &a).await;
    discover(&controller, &b).await;
    let mut disco_queries = HashSet::new();
    while let Ok(stanza) = tap.try_recv() {
        if let Stanza::Iq(Iq::Get { to, payload, .. }) = stanza {
            if payload.is("query", xmpp_parsers::ns::DISCO_INFO) {
                disco_queries.insert(to);
            }
        }
    }
    let ours: Vec<_> = disco_queries
        .iter()
        .flatten()
        .filter(|j| {
            [a.session().jid(), b.session().jid()]
                .iter()
                .flatten()
                .any(|p| j.try_as_full().is_ok_and(|f| f == p))
        })
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "both providers share caps: one query, got {ours:?}"
    );
    a.stop().await;
    b.stop().await;
    controller.close().await;
}

/// The disco#info queries a tapped controller sent to `providers`.
fn info_queries_to(
    tap: &mut tokio::sync::mpsc::UnboundedReceiver<Stanza>,
    providers: &[&pmn::core::provider::Provider],
) -> usize {
    let mut count = 0;
    while let Ok(stanza) = tap.try_recv() {
        if let Stanza::Iq(Iq::Get {
            to: Some(to),
            payload,
            ..
        }) = stanza
        {
            let to_provider = providers
                .iter()
                .filter_map(|p| p.session().jid())
                .any(|p| to.try_as_full().is_ok_and(|f| *f == p));
            if to_provider && payload.is("query", xmpp_parsers::ns::DISCO_INFO) {
                count += 1;
            }
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_saved_caps_cache_lists_known_devices_without_asking_them() {
    let tv = start_player("Saved-cache TV").await;
    let radio = start_player("Saved-cache radio").await;
    let mut config = ControllerConfig::plain(session_config(&HOME, "phone"));
    let (tap_tx, mut tap) = tokio::sync::mpsc::unbounded_channel();
    config.session.outbound_tap = Some(tap_tx);
    let first = Controller::connect(config).await.expect("controller");
    discover(&first, &tv).await;
    discover(&first, &radio).await;
    assert_eq!(
        info_queries_to(&mut tap, &[&tv, &radio]),
        2,
        "a cold start asks each"
    );
    let saved = first.caps_snapshot().to_string();
    first.close().await;

    // The next start, from the stored text.
    let snapshot: pmn::core::discovery::CapsSnapshot = saved.parse().expect("reads back");
    assert_eq!(snapshot.refused(), 0);
    let mut config = ControllerConfig::plain(session_config(&HOME, "phone"));
    let (tap_tx, mut tap) = tokio::sync::mpsc::unbounded_channel();
    config.session.outbound_tap = Some(tap_tx);
    config.caps_cache = Some(snapshot);
    let second = Controller::connect(config).await.expect("controller");
    let found = discover(&second, &tv).await;
    assert_eq!(found.name, "Saved-cache TV");
    assert_eq!(found.services, vec![PLAYER.to_string()]);
    discover(&second, &radio).await;
    assert_eq!(
        info_queries_to(&mut tap, &[&tv, &radio]),
        0,
        "known caps are not asked for again"
    );

    // A device whose caps are not in the cache (a new name is a new hash) is asked as before.
    let renamed = start_player("Renamed TV").await;
    let found = second
        .wait_for_provider(|p| p.name == "Renamed TV", Duration::from_secs(10))
        .await
        .expect("renamed device listed");
    assert_eq!(found.services, vec![PLAYER.to_string()]);
    assert_eq!(info_queries_to(&mut tap, &[&renamed]), 1);
    for p in [tv, radio, renamed] {
        p.stop().await;
    }
    second.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_announces_no_service_feature() {
    let controller = start_controller().await;
    let (probe, _inbound) = Session::connect(session_config(&HOME, "probe"))
        .await
        .expect("probe");
    let iq = Iq::Get {
        from: None,
        to: controller.session().jid().map(Jid::from),
        id: String::new(),
        payload: DiscoInfoQuery { node: None }.into(),
    };
    let reply = probe
        .request(iq, Duration::from_secs(5))
        .await
        .expect("answer");
    let IqReply::Result(Some(payload)) = reply else {
        panic!("expected disco#info, got {reply:?}");
    };
    let info = DiscoInfoResult::try_from(payload).expect("disco#info");
    assert!(!info.features.contains(PLAYER), "{:?}", info.features);
    assert!(info.identities.iter().all(|i| i.category != "automation"));
    probe.close().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_pause_status_and_state_events() {
    let controller = start_controller().await;
    let provider = start_player("TV").await;
    let tv = discover(&controller, &provider).await;
    let mut events = controller.events();
    // Only state changes: the provider must not send the other kinds (queue, position, volume).
    let _subscription = controller
        .subscribe_events(&tv.jid, "player", Some(&[EVENT_STATE_CHANGED]))
        .await
        .expect("subscribe");
    assert_eq!(provider.subscription_count(), 1);

    let player = controller.player(tv.jid.clone());
    let playing = player.play("file:///movies/a.mkv").await.expect("play");
    assert_eq!(playing.state, PlaybackState::Playing);
    assert_eq!(playing.uri.as_deref(), Some("file:///movies/a.mkv"));
    let paused = player.pause().await.expect("pause");
    assert_eq!(paused.state, PlaybackState::Paused);
    let status = player.status().await.expect("status");
    assert_eq!(status, paused, "position frozen while paused");

    let mut states = Vec::new();
    while states.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("event in time")
            .expect("event");
        assert_eq!(event.provider, tv.jid);
        assert_eq!(event.notice.name, EVENT_STATE_CHANGED);
        let status = pmn::core::services::player::PlayerStatus::from_value(&event.notice.params[0])
            .expect("status param");
        states.push(status.state);
    }
    assert_eq!(states, vec![PlaybackState::Playing, PlaybackState::Paused]);
    provider.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_method_bad_params_and_faults_are_typed() {
    let controller = start_controller().await;
    let provider = start_player("TV").await;
    let tv = discover(&controller, &provider).await;

    let e = controller
        .call(&tv.jid, "player.explode", vec![])
        .await
        .expect_err("unknown");
    assert_eq!(e.kind(), ErrorKind::UnknownMethod, "{e}");
    let e = controller
        .call(&tv.jid, "nosuchservice.play", vec![])
        .await
        .expect_err("unknown service");
    assert_eq!(e.kind(), ErrorKind::UnknownMethod, "{e}");
    let e = controller
        .call(&tv.jid, "player.play", vec![Value::Int(7)])
        .await
        .expect_err("bad params");
    assert_eq!(e.kind(), ErrorKind::BadParams, "{e}");
    let e = controller
        .player(tv.jid.clone())
        .pause()
        .await
        .expect_err("stopped");
    assert_eq!(e.kind(), ErrorKind::Fault, "{e}");
    assert_eq!(e.fault_code(), Some(409));
    // And it still serves.
    let ok = controller
        .player(tv.jid.clone())
        .status()
        .await
        .expect("still serving");
    assert_eq!(ok.state, PlaybackState::Stopped);
    provider.stop().await;
    controller.close().await;
}

/// Sends a raw iq set with `payload` to the provider and returns the reply.
async fn raw_set(from: &Session, to: &Jid, payload: Element) -> IqReply {
    let iq = Iq::Set {
        from: None,
        to: Some(to.clone()),
        id: String::new(),
        payload,
    };
    from.request(iq, Duration::from_secs(5))
        .await
        .expect("an answer")
}

fn condition(reply: &IqReply) -> Option<DefinedCondition> {
    match reply {
        IqReply::Error(e) => Some(e.defined_condition.clone()),
        IqReply::Result(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_payloads_get_bad_request_and_provider_keeps_serving() {
    let provider = start_player("TV").await;
    let to = Jid::from(provider.session().jid().expect("online"));
    let (raw, _inbound) = Session::connect(session_config(&HOME, "raw"))
        .await
        .expect("raw session");
    let hostile = [
        // Not XML-RPC at all.
        "<query xmlns='jabber:iq:rpc'><hello/></query>",
        // methodCall without a methodName.
        "<query xmlns='jabber:iq:rpc'><methodCall><params/></methodCall></query>",
        // Unknown value type.
        "<query xmlns='jabber:iq:rpc'><methodCall><methodName>player.play</methodName><params><param><value><blob>x</blob></value></param></params></methodCall></query>",
        // Bad integer.
        "<query xmlns='jabber:iq:rpc'><methodCall><methodName>player.play</methodName><params><param><value><i4>99999999999</i4></value></param></params></methodCall></query>",
        // A response where a call belongs.
        "<query xmlns='jabber:iq:rpc'><methodResponse><params><param><value><i4>1</i4></value></param></params></methodResponse></query>",
    ];
    for xml in hostile {
        let payload: Element = xml.parse().expect("test XML parses");
        let reply = raw_set(&raw, &to, payload).await;
        assert_eq!(
            condition(&reply),
            Some(DefinedCondition::BadRequest),
            "{xml}: {reply:?}"
        );
    }
    // Nesting deeper than the codec's limit: refused by the limit (tests/hostile.rs goes deeper).
    let depth = 40;
    let deep = format!(
        "<query xmlns='jabber:iq:rpc'><methodCall><methodName>player.play</methodName><params><param>{}<value><i4>1</i4></value>{}</param></params></methodCall></query>",
        "<value><array><data>".repeat(depth),
        "</data></array></value>".repeat(depth)
    );
    let reply = raw_set(&raw, &to, deep.parse().expect("deep XML parses")).await;
    assert_eq!(
        condition(&reply),
        Some(DefinedCondition::BadRequest),
        "{reply:?}"
    );
    // An iq the provider does not serve at all.
    let reply = raw_set(
        &raw,
        &to,
        "<query xmlns='urn:example:nothing'/>".parse().expect("xml"),
    )
    .await;
    assert_eq!(
        condition(&reply),
        Some(DefinedCondition::ServiceUnavailable)
    );

    let status = rpc::call(&raw, &to, "player.status", vec![], Duration::from_secs(5))
        .await
        .expect("provider still serves");
    assert!(status.get("state").is_some());
    raw.close().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stranger_is_forbidden_and_learns_nothing() {
    let provider = start_player("TV").await;
    let to = Jid::from(provider.session().jid().expect("online"));
    let (stranger, _inbound) = Session::connect(session_config(&STRANGER, "intruder"))
        .await
        .expect("stranger logs in");
    let e = rpc::call(
        &stranger,
        &to,
        "player.play",
        vec!["file:///x".into()],
        Duration::from_secs(5),
    )
    .await
    .expect_err("forbidden");
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    let iq = Iq::Get {
        from: None,
        to: Some(to.clone()),
        id: String::new(),
        payload: DiscoInfoQuery { node: None }.into(),
    };
    let reply = stranger
        .request(iq, Duration::from_secs(5))
        .await
        .expect("answer");
    assert_eq!(
        condition(&reply),
        Some(DefinedCondition::Forbidden),
        "{reply:?}"
    );
    stranger.close().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_silent_peer_times_out() {
    // A session of the network that reads everything and answers nothing.
    let (silent, mut inbound) = Session::connect(session_config(&HOME, "silent"))
        .await
        .expect("silent peer");
    let drain = tokio::spawn(async move { while inbound.recv().await.is_some() {} });
    let mut config = ControllerConfig::plain(session_config(&HOME, "phone"));
    config.rpc_timeout = Duration::from_millis(300);
    let controller = Controller::connect(config).await.expect("controller");
    let to = silent.jid().expect("online");
    let e = controller
        .call(&to, "player.status", vec![])
        .await
        .expect_err("timeout");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    controller.close().await;
    silent.close().await;
    drain.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_forgets_subscriber_that_goes_offline_and_only_ever_writes_to_those_who_wrote_first(
) {
    let mut session = session_config(&HOME, "tv");
    let (tap_tx, mut tap) = tokio::sync::mpsc::unbounded_channel();
    session.outbound_tap = Some(tap_tx);
    let provider = start_player_with(session, "TV").await;
    let controller = start_controller().await;
    let tv = discover(&controller, &provider).await;
    let subscription = controller
        .subscribe(&tv.jid, "player")
        .await
        .expect("subscribe");
    controller
        .player(tv.jid.clone())
        .play("file:///a")
        .await
        .expect("play");
    assert_eq!(provider.subscription_count(), 1);
    std::mem::forget(subscription); // leave without unsubscribing, like a phone that dies
    controller.close().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while provider.subscription_count() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("subscriber forgotten after its unavailable presence");

    // Every stanza the provider sent went either to the server (no 'to') or to a controller
    // that had sent it a request before.
    let mut contacted: HashSet<Jid> = HashSet::new();
    let sent: Vec<Stanza> = std::iter::from_fn(|| tap.try_recv().ok()).collect();
    assert!(!sent.is_empty());
    // The provider's inbound is not tapped; what it answered tells us who asked: an iq
    // result/error carries the requester as 'to' and is by construction a reply.
    for stanza in &sent {
        match stanza {
            Stanza::Iq(Iq::Result { to: Some(to), .. })
            | Stanza::Iq(Iq::Error { to: Some(to), .. }) => {
                contacted.insert(to.clone());
            }
            Stanza::Iq(Iq::Get { to, .. }) | Stanza::Iq(Iq::Set { to, .. }) => {
                panic!("provider sent a request to {to:?}: providers never initiate");
            }
            Stanza::Message(m) => {
                let to = m.to.clone().expect("events are addressed");
                assert!(
                    contacted.contains(&to),
                    "event to {to} which never contacted the provider"
                );
            }
            Stanza::Presence(p) => assert!(p.to.is_none(), "directed presence to {:?}", p.to),
            _ => {}
        }
    }
    provider.stop().await;
}
