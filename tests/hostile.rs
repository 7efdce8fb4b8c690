//! A hostile peer of the network sends a deeply nested stanza. The provider, running on the
//! library's own runtime (as in an app, default stacks), answers `policy-violation` — the stream
//! reader refuses the stanza before any recursive code sees it — and keeps serving.

mod common;

use std::time::Duration;

use common::*;
use pmn::core::rpc;
use pmn::core::session::{IqReply, Session};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::DefinedCondition;

const DEPTH: usize = 5_000;

#[test]
fn deeply_nested_stanza_is_refused_and_the_provider_survives() {
    // The attacker's own client needs a big stack to *write* such a stanza (xso serialises
    // recursively); the provider is the library's, on the library's runtime.
    let attacker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(256 * 1024 * 1024)
        .enable_all()
        .build()
        .expect("runtime");
    attacker_runtime.block_on(async {
        let provider = pmn::start_simulated_player(ffi_config("tv"), "TV".into())
            .await
            .expect("provider");
        let (attacker, _inbound) = Session::connect(session_config(&HOME, "attacker"))
            .await
            .expect("attacker session");
        // The attacker would learn the provider's JID from presence; here we ask the provider.
        let to = provider_jid(&provider).expect("provider JID");
        let xml = format!(
            "<query xmlns='jabber:iq:rpc'>{}{}</query>",
            "<a>".repeat(DEPTH),
            "</a>".repeat(DEPTH)
        );
        let payload: Element = xml.parse().expect("deep XML parses");
        let iq = Iq::Set {
            from: None,
            to: Some(to.clone()),
            id: String::new(),
            payload,
        };
        let reply = attacker
            .request(iq, Duration::from_secs(10))
            .await
            .expect("an answer");
        match reply {
            IqReply::Error(e) => {
                assert_eq!(e.defined_condition, DefinedCondition::PolicyViolation)
            }
            other => panic!("expected policy-violation, got {other:?}"),
        }
        let status = rpc::call(
            &attacker,
            &to,
            "player.status",
            vec![],
            Duration::from_secs(5),
        )
        .await
        .expect("provider still serves");
        assert!(status.get("state").is_some());
        attacker.close().await;
        provider.stop().await;
    });
}

fn provider_jid(provider: &pmn::Provider) -> Option<Jid> {
    provider.jid().and_then(|j| j.parse().ok())
}
