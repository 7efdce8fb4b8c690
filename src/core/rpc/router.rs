//! The answering side: services register under their name, calls are routed by `<service>.<verb>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use xmpp_parsers::jid::FullJid;

use super::xmlrpc::Value;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::events::EventSink;

/// Who is calling. Built by the provider after it checked that the caller may call at all.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller's full JID.
    pub caller: FullJid,
}

/// A service a provider offers: a disco#info feature plus the methods behind it.
///
/// Implementations return [`ErrorKind::UnknownMethod`] for verbs they do not have and
/// [`ErrorKind::BadParams`] for parameters of the wrong shape; any other error is answered as an
/// XML-RPC fault.
pub trait Service: Send + Sync + 'static {
    /// The method prefix, e.g. `player` for `player.play`.
    fn name(&self) -> &str;
    /// The disco#info feature, e.g. `urn.xmpp.tmp.media.player`.
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
    /// Called once when the provider starts: where the service sends its events.
    fn bind_events(&self, sink: EventSink) {
        let _ = sink;
    }
}

/// Routes method names to services.
#[derive(Default, Clone)]
pub struct RpcRouter {
    services: BTreeMap<String, Arc<dyn Service>>,
}

impl std::fmt::Debug for RpcRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.services.keys()).finish()
    }
}

impl RpcRouter {
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

    /// Splits `player.play` into the service and the verb, or fails with `UnknownMethod`.
    pub fn resolve<'m>(&self, method: &'m str) -> Result<(&Arc<dyn Service>, &'m str)> {
        let unknown = || Error::new(ErrorKind::UnknownMethod, format!("no method {method}"));
        let (service, verb) = method.split_once('.').ok_or_else(unknown)?;
        let service = self.services.get(service).ok_or_else(unknown)?;
        Ok((service, verb))
    }
}
