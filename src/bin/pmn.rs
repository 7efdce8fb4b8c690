//! `pmn`: the command-line face of the library.
//!
//! - `pmn demo --server HOST:PORT [--ca CA.pem] [--network JID --password PW]`: starts a simulated TV
//!   and a phone on one network, discovers, plays, pauses, prints the events, exits.
//! - `pmn provider --server HOST:PORT [--ca CA.pem] --network JID --password PW [--device D] [--name N]`:
//!   runs a simulated media player until Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pmn::core::controller::{Controller, ControllerConfig};
use pmn::core::error::Result;
use pmn::core::provider::{Provider, ProviderConfig};
use pmn::core::services::player::{self, PlayerService, PlayerStatus, SimulatedPlayer};
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

async fn start_tv(config: SessionConfig, name: &str) -> Result<Provider> {
    let service = Arc::new(PlayerService::new(Arc::new(SimulatedPlayer::default())));
    Provider::start(
        ProviderConfig {
            session: config,
            name: name.into(),
        },
        vec![service],
    )
    .await
}

async fn demo(args: &Args) -> std::result::Result<(), String> {
    let e = |e: pmn::core::error::Error| e.to_string();
    println!("[tv]    logging in as {}/tv", args.network);
    let tv = start_tv(session(args, "tv")?, &args.name)
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
        .subscribe(&found.jid, player::SERVICE)
        .await
        .map_err(e)?;
    println!("[phone] subscribed to player events");
    let remote = phone.player(found.jid.clone());
    println!(
        "[phone] play → {}",
        show(
            &remote
                .play("file:///movies/big-buck-bunny.mkv")
                .await
                .map_err(e)?
        )
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
    phone.close().await;
    tv.stop().await;
    println!("[demo]  done: discovery, control and events worked end to end");
    Ok(())
}

async fn provider(args: &Args) -> std::result::Result<(), String> {
    let tv = start_tv(session(args, &args.device)?, &args.name)
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
