//! The specifications' examples (XEP-0115 §5.2–5.3, XEP-0390 §4.5), the cases where
//! xmpp-parsers 0.23 differs, our own caps, and the cache's bounds.

use base64::Engine;
use minidom::Element;
use xmpp_parsers::caps::hash_caps;
use xmpp_parsers::ecaps2::hash_ecaps2;

use super::*;

fn parse(xml: &str) -> Element {
    match xml.parse() {
        Ok(el) => el,
        Err(e) => panic!("test XML does not parse: {e}"),
    }
}

fn b64(s: &str) -> Vec<u8> {
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(b) => b,
        Err(e) => panic!("bad base64 in test: {e}"),
    }
}

fn b64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha1_b64(input: &[u8]) -> String {
    let hash = hash_caps(input, Algo::Sha_1)
        .map(|h| h.hash)
        .unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(hash)
}

const XEP0115_5_2: &str = "<query xmlns='http://jabber.org/protocol/disco#info' \
        node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
        <identity category='client' name='Exodus 0.9.1' type='pc'/>\
        <feature var='http://jabber.org/protocol/caps'/>\
        <feature var='http://jabber.org/protocol/disco#info'/>\
        <feature var='http://jabber.org/protocol/disco#items'/>\
        <feature var='http://jabber.org/protocol/muc'/></query>";

/// XEP-0115 §5.3 with `fields` as the form's fields after FORM_TYPE (and FORM_TYPE placed
/// `form_type_last` if asked), identities and features shuffled.
fn xep0115_5_3(fields: &[(&str, &[&str])], form_type_last: bool) -> String {
    let form_type = "<field var='FORM_TYPE' type='hidden'>\
            <value>urn:xmpp:dataforms:softwareinfo</value></field>";
    let mut x = String::from("<x xmlns='jabber:x:data' type='result'>");
    if !form_type_last {
        x.push_str(form_type);
    }
    for (var, values) in fields {
        x.push_str(&format!("<field var='{var}'>"));
        for v in *values {
            x.push_str(&format!("<value>{v}</value>"));
        }
        x.push_str("</field>");
    }
    if form_type_last {
        x.push_str(form_type);
    }
    x.push_str("</x>");
    format!(
        "<query xmlns='http://jabber.org/protocol/disco#info' \
             node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>\
             <feature var='http://jabber.org/protocol/muc'/>\
             <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/caps'/>\
             <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
             <feature var='http://jabber.org/protocol/disco#info'/>\
             <feature var='http://jabber.org/protocol/disco#items'/>{x}</query>"
    )
}

const SOFTWAREINFO_SORTED: &[(&str, &[&str])] = &[
    ("ip_version", &["ipv4", "ipv6"]),
    ("os", &["Mac"]),
    ("os_version", &["10.5.1"]),
    ("software", &["Psi"]),
    ("software_version", &["0.11"]),
];

const SOFTWAREINFO_SHUFFLED: &[(&str, &[&str])] = &[
    ("software_version", &["0.11"]),
    ("os", &["Mac"]),
    ("ip_version", &["ipv6", "ipv4"]),
    ("software", &["Psi"]),
    ("os_version", &["10.5.1"]),
];

#[test]
fn xep0115_simple_example_5_2() {
    let input = HashInput::from_element(&parse(XEP0115_5_2));
    let s = input.caps_string().expect("well-formed");
    assert_eq!(
        s,
        b"client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<\
              http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<\
              http://jabber.org/protocol/muc<"
            .to_vec()
    );
    assert_eq!(sha1_b64(&s), "QgayPKawpkPSDYmwT/WM94uAlu0=");
}

#[test]
fn xep0115_complex_example_5_3_verifies_in_any_field_order() {
    let expected: &[u8] = "client/pc/el/Ψ 0.11<client/pc/en/Psi 0.11<\
            http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<\
            http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<\
            urn:xmpp:dataforms:softwareinfo<ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<\
            software<Psi<software_version<0.11<"
        .as_bytes();
    let key = CapsKey {
        scheme: Scheme::Caps,
        algo: Algo::Sha_1,
        hash: b64("q07IKJEyjvHSyhy//CH0CxmKi8w="),
    };
    for (fields, last) in [
        (SOFTWAREINFO_SORTED, false),
        (SOFTWAREINFO_SHUFFLED, false),
        (SOFTWAREINFO_SHUFFLED, true),
    ] {
        let el = parse(&xep0115_5_3(fields, last));
        let input = HashInput::from_element(&el);
        assert_eq!(input.caps_string().as_deref(), Ok(expected));
        assert_eq!(key.verify(&input), Ok(true));
        // The parsed view (what our own info goes through) agrees.
        let parsed = DiscoInfoResult::try_from(el).expect("parses");
        assert_eq!(
            HashInput::from_info(&parsed).caps_string().as_deref(),
            Ok(expected)
        );
    }
}

#[test]
fn xmpp_parsers_0_23_refuses_the_shuffled_5_3_example() {
    // Documents the upstream bug this module works around: if this starts failing, upstream
    // was fixed and `compute_disco` may be usable again (duplicates aside).
    let el = parse(&xep0115_5_3(SOFTWAREINFO_SHUFFLED, false));
    let parsed = DiscoInfoResult::try_from(el).expect("parses");
    let theirs = xmpp_parsers::caps::compute_disco(&parsed);
    assert_ne!(sha1_b64(&theirs), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
}

#[test]
fn identities_sorted_as_joined_strings_also_verify() {
    // `en` sorts before `en-US` field by field, after it as joined strings ('-' < '/').
    let el = parse(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc' xml:lang='en-US' name='A'/>\
             <identity category='client' type='pc' xml:lang='en' name='A'/></query>",
    );
    let input = HashInput::from_element(&el);
    let spec = input.caps_string().expect("well-formed");
    assert_eq!(spec, b"client/pc/en/A<client/pc/en-US/A<".to_vec());
    let joined = b"client/pc/en-US/A<client/pc/en/A<";
    for data in [spec.as_slice(), joined.as_slice()] {
        let key = CapsKey {
            scheme: Scheme::Caps,
            algo: Algo::Sha_1,
            hash: hash_caps(data, Algo::Sha_1)
                .map(|h| h.hash)
                .unwrap_or_default(),
        };
        assert_eq!(key.verify(&input), Ok(true));
    }
}

#[test]
fn form_without_hidden_form_type_is_ignored_not_hashed() {
    let base = parse(XEP0115_5_2);
    let expected = HashInput::from_element(&base).caps_string();
    for form in [
        "<x xmlns='jabber:x:data' type='result'><field var='os'><value>Mac</value></field></x>",
        "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'>\
             <value>urn:x</value></field><field var='os'><value>Mac</value></field></x>",
    ] {
        let mut el = base.clone();
        el.append_child(parse(form));
        let input = HashInput::from_element(&el);
        assert_eq!(input.caps_string(), expected, "{form}");
        // XEP-0390 has no such leniency.
        assert_eq!(
            input.ecaps2_string(),
            Err(IllFormed::MissingFormType),
            "{form}"
        );
    }
}

#[test]
fn ill_formed_answers_have_no_hash() {
    let identity = "<identity category='client' type='pc' name='A'/>";
    let feature = "<feature var='urn:x'/>";
    let form = |ty: &str, extra: &str| {
        format!(
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
                 <value>{ty}</value>{extra}</field></x>"
        )
    };
    let cases = [
        (format!("{identity}{identity}"), "duplicate identity"),
        (format!("{identity}{feature}{feature}"), "duplicate feature"),
        (
            format!("{identity}{}{}", form("urn:f", ""), form("urn:f", "")),
            "two forms",
        ),
        (
            format!("{identity}{}", form("urn:f", "<value>urn:g</value>")),
            "conflicting FORM_TYPE values",
        ),
    ];
    for (children, what) in cases {
        let el = parse(&format!(
            "<query xmlns='http://jabber.org/protocol/disco#info'>{children}</query>"
        ));
        let input = HashInput::from_element(&el);
        assert!(input.caps_string().is_err(), "{what}");
        assert!(input.ecaps2_string().is_err(), "{what}");
    }
    // Same identity in two languages is not a duplicate.
    let el = parse(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='client' type='pc' name='A' xml:lang='en'/>\
             <identity category='client' type='pc' name='A' xml:lang='de'/></query>",
    );
    assert!(HashInput::from_element(&el).caps_string().is_ok());
}

/// XEP-0390 §4.5.1, features shuffled as in the XEP.
const XEP0390_SIMPLE: &str = r#"<query xmlns="http://jabber.org/protocol/disco#info">
  <identity category="client" name="BombusMod" type="mobile"/>
  <feature var="http://jabber.org/protocol/si"/>
  <feature var="http://jabber.org/protocol/bytestreams"/>
  <feature var="http://jabber.org/protocol/chatstates"/>
  <feature var="http://jabber.org/protocol/disco#info"/>
  <feature var="http://jabber.org/protocol/disco#items"/>
  <feature var="urn:xmpp:ping"/>
  <feature var="jabber:iq:time"/>
  <feature var="jabber:iq:privacy"/>
  <feature var="jabber:iq:version"/>
  <feature var="http://jabber.org/protocol/rosterx"/>
  <feature var="urn:xmpp:time"/>
  <feature var="jabber:x:oob"/>
  <feature var="http://jabber.org/protocol/ibb"/>
  <feature var="http://jabber.org/protocol/si/profile/file-transfer"/>
  <feature var="urn:xmpp:receipts"/>
  <feature var="jabber:iq:roster"/>
  <feature var="jabber:iq:last"/>
</query>"#;

fn xep0390_complex(extra_field: &str) -> String {
    format!(
        r#"<query xmlns="http://jabber.org/protocol/disco#info">
  <identity category="client" name="Tkabber" type="pc" xml:lang="en"/>
  <identity category="client" name="Ткаббер" type="pc" xml:lang="ru"/>
  <feature var="games:board"/>
  <feature var="http://jabber.org/protocol/activity"/>
  <feature var="http://jabber.org/protocol/activity+notify"/>
  <feature var="http://jabber.org/protocol/bytestreams"/>
  <feature var="http://jabber.org/protocol/chatstates"/>
  <feature var="http://jabber.org/protocol/commands"/>
  <feature var="http://jabber.org/protocol/disco#info"/>
  <feature var="http://jabber.org/protocol/disco#items"/>
  <feature var="http://jabber.org/protocol/evil"/>
  <feature var="http://jabber.org/protocol/feature-neg"/>
  <feature var="http://jabber.org/protocol/geoloc"/>
  <feature var="http://jabber.org/protocol/geoloc+notify"/>
  <feature var="http://jabber.org/protocol/ibb"/>
  <feature var="http://jabber.org/protocol/iqibb"/>
  <feature var="http://jabber.org/protocol/mood"/>
  <feature var="http://jabber.org/protocol/mood+notify"/>
  <feature var="http://jabber.org/protocol/rosterx"/>
  <feature var="http://jabber.org/protocol/si"/>
  <feature var="http://jabber.org/protocol/si/profile/file-transfer"/>
  <feature var="http://jabber.org/protocol/tune"/>
  <feature var="http://www.facebook.com/xmpp/messages"/>
  <feature var="http://www.xmpp.org/extensions/xep-0084.html#ns-metadata+notify"/>
  <feature var="jabber:iq:avatar"/>
  <feature var="jabber:iq:browse"/>
  <feature var="jabber:iq:dtcp"/>
  <feature var="jabber:iq:filexfer"/>
  <feature var="jabber:iq:ibb"/>
  <feature var="jabber:iq:inband"/>
  <feature var="jabber:iq:jidlink"/>
  <feature var="jabber:iq:last"/>
  <feature var="jabber:iq:oob"/>
  <feature var="jabber:iq:privacy"/>
  <feature var="jabber:iq:roster"/>
  <feature var="jabber:iq:time"/>
  <feature var="jabber:iq:version"/>
  <feature var="jabber:x:data"/>
  <feature var="jabber:x:event"/>
  <feature var="jabber:x:oob"/>
  <feature var="urn:xmpp:avatar:metadata+notify"/>
  <feature var="urn:xmpp:ping"/>
  <feature var="urn:xmpp:receipts"/>
  <feature var="urn:xmpp:time"/>
  <x xmlns="jabber:x:data" type="result">
    <field type="hidden" var="FORM_TYPE">
      <value>urn:xmpp:dataforms:softwareinfo</value>
    </field>
    <field var="software">
      <value>Tkabber</value>
    </field>
    <field var="software_version">
      <value>0.11.1-svn-20111216-mod (Tcl/Tk 8.6b2)</value>
    </field>
    <field var="os">
      <value>Windows</value>
    </field>
    <field var="os_version">
      <value>XP</value>
    </field>{extra_field}
  </x>
</query>"#
    )
}

fn ecaps2_b64(input: &[u8], algo: Algo) -> String {
    let hash = hash_ecaps2(input, algo).map(|h| h.hash).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(hash)
}

#[test]
fn xep0390_examples_4_5_hash_as_published() {
    let simple = HashInput::from_element(&parse(XEP0390_SIMPLE))
        .ecaps2_string()
        .expect("well-formed");
    assert_eq!(simple.len(), 0x1d9);
    assert!(simple.ends_with(b"BombusMod\x1f\x1e\x1c\x1c"));
    assert_eq!(
        ecaps2_b64(&simple, Algo::Sha_256),
        "kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8="
    );
    assert_eq!(
        ecaps2_b64(&simple, Algo::Sha3_256),
        "79mdYAfU9rEdTOcWDO7UEAt6E56SUzk/g6TnqUeuD9Q="
    );

    let complex = HashInput::from_element(&parse(&xep0390_complex("")))
        .ecaps2_string()
        .expect("well-formed");
    assert_eq!(complex.len(), 0x543);
    assert_eq!(
        ecaps2_b64(&complex, Algo::Sha_256),
        "u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY="
    );
    assert_eq!(
        ecaps2_b64(&complex, Algo::Sha3_256),
        "XpUJzLAc93258sMECZ3FJpebkzuyNXDzRNwQog8eycg="
    );

    // xmpp-parsers 0.23 agrees on both published examples…
    for xml in [XEP0390_SIMPLE.to_owned(), xep0390_complex("")] {
        let el = parse(&xml);
        let parsed = DiscoInfoResult::try_from(el.clone()).expect("parses");
        assert_eq!(
            xmpp_parsers::ecaps2::compute_disco(&parsed).ok(),
            HashInput::from_element(&el).ecaps2_string().ok()
        );
    }
}

#[test]
fn xep0390_sorts_form_type_among_the_fields() {
    // …but not once a field sorts before FORM_TYPE: §4.1 sorts FORM_TYPE like any field.
    let el = parse(&xep0390_complex(
        "<field var='AAA'><value>1</value></field>",
    ));
    let ours = HashInput::from_element(&el)
        .ecaps2_string()
        .expect("well-formed");
    // The identities section ends with 0x1c; the extensions section starts with field AAA.
    let expected: &[u8] = b"\x1e\x1cAAA\x1f1\x1f\x1eFORM_TYPE\x1f";
    assert!(ours.windows(expected.len()).any(|w| w == expected));
    let parsed = DiscoInfoResult::try_from(el).expect("parses");
    let theirs = xmpp_parsers::ecaps2::compute_disco(&parsed).expect("hashes");
    assert_ne!(theirs, ours);
}

#[test]
fn xep0390_rejects_what_it_says_to_reject() {
    let with = |extra: &str| {
        HashInput::from_element(&parse(&format!(
            "<query xmlns='http://jabber.org/protocol/disco#info'>\
                 <identity category='client' type='pc'/>{extra}</query>"
        )))
        .ecaps2_string()
    };
    assert!(with("").is_ok());
    assert_eq!(
        with("<foo xmlns='urn:x'/>"),
        Err(IllFormed::UnexpectedElement("foo".into()))
    );
    assert_eq!(
        with(
            "<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
                 <value>urn:f</value></field><reported/></x>"
        ),
        Err(IllFormed::UnexpectedElement("reported".into()))
    );
}

#[test]
fn own_caps_and_ecaps2_verify_and_tampered_info_does_not() {
    let info = disco_info_for(Some("Living room TV"), &["urn.xmpp.tmp.media.player"]);
    let presence = presence_for(&info);
    let caps = Advertised::from_presence(&presence).expect("announces caps");
    assert_eq!(
        caps.keys().len(),
        3,
        "sha-256 + sha3-256 ecaps2, sha-1 caps"
    );
    assert_eq!(caps.primary().map(|k| k.scheme), Some(Scheme::Ecaps2));
    let answer = DiscoAnswer::from_info(info.clone());
    for key in caps.keys() {
        assert_eq!(key.verify(answer.input()), Ok(true), "{key:?}");
    }
    // Own hashes agree with xmpp-parsers where it is right (no forms).
    let theirs = hash_caps(&xmpp_parsers::caps::compute_disco(&info), Algo::Sha_1).expect("sha-1");
    assert_eq!(caps_for(&info).ver, theirs.hash);

    let mut forged = info.clone();
    forged.features.insert("urn:xmpp:tmp:pmn:recorder:0".into());
    let forged = DiscoAnswer::from_info(forged);
    let mut cache = CapsCache::default();
    assert_eq!(cache.insert_verified(&caps, &forged), Verdict::Mismatch);
    assert!(cache.is_empty());
    assert_eq!(cache.insert_verified(&caps, &answer), Verdict::Verified);
    assert_eq!(cache.len(), 3);
    assert_eq!(
        cache.get(&caps).map(|i| i.features),
        Some(info.features.clone())
    );

    // The ecaps2 nodes a peer asks for are recognised as ours.
    for key in caps.keys().iter().filter(|k| k.scheme == Scheme::Ecaps2) {
        assert!(is_own_ecaps2_node(&info, &query_node(key, None)));
    }
    assert!(!is_own_ecaps2_node(&info, "urn:xmpp:caps#sha-256.AAAA"));
    let legacy = Advertised::from_caps(&caps_for(&info));
    assert_eq!(
        legacy.query_node(),
        Some(format!("{CAPS_NODE}#{}", b64_of(&caps_for(&info).ver)))
    );
}

#[test]
fn announcing_ecaps2_costs_a_bounded_few_hundred_bytes_per_presence() {
    let info = disco_info_for(Some("Living room TV"), &["urn.xmpp.tmp.media.player"]);
    let legacy = String::from(&Element::from(caps_for(&info))).len();
    let ecaps2 = String::from(&Element::from(ecaps2_for(&info))).len();
    println!("presence caps bytes: XEP-0115 {legacy}, XEP-0390 {ecaps2}");
    assert!(ecaps2 < 300, "{ecaps2} bytes");
}

#[test]
fn only_ecaps2_is_enough_and_unusable_hashes_are_skipped() {
    let info = disco_info_for(Some("TV"), &["urn.xmpp.tmp.media.player"]);
    let presence = Presence::available().with_payload(ecaps2_for(&info));
    let caps = Advertised::from_presence(&presence).expect("ecaps2");
    assert!(caps
        .query_node()
        .is_some_and(|n| n.starts_with("urn:xmpp:caps#sha-256.")));
    let mut cache = CapsCache::default();
    assert_eq!(
        cache.insert_verified(&caps, &DiscoAnswer::from_info(info.clone())),
        Verdict::Verified
    );
    assert!(cache.get(&caps).is_some());

    // sha-1 is not an ecaps2 algorithm, a truncated hash is no hash, unknown ones are skipped.
    let bad = ECaps2::new(vec![
        Hash {
            algo: Algo::Sha_1,
            hash: vec![0; 20],
        },
        Hash {
            algo: Algo::Sha_256,
            hash: vec![0; 5],
        },
        Hash {
            algo: Algo::Unknown("md5".into()),
            hash: vec![0; 16],
        },
    ]);
    assert_eq!(
        Advertised::from_presence(&Presence::available().with_payload(bad)),
        None
    );
}

#[test]
fn ill_formed_answer_is_not_cached() {
    let el = parse(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='automation' type='service' name='TV'/>\
             <feature var='urn.xmpp.tmp.media.player'/><feature var='urn.xmpp.tmp.media.player'/>\
             </query>",
    );
    let answer = DiscoAnswer::from_element(el).expect("parses");
    // The parsed view dropped the duplicate, so this is the hash a naive peer would announce.
    let naive = Caps::new(
        CAPS_NODE,
        hash_caps(
            &xmpp_parsers::caps::compute_disco(&answer.info),
            Algo::Sha_1,
        )
        .expect("sha-1"),
    );
    let mut cache = CapsCache::default();
    assert!(matches!(
        cache.insert_verified(&Advertised::from_caps(&naive), &answer),
        Verdict::IllFormed(IllFormed::DuplicateFeature(_))
    ));
    assert!(cache.is_empty());
}

#[test]
fn a_form_the_parser_refuses_still_yields_the_device_but_no_cache_entry() {
    let el = parse(
        "<query xmlns='http://jabber.org/protocol/disco#info'>\
             <identity category='automation' type='service' name='TV'/>\
             <feature var='urn.xmpp.tmp.media.player'/>\
             <x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>\
             <value>urn:a</value><value>urn:b</value></field></x></query>",
    );
    assert!(
        DiscoInfoResult::try_from(el.clone()).is_err(),
        "xmpp-parsers refuses it"
    );
    let answer = DiscoAnswer::from_element(el).expect("read without the form");
    assert!(answer.info.features.contains("urn.xmpp.tmp.media.player"));
    assert_eq!(
        answer.input().caps_string(),
        Err(IllFormed::ConflictingFormType)
    );
    // Not a disco#info at all: still an error.
    assert!(DiscoAnswer::from_element(parse("<query xmlns='urn:x'/>")).is_err());
}

#[test]
fn cache_is_bounded_and_evicts_the_least_recently_used() {
    let mut cache = CapsCache::with_capacity(3);
    let mut announced = Vec::new();
    for i in 0..5 {
        let info = disco_info_for(Some(&format!("TV {i}")), &[]);
        let caps = Advertised::from_caps(&caps_for(&info));
        assert_eq!(
            cache.insert_verified(&caps, &DiscoAnswer::from_info(info)),
            Verdict::Verified
        );
        announced.push(caps);
        if i == 2 {
            // Touch the first: it is now the most recently used.
            assert!(cache.get(&announced[0]).is_some());
        }
        assert!(cache.len() <= 3);
    }
    assert_eq!(cache.capacity(), 3);
    assert_eq!(cache.evicted(), 2);
    assert!(cache.get(&announced[0]).is_some(), "recently used survives");
    assert!(cache.get(&announced[1]).is_none());
    assert!(cache.get(&announced[2]).is_none());
    assert!(cache.get(&announced[4]).is_some());
}

#[test]
fn controller_announces_no_service_feature() {
    let info = disco_info_for(None, &[]);
    assert!(info
        .identities
        .iter()
        .all(|i| i.category != IDENTITY_CATEGORY));
    assert!(!info.features.iter().any(|f| f.contains("media.player")));
}
