//! The one error type that crosses the FFI boundary.

use crate::core::error::{Error, ErrorKind};

/// An error of pmn. Each variant is one stable kind (Kotlin: `PmnException.Timeout`, …; Swift:
/// `PmnError.Timeout`); `detail` is a human-readable message for logs and screens.
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
    },
    /// Not connected (never connected, closed, or lost).
    #[error("not connected: {detail}")]
    NotConnected {
        /// What happened.
        detail: String,
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
    },
    /// A bug in pmn, or a listener that threw.
    #[error("internal: {detail}")]
    Internal {
        /// What happened.
        detail: String,
    },
}

impl From<Error> for PmnError {
    fn from(e: Error) -> Self {
        let detail = e.message().to_owned();
        match e.kind() {
            ErrorKind::Auth => PmnError::Auth { detail },
            ErrorKind::Tls => PmnError::Tls { detail },
            ErrorKind::Unreachable => PmnError::Unreachable { detail },
            ErrorKind::Timeout => PmnError::Timeout { detail },
            ErrorKind::NotConnected => PmnError::NotConnected { detail },
            ErrorKind::UnknownMethod => PmnError::UnknownMethod { detail },
            ErrorKind::BadParams => PmnError::BadParams { detail },
            ErrorKind::Forbidden => PmnError::Forbidden { detail },
            ErrorKind::ProviderUnavailable => PmnError::ProviderUnavailable { detail },
            ErrorKind::Fault => PmnError::Fault {
                code: e.fault_code().unwrap_or(0),
                detail,
            },
            ErrorKind::Protocol => PmnError::Protocol { detail },
            ErrorKind::Config => PmnError::Config { detail },
            ErrorKind::Cancelled => PmnError::Cancelled { detail },
            ErrorKind::Internal => PmnError::Internal { detail },
        }
    }
}

/// A listener (Kotlin/Swift) threw something that is not a `PmnError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for PmnError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        PmnError::Internal {
            detail: format!("listener failed: {}", e.reason),
        }
    }
}

pub(crate) fn config(detail: impl Into<String>) -> PmnError {
    PmnError::Config {
        detail: detail.into(),
    }
}
