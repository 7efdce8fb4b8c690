//! The protocol core: pure Rust, no UniFFI. See shared/DESIGN.md §1 for the module map.

pub mod access;
pub(crate) mod clock;
pub mod config;
pub mod controller;
pub mod discovery;
pub mod e2e;
pub mod error;
pub(crate) mod files;
pub mod identity;
pub(crate) mod lazy_broadcast;
pub(crate) mod plumbing;
pub mod provider;
pub mod pubsub;
pub mod rpc;
pub mod services;
pub mod session;
#[cfg(feature = "sources")]
pub mod sources;
pub(crate) mod sync;
pub mod trust;
pub(crate) mod xml_bounded;
