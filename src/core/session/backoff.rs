//! When to try the next login after a connection is lost.
//!
//! Two failures look alike to a naive loop and must both back off: a login that fails (server
//! down, refused) and a login that *succeeds* and then drops at once (a server that refuses the
//! resumption, a stanza the stream cannot take). The second kind used to reconnect ~35 times a
//! second for ever. So a connection only counts as healthy once it has stayed up for
//! [`STABLE_AFTER`]; until then each new attempt waits one more step.
//!
//! The steps are short while an outage is young (a server restart should be noticed within about
//! two seconds of its return) and grow once it has lasted long (a phone in a tunnel should not
//! wake the radio every two seconds): 0.25, 0.5, 1, 2, 2, … s for the first
//! [`PATIENT_FOR`], then doubling up to [`MAX_DELAY`]. Every delay is jittered down to half its
//! step so that a whole household does not log in at the same instant after a server restart.
//! [`Backoff::reset`] (the app said the network changed) starts over at the shortest step.

use std::time::Duration;

use tokio::time::Instant;

/// A connection that stayed up this long was healthy: the next loss starts from the first step.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long the early, short steps last before the delays grow.
pub const PATIENT_FOR: Duration = Duration::from_secs(30);
/// The first step.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest step while the outage is young.
pub const EARLY_CAP: Duration = Duration::from_secs(2);
/// The longest step of all.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Backoff state of one session.
#[derive(Debug, Clone)]
pub struct Backoff {
    step: Duration,
    /// When the current run of failures began (`None` while healthy).
    since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A fresh state: the next delay is the first step.
    pub fn new() -> Self {
        Self {
            step: FIRST_DELAY,
            since: None,
        }
    }

    /// Starts over at the first step (the network changed, or a connection proved healthy).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// A connection that was handed out at `up_since` has just been lost (or a login failed when
    /// `up_since` is `None`). Returns how long to wait before the next login.
    pub fn next_delay(&mut self, up_since: Option<Instant>, now: Instant) -> Duration {
        if up_since.is_some_and(|t| now.saturating_duration_since(t) >= STABLE_AFTER) {
            // A healthy connection was lost: reconnect at once, and start counting afresh.
            self.reset();
            self.since = Some(now);
            return Duration::ZERO;
        }
        let since = *self.since.get_or_insert(now);
        let step = self.step;
        let cap = if now.saturating_duration_since(since) < PATIENT_FOR {
            EARLY_CAP
        } else {
            MAX_DELAY
        };
        self.step = (step * 2).min(cap);
        jitter(step.min(cap))
    }
}

/// A delay between half the step and the whole step.
fn jitter(step: Duration) -> Duration {
    let factor = 0.5 + rand::random::<f64>() * 0.5;
    step.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_connection_reconnects_at_once_then_backs_off() {
        let t0 = Instant::now();
        let mut b = Backoff::new();
        assert_eq!(b.next_delay(Some(t0), t0 + STABLE_AFTER), Duration::ZERO);
        let now = t0 + STABLE_AFTER;
        let d1 = b.next_delay(None, now);
        assert!(d1 >= FIRST_DELAY / 2 && d1 <= FIRST_DELAY, "{d1:?}");
        let d2 = b.next_delay(None, now);
        assert!(d2 >= FIRST_DELAY && d2 <= FIRST_DELAY * 2, "{d2:?}");
    }

    #[test]
    fn connections_that_drop_at_once_back_off_like_failed_logins() {
        let t0 = Instant::now();
        let mut b = Backoff::new();
        let mut total = Duration::ZERO;
        let mut now = t0;
        // 20 logins that each succeed and drop 10 ms later.
        for _ in 0..20 {
            let up = now;
            now += Duration::from_millis(10);
            let d = b.next_delay(Some(up), now);
            assert!(d > Duration::ZERO);
            total += d;
            now += d;
        }
        // Bounded rate: at least ~1 s per attempt once the steps reached their early cap.
        assert!(total >= Duration::from_secs(15), "{total:?}");
    }

    #[test]
    fn early_steps_never_exceed_two_seconds_and_later_ones_grow_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Backoff::new();
        let mut now = t0;
        while now.duration_since(t0) < PATIENT_FOR {
            let d = b.next_delay(None, now);
            assert!(d <= EARLY_CAP, "{d:?}");
            now += d.max(Duration::from_millis(1));
        }
        let mut longest = Duration::ZERO;
        for _ in 0..20 {
            let d = b.next_delay(None, now);
            assert!(d <= MAX_DELAY);
            longest = longest.max(d);
            now += d;
        }
        assert!(longest > EARLY_CAP * 4, "{longest:?}");
    }

    #[test]
    fn reset_starts_over() {
        let t0 = Instant::now();
        let mut b = Backoff::new();
        for _ in 0..10 {
            b.next_delay(None, t0);
        }
        b.reset();
        assert!(b.next_delay(None, t0) <= FIRST_DELAY);
    }
}
