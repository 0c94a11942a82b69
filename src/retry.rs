//! Backoff between retries (task restarts, broker metadata lookups), on
//! `backon`'s exponential schedule with jitter: 0.5 s doubling to 30 s.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// First delay.
pub const MIN_DELAY: Duration = Duration::from_millis(500);
/// Longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// An endless exponential backoff with jitter.
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: backon::ExponentialBackoff,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff").finish_non_exhaustive()
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(MIN_DELAY, MAX_DELAY)
    }
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            delays: builder.build(),
            builder,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(MAX_DELAY)
    }

    /// Starts again from the first delay (after a healthy stretch).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next_delay();
        // Jitter adds up to one more delay.
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200));
        let later: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(later.last().is_some_and(|d| *d >= Duration::from_secs(1)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
