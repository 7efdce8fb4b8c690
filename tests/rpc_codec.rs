//! The Jabber-RPC codec between real devices through Prosody: a struct with a repeated member name
//! never goes on the wire in either direction, and the decoding limits each side is configured
//! with are the ones enforced.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::future::BoxFuture;
use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::error::{ErrorKind, Result};
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::xmlrpc::{Limits, Value};
use pmn::core::rpc::{self, CallContext, Service};
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
        params: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        let member = |n: &str, v: i64| (n.to_owned(), Value::from(v));
        let value = match verb {
            "get" => Value::Struct(vec![member("a", 1), member("a", 2)]),
            "echo" => Value::Array(params),
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

fn items(n: usize) -> Vec<Value> {
    vec![Value::Array(vec![Value::from(1); n])]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_decodes_calls_under_its_configured_limits() {
    // About three elements per array item: 10 items fit in 50 elements, 100 do not.
    let tight = Limits {
        max_nodes: 50,
        ..Limits::DEFAULT
    };
    let config = ProviderConfig {
        rpc_limits: tight,
        ..ProviderConfig::plain(session_config(&HOME, "tight-tv"), "Tight TV")
    };
    assert_eq!(
        ProviderConfig::plain(session_config(&HOME, "x"), "x").rpc_limits,
        Limits::DEFAULT
    );
    let provider = Provider::start(config, vec![Arc::new(Duplicates)])
        .await
        .expect("provider starts");
    let to = Jid::from(provider.session().jid().expect("online"));
    let (caller, _inbound) = Session::connect(session_config(&HOME, "tight-phone"))
        .await
        .expect("caller");
    let timeout = Duration::from_secs(5);
    rpc::call(&caller, &to, "dup.echo", items(10), timeout)
        .await
        .expect("within the limits");
    let err = rpc::call(&caller, &to, "dup.echo", items(100), timeout)
        .await
        .expect_err("over the limits");
    assert_eq!(err.kind(), ErrorKind::BadParams, "{err}");
    assert!(err.message().contains("too large"), "{err}");
    caller.close().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_decodes_answers_under_its_configured_limits() {
    let provider = start_player("Chatty TV").await;
    let tight = Limits {
        max_nodes: 5,
        ..Limits::DEFAULT
    };
    let config = ControllerConfig {
        rpc_timeout: Duration::from_secs(5),
        rpc_limits: tight,
        ..ControllerConfig::plain(session_config(&HOME, "tight-controller"))
    };
    assert_eq!(
        ControllerConfig::plain(session_config(&HOME, "y")).rpc_limits,
        Limits::DEFAULT
    );
    let controller = Controller::connect(config).await.expect("controller");
    let tv = discover(&controller, &provider).await;
    // A player status is a struct of several members: more than 5 elements.
    let err = controller
        .player(tv.jid.clone())
        .status()
        .await
        .expect_err("answer over the limits");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.message().contains("too large"), "{err}");
    // The default controller reads the same answer.
    let roomy = start_controller().await;
    discover(&roomy, &provider).await;
    roomy.player(tv.jid).status().await.expect("status");
    roomy.close().await;
    controller.close().await;
    provider.stop().await;
}
