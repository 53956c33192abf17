//! Reconnect delays: exponential growth, capped, with "equal jitter" so that many clients
//! dropped at once do not reconnect in lock-step.

use std::time::Duration;

use crate::config::Backoff;

/// Yields successive reconnect delays; [`Retry::reset`] after a connection that worked.
#[derive(Debug)]
pub struct Retry {
    bounds: Backoff,
    attempt: u32,
}

impl Retry {
    /// Starts at the first attempt.
    pub fn new(bounds: Backoff) -> Retry {
        Retry { bounds, attempt: 0 }
    }

    /// The next delay: half of the exponential step fixed, half random.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    /// Forgets earlier failures.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn step(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(30));
        self.bounds.min.saturating_mul(factor).min(self.bounds.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_caps_and_jitters_within_bounds() {
        let bounds = Backoff { min: Duration::from_millis(100), max: Duration::from_millis(1000) };
        let mut r = Retry::new(bounds);
        for (attempt, step_ms) in [(0, 100u64), (1, 200), (2, 400), (3, 800), (4, 1000), (9, 1000)] {
            assert_eq!(r.step(attempt), Duration::from_millis(step_ms));
        }
        for expected_step in [100u64, 200, 400, 800, 1000, 1000] {
            let d = r.next_delay();
            let step = Duration::from_millis(expected_step);
            assert!(d >= step / 2 && d <= step, "{d:?} not in [{:?}, {step:?}]", step / 2);
        }
        r.reset();
        assert!(r.next_delay() <= Duration::from_millis(100));
    }
}
