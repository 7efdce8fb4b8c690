//! Tests of the access core across its parts: wire elements, signatures, the provider ACL (with the
//! role × method matrix), persistence, the audit log and the request intake under floods.

use std::fs;

use minidom::Element;
use xmpp_parsers::jid::{BareJid, FullJid};

use super::*;
use crate::core::error::ErrorKind;
use crate::core::identity::{KeyPolicy, KeyStore};
use crate::core::services::shipped;
use crate::platform::software::SoftwareKeyStore;

const NOW: u64 = 1_700_000_000;
const HOUR: u64 = 3600;
const OWNER_KEY: &str = "owner-approval";
const NETWORK: &str = "home@home.test";
const ROMEO_DEVICE: DeviceFingerprint = DeviceFingerprint([0x52; 32]);

fn jid(s: &str) -> FullJid {
    s.parse().expect("test full JID")
}

fn bare(s: &str) -> BareJid {
    s.parse().expect("test bare JID")
}

/// A household: an owner phone with an owner-approval key, and the provider's view of its keys.
struct Household {
    _dir: tempfile::TempDir,
    store: SoftwareKeyStore,
    owners: OwnerKeys,
}

fn household() -> Household {
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
    let mut owners = OwnerKeys::new(bare(NETWORK));
    owners.add(&spki).expect("P-256 key");
    Household {
        _dir: dir,
        store,
        owners,
    }
}

/// A fresh P-256 owner-approval SPKI.
fn fresh_spki() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SoftwareKeyStore::open(dir.path().join("keys")).expect("store");
    store
        .generate(
            OWNER_KEY,
            KeyPolicy::OwnerApproval {
                user_presence: false,
            },
        )
        .expect("owner key")
}

impl Household {
    fn draft(&self, guest: &str, scopes: Vec<Scope>) -> GrantDraft {
        GrantDraft::new(
            bare(NETWORK),
            bare(guest),
            ROMEO_DEVICE,
            scopes,
            NOW - 60,
            NOW + 2 * HOUR,
            0,
        )
    }

    fn sign(&self, draft: GrantDraft) -> SignedGrant {
        draft.sign(&self.store, OWNER_KEY).expect("sign")
    }

    fn playback_grant(&self) -> SignedGrant {
        self.sign(self.draft("romeo@friend.test", vec![Scope::Playback]))
    }

    fn revoke(&self, id: &GrantId, version: u64) -> SignedRevoke {
        SignedRevoke::sign(bare(NETWORK), id.clone(), version, &self.store, OWNER_KEY)
            .expect("sign revoke")
    }

    fn acl(&self) -> Acl {
        Acl::in_memory(self.owners.clone())
    }
}

fn parse_el(xml: &str) -> Element {
    xml.parse().expect("well-formed test XML")
}

fn fp_hex() -> String {
    "ab".repeat(32)
}

// ---------------------------------------------------------------------------------------------
// Wire elements
// ---------------------------------------------------------------------------------------------

#[test]
fn request_round_trips_with_scopes_reason_and_device() {
    let req = AccessRequest::new(
        ROMEO_DEVICE,
        vec![Scope::Playback],
        Some(Reason::new("Film night: my video on your TV").expect("reason")),
    );
    let elem = Element::from(req.clone());
    assert!(elem.is("request", NS_ACCESS));
    assert_eq!(AccessRequest::parse(elem).expect("parse"), req);

    let item = AccessRequest {
        item: Some(ItemId::new("videos/42").expect("item")),
        scopes: vec![Scope::LibraryItem],
        ..req
    };
    assert_eq!(
        AccessRequest::parse(Element::from(item.clone())).expect("parse"),
        item
    );
}

#[test]
fn request_rejects_wrong_namespace_missing_attribute_unknown_scope_extras_and_oversize_reason() {
    let fp = fp_hex();
    let ok = format!(
        "<request xmlns='{NS_ACCESS}' device='{fp}'><scope name='playback'/><reason>hi</reason></request>"
    );
    assert!(AccessRequest::parse(parse_el(&ok)).is_ok());
    let at_limit = format!(
        "<request xmlns='{NS_ACCESS}' device='{fp}'><scope name='playback'/><reason>{}</reason></request>",
        "r".repeat(MAX_REASON_BYTES)
    );
    assert!(AccessRequest::parse(parse_el(&at_limit)).is_ok());

    let rejects = [
        (
            "wrong namespace",
            ok.replace(NS_ACCESS, "urn:xmpp:tmp:pmn:access:1"),
        ),
        (
            "missing device",
            format!("<request xmlns='{NS_ACCESS}'><scope name='playback'/></request>"),
        ),
        ("short fingerprint", ok.replace(&fp, &"ab".repeat(31))),
        ("non-hex fingerprint", ok.replace(&fp, &"zz".repeat(32))),
        ("unknown scope", ok.replace("'playback'", "'admin'")),
        (
            "extra child",
            ok.replace("</request>", "<evil xmlns='urn:x'/></request>"),
        ),
        (
            "extra child in our namespace",
            ok.replace("</request>", "<grant/></request>"),
        ),
        (
            "extra attribute",
            ok.replace("<request ", "<request admin='1' "),
        ),
        ("oversize reason", at_limit.replace("<reason>", "<reason>x")),
        (
            "control characters in reason",
            ok.replace(">hi<", ">hi&#x7f;&#x85;<"),
        ),
        (
            "duplicate scope",
            ok.replace(
                "<scope name='playback'/>",
                "<scope name='playback'/><scope name='playback'/>",
            ),
        ),
        (
            "no scope",
            format!("<request xmlns='{NS_ACCESS}' device='{fp}'/>"),
        ),
        (
            "library-item without an item",
            ok.replace("'playback'", "'library-item'"),
        ),
        (
            "an item without library-item",
            ok.replace("<request ", "<request item='x' "),
        ),
        (
            "two reasons",
            ok.replace("</request>", "<reason>again</reason></request>"),
        ),
    ];
    for (what, xml) in rejects {
        let result = AccessRequest::parse(parse_el(&xml));
        assert!(
            matches!(result, Err(AccessError::Malformed(_))),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn grant_and_revoke_round_trip_through_xml_and_bytes() {
    let h = household();
    let grant = h.playback_grant();
    let elem = Element::from(grant.clone());
    assert!(elem.is("grant", NS_ACCESS));
    let back = SignedGrant::parse(elem).expect("parse");
    assert_eq!(back, grant);
    assert!(h.owners.verify_grant(&back).is_ok());

    let bytes = xso::to_vec(&grant).expect("serialise");
    let again: SignedGrant = xso::from_bytes(&bytes).expect("from bytes");
    assert_eq!(again, grant);

    let item = h.sign(
        h.draft("juliet@capulet.test", vec![Scope::LibraryItem])
            .for_item(ItemId::new("film-1").expect("item")),
    );
    let back = SignedGrant::parse(Element::from(item.clone())).expect("parse item grant");
    assert_eq!(back.item.as_ref().map(ItemId::as_str), Some("film-1"));
    assert!(h.owners.verify_grant(&back).is_ok());

    let revoke = h.revoke(&grant.id, 3);
    let back = SignedRevoke::parse(Element::from(revoke.clone())).expect("parse revoke");
    assert_eq!(back, revoke);
    assert!(h.owners.verify_revoke(&back).is_ok());
}

#[test]
fn grant_and_revoke_reject_malformed_elements() {
    let h = household();
    let grant = h.playback_grant();
    let xml = String::from_utf8(xso::to_vec(&grant).expect("serialise")).expect("utf-8");
    assert!(SignedGrant::parse(parse_el(&xml)).is_ok());
    let expires = format!("expires='{}'", grant.expires);
    assert!(xml.contains(&expires), "{xml}");
    let rejects = [
        (
            "wrong namespace",
            xml.replace(NS_ACCESS, "urn:xmpp:tmp:pmn:access:9"),
        ),
        ("missing expires", xml.replace(&expires, "")),
        ("unknown scope", xml.replace("'playback'", "'recorder'")),
        (
            "extra child",
            xml.replace("</grant>", "<x xmlns='urn:x'/></grant>"),
        ),
        (
            "extra attribute",
            xml.replace("<grant ", "<grant admin='true' "),
        ),
        (
            "full JID as guest",
            xml.replace("'romeo@friend.test'", "'romeo@friend.test/phone'"),
        ),
        (
            "expires before not-before",
            xml.replace(&expires, &format!("expires='{}'", grant.not_before)),
        ),
        (
            "longer than the maximum lifetime",
            xml.replace(
                &expires,
                &format!(
                    "expires='{}'",
                    grant.not_before + MAX_GRANT_LIFETIME_SECS + 1
                ),
            ),
        ),
        (
            "negative version",
            xml.replace("version='0'", "version='-1'"),
        ),
        (
            "bad signature encoding",
            xml.replace("signature='", "signature='!!"),
        ),
    ];
    for (what, bad) in rejects {
        let result = SignedGrant::parse(parse_el(&bad));
        assert!(
            matches!(result, Err(AccessError::Malformed(_))),
            "{what}: {result:?}"
        );
    }

    let revoke = format!(
        "<revoke xmlns='{NS_ACCESS}' id='g1' network='{NETWORK}' version='2' issuer='{}' signature='AAAA'/>",
        fp_hex()
    );
    assert!(SignedRevoke::parse(parse_el(&revoke)).is_ok());
    for bad in [
        revoke.replace(" version='2'", ""),
        revoke.replace("id='g1'", "id='g 1'"),
        revoke.replace("/>", "><x/></revoke>"),
        revoke.replace(NS_ACCESS, "urn:x"),
    ] {
        assert!(SignedRevoke::parse(parse_el(&bad)).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Signed grants
// ---------------------------------------------------------------------------------------------

#[test]
fn canonical_bytes_ignore_scope_order_and_keep_field_boundaries() {
    let h = household();
    let mut g = h.playback_grant();
    g.scopes = vec![Scope::Playback, Scope::LibraryItem];
    let mut swapped = g.clone();
    swapped.scopes = vec![Scope::LibraryItem, Scope::Playback];
    assert_eq!(g.signed_bytes(), swapped.signed_bytes());

    // Moving a character from one field to the next must change the bytes (length prefixes).
    let mut a = h.playback_grant();
    let mut b = a.clone();
    a.id = GrantId::new("ab").expect("id");
    b.id = GrantId::new("a").expect("id");
    a.item = None;
    b.item = None;
    assert_ne!(a.signed_bytes(), b.signed_bytes());
    assert_eq!(a.signed_bytes(), a.clone().signed_bytes(), "deterministic");

    // Grants and revocations are signed under different tags.
    let r = h.revoke(&a.id, 1);
    assert!(a
        .signed_bytes()
        .starts_with(b"\0\0\0\x13pmn/access/grant/v1"));
    assert!(r
        .signed_bytes()
        .starts_with(b"\0\0\0\x14pmn/access/revoke/v1"));
}

#[test]
fn forged_signature_and_unknown_issuer_are_refused() {
    let h = household();
    let stranger = household(); // another household's owner key, unknown here
    let foreign = stranger.sign(h.draft("romeo@friend.test", vec![Scope::Playback]));
    assert!(matches!(
        h.owners.verify_grant(&foreign),
        Err(AccessError::UnknownIssuer { .. })
    ));

    // A stranger's signature presented under our owner's fingerprint.
    let mut forged = foreign.clone();
    forged.issuer = h.playback_grant().issuer;
    assert!(matches!(
        h.owners.verify_grant(&forged),
        Err(AccessError::BadSignature { .. })
    ));
    // Garbage and empty signatures.
    for sig in [
        vec![],
        vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
        vec![7; 70],
    ] {
        let mut g = h.playback_grant();
        g.signature = sig;
        assert!(matches!(
            h.owners.verify_grant(&g),
            Err(AccessError::BadSignature { .. })
        ));
    }
    // A revocation signed by a stranger.
    let r = stranger.revoke(&GrantId::new("g1").expect("id"), 9);
    assert!(matches!(
        h.owners.verify_revoke(&r),
        Err(AccessError::UnknownIssuer { .. })
    ));
    let e: crate::core::error::Error = AccessError::UnknownIssuer { issuer: "x".into() }.into();
    assert_eq!(e.kind(), ErrorKind::Forbidden);
}

#[test]
fn every_tampered_field_breaks_the_signature() {
    let h = household();
    let g = h.sign(
        h.draft("romeo@friend.test", vec![Scope::LibraryItem])
            .for_item(ItemId::new("film-1").expect("item")),
    );
    assert!(h.owners.verify_grant(&g).is_ok());
    type Tamper = Box<dyn Fn(&mut SignedGrant)>;
    let tampers: Vec<(&str, Tamper)> = vec![
        (
            "id",
            Box::new(|g| g.id = GrantId::new("other").expect("id")),
        ),
        ("guest", Box::new(|g| g.guest = bare("eve@evil.test"))),
        (
            "device",
            Box::new(|g| g.device = DeviceFingerprint([9; 32])),
        ),
        ("scopes", Box::new(|g| g.scopes.push(Scope::Playback))),
        ("not-before", Box::new(|g| g.not_before -= 1)),
        ("expires", Box::new(|g| g.expires += HOUR)),
        ("version", Box::new(|g| g.version += 1)),
        (
            "item",
            Box::new(|g| g.item = Some(ItemId::new("love-letters").expect("item"))),
        ),
    ];
    for (field, tamper) in tampers {
        let mut t = g.clone();
        tamper(&mut t);
        assert!(
            matches!(
                h.owners.verify_grant(&t),
                Err(AccessError::BadSignature { .. })
            ),
            "tampered {field} accepted"
        );
    }
    let mut t = g.clone();
    t.network = bare("other@home.test");
    assert!(matches!(
        h.owners.verify_grant(&t),
        Err(AccessError::WrongNetwork { .. })
    ));
    let mut r = h.revoke(&g.id, 4);
    r.version = 5;
    assert!(matches!(
        h.owners.verify_revoke(&r),
        Err(AccessError::BadSignature { .. })
    ));
}

#[test]
fn signing_refuses_a_malformed_draft_and_a_missing_key() {
    let h = household();
    let mut d = h.draft("romeo@friend.test", vec![]);
    assert!(matches!(
        d.clone().sign(&h.store, OWNER_KEY),
        Err(AccessError::Malformed(_))
    ));
    d.scopes = vec![Scope::Playback];
    d.guest = bare(NETWORK);
    assert!(matches!(
        d.clone().sign(&h.store, OWNER_KEY),
        Err(AccessError::Malformed(_))
    ));
    let d = h.draft("romeo@friend.test", vec![Scope::Playback]);
    assert!(matches!(
        d.sign(&h.store, "no-such-key"),
        Err(AccessError::Signing(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Provider ACL
// ---------------------------------------------------------------------------------------------

fn romeo() -> FullJid {
    jid("romeo@friend.test/phone")
}

#[test]
fn installed_grant_allows_its_guest_device_and_scope_only() {
    let h = household();
    let mut acl = h.acl();
    let g = h.playback_grant();
    acl.install(g.clone(), NOW).expect("install");
    assert_eq!(
        acl.check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            NOW
        ),
        Decision::Allow(Allowed::Guest {
            grant_id: g.id.clone()
        })
    );
    // Another resource of the same guest on the same device key is the same phone.
    assert!(acl
        .check(
            &jid("romeo@friend.test/tablet"),
            Some(&ROMEO_DEVICE),
            "player.pause",
            shipped::scope("player.pause"),
            NOW
        )
        .is_allowed());
    assert_eq!(
        acl.check(
            &romeo(),
            Some(&DeviceFingerprint([1; 32])),
            "player.play",
            shipped::scope("player.play"),
            NOW
        ),
        Decision::Deny(DenyReason::WrongDevice)
    );
    assert_eq!(
        acl.check(
            &romeo(),
            None,
            "player.play",
            shipped::scope("player.play"),
            NOW
        ),
        Decision::Deny(DenyReason::WrongDevice),
        "a guest without a tunnel has no device key"
    );
    assert_eq!(
        acl.check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "recorder.schedule",
            shipped::scope("recorder.schedule"),
            NOW
        ),
        Decision::Deny(DenyReason::OutOfScope)
    );
    let e = acl
        .check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "library.browse",
            shipped::scope("library.browse"),
            NOW,
        )
        .into_result()
        .expect_err("forbidden");
    assert_eq!(e.kind(), ErrorKind::Forbidden);
    assert_eq!(acl.active_grants(NOW).len(), 1);
}

#[test]
fn expiry_and_not_before_follow_the_providers_clock() {
    let h = household();
    let mut acl = h.acl();
    let mut d = h.draft("romeo@friend.test", vec![Scope::Playback]);
    d.not_before = NOW + HOUR;
    d.expires = NOW + 2 * HOUR;
    acl.install(h.sign(d), NOW)
        .expect("a future grant may be installed");
    let check = |acl: &mut Acl, t| {
        acl.check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            t,
        )
    };
    assert_eq!(
        check(&mut acl, NOW),
        Decision::Deny(DenyReason::NotYetValid)
    );
    assert!(
        check(&mut acl, NOW + HOUR).is_allowed(),
        "not-before is inclusive"
    );
    assert!(check(&mut acl, NOW + 2 * HOUR - 1).is_allowed());
    assert_eq!(
        check(&mut acl, NOW + 2 * HOUR),
        Decision::Deny(DenyReason::Expired),
        "expires is exclusive"
    );
    assert!(acl.active_grants(NOW + 2 * HOUR).is_empty());
    // A day later the grant is forgotten.
    acl.prune(NOW + 2 * HOUR + 24 * HOUR);
    assert_eq!(
        check(&mut acl, NOW + 2 * HOUR + 24 * HOUR),
        Decision::Deny(DenyReason::NoGrant)
    );
}

#[test]
fn expired_grant_is_refused_at_install() {
    let h = household();
    let mut acl = h.acl();
    let g = h.playback_grant();
    assert!(matches!(
        acl.install(g.clone(), g.expires),
        Err(AccessError::Expired { .. })
    ));
    assert!(acl.grants(NOW).is_empty());
}

#[test]
fn revocation_applies_at_once_bumps_the_version_and_cannot_be_undone() {
    let h = household();
    let mut acl = h.acl();
    let g = h.playback_grant();
    acl.install(g.clone(), NOW).expect("install");
    assert_eq!(acl.version(), 0);
    assert!(acl
        .check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            NOW
        )
        .is_allowed());

    let outcome = acl.revoke(&h.revoke(&g.id, 0), NOW + 1).expect("revoke");
    assert_eq!(
        outcome,
        RevokeOutcome::Revoked {
            guest: bare("romeo@friend.test")
        }
    );
    assert_eq!(acl.version(), 1, "revocation moves the version forward");
    assert_eq!(
        acl.check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            NOW + 1
        ),
        Decision::Deny(DenyReason::Revoked)
    );
    // Replaying the revocation changes nothing.
    assert_eq!(
        acl.revoke(&h.revoke(&g.id, 0), NOW + 2).expect("again"),
        RevokeOutcome::AlreadyRevoked
    );
    assert_eq!(acl.version(), 1);
    // Re-installing the revoked grant is refused.
    assert!(matches!(
        acl.install(g.clone(), NOW + 3),
        Err(AccessError::Revoked { .. })
    ));
    // The revocation may carry a higher version; the provider takes it.
    let g2 = h.sign(GrantDraft {
        version: 1,
        ..h.draft("romeo@friend.test", vec![Scope::Playback])
    });
    acl.install(g2.clone(), NOW + 4)
        .expect("grant at the current version");
    acl.revoke(&h.revoke(&g2.id, 10), NOW + 5).expect("revoke");
    assert_eq!(acl.version(), 10);
    let info = acl.grants(NOW + 5);
    assert_eq!(info.len(), 2);
    assert!(info.iter().all(|i| i.revoked_at.is_some() && !i.active));
}

#[test]
fn rolled_back_and_replayed_grants_are_refused() {
    let h = household();
    let mut acl = h.acl();
    let old = h.playback_grant(); // version 0, issued before the revocation below
    let first = h.sign(h.draft("tybalt@friend.test", vec![Scope::Playback]));
    acl.install(first.clone(), NOW).expect("install");
    assert!(matches!(
        acl.install(first.clone(), NOW),
        Err(AccessError::Replayed { .. })
    ));
    acl.revoke(&h.revoke(&first.id, 0), NOW).expect("revoke");
    assert_eq!(acl.version(), 1);
    assert!(matches!(
        acl.install(old, NOW),
        Err(AccessError::Rollback {
            grant_version: 0,
            acl_version: 1,
            ..
        })
    ));
    let fresh = h.sign(GrantDraft {
        version: 1,
        ..h.draft("romeo@friend.test", vec![Scope::Playback])
    });
    acl.install(fresh, NOW).expect("current version");
    let newer = h.sign(GrantDraft {
        version: 5,
        ..h.draft("romeo@friend.test", vec![Scope::Playback])
    });
    acl.install(newer, NOW).expect("newer version");
    assert_eq!(
        acl.version(),
        5,
        "installing a newer grant raises the version"
    );
}

#[test]
fn forged_or_foreign_grants_never_enter_the_acl() {
    let h = household();
    let stranger = household();
    let mut acl = h.acl();
    let foreign = stranger.sign(h.draft("romeo@friend.test", vec![Scope::Playback]));
    assert!(matches!(
        acl.install(foreign.clone(), NOW),
        Err(AccessError::UnknownIssuer { .. })
    ));
    let mut forged = h.playback_grant();
    forged.scopes = vec![Scope::Playback, Scope::LibraryItem];
    forged.item = Some(ItemId::new("x").expect("item"));
    assert!(matches!(
        acl.install(forged, NOW),
        Err(AccessError::BadSignature { .. })
    ));
    let mut other_net = OwnerKeys::new(bare("other@home.test"));
    other_net
        .add(&h.store.public_key(OWNER_KEY).expect("spki"))
        .expect("add");
    let mut other_acl = Acl::in_memory(other_net);
    assert!(matches!(
        other_acl.install(h.playback_grant(), NOW),
        Err(AccessError::WrongNetwork { .. })
    ));
    assert!(acl.grants(NOW).is_empty());
    assert_eq!(
        acl.check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            NOW
        ),
        Decision::Deny(DenyReason::NoGrant)
    );
    let denies = acl
        .audit()
        .records()
        .iter()
        .filter(|r| r.kind == AuditKind::Deny)
        .count();
    assert!(denies >= 3, "refused installs are audited");
}

#[test]
fn a_revocation_that_arrives_first_blocks_the_grant() {
    let h = household();
    let mut acl = h.acl();
    let g = h.playback_grant();
    assert_eq!(
        acl.revoke(&h.revoke(&g.id, 0), NOW).expect("revoke"),
        RevokeOutcome::Preemptive
    );
    assert!(matches!(
        acl.install(g, NOW),
        Err(AccessError::Revoked { .. })
    ));
}

#[test]
fn single_item_grant_reads_only_that_item() {
    let h = household();
    let mut acl = h.acl();
    let tv = jid("juliet@capulet.test/tv");
    let g = h.sign(
        h.draft("juliet@capulet.test", vec![Scope::LibraryItem])
            .for_item(ItemId::new("videos/film-1").expect("item")),
    );
    acl.install(g, NOW).expect("install");
    let mut check = |method: &str, item: Option<&str>| {
        acl.check_item(
            &tv,
            Some(&ROMEO_DEVICE),
            method,
            shipped::scope(method),
            item,
            NOW,
        )
    };
    assert!(check("library.item", Some("videos/film-1")).is_allowed());
    assert!(check("library.read", Some("videos/film-1")).is_allowed());
    for (method, item) in [
        ("library.item", Some("letters/rosaline")),
        ("library.item", Some("videos/film-1/../letters")),
        ("library.item", None),
        ("library.browse", Some("videos/film-1")),
        ("library.search", None),
        ("player.play", Some("videos/film-1")),
    ] {
        assert_eq!(
            check(method, item),
            Decision::Deny(DenyReason::OutOfScope),
            "{method} {item:?}"
        );
    }
}

#[test]
fn too_many_grants_are_refused_but_expired_ones_make_room() {
    let h = household();
    let mut acl = h.acl();
    for i in 0..MAX_GRANTS {
        let d = GrantDraft {
            expires: NOW + HOUR,
            ..h.draft(&format!("guest{i}@friend.test"), vec![Scope::Playback])
        };
        acl.install(h.sign(d), NOW).expect("install");
    }
    let one_more = h.sign(h.draft("late@friend.test", vec![Scope::Playback]));
    assert!(matches!(
        acl.install(one_more.clone(), NOW),
        Err(AccessError::TooManyGrants(_))
    ));
    let later = NOW + HOUR + 24 * HOUR;
    let d = GrantDraft {
        not_before: later,
        expires: later + HOUR,
        ..h.draft("late@friend.test", vec![Scope::Playback])
    };
    acl.install(h.sign(d), later)
        .expect("expired grants were pruned");
    assert_eq!(acl.grants(later).len(), 1);
}

#[test]
fn audit_log_records_request_grant_use_deny_and_revoke() {
    let h = household();
    let mut acl = h.acl();
    let req = AccessRequest::new(ROMEO_DEVICE, vec![Scope::Playback], None);
    acl.record_request(&romeo(), &req, NOW);
    let g = h.playback_grant();
    acl.install(g.clone(), NOW).expect("install");
    acl.check(
        &romeo(),
        Some(&ROMEO_DEVICE),
        "player.play",
        shipped::scope("player.play"),
        NOW,
    );
    acl.check(
        &romeo(),
        Some(&ROMEO_DEVICE),
        "recorder.channels",
        shipped::scope("recorder.channels"),
        NOW,
    );
    acl.check(
        &jid("home@home.test/phone"),
        None,
        "player.play",
        shipped::scope("player.play"),
        NOW,
    );
    acl.revoke(&h.revoke(&g.id, 0), NOW).expect("revoke");
    let kinds: Vec<AuditKind> = acl.audit().records().iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [
            AuditKind::Request,
            AuditKind::Grant,
            AuditKind::Use,
            AuditKind::Deny,
            AuditKind::Revoke
        ],
        "owner calls are not audited"
    );
    let recs = acl.audit().records();
    assert_eq!(recs[2].method.as_deref(), Some("player.play"));
    assert_eq!(recs[2].grant_id.as_deref(), Some(g.id.as_str()));
    assert_eq!(recs[3].detail, "out-of-scope");
    let json = acl.audit().to_json().expect("json");
    assert!(json.contains("\"kind\":\"revoke\""), "{json}");
}

#[test]
fn audit_log_stays_bounded_under_a_stranger_flood() {
    let h = household();
    let mut acl = h.acl();
    acl.install(h.playback_grant(), NOW).expect("install");
    for i in 0..20_000u64 {
        let caller = jid(&format!("eve{}@evil.test/x", i % 5000));
        acl.check(
            &caller,
            None,
            "player.play",
            shipped::scope("player.play"),
            NOW + i,
        );
    }
    assert!(acl.audit().len() <= DEFAULT_AUDIT_CAPACITY);
}

// ---------------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------------

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn grants_and_revocations_survive_a_provider_restart() {
    let h = household();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl.json");
    let g = h.playback_grant();
    let g2 = h.sign(h.draft("tybalt@friend.test", vec![Scope::Playback]));
    {
        let mut acl = Acl::open(&path, h.owners.clone(), NOW).expect("open new");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        acl.install(g.clone(), NOW).expect("install");
        acl.install(g2.clone(), NOW).expect("install");
        acl.revoke(&h.revoke(&g2.id, 0), NOW).expect("revoke");
    }
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let mut acl = Acl::open(&path, h.owners.clone(), NOW + 10).expect("reopen");
    assert_eq!(acl.version(), 1);
    assert!(acl
        .check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            NOW + 10
        )
        .is_allowed());
    assert_eq!(
        acl.check(
            &jid("tybalt@friend.test/p"),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            NOW + 10
        ),
        Decision::Deny(DenyReason::Revoked)
    );
    assert!(matches!(
        acl.install(g, NOW + 10),
        Err(AccessError::Replayed { .. })
    ));
    assert!(matches!(
        acl.install(g2, NOW + 10),
        Err(AccessError::Revoked { .. })
    ));
    // A preemptive revocation (tombstone) survives too.
    let g3 = h.sign(GrantDraft {
        version: 1,
        ..h.draft("mercutio@friend.test", vec![Scope::Playback])
    });
    acl.revoke(&h.revoke(&g3.id, 0), NOW + 11).expect("revoke");
    drop(acl);
    let mut acl = Acl::open(&path, h.owners.clone(), NOW + 12).expect("reopen");
    assert!(matches!(
        acl.install(g3, NOW + 12),
        Err(AccessError::Revoked { .. })
    ));
}

#[test]
fn corrupted_or_tampered_acl_file_is_an_error_never_an_empty_acl() {
    let h = household();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl.json");
    let g = h.playback_grant();
    {
        let mut acl = Acl::open(&path, h.owners.clone(), NOW).expect("open");
        acl.install(g.clone(), NOW).expect("install");
    }
    let good = fs::read_to_string(&path).expect("read");
    let expires = format!("expires='{}'", g.expires);
    assert!(good.contains(&expires), "{good}");
    let cases = [
        ("empty file", String::new()),
        ("truncated", good[..good.len() / 2].to_owned()),
        ("not JSON", "grants: none".to_owned()),
        (
            "tampered grant",
            good.replace(&expires, &format!("expires='{}'", g.expires + 100 * HOUR)),
        ),
        ("unknown field", good.replacen('{', "{\"admin\": true,", 1)),
        ("other network", good.replace(NETWORK, "other@home.test")),
        (
            "unknown format",
            good.replace("\"format\": 1", "\"format\": 2"),
        ),
        (
            "version below its grants",
            good.replace("version='0'", "version='3'"),
        ),
    ];
    for (what, text) in cases {
        fs::write(&path, &text).expect("write");
        let result = Acl::open(&path, h.owners.clone(), NOW);
        let err = result.expect_err(what);
        assert!(
            matches!(err, AccessError::Corrupt { .. }),
            "{what}: {err:?}"
        );
        assert_eq!(
            crate::core::error::Error::from(err).kind(),
            ErrorKind::Config
        );
    }
    fs::write(&path, &good).expect("restore");
    assert!(Acl::open(&path, h.owners.clone(), NOW).is_ok());
}

#[test]
fn acl_file_one_byte_over_the_bound_is_corrupt_and_left_on_disk() {
    let h = household();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl.json");
    {
        let mut acl = Acl::open(&path, h.owners.clone(), NOW).expect("open");
        acl.install(h.playback_grant(), NOW).expect("install");
    }
    assert_eq!(
        Acl::open(&path, h.owners.clone(), NOW)
            .expect("a normal file loads")
            .grants(NOW)
            .len(),
        1
    );
    // Trailing JSON whitespace: the content still parses, only its size is wrong.
    let mut text = fs::read(&path).expect("read");
    text.resize(acl::MAX_ACL_FILE_BYTES as usize + 1, b' ');
    fs::write(&path, &text).expect("pad");
    let err = Acl::open(&path, h.owners.clone(), NOW).expect_err("too large");
    assert!(matches!(err, AccessError::Corrupt { .. }), "{err:?}");
    assert_eq!(
        crate::core::error::Error::from(err).kind(),
        ErrorKind::Config
    );
    assert_eq!(fs::read(&path).expect("kept"), text);
}

#[cfg(unix)]
#[test]
fn acl_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let h = household();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl.json");
    drop(Acl::open(&path, h.owners.clone(), NOW).expect("open"));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    assert!(matches!(
        Acl::open(&path, h.owners.clone(), NOW),
        Err(AccessError::InsecurePermissions { mode: 0o644, .. })
    ));
}

#[test]
fn grants_of_a_removed_owner_device_end() {
    let h = household();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl.json");
    let g = h.playback_grant();
    let mut acl = Acl::open(&path, h.owners.clone(), NOW).expect("open");
    acl.install(g.clone(), NOW).expect("install");
    let without = OwnerKeys::new(bare(NETWORK));
    acl.set_owner_keys(without.clone(), NOW).expect("set keys");
    assert_eq!(
        acl.check(
            &romeo(),
            Some(&ROMEO_DEVICE),
            "player.play",
            shipped::scope("player.play"),
            NOW
        ),
        Decision::Deny(DenyReason::NoGrant)
    );
    // And on load from a file written while the device was still an owner.
    drop(acl);
    let mut acl = Acl::open(&path, h.owners.clone(), NOW).expect("reopen");
    assert!(
        acl.grants(NOW).is_empty(),
        "set_owner_keys persisted the drop"
    );
    acl.install(h.playback_grant(), NOW).expect("install");
    acl.set_owner_keys(without.clone(), NOW)
        .expect("remove the owner");
    drop(acl);
    // The removal is stored: reopened with no configured owner, the key stays gone.
    let acl = Acl::open(&path, without, NOW).expect("a removed issuer is not corruption");
    assert!(acl.grants(NOW).is_empty());
    assert!(acl.owner_keys().is_empty());
}

#[test]
fn owner_keys_registered_at_run_time_survive_a_restart() {
    let h = household();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl.json");
    let none = OwnerKeys::new(bare(NETWORK));
    let mut acl = Acl::open(&path, none.clone(), NOW).expect("open");
    // The first phone registers its key (the household's set-up), then the others' for them.
    let first = DeviceFingerprint([0xA1; 32]);
    for (n, spki) in h.owners.spkis().into_iter().enumerate() {
        let holder = DeviceFingerprint([0xA1 + n as u8; 32]);
        let (_, new) = acl.add_owner_key(&spki, holder, first).expect("register");
        assert!(new);
        assert!(
            !acl.add_owner_key(&spki, holder, first).expect("again").1,
            "idempotent"
        );
    }
    acl.install(h.playback_grant(), NOW).expect("install");
    drop(acl);
    let acl = Acl::open(&path, none, NOW).expect("reopen");
    assert_eq!(acl.owner_keys().len(), h.owners.len());
    assert_eq!(acl.active_grants(NOW).len(), 1);
    assert!(acl.admits(&romeo().to_bare(), &ROMEO_DEVICE, NOW));
    assert!(!acl.admits(&romeo().to_bare(), &DeviceFingerprint([9; 32]), NOW));
    assert!(acl.knows_guest(&romeo().to_bare(), NOW));
    assert!(!acl.knows_guest(&romeo().to_bare(), NOW + 10 * 24 * 3600));
}

// ---------------------------------------------------------------------------------------------
// Role × method matrix
// ---------------------------------------------------------------------------------------------

/// Every method of every service (services/issue 3 and the method list of DESIGN §3), plus the
/// owner-only access administration methods a provider will expose.
const ALL_METHODS: &[&str] = &[
    "player.play",
    "player.pause",
    "player.resume",
    "player.stop",
    "player.seek",
    "player.set_volume",
    "player.mute",
    "player.next",
    "player.previous",
    "player.status",
    "player.subscribe",
    "player.unsubscribe",
    "player.enqueue",
    "player.clear_queue",
    "player.queue",
    "recorder.channels",
    "recorder.schedule",
    "recorder.scheduled",
    "recorder.cancel",
    "recorder.subscribe",
    "recorder.unsubscribe",
    "library.browse",
    "library.search",
    "library.item",
    "library.read",
    "library.subscribe",
    "library.unsubscribe",
    "access.list",
    "access.grant",
    "access.revoke",
    "access.audit",
    "access.version",
];

/// What `playback` must allow, written out here rather than read from the methods' declarations,
/// so a declaration that widens it fails this test.
pub(super) const EXPECTED_PLAYBACK: &[&str] = &[
    "player.play",
    "player.pause",
    "player.resume",
    "player.stop",
    "player.seek",
    "player.set_volume",
    "player.mute",
    "player.next",
    "player.previous",
    "player.status",
    "player.subscribe",
    "player.unsubscribe",
];

const SHARED_ITEM: &str = "videos/film-1";

#[test]
fn role_method_matrix_every_decision() {
    let h = household();
    let mut acl = h.acl();
    let playback = h.playback_grant();
    acl.install(playback.clone(), NOW)
        .expect("install playback");
    // A guest whose only grant is out of scope for everything but one library item.
    let item_grant = h.sign(
        h.draft("tybalt@friend.test", vec![Scope::LibraryItem])
            .for_item(ItemId::new(SHARED_ITEM).expect("item")),
    );
    acl.install(item_grant.clone(), NOW)
        .expect("install item grant");

    let owner = jid("home@home.test/phone");
    let owner_tv = jid("home@home.test/tv");
    let guest = romeo();
    let guest_out = jid("tybalt@friend.test/phone");
    let stranger = jid("eve@evil.test/laptop");
    // A stranger from a network whose name resembles ours.
    let lookalike = jid("home@home.test.evil/phone");

    let mut decisions = 0;
    for &method in ALL_METHODS {
        for item in [None, Some(SHARED_ITEM), Some("letters/rosaline")] {
            let mut check = |who: &FullJid, device: Option<&DeviceFingerprint>| {
                decisions += 1;
                acl.check_item(who, device, method, shipped::scope(method), item, NOW)
            };
            // Owner devices: always.
            assert_eq!(
                check(&owner, None),
                Decision::Allow(Allowed::Owner),
                "{method}"
            );
            assert_eq!(
                check(&owner_tv, Some(&DeviceFingerprint([3; 32]))),
                Decision::Allow(Allowed::Owner),
                "{method}"
            );
            // Guest in scope: exactly the playback methods.
            let expected = if EXPECTED_PLAYBACK.contains(&method) {
                Decision::Allow(Allowed::Guest {
                    grant_id: playback.id.clone(),
                })
            } else {
                Decision::Deny(DenyReason::OutOfScope)
            };
            assert_eq!(
                check(&guest, Some(&ROMEO_DEVICE)),
                expected,
                "guest {method}"
            );
            // The same guest from another device: nothing.
            assert_eq!(
                check(&guest, Some(&DeviceFingerprint([0xee; 32]))),
                Decision::Deny(DenyReason::WrongDevice),
                "guest other device {method}"
            );
            // Guest out of scope: only the shared item's reads.
            let item_read =
                matches!(method, "library.item" | "library.read") && item == Some(SHARED_ITEM);
            let expected = if item_read {
                Decision::Allow(Allowed::Guest {
                    grant_id: item_grant.id.clone(),
                })
            } else {
                Decision::Deny(DenyReason::OutOfScope)
            };
            assert_eq!(
                check(&guest_out, Some(&ROMEO_DEVICE)),
                expected,
                "out-of-scope guest {method} {item:?}"
            );
            // Strangers: never, with or without a device key.
            for s in [&stranger, &lookalike] {
                assert_eq!(
                    check(s, Some(&ROMEO_DEVICE)),
                    Decision::Deny(DenyReason::NoGrant),
                    "stranger {method}"
                );
                assert_eq!(check(s, None), Decision::Deny(DenyReason::NoGrant));
            }
        }
    }
    assert_eq!(decisions, ALL_METHODS.len() * 3 * 9);

    // Every method the scope table allows appears in the matrix (no untested permission).
    for scope in Scope::ALL {
        for m in shipped::methods_in(scope) {
            assert!(
                ALL_METHODS.contains(&m.as_str()),
                "{m} is not in the matrix"
            );
        }
    }

    // Expired, revoked: the same matrix row for the in-scope guest turns into refusals.
    let later = playback.expires;
    for &method in EXPECTED_PLAYBACK {
        assert_eq!(
            acl.check(
                &guest,
                Some(&ROMEO_DEVICE),
                method,
                shipped::scope(method),
                later
            ),
            Decision::Deny(DenyReason::Expired),
            "{method}"
        );
    }
    acl.revoke(&h.revoke(&playback.id, 0), NOW).expect("revoke");
    for &method in ALL_METHODS {
        // Romeo's only grant is revoked: every method, in scope or not, reports the revocation.
        assert_eq!(
            acl.check(
                &guest,
                Some(&ROMEO_DEVICE),
                method,
                shipped::scope(method),
                NOW
            ),
            Decision::Deny(DenyReason::Revoked),
            "{method}"
        );
        assert_eq!(
            acl.check(&owner, None, method, shipped::scope(method), NOW),
            Decision::Allow(Allowed::Owner)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Request intake
// ---------------------------------------------------------------------------------------------

fn playback_request(device: DeviceFingerprint) -> AccessRequest {
    AccessRequest::new(device, vec![Scope::Playback], None)
}

#[test]
fn same_guest_device_and_scopes_within_the_window_is_one_request() {
    let limits = IntakeLimits::default();
    let window = limits.dedupe_window_secs;
    let mut intake = RequestIntake::new(limits);
    let req = playback_request(ROMEO_DEVICE);
    let Intake::Notify(first) = intake.offer(&romeo(), &req, NOW) else {
        panic!("first request notifies")
    };
    for t in 1..100 {
        assert_eq!(
            intake.offer(&jid("romeo@friend.test/other"), &req, NOW + t),
            Intake::Duplicate(Some(first.id))
        );
    }
    assert_eq!(intake.pending_len(), 1);
    // Answered (denied): re-sending within the window still does not ring the owner.
    assert!(intake.take(first.id).is_some());
    assert_eq!(
        intake.offer(&romeo(), &req, NOW + 200),
        Intake::Duplicate(None)
    );
    // Another device or other scopes are another request; scope order does not matter.
    assert!(matches!(
        intake.offer(
            &romeo(),
            &playback_request(DeviceFingerprint([2; 32])),
            NOW + 201
        ),
        Intake::Notify(_)
    ));
    // After the window the guest may ask again.
    assert!(matches!(
        intake.offer(&romeo(), &req, NOW + window + 1),
        Intake::Notify(_)
    ));
}

#[test]
fn one_guest_is_rate_limited() {
    let limits = IntakeLimits::default();
    let burst = limits.per_guest_burst;
    let mut intake = RequestIntake::new(limits);
    let mut outcomes = Vec::new();
    for i in 0..(burst as u8 + 5) {
        outcomes.push(intake.offer(&romeo(), &playback_request(DeviceFingerprint([i; 32])), NOW));
    }
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Intake::Notify(_) | Intake::Queued(_)))
        .count();
    assert_eq!(accepted, burst);
    assert!(outcomes[burst..].iter().all(|o| *o == Intake::RateLimited));
}

#[test]
fn request_flood_of_1000_from_many_jids_stays_bounded_and_rings_the_owner_a_bounded_number_of_times(
) {
    let limits = IntakeLimits::default();
    let mut intake = RequestIntake::new(limits.clone());
    let mut notified = 0u64;
    let duration = 600u64; // 1000 requests spread over ten minutes
    for i in 0..1000u64 {
        let from = jid(&format!("guest{i}@flood.test/phone"));
        let now = NOW + i * duration / 1000;
        // Each guest asks three times (a retrying client): de-duplicated.
        for _ in 0..3 {
            if let Intake::Notify(_) = intake.offer(&from, &playback_request(ROMEO_DEVICE), now) {
                notified += 1;
            }
        }
        assert!(intake.pending_len() <= limits.max_pending);
        assert!(intake.tracked_guests() <= limits.max_tracked_guests);
    }
    let bound = u64::from(limits.notify_burst) + duration / limits.notify_interval_secs + 1;
    assert!(notified <= bound, "{notified} notifications > {bound}");
    assert!(notified >= 1);
    assert_eq!(intake.pending().len(), intake.pending_len());
}

#[test]
fn request_flood_of_100000_keeps_memory_bounded() {
    let limits = IntakeLimits::default();
    let mut intake = RequestIntake::new(limits.clone());
    let max_footprint =
        limits.max_pending + limits.max_tracked_guests * (2 + limits.per_guest_burst);
    let mut notified = 0u64;
    let mut peak = 0;
    let n = 100_000u64;
    for i in 0..n {
        // 50 000 distinct JIDs, several devices each, one second every 100 requests (~17 minutes).
        let from = jid(&format!("g{}@flood{}.test/r{}", i % 50_000, i % 7, i % 3));
        let now = NOW + i / 100;
        let device = DeviceFingerprint([(i % 5) as u8; 32]);
        if let Intake::Notify(_) = intake.offer(&from, &playback_request(device), now) {
            notified += 1;
        }
        peak = peak.max(intake.footprint());
    }
    assert!(peak <= max_footprint, "footprint {peak} > {max_footprint}");
    assert!(intake.pending_len() <= limits.max_pending);
    assert!(intake.tracked_guests() <= limits.max_tracked_guests);
    let elapsed = n / 100;
    let bound = u64::from(limits.notify_burst) + elapsed / limits.notify_interval_secs + 1;
    assert!(notified <= bound, "{notified} notifications > {bound}");

    // When the flood stops, a real guest gets through again once windows and TTLs run out.
    let later = NOW + elapsed + limits.pending_ttl_secs.max(limits.dedupe_window_secs) + 1;
    assert!(matches!(
        intake.offer(&romeo(), &playback_request(ROMEO_DEVICE), later),
        Intake::Notify(_)
    ));
    assert_eq!(intake.pending_len(), 1);
}

/// Issue 12: owner keys are a privilege. The first key comes from the household's set-up; after
/// that only an owner device adds keys (its own or another phone's); a device of the network that
/// is not an owner (a stolen tablet) is refused; removing a key, or revoking the device that holds
/// it, ends every grant it signed; the owner devices survive a restart; the count is bounded.
#[test]
fn only_owner_devices_manage_owner_keys_and_a_revoked_owner_takes_its_grants_with_it() {
    let h = household();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acl.json");
    let none = OwnerKeys::new(bare(NETWORK));
    let mut acl = Acl::open(&path, none.clone(), NOW).expect("open");
    let spkis = h.owners.spkis();
    let (phone, tablet, thief) = (
        DeviceFingerprint([1; 32]),
        DeviceFingerprint([2; 32]),
        DeviceFingerprint([3; 32]),
    );
    let (first_key, _) = acl.add_owner_key(&spkis[0], phone, phone).expect("set-up");
    assert!(acl.is_owner_device(&phone));
    // The thief is a device of the network but no owner: refused, and nothing changed.
    let rogue = fresh_spki();
    assert_eq!(
        acl.add_owner_key(&rogue, thief, thief),
        Err(AccessError::NotOwner {
            device: thief.to_hex()
        })
    );
    assert_eq!(acl.owner_keys().len(), 1);
    assert_eq!(
        acl.remove_owner_key(&first_key, &thief, NOW),
        Err(AccessError::NotOwner {
            device: thief.to_hex()
        })
    );
    // The grant signed by the phone's key works.
    acl.install(h.playback_grant(), NOW).expect("install");
    assert_eq!(acl.active_grants(NOW).len(), 1);
    // The phone makes the tablet an owner too; the tablet may then add keys itself.
    acl.add_owner_key(&fresh_spki(), tablet, phone)
        .expect("the phone adds the tablet");
    assert!(acl.is_owner_device(&tablet));
    acl.add_owner_key(&fresh_spki(), tablet, tablet)
        .expect("an owner adds keys itself");
    drop(acl);
    let mut acl = Acl::open(&path, none, NOW).expect("reopen");
    assert!(acl.is_owner_device(&phone), "owner devices are stored");
    assert_eq!(acl.owner_devices().len(), 3);
    // The phone is revoked on the network: its key goes, and the grant it signed with it.
    let dropped = acl.drop_revoked_owners(|d| *d == phone, NOW).expect("drop");
    assert_eq!(dropped, 1);
    assert!(!acl.is_owner_device(&phone));
    assert!(
        acl.active_grants(NOW).is_empty(),
        "the revoked owner's grant ended"
    );
    assert!(!acl.admits(&romeo().to_bare(), &ROMEO_DEVICE, NOW));
    // Nothing left to drop the second time.
    assert_eq!(
        acl.drop_revoked_owners(|d| *d == phone, NOW)
            .expect("again"),
        0
    );
}

#[test]
fn owner_keys_are_bounded() {
    let mut acl = Acl::in_memory(OwnerKeys::new(bare(NETWORK)));
    let owner = DeviceFingerprint([1; 32]);
    for n in 0..crate::core::access::MAX_OWNER_KEYS {
        let spki = fresh_spki();
        // The first key is the owner's own; it then registers the others.
        let holder = if n == 0 {
            owner
        } else {
            DeviceFingerprint([n as u8 + 1; 32])
        };
        acl.add_owner_key(&spki, holder, owner)
            .expect("within the bound");
    }
    let spki = fresh_spki();
    assert_eq!(
        acl.add_owner_key(&spki, owner, owner),
        Err(AccessError::TooManyOwners(
            crate::core::access::MAX_OWNER_KEYS
        ))
    );
}
