//! Typed services, declared once and used by both ends.
//!
//! A service is a [`ServiceSpec`] (method prefix, disco#info feature, event names), a set of
//! [`Method`]s (verb, parameter tuple, result type) and a set of [`Event`]s (name, payload type).
//! Declaring a method once (the `method!` macro) gives the provider's route ([`TypedService::handle`]),
//! the controller's typed call ([`super::Remote::call`]) and the name the access rules use, so a
//! method cannot be called or answered with the wrong shape: parameters are a Rust tuple encoded
//! to XML-RPC with serde (`(String,)` is one string parameter, `()` none), decoded with an exact
//! arity check on the provider (→ `bad-request`), and results are decoded on the controller
//! (→ `Protocol` error when a peer answers something else).

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, OnceLock};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::xmlrpc::{from_value, to_value, Value};
use super::{CallContext, Service};
use crate::core::access::Scope;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc::events::{EventNotice, EventSink};
use crate::core::sync::Locked;

/// What identifies a service on the wire.
pub trait ServiceSpec: Send + Sync + 'static {
    /// The method prefix (`player` in `player.play`).
    const NAME: &'static str;
    /// The disco#info feature announced by providers of this service.
    const FEATURE: &'static str;
    /// The names of the events the service sends.
    const EVENTS: &'static [&'static str];
    /// The grant scope that admits a guest to the service's events (`<name>.subscribe` /
    /// `unsubscribe`); `None`: the household's own devices only.
    const EVENTS_SCOPE: Option<Scope> = None;
}

/// One method of a service: `<Service::NAME>.<VERB>(Params) -> Output`.
pub trait Method: Send + Sync + 'static {
    /// The service the method belongs to.
    type Service: ServiceSpec;
    /// The verb (`play`).
    const VERB: &'static str;
    /// The parameters as a tuple (`(String,)`, `()` for none); each element is one XML-RPC param.
    type Params: Serialize + DeserializeOwned + Send + 'static;
    /// The result.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The grant scope that admits a guest to this method (`method!(…, scope = Playback)`);
    /// `None`, the default: the household's own devices only, so a new method is closed to
    /// guests until its declaration opens it on purpose.
    const SCOPE: Option<Scope> = None;
}

/// One event of a service; its payload travels as the event's single parameter.
pub trait Event: Send + Sync + 'static {
    /// The service that sends it.
    type Service: ServiceSpec;
    /// The event name (`state-changed`).
    const NAME: &'static str;
    /// The payload.
    type Payload: Serialize + DeserializeOwned + Send + 'static;
}

/// `<service>.<verb>` of `M`.
pub fn method_name<M: Method>() -> String {
    format!("{}.{}", M::Service::NAME, M::VERB)
}

/// Encodes `M`'s parameters as the XML-RPC parameter list.
pub fn encode_params<M: Method>(params: &M::Params) -> Result<Vec<Value>> {
    match to_value(params) {
        Ok(Value::Array(values)) => Ok(values),
        Ok(Value::Nil) => Ok(vec![]),
        Ok(one) => Ok(vec![one]),
        Err(e) => Err(Error::new(
            ErrorKind::BadParams,
            format!("{}: {e}", method_name::<M>()),
        )),
    }
}

/// Decodes `M`'s parameters; a wrong arity or type is [`ErrorKind::BadParams`].
pub fn decode_params<M: Method>(params: Vec<Value>) -> Result<M::Params> {
    from_value(Value::Array(params)).map_err(|e| {
        Error::new(
            ErrorKind::BadParams,
            format!("{}: bad parameters: {e}", method_name::<M>()),
        )
    })
}

/// Decodes `M`'s result; a peer that answers another shape is a [`ErrorKind::Protocol`] error.
pub fn decode_output<M: Method>(value: Value) -> Result<M::Output> {
    from_value(value).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("{}: unexpected result: {e}", method_name::<M>()),
        )
    })
}

/// Encodes `E`'s payload as the event's parameters.
pub fn encode_event<E: Event>(payload: &E::Payload) -> Result<Vec<Value>> {
    to_value(payload).map(|v| vec![v]).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("{}.{}: {e}", E::Service::NAME, E::NAME),
        )
    })
}

/// Decodes `E`'s payload from an event's parameters.
pub fn decode_event<E: Event>(mut params: Vec<Value>) -> Result<E::Payload> {
    if params.len() != 1 {
        return Err(Error::new(
            ErrorKind::Protocol,
            format!(
                "{}.{}: expected one parameter, got {}",
                E::Service::NAME,
                E::NAME,
                params.len()
            ),
        ));
    }
    from_value(params.remove(0)).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("{}.{}: bad payload: {e}", E::Service::NAME, E::NAME),
        )
    })
}

/// The payload of `notice` when it is event `E` (`None` for any other event; `Some(Err)` for a
/// payload of the wrong shape, a `Protocol` error).
pub fn decode_notice<E: Event>(notice: &EventNotice) -> Option<Result<E::Payload>> {
    (notice.service == E::Service::NAME && notice.name == E::NAME)
        .then(|| decode_event::<E>(notice.params.clone()))
}

type Handler =
    Box<dyn Fn(Vec<Value>, CallContext) -> BoxFuture<'static, Result<Value>> + Send + Sync>;

/// Sends the typed events of service `S`. Cheap to clone; silent until the provider has bound it.
pub struct Emitter<S: ServiceSpec> {
    sink: Arc<OnceLock<EventSink>>,
    _spec: PhantomData<fn() -> S>,
}

impl<S: ServiceSpec> Clone for Emitter<S> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            _spec: PhantomData,
        }
    }
}

impl<S: ServiceSpec> Default for Emitter<S> {
    fn default() -> Self {
        Self {
            sink: Arc::new(OnceLock::new()),
            _spec: PhantomData,
        }
    }
}

impl<S: ServiceSpec> std::fmt::Debug for Emitter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("service", &S::NAME)
            .field("bound", &self.sink.get().is_some())
            .finish()
    }
}

impl<S: ServiceSpec> Emitter<S> {
    /// Sends event `E` to the service's subscribers (via the provider).
    pub fn emit<E: Event<Service = S>>(&self, payload: &E::Payload) {
        let Some(sink) = self.sink.get() else { return };
        match encode_event::<E>(payload) {
            Ok(params) => sink.emit(E::NAME, params),
            Err(e) => tracing::warn!(error = %e, "event not encodable; dropped"),
        }
    }

    /// Whether the provider that received the events has stopped (background emitters end then).
    pub fn is_closed(&self) -> bool {
        self.sink.get().is_some_and(EventSink::is_closed)
    }

    pub(crate) fn bind(&self, sink: EventSink) {
        let _ = self.sink.set(sink);
    }
}

/// A provider-side dispatcher for service `S`, built from typed handlers: each registered [`Method`]
/// decodes its parameter tuple (wrong shape → `bad-request`), runs the handler and encodes the result.
/// Verbs without a handler are `item-not-found`.
pub struct TypedService<S: ServiceSpec> {
    handlers: HashMap<&'static str, Handler>,
    /// The scope each handled verb declares ([`Method::SCOPE`]).
    scopes: HashMap<&'static str, Option<Scope>>,
    emitter: Emitter<S>,
    on_bind: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl<S: ServiceSpec> std::fmt::Debug for TypedService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedService")
            .field("service", &S::NAME)
            .field("verbs", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl<S: ServiceSpec> Default for TypedService<S> {
    fn default() -> Self {
        Self {
            handlers: HashMap::new(),
            scopes: HashMap::new(),
            emitter: Emitter::default(),
            on_bind: Mutex::new(None),
        }
    }
}

impl<S: ServiceSpec> TypedService<S> {
    /// A dispatcher with no methods yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers method `M` with `handler`. Registering a verb again replaces the earlier handler.
    pub fn handle<M, F, Fut>(mut self, handler: F) -> Self
    where
        M: Method<Service = S>,
        F: Fn(M::Params, CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Output>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.scopes.insert(M::VERB, M::SCOPE);
        self.handlers.insert(
            M::VERB,
            Box::new(move |params, ctx| {
                let handler = handler.clone();
                async move {
                    let params = decode_params::<M>(params)?;
                    let output = handler(params, ctx).await?;
                    to_value(&output).map_err(|e| {
                        Error::new(
                            ErrorKind::Internal,
                            format!("{}: result not encodable: {e}", method_name::<M>()),
                        )
                    })
                }
                .boxed()
            }),
        );
        self
    }

    /// Runs `f` once, when a provider starts offering the service (inside its runtime): the place to
    /// start background work such as periodic events.
    pub fn on_bind(self, f: impl FnOnce() + Send + 'static) -> Self {
        *self.on_bind.locked() = Some(Box::new(f));
        self
    }

    /// Where the service's handlers send events.
    pub fn emitter(&self) -> Emitter<S> {
        self.emitter.clone()
    }
}

/// Implements [`Service`] for a wrapper whose `typed` field is a [`TypedService`]: the concrete
/// services keep their own public type (and constructor) while every call goes through the one
/// typed dispatcher.
macro_rules! service_via_typed {
    ($wrapper:ty) => {
        impl $crate::core::rpc::Service for $wrapper {
            fn name(&self) -> &str {
                self.typed.name()
            }
            fn feature(&self) -> &str {
                self.typed.feature()
            }
            fn events(&self) -> &[&str] {
                self.typed.events()
            }
            fn verbs(&self) -> Vec<&str> {
                self.typed.verbs()
            }
            fn scope_of(&self, verb: &str) -> Option<$crate::core::access::Scope> {
                self.typed.scope_of(verb)
            }
            fn events_scope(&self) -> Option<$crate::core::access::Scope> {
                self.typed.events_scope()
            }
            fn call<'a>(
                &'a self,
                verb: &'a str,
                params: Vec<$crate::core::rpc::xmlrpc::Value>,
                ctx: &'a $crate::core::rpc::CallContext,
            ) -> futures::future::BoxFuture<
                'a,
                $crate::core::error::Result<$crate::core::rpc::xmlrpc::Value>,
            > {
                self.typed.call(verb, params, ctx)
            }
            fn bind_events(&self, sink: $crate::core::rpc::events::EventSink) {
                self.typed.bind_events(sink);
            }
        }
    };
}
pub(crate) use service_via_typed;

impl<S: ServiceSpec> Service for TypedService<S> {
    fn name(&self) -> &str {
        S::NAME
    }

    fn feature(&self) -> &str {
        S::FEATURE
    }

    fn events(&self) -> &[&str] {
        S::EVENTS
    }

    fn verbs(&self) -> Vec<&str> {
        let mut verbs: Vec<&str> = self.handlers.keys().copied().collect();
        verbs.sort_unstable();
        verbs
    }

    fn scope_of(&self, verb: &str) -> Option<Scope> {
        self.scopes.get(verb).copied().flatten()
    }

    fn events_scope(&self) -> Option<Scope> {
        S::EVENTS_SCOPE
    }

    fn call<'a>(
        &'a self,
        verb: &'a str,
        params: Vec<Value>,
        ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        match self.handlers.get(verb) {
            Some(handler) => handler(params, ctx.clone()),
            None => {
                let e = Error::new(
                    ErrorKind::UnknownMethod,
                    format!("no method {}.{verb}", S::NAME),
                );
                async move { Err(e) }.boxed()
            }
        }
    }

    fn bind_events(&self, sink: EventSink) {
        self.emitter.bind(sink);
        let f = self.on_bind.locked().take();
        if let Some(f) = f {
            f();
        }
    }
}

/// Declares a [`Method`] type.
macro_rules! method {
    ($(#[$doc:meta])* $name:ident, $service:ty, $verb:literal, $params:ty => $output:ty) => {
        $crate::core::rpc::method!(@declare $(#[$doc])* $name, $service, $verb, $params => $output, None);
    };
    ($(#[$doc:meta])* $name:ident, $service:ty, $verb:literal, $params:ty => $output:ty, scope = $scope:ident) => {
        $crate::core::rpc::method!(@declare $(#[$doc])* $name, $service, $verb, $params => $output,
            Some($crate::core::access::Scope::$scope));
    };
    (@declare $(#[$doc:meta])* $name:ident, $service:ty, $verb:literal, $params:ty => $output:ty, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl $crate::core::rpc::Method for $name {
            type Service = $service;
            const VERB: &'static str = $verb;
            type Params = $params;
            type Output = $output;
            const SCOPE: Option<$crate::core::access::Scope> = $scope;
        }
    };
}

/// Declares an [`Event`] type.
macro_rules! event {
    ($(#[$doc:meta])* $name:ident, $service:ty, $event:expr, $payload:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl $crate::core::rpc::Event for $name {
            type Service = $service;
            const NAME: &'static str = $event;
            type Payload = $payload;
        }
    };
}

pub(crate) use {event, method};

#[cfg(test)]
mod tests {
    use super::*;

    pub struct Echo;
    impl ServiceSpec for Echo {
        const NAME: &'static str = "echo";
        const FEATURE: &'static str = "urn:test:echo";
        const EVENTS: &'static [&'static str] = &["said"];
    }
    method!(Say, Echo, "say", (String, u32) => Vec<String>);
    event!(Said, Echo, "said", String);

    fn ctx() -> CallContext {
        CallContext {
            caller: "home@home.test/phone".parse().expect("jid"),
            tunnel: false,
        }
    }

    #[tokio::test]
    async fn typed_dispatch_checks_shapes_and_emits_typed_events() {
        let service = TypedService::<Echo>::new();
        let emitter = service.emitter();
        let service = service.handle::<Say, _, _>(move |(word, n), _ctx| {
            let emitter = emitter.clone();
            async move {
                emitter.emit::<Said>(&word);
                Ok(vec![word; n as usize])
            }
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        service.bind_events(EventSink::new("echo", tx));
        assert_eq!(service.events(), &["said"]);
        let params = encode_params::<Say>(&("hi".into(), 2)).expect("encode");
        let out = service.call("say", params, &ctx()).await.expect("call");
        assert_eq!(
            decode_output::<Say>(out).expect("decode"),
            vec!["hi".to_string(), "hi".to_string()]
        );
        let event = rx.try_recv().expect("event");
        assert_eq!(decode_event::<Said>(event.params).expect("payload"), "hi");
        // Wrong arity, wrong type, unknown verb.
        for params in [
            vec![Value::String("hi".into())],
            vec![Value::Int(1), Value::Int(2)],
            vec![Value::String("hi".into()), Value::Int(-1)],
        ] {
            let e = service.call("say", params, &ctx()).await.expect_err("bad");
            assert_eq!(e.kind(), ErrorKind::BadParams, "{e}");
        }
        let e = service
            .call("shout", vec![], &ctx())
            .await
            .expect_err("unknown");
        assert_eq!(e.kind(), ErrorKind::UnknownMethod);
        // A peer answering another shape is a protocol error on the controller.
        let e = decode_output::<Say>(Value::Int(3)).expect_err("shape");
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(decode_event::<Said>(vec![]).is_err());
    }
}
