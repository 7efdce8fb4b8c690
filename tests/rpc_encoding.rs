//! A struct with a repeated member name never goes on the wire, in either direction: a provider
//! whose service returns one answers a fault, and a controller refuses to send one.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use pmn::core::error::{ErrorKind, Result};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::{self, xmlrpc::Value, CallContext, Service};
use pmn::core::session::Session;
use xmpp_parsers::jid::Jid;

/// Answers `dup.get` with a struct naming `a` twice, and `dup.ok` with a well-formed one.
struct Duplicates;

impl Service for Duplicates {
    fn name(&self) -> &str {
        "dup"
    }
    fn feature(&self) -> &str {
        "urn:xmpp:tmp:pmn:dup-test:0"
    }
    fn call<'a>(
        &'a self,
        verb: &'a str,
        _params: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        let member = |n: &str, v: i64| (n.to_owned(), Value::from(v));
        let value = match verb {
            "get" => Value::Struct(vec![member("a", 1), member("a", 2)]),
            _ => Value::Struct(vec![member("a", 1), member("b", 2)]),
        };
        Box::pin(async move { Ok(value) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_struct_members_are_refused_before_the_wire() {
    let provider = Provider::start(
        ProviderConfig::plain(session_config(&HOME, "dup-tv"), "Dup TV"),
        vec![Arc::new(Duplicates)],
    )
    .await
    .expect("provider starts");
    let to = Jid::from(provider.session().jid().expect("online"));
    let (caller, _inbound) = Session::connect(session_config(&HOME, "dup-phone"))
        .await
        .expect("caller");
    let timeout = Duration::from_secs(5);

    // The provider's result does not encode: a fault, and the provider keeps serving.
    let err = rpc::call(&caller, &to, "dup.get", vec![], timeout)
        .await
        .expect_err("fault");
    assert_eq!(err.kind(), ErrorKind::Fault, "{err}");
    assert_eq!(err.fault_code(), Some(500));
    assert!(err.message().contains("appears twice"), "{err}");
    let ok = rpc::call(&caller, &to, "dup.ok", vec![], timeout)
        .await
        .expect("well-formed result");
    assert_eq!(ok.get("b").and_then(Value::as_i64), Some(2));

    // The caller's own parameters do not encode: refused locally, nothing sent.
    let dup = Value::Struct(vec![("x".into(), Value::Nil), ("x".into(), Value::Nil)]);
    let err = rpc::call(&caller, &to, "dup.ok", vec![dup], timeout)
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::BadParams, "{err}");

    caller.close().await;
    provider.stop().await;
}
