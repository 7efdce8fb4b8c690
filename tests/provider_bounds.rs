//! The provider's bounds on the wire (issue 17 item 4), against the real Prosody: each bound holds
//! with a typed answer while the household keeps working.
//!
//! - calls in flight per caller, in total and for guests → `resource-constraint` (type `wait`);
//! - subscriptions per guest network (a guest with many resources) → `resource-constraint`;
//! - the audit log under a flood keeps grants and refusals.

mod common;
#[path = "support/provider_home.rs"]
mod home;

use std::time::Duration;

use common::*;
use home::*;
use pmn::core::access::{AuditKind, DeviceFingerprint, Scope};
use pmn::core::provider::{shared_item_uri, Provider, ProviderConfig, ProviderLimits};
use pmn::core::rpc::xmlrpc::Value;
use pmn::core::session::Session;
use tokio::sync::watch;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_are_bounded_per_caller_and_in_total_with_resource_constraint() {
    let (gate, open) = watch::channel(false);
    let mut config = ProviderConfig::plain(session_config(&HOME, "tv"), "TV");
    config.limits = ProviderLimits {
        calls_in_flight: 3,
        calls_per_caller: 2,
        calls_for_guests: 1,
        ..ProviderLimits::default()
    };
    let tv = Provider::start(config, services(open)).await.expect("tv");
    let to = Jid::from(tv.session().jid().expect("online"));
    // (The inbound halves must stay alive: dropping one ends its session.)
    let connect = |d: &'static str| async move {
        Session::connect(session_config(&HOME, d))
            .await
            .expect("session")
    };
    let ((a, _ra), (b, _rb), (c, _rc)) =
        (connect("a").await, connect("b").await, connect("c").await);

    // Phone A starts three slow calls: two run, the third is refused at once (not queued).
    let mut held = Vec::new();
    let mut refused = 0;
    let mut pending = Vec::new();
    for _ in 0..3 {
        let (a, to) = (a.clone(), to.clone());
        pending.push(tokio::spawn(async move {
            raw(&a, &to, rpc("gate.wait", vec![]), true).await
        }));
    }
    // The refusal comes back while the gate is closed; the two others wait for it.
    let first = tokio::time::timeout(T, futures::future::select_all(pending))
        .await
        .expect("the refusal in time");
    let (reply, _, rest) = first;
    assert_eq!(condition(&reply.expect("task")), BUSY);
    refused += 1;
    held.extend(rest);

    // The household still works: another device calls (2 in flight + this one = the total).
    let status = raw(&b, &to, rpc("player.status", vec![]), true).await;
    assert_eq!(condition(&status), None, "{status:?}");
    // B takes the last slot; then C, with no call of its own, finds the provider full. (C's
    // own status call may take the slot just before B's arrives: then B is refused, and tries
    // again.)
    let slow_b = || {
        let (b, to) = (b.clone(), to.clone());
        tokio::spawn(async move { raw(&b, &to, rpc("gate.wait", vec![]), true).await })
    };
    let mut b_call = slow_b();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let reply = raw(&c, &to, rpc("player.status", vec![]), true).await;
        if condition(&reply) == BUSY {
            refused += 1;
            break;
        }
        if b_call.is_finished() {
            let reply = b_call.await.expect("task");
            assert_eq!(condition(&reply), BUSY, "{reply:?}");
            refused += 1;
            b_call = slow_b();
        }
        assert!(tokio::time::Instant::now() < deadline, "never full");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.push(b_call);
    // Open the gate: every admitted call completes (nothing lost), and slots come back.
    gate.send(true).expect("gate");
    for call in held {
        let reply = tokio::time::timeout(T, call)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(condition(&reply), None, "{reply:?}");
    }
    let again = raw(&c, &to, rpc("player.status", vec![]), true).await;
    assert_eq!(condition(&again), None);
    assert_eq!(tv.stats().calls_refused_busy, refused);
    for s in [a, b, c] {
        s.close().await;
    }
    tv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_calls_beyond_the_running_places_wait_their_turn_and_complete() {
    let (gate, open) = watch::channel(false);
    let mut config = ProviderConfig::plain(session_config(&HOME, "tv"), "TV");
    config.limits = ProviderLimits {
        calls_in_flight: 3,
        calls_per_caller: 3,
        calls_for_guests: 0,
        calls_running: 1,
        ..ProviderLimits::default()
    };
    let tv = Provider::start(config, services(open)).await.expect("tv");
    let to = Jid::from(tv.session().jid().expect("online"));
    let (a, _ra) = Session::connect(session_config(&HOME, "a"))
        .await
        .expect("session");
    let slow = {
        let (a, to) = (a.clone(), to.clone());
        tokio::spawn(async move { raw(&a, &to, rpc("gate.wait", vec![]), true).await })
    };
    // (Let the slow call take the running place first.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The status call is admitted but waits for the only running place (it is not refused).
    let waiting = {
        let (a, to) = (a.clone(), to.clone());
        tokio::spawn(async move { raw(&a, &to, rpc("player.status", vec![]), true).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "ran without a place");
    gate.send(true).expect("gate");
    for call in [slow, waiting] {
        let reply = tokio::time::timeout(T, call)
            .await
            .expect("in time")
            .expect("task");
        assert_eq!(condition(&reply), None, "{reply:?}");
    }
    assert_eq!(tv.stats().calls_refused_busy, 0);
    a.close().await;
    tv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_calls_take_only_their_share_of_the_slots() {
    let home = Home::start(ProviderLimits {
        calls_in_flight: 4,
        calls_per_caller: 4,
        calls_for_guests: 1,
        ..ProviderLimits::default()
    })
    .await;
    let (account, _keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    // The guest's film loads slowly: his one call holds the guests' only slot.
    let nas: FullJid = format!("{}/nas", account.jid).parse().expect("jid");
    let slow_play = || {
        let player = romeo.player(tv.clone());
        let film = shared_item_uri(&nas, "slow-film");
        tokio::spawn(async move { player.play(&film).await })
    };
    let mut held = slow_play();
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let second = romeo.player(tv.clone()).status().await;
        if is_busy(&second) {
            refused += 1;
            break;
        }
        if held.is_finished() {
            // The status call took the slot just before the film arrived: the film was refused.
            let played = held.await.expect("task");
            assert!(is_busy(&played), "{played:?}");
            refused += 1;
            held = slow_play();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never busy: {second:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(home.tv.stats().calls_refused_busy, refused);
    // The household's calls do not wait for the guest's share.
    let channels = home.phone.recorder(tv.clone()).channels().await;
    assert!(channels.is_ok(), "{channels:?}");
    home.gate.send(true).expect("gate");
    let played = tokio::time::timeout(T, held)
        .await
        .expect("in time")
        .expect("task");
    assert!(played.is_ok(), "{played:?}");
    assert!(romeo.player(tv.clone()).status().await.is_ok());
    romeo.close().await;
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_with_many_resources_cannot_take_the_households_subscriptions() {
    let home = Home::start(ProviderLimits {
        subscriptions_per_guest: 2,
        subscriptions_for_guests: 3,
        ..ProviderLimits::default()
    })
    .await;
    let (account, keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    // The same guest device key on more resources (a guest may run several sessions).
    let r2 = phone(session_config(&account, "tablet"), &keys, false).await;
    let r3 = phone(session_config(&account, "laptop"), &keys, false).await;
    let _s1 = romeo.subscribe(&tv, "player").await.expect("first");
    let _s2 = r2.subscribe(&tv, "player").await.expect("second");
    let third = r3.subscribe(&tv, "player").await;
    assert!(is_busy(&third), "{third:?}");
    assert_eq!(home.tv.stats().subscriptions_refused, 1);
    // The household subscribes and hears events while the guest is at its quota.
    let mut events = home.phone.events();
    let _own = home.phone.subscribe(&tv, "player").await.expect("own");
    home.phone
        .player(tv.clone())
        .play("file:///movies/a.mkv")
        .await
        .expect("play");
    let event = tokio::time::timeout(T, events.recv())
        .await
        .expect("event in time")
        .expect("event");
    assert_eq!(event.provider, tv);
    // The guest's calls still work too: the quota is on subscriptions only.
    assert!(r3.player(tv.clone()).status().await.is_ok());
    for c in [romeo, r2, r3] {
        c.close().await;
    }
    home.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_keeps_grants_and_refusals_through_a_flood() {
    let home = Home::start(ProviderLimits {
        audit_records: 8,
        ..ProviderLimits::default()
    })
    .await;
    let (_account, _keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    assert!(is_forbidden(&romeo.recorder(tv.clone()).channels().await));
    let player = romeo.player(tv.clone());
    for _ in 0..10 {
        // Alternating calls: folded into two records, however they interleave.
        player.status().await.expect("status");
        romeo
            .call(&tv, "player.set_volume", vec![Value::Int(30)])
            .await
            .expect("volume");
    }
    // Strangers flood the network with requests (each the burst the intake lets through).
    let network = Jid::from(HOME.jid.parse::<BareJid>().expect("jid"));
    let mut strangers = Vec::new();
    for s in 0..4u8 {
        let (session, rx) = Session::connect(session_config(&fresh_account("eve"), "x"))
            .await
            .expect("session");
        for r in 0..3u8 {
            let request = pmn::core::access::AccessRequest::new(
                DeviceFingerprint([s * 8 + r + 1; 32]),
                vec![Scope::Playback],
                None,
            );
            let mut message = Message::new_with_type(MessageType::Headline, Some(network.clone()));
            message.payloads.push(request.into());
            session.send(message).expect("send");
        }
        strangers.push((session, rx));
    }
    let guard = home.tv.access().expect("access").clone();
    let deadline = tokio::time::Instant::now() + T;
    while guard.audit_evictions().requests < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "flood not seen: {:?}",
            guard.audit_evictions()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let evicted = guard.audit_evictions();
    assert_eq!(evicted.uses, 2, "{evicted:?}");
    assert_eq!(
        evicted.denials + evicted.grants_and_revocations,
        0,
        "{evicted:?}"
    );
    // The owner still reads what matters.
    let audit = home
        .phone
        .owner()
        .expect("an owner device")
        .access_audit(&tv, 0)
        .await
        .expect("audit");
    assert!(audit.len() <= 8);
    assert!(
        audit.iter().any(|r| r.kind == AuditKind::Grant),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|r| r.kind == AuditKind::Deny && r.method.as_deref() == Some("recorder.channels")),
        "{audit:?}"
    );
    // And the household and the guest still work.
    assert!(home.phone.player(tv.clone()).status().await.is_ok());
    assert!(player.status().await.is_ok());
    for (s, _rx) in strangers {
        s.close().await;
    }
    romeo.close().await;
    home.stop().await;
}
