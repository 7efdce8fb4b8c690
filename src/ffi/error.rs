//! The one error type that crosses the FFI boundary.

use crate::core::error::{CallOutcome as CoreOutcome, Error, ErrorKind};
use xmpp_parsers::jid::FullJid;

/// Whether a call ran on the provider, as far as this device can know (every `PmnError` says it:
/// `outcome()`).
///
/// - `NotRun`: certainly not run — refused before the method (forbidden, unknown method, bad
///   parameters, the provider busy) or never sent (not connected). Safe to try again.
/// - `Ran`: the method ran and failed (`Fault`).
/// - `Unknown`: sent, and no answer came (a timeout, or the connection lost with the call in
///   flight). It may have run: retry only the way that reuses the call id (the controller's
///   `callRetries` setting), which the provider de-duplicates; never with a new call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum CallOutcome {
    /// Certainly not run.
    NotRun,
    /// The method ran (and failed).
    Ran,
    /// May or may not have run.
    Unknown,
}

impl From<CoreOutcome> for CallOutcome {
    fn from(o: CoreOutcome) -> Self {
        match o {
            CoreOutcome::NotRun => CallOutcome::NotRun,
            CoreOutcome::Ran => CallOutcome::Ran,
            CoreOutcome::Unknown => CallOutcome::Unknown,
        }
    }
}

impl From<CallOutcome> for CoreOutcome {
    fn from(o: CallOutcome) -> Self {
        match o {
            CallOutcome::NotRun => CoreOutcome::NotRun,
            CallOutcome::Ran => CoreOutcome::Ran,
            CallOutcome::Unknown => CoreOutcome::Unknown,
        }
    }
}

/// An error of pmn, the only one an app catches. Each variant is one stable kind (Kotlin:
/// `PmnException.Timeout`, …; Swift: `PmnException.Timeout`); `detail` is a human-readable
/// message for logs and screens, and in Kotlin it is also the exception's `message` (the bindings
/// generator of bindings/uniffi-bindgen makes it so).
///
/// Whether a failed call ran is `outcome()` (Kotlin `e.outcome()`, Swift `e.outcome()`): the kinds
/// that can mean either carry it as a field (`Timeout`, `NotConnected`, `ProviderUnavailable`,
/// `Protocol`, `Tls`, `Cancelled`, `Internal`); for the others it follows from the kind (`Fault`
/// ran; `Forbidden`, `UnknownMethod`, `BadParams`, `Config`, `Auth`, `Unreachable` did not).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum PmnError {
    /// The server refused the network identifier or password.
    #[error("auth: {detail}")]
    Auth {
        /// What happened.
        detail: String,
    },
    /// TLS failed: untrusted server certificate or broken handshake.
    #[error("tls: {detail}")]
    Tls {
        /// What happened.
        detail: String,
        /// Whether the call this error ends ran (for errors that are not about a call:
        /// `NotRun`).
        outcome: CallOutcome,
    },
    /// The server could not be reached.
    #[error("unreachable: {detail}")]
    Unreachable {
        /// What happened.
        detail: String,
    },
    /// A bounded wait ran out.
    #[error("timeout: {detail}")]
    Timeout {
        /// What happened.
        detail: String,
        /// Whether the call this error ends ran (for errors that are not about a call:
        /// `NotRun`).
        outcome: CallOutcome,
    },
    /// Not connected (never connected, closed, or lost).
    #[error("not connected: {detail}")]
    NotConnected {
        /// What happened.
        detail: String,
        /// Whether the call this error ends ran (for errors that are not about a call:
        /// `NotRun`).
        outcome: CallOutcome,
    },
    /// The provider does not know the method.
    #[error("unknown method: {detail}")]
    UnknownMethod {
        /// What happened.
        detail: String,
    },
    /// The parameters have the wrong shape.
    #[error("bad params: {detail}")]
    BadParams {
        /// What happened.
        detail: String,
    },
    /// The provider refused the caller.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// What happened.
        detail: String,
    },
    /// The provider is not online.
    #[error("provider unavailable: {detail}")]
    ProviderUnavailable {
        /// What happened.
        detail: String,
        /// Whether the call this error ends ran (for errors that are not about a call:
        /// `NotRun`).
        outcome: CallOutcome,
    },
    /// The method ran and failed; `code` is the provider's XML-RPC fault code.
    #[error("fault {code}: {detail}")]
    Fault {
        /// The fault code (e.g. 409: not possible in the current state).
        code: i32,
        /// What happened.
        detail: String,
    },
    /// The peer broke the protocol.
    #[error("protocol: {detail}")]
    Protocol {
        /// What happened.
        detail: String,
        /// Whether the call this error ends ran (for errors that are not about a call:
        /// `NotRun`).
        outcome: CallOutcome,
    },
    /// The configuration is invalid.
    #[error("config: {detail}")]
    Config {
        /// What happened.
        detail: String,
    },
    /// The operation was cancelled.
    #[error("cancelled: {detail}")]
    Cancelled {
        /// What happened.
        detail: String,
        /// Whether the call this error ends ran (for errors that are not about a call:
        /// `NotRun`).
        outcome: CallOutcome,
    },
    /// A device key store failed (`kind` says how); also what a `ForeignKeyStore` throws.
    #[error("key store: {detail}")]
    Key {
        /// What kind of failure.
        kind: KeyErrorKind,
        /// The key alias (the key file for `InsecurePermissions`), when there is one.
        alias: Option<String>,
        /// What happened.
        detail: String,
    },
    /// A bug in pmn, or a listener that threw.
    #[error("internal: {detail}")]
    Internal {
        /// What happened.
        detail: String,
        /// Whether the call this error ends ran (for errors that are not about a call:
        /// `NotRun`).
        outcome: CallOutcome,
    },
}

impl From<Error> for PmnError {
    fn from(e: Error) -> Self {
        let detail = e.message().to_owned();
        let outcome = CallOutcome::from(e.outcome());
        match e.kind() {
            ErrorKind::Auth => PmnError::Auth { detail },
            ErrorKind::Tls => PmnError::Tls { detail, outcome },
            ErrorKind::Unreachable => PmnError::Unreachable { detail },
            ErrorKind::Timeout => PmnError::Timeout { detail, outcome },
            ErrorKind::NotConnected => PmnError::NotConnected { detail, outcome },
            ErrorKind::UnknownMethod => PmnError::UnknownMethod { detail },
            ErrorKind::BadParams => PmnError::BadParams { detail },
            ErrorKind::Forbidden => PmnError::Forbidden { detail },
            ErrorKind::ProviderUnavailable => PmnError::ProviderUnavailable { detail, outcome },
            ErrorKind::Fault => PmnError::Fault {
                code: e.fault_code().unwrap_or(0),
                detail,
            },
            ErrorKind::Protocol => PmnError::Protocol { detail, outcome },
            ErrorKind::Config => PmnError::Config { detail },
            ErrorKind::Cancelled => PmnError::Cancelled { detail, outcome },
            ErrorKind::Internal => PmnError::Internal { detail, outcome },
        }
    }
}

#[uniffi::export]
impl PmnError {
    /// Whether the call this error ends ran; see [`CallOutcome`].
    pub fn outcome(&self) -> CallOutcome {
        match self {
            PmnError::Tls { outcome, .. }
            | PmnError::Timeout { outcome, .. }
            | PmnError::NotConnected { outcome, .. }
            | PmnError::ProviderUnavailable { outcome, .. }
            | PmnError::Protocol { outcome, .. }
            | PmnError::Cancelled { outcome, .. }
            | PmnError::Internal { outcome, .. } => *outcome,
            PmnError::Fault { .. } => CallOutcome::Ran,
            PmnError::Auth { .. }
            | PmnError::Unreachable { .. }
            | PmnError::UnknownMethod { .. }
            | PmnError::BadParams { .. }
            | PmnError::Forbidden { .. }
            | PmnError::Config { .. }
            | PmnError::Key { .. } => CallOutcome::NotRun,
        }
    }

    /// True when the call certainly ran (a `Fault`); false when it certainly did not or may have
    /// (tell those apart with `outcome()`).
    pub fn did_run(&self) -> bool {
        self.outcome() == CallOutcome::Ran
    }
}

/// A listener (Kotlin/Swift) threw something that is not a `PmnError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for PmnError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        PmnError::Internal {
            detail: format!("listener failed: {}", e.reason),
            outcome: CallOutcome::NotRun,
        }
    }
}

/// A bare JID the app passed in (a network, a guest household), or `PmnException.Config` saying why not.
pub(crate) fn bare_jid(jid: &str) -> Result<xmpp_parsers::jid::BareJid, PmnError> {
    jid.parse()
        .map_err(|e| config(format!("{jid:?} is not a bare JID: {e}")))
}

pub(crate) fn config(detail: impl Into<String>) -> PmnError {
    PmnError::Config {
        detail: detail.into(),
    }
}

/// A provider's full JID the app passed in, or `PmnException.Config` saying why not.
pub(crate) fn parse_provider(jid: &str) -> Result<FullJid, PmnError> {
    jid.parse()
        .map_err(|e| config(format!("{jid:?} is not a provider's full JID: {e}")))
}

/// What went wrong in a key store: the `kind` of `PmnException.Key` (Kotlin
/// `KeyErrorKind.NOT_FOUND`, …), one per `KeyStoreError` kind. Key store failures are not a
/// second exception family: an app catches `PmnException` and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum KeyErrorKind {
    /// No key with this alias.
    NotFound,
    /// The alias already holds a key; keys are never overwritten.
    AlreadyExists,
    /// The alias is not 1–64 characters of `a-z 0-9 . _ -`.
    InvalidAlias,
    /// A key file is readable by other users and was refused (`alias` is the file).
    InsecurePermissions,
    /// The stored key is not a valid P-256 key.
    Corrupt,
    /// `PmnPlatform.init` (Android: `Pmn.initAndroid`) has not been called yet.
    PlatformNotInitialised,
    /// The key needs the user to authenticate first (show the system prompt, then retry).
    UserAuthenticationRequired,
    /// The store cannot do this (e.g. user presence on a software store).
    Unsupported,
    /// File-system failure of a file-backed store.
    Io,
    /// The platform (or a foreign store) reported an error.
    Platform,
}
