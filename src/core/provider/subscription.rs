//! `<service>.subscribe` / `<service>.unsubscribe` for every service, served by the provider
//! ([`SubscriptionVerbs`], routed by the router for every registered service), and the owner's
//! audit feed as a routed service of its own ([`AuditFeed`], `access.*`).
//!
//! Who may call them is the policy's to say (rows O5, G3 of [`super::policy`]); what a caller may
//! hold is bounded here through [`Subscriptions`] (a full table is refused like any bound hit).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use xmpp_parsers::jid::BareJid;

use super::feed::Subscriptions;
use super::limits::Counters;
use super::{ACCESS_SERVICE, AUDIT_EVENT};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc::events::EventFilter;
use crate::core::rpc::xmlrpc::Value;
use crate::core::rpc::EveryServiceVerbs;
use crate::core::rpc::{CallContext, Service};
use crate::core::sync::Locked;

/// The verbs served for every service.
pub(super) const VERBS: &[&str] = &["subscribe", "unsubscribe"];

/// `<service>.subscribe` (with no parameters: every event; with one array: those events) and
/// `<service>.unsubscribe`, for every service (`access` included). A subscription the tables have
/// no room for is refused with [`ErrorKind::ProviderUnavailable`], which the provider answers
/// `resource-constraint` like every bound hit (see [`super::calls::run_at_once`]).
pub(super) struct SubscriptionVerbs {
    /// This provider's network: everyone else who got this far is a guest.
    pub(super) network: BareJid,
    /// Who hears what.
    pub(super) subscriptions: Arc<Mutex<Subscriptions>>,
    /// Where refused subscriptions are counted.
    pub(super) stats: Arc<Counters>,
}

impl EveryServiceVerbs for SubscriptionVerbs {
    fn verbs(&self) -> &[&str] {
        VERBS
    }

    fn call<'a>(
        &'a self,
        service: &'a Arc<dyn Service>,
        verb: &'a str,
        params: Vec<Value>,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        // Only the provider's tables are touched: ready at once.
        let answer = self.serve(service, verb, params, ctx);
        async move { answer }.boxed()
    }
}

impl SubscriptionVerbs {
    fn serve(
        &self,
        service: &Arc<dyn Service>,
        verb: &str,
        params: Vec<Value>,
        ctx: &CallContext,
    ) -> Result<Value> {
        let name = service.name();
        let method = format!("{name}.{verb}");
        let full = &ctx.caller;
        if verb == "unsubscribe" {
            if !params.is_empty() {
                return Err(Error::new(
                    ErrorKind::BadParams,
                    format!("{method} takes no parameters"),
                ));
            }
            let had = self.subscriptions.locked().unsubscribe(name, full);
            return Ok(Value::Bool(had));
        }
        let filter = event_filter(&method, service.events(), params)?;
        // The policy let only the household and guests this far.
        let guest = full.to_bare() != self.network;
        let taken =
            self.subscriptions
                .locked()
                .subscribe(name, full.clone(), filter, ctx.tunnel, guest);
        match taken {
            Ok(()) => Ok(Value::Bool(true)),
            Err(full_because) => {
                Counters::bump(&self.stats.subscriptions_refused);
                let why = full_because.text();
                tracing::info!(%full, service = name, why, "subscription refused");
                Err(Error::new(ErrorKind::ProviderUnavailable, why))
            }
        }
    }
}

/// The owner's audit feed as a routed service: `access.subscribe` / `access.unsubscribe` are
/// handled like every service's, and its only event is `audit` (one record each). Registered only
/// when the provider takes guests; the policy lets only own devices through the tunnel reach it.
pub(super) struct AuditFeed;

impl Service for AuditFeed {
    fn name(&self) -> &str {
        ACCESS_SERVICE
    }

    fn feature(&self) -> &str {
        // Never announced (see Provider::start); the access namespace is its closest name.
        crate::core::access::NS_ACCESS
    }

    fn call<'a>(
        &'a self,
        verb: &'a str,
        _params: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        // The log itself is read with the `<audit/>` management request; `access.subscribe` and
        // `unsubscribe` are the verbs served for every service (SubscriptionVerbs).
        async move {
            Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("no method {ACCESS_SERVICE}.{verb}"),
            ))
        }
        .boxed()
    }

    fn events(&self) -> &[&str] {
        &[AUDIT_EVENT]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_name_known_events_only() {
        let known = ["state-changed", "position"];
        assert_eq!(
            event_filter("player.subscribe", &known, vec![]).ok(),
            Some(None)
        );
        let one = vec![Value::Array(vec![Value::String("position".into())])];
        assert!(event_filter("player.subscribe", &known, one).is_ok_and(|f| f.is_some()));
        for bad in [
            vec![Value::Array(vec![])],
            vec![Value::Array(vec![Value::String("x".into())])],
            vec![Value::Int(1)],
        ] {
            let e = event_filter("player.subscribe", &known, bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadParams);
        }
    }

    #[test]
    fn subscription_verbs_hold_guests_to_their_quota_and_say_when_full() {
        use super::super::limits::ProviderLimits;
        let limits = ProviderLimits {
            subscriptions_per_guest: 1,
            ..ProviderLimits::default()
        };
        let verbs = SubscriptionVerbs {
            network: "home@home.test".parse().expect("jid"),
            subscriptions: Arc::new(Mutex::new(Subscriptions::new(&limits))),
            stats: Arc::new(Counters::default()),
        };
        let audit: Arc<dyn Service> = Arc::new(AuditFeed);
        let ctx = |jid: &str| CallContext {
            caller: jid.parse().expect("jid"),
            tunnel: true,
        };
        let call = |verb: &str, params: Vec<Value>, who: &str| {
            verbs.serve(&audit, verb, params, &ctx(who))
        };
        let romeo = "romeo@friend.test/a";
        assert_eq!(
            call("subscribe", vec![], romeo).ok(),
            Some(Value::Bool(true))
        );
        // A second device of the same guest network: over its quota, a bound hit.
        let full = call("subscribe", vec![], "romeo@friend.test/b").err();
        assert_eq!(full.map(|e| e.kind()), Some(ErrorKind::ProviderUnavailable));
        assert_eq!(verbs.stats.snapshot().subscriptions_refused, 1);
        // The household is not held to a guest's quota.
        for device in ["home@home.test/a", "home@home.test/b"] {
            assert_eq!(
                call("subscribe", vec![], device).ok(),
                Some(Value::Bool(true))
            );
        }
        assert_eq!(
            call("unsubscribe", vec![], romeo).ok(),
            Some(Value::Bool(true))
        );
        assert_eq!(
            call("unsubscribe", vec![], romeo).ok(),
            Some(Value::Bool(false))
        );
        let bad = call("unsubscribe", vec![Value::Int(1)], romeo).err();
        assert_eq!(bad.map(|e| e.kind()), Some(ErrorKind::BadParams));
        assert_eq!(verbs.subscriptions.locked().len(), 2);
    }
}
