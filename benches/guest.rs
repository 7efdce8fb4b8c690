//! What guest access costs per call: the same `player.status` through the end-to-end tunnel, by an
//! owner device (no ACL lookup) and by a guest under a `playback` grant (ACL check + audit record
//! on every call), interleaved call by call on one provider so both see the same server and load.
//! Also: the owner's approval round (register key, sign, install on the provider, answer the
//! guest) in ms.
//!
//! Run: `cargo bench --features test-ca --bench guest`. Noisy shared machine: compare within one run.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pmn::core::access::{unix_now, AccessSettings, Scope};
use pmn::core::controller::{Controller, ControllerConfig, OwnerAccess};
use pmn::core::e2e::{E2eSettings, TrustSource, TrustStore};
use pmn::core::identity::DeviceIdentity;
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{PlayerService, SimulatedPlayer};
use pmn::platform::software::SoftwareKeyStore;
use pmn_testkit::{TestServer, FRIEND, HOME};

const CALLS: usize = 500;
const T: Duration = Duration::from_secs(10);

struct Keys {
    store: Arc<SoftwareKeyStore>,
    settings: E2eSettings,
}

fn keys(dir: &std::path::Path, name: &str) -> Keys {
    let store = Arc::new(SoftwareKeyStore::open(dir.join(name)).expect("store"));
    let identity = DeviceIdentity::load_or_generate(store.clone(), "tls", name).expect("identity");
    Keys {
        store,
        settings: E2eSettings::new(identity, Arc::new(TrustStore::in_memory())),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().expect("prosody");
    let dir = tempfile::tempdir().expect("tempdir");
    let (tv_keys, owner_keys, guest_keys) = (
        keys(dir.path(), "tv"),
        keys(dir.path(), "owner"),
        keys(dir.path(), "guest"),
    );
    let home = HOME.jid.parse().expect("jid");
    for (a, b) in [(&tv_keys, &owner_keys), (&owner_keys, &tv_keys)] {
        a.settings
            .trust
            .pin(
                &home,
                &b.settings.identity.fingerprint(),
                TrustSource::Manual,
            )
            .expect("pin");
    }
    let mut tv_config = ProviderConfig::new(
        common::session_config(&server, &HOME, "bench-tv"),
        "Bench TV",
        tv_keys.settings.clone(),
    );
    tv_config.access = Some(AccessSettings::default());
    let player = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    let tv = Provider::start(tv_config, vec![player])
        .await
        .expect("provider");
    let tv_jid = tv.session().jid().expect("online");
    let mut owner_config = ControllerConfig::new(
        common::session_config(&server, &HOME, "bench-owner"),
        owner_keys.settings.clone(),
    );
    owner_config.access = Some(OwnerAccess::new(owner_keys.store.clone(), "owner"));
    let owner = Controller::connect(owner_config).await.expect("owner");
    owner
        .wait_for_provider(|p| p.jid == tv_jid, T)
        .await
        .expect("owner discovers the TV");
    let guest = Controller::connect(ControllerConfig::new(
        common::session_config(&server, &FRIEND, "bench-guest"),
        guest_keys.settings.clone(),
    ))
    .await
    .expect("guest");

    // The approval round, as the owner's phone sees it.
    let mut requests = owner
        .owner()
        .expect("an owner device")
        .access_requests()
        .expect("owner role");
    let asking = {
        let guest = guest.clone();
        let home = home.clone();
        tokio::spawn(async move {
            guest
                .guest()
                .expect("the tunnel is on")
                .request_access(home, vec![Scope::Playback], None, None, T)
                .await
        })
    };
    let request = tokio::time::timeout(T, requests.recv())
        .await
        .expect("request in time")
        .expect("request");
    let approving = Instant::now();
    owner
        .owner()
        .expect("an owner device")
        .approve(request.id, vec![Scope::Playback], unix_now() + 3600)
        .await
        .expect("approve");
    let approve_ms = approving.elapsed().as_secs_f64() * 1e3;
    asking.await.expect("task").expect("granted");

    // Warm both tunnels, then interleave.
    let (as_owner, as_guest) = (owner.player(tv_jid.clone()), guest.player(tv_jid.clone()));
    for _ in 0..20 {
        as_owner.status().await.expect("owner status");
        as_guest.status().await.expect("guest status");
    }
    let (mut owner_t, mut guest_t) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
    for i in 0..CALLS {
        // Alternate who goes first, so neither always runs right after the other's reply.
        let order: [bool; 2] = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_owner in order {
            let start = Instant::now();
            if is_owner {
                as_owner.status().await.expect("owner status");
                owner_t.push(start.elapsed());
            } else {
                as_guest.status().await.expect("guest status");
                guest_t.push(start.elapsed());
            }
        }
    }
    let (om, op) = common::median_p99(owner_t);
    let (gm, gp) = common::median_p99(guest_t);
    println!("guest access, {CALLS} interleaved player.status calls each, through the tunnel:");
    println!(
        "  owner (no ACL)        median {om:8.1} µs   p99 {gp_o:8.1} µs",
        gp_o = op
    );
    println!("  guest (ACL + audit)   median {gm:8.1} µs   p99 {gp:8.1} µs");
    println!(
        "  ratio guest/owner     median {:.2}×   p99 {:.2}×",
        gm / om,
        gp / op
    );
    println!("  approval round (register key, sign, install, answer): {approve_ms:.1} ms");
    guest.close().await;
    owner.close().await;
    tv.stop().await;
}
