//! Deadlines from the durations pmn is given.
//!
//! `Instant + Duration` panics when the sum does not fit the platform's clock, and a caller's
//! timeout, refresh interval or configured window can be anything up to `Duration::MAX` (the
//! natural way to say "no limit"). Every deadline made from such a duration goes through
//! [`deadline`].

use std::time::Duration;

/// The longest wait pmn turns into a deadline: about 30 years, as tokio caps its own timers
/// (`sleep`, `interval`). Longer is the same as never in practice, and fits every clock.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + wait`, with `wait` cut to [`FAR_FUTURE`] so the sum cannot overflow. Works for
/// `std::time::Instant` and `tokio::time::Instant`.
pub(crate) fn deadline<I: std::ops::Add<Duration, Output = I>>(now: I, wait: Duration) -> I {
    now + wait.min(FAR_FUTURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_max_makes_a_far_deadline_instead_of_a_panic() {
        let now = std::time::Instant::now();
        assert_eq!(deadline(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let now = tokio::time::Instant::now();
        assert_eq!(deadline(now, Duration::MAX), now + FAR_FUTURE);
    }
}
