//! Rotating the network password (issue 12): the one secret a stolen phone keeps after its key is
//! revoked is the account password, so the household takes it away.
//!
//! The order matters because Prosody closes every other session of the account the moment the
//! password changes (XEP-0077, `reset`): first every trusted device online gets the new password
//! through its tunnel and keeps it as the *next* one; then the server is told; then the devices
//! that got it are told it is now the account's. A device that was kicked first logs in again with
//! the next password once the old one is refused. A device that was offline, or refused (the
//! revoked one), never learns it: it re-joins only when the user gives it the new password.

use crate::core::sync::Locked;
use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::DefinedCondition;

use super::{iq_error, E2eEndpoint};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::session::IqReply;

/// Namespace of the password hand-over, carried only inside tunnels between devices of one network.
pub const NS_PASSWORD: &str = "urn:xmpp:tmp:pmn:password:0";
/// Longest password accepted from a peer.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Most other resources of the network remembered as online (presence from the server).
pub(super) const MAX_OWN_RESOURCES: usize = 64;
/// Random bytes in a generated password (printed as hex).
const PASSWORD_BYTES: usize = 24;

/// What [`E2eEndpoint::rotate_network_password`] did.
#[derive(Debug, Clone)]
pub struct PasswordRotation {
    /// The new password: the app stores it where it keeps the network password (also reported by
    /// [`crate::core::session::Session::watch_password`]).
    pub password: String,
    /// Devices that hold the new password (they stay in, or log in again with it).
    pub delivered: Vec<FullJid>,
    /// Devices online that did not get it, with why (a revoked key is refused its tunnel): they
    /// are out until given the new password by hand.
    pub missed: Vec<(FullJid, Error)>,
}

/// The two steps of the hand-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// "This will be the password": keep it as the next one.
    Offer,
    /// "It is the password now."
    Confirm,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Offer => "offer",
            Step::Confirm => "confirm",
        }
    }
}

fn element(step: Step, password: &str) -> Element {
    Element::builder(step.name(), NS_PASSWORD)
        .append(password)
        .build()
}

/// Reads a hand-over element: `None` when it is not one; `Err` when it is one but unusable.
fn parse(payload: &Element) -> Option<std::result::Result<(Step, String), &'static str>> {
    if payload.ns() != NS_PASSWORD {
        return None;
    }
    let step = match payload.name() {
        "offer" => Step::Offer,
        "confirm" => Step::Confirm,
        _ => return Some(Err("unknown password element")),
    };
    if payload.children().next().is_some() {
        return Some(Err("a password element has no children"));
    }
    let password = payload.text();
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Some(Err("a password must be 1 to 1024 bytes"));
    }
    Some(Ok((step, password)))
}

impl E2eEndpoint {
    /// Keeps the set of the network's other resources online up to date from a presence.
    pub(super) fn track_own_presence(&self, presence: &Presence) {
        let Some(Ok(from)) = presence.from.clone().map(Jid::try_into_full) else {
            return;
        };
        if !self.is_own_network(&from.to_bare()) || self.inner.session.jid().as_ref() == Some(&from)
        {
            return;
        }
        let mut online = self.inner.own_online.locked();
        match presence.type_ {
            PresenceType::None => {
                if online.len() < MAX_OWN_RESOURCES || online.contains(&from) {
                    online.insert(from);
                } else {
                    tracing::warn!(%from, "too many resources of the network online; not tracked");
                }
            }
            PresenceType::Unavailable => {
                online.remove(&from);
            }
            _ => {}
        }
    }

    /// The network's other resources this device saw come online (and not leave).
    pub fn own_resources_online(&self) -> Vec<FullJid> {
        self.inner.own_online.locked().iter().cloned().collect()
    }

    /// Changes the network password and hands the new one to every trusted device of the network
    /// that is online, through its tunnel (see the module documentation for the order). Call it
    /// after [`E2eEndpoint::revoke_everywhere`]: the revoked device is refused a tunnel, so it
    /// never learns the new password, and the server closes its session.
    ///
    /// Returns once the server has the new password, with who got it and who did not. An error
    /// means the server's password did not change (the old one still works everywhere); the call
    /// may be repeated.
    pub async fn rotate_network_password(&self) -> Result<PasswordRotation> {
        let bytes: [u8; PASSWORD_BYTES] = rand::random();
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let timeout = self.inner.config.setup_timeout;
        let targets: BTreeSet<FullJid> = self.inner.own_online.locked().clone();
        let offers = targets.iter().map(|peer| {
            let password = password.clone();
            async move {
                let outcome = self.hand_over(peer, Step::Offer, &password, timeout).await;
                (peer.clone(), outcome)
            }
        });
        let mut delivered = Vec::new();
        let mut missed = Vec::new();
        for (peer, outcome) in join_all(offers).await {
            match outcome {
                Ok(()) => delivered.push(peer),
                Err(e) => {
                    tracing::info!(%peer, error = %e, "the new password did not reach a device");
                    missed.push((peer, e));
                }
            }
        }
        self.inner
            .session
            .change_password(&password, timeout)
            .await?;
        // Best effort: Prosody has just closed their sessions (and so the tunnels); they promote
        // the password when they log in again. A server that keeps them connected lets this land.
        let confirms = delivered.iter().map(|peer| {
            let password = password.clone();
            async move {
                if let Err(e) = self
                    .hand_over(peer, Step::Confirm, &password, Duration::from_secs(2))
                    .await
                {
                    tracing::debug!(%peer, error = %e, "password confirmation not delivered");
                }
            }
        });
        join_all(confirms).await;
        // The devices left out that are still connected (the revoked one above all): their
        // sessions end now, and the old password keeps them out.
        let evictions = missed.iter().map(|(peer, _)| async move {
            if let Err(e) = self.inner.session.evict(peer).await {
                tracing::warn!(%peer, error = %e, "could not end a session left out of the rotation");
            }
        });
        join_all(evictions).await;
        tracing::info!(
            delivered = delivered.len(),
            missed = missed.len(),
            "network password rotated"
        );
        Ok(PasswordRotation {
            password,
            delivered,
            missed,
        })
    }

    async fn hand_over(
        &self,
        peer: &FullJid,
        step: Step,
        password: &str,
        timeout: Duration,
    ) -> Result<()> {
        let tunnel = match step {
            Step::Offer => self.tunnel(peer).await?,
            // Never open a new tunnel just to confirm: the peer logs in with the password anyway.
            Step::Confirm => self
                .existing_tunnel(peer)
                .ok_or_else(|| Error::new(ErrorKind::NotConnected, "no tunnel"))?,
        };
        let iq = Iq::Set {
            from: None,
            to: Some(peer.clone().into()),
            id: String::new(),
            payload: element(step, password),
        };
        match tunnel.request(iq, timeout).await? {
            IqReply::Result(_) => Ok(()),
            IqReply::Error(e) => Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "the device refused the password ({:?})",
                    e.defined_condition
                ),
            )),
        }
    }

    /// Answers a password hand-over that arrived inside a tunnel; `None` when `stanza` is not one.
    /// Only devices of this network may hand a password over (a guest's tunnel is refused).
    pub(super) fn on_tunnel_password(&self, stanza: &Stanza) -> Option<Iq> {
        let Stanza::Iq(Iq::Set {
            from: Some(from),
            id,
            payload,
            ..
        }) = stanza
        else {
            return None;
        };
        let parsed = parse(payload)?;
        if !self.is_own_network(&from.to_bare()) {
            tracing::warn!(%from, "a password hand-over from outside the network; refused");
            return Some(iq_error(
                from.clone(),
                id,
                DefinedCondition::Forbidden,
                "only devices of this network hand over its password",
            ));
        }
        let (step, password) = match parsed {
            Ok(p) => p,
            Err(why) => {
                return Some(iq_error(
                    from.clone(),
                    id,
                    DefinedCondition::BadRequest,
                    why,
                ));
            }
        };
        let session = &self.inner.session;
        match step {
            Step::Offer => {
                tracing::info!(%from, "a device of the network announced a new password");
                session.offer_password(password);
            }
            Step::Confirm => {
                if session.confirm_password(&password) {
                    tracing::info!(%from, "the network password changed");
                }
            }
        }
        Some(Iq::empty_result(from.clone(), id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::{element, parse, Step, NS_PASSWORD};
    use xmpp_parsers::minidom::Element;

    #[test]
    fn hand_over_elements_round_trip_and_bad_ones_are_refused() {
        for step in [Step::Offer, Step::Confirm] {
            let el = element(step, "s3cret");
            assert_eq!(parse(&el), Some(Ok((step, "s3cret".to_owned()))));
        }
        let other: Element = "<offer xmlns='urn:example'>x</offer>".parse().unwrap();
        assert_eq!(parse(&other), None);
        let bad = |xml: &str| parse(&xml.parse::<Element>().unwrap()).map(|r| r.is_err());
        assert_eq!(bad(&format!("<offer xmlns='{NS_PASSWORD}'/>")), Some(true));
        assert_eq!(
            bad(&format!("<offer xmlns='{NS_PASSWORD}'><x/>y</offer>")),
            Some(true)
        );
        assert_eq!(
            bad(&format!("<take xmlns='{NS_PASSWORD}'>y</take>")),
            Some(true)
        );
        let long = "p".repeat(1025);
        assert_eq!(
            bad(&format!("<offer xmlns='{NS_PASSWORD}'>{long}</offer>")),
            Some(true)
        );
    }
}
