//! Reading a peer's Jingle offer and answer: exactly one content, the xmlstream application,
//! IBB (over message, or iq for other implementations), one XTLS security element with a SHA-256 fingerprint. Pure functions (no I/O),
//! also the entry points of the fuzz targets.

use xmpp_parsers::jingle::{Content, Description, Jingle, Transport};
use xmpp_parsers::jingle_ibb::Transport as IbbTransport;
use xmpp_parsers::stanza_error::DefinedCondition;

use crate::core::e2e::ibb::MAX_BLOCK_SIZE;
use crate::core::e2e::xml::{
    SecurityMethod, XmlStreamDescription, XtlsSecurity, NS_XMLSTREAM, NS_XTLS,
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
    Ok(Offer {
        fingerprint,
        method: security.method.name,
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
