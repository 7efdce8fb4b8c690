//! The XEP-0060 iq plumbing shared by every pubsub user in the core: the key directory of
//! [`crate::core::e2e::pubkey`] (XEP-0189 on PEP) and the playlists of this module.

use std::time::Duration;

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::error::PlaylistError;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::session::{IqReply, Session};

/// Namespace of XEP-0060 requests.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";

/// An iq (set or get) to `to` (our own PEP service when `None`) with `payload` as is.
pub(crate) fn iq(set: bool, to: Option<Jid>, payload: Element) -> Iq {
    let iq = if set {
        Iq::Set {
            from: None,
            to: None,
            id: String::new(),
            payload,
        }
    } else {
        Iq::Get {
            from: None,
            to: None,
            id: String::new(),
            payload,
        }
    };
    match to {
        Some(to) => iq.with_to(to),
        None => iq,
    }
}

/// An iq whose payload is `<pubsub xmlns='…pubsub'>` around `child`.
pub(crate) fn pubsub_iq(set: bool, to: Option<Jid>, child: Element) -> Iq {
    let payload = Element::builder("pubsub", NS_PUBSUB).append(child).build();
    iq(set, to, payload)
}

/// The result payload, or the server's refusal as a [`ErrorKind::Protocol`] error naming `what`.
pub(crate) fn expect_result(reply: IqReply, what: &str) -> Result<Option<Element>> {
    match reply {
        IqReply::Result(payload) => Ok(payload),
        IqReply::Error(e) => Err(Error::new(
            ErrorKind::Protocol,
            format!("{what} refused by the server ({:?})", e.defined_condition),
        )),
    }
}

/// Sends `iq` and returns the result payload, or the refusal as a typed [`PlaylistError`].
pub(crate) async fn request(
    session: &Session,
    iq: Iq,
    timeout: Duration,
    what: &str,
) -> std::result::Result<Option<Element>, PlaylistError> {
    match session.request(iq, timeout).await? {
        IqReply::Result(payload) => Ok(payload),
        IqReply::Error(e) => Err(PlaylistError::from_stanza_error(&e, what)),
    }
}
