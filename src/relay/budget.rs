//! The global retry budget: a token bucket shared by every request of this router replica, so
//! that when a backend dies its failed attempts are not all multiplied by `MAX_ATTEMPTS` onto
//! the remaining backends. First attempts never spend from it; each retry spends one token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub struct RetryBudget {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
    denied: AtomicU64,
}

impl RetryBudget {
    /// `per_second` retries on average, up to `burst` at once. `per_second <= 0` = no retries.
    pub fn new(per_second: f64, burst: f64) -> RetryBudget {
        let burst = burst.max(1.0);
        RetryBudget {
            per_second: per_second.max(0.0),
            burst,
            state: Mutex::new((burst, Instant::now())),
            denied: AtomicU64::new(0),
        }
    }

    /// Take one retry token if there is one.
    pub fn try_spend(&self) -> bool {
        self.try_spend_at(Instant::now())
    }

    fn try_spend_at(&self, now: Instant) -> bool {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, updated) = &mut *state;
        let elapsed = now.saturating_duration_since(*updated).as_secs_f64();
        *tokens = (*tokens + elapsed * self.per_second).min(self.burst);
        *updated = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            self.denied.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Give back a token that was taken for a retry that did not happen.
    pub fn refund(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.0 = (state.0 + 1.0).min(self.burst);
    }

    /// Retries refused so far because the budget was empty.
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget::new(20.0, 40.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spends_the_burst_then_refills_at_the_rate() {
        let b = RetryBudget::new(2.0, 3.0);
        let t0 = Instant::now();
        assert!(b.try_spend_at(t0));
        assert!(b.try_spend_at(t0));
        assert!(b.try_spend_at(t0));
        assert!(!b.try_spend_at(t0));
        assert_eq!(b.denied(), 1);
        assert!(b.try_spend_at(t0 + Duration::from_millis(500)));
        assert!(!b.try_spend_at(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn zero_rate_allows_only_the_burst() {
        let b = RetryBudget::new(0.0, 1.0);
        let t0 = Instant::now();
        assert!(b.try_spend_at(t0));
        assert!(!b.try_spend_at(t0 + Duration::from_secs(100)));
    }
}
