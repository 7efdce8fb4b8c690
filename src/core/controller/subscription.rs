//! Event subscriptions of a controller: merged per (provider, service) — the provider holds the
//! union of the live subscriptions' filters — and released (narrowed or ended) when one goes.

use super::Controller;
use crate::core::sync::Locked;

use xmpp_parsers::jid::FullJid;

use crate::core::error::Result;
use crate::core::rpc::events::EventFilter;
use crate::core::rpc::xmlrpc::Value;

impl Controller {
    /// Subscribes to every event of `service` on `provider`. Events arrive on
    /// [`Controller::events`] while the returned [`Subscription`] lives; dropping it unsubscribes.
    pub async fn subscribe(&self, provider: &FullJid, service: &str) -> Result<Subscription> {
        self.subscribe_events(provider, service, None).await
    }

    /// Subscribes to the events of `service` named in `events` (`None`: all of them). Several
    /// subscriptions to one provider's service are merged: the provider sends the union.
    pub async fn subscribe_events(
        &self,
        provider: &FullJid,
        service: &str,
        events: Option<&[&str]>,
    ) -> Result<Subscription> {
        let key = (provider.clone(), service.to_owned());
        let filter: EventFilter = events.map(|names| names.iter().map(|n| n.to_string()).collect());
        let id = self
            .shared
            .next_subscription
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let union = {
            let mut subs = self.shared.subscriptions.locked();
            let entry = subs.entry(key.clone()).or_default();
            entry.push((id, filter));
            union_of(entry)
        };
        if let Err(e) = self
            .call(
                provider,
                &format!("{service}.subscribe"),
                subscribe_params(&union),
            )
            .await
        {
            let mut subs = self.shared.subscriptions.locked();
            if let Some(entry) = subs.get_mut(&key) {
                entry.retain(|(i, _)| *i != id);
                if entry.is_empty() {
                    subs.remove(&key);
                }
            }
            return Err(e);
        }
        Ok(Subscription {
            controller: Some(self.clone()),
            key,
            id,
            runtime: tokio::runtime::Handle::current(),
        })
    }
}

/// A live event subscription. Dropping it (or [`Subscription::cancel`]) unsubscribes.
pub struct Subscription {
    controller: Option<Controller>,
    key: (FullJid, String),
    id: u64,
    runtime: tokio::runtime::Handle,
}

/// What the provider must hold for these local subscriptions: `None` = every event.
pub(super) fn union_of(entries: &[(u64, EventFilter)]) -> EventFilter {
    let mut all = std::collections::BTreeSet::new();
    for (_, filter) in entries {
        match filter {
            None => return None,
            Some(names) => all.extend(names.iter().cloned()),
        }
    }
    Some(all)
}

/// The parameters of `<service>.subscribe` for `filter`.
pub(super) fn subscribe_params(filter: &EventFilter) -> Vec<Value> {
    match filter {
        None => vec![],
        Some(names) => vec![Value::Array(
            names.iter().map(|n| Value::String(n.clone())).collect(),
        )],
    }
}

/// What to tell the provider after a local subscription went away.
pub(super) enum Release {
    Nothing,
    Unsubscribe,
    Narrow(EventFilter),
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Subscription").field(&self.key).finish()
    }
}

impl Subscription {
    /// Unsubscribes now (or narrows the provider's selection to what other live subscriptions
    /// still want) and waits for the provider's answer.
    pub async fn cancel(mut self) -> Result<()> {
        match self.release() {
            Some((controller, provider, service, action)) => {
                apply_release(&controller, &provider, &service, action).await
            }
            None => Ok(()),
        }
    }

    /// Drops our entry; returns what to tell the provider.
    fn release(&mut self) -> Option<(Controller, FullJid, String, Release)> {
        let controller = self.controller.take()?;
        let action = {
            let mut subs = controller.shared.subscriptions.locked();
            match subs.get_mut(&self.key) {
                Some(entry) => {
                    let before = union_of(entry);
                    entry.retain(|(i, _)| *i != self.id);
                    if entry.is_empty() {
                        subs.remove(&self.key);
                        Release::Unsubscribe
                    } else {
                        let after = union_of(entry);
                        if after == before {
                            Release::Nothing
                        } else {
                            Release::Narrow(after)
                        }
                    }
                }
                None => Release::Nothing,
            }
        };
        Some((controller, self.key.0.clone(), self.key.1.clone(), action))
    }
}

pub(super) async fn apply_release(
    controller: &Controller,
    provider: &FullJid,
    service: &str,
    action: Release,
) -> Result<()> {
    match action {
        Release::Nothing => Ok(()),
        Release::Unsubscribe => controller
            .call(provider, &format!("{service}.unsubscribe"), vec![])
            .await
            .map(drop),
        Release::Narrow(filter) => controller
            .call(
                provider,
                &format!("{service}.subscribe"),
                subscribe_params(&filter),
            )
            .await
            .map(drop),
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((controller, provider, service, action)) = self.release() {
            self.runtime.spawn(async move {
                if let Err(e) = apply_release(&controller, &provider, &service, action).await {
                    tracing::debug!(%provider, error = %e, "unsubscribe on drop failed");
                }
            });
        }
    }
}
