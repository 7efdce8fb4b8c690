//! The provider role: a device that offers services (a TV, a player, a recorder).
//!
//! It announces its services through presence caps, answers disco#info and Jabber-RPC calls from
//! devices of its own network, refuses everyone else with `forbidden` (Prosody delivers an iq to a
//! full JID without any subscription, so the provider itself must check every stanza), and sends
//! events to subscribers.
//!
//! Every inbound stanza goes the same way (DESIGN §1):
//!
//! 1. `caller.rs` classifies it **once**: an own device through its tunnel, an own device in clear,
//!    a guest (with the key of its tunnel), a stranger;
//! 2. `policy.rs` decides what that caller may ask: every allow/deny rule of the provider, iq
//!    requests, tunnels, events and access requests alike (the guest grants' scope table itself
//!    lives in [`crate::core::access`]);
//! 3. `dispatch.rs` routes what is allowed: plumbing (disco#info, ping), access management, or an
//!    RPC call, which the [`RpcRouter`] sends to its target and `calls.rs` runs under the in-flight
//!    bounds. `<service>.subscribe` / `unsubscribe` (served for every service,
//!    [`crate::core::rpc::EveryServiceVerbs`]) and the owner's audit feed (`access.*`) are routed
//!    services like the others (`subscription.rs`); `feed.rs` holds the subscriptions and sends the
//!    events.
//!
//! Imports run one way: `dispatch.rs` on top; `calls.rs`, `feed.rs`, `subscription.rs` below it;
//! `policy.rs`, `caller.rs`, `answer.rs`, `limits.rs` at the bottom.
//!
//! **It never sends a stanza to a JID that has not contacted it first** (spec §4): presence goes to
//! the server (no `to`), iq answers go to the requester (through the way it came),
//! and events go only to full JIDs that subscribed and are still online (`feed.rs`).
//!
//! With [`ProviderConfig::e2e`] set, calls that arrive through an end-to-end tunnel are answered
//! through it and events go to tunnel subscribers through it (never in clear, even if the tunnel
//! is down: the event is dropped). The provider never opens a tunnel itself, so the rule above
//! still holds: a tunnel exists only because the controller opened it.
//!
//! With [`ProviderConfig::access`] set, guests of other networks may call it too, but only through
//! a tunnel whose key an active grant names, and only the methods of the grant's scopes (DESIGN
//! §5). Owner devices manage the grants through their tunnel (`<owner/>`, `<grant/>`, `<revoke/>`,
//! `<acl/>`, `<audit/>`) and read the audit log as `access.audit` events after `access.subscribe`.
//!
//! Calls that carry a call id ([`crate::core::rpc::CallId`]) are remembered for a while
//! ([`ProviderLimits::call_memory`]): a controller's retry of a call gets the first answer and the
//! method runs once (`calls.rs`).
//!
//! Everything keyed by input from outside is bounded ([`ProviderLimits`]); a caller that hits a
//! bound gets a typed stanza error (`resource-constraint`) and the refusal is counted
//! ([`ProviderStats`]).

mod answer;
mod caller;
mod calls;
mod dispatch;
mod expiry;
mod feed;
mod limits;
mod media;
mod playlist;
mod policy;
mod subscription;

use crate::core::sync::Locked;
pub use crate::core::trust::PairingOutcome;
use crate::core::trust::Trust;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::access::{AccessGuard, AccessSettings, OwnerKeys};
use crate::core::discovery::disco_info_for;
use crate::core::e2e::settings::FAILURE_CAPACITY;
use crate::core::e2e::{E2eEndpoint, E2eSettings, TunnelFailure};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::lazy_broadcast::LazyBroadcast;
use crate::core::plumbing;
use crate::core::pubsub::{FetchLimits, Playlists, PlaylistsConfig, PubsubStats};
use crate::core::rpc::events::EventSink;
use crate::core::rpc::xmlrpc::Limits;
use crate::core::rpc::{RpcRouter, Service};
use crate::core::services::player;
use crate::core::session::{Session, SessionConfig};

pub use limits::{ProviderLimits, ProviderStats};
pub use media::{shared_item_uri, MediaPolicy, SharedItem, MPV_PSEUDO_PROTOCOLS};

/// The pseudo-service of the owner's audit feed (`access.subscribe`, events `access.audit`).
pub const ACCESS_SERVICE: &str = "access";
/// The event carrying one audit record.
pub const AUDIT_EVENT: &str = "audit";
/// Capacity of the pairing-outcome broadcast.
const PAIRING_CAPACITY: usize = 16;

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
    /// Which media URIs callers may make the player open (`player.play`, `player.enqueue`).
    pub media: MediaPolicy,
    /// Owner keys of other households whose playlists the player plays when a caller names one
    /// ([`crate::core::pubsub::playlist_uri`] in `player.play` / `player.enqueue`): the TV
    /// fetches the node and plays the entries these keys signed. The household's own playlists
    /// verify against the ACL's owner keys (with [`ProviderConfig::access`]). Default: none.
    pub playlist_owners: Vec<OwnerKeys>,
    /// The bounds on what callers may hold (calls in flight, subscriptions, audit records).
    pub limits: ProviderLimits,
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
            media: MediaPolicy::default(),
            playlist_owners: Vec::new(),
            limits: ProviderLimits::default(),
            rpc_limits: Limits::DEFAULT,
        }
    }
}

/// A running provider. Stops when [`Provider::stop`] is called or the value is dropped.
pub struct Provider {
    pairings: LazyBroadcast<PairingOutcome>,
    failures: LazyBroadcast<TunnelFailure>,
    session: Session,
    e2e: Option<E2eEndpoint>,
    access: Option<Arc<AccessGuard>>,
    subscriptions: Arc<Mutex<feed::Subscriptions>>,
    stats: Arc<limits::Counters>,
    /// The memories of recent calls, own devices' and guests' (for [`Provider::stats`]).
    call_logs: [calls::SharedCallLog; 2],
    /// Resolves playlist addresses for the player (its counters are [`Provider::playlist_stats`]).
    playlists: Playlists,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
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
        config.limits.validate()?;
        let subscriptions = Arc::new(Mutex::new(feed::Subscriptions::new(&config.limits)));
        let stats = Arc::new(limits::Counters::default());
        let network = config.session.jid.to_bare();
        let mut router = RpcRouter::with_limits(config.rpc_limits);
        // `<service>.subscribe` / `unsubscribe`: the provider's, the same for every service.
        router.serve_for_every_service(Arc::new(subscription::SubscriptionVerbs {
            network: network.clone(),
            subscriptions: subscriptions.clone(),
            stats: stats.clone(),
        }));
        let access = match (&config.access, &config.e2e) {
            (Some(settings), Some(_)) => Some(Arc::new(AccessGuard::open_with_audit_capacity(
                network.clone(),
                settings,
                config.limits.audit_records,
            )?)),
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "guest access needs the end-to-end tunnel (set ProviderConfig::e2e)",
                ))
            }
            (None, _) => None,
        };
        let policy = Arc::new(policy::Policy {
            network: network.clone(),
            require_tunnel: config.e2e.as_ref().is_some_and(|s| s.require_tunnel),
            access: access.clone(),
            media: config.media.clone(),
            stats: stats.clone(),
        });
        let playlists = Arc::new(std::sync::OnceLock::new());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        for service in services {
            // The player resolves playlist addresses itself (playlist.rs).
            let service: Arc<dyn Service> = if service.name() == player::SERVICE {
                Arc::new(playlist::PlaylistPlayer {
                    inner: service,
                    policy: policy.clone(),
                    access: access.clone(),
                    owners: config.playlist_owners.clone(),
                    playlists: playlists.clone(),
                })
            } else {
                service
            };
            service.bind_events(EventSink::new(service.name(), events_tx.clone()));
            router.add(service)?;
        }
        let mut features: Vec<&str> = router.services().map(|s| s.feature()).collect();
        if config.e2e.is_some() {
            // Hear at once when a device key of the network is retracted (revocation).
            features.push(crate::core::e2e::pubkey::NOTIFY_PUBKEY);
        }
        let info = disco_info_for(Some(&config.name), &features);
        if access.is_some() {
            // The audit feed is routed like any service (`access.subscribe`); it is not announced
            // in disco#info: only the owner's devices may use it, and they know it is there.
            router.add(Arc::new(subscription::AuditFeed))?;
        }
        let (session, inbound) = Session::connect(config.session).await?;
        let playlists = playlists.get_or_init(|| {
            Playlists::new(
                session.clone(),
                PlaylistsConfig {
                    // Never more entries than the queue holds.
                    fetch: FetchLimits {
                        max_entries: player::MAX_QUEUE_ITEMS,
                        ..FetchLimits::default()
                    },
                    ..PlaylistsConfig::default()
                },
            )
        });
        let playlists = playlists.clone();
        let (e2e, e2e_rx) = match &config.e2e {
            Some(settings) => {
                let admission = access.is_some().then(|| {
                    let policy = policy.clone();
                    let admit: crate::core::e2e::Admission =
                        Arc::new(move |jid, fp| policy.admits_tunnel(jid, fp));
                    admit
                });
                let (endpoint, rx) = settings.endpoint(session.clone(), admission);
                if let Some(guard) = &access {
                    let trust = endpoint.trust().clone();
                    let network = network.clone();
                    guard.watch_revocations(Arc::new(move |fp| trust.is_revoked(&network, fp)));
                }
                (Some(endpoint), Some(rx))
            }
            None => (None, None),
        };
        // Made on their first subscriber, as most apps listen to few of them.
        let pairings = LazyBroadcast::new(PAIRING_CAPACITY);
        let failures = LazyBroadcast::new(FAILURE_CAPACITY);
        let in_flight = calls::InFlight::new(&config.limits, stats.clone());
        let call_logs = in_flight.logs().map(Arc::clone);
        let task = tokio::spawn(
            dispatch::Dispatcher {
                pairings: pairings.clone(),
                failures: failures.clone(),
                session: session.clone(),
                e2e: e2e.clone(),
                access: access.clone(),
                policy: policy.clone(),
                network: network.clone(),
                router: Arc::new(router),
                caps_ver: plumbing::caps_ver(&info),
                info,
                feed: feed::Feed {
                    session: session.clone(),
                    e2e: e2e.clone(),
                    access: access.clone(),
                    policy,
                    subscriptions: subscriptions.clone(),
                },
                calls: in_flight,
                expiry: expiry::GuestExpiry::new(access.as_deref()),
            }
            .run(inbound, events_rx, e2e_rx),
        );
        Ok(Self {
            pairings,
            failures,
            session,
            e2e,
            access,
            subscriptions,
            stats,
            call_logs,
            playlists,
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

    /// The trust facet (pairing, trusted devices, revocation, the network password): `Config`
    /// error without the end-to-end tunnel.
    pub fn trust(&self) -> Result<Trust> {
        let e2e = self.e2e.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "the end-to-end tunnel is off (set ProviderConfig::e2e)",
            )
        })?;
        Ok(Trust::new(
            e2e,
            self.failures.clone(),
            Some(self.pairings.clone()),
        ))
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
        self.subscriptions.locked().len()
    }

    /// How often callers hit a bound or were refused by the media policy, and what the memory
    /// of recent calls holds and did, since the start.
    pub fn stats(&self) -> ProviderStats {
        let mut stats = self.stats.snapshot();
        for log in &self.call_logs {
            let log = log.locked().stats();
            stats.calls_remembered += log.entries;
            stats.calls_deduplicated += log.deduplicated;
            stats.calls_forgotten += log.forgotten;
        }
        stats
    }

    /// Playlist entries the player dropped while resolving playlist addresses (unsigned, badly
    /// signed, malformed, over the cap), by reason, since the start.
    pub fn playlist_stats(&self) -> PubsubStats {
        self.playlists.stats()
    }

    /// The device went to the foreground (`true`) or the background (a TV whose app is not
    /// shown): XEP-0352 client state and the keepalive, see [`Session::set_foreground`]. Calls
    /// are iq requests, which the server delivers at once either way.
    pub fn set_foreground(&self, foreground: bool) {
        self.session.set_foreground(foreground);
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
