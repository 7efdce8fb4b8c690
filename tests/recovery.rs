//! A server that crashes or restarts is recovered from by itself, quickly and without a login
//! storm: a provider and a controller on their own Prosody, which the test kills (SIGKILL: the
//! server keeps no stream-management record, so resumption gets `<failed/>` without `h`) or stops
//! gracefully, and starts again on the same port.
//!
//! Each scenario asserts: the controller's next call succeeds within [`RECOVERY_LIMIT`] of the
//! server accepting connections again, the logins made while it was down stay bounded, and once
//! recovered neither side logs in again (no loop).

mod common;

use std::time::{Duration, Instant};

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::provider::Provider;
use pmn::core::session::{ServerAddress, ServerTrust, SessionConfig};
use pmn_testkit::{TestServer, HOME};

use common::{start_player_with, unique};

/// Server back → first successful call: 1 s plus one early backoff step (≤ 2 s), with 1 s of
/// slack for a loaded 2-core CI machine.
const RECOVERY_LIMIT: Duration = Duration::from_secs(4);
/// How long the server stays down.
const OUTAGE: Duration = Duration::from_secs(5);

fn config_for(server: &TestServer, device: &str) -> SessionConfig {
    let jid = format!("{}/{}", HOME.jid, unique(device))
        .parse()
        .expect("full JID");
    let mut config = SessionConfig::new(jid, HOME.password);
    config.server = ServerAddress::HostPort("127.0.0.1".into(), server.port());
    config.trust = ServerTrust::TestCa(server.ca_pem());
    config.connect_timeout = Duration::from_secs(5);
    config
}

async fn household(server: &TestServer) -> (Provider, Controller, xmpp_parsers::jid::FullJid) {
    let provider = start_player_with(config_for(server, "tv"), "TV").await;
    let mut config = ControllerConfig::plain(config_for(server, "phone"));
    config.rpc_timeout = Duration::from_millis(800);
    let controller = Controller::connect(config).await.expect("controller");
    let tv = provider.session().jid().expect("provider online");
    controller
        .wait_for_provider(|p| p.jid == tv, Duration::from_secs(10))
        .await
        .expect("provider discovered");
    (provider, controller, tv)
}

/// Calls until one succeeds; returns how long that took from `since`.
async fn first_success(controller: &Controller, tv: &xmpp_parsers::jid::FullJid) -> Duration {
    let since = Instant::now();
    let player = controller.player(tv.clone());
    let deadline = since + Duration::from_secs(30);
    loop {
        if player.status().await.is_ok() {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no successful call within 30 s of the server's return"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn outage_and_recovery(
    server: &TestServer,
    crash: bool,
    provider: &Provider,
    controller: &Controller,
    tv: &xmpp_parsers::jid::FullJid,
) {
    first_success(controller, tv).await;
    let before = (
        provider.session().stats().relogins,
        controller.session().stats().relogins,
    );
    if crash {
        server.crash().expect("kill -9 prosody");
    } else {
        server.stop_gracefully().expect("stop prosody");
    }
    tokio::time::sleep(OUTAGE).await;
    let during = (
        provider.session().stats().relogins - before.0,
        controller.session().stats().relogins - before.1,
    );
    // 5 s down with steps of 0.25, 0.5, 1, 2, 2 s (jittered down to half): at most ~12 attempts.
    assert!(
        during.0 <= 12 && during.1 <= 12,
        "logins while the server was down: provider {}, controller {}",
        during.0,
        during.1
    );
    server.restart().expect("restart prosody");
    let took = first_success(controller, tv).await;
    eprintln!(
        "recovery after {} ({OUTAGE:?} down): first call {took:?} after the server was back; \
         logins while down: provider {}, controller {}",
        if crash { "kill -9" } else { "SIGTERM" },
        during.0,
        during.1
    );
    assert!(
        took <= RECOVERY_LIMIT,
        "recovered only {took:?} after the server was back"
    );
    // No login loop once recovered.
    let settled = (
        provider.session().stats().relogins,
        controller.session().stats().relogins,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (
            provider.session().stats().relogins,
            controller.session().stats().relogins
        ),
        settled,
        "the devices kept logging in after recovery"
    );
    controller
        .player(tv.clone())
        .status()
        .await
        .expect("a call after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_crash_both_devices_recover_by_themselves_every_time() {
    let server = TestServer::start().expect("own prosody");
    let (provider, controller, tv) = household(&server).await;
    for round in 0..3 {
        eprintln!("crash round {round}");
        outage_and_recovery(&server, true, &provider, &controller, &tv).await;
    }
    controller.close().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_restart_both_devices_recover_quickly() {
    let server = TestServer::start().expect("own prosody");
    let (provider, controller, tv) = household(&server).await;
    outage_and_recovery(&server, false, &provider, &controller, &tv).await;
    controller.close().await;
    provider.stop().await;
}

/// The app says the network changed while the connection is silently dead (the server frozen:
/// the TCP connection stays open, nothing comes back). The probe goes unanswered, the link is cut
/// within `NETWORK_CHANGE_PROBE`, and once the server answers again the session is resumed
/// (XEP-0198) on a new connection: calls work, no state is lost, no fresh login storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_change_replaces_a_connection_that_no_longer_answers() {
    use pmn::core::session::NETWORK_CHANGE_PROBE;
    let server = TestServer::start().expect("own prosody");
    let (provider, controller, tv) = household(&server).await;
    first_success(&controller, &tv).await;
    let mut online = controller.session().watch_state();
    server.freeze().expect("SIGSTOP");
    let started = Instant::now();
    controller.session().network_changed().await;
    let decided = started.elapsed();
    server.thaw().expect("SIGCONT");
    assert_eq!(
        controller.session().stats().links_cut,
        1,
        "the silent connection was not cut"
    );
    // The probe's 3 s is the floor; the slack is for a loaded 2-core CI host (ejabberd runs
    // this too), still far below the keepalive's own detection.
    assert!(
        decided <= NETWORK_CHANGE_PROBE + Duration::from_secs(2),
        "network_changed took {decided:?}"
    );
    let took = first_success(&controller, &tv).await;
    eprintln!("network change: link cut after {decided:?}, first call {took:?} after the server answered again");
    assert!(
        took <= RECOVERY_LIMIT,
        "calls worked again only after {took:?}"
    );
    // A resumed session does not re-announce: the controller's directory still has the TV.
    online.mark_unchanged();
    assert!(controller.providers().iter().any(|p| p.jid == tv));
    // A live connection is left alone.
    controller.session().network_changed().await;
    assert_eq!(controller.session().stats().links_cut, 1);
    controller.close().await;
    provider.stop().await;
}
