//! End-to-end tunnel costs against the plain path measured in the same run (same Prosody, same two
//! sessions):
//! - **setup**: a new tunnel (Jingle initiate/accept + IBB open + TLS 1.3 mutual handshake through the
//!   server) in ms and in plain iq round trips; a reused tunnel (cache hit);
//! - **rpc**: an RPC-sized iq (≈ 400 bytes of XML-RPC) answered at once by the peer, through the
//!   tunnel vs as a plain iq via the server. The ratio is what end-to-end security costs per call.
//!
//! Run: `cargo bench --features test-ca --bench e2e`. Noisy shared machine: compare within one run.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pmn::core::e2e::{E2eEndpoint, E2eInbound, E2eSettings, TrustSource, TrustStore};
use pmn::core::identity::DeviceIdentity;
use pmn::core::session::{Inbound, IqReply, Session, SessionConfig};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::{TestServer, HOME};
use tokio::sync::mpsc;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;

const CALLS: usize = 500;
const SETUPS: usize = 30;
const T: Duration = Duration::from_secs(10);

fn config(server: &TestServer, device: &str) -> SessionConfig {
    common::session_config(server, &HOME, device)
}

struct Device {
    endpoint: E2eEndpoint,
    session: Session,
    jid: FullJid,
    events: mpsc::Receiver<E2eInbound>,
    stanzas_out: Arc<std::sync::atomic::AtomicUsize>,
}

async fn device(server: &TestServer, name: &str, dir: &std::path::Path) -> Device {
    let mut c = config(server, name);
    let (tap_tx, mut tap) = mpsc::unbounded_channel::<Stanza>();
    c.outbound_tap = Some(tap_tx);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = counter.clone();
    tokio::spawn(async move {
        while tap.recv().await.is_some() {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let (session, mut inbound) = Session::connect(c).await.expect("session");
    let store = Arc::new(SoftwareKeyStore::open(dir.join(name)).expect("store"));
    let identity = DeviceIdentity::load_or_generate(store, "tls", name).expect("identity");
    let (endpoint, events) = E2eEndpoint::new(
        session.clone(),
        E2eSettings::new(identity, Arc::new(TrustStore::in_memory())),
    );
    let (ep, s) = (endpoint.clone(), session.clone());
    tokio::spawn(async move {
        while let Some(item) = inbound.recv().await {
            let Inbound::Stanza(stanza) = item else {
                continue;
            };
            if ep.handle_stanza(&stanza) {
                continue;
            }
            // The plain path: answer at once with the same payload.
            if let Stanza::Iq(Iq::Set {
                from, id, payload, ..
            }) = *stanza
            {
                let _ = s.send(Iq::Result {
                    from: None,
                    to: from,
                    id,
                    payload: Some(payload),
                });
            }
        }
    });
    let jid = session.jid().expect("online");
    Device {
        endpoint,
        session,
        jid,
        events,
        stanzas_out: counter,
    }
}

fn rpc_payload() -> Element {
    let call = format!(
        "<query xmlns='jabber:iq:rpc'><methodCall><methodName>player.status</methodName><params>{}</params></methodCall></query>",
        "<param><value><string>urn:pmn:bench:argument</string></value></param>".repeat(4)
    );
    call.parse().expect("payload")
}

fn iq(to: &FullJid) -> Iq {
    Iq::Set {
        from: None,
        to: Some(Jid::from(to.clone())),
        id: String::new(),
        payload: rpc_payload(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");
    let dir = tempfile::tempdir().expect("tempdir");
    let phone = device(&server, "bench-phone", dir.path()).await;
    let mut tv = device(&server, "bench-tv", dir.path()).await;
    for (a, b) in [(&phone, &tv), (&tv, &phone)] {
        a.endpoint
            .trust()
            .pin(
                &b.jid.to_bare(),
                &b.endpoint.fingerprint(),
                TrustSource::Manual,
            )
            .expect("pin");
    }
    // The TV answers tunnelled iqs at once.
    let tv_endpoint = tv.endpoint.clone();
    let mut tv_events = std::mem::replace(&mut tv.events, mpsc::channel(1).1);
    tokio::spawn(async move {
        while let Some(event) = tv_events.recv().await {
            if let E2eInbound::Stanza(stanza) = event {
                if let Stanza::Iq(Iq::Set {
                    from, id, payload, ..
                }) = *stanza
                {
                    let _ = tv_endpoint.send(Iq::Result {
                        from: None,
                        to: from,
                        id,
                        payload: Some(payload),
                    });
                }
            }
        }
    });

    // Plain iq round trip (the unit for "server round trips").
    let mut plain = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 50 {
        let start = Instant::now();
        match phone.session.request(iq(&tv.jid), T).await.expect("plain") {
            IqReply::Result(Some(_)) => {}
            other => panic!("plain reply {other:?}"),
        }
        if i >= 50 {
            plain.push(start.elapsed());
        }
    }
    let (plain_med, plain_p99) = common::median_p99(plain);

    // Tunnel setup: new vs reused.
    let mut setups = Vec::with_capacity(SETUPS);
    let mut stanzas = Vec::with_capacity(SETUPS);
    for _ in 0..SETUPS {
        let before = (
            phone.stanzas_out.load(std::sync::atomic::Ordering::Relaxed),
            tv.stanzas_out.load(std::sync::atomic::Ordering::Relaxed),
        );
        let start = Instant::now();
        let tunnel = phone.endpoint.tunnel(&tv.jid).await.expect("tunnel");
        setups.push(start.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await; // let the last acks go out
        stanzas.push(
            phone.stanzas_out.load(std::sync::atomic::Ordering::Relaxed) - before.0
                + tv.stanzas_out.load(std::sync::atomic::Ordering::Relaxed)
                - before.1,
        );
        tunnel.close();
        tokio::time::timeout(T, tunnel.closed())
            .await
            .expect("closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (setup_med, setup_p99) = common::median_p99(setups);
    stanzas.sort();
    let mut reused = Vec::with_capacity(CALLS);
    phone.endpoint.tunnel(&tv.jid).await.expect("tunnel");
    for _ in 0..CALLS {
        let start = Instant::now();
        phone.endpoint.tunnel(&tv.jid).await.expect("reused");
        reused.push(start.elapsed());
    }
    let (reused_med, _) = common::median_p99(reused);

    // RPC-sized request/response through the tunnel.
    let mut tunnelled = Vec::with_capacity(CALLS);
    for i in 0..CALLS + 50 {
        let start = Instant::now();
        match phone
            .endpoint
            .request(iq(&tv.jid), T)
            .await
            .expect("tunnelled")
        {
            IqReply::Result(Some(_)) => {}
            other => panic!("tunnel reply {other:?}"),
        }
        if i >= 50 {
            tunnelled.push(start.elapsed());
        }
    }
    let (tun_med, tun_p99) = common::median_p99(tunnelled);

    println!("e2e bench ({CALLS} calls, {SETUPS} setups; Prosody on loopback; same run)");
    println!("  plain iq via server       median {plain_med:8.0} µs   p99 {plain_p99:8.0} µs   (baseline)");
    println!(
        "  iq through e2e tunnel     median {tun_med:8.0} µs   p99 {tun_p99:8.0} µs   ratio {:.2}×",
        tun_med / plain_med
    );
    println!(
        "  new tunnel setup          median {:8.2} ms   p99 {:8.2} ms   = {:.1} plain round trips; {} stanzas (median, both sides)",
        setup_med / 1000.0,
        setup_p99 / 1000.0,
        setup_med / plain_med,
        stanzas[stanzas.len() / 2]
    );
    println!("  reused tunnel (cache hit) median {reused_med:8.1} µs   0 round trips");
    phone.session.close().await;
    tv.session.close().await;
}
