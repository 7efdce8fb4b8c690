//! Callbacks into the app (Kotlin / Swift). pmn calls them from its own runtime threads, one at a
//! time per controller, and never while holding a lock.

use super::error::PmnError;
use super::records::{ConnectionState, ProviderInfo, ServiceEvent};

/// What a controller tells the app. Implement it in Kotlin or Swift; a method that throws is logged
/// and does not stop delivery.
#[uniffi::export(with_foreign)]
pub trait ControllerListener: Send + Sync {
    /// A provider came online (or changed its services).
    fn on_provider_online(&self, provider: ProviderInfo) -> Result<(), PmnError>;
    /// A provider went offline.
    fn on_provider_offline(&self, jid: String) -> Result<(), PmnError>;
    /// An event of a subscribed service.
    fn on_event(&self, event: ServiceEvent) -> Result<(), PmnError>;
    /// The connection state changed.
    fn on_connection_state(&self, state: ConnectionState) -> Result<(), PmnError>;
}

/// Told each time a subscription was restored after a gap: the provider came back online, or
/// this controller's own session could not be resumed (a server restart, an absence longer than
/// the server keeps a session). Events sent in between are lost: read the provider's state again
/// (e.g. `player.status()`). Called from a pmn thread; a method that throws is logged.
#[uniffi::export(with_foreign)]
pub trait ResyncListener: Send + Sync {
    /// The subscription to `service` on `provider` (full JID) is live again after a gap.
    fn on_resync(&self, provider: String, service: String) -> Result<(), PmnError>;
}

/// Events of a controller's subscriptions, several per call (see `Controller.watch_event_batches`):
/// one crossing into Kotlin or Swift for up to a batch of events instead of one per event, for
/// apps that receive many. Called from a pmn thread, one call at a time, events in order; a
/// method that throws is logged and does not stop delivery.
#[uniffi::export(with_foreign)]
pub trait EventBatchListener: Send + Sync {
    /// The events that arrived since the last call, oldest first (never empty).
    fn on_events(&self, events: Vec<ServiceEvent>) -> Result<(), PmnError>;
}
