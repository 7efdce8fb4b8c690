//! Pairing (first contact): SPAKE2 (Ed25519 group, symmetric mode) on a short code, run *inside* a
//! pairing-mode TLS tunnel and bound to it: the SPAKE2 identity includes the TLS exporter value whose
//! context is both SPKIs (see [`super::tls::SecureChannel::pairing_binding`]). A relay that terminates
//! TLS with its own keys gets a different exporter value on each side, so the key confirmation fails
//! even if it knows the code; a transcript replayed into another TLS session fails the same way.
//!
//! The responder (the device showing the code) counts attempts in its `PairingGate`.

use crate::core::sync::Locked;
use std::time::{Duration, Instant};

use super::gate::PairingGate;

use ring::hmac;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use tokio::sync::mpsc;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::tunnel::Tunnel;
use super::xml::{ConfirmMessage, Pair, PakeMessage, NS_PAIR};
use crate::core::error::{Error, ErrorKind, Result};
use crate::core::session::IqReply;

pub(crate) const INITIATOR_LABEL: &[u8] = b"pmn-pair-confirm-initiator";
pub(crate) const RESPONDER_LABEL: &[u8] = b"pmn-pair-confirm-responder";

pub(crate) fn spake(code: &str, binding: &[u8; 32]) -> (Spake2<Ed25519Group>, Vec<u8>) {
    let mut identity = b"pmn-pair-v1:".to_vec();
    identity.extend_from_slice(binding);
    Spake2::<Ed25519Group>::start_symmetric(
        &Password::new(code.trim().as_bytes()),
        &Identity::new(&identity),
    )
}

fn mac(key: &[u8], label: &[u8], binding: &[u8; 32]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut msg = label.to_vec();
    msg.extend_from_slice(binding);
    hmac::sign(&key, &msg).as_ref().to_vec()
}

pub(crate) fn verify(key: &[u8], label: &[u8], binding: &[u8; 32], tag: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut msg = label.to_vec();
    msg.extend_from_slice(binding);
    hmac::verify(&key, &msg, tag).is_ok()
}

fn wrong_code() -> Error {
    Error::new(
        ErrorKind::Forbidden,
        "pairing refused: wrong code, or someone is relaying the connection",
    )
}

/// The initiator's side: proves knowledge of `code` to the peer of `tunnel` and checks the peer's
/// proof. Each request is bounded by `timeout`.
pub(crate) async fn pair_as_initiator(
    tunnel: &Tunnel,
    code: &str,
    timeout: Duration,
) -> Result<()> {
    let binding = tunnel.pairing_binding();
    let (state, msg_a) = spake(code, &binding);
    let first = Pair {
        pake: Some(PakeMessage { message: msg_a }),
        confirm: None,
    };
    let reply = tunnel
        .request(Iq::from_set(String::new(), first), timeout)
        .await?;
    let answer = match reply {
        IqReply::Result(Some(elem)) if elem.is("pair", NS_PAIR) => Pair::try_from(elem)
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("bad pairing answer: {e}")))?,
        IqReply::Result(_) => {
            return Err(Error::new(ErrorKind::Protocol, "empty pairing answer"));
        }
        IqReply::Error(e) => {
            return Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "the peer refused pairing: {}",
                    e.texts
                        .values()
                        .next()
                        .cloned()
                        .unwrap_or_else(|| format!("{:?}", e.defined_condition))
                ),
            ))
        }
    };
    let (Some(pake), Some(confirm)) = (answer.pake, answer.confirm) else {
        return Err(Error::new(
            ErrorKind::Protocol,
            "pairing answer lacks a part",
        ));
    };
    let key = state.finish(&pake.message).map_err(|_| wrong_code())?;
    if !verify(&key, RESPONDER_LABEL, &binding, &confirm.mac) {
        return Err(wrong_code());
    }
    let second = Pair {
        pake: None,
        confirm: Some(ConfirmMessage {
            mac: mac(&key, INITIATOR_LABEL, &binding),
        }),
    };
    match tunnel
        .request(Iq::from_set(String::new(), second), timeout)
        .await?
    {
        IqReply::Result(_) => Ok(()),
        IqReply::Error(_) => Err(wrong_code()),
    }
}

fn refuse(tunnel: &Tunnel, id: &str, condition: DefinedCondition, text: &str) {
    let _ = tunnel.send(Iq::from_error(
        id.to_owned(),
        StanzaError::new(ErrorType::Auth, condition, "en", text),
    ));
}

async fn next_pair(
    inbound: &mut mpsc::Receiver<Stanza>,
    tunnel: &Tunnel,
    timeout: Duration,
) -> Result<(String, Pair)> {
    let stanza = tokio::time::timeout(timeout, inbound.recv())
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "pairing peer went silent"))?
        .ok_or_else(|| Error::new(ErrorKind::NotConnected, "pairing tunnel closed"))?;
    match stanza {
        Stanza::Iq(Iq::Set { id, payload, .. }) if payload.is("pair", NS_PAIR) => {
            match Pair::try_from(payload) {
                Ok(pair) => Ok((id, pair)),
                Err(e) => {
                    refuse(
                        tunnel,
                        &id,
                        DefinedCondition::BadRequest,
                        "malformed pairing step",
                    );
                    Err(Error::new(
                        ErrorKind::Protocol,
                        format!("malformed pairing step: {e}"),
                    ))
                }
            }
        }
        _ => Err(Error::new(
            ErrorKind::Protocol,
            "expected a pairing step before anything else",
        )),
    }
}

/// The responder's side: takes the first stanzas of a pairing-mode tunnel, which must be the two
/// pairing steps. `gate` supplies the code and counts the attempt.
pub(crate) async fn pair_as_responder(
    tunnel: &Tunnel,
    inbound: &mut mpsc::Receiver<Stanza>,
    gate: &std::sync::Mutex<PairingGate>,
    timeout: Duration,
) -> Result<()> {
    let (id, first) = next_pair(inbound, tunnel, timeout).await?;
    let Some(pake) = first.pake else {
        refuse(
            tunnel,
            &id,
            DefinedCondition::BadRequest,
            "expected a SPAKE2 message",
        );
        return Err(Error::new(
            ErrorKind::Protocol,
            "pairing without SPAKE2 message",
        ));
    };
    let code = {
        let mut gate = gate.locked();
        gate.begin(tunnel.peer(), Instant::now())
    };
    let code = match code {
        Ok(code) => code,
        Err(e) => {
            refuse(tunnel, &id, DefinedCondition::NotAuthorized, e.message());
            return Err(e);
        }
    };
    let binding = tunnel.pairing_binding();
    let (state, msg_b) = spake(&code, &binding);
    let Ok(key) = state.finish(&pake.message) else {
        refuse(
            tunnel,
            &id,
            DefinedCondition::BadRequest,
            "bad SPAKE2 message",
        );
        return Err(Error::new(ErrorKind::Protocol, "bad SPAKE2 message"));
    };
    let answer = Pair {
        pake: Some(PakeMessage { message: msg_b }),
        confirm: Some(ConfirmMessage {
            mac: mac(&key, RESPONDER_LABEL, &binding),
        }),
    };
    tunnel.send(Iq::from_result(id, Some(answer)))?;

    // An initiator whose code differs finds our confirmation wrong and hangs up without its own:
    // to the device showing the code, that is a wrong code, not a network failure.
    let (id, second) = next_pair(inbound, tunnel, timeout)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotConnected => Error::new(
                ErrorKind::Forbidden,
                "pairing failed: the other device rejected the key confirmation (wrong code?)",
            ),
            _ => e,
        })?;
    match second.confirm {
        Some(confirm) if verify(&key, INITIATOR_LABEL, &binding, &confirm.mac) => {
            gate.locked().succeeded(tunnel.peer());
            tunnel.send(Iq::from_result(id, None::<Pair>))?;
            Ok(())
        }
        _ => {
            refuse(
                tunnel,
                &id,
                DefinedCondition::NotAuthorized,
                "wrong pairing code",
            );
            Err(wrong_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spake2_agrees_only_on_the_same_code_and_binding() {
        let binding = [1u8; 32];
        let (a, ma) = spake("123456", &binding);
        let (b, mb) = spake("123456", &binding);
        let (ka, kb) = (a.finish(&mb).unwrap(), b.finish(&ma).unwrap());
        assert_eq!(ka, kb);
        assert!(verify(
            &kb,
            RESPONDER_LABEL,
            &binding,
            &mac(&ka, RESPONDER_LABEL, &binding)
        ));

        let (a, ma) = spake("123456", &binding);
        let (b, mb) = spake("654321", &binding);
        assert_ne!(a.finish(&mb).unwrap(), b.finish(&ma).unwrap());

        // Same code, different TLS sessions (a relay, or a replay into a new session).
        let (a, ma) = spake("123456", &binding);
        let (b, mb) = spake("123456", &[2u8; 32]);
        assert_ne!(a.finish(&mb).unwrap(), b.finish(&ma).unwrap());
    }
}
