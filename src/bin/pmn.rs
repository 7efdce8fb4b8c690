//! `pmn`: the command-line face of the library.
//!
//! - `pmn demo --server HOST:PORT [--ca CA.pem] [--guest-server HOST:PORT]`: Julia's household
//!   (`home@home.test`: a TV and her phone) and Romeo's (`home@friend.test`: his phone) on one
//!   server, or Romeo's on his own (`--guest-server`, federated with Julia's). The phone pairs with the TV
//!   (the TV shows a code), discovers, plays, pauses and prints the events through the end-to-end
//!   tunnel; then Romeo asks for guest access, Julia's phone approves `playback` for two hours,
//!   Romeo plays on her TV and is refused the recorder, Julia reads the audit log and revokes, and
//!   Romeo's next call is refused.
//! - `pmn provider --server HOST:PORT [--ca CA.pem] --network JID --password PW [--device D]
//!   [--name N] [--state DIR] [--pairing-every SECONDS] [--plain]`: runs a provider until Ctrl-C.
//!   It uses the end-to-end tunnel (keys, pinned peers and the guest ACL in `--state`) and prints a
//!   pairing code, and a new one whenever a line is read on stdin (Enter) or, with
//!   `--pairing-every`, every SECONDS; `--plain` serves in clear instead, for controllers without
//!   the tunnel (e.g. slixmpp).
//!
//! - `pmn source --server HOST:PORT [--ca CA.pem] --network JID --password PW --feed URL
//!   [--feed URL…] [--stations NODE] [--refresh SECONDS] [--device D] [--name N] [--state DIR]
//!   [--plain]`: a source provider (built with the `sources` feature): the podcast feeds and the
//!   radio stations of a PEP node as a media library, read again every `--refresh` seconds.
//!
//! The provider offers the media player, a (simulated) recorder and a generated media library. The
//! player is a real mpv (headless JSON IPC) when `mpv` is installed and `PMN_SIMULATED_PLAYER` is not
//! set, else the simulated player.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pmn::core::access::{unix_now, AccessSettings, Scope};
use pmn::core::controller::{Controller, ControllerConfig, OwnerAccess};
use pmn::core::e2e::{E2eSettings, TrustStore};
use pmn::core::error::Result;
use pmn::core::identity::DeviceIdentity;
use pmn::core::provider::{MediaPolicy, Provider, ProviderConfig};
use pmn::core::rpc::Service;
use pmn::core::services::library::{GeneratedLibrary, LibraryService};
use pmn::core::services::mpv::{mpv_available, write_tone, MpvPlayer};
use pmn::core::services::player::{
    self, MediaPlayer, PlayerService, PlayerStatus, SimulatedPlayer,
};
use pmn::core::services::recorder::RecorderService;
use pmn::core::session::{ServerTrust, SessionConfig};
use pmn::platform::software::SoftwareKeyStore;

const USAGE: &str = "usage:
  pmn demo     --server HOST:PORT [--ca CA.pem] [--network home@home.test] [--password PW]
               [--guest-network home@friend.test] [--guest-password PW]
               [--guest-server HOST:PORT]
  pmn provider --server HOST:PORT [--ca CA.pem] --network JID --password PW [--device tv]
               [--name NAME] [--state DIR] [--pairing-every SECONDS] [--plain]
  pmn source   --server HOST:PORT [--ca CA.pem] --network JID --password PW --feed URL
               [--feed URL ...] [--stations NODE] [--refresh SECONDS] [--device sources]
               [--name NAME] [--state DIR] [--plain]
  pmn help     this text; `pmn COMMAND --help`: that command only

  demo      the whole story on one server: a TV, the owner's phone pairing with it (a code
            typed, keys pinned), control and events through the end-to-end tunnel, then a guest
            asking, the owner approving playback, both phones showing the same confirmation code,
            the guest playing, the audit log, the revocation
  provider  a simulated media player on the network; prints the 6-digit pairing code a phone
            types (valid 5 minutes, single use), and a new one on Enter or, with
            --pairing-every, every SECONDS; keys, pins and guest ACL are kept in --state (0600)
  source    podcast feeds (RSS/Atom over HTTP(S)) and the radio stations of our PEP node NODE
            as a media library controllers browse and TVs play by URI; read again every
            --refresh seconds (default 900), changes sent as library.changed (needs a build
            with --features sources)

  --server  the XMPP server, HOST:PORT
  --guest-server
            the guest household's own server (federated with --server's), when it is not
            the same server; --ca must trust both
  --ca      a PEM CA file to trust for the server instead of the system store
  PMN_LOG   log filter, e.g. PMN_LOG=pmn=debug (default: warn)";

/// The commands `pmn COMMAND --help` knows.
const COMMANDS: &[&str] = &["demo", "provider", "source"];

/// The part of [`USAGE`] about `command`: its synopsis, its paragraph and the shared options.
/// Cut out of the one text rather than kept apart, so the two helps never disagree.
fn command_usage(command: &str) -> String {
    let lines: Vec<&str> = USAGE.lines().collect();
    // Lines that continue the one before (deeper indentation than an entry's first line).
    let block = |start: usize, indent: usize| {
        let end = lines[start + 1..]
            .iter()
            .position(|l| !l.starts_with(&" ".repeat(indent)))
            .map_or(lines.len(), |n| start + 1 + n);
        lines[start..end].join("\n")
    };
    let synopsis = lines
        .iter()
        .position(|l| l.starts_with(&format!("  pmn {command} ")))
        .map(|at| block(at, 15))
        .unwrap_or_default();
    let about = lines
        .iter()
        .position(|l| l.starts_with(&format!("  {command:<10}")))
        .map(|at| block(at, 12))
        .unwrap_or_default();
    let options = lines
        .iter()
        .position(|l| l.starts_with("  --server"))
        .map(|at| lines[at..].join("\n"))
        .unwrap_or_default();
    format!("usage:\n{synopsis}\n\n{about}\n\n{options}")
}

struct Args {
    command: String,
    server: Option<String>,
    /// The guest household's server, when it has its own (`None`: `server`).
    guest_server: Option<String>,
    ca: Option<String>,
    network: String,
    password: String,
    guest_network: String,
    guest_password: String,
    device: String,
    name: String,
    state: Option<PathBuf>,
    plain: bool,
    /// `--pairing-every`: how often `pmn provider` arms a fresh pairing code (`None`: on Enter only).
    pairing_every: Option<Duration>,
    feeds: Vec<String>,
    stations: Option<String>,
    refresh_secs: u64,
}

/// Longest `--pairing-every`: a timer further out than this is no timer (and `Instant + secs`
/// would overflow for the largest numbers).
const MAX_PAIRING_EVERY_SECS: u64 = 365 * 86_400;

fn parse_args() -> std::result::Result<Args, String> {
    parse_args_from(std::env::args().skip(1))
}

/// [`parse_args`] over `argv` without the program name.
fn parse_args_from(argv: impl IntoIterator<Item = String>) -> std::result::Result<Args, String> {
    let mut it = argv.into_iter();
    let command = it.next().ok_or("no command")?;
    let mut args = Args {
        command,
        server: None,
        guest_server: None,
        ca: None,
        network: "home@home.test".into(),
        password: "home-secret".into(),
        guest_network: "home@friend.test".into(),
        guest_password: "friend-secret".into(),
        device: "tv".into(),
        name: "Living room TV".into(),
        state: None,
        plain: false,
        pairing_every: None,
        feeds: Vec::new(),
        stations: None,
        refresh_secs: 900,
    };
    while let Some(flag) = it.next() {
        if flag == "--plain" {
            args.plain = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => args.server = Some(value),
            "--guest-server" => args.guest_server = Some(value),
            "--ca" => args.ca = Some(value),
            "--network" => args.network = value,
            "--password" => args.password = value,
            "--guest-network" => args.guest_network = value,
            "--guest-password" => args.guest_password = value,
            "--device" => args.device = value,
            "--name" => args.name = value,
            "--state" => args.state = Some(value.into()),
            "--feed" => args.feeds.push(value),
            "--stations" => args.stations = Some(value),
            "--pairing-every" => {
                let secs: u64 = value
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_PAIRING_EVERY_SECS).contains(s))
                    .ok_or(format!(
                        "--pairing-every takes seconds (1..={MAX_PAIRING_EVERY_SECS}), not {value:?}"
                    ))?;
                args.pairing_every = Some(Duration::from_secs(secs));
            }
            "--refresh" => {
                args.refresh_secs = value
                    .parse()
                    .map_err(|_| format!("--refresh takes seconds, not {value:?}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// One device's state directory: its key store (TLS identity, owner key), pinned peers and, for a
/// provider, the guest ACL.
struct DeviceState {
    dir: PathBuf,
    keys: Arc<SoftwareKeyStore>,
    e2e: E2eSettings,
}

fn device_state(dir: &Path, device: &str) -> std::result::Result<DeviceState, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let keys =
        Arc::new(SoftwareKeyStore::open(dir.join("keys")).map_err(|e| format!("key store: {e}"))?);
    let identity = DeviceIdentity::load_or_generate(keys.clone(), "tls", device)
        .map_err(|e| format!("device key: {e}"))?;
    let trust = TrustStore::open(dir.join("trust.json")).map_err(|e| e.to_string())?;
    Ok(DeviceState {
        dir: dir.to_owned(),
        keys,
        e2e: E2eSettings::new(identity, Arc::new(trust)),
    })
}

/// `$XDG_DATA_HOME/pmn/<device>` (or `~/.local/share/pmn/<device>`).
fn default_state_dir(device: &str) -> std::result::Result<PathBuf, String> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or("no HOME: pass --state DIR")?;
    Ok(base.join("pmn").join(device))
}

fn session(args: &Args, device: &str) -> std::result::Result<SessionConfig, String> {
    session_of(
        args,
        args.server.as_deref(),
        &args.network,
        &args.password,
        device,
    )
}

fn session_of(
    args: &Args,
    server: Option<&str>,
    network: &str,
    password: &str,
    device: &str,
) -> std::result::Result<SessionConfig, String> {
    let jid =
        pmn::core::config::device_jid(network, device).map_err(|e| format!("--network: {e}"))?;
    let mut config = SessionConfig::new(jid, password.to_owned());
    if let Some(server) = server {
        config.server = server
            .parse()
            .map_err(|e| format!("server {server}: {e}"))?;
    }
    if let Some(ca) = &args.ca {
        let pem = std::fs::read_to_string(ca).map_err(|e| format!("reading {ca}: {e}"))?;
        config.trust = ServerTrust::TestCa(pem);
    }
    Ok(config)
}

fn show(status: &PlayerStatus) -> String {
    format!(
        "{} {} at {} ms",
        status.state.as_str(),
        status.uri.as_deref().unwrap_or("-"),
        status.position_ms
    )
}

/// The demo's player: mpv when installed (it plays a generated tone), else the simulation. Returns
/// the player and a URI it can play.
async fn demo_player() -> (Arc<dyn MediaPlayer>, String) {
    if mpv_available() && std::env::var_os("PMN_SIMULATED_PLAYER").is_none() {
        let dir = std::env::temp_dir().join(format!("pmn-demo-{}", std::process::id()));
        let tone = dir.join("tone.wav");
        let started = match std::fs::create_dir_all(&dir).and_then(|()| write_tone(&tone, 30)) {
            Ok(()) => {
                // Audio where there is a device, silence (null output) where there is none.
                MpvPlayer::spawn(
                    &dir.join("mpv.sock"),
                    &["--no-video", "--ao=pulse,alsa,null"],
                )
                .await
                .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match started {
            Ok(mpv) => {
                println!("[tv]    playing through mpv");
                return (Arc::new(mpv), format!("file://{}", tone.display()));
            }
            Err(e) => eprintln!("[tv]    mpv unusable ({e}); using the simulated player"),
        }
    }
    (
        Arc::new(SimulatedPlayer::default()),
        "file:///movies/big-buck-bunny.mkv".into(),
    )
}

/// Starts the TV: with `state`, through the end-to-end tunnel and taking guests under the ACL in
/// its state directory; without, in clear.
async fn start_tv(
    session: SessionConfig,
    name: &str,
    state: Option<&DeviceState>,
    guest_schemes: &[&str],
) -> Result<(Provider, String)> {
    let (player, uri) = demo_player().await;
    let services: Vec<Arc<dyn Service>> = vec![
        Arc::new(PlayerService::new(player)),
        Arc::new(RecorderService::simulated()),
        Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(10_000)))),
    ];
    let config = match state {
        Some(state) => ProviderConfig {
            access: Some(AccessSettings {
                acl_path: Some(state.dir.join("acl.json")),
                owner_keys: vec![],
            }),
            media: MediaPolicy {
                guest_schemes: guest_schemes.iter().map(|s| s.to_string()).collect(),
                ..MediaPolicy::default()
            },
            ..ProviderConfig::new(session, name, state.e2e.clone())
        },
        None => ProviderConfig::plain(session, name),
    };
    let provider = Provider::start(config, services).await?;
    Ok((provider, uri))
}

async fn demo(args: &Args) -> std::result::Result<(), String> {
    let e = |e: pmn::core::error::Error| e.to_string();
    let scratch = std::env::temp_dir().join(format!("pmn-demo-{}", std::process::id()));
    let result = demo_in(args, &scratch, e).await;
    // The generated tone, keys and ACL are ours; everything that used them has stopped.
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn demo_in(
    args: &Args,
    scratch: &Path,
    e: impl Fn(pmn::core::error::Error) -> String + Copy,
) -> std::result::Result<(), String> {
    let tv_state = device_state(&scratch.join("tv"), "tv")?;
    let phone_state = device_state(&scratch.join("julia-phone"), "julia-phone")?;
    let romeo_state = device_state(&scratch.join("romeo-phone"), "romeo-phone")?;

    println!(
        "[tv]    logging in as {}/tv (end-to-end tunnel required)",
        args.network
    );
    // Demo only: the guest plays the demo's tone from the TV's own disk (`file:`). A real TV lets
    // a guest play nothing but the item shared with it, as `pmn provider` does.
    let (tv, uri) = start_tv(session(args, "tv")?, &args.name, Some(&tv_state), &["file"])
        .await
        .map_err(e)?;
    println!("[phone] logging in as {}/julia-phone", args.network);
    let mut phone_config =
        ControllerConfig::new(session(args, "julia-phone")?, phone_state.e2e.clone());
    phone_config.access = Some(OwnerAccess::new(phone_state.keys.clone(), "owner-approval"));
    let phone = Controller::connect(phone_config).await.map_err(e)?;
    let found = phone
        .wait_for_provider(
            |p| p.services.iter().any(|s| s == player::FEATURE),
            Duration::from_secs(10),
        )
        .await
        .map_err(e)?;
    println!(
        "[phone] discovered {:?} at {} offering {:?}",
        found.name, found.jid, found.services
    );

    // First contact: the TV shows a code, the phone types it; both keys are pinned.
    let tv_e2e = tv.e2e().ok_or("the TV has no tunnel")?;
    let code = tv_e2e.start_pairing().map_err(e)?;
    println!("[tv]    pairing code on screen: {code}");
    let phone_e2e = phone.e2e().ok_or("the phone has no tunnel")?;
    phone_e2e.pair(&found.jid, &code).await.map_err(e)?;
    println!(
        "[phone] paired with the TV (key {}…)",
        &tv_e2e.fingerprint().to_hex()[..16]
    );

    let mut events = phone.events();
    let subscription = phone
        .subscribe_events(
            &found.jid,
            player::SERVICE,
            Some(&[player::EVENT_STATE_CHANGED]),
        )
        .await
        .map_err(e)?;
    println!("[phone] subscribed to player state changes (through the tunnel)");
    let remote = phone.player(found.jid.clone());
    println!(
        "[phone] play → {}",
        show(&remote.play(&uri).await.map_err(e)?)
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    println!(
        "[phone] status → {}",
        show(&remote.status().await.map_err(e)?)
    );
    println!(
        "[phone] pause → {}",
        show(&remote.pause().await.map_err(e)?)
    );
    match phone.call(&found.jid, "player.selfdestruct", vec![]).await {
        Err(err) => println!("[phone] player.selfdestruct → refused as expected: {err}"),
        Ok(v) => return Err(format!("unknown method answered {v:?}")),
    }
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Ok(event)) => {
                let status = event
                    .notice
                    .params
                    .first()
                    .and_then(|v| PlayerStatus::from_value(v).ok());
                println!(
                    "[phone] event {}.{} from {}: {}",
                    event.notice.service,
                    event.notice.name,
                    event.provider,
                    status.map(|s| show(&s)).unwrap_or_default()
                );
            }
            _ => return Err("expected a state-changed event".into()),
        }
    }
    subscription.cancel().await.map_err(e)?;
    let volume = remote.set_volume(30).await.map_err(e)?;
    println!("[phone] set_volume(30) → volume {}", volume.volume);
    let channels = phone
        .recorder(found.jid.clone())
        .channels()
        .await
        .map_err(e)?;
    println!("[phone] recorder channels → {} channels", channels.len());
    let page = phone
        .library(found.jid.clone())
        .browse("videos", 0, 3)
        .await
        .map_err(e)?;
    println!(
        "[phone] library.browse(videos, 0, 3) → {} of {} items",
        page.items.len(),
        page.total
    );

    guest_visit(args, &phone, &found.jid, &uri, &romeo_state, e).await?;

    phone.close().await;
    tv.stop().await;
    println!(
        "[demo]  done: pairing, discovery, control, events and a guest approval worked end to end"
    );
    Ok(())
}

/// Spec §3.3: Romeo, visiting, asks from his phone; Julia approves `playback` from hers.
async fn guest_visit(
    args: &Args,
    julia: &Controller,
    tv: &xmpp_parsers::jid::FullJid,
    uri: &str,
    romeo_state: &DeviceState,
    e: impl Fn(pmn::core::error::Error) -> String + Copy,
) -> std::result::Result<(), String> {
    // The guest's phone logs in to its own household's server; Julia's TV and phone stay on
    // hers, and the servers federate.
    let guest_session = session_of(
        args,
        args.guest_server.as_deref().or(args.server.as_deref()),
        &args.guest_network,
        &args.guest_password,
        "romeo-phone",
    )?;
    match &args.guest_server {
        Some(server) => println!(
            "[romeo] logging in as {}/romeo-phone on his own server {server}",
            args.guest_network
        ),
        None => println!("[romeo] logging in as {}/romeo-phone", args.guest_network),
    }
    let romeo = Controller::connect(ControllerConfig::new(
        guest_session,
        romeo_state.e2e.clone(),
    ))
    .await
    .map_err(e)?;
    let network: xmpp_parsers::jid::BareJid = args
        .network
        .parse()
        .map_err(|err| format!("bad network: {err}"))?;
    let owner = julia.owner().map_err(e)?;
    let guest = romeo.guest().map_err(e)?;
    let mut requests = owner.access_requests().map_err(e)?;
    let asking = {
        let guest = guest.clone();
        tokio::spawn(async move {
            guest
                .request_access(
                    network,
                    vec![Scope::Playback],
                    None,
                    Some("film night: my video on your TV"),
                    Duration::from_secs(30),
                )
                .await
        })
    };
    println!("[romeo] asked {} for playback", args.network);
    let request = match tokio::time::timeout(Duration::from_secs(10), requests.recv()).await {
        Ok(Ok(r)) => r,
        _ => return Err("Julia's phone never saw Romeo's request".into()),
    };
    println!(
        "[phone] access request #{} from {} (device {}…) for {:?}: {:?}",
        request.id,
        request.guest,
        &request.device.to_hex()[..16],
        request.scopes.iter().map(|s| s.name()).collect::<Vec<_>>(),
        request.reason.as_ref().map(|r| r.as_str()).unwrap_or("")
    );
    let issued = owner
        .approve(request.id, vec![Scope::Playback], unix_now() + 2 * 3600)
        .await
        .map_err(e)?;
    println!(
        "[phone] approved playback for 2 h: grant {} signed with the owner key, installed on {} provider(s)",
        issued.grant.id,
        issued.installed_on.len()
    );
    let owner_code = issued.confirmation_code.clone().unwrap_or_default();
    println!("[phone] confirmation code {owner_code}: Romeo's phone must show the same");
    let access = asking.await.map_err(|err| err.to_string())?.map_err(e)?;
    println!(
        "[romeo] approved; confirmation code {} (the same as on Julia's phone: confirmed)",
        access.confirmation_code
    );
    if access.confirmation_code != owner_code {
        guest.reject_access(&access.network);
        return Err("the confirmation codes differ: a key was changed on the way".into());
    }
    let access = guest.confirm_access(&access.network).map_err(e)?;
    println!("[romeo] granted until {} (host clock)", access.expires);
    romeo
        .wait_for_provider(|p| &p.jid == tv, Duration::from_secs(10))
        .await
        .map_err(e)?;
    println!("[romeo] discovered Julia's TV");
    let on_tv = romeo.player(tv.clone());
    println!(
        "[romeo] play → {}",
        show(&on_tv.play(uri).await.map_err(e)?)
    );
    match romeo.recorder(tv.clone()).channels().await {
        Err(err) => println!("[romeo] recorder.channels → refused as expected: {err}"),
        Ok(_) => return Err("a playback guest used the recorder".into()),
    }
    let audit = owner.access_audit(tv, 0).await.map_err(e)?;
    for record in &audit {
        println!(
            "[phone] audit #{} {} {} {} {}",
            record.seq,
            record.kind.name(),
            record.subject,
            record.method.as_deref().unwrap_or("-"),
            record.detail
        );
    }
    owner.revoke_grant(&issued.grant.id).await.map_err(e)?;
    println!("[phone] revoked grant {}", issued.grant.id);
    // The first call may race the tunnel's close; none may succeed.
    for _ in 0..2 {
        match on_tv.status().await {
            Err(err) => println!("[romeo] status → refused as expected: {err}"),
            Ok(_) => return Err("a revoked guest was served".into()),
        }
    }
    romeo.close().await;
    Ok(())
}
async fn provider(args: &Args) -> std::result::Result<(), String> {
    let state = if args.plain {
        println!("provider {:?}: serving IN CLEAR (--plain)", args.name);
        None
    } else {
        let dir = match &args.state {
            Some(dir) => dir.clone(),
            None => default_state_dir(&args.device)?,
        };
        Some(device_state(&dir, &args.device)?)
    };
    let (tv, _) = start_tv(
        session(args, &args.device)?,
        &args.name,
        state.as_ref(),
        &[],
    )
    .await
    .map_err(|e| e.to_string())?;
    let Some(e2e) = tv.e2e() else {
        if args.pairing_every.is_some() {
            tv.stop().await;
            return Err("--pairing-every needs the end-to-end tunnel (drop --plain)".into());
        }
        println!("provider {:?} online; Ctrl-C to stop", args.name);
        let _ = tokio::signal::ctrl_c().await;
        tv.stop().await;
        return Ok(());
    };
    let new_code = || -> std::result::Result<(), String> {
        // Arming replaces the code before: only the last one printed is accepted.
        let code = e2e.start_pairing().map_err(|e| e.to_string())?;
        println!("pairing code (5 minutes): {code}");
        Ok(())
    };
    new_code()?;
    match args.pairing_every {
        Some(every) => println!(
            "provider {:?} online; a new code every {} s or on Enter; Ctrl-C to stop",
            args.name,
            every.as_secs()
        ),
        None => println!(
            "provider {:?} online; Enter for a new pairing code; Ctrl-C to stop",
            args.name
        ),
    }
    // Both ways, because a code is single use and lasts 5 minutes: Enter for the person at the
    // TV's terminal (a code exactly when the phone is ready), the timer for a TV nobody types at
    // (started by a service manager, stdin closed). A blocking thread reads stdin (tokio's
    // io-std is not among the library's tokio features); end of input just stops listening.
    let (enter_tx, mut enter) = tokio::sync::mpsc::unbounded_channel::<()>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
            if enter_tx.send(()).is_err() {
                break;
            }
        }
    });
    let mut stdin_open = true;
    let mut timer = args.pairing_every.map(|every| {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let result = loop {
        let tick = async {
            match timer.as_mut() {
                Some(timer) => {
                    timer.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut ctrl_c => break Ok(()),
            line = enter.recv(), if stdin_open => match line {
                Some(()) => {
                    if let Err(e) = new_code() {
                        break Err(e);
                    }
                }
                None => stdin_open = false,
            },
            () = tick => {
                if let Err(e) = new_code() {
                    break Err(e);
                }
            }
        }
    };
    tv.stop().await;
    result
}

/// `pmn source`: the feeds and stations as a media library until Ctrl-C.
#[cfg(feature = "sources")]
async fn source(args: &Args) -> std::result::Result<(), String> {
    use pmn::core::sources::{SourceConfig, SourceProvider, StationNode};
    if args.feeds.is_empty() && args.stations.is_none() {
        return Err("pmn source needs at least one --feed URL or --stations NODE".into());
    }
    let device = if args.device == "tv" {
        "sources"
    } else {
        &args.device
    };
    let session = session(args, device)?;
    let config = if args.plain {
        println!(
            "source provider {:?}: serving IN CLEAR (--plain)",
            args.name
        );
        ProviderConfig::plain(session, &args.name)
    } else {
        let dir = match &args.state {
            Some(dir) => dir.clone(),
            None => default_state_dir(device)?,
        };
        let state = device_state(&dir, device)?;
        ProviderConfig::new(session, &args.name, state.e2e.clone())
    };
    let sources = SourceConfig {
        stations: args.stations.clone().map(StationNode::own),
        refresh: Duration::from_secs(args.refresh_secs),
        ..SourceConfig::feeds(args.feeds.clone())
    };
    let provider = SourceProvider::start(config, sources, vec![])
        .await
        .map_err(|e| e.to_string())?;
    for status in provider.library().status() {
        match &status.last_error {
            None => println!(
                "{}: {:?}, {} items ({})",
                status.container, status.title, status.items, status.source
            ),
            Some(e) => println!(
                "{}: {} not read yet: {e} (tried again at the next refresh)",
                status.container, status.source
            ),
        }
    }
    if let Some(e2e) = provider.provider().e2e() {
        let code = e2e.start_pairing().map_err(|e| e.to_string())?;
        println!("pairing code (5 minutes): {code}");
    }
    println!("source provider {:?} online; Ctrl-C to stop", args.name);
    let _ = tokio::signal::ctrl_c().await;
    provider.stop().await;
    Ok(())
}

#[cfg(not(feature = "sources"))]
async fn source(_args: &Args) -> std::result::Result<(), String> {
    Err("this pmn was built without the `sources` feature (cargo build --features sources)".into())
}

#[tokio::main]
async fn main() -> ExitCode {
    // PMN_LOG: `target=level` directives and a default level, e.g. `warn,pmn=debug`.
    let filter = std::env::var("PMN_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::WARN)
        });
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(filter)
            .init();
    }
    if matches!(
        std::env::args().nth(1).as_deref(),
        Some("help" | "--help" | "-h")
    ) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // `pmn provider --help`: before parsing, which would take `--help` for an option missing its value.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(command) = argv.first().filter(|c| COMMANDS.contains(&c.as_str())) {
        if argv[1..].iter().any(|a| a == "--help" || a == "-h") {
            println!("{}", command_usage(command));
            return ExitCode::SUCCESS;
        }
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command.as_str() {
        "demo" => demo(&args).await,
        "provider" => provider(&args).await,
        "source" => source(&args).await,
        other => Err(format!("unknown command {other}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmn: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> std::result::Result<Args, String> {
        parse_args_from(argv.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn pairing_every_out_of_range_is_an_error_not_a_panic_later() {
        let ok = parse(&["provider", "--pairing-every", "300"]).expect("300 s");
        assert_eq!(ok.pairing_every, Some(Duration::from_secs(300)));
        for bad in ["0", "-1", "31536001", "18446744073709551615", "x"] {
            let e = parse(&["provider", "--pairing-every", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains("--pairing-every"), "{e}");
        }
    }
}
