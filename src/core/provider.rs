//! The provider role: a device that offers services (a TV, a player, a recorder).
//!
//! It announces its services through presence caps, answers disco#info and Jabber-RPC calls from
//! devices of its own network, refuses everyone else with `forbidden` (Prosody delivers an iq to a
//! full JID without any subscription, so the provider itself must check every stanza), and sends
//! events to subscribers.
//!
//! **It never sends a stanza to a JID that has not contacted it first** (spec §4): presence goes to
//! the server (no `to`), iq answers go to the requester, and events go only to full JIDs that called
//! `<service>.subscribe` and are still online. Those are the only three places that send, all in this
//! file.
//!
//! With [`ProviderConfig::e2e`] set, calls that arrive through an end-to-end tunnel are answered
//! through it and events go to tunnel subscribers through it (never in clear, even if the tunnel
//! is down: the event is dropped). The provider never opens a tunnel itself, so the rule above
//! still holds: a tunnel exists only because the controller opened it.
//!
//! With [`ProviderConfig::access`] set, guests of other networks may call it too, but only through
//! a tunnel whose key an active grant names, and only the methods of the grant's scopes: every
//! such call goes through [`AccessGuard::check`] (DESIGN §5). Owner devices manage the grants
//! through their tunnel (`<owner/>`, `<grant/>`, `<revoke/>`, `<acl/>`, `<audit/>`) and read the
//! audit log as `access.audit` events after `access.subscribe`.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_xmpp::Stanza;
use xmpp_parsers::disco::DiscoInfoResult;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use crate::core::access::{
    AccessChange, AccessGuard, AccessRequest, AccessSettings, Decision, NS_ACCESS,
};
use crate::core::discovery::{disco_info_for, presence_for};
use crate::core::e2e::settings::next_inbound;
use crate::core::e2e::settings::FAILURE_CAPACITY;
use crate::core::e2e::{E2eEndpoint, E2eInbound, E2eSettings, TunnelFailure};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::events::{EventFilter, EventNotice, EventSink, Subscribers};
use crate::core::plumbing;
use crate::core::rpc::xmlrpc::{self, Limits, MethodResponse, RpcPayload, Value};
use crate::core::rpc::{stanza_error_for, CallContext, RpcRouter, Service};
use crate::core::session::{Inbound, Session, SessionConfig};

/// The pseudo-service of the owner's audit feed (`access.subscribe`, events `access.audit`).
pub const ACCESS_SERVICE: &str = "access";
/// The event carrying one audit record.
pub const AUDIT_EVENT: &str = "audit";

/// How many calls a provider runs at once; further calls wait (the server keeps them queued).
const MAX_CONCURRENT_CALLS: usize = 64;

/// How to start a provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The session (network identifier, device resource, password, server).
    pub session: SessionConfig,
    /// The device name shown to controllers (disco#info identity name).
    pub name: String,
    /// End-to-end tunnel settings (see [`ProviderConfig::new`]); `None` serves everything in
    /// clear, which only [`ProviderConfig::plain`] or an explicit `None` asks for.
    pub e2e: Option<E2eSettings>,
    /// Guest access (needs `e2e`): the ACL this provider enforces. `None`: own network only.
    pub access: Option<AccessSettings>,
    /// Bounds on decoding calls, for services that set none of their own ([`Service::limits`]);
    /// [`Limits::DEFAULT`] unless set.
    pub rpc_limits: Limits,
}

impl ProviderConfig {
    /// The default policy (DESIGN §4): calls only through end-to-end tunnels, events only
    /// through them.
    pub fn new(session: SessionConfig, name: impl Into<String>, e2e: E2eSettings) -> Self {
        Self {
            e2e: Some(e2e),
            ..Self::plain(session, name)
        }
    }

    /// Serves calls **in clear**: the server can read and forge the control traffic. Only for
    /// controllers without the tunnel (interop with other XMPP clients) or a server you control.
    pub fn plain(session: SessionConfig, name: impl Into<String>) -> Self {
        Self {
            session,
            name: name.into(),
            e2e: None,
            access: None,
            rpc_limits: Limits::DEFAULT,
        }
    }
}

/// How a pairing attempt on this (code-showing) provider ended.
#[derive(Debug, Clone)]
pub enum PairingOutcome {
    /// `peer`'s key `fingerprint` is now pinned.
    Paired {
        /// The controller that paired.
        peer: FullJid,
        /// Its key.
        fingerprint: [u8; 32],
    },
    /// The attempt failed (wrong or expired code, pairing not armed or locked); nothing pinned.
    Failed {
        /// Who tried.
        peer: FullJid,
        /// Why it failed.
        error: Error,
    },
}

/// A running provider. Stops when [`Provider::stop`] is called or the value is dropped.
pub struct Provider {
    pairings: tokio::sync::broadcast::Sender<PairingOutcome>,
    failures: tokio::sync::broadcast::Sender<TunnelFailure>,
    session: Session,
    e2e: Option<E2eEndpoint>,
    access: Option<Arc<AccessGuard>>,
    state: Arc<Mutex<ProviderState>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct ProviderState {
    subscribers: Subscribers,
    /// Subscribers whose last subscribe came through a tunnel: their events go only through it.
    tunnelled: HashSet<FullJid>,
}

impl Provider {
    /// Logs in, announces `services` and starts answering.
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     session: pmn::core::session::SessionConfig,
    /// #     e2e: pmn::core::e2e::E2eSettings,
    /// # ) -> pmn::core::error::Result<()> {
    /// use std::sync::Arc;
    /// use pmn::core::provider::{Provider, ProviderConfig};
    /// use pmn::core::services::player::{PlayerService, SimulatedPlayer};
    /// let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    /// let provider = Provider::start(
    ///     ProviderConfig::new(session, "Living room TV", e2e),
    ///     vec![player],
    /// ).await?;
    /// provider.stop().await;
    /// # Ok(()) }
    /// ```
    pub async fn start(config: ProviderConfig, services: Vec<Arc<dyn Service>>) -> Result<Self> {
        if services.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "a provider needs at least one service",
            ));
        }
        let mut router = RpcRouter::with_limits(config.rpc_limits);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        for service in services {
            service.bind_events(EventSink::new(service.name(), events_tx.clone()));
            router.add(service)?;
        }
        let mut features: Vec<&str> = router.services().map(|s| s.feature()).collect();
        if config.e2e.is_some() {
            // Hear at once when a device key of the network is retracted (revocation).
            features.push(crate::core::e2e::pubkey::NOTIFY_PUBKEY);
        }
        let info = disco_info_for(Some(&config.name), &features);
        let network = config.session.jid.to_bare();
        let access = match (&config.access, &config.e2e) {
            (Some(settings), Some(_)) => {
                Some(Arc::new(AccessGuard::open(network.clone(), settings)?))
            }
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "guest access needs the end-to-end tunnel (set ProviderConfig::e2e)",
                ))
            }
            (None, _) => None,
        };
        let (session, inbound) = Session::connect(config.session).await?;
        let (e2e, e2e_rx) = match &config.e2e {
            Some(settings) => {
                let admission = access.clone().map(|guard| {
                    let admit: crate::core::e2e::Admission =
                        Arc::new(move |jid, fp| guard.admits(jid, fp));
                    admit
                });
                let (endpoint, rx) = settings.endpoint(session.clone(), admission);
                (Some(endpoint), Some(rx))
            }
            None => (None, None),
        };
        let state = Arc::new(Mutex::new(ProviderState::default()));
        let (pairings, _) = tokio::sync::broadcast::channel(16);
        let (failures, _) = tokio::sync::broadcast::channel(FAILURE_CAPACITY);
        let task = tokio::spawn(
            Dispatcher {
                pairings: pairings.clone(),
                failures: failures.clone(),
                session: session.clone(),
                e2e: e2e.clone(),
                access: access.clone(),
                require_tunnel: config.e2e.as_ref().is_some_and(|s| s.require_tunnel),
                network,
                router: Arc::new(router),
                caps_ver: plumbing::caps_ver(&info),
                info,
                state: state.clone(),
                calls: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
            }
            .run(inbound, events_rx, e2e_rx),
        );
        Ok(Self {
            pairings,
            failures,
            session,
            e2e,
            access,
            state,
            task,
        })
    }

    /// The underlying session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The end-to-end endpoint (pairing, trusted devices, revocation), when configured.
    pub fn e2e(&self) -> Option<&E2eEndpoint> {
        self.e2e.as_ref()
    }

    /// End-to-end tunnels that fail or are refused from now on: altered bytes, an unknown key.
    pub fn tunnel_failures(&self) -> tokio::sync::broadcast::Receiver<TunnelFailure> {
        self.failures.subscribe()
    }

    /// How pairing attempts end from now on (the app's "pairing…" screen on the TV).
    pub fn pairing_outcomes(&self) -> tokio::sync::broadcast::Receiver<PairingOutcome> {
        self.pairings.subscribe()
    }

    /// The guest-access guard (ACL and audit log), when configured.
    pub fn access(&self) -> Option<&Arc<AccessGuard>> {
        self.access.as_ref()
    }

    /// How many (service, controller) subscriptions are active.
    pub fn subscription_count(&self) -> usize {
        lock(&self.state).subscribers.len()
    }

    /// Goes offline: unavailable presence, stream closed.
    pub async fn stop(mut self) {
        self.session.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<ProviderState>) -> std::sync::MutexGuard<'_, ProviderState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The way a request came in, and so the only way its answer may go back.
#[derive(Clone)]
enum Route {
    Plain(Session),
    Tunnel(E2eEndpoint),
}

impl Route {
    fn send(&self, stanza: impl Into<Stanza>) -> Result<()> {
        match self {
            Route::Plain(session) => session.send(stanza),
            Route::Tunnel(e2e) => e2e.send(stanza),
        }
    }

    fn is_tunnel(&self) -> bool {
        matches!(self, Route::Tunnel(_))
    }
}

struct Dispatcher {
    pairings: tokio::sync::broadcast::Sender<PairingOutcome>,
    failures: tokio::sync::broadcast::Sender<TunnelFailure>,
    session: Session,
    e2e: Option<E2eEndpoint>,
    access: Option<Arc<AccessGuard>>,
    /// Refuse plaintext RPC from the network (see [`E2eSettings::require_tunnel`]).
    require_tunnel: bool,
    network: BareJid,
    router: Arc<RpcRouter>,
    info: DiscoInfoResult,
    caps_ver: String,
    state: Arc<Mutex<ProviderState>>,
    calls: Arc<Semaphore>,
}

impl Dispatcher {
    async fn run(
        self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut events: mpsc::UnboundedReceiver<EventNotice>,
        mut e2e_rx: Option<mpsc::Receiver<E2eInbound>>,
    ) {
        let plain = Route::Plain(self.session.clone());
        loop {
            tokio::select! {
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
                Some(notice) = events.recv() => self.fan_out(notice),
                Some(item) = next_inbound(&mut e2e_rx) => self.on_e2e(item),
            }
        }
        tracing::debug!("provider dispatcher ended");
    }

    fn on_online(&self, resumed: bool) {
        if !resumed {
            // The server forgot us: subscribers will have to subscribe again (they see us come back).
            *lock(&self.state) = ProviderState::default();
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
        if from.to_bare() == self.network {
            return;
        }
        for payload in &message.payloads {
            if payload.is("request", NS_ACCESS) {
                if let Ok(request) = AccessRequest::parse(payload.clone()) {
                    if guard.record_request(&from, &request) {
                        self.emit_audit();
                    }
                }
            }
        }
    }

    /// Sends the audit records made since the last call to the owners subscribed to `access`.
    fn emit_audit(&self) {
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

    /// The key of the tunnel a stanza from `from` came through.
    fn tunnel_key(&self, route: &Route, from: &Jid) -> Option<[u8; 32]> {
        let Route::Tunnel(e2e) = route else {
            return None;
        };
        let full = from.clone().try_into_full().ok()?;
        e2e.existing_tunnel(&full).map(|t| t.peer_fingerprint())
    }

    /// An owner device manages guest access: own network, through its tunnel, access configured.
    fn on_management(&self, from: Jid, id: String, payload: Element, is_set: bool, route: &Route) {
        let refuse = |text: &str| {
            let refusal = plumbing::forbidden_because(text);
            self.reply(
                route,
                plumbing::error(Some(from.clone()), id.clone(), refusal),
            );
        };
        let Some(guard) = &self.access else {
            return refuse("this provider takes no guests");
        };
        if from.to_bare() != self.network {
            tracing::info!(%from, "refused an access request from outside the network");
            return refuse("only devices of this network manage access");
        }
        if !route.is_tunnel() {
            return refuse("end-to-end tunnel required");
        }
        let answer = match guard.manage(payload, is_set) {
            Ok((element, change)) => {
                if let AccessChange::Revoked(guest) = change {
                    self.end_guest(&guest);
                }
                plumbing::result(Some(from), id, Some(element))
            }
            Err(e) => plumbing::error(Some(from), id, stanza_error_for(&e)),
        };
        self.reply(route, answer);
        self.emit_audit();
    }

    /// A guest's grant was revoked: its tunnels close and its subscriptions end now (the ACL
    /// refuses its next call anyway; this stops events and frees the tunnel at once).
    fn end_guest(&self, guest: &BareJid) {
        {
            let mut state = lock(&self.state);
            let gone: Vec<FullJid> = state
                .tunnelled
                .iter()
                .filter(|j| j.to_bare() == *guest)
                .cloned()
                .collect();
            for jid in gone {
                state.tunnelled.remove(&jid);
                state.subscribers.forget(&jid);
            }
        }
        if let Some(e2e) = &self.e2e {
            let closed = e2e.close_peer(guest, "the guest's grant was revoked");
            tracing::info!(%guest, closed, "guest access revoked");
        }
    }

    fn on_presence(&self, presence: &Presence) {
        if presence.type_ != PresenceType::Unavailable {
            return;
        }
        let Some(from) = presence.from.clone().and_then(|j| j.try_into_full().ok()) else {
            return;
        };
        let mut state = lock(&self.state);
        state.tunnelled.remove(&from);
        if state.subscribers.forget(&from) {
            tracing::debug!(%from, "subscriber left; forgotten");
        }
    }

    fn reply(&self, route: &Route, iq: Iq) {
        if route.send(iq).is_err() {
            tracing::debug!("reply dropped: session or tunnel ended");
        }
    }

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
        let Some(from) = from else {
            // From our own account's server-side (no 'from'): nothing we serve.
            return self.reply(route, plumbing::unsupported(None, id));
        };
        if AccessGuard::is_management(&payload) {
            return self.on_management(from, id, payload, is_set, route);
        }
        if from.to_bare() != self.network {
            return self.on_guest_iq(from, id, payload, is_set, route);
        }
        if is_set && payload.is("query", xmlrpc::NS) {
            if self.require_tunnel && !route.is_tunnel() {
                tracing::info!(%from, "refused a plaintext call: tunnel required");
                let refusal = plumbing::forbidden_because("end-to-end tunnel required");
                return self.reply(route, plumbing::error(Some(from), id, refusal));
            }
            return self.on_rpc(from, id, payload, route, None);
        }
        if is_set {
            return self.reply(route, plumbing::unsupported(Some(from), id));
        }
        self.reply(
            route,
            plumbing::answer_get(Some(from), id, &payload, &self.info, &self.caps_ver),
        );
    }

    /// An iq from outside the network: a guest's call through its tunnel (checked by the ACL), a
    /// guest's disco#info (discovery needs it before any tunnel), or a stranger (`forbidden`).
    fn on_guest_iq(&self, from: Jid, id: String, payload: Element, is_set: bool, route: &Route) {
        let forbidden = |text: &str| {
            plumbing::error(
                Some(from.clone()),
                id.clone(),
                plumbing::forbidden_because(text),
            )
        };
        let Some(guard) = &self.access else {
            tracing::info!(%from, "refused a request from outside the network");
            return self.reply(route, forbidden("not a device of this network"));
        };
        if is_set && payload.is("query", xmlrpc::NS) {
            if !route.is_tunnel() {
                tracing::info!(%from, "refused a guest's plaintext call");
                return self.reply(route, forbidden("end-to-end tunnel required"));
            }
            let device = self.tunnel_key(route, &from);
            return self.on_rpc(from, id, payload, route, Some(device));
        }
        if !is_set && guard.knows_guest(&from.to_bare()) {
            return self.reply(
                route,
                plumbing::answer_get(Some(from), id, &payload, &self.info, &self.caps_ver),
            );
        }
        tracing::info!(%from, "refused a request from outside the network");
        self.reply(route, forbidden("no access granted"))
    }

    /// Runs a call. `guest` is `Some(tunnel key)` for a caller from another network: the ACL
    /// decides before anything else happens.
    fn on_rpc(
        &self,
        from: Jid,
        id: String,
        query: Element,
        route: &Route,
        guest: Option<Option<[u8; 32]>>,
    ) {
        let Ok(caller) = from.clone().try_into_full() else {
            return self.reply(
                route,
                plumbing::error(
                    Some(from),
                    id,
                    stanza_error_for(&Error::new(ErrorKind::BadParams, "caller has no resource")),
                ),
            );
        };
        let call = match self.router.parse_query(&query) {
            Ok(RpcPayload::Call(call)) => call,
            Ok(RpcPayload::Response(_)) => {
                let e = Error::new(ErrorKind::BadParams, "expected a methodCall");
                return self.reply(route, plumbing::error(Some(from), id, stanza_error_for(&e)));
            }
            Err(e) => {
                let e = Error::new(ErrorKind::BadParams, format!("malformed call: {e}"));
                return self.reply(route, plumbing::error(Some(from), id, stanza_error_for(&e)));
            }
        };
        if let (Some(device), Some(guard)) = (guest, &self.access) {
            let item = call.params.first().and_then(Value::as_str);
            let decision = guard.check(&caller, device.as_ref(), &call.method, item);
            self.emit_audit();
            if let Decision::Deny(reason) = decision {
                tracing::info!(%from, method = %call.method, reason = reason.as_str(), "guest call refused");
                let refusal =
                    plumbing::forbidden_because(&format!("access denied: {}", reason.as_str()));
                return self.reply(route, plumbing::error(Some(from), id, refusal));
            }
        }
        // The owner's audit feed: own network, through the tunnel.
        if let Some(verb) = call.method.strip_prefix("access.") {
            return self.on_access_subscription(from, id, caller, verb, call.params, route);
        }
        // Subscriptions are the provider's business, the same for every service.
        if let Some((service, verb)) = call.method.split_once('.') {
            if let (Some(svc), true) = (
                self.router.service(service),
                matches!(verb, "subscribe" | "unsubscribe"),
            ) {
                let outcome = if verb == "subscribe" {
                    event_filter(&call.method, svc.events(), call.params).and_then(|filter| {
                        let mut state = lock(&self.state);
                        state
                            .subscribers
                            .subscribe(service, caller.clone(), filter)?;
                        // Events follow the way the subscriber last asked for them.
                        if route.is_tunnel() {
                            state.tunnelled.insert(caller.clone());
                        } else {
                            state.tunnelled.remove(&caller);
                        }
                        Ok(Value::Bool(true))
                    })
                } else if !call.params.is_empty() {
                    Err(Error::new(
                        ErrorKind::BadParams,
                        format!("{} takes no parameters", call.method),
                    ))
                } else {
                    Ok(Value::Bool(
                        lock(&self.state).subscribers.unsubscribe(service, &caller),
                    ))
                };
                return self.reply(route, answer(from, id, outcome));
            }
        }
        let router = self.router.clone();
        let route = route.clone();
        let calls = self.calls.clone();
        tokio::spawn(async move {
            let Ok(_permit) = calls.acquire_owned().await else {
                return;
            };
            let ctx = CallContext { caller };
            let outcome = match router.resolve(&call.method) {
                Ok((service, verb)) => service.call(verb, call.params, &ctx).await,
                Err(e) => Err(e),
            };
            if route.send(answer(from, id, outcome)).is_err() {
                tracing::debug!("reply dropped: session or tunnel ended");
            }
        });
    }

    /// `access.subscribe` / `access.unsubscribe`: the owner's phone follows the audit log.
    fn on_access_subscription(
        &self,
        from: Jid,
        id: String,
        caller: FullJid,
        verb: &str,
        params: Vec<Value>,
        route: &Route,
    ) {
        let outcome = if self.access.is_none() || !route.is_tunnel() {
            Err(Error::new(
                ErrorKind::Forbidden,
                "the audit feed needs guest access and the end-to-end tunnel",
            ))
        } else {
            match verb {
                "subscribe" => {
                    event_filter("access.subscribe", &[AUDIT_EVENT], params).and_then(|filter| {
                        let mut state = lock(&self.state);
                        state
                            .subscribers
                            .subscribe(ACCESS_SERVICE, caller.clone(), filter)?;
                        state.tunnelled.insert(caller);
                        Ok(Value::Bool(true))
                    })
                }
                "unsubscribe" => Ok(Value::Bool(
                    lock(&self.state)
                        .subscribers
                        .unsubscribe(ACCESS_SERVICE, &caller),
                )),
                other => Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("no method access.{other}"),
                )),
            }
        };
        self.reply(route, answer(from, id, outcome));
    }

    /// Whether events may still go to `to`: devices of the network always; a guest only while
    /// its tunnel's key holds an active grant (an expired guest stops hearing at once).
    fn may_hear(&self, to: &FullJid) -> bool {
        if to.to_bare() == self.network {
            return true;
        }
        let (Some(guard), Some(e2e)) = (&self.access, &self.e2e) else {
            return false;
        };
        e2e.existing_tunnel(to)
            .is_some_and(|t| guard.admits(&to.to_bare(), &t.peer_fingerprint()))
    }

    fn fan_out(&self, notice: EventNotice) {
        let (subscribers, tunnelled) = {
            let state = lock(&self.state);
            (
                state.subscribers.for_event(&notice.service, &notice.name),
                state.tunnelled.clone(),
            )
        };
        if subscribers.is_empty() {
            return;
        }
        let payload = match notice.to_element() {
            Ok(payload) => payload,
            Err(e) => return tracing::warn!(error = %e, "event dropped: does not encode"),
        };
        for to in subscribers {
            if !self.may_hear(&to) {
                continue;
            }
            let through_tunnel = tunnelled.contains(&to);
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

/// The iq answering a call: result with a methodResponse (success or fault), or a stanza error for
/// refusals (unknown method, bad params, forbidden).
fn answer(to: Jid, id: String, outcome: Result<Value>) -> Iq {
    match outcome {
        Ok(value) => match xmlrpc::response_to_query(&MethodResponse::Success(value)) {
            Ok(query) => plumbing::result(Some(to), id, Some(query)),
            Err(e) => {
                // The service built a value no reader accepts: answer a fault, never that payload.
                tracing::warn!(error = %e, "service result does not encode");
                let message = format!("result does not encode: {e}");
                plumbing::result(Some(to), id, Some(xmlrpc::fault_to_query(500, &message)))
            }
        },
        Err(e) if e.kind() == ErrorKind::Fault => plumbing::result(
            Some(to),
            id,
            Some(xmlrpc::fault_to_query(
                e.fault_code().unwrap_or(0),
                e.message(),
            )),
        ),
        Err(e) if is_refusal(e.kind()) => plumbing::error(Some(to), id, stanza_error_for(&e)),
        Err(e) => {
            // An unexpected failure inside the service: a fault, so the caller learns it failed.
            tracing::warn!(error = %e, "service call failed");
            plumbing::result(
                Some(to),
                id,
                Some(xmlrpc::fault_to_query(500, &e.to_string())),
            )
        }
    }
}

/// The parameters of `<service>.subscribe`: none (every event) or one array naming the wanted events,
/// each of which the service must send.
fn event_filter(method: &str, known: &[&str], params: Vec<Value>) -> Result<EventFilter> {
    let bad = |why: String| Error::new(ErrorKind::BadParams, format!("{method}: {why}"));
    match params.as_slice() {
        [] => Ok(None),
        [Value::Array(names)] => {
            let mut wanted = BTreeSet::new();
            for name in names {
                let name = name
                    .as_str()
                    .ok_or_else(|| bad("event names are strings".into()))?;
                if !known.contains(&name) {
                    return Err(bad(format!("no event {name:?} (known: {known:?})")));
                }
                wanted.insert(name.to_owned());
            }
            if wanted.is_empty() {
                return Err(bad(
                    "an empty event list selects nothing; unsubscribe instead".into(),
                ));
            }
            Ok(Some(wanted))
        }
        _ => Err(bad("takes nothing or one array of event names".into())),
    }
}

fn is_refusal(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnknownMethod | ErrorKind::BadParams | ErrorKind::Forbidden
    )
}
