//! Media players that need no device: the simulated one (demos, tests) and a chained
//! [`RemotePlayer`] that forwards to the player of another provider.

use super::*;

/// A player without output whose position advances with the clock while it plays. Every medium
/// is [`SimulatedPlayer::DURATION_MS`] long.
#[derive(Debug)]
pub struct SimulatedPlayer {
    state: Mutex<Simulation>,
}

#[derive(Debug)]
struct Simulation {
    state: PlaybackState,
    /// Position at `mark`.
    position_ms: u64,
    mark: Instant,
    volume: u8,
    muted: bool,
}

impl Default for SimulatedPlayer {
    fn default() -> Self {
        Self {
            state: Mutex::new(Simulation {
                state: PlaybackState::Stopped,
                position_ms: 0,
                mark: Instant::now(),
                volume: 50,
                muted: false,
            }),
        }
    }
}

impl Simulation {
    fn position_now(&self) -> u64 {
        let at = match self.state {
            PlaybackState::Playing => self
                .position_ms
                .saturating_add(self.mark.elapsed().as_millis().min(u64::MAX as u128) as u64),
            _ => self.position_ms,
        };
        at.min(SimulatedPlayer::DURATION_MS)
    }

    fn set(&mut self, state: PlaybackState, position_ms: u64) {
        self.state = state;
        self.position_ms = position_ms;
        self.mark = Instant::now();
    }
}

impl SimulatedPlayer {
    /// Length of every simulated medium: one hour.
    pub const DURATION_MS: u64 = 3_600_000;

    fn with<T>(&self, f: impl FnOnce(&mut Simulation) -> T) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
    {
        // A poisoned lock only means another call panicked mid-update; the state is still usable.
        let out = f(&mut self.state.locked());
        async move { Ok(out) }.boxed()
    }
}

impl MediaPlayer for SimulatedPlayer {
    fn load(&self, _uri: String) -> BoxFuture<'_, Result<()>> {
        self.with(|s| s.set(PlaybackState::Playing, 0))
    }

    fn pause(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|s| {
            let at = s.position_now();
            s.set(PlaybackState::Paused, at)
        })
    }

    fn resume(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|s| {
            let at = s.position_ms;
            s.set(PlaybackState::Playing, at)
        })
    }

    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        self.with(|s| s.set(PlaybackState::Stopped, 0))
    }

    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>> {
        self.with(move |s| {
            let state = s.state;
            s.set(state, position_ms)
        })
    }

    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        self.with(move |s| s.volume = volume)
    }

    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        self.with(move |s| s.muted = muted)
    }

    fn playback(&self) -> BoxFuture<'_, Result<Playback>> {
        self.with(|s| Playback {
            state: s.state,
            position_ms: s.position_now(),
            duration_ms: (s.state != PlaybackState::Stopped).then_some(Self::DURATION_MS),
            volume: s.volume,
            muted: s.muted,
        })
    }
}

/// A [`MediaPlayer`] that is itself the player of another provider: a provider that is also a
/// controller (spec §4, "it MAY also be a controller for that other service"), e.g. a receiver that
/// forwards to the TV it is plugged into.
#[derive(Debug, Clone)]
pub struct RemotePlayer {
    client: PlayerClient,
}

impl RemotePlayer {
    /// Forwards every call to the player behind `client`.
    pub fn new(client: PlayerClient) -> Self {
        Self { client }
    }
}

impl MediaPlayer for RemotePlayer {
    fn load(&self, uri: String) -> BoxFuture<'_, Result<()>> {
        async move { self.client.play(&uri).await.map(drop) }.boxed()
    }
    fn pause(&self) -> BoxFuture<'_, Result<()>> {
        async move { self.client.pause().await.map(drop) }.boxed()
    }
    fn resume(&self) -> BoxFuture<'_, Result<()>> {
        async move { self.client.resume().await.map(drop) }.boxed()
    }
    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        async move { self.client.stop().await.map(drop) }.boxed()
    }
    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>> {
        async move { self.client.seek(position_ms).await.map(drop) }.boxed()
    }
    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        async move { self.client.set_volume(volume).await.map(drop) }.boxed()
    }
    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        async move { self.client.mute(muted).await.map(drop) }.boxed()
    }
    fn playback(&self) -> BoxFuture<'_, Result<Playback>> {
        async move {
            let s = self.client.status().await?;
            Ok(Playback {
                state: s.state,
                position_ms: s.position_ms,
                duration_ms: s.duration_ms,
                volume: s.volume,
                muted: s.muted,
            })
        }
        .boxed()
    }
}
