//! The recorder service (`urn:xmpp:tmp:pmn:recorder:0`; spec §3.1: "schedule a recording … using a
//! mobile phone").
//!
//! Methods: `recorder.channels()`, `recorder.schedule(channel, start, end, title)` (times are
//! `dateTime.iso8601` in UTC, `YYYYMMDDTHH:MM:SS`), `recorder.scheduled()`, `recorder.cancel(id)`.
//! Events: `recording-started`, `recording-finished`, `recording-failed` (payload [`Recording`]).
//!
//! Refusals that are not shape errors are faults with stable codes, so a controller can tell them
//! apart ([`Refusal::of`]): unknown channel, start in the past, overlap with another recording
//! (one tuner), unknown recording. An end before the start is a shape error (`bad-request`).
//!
//! The recording itself is simulated: at the start time the recording starts (or fails, on a channel
//! configured as failing), at the end time it finishes.

use crate::core::sync::Locked;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::rpc::events::EventNotice;
use crate::core::rpc::xmlrpc::DateTime;
use crate::core::rpc::{decode_notice, event, method, Emitter, Remote, ServiceSpec, TypedService};

/// The disco#info feature of the recorder.
pub const FEATURE: &str = "urn:xmpp:tmp:pmn:recorder:0";
/// The method prefix.
pub const SERVICE: &str = "recorder";
/// A recording started.
pub const EVENT_STARTED: &str = "recording-started";
/// A recording finished.
pub const EVENT_FINISHED: &str = "recording-finished";
/// A recording could not be made.
pub const EVENT_FAILED: &str = "recording-failed";
/// Most recordings scheduled at once.
pub const MAX_SCHEDULED: usize = 1000;
/// Longest title.
pub const MAX_TITLE_BYTES: usize = 1024;

/// Fault code: no such channel.
pub const FAULT_UNKNOWN_CHANNEL: i32 = 404;
/// Fault code: no such recording.
pub const FAULT_UNKNOWN_RECORDING: i32 = 410;
/// Fault code: the recording overlaps another one.
pub const FAULT_CONFLICT: i32 = 409;
/// Fault code: the start time has passed.
pub const FAULT_IN_THE_PAST: i32 = 422;
/// Fault code: too many recordings scheduled.
pub const FAULT_FULL: i32 = 507;

/// The recorder service definition.
#[derive(Debug, Clone, Copy)]
pub struct Recorder;

impl ServiceSpec for Recorder {
    const NAME: &'static str = SERVICE;
    const FEATURE: &'static str = FEATURE;
    const EVENTS: &'static [&'static str] = &[EVENT_STARTED, EVENT_FINISHED, EVENT_FAILED];
}

method!(
    /// `recorder.channels()`.
    Channels, Recorder, "channels", () => Vec<Channel>);
method!(
    /// `recorder.schedule(channel, start, end, title)`.
    Schedule, Recorder, "schedule", (String, DateTime, DateTime, String) => Recording);
method!(
    /// `recorder.scheduled()`: recordings not yet finished.
    Scheduled, Recorder, "scheduled", () => Vec<Recording>);
method!(
    /// `recorder.cancel(id)`.
    Cancel, Recorder, "cancel", (u32,) => Recording);
event!(
    /// `recording-started`.
    Started, Recorder, EVENT_STARTED, Recording);
event!(
    /// `recording-finished`.
    Finished, Recorder, EVENT_FINISHED, Recording);
event!(
    /// `recording-failed`.
    Failed, Recorder, EVENT_FAILED, Recording);

/// Every event a recorder sends, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderEvent {
    /// `recording-started`.
    Started(Recording),
    /// `recording-finished`.
    Finished(Recording),
    /// `recording-failed`.
    Failed(Recording),
}

impl RecorderEvent {
    /// The recorder event `notice` carries; `None` for another service's or an unknown event,
    /// `Some(Err)` (`Protocol`) for a payload of the wrong shape.
    pub fn decode(notice: &EventNotice) -> Option<Result<Self>> {
        decode_notice::<Started>(notice)
            .map(|r| r.map(Self::Started))
            .or_else(|| decode_notice::<Finished>(notice).map(|r| r.map(Self::Finished)))
            .or_else(|| decode_notice::<Failed>(notice).map(|r| r.map(Self::Failed)))
    }

    /// The recording the event is about.
    pub fn recording(&self) -> &Recording {
        match self {
            Self::Started(r) | Self::Finished(r) | Self::Failed(r) => r,
        }
    }
}

/// A channel that can be recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Stable identifier, used in `schedule`.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// Where a recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// Waiting for its start.
    Scheduled,
    /// Recording now.
    Recording,
    /// Done.
    Finished,
    /// Could not be made.
    Failed,
}

/// A scheduled recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// Identifier, used in `cancel`.
    pub id: u32,
    /// The channel id.
    pub channel: String,
    /// Start, UTC.
    pub start: DateTime,
    /// End, UTC.
    pub end: DateTime,
    /// Title.
    pub title: String,
    /// Where it is.
    pub state: RecordingState,
}

/// A typed recorder refusal, from the fault code of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// [`FAULT_UNKNOWN_CHANNEL`].
    UnknownChannel,
    /// [`FAULT_UNKNOWN_RECORDING`].
    UnknownRecording,
    /// [`FAULT_CONFLICT`].
    Conflict,
    /// [`FAULT_IN_THE_PAST`].
    InThePast,
    /// [`FAULT_FULL`].
    Full,
}

impl Refusal {
    /// The refusal `error` carries, if it is a recorder fault.
    pub fn of(error: &Error) -> Option<Refusal> {
        match error.fault_code()? {
            FAULT_UNKNOWN_CHANNEL => Some(Refusal::UnknownChannel),
            FAULT_UNKNOWN_RECORDING => Some(Refusal::UnknownRecording),
            FAULT_CONFLICT => Some(Refusal::Conflict),
            FAULT_IN_THE_PAST => Some(Refusal::InThePast),
            FAULT_FULL => Some(Refusal::Full),
            _ => None,
        }
    }
}

/// Seconds since the Unix epoch of an XML-RPC `dateTime.iso8601` in UTC: `YYYYMMDDTHH:MM:SS`,
/// also with dashes (`YYYY-MM-DDTHH:MM:SS`) and a trailing `Z`. Anything else is `None`.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let t = text.trim();
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = t.split_once('T')?;
    let date: String = date.chars().filter(|c| *c != '-').collect();
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (y, m, d) = (num(&date[0..4])?, num(&date[4..6])?, num(&date[6..8])?);
    let mut parts = time.split(':');
    let (hh, mm, ss) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if parts.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0..24).contains(&hh)
        || !(0..60).contains(&mm)
        || !(0..61).contains(&ss)
    {
        return None;
    }
    // Days from civil (H. Hinnant): proleptic Gregorian calendar.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The XML-RPC `dateTime.iso8601` (`YYYYMMDDTHH:MM:SS`, UTC) of `unix` seconds.
pub fn format_datetime(unix: i64) -> DateTime {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    DateTime(format!(
        "{y:04}{m:02}{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Entry {
    recording: Recording,
    start: i64,
    end: i64,
}

struct Book {
    channels: Vec<Channel>,
    failing: HashSet<String>,
    entries: Vec<Entry>,
    next_id: u32,
    emitter: Emitter<Recorder>,
}

impl Book {
    fn schedule(
        &mut self,
        channel: String,
        start: DateTime,
        end: DateTime,
        title: String,
    ) -> Result<Recording> {
        let bad =
            |why: String| Error::new(ErrorKind::BadParams, format!("recorder.schedule: {why}"));
        let s = parse_datetime(&start.0).ok_or_else(|| bad(format!("bad start {:?}", start.0)))?;
        let e = parse_datetime(&end.0).ok_or_else(|| bad(format!("bad end {:?}", end.0)))?;
        if e <= s {
            return Err(bad("the end must be after the start".into()));
        }
        if title.len() > MAX_TITLE_BYTES {
            return Err(bad(format!("title longer than {MAX_TITLE_BYTES} bytes")));
        }
        if !self.channels.iter().any(|c| c.id == channel) {
            return Err(Error::fault(
                FAULT_UNKNOWN_CHANNEL,
                format!("no channel {channel:?}"),
            ));
        }
        if s < now_unix() {
            return Err(Error::fault(
                FAULT_IN_THE_PAST,
                format!("the start {} has passed", start.0),
            ));
        }
        if let Some(other) = self.entries.iter().find(|o| o.start < e && s < o.end) {
            return Err(Error::fault(
                FAULT_CONFLICT,
                format!(
                    "overlaps recording {} ({:?}, {}–{})",
                    other.recording.id,
                    other.recording.title,
                    other.recording.start.0,
                    other.recording.end.0
                ),
            ));
        }
        if self.entries.len() >= MAX_SCHEDULED {
            return Err(Error::fault(FAULT_FULL, "too many recordings scheduled"));
        }
        let recording = Recording {
            id: self.next_id,
            channel,
            start: format_datetime(s),
            end: format_datetime(e),
            title,
            state: RecordingState::Scheduled,
        };
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.entries.push(Entry {
            recording: recording.clone(),
            start: s,
            end: e,
        });
        Ok(recording)
    }

    fn cancel(&mut self, id: u32) -> Result<Recording> {
        let at = self
            .entries
            .iter()
            .position(|e| e.recording.id == id)
            .ok_or_else(|| Error::fault(FAULT_UNKNOWN_RECORDING, format!("no recording {id}")))?;
        Ok(self.entries.remove(at).recording)
    }

    /// Starts and finishes what is due at `now`, with events.
    fn advance(&mut self, now: i64) {
        let mut done = Vec::new();
        for (i, entry) in self.entries.iter_mut().enumerate() {
            let r = &mut entry.recording;
            if r.state == RecordingState::Scheduled && entry.start <= now {
                if self.failing.contains(&r.channel) {
                    r.state = RecordingState::Failed;
                    self.emitter.emit::<Failed>(r);
                    done.push(i);
                    continue;
                }
                r.state = RecordingState::Recording;
                self.emitter.emit::<Started>(r);
            }
            if r.state == RecordingState::Recording && entry.end <= now {
                r.state = RecordingState::Finished;
                self.emitter.emit::<Finished>(r);
                done.push(i);
            }
        }
        for i in done.into_iter().rev() {
            self.entries.remove(i);
        }
    }
}

/// The recorder service with a simulated tuner (one recording at a time).
pub struct RecorderService {
    typed: TypedService<Recorder>,
}

impl std::fmt::Debug for RecorderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderService").finish_non_exhaustive()
    }
}

impl RecorderService {
    /// A recorder of `channels`; recordings on a channel listed in `failing` fail at their start
    /// (a tuner without signal).
    pub fn new(channels: Vec<Channel>, failing: &[&str]) -> Self {
        let typed = TypedService::<Recorder>::new();
        let book = Arc::new(Mutex::new(Book {
            channels,
            failing: failing.iter().map(|s| s.to_string()).collect(),
            entries: Vec::new(),
            next_id: 1,
            emitter: typed.emitter(),
        }));
        let b = book.clone();
        let typed = typed.handle::<Channels, _, _>(move |(), _| {
            let out = b.locked().channels.clone();
            async move { Ok(out) }
        });
        let b = book.clone();
        let typed = typed.handle::<Schedule, _, _>(move |(channel, start, end, title), _| {
            let out = b.locked().schedule(channel, start, end, title);
            async move { out }
        });
        let b = book.clone();
        let typed = typed.handle::<Scheduled, _, _>(move |(), _| {
            let out: Vec<Recording> = b
                .locked()
                .entries
                .iter()
                .map(|e| e.recording.clone())
                .collect();
            async move { Ok(out) }
        });
        let b = book.clone();
        let typed = typed.handle::<Cancel, _, _>(move |(id,), _| {
            let out = b.locked().cancel(id);
            async move { out }
        });
        let weak = Arc::downgrade(&book);
        let typed = typed.on_bind(move || {
            tokio::spawn(Self::clock(weak));
        });
        Self { typed }
    }

    /// A recorder with a few channels, one of which (`nosignal`) always fails: for demos and tests.
    pub fn simulated() -> Self {
        let ch = |id: &str, name: &str| Channel {
            id: id.into(),
            name: name.into(),
        };
        Self::new(
            vec![
                ch("one", "Channel One"),
                ch("two", "Channel Two"),
                ch("nosignal", "No Signal"),
            ],
            &["nosignal"],
        )
    }

    async fn clock(book: Weak<Mutex<Book>>) {
        let mut timer = tokio::time::interval(Duration::from_millis(200));
        loop {
            timer.tick().await;
            let Some(book) = book.upgrade() else { break };
            let mut b = book.locked();
            if b.emitter.is_closed() {
                break;
            }
            b.advance(now_unix());
        }
    }
}

crate::core::rpc::service_via_typed!(RecorderService);

/// Typed calls to a recorder provider.
pub type RecorderClient = Remote<Recorder>;

impl Remote<Recorder> {
    /// The channels.
    pub async fn channels(&self) -> Result<Vec<Channel>> {
        self.call::<Channels>(&()).await
    }

    /// Schedules a recording of `channel` from `start` to `end` (Unix seconds, UTC).
    pub async fn schedule(
        &self,
        channel: &str,
        start: i64,
        end: i64,
        title: &str,
    ) -> Result<Recording> {
        let params = (
            channel.to_owned(),
            format_datetime(start),
            format_datetime(end),
            title.to_owned(),
        );
        self.call::<Schedule>(&params).await
    }

    /// Recordings not yet finished.
    pub async fn scheduled(&self) -> Result<Vec<Recording>> {
        self.call::<Scheduled>(&()).await
    }

    /// Cancels recording `id`.
    pub async fn cancel(&self, id: u32) -> Result<Recording> {
        self.call::<Cancel>(&(id,)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rpc::events::EventSink;
    use crate::core::rpc::xmlrpc::Value;
    use crate::core::rpc::{decode_output, encode_params, Method};
    use crate::core::rpc::{CallContext, Service};

    fn ctx() -> CallContext {
        CallContext {
            caller: "home@home.test/phone".parse().expect("jid"),
            tunnel: false,
        }
    }

    async fn call<M: Method<Service = Recorder>>(
        s: &RecorderService,
        p: M::Params,
    ) -> Result<M::Output> {
        let v = s.call(M::VERB, encode_params::<M>(&p)?, &ctx()).await?;
        decode_output::<M>(v)
    }

    #[test]
    fn datetimes_round_trip_and_reject_garbage() {
        for t in [0, 1_700_000_000, 951_782_400 /* 2000-02-29 */, -86_400] {
            assert_eq!(parse_datetime(&format_datetime(t).0), Some(t), "{t}");
        }
        assert_eq!(format_datetime(0).0, "19700101T00:00:00");
        assert_eq!(
            parse_datetime("2026-11-25T21:00:00Z"),
            parse_datetime("20261125T21:00:00")
        );
        for bad in [
            "",
            "2026",
            "20261325T00:00:00",
            "20261125T24:00:00",
            "20261125T21:00",
            "2026112xT21:00:00",
            "20261125T21:00:00:00",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn schedule_conflicts_past_unknown_and_cancel_are_typed() {
        let s = RecorderService::simulated();
        let now = now_unix();
        let dt = format_datetime;
        assert_eq!(call::<Channels>(&s, ()).await.expect("channels").len(), 3);
        let r = call::<Schedule>(
            &s,
            ("one".into(), dt(now + 100), dt(now + 200), "News".into()),
        )
        .await
        .expect("schedule");
        assert_eq!(r.state, RecordingState::Scheduled);
        let e = call::<Schedule>(&s, ("two".into(), dt(now + 150), dt(now + 250), "x".into()))
            .await
            .expect_err("overlap");
        assert_eq!(Refusal::of(&e), Some(Refusal::Conflict));
        let e = call::<Schedule>(&s, ("two".into(), dt(now - 100), dt(now + 50), "x".into()))
            .await
            .expect_err("past");
        assert_eq!(Refusal::of(&e), Some(Refusal::InThePast));
        let e = call::<Schedule>(
            &s,
            ("nine".into(), dt(now + 300), dt(now + 400), "x".into()),
        )
        .await
        .expect_err("channel");
        assert_eq!(Refusal::of(&e), Some(Refusal::UnknownChannel));
        let e = call::<Schedule>(&s, ("one".into(), dt(now + 400), dt(now + 300), "x".into()))
            .await
            .expect_err("backwards");
        assert_eq!(e.kind(), ErrorKind::BadParams);
        let e = call::<Schedule>(
            &s,
            (
                "one".into(),
                DateTime("tomorrow".into()),
                dt(now + 300),
                "x".into(),
            ),
        )
        .await
        .expect_err("garbage time");
        assert_eq!(e.kind(), ErrorKind::BadParams);
        // A date sent as a string is the wrong shape.
        let e = s
            .call(
                "schedule",
                vec![
                    Value::String("one".into()),
                    Value::String(dt(now + 500).0),
                    Value::DateTime(dt(now + 600).0),
                    Value::String("x".into()),
                ],
                &ctx(),
            )
            .await
            .expect_err("string date");
        assert_eq!(e.kind(), ErrorKind::BadParams);
        // Back to back is not an overlap.
        call::<Schedule>(
            &s,
            ("two".into(), dt(now + 200), dt(now + 300), "Film".into()),
        )
        .await
        .expect("adjacent");
        assert_eq!(call::<Scheduled>(&s, ()).await.expect("list").len(), 2);
        assert_eq!(call::<Cancel>(&s, (r.id,)).await.expect("cancel").id, r.id);
        let e = call::<Cancel>(&s, (r.id,)).await.expect_err("gone");
        assert_eq!(Refusal::of(&e), Some(Refusal::UnknownRecording));
    }

    #[tokio::test]
    async fn recordings_start_finish_or_fail_with_events() {
        let s = RecorderService::simulated();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.bind_events(EventSink::new(SERVICE, tx));
        let now = now_unix();
        let dt = format_datetime;
        call::<Schedule>(&s, ("one".into(), dt(now), dt(now + 1), "Short".into()))
            .await
            .expect("schedule");
        call::<Schedule>(
            &s,
            ("nosignal".into(), dt(now + 1), dt(now + 2), "Dark".into()),
        )
        .await
        .expect("schedule");
        let mut names = Vec::new();
        while names.len() < 3 {
            let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("event in time")
                .expect("open");
            names.push(e.name);
        }
        assert_eq!(names, [EVENT_STARTED, EVENT_FINISHED, EVENT_FAILED]);
        assert!(call::<Scheduled>(&s, ()).await.expect("list").is_empty());
    }
}
