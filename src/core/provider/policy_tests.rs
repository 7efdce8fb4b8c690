//! One test per row of the policy table (the row names are those of the table in policy.rs).

use std::sync::Arc;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

use super::{Decision, Policy, Request};
use crate::core::access::{
    unix_now, AccessGuard, AccessSettings, AuditKind, DeviceFingerprint, GrantDraft, ItemId, Scope,
};
use crate::core::identity::{KeyPolicy, KeyStore};
use crate::core::provider::caller::Caller;
use crate::core::provider::limits::Counters;
use crate::core::provider::media::{shared_item_uri, MediaPolicy};
use crate::core::rpc::xmlrpc::Value;
use crate::core::services::shipped;
use crate::platform::software::SoftwareKeyStore;

const NETWORK: &str = "home@home.test";
const ROMEO: &str = "romeo@friend.test";
const ROMEO_KEY: DeviceFingerprint = DeviceFingerprint([0x52; 32]);
const OWNER_KEY: &str = "owner-approval";

fn jid(s: &str) -> Jid {
    s.parse().expect("test JID")
}

fn bare(s: &str) -> BareJid {
    s.parse().expect("test bare JID")
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: SoftwareKeyStore,
    guard: Arc<AccessGuard>,
}

/// A provider's guard with an owner key, and Romeo holding a `playback` grant for his phone's key
/// plus a `library-item` grant for `videos/7`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SoftwareKeyStore::open(dir.path().join("keys")).expect("store");
    let spki = store
        .generate(
            OWNER_KEY,
            KeyPolicy::OwnerApproval {
                user_presence: false,
            },
        )
        .expect("owner key");
    let settings = AccessSettings {
        acl_path: None,
        owner_keys: vec![spki],
    };
    let guard = Arc::new(AccessGuard::open(bare(NETWORK), &settings).expect("guard"));
    let fixture = Fixture {
        _dir: dir,
        store,
        guard,
    };
    fixture.install(GrantDraft::new(
        bare(NETWORK),
        bare(ROMEO),
        ROMEO_KEY,
        vec![Scope::Playback],
        unix_now() - 60,
        unix_now() + 3600,
        0,
    ));
    fixture.install(
        GrantDraft::new(
            bare(NETWORK),
            bare(ROMEO),
            ROMEO_KEY,
            vec![Scope::LibraryItem],
            unix_now() - 60,
            unix_now() + 3600,
            0,
        )
        .for_item(ItemId::new("videos/7").expect("item")),
    );
    fixture
}

impl Fixture {
    fn install(&self, draft: GrantDraft) {
        let grant = draft.sign(&self.store, OWNER_KEY).expect("sign");
        self.guard
            .manage(Element::from(grant), true, None)
            .expect("grant installed");
    }

    fn policy(&self, require_tunnel: bool, media: MediaPolicy) -> Policy {
        Policy {
            network: bare(NETWORK),
            require_tunnel,
            access: Some(self.guard.clone()),
            media,
            stats: Arc::new(Counters::default()),
        }
    }
}

fn no_guests(require_tunnel: bool) -> Policy {
    Policy {
        network: bare(NETWORK),
        require_tunnel,
        access: None,
        media: MediaPolicy::default(),
        stats: Arc::new(Counters::default()),
    }
}

fn own_tunnel() -> Caller {
    Caller::OwnDeviceTunnel {
        jid: jid("home@home.test/phone"),
        key: Some(DeviceFingerprint([1; 32])),
    }
}

fn own_plain() -> Caller {
    Caller::OwnDevicePlain {
        jid: jid("home@home.test/phone"),
    }
}

fn romeo(tunnel: bool) -> Caller {
    Caller::Guest {
        jid: jid("romeo@friend.test/phone"),
        bare: bare(ROMEO),
        key: tunnel.then_some(ROMEO_KEY),
        tunnel,
    }
}

fn stranger() -> Caller {
    Caller::Stranger {
        jid: jid("eve@evil.test/x"),
    }
}

/// A call as the dispatcher hands it to the policy: with the scope the method declares.
fn call<'a>(method: &'a str, params: &'a [Value]) -> Request<'a> {
    Request::Call {
        method,
        params,
        scope: shipped::scope(method),
    }
}

fn is_forbidden(d: &Decision) -> bool {
    matches!(d, Decision::Forbid(_))
}

fn text(d: &Decision) -> &str {
    match d {
        Decision::Forbid(t) => t,
        _ => "",
    }
}

fn uri(u: &str) -> Vec<Value> {
    vec![Value::String(u.into())]
}

#[test]
fn s1_the_server_is_served_nothing() {
    let f = fixture();
    for request in [
        Request::Get,
        Request::Rpc,
        Request::Manage,
        Request::OtherSet,
    ] {
        assert_eq!(
            f.policy(false, MediaPolicy::default())
                .decide(&Caller::Server, &request),
            Decision::Unsupported
        );
    }
}

#[test]
fn s2_s3_our_servers_domain_may_ask_disco_info_and_nothing_else() {
    let f = fixture();
    let server = Caller::OwnServer {
        jid: "home.test".parse().expect("jid"),
    };
    let p = f.policy(true, MediaPolicy::default());
    assert_eq!(p.decide(&server, &Request::Get), Decision::Allow);
    for request in [Request::Rpc, Request::Manage, Request::OtherSet] {
        assert_eq!(p.decide(&server, &request), Decision::Unsupported);
    }
}

#[test]
fn m1_to_m4_management_only_by_own_devices_through_the_tunnel() {
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    // M1: no guests, no management (whoever asks).
    let none = no_guests(false);
    assert_eq!(
        text(&none.decide(&own_tunnel(), &Request::Manage)),
        "this provider takes no guests"
    );
    assert!(is_forbidden(&none.decide(&stranger(), &Request::Manage)));
    // M2
    for outsider in [romeo(true), romeo(false), stranger()] {
        assert_eq!(
            text(&p.decide(&outsider, &Request::Manage)),
            "only devices of this network manage access"
        );
    }
    // M3
    assert_eq!(
        text(&p.decide(&own_plain(), &Request::Manage)),
        "end-to-end tunnel required"
    );
    // M4
    assert_eq!(p.decide(&own_tunnel(), &Request::Manage), Decision::Allow);
}

#[test]
fn o1_o2_own_devices_get_plumbing_and_nothing_else() {
    let p = no_guests(true);
    for own in [own_plain(), own_tunnel()] {
        assert_eq!(p.decide(&own, &Request::Get), Decision::Allow);
        assert_eq!(p.decide(&own, &Request::OtherSet), Decision::Unsupported);
    }
}

#[test]
fn o3_o4_own_devices_call_through_the_tunnel_when_it_is_required() {
    assert_eq!(
        text(&no_guests(true).decide(&own_plain(), &Request::Rpc)),
        "end-to-end tunnel required"
    );
    assert_eq!(
        no_guests(true).decide(&own_tunnel(), &Request::Rpc),
        Decision::Allow
    );
    assert_eq!(
        no_guests(false).decide(&own_plain(), &Request::Rpc),
        Decision::Allow
    );
}

#[test]
fn o5_the_audit_feed_needs_guest_access_and_the_tunnel() {
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    let subscribe = call("access.subscribe", &[]);
    assert_eq!(p.decide(&own_tunnel(), &subscribe), Decision::Allow);
    assert!(is_forbidden(&p.decide(&own_plain(), &subscribe)));
    assert!(is_forbidden(
        &no_guests(false).decide(&own_tunnel(), &subscribe)
    ));
}

#[test]
fn o6_o7_own_devices_play_anything_but_mpv_pseudo_protocols() {
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    for ok in [
        "file:///media/a.mkv",
        "http://192.168.1.2/a",
        "/media/a.mkv",
    ] {
        for method in ["player.play", "player.enqueue"] {
            assert_eq!(
                p.decide(&own_tunnel(), &call(method, &uri(ok))),
                Decision::Allow
            );
        }
    }
    for bad in ["edl://x", "av://lavfi:sine", "Memory://x", "fd://0", "-"] {
        let d = p.decide(&own_plain(), &call("player.play", &uri(bad)));
        assert_eq!(
            text(&d),
            "media URI refused: media-pseudo-protocol",
            "{bad}"
        );
    }
    assert_eq!(p.stats.snapshot().media_refused, 5);
    // A refusal reaches the owner's audit log with its reason.
    let records = f.guard.new_records();
    assert!(records.iter().any(|r| r.kind == AuditKind::Deny
        && r.method.as_deref() == Some("player.play")
        && r.detail == "media-pseudo-protocol"));
    // The owner may allow one.
    let lenient = f.policy(
        false,
        MediaPolicy {
            pseudo_protocols: vec!["av".into()],
            ..MediaPolicy::default()
        },
    );
    let lavfi = uri("av://lavfi:sine");
    assert_eq!(
        lenient.decide(&own_tunnel(), &call("player.play", &lavfi)),
        Decision::Allow
    );
    // O7: anything else, any shape (the service checks the shape).
    assert_eq!(
        p.decide(&own_tunnel(), &call("recorder.schedule", &[])),
        Decision::Allow
    );
    assert_eq!(
        p.decide(&own_tunnel(), &call("player.play", &[Value::Int(7)])),
        Decision::Allow
    );
}

#[test]
fn x1_to_x3_strangers_get_forbidden() {
    let none = no_guests(false);
    for request in [Request::Get, Request::Rpc, Request::OtherSet] {
        assert_eq!(
            text(&none.decide(&stranger(), &request)),
            "not a device of this network"
        );
    }
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    assert_eq!(
        text(&p.decide(&stranger(), &Request::Rpc)),
        "end-to-end tunnel required"
    );
    assert_eq!(
        text(&p.decide(&romeo(false), &Request::Rpc)),
        "end-to-end tunnel required"
    );
    for request in [Request::Get, Request::OtherSet, call("player.status", &[])] {
        assert_eq!(text(&p.decide(&stranger(), &request)), "no access granted");
    }
}

#[test]
fn g1_g2_g5_guests_call_through_the_tunnel_within_their_grant() {
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    assert_eq!(p.decide(&romeo(true), &Request::Rpc), Decision::Allow);
    assert_eq!(
        p.decide(&romeo(true), &call("player.status", &[])),
        Decision::Allow
    );
    assert_eq!(
        text(&p.decide(&romeo(true), &call("recorder.channels", &[]))),
        "access denied: out-of-scope"
    );
    // The grant names the phone's key: no key (or another) is refused.
    let no_key = Caller::Guest {
        jid: jid("romeo@friend.test/phone"),
        bare: bare(ROMEO),
        key: None,
        tunnel: true,
    };
    assert_eq!(
        text(&p.decide(&no_key, &call("player.status", &[]))),
        "access denied: wrong-device"
    );
    // library-item: that item only.
    let seven = uri("videos/7");
    assert_eq!(
        p.decide(&romeo(true), &call("library.item", &seven)),
        Decision::Allow
    );
    assert!(is_forbidden(
        &p.decide(&romeo(true), &call("library.item", &uri("videos/8")))
    ));
}

#[test]
fn g3_guests_never_reach_the_audit_feed() {
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    assert!(is_forbidden(
        &p.decide(&romeo(true), &call("access.subscribe", &[]))
    ));
}

#[test]
fn g4_guests_play_only_the_shared_item_or_an_allowed_scheme() {
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    let own_nas = shared_item_uri(&"romeo@friend.test/nas".parse().expect("jid"), "film");
    let our_item = shared_item_uri(&"home@home.test/nas".parse().expect("jid"), "videos/7");
    for ok in [&own_nas, &our_item] {
        assert_eq!(
            p.decide(&romeo(true), &call("player.play", &uri(ok))),
            Decision::Allow,
            "{ok}"
        );
    }
    let other_item = shared_item_uri(&"home@home.test/nas".parse().expect("jid"), "videos/8");
    let third_party = shared_item_uri(&"mallory@evil.test/nas".parse().expect("jid"), "x");
    for bad in [
        "file:///etc/passwd",
        "http://192.168.1.1/admin",
        "https://example.org/film.mkv",
        "edl://x",
        "av://lavfi:sine",
        "/media/a.mkv",
        other_item.as_str(),
        third_party.as_str(),
    ] {
        for method in ["player.play", "player.enqueue"] {
            let d = p.decide(&romeo(true), &call(method, &uri(bad)));
            // enqueue is out of the playback scope anyway; play is refused by the media rule.
            assert!(is_forbidden(&d), "{method} {bad}: {d:?}");
        }
        assert_eq!(
            text(&p.decide(&romeo(true), &call("player.play", &uri(bad)))),
            "media URI refused: media-not-shared",
            "{bad}"
        );
    }
    let allowing = f.policy(
        false,
        MediaPolicy {
            guest_schemes: vec!["https".into(), "av".into()],
            ..MediaPolicy::default()
        },
    );
    let https = uri("https://example.org/film.mkv");
    assert_eq!(
        allowing.decide(&romeo(true), &call("player.play", &https)),
        Decision::Allow
    );
    // An allowed scheme does not open a pseudo-protocol the owner did not allow as such.
    assert!(is_forbidden(&allowing.decide(
        &romeo(true),
        &call("player.play", &uri("av://lavfi:sine"))
    )));
}

#[test]
fn g6_g7_guests_read_disco_while_granted_and_nothing_else() {
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    assert_eq!(p.decide(&romeo(false), &Request::Get), Decision::Allow);
    assert_eq!(p.decide(&romeo(true), &Request::Get), Decision::Allow);
    assert_eq!(
        text(&p.decide(&romeo(true), &Request::OtherSet)),
        "no access granted"
    );
    // A guest without an active grant (its tunnel outlived it) reads nothing.
    let juliet = Caller::Guest {
        jid: jid("juliet@friend.test/phone"),
        bare: bare("juliet@friend.test"),
        key: Some(DeviceFingerprint([9; 32])),
        tunnel: true,
    };
    assert_eq!(text(&p.decide(&juliet, &Request::Get)), "no access granted");
    assert_eq!(
        text(&p.decide(&juliet, &call("player.status", &[]))),
        "access denied: no-grant"
    );
}

#[test]
fn t1_e1_e2_r1_r2_tunnels_events_and_requests_outside_iq() {
    let f = fixture();
    let policy = f.policy(true, MediaPolicy::default());
    let romeo_phone: xmpp_parsers::jid::FullJid = "romeo@friend.test/phone".parse().expect("jid");
    let own_phone: xmpp_parsers::jid::FullJid = "home@home.test/phone".parse().expect("jid");
    let other_key = DeviceFingerprint([0x99; 32]);
    // T1: the granted key opens a tunnel, another key of the same guest does not.
    assert!(policy.admits_tunnel(&bare(ROMEO), &ROMEO_KEY));
    assert!(!policy.admits_tunnel(&bare(ROMEO), &other_key));
    assert!(!no_guests(true).admits_tunnel(&bare(ROMEO), &ROMEO_KEY));
    // E1: the household hears without its key being asked.
    assert!(policy.may_hear(&own_phone, || panic!("no key asked for own devices")));
    // E2: a guest hears only through a tunnel whose key holds an active grant.
    assert!(policy.may_hear(&romeo_phone, || Some(ROMEO_KEY)));
    assert!(!policy.may_hear(&romeo_phone, || Some(other_key)));
    assert!(!policy.may_hear(&romeo_phone, || None));
    assert!(!no_guests(true).may_hear(&romeo_phone, || Some(ROMEO_KEY)));
    // R1/R2: requests from outside are recorded, the household's own are not.
    assert!(policy.takes_access_request(&bare(ROMEO)));
    assert!(!policy.takes_access_request(&bare(NETWORK)));
    assert!(!no_guests(true).takes_access_request(&bare(ROMEO)));
}

#[test]
fn g4_g8_p1_guests_play_a_playlist_of_this_network_only_when_it_is_shared_with_them() {
    use crate::core::pubsub::{playlist_uri, Access, PlaylistAddress};
    let f = fixture();
    let p = f.policy(false, MediaPolicy::default());
    // G4: the address of one of our playlists passes the call check (G8 comes once it is read);
    // another household's playlist does not.
    let ours = playlist_uri(&bare(NETWORK), "films");
    assert_eq!(
        p.decide(&romeo(true), &call("player.play", &uri(&ours))),
        Decision::Allow
    );
    for theirs in [
        playlist_uri(&bare(ROMEO), "films"),
        playlist_uri(&bare("mallory@evil.test"), "films"),
    ] {
        assert_eq!(
            text(&p.decide(&romeo(true), &call("player.play", &uri(&theirs)))),
            "media URI refused: media-not-shared",
            "{theirs}"
        );
    }
    // G8: only an open playlist or one whose members name the guest's network.
    let address = PlaylistAddress::parse(&ours).expect("address");
    let romeo = bare(ROMEO);
    assert!(p.guest_may_play_playlist(&romeo, &address, &Access::Open));
    assert!(p.guest_may_play_playlist(
        &romeo,
        &address,
        &Access::Friends(vec![bare("juliet@friend.test"), romeo.clone()])
    ));
    for closed in [
        Access::OwnNetwork,
        Access::Friends(vec![bare("juliet@friend.test")]),
    ] {
        assert!(
            !p.guest_may_play_playlist(&romeo, &address, &closed),
            "{closed:?}"
        );
    }
    let foreign = PlaylistAddress::parse(&playlist_uri(&romeo, "films")).expect("address");
    assert!(!p.guest_may_play_playlist(&romeo, &foreign, &Access::Open));
    let refusal = p.refuse_playlist(
        &"romeo@friend.test/phone".parse().expect("jid"),
        "player.play",
    );
    assert_eq!(refusal.kind(), crate::core::error::ErrorKind::Forbidden);
    assert_eq!(p.stats.snapshot().media_refused, 3);
    // P1: owner-signed entries are played like an own device's request.
    assert!(p.playlist_entry_playable("https://films.example/a.mkv"));
    assert!(!p.playlist_entry_playable("edl://a;b"));
    assert_eq!(p.stats.snapshot().media_refused, 4);
}
