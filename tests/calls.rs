//! Call semantics on the real Prosody (issue 13, items 4 and 5): every call carries a call id,
//! the provider runs a call once however often it is retried with that id, and every error says
//! whether the call ran (`NotRun`, `Ran`, `Unknown`). A call cut off by a lost connection fails
//! at once as `Unknown` — in clear and through the end-to-end tunnel — and its retry after the
//! reconnection gets the first run's answer. The provider's memory of calls is bounded.
//!
//! The services here count how often their methods ran, which is what "runs once" means.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use pmn::core::controller::{Controller, ControllerConfig, RetryPolicy};
use pmn::core::e2e::{E2eSettings, TrustSource, TrustStore};
use pmn::core::error::{CallOutcome, Error, ErrorKind, Result};
use pmn::core::identity::DeviceIdentity;
use pmn::core::provider::{Provider, ProviderConfig, ProviderLimits};
use pmn::core::rpc::xmlrpc::Value;
use pmn::core::rpc::{CallContext, CallId, Service};
use pmn::core::session::{ConnectionState, ServerAddress, ServerTrust, SessionConfig};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::TestServer;
use xmpp_parsers::jid::{BareJid, FullJid};

use common::*;

/// A service that counts its runs: `count.bump(delay_ms)` sleeps, then returns how many times it
/// has run; `count.fail()` runs and answers fault 409.
#[derive(Default)]
struct Counter {
    runs: AtomicI64,
}

impl Counter {
    fn runs(&self) -> i64 {
        self.runs.load(Ordering::SeqCst)
    }
}

struct CounterService(Arc<Counter>);

impl Service for CounterService {
    fn name(&self) -> &str {
        "count"
    }
    fn feature(&self) -> &str {
        "urn:xmpp:tmp:pmn:count:0"
    }
    fn call<'a>(
        &'a self,
        verb: &'a str,
        params: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        Box::pin(async move {
            match verb {
                "bump" => {
                    let delay = params.first().and_then(Value::as_i64).unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(delay.max(0) as u64)).await;
                    Ok(Value::from(self.0.runs.fetch_add(1, Ordering::SeqCst) + 1))
                }
                "fail" => {
                    self.0.runs.fetch_add(1, Ordering::SeqCst);
                    Err(Error::fault(409, "not now"))
                }
                _ => Err(Error::new(ErrorKind::UnknownMethod, verb)),
            }
        })
    }
}

fn bump(delay_ms: i64) -> Vec<Value> {
    vec![Value::from(delay_ms)]
}

async fn counting_provider(config: ProviderConfig) -> (Provider, Arc<Counter>) {
    let counter = Arc::new(Counter::default());
    let provider = Provider::start(config, vec![Arc::new(CounterService(counter.clone()))])
        .await
        .expect("provider starts");
    (provider, counter)
}

async fn plain_controller(session: SessionConfig, rpc_timeout: Duration) -> Controller {
    Controller::connect(ControllerConfig {
        rpc_timeout,
        ..ControllerConfig::plain(session)
    })
    .await
    .expect("controller connects")
}

async fn wait_online(controller: &Controller, within: Duration) {
    tokio::time::timeout(within, async {
        while !matches!(controller.state(), ConnectionState::Online { .. }) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the controller came back online");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_retried_with_the_same_id_runs_once() {
    let (provider, counter) =
        counting_provider(ProviderConfig::plain(session_config(&HOME, "tv"), "TV")).await;
    let controller = plain_controller(session_config(&HOME, "phone"), Duration::from_secs(5)).await;
    let tv = discover(&controller, &provider).await.jid;

    let id = CallId::new();
    let first = controller
        .call_as(&tv, "count.bump", bump(0), &id)
        .await
        .expect("first attempt");
    let again = controller
        .call_as(&tv, "count.bump", bump(0), &id)
        .await
        .expect("retry");
    assert_eq!(first, Value::from(1));
    assert_eq!(again, first, "the retry gets the first answer");
    assert_eq!(counter.runs(), 1, "the retry did not run again");

    // A repeat of a call still running waits for that run and shares its answer.
    let slow = CallId::new();
    let (a, b) = tokio::join!(
        controller.call_as(&tv, "count.bump", bump(500), &slow),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            controller
                .call_as(&tv, "count.bump", bump(500), &slow)
                .await
        }
    );
    assert_eq!(a.expect("first"), Value::from(2));
    assert_eq!(b.expect("repeat"), Value::from(2));
    assert_eq!(counter.runs(), 2);

    // A new id is a new call; a plain `call` is a new call every time.
    controller.call(&tv, "count.bump", bump(0)).await.unwrap();
    controller.call(&tv, "count.bump", bump(0)).await.unwrap();
    assert_eq!(counter.runs(), 4);
    // A fault is remembered like a success: its retry does not run either.
    let failing = CallId::new();
    for _ in 0..2 {
        let err = controller
            .call_as(&tv, "count.fail", vec![], &failing)
            .await
            .expect_err("fault");
        assert_eq!(err.kind(), ErrorKind::Fault);
        assert_eq!(err.outcome(), CallOutcome::Ran);
    }
    assert_eq!(counter.runs(), 5);
    let stats = provider.stats();
    assert_eq!(stats.calls_deduplicated, 3, "{stats:?}");
    controller.close().await;
    provider.stop().await;
}

/// The two wire forms of a call id: a pmn controller's calls carry it in the iq id (no element,
/// nothing beside the `methodCall`), and a provider still de-duplicates the older form, the
/// `<call xmlns='urn:xmpp:tmp:pmn:call:0'/>` element with a fresh iq id per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_id_rides_in_the_iq_id_and_the_older_element_form_is_still_deduplicated() {
    use pmn::core::rpc::call_id;
    use pmn::core::rpc::xmlrpc::{self, MethodCall, MethodResponse, RpcPayload};
    use pmn::core::session::IqReply;
    use tokio_xmpp::Stanza;
    use xmpp_parsers::iq::Iq;
    use xmpp_parsers::jid::Jid;

    let (provider, counter) = counting_provider(ProviderConfig::plain(
        session_config(&HOME, "tv-wire"),
        "TV",
    ))
    .await;
    let (tap_tx, mut tap) = tokio::sync::mpsc::unbounded_channel();
    let mut config = session_config(&HOME, "phone-wire");
    config.outbound_tap = Some(tap_tx);
    let controller = plain_controller(config, Duration::from_secs(5)).await;
    let tv = discover(&controller, &provider).await.jid;

    let id = CallId::new();
    controller
        .call_as(&tv, "count.bump", bump(0), &id)
        .await
        .expect("call");
    let sent = loop {
        match tap.recv().await.expect("tap") {
            Stanza::Iq(Iq::Set { id, payload, .. })
                if payload.is("query", xmlrpc::NS)
                    && String::from(&payload).contains("count.bump") =>
            {
                break (id, payload)
            }
            _ => continue,
        }
    };
    assert_eq!(CallId::from_iq_id(&sent.0), Some(id.clone()), "{}", sent.0);
    assert_eq!(
        call_id::of_query(&sent.1),
        call_id::CallIdField::Absent,
        "no call-id element on the wire"
    );
    assert_eq!(sent.1.children().count(), 1, "only the methodCall");

    // The older form, as earlier pmn controllers sent it: the element, a fresh iq id each time.
    let older = CallId::parse(&format!("{:032x}", 0x5f0c_u128)).expect("a 32-hex call id");
    let query = call_id::attach(
        xmlrpc::call_to_query(&MethodCall::new("count.bump", bump(0))).expect("encodes"),
        &older,
    );
    let mut answers = Vec::new();
    for _ in 0..2 {
        let iq = Iq::Set {
            from: None,
            to: Some(Jid::from(tv.clone())),
            id: String::new(),
            payload: query.clone(),
        };
        match controller
            .session()
            .request(iq, Duration::from_secs(5))
            .await
            .expect("answer")
        {
            IqReply::Result(Some(q)) => match xmlrpc::parse_query(&q, &xmlrpc::Limits::DEFAULT) {
                Ok(RpcPayload::Response(MethodResponse::Success(v))) => answers.push(v),
                other => panic!("not a success: {other:?}"),
            },
            other => panic!("not a result: {other:?}"),
        }
    }
    assert_eq!(answers, vec![Value::from(2), Value::from(2)]);
    assert_eq!(counter.runs(), 2, "the older form's repeat did not run");
    assert_eq!(provider.stats().calls_deduplicated, 1);
    controller.close().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_did_not_run_faults_did() {
    let (provider, counter) =
        counting_provider(ProviderConfig::plain(session_config(&HOME, "tv"), "TV")).await;
    let controller = plain_controller(session_config(&HOME, "phone"), Duration::from_secs(5)).await;
    let tv = discover(&controller, &provider).await.jid;

    let unknown = controller
        .call(&tv, "count.nothing", vec![])
        .await
        .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::UnknownMethod);
    assert_eq!(unknown.outcome(), CallOutcome::NotRun);
    let no_service = controller
        .call(&tv, "nosuch.verb", vec![])
        .await
        .unwrap_err();
    assert_eq!(no_service.outcome(), CallOutcome::NotRun);

    let fault = controller
        .call(&tv, "count.fail", vec![])
        .await
        .unwrap_err();
    assert_eq!(fault.kind(), ErrorKind::Fault);
    assert_eq!(fault.outcome(), CallOutcome::Ran);
    assert!(fault.did_run());
    // The FFI error says the same.
    let ffi = pmn::PmnError::from(fault);
    assert_eq!(ffi.outcome(), pmn::CallOutcome::Ran);
    assert!(ffi.did_run());
    assert_eq!(
        pmn::PmnError::from(unknown).outcome(),
        pmn::CallOutcome::NotRun
    );

    // A stranger is refused before anything runs.
    let mut stranger = ControllerConfig::plain(session_config(&STRANGER, "phone"));
    stranger.rpc_timeout = Duration::from_secs(5);
    let stranger = Controller::connect(stranger).await.expect("stranger");
    let forbidden = stranger.call(&tv, "count.bump", bump(0)).await.unwrap_err();
    assert_eq!(forbidden.kind(), ErrorKind::Forbidden);
    assert_eq!(forbidden.outcome(), CallOutcome::NotRun);
    assert!(!forbidden.did_run());

    // A call to nobody: the server answers it cannot be delivered.
    let gone: FullJid = format!("{}/{}", HOME.jid, unique("gone")).parse().unwrap();
    let undelivered = controller
        .call(&gone, "count.bump", bump(0))
        .await
        .unwrap_err();
    assert_eq!(undelivered.outcome(), CallOutcome::NotRun, "{undelivered}");

    // Not sent at all: the session has ended.
    controller.close().await;
    let offline = controller
        .call(&tv, "count.bump", bump(0))
        .await
        .unwrap_err();
    assert_eq!(offline.kind(), ErrorKind::NotConnected);
    assert_eq!(offline.outcome(), CallOutcome::NotRun);
    assert_eq!(
        pmn::PmnError::from(offline).outcome(),
        pmn::CallOutcome::NotRun
    );

    assert_eq!(counter.runs(), 1, "only the fault ran");
    stranger.close().await;
    provider.stop().await;
}

/// The controller's connection goes while a slow call is in flight: the call fails at once,
/// `Unknown` (the provider did run it); once back, its retry with the same id gets the first
/// run's answer and the method has run once. Then the same through `call_with_retry`, which does
/// all that by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_answer_is_lost_is_unknown_and_its_retry_gets_the_first_answer() {
    let (provider, counter) =
        counting_provider(ProviderConfig::plain(session_config(&HOME, "tv"), "TV")).await;
    let relay = Relay::start(server().port()).await;
    let mut session = session_config(&HOME, "phone");
    session.server = ServerAddress::HostPort("127.0.0.1".into(), relay.port);
    let controller = plain_controller(session, Duration::from_secs(10)).await;
    let tv = discover(&controller, &provider).await.jid;
    controller.call(&tv, "count.bump", bump(0)).await.unwrap();
    assert_eq!(counter.runs(), 1);

    let id = CallId::new();
    let started = Instant::now();
    let call = tokio::spawn({
        let (c, tv, id) = (controller.clone(), tv.clone(), id.clone());
        async move { c.call_as(&tv, "count.bump", bump(1000), &id).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.cut();
    let err = call.await.unwrap().expect_err("the answer cannot come");
    let failed_after = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");
    assert!(
        failed_after < Duration::from_secs(2),
        "failed only after {failed_after:?} (timeout 10 s)"
    );
    eprintln!("plain call cut off: failed {failed_after:?} after it was sent (cut at 300 ms)");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(counter.runs(), 2, "the provider ran the call meanwhile");
    relay.reopen();
    wait_online(&controller, Duration::from_secs(20)).await;
    let retried = controller
        .call_as(&tv, "count.bump", bump(1000), &id)
        .await
        .expect("retry after the reconnection");
    assert_eq!(retried, Value::from(2), "the first run's answer");
    assert_eq!(counter.runs(), 2, "ran once");

    // call_with_retry: the cut, the wait for the connection and the retry happen inside.
    let started = Instant::now();
    let call = tokio::spawn({
        let (c, tv) = (controller.clone(), tv.clone());
        async move {
            c.call_with_retry(&tv, "count.bump", bump(800), &RetryPolicy::default())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.cut();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.reopen();
    let answer = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("call_with_retry ends")
        .unwrap()
        .expect("call_with_retry gets the answer");
    assert_eq!(answer, Value::from(3));
    assert_eq!(counter.runs(), 3, "ran once across the cut");
    eprintln!(
        "call_with_retry across a 1.5 s cut: answered after {:?}",
        started.elapsed()
    );
    assert!(provider.stats().calls_deduplicated >= 2);
    controller.close().await;
    provider.stop().await;
}

/// A flood of fresh call ids from one caller stays within that caller's share of the provider's
/// memory; another caller's remembered call survives it and is still answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_memory_is_bounded_and_a_flood_spares_other_callers() {
    let limits = ProviderLimits {
        calls_remembered_per_caller: 8,
        calls_remembered: 32,
        ..ProviderLimits::default()
    };
    let (provider, counter) = counting_provider(ProviderConfig {
        limits,
        ..ProviderConfig::plain(session_config(&HOME, "tv"), "TV")
    })
    .await;
    let tablet = plain_controller(session_config(&HOME, "tablet"), Duration::from_secs(5)).await;
    let flooder = plain_controller(session_config(&HOME, "phone"), Duration::from_secs(5)).await;
    let tv = discover(&tablet, &provider).await.jid;
    discover(&flooder, &provider).await;

    let kept = CallId::new();
    tablet
        .call_as(&tv, "count.bump", bump(0), &kept)
        .await
        .unwrap();
    let mut peak = 0;
    for chunk in 0..20 {
        let calls: Vec<_> = (0..10)
            .map(|_| flooder.call(&tv, "count.bump", bump(0)))
            .collect();
        for result in futures::future::join_all(calls).await {
            result.expect("flood call");
        }
        let remembered = provider.stats().calls_remembered;
        peak = peak.max(remembered);
        assert!(
            remembered <= 8 + 1,
            "after {} flood calls the provider remembers {remembered}",
            (chunk + 1) * 10
        );
    }
    let stats = provider.stats();
    eprintln!("after 200 distinct ids from one caller: {stats:?}, peak {peak} entries");
    assert_eq!(stats.calls_forgotten, 200 - 8);
    assert_eq!(counter.runs(), 201);
    // The tablet's call is still remembered: its retry does not run.
    let again = tablet
        .call_as(&tv, "count.bump", bump(0), &kept)
        .await
        .unwrap();
    assert_eq!(again, Value::from(1));
    assert_eq!(counter.runs(), 201);
    tablet.close().await;
    flooder.close().await;
    provider.stop().await;
}

/// One device's keys: a software key store in a tempdir and its own trust store.
struct Keys {
    identity: DeviceIdentity,
    trust: Arc<TrustStore>,
    _dir: tempfile::TempDir,
}

fn keys(name: &str) -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SoftwareKeyStore::open(dir.path().join("keys")).unwrap());
    let identity = DeviceIdentity::load_or_generate(store, "tls", name).unwrap();
    Keys {
        identity,
        trust: Arc::new(TrustStore::in_memory()),
        _dir: dir,
    }
}

impl Keys {
    fn settings(&self) -> E2eSettings {
        E2eSettings::new(self.identity.clone(), self.trust.clone())
    }

    fn pin(&self, other: &Keys) {
        let home: BareJid = HOME.jid.parse().unwrap();
        self.trust
            .pin(&home, &other.identity.fingerprint(), TrustSource::Manual)
            .unwrap();
    }
}

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

/// A tunnel call is in flight when the server freezes (the TCP connection stays open, nothing
/// comes back). The app reports a network change; the probe goes unanswered, the link is cut, and
/// the call fails at once — `Unknown`, well within its 10 s timeout. Once the server answers
/// again, the next call works through a fresh tunnel, and the cut-off call's retry with its id
/// gets the first answer (or runs, if it never arrived): it has run once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_call_during_a_server_freeze_fails_fast_and_the_next_call_gets_a_new_tunnel() {
    use pmn::core::session::NETWORK_CHANGE_PROBE;
    let server = TestServer::start().expect("own prosody");
    let (tv_keys, phone_keys) = (keys("tv"), keys("phone"));
    tv_keys.pin(&phone_keys);
    phone_keys.pin(&tv_keys);
    let (provider, counter) = counting_provider(ProviderConfig {
        e2e: Some(tv_keys.settings()),
        ..ProviderConfig::plain(config_for(&server, "tv"), "TV")
    })
    .await;
    let rpc_timeout = Duration::from_secs(10);
    let controller = Controller::connect(ControllerConfig {
        rpc_timeout,
        e2e: Some(phone_keys.settings()),
        ..ControllerConfig::plain(config_for(&server, "phone"))
    })
    .await
    .expect("controller connects");
    let tv = controller
        .wait_for_provider(
            |p| Some(&p.jid) == provider.session().jid().as_ref(),
            Duration::from_secs(10),
        )
        .await
        .expect("provider discovered")
        .jid;
    controller.call(&tv, "count.bump", bump(0)).await.unwrap();
    let e2e = controller.e2e().expect("e2e");
    let first_tunnel = e2e.existing_tunnel(&tv).expect("tunnel up");

    server.freeze().expect("SIGSTOP");
    let id = CallId::new();
    let started = Instant::now();
    let call = tokio::spawn({
        let (c, tv, id) = (controller.clone(), tv.clone(), id.clone());
        async move { c.call_as(&tv, "count.bump", bump(0), &id).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    controller.session().network_changed().await;
    let err = tokio::time::timeout(rpc_timeout, call)
        .await
        .expect("the call ended before its timeout")
        .unwrap()
        .expect_err("no answer from a frozen server");
    let failed_after = started.elapsed();
    server.thaw().expect("SIGCONT");
    eprintln!("tunnel call during a freeze: failed after {failed_after:?} ({err})");
    assert_eq!(err.kind(), ErrorKind::NotConnected, "{err}");
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");
    // The probe's 3 s and the 200 ms before it are the floor (3.4 s measured); the rest of the
    // slack is for a loaded 2-core CI host, and still far below the call's 10 s timeout.
    assert!(
        failed_after <= NETWORK_CHANGE_PROBE + Duration::from_secs(2),
        "the tunnel call failed only after {failed_after:?}"
    );
    assert!(!first_tunnel.is_up(), "the cut-off tunnel was reset");

    wait_online(&controller, Duration::from_secs(20)).await;
    let recovered = Instant::now();
    let next = controller
        .call_with_retry(&tv, "count.bump", bump(0), &RetryPolicy::default())
        .await
        .expect("a call after the recovery");
    eprintln!(
        "first tunnel call after the recovery: {:?}",
        recovered.elapsed()
    );
    let second_tunnel = e2e.existing_tunnel(&tv).expect("a tunnel again");
    assert_ne!(
        first_tunnel.pairing_binding(),
        second_tunnel.pairing_binding(),
        "the next call used a new tunnel"
    );
    let retried = controller
        .call_as(&tv, "count.bump", bump(0), &id)
        .await
        .expect("the cut-off call's retry");
    let runs = counter.runs();
    assert!(
        runs == 3,
        "the cut-off call ran once ({runs} runs; next = {next:?}, retried = {retried:?})"
    );
    controller.close().await;
    provider.stop().await;
}

/// The server crashes (kill -9) while a slow tunnel call runs on the provider: the connection
/// drops at once, so the call fails at once (`Unknown`) instead of at its 10 s timeout. The
/// server comes back without our session (no resumption), both devices log in afresh, and the
/// call's retry with its id goes through a new tunnel and gets the first run's answer: it ran
/// once although its answer was lost with the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_call_cut_off_by_a_server_crash_fails_at_once_and_its_retry_runs_nothing_twice() {
    let server = TestServer::start().expect("own prosody");
    let (tv_keys, phone_keys) = (keys("tv"), keys("phone"));
    tv_keys.pin(&phone_keys);
    phone_keys.pin(&tv_keys);
    let (provider, counter) = counting_provider(ProviderConfig {
        e2e: Some(tv_keys.settings()),
        ..ProviderConfig::plain(config_for(&server, "tv"), "TV")
    })
    .await;
    let tv_jid = provider.session().jid().expect("provider online");
    let controller = Controller::connect(ControllerConfig {
        rpc_timeout: Duration::from_secs(10),
        e2e: Some(phone_keys.settings()),
        ..ControllerConfig::plain(config_for(&server, "phone"))
    })
    .await
    .expect("controller connects");
    let tv = controller
        .wait_for_provider(|p| p.jid == tv_jid, Duration::from_secs(10))
        .await
        .expect("provider discovered")
        .jid;
    controller.call(&tv, "count.bump", bump(0)).await.unwrap();
    let e2e = controller.e2e().expect("e2e");
    let first_tunnel = e2e.existing_tunnel(&tv).expect("tunnel up");

    let id = CallId::new();
    let call = tokio::spawn({
        let (c, tv, id) = (controller.clone(), tv.clone(), id.clone());
        async move { c.call_as(&tv, "count.bump", bump(1500), &id).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let crashed = Instant::now();
    server.crash().expect("kill -9 prosody");
    let err = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call ended before its timeout")
        .unwrap()
        .expect_err("the server is gone");
    let failed_after = crashed.elapsed();
    eprintln!("tunnel call at a server crash: failed {failed_after:?} after the kill ({err})");
    assert_eq!(err.outcome(), CallOutcome::Unknown, "{err}");
    // As soon as the connection drops: ~30 ms on Prosody, ~1.1 s on ejabberd (its VM takes a
    // moment to die); either way far from the 10 s timeout.
    assert!(
        failed_after < Duration::from_secs(3),
        "failed only {failed_after:?} after the crash"
    );
    assert!(!first_tunnel.is_up());

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(counter.runs(), 2, "the provider finished the run meanwhile");
    server.restart().expect("restart prosody");
    wait_online(&controller, Duration::from_secs(20)).await;
    controller
        .wait_for_provider(|p| p.jid == tv, Duration::from_secs(20))
        .await
        .expect("provider back");
    let again = controller
        .call_as(&tv, "count.bump", bump(1500), &id)
        .await
        .expect("the cut-off call's retry after the restart");
    assert_eq!(again, Value::from(2), "the first run's answer");
    let second_tunnel = e2e.existing_tunnel(&tv).expect("a tunnel again");
    assert_ne!(
        first_tunnel.pairing_binding(),
        second_tunnel.pairing_binding()
    );
    assert_eq!(counter.runs(), 2, "the cut-off call ran once");
    controller.close().await;
    provider.stop().await;
}
