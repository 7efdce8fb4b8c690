//! `player.play` / `player.enqueue` of a playlist address (spec §3.2: "Romeo may share playlists
//! … and create a new personal channel"): the TV resolves the node itself.
//!
//! A caller names a playlist with its [`PlaylistAddress`] URI where a media URI is expected. The
//! provider wraps its player service ([`PlaylistPlayer`]) and, for such a URI only, reads the
//! node through its own session (catch-up fetch, [`crate::core::pubsub::fetch`]), keeps the
//! entries signed by an owner key of the publishing household, and hands them to the player in
//! playlist order: `enqueue` appends them, `play` replaces the queue with them and starts the
//! first. Every other call goes to the player untouched.
//!
//! Why the TV and not the phone: the phone hands over a whole playlist in one call, and a guest,
//! who may not name arbitrary URIs, can still play a playlist the owner shared with his household
//! (row G8 of [`super::policy`]). The entries' URIs were signed by the household's owner, so they
//! are played like an own device's request (mpv's pseudo-protocols still refused, each skipped
//! entry counted in [`super::ProviderStats::media_refused`]); entries the server added or altered
//! are dropped by the signature check and counted in [`Provider::playlist_stats`](super::Provider::playlist_stats).
//!
//! Which households' playlists the TV plays: its own (the ACL's owner keys, when guest access is
//! on) and those whose owner keys the app configured ([`super::ProviderConfig::playlist_owners`]).
//! Any other is refused (`forbidden`): without keys nothing could be verified.

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use futures::FutureExt;
use xmpp_parsers::jid::BareJid;

use super::policy::Policy;
use crate::core::access::{AccessGuard, OwnerKeys, Scope};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::pubsub::{PlaylistAddress, Playlists};
use crate::core::rpc::events::EventSink;
use crate::core::rpc::xmlrpc::{Limits, Value};
use crate::core::rpc::{CallContext, Service};
use crate::core::services::player::{self, FAULT_INVALID_STATE};

/// The provider's player service, with playlist addresses resolved in front of it.
pub(super) struct PlaylistPlayer {
    pub(super) inner: Arc<dyn Service>,
    pub(super) policy: Arc<Policy>,
    pub(super) access: Option<Arc<AccessGuard>>,
    /// Owner keys of other households whose playlists this TV plays.
    pub(super) owners: Vec<OwnerKeys>,
    /// The provider's session's playlists (set once it is online; before, a playlist call is
    /// `NotConnected`, which cannot happen in practice: calls arrive only once it is).
    pub(super) playlists: Arc<OnceLock<Playlists>>,
}

impl PlaylistPlayer {
    /// The owner keys that verify `publisher`'s entries, if the TV has any.
    fn owners_for(&self, publisher: &BareJid) -> Option<OwnerKeys> {
        if publisher == &self.policy.network {
            if let Some(guard) = &self.access {
                return Some(guard.owner_keys());
            }
        }
        self.owners
            .iter()
            .find(|o| o.network() == publisher)
            .cloned()
    }

    async fn resolve(
        &self,
        verb: &str,
        address: PlaylistAddress,
        rest: &[Value],
        ctx: &CallContext,
    ) -> Result<Value> {
        let method = format!("{}.{verb}", player::SERVICE);
        // `play(uri)`, `enqueue(uri, nil)`: each entry brings its own title; one title for the
        // whole list would be a lie on all but one of them.
        let shape_ok = match verb {
            "play" => rest.is_empty(),
            _ => rest.is_empty() || matches!(rest, [Value::Nil]),
        };
        if !shape_ok {
            return Err(Error::new(
                ErrorKind::BadParams,
                format!("{method} of a playlist takes the playlist's URI only (title nil)"),
            ));
        }
        let playlists = self
            .playlists
            .get()
            .ok_or_else(|| Error::new(ErrorKind::NotConnected, "the provider is not online"))?;
        let owners = self.owners_for(&address.publisher).ok_or_else(|| {
            Error::new(
                ErrorKind::Forbidden,
                format!(
                    "no owner keys of {}: its playlists cannot be verified here",
                    address.publisher
                ),
            )
        })?;
        let caller = ctx.caller.to_bare();
        if caller != self.policy.network {
            // G8: the policy let the guest name only a playlist of this network; whether the
            // owner shared it with the guest's household is the node's configuration.
            let access = playlists.access(&address.name).await?;
            if !self
                .policy
                .guest_may_play_playlist(&caller, &address, &access)
            {
                return Err(self.policy.refuse_playlist(&ctx.caller, &method));
            }
        }
        let fetched = playlists
            .fetch(&address.publisher, &address.name, &owners)
            .await?;
        tracing::debug!(
            playlist = %address, entries = fetched.entries.len(), ignored = fetched.ignored,
            complete = fetched.complete, "resolved a playlist for the player"
        );
        let entries: Vec<(String, String)> = fetched
            .entries
            .into_iter()
            .filter(|e| self.policy.playlist_entry_playable(&e.entry.uri))
            .map(|e| (e.entry.uri, e.entry.title))
            .collect();
        if verb == "play" {
            if entries.is_empty() {
                return Err(Error::fault(
                    FAULT_INVALID_STATE,
                    format!("{address} has no playable entry"),
                ));
            }
            // Stopped and emptied first, so the queue is exactly the playlist; then `next`
            // starts its first entry (with nothing current, `next` starts the queue).
            self.inner.call("stop", vec![], ctx).await?;
            self.inner.call("clear_queue", vec![], ctx).await?;
            self.enqueue_all(entries, ctx).await?;
            return self.inner.call("next", vec![], ctx).await;
        }
        match self.enqueue_all(entries, ctx).await? {
            Some(queue) => Ok(queue),
            None => self.inner.call("queue", vec![], ctx).await,
        }
    }

    /// Appends `entries` in order; the last queue, `None` if there was nothing to append. A
    /// full queue ([`player::FAULT_QUEUE_FULL`]) stops the appending and is the answer, with what was
    /// appended before it left in place (as for single `enqueue` calls).
    async fn enqueue_all(
        &self,
        entries: Vec<(String, String)>,
        ctx: &CallContext,
    ) -> Result<Option<Value>> {
        let mut queue = None;
        for (uri, title) in entries {
            let params = vec![Value::String(uri), Value::String(title)];
            queue = Some(self.inner.call("enqueue", params, ctx).await?);
        }
        Ok(queue)
    }
}

impl Service for PlaylistPlayer {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn feature(&self) -> &str {
        self.inner.feature()
    }
    fn call<'a>(
        &'a self,
        verb: &'a str,
        params: Vec<Value>,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        if matches!(verb, "play" | "enqueue") {
            let address = params
                .first()
                .and_then(Value::as_str)
                .and_then(PlaylistAddress::parse);
            if let Some(address) = address {
                // `params[1..]` cannot panic: the address came from `params.first()`.
                return async move { self.resolve(verb, address, &params[1..], ctx).await }.boxed();
            }
        }
        self.inner.call(verb, params, ctx)
    }
    fn events(&self) -> &[&str] {
        self.inner.events()
    }
    fn verbs(&self) -> Vec<&str> {
        self.inner.verbs()
    }
    fn scope_of(&self, verb: &str) -> Option<Scope> {
        self.inner.scope_of(verb)
    }
    fn events_scope(&self) -> Option<Scope> {
        self.inner.events_scope()
    }
    fn bind_events(&self, sink: EventSink) {
        self.inner.bind_events(sink)
    }
    fn limits(&self) -> Option<Limits> {
        self.inner.limits()
    }
}
