//! Foreign devices through the real Prosody: a provider that is not pmn announces its capabilities
//! the way other XMPP libraries do (an extended form whose fields are not sorted, only XEP-0390
//! ecaps2, or an ill-formed disco#info), and the controller must discover it with as few disco#info
//! queries as the specifications allow — and never cache what does not verify.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::*;
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::discovery::{ProviderInfo, QueryLimits};
use pmn::core::session::{Inbound, Session};
use tokio_xmpp::Stanza;
use xmpp_parsers::caps::{hash_caps, Caps};
use xmpp_parsers::ecaps2::{hash_ecaps2, ECaps2};
use xmpp_parsers::hashes::{Algo, Hash};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::Presence;

/// The disco#info of the foreign TV: a MUC feature beside the player, and a software-info form
/// with its fields in document order (not sorted by `var`). `extra` goes inside `<query/>`.
fn foreign_info(extra: &str) -> String {
    format!(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='automation' type='service' name='Foreign TV'/>\
         <feature var='urn.xmpp.tmp.media.player'/>\
         <feature var='http://jabber.org/protocol/muc'/>\
         <feature var='http://jabber.org/protocol/disco#info'/>{extra}\
         <x xmlns='jabber:x:data' type='result'>\
         <field var='software_version'><value>2.1</value></field>\
         <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
         <field var='os'><value>Linux</value></field></x></query>"
    )
}

/// XEP-0115 §5.1 for [`foreign_info`] (without `extra`), written out by hand from the spec.
const FOREIGN_VERIFICATION: &str = "automation/service//Foreign TV<\
    http://jabber.org/protocol/disco#info<http://jabber.org/protocol/muc<urn.xmpp.tmp.media.player<\
    urn:xmpp:dataforms:softwareinfo<os<Linux<software_version<2.1<";

/// XEP-0390 §4.1 for [`foreign_info`] (without `extra`), written out by hand from the spec.
fn foreign_ecaps2_input() -> Vec<u8> {
    let mut s = Vec::new();
    for f in [
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/muc",
        "urn.xmpp.tmp.media.player",
    ] {
        s.extend_from_slice(f.as_bytes());
        s.push(0x1f);
    }
    s.push(0x1c);
    s.extend_from_slice(b"automation\x1fservice\x1f\x1fForeign TV\x1f\x1e\x1c");
    s.extend_from_slice(b"FORM_TYPE\x1furn:xmpp:dataforms:softwareinfo\x1f\x1e");
    s.extend_from_slice(b"os\x1fLinux\x1f\x1e");
    s.extend_from_slice(b"software_version\x1f2.1\x1f\x1e\x1d\x1c");
    s
}

/// A raw session of the home network that answers disco#info with `info` and records which node
/// each query from `asker` named.
struct ForeignDevice {
    session: Session,
    jid: FullJid,
    queries: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ForeignDevice {
    async fn start(info: String, asker: FullJid, presence: Presence) -> ForeignDevice {
        let (session, mut inbound) = Session::connect(session_config(&HOME, "foreign"))
            .await
            .expect("foreign device connects");
        let jid = session.jid().expect("online");
        let queries = Arc::new(Mutex::new(Vec::new()));
        let recorded = queries.clone();
        let answering = session.clone();
        let task = tokio::spawn(async move {
            while let Some(item) = inbound.recv().await {
                let Inbound::Stanza(stanza) = item else {
                    continue;
                };
                let Stanza::Iq(Iq::Get {
                    from, id, payload, ..
                }) = *stanza
                else {
                    continue;
                };
                if !payload.is("query", xmpp_parsers::ns::DISCO_INFO) {
                    continue;
                }
                let node = payload.attr("node").map(str::to_owned);
                if from.as_ref().and_then(|f| f.try_as_full().ok()) == Some(&asker) {
                    recorded.lock().expect("not poisoned").push(node.clone());
                }
                // Echo the node, as XEP-0115 §6.2 asks.
                let xml = match &node {
                    Some(node) => info.replacen("<query ", &format!("<query node='{node}' "), 1),
                    None => info.clone(),
                };
                let answer: Element = xml.parse().expect("foreign info parses");
                let _ = answering.send(Iq::Result {
                    from: None,
                    to: from,
                    id,
                    payload: Some(answer),
                });
            }
        });
        session.send(presence).expect("presence sent");
        ForeignDevice {
            session,
            jid,
            queries,
            task,
        }
    }

    fn queries(&self) -> Vec<Option<String>> {
        self.queries.lock().expect("not poisoned").clone()
    }

    async fn stop(self) {
        self.session.close().await;
        self.task.abort();
    }
}

async fn found(controller: &Controller, device: &ForeignDevice) -> ProviderInfo {
    let jid = device.jid.clone();
    controller
        .wait_for_provider(|p| p.jid == jid, Duration::from_secs(10))
        .await
        .expect("foreign provider discovered")
}

fn legacy_caps(verification: &[u8]) -> Caps {
    Caps::new(
        "https://foreign.example/caps",
        hash_caps(verification, Algo::Sha_1).expect("sha-1"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_provider_with_unsorted_form_is_queried_once_and_cached() {
    let controller = start_controller().await;
    let me = controller.session().jid().expect("online");
    let caps = legacy_caps(FOREIGN_VERIFICATION.as_bytes());
    let presence = || Presence::available().with_payload(caps.clone());

    let first = ForeignDevice::start(foreign_info(""), me.clone(), presence()).await;
    let tv = found(&controller, &first).await;
    assert_eq!(tv.name, "Foreign TV");
    assert_eq!(
        tv.services,
        vec![PLAYER.to_string()],
        "MUC is not a service"
    );
    let node = format!(
        "https://foreign.example/caps#{}",
        base64::engine::general_purpose::STANDARD.encode(&caps.ver)
    );
    assert_eq!(first.queries(), vec![Some(node)]);

    // A second device with the same hash is served from the verified cache: no query at all.
    let second = ForeignDevice::start(foreign_info(""), me, presence()).await;
    found(&controller, &second).await;
    assert!(second.queries().is_empty(), "{:?}", second.queries());
    assert_eq!(first.queries().len(), 1);

    first.stop().await;
    second.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_provider_with_only_ecaps2_is_queried_once_and_cached() {
    let controller = start_controller().await;
    let me = controller.session().jid().expect("online");
    let input = foreign_ecaps2_input();
    let hashes = vec![
        hash_ecaps2(&input, Algo::Sha_256).expect("sha-256"),
        hash_ecaps2(&input, Algo::Sha3_256).expect("sha3-256"),
    ];
    let presence = || Presence::available().with_payload(ECaps2::new(hashes.clone()));

    let first = ForeignDevice::start(foreign_info(""), me.clone(), presence()).await;
    let tv = found(&controller, &first).await;
    assert_eq!(tv.services, vec![PLAYER.to_string()]);
    let node = format!(
        "urn:xmpp:caps#sha-256.{}",
        base64::engine::general_purpose::STANDARD.encode(&hashes[0].hash)
    );
    assert_eq!(first.queries(), vec![Some(node)]);

    let second = ForeignDevice::start(foreign_info(""), me, presence()).await;
    found(&controller, &second).await;
    assert!(second.queries().is_empty(), "{:?}", second.queries());

    first.stop().await;
    second.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ill_formed_foreign_disco_info_is_shown_but_never_cached() {
    let controller = start_controller().await;
    let me = controller.session().jid().expect("online");
    // A duplicate feature: a parser that deduplicates would compute exactly FOREIGN_VERIFICATION
    // and accept this hash, then serve the ill-formed answer to every device announcing it.
    let info = foreign_info("<feature var='http://jabber.org/protocol/muc'/>");
    let caps = legacy_caps(FOREIGN_VERIFICATION.as_bytes());
    let presence = || Presence::available().with_payload(caps.clone());

    let first = ForeignDevice::start(info.clone(), me.clone(), presence()).await;
    let tv = found(&controller, &first).await;
    assert_eq!(tv.services, vec![PLAYER.to_string()]);
    assert_eq!(first.queries().len(), 1);

    // Not cached: the next device announcing the same hash is asked for its own answer.
    let second = ForeignDevice::start(info, me, presence()).await;
    found(&controller, &second).await;
    assert_eq!(second.queries().len(), 1, "{:?}", second.queries());

    first.stop().await;
    second.stop().await;
    controller.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pmn_provider_announces_both_caps_and_answers_its_ecaps2_node() {
    let controller = start_controller().await;
    let (probe, mut inbound) = Session::connect(session_config(&HOME, "probe"))
        .await
        .expect("probe");
    // Without an initial presence the server broadcasts none to us.
    probe.send(Presence::available()).expect("probe presence");
    let provider = start_player("Both caps").await;
    let tv = provider.session().jid().expect("online");
    discover(&controller, &provider).await;
    // Its presence, as any device of the network sees it.
    let presence = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Inbound::Stanza(stanza)) = inbound.recv().await {
                if let Stanza::Presence(p) = *stanza {
                    if p.from.as_ref().and_then(|f| f.try_as_full().ok()) == Some(&tv) {
                        return p;
                    }
                }
            }
        }
    })
    .await
    .expect("provider presence");
    let ecaps2 = presence
        .payloads
        .iter()
        .find(|p| p.is("c", xmpp_parsers::ns::ECAPS2))
        .and_then(|p| ECaps2::try_from(p.clone()).ok())
        .expect("ecaps2 announced");
    assert!(presence
        .payloads
        .iter()
        .any(|p| p.is("c", xmpp_parsers::ns::CAPS)));
    let sha256 = ecaps2
        .hashes
        .iter()
        .find(|h| h.algo == Algo::Sha_256)
        .expect("sha-256");
    let node = format!(
        "urn:xmpp:caps#sha-256.{}",
        base64::engine::general_purpose::STANDARD.encode(&sha256.hash)
    );
    let reply = probe
        .request(
            Iq::Get {
                from: None,
                to: Some(Jid::from(tv.clone())),
                id: String::new(),
                payload: xmpp_parsers::disco::DiscoInfoQuery {
                    node: Some(node.clone()),
                }
                .into(),
            },
            Duration::from_secs(5),
        )
        .await
        .expect("answer");
    let pmn::core::session::IqReply::Result(Some(payload)) = reply else {
        panic!("expected disco#info for the ecaps2 node, got {reply:?}");
    };
    assert_eq!(payload.attr("node"), Some(node.as_str()));
    probe.close().await;
    provider.stop().await;
    controller.close().await;
}

/// Appends the node of every disco#info query the tapped session sends to `to` during `window`.
async fn disco_nodes_sent(
    tap: &mut tokio::sync::mpsc::UnboundedReceiver<Stanza>,
    to: &FullJid,
    window: Duration,
    nodes: &mut Vec<Option<String>>,
) {
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(stanza)) = tokio::time::timeout_at(deadline, tap.recv()).await {
        if let Stanza::Iq(Iq::Get {
            to: Some(dest),
            payload,
            ..
        }) = stanza
        {
            if dest.try_as_full().is_ok_and(|j| j == to)
                && payload.is("query", xmpp_parsers::ns::DISCO_INFO)
            {
                nodes.push(payload.attr("node").map(str::to_owned));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_flood_of_distinct_hashes_keeps_disco_queries_bounded() {
    let mut config = ControllerConfig::plain(session_config(&HOME, "phone"));
    config.rpc_timeout = Duration::from_secs(1);
    let (tap_tx, mut tap) = tokio::sync::mpsc::unbounded_channel();
    config.session.outbound_tap = Some(tap_tx);
    let controller = Controller::connect(config).await.expect("controller");

    // A device that never answers disco#info and announces a new hash 30 times in a row.
    let (flood, mut inbound) = Session::connect(session_config(&HOME, "flood"))
        .await
        .expect("flooding device");
    let flood_jid = flood.jid().expect("online");
    let drain = tokio::spawn(async move { while inbound.recv().await.is_some() {} });
    let hashes: Vec<Vec<u8>> = (0..30u8).map(|i| vec![i; 20]).collect();
    for hash in &hashes {
        let caps = Caps::new(
            "https://flood.example",
            Hash {
                algo: Algo::Sha_1,
                hash: hash.clone(),
            },
        );
        flood
            .send(Presence::available().with_payload(caps))
            .expect("presence");
    }

    let mut nodes = Vec::new();
    // Before any query times out: at most the in-flight cap, for 30 announced hashes.
    disco_nodes_sent(&mut tap, &flood_jid, Duration::from_millis(700), &mut nodes).await;
    println!("{} disco#info queries in flight for 30 hashes", nodes.len());
    let cap = QueryLimits::default().max_in_flight;
    assert!(
        !nodes.is_empty() && nodes.len() <= cap,
        "{} queries in flight",
        nodes.len()
    );
    // Once they time out, only the device's latest hash is asked for: the stale ones were
    // superseded in the queue.
    disco_nodes_sent(
        &mut tap,
        &flood_jid,
        Duration::from_millis(1_500),
        &mut nodes,
    )
    .await;
    assert!(nodes.len() <= cap + 1, "{} queries", nodes.len());
    let latest = format!(
        "https://flood.example#{}",
        base64::engine::general_purpose::STANDARD.encode(&hashes[29])
    );
    assert_eq!(nodes.last(), Some(&Some(latest)), "{nodes:?}");

    drain.abort();
    flood.close().await;
    controller.close().await;
}
