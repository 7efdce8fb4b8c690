//! The exported (UniFFI) end-to-end API, tested in Rust with the scenario of the Kotlin E2eTest:
//! a provider with a software key store that requires the tunnel, a controller that pairs with the
//! code the provider shows, control and events through the tunnel, a wrong code as a typed error,
//! revocation on either side, the trusted-device list persisted in a trust file, and the
//! configuration errors of a role without the tunnel.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use pmn::{
    start_simulated_player, ConnectionConfig, Controller, DeviceKeyStore, E2eOptions,
    PairingListener, PairingResult, PlaybackState, PmnError, Provider, ProviderInfo,
    ProviderPairingListener, ServiceEvent, TrustSource, TrustedDevice, TunnelFailureListener,
};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(10);

/// A device's key store and trust file in a tempdir.
struct Keys {
    store: Arc<DeviceKeyStore>,
    dir: tempfile::TempDir,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let store = DeviceKeyStore::software(dir.path().join("keys").display().to_string()).unwrap();
    Keys { store, dir }
}

impl Keys {
    fn options(&self, trust_file: bool) -> E2eOptions {
        E2eOptions {
            key_store: self.store.clone(),
            key_alias: "tls".into(),
            trust_file: trust_file
                .then(|| self.dir.path().join("trust.json").display().to_string()),
            require_tunnel: true,
        }
    }
}

fn config(device: &str, e2e: Option<E2eOptions>) -> ConnectionConfig {
    ConnectionConfig {
        plain_transport: e2e.is_none(),
        e2e,
        ..ffi_config(device)
    }
}

/// What `watch_tunnel_failures` reports.
#[derive(Default)]
struct Alerts(Mutex<Vec<(String, PmnError)>>);

impl Alerts {
    async fn first(&self) -> (String, PmnError) {
        for _ in 0..100 {
            if let Some(a) = self.0.lock().unwrap().first().cloned() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no tunnel failure reported");
    }
}

impl TunnelFailureListener for Alerts {
    fn on_tunnel_failure(&self, peer: String, error: PmnError) -> Result<(), PmnError> {
        self.0.lock().unwrap().push((peer, error));
        Ok(())
    }
}

/// The TV's pairing screen: what `watch_pairing` reports.
#[derive(Default)]
struct TvScreen {
    paired: Mutex<Vec<(String, TrustedDevice)>>,
    failed: Mutex<Vec<(String, PmnError)>>,
}

impl TvScreen {
    /// Waits until both a failure and a success were reported.
    async fn both(&self) -> ((String, PmnError), (String, TrustedDevice)) {
        for _ in 0..100 {
            let failed = self.failed.lock().unwrap().first().cloned();
            let paired = self.paired.lock().unwrap().first().cloned();
            if let (Some(f), Some(p)) = (failed, paired) {
                return (f, p);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the TV's screen was not told of both pairing attempts");
    }
}

impl ProviderPairingListener for TvScreen {
    fn on_paired(&self, peer: String, device: TrustedDevice) -> Result<(), PmnError> {
        self.paired.lock().unwrap().push((peer, device));
        Ok(())
    }
    fn on_pairing_failed(&self, peer: String, error: PmnError) -> Result<(), PmnError> {
        self.failed.lock().unwrap().push((peer, error));
        Ok(())
    }
}

/// Records what a pairing reports.
#[derive(Default)]
struct Pairing {
    calls: Mutex<Vec<String>>,
    results: Mutex<Vec<PairingResult>>,
}

impl PairingListener for Pairing {
    fn on_pairing_code(&self, provider: String, code: String) -> Result<(), PmnError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{provider} {code}"));
        Ok(())
    }
    fn on_pairing_result(&self, result: PairingResult) -> Result<(), PmnError> {
        self.results.lock().unwrap().push(result);
        Ok(())
    }
}

struct Phone {
    controller: Arc<Controller>,
    providers: mpsc::UnboundedReceiver<ProviderInfo>,
    events: mpsc::UnboundedReceiver<ServiceEvent>,
}

async fn phone(e2e: Option<E2eOptions>) -> Phone {
    let (ptx, providers) = mpsc::unbounded_channel();
    let (etx, events) = mpsc::unbounded_channel();
    let controller = Controller::new(
        config("phone", e2e),
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
    async fn find(&mut self, name: &str) -> String {
        tokio::time::timeout(T, async {
            loop {
                let p = self.providers.recv().await.expect("listener open");
                if p.name == name {
                    return p.jid;
                }
            }
        })
        .await
        .expect("provider appears")
    }

    async fn state_event(&mut self) -> PlaybackState {
        tokio::time::timeout(T, async {
            loop {
                if let ServiceEvent::PlayerStateChanged { status, .. } =
                    self.events.recv().await.expect("listener open")
                {
                    return status.state;
                }
            }
        })
        .await
        .expect("event arrives")
    }
}

async fn tv(name: &str, e2e: Option<E2eOptions>) -> Arc<Provider> {
    start_simulated_player(config("tv", e2e), name.into())
        .await
        .expect("provider starts")
}

fn bare(jid: &str) -> String {
    jid.split('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_with_the_shown_code_then_control_and_events_travel_through_the_tunnel() {
    let (tv_keys, phone_keys) = (keys(), keys());
    let provider = tv("FFI tunnel TV", Some(tv_keys.options(false))).await;
    let mut phone = phone(Some(phone_keys.options(false))).await;
    let jid = phone.find("FFI tunnel TV").await;
    assert!(provider.trust().unwrap().trusted_devices().is_empty());

    // Not paired yet: the call is refused, nothing in clear; both apps are told.
    let phone_alerts = Arc::new(Alerts::default());
    let tv_alerts = Arc::new(Alerts::default());
    let _w1 = phone
        .controller
        .trust()
        .expect("the tunnel is on")
        .watch_tunnel_failures(phone_alerts.clone());
    let _w2 = provider
        .trust()
        .expect("the tunnel is on")
        .watch_tunnel_failures(tv_alerts.clone());
    let e = phone
        .controller
        .player(jid.clone())
        .unwrap()
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(e, PmnError::Forbidden { .. } | PmnError::Tls { .. }),
        "{e}"
    );
    let (peer, alert) = phone_alerts.first().await;
    assert_eq!(peer, jid);
    assert_eq!(alert, e);
    let (_, alert) = tv_alerts.first().await;
    assert!(matches!(alert, PmnError::Forbidden { .. }), "{alert:?}");

    let screen = Arc::new(TvScreen::default());
    let _watch = provider
        .trust()
        .unwrap()
        .watch_pairing(screen.clone())
        .expect("watch");
    let code = provider.trust().unwrap().start_pairing().expect("code");
    assert_eq!(code.len(), 6);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let listener = Arc::new(Pairing::default());
    let e = phone
        .controller
        .trust()
        .unwrap()
        .pair(
            jid.clone(),
            wrong.into(),
            Some(listener.clone() as Arc<dyn PairingListener>),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, PmnError::Forbidden { .. }), "{e}");
    assert!(matches!(
        listener.results.lock().unwrap().pop(),
        Some(PairingResult::Failed {
            error: PmnError::Forbidden { .. },
            ..
        })
    ));
    assert!(phone
        .controller
        .trust()
        .unwrap()
        .trusted_devices()
        .is_empty());

    let device = phone
        .controller
        .trust()
        .unwrap()
        .pair(
            jid.clone(),
            code.clone(),
            Some(listener.clone() as Arc<dyn PairingListener>),
        )
        .await
        .expect("paired");
    assert_eq!(device.jid, bare(&jid));
    assert_eq!(
        device.fingerprint,
        provider.trust().unwrap().device_fingerprint()
    );
    assert_eq!(device.source, TrustSource::Paired);
    assert_eq!(
        listener.results.lock().unwrap().pop(),
        Some(PairingResult::Paired {
            provider: jid.clone(),
            device: device.clone(),
        })
    );
    assert_eq!(
        listener.calls.lock().unwrap().last(),
        Some(&format!("{jid} {code}"))
    );
    assert_eq!(
        phone.controller.trust().unwrap().trusted_devices(),
        vec![device]
    );
    let on_tv = provider.trust().unwrap().trusted_devices();
    assert_eq!(on_tv.len(), 1);
    assert_eq!(
        on_tv[0].fingerprint,
        phone.controller.trust().unwrap().device_fingerprint()
    );
    // The TV's screen heard both attempts: the wrong code, then the pairing.
    let ((failed_peer, error), (paired_peer, paired)) = screen.both().await;
    assert!(matches!(error, PmnError::Forbidden { .. }), "{error:?}");
    assert_eq!(failed_peer, paired_peer);
    assert_eq!(failed_peer.split('/').next(), Some(HOME.jid));
    assert_eq!(paired, on_tv[0]);

    let _events = phone
        .controller
        .subscribe_events(jid.clone(), "player".into(), vec!["state-changed".into()])
        .await
        .expect("subscribe through the tunnel");
    let playing = phone
        .controller
        .player(jid.clone())
        .unwrap()
        .play("file:///movies/a.mkv".into())
        .await
        .expect("play");
    assert_eq!(playing.state, PlaybackState::Playing);
    let paused = phone
        .controller
        .player(jid.clone())
        .unwrap()
        .pause()
        .await
        .expect("pause");
    assert_eq!(paused.state, PlaybackState::Paused);
    assert_eq!(phone.state_event().await, PlaybackState::Playing);
    assert_eq!(phone.state_event().await, PlaybackState::Paused);
    assert_eq!(provider.subscription_count(), 1);

    // The phone stops trusting the TV: its tunnel closes and the next call is refused.
    assert!(phone
        .controller
        .trust()
        .unwrap()
        .revoke_device(bare(&jid), device_fp(&provider))
        .await
        .unwrap());
    assert!(phone
        .controller
        .trust()
        .unwrap()
        .trusted_devices()
        .is_empty());
    let e = phone
        .controller
        .player(jid.clone())
        .unwrap()
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(e, PmnError::Forbidden { .. } | PmnError::Tls { .. }),
        "{e}"
    );
    provider.stop().await;
    phone.controller.disconnect().await;
}

fn device_fp(provider: &Provider) -> String {
    provider.trust().unwrap().device_fingerprint()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_revokes_a_phone_refuses_its_next_call_and_pins_survive_in_the_trust_file()
{
    let (tv_keys, phone_keys) = (keys(), keys());
    let provider = tv("FFI revoking TV", Some(tv_keys.options(true))).await;
    let mut first = phone(Some(phone_keys.options(true))).await;
    let jid = first.find("FFI revoking TV").await;
    let code = provider.trust().unwrap().start_pairing().unwrap();
    first
        .controller
        .trust()
        .unwrap()
        .pair(jid.clone(), code, None)
        .await
        .expect("paired");
    first.controller.disconnect().await;

    // The same phone (same key store, same trust file) comes back: no pairing needed.
    let mut again = phone(Some(phone_keys.options(true))).await;
    assert_eq!(again.controller.trust().unwrap().trusted_devices().len(), 1);
    let jid = again.find("FFI revoking TV").await;
    again
        .controller
        .player(jid.clone())
        .unwrap()
        .status()
        .await
        .expect("pinned from the trust file");

    // The TV revokes the phone (lost): the next call is refused.
    let phone_fp = again.controller.trust().unwrap().device_fingerprint();
    assert!(provider
        .trust()
        .unwrap()
        .revoke_device(bare(&jid), phone_fp.clone())
        .await
        .unwrap());
    assert!(!provider
        .trust()
        .unwrap()
        .revoke_device(bare(&jid), phone_fp)
        .await
        .unwrap());
    let left = provider.trust().unwrap().trusted_devices();
    assert!(left.is_empty(), "{left:?}");
    let e = again
        .controller
        .player(jid.clone())
        .unwrap()
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PmnError::Forbidden { .. }
                | PmnError::Tls { .. }
                | PmnError::NotConnected { .. }
                | PmnError::ProviderUnavailable { .. }
        ),
        "{e}"
    );
    // And stays refused (a new tunnel is not accepted).
    let e = again
        .controller
        .player(jid)
        .unwrap()
        .status()
        .await
        .unwrap_err();
    assert!(
        matches!(e, PmnError::Forbidden { .. } | PmnError::Tls { .. }),
        "{e}"
    );
    provider.stop().await;
    again.controller.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_tunnel_the_e2e_methods_are_config_errors() {
    // Without ConnectionConfig.e2e there is no trust facet at all: every pairing, listing and
    // revocation is refused where the app asks for it, before anything is sent.
    let provider = tv("FFI plain TV", None).await;
    assert!(matches!(provider.trust(), Err(PmnError::Config { .. })));
    let mut plain = phone(None).await;
    let _jid = plain.find("FFI plain TV").await;
    assert!(matches!(
        plain.controller.trust(),
        Err(PmnError::Config { .. })
    ));
    provider.stop().await;
    assert!(matches!(
        provider.trust(),
        Err(PmnError::NotConnected { .. })
    ));
    plain.controller.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jids_fingerprints_and_trust_files_are_config_errors() {
    let k = keys();
    let provider = tv("FFI strict TV", Some(k.options(false))).await;
    for (jid, fp) in [
        ("home@home.test", "not hex"),
        ("home@home.test", "abcd"),
        ("@@bad", &"ab".repeat(32)),
    ] {
        assert!(
            matches!(
                provider
                    .trust()
                    .unwrap()
                    .revoke_device(jid.into(), fp.into())
                    .await,
                Err(PmnError::Config { .. })
            ),
            "{jid} {fp}"
        );
    }
    assert!(!provider
        .trust()
        .unwrap()
        .revoke_device("home@home.test".into(), "ab".repeat(32))
        .await
        .unwrap());
    provider.stop().await;

    let trust_file = k.dir.path().join("trust.json");
    std::fs::write(&trust_file, b"{not json").unwrap();
    // Owner-only, as pmn writes it: the refusal below is for the content, not the mode.
    #[cfg(unix)]
    std::fs::set_permissions(
        &trust_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let e = start_simulated_player(config("tv", Some(k.options(true))), "x".into())
        .await
        .unwrap_err();
    assert!(matches!(e, PmnError::Config { .. }), "{e}");
    let c = Controller::new(
        config("phone", Some(k.options(true))),
        ChannelListener::quiet(),
    )
    .unwrap();
    assert!(matches!(c.connect().await, Err(PmnError::Config { .. })));
}

/// Issue 5: control requires the tunnel by default. A configuration with neither the tunnel nor
/// an explicit `plain_transport` is refused before anything touches the network, and so is one
/// that asks for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_is_the_default_and_plain_must_be_asked_for() {
    let neither = ConnectionConfig {
        plain_transport: false,
        ..config("x", None)
    };
    let err = Controller::new(neither.clone(), ChannelListener::quiet()).unwrap_err();
    assert!(
        matches!(&err, PmnError::Config { detail } if detail.contains("tunnel is required")),
        "{err:?}"
    );
    let err = pmn::start_simulated_player(neither, "nope".into())
        .await
        .unwrap_err();
    assert!(matches!(err, PmnError::Config { .. }), "{err:?}");
    let k = keys();
    let both = ConnectionConfig {
        plain_transport: true,
        ..config("x", Some(k.options(false)))
    };
    let err = Controller::new(both, ChannelListener::quiet()).unwrap_err();
    assert!(matches!(err, PmnError::Config { .. }), "{err:?}");
}
