//! The app's listener behind a gate, so a controller keeps the promise the app relies on when it
//! tears a screen down: **no callback starts after `disconnect()` or `close()` returns**, and
//! one already running is waited for. The forwarders from the core are tokio tasks; aborting
//! them stops them at their next await, but not in the middle of a (synchronous) call into
//! Kotlin or Swift — hence the count of calls in progress.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::error::PmnError;
use super::listener::ControllerListener;
use crate::core::sync::Locked;

/// How long closing waits for a callback in progress. Bounded, because a listener that calls back
/// into the controller it is being closed from would otherwise wait for itself.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    in_flight: usize,
}

/// The app's [`ControllerListener`], reachable only while the gate is open.
pub(super) struct ListenerGate {
    listener: Arc<dyn ControllerListener>,
    state: Mutex<GateState>,
    idle: Condvar,
}

/// Counts one callback in progress; its drop (also on unwind) lets a closer go on.
struct InFlight<'a>(&'a ListenerGate);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.locked();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            self.0.idle.notify_all();
        }
    }
}

impl ListenerGate {
    /// A closed gate over `listener` (a controller opens it in `connect`).
    pub(super) fn new(listener: Arc<dyn ControllerListener>) -> Arc<Self> {
        Arc::new(Self {
            listener,
            state: Mutex::new(GateState::default()),
            idle: Condvar::new(),
        })
    }

    /// Lets callbacks through.
    pub(super) fn open(&self) {
        self.state.locked().open = true;
    }

    /// Calls `f` with the listener unless the gate is closed; what the listener throws is
    /// logged (`what` names the callback) and changes nothing.
    pub(super) fn deliver(
        &self,
        what: &str,
        f: impl FnOnce(&dyn ControllerListener) -> Result<(), PmnError>,
    ) {
        {
            let mut state = self.state.locked();
            if !state.open {
                return;
            }
            state.in_flight += 1;
        }
        let _in_flight = InFlight(self);
        if let Err(e) = f(self.listener.as_ref()) {
            tracing::warn!(error = %e, "listener {what} failed");
        }
    }

    /// Closes the gate: no callback starts after this returns. Waits at most `wait` for those in
    /// progress; returns whether none was left running.
    pub(super) fn close(&self, wait: Duration) -> bool {
        let mut state = self.state.locked();
        state.open = false;
        let (state, _) = self
            .idle
            .wait_timeout_while(state, wait, |s| s.in_flight > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let idle = state.in_flight == 0;
        if !idle {
            tracing::warn!(
                in_flight = state.in_flight,
                "a listener callback is still running after close (does it call the controller?)"
            );
        }
        idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::records::{ConnectionState, ProviderInfo, ServiceEvent};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Slow {
        calls: AtomicUsize,
    }

    impl ControllerListener for Slow {
        fn on_provider_online(&self, _: ProviderInfo) -> Result<(), PmnError> {
            Ok(())
        }
        fn on_provider_offline(&self, _: String) -> Result<(), PmnError> {
            Ok(())
        }
        fn on_event(&self, _: ServiceEvent) -> Result<(), PmnError> {
            Ok(())
        }
        fn on_connection_state(&self, _: ConnectionState) -> Result<(), PmnError> {
            std::thread::sleep(Duration::from_millis(200));
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn nothing_is_delivered_after_close_and_a_running_callback_is_waited_for() {
        let slow = Arc::new(Slow::default());
        let gate = ListenerGate::new(slow.clone());
        gate.deliver("closed", |l| l.on_connection_state(ConnectionState::Idle));
        assert_eq!(
            slow.calls.load(Ordering::SeqCst),
            0,
            "a closed gate delivers nothing"
        );
        gate.open();
        let running = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.deliver("slow", |l| l.on_connection_state(ConnectionState::Idle))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(gate.close(CLOSE_WAIT), "the running callback finished");
        // close() returned only after the callback in progress had finished.
        assert_eq!(slow.calls.load(Ordering::SeqCst), 1);
        gate.deliver("late", |l| l.on_connection_state(ConnectionState::Idle));
        assert_eq!(slow.calls.load(Ordering::SeqCst), 1, "none after close");
        running.join().expect("thread");
        // A callback that outlives the bound is reported, not waited for forever.
        gate.open();
        let stuck = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.deliver("slow", |l| l.on_connection_state(ConnectionState::Idle))
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!gate.close(Duration::from_millis(10)));
        stuck.join().expect("thread");
    }
}
