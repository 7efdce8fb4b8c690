//! The library's one tokio runtime. Every task of pmn runs on it; exported async functions hand their
//! work to it and await the join handle, so they work whatever executor the foreign side polls them
//! on (Kotlin coroutines, Swift concurrency) and never hit tokio's "no reactor running".

use std::future::Future;
use std::sync::OnceLock;

use super::error::{CallOutcome, PmnError};

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The runtime, created on first use. Two workers: phones have few big cores, and the work is I/O.
#[allow(clippy::expect_used)] // not input: only an OS that refuses to start threads fails here
pub(crate) fn handle() -> &'static tokio::runtime::Handle {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("pmn")
                // Default (2 MiB) stacks: the stream reader refuses elements nested deeper than
                // `session::MAX_ELEMENT_DEPTH` before any recursive code sees them, so no stanza
                // needs a bigger stack (tests/stream_limits.rs proves it on a default runtime).
                .enable_all()
                .build()
                // Without a runtime the library cannot do anything at all; this only fails when the
                // OS refuses to start threads.
                .expect("pmn: cannot start the tokio runtime")
        })
        .handle()
}

/// Runs `fut` on the library runtime and waits for it. A panic inside becomes
/// [`PmnError::Internal`] instead of crossing the FFI boundary.
pub(crate) async fn run<T, F>(fut: F) -> Result<T, PmnError>
where
    F: Future<Output = Result<T, PmnError>> + Send + 'static,
    T: Send + 'static,
{
    match handle().spawn(fut).await {
        Ok(result) => result,
        // The task may have been a call in flight: nothing says whether it ran.
        Err(e) if e.is_panic() => Err(PmnError::Internal {
            detail: "a pmn task panicked; please report this".into(),
            outcome: CallOutcome::Unknown,
        }),
        Err(_) => Err(PmnError::Cancelled {
            detail: "the operation was cancelled".into(),
            outcome: CallOutcome::Unknown,
        }),
    }
}
