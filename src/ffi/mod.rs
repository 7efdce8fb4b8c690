//! The UniFFI facade: thin wrappers over [`crate::core`], converting with `From`. No protocol rule
//! lives here; everything exported is also a plain Rust API tested in Rust.

mod controller;
mod diagnostics;
mod error;
mod keystore;
mod listener;
mod logging;
mod provider;
mod records;
mod runtime;
mod task;

pub use controller::Controller;
pub use diagnostics::{live_objects, LiveObjects};
pub use error::PmnError;
pub use keystore::*;
pub use listener::ControllerListener;
pub use logging::init_logging;
pub use provider::{start_simulated_player, Provider};
pub use records::{
    ConnectionConfig, ConnectionState, PlaybackState, PlayerStatus, ProviderInfo, ServiceEvent,
};
pub use task::TaskHandle;
