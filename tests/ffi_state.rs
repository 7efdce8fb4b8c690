//! The connection state an app sees through the FFI tells the truth (issue 14): `Idle` before
//! `connect()`, `Connecting`, then `Online` or `Offline(error)` for a failed login — a callback
//! for each — `Offline(null)` last after `disconnect()`, a second `connect()` after it, and no
//! listener callback once `disconnect()` or the app's `close()` (the object's drop) returned.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pmn::{ConnectionState, Controller, PmnError, ProviderInfo, ServiceEvent};

/// Remembers every callback, in order.
#[derive(Default)]
struct Recorder {
    states: Mutex<Vec<ConnectionState>>,
    calls: Mutex<usize>,
}

impl Recorder {
    fn states(&self) -> Vec<ConnectionState> {
        self.states.lock().expect("lock").clone()
    }
    fn calls(&self) -> usize {
        *self.calls.lock().expect("lock")
    }
    fn count(&self) {
        *self.calls.lock().expect("lock") += 1;
    }
}

impl pmn::ControllerListener for Recorder {
    fn on_provider_online(&self, _: ProviderInfo) -> Result<(), PmnError> {
        self.count();
        Ok(())
    }
    fn on_provider_offline(&self, _: String) -> Result<(), PmnError> {
        self.count();
        Ok(())
    }
    fn on_event(&self, _: ServiceEvent) -> Result<(), PmnError> {
        self.count();
        Ok(())
    }
    fn on_connection_state(&self, state: ConnectionState) -> Result<(), PmnError> {
        self.count();
        self.states.lock().expect("lock").push(state);
        Ok(())
    }
}

/// Until the controller says it is online and the listener has been told so.
async fn until_online(controller: &Controller, recorder: &Recorder) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(
            controller.connection_state(),
            ConnectionState::Online { .. }
        ) || !matches!(
            recorder.states().last(),
            Some(ConnectionState::Online { .. })
        ) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("online, and told so");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_login_is_told_with_its_error() {
    let recorder = Arc::new(Recorder::default());
    let mut config = ffi_config("state-bad");
    config.password = "not the password".into();
    let controller = Controller::new(config, recorder.clone()).expect("controller");
    assert_eq!(controller.connection_state(), ConnectionState::Idle);
    assert!(
        recorder.states().is_empty(),
        "nothing is told before connect"
    );
    let e = controller.connect().await.expect_err("wrong password");
    assert!(matches!(e, PmnError::Auth { .. }), "{e:?}");
    let states = recorder.states();
    assert_eq!(
        states.first(),
        Some(&ConnectionState::Connecting),
        "{states:?}"
    );
    assert!(
        matches!(
            states.last(),
            Some(ConnectionState::Offline {
                error: Some(PmnError::Auth { .. })
            })
        ),
        "{states:?}"
    );
    assert_eq!(
        controller.connection_state(),
        states.last().cloned().expect("a state")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_is_the_last_word_and_connect_works_again() {
    let _tv = start_player("State TV").await;
    let recorder = Arc::new(Recorder::default());
    let controller =
        Controller::new(ffi_config("state-phone"), recorder.clone()).expect("controller");
    controller.connect().await.expect("connect");
    until_online(&controller, &recorder).await;
    let states = recorder.states();
    assert_eq!(
        states.first(),
        Some(&ConnectionState::Connecting),
        "{states:?}"
    );
    assert!(
        states
            .iter()
            .any(|s| matches!(s, ConnectionState::Online { .. })),
        "{states:?}"
    );

    controller.disconnect().await;
    assert_eq!(
        recorder.states().last(),
        Some(&ConnectionState::Offline { error: None })
    );
    assert_eq!(
        controller.connection_state(),
        ConnectionState::Offline { error: None }
    );
    let after_disconnect = recorder.calls();
    // The session's end, the directory emptying, late events: none reaches the app any more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        recorder.calls(),
        after_disconnect,
        "a callback after disconnect()"
    );

    // The same object connects again.
    controller
        .connect()
        .await
        .expect("connect after disconnect");
    until_online(&controller, &recorder).await;
    assert!(recorder.calls() > after_disconnect);

    // The app's close(): the object goes, and so does every callback.
    drop(controller);
    let after_close = recorder.calls();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recorder.calls(), after_close, "a callback after close()");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_caps_cache_comes_back_through_the_config_and_junk_in_it_is_no_obstacle() {
    let tv = start_player("Cached TV").await;
    let tv_jid = tv.session().jid().expect("online").to_string();
    let recorder = Arc::new(Recorder::default());
    let controller = Controller::new(ffi_config("cache-phone"), recorder.clone()).expect("new");
    let empty = controller.caps_cache_snapshot();
    assert!(
        empty
            .parse::<pmn::core::discovery::CapsSnapshot>()
            .is_ok_and(|s| s.is_empty()),
        "before connect(): a snapshot with no entry, {empty:?}"
    );
    controller.connect().await.expect("connect");
    let listed = |c: &Controller| c.providers().iter().any(|p| p.jid == tv_jid);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !listed(&controller) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the TV listed");
    let saved = controller.caps_cache_snapshot();
    let snapshot: pmn::core::discovery::CapsSnapshot = saved.parse().expect("reads back");
    assert!(!snapshot.is_empty(), "the TV's caps saved");
    controller.disconnect().await;

    for (what, text) in [
        ("the saved text", saved),
        ("junk", "<not-a-cache/>".to_string()),
        (
            "truncated",
            "<caps-cache xmlns='urn:pmn:caps-cache:0'><entry".to_string(),
        ),
    ] {
        let config = pmn::ConnectionConfig {
            caps_cache: Some(text),
            ..ffi_config("cache-phone")
        };
        let next = Controller::new(config, Arc::new(Recorder::default())).expect("new");
        next.connect()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        tokio::time::timeout(Duration::from_secs(10), async {
            while !listed(&next) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: the TV listed"));
        next.disconnect().await;
    }
    tv.stop().await;
}
