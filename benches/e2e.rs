//! End-to-end tunnel costs against the plain path measured in the same run (same Prosody, same two
//! sessions), in [`ROUNDS`] rounds whose spread is printed (min/median/max):
//! - **rpc**: an RPC-sized iq (≈ 400 bytes of XML-RPC) answered at once by the peer, through the
//!   tunnel vs as a plain iq via the server, **interleaved call by call** (the order alternates), so
//!   the machine's noise falls on both alike. The ratio is what end-to-end security costs per call.
//!   A plain headline-message round trip with the same payload runs in the same loop: the tunnel's
//!   data travels in messages, which the server relays faster than iqs, so this second baseline
//!   shows what the tunnel itself costs;
//! - **setup**: a new tunnel (Jingle initiate/accept + IBB open + TLS 1.3 mutual handshake through the
//!   server), each interleaved with one plain iq round trip: in ms, in plain round trips, in stanzas
//!   each way, and in **relayed round trips on the opener's critical path** — how often the opener
//!   had to wait for the peer (the direction changes of the time-ordered stanzas both sides sent
//!   during the setup); one setup's stanzas are printed as a timeline;
//! - **resumed setup**: the same for a tunnel to the device seen just before (issue 16, goal 4):
//!   the ClientHello, offering the last tunnel's ticket, rides in the initiate and the session
//!   resumes (no certificates, no signatures). New and resumed setups alternate, each next to its
//!   own plain round trip; before each new one both devices forget their tickets.
//!
//! Run: `cargo xtask bench e2e` (or `cargo bench --features test-ca --bench e2e`). Noisy shared
//! machine: only the ratios within one round mean anything.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pmn::core::e2e::{E2eEndpoint, E2eInbound, E2eSettings, TrustSource, TrustStore};
use pmn::core::identity::DeviceIdentity;
use pmn::core::session::{Inbound, IqReply, Session, SessionConfig};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::{TestServer, HOME};
use tokio::sync::mpsc;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;

const ROUNDS: usize = 3;
const CALLS: usize = 400;
const WARMUP: usize = 50;
const SETUPS: usize = 30;
const T: Duration = Duration::from_secs(10);

fn config(server: &TestServer, device: &str) -> SessionConfig {
    common::session_config(server, &HOME, device)
}

/// Which device sent a stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Phone,
    Tv,
}

/// Every stanza both sessions sent, with when and what (one short word).
type Log = Arc<Mutex<Vec<(Instant, Side, String)>>>;

struct Device {
    endpoint: E2eEndpoint,
    session: Session,
    jid: FullJid,
    events: mpsc::Receiver<E2eInbound>,
    /// Echoes of our plain message pings.
    pongs: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
}

/// Namespace of the plain message ping (a second baseline: the stanza kind IBB data travels in).
const NS_PING: &str = "urn:pmn:bench:ping";

/// A short name of a stanza for the timeline: `iq-set:jingle`, `iq-result`, `message:data`.
fn describe(stanza: &Stanza) -> String {
    match stanza {
        Stanza::Iq(Iq::Set { payload, .. }) => match payload.attr("action") {
            Some(action) => format!("iq-set:{action}"),
            None => format!("iq-set:{}", payload.name()),
        },
        Stanza::Iq(Iq::Get { payload, .. }) => format!("iq-get:{}", payload.name()),
        Stanza::Iq(Iq::Result { .. }) => "iq-result".into(),
        Stanza::Iq(Iq::Error { .. }) => "iq-error".into(),
        Stanza::Message(m) => format!("message:{}", m.payloads.first().map_or("-", |p| p.name())),
        Stanza::Presence(_) => "presence".into(),
    }
}

async fn device(
    server: &TestServer,
    name: &str,
    side: Side,
    log: Log,
    dir: &std::path::Path,
) -> Device {
    let mut c = config(server, name);
    let (tap_tx, mut tap) = mpsc::unbounded_channel::<Stanza>();
    c.outbound_tap = Some(tap_tx);
    tokio::spawn(async move {
        while let Some(stanza) = tap.recv().await {
            let what = describe(&stanza);
            log.lock().unwrap().push((Instant::now(), side, what));
        }
    });
    let (session, mut inbound) = Session::connect(c).await.expect("session");
    let store = Arc::new(SoftwareKeyStore::open(dir.join(name)).expect("store"));
    let identity = DeviceIdentity::load_or_generate(store, "tls", name).expect("identity");
    let (endpoint, events) = E2eEndpoint::new(
        session.clone(),
        E2eSettings::new(identity, Arc::new(TrustStore::in_memory())),
    );
    // Announced as the roles announce themselves: interest in the network's key node (XEP-0163
    // `+notify`), so the server pushes its changes and a trust decision may rest on a current read.
    let info =
        pmn::core::discovery::disco_info_for(Some(name), &[pmn::core::e2e::pubkey::NOTIFY_PUBKEY]);
    session
        .send(pmn::core::discovery::presence_for(&info))
        .expect("presence");
    let (ep, s) = (endpoint.clone(), session.clone());
    let (pong_tx, pongs) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(item) = inbound.recv().await {
            let Inbound::Stanza(stanza) = item else {
                continue;
            };
            if ep.handle_stanza(&stanza) {
                continue;
            }
            // The server's caps query (it learns our `+notify` from the answer).
            if let Stanza::Iq(Iq::Get {
                from, id, payload, ..
            }) = &*stanza
            {
                if payload.is("query", xmpp_parsers::ns::DISCO_INFO) {
                    let mut answer = info.clone();
                    answer.node = payload.attr("node").map(str::to_owned);
                    let _ = s.send(Iq::Result {
                        from: None,
                        to: from.clone(),
                        id: id.clone(),
                        payload: Some(answer.into()),
                    });
                }
                continue;
            }
            // The plain message path: a ping is answered with a pong, a pong is reported.
            if let Stanza::Message(m) = &*stanza {
                match m
                    .payloads
                    .first()
                    .map(|p| (p.is("ping", NS_PING), p.is("pong", NS_PING)))
                {
                    Some((true, _)) => {
                        let mut pong =
                            Message::new_with_type(MessageType::Headline, m.from.clone());
                        pong.payloads
                            .push(Element::builder("pong", NS_PING).build());
                        let _ = s.send(pong);
                    }
                    Some((_, true)) => {
                        let _ = pong_tx.send(());
                    }
                    _ => {}
                }
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
        pongs: tokio::sync::Mutex::new(pongs),
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

async fn plain_call(phone: &Device, tv: &Device) -> Duration {
    let start = Instant::now();
    match phone.session.request(iq(&tv.jid), T).await.expect("plain") {
        IqReply::Result(Some(_)) => {}
        other => panic!("plain reply {other:?}"),
    }
    start.elapsed()
}

/// A headline message to the peer and its echo: one round trip of the stanza kind IBB data uses.
async fn plain_message(phone: &Device, tv: &Device) -> Duration {
    let mut pongs = phone.pongs.lock().await;
    let start = Instant::now();
    let mut ping = Message::new_with_type(MessageType::Headline, Some(Jid::from(tv.jid.clone())));
    ping.payloads.push(rpc_payload());
    ping.payloads
        .insert(0, Element::builder("ping", NS_PING).build());
    phone.session.send(ping).expect("ping");
    tokio::time::timeout(T, pongs.recv())
        .await
        .expect("pong in time")
        .expect("pong");
    start.elapsed()
}

async fn tunnel_call(phone: &Device, tv: &Device) -> Duration {
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
    start.elapsed()
}

/// What one new-tunnel setup cost.
struct Setup {
    time: Duration,
    phone_out: usize,
    tv_out: usize,
    /// Times the opener waited for the peer: runs of the peer's stanzas between the opener's.
    waits: usize,
    timeline: Vec<(Duration, Side, String)>,
}

/// The stanzas of `log` from `start` to `end`, and the opener's waits among them.
fn setup_of(log: &Log, start: Instant, end: Instant, time: Duration) -> Setup {
    let log = log.lock().unwrap();
    let mut window: Vec<&(Instant, Side, String)> = log
        .iter()
        .filter(|(t, _, _)| *t >= start && *t <= end)
        .collect();
    window.sort_by_key(|(t, _, _)| *t);
    let mut waits = 0;
    let mut last = None;
    for (_, side, _) in &window {
        if *side == Side::Tv && last == Some(Side::Phone) {
            waits += 1;
        }
        last = Some(*side);
    }
    Setup {
        time,
        phone_out: window.iter().filter(|e| e.1 == Side::Phone).count(),
        tv_out: window.iter().filter(|e| e.1 == Side::Tv).count(),
        waits,
        timeline: window
            .iter()
            .map(|(t, side, what)| (t.duration_since(start), *side, what.clone()))
            .collect(),
    }
}

/// Prints the median of `setups` (sorted here) and its spread; returns its ms, plain round trips,
/// relayed round trips and stanzas. `timeline` prints the median setup's stanzas.
fn report_setups(
    name: &str,
    setups: &mut [Setup],
    plain_med: f64,
    timeline: bool,
) -> (f64, f64, f64, f64) {
    setups.sort_by_key(|s| s.time);
    let median = &setups[setups.len() / 2];
    let mut waits: Vec<usize> = setups.iter().map(|s| s.waits).collect();
    waits.sort();
    let mut stanzas: Vec<usize> = setups.iter().map(|s| s.phone_out + s.tv_out).collect();
    stanzas.sort();
    let ms = median.time.as_secs_f64() * 1e3;
    let rts = median.time.as_secs_f64() * 1e6 / plain_med;
    println!(
        "  {name:<25} median {ms:8.2} ms   = {rts:.1} plain round trips ({plain_med:.0} µs, same round)"
    );
    println!(
        "                            relayed round trips on the opener's critical path: median {} (min {} max {}); stanzas median {} (the median setup: phone→tv {}, tv→phone {})",
        waits[waits.len() / 2],
        waits[0],
        waits[waits.len() - 1],
        stanzas[stanzas.len() / 2],
        median.phone_out,
        median.tv_out
    );
    if timeline {
        println!("  timeline of the median {name} (µs since the call, who sent what):");
        for (at, side, what) in &median.timeline {
            let arrow = match side {
                Side::Phone => "phone → tv",
                Side::Tv => "tv → phone",
            };
            println!("    {:7.0}  {arrow}  {what}", at.as_secs_f64() * 1e6);
        }
    }
    (
        ms,
        rts,
        waits[waits.len() / 2] as f64,
        stanzas[stanzas.len() / 2] as f64,
    )
}

fn min_med_max(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "min {:.2}  median {:.2}  max {:.2}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Log = Arc::default();
    let phone = device(&server, "bench-phone", Side::Phone, log.clone(), dir.path()).await;
    let mut tv = device(&server, "bench-tv", Side::Tv, log.clone(), dir.path()).await;
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
    // Both publish their keys, as the roles do once online; the server's notification of the key
    // node, and the read it prompts, make each side's view of the keys current.
    for dev in [&phone, &tv] {
        dev.endpoint.publish_key().await.expect("publish key");
    }
    let deadline = Instant::now() + T;
    while !(phone.endpoint.keys_read_current() && tv.endpoint.keys_read_current()) {
        if Instant::now() > deadline {
            println!("  (the network's keys never became current: every setup reads them)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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

    println!(
        "e2e bench: {ROUNDS} rounds of {CALLS} interleaved call pairs and {SETUPS} setups; Prosody on loopback"
    );
    let (mut med_ratios, mut p99_ratios, mut msg_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut setup_rts, mut setup_ms, mut setup_waits, mut setup_stanzas) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut resumed_rts, mut resumed_ms, mut resumed_waits, mut resumed_stanzas) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        // RPC: plain and tunnelled, interleaved, the order alternating.
        phone.endpoint.tunnel(&tv.jid).await.expect("tunnel");
        let (mut plain, mut tunnelled, mut messages) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..CALLS + WARMUP {
            let (p, t, m) = if i % 2 == 0 {
                let p = plain_call(&phone, &tv).await;
                let t = tunnel_call(&phone, &tv).await;
                (p, t, plain_message(&phone, &tv).await)
            } else {
                let m = plain_message(&phone, &tv).await;
                let t = tunnel_call(&phone, &tv).await;
                (plain_call(&phone, &tv).await, t, m)
            };
            if i >= WARMUP {
                plain.push(p);
                tunnelled.push(t);
                messages.push(m);
            }
        }
        let (plain_med, plain_p99) = common::median_p99(plain);
        let (tun_med, tun_p99) = common::median_p99(tunnelled);
        let (msg_med, msg_p99) = common::median_p99(messages);
        msg_ratios.push(tun_med / msg_med);
        med_ratios.push(tun_med / plain_med);
        p99_ratios.push(tun_p99 / plain_p99);
        println!("round {round}");
        println!("  plain iq via server       median {plain_med:8.0} µs   p99 {plain_p99:8.0} µs   (baseline)");
        println!(
            "  iq through e2e tunnel     median {tun_med:8.0} µs   p99 {tun_p99:8.0} µs   ratio median {:.2}×  p99 {:.2}×",
            tun_med / plain_med,
            tun_p99 / plain_p99
        );
        println!(
            "  plain message round trip  median {msg_med:8.0} µs   p99 {msg_p99:8.0} µs   (the stanza kind IBB data uses; tunnel/message median {:.2}×)",
            tun_med / msg_med
        );

        // Setup: each new tunnel next to one plain round trip.
        if let Some(t) = phone.endpoint.existing_tunnel(&tv.jid) {
            t.close();
            let _ = tokio::time::timeout(T, t.closed()).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut setups, mut plain) = (Vec::new(), Vec::new());
        let (mut resumed_setups, mut resumed_plain) = (Vec::new(), Vec::new());
        for i in 0..2 * SETUPS {
            // Even: a new tunnel (no ticket on either side); odd: resuming the one before.
            let resume = i % 2 == 1;
            if !resume {
                phone.endpoint.forget_sessions();
                tv.endpoint.forget_sessions();
            }
            let p = plain_call(&phone, &tv).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let start = Instant::now();
            let tunnel = phone.endpoint.tunnel(&tv.jid).await.expect("tunnel");
            let time = start.elapsed();
            let end = Instant::now();
            assert_eq!(tunnel.resumed(), resume, "setup {i}");
            // One call: by its answer the ticket (sent after the handshake) has arrived too.
            tunnel_call(&phone, &tv).await;
            // Let the taps catch up, then read the window of this setup.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let setup = setup_of(&log, start, end, time);
            if resume {
                resumed_setups.push(setup);
                resumed_plain.push(p);
            } else {
                setups.push(setup);
                plain.push(p);
            }
            tunnel.close();
            tokio::time::timeout(T, tunnel.closed())
                .await
                .expect("closed");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let (plain_med, _) = common::median_p99(plain);
        let (ms, rts, waits, stanzas) =
            report_setups("new tunnel setup", &mut setups, plain_med, round == 1);
        setup_ms.push(ms);
        setup_rts.push(rts);
        setup_waits.push(waits);
        setup_stanzas.push(stanzas);
        let (resumed_plain_med, _) = common::median_p99(resumed_plain);
        let (rms, rrts, rwaits, rstanzas) = report_setups(
            "resumed tunnel setup",
            &mut resumed_setups,
            resumed_plain_med,
            round == 1,
        );
        resumed_ms.push(rms);
        resumed_rts.push(rrts);
        resumed_waits.push(rwaits);
        resumed_stanzas.push(rstanzas);
    }
    println!("summary over {ROUNDS} rounds:");
    println!(
        "  tunnel RPC / plain, median ratio: {}",
        min_med_max(med_ratios)
    );
    println!(
        "  tunnel RPC / plain, p99 ratio:    {}",
        min_med_max(p99_ratios)
    );
    println!(
        "  tunnel RPC / plain message RT:    {}",
        min_med_max(msg_ratios)
    );
    println!(
        "  new tunnel, ms:                   {}",
        min_med_max(setup_ms)
    );
    println!(
        "  new tunnel, plain round trips:    {}",
        min_med_max(setup_rts)
    );
    println!(
        "  new tunnel, relayed round trips:  {}",
        min_med_max(setup_waits)
    );
    println!(
        "  new tunnel, stanzas:              {}",
        min_med_max(setup_stanzas)
    );
    println!(
        "  resumed tunnel, ms:               {}",
        min_med_max(resumed_ms)
    );
    println!(
        "  resumed tunnel, plain round trips: {}",
        min_med_max(resumed_rts)
    );
    println!(
        "  resumed tunnel, relayed round trips: {}",
        min_med_max(resumed_waits)
    );
    println!(
        "  resumed tunnel, stanzas:          {}",
        min_med_max(resumed_stanzas)
    );
    let (p, t) = (phone.endpoint.stats(), tv.endpoint.stats());
    println!(
        "  reads of the network's keys:      phone {} (spared {}), TV {} (spared {}), over {} setups",
        p.key_reads,
        p.key_reads_spared,
        t.key_reads,
        t.key_reads_spared,
        ROUNDS * SETUPS
    );
    phone.session.close().await;
    tv.session.close().await;
}
