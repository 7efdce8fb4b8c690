//! A [`MediaPlayer`] that drives a real mpv over its JSON IPC socket (`--input-ipc-server`), so the
//! demo provider plays for real where mpv is installed.
//!
//! [`MpvPlayer::spawn`] starts `mpv --idle=yes --no-terminal` with the given extra arguments (tests
//! and headless boxes add `--no-video --ao=null`) and owns the process: it is killed when the player
//! is dropped. Requests are serialised over one connection and matched to replies by `request_id`;
//! mpv's asynchronous event lines are skipped. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::player::{MediaPlayer, Playback, PlaybackState};
use crate::core::error::{Error, ErrorKind, Result};

/// Bound on one IPC request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a load waits for mpv to leave idle and know the duration.
const LOAD_SETTLE: Duration = Duration::from_secs(5);
/// How long a seek waits for mpv's `time-pos` to reach the target before it reports anyway.
const SEEK_SETTLE: Duration = Duration::from_secs(3);
/// How near the target `time-pos` must be for a seek to count as done.
const SEEK_TOLERANCE_MS: u64 = 1_000;
/// Longest reply line accepted from mpv.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// mpv, driven over JSON IPC.
pub struct MpvPlayer {
    conn: tokio::sync::Mutex<(BufReader<OwnedReadHalf>, OwnedWriteHalf)>,
    next_id: AtomicU64,
    child: Child,
    socket: PathBuf,
}

impl std::fmt::Debug for MpvPlayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpvPlayer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Drop for MpvPlayer {
    fn drop(&mut self) {
        // The process belongs to us: it must not outlive the player.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn mpv_error(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("mpv: {what}"))
}

/// Whether an `mpv` executable is on `PATH`.
pub fn mpv_available() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("mpv").is_file()))
}

impl MpvPlayer {
    /// Starts mpv with its IPC socket at `socket` plus `extra_args`, and connects to it (waiting up
    /// to 10 s for the socket to appear).
    pub async fn spawn(socket: &Path, extra_args: &[&str]) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let child = Command::new("mpv")
            .arg("--idle=yes")
            .arg("--no-terminal")
            .arg("--keep-open=no")
            .arg(format!("--input-ipc-server={}", socket.display()))
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::new(ErrorKind::Config, format!("cannot start mpv: {e}")))?;
        let mut child = child;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(socket).await {
                Ok(s) => break s,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(mpv_error(format!("IPC socket did not open: {e}")));
                }
            }
        };
        let (read, write) = stream.into_split();
        Ok(Self {
            conn: tokio::sync::Mutex::new((BufReader::new(read), write)),
            next_id: AtomicU64::new(1),
            child,
            socket: socket.to_owned(),
        })
    }

    /// Sends one command and waits for its reply's `data`.
    async fn command(&self, command: Json) -> Result<Json> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&json!({ "command": command, "request_id": id }))
            .map_err(mpv_error)?;
        line.push(b'\n');
        let mut conn = self.conn.lock().await;
        let (reader, writer) = &mut *conn;
        let exchange = async {
            writer.write_all(&line).await.map_err(mpv_error)?;
            let mut buf = String::new();
            loop {
                buf.clear();
                let n = reader.read_line(&mut buf).await.map_err(mpv_error)?;
                if n == 0 {
                    return Err(mpv_error("IPC connection closed"));
                }
                if buf.len() > MAX_LINE_BYTES {
                    return Err(mpv_error("reply too long"));
                }
                let Ok(reply) = serde_json::from_str::<Json>(&buf) else {
                    continue;
                };
                if reply.get("request_id").and_then(Json::as_u64) != Some(id) {
                    continue; // an event, or a late reply to an abandoned request
                }
                return match reply.get("error").and_then(Json::as_str) {
                    Some("success") => Ok(reply.get("data").cloned().unwrap_or(Json::Null)),
                    Some(e) => Err(mpv_error(format!("{command}: {e}"))),
                    None => Err(mpv_error("reply without status")),
                };
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| Error::new(ErrorKind::Timeout, "mpv did not answer"))?
    }

    async fn set(&self, property: &str, value: Json) -> Result<()> {
        self.command(json!(["set_property", property, value]))
            .await
            .map(drop)
    }

    async fn get(&self, property: &str) -> Result<Json> {
        // Properties such as `duration` are unavailable while idle: that is "unknown", not an error.
        Ok(self
            .command(json!(["get_property", property]))
            .await
            .unwrap_or(Json::Null))
    }
}

/// Reads `probe` every 20 ms until `done` accepts what it read or `bound` has passed (mpv answers
/// commands before it has carried them out); the last reading. An IPC error ends the wait with it.
async fn settle<T, F>(
    bound: Duration,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let reading = probe().await?;
        if done(&reading) || tokio::time::Instant::now() >= deadline {
            return Ok(reading);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ms(seconds: &Json) -> Option<u64> {
    seconds
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0) as u64)
}

impl MediaPlayer for MpvPlayer {
    fn load(&self, uri: String) -> BoxFuture<'_, Result<()>> {
        async move {
            self.command(json!(["loadfile", uri, "replace"])).await?;
            self.set("pause", json!(false)).await?;
            // loadfile answers before the file is open: wait (bounded) until mpv has left idle and
            // knows the duration. A live stream may never report one; that is fine once playing.
            let (idle, known) = settle(
                LOAD_SETTLE,
                move || async move {
                    let idle = self.get("idle-active").await? == json!(true);
                    Ok((idle, !idle && ms(&self.get("duration").await?).is_some()))
                },
                |&(_, known)| known,
            )
            .await?;
            if !known && idle {
                return Err(mpv_error("the file did not start"));
            }
            Ok(())
        }
        .boxed()
    }

    fn pause(&self) -> BoxFuture<'_, Result<()>> {
        self.set("pause", json!(true)).boxed()
    }

    fn resume(&self) -> BoxFuture<'_, Result<()>> {
        self.set("pause", json!(false)).boxed()
    }

    fn stop(&self) -> BoxFuture<'_, Result<()>> {
        async move { self.command(json!(["stop"])).await.map(drop) }.boxed()
    }

    fn seek(&self, position_ms: u64) -> BoxFuture<'_, Result<()>> {
        async move {
            let secs = position_ms as f64 / 1000.0;
            self.command(json!(["seek", secs, "absolute"])).await?;
            // mpv answers before the seek is done, and on a busy machine `time-pos` still says
            // where playback was for a while: wait (bounded) until it has moved near the target,
            // so the status the caller gets next says where playback is. A stream that cannot
            // seek that precisely just takes the bound.
            settle(
                SEEK_SETTLE,
                move || async move { Ok(ms(&self.get("time-pos").await?)) },
                |at| at.is_some_and(|at| at.abs_diff(position_ms) <= SEEK_TOLERANCE_MS),
            )
            .await
            .map(drop)
        }
        .boxed()
    }

    fn set_volume(&self, volume: u8) -> BoxFuture<'_, Result<()>> {
        self.set("volume", json!(volume)).boxed()
    }

    fn set_muted(&self, muted: bool) -> BoxFuture<'_, Result<()>> {
        self.set("mute", json!(muted)).boxed()
    }

    fn playback(&self) -> BoxFuture<'_, Result<Playback>> {
        async move {
            let idle = self.get("idle-active").await? == json!(true);
            let paused = self.get("pause").await? == json!(true);
            let state = match (idle, paused) {
                (true, _) => PlaybackState::Stopped,
                (false, true) => PlaybackState::Paused,
                (false, false) => PlaybackState::Playing,
            };
            let volume = self
                .get("volume")
                .await?
                .as_f64()
                .map(|v| v.clamp(0.0, 100.0) as u8)
                .unwrap_or(100);
            Ok(Playback {
                state,
                position_ms: if idle {
                    0
                } else {
                    ms(&self.get("time-pos").await?).unwrap_or(0)
                },
                duration_ms: if idle {
                    None
                } else {
                    ms(&self.get("duration").await?)
                },
                volume,
                muted: self.get("mute").await? == json!(true),
            })
        }
        .boxed()
    }
}

/// Longest tone [`write_tone`] writes: one hour (28.8 MB), far below the 4 GiB a WAV header can
/// count.
pub const MAX_TONE_SECONDS: u32 = 3600;

/// Writes a WAV file of `seconds` of a quiet 440 Hz tone (8 kHz, 8-bit mono): something mpv can
/// really play in tests and demos without shipping media. More than [`MAX_TONE_SECONDS`] is
/// `InvalidInput` (the header's sizes would overflow long before memory ran out).
pub fn write_tone(path: &Path, seconds: u32) -> std::io::Result<()> {
    const RATE: u32 = 8000;
    if seconds > MAX_TONE_SECONDS {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a tone of {seconds} s is longer than {MAX_TONE_SECONDS} s"),
        ));
    }
    // At most 28.8 M samples: the header sums below cannot overflow.
    let samples = RATE * seconds;
    let mut wav = Vec::with_capacity(44 + samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&RATE.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&samples.to_le_bytes());
    for i in 0..samples {
        let phase = f64::from(i) * 440.0 * std::f64::consts::TAU / f64::from(RATE);
        wav.push((128.0 + 16.0 * phase.sin()) as u8);
    }
    std::fs::write(path, wav)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_too_long_for_its_header_is_refused_before_allocating() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tone.wav");
        let e = write_tone(&path, u32::MAX).expect_err("too long");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(!path.exists());
        write_tone(&path, 1).expect("one second");
        assert_eq!(std::fs::metadata(&path).expect("written").len(), 44 + 8000);
    }
}
