//! Event fan-out: one provider, 50 subscribed controllers, events/s delivered, against the raw stanza
//! rate through the same Prosody measured in the same run.
//!
//! - **pmn**: a bench service emits `BURST` events; the provider encodes each once and sends it to
//!   every subscriber (50 headline messages per event); every controller parses, authenticates the
//!   sender against its directory and decodes the event. Timed from the start of the burst until all
//!   50 controllers have received all events.
//! - **raw**: one session sends the same number of headline messages with an equally large payload
//!   straight to the 50 receiving sessions (pmn's session layer, no events module, no decoding).
//!
//! Run: `cargo xtask bench fanout`. Compare the ratio, only within one run.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::error::Result;
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::events::{EventNotice, EventSink};
use pmn::core::rpc::xmlrpc::{to_value, Value};
use pmn::core::rpc::{CallContext, Service};
use pmn::core::services::player::{PlaybackState, PlayerStatus};
use pmn::core::session::{Inbound, Session, SessionConfig};
use pmn_testkit::{TestServer, BENCH};
use tokio::sync::Notify;
use tokio_xmpp::Stanza;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Message, MessageType};

const CONTROLLERS: usize = 50;
const BURST: usize = 200;

fn config(server: &TestServer, device: &str) -> SessionConfig {
    common::session_config(server, &BENCH, device)
}

/// The payload of every event: a player status, like a real `state-changed`.
fn payload() -> Value {
    to_value(&PlayerStatus {
        uri: Some("file:///movies/bench.mkv".into()),
        title: Some("Bench".into()),
        state: PlaybackState::Playing,
        position_ms: 123_456,
        duration_ms: Some(3_600_000),
        volume: 50,
        muted: false,
    })
    .expect("encodable")
}

/// A service whose `bench.burst(n)` emits `n` events at once.
struct Burst {
    sink: std::sync::OnceLock<EventSink>,
}

impl Service for Burst {
    fn name(&self) -> &str {
        "bench"
    }
    fn feature(&self) -> &str {
        "urn:xmpp:tmp:pmn:bench:0"
    }
    fn events(&self) -> &[&str] {
        &["tick"]
    }
    fn call<'a>(
        &'a self,
        _verb: &'a str,
        params: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> futures::future::BoxFuture<'a, Result<Value>> {
        let n = params.first().and_then(Value::as_i64).unwrap_or(0);
        let value = payload();
        if let Some(sink) = self.sink.get() {
            for _ in 0..n {
                sink.emit("tick", vec![value.clone()]);
            }
        }
        Box::pin(async move { Ok(Value::Bool(true)) })
    }
    fn bind_events(&self, sink: EventSink) {
        let _ = self.sink.set(sink);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");
    let provider = Provider::start(
        ProviderConfig::plain(config(&server, "fan-tv"), "Fan TV"),
        vec![Arc::new(Burst {
            sink: std::sync::OnceLock::new(),
        })],
    )
    .await
    .expect("provider");
    let tv_jid = provider.session().jid().expect("online");

    // 50 controllers, each subscribed, each counting what it receives.
    let received = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Notify::new());
    let mut controllers = Vec::new();
    let mut subscriptions = Vec::new();
    for i in 0..CONTROLLERS {
        let c = Controller::connect(ControllerConfig::plain(config(
            &server,
            &format!("fan-{i}"),
        )))
        .await
        .expect("controller");
        c.wait_for_provider(|p| p.jid == tv_jid, Duration::from_secs(20))
            .await
            .expect("discovered");
        subscriptions.push(c.subscribe(&tv_jid, "bench").await.expect("subscribe"));
        let mut events = c.events();
        let (received, done) = (received.clone(), done.clone());
        tokio::spawn(async move {
            while let Ok(e) = events.recv().await {
                // Decode, as an app would.
                let _ = PlayerStatus::from_value(&e.notice.params[0]).expect("typed");
                if received.fetch_add(1, Ordering::Relaxed) + 1 == CONTROLLERS * BURST {
                    done.notify_one();
                }
            }
        });
        controllers.push(c);
    }
    assert_eq!(provider.subscription_count(), CONTROLLERS);
    let trigger = controllers[0].clone();
    let burst = |n: usize| {
        let trigger = trigger.clone();
        let tv = tv_jid.clone();
        async move {
            trigger
                .call(&tv, "bench.burst", vec![Value::Int(n as i64)])
                .await
                .expect("burst");
        }
    };
    // Warm-up burst.
    burst(10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    received.store(0, Ordering::Relaxed);
    let t = Instant::now();
    burst(BURST).await;
    tokio::time::timeout(Duration::from_secs(120), done.notified())
        .await
        .expect("all events delivered");
    let pmn = t.elapsed();

    // Raw: one session → 50 sessions, the same number of messages with the same payload element.
    let element = EventNotice {
        service: "bench".into(),
        name: "tick".into(),
        params: vec![payload()],
    }
    .to_element()
    .expect("encodes");
    let raw_received = Arc::new(AtomicUsize::new(0));
    let raw_done = Arc::new(Notify::new());
    let mut sinks = Vec::new();
    let mut targets = Vec::new();
    for i in 0..CONTROLLERS {
        let (s, mut inbound) = Session::connect(config(&server, &format!("raw-{i}")))
            .await
            .expect("session");
        targets.push(Jid::from(s.jid().expect("online")));
        let (received, done) = (raw_received.clone(), raw_done.clone());
        tokio::spawn(async move {
            while let Some(item) = inbound.recv().await {
                if let Inbound::Stanza(st) = item {
                    if matches!(*st, Stanza::Message(_))
                        && received.fetch_add(1, Ordering::Relaxed) + 1 == CONTROLLERS * BURST
                    {
                        done.notify_one();
                    }
                }
            }
        });
        sinks.push(s);
    }
    let (sender, _sender_inbound) = Session::connect(config(&server, "raw-sender"))
        .await
        .expect("sender");
    let t = Instant::now();
    for _ in 0..BURST {
        for to in &targets {
            let mut m = Message::new_with_type(MessageType::Headline, Some(to.clone()));
            m.payloads.push(element.clone());
            sender.send(m).expect("send");
        }
    }
    tokio::time::timeout(Duration::from_secs(120), raw_done.notified())
        .await
        .expect("all raw messages delivered");
    let raw = t.elapsed();

    let rate = |d: Duration| (CONTROLLERS * BURST) as f64 / d.as_secs_f64();
    println!("event fan-out through Prosody: 1 provider → {CONTROLLERS} subscribers, {BURST} events each ({} deliveries)", CONTROLLERS * BURST);
    println!(
        "  raw headline messages (same payload)  {:9.0} msg/s  ({:.2} s)",
        rate(raw),
        raw.as_secs_f64()
    );
    println!(
        "  pmn events                            {:9.0} ev/s   ({:.2} s)",
        rate(pmn),
        pmn.as_secs_f64()
    );
    println!(
        "  ratio pmn/raw                         {:9.2}x",
        rate(pmn) / rate(raw)
    );
    drop(subscriptions);
    for c in controllers {
        c.close().await;
    }
    for s in sinks {
        s.close().await;
    }
    sender.close().await;
    provider.stop().await;
}
