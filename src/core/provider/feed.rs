//! Subscriptions and events: who is subscribed to what ([`Subscriptions`], filled by the routed
//! `<service>.subscribe` verbs of `subscription.rs`), the bounds on what guests may hold, and the
//! fan-out of services' events and audit records ([`Feed`]).
//!
//! Events go only to full JIDs that subscribed and are still online, and to a subscriber that
//! asked through a tunnel only through it (spec §4: never a stanza to someone who did not write
//! first). A guest's subscriptions count against its network's quota
//! ([`super::ProviderLimits::subscriptions_per_guest`]) and all guests' against their share
//! ([`super::ProviderLimits::subscriptions_for_guests`]), so the household always finds room.

use crate::core::sync::Locked;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};

use super::limits::ProviderLimits;
use super::policy::Policy;
use super::{ACCESS_SERVICE, AUDIT_EVENT};
use crate::core::access::AccessGuard;
use crate::core::e2e::E2eEndpoint;
use crate::core::rpc::events::{EventFilter, EventNotice, Subscribers};
use crate::core::rpc::xmlrpc;
use crate::core::session::Session;

/// Why a subscription was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// This guest network holds its quota already.
    GuestQuota,
    /// All guests together hold their share.
    GuestsShare,
    /// The service has as many subscribers as it accepts.
    Service,
}

impl Full {
    /// What the refused caller reads.
    pub(super) fn text(self) -> &'static str {
        match self {
            Full::GuestQuota => "too many subscriptions for this guest",
            Full::GuestsShare => "too many guest subscriptions",
            Full::Service => "too many subscribers for this service",
        }
    }
}

/// Who hears which service's events, and how.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    subscribers: Subscribers,
    /// Subscribers whose last subscribe came through a tunnel: their events go only through it.
    tunnelled: HashSet<FullJid>,
    /// Each guest network's subscriptions (service, full JID), to hold it to its quota.
    guests: HashMap<BareJid, BTreeSet<(String, FullJid)>>,
    per_guest: usize,
    for_guests: usize,
}

impl Subscriptions {
    pub(crate) fn new(limits: &ProviderLimits) -> Self {
        Self {
            subscribers: Subscribers::default(),
            tunnelled: HashSet::new(),
            guests: HashMap::new(),
            per_guest: limits.subscriptions_per_guest,
            for_guests: limits.subscriptions_for_guests,
        }
    }

    /// Subscribes `jid` (a guest's device when `guest`) to `service` with `filter`; a repeat
    /// replaces the filter and costs nothing.
    pub(crate) fn subscribe(
        &mut self,
        service: &str,
        jid: FullJid,
        filter: EventFilter,
        tunnel: bool,
        guest: bool,
    ) -> std::result::Result<(), Full> {
        let key = (service.to_owned(), jid.clone());
        if guest {
            let held = self.guests.get(&jid.to_bare());
            if !held.is_some_and(|h| h.contains(&key)) {
                if held.map_or(0, BTreeSet::len) >= self.per_guest {
                    return Err(Full::GuestQuota);
                }
                if self.guests.values().map(BTreeSet::len).sum::<usize>() >= self.for_guests {
                    return Err(Full::GuestsShare);
                }
            }
        }
        self.subscribers
            .subscribe(service, jid.clone(), filter)
            .map_err(|_| Full::Service)?;
        if guest {
            self.guests.entry(jid.to_bare()).or_default().insert(key);
        }
        // Events follow the way the subscriber last asked for them.
        if tunnel {
            self.tunnelled.insert(jid);
        } else {
            self.tunnelled.remove(&jid);
        }
        Ok(())
    }

    /// Ends `jid`'s subscription to `service`; whether it had one.
    pub(crate) fn unsubscribe(&mut self, service: &str, jid: &FullJid) -> bool {
        let bare = jid.to_bare();
        if let Some(held) = self.guests.get_mut(&bare) {
            held.remove(&(service.to_owned(), jid.clone()));
            if held.is_empty() {
                self.guests.remove(&bare);
            }
        }
        self.subscribers.unsubscribe(service, jid)
    }

    /// Forgets `jid` everywhere (its presence became unavailable); whether it was known.
    pub(crate) fn forget(&mut self, jid: &FullJid) -> bool {
        self.tunnelled.remove(jid);
        let bare = jid.to_bare();
        if let Some(held) = self.guests.get_mut(&bare) {
            held.retain(|(_, j)| j != jid);
            if held.is_empty() {
                self.guests.remove(&bare);
            }
        }
        self.subscribers.forget(jid)
    }

    /// Forgets every device of guest network `guest` (its grant was revoked).
    pub(crate) fn end_guest(&mut self, guest: &BareJid) {
        let mut gone: BTreeSet<FullJid> = self
            .tunnelled
            .iter()
            .filter(|j| j.to_bare() == *guest)
            .cloned()
            .collect();
        if let Some(held) = self.guests.get(guest) {
            gone.extend(held.iter().map(|(_, jid)| jid.clone()));
        }
        for jid in gone {
            self.forget(&jid);
        }
        self.guests.remove(guest);
    }

    /// Forgets everyone (the server forgot us: subscribers subscribe again when we come back).
    pub(crate) fn reset(&mut self) {
        self.subscribers = Subscribers::default();
        self.tunnelled.clear();
        self.guests.clear();
    }

    /// How many (service, subscriber) subscriptions are held.
    pub(crate) fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// The subscribers of `service` that want event `name`, each with whether it must go
    /// through its tunnel.
    fn for_event(&self, service: &str, name: &str) -> Vec<(FullJid, bool)> {
        self.subscribers
            .for_event(service, name)
            .into_iter()
            .map(|jid| {
                let tunnel = self.tunnelled.contains(&jid);
                (jid, tunnel)
            })
            .collect()
    }
}

/// The provider's side of events: who is subscribed, and the ways events go out to them.
#[derive(Clone)]
pub(super) struct Feed {
    /// Events in clear go out here.
    pub(super) session: Session,
    /// Events to tunnel subscribers go out here (and only here).
    pub(super) e2e: Option<E2eEndpoint>,
    /// The ACL (guests hear events only while a grant holds) and the audit log it feeds.
    pub(super) access: Option<Arc<AccessGuard>>,
    /// Who may hear events (rows E1, E2).
    pub(super) policy: Arc<Policy>,
    /// Who hears what (shared with [`super::Provider::subscription_count`]).
    pub(super) subscriptions: Arc<Mutex<Subscriptions>>,
}

impl Feed {
    /// Sends the audit records made since the last call to the owners subscribed to `access`.
    pub(super) fn emit_audit(&self) {
        let Some(guard) = &self.access else { return };
        for record in guard.new_records() {
            match xmlrpc::to_value(&record) {
                Ok(value) => self.fan_out(EventNotice {
                    service: ACCESS_SERVICE.to_owned(),
                    name: AUDIT_EVENT.to_owned(),
                    params: vec![value],
                }),
                Err(e) => tracing::warn!(error = %e, "audit record not encodable"),
            }
        }
    }

    /// Sends one event to the subscribers that want it, each the way it subscribed.
    pub(super) fn fan_out(&self, notice: EventNotice) {
        let subscribers = self
            .subscriptions
            .locked()
            .for_event(&notice.service, &notice.name);
        if subscribers.is_empty() {
            return;
        }
        let payload = match notice.to_element() {
            Ok(payload) => payload,
            Err(e) => return tracing::warn!(error = %e, "event dropped: does not encode"),
        };
        for (to, through_tunnel) in subscribers {
            let key = || {
                let tunnel = self.e2e.as_ref()?.existing_tunnel(&to)?;
                Some(tunnel.peer_fingerprint())
            };
            if !self.policy.may_hear(&to, key) {
                continue;
            }
            let mut message =
                Message::new_with_type(MessageType::Headline, Some(Jid::from(to.clone())));
            message.payloads.push(payload.clone());
            if through_tunnel {
                // Never in clear: without a tunnel up the event is lost, and the controller
                // subscribes again when it re-opens one.
                if let Some(Err(e)) = self.e2e.as_ref().map(|e2e| e2e.send(message)) {
                    tracing::debug!(%to, error = %e, "event dropped: no tunnel");
                }
            } else if self.session.send(message).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> FullJid {
        s.parse().expect("test JID")
    }

    fn limits(per_guest: usize, for_guests: usize) -> ProviderLimits {
        ProviderLimits {
            subscriptions_per_guest: per_guest,
            subscriptions_for_guests: for_guests,
            ..ProviderLimits::default()
        }
    }

    #[test]
    fn a_guest_with_many_resources_stays_within_its_quota_and_owners_keep_room() {
        let mut subs = Subscriptions::new(&limits(2, 3));
        for r in 0..2 {
            let romeo = jid(&format!("romeo@friend.test/r{r}"));
            assert_eq!(subs.subscribe("player", romeo, None, true, true), Ok(()));
        }
        let third = jid("romeo@friend.test/r2");
        assert_eq!(
            subs.subscribe("player", third.clone(), None, true, true),
            Err(Full::GuestQuota)
        );
        // A repeat of a held subscription is free.
        let first = jid("romeo@friend.test/r0");
        assert_eq!(
            subs.subscribe("player", first.clone(), None, true, true),
            Ok(())
        );
        // Another guest gets the share's last slot, then the share is full.
        assert_eq!(
            subs.subscribe("player", jid("mercutio@friend.test/p"), None, true, true),
            Ok(())
        );
        assert_eq!(
            subs.subscribe("player", jid("tybalt@enemy.test/p"), None, true, true),
            Err(Full::GuestsShare)
        );
        // The household is not affected.
        for r in 0..10 {
            let own = jid(&format!("home@home.test/d{r}"));
            assert_eq!(subs.subscribe("player", own, None, false, false), Ok(()));
        }
        // Leaving frees the slot.
        assert!(subs.forget(&first));
        assert_eq!(subs.subscribe("player", third, None, true, true), Ok(()));
        subs.end_guest(&"romeo@friend.test".parse().expect("jid"));
        assert_eq!(subs.len(), 11);
        assert!(!subs
            .guests
            .contains_key(&"romeo@friend.test".parse::<BareJid>().expect("jid")));
    }
}
