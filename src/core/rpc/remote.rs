//! The calling side, typed: a [`Remote`] is service `S` on one provider, reached through any
//! [`Caller`]. A service's file adds its convenience calls to `Remote<ItsSpec>` (see
//! [`crate::core::services::player`]), so the controller holds no per-service code and a service
//! never names the controller.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use xmpp_parsers::jid::FullJid;

use super::typed::{decode_output, encode_params, method_name, Method, ServiceSpec};
use super::xmlrpc::Value;
use crate::core::error::Result;

/// Whatever sends a method call to a provider and returns its answer: the controller (through
/// its tunnel or in clear, with its retry policy), or a test's stand-in.
pub trait Caller: Send + Sync + 'static {
    /// Calls `method` (`<service>.<verb>`) on `provider` with `params`; errors say whether the
    /// call ran ([`crate::core::error::Error::outcome`]).
    fn call_method<'a>(
        &'a self,
        provider: &'a FullJid,
        method: String,
        params: Vec<Value>,
    ) -> BoxFuture<'a, Result<Value>>;
}

/// Service `S` on one provider: typed calls whose shapes the compiler checks here and the
/// provider's [`super::TypedService`] checks there. Cheap to clone.
///
/// ```no_run
/// # async fn demo(controller: pmn::core::controller::Controller, tv: xmpp_parsers::jid::FullJid)
/// # -> pmn::core::error::Result<()> {
/// use pmn::core::services::player::{Player, Seek};
/// let player = controller.remote::<Player>(tv);
/// let status = player.call::<Seek>(&(90_000,)).await?; // the same as player.seek(90_000)
/// println!("{:?}", status.position_ms);
/// # Ok(()) }
/// ```
pub struct Remote<S: ServiceSpec> {
    caller: Arc<dyn Caller>,
    provider: FullJid,
    _spec: PhantomData<fn() -> S>,
}

impl<S: ServiceSpec> Clone for Remote<S> {
    fn clone(&self) -> Self {
        Self {
            caller: self.caller.clone(),
            provider: self.provider.clone(),
            _spec: PhantomData,
        }
    }
}

impl<S: ServiceSpec> std::fmt::Debug for Remote<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("service", &S::NAME)
            .field("provider", &self.provider)
            .finish()
    }
}

impl<S: ServiceSpec> Remote<S> {
    /// Service `S` of `provider`, called through `caller`.
    pub fn new(caller: Arc<dyn Caller>, provider: FullJid) -> Self {
        Self {
            caller,
            provider,
            _spec: PhantomData,
        }
    }

    /// The provider this handle drives.
    pub fn provider(&self) -> &FullJid {
        &self.provider
    }

    /// Calls method `M` with typed parameters; the answer is decoded as `M::Output` (another
    /// shape is a `Protocol` error).
    pub async fn call<M: Method<Service = S>>(&self, params: &M::Params) -> Result<M::Output> {
        let params = encode_params::<M>(params)?;
        let value = self
            .caller
            .call_method(&self.provider, method_name::<M>(), params)
            .await?;
        decode_output::<M>(value)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::FutureExt;

    use super::*;
    use crate::core::error::{Error, ErrorKind};
    use crate::core::rpc::{CallContext, Service, TypedService};
    use crate::core::sync::Locked;

    pub struct Echo;
    impl ServiceSpec for Echo {
        const NAME: &'static str = "echo";
        const FEATURE: &'static str = "urn:test:echo";
        const EVENTS: &'static [&'static str] = &[];
    }
    crate::core::rpc::method!(Twice, Echo, "twice", (u32,) => u32);
    crate::core::rpc::method!(Wrong, Echo, "wrong", () => String);

    /// A caller that answers through a provider-side service in the same process, and
    /// remembers which method names went out.
    struct Local {
        service: TypedService<Echo>,
        sent: Mutex<Vec<String>>,
    }

    impl Caller for Local {
        fn call_method<'a>(
            &'a self,
            _provider: &'a FullJid,
            method: String,
            params: Vec<Value>,
        ) -> BoxFuture<'a, Result<Value>> {
            async move {
                self.sent.locked().push(method.clone());
                let verb = method.strip_prefix("echo.").ok_or_else(|| {
                    Error::new(ErrorKind::UnknownMethod, format!("no method {method}"))
                })?;
                let ctx = CallContext {
                    caller: "home@home.test/phone".parse().expect("jid"),
                    tunnel: false,
                };
                self.service.call(verb, params, &ctx).await
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn a_method_declared_once_is_routed_called_and_checked_at_both_ends() {
        let service = TypedService::<Echo>::new()
            .handle::<Twice, _, _>(|(n,), _| async move { Ok(n * 2) })
            // Answers an int where the declaration says string: the controller must say so.
            .handle::<Wrong, _, _>(|(), _| async move { Ok(String::new()) });
        let local = Arc::new(Local {
            service,
            sent: Mutex::new(vec![]),
        });
        let remote = Remote::<Echo>::new(local.clone(), "home@home.test/tv".parse().expect("jid"));
        assert_eq!(remote.call::<Twice>(&(21,)).await.expect("twice"), 42);
        assert_eq!(remote.provider().resource().as_str(), "tv");
        assert_eq!(*local.sent.locked(), vec!["echo.twice".to_string()]);
        let clone = remote.clone();
        assert_eq!(clone.call::<Twice>(&(1,)).await.expect("twice"), 2);
        assert!(format!("{remote:?}").contains("echo"));
    }
}
