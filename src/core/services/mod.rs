//! The services pmn ships, each declared once in its own file: its
//! [`ServiceSpec`](crate::core::rpc::ServiceSpec), its methods and events (`method!`/`event!` of
//! [`crate::core::rpc`]), the provider side (a [`TypedService`](crate::core::rpc::TypedService)
//! with handlers) and the controller side (typed calls on a [`Remote`](crate::core::rpc::Remote)
//! of the service). Services depend only on `rpc` and `events`: nothing here knows the controller
//! or the provider roles.
//!
//! Services here: [`player`] (media player), [`recorder`] (schedule recordings), [`library`] (browse
//! and search a media library), and [`mpv`] (a [`player::MediaPlayer`] that drives a real mpv).

pub mod library;
pub mod mpv;
pub mod player;
pub mod recorder;

/// The services pmn ships, as a provider's router holds them (with `subscribe`/`unsubscribe`
/// served for every service), for tests that hold the access rules to the methods' declarations.
#[cfg(test)]
pub(crate) mod shipped {
    use std::sync::{Arc, OnceLock};

    use futures::future::BoxFuture;
    use futures::FutureExt;

    use super::library::{GeneratedLibrary, LibraryService};
    use super::player::{PlayerService, SimulatedPlayer};
    use super::recorder::RecorderService;
    use crate::core::access::Scope;
    use crate::core::error::Result;
    use crate::core::rpc::xmlrpc::Value;
    use crate::core::rpc::{CallContext, EveryServiceVerbs, RpcRouter, Service};

    /// Stands for the provider's subscription verbs: only their routing matters here.
    struct SubscriptionVerbs;

    impl EveryServiceVerbs for SubscriptionVerbs {
        fn verbs(&self) -> &[&str] {
            &["subscribe", "unsubscribe"]
        }
        fn call<'a>(
            &'a self,
            _service: &'a Arc<dyn Service>,
            _verb: &'a str,
            _params: Vec<Value>,
            _ctx: &'a CallContext,
        ) -> BoxFuture<'a, Result<Value>> {
            async { Ok(Value::Nil) }.boxed()
        }
    }

    fn router() -> &'static RpcRouter {
        static ROUTER: OnceLock<RpcRouter> = OnceLock::new();
        ROUTER.get_or_init(|| {
            let mut router = RpcRouter::default();
            let services: [Arc<dyn Service>; 3] = [
                Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default()))),
                Arc::new(RecorderService::simulated()),
                Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(1)))),
            ];
            for service in services {
                router.add(service).expect("distinct service names");
            }
            router.serve_for_every_service(Arc::new(SubscriptionVerbs));
            router
        })
    }

    /// The grant scope `method` declares (`None`: closed to guests).
    pub(crate) fn scope(method: &str) -> Option<Scope> {
        router().scope_of(method)
    }

    /// Every method of the shipped services (their own verbs, then `subscribe`/`unsubscribe`).
    pub(crate) fn methods() -> Vec<String> {
        let mut all = Vec::new();
        for service in router().services() {
            for verb in service.verbs() {
                all.push(format!("{}.{verb}", service.name()));
            }
        }
        for service in router().services() {
            for verb in ["subscribe", "unsubscribe"] {
                all.push(format!("{}.{verb}", service.name()));
            }
        }
        all
    }

    /// The methods whose declared scope is `scope`, in the order of [`methods`].
    pub(crate) fn methods_in(scope: Scope) -> Vec<String> {
        methods()
            .into_iter()
            .filter(|m| self::scope(m) == Some(scope))
            .collect()
    }
}
