//! Finding the providers of a network: presence, entity capabilities and XEP-0030 disco#info.
//!
//! A provider's presence carries `<c xmlns='http://jabber.org/protocol/caps'/>` (XEP-0115) and
//! `<c xmlns='urn:xmpp:caps'/>` (XEP-0390); a foreign device may carry either. The controller asks
//! disco#info only for a hash it has not seen, verifies that the answer is well-formed and hashes to
//! the announced value before caching it (XEP-0115 §5.4: an unverified answer is used for that one
//! device only, never cached), and keeps a directory of online providers. Only presence from the
//! controller's own network (same bare JID) or a trusted host's is considered: a directed presence
//! from a stranger must not plant a fake device in the list. The cache and the queries presences
//! trigger are bounded ([`CapsCache`], [`InfoQueries`]): hashes are outside input.

mod caps;
mod directory;
mod queries;

pub use caps::{
    caps_for, disco_info_for, ecaps2_for, is_own_ecaps2_node, presence_for, Advertised, CapsCache,
    CapsKey, CapsSnapshot, DiscoAnswer, HashInput, IllFormed, Scheme, SnapshotError, Verdict,
    CAPS_NODE, DEFAULT_CACHE_CAPACITY, MAX_SNAPSHOT_BYTES,
};
pub use directory::{
    is_service_feature, DirectoryUpdate, PresenceOutcome, ProviderDirectory, ProviderInfo,
};
pub(crate) use queries::count_info_query;
pub use queries::{info_queries_sent, InfoQueries, InfoQuery, QueryLimits, QueryStart};

/// disco#info identity category of a service provider (spec §6).
pub const IDENTITY_CATEGORY: &str = "automation";
/// disco#info identity type of a service provider (spec §6).
pub const IDENTITY_TYPE: &str = "service";
