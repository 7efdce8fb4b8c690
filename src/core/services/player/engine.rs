//! [`PlayerService`]: the queue, the argument checks and the events of the media player, in
//! front of a [`MediaPlayer`] that only plays one URI at a time.

use super::*;

/// The player service over any [`MediaPlayer`]: queue, checks and events.
pub struct PlayerService {
    typed: TypedService<Player>,
}

impl std::fmt::Debug for PlayerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerService").finish_non_exhaustive()
    }
}

struct Engine {
    player: Arc<dyn MediaPlayer>,
    emitter: Emitter<Player>,
    /// One operation at a time, so queue and player never disagree.
    ops: tokio::sync::Mutex<EngineState>,
    position_throttle: Mutex<Throttle>,
}

#[derive(Default)]
struct EngineState {
    queue: Queue,
    /// (state, uri) last announced, to send `state-changed` only on change.
    announced: Option<(PlaybackState, Option<String>)>,
    volume: Option<VolumeState>,
}

fn invalid_state(what: &str) -> Error {
    Error::fault(FAULT_INVALID_STATE, what)
}

fn bad(what: String) -> Error {
    Error::new(ErrorKind::BadParams, what)
}

fn check_uri(method: &str, uri: &str) -> Result<()> {
    if uri.is_empty() || uri.len() > MAX_URI_BYTES {
        return Err(bad(format!(
            "{method}: uri must be 1..={MAX_URI_BYTES} bytes"
        )));
    }
    Ok(())
}

impl Engine {
    async fn status_of(&self, st: &EngineState) -> Result<PlayerStatus> {
        let p = self.player.playback().await?;
        let item = match p.state {
            PlaybackState::Stopped => None,
            _ => st
                .queue
                .current
                .and_then(|i| st.queue.items.get(i as usize)),
        };
        Ok(PlayerStatus {
            uri: item.map(|i| i.uri.clone()),
            title: item.and_then(|i| i.title.clone()),
            state: p.state,
            position_ms: p.position_ms,
            duration_ms: p.duration_ms,
            volume: p.volume,
            muted: p.muted,
        })
    }

    /// The status after a change; `state-changed` when state or media changed.
    async fn settle(&self, st: &mut EngineState) -> Result<PlayerStatus> {
        let status = self.status_of(st).await?;
        let key = (status.state, status.uri.clone());
        if st.announced.as_ref() != Some(&key) {
            st.announced = Some(key);
            self.emitter.emit::<StateChanged>(&status);
        }
        Ok(status)
    }

    async fn volume(&self, st: &mut EngineState) -> Result<VolumeState> {
        let p = self.player.playback().await?;
        let v = VolumeState {
            volume: p.volume,
            muted: p.muted,
        };
        if st.volume != Some(v) {
            st.volume = Some(v);
            self.emitter.emit::<VolumeChanged>(&v);
        }
        Ok(v)
    }

    async fn load_current(&self, st: &mut EngineState) -> Result<PlayerStatus> {
        let uri = st
            .queue
            .current
            .and_then(|i| st.queue.items.get(i as usize))
            .map(|i| i.uri.clone())
            .ok_or_else(|| invalid_state("the queue is empty"))?;
        self.player.load(uri).await?;
        self.emitter.emit::<QueueChanged>(&st.queue);
        self.settle(st).await
    }

    async fn play(&self, uri: String) -> Result<PlayerStatus> {
        check_uri("player.play", &uri)?;
        let mut st = self.ops.lock().await;
        st.queue = Queue {
            items: vec![QueueItem { uri, title: None }],
            current: Some(0),
        };
        // A new medium is always news, even when it is the same URI again.
        st.announced = None;
        self.load_current(&mut st).await
    }

    async fn require_loaded(&self, what: &str) -> Result<Playback> {
        let p = self.player.playback().await?;
        if p.state == PlaybackState::Stopped {
            return Err(invalid_state(&format!("{what}: nothing is loaded")));
        }
        Ok(p)
    }

    async fn pause(&self) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        if self.require_loaded("player.pause").await?.state == PlaybackState::Playing {
            self.player.pause().await?;
        }
        self.settle(&mut st).await
    }

    async fn resume(&self) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        if self.require_loaded("player.resume").await?.state == PlaybackState::Paused {
            self.player.resume().await?;
        }
        self.settle(&mut st).await
    }

    async fn stop(&self) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        self.player.stop().await?;
        st.queue.current = None;
        self.settle(&mut st).await
    }

    async fn seek(&self, position_ms: u64) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        let p = self.require_loaded("player.seek").await?;
        if let Some(duration) = p.duration_ms.filter(|d| position_ms > *d) {
            return Err(Error::fault(
                FAULT_OUT_OF_RANGE,
                format!("player.seek: {position_ms} ms is beyond the end ({duration} ms)"),
            ));
        }
        self.player.seek(position_ms).await?;
        let status = self.settle(&mut st).await?;
        self.position(&status, true);
        Ok(status)
    }

    /// Sends a `position` event when the throttle allows (or always, for an explicit seek).
    fn position(&self, status: &PlayerStatus, seek: bool) {
        let ready = self.position_throttle.locked().ready(Instant::now());
        if ready || seek {
            self.emitter.emit::<Position>(&PositionUpdate {
                position_ms: status.position_ms,
                duration_ms: status.duration_ms,
            });
        }
    }

    async fn set_volume(&self, volume: u8) -> Result<VolumeState> {
        if volume > MAX_VOLUME {
            return Err(bad(format!(
                "player.set_volume: {volume} is above {MAX_VOLUME}"
            )));
        }
        let mut st = self.ops.lock().await;
        self.player.set_volume(volume).await?;
        self.volume(&mut st).await
    }

    async fn mute(&self, muted: bool) -> Result<VolumeState> {
        let mut st = self.ops.lock().await;
        self.player.set_muted(muted).await?;
        self.volume(&mut st).await
    }

    async fn step(&self, forward: bool) -> Result<PlayerStatus> {
        let mut st = self.ops.lock().await;
        let len = st.queue.items.len() as u32;
        let next = match (st.queue.current, forward) {
            (Some(i), true) if i + 1 < len => i + 1,
            (Some(i), false) if i > 0 => i - 1,
            // Nothing current: next starts the queue, previous has nowhere to go.
            (None, true) if len > 0 => 0,
            _ => {
                return Err(invalid_state(if forward {
                    "player.next: at the end of the queue"
                } else {
                    "player.previous: at the start of the queue"
                }))
            }
        };
        st.queue.current = Some(next);
        self.load_current(&mut st).await
    }

    async fn enqueue(&self, uri: String, title: Option<String>) -> Result<Queue> {
        check_uri("player.enqueue", &uri)?;
        if title.as_ref().is_some_and(|t| t.len() > MAX_TITLE_BYTES) {
            return Err(bad(format!(
                "player.enqueue: title longer than {MAX_TITLE_BYTES} bytes"
            )));
        }
        let mut st = self.ops.lock().await;
        if st.queue.items.len() >= MAX_QUEUE_ITEMS {
            return Err(Error::fault(
                FAULT_QUEUE_FULL,
                format!("the queue holds at most {MAX_QUEUE_ITEMS} items"),
            ));
        }
        st.queue.items.push(QueueItem { uri, title });
        self.emitter.emit::<QueueChanged>(&st.queue);
        Ok(st.queue.clone())
    }

    async fn clear_queue(&self) -> Result<Queue> {
        let mut st = self.ops.lock().await;
        let current = st
            .queue
            .current
            .and_then(|i| st.queue.items.get(i as usize).cloned());
        st.queue = Queue {
            current: current.as_ref().map(|_| 0),
            items: current.into_iter().collect(),
        };
        self.emitter.emit::<QueueChanged>(&st.queue);
        Ok(st.queue.clone())
    }

    async fn status(&self) -> Result<PlayerStatus> {
        let st = self.ops.lock().await;
        self.status_of(&st).await
    }

    /// Periodic `position` events while playing; ends with the provider.
    async fn tick(weak: Weak<Engine>, interval: Duration) {
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let Some(engine) = weak.upgrade() else { break };
            if engine.emitter.is_closed() {
                break;
            }
            let status = {
                let st = engine.ops.lock().await;
                engine.status_of(&st).await
            };
            match status {
                Ok(s) if s.state == PlaybackState::Playing => engine.position(&s, false),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "position poll failed"),
            }
        }
    }
}

impl PlayerService {
    /// Offers `player` as the media player service, with a `position` event every second while
    /// playing.
    pub fn new(player: Arc<dyn MediaPlayer>) -> Self {
        Self::with_position_interval(player, DEFAULT_POSITION_INTERVAL)
    }

    /// Like [`PlayerService::new`], with `position` events every `interval` (at least
    /// [`MIN_POSITION_INTERVAL`]: that is the rate limit, whatever the app asks for).
    pub fn with_position_interval(player: Arc<dyn MediaPlayer>, interval: Duration) -> Self {
        let interval = interval.max(MIN_POSITION_INTERVAL);
        let typed = TypedService::<Player>::new();
        let engine = Arc::new(Engine {
            player,
            emitter: typed.emitter(),
            ops: tokio::sync::Mutex::new(EngineState::default()),
            position_throttle: Mutex::new(Throttle::new(interval)),
        });
        let weak = Arc::downgrade(&engine);
        macro_rules! route {
            ($typed:expr, $m:ty, |$e:ident, $p:pat_param| $body:expr) => {{
                let engine = engine.clone();
                $typed.handle::<$m, _, _>(move |$p, _ctx| {
                    let $e = engine.clone();
                    async move { $body.await }
                })
            }};
        }
        let typed = route!(typed, Play, |e, (uri,)| e.play(uri));
        let typed = route!(typed, Pause, |e, ()| e.pause());
        let typed = route!(typed, Resume, |e, ()| e.resume());
        let typed = route!(typed, Stop, |e, ()| e.stop());
        let typed = route!(typed, Seek, |e, (at,)| e.seek(at));
        let typed = route!(typed, SetVolume, |e, (v,)| e.set_volume(v));
        let typed = route!(typed, Mute, |e, (m,)| e.mute(m));
        let typed = route!(typed, Next, |e, ()| e.step(true));
        let typed = route!(typed, Previous, |e, ()| e.step(false));
        let typed = route!(typed, Enqueue, |e, (uri, title)| e.enqueue(uri, title));
        let typed = route!(typed, ClearQueue, |e, ()| e.clear_queue());
        let typed = route!(typed, GetQueue, |e, ()| async move {
            Ok(e.ops.lock().await.queue.clone())
        });
        let typed = route!(typed, Status, |e, ()| e.status());
        let typed = typed.on_bind(move || {
            tokio::spawn(Engine::tick(weak, interval));
        });
        Self { typed }
    }
}

crate::core::rpc::service_via_typed!(PlayerService);
