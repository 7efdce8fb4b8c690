//! Reading a peer's Jingle offer and answer: exactly one content, the xmlstream application,
//! IBB (over message, or iq for other implementations), one XTLS security element with a SHA-256 fingerprint. Pure functions (no I/O),
//! also the entry points of the fuzz targets; [`write_jingle`] makes ours (and the fuzz seeds).

use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::jingle::{
    Action, Content, ContentId, Creator, Description, Jingle, Senders, SessionId, Transport,
};
use xmpp_parsers::jingle_ibb::Transport as IbbTransport;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::core::e2e::early::MAX_EARLY_FLIGHT;
use crate::core::e2e::ibb::MAX_BLOCK_SIZE;
use crate::core::e2e::xml::{
    EarlyFlight, SecurityMethod, XmlStreamDescription, XtlsSecurity, NS_FLIGHT, NS_XMLSTREAM,
    NS_XTLS,
};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::identity::DeviceFingerprint;

/// What a session-initiate offers (`pub(crate)` for the fuzz targets in `crate::fuzzing`).
pub(crate) struct Offer {
    pub(crate) fingerprint: DeviceFingerprint,
    pub(crate) method: SecurityMethod,
    pub(crate) ibb_sid: String,
    pub(crate) block_size: u16,
    /// The stanza kind the initiator asked IBB data to travel in.
    pub(crate) stanza: xmpp_parsers::ibb::Stanza,
    /// The opener's first TLS flight (its ClientHello), when the initiate carries it (`x509` only).
    pub(crate) flight: Option<Vec<u8>>,
}

/// Our session-initiate or session-accept (`action`) of session `sid` from `me`: one xmlstream
/// content over `transport`, the XTLS security element naming `fingerprint` and `method`, and,
/// with `flight`, a `<flight>` (the opener's ClientHello, or empty in an accept that took it).
pub(crate) fn write_jingle(
    action: Action,
    sid: &str,
    transport: IbbTransport,
    fingerprint: &DeviceFingerprint,
    method: SecurityMethod,
    me: &FullJid,
    flight: Option<Vec<u8>>,
) -> Jingle {
    let content = Content::new(Creator::Initiator, ContentId("xmlstream".into()))
        .with_senders(Senders::Both)
        .with_description(Description::Unknown(Element::from(XmlStreamDescription)))
        .with_transport(Transport::Ibb(transport));
    let initiate = action == Action::SessionInitiate;
    let mut jingle = Jingle::new(action, SessionId(sid.to_owned())).add_content(content);
    jingle = if initiate {
        jingle.with_initiator(Jid::from(me.clone()))
    } else {
        jingle.with_responder(Jid::from(me.clone()))
    };
    // xmpp-parsers 0.23's <content> only admits its own stub <security/>, so the XTLS element
    // rides as a direct child of <jingle>; with exactly one content it is unambiguous.
    jingle
        .other
        .push(Element::from(XtlsSecurity::new(fingerprint, method)));
    if let Some(bytes) = flight {
        jingle.other.push(Element::from(EarlyFlight { bytes }));
    }
    jingle
}

/// The `<flight>` element of a Jingle payload: `Ok(None)` when there is none. More than one, a
/// malformed one or one too large is refused (it arrives before the peer is authenticated).
fn flight_of(jingle: &Jingle) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut found = jingle.other.iter().filter(|e| e.is("flight", NS_FLIGHT));
    let Some(elem) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err("more than one TLS flight".into());
    }
    let flight =
        EarlyFlight::try_from(elem.clone()).map_err(|e| format!("malformed TLS flight: {e}"))?;
    if flight.bytes.len() > MAX_EARLY_FLIGHT {
        return Err(format!(
            "a TLS flight of {} bytes (at most {MAX_EARLY_FLIGHT})",
            flight.bytes.len()
        ));
    }
    Ok(Some(flight.bytes))
}

/// Whether a session-accept says the responder took the ClientHello of our initiate (an empty
/// `<flight/>`); an accept without one is from a responder that reads it over IBB.
pub(crate) fn accept_took_flight(jingle: &Jingle) -> Result<bool> {
    match flight_of(jingle) {
        Ok(None) => Ok(false),
        Ok(Some(bytes)) if bytes.is_empty() => Ok(true),
        Ok(Some(_)) => Err(Error::new(
            ErrorKind::Protocol,
            "bad session-accept: a responder sends no TLS bytes in it",
        )),
        Err(t) => Err(Error::new(
            ErrorKind::Protocol,
            format!("bad session-accept: {t}"),
        )),
    }
}

fn security_of(jingle: &Jingle) -> std::result::Result<XtlsSecurity, String> {
    let mut found = jingle.other.iter().filter(|e| e.is("security", NS_XTLS));
    let elem = found
        .next()
        .ok_or_else(|| "no XTLS security element".to_owned())?;
    if found.next().is_some() {
        return Err("more than one XTLS security element".into());
    }
    XtlsSecurity::try_from(elem.clone()).map_err(|e| format!("malformed XTLS security: {e}"))
}

fn single_content(
    jingle: &Jingle,
) -> std::result::Result<(&Content, &IbbTransport), (DefinedCondition, String)> {
    let bad = |t: &str| (DefinedCondition::BadRequest, t.to_owned());
    let [content] = jingle.contents.as_slice() else {
        return Err(bad("exactly one content expected"));
    };
    match &content.description {
        Some(Description::Unknown(d)) if d.is("description", NS_XMLSTREAM) => {
            XmlStreamDescription::try_from(d.clone()).map_err(|_| bad("malformed description"))?;
        }
        _ => {
            return Err((
                DefinedCondition::FeatureNotImplemented,
                "unsupported application (want urn:xmpp:jingle:apps:xmlstream:0)".into(),
            ))
        }
    }
    match &content.transport {
        Some(Transport::Ibb(t)) => {
            if t.block_size == 0 || t.sid.0.is_empty() || t.sid.0.len() > 64 {
                return Err(bad("bad IBB transport parameters"));
            }
            Ok((content, t))
        }
        _ => Err((
            DefinedCondition::FeatureNotImplemented,
            "unsupported transport (want IBB)".into(),
        )),
    }
}

pub(crate) fn parse_offer(
    jingle: &Jingle,
) -> std::result::Result<Offer, (DefinedCondition, String)> {
    let (_, transport) = single_content(jingle)?;
    let security = security_of(jingle).map_err(|t| (DefinedCondition::BadRequest, t))?;
    let fingerprint = security.fingerprint.sha256().ok_or_else(|| {
        (
            DefinedCondition::BadRequest,
            "fingerprint must be sha-256 hex".to_owned(),
        )
    })?;
    let flight = flight_of(jingle).map_err(|t| (DefinedCondition::BadRequest, t))?;
    let method = security.method.name;
    if flight.is_some() && method != SecurityMethod::X509 {
        // Pairing proves the key inside the tunnel, after a full handshake of its own.
        return Err((
            DefinedCondition::BadRequest,
            "a TLS flight only rides with method x509".to_owned(),
        ));
    }
    Ok(Offer {
        fingerprint,
        method,
        flight: flight.filter(|f| !f.is_empty()),
        ibb_sid: transport.sid.0.clone(),
        block_size: transport.block_size.min(MAX_BLOCK_SIZE),
        stanza: transport.stanza.clone(),
    })
}

pub(crate) fn parse_accept(
    jingle: &Jingle,
    ibb_sid: &str,
    method: SecurityMethod,
) -> Result<(DeviceFingerprint, u16)> {
    let protocol = |t: String| Error::new(ErrorKind::Protocol, format!("bad session-accept: {t}"));
    let (_, transport) = single_content(jingle).map_err(|(_, t)| protocol(t))?;
    if transport.sid.0 != ibb_sid {
        return Err(protocol("transport sid changed".into()));
    }
    let security = security_of(jingle).map_err(protocol)?;
    if security.method.name != method {
        return Err(protocol("security method changed".into()));
    }
    let fp = security
        .fingerprint
        .sha256()
        .ok_or_else(|| protocol("fingerprint must be sha-256 hex".into()))?;
    Ok((fp, transport.block_size))
}

/// The stanza kind a session-accept fixed for IBB data (an accept that [`parse_accept`] took).
pub(crate) fn accepted_stanza(jingle: &Jingle) -> xmpp_parsers::ibb::Stanza {
    match single_content(jingle) {
        Ok((_, transport)) => transport.stanza.clone(),
        Err(_) => xmpp_parsers::ibb::Stanza::Iq,
    }
}
