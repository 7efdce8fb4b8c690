//! Logs for apps: pmn's `tracing` output (and the `log` records of its dependencies) delivered to a
//! [`LogSink`] the app implements — Logcat on Android, os_log on Apple platforms, stdout on a JVM.
//!
//! Owns the process-wide `tracing` subscriber (installed on the first [`set_log_sink`]) and the
//! runtime level. What it must never do: block or fail the code that logs. An event is formatted on
//! the logging thread and handed to a bounded channel with `try_send`; one forwarding thread
//! (`pmn-log`) calls the sink. When the channel is full the record is dropped and counted
//! ([`log_stats`]); a sink that throws or panics is counted and called again for the next record.
//! Events raised on the forwarding thread itself (e.g. by the FFI layer while calling the sink) are
//! discarded, so a sink can never feed itself.

use crate::core::sync::Locked;
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

use super::error::{config, CallOutcome, PmnError};

/// Records waiting for the sink. At ~100 µs per JNA callback this is ~0.1 s of backlog; beyond it
/// records are dropped rather than making pmn wait for the app.
const QUEUE_CAPACITY: usize = 1024;

/// How verbose pmn's logs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and things that look wrong.
    Warn,
    /// Connection changes and other rare, notable events.
    Info,
    /// What pmn does, step by step.
    Debug,
    /// Everything, including stanza-level detail.
    Trace,
}

impl LogLevel {
    fn level_filter(self) -> LevelFilter {
        match self {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }

    /// The filter for `level`: pmn's own targets at `level`, its dependencies (tokio-xmpp, rustls,
    /// …) at most at `warn` — their debug output is rarely what an app developer wants. A
    /// `Targets` filter (target prefixes and levels), not an `EnvFilter`: that one's directive
    /// parser brings the `regex` crates into the library for nothing here.
    fn filter(self) -> Targets {
        Targets::new()
            .with_default(self.min(LogLevel::Warn).level_filter())
            .with_target("pmn", self.level_filter())
    }
}

impl From<&tracing::Level> for LogLevel {
    fn from(level: &tracing::Level) -> Self {
        match *level {
            tracing::Level::ERROR => LogLevel::Error,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::DEBUG => LogLevel::Debug,
            tracing::Level::TRACE => LogLevel::Trace,
        }
    }
}

/// Where pmn's logs go. Implement it in Kotlin (`android.util.Log`, `println`) or Swift
/// (`os.Logger`). pmn calls it from one thread of its own, one record at a time; a sink that throws
/// loses that record only.
#[uniffi::export(with_foreign)]
pub trait LogSink: Send + Sync {
    /// One log record: its level, its `target` (the Rust module path, e.g.
    /// `pmn::core::session`), and the formatted message with its fields (`online jid=…`).
    fn log(&self, level: LogLevel, target: String, message: String) -> Result<(), PmnError>;
}

/// Counters of the log pipeline since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct LogStats {
    /// Records the sink accepted.
    pub delivered: i64,
    /// Records dropped because the sink fell behind (the queue was full).
    pub dropped: i64,
    /// Records the sink threw (or panicked) on.
    pub failed: i64,
}

static DELIVERED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// One formatted record on its way to the sink.
struct Record {
    level: LogLevel,
    target: String,
    message: String,
}

/// The queue into the current sink's forwarding thread; `None` while no sink is set.
static QUEUE: RwLock<Option<SyncSender<Record>>> = RwLock::new(None);

/// The handle to change the filter of the installed subscriber.
static FILTER: OnceLock<reload::Handle<Targets, Registry>> = OnceLock::new();

/// Serialises sink changes (installation, thread start, swap).
static SETUP: Mutex<()> = Mutex::new(());

thread_local! {
    /// True on a forwarding thread: its own events are not logged (no feedback loop).
    static FORWARDING: Cell<bool> = const { Cell::new(false) };
}

/// Sends pmn's logs at `level` and above to `sink`, replacing any previous sink (records already
/// queued for the old sink still go to it). Safe to call at any time, from any thread.
///
/// Fails with `PmnException.Config` only when something else already installed the process-wide
/// `tracing` subscriber (a Rust host app that set up its own logging).
#[uniffi::export]
pub fn set_log_sink(sink: Arc<dyn LogSink>, level: LogLevel) -> Result<(), PmnError> {
    let _setup = SETUP.locked();
    install(level)?;
    let (tx, rx) = sync_channel::<Record>(QUEUE_CAPACITY);
    std::thread::Builder::new()
        .name("pmn-log".into())
        .spawn(move || {
            FORWARDING.with(|f| f.set(true));
            // Ends when the sender is replaced or cleared and the queue is drained.
            for record in rx {
                let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    sink.log(record.level, record.target, record.message)
                }));
                match call {
                    Ok(Ok(())) => DELIVERED.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(_)) | Err(_) => FAILED.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
        .map_err(|e| PmnError::Internal {
            detail: format!("cannot start the log thread: {e}"),
            outcome: CallOutcome::NotRun,
        })?;
    let old = QUEUE.write().unwrap_or_else(|e| e.into_inner()).replace(tx);
    drop(old);
    Ok(())
}

/// Changes the level of the current sink at run time (no effect before [`set_log_sink`]).
#[uniffi::export]
pub fn set_log_level(level: LogLevel) {
    if let Some(handle) = FILTER.get() {
        // Reloading only fails when the subscriber is gone (process exit).
        let _ = handle.reload(level.filter());
    }
}

/// Stops delivering logs; records already queued are still delivered.
#[uniffi::export]
pub fn clear_log_sink() {
    let _setup = SETUP.locked();
    let old = QUEUE.write().unwrap_or_else(|e| e.into_inner()).take();
    drop(old);
}

/// How many records were delivered, dropped and failed since the process started.
#[uniffi::export]
pub fn log_stats() -> LogStats {
    LogStats {
        delivered: super::numbers::out64(DELIVERED.load(Ordering::Relaxed)),
        dropped: super::numbers::out64(DROPPED.load(Ordering::Relaxed)),
        failed: super::numbers::out64(FAILED.load(Ordering::Relaxed)),
    }
}

/// Installs the subscriber on first use; afterwards only sets the level.
fn install(level: LogLevel) -> Result<(), PmnError> {
    if let Some(handle) = FILTER.get() {
        let _ = handle.reload(level.filter());
        return Ok(());
    }
    let (filter, handle) = reload::Layer::new(level.filter());
    tracing_subscriber::registry()
        .with(filter)
        .with(SinkLayer)
        // Also routes the `log` records of dependencies (rustls, …) into tracing.
        .try_init()
        .map_err(|e| config(format!("another logger is already installed: {e}")))?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// The layer that formats an event and queues it for the sink, never waiting.
struct SinkLayer;

impl<S: tracing::Subscriber> Layer<S> for SinkLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if FORWARDING.with(Cell::get) {
            return;
        }
        let queue = QUEUE.read().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = queue.as_ref() else {
            return;
        };
        let meta = event.metadata();
        let mut message = MessageVisitor::default();
        event.record(&mut message);
        let target = message
            .log_target
            .take()
            .unwrap_or_else(|| meta.target().to_owned());
        let record = Record {
            level: meta.level().into(),
            target,
            message: message.finish(),
        };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// `message key=value key=value`, the `log.*` bookkeeping fields of tracing-log left out.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
    /// A `log` record's real target (tracing-log reports the target `log` and puts it here).
    log_target: Option<String>,
}

impl MessageVisitor {
    fn finish(mut self) -> String {
        if self.message.is_empty() {
            return self.fields.trim_start().to_owned();
        }
        self.message.push_str(&self.fields);
        self.message
    }
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if !field.name().starts_with("log.") {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// The sink is process-wide: the tests of this module take turns.
    static TURN: Mutex<()> = Mutex::new(());

    struct Recording(Mutex<mpsc::Sender<(LogLevel, String, String)>>);

    impl LogSink for Recording {
        fn log(&self, level: LogLevel, target: String, message: String) -> Result<(), PmnError> {
            let _ = self.0.lock().unwrap().send((level, target, message));
            Ok(())
        }
    }

    fn recording() -> (Arc<Recording>, mpsc::Receiver<(LogLevel, String, String)>) {
        let (tx, rx) = mpsc::channel();
        (Arc::new(Recording(Mutex::new(tx))), rx)
    }

    /// Waits for the record whose message contains `needle`.
    fn wait_for(
        rx: &mpsc::Receiver<(LogLevel, String, String)>,
        needle: &str,
    ) -> Option<(LogLevel, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(r) if r.2.contains(needle) => return Some(r),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    #[test]
    fn records_reach_the_sink_with_level_target_and_fields_and_the_level_changes_at_run_time() {
        let _turn = TURN.locked();
        let (sink, rx) = recording();
        set_log_sink(sink, LogLevel::Info).unwrap();

        tracing::info!(jid = "home@home.test/tv", "sink-test online");
        let (level, target, message) = wait_for(&rx, "sink-test online").expect("delivered");
        assert_eq!(level, LogLevel::Info);
        assert_eq!(target, "pmn::ffi::logging::tests");
        assert_eq!(message, "sink-test online jid=home@home.test/tv");

        tracing::debug!("sink-test hidden at info");
        set_log_level(LogLevel::Debug);
        tracing::debug!("sink-test visible at debug");
        let (level, _, message) = wait_for(&rx, "sink-test").expect("debug delivered");
        assert_eq!(
            (level, message.as_str()),
            (LogLevel::Debug, "sink-test visible at debug")
        );
        clear_log_sink();
    }

    struct Throwing;

    impl LogSink for Throwing {
        fn log(&self, _: LogLevel, _: String, message: String) -> Result<(), PmnError> {
            if message.contains("panic") {
                panic!("a sink bug");
            }
            Err(PmnError::Internal {
                detail: "the app's logger threw".into(),
                outcome: CallOutcome::NotRun,
            })
        }
    }

    #[test]
    fn a_throwing_or_panicking_sink_loses_only_its_record() {
        let _turn = TURN.locked();
        let failed = log_stats().failed;
        set_log_sink(Arc::new(Throwing), LogLevel::Info).unwrap();
        tracing::info!("sink-test throw");
        tracing::info!("sink-test panic");
        let deadline = Instant::now() + Duration::from_secs(5);
        while log_stats().failed < failed + 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(log_stats().failed >= failed + 2, "{:?}", log_stats());

        // The pipeline still works for the next sink.
        let (sink, rx) = recording();
        set_log_sink(sink, LogLevel::Info).unwrap();
        tracing::info!("sink-test after the throwing sink");
        assert!(wait_for(&rx, "after the throwing sink").is_some());
        clear_log_sink();
    }

    /// A sink that takes a long time for every record (an app logging to a slow file).
    struct Stuck(Duration);

    impl LogSink for Stuck {
        fn log(&self, _: LogLevel, _: String, _: String) -> Result<(), PmnError> {
            std::thread::sleep(self.0);
            Ok(())
        }
    }

    #[test]
    fn a_slow_sink_never_blocks_the_logging_code_and_the_excess_is_dropped_and_counted() {
        let _turn = TURN.locked();
        let dropped = log_stats().dropped;
        set_log_sink(Arc::new(Stuck(Duration::from_millis(50))), LogLevel::Info).unwrap();
        let n = 5 * QUEUE_CAPACITY;
        let start = Instant::now();
        for i in 0..n {
            tracing::info!(i, "sink-test flood");
        }
        let spent = start.elapsed();
        // 5120 records through a 50 ms sink would take minutes if logging waited for it.
        assert!(spent < Duration::from_secs(2), "logging took {spent:?}");
        let lost = log_stats().dropped - dropped;
        assert!(lost as usize >= n - QUEUE_CAPACITY - 1, "dropped {lost}");
        clear_log_sink();
    }
}
