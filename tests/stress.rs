//! No lost responses: ≥ 10 000 sequential and ≥ 10 000 concurrent RPCs through Prosody, driven through
//! the exported API, i.e. on the library's own multi-thread runtime (the one the apps get).
//!
//! tokio-xmpp 6.0.0 loses wake-ups when its split stream's mutex is contended (shared/FACTS.md); the
//! session layer owns the unsplit stream in one task. This test is the proof that it holds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::stream::{self, StreamExt};

const CALLS: usize = 10_000;
const IN_FLIGHT: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sequential_and_ten_thousand_concurrent_calls_lose_nothing() {
    let provider = pmn::start_simulated_player(ffi_config("tv"), "Stress TV".into())
        .await
        .expect("provider");
    let controller =
        pmn::Controller::new(ffi_config("phone"), ChannelListener::quiet()).expect("controller");
    controller.connect().await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    let tv = loop {
        if let Some(p) = controller
            .providers()
            .into_iter()
            .find(|p| p.name == "Stress TV")
        {
            break p.jid;
        }
        assert!(Instant::now() < deadline, "provider not discovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    controller
        .player(tv.clone())
        .unwrap()
        .play("file:///stress".into())
        .await
        .expect("play");

    let started = Instant::now();
    for i in 0..CALLS {
        let status = controller
            .player(tv.clone())
            .unwrap()
            .status()
            .await
            .unwrap_or_else(|e| panic!("sequential call {i} failed: {e}"));
        assert_eq!(status.uri.as_deref(), Some("file:///stress"));
    }
    let sequential = started.elapsed();

    let started = Instant::now();
    let controller_ref = &controller;
    let failures: Vec<String> = stream::iter(0..CALLS)
        .map(|i| {
            let tv = tv.clone();
            async move {
                controller_ref
                    .player(tv)
                    .unwrap()
                    .status()
                    .await
                    .err()
                    .map(|e| format!("concurrent call {i}: {e}"))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(|r| async move { r })
        .collect()
        .await;
    let concurrent = started.elapsed();
    assert!(
        failures.is_empty(),
        "{} lost: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!(
        "{CALLS} sequential in {sequential:?}, {CALLS} with {IN_FLIGHT} in flight in {concurrent:?}"
    );
    controller.disconnect().await;
    provider.stop().await;
}
