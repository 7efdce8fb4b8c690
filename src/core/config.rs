//! The configuration rules every front end shares — the UniFFI facade and the `pmn` CLI take
//! them from here, so an app and the command line refuse the same things with the same words:
//! what a network identifier is, which JID a device logs in with, and the transport rule (the
//! end-to-end tunnel, or plain only when asked for explicitly, never both or neither).

use xmpp_parsers::jid::{BareJid, FullJid};

use crate::core::error::{Error, ErrorKind, Result};

fn config(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Config, message)
}

/// Parses a network identifier: a bare JID with a local part (`home@example.org`, spec §3.1).
///
/// ```
/// use pmn::core::config::network_identifier;
/// assert!(network_identifier("home@example.org").is_ok());
/// assert!(network_identifier("example.org").is_err()); // no local part
/// assert!(network_identifier("home@example.org/tv").is_err()); // a device, not the network
/// ```
pub fn network_identifier(network: &str) -> Result<BareJid> {
    let bare: BareJid = network
        .parse()
        .map_err(|e| config(format!("network {network:?} is not a bare JID: {e}")))?;
    if bare.node().is_none() {
        return Err(config(
            "the network identifier needs a local part (name@domain)",
        ));
    }
    Ok(bare)
}

/// The full JID device `device` of `network` logs in with (the device is the resource).
///
/// ```
/// use pmn::core::config::device_jid;
/// let jid = device_jid("home@example.org", "tv").unwrap();
/// assert_eq!(jid.to_string(), "home@example.org/tv");
/// assert!(device_jid("home@example.org", "").is_err());
/// ```
pub fn device_jid(network: &str, device: &str) -> Result<FullJid> {
    let network = network_identifier(network)?;
    if device.is_empty() {
        return Err(config("device must not be empty"));
    }
    network
        .with_resource_str(device)
        .map_err(|e| config(format!("device {device:?} is not a valid resource: {e}")))
}

/// The transport rule: a role talks through the end-to-end tunnel (`e2e`), or in clear when the
/// app asked for it explicitly (`plain`) — never both, never neither, so forgetting to set up
/// the tunnel cannot silently send control traffic in clear.
///
/// ```
/// use pmn::core::config::check_transport;
/// assert!(check_transport(true, false).is_ok());
/// assert!(check_transport(false, true).is_ok());
/// assert!(check_transport(true, true).is_err());
/// assert!(check_transport(false, false).is_err());
/// ```
pub fn check_transport(e2e: bool, plain: bool) -> Result<()> {
    match (e2e, plain) {
        (true, false) | (false, true) => Ok(()),
        (true, true) => Err(config("set either e2e or plain_transport, not both")),
        (false, false) => Err(config(
            "the end-to-end tunnel is required: set e2e (and pair the device), or \
             plain_transport = true for a peer without the tunnel",
        )),
    }
}
