//! The app's lifecycle (issue 13, `setForeground`): in the background the controller tells the
//! server it is inactive (XEP-0352; the test Prosody runs mod_csi_simple), which then holds back
//! what is not urgent — an event sent in clear is a headline message — until the app is active
//! again; calls are iqs and keep working either way.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pmn::core::controller::{Controller, ServiceEvent};
use pmn::core::services::player;
use tokio::sync::broadcast;

async fn wait_for_states(controller: &Controller, n: u64) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while controller.session().stats().client_states_sent < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "client states sent: {} (wanted {n})",
            controller.session().stats().client_states_sent
        )
    });
}

async fn next_event(
    events: &mut broadcast::Receiver<ServiceEvent>,
    within: Duration,
) -> Option<ServiceEvent> {
    tokio::time::timeout(within, events.recv())
        .await
        .ok()
        .and_then(Result::ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_background_the_server_holds_events_and_calls_still_work() {
    let provider = start_player("TV").await;
    let phone = start_controller().await;
    let tablet = start_controller().await;
    let tv = discover(&phone, &provider).await.jid;
    discover(&tablet, &provider).await;
    let _sub = phone
        .subscribe_events(&tv, "player", Some(&[player::EVENT_VOLUME_CHANGED]))
        .await
        .expect("subscribe");
    let mut events = phone.events();
    assert_eq!(phone.session().stats().client_states_sent, 0);

    // Foreground: an event arrives at once.
    tablet.player(tv.clone()).set_volume(10).await.unwrap();
    assert!(next_event(&mut events, Duration::from_secs(5))
        .await
        .is_some());

    // Background: the server is told, and holds the next event back.
    phone.set_foreground(false);
    wait_for_states(&phone, 1).await;
    tablet.player(tv.clone()).set_volume(20).await.unwrap();
    assert!(
        next_event(&mut events, Duration::from_millis(1500))
            .await
            .is_none(),
        "an event reached the phone in the background"
    );

    // Foreground again: the held event arrives now.
    let back = Instant::now();
    phone.set_foreground(true);
    wait_for_states(&phone, 2).await;
    let held = next_event(&mut events, Duration::from_secs(2))
        .await
        .expect("the held event arrives once the app is active");
    eprintln!(
        "held event delivered {:?} after returning to the foreground",
        back.elapsed()
    );
    assert_eq!(held.notice.name, player::EVENT_VOLUME_CHANGED);
    phone.player(tv.clone()).status().await.expect("a call");

    // Calls work in the background: requests and answers are iqs, which the server never holds.
    phone.set_foreground(false);
    wait_for_states(&phone, 3).await;
    let started = Instant::now();
    let status = phone
        .player(tv.clone())
        .set_volume(30)
        .await
        .expect("a call in the background");
    assert_eq!(status.volume, 30);
    assert!(started.elapsed() < Duration::from_secs(2));
    phone.set_foreground(true);
    wait_for_states(&phone, 4).await;
    phone
        .player(tv.clone())
        .status()
        .await
        .expect("a call back in the foreground");

    // The provider's own lifecycle works the same way.
    // One change at a time: the stream keeps only the newest state it has not sent yet, so an
    // immediate back-and-forth may legitimately send just the last one.
    for (foreground, sent) in [(false, 1), (true, 2)] {
        provider.set_foreground(foreground);
        tokio::time::timeout(Duration::from_secs(5), async {
            while provider.session().stats().client_states_sent < sent {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the provider's client state was sent");
    }
    phone.player(tv.clone()).status().await.expect("a call");
    phone.close().await;
    tablet.close().await;
    provider.stop().await;
}
