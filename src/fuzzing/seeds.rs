//! The generator of the seed corpus in `fuzz/corpus/<target>/seed-*`: real elements built by pmn's
//! own encoders and keys (signed grants, attested keys, certificates), so that fuzzing starts from
//! inputs that reach the deep paths (signature checks, attestation checks) at once.
//!
//! Rewrites the seeds (keys are fresh each time, so the bytes change):
//! `cargo test --lib --features test-ca -- --ignored write_fuzz_seeds`

use std::path::Path;
use std::sync::Arc;

use minidom::Element;
use xmpp_parsers::ibb::{Close, Data, Open, Stanza as IbbStanza, StreamId};
use xmpp_parsers::jid::{BareJid, FullJid};
use xmpp_parsers::jingle::{Action, Jingle};
use xmpp_parsers::jingle_ibb::Transport as IbbTransport;

use crate::core::access::{
    AccessDecision, AccessRequest, AclEntry, AclState, AuditEntry, AuditKind, AuditPage,
    DecisionDevice, DeviceFingerprint, GrantDraft, GrantId, ItemId, OwnerKey, Reason, Scope,
    SignedRevoke,
};
use crate::core::discovery::{caps_for, disco_info_for};
use crate::core::e2e::endpoint::write_jingle;
use crate::core::e2e::pairing;
use crate::core::e2e::pubkey::{attest, KeyData, PubKey, NS_PUBKEY};
use crate::core::e2e::xml::{ConfirmMessage, Pair, PakeMessage, SecurityMethod, XtlsSecurity};
use crate::core::identity::{DeviceIdentity, KeyPolicy, KeyStore};
use crate::core::rpc::events::EventNotice;
use crate::core::rpc::xmlrpc::{
    call_to_query, response_to_query, value_to_element, MethodCall, MethodResponse, Value,
};
use crate::platform::software::SoftwareKeyStore;

const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const NOW: u64 = 1_700_000_000;

fn bare(s: &str) -> BareJid {
    s.parse().expect("seed bare JID")
}

/// What the seed writers hand to [`xml`]: an element, or an encoder's result (which must be Ok).
trait Encoded {
    fn element(self) -> Element;
}

impl<T: Into<Element>> Encoded for T {
    fn element(self) -> Element {
        self.into()
    }
}

/// An encoder's result: a seed that does not encode is a bug in the seed list.
struct Enc<E>(Result<Element, E>);

impl<E: std::fmt::Debug> Encoded for Enc<E> {
    fn element(self) -> Element {
        self.0.expect("seed encodes")
    }
}

fn xml(el: impl Encoded) -> Vec<u8> {
    String::from(&el.element()).into_bytes()
}

fn wrap(name: &str, children: Vec<Element>) -> Element {
    Element::builder(name, "urn:pmn:fuzz")
        .append_all(children)
        .build()
}

struct Seeds<'p> {
    corpus: &'p Path,
}

impl Seeds<'_> {
    fn put(&self, target: &str, name: &str, data: &[u8]) {
        let dir = self.corpus.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), data).expect("seed file");
    }
}

fn sample_values() -> Vec<(&'static str, Value)> {
    vec![
        ("int", Value::from(12)),
        ("i8", Value::Int(1 << 40)),
        ("bool", Value::from(true)),
        ("string", Value::from("Film & <night>")),
        ("double", Value::Double(-0.5)),
        ("base64", Value::Base64(vec![0, 1, 2, 250, 251, 252])),
        ("datetime", Value::DateTime("20261201T08:00:00".into())),
        ("nil", Value::Nil),
        (
            "struct",
            Value::Struct(vec![
                ("volume".into(), Value::from(12)),
                ("muted".into(), Value::from(false)),
                (
                    "tracks".into(),
                    Value::Array(vec![Value::from("a"), Value::Nil, Value::Double(1e10)]),
                ),
            ]),
        ),
    ]
}

fn tls_identity(dir: &Path, name: &str) -> DeviceIdentity {
    let store = Arc::new(SoftwareKeyStore::open(dir.join(name)).expect("store"));
    DeviceIdentity::load_or_generate(store, "tls", name).expect("identity")
}

/// The ClientHello that `phone` puts in its session-initiate to `tv` when it resumes (see
/// `e2e::early`): after a first, full handshake between them, the first flight of the next one,
/// offering the ticket `tv` gave.
fn resumption_client_hello(phone: &DeviceIdentity, tv: &DeviceIdentity) -> Vec<u8> {
    use crate::core::e2e::early::early_pair;
    use crate::core::e2e::{handshake_resuming, Resumption, TlsRole};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PHONE: &str = "home@home.test/phone";
    const TV: &str = "home@home.test/tv";
    let t = Duration::from_secs(10);
    let lifetime = Duration::from_secs(3600);
    let (pc, tc) = (Resumption::new(1, lifetime), Resumption::new(1, lifetime));
    let (pk, tk) = (phone.fingerprint(), tv.fingerprint());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (client, server) = tokio::join!(
            handshake_resuming(a, TlsRole::Initiator, phone, tk, t, Some((&pc, TV))),
            handshake_resuming(b, TlsRole::Responder, tv, pk, t, Some((&tc, PHONE))),
        );
        let (mut client, mut server) = (client.expect("client").stream, server.expect("server").stream);
        // The ticket travels after the handshake: the client has it once it read a byte behind it.
        server.write_all(b"x").await.expect("write");
        server.flush().await.expect("flush");
        let mut byte = [0u8; 1];
        client.read_exact(&mut byte).await.expect("read");
        assert_eq!(pc.ticket_for(TV, &pk), Some(tk), "the phone holds a ticket");

        let (io, mut handle) = early_pair::<tokio::io::DuplexStream>();
        let hello = handshake_resuming(io, TlsRole::Initiator, phone, tk, t, Some((&pc, TV)));
        tokio::pin!(hello);
        tokio::select! {
            flight = handle.first_flight() => flight.expect("first flight"),
            done = &mut hello => panic!("the client ended before its first flight: {:?}", done.err()),
        }
    })
}

#[test]
#[ignore = "rewrites fuzz/corpus/*/seed-*; run by hand"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = root.join("corpus");
    let seeds = Seeds { corpus: &corpus };
    let dir = tempfile::tempdir().expect("tempdir");
    let network = bare("home@home.test");

    // ---- XML-RPC and events
    for (name, value) in sample_values() {
        seeds.put("xmlrpc_value", name, &xml(Enc(value_to_element(&value))));
    }
    // What slixmpp sends: bare text in <value>, <int>, whitespace between elements.
    seeds.put(
        "xmlrpc_value",
        "lenient",
        b"<value xmlns='jabber:iq:rpc'>\n <array><data>\n  <value>bare</value>\n  \
          <value><int> 7 </int></value><value><boolean>true</boolean></value>\n \
          <value><Base64>AAE</Base64></value></data></array>\n</value>",
    );
    let values: Vec<Value> = sample_values().into_iter().map(|(_, v)| v).collect();
    seeds.put(
        "xmlrpc_query",
        "call",
        &xml(Enc(call_to_query(&MethodCall::new(
            "player.seek",
            values.clone(),
        )))),
    );
    seeds.put(
        "xmlrpc_query",
        "call-empty",
        &xml(Enc(call_to_query(&MethodCall::new("tv.status", vec![])))),
    );
    seeds.put(
        "xmlrpc_query",
        "response",
        &xml(Enc(response_to_query(&MethodResponse::Success(
            values[8].clone(),
        )))),
    );
    seeds.put(
        "xmlrpc_query",
        "fault",
        &xml(Enc(response_to_query(&MethodResponse::Fault {
            code: 4,
            message: "Too many parameters.".into(),
        }))),
    );
    seeds.put(
        "xmlrpc_query",
        "slixmpp-none",
        b"<query xmlns='jabber:iq:rpc'><methodResponse><params/></methodResponse></query>",
    );
    let notice = EventNotice {
        service: "player".into(),
        name: "state-changed".into(),
        params: vec![Value::from("playing"), values[8].clone()],
    };
    seeds.put("event", "state", &xml(Enc(notice.to_element())));
    seeds.put(
        "event",
        "no-params",
        b"<event xmlns='urn:xmpp:tmp:pmn:event:0' service='recorder' name='done'/>",
    );

    // ---- access: a household with an owner-approval key
    let store = SoftwareKeyStore::open(dir.path().join("owner")).expect("store");
    let owner_spki = store
        .generate(
            "owner",
            KeyPolicy::OwnerApproval {
                user_presence: false,
            },
        )
        .expect("owner key");
    let device = DeviceFingerprint([0x52; 32]);
    let grant = GrantDraft::new(
        network.clone(),
        bare("romeo@friend.test"),
        device,
        vec![Scope::Playback],
        NOW,
        NOW + 7200,
        7,
    )
    .sign(&store, "owner")
    .expect("grant");
    let item_grant = GrantDraft::new(
        network.clone(),
        bare("juliet@friend.test"),
        device,
        vec![Scope::LibraryItem],
        NOW,
        NOW + 3600,
        8,
    )
    .for_item(ItemId::new("movie-42").expect("item"))
    .sign(&store, "owner")
    .expect("item grant");
    let revoke =
        SignedRevoke::sign(network.clone(), grant.id.clone(), 9, &store, "owner").expect("revoke");
    let owner = OwnerKey::register(owner_spki.clone());
    let pmn_introduction = |spki: &[u8]| crate::core::access::Introduction {
        owner: spki.to_vec(),
        signature: vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
    };
    let mut request = AccessRequest::new(
        device,
        vec![Scope::Playback],
        Some(Reason::new("Film night: play my video on your TV").expect("reason")),
    );
    seeds.put("access", "request", &xml(request.clone()));
    request.scopes = vec![Scope::LibraryItem];
    request.item = Some(ItemId::new("movie-42").expect("item"));
    request.reason = None;
    seeds.put("access", "request-item", &xml(request));
    seeds.put("access", "grant", &xml(grant.clone()));
    seeds.put("access", "revoke", &xml(revoke.clone()));
    seeds.put("access", "owner", &xml(owner.clone()));
    seeds.put(
        "access",
        "decision",
        &xml(AccessDecision {
            result: "approved".into(),
            for_device: device,
            grant: Some(GrantId::new("g-1").expect("id")),
            expires: Some(NOW + 7200),
            devices: vec![DecisionDevice {
                jid: network.clone(),
                fingerprint: DeviceFingerprint([9; 32]),
            }],
            introduction: Some(pmn_introduction(&owner_spki)),
        }),
    );
    seeds.put(
        "access",
        "acl",
        &xml(AclState {
            version: 9,
            entries: vec![
                AclEntry {
                    active: true,
                    revoked_at: None,
                    grant: item_grant.clone(),
                },
                AclEntry {
                    active: false,
                    revoked_at: Some(NOW + 60),
                    grant: grant.clone(),
                },
            ],
        }),
    );
    seeds.put(
        "access",
        "audit",
        &xml(AuditPage {
            after: 0,
            records: vec![AuditEntry {
                seq: 3,
                at: NOW,
                last_at: NOW + 2,
                count: 2,
                kind: AuditKind::Deny,
                subject: "eve@evil.test/x".into(),
                device: Some(device.to_hex()),
                grant: None,
                method: Some("recorder.schedule".into()),
                detail: "out-of-scope".into(),
            }],
        }),
    );
    // The provider's view: the owner key first, then what it signed (signatures verify).
    seeds.put(
        "access",
        "session",
        &xml(wrap(
            "session",
            vec![
                owner.into(),
                grant.clone().into(),
                item_grant.into(),
                revoke.into(),
            ],
        )),
    );

    // ---- Jingle / XTLS, as the endpoint writes them
    let fp = DeviceFingerprint([0xab; 32]);
    let phone_jid: FullJid = "home@home.test/phone".parse().expect("jid");
    let ibb = |stanza| IbbTransport {
        block_size: 4096,
        sid: StreamId("ibb-1".into()),
        stanza,
    };
    for (name, action, method) in [
        ("initiate", Action::SessionInitiate, SecurityMethod::X509),
        ("accept-pake", Action::SessionAccept, SecurityMethod::Pake),
    ] {
        let jingle = write_jingle(
            action,
            "j-1",
            ibb(IbbStanza::Iq),
            &fp,
            method,
            &phone_jid,
            None,
        );
        seeds.put("jingle", name, &xml(jingle));
    }
    // A tunnel to a device seen before: the initiate carries the opener's ClientHello, which
    // offers the ticket of an earlier session, and the accept says it was taken.
    let (phone, tv) = (
        tls_identity(dir.path(), "jingle-phone"),
        tls_identity(dir.path(), "jingle-tv"),
    );
    let hello = resumption_client_hello(&phone, &tv);
    seeds.put(
        "jingle",
        "initiate-flight",
        &xml(write_jingle(
            Action::SessionInitiate,
            "j-1",
            ibb(IbbStanza::Message),
            &phone.fingerprint(),
            SecurityMethod::X509,
            &phone_jid,
            Some(hello),
        )),
    );
    let tv_jid: FullJid = "home@home.test/tv".parse().expect("jid");
    seeds.put(
        "jingle",
        "accept-flight",
        &xml(write_jingle(
            Action::SessionAccept,
            "j-1",
            ibb(IbbStanza::Message),
            &tv.fingerprint(),
            SecurityMethod::X509,
            &tv_jid,
            Some(Vec::new()),
        )),
    );
    seeds.put(
        "jingle",
        "security",
        &xml(XtlsSecurity::new(&fp, SecurityMethod::X509)),
    );
    seeds.put(
        "jingle",
        "terminate",
        b"<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='j-1'>\
          <reason><success/></reason></jingle>",
    );

    // ---- IBB, for the registry's stream `s1` (block size 16)
    let sid = || StreamId("s1".into());
    let open: Element = Open {
        block_size: 16,
        sid: sid(),
        stanza: IbbStanza::Iq,
    }
    .into();
    let data = |seq: u16, len: usize| -> Element {
        Data {
            seq,
            sid: sid(),
            data: vec![0x5a; len],
        }
        .into()
    };
    let close: Element = Close { sid: sid() }.into();
    seeds.put("ibb", "open", &xml(open.clone()));
    seeds.put("ibb", "data", &xml(data(0, 16)));
    seeds.put(
        "ibb",
        "seq",
        &xml(wrap(
            "seq",
            vec![open, data(0, 4), data(1, 16), data(2, 1), close],
        )),
    );
    seeds.put(
        "ibb",
        "seq-gap",
        &xml(wrap("seq", vec![data(0, 4), data(2, 4), data(3, 17)])),
    );

    // ---- pairing
    let binding = [7u8; 32];
    let (_, msg) = pairing::spake("123456", &binding);
    seeds.put(
        "pairing",
        "pake",
        &xml(Pair {
            pake: Some(PakeMessage {
                message: msg.clone(),
            }),
            confirm: None,
        }),
    );
    seeds.put(
        "pairing",
        "answer",
        &xml(Pair {
            pake: Some(PakeMessage { message: msg }),
            confirm: Some(ConfirmMessage { mac: vec![1; 32] }),
        }),
    );

    // ---- caps: a presence <c/> and the disco#info answering it
    let info = disco_info_for(Some("Living room TV"), &["urn:xmpp:tmp:pmn:player:0"]);
    let caps = caps_for(&info);
    seeds.put(
        "caps",
        "provider",
        &xml(wrap("x", vec![caps.into(), info.into()])),
    );
    let info = disco_info_for(None, &[]);
    let caps = caps_for(&info);
    seeds.put(
        "caps",
        "controller",
        &xml(wrap("x", vec![caps.into(), info.into()])),
    );

    // ---- XEP-0189: two devices, the newcomer attested by the owner device
    let identity = |n: &str| tls_identity(dir.path(), n);
    let (tv, newbie) = (identity("tv"), identity("newbie"));
    let attestation = attest(&tv, &network, newbie.spki(), 0).expect("attest");
    let item = |id: &DeviceIdentity, attestations| -> Element {
        Element::builder("item", NS_PUBSUB)
            .attr(
                xso::exports::rxml::xml_ncname!("id").into(),
                id.fingerprint().to_hex(),
            )
            .append(Element::from(PubKey {
                key: KeyData {
                    der: id.certificate().to_vec(),
                },
                attestations,
            }))
            .build()
    };
    let items = Element::builder("items", NS_PUBSUB)
        .attr(xso::exports::rxml::xml_ncname!("node").into(), NS_PUBKEY)
        .append(item(&tv, vec![]))
        .append(item(&newbie, vec![attestation]))
        .build();
    let pubsub = Element::builder("pubsub", NS_PUBSUB).append(items).build();
    seeds.put("pubkey", "items", &xml(pubsub));

    // ---- playlists: entries signed by the owner key above, an items answer, a notification
    let entry = crate::core::pubsub::PlaylistEntry {
        id: "e1".into(),
        title: "Radio One".into(),
        uri: "https://radio.example/one".into(),
        kind: crate::core::pubsub::MediaKind::Stream,
        duration_ms: None,
        artwork: Some("https://radio.example/one.png".into()),
        position: 1,
    };
    let signed = |e: &crate::core::pubsub::PlaylistEntry| {
        let sig =
            crate::core::pubsub::signature::sign_entry(&network, "radio", e, NOW, &store, "owner")
                .expect("sign entry");
        e.to_element(NOW, Some(sig))
    };
    let e2 = crate::core::pubsub::PlaylistEntry {
        id: "e2".into(),
        kind: crate::core::pubsub::MediaKind::Audio,
        duration_ms: Some(1_800_000),
        artwork: None,
        ..entry.clone()
    };
    let pl_item = |id: &str, payload: Element, ns: &str| {
        Element::builder("item", ns)
            .attr(xso::exports::rxml::xml_ncname!("id").into(), id)
            .append(payload)
            .build()
    };
    let node = format!("{}/radio", crate::core::pubsub::NS_PLAYLIST);
    let answer = Element::builder("pubsub", NS_PUBSUB)
        .append(
            Element::builder("items", NS_PUBSUB)
                .attr(xso::exports::rxml::xml_ncname!("node").into(), node.clone())
                .append(pl_item("e1", signed(&entry), NS_PUBSUB))
                .append(pl_item("e2", e2.to_element(NOW, None), NS_PUBSUB))
                .build(),
        )
        .build();
    const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    let notification = Element::builder("message", "jabber:client")
        .attr(
            xso::exports::rxml::xml_ncname!("from").into(),
            "home@home.test",
        )
        .attr(xso::exports::rxml::xml_ncname!("type").into(), "headline")
        .append(
            Element::builder("event", NS_EVENT)
                .append(
                    Element::builder("items", NS_EVENT)
                        .attr(xso::exports::rxml::xml_ncname!("node").into(), node)
                        .append(pl_item("e2", signed(&e2), NS_EVENT))
                        .build(),
                )
                .build(),
        )
        .build();
    seeds.put("playlist", "entry", &xml(signed(&entry)));
    seeds.put(
        "playlist",
        "session",
        &xml(wrap(
            "session",
            vec![
                OwnerKey::register(owner_spki.clone()).into(),
                answer,
                notification,
            ],
        )),
    );

    // ---- certificates, SPKIs, fingerprints
    seeds.put("cert", "certificate", tv.certificate());
    seeds.put("cert", "spki", tv.spki());
    seeds.put(
        "fingerprint",
        "lower",
        DeviceFingerprint([0xab; 32]).to_hex().as_bytes(),
    );
    seeds.put(
        "fingerprint",
        "upper",
        tv.fingerprint().to_hex().to_ascii_uppercase().as_bytes(),
    );

    // ---- the stream: header, stanzas of every kind pmn reads, whitespace keepalives, footer
    let rpc = String::from(
        &call_to_query(&MethodCall::new("player.setVolume", vec![Value::from(12)]))
            .expect("seed encodes"),
    );
    let event = String::from(
        &EventNotice {
            service: "player".into(),
            name: "state-changed".into(),
            params: vec![Value::from("paused")],
        }
        .to_element()
        .expect("seed encodes"),
    );
    let stream = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' from='home.test' id='s-1' \
         version='1.0' xml:lang='en'>\
         <stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features> \
         <iq type='set' id='1' from='home@home.test/phone' to='home@home.test/tv'>{rpc}</iq>\n\
         <message type='headline' from='home@home.test/tv'>{event}</message> \
         <presence from='home@home.test/tv'><c xmlns='http://jabber.org/protocol/caps' \
         hash='sha-1' node='https://pmn.invalid/caps' ver='AAAA'/></presence>\
         <r xmlns='urn:xmpp:sm:3'/></stream:stream>"
    );
    // The first byte is the size of the pieces the bytes arrive in.
    for (name, piece) in [("whole", 255u8), ("pieces", 7u8)] {
        let mut bytes = vec![piece];
        bytes.extend_from_slice(stream.as_bytes());
        seeds.put("stream", name, &bytes);
    }

    check_seeds_reach_the_deep_paths(&corpus, &network);
}

/// The seeds get past the parsers into the checks behind them: signatures verify, the attestation
/// vouches, the offer is accepted, the caps verify.
fn check_seeds_reach_the_deep_paths(corpus: &Path, network: &BareJid) {
    use super::element;
    use crate::core::access::{OwnerKeys, SignedGrant};
    use crate::core::discovery::{Advertised, HashInput};
    use crate::core::e2e::{endpoint, pubkey};
    use xmpp_parsers::caps::Caps;
    use xmpp_parsers::disco::DiscoInfoResult;

    let read = |target: &str, name: &str| {
        let bytes = std::fs::read(corpus.join(target).join(format!("seed-{name}"))).expect("seed");
        element(&bytes).expect("seed parses")
    };
    let session = read("access", "session");
    let mut owners = OwnerKeys::new(network.clone());
    let mut verified = 0;
    for child in session.children() {
        match child.name() {
            "owner" => {
                owners
                    .add(&OwnerKey::try_from(child.clone()).expect("owner").key)
                    .expect("P-256");
            }
            "grant" => {
                let grant = SignedGrant::parse(child.clone()).expect("grant");
                owners.verify_grant(&grant).expect("grant signature");
                verified += 1;
            }
            "revoke" => {
                let revoke = SignedRevoke::parse(child.clone()).expect("revoke");
                owners.verify_revoke(&revoke).expect("revoke signature");
                verified += 1;
            }
            _ => {}
        }
    }
    assert_eq!(verified, 3);
    let directory = pubkey::parse_directory(&read("pubkey", "items"));
    let keys = &directory.keys;
    assert_eq!(keys.len(), 2);
    let vouched = keys
        .iter()
        .filter(|k| {
            k.attestations.iter().any(|a| {
                keys.iter()
                    .any(|s| pubkey::verify_attestation(a, network, &k.spki, &s.spki))
            })
        })
        .count();
    assert_eq!(vouched, 1);
    let jingle = Jingle::try_from(read("jingle", "initiate")).expect("jingle");
    assert!(endpoint::parse_offer(&jingle)
        .expect("offer")
        .flight
        .is_none());
    // The carried ClientHello is taken, and is one: a TLS handshake record holding a ClientHello.
    let jingle = Jingle::try_from(read("jingle", "initiate-flight")).expect("jingle");
    let hello = endpoint::parse_offer(&jingle)
        .expect("offer")
        .flight
        .expect("flight");
    assert_eq!((hello[0], hello[5]), (0x16, 0x01), "a ClientHello record");
    let jingle = Jingle::try_from(read("jingle", "accept-flight")).expect("jingle");
    assert!(endpoint::accept_took_flight(&jingle).expect("accept"));
    let x = read("caps", "provider");
    let caps = x
        .children()
        .find(|c| c.name() == "c")
        .map(|c| Caps::try_from(c.clone()).expect("caps"))
        .expect("c");
    let info = x
        .children()
        .find(|c| c.name() == "query")
        .map(|q| DiscoInfoResult::try_from(q.clone()).expect("info"))
        .expect("query");
    let advertised = Advertised::from_caps(&caps);
    let key = advertised.primary().expect("a usable caps hash");
    assert_eq!(key.verify(&HashInput::from_info(&info)), Ok(true));

    // Playlists: the signed entry of the items answer verifies, the unsigned one does not, and
    // the notification reaches the change stream.
    use crate::core::pubsub::{entry::parse_item, fetch::answer_items, signature::verify_entry};
    let session = read("playlist", "session");
    let mut owners = OwnerKeys::new(network.clone());
    let mut verdicts = Vec::new();
    let watch = crate::core::pubsub::PlaylistWatch::new(Default::default());
    let mut changes = watch.changes();
    for child in session.children() {
        match child.name() {
            "owner" => {
                owners
                    .add(&OwnerKey::try_from(child.clone()).expect("owner").key)
                    .expect("owner key");
            }
            "pubsub" => {
                for (id, payload) in answer_items(child) {
                    let parsed = parse_item(id.as_deref(), payload.as_ref()).expect("entry");
                    verdicts.push(verify_entry(&owners, network, "radio", parsed).map(|_| ()));
                }
            }
            _ => {
                let message =
                    xmpp_parsers::message::Message::try_from(child.clone()).expect("message");
                watch.insert_subscription(network.clone(), "radio", owners.clone());
                assert!(watch.handle_message(&message));
            }
        }
    }
    assert_eq!(
        verdicts,
        vec![Ok(()), Err(crate::core::pubsub::IgnoredReason::Unsigned)]
    );
    assert!(matches!(
        changes.try_recv(),
        Ok(crate::core::pubsub::PlaylistChange::Published { .. })
    ));
}
