//! The one error type of the core: a stable [`ErrorKind`] that apps switch on, and a message for people.

use std::fmt;

/// What went wrong, as a stable classification. Apps switch on this; the message is for people.
///
/// New kinds may be added; existing ones keep their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The server refused the network identifier or password.
    Auth,
    /// TLS failed: the server's certificate was not trusted, or the handshake broke.
    Tls,
    /// The server could not be reached (DNS, refused or dropped TCP connection).
    Unreachable,
    /// A bounded wait ran out (an RPC, the login, a disco query).
    Timeout,
    /// The session is not online (not connected yet, closed, or lost).
    NotConnected,
    /// The provider does not know the method (XMPP `item-not-found`).
    UnknownMethod,
    /// The method exists but the parameters have the wrong shape (XMPP `bad-request`).
    BadParams,
    /// The peer refused the caller (XMPP `forbidden` / `not-authorized`).
    Forbidden,
    /// The provider is not (or no longer) online (XMPP `service-unavailable`, `recipient-unavailable`).
    ProviderUnavailable,
    /// The provider answered with an XML-RPC fault (an application-level failure of the method).
    Fault,
    /// The peer sent something that does not follow the protocol.
    Protocol,
    /// The configuration given by the app is invalid.
    Config,
    /// The operation was cancelled.
    Cancelled,
    /// A bug in pmn (or a panic in a listener); please report it.
    Internal,
}

impl ErrorKind {
    /// A short stable name, used in logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Tls => "tls",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::NotConnected => "not-connected",
            ErrorKind::UnknownMethod => "unknown-method",
            ErrorKind::BadParams => "bad-params",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::ProviderUnavailable => "provider-unavailable",
            ErrorKind::Fault => "fault",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Config => "config",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a remote call ran on the provider, as far as the caller can know.
///
/// Every error of a call says which of three things is true, so an app (or
/// [`crate::core::controller::Controller::call_with_retry`]) knows whether trying again is safe:
///
/// - [`CallOutcome::NotRun`]: the call certainly did not run — it was refused before it reached
///   the method (forbidden, unknown method, bad parameters, a bound hit) or never left this device
///   (not connected, could not be encoded, no tunnel). Trying again cannot run it twice.
/// - [`CallOutcome::Ran`]: the method ran and failed (an XML-RPC fault).
/// - [`CallOutcome::Unknown`]: the request left this device and no answer came (timeout, or the
///   connection or tunnel was lost after sending, or the answer was unreadable). It may have
///   run. Retry with the **same call id** ([`crate::core::rpc::CallId`]): the provider remembers
///   the ids it ran for a while and answers a repeat with the first answer instead of running it
///   again.
///
/// Errors that are not about a call (login, configuration) say `NotRun`: nothing ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Certainly not run: safe to try again with any id.
    NotRun,
    /// The method ran (and failed).
    Ran,
    /// May or may not have run: retry only with the same call id.
    Unknown,
}

impl CallOutcome {
    /// The outcome an error of `kind` has unless the code that made it knows better: a fault
    /// ran, a timeout is unknown, every other kind is a refusal or a local failure.
    pub fn default_for(kind: ErrorKind) -> CallOutcome {
        match kind {
            ErrorKind::Fault => CallOutcome::Ran,
            ErrorKind::Timeout => CallOutcome::Unknown,
            _ => CallOutcome::NotRun,
        }
    }

    /// A short stable name, used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::NotRun => "not-run",
            CallOutcome::Ran => "ran",
            CallOutcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the pmn core.
///
/// ```
/// use pmn::core::error::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::Timeout, "player.status did not answer within 10 s");
/// assert_eq!(e.kind(), ErrorKind::Timeout);
/// assert_eq!(e.to_string(), "timeout: player.status did not answer within 10 s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// For [`ErrorKind::Fault`]: the XML-RPC fault code.
    fault_code: Option<i32>,
    /// Whether the call this error ends ran ([`CallOutcome::default_for`] the kind unless set).
    outcome: CallOutcome,
}

impl Error {
    /// An error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            fault_code: None,
            outcome: CallOutcome::default_for(kind),
        }
    }

    /// An XML-RPC fault answered by a provider.
    pub fn fault(code: i32, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Fault,
            message: message.into(),
            fault_code: Some(code),
            outcome: CallOutcome::Ran,
        }
    }

    /// The same error, saying `outcome` about the call it ends (the request path knows whether
    /// the request had left the device when it failed).
    pub fn with_outcome(mut self, outcome: CallOutcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Whether the call this error ends ran: see [`CallOutcome`].
    pub fn outcome(&self) -> CallOutcome {
        self.outcome
    }

    /// True when the call certainly ran ([`CallOutcome::Ran`]); false when it certainly did not
    /// *or* may have — ask [`Error::outcome`] to tell those two apart.
    pub fn did_run(&self) -> bool {
        self.outcome == CallOutcome::Ran
    }

    /// The stable classification.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind prefix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The XML-RPC fault code, for [`ErrorKind::Fault`].
    pub fn fault_code(&self) -> Option<i32> {
        self.fault_code
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.fault_code {
            Some(code) => write!(f, "{} {}: {}", self.kind, code, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for Error {}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
