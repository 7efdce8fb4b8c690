//! Pairing (first contact): SPAKE2 (Ed25519 group, symmetric mode) on a short code, run *inside* a
//! pairing-mode TLS tunnel and bound to it: the SPAKE2 identity includes the TLS exporter value whose
//! context is both SPKIs (see [`super::tls::SecureChannel::pairing_binding`]). A relay that terminates
//! TLS with its own keys gets a different exporter value on each side, so the key confirmation fails
//! even if it knows the code; a transcript replayed into another TLS session fails the same way.
//!
//! The responder (the device showing the code) counts attempts: every started attempt counts as a
//! failure until it succeeds, [`MAX_ATTEMPTS`] failures disarm the code and lock pairing for a
//! back-off that doubles each time, and a code is single-use (consumed by success).

use std::time::{Duration, Instant};

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

/// Wrong codes accepted before the code is disarmed and pairing is locked.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long a shown code stays valid.
pub const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// First lock-out after [`MAX_ATTEMPTS`] failures; doubles with each further lock-out.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(30);

pub(crate) const INITIATOR_LABEL: &[u8] = b"pmn-pair-confirm-initiator";
pub(crate) const RESPONDER_LABEL: &[u8] = b"pmn-pair-confirm-responder";

/// The responder's pairing state: the armed code and the attempt counter.
#[derive(Debug, Default)]
pub(crate) struct PairingGate {
    code: Option<(String, Instant)>,
    failures: u32,
    lockouts: u32,
    locked_until: Option<Instant>,
}

impl PairingGate {
    /// Arms a fresh random 6-digit code (replacing any previous one) and returns it for display.
    pub(crate) fn arm(&mut self, now: Instant) -> Result<String> {
        self.check_lock(now)?;
        let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
        self.code = Some((code.clone(), now + CODE_LIFETIME));
        self.failures = 0;
        Ok(code)
    }

    /// Arms a code chosen by the app (e.g. printed on a provider's label).
    pub(crate) fn arm_with(&mut self, code: &str, now: Instant) -> Result<()> {
        self.check_lock(now)?;
        self.code = Some((code.to_owned(), now + CODE_LIFETIME));
        self.failures = 0;
        Ok(())
    }

    pub(crate) fn disarm(&mut self) {
        self.code = None;
    }

    fn check_lock(&self, now: Instant) -> Result<()> {
        match self.locked_until {
            Some(until) if until > now => Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "pairing is locked for {} s after too many wrong codes",
                    (until - now).as_secs() + 1
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether an inbound pairing-mode session may even start (checked before the handshake).
    pub(crate) fn is_open(&self, now: Instant) -> Result<()> {
        self.check_lock(now)?;
        match &self.code {
            Some((_, expiry)) if *expiry > now => Ok(()),
            _ => Err(Error::new(
                ErrorKind::Forbidden,
                "pairing is not enabled on this device (show a code first)",
            )),
        }
    }

    /// Starts an attempt: returns the code and counts the attempt as failed until it succeeds.
    pub(crate) fn begin(&mut self, now: Instant) -> Result<String> {
        self.is_open(now)?;
        let code = self.code.as_ref().map(|(c, _)| c.clone()).ok_or_else(|| {
            Error::new(
                ErrorKind::Forbidden,
                "pairing is not enabled on this device",
            )
        })?;
        self.failures += 1;
        if self.failures >= MAX_ATTEMPTS {
            // This is the last try for this code; a further one needs a new code after the lock.
            self.code = None;
            self.locked_until = Some(now + FIRST_LOCKOUT * 2u32.saturating_pow(self.lockouts));
            self.lockouts += 1;
        }
        Ok(code)
    }

    /// The attempt succeeded: the code is consumed (single use) and the counter reset.
    pub(crate) fn succeeded(&mut self) {
        self.code = None;
        self.failures = 0;
        self.locked_until = None;
    }
}

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
        let mut gate = gate.lock().unwrap_or_else(|p| p.into_inner());
        gate.begin(Instant::now())
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
            gate.lock().unwrap_or_else(|p| p.into_inner()).succeeded();
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

    #[test]
    fn gate_is_single_use_and_locks_after_five_failures() {
        let now = Instant::now();
        let mut gate = PairingGate::default();
        assert!(gate.is_open(now).is_err());
        let code = gate.arm(now).unwrap();
        assert_eq!(code.len(), 6);
        assert_eq!(gate.begin(now).unwrap(), code);
        gate.succeeded();
        assert_eq!(gate.begin(now).unwrap_err().kind(), ErrorKind::Forbidden);

        gate.arm(now).unwrap();
        for _ in 0..MAX_ATTEMPTS {
            gate.begin(now).unwrap();
        }
        let locked = gate.begin(now).unwrap_err();
        assert!(locked.message().contains("locked"), "{locked}");
        assert!(gate.arm(now).is_err());
        let later = now + FIRST_LOCKOUT + Duration::from_secs(1);
        assert!(gate.is_open(later).is_err(), "code was disarmed");
        gate.arm(later).unwrap();
        for _ in 0..MAX_ATTEMPTS {
            gate.begin(later).unwrap();
        }
        // The second lock-out is twice as long.
        assert!(gate
            .arm(later + FIRST_LOCKOUT + Duration::from_secs(1))
            .is_err());
        assert!(gate
            .arm(later + FIRST_LOCKOUT * 2 + Duration::from_secs(1))
            .is_ok());
    }

    #[test]
    fn an_expired_code_is_refused() {
        let now = Instant::now();
        let mut gate = PairingGate::default();
        gate.arm_with("424242", now).unwrap();
        assert!(gate
            .is_open(now + CODE_LIFETIME + Duration::from_secs(1))
            .is_err());
    }
}
