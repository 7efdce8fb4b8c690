//! The pairing gate of the device that shows a code: which code is armed, and how many attempts
//! were made against it.
//!
//! Every started attempt counts as a failure until it succeeds, [`MAX_ATTEMPTS`] failures disarm
//! the code and lock pairing for a back-off that doubles each time, and a code is single-use
//! (consumed by success).

use std::time::{Duration, Instant};

use crate::core::error::{Error, ErrorKind, Result};

/// Wrong codes accepted before the code is disarmed and pairing is locked.
pub const MAX_ATTEMPTS: u32 = 5;
/// How long a shown code stays valid.
pub const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// First lock-out after [`MAX_ATTEMPTS`] failures; doubles with each further lock-out.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(30);

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

#[cfg(test)]
mod tests {
    use super::*;

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
