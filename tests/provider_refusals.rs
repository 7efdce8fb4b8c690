//! The provider's refusals on the wire (issue 17 items 5–6), against the real Prosody: media URIs
//! are checked by policy, and every kind of bad input gets a clear stanza error (unknown namespace
//! → `service-unavailable`, stranger → `forbidden`, malformed XML-RPC → `bad-request`, unknown
//! method → `item-not-found`; a full provider's `resource-constraint` is in provider_bounds.rs).

mod common;
#[path = "support/provider_home.rs"]
mod home;

use common::*;
use home::*;
use pmn::core::access::AuditKind;
use pmn::core::provider::{shared_item_uri, Provider, ProviderConfig, ProviderLimits};
use pmn::core::rpc::xmlrpc::{self, Value};
use pmn::core::session::{IqReply, Session};
use tokio::sync::watch;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_a_typed_stanza_error_and_the_provider_keeps_serving() {
    let (_gate, open) = watch::channel(false);
    let tv = Provider::start(
        ProviderConfig::plain(session_config(&HOME, "tv"), "TV"),
        services(open),
    )
    .await
    .expect("tv");
    let to = Jid::from(tv.session().jid().expect("online"));
    let (own, _rx) = Session::connect(session_config(&HOME, "raw"))
        .await
        .expect("session");
    let (eve, _rx2) = Session::connect(session_config(&STRANGER, "eve"))
        .await
        .expect("session");
    let unknown: Element = "<query xmlns='urn:example:nothing'/>".parse().expect("xml");
    let cases: Vec<(&str, &Session, Element, bool, DefinedCondition)> = vec![
        (
            "unknown namespace, get",
            &own,
            unknown.clone(),
            false,
            DefinedCondition::ServiceUnavailable,
        ),
        (
            "unknown namespace, set",
            &own,
            unknown.clone(),
            true,
            DefinedCondition::ServiceUnavailable,
        ),
        (
            "malformed XML-RPC",
            &own,
            "<query xmlns='jabber:iq:rpc'><methodCall><params/></methodCall></query>"
                .parse()
                .expect("xml"),
            true,
            DefinedCondition::BadRequest,
        ),
        (
            "a methodResponse instead of a call",
            &own,
            xmlrpc::response_to_query(&xmlrpc::MethodResponse::Success(Value::Int(1)))
                .expect("test response encodes"),
            true,
            DefinedCondition::BadRequest,
        ),
        (
            "unknown service",
            &own,
            rpc("nosuch.method", vec![]),
            true,
            DefinedCondition::ItemNotFound,
        ),
        (
            "unknown verb",
            &own,
            rpc("player.nosuch", vec![]),
            true,
            DefinedCondition::ItemNotFound,
        ),
        (
            "wrong parameters",
            &own,
            rpc("player.play", vec![Value::Int(7)]),
            true,
            DefinedCondition::BadRequest,
        ),
        (
            "stranger's call",
            &eve,
            rpc("player.status", vec![]),
            true,
            DefinedCondition::Forbidden,
        ),
        (
            "stranger's malformed call",
            &eve,
            "<query xmlns='jabber:iq:rpc'><junk/></query>"
                .parse()
                .expect("xml"),
            true,
            DefinedCondition::Forbidden,
        ),
        (
            "stranger's disco#info",
            &eve,
            "<query xmlns='http://jabber.org/protocol/disco#info'/>"
                .parse()
                .expect("xml"),
            false,
            DefinedCondition::Forbidden,
        ),
        (
            "stranger's unknown namespace",
            &eve,
            unknown,
            false,
            DefinedCondition::Forbidden,
        ),
    ];
    for (what, from, payload, set, expected) in cases {
        let reply = raw(from, &to, payload, set).await;
        assert_eq!(
            condition(&reply).map(|(c, _)| c),
            Some(expected),
            "{what}: {reply:?}"
        );
    }
    // (full → resource-constraint: see the test of calls in flight above.)
    // A service that panics answers a fault (code 500) instead of leaving the caller hanging.
    match raw(&own, &to, rpc("gate.panic", vec![]), true).await {
        IqReply::Result(Some(query)) => {
            let response = xmlrpc::parse_query(&query, &Default::default()).expect("response");
            assert!(
                matches!(
                    response,
                    xmlrpc::RpcPayload::Response(xmlrpc::MethodResponse::Fault { code: 500, .. })
                ),
                "{response:?}"
            );
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    let status = raw(&own, &to, rpc("player.status", vec![]), true).await;
    assert_eq!(condition(&status), None);
    own.close().await;
    eve.close().await;
    tv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_play_only_what_is_shared_and_nobody_plays_mpv_pseudo_protocols() {
    let home = Home::start(ProviderLimits::default()).await;
    let (account, _keys, romeo) = home.guest().await;
    let tv = home.tv_jid();
    let player = romeo.player(tv.clone());
    let refused_for_guest = [
        "file:///etc/passwd",
        "/etc/passwd",
        "http://192.168.1.1/admin",
        "https://example.org/film.mkv",
        "edl://file:///etc/passwd",
        "av://lavfi:sine",
        "memory://x",
    ];
    for uri in refused_for_guest {
        let r = player.play(uri).await;
        assert!(is_forbidden(&r), "guest played {uri}: {r:?}");
    }
    // The film he brought, from a library of his own network, is his to play.
    let nas: FullJid = format!("{}/nas", account.jid).parse().expect("jid");
    player
        .play(&shared_item_uri(&nas, "videos/7"))
        .await
        .expect("the shared item plays");
    // Own devices play files and streams, never mpv's pseudo-protocols.
    let own = home.phone.player(tv.clone());
    own.play("file:///movies/a.mkv").await.expect("own file");
    own.play("http://192.168.1.20/film.mkv")
        .await
        .expect("own LAN stream");
    for uri in ["edl://x", "av://lavfi:sine", "fd://0", "subfile://x"] {
        assert!(
            is_forbidden(&own.play(uri).await),
            "own device played {uri}"
        );
        assert!(
            is_forbidden(&own.enqueue(uri, None).await),
            "own enqueued {uri}"
        );
    }
    assert_eq!(
        home.tv.stats().media_refused,
        refused_for_guest.len() as u64 + 8
    );
    // Each refusal is in the owner's audit log with its reason.
    let audit = home
        .phone
        .owner()
        .expect("an owner device")
        .access_audit(&tv, 0)
        .await
        .expect("audit");
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|r| r.kind == AuditKind::Deny)
        .map(|r| r.detail.as_str())
        .collect();
    assert!(reasons.contains(&"media-not-shared"), "{audit:?}");
    assert!(reasons.contains(&"media-pseudo-protocol"), "{audit:?}");
    romeo.close().await;
    home.stop().await;
}
