//! The controller's inbound loop: presence and disco#info into the provider directory, events
//! to subscribers, access payloads to the owner and guest roles, tunnel items from the e2e layer.

use super::{Resync, RetryPolicy, ServiceEvent, Shared, RESTORE_WAIT};
use crate::core::sync::Locked;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_xmpp::Stanza;
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::presence::Presence;

use super::subscription::{subscribe_params, union_of};
use crate::core::discovery::{
    presence_for, Advertised, DirectoryUpdate, DiscoAnswer, InfoQueries, PresenceOutcome,
    QueryStart, Verdict,
};
use crate::core::e2e::endpoint::next_inbound;
use crate::core::e2e::{E2eInbound, TunnelFailure};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::plumbing;
use crate::core::rpc::events::{self, EventFilter, EventNotice};
use crate::core::rpc::{self};
use crate::core::session::{Inbound, IqReply};

/// How long a controller waits, after a provider's tunnel went down, for the provider's
/// unavailable presence before it subscribes again through a new tunnel.
const TUNNEL_DOWN_GRACE: Duration = Duration::from_millis(500);

/// A disco#info answer (or failure) coming back to the dispatcher.
pub(super) struct InfoAnswer {
    pub(super) jid: FullJid,
    pub(super) caps: Option<Advertised>,
    pub(super) info: Result<DiscoAnswer>,
}

pub(super) struct Dispatcher {
    pub(super) shared: Arc<Shared>,
    pub(super) network: BareJid,
    pub(super) info: DiscoInfoResult,
    pub(super) caps_ver: String,
    pub(super) infos: mpsc::UnboundedSender<InfoAnswer>,
    /// The disco#info queries presences triggered: one per hash, bounded in all.
    pub(super) queries: InfoQueries,
}

impl Dispatcher {
    pub(super) async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut infos: mpsc::UnboundedReceiver<InfoAnswer>,
        mut e2e_rx: Option<mpsc::Receiver<E2eInbound>>,
    ) {
        loop {
            tokio::select! {
                item = inbound.recv() => match item {
                    Some(Inbound::Online { jid, resumed }) => self.on_online(jid, resumed),
                    Some(Inbound::Stanza(stanza)) => {
                        // Jingle/IBB belong to the tunnel layer, which answers them itself.
                        if !self.shared.e2e.as_ref().is_some_and(|e| e.handle_stanza(&stanza))
                            && !self.shared.playlists.handle_stanza(&stanza)
                        {
                            self.on_stanza(*stanza);
                        }
                    }
                    None => break,
                },
                Some(answer) = infos.recv() => self.on_info(answer),
                Some(item) = next_inbound(&mut e2e_rx) => self.on_e2e(item),
            }
        }
        let gone = self.shared.directory.locked().clear();
        self.publish(gone);
    }

    fn publish(&self, updates: Vec<DirectoryUpdate>) {
        let mut back: HashSet<FullJid> = HashSet::new();
        for update in updates {
            if let DirectoryUpdate::Added(p) = &update {
                back.insert(p.jid.clone());
                if self.shared.owner.is_some() && p.jid.to_bare() == self.network {
                    // An owner device keeps the network's providers in agreement on guest access.
                    tokio::spawn(self.shared.clone().sync_access(p.jid.clone()));
                }
            }
            let _ = self.shared.updates.send(update);
        }
        if !back.is_empty() {
            self.restore_subscriptions(&back, Duration::ZERO);
        }
    }

    /// A provider we had subscribed to came (back) online, or its tunnel went down while it
    /// stays online: it forgot us, so subscribe again, after `grace` if it is still listed then.
    fn restore_subscriptions(&self, providers: &HashSet<FullJid>, grace: Duration) {
        let wanted: Vec<(FullJid, String, EventFilter)> = self
            .shared
            .subscriptions
            .locked()
            .iter()
            .filter(|((p, _), _)| providers.contains(p))
            .map(|((p, s), entries)| (p.clone(), s.clone(), union_of(entries)))
            .collect();
        for (provider, service, filter) in wanted {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let method = format!("{service}.subscribe");
                let params = subscribe_params(&filter);
                if !grace.is_zero() {
                    tokio::time::sleep(grace).await;
                }
                // A tunnel may go down while the session reconnects: subscribe once it is back
                // (calls are not sent while it is not online).
                if !shared.wait_online(RESTORE_WAIT).await {
                    tracing::warn!(%provider, %service, "could not restore subscription: offline");
                    return;
                }
                // A provider that left meanwhile is subscribed to again when it comes back.
                if shared.directory.locked().get(&provider).is_none() {
                    tracing::debug!(%provider, %service, "subscription not restored: provider gone");
                    return;
                }
                let retry = RetryPolicy::new(2, RESTORE_WAIT);
                match shared
                    .call_with_retry(&provider, &method, params, &retry)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(%provider, %service, "subscription restored");
                        let _ = shared.resyncs.send(Resync { provider, service });
                    }
                    Err(e) => {
                        tracing::warn!(%provider, %service, error = %e, "could not restore subscription")
                    }
                }
            });
        }
    }

    fn on_online(&mut self, jid: FullJid, resumed: bool) {
        if !resumed {
            let gone = {
                let mut dir = self.shared.directory.locked();
                dir.set_own(jid);
                dir.clear()
            };
            self.queries.clear();
            self.publish(gone);
            // The IBB sessions of our tunnels died with the old stream: fail the calls waiting in
            // them now (NotConnected) instead of at their deadlines.
            if let Some(e2e) = &self.shared.e2e {
                e2e.close_all("the controller's session was not resumed");
            }
        }
        // Caps without service features: a controller announces no service (spec §6).
        let presence = presence_for(&self.info);
        if self.shared.session.send(presence).is_err() {
            tracing::warn!("could not announce presence: session ended");
        }
    }

    fn on_stanza(&mut self, stanza: Stanza) {
        match stanza {
            Stanza::Presence(p) => self.on_presence(&p),
            Stanza::Message(m) => self.on_message(m, false),
            Stanza::Iq(iq) => self.on_iq(iq, false),
        }
    }

    fn on_e2e(&mut self, item: E2eInbound) {
        match item {
            // `from` is the authenticated peer; presence never travels in a tunnel.
            E2eInbound::Stanza(stanza) => match *stanza {
                Stanza::Message(m) => self.on_message(m, true),
                Stanza::Iq(iq) => self.on_iq(iq, true),
                Stanza::Presence(_) => {}
            },
            E2eInbound::TunnelDown { peer, reason } => {
                tracing::debug!(%peer, ?reason, "tunnel down");
                if let Some(error) = reason {
                    let _ = self.shared.failures.send(TunnelFailure {
                        peer: peer.clone(),
                        error,
                    });
                }
                // The provider now has no way to send us its events: if it is still online,
                // subscribe again, which opens a new tunnel. A provider that stops ends its
                // tunnels just before its unavailable presence, which reaches us by another
                // path and may come second: the grace lets it, so that a departing provider is
                // not sent a session-initiate (and retried) on its way out.
                if self.shared.directory.locked().get(&peer).is_some() {
                    self.restore_subscriptions(&HashSet::from([peer]), TUNNEL_DOWN_GRACE);
                }
            }
            E2eInbound::TunnelUp { peer, .. } => tracing::debug!(%peer, "tunnel up"),
            E2eInbound::TunnelRefused { peer, error } => {
                tracing::info!(%peer, %error, "end-to-end tunnel refused");
                let _ = self.shared.failures.send(TunnelFailure { peer, error });
            }
            E2eInbound::Paired { peer, .. } => tracing::info!(%peer, "paired"),
            E2eInbound::PairingFailed { peer, error } => {
                tracing::info!(%peer, %error, "pairing failed")
            }
        }
    }

    /// Sends `iq` back the way its request came.
    fn reply(&self, iq: Iq, via_tunnel: bool) {
        let sent = match (&self.shared.e2e, via_tunnel) {
            (Some(e2e), true) => e2e.send(iq),
            _ => self.shared.session.send(iq),
        };
        if sent.is_err() {
            tracing::debug!("reply dropped: session or tunnel ended");
        }
    }

    fn on_presence(&mut self, presence: &Presence) {
        if presence.type_ == xmpp_parsers::presence::Type::Subscribe {
            return self.on_subscription(presence);
        }
        let outcome = self.shared.directory.locked().on_presence(presence);
        match outcome {
            PresenceOutcome::Ignored => {}
            PresenceOutcome::Updated(updates) => self.publish(updates),
            PresenceOutcome::NeedInfo { jid, caps } => self.request_info(jid, caps),
        }
    }

    /// Queries `jid`'s disco#info within the bounds of [`InfoQueries`]: one query per hash, a cap
    /// on the total.
    fn request_info(&mut self, jid: FullJid, caps: Option<Advertised>) {
        match self.queries.request(jid.clone(), caps.as_ref()) {
            QueryStart::Send => self.query_info(jid, caps),
            QueryStart::Joined | QueryStart::Queued => {}
            // Its next presence will be looked at afresh, instead of being taken for a status change.
            QueryStart::Dropped => self.shared.directory.locked().forget(&jid),
        }
    }

    fn query_info(&self, jid: FullJid, caps: Option<Advertised>) {
        let node = caps.as_ref().and_then(Advertised::query_node);
        crate::core::discovery::count_info_query();
        let shared = self.shared.clone();
        let infos = self.infos.clone();
        tokio::spawn(async move {
            let iq = Iq::Get {
                from: None,
                to: Some(Jid::from(jid.clone())),
                id: String::new(),
                payload: DiscoInfoQuery { node: node.clone() }.into(),
            };
            let info = match shared.session.request(iq, shared.rpc_timeout).await {
                Ok(IqReply::Result(Some(payload))) => DiscoAnswer::from_element(payload)
                    .map_err(|e| Error::new(ErrorKind::Protocol, format!("disco#info: {e}"))),
                Ok(IqReply::Result(None)) => {
                    Err(Error::new(ErrorKind::Protocol, "empty disco#info"))
                }
                Ok(IqReply::Error(e)) => Err(rpc::error_from_stanza("disco#info", &e)),
                Err(e) => Err(e),
            };
            let _ = infos.send(InfoAnswer { jid, caps, info });
        });
    }

    fn on_info(&mut self, answer: InfoAnswer) {
        let waiting = self.queries.finished(answer.caps.as_ref());
        match answer.info {
            Ok(info) => {
                let mut updates = Vec::new();
                let verdict = {
                    let mut dir = self.shared.directory.locked();
                    let (u, verdict) = dir.on_info(answer.jid, answer.caps.as_ref(), &info);
                    updates.extend(u);
                    verdict
                };
                if verdict == Some(Verdict::Verified) {
                    // Everyone who announced the same hash gets the verified answer.
                    let mut dir = self.shared.directory.locked();
                    for jid in waiting {
                        updates.extend(dir.on_info(jid, answer.caps.as_ref(), &info).0);
                    }
                } else {
                    // The hash cannot be trusted: ask each waiting device for its own answer.
                    for jid in waiting {
                        self.request_info(jid, None);
                    }
                }
                self.publish(updates);
            }
            Err(e) => {
                if answer.jid.to_bare() == self.network {
                    tracing::warn!(jid = %answer.jid, error = %e, "disco#info failed");
                } else {
                    // A host's device that does not know us (yet): not our problem to report.
                    tracing::debug!(jid = %answer.jid, error = %e, "disco#info failed");
                }
                // Someone else with the same caps may answer.
                for jid in waiting {
                    self.request_info(jid, answer.caps.clone());
                }
            }
        }
        for (jid, caps) in self.queries.next_ready() {
            self.query_info(jid, caps);
        }
    }

    fn on_message(&self, message: Message, via_tunnel: bool) {
        if message.type_ != MessageType::Headline {
            return;
        }
        if !via_tunnel && self.on_access_message(&message) {
            return;
        }
        if self.shared.require_tunnel && !via_tunnel {
            tracing::debug!(from = ?message.from, "plaintext event ignored: tunnel required");
            return;
        }
        let Some(from) = message.from.clone().and_then(|j| j.try_into_full().ok()) else {
            return;
        };
        // Events count only from providers we know (our network, or one that granted us access).
        if self.shared.directory.locked().get(&from).is_none() {
            tracing::debug!(%from, "event from an unknown device ignored");
            return;
        }
        for payload in message
            .payloads
            .iter()
            .filter(|p| p.is("event", events::NS))
        {
            match EventNotice::from_element(payload, &self.shared.rpc_limits) {
                Ok(notice) => {
                    let _ = self.shared.events.send(ServiceEvent {
                        provider: from.clone(),
                        notice,
                    });
                }
                Err(e) => tracing::warn!(%from, error = %e, "malformed event ignored"),
            }
        }
    }

    fn on_iq(&self, iq: Iq, via_tunnel: bool) {
        let (from, id, payload) = match iq {
            Iq::Get {
                from, id, payload, ..
            } => (from, id, payload),
            Iq::Set { from, id, .. } => {
                // A controller serves nothing.
                return self.reply(plumbing::unsupported(from, id), via_tunnel);
            }
            _ => return,
        };
        // Our network, our server (it resolves our caps for PEP notifications: ejabberd asks from
        // its domain), and guests we granted (their discovery asks every device it sees).
        let is_own_server = |f: &Jid| {
            f.node().is_none() && f.resource().is_none() && f.domain() == self.network.domain()
        };
        let reply = match &from {
            Some(f)
                if f.to_bare() != self.network
                    && !is_own_server(f)
                    && !self.shared.guest.granted.locked().contains(&f.to_bare()) =>
            {
                plumbing::error(from.clone(), id, plumbing::forbidden())
            }
            _ => plumbing::answer_get(from, id, &payload, &self.info, &self.caps_ver),
        };
        self.reply(reply, via_tunnel);
    }
}
