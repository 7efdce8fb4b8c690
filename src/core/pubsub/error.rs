//! Why a playlist operation failed, and why an inbound entry was ignored.

use std::fmt;

use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::core::access::AccessError;
use crate::core::error::{Error, ErrorKind};

/// Why an entry that arrived (in a fetch or a notification) was not handed to the app. Each is
/// counted in [`super::PubsubStats`]; none is fatal: the server, or anyone who can publish on a
/// node, must not be able to make a subscriber fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoredReason {
    /// Not an entry of [`super::NS_PLAYLIST`], or one that breaks its rules.
    Malformed,
    /// Larger than [`super::MAX_ENTRY_BYTES`] (checked before parsing).
    Oversized,
    /// Carries no owner signature.
    Unsigned,
    /// Signed, but the signature does not verify (altered, or moved to another node or id).
    BadSignature,
    /// Signed by a key that is not one of the publishing household's owner keys.
    UnknownSigner,
    /// A notification about a node this device did not subscribe to.
    NotSubscribed,
    /// A valid entry beyond the cap of entries kept ([`super::FetchLimits::max_entries`]).
    OverCap,
    /// A validly signed version not newer than one this device already saw of that entry, or a
    /// version since retracted: the server replaying an old entry ([`super::replay`]).
    Replayed,
}

impl IgnoredReason {
    /// A short stable name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoredReason::Malformed => "malformed",
            IgnoredReason::Oversized => "oversized",
            IgnoredReason::Unsigned => "unsigned",
            IgnoredReason::BadSignature => "bad-signature",
            IgnoredReason::UnknownSigner => "unknown-signer",
            IgnoredReason::NotSubscribed => "not-subscribed",
            IgnoredReason::OverCap => "over-cap",
            IgnoredReason::Replayed => "replayed",
        }
    }
}

impl fmt::Display for IgnoredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a playlist operation was refused. Converted to the core [`Error`] for callers that only
/// switch on [`ErrorKind`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlaylistError {
    /// The entry or playlist name given by the app breaks the rules (empty title, long URI, …).
    #[error("invalid playlist entry: {0}")]
    Invalid(String),
    /// An inbound entry was refused (see [`IgnoredReason`]).
    #[error("playlist entry refused: {0}")]
    Refused(IgnoredReason),
    /// The owner key could not sign (missing, needs the user, platform failure).
    #[error("cannot sign with the owner key: {0}")]
    Signing(AccessError),
    /// The server refused us: the node's access model does not let this account in.
    #[error("the playlist's owner does not allow this account ({0})")]
    Forbidden(String),
    /// The playlist (node) does not exist on that account.
    #[error("no such playlist ({0})")]
    NotFound(String),
    /// The server does not offer this to us (XMPP `service-unavailable`, `feature-not-implemented`):
    /// Prosody and ejabberd list an account's nodes and items only to its presence contacts.
    #[error("the server does not offer this ({0})")]
    Unavailable(String),
    /// Too many subscriptions on this device ([`super::MAX_SUBSCRIPTIONS`]).
    #[error("too many playlist subscriptions (at most {0})")]
    TooManySubscriptions(usize),
    /// The server answered with another error, or something that does not follow XEP-0060.
    #[error("pubsub server error: {0}")]
    Server(String),
    /// The session failed (not online, timeout).
    #[error(transparent)]
    Session(#[from] Error),
}

impl PlaylistError {
    /// The typed error for an iq error answer of the pubsub service while doing `what`.
    pub(crate) fn from_stanza_error(e: &StanzaError, what: &str) -> Self {
        let text = format!("{what}: {:?}", e.defined_condition);
        match e.defined_condition {
            DefinedCondition::Forbidden
            | DefinedCondition::NotAuthorized
            | DefinedCondition::RegistrationRequired
            | DefinedCondition::NotAllowed => PlaylistError::Forbidden(text),
            DefinedCondition::ItemNotFound => PlaylistError::NotFound(text),
            // ejabberd answers `subscription-required` where Prosody says `service-unavailable`:
            // it lists an account's nodes only to its presence contacts.
            DefinedCondition::ServiceUnavailable
            | DefinedCondition::FeatureNotImplemented
            | DefinedCondition::SubscriptionRequired => PlaylistError::Unavailable(text),
            _ => PlaylistError::Server(text),
        }
    }

    /// The reason an inbound entry was ignored, if that is what this is.
    pub fn ignored(&self) -> Option<IgnoredReason> {
        match self {
            PlaylistError::Refused(r) => Some(*r),
            _ => None,
        }
    }
}

impl From<PlaylistError> for Error {
    fn from(e: PlaylistError) -> Self {
        let kind = match &e {
            PlaylistError::Invalid(_) => ErrorKind::BadParams,
            PlaylistError::Refused(_) | PlaylistError::Server(_) => ErrorKind::Protocol,
            PlaylistError::Signing(a) => Error::from(a.clone()).kind(),
            PlaylistError::Forbidden(_) => ErrorKind::Forbidden,
            PlaylistError::NotFound(_) | PlaylistError::Unavailable(_) => {
                ErrorKind::ProviderUnavailable
            }
            PlaylistError::TooManySubscriptions(_) => ErrorKind::Config,
            PlaylistError::Session(inner) => return inner.clone(),
        };
        Error::new(kind, e.to_string())
    }
}

/// Maps the access layer's verdict on an owner signature to why the entry is ignored.
pub(crate) fn signature_refusal(e: &AccessError) -> IgnoredReason {
    match e {
        AccessError::UnknownIssuer { .. } => IgnoredReason::UnknownSigner,
        _ => IgnoredReason::BadSignature,
    }
}
