//! `pmn`: the command-line face of the library.
//!
//! - `pmn demo --server HOST:PORT [--ca CA.pem] [--network JID --password PW]`: starts a simulated TV
//!   and a phone on one network, discovers, plays, pauses, prints the events, exits.
//! - `pmn provider --server HOST:PORT [--ca CA.pem] --network JID --password PW [--device D] [--name N]`:
//!   runs a provider until Ctrl-C.
//!
//! The provider offers the media player, a (simulated) recorder and a generated media library. The
//! player is a real mpv (headless JSON IPC) when `mpv` is installed and `PMN_SIMULATED_PLAYER` is not
//! set, else the simulated player.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::error::Result;
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::rpc::Service;
use pmn::core::services::library::{GeneratedLibrary, LibraryService};
use pmn::core::services::mpv::{mpv_available, write_tone, MpvPlayer};
use pmn::core::services::player::{
    self, MediaPlayer, PlayerService, PlayerStatus, SimulatedPlayer,
};
use pmn::core::services::recorder::RecorderService;
use pmn::core::session::{ServerAddress, ServerTrust, SessionConfig};

const USAGE: &str = "usage:
  pmn demo     --server HOST:PORT [--ca CA.pem] [--network home@home.test] [--password PW]
  pmn provider --server HOST:PORT [--ca CA.pem] --network JID --password PW [--device tv] [--name NAME]";

struct Args {
    command: String,
    server: Option<String>,
    ca: Option<String>,
    network: String,
    password: String,
    device: String,
    name: String,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("no command")?;
    let mut args = Args {
        command,
        server: None,
        ca: None,
        network: "home@home.test".into(),
        password: "home-secret".into(),
        device: "tv".into(),
        name: "Living room TV".into(),
    };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => args.server = Some(value),
            "--ca" => args.ca = Some(value),
            "--network" => args.network = value,
            "--password" => args.password = value,
            "--device" => args.device = value,
            "--name" => args.name = value,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn session(args: &Args, device: &str) -> std::result::Result<SessionConfig, String> {
    let jid = format!("{}/{device}", args.network)
        .parse()
        .map_err(|e| format!("bad network {:?}: {e}", args.network))?;
    let mut config = SessionConfig::new(jid, args.password.clone());
    if let Some(server) = &args.server {
        let (host, port) = server.rsplit_once(':').ok_or("--server is HOST:PORT")?;
        let port = port.parse().map_err(|_| "--server has a bad port")?;
        config.server = ServerAddress::HostPort(host.into(), port);
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

async fn start_tv(config: SessionConfig, name: &str) -> Result<(Provider, String)> {
    let (player, uri) = demo_player().await;
    let services: Vec<Arc<dyn Service>> = vec![
        Arc::new(PlayerService::new(player)),
        Arc::new(RecorderService::simulated()),
        Arc::new(LibraryService::new(Arc::new(GeneratedLibrary::new(10_000)))),
    ];
    let provider = Provider::start(
        ProviderConfig {
            session: config,
            name: name.into(),
            e2e: None,
            access: None,
        },
        services,
    )
    .await?;
    Ok((provider, uri))
}

async fn demo(args: &Args) -> std::result::Result<(), String> {
    let e = |e: pmn::core::error::Error| e.to_string();
    println!("[tv]    logging in as {}/tv", args.network);
    let (tv, uri) = start_tv(session(args, "tv")?, &args.name)
        .await
        .map_err(e)?;
    println!("[phone] logging in as {}/phone", args.network);
    let phone = Controller::connect(ControllerConfig::new(session(args, "phone")?))
        .await
        .map_err(e)?;
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
    let mut events = phone.events();
    let subscription = phone
        .subscribe_events(
            &found.jid,
            player::SERVICE,
            Some(&[player::EVENT_STATE_CHANGED]),
        )
        .await
        .map_err(e)?;
    println!("[phone] subscribed to player state changes");
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
    phone.close().await;
    tv.stop().await;
    // The generated tone (mpv case) is ours; the player that used it has stopped with the provider.
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("pmn-demo-{}", std::process::id())),
    );
    println!("[demo]  done: discovery, control and events worked end to end");
    Ok(())
}

async fn provider(args: &Args) -> std::result::Result<(), String> {
    let (tv, _) = start_tv(session(args, &args.device)?, &args.name)
        .await
        .map_err(|e| e.to_string())?;
    println!("provider {:?} online; Ctrl-C to stop", args.name);
    let _ = tokio::signal::ctrl_c().await;
    tv.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PMN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
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
