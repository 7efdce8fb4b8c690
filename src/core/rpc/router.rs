//! The answering side: services register under their name, calls are routed by `<service>.<verb>`.
//!
//! A host may also serve a few verbs **for every service** the same way ([`EveryServiceVerbs`],
//! [`RpcRouter::serve_for_every_service`]): a provider's `<service>.subscribe` / `unsubscribe`.
//! [`RpcRouter::route`] is the one place that says where a method goes, either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use minidom::Element;
use xmpp_parsers::jid::FullJid;

use super::xmlrpc::{self, CodecError, Limits, RpcPayload, Value};
use crate::core::access::Scope;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc::events::EventSink;

/// Who is calling. Built by the provider after it checked that the caller may call at all.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller's full JID.
    pub caller: FullJid,
    /// Whether the call came out of an end-to-end tunnel: its answer, and the events it
    /// subscribes to, go back only that way.
    pub tunnel: bool,
}

/// A service a provider offers: a disco#info feature plus the methods behind it.
///
/// Implementations return [`ErrorKind::UnknownMethod`] for verbs they do not have and
/// [`ErrorKind::BadParams`] for parameters of the wrong shape; any other error is answered as an
/// XML-RPC fault.
pub trait Service: Send + Sync + 'static {
    /// The method prefix, e.g. `player` for `player.play`.
    fn name(&self) -> &str;
    /// The disco#info feature, e.g. `urn.xmpp.tmp.media.player`. Controllers list a provider's
    /// services by feature and take only the spec's player feature and
    /// `urn:xmpp:tmp:pmn:<name>:<version>` ones for services
    /// ([`is_service_feature`](crate::core::discovery::is_service_feature)).
    fn feature(&self) -> &str;
    /// Handles `<name>.<verb>`.
    fn call<'a>(
        &'a self,
        verb: &'a str,
        params: Vec<Value>,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>>;
    /// The names of the events the service sends (what `<name>.subscribe` may select). Empty means
    /// the service sends none.
    fn events(&self) -> &[&str] {
        &[]
    }
    /// The service's own verbs (for listings and tests; routing does not need them).
    fn verbs(&self) -> Vec<&str> {
        Vec::new()
    }
    /// The grant scope that admits a guest to `verb` (as its declaration says, see
    /// [`super::Method::SCOPE`]); `None`, the default: the household's own devices only.
    fn scope_of(&self, verb: &str) -> Option<Scope> {
        let _ = verb;
        None
    }
    /// The grant scope that admits a guest to the service's events (`subscribe`/`unsubscribe`);
    /// `None`, the default: the household's own devices only.
    fn events_scope(&self) -> Option<Scope> {
        None
    }
    /// Called once when the provider starts: where the service sends its events.
    fn bind_events(&self, sink: EventSink) {
        let _ = sink;
    }
    /// The decoding limits for calls to this service, if it needs other bounds than its router's
    /// (a library service taking long playlists, a remote control taking nothing but scalars).
    fn limits(&self) -> Option<Limits> {
        None
    }
}

/// Verbs the host serves for every registered service, the same way for all (a provider's
/// `<service>.subscribe` / `unsubscribe`: who hears which events is the provider's business, not
/// the service's). They take precedence over a service's own verbs of the same name.
pub trait EveryServiceVerbs: Send + Sync + 'static {
    /// The verbs served, e.g. `["subscribe", "unsubscribe"]`.
    fn verbs(&self) -> &[&str];
    /// Handles `<service>.<verb>` for the service the method named.
    fn call<'a>(
        &'a self,
        service: &'a Arc<dyn Service>,
        verb: &'a str,
        params: Vec<Value>,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>>;
}

/// Where a method goes ([`RpcRouter::route`]).
#[derive(Clone)]
pub enum Target {
    /// One of the service's own methods.
    Service {
        /// The service.
        service: Arc<dyn Service>,
        /// The verb it runs.
        verb: String,
    },
    /// A verb served for every service ([`EveryServiceVerbs`]), for the service named.
    EveryService {
        /// What serves the verb.
        verbs: Arc<dyn EveryServiceVerbs>,
        /// The service the method named.
        service: Arc<dyn Service>,
        /// The verb.
        verb: String,
    },
}

impl Target {
    /// The service the method named.
    pub fn service(&self) -> &Arc<dyn Service> {
        match self {
            Target::Service { service, .. } | Target::EveryService { service, .. } => service,
        }
    }

    /// The verb.
    pub fn verb(&self) -> &str {
        match self {
            Target::Service { verb, .. } | Target::EveryService { verb, .. } => verb,
        }
    }

    /// The grant scope a guest needs for this call: what the method's declaration says, or, for a
    /// verb served for every service (`subscribe`/`unsubscribe`), the service's events scope.
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Target::Service { service, verb } => service.scope_of(verb),
            Target::EveryService { service, .. } => service.events_scope(),
        }
    }

    /// Runs the call.
    pub fn call<'a>(
        &'a self,
        params: Vec<Value>,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        match self {
            Target::Service { service, verb } => service.call(verb, params, ctx),
            Target::EveryService {
                verbs,
                service,
                verb,
            } => verbs.call(service, verb, params, ctx),
        }
    }
}

/// Routes method names to services, and decodes their calls under the right [`Limits`].
#[derive(Default, Clone)]
pub struct RpcRouter {
    services: BTreeMap<String, Arc<dyn Service>>,
    every_service: Option<Arc<dyn EveryServiceVerbs>>,
    limits: Limits,
}

impl std::fmt::Debug for RpcRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcRouter")
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field(
                "every_service",
                &self.every_service.as_ref().map(|v| v.verbs().to_vec()),
            )
            .field("limits", &self.limits)
            .finish()
    }
}

impl RpcRouter {
    /// A router whose calls are decoded under `limits` (unless a service sets its own).
    pub fn with_limits(limits: Limits) -> Self {
        RpcRouter {
            services: BTreeMap::new(),
            every_service: None,
            limits,
        }
    }

    /// Sets the limits for services that do not set their own.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The router's limits ([`Limits::DEFAULT`] unless set).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The limits a call to `method` is decoded under: its service's own, else the router's.
    pub fn limits_for(&self, method: &str) -> Limits {
        method
            .split_once('.')
            .and_then(|(service, _)| self.services.get(service))
            .and_then(|service| service.limits())
            .unwrap_or(self.limits)
    }

    /// Parses a `<query xmlns='jabber:iq:rpc'>` under the limits of the service its method names.
    pub fn parse_query(&self, query: &Element) -> Result<RpcPayload, CodecError> {
        let limits = match xmlrpc::peek_method_name(query) {
            Some(method) => self.limits_for(&method),
            None => self.limits,
        };
        xmlrpc::parse_query(query, &limits)
    }

    /// Adds a service; a second service with the same name is a configuration error.
    pub fn add(&mut self, service: Arc<dyn Service>) -> Result<()> {
        let name = service.name().to_owned();
        if name.is_empty() || name.contains('.') {
            return Err(Error::new(
                ErrorKind::Config,
                format!("invalid service name {name:?}"),
            ));
        }
        if self.services.contains_key(&name) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("service {name} added twice"),
            ));
        }
        self.services.insert(name, service);
        Ok(())
    }

    /// The services, by name.
    pub fn services(&self) -> impl Iterator<Item = &Arc<dyn Service>> {
        self.services.values()
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Arc<dyn Service>> {
        self.services.get(name)
    }

    /// Serves `verbs` for every service, those added before and after (one set per router: a
    /// second call replaces the first).
    pub fn serve_for_every_service(&mut self, verbs: Arc<dyn EveryServiceVerbs>) {
        self.every_service = Some(verbs);
    }

    /// Where `method` goes: a verb served for every service, else the service's own; fails with
    /// `UnknownMethod` when no service has that name.
    pub fn route(&self, method: &str) -> Result<Target> {
        let (service, verb) = self.resolve(method)?;
        let service = service.clone();
        let verb = verb.to_owned();
        Ok(match &self.every_service {
            Some(verbs) if verbs.verbs().contains(&verb.as_str()) => Target::EveryService {
                verbs: verbs.clone(),
                service,
                verb,
            },
            _ => Target::Service { service, verb },
        })
    }

    /// The grant scope a guest needs for `method`: what the method's declaration says, or, for a
    /// verb served for every service (`subscribe`/`unsubscribe`), the service's events scope.
    /// `None` — the household's own devices only — for anything else, unknown methods included.
    pub fn scope_of(&self, method: &str) -> Option<Scope> {
        self.route(method).ok()?.scope()
    }

    /// Splits `player.play` into the service and the verb, or fails with `UnknownMethod`. Knows
    /// only the services' own verbs; [`RpcRouter::route`] knows the verbs served for every
    /// service too.
    pub fn resolve<'m>(&self, method: &'m str) -> Result<(&Arc<dyn Service>, &'m str)> {
        let unknown = || Error::new(ErrorKind::UnknownMethod, format!("no method {method}"));
        let (service, verb) = method.split_once('.').ok_or_else(unknown)?;
        let service = self.services.get(service).ok_or_else(unknown)?;
        Ok((service, verb))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rpc::xmlrpc::{call_to_query, MethodCall};

    struct Svc {
        name: &'static str,
        limits: Option<Limits>,
    }

    impl Service for Svc {
        fn name(&self) -> &str {
            self.name
        }
        fn feature(&self) -> &str {
            "urn:test:svc"
        }
        fn call<'a>(
            &'a self,
            _verb: &'a str,
            _params: Vec<Value>,
            _ctx: &'a CallContext,
        ) -> BoxFuture<'a, Result<Value>> {
            Box::pin(async { Ok(Value::Nil) })
        }
        fn limits(&self) -> Option<Limits> {
            self.limits
        }
    }

    fn call(method: &str, items: usize) -> Element {
        let params = vec![Value::Array(vec![Value::from(1); items])];
        match call_to_query(&MethodCall::new(method, params)) {
            Ok(el) => el,
            Err(e) => panic!("encodes: {e}"),
        }
    }

    #[test]
    fn calls_are_decoded_under_the_router_or_service_limits() {
        let tight = Limits {
            max_nodes: 50,
            ..Limits::DEFAULT
        };
        let roomy = Limits {
            max_nodes: 5_000,
            ..Limits::DEFAULT
        };
        assert_eq!(RpcRouter::default().limits(), Limits::DEFAULT);
        let mut router = RpcRouter::with_limits(tight);
        router
            .add(Arc::new(Svc {
                name: "plain",
                limits: None,
            }))
            .expect("add");
        router
            .add(Arc::new(Svc {
                name: "library",
                limits: Some(roomy),
            }))
            .expect("add");
        assert_eq!(router.limits(), tight);
        assert_eq!(router.limits_for("plain.get"), tight);
        assert_eq!(router.limits_for("library.add"), roomy);
        assert_eq!(router.limits_for("nosuch.add"), tight);

        // 100 items: about 300 elements, over the router's 50, under the library's 5 000.
        assert_eq!(
            router.parse_query(&call("plain.get", 100)),
            Err(CodecError::TooLarge(xmlrpc::LimitKind::Nodes))
        );
        assert!(matches!(
            router.parse_query(&call("library.add", 100)),
            Ok(RpcPayload::Call(_))
        ));
        // New router limits reach the services without their own.
        router.set_limits(roomy);
        assert!(router.parse_query(&call("plain.get", 100)).is_ok());
        assert_eq!(
            xmlrpc::peek_method_name(&call(" plain.get ", 0)).as_deref(),
            Some("plain.get")
        );
    }

    struct Subscriptions;

    impl EveryServiceVerbs for Subscriptions {
        fn verbs(&self) -> &[&str] {
            &["subscribe", "unsubscribe"]
        }
        fn call<'a>(
            &'a self,
            service: &'a Arc<dyn Service>,
            verb: &'a str,
            _params: Vec<Value>,
            _ctx: &'a CallContext,
        ) -> BoxFuture<'a, Result<Value>> {
            let answer = format!("{verb} to {}", service.name());
            Box::pin(async move { Ok(Value::String(answer)) })
        }
    }

    #[test]
    fn verbs_served_for_every_service_take_precedence_and_name_the_service() {
        let mut router = RpcRouter::default();
        router
            .add(Arc::new(Svc {
                name: "player",
                limits: None,
            }))
            .expect("add");
        router.serve_for_every_service(Arc::new(Subscriptions));
        let ctx = CallContext {
            caller: "home@home.test/phone".parse().expect("jid"),
            tunnel: true,
        };
        let sub = router.route("player.subscribe").expect("routed");
        assert!(matches!(sub, Target::EveryService { .. }));
        assert_eq!((sub.service().name(), sub.verb()), ("player", "subscribe"));
        let answer = futures::FutureExt::now_or_never(sub.call(vec![], &ctx));
        assert_eq!(
            answer.and_then(|a| a.ok()),
            Some(Value::String("subscribe to player".into()))
        );
        // The service's own verbs still go to the service; unknown services stay unknown.
        let play = router.route("player.play").expect("routed");
        assert!(matches!(play, Target::Service { .. }));
        let unknown = router.route("nosuch.subscribe").err().map(|e| e.kind());
        assert_eq!(unknown, Some(ErrorKind::UnknownMethod));
    }
}
