//! Who may ask what: **every allow/deny rule of the provider, here** — [`Policy::decide`] for
//! every iq request (the table below), and three small questions outside iq requests (the second
//! table): who may open a tunnel, who may still hear events, whose access requests are recorded.
//! Nothing else in the provider refuses anyone; other modules only bound what an allowed caller
//! may hold (`limits.rs`, `calls.rs`, `feed.rs`).
//!
//! The dispatcher asks twice per RPC: once for [`Request::Rpc`] (may this caller call at all, this
//! way?) before it reads the payload — a stranger's malformed call is `forbidden`, not
//! `bad-request` — and once for [`Request::Call`] with the method, its parameters and the grant
//! scope the method declares (`method!(…, scope = Playback)` in `crate::core::services`; the
//! router reports it). Whether a guest's grant holds that scope is the ACL's judgement (row G2
//! below); everything else is here.
//!
//! | row | caller | request | decision |
//! |-----|--------|---------|----------|
//! | S1  | no `from` (our server) | anything | `service-unavailable` |
//! | S2  | our server's domain | iq get (disco#info: caps for PEP notifications, ping) | allow |
//! | S3  | our server's domain | anything else | `service-unavailable` |
//! | M1  | anyone | access management, provider takes no guests | `forbidden` |
//! | M2  | guest, stranger | access management | `forbidden` |
//! | M3  | own device in clear | access management | `forbidden` (tunnel required) |
//! | M4  | own device, tunnel | access management | allow |
//! | O1  | own device | iq get (disco#info, ping, other) | allow (plumbing answers) |
//! | O2  | own device | other iq set | `service-unavailable` |
//! | O3  | own device in clear, tunnel required | RPC | `forbidden` |
//! | O4  | own device | RPC | allow |
//! | O5  | own device, clear or no guest access | `access.*` (audit feed) | `forbidden` |
//! | O6  | own device | `player.play`/`enqueue` of an mpv pseudo-protocol not allowed | `forbidden` |
//! | O7  | own device | any other call | allow |
//! | X1  | stranger, provider takes no guests | anything | `forbidden` |
//! | X2  | stranger, guest in clear | RPC | `forbidden` (tunnel required) |
//! | X3  | stranger | anything else | `forbidden` |
//! | G1  | guest, tunnel | RPC | allow |
//! | G2  | guest | call the ACL refuses (no grant, revoked, wrong device, expired, out of scope) | `forbidden` |
//! | G3  | guest | `access.*` | `forbidden` |
//! | G4  | guest | `player.play`/`enqueue` of anything but the item shared with it, a playlist of this network or an allowed scheme | `forbidden` |
//! | G5  | guest | any other call the ACL allows | allow |
//! | G6  | guest with an active grant | iq get | allow (plumbing answers) |
//! | G7  | guest | anything else | `forbidden` |
//! | G8  | guest | a playlist of this network (G4 let it through), once its node is read | played only if its access model is open or names the guest's network; else `forbidden` |
//! | P1  | anyone allowed to play a playlist | an entry (owner-signed) of an mpv pseudo-protocol not allowed | entry skipped, counted |
//!
//! And outside iq requests ([`Policy::admits_tunnel`], [`Policy::may_hear`],
//! [`Policy::takes_access_request`]):
//!
//! | row | who | asks | decision |
//! |-----|-----|------|----------|
//! | T1  | a device of another network | an end-to-end tunnel | accepted only while an active grant names its key (own devices: pairing, in the e2e trust store) |
//! | E1  | own device | events it subscribed to | sent |
//! | E2  | guest | events it subscribed to | sent only while its tunnel's key holds an active grant (an expired guest stops hearing at once) |
//! | R1  | own device | an access request message | ignored (owners approve, they do not ask) |
//! | R2  | anyone else, provider takes guests | an access request message | recorded in the audit log, never answered (the owner decides, elsewhere) |
//!
//! Refusals of calls go into the audit log with their reason (the ACL's rows by the ACL).
//!
//! G8 and P1 are asked by `playlist.rs` while it resolves a playlist (the node's configuration
//! and entries are known only once read); the rules themselves are here.

use std::sync::Arc;

use xmpp_parsers::jid::{BareJid, FullJid};

use super::caller::Caller;
use super::limits::Counters;
use super::media::{MediaPolicy, SharedItem};
use super::ACCESS_SERVICE;
use crate::core::access::{self, AccessGuard, DeviceFingerprint, Scope};
use crate::core::error::{Error, ErrorKind};
use crate::core::pubsub::{Access, PlaylistAddress};
use crate::core::rpc::xmlrpc::Value;
use crate::core::services::player;

/// What a caller asks for, as far as the policy cares.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request<'a> {
    /// An iq get that is not access management: disco#info, ping, or anything (the plumbing
    /// answers `service-unavailable` for what it does not know).
    Get,
    /// An iq set that is neither a call nor access management.
    OtherSet,
    /// Access management (`urn:xmpp:tmp:pmn:access:0`), get or set.
    Manage,
    /// A Jabber-RPC query, not read yet: may this caller call at all, this way?
    Rpc,
    /// A call, read: `method` with `params`.
    Call {
        /// `<service>.<verb>`.
        method: &'a str,
        /// Its parameters.
        params: &'a [Value],
        /// The grant scope the method declares (the router's
        /// [`scope_of`](crate::core::rpc::RpcRouter::scope_of)); `None`: closed to guests.
        scope: Option<Scope>,
    },
}

/// What the provider does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Go ahead.
    Allow,
    /// Not something this provider serves: `service-unavailable`.
    Unsupported,
    /// `forbidden`, with the reason the caller reads.
    Forbid(String),
}

fn forbid(text: &str) -> Decision {
    Decision::Forbid(text.to_owned())
}

const TUNNEL_REQUIRED: &str = "end-to-end tunnel required";

/// The provider's rules and what they need to know.
pub(crate) struct Policy {
    /// This provider's network: its devices are the household.
    pub(crate) network: BareJid,
    /// Refuse plaintext RPC from the network (see [`crate::core::e2e::E2eSettings::require_tunnel`]).
    pub(crate) require_tunnel: bool,
    /// The ACL, when the provider takes guests.
    pub(crate) access: Option<Arc<AccessGuard>>,
    /// Which media URIs may be played.
    pub(crate) media: MediaPolicy,
    /// Where media refusals are counted.
    pub(crate) stats: Arc<Counters>,
}

impl Policy {
    /// The decision for `request` from `caller`. Records refused calls in the audit log.
    pub(crate) fn decide(&self, caller: &Caller, request: &Request<'_>) -> Decision {
        use Caller::*;
        use Request::*;
        match (caller, request) {
            (Server, _) => Decision::Unsupported,           // S1
            (OwnServer { .. }, Get) => Decision::Allow,     // S2
            (OwnServer { .. }, _) => Decision::Unsupported, // S3
            (_, Manage) if self.access.is_none() => forbid("this provider takes no guests"), // M1
            (Guest { .. } | Stranger { .. }, Manage) => {
                forbid("only devices of this network manage access") // M2
            }
            (OwnDevicePlain { .. }, Manage) => forbid(TUNNEL_REQUIRED), // M3
            (OwnDeviceTunnel { .. }, Manage) => Decision::Allow,        // M4
            (OwnDeviceTunnel { .. } | OwnDevicePlain { .. }, Get) => Decision::Allow, // O1
            (OwnDeviceTunnel { .. } | OwnDevicePlain { .. }, OtherSet) => Decision::Unsupported, // O2
            (OwnDevicePlain { .. }, Rpc) if self.require_tunnel => forbid(TUNNEL_REQUIRED), // O3
            (OwnDeviceTunnel { .. } | OwnDevicePlain { .. }, Rpc) => Decision::Allow,       // O4
            (OwnDeviceTunnel { .. } | OwnDevicePlain { .. }, Call { method, params, .. }) => {
                self.own_call(caller, method, params) // O5–O7
            }
            (Stranger { .. }, _) if self.access.is_none() => {
                forbid("not a device of this network") // X1
            }
            (Stranger { .. } | Guest { tunnel: false, .. }, Rpc) => forbid(TUNNEL_REQUIRED), // X2
            (Stranger { .. }, _) => forbid("no access granted"),                             // X3
            (Guest { tunnel: true, .. }, Rpc) => Decision::Allow,                            // G1
            (
                Guest { bare, key, .. },
                Call {
                    method,
                    params,
                    scope,
                },
            ) => {
                self.guest_call(caller, bare, key.as_ref(), method, *scope, params)
                // G2–G5
            }
            (Guest { bare, .. }, Get)
                if self.access.as_ref().is_some_and(|g| g.knows_guest(bare)) =>
            {
                Decision::Allow // G6
            }
            (Guest { .. }, _) => forbid("no access granted"), // G7
        }
    }

    /// T1: whether the tunnel a device of `network` (not ours) opens with key `key` is accepted.
    pub(crate) fn admits_tunnel(&self, network: &BareJid, key: &DeviceFingerprint) -> bool {
        self.access.as_ref().is_some_and(|g| g.admits(network, key))
    }

    /// E1/E2: whether events may still go to subscriber `to`; `key` tells the key of its tunnel
    /// (if one is up), asked only for guests.
    pub(crate) fn may_hear(
        &self,
        to: &FullJid,
        key: impl FnOnce() -> Option<DeviceFingerprint>,
    ) -> bool {
        let bare = to.to_bare();
        if bare == self.network {
            return true; // E1
        }
        // E2
        match (&self.access, key()) {
            (Some(guard), Some(key)) => guard.admits(&bare, &key),
            _ => false,
        }
    }

    /// R1/R2: whether an access request from `from` goes into the audit log.
    pub(crate) fn takes_access_request(&self, from: &BareJid) -> bool {
        self.access.is_some() && from != &self.network
    }

    fn own_call(&self, caller: &Caller, method: &str, params: &[Value]) -> Decision {
        if service_of(method) == ACCESS_SERVICE
            && (self.access.is_none() || !matches!(caller, Caller::OwnDeviceTunnel { .. }))
        {
            // O5: the audit log is the owner's, and only through the tunnel.
            return forbid("the audit feed needs guest access and the end-to-end tunnel");
        }
        if let Some(uri) = media_uri(method, params) {
            if self.media.is_forbidden_pseudo(uri) {
                // O6
                let key = match caller {
                    Caller::OwnDeviceTunnel { key, .. } => key.as_ref(),
                    _ => None,
                };
                return self.refuse_media(caller, key, method, "media-pseudo-protocol");
            }
        }
        Decision::Allow // O7
    }

    fn guest_call(
        &self,
        caller: &Caller,
        bare: &BareJid,
        key: Option<&DeviceFingerprint>,
        method: &str,
        scope: Option<Scope>,
        params: &[Value],
    ) -> Decision {
        let (Some(guard), Some(full)) = (&self.access, caller.full()) else {
            return forbid("no access granted");
        };
        // G2: the declared scope in the grant, validity and device, by the ACL (which audits the use or
        // the refusal).
        let item = params.first().and_then(Value::as_str);
        if let access::Decision::Deny(reason) = guard.check(&full, key, method, scope, item) {
            tracing::info!(%full, method, reason = reason.as_str(), "guest call refused");
            return Decision::Forbid(format!("access denied: {}", reason.as_str()));
        }
        if service_of(method) == ACCESS_SERVICE {
            // G3: never in a scope today; refused here too so that a future scope cannot open it.
            return forbid("the audit feed is the owner's");
        }
        if let Some(uri) = media_uri(method, params) {
            if !self.guest_may_play(guard, bare, key, uri) {
                return self.refuse_media(caller, key, method, "media-not-shared");
                // G4
            }
        }
        Decision::Allow // G5
    }

    /// Whether a guest may make the player open `uri` (see [`super::media`]).
    fn guest_may_play(
        &self,
        guard: &AccessGuard,
        guest: &BareJid,
        key: Option<&DeviceFingerprint>,
        uri: &str,
    ) -> bool {
        if let Some(item) = SharedItem::parse(uri) {
            let library = item.library.to_bare();
            // The film the guest brought, from a library of its own network (which serves the TV
            // only what it shared), or the one item of ours its grant names.
            return &library == guest
                || (library == self.network && guard.shares_item(guest, key, &item.id));
        }
        if let Some(playlist) = PlaylistAddress::parse(uri) {
            // A playlist of this network: whether it is shared with this guest is G8, decided
            // once its node is read. Another household's is not the owner's to share.
            return playlist.publisher == self.network;
        }
        self.media.guest_scheme_allowed(uri) && !self.media.is_forbidden_pseudo(uri)
    }

    /// G8: whether guest `guest` may play `playlist`, whose node the server configured with
    /// `access`. Only the household's own playlists, and only those it opened to everyone or to
    /// the guest's network. (The server keeps the node's configuration, so it could widen it; the
    /// entries still verify against the owner keys, so it cannot make the TV play anything the
    /// owner did not sign.)
    pub(crate) fn guest_may_play_playlist(
        &self,
        guest: &BareJid,
        playlist: &PlaylistAddress,
        access: &Access,
    ) -> bool {
        playlist.publisher == self.network
            && match access {
                Access::Open => true,
                Access::Friends(friends) => friends.contains(guest),
                Access::OwnNetwork => false,
            }
    }

    /// G8's refusal: counted, audited, `forbidden`.
    pub(crate) fn refuse_playlist(&self, caller: &FullJid, method: &str) -> Error {
        const REASON: &str = "playlist-not-shared";
        Counters::bump(&self.stats.media_refused);
        if let Some(guard) = &self.access {
            guard.record_refusal(caller, None, method, REASON);
        }
        tracing::info!(%caller, method, "playlist refused: not shared with the guest");
        Error::new(ErrorKind::Forbidden, format!("media URI refused: {REASON}"))
    }

    /// P1: whether an owner-signed playlist entry's `uri` may be played; a refusal is counted.
    pub(crate) fn playlist_entry_playable(&self, uri: &str) -> bool {
        if self.media.is_forbidden_pseudo(uri) {
            Counters::bump(&self.stats.media_refused);
            tracing::info!(uri, "playlist entry skipped: an mpv pseudo-protocol");
            return false;
        }
        true
    }

    fn refuse_media(
        &self,
        caller: &Caller,
        key: Option<&DeviceFingerprint>,
        method: &str,
        reason: &str,
    ) -> Decision {
        Counters::bump(&self.stats.media_refused);
        if let (Some(guard), Some(full)) = (&self.access, caller.full()) {
            guard.record_refusal(&full, key, method, reason);
        }
        tracing::info!(caller = ?caller.jid(), method, reason, "media URI refused");
        Decision::Forbid(format!("media URI refused: {reason}"))
    }
}

fn service_of(method: &str) -> &str {
    method
        .split_once('.')
        .map_or(method, |(service, _)| service)
}

/// The URI a call asks the player to open, if it is one of those calls and names one.
fn media_uri<'a>(method: &str, params: &'a [Value]) -> Option<&'a str> {
    let (service, verb) = method.split_once('.')?;
    if service != player::SERVICE || !matches!(verb, "play" | "enqueue") {
        return None;
    }
    // Wrong shapes are the service's to refuse (`bad-request`).
    params.first().and_then(Value::as_str)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
