//! The provider's one task: reads the session, the tunnels and the services' events, classifies
//! each inbound stanza once ([`Caller`]), asks the [`Policy`], and routes what it allows: plumbing
//! and access management here, calls through the [`RpcRouter`] to [`InFlight::run`] (or, for the
//! verbs served for every service, [`calls::run_at_once`]), events to the [`Feed`].
//!
//! The top floor of the provider: it imports the modules below it, none of them imports it.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_xmpp::Stanza;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::answer::{answer, Outcome};
use super::caller::{Caller, Route};
use super::calls::{self, Call, InFlight};
use super::expiry::{GuestExpiry, CHECK_EVERY};
use super::feed::Feed;
use super::policy::{Decision, Policy, Request};
use super::PairingOutcome;
use crate::core::access::{AccessChange, AccessGuard, AccessRequest, DeviceFingerprint, NS_ACCESS};
use crate::core::discovery::presence_for;
use crate::core::e2e::endpoint::next_inbound;
use crate::core::e2e::{E2eEndpoint, E2eInbound, TunnelFailure};
use crate::core::error::{Error, ErrorKind};
use crate::core::lazy_broadcast::LazyBroadcast;
use crate::core::plumbing;
use crate::core::rpc::call_id::{self, CallId, CallIdField};
use crate::core::rpc::events::EventNotice;
use crate::core::rpc::xmlrpc::{self, RpcPayload};
use crate::core::rpc::Target;
use crate::core::rpc::{stanza_error_for, CallContext, RpcRouter};
use crate::core::session::{Inbound, Session};
use crate::core::sync::Locked;

/// Everything the provider's task holds.
pub(super) struct Dispatcher {
    pub(super) pairings: LazyBroadcast<PairingOutcome>,
    pub(super) failures: LazyBroadcast<TunnelFailure>,
    pub(super) session: Session,
    pub(super) e2e: Option<E2eEndpoint>,
    pub(super) access: Option<Arc<AccessGuard>>,
    pub(super) policy: Arc<Policy>,
    pub(super) network: BareJid,
    pub(super) router: Arc<RpcRouter>,
    pub(super) info: DiscoInfoResult,
    pub(super) caps_ver: String,
    pub(super) feed: Feed,
    pub(super) calls: InFlight,
    pub(super) expiry: GuestExpiry,
}

impl Dispatcher {
    pub(super) async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut events: mpsc::UnboundedReceiver<EventNotice>,
        mut e2e_rx: Option<mpsc::Receiver<E2eInbound>>,
    ) {
        let plain = Route::Plain(self.session.clone());
        let mut expiry_check = tokio::time::interval(CHECK_EVERY);
        expiry_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = expiry_check.tick(), if self.access.is_some() => self.end_expired_guests(),
                item = inbound.recv() => match item {
                    Some(Inbound::Online { resumed, .. }) => self.on_online(resumed),
                    Some(Inbound::Stanza(stanza)) => {
                        // Jingle/IBB belong to the tunnel layer, which answers them itself.
                        if !self.e2e.as_ref().is_some_and(|e| e.handle_stanza(&stanza)) {
                            self.on_stanza(*stanza, &plain);
                        }
                    }
                    None => break,
                },
                Some(notice) = events.recv() => self.feed.fan_out(notice),
                Some(item) = next_inbound(&mut e2e_rx) => self.on_e2e(item),
            }
        }
        tracing::debug!("provider dispatcher ended");
    }

    fn on_online(&self, resumed: bool) {
        if !resumed {
            // The server forgot us: subscribers will have to subscribe again (they see us come back).
            self.feed.subscriptions.locked().reset();
            // And the IBB sessions of our tunnels died with the old stream: drop them so that
            // the controllers' next calls open new ones instead of writing into the void.
            if let Some(e2e) = &self.e2e {
                let closed = e2e.close_all("the provider's session was not resumed");
                if closed > 0 {
                    tracing::info!(closed, "closed tunnels of the previous session");
                }
            }
        }
        let presence = presence_for(&self.info);
        if self.session.send(presence).is_err() {
            tracing::warn!("could not announce presence: session ended");
        }
    }

    fn on_e2e(&self, item: E2eInbound) {
        match item {
            E2eInbound::Stanza(stanza) => {
                if let (Stanza::Iq(iq), Some(e2e)) = (*stanza, &self.e2e) {
                    // `from` is the authenticated peer; presence and messages mean nothing here.
                    self.on_iq(iq, &Route::Tunnel(e2e.clone()));
                }
            }
            E2eInbound::TunnelUp { peer, .. } => tracing::debug!(%peer, "tunnel up"),
            E2eInbound::TunnelDown { peer, reason } => {
                tracing::debug!(%peer, ?reason, "tunnel down");
                if let Some(error) = reason {
                    let _ = self.failures.send(TunnelFailure { peer, error });
                }
            }
            E2eInbound::TunnelRefused { peer, error } => {
                tracing::info!(%peer, %error, "end-to-end tunnel refused");
                let _ = self.failures.send(TunnelFailure { peer, error });
            }
            E2eInbound::Paired { peer, fingerprint } => {
                tracing::info!(%peer, "paired");
                let _ = self
                    .pairings
                    .send(PairingOutcome::Paired { peer, fingerprint });
            }
            E2eInbound::PairingFailed { peer, error } => {
                tracing::info!(%peer, %error, "pairing failed");
                let _ = self.pairings.send(PairingOutcome::Failed { peer, error });
            }
        }
    }

    fn on_stanza(&self, stanza: Stanza, route: &Route) {
        match stanza {
            Stanza::Iq(iq) => self.on_iq(iq, route),
            Stanza::Presence(p) => self.on_presence(&p),
            // Providers take commands as RPC only; a guest's access request (sent to every device of
            // the network) only goes into the audit log: the owner decides, elsewhere.
            Stanza::Message(m) => self.on_message(&m),
        }
    }

    fn on_message(&self, message: &Message) {
        let Some(guard) = &self.access else { return };
        let Some(Ok(from)) = message.from.clone().map(Jid::try_into_full) else {
            return;
        };
        if !self.policy.takes_access_request(&from.to_bare()) {
            return;
        }
        for payload in &message.payloads {
            if payload.is("request", NS_ACCESS) {
                if let Ok(request) = AccessRequest::parse(payload.clone()) {
                    if guard.record_request(&from, &request) {
                        self.feed.emit_audit();
                    }
                }
            }
        }
    }

    fn on_presence(&self, presence: &Presence) {
        if presence.type_ != PresenceType::Unavailable {
            return;
        }
        let Some(from) = presence.from.clone().and_then(|j| j.try_into_full().ok()) else {
            return;
        };
        if self.feed.subscriptions.locked().forget(&from) {
            tracing::debug!(%from, "subscriber left; forgotten");
        }
    }

    fn reply(&self, route: &Route, iq: Iq) {
        if route.send(iq).is_err() {
            tracing::debug!("reply dropped: session or tunnel ended");
        }
    }

    /// Every iq request: who is asking, what for, what the policy says, then the answer.
    fn on_iq(&self, iq: Iq, route: &Route) {
        let (from, id, payload, is_set) = match iq {
            Iq::Get {
                from, id, payload, ..
            } => (from, id, payload, false),
            Iq::Set {
                from, id, payload, ..
            } => (from, id, payload, true),
            // Responses to our own requests are consumed by the session; others are stray.
            _ => return,
        };
        let caller = Caller::classify(from.as_ref(), route, &self.network, self.access.as_deref());
        let request = if AccessGuard::is_management(&payload) {
            Request::Manage
        } else if is_set && payload.is("query", xmlrpc::NS) {
            Request::Rpc
        } else if is_set {
            Request::OtherSet
        } else {
            Request::Get
        };
        let to = caller.jid().cloned();
        match self.policy.decide(&caller, &request) {
            Decision::Unsupported => self.reply(route, plumbing::unsupported(to, id)),
            Decision::Forbid(text) => {
                tracing::info!(from = ?to, ?request, %text, "request refused");
                let refusal = plumbing::forbidden_because(&text);
                self.reply(route, plumbing::error(to, id, refusal));
            }
            Decision::Allow => match request {
                Request::Manage => {
                    let key = caller.tunnel_key().copied();
                    self.on_management(to, id, payload, is_set, key, route)
                }
                Request::Rpc => self.on_rpc(&caller, id, payload, route),
                Request::Get => self.reply(
                    route,
                    plumbing::answer_get(to, id, &payload, &self.info, &self.caps_ver),
                ),
                // The policy answers these without allowing them; nothing to serve if it did.
                Request::OtherSet | Request::Call { .. } => {
                    self.reply(route, plumbing::unsupported(to, id))
                }
            },
        }
    }

    /// A Jabber-RPC query the policy let this caller send ([`Request::Rpc`]): read it, ask the
    /// policy about the method, route it and hand it to the runner ([`InFlight::run`]).
    fn on_rpc(&self, caller: &Caller, id: String, query: Element, route: &Route) {
        let to = caller.jid().cloned();
        let Some(full) = caller.full() else {
            let e = Error::new(ErrorKind::BadParams, "caller has no resource");
            return self.reply(route, plumbing::error(to, id, stanza_error_for(&e)));
        };
        // The element (older controllers) wins; else the iq id may carry the call id.
        let call_id = match call_id::of_query(&query) {
            CallIdField::Absent => CallId::from_iq_id(&id),
            CallIdField::Present(call_id) => Some(call_id),
            CallIdField::Invalid => {
                let e = Error::new(ErrorKind::BadParams, "malformed call id");
                return self.reply(route, plumbing::error(to, id, stanza_error_for(&e)));
            }
        };
        let call = match self.router.parse_query(&query) {
            Ok(RpcPayload::Call(call)) => call,
            Ok(RpcPayload::Response(_)) => {
                let e = Error::new(ErrorKind::BadParams, "expected a methodCall");
                return self.reply(route, plumbing::error(to, id, stanza_error_for(&e)));
            }
            Err(e) => {
                let e = Error::new(ErrorKind::BadParams, format!("malformed call: {e}"));
                return self.reply(route, plumbing::error(to, id, stanza_error_for(&e)));
            }
        };
        // Routed once: the target says which scope the method declares, and runs the call if
        // the policy allows it. An unknown method is answered only after the policy spoke (a
        // stranger learns `forbidden`, not which methods exist).
        let routed = self.router.route(&call.method);
        let request = Request::Call {
            method: &call.method,
            params: &call.params,
            scope: routed.as_ref().ok().and_then(Target::scope),
        };
        let decision = self.policy.decide(caller, &request);
        // The ACL recorded the guest's use or refusal, the policy a media refusal.
        self.feed.emit_audit();
        match decision {
            Decision::Allow => {}
            Decision::Unsupported => return self.reply(route, plumbing::unsupported(to, id)),
            Decision::Forbid(text) => {
                tracing::info!(from = %full, method = %call.method, %text, "call refused");
                let refusal = plumbing::forbidden_because(&text);
                return self.reply(route, plumbing::error(to, id, refusal));
            }
        }
        let Some(to) = to else { return };
        let target = match routed {
            Ok(target) => target,
            Err(e) => return self.reply(route, answer(to, id, Outcome::Done(Err(e)))),
        };
        if let Target::EveryService { .. } = target {
            let ctx = CallContext {
                caller: full,
                tunnel: route.is_tunnel(),
            };
            let outcome = calls::run_at_once(&target, call.params, &ctx);
            return self.reply(route, answer(to, id, outcome));
        }
        let call = Call {
            full,
            key: caller.tunnel_key().copied(),
            guest: !caller.is_own_device(),
            to,
            id,
            call_id,
            method: call.method,
            target,
            params: call.params,
        };
        self.calls.run(call, route);
    }

    /// An owner device manages guest access (the policy checked: own network, its tunnel).
    fn on_management(
        &self,
        to: Option<Jid>,
        id: String,
        payload: Element,
        is_set: bool,
        key: Option<DeviceFingerprint>,
        route: &Route,
    ) {
        let Some(guard) = &self.access else {
            return self.reply(route, plumbing::unsupported(to, id));
        };
        let answer = match guard.manage(payload, is_set, key.as_ref()) {
            Ok((element, change)) => {
                if let AccessChange::Revoked(guest) = change {
                    self.end_guest(&guest);
                }
                plumbing::result(to, id, Some(element))
            }
            Err(e) => plumbing::error(to, id, stanza_error_for(&e)),
        };
        self.reply(route, answer);
        self.feed.emit_audit();
    }

    /// Guests whose last grant expired since the last look: they lose the household's presence
    /// (unsubscribed both ways, as a revocation does), their tunnels and their subscriptions.
    fn end_expired_guests(&mut self) {
        let Some(guard) = &self.access else { return };
        for guest in self.expiry.ended(guard) {
            tracing::info!(%guest, "the guest's last grant expired; ending its presence");
            for type_ in [PresenceType::Unsubscribed, PresenceType::Unsubscribe] {
                let presence = Presence::new(type_).with_to(Jid::from(guest.clone()));
                if self.session.send(presence).is_err() {
                    return;
                }
            }
            self.end_guest(&guest);
        }
    }

    /// A guest's grant was revoked: its tunnels close and its subscriptions end now (the ACL
    /// refuses its next call anyway; this stops events and frees the tunnel at once).
    fn end_guest(&self, guest: &BareJid) {
        self.feed.subscriptions.locked().end_guest(guest);
        if let Some(e2e) = &self.e2e {
            let closed = e2e.close_peer(guest, "the guest's grant ended");
            tracing::info!(%guest, closed, "guest access ended");
        }
    }
}
