//! Access payloads arriving at a controller: a guest's `<request>` (owner devices), an owner's
//! `<decision>` (guest devices), and presence subscriptions of guests and hosts.

use crate::core::sync::Locked;

use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::Dispatcher;
use crate::core::access::{
    unix_now, AccessDecision, AccessRequest, Intake, APPROVED, DENIED, MAX_DECISION_DEVICES,
    NS_ACCESS,
};

impl Dispatcher {
    /// Access payloads in a headline message: a guest's `<request>` (owner devices) or an owner's
    /// `<decision>` (guest devices). Returns whether the message was one of those.
    pub(super) fn on_access_message(&self, message: &Message) -> bool {
        let Some(payload) = message
            .payloads
            .iter()
            .find(|p| p.ns() == NS_ACCESS && (p.name() == "request" || p.name() == "decision"))
        else {
            return false;
        };
        let Some(Ok(from)) = message.from.clone().map(Jid::try_into_full) else {
            return true;
        };
        if from.to_bare() == self.network {
            return true;
        }
        if payload.name() == "request" {
            self.on_request(from, payload.clone());
        } else {
            self.on_decision(from, payload.clone());
        }
        true
    }

    fn on_request(&self, from: FullJid, payload: Element) {
        let Some(owner) = &self.shared.owner else {
            return;
        };
        let request = match AccessRequest::parse(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(%from, error = %e, "malformed access request ignored");
                return;
            }
        };
        let intake = owner.intake.locked().offer(&from, &request, unix_now());
        match intake {
            Intake::Notify(pending) => {
                tracing::info!(%from, id = pending.id, "access request");
                let _ = owner.requests.send(pending);
            }
            other => tracing::debug!(%from, ?other, "access request not notified"),
        }
    }

    fn on_decision(&self, from: FullJid, payload: Element) {
        let network = from.to_bare();
        let decision = match AccessDecision::try_from(payload) {
            Ok(d) => d,
            Err(e) => {
                tracing::info!(%from, error = %e, "malformed access decision ignored");
                return;
            }
        };
        let bad = decision.devices.len() > MAX_DECISION_DEVICES
            || decision.devices.iter().any(|d| d.jid != network)
            || !matches!(decision.result.as_str(), APPROVED | DENIED);
        if bad {
            tracing::info!(%from, "access decision with foreign or too many devices ignored");
            return;
        }
        let own_device = self.shared.e2e.as_ref().map(|e| e.fingerprint());
        if own_device != Some(decision.for_device) {
            tracing::debug!(%from, "access decision for another device ignored");
            return;
        }
        match self.shared.guest.asked.locked().remove(&network) {
            Some(waiter) => {
                let _ = waiter.send(decision);
            }
            None => tracing::debug!(%from, "unsolicited access decision ignored"),
        }
    }

    /// A subscription request: accepted only from a network we asked for access (or that
    /// granted it); others stay pending on the server for the app to decide.
    pub(super) fn on_subscription(&self, presence: &Presence) {
        let Some(from) = presence.from.as_ref().map(Jid::to_bare) else {
            return;
        };
        let known = self.shared.guest.asked.locked().contains_key(&from)
            || self.shared.guest.granted.locked().contains(&from);
        if !known {
            tracing::debug!(%from, "subscription request left pending");
            return;
        }
        let answer = Presence::new(PresenceType::Subscribed).with_to(Jid::from(from.clone()));
        if self.shared.session.send(answer).is_err() {
            tracing::debug!(%from, "could not accept subscription: session ended");
        }
    }
}
