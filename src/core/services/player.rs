//! The media player service (`urn.xmpp.tmp.media.player`, spec §6 example).
//!
//! Methods: `player.play(uri)`, `player.pause()`, `player.resume()`, `player.stop()`,
//! `player.status()`; each answers the resulting [`PlayerStatus`]. Event: `state-changed` with the new
//! status after every change of state. `player.subscribe` / `player.unsubscribe` are handled by the
//! provider for every service.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::expect_arity;
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::events::EventSink;
use crate::core::rpc::xmlrpc::Value;
use crate::core::rpc::{CallContext, Service};

/// The disco#info feature of the media player (kept from the spec's example).
pub const FEATURE: &str = "urn.xmpp.tmp.media.player";
/// The method prefix.
pub const SERVICE: &str = "player";
/// Event sent after every change of playback state; one parameter, the new [`PlayerStatus`].
pub const EVENT_STATE_CHANGED: &str = "state-changed";
/// Longest URI accepted by `player.play`.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Fault code: the call is valid but not in the player's current state (e.g. pause while stopped).
pub const FAULT_INVALID_STATE: i32 = 409;

/// Playback state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackState {
    /// Nothing loaded, or stopped.
    Stopped,
    /// Playing.
    Playing,
    /// Paused at a position.
    Paused,
}

impl PlaybackState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaybackState::Stopped => "stopped",
            PlaybackState::Playing => "playing",
            PlaybackState::Paused => "paused",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "stopped" => Some(PlaybackState::Stopped),
            "playing" => Some(PlaybackState::Playing),
            "paused" => Some(PlaybackState::Paused),
            _ => None,
        }
    }
}

/// What the player is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayerStatus {
    /// The loaded media, if any.
    pub uri: Option<String>,
    /// Playing, paused or stopped.
    pub state: PlaybackState,
    /// Position in the media, in milliseconds.
    pub position_ms: u64,
}

impl PlayerStatus {
    /// The XML-RPC struct `{uri, state, position}` (`uri` is `nil` when nothing is loaded).
    pub fn to_value(&self) -> Value {
        Value::Struct(vec![
            (
                "uri".into(),
                self.uri.clone().map(Value::String).unwrap_or(Value::Nil),
            ),
            ("state".into(), Value::String(self.state.as_str().into())),
            (
                "position".into(),
                Value::Int(i64::try_from(self.position_ms).unwrap_or(i64::MAX)),
            ),
        ])
    }

    /// Reads the struct written by [`PlayerStatus::to_value`].
    pub fn from_value(value: &Value) -> Result<Self> {
        let bad = |why: &str| Error::new(ErrorKind::Protocol, format!("player status: {why}"));
        let uri = match value.get("uri") {
            None | Some(Value::Nil) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("uri is not a string")),
        };
        let state = value
            .get("state")
            .and_then(Value::as_str)
            .and_then(PlaybackState::parse)
            .ok_or_else(|| bad("missing or unknown state"))?;
        let position_ms = value
            .get("position")
            .and_then(Value::as_i64)
            .and_then(|p| u64::try_from(p).ok())
            .ok_or_else(|| bad("missing or negative position"))?;
        Ok(Self {
            uri,
            state,
            position_ms,
        })
    }
}

/// A media player a provider drives: the real one (e.g. mpv) or [`SimulatedPlayer`].
pub trait MediaPlayer: Send + Sync + 'static {
    /// Loads `uri` and starts playing it from the beginning.
    fn play(&self, uri: &str) -> Result<PlayerStatus>;
    /// Pauses; fails with a fault when nothing is playing.
    fn pause(&self) -> Result<PlayerStatus>;
    /// Resumes after a pause.
    fn resume(&self) -> Result<PlayerStatus>;
    /// Stops and unloads.
    fn stop(&self) -> Result<PlayerStatus>;
    /// The current status.
    fn status(&self) -> PlayerStatus;
}

/// A player without output whose position advances with the clock while it plays.
#[derive(Debug)]
pub struct SimulatedPlayer {
    state: Mutex<Simulation>,
}

#[derive(Debug)]
struct Simulation {
    uri: Option<String>,
    state: PlaybackState,
    /// Position at `mark`.
    position_ms: u64,
    mark: Instant,
}

impl Default for SimulatedPlayer {
    fn default() -> Self {
        Self {
            state: Mutex::new(Simulation {
                uri: None,
                state: PlaybackState::Stopped,
                position_ms: 0,
                mark: Instant::now(),
            }),
        }
    }
}

impl Simulation {
    fn position_now(&self) -> u64 {
        match self.state {
            PlaybackState::Playing => {
                self.position_ms + self.mark.elapsed().as_millis().min(u64::MAX as u128) as u64
            }
            _ => self.position_ms,
        }
    }

    fn status(&self) -> PlayerStatus {
        PlayerStatus {
            uri: self.uri.clone(),
            state: self.state,
            position_ms: self.position_now(),
        }
    }

    fn set(&mut self, state: PlaybackState, position_ms: u64) -> PlayerStatus {
        self.state = state;
        self.position_ms = position_ms;
        self.mark = Instant::now();
        self.status()
    }
}

impl SimulatedPlayer {
    fn with<T>(&self, f: impl FnOnce(&mut Simulation) -> T) -> T {
        // A poisoned lock only means another call panicked mid-update; the state is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

fn invalid_state(what: &str) -> Error {
    Error::fault(FAULT_INVALID_STATE, what)
}

impl MediaPlayer for SimulatedPlayer {
    fn play(&self, uri: &str) -> Result<PlayerStatus> {
        Ok(self.with(|s| {
            s.uri = Some(uri.to_owned());
            s.set(PlaybackState::Playing, 0)
        }))
    }

    fn pause(&self) -> Result<PlayerStatus> {
        self.with(|s| match s.state {
            PlaybackState::Playing => {
                let at = s.position_now();
                Ok(s.set(PlaybackState::Paused, at))
            }
            PlaybackState::Paused => Ok(s.status()),
            PlaybackState::Stopped => Err(invalid_state("nothing is playing")),
        })
    }

    fn resume(&self) -> Result<PlayerStatus> {
        self.with(|s| match s.state {
            PlaybackState::Paused => {
                let at = s.position_ms;
                Ok(s.set(PlaybackState::Playing, at))
            }
            PlaybackState::Playing => Ok(s.status()),
            PlaybackState::Stopped => Err(invalid_state("nothing is loaded")),
        })
    }

    fn stop(&self) -> Result<PlayerStatus> {
        Ok(self.with(|s| {
            s.uri = None;
            s.set(PlaybackState::Stopped, 0)
        }))
    }

    fn status(&self) -> PlayerStatus {
        self.with(|s| s.status())
    }
}

/// The player service over any [`MediaPlayer`].
pub struct PlayerService {
    player: Arc<dyn MediaPlayer>,
    events: OnceLock<EventSink>,
}

impl PlayerService {
    /// Offers `player` as the media player service.
    pub fn new(player: Arc<dyn MediaPlayer>) -> Self {
        Self {
            player,
            events: OnceLock::new(),
        }
    }

    fn changed(&self, status: &PlayerStatus) {
        if let Some(sink) = self.events.get() {
            sink.emit(EVENT_STATE_CHANGED, vec![status.to_value()]);
        }
    }

    fn dispatch(&self, verb: &str, params: Vec<Value>) -> Result<Value> {
        let method = format!("{SERVICE}.{verb}");
        let before = self.player.status().state;
        let status = match verb {
            "play" => {
                expect_arity(&method, &params, 1)?;
                let uri = params[0].as_str().ok_or_else(|| {
                    Error::new(ErrorKind::BadParams, "player.play takes a string uri")
                })?;
                if uri.is_empty() || uri.len() > MAX_URI_BYTES {
                    return Err(Error::new(
                        ErrorKind::BadParams,
                        format!("player.play: uri must be 1..={MAX_URI_BYTES} bytes"),
                    ));
                }
                self.player.play(uri)?
            }
            "pause" => {
                expect_arity(&method, &params, 0)?;
                self.player.pause()?
            }
            "resume" => {
                expect_arity(&method, &params, 0)?;
                self.player.resume()?
            }
            "stop" => {
                expect_arity(&method, &params, 0)?;
                self.player.stop()?
            }
            "status" => {
                expect_arity(&method, &params, 0)?;
                return Ok(self.player.status().to_value());
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("no method {method}"),
                ))
            }
        };
        if status.state != before || verb == "play" {
            self.changed(&status);
        }
        Ok(status.to_value())
    }
}

impl Service for PlayerService {
    fn name(&self) -> &str {
        SERVICE
    }

    fn feature(&self) -> &str {
        FEATURE
    }

    fn call<'a>(
        &'a self,
        verb: &'a str,
        params: Vec<Value>,
        _ctx: &'a CallContext,
    ) -> BoxFuture<'a, Result<Value>> {
        let result = self.dispatch(verb, params);
        async move { result }.boxed()
    }

    fn bind_events(&self, sink: EventSink) {
        let _ = self.events.set(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn ctx() -> CallContext {
        CallContext {
            caller: "home@home.test/phone".parse().expect("jid"),
        }
    }

    #[tokio::test]
    async fn play_pause_resume_emit_state_changes() {
        let service = PlayerService::new(Arc::new(SimulatedPlayer::default()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        service.bind_events(EventSink::new(SERVICE, tx));
        let status = service
            .call("play", vec![Value::String("file:///a.mkv".into())], &ctx())
            .await
            .expect("play");
        let status = PlayerStatus::from_value(&status).expect("status");
        assert_eq!(status.state, PlaybackState::Playing);
        assert_eq!(status.uri.as_deref(), Some("file:///a.mkv"));
        let paused = service.call("pause", vec![], &ctx()).await.expect("pause");
        assert_eq!(
            PlayerStatus::from_value(&paused).expect("status").state,
            PlaybackState::Paused
        );
        let events: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.name == EVENT_STATE_CHANGED));
        // Status does not change state: no event.
        service
            .call("status", vec![], &ctx())
            .await
            .expect("status");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn wrong_shapes_are_bad_params_and_unknown_verbs_unknown() {
        let service = PlayerService::new(Arc::new(SimulatedPlayer::default()));
        let e = service
            .call("play", vec![], &ctx())
            .await
            .expect_err("arity");
        assert_eq!(e.kind(), ErrorKind::BadParams);
        let e = service
            .call("play", vec![Value::Int(3)], &ctx())
            .await
            .expect_err("type");
        assert_eq!(e.kind(), ErrorKind::BadParams);
        let e = service
            .call("pause", vec![Value::Int(3)], &ctx())
            .await
            .expect_err("arity");
        assert_eq!(e.kind(), ErrorKind::BadParams);
        let e = service
            .call("explode", vec![], &ctx())
            .await
            .expect_err("unknown");
        assert_eq!(e.kind(), ErrorKind::UnknownMethod);
        let e = service
            .call("pause", vec![], &ctx())
            .await
            .expect_err("stopped");
        assert_eq!(e.kind(), ErrorKind::Fault);
        assert_eq!(e.fault_code(), Some(FAULT_INVALID_STATE));
    }

    #[test]
    fn position_advances_only_while_playing() {
        let player = SimulatedPlayer::default();
        player.play("x").expect("play");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let paused = player.pause().expect("pause");
        assert!(paused.position_ms >= 30, "{paused:?}");
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(player.status().position_ms, paused.position_ms);
    }

    #[test]
    fn status_value_round_trips_and_rejects_garbage() {
        let status = PlayerStatus {
            uri: Some("u".into()),
            state: PlaybackState::Paused,
            position_ms: 1234,
        };
        assert_eq!(
            PlayerStatus::from_value(&status.to_value()).expect("parse"),
            status
        );
        assert!(PlayerStatus::from_value(&Value::Int(1)).is_err());
    }
}
