//! The pairing gate of the device that shows a code: which code is armed, and who tried it.
//!
//! Only devices of this network reach the gate (the endpoint refuses pairing from any other bare
//! JID before it gets here). Every started attempt counts as a failure until it succeeds. Tries are
//! counted **per peer full JID**: [`MAX_ATTEMPTS`] failures lock *that peer* out for a back-off that
//! doubles with each of its lock-outs, while other devices keep pairing with the same code — one
//! device's wrong codes never lock out another. Because a peer can change its resource, a **global
//! cap** bounds guessing: [`MAX_CODE_FAILURES`] failures against one code, whoever made them,
//! disarm it (a new code can be armed at once). The per-peer map holds at most
//! [`MAX_TRACKED_PEERS`] entries; beyond, the least recently seen peer is forgotten (the global
//! cap still counts its failures). A code is single-use (consumed by success) and expires after
//! [`CODE_LIFETIME`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use xmpp_parsers::jid::FullJid;

use crate::core::error::{Error, ErrorKind, Result};

/// Wrong codes one peer may try before it is locked out.
pub const MAX_ATTEMPTS: u32 = 5;
/// Wrong codes against one armed code, over all peers, before the code is disarmed.
pub const MAX_CODE_FAILURES: u32 = 20;
/// Peers whose tries are remembered at once.
pub const MAX_TRACKED_PEERS: usize = 64;
/// How long a shown code stays valid.
pub const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// A peer's first lock-out after [`MAX_ATTEMPTS`] failures; doubles with each further lock-out.
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(30);

/// One peer's tries.
#[derive(Debug, Clone)]
struct PeerTries {
    failures: u32,
    lockouts: u32,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

/// The responder's pairing state: the armed code and the attempt counters.
#[derive(Debug, Default)]
pub(crate) struct PairingGate {
    code: Option<(String, Instant)>,
    /// Failures against the armed code, over all peers (the global cap).
    code_failures: u32,
    peers: HashMap<FullJid, PeerTries>,
    /// Entries forgotten to keep `peers` bounded.
    pub(crate) evicted: u64,
    /// Codes disarmed by the global cap.
    pub(crate) codes_exhausted: u64,
}

impl PairingGate {
    /// Arms a fresh random 6-digit code (replacing any previous one) and returns it for display.
    /// A locked-out peer does not stop the screen from arming a code for the others.
    pub(crate) fn arm(&mut self, now: Instant) -> Result<String> {
        let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
        self.arm_with(&code, now)?;
        Ok(code)
    }

    /// Arms a code chosen by the app (e.g. printed on a provider's label).
    pub(crate) fn arm_with(&mut self, code: &str, now: Instant) -> Result<()> {
        if code.trim().is_empty() {
            return Err(Error::new(ErrorKind::BadParams, "an empty pairing code"));
        }
        self.code = Some((code.to_owned(), now + CODE_LIFETIME));
        self.code_failures = 0;
        Ok(())
    }

    pub(crate) fn disarm(&mut self) {
        self.code = None;
    }

    fn check_lock(&self, peer: &FullJid, now: Instant) -> Result<()> {
        match self.peers.get(peer).and_then(|t| t.locked_until) {
            Some(until) if until > now => Err(Error::new(
                ErrorKind::Forbidden,
                format!(
                    "pairing is locked for {} s after too many wrong codes from this device",
                    (until - now).as_secs() + 1
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether an inbound pairing-mode session of `peer` may even start (checked before the
    /// handshake; counts nothing).
    pub(crate) fn is_open(&self, peer: &FullJid, now: Instant) -> Result<()> {
        self.check_lock(peer, now)?;
        match &self.code {
            Some((_, expiry)) if *expiry > now => Ok(()),
            _ => Err(Error::new(
                ErrorKind::Forbidden,
                "pairing is not enabled on this device (show a code first)",
            )),
        }
    }

    /// The entry of `peer`, made room for if the map is full (least recently seen goes).
    fn tries(&mut self, peer: &FullJid, now: Instant) -> &mut PeerTries {
        if !self.peers.contains_key(peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, t)| t.last_seen)
                .map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
                self.evicted += 1;
                tracing::info!(forgotten = %oldest, "pairing: too many peers tried; forgetting the oldest");
            }
        }
        let tries = self.peers.entry(peer.clone()).or_insert(PeerTries {
            failures: 0,
            lockouts: 0,
            locked_until: None,
            last_seen: now,
        });
        tries.last_seen = now;
        tries
    }

    /// Starts an attempt of `peer`: returns the code and counts the attempt as failed (for the
    /// peer and against the code) until it succeeds.
    pub(crate) fn begin(&mut self, peer: &FullJid, now: Instant) -> Result<String> {
        self.is_open(peer, now)?;
        let code = self.code.as_ref().map(|(c, _)| c.clone()).ok_or_else(|| {
            Error::new(
                ErrorKind::Forbidden,
                "pairing is not enabled on this device",
            )
        })?;
        let tries = self.tries(peer, now);
        tries.failures += 1;
        if tries.failures >= MAX_ATTEMPTS {
            // This is the peer's last try for now; its next one waits out the lock-out.
            // The peer drives `lockouts`: the product fits a `Duration` (30 s × 2^32), and the
            // deadline is capped so no clock overflows however long the lock-out grows.
            let lockout = FIRST_LOCKOUT * 2u32.saturating_pow(tries.lockouts);
            tries.locked_until = Some(crate::core::clock::deadline(now, lockout));
            tries.lockouts = tries.lockouts.saturating_add(1);
            tries.failures = 0;
            tracing::warn!(%peer, lockouts = tries.lockouts, "pairing: too many wrong codes, peer locked out");
        }
        self.code_failures += 1;
        if self.code_failures >= MAX_CODE_FAILURES {
            // Guessing from many resources: this code has had enough tries, whoever made them.
            self.code = None;
            self.codes_exhausted += 1;
            tracing::warn!("pairing: too many wrong codes against the shown code; code disarmed");
        }
        Ok(code)
    }

    /// The attempt of `peer` succeeded: the code is consumed (single use) and the peer's tries
    /// forgotten.
    pub(crate) fn succeeded(&mut self, peer: &FullJid) {
        self.code = None;
        self.code_failures = 0;
        self.peers.remove(peer);
    }

    /// Peers whose tries are remembered.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> FullJid {
        s.parse().unwrap()
    }

    #[test]
    fn gate_is_single_use_and_locks_a_peer_after_five_failures_with_doubling_lockouts() {
        let now = Instant::now();
        let phone = jid("home@home.test/phone");
        let mut gate = PairingGate::default();
        assert!(gate.is_open(&phone, now).is_err());
        let code = gate.arm(now).unwrap();
        assert_eq!(code.len(), 6);
        assert_eq!(gate.begin(&phone, now).unwrap(), code);
        gate.succeeded(&phone);
        assert_eq!(
            gate.begin(&phone, now).unwrap_err().kind(),
            ErrorKind::Forbidden
        );

        gate.arm(now).unwrap();
        for _ in 0..MAX_ATTEMPTS {
            gate.begin(&phone, now).unwrap();
        }
        let locked = gate.begin(&phone, now).unwrap_err();
        assert!(locked.message().contains("locked"), "{locked}");
        let later = now + FIRST_LOCKOUT + Duration::from_secs(1);
        assert!(gate.is_open(&phone, later).is_ok(), "lock-out over");
        for _ in 0..MAX_ATTEMPTS {
            gate.begin(&phone, later).unwrap();
        }
        // The second lock-out is twice as long.
        assert!(gate
            .is_open(&phone, later + FIRST_LOCKOUT + Duration::from_secs(1))
            .is_err());
        assert!(gate
            .is_open(&phone, later + FIRST_LOCKOUT * 2 + Duration::from_secs(1))
            .is_ok());
    }

    #[test]
    fn a_peer_with_countless_lockouts_gets_a_capped_deadline_not_an_overflow() {
        let now = Instant::now();
        let phone = jid("home@home.test/phone");
        let mut gate = PairingGate::default();
        gate.arm(now).unwrap();
        // As if the peer had earned every lock-out: 30 s × 2^32 is some 4000 years.
        gate.tries(&phone, now).lockouts = u32::MAX;
        for _ in 0..MAX_ATTEMPTS {
            gate.begin(&phone, now).unwrap();
        }
        let until = gate.peers[&phone].locked_until.expect("locked out");
        assert_eq!(until, now + crate::core::clock::FAR_FUTURE);
        assert!(gate.is_open(&phone, now).is_err());
    }

    #[test]
    fn one_peers_wrong_codes_never_lock_out_another() {
        let now = Instant::now();
        let (mallory, phone) = (jid("home@home.test/mallory"), jid("home@home.test/phone"));
        let mut gate = PairingGate::default();
        let code = gate.arm(now).unwrap();
        for _ in 0..MAX_ATTEMPTS {
            gate.begin(&mallory, now).unwrap();
        }
        assert!(gate.begin(&mallory, now).is_err(), "mallory is locked out");
        // The phone keeps all its tries, with the same code, and a new code can be shown.
        assert!(gate.is_open(&phone, now).is_ok());
        assert_eq!(gate.begin(&phone, now).unwrap(), code);
        gate.succeeded(&phone);
        assert!(gate.arm(now).is_ok());
        assert!(gate.is_open(&phone, now).is_ok());
        assert!(gate.is_open(&mallory, now).is_err());
    }

    #[test]
    fn a_global_cap_disarms_a_code_guessed_from_many_resources() {
        let now = Instant::now();
        let mut gate = PairingGate::default();
        gate.arm(now).unwrap();
        for i in 0..MAX_CODE_FAILURES {
            gate.begin(&jid(&format!("home@home.test/r{i}")), now)
                .unwrap();
        }
        let phone = jid("home@home.test/phone");
        assert!(gate.begin(&phone, now).is_err(), "code disarmed");
        assert_eq!(gate.codes_exhausted, 1);
        // A fresh code starts a fresh count, and the phone has all its tries.
        gate.arm(now).unwrap();
        assert!(gate.begin(&phone, now).is_ok());
    }

    #[test]
    fn the_per_peer_map_is_bounded_and_forgets_the_least_recently_seen() {
        let now = Instant::now();
        let mut gate = PairingGate::default();
        for i in 0..(MAX_TRACKED_PEERS as u64 + 10) {
            // A fresh code now and then: the global cap is not what this test is about.
            if i % (MAX_CODE_FAILURES as u64 - 1) == 0 {
                gate.arm(now).unwrap();
            }
            let at = now + Duration::from_millis(i);
            gate.begin(&jid(&format!("home@home.test/r{i}")), at)
                .unwrap();
        }
        assert_eq!(gate.tracked(), MAX_TRACKED_PEERS);
        assert_eq!(gate.evicted, 10);
        assert!(!gate.peers.contains_key(&jid("home@home.test/r0")));
        assert!(gate.peers.contains_key(&jid("home@home.test/r73")));
    }

    #[test]
    fn an_expired_code_is_refused() {
        let now = Instant::now();
        let mut gate = PairingGate::default();
        gate.arm_with("424242", now).unwrap();
        assert!(gate
            .is_open(
                &jid("home@home.test/phone"),
                now + CODE_LIFETIME + Duration::from_secs(1)
            )
            .is_err());
    }
}
