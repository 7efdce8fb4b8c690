//! Our own payloads of the end-to-end layer, as `xso` structs (xmpp-parsers 0.23 has Jingle, IBB
//! and Jingle-IBB, but neither XTLS nor an XML-stream application):
//! - `<description xmlns='urn:xmpp:jingle:apps:xmlstream:0'/>` — the Jingle application;
//! - `<security xmlns='urn:xmpp:jingle:security:xtls:1'>` with `<fingerprint hash='sha-256'>` (hex
//!   SHA-256 of the sender's SPKI) and one `<method name='x509'|'pake'/>` (DESIGN §4);
//! - `<pair xmlns='urn:xmpp:tmp:pmn:pair:0'>` — the SPAKE2 pairing messages, sent *inside* the tunnel;
//! - `<flight xmlns='urn:xmpp:tmp:pmn:flight:0'>` — the opener's first TLS flight (ClientHello,
//!   base64) in a session-initiate, and, empty, in the session-accept of a responder that took it
//!   (`early.rs`).
//!
//! Parsing is strict (unknown attributes and children are refused) because everything here arrives
//! from the network before the peer is authenticated.

use std::borrow::Cow;

use xso::text::Base64;
use xso::{AsXml, AsXmlText, FromXml, FromXmlText};

use crate::core::identity::DeviceFingerprint;

/// Namespace of the XTLS security element (new version; the 2009 draft's `:0` used SHA-1 and SRP).
pub const NS_XTLS: &str = "urn:xmpp:jingle:security:xtls:1";
/// Namespace of the Jingle application that carries an XML stream of stanzas.
pub const NS_XMLSTREAM: &str = "urn:xmpp:jingle:apps:xmlstream:0";
/// Namespace of the pairing messages exchanged inside a pairing-mode tunnel.
pub const NS_PAIR: &str = "urn:xmpp:tmp:pmn:pair:0";
/// Namespace of the first TLS flight carried in the Jingle negotiation.
pub const NS_FLIGHT: &str = "urn:xmpp:tmp:pmn:flight:0";
/// The only fingerprint hash we accept.
pub const HASH_SHA256: &str = "sha-256";

/// The Jingle application description: an XML stream of stanzas between two devices.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_XMLSTREAM, name = "description", on_unknown_child = Fail)]
pub struct XmlStreamDescription;

/// How the peer's TLS key is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMethod {
    /// The SPKI fingerprint must already be pinned (paired or attested device).
    X509,
    /// First contact: any key is accepted by TLS, then SPAKE2 on a short code binds both keys.
    Pake,
}

impl FromXmlText for SecurityMethod {
    fn from_xml_text(data: String) -> Result<Self, xso::error::Error> {
        match data.as_str() {
            "x509" => Ok(SecurityMethod::X509),
            "pake" => Ok(SecurityMethod::Pake),
            _ => Err(xso::error::Error::Other("unknown XTLS method")),
        }
    }
}

impl AsXmlText for SecurityMethod {
    fn as_xml_text(&self) -> Result<Cow<'_, str>, xso::error::Error> {
        Ok(Cow::Borrowed(match self {
            SecurityMethod::X509 => "x509",
            SecurityMethod::Pake => "pake",
        }))
    }
}

/// `<fingerprint hash='sha-256'>hex</fingerprint>`: SHA-256 of the sender's SPKI.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_XTLS, name = "fingerprint", on_unknown_child = Fail)]
pub struct Fingerprint {
    /// The hash function; only `sha-256` is accepted by [`Fingerprint::sha256`].
    #[xml(attribute)]
    pub hash: String,
    /// Lower- or upper-case hex of the digest.
    #[xml(text)]
    pub value: String,
}

impl Fingerprint {
    /// A SHA-256 fingerprint element.
    pub fn new(fingerprint: &DeviceFingerprint) -> Self {
        Fingerprint {
            hash: HASH_SHA256.to_owned(),
            value: fingerprint.to_hex(),
        }
    }

    /// The digest, if the hash is `sha-256` and the value is 64 hex digits.
    pub fn sha256(&self) -> Option<DeviceFingerprint> {
        if self.hash != HASH_SHA256 {
            return None;
        }
        parse_fingerprint_hex(&self.value)
    }
}

/// Parses 64 hex digits (either case, surrounding whitespace ignored) into a fingerprint.
///
/// Only hex digits: `u8::from_str_radix`, used here before, also takes a sign, so `+f` read as
/// `0f` and one fingerprint had many spellings (found by the `fingerprint` fuzz target).
pub fn parse_fingerprint_hex(hex: &str) -> Option<DeviceFingerprint> {
    hex.parse().ok()
}

/// `<method name='x509'/>` or `<method name='pake'/>`.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_XTLS, name = "method", on_unknown_child = Fail)]
pub struct Method {
    /// The method.
    #[xml(attribute)]
    pub name: SecurityMethod,
}

/// The XTLS security element of a Jingle session: the sender's fingerprint and the method.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_XTLS, name = "security", on_unknown_child = Fail)]
pub struct XtlsSecurity {
    /// The sender's SPKI fingerprint.
    #[xml(child)]
    pub fingerprint: Fingerprint,
    /// The authentication method.
    #[xml(child)]
    pub method: Method,
}

impl XtlsSecurity {
    /// A security element for `fingerprint` and `method`.
    pub fn new(fingerprint: &DeviceFingerprint, method: SecurityMethod) -> Self {
        XtlsSecurity {
            fingerprint: Fingerprint::new(fingerprint),
            method: Method { name: method },
        }
    }
}

/// A SPAKE2 message (base64).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PAIR, name = "pake", on_unknown_child = Fail)]
pub struct PakeMessage {
    /// The SPAKE2 message bytes.
    #[xml(text = Base64)]
    pub message: Vec<u8>,
}

/// A key-confirmation MAC (base64).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PAIR, name = "confirm", on_unknown_child = Fail)]
pub struct ConfirmMessage {
    /// HMAC-SHA256 under the SPAKE2 key.
    #[xml(text = Base64)]
    pub mac: Vec<u8>,
}

/// One step of pairing: the initiator sends `pake`, the responder answers `pake` + `confirm`, the
/// initiator sends `confirm`.
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_PAIR, name = "pair", on_unknown_child = Fail)]
pub struct Pair {
    /// The SPAKE2 message, in the first step and its answer.
    #[xml(child(default))]
    pub pake: Option<PakeMessage>,
    /// The key confirmation.
    #[xml(child(default))]
    pub confirm: Option<ConfirmMessage>,
}

impl xmpp_parsers::iq::IqSetPayload for Pair {}
impl xmpp_parsers::iq::IqResultPayload for Pair {}

/// The opener's ClientHello in its session-initiate (`bytes` non-empty), or, in a session-accept,
/// the responder's word that it took it (`bytes` empty).
#[derive(FromXml, AsXml, Debug, Clone, PartialEq)]
#[xml(namespace = NS_FLIGHT, name = "flight", on_unknown_child = Fail)]
pub struct EarlyFlight {
    /// The TLS records, as written by the client.
    #[xml(text = Base64)]
    pub bytes: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn parse<T: TryFrom<Element>>(xml: &str) -> Result<T, T::Error> {
        let elem: Element = xml.parse().expect("well-formed test XML");
        T::try_from(elem)
    }

    #[test]
    fn security_round_trips_and_carries_a_sha256_fingerprint() {
        let fp = DeviceFingerprint::from([0xabu8; 32]);
        let sec = XtlsSecurity::new(&fp, SecurityMethod::Pake);
        let elem = Element::from(sec.clone());
        assert!(elem.is("security", NS_XTLS));
        let back = XtlsSecurity::try_from(elem).unwrap();
        assert_eq!(back, sec);
        assert_eq!(back.fingerprint.sha256(), Some(fp));
        assert_eq!(back.method.name, SecurityMethod::Pake);
    }

    #[test]
    fn security_rejects_wrong_namespace_missing_parts_and_extras() {
        let fp = "ab".repeat(32);
        let ok = format!(
            "<security xmlns='{NS_XTLS}'><fingerprint hash='sha-256'>{fp}</fingerprint><method name='x509'/></security>"
        );
        assert!(parse::<XtlsSecurity>(&ok).is_ok());
        let wrong_ns = ok.replace(NS_XTLS, "urn:xmpp:jingle:security:xtls:0");
        assert!(parse::<XtlsSecurity>(&wrong_ns).is_err());
        let no_method = format!(
            "<security xmlns='{NS_XTLS}'><fingerprint hash='sha-256'>{fp}</fingerprint></security>"
        );
        assert!(parse::<XtlsSecurity>(&no_method).is_err());
        let no_hash = ok.replace(" hash='sha-256'", "");
        assert!(parse::<XtlsSecurity>(&no_hash).is_err());
        let extra = ok.replace("</security>", "<srp/></security>");
        assert!(parse::<XtlsSecurity>(&extra).is_err());
        let bad_method = ok.replace("x509", "srp");
        assert!(parse::<XtlsSecurity>(&bad_method).is_err());
        // Parses, but is not a usable fingerprint.
        let sha1 = parse::<XtlsSecurity>(&ok.replace("sha-256", "sha-1")).unwrap();
        assert_eq!(sha1.fingerprint.sha256(), None);
        let short = parse::<XtlsSecurity>(&ok.replace(&fp, "abcd")).unwrap();
        assert_eq!(short.fingerprint.sha256(), None);
    }

    #[test]
    fn fingerprint_hex_is_hex_digits_only() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint_hex(&hex),
            Some(DeviceFingerprint::from([0xab; 32]))
        );
        assert_eq!(
            parse_fingerprint_hex(&format!(" {} \n", hex.to_uppercase())),
            Some(DeviceFingerprint::from([0xab; 32]))
        );
        // A sign is not a digit: "+b" is not "0b" (fuzz/corpus/fingerprint/crash-plus-sign).
        assert_eq!(parse_fingerprint_hex(&format!("+b{}", &hex[2..])), None);
        assert_eq!(parse_fingerprint_hex(&format!("-0{}", &hex[2..])), None);
        assert_eq!(parse_fingerprint_hex(&hex[2..]), None);
        assert_eq!(parse_fingerprint_hex(&format!("é{}", &hex[2..])), None);
    }

    #[test]
    fn description_round_trips_and_rejects_children() {
        let elem = Element::from(XmlStreamDescription);
        assert!(elem.is("description", NS_XMLSTREAM));
        assert_eq!(
            XmlStreamDescription::try_from(elem).unwrap(),
            XmlStreamDescription
        );
        let extra = format!("<description xmlns='{NS_XMLSTREAM}'><x/></description>");
        assert!(parse::<XmlStreamDescription>(&extra).is_err());
        assert!(parse::<XmlStreamDescription>("<description xmlns='urn:x'/>").is_err());
    }

    #[test]
    fn pair_round_trips_and_rejects_bad_base64() {
        let pair = Pair {
            pake: Some(PakeMessage {
                message: vec![1, 2, 3],
            }),
            confirm: Some(ConfirmMessage { mac: vec![9; 32] }),
        };
        let back = Pair::try_from(Element::from(pair.clone())).unwrap();
        assert_eq!(back, pair);
        let bad = format!("<pair xmlns='{NS_PAIR}'><pake>!!notbase64</pake></pair>");
        assert!(parse::<Pair>(&bad).is_err());
        let unknown = format!("<pair xmlns='{NS_PAIR}'><srp/></pair>");
        assert!(parse::<Pair>(&unknown).is_err());
    }
}
