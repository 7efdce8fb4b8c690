//! Logging setup for apps: `tracing` output to stdout/stderr (the JVM, desktop). A foreign-trait log
//! sink for Logcat / os_log is planned with the mobile delivery work.

use std::sync::OnceLock;

static INIT: OnceLock<()> = OnceLock::new();

/// Starts printing pmn's logs at `level` (`error`, `warn`, `info`, `debug`, `trace`, or a
/// `tracing` filter such as `pmn=debug`). Only the first call has an effect.
#[uniffi::export]
pub fn init_logging(level: String) {
    INIT.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_new(&level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    });
}
