//! Bench-only exports for the Kotlin events benchmark (`cargo xtask bench kotlin`,
//! bindings/kotlin/src/test/kotlin/org/pmn/EventsBench.kt). Compiled only with the `test-ca`
//! feature, which the test and bench builds have and shipped builds never do.
//!
//! The emitters run the controller's own delivery code on the controller's own threads (a pmn
//! runtime worker, the listener gate, the conversion of the core event the provider sent), without
//! the network in between, so the benchmark can tell the cost of crossing into Kotlin apart from
//! the cost of getting the event there; the benchmark measures the whole path through Prosody too.

use std::sync::Arc;

use super::error::PmnError;
use super::gate::ListenerGate;
use super::listener::{ControllerListener, EventBatchListener};
use super::records::ServiceEvent;
use super::runtime;
use crate::core::controller::ServiceEvent as CoreEvent;
use crate::core::rpc::events::EventNotice;
use crate::core::rpc::{encode_event, Event, ServiceSpec};
use crate::core::services::player::{PlaybackState, PlayerStatus, StateChanged};

/// Does nothing. The benchmark's baseline: one Kotlin→Rust call with no argument and no result.
#[uniffi::export]
pub fn bench_noop() {}

/// The event a player provider sends when it starts playing, as the controller receives it.
fn player_event(provider: &str) -> Result<CoreEvent, PmnError> {
    let status = PlayerStatus {
        uri: Some("file:///movies/benchmark.mkv".into()),
        title: Some("Benchmark".into()),
        state: PlaybackState::Playing,
        position_ms: 12_345,
        duration_ms: Some(5_400_000),
        volume: 40,
        muted: false,
    };
    Ok(CoreEvent {
        provider: provider
            .parse()
            .map_err(|e| super::error::config(format!("provider {provider:?}: {e}")))?,
        notice: EventNotice {
            service: <StateChanged as Event>::Service::NAME.into(),
            name: StateChanged::NAME.into(),
            params: encode_event::<StateChanged>(&status).map_err(PmnError::from)?,
        },
    })
}

/// Delivers `count` `state-changed` events of `provider` (a full JID) to `listener`, one
/// `on_event` call each, as a connected controller does; returns when the last call returned.
#[uniffi::export]
pub async fn bench_deliver_events(
    listener: Arc<dyn ControllerListener>,
    provider: String,
    count: i32,
) -> Result<(), PmnError> {
    let count = super::numbers::in32("count", count)?;
    let event = player_event(&provider)?;
    runtime::run(async move {
        let gate = ListenerGate::new(listener);
        gate.open();
        for _ in 0..count {
            let e: ServiceEvent = event.clone().into();
            gate.deliver("on_event", |l| l.on_event(e));
        }
        Ok(())
    })
    .await
}

/// Delivers `count` `state-changed` events of `provider` to `listener` in calls of `batch`
/// events (the last may be shorter), as `Controller.watch_event_batches` does under a burst.
#[uniffi::export]
pub async fn bench_deliver_event_batches(
    listener: Arc<dyn EventBatchListener>,
    provider: String,
    count: i32,
    batch: i32,
) -> Result<(), PmnError> {
    let count = super::numbers::in32("count", count)?;
    let batch = super::numbers::in32("batch", batch)?.max(1);
    let event = player_event(&provider)?;
    runtime::run(async move {
        let mut left = count;
        while left > 0 {
            let n = left.min(batch);
            let events: Vec<ServiceEvent> = (0..n).map(|_| event.clone().into()).collect();
            if let Err(e) = listener.on_events(events) {
                tracing::warn!(error = %e, "event batch listener failed");
            }
            left -= n;
        }
        Ok(())
    })
    .await
}
