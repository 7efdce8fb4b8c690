//! End-to-end security between devices (spec §5, DESIGN §4): a TLS 1.3 tunnel negotiated with
//! Jingle (XEP-0166) over In-Band Bytestreams (XEP-0047/0261), with the XTLS security element
//! `urn:xmpp:jingle:security:xtls:1`, key pinning per bare JID, and pairing by SPAKE2 bound to the
//! TLS exporter. The XMPP server relays the bytes but can neither read nor alter them unnoticed.
//!
//! Layers, bottom up (each usable and tested on its own):
//! - [`tls`]: TLS 1.3 over any byte pipe, mutual auth through the KeyStore, exactly-one-key verifiers;
//! - [`ibb`]: the byte pipe over a [`Session`](crate::core::session::Session);
//! - [`tunnel`]: stanzas inside the TLS channel, with an iq tracker;
//! - [`endpoint`]: Jingle negotiation, trust decisions, per-peer tunnel cache, pairing, routing
//!   (one file per job under `endpoint/`), with [`gate`] counting pairing attempts per peer;
//! - [`limits`]: the bound on everything a peer can make a device hold, and its counters.
//!
//! This module never sees private key bytes (it signs through `identity`), never accepts a peer key
//! that is not pinned for that bare JID (except in pairing mode, where SPAKE2 must then succeed), and
//! never lets a malformed peer message take down the XMPP connection: failures end one tunnel.
//! Pairing is only between devices of one network (same bare JID). What strangers and peers can
//! make a device hold is bounded ([`E2eLimits`]), and a bound hit by one peer leaves the others,
//! the household's own devices first, working.

pub mod early;
pub mod endpoint;
pub mod gate;
pub mod ibb;
pub mod limits;
pub mod pairing;
pub mod pubkey;
pub mod revocation;
pub mod settings;
pub mod tls;
pub mod trust;
pub mod tunnel;
pub mod xml;

pub use endpoint::{Admission, E2eEndpoint, E2eInbound, PasswordRotation};
pub use ibb::{IbbStream, TransportHooks};
pub use limits::{E2eLimits, E2eStats};
pub use settings::{E2eSettings, TunnelFailure, DEFAULT_SETUP_TIMEOUT};
pub use tls::{handshake, handshake_resuming, Resumption, SecureChannel, TlsRole};
pub use trust::{TrustSource, TrustStore, TrustedDevice};
pub use tunnel::Tunnel;

#[cfg(test)]
mod tests;
