//! RPC round trip phone → Prosody → provider → phone, against the floor measured in the same run.
//!
//! - **pmn**: `player.status` through the controller API (XML-RPC encode, iq tracking, provider
//!   authorisation, routing, service call, XML-RPC decode, typed result).
//! - **floor**: the same two kinds of connection (same Prosody, same TLS, same session layer) sending
//!   an iq of the same size that the peer answers at once with an equally large payload, without RPC
//!   decoding or dispatch. The ratio is what pmn's protocol layers cost on top of the transport.
//!
//! Run: `cargo xtask bench rpc` (or `cargo bench --features test-ca --bench rpc`). The machine is
//! shared and noisy: compare the ratio, not the absolute figures, and only within one run.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::xmlrpc::{self, MethodCall, MethodResponse};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::core::session::{Inbound, Session, SessionConfig};
use pmn_testkit::{TestServer, HOME};
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;

const WARMUP: usize = 100;
const CALLS: usize = 1000;

fn config(server: &TestServer, device: &str) -> SessionConfig {
    common::session_config(server, &HOME, device)
}

struct Figures {
    median: Duration,
    p99: Duration,
}

fn figures(mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    Figures {
        median: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");

    // pmn: provider + controller.
    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    let provider = Provider::start(
        ProviderConfig::plain(config(&server, "bench-tv"), "Bench TV"),
        vec![player],
    )
    .await
    .expect("provider");
    let controller = Controller::connect(ControllerConfig::plain(config(&server, "bench-phone")))
        .await
        .expect("controller");
    let tv = controller
        .wait_for_provider(|p| p.name == "Bench TV", Duration::from_secs(10))
        .await
        .expect("discovered")
        .jid;
    let remote = controller.player(tv.clone());
    remote.play("file:///bench.mkv").await.expect("play");

    // Floor: an echo peer answering with a payload as large as the provider's answer.
    let call_payload =
        xmlrpc::call_to_query(&MethodCall::new("player.status", vec![])).expect("encodes");
    let status = remote.status().await.expect("status").to_value();
    let answer_payload =
        xmlrpc::response_to_query(&MethodResponse::Success(status)).expect("encodes");
    let (echo, mut echo_inbound) = Session::connect(config(&server, "bench-echo"))
        .await
        .expect("echo peer");
    let echo_sender = echo.clone();
    let answer_for_echo = answer_payload.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(item) = echo_inbound.recv().await {
            if let Inbound::Stanza(stanza) = item {
                if let Stanza::Iq(Iq::Set { from, id, .. }) = *stanza {
                    let _ = echo_sender.send(Iq::Result {
                        from: None,
                        to: from,
                        id,
                        payload: Some(answer_for_echo.clone()),
                    });
                }
            }
        }
    });
    let (floor_client, _floor_inbound) = Session::connect(config(&server, "bench-floor"))
        .await
        .expect("floor client");
    let echo_jid = Jid::from(echo.jid().expect("echo online"));

    let pmn_call = || async {
        let t = Instant::now();
        remote.status().await.expect("status");
        t.elapsed()
    };
    let floor_call = || async {
        let iq = Iq::Set {
            from: None,
            to: Some(echo_jid.clone()),
            id: String::new(),
            payload: call_payload.clone(),
        };
        let t = Instant::now();
        floor_client
            .request(iq, Duration::from_secs(5))
            .await
            .expect("echo");
        t.elapsed()
    };

    for _ in 0..WARMUP {
        pmn_call().await;
        floor_call().await;
    }
    // Interleaved, so both see the same machine load.
    let mut pmn = Vec::with_capacity(CALLS);
    let mut floor = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        pmn.push(pmn_call().await);
        floor.push(floor_call().await);
    }
    let pmn = figures(pmn);
    let floor = figures(floor);
    println!(
        "rpc round trip through Prosody, {CALLS} sequential calls after {WARMUP} warm-up (µs)"
    );
    println!(
        "  floor (same-size iq echo)  median {:8.1}  p99 {:8.1}",
        us(floor.median),
        us(floor.p99)
    );
    println!(
        "  pmn player.status          median {:8.1}  p99 {:8.1}",
        us(pmn.median),
        us(pmn.p99)
    );
    println!(
        "  ratio pmn/floor            median {:8.2}x p99 {:8.2}x",
        us(pmn.median) / us(floor.median),
        us(pmn.p99) / us(floor.p99)
    );

    echo_task.abort();
    floor_client.close().await;
    echo.close().await;
    controller.close().await;
    provider.stop().await;
}
