//! Finding the providers of a network: presence, XEP-0115 caps and XEP-0030 disco#info.
//!
//! A provider's presence carries `<c xmlns='http://jabber.org/protocol/caps'/>`. The controller asks
//! disco#info only for a caps `ver` it has not seen, verifies that the answer hashes to that `ver`
//! before caching it (XEP-0115 §5.4: an unverified answer is used for that one device only, never
//! cached), and keeps a directory of online providers. Only presence from the controller's own network
//! (same bare JID) is considered: a directed presence from a stranger must not plant a fake device in
//! the list.

mod caps;
mod directory;

pub use caps::{caps_for, disco_info_for, verify_caps, CapsCache, CAPS_NODE};
pub use directory::{DirectoryUpdate, PresenceOutcome, ProviderDirectory, ProviderInfo};

/// disco#info identity category of a service provider (spec §6).
pub const IDENTITY_CATEGORY: &str = "automation";
/// disco#info identity type of a service provider (spec §6).
pub const IDENTITY_TYPE: &str = "service";
