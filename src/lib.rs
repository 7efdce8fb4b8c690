//! pmn — the Personal Media Network core.
//!
//! Phone apps use pmn to find and drive the devices of a household's media network (TVs, players,
//! recorders) over XMPP, as described by the ProtoXEP "Personal Media Network". All devices of one
//! household log in with one bare JID (the *network identifier*) and one resource each; providers
//! announce services through XEP-0115 caps and answer XEP-0009 Jabber-RPC calls; controllers find them
//! from presence and subscribe to their events.
//!
//! The crate has three layers:
//! - [`core`]: the protocol in pure Rust (no UniFFI); every behaviour is tested here.
//! - `ffi`: a thin UniFFI facade for Kotlin and Swift.
//! - [`platform`]: key stores of the phone platforms (Android Keystore, Apple keychain) and a software
//!   store for desktop providers and tests.

// Library code never panics on input: no `unwrap`/`expect` outside tests (each remaining one is
// allowed where it stands, with the reason it cannot fail). `cargo xtask test` runs clippy with
// `-D warnings`, so this is the suite's gate.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

uniffi::setup_scaffolding!();

pub mod core;
mod ffi;
pub mod platform;

/// Entry points of the fuzz targets (`fuzz/`) and of the corpus replay test: not an API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;

pub use crate::ffi::*;
