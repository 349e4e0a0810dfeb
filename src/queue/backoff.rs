//! When the next attempt runs: exponential backoff with "equal jitter" (a delay drawn
//! between half the exponential ceiling and the ceiling, so jobs that failed together
//! spread out yet none retries at once), never sooner than a server's `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// The retry policy from `[queue]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Attempts in all; the last failure goes to dead letters.
    pub max_attempts: u32,
}

impl Backoff {
    /// The delay before attempt `failed + 1`, after attempt `failed` failed. The
    /// exponential ceiling is `initial * 2^(failed-1)` capped at `max`; the delay is
    /// drawn between half the ceiling and the ceiling, so retries of many jobs that
    /// failed together spread out. A `retry_after` raises it.
    pub fn delay(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = failed.saturating_sub(1).min(30);
        let ceiling = self
            .initial
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(Duration::from_millis(1));
        let half = ceiling / 2;
        let jitter = rand::rng().random_range(0..=(ceiling - half).as_millis() as u64);
        let delay = half + Duration::from_millis(jitter);
        delay.max(retry_after.unwrap_or_default())
    }

    /// Whether attempt `failed` was the last one.
    pub fn exhausted(&self, failed: u32) -> bool {
        failed >= self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_stay_in_bounds_and_respect_retry_after() {
        let backoff = Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            max_attempts: 5,
        };
        for _ in 0..200 {
            let first = backoff.delay(1, None);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
            let third = backoff.delay(3, None);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8));
            let late = backoff.delay(20, None);
            assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
        }
        assert!(backoff.delay(1, Some(Duration::from_secs(90))) >= Duration::from_secs(90));
        assert!(!backoff.exhausted(4));
        assert!(backoff.exhausted(5));
    }
}
