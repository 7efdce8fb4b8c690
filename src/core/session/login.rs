//! Logging in: one attempt (TCP, TLS, SASL SCRAM with the channel binding the server can take,
//! bind) bounded in time, the retry with the network's new password after a rotation, and the
//! classification of failures into typed errors — tokio-xmpp only logs them, so this is where a
//! wrong password or an untrusted certificate becomes [`ErrorKind::Auth`] / [`ErrorKind::Tls`].

use std::time::Duration;

use sasl::common::{ChannelBinding, Credentials};
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::error::{AuthError, ProtocolError};
use tokio_xmpp::stanzastream::Connection;
use tokio_xmpp::xmlstream::{StreamHeader, Timeouts, XmppStream};
use xmpp_parsers::jid::Jid;

use super::password::NetworkPassword;
use super::{ConnectorError, PmnConnector};
use crate::core::error::{Error, ErrorKind, Result};

/// Classifies a login failure; `fatal` ones are not retried.
pub(super) fn classify(e: &tokio_xmpp::Error) -> Error {
    use tokio_xmpp::Error as X;
    match e {
        X::Auth(AuthError::Fail(cond)) => Error::new(
            ErrorKind::Auth,
            format!("server refused the credentials ({cond:?})"),
        ),
        X::Auth(other) => Error::new(ErrorKind::Auth, other.to_string()),
        X::Connection(inner) => {
            let inner: &(dyn std::error::Error + 'static) = &**inner;
            match inner.downcast_ref::<ConnectorError>() {
                Some(c) => Error::new(ErrorKind::Tls, c.to_string()),
                None => Error::new(ErrorKind::Unreachable, inner.to_string()),
            }
        }
        X::Protocol(ProtocolError::NoTls) => {
            Error::new(ErrorKind::Tls, "server does not offer TLS")
        }
        X::Io(io) => Error::new(ErrorKind::Unreachable, io.to_string()),
        X::Disconnected => Error::new(
            ErrorKind::Unreachable,
            "server closed the connection during login",
        ),
        other => Error::new(ErrorKind::Protocol, other.to_string()),
    }
}

pub(super) fn is_fatal(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Auth | ErrorKind::Tls)
}

async fn login(
    connector: &PmnConnector,
    jid: &Jid,
    password: &str,
    timeouts: Timeouts,
) -> Result<Connection, tokio_xmpp::Error> {
    let may_bind = !connector.binding_refused();
    match login_once(connector, jid, password, timeouts, may_bind).await {
        Err(LoginError {
            error: tokio_xmpp::Error::Auth(AuthError::Fail(cond)),
            guessed_binding: true,
        }) => {
            // The server offered -PLUS without saying which binding it has (XEP-0440), and
            // refused ours: ejabberd 23.01 on TLS 1.3 (it has only tls-unique). Once more without
            // binding; a wrong password fails again, and is then reported as such.
            tracing::info!(
                ?cond,
                "SCRAM-PLUS with tls-exporter refused; retrying without channel binding"
            );
            let conn = login_once(connector, jid, password, timeouts, false)
                .await
                .map_err(|e| e.error)?;
            connector.note_binding_refused();
            Ok(conn)
        }
        other => other.map_err(|e| e.error),
    }
}

struct LoginError {
    error: tokio_xmpp::Error,
    /// The attempt bound to a channel the server never said it supports.
    guessed_binding: bool,
}

impl<E: Into<tokio_xmpp::Error>> From<E> for LoginError {
    fn from(error: E) -> Self {
        LoginError {
            error: error.into(),
            guessed_binding: false,
        }
    }
}

async fn login_once(
    connector: &PmnConnector,
    jid: &Jid,
    password: &str,
    timeouts: Timeouts,
    may_bind: bool,
) -> Result<Connection, LoginError> {
    let username = jid
        .node()
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    let (stream, binding) = connector
        .connect(jid, xmpp_parsers::ns::JABBER_CLIENT, timeouts)
        .await?;
    let (features, stream): (_, XmppStream<_>) = stream.recv_features().await?;
    let binding = if may_bind {
        choose_channel_binding(binding, &features)
    } else {
        ChannelBinding::None
    };
    let guessed_binding =
        matches!(binding, ChannelBinding::TlsExporter(_)) && features.sasl_cb.is_none();
    let creds = Credentials::default()
        .with_username(username)
        .with_password(password)
        .with_channel_binding(binding);
    let stream = tokio_xmpp::client_login(stream, features.sasl_mechanisms, creds)
        .await
        .map_err(|error| LoginError {
            error,
            guessed_binding,
        })?;
    let stream = stream
        .send_header(StreamHeader {
            to: Some(std::borrow::Cow::Borrowed(jid.domain().as_str())),
            from: None,
            id: None,
        })
        .await?;
    let (features, stream): (_, XmppStream<_>) = stream.recv_features().await?;
    Ok(Connection {
        stream: stream.box_stream(),
        features,
        identity: jid.clone(),
    })
}

/// Which channel binding SCRAM uses, given the one this TLS connection can give (`tls-exporter`
/// on TLS 1.3, none on TLS 1.2) and what the server offers.
///
/// - The server offers no `-PLUS` mechanism (Prosody 0.12 on TLS 1.3: it knows only
///   `tls-unique`): plain SCRAM with the `y` flag, which makes a server that does support
///   binding refuse the login if someone stripped `-PLUS` from the list.
/// - It offers `-PLUS` and advertises (XEP-0440) `tls-exporter`: bind with it.
/// - It advertises XEP-0440 without `tls-exporter`: no binding (`n`).
/// - It offers `-PLUS` and advertises nothing: bind with `tls-exporter`, and [`login`] retries
///   once without binding if that is refused — ejabberd 23.01 does exactly this on TLS 1.3 (it
///   implements only `tls-unique`) and every login used to fail as "wrong password". The retry
///   gives up binding only against a man in the middle who already holds a certificate the
///   device trusts for the server.
fn choose_channel_binding(
    ours: ChannelBinding,
    features: &xmpp_parsers::stream_features::StreamFeatures,
) -> ChannelBinding {
    use xmpp_parsers::sasl_cb::Type;
    let offers_plus = features
        .sasl_mechanisms
        .iter()
        .any(|m| m.ends_with("-PLUS"));
    let have = !matches!(ours, ChannelBinding::None | ChannelBinding::Unsupported);
    match (&features.sasl_cb, offers_plus, have) {
        (_, _, false) => ChannelBinding::None,
        (_, false, true) => ChannelBinding::Unsupported,
        (Some(cb), true, true) if !cb.types.contains(&Type::TlsExporter) => ChannelBinding::None,
        _ => ours,
    }
}

pub(super) async fn login_bounded(
    connector: &PmnConnector,
    jid: &Jid,
    password: &str,
    timeouts: Timeouts,
    limit: Duration,
) -> Result<Connection> {
    match tokio::time::timeout(limit, login(connector, jid, password, timeouts)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let err = classify(&e);
            tracing::warn!(%jid, error = %err, "login failed");
            Err(err)
        }
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("login did not complete within {limit:?}"),
        )),
    }
}

/// [`login_bounded`] with the current password and, when the server refuses it and another
/// device announced a new one (a rotation, [`super::Session::offer_password`]), with that one, which then
/// becomes the current password.
pub(super) async fn login_rotating(
    connector: &PmnConnector,
    jid: &Jid,
    password: &NetworkPassword,
    timeouts: Timeouts,
    limit: Duration,
) -> Result<Connection> {
    match login_bounded(connector, jid, &password.current(), timeouts, limit).await {
        Err(e) if e.kind() == ErrorKind::Auth => {
            let Some(next) = password.next() else {
                return Err(e);
            };
            let conn = login_bounded(connector, jid, &next, timeouts, limit).await?;
            if password.promote(Some(&next)) {
                tracing::info!(%jid, "logged in with the network's new password");
            }
            Ok(conn)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(
        mechanisms: &[&str],
        cb: Option<&[xmpp_parsers::sasl_cb::Type]>,
    ) -> xmpp_parsers::stream_features::StreamFeatures {
        xmpp_parsers::stream_features::StreamFeatures {
            sasl_mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
            sasl_cb: cb.map(|types| xmpp_parsers::sasl_cb::SaslChannelBinding {
                types: types.to_vec(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn channel_binding_follows_what_the_server_offers() {
        use xmpp_parsers::sasl_cb::Type;
        let exporter = || ChannelBinding::TlsExporter(vec![7; 32]);
        let plus = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN"];
        let no_plus = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"];
        // No -PLUS offered (Prosody 0.12 on TLS 1.3): SCRAM with the 'y' flag.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&no_plus, None)),
            ChannelBinding::Unsupported
        ));
        // -PLUS and XEP-0440 listing tls-exporter: bind.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&plus, Some(&[Type::TlsExporter]))),
            ChannelBinding::TlsExporter(_)
        ));
        // XEP-0440 without tls-exporter: no binding.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&plus, Some(&[Type::TlsUnique]))),
            ChannelBinding::None
        ));
        // -PLUS, nothing advertised (ejabberd 23.01): bind, and login() retries without.
        assert!(matches!(
            choose_channel_binding(exporter(), &features(&plus, None)),
            ChannelBinding::TlsExporter(_)
        ));
        // TLS 1.2: nothing to bind with.
        assert!(matches!(
            choose_channel_binding(ChannelBinding::None, &features(&plus, None)),
            ChannelBinding::None
        ));
    }

    #[test]
    fn auth_and_tls_failures_are_fatal_io_is_not() {
        let auth = classify(&tokio_xmpp::Error::Auth(AuthError::NoMechanism));
        assert_eq!(auth.kind(), ErrorKind::Auth);
        assert!(is_fatal(&auth));
        let tls = classify(&tokio_xmpp::Error::Connection(Box::new(
            ConnectorError::Tls("bad cert".into()),
        )));
        assert_eq!(tls.kind(), ErrorKind::Tls);
        assert!(is_fatal(&tls));
        let io = classify(&tokio_xmpp::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )));
        assert_eq!(io.kind(), ErrorKind::Unreachable);
        assert!(!is_fatal(&io));
    }
}
