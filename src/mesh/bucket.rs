//! A token bucket for requests/minute and tokens/minute limits.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    /// Tokens added per second.
    rate: f64,
    /// May go negative when real usage exceeds the estimate taken up front.
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A bucket that holds `per_minute` tokens and refills them evenly over a minute.
    pub fn per_minute(per_minute: u64, now: Instant) -> TokenBucket {
        let capacity = per_minute.max(1) as f64;
        TokenBucket {
            capacity,
            rate: capacity / 60.0,
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// How long until `n` tokens are available (zero if they are now). A request larger than
    /// the whole bucket waits for a full bucket instead of never being admitted.
    pub fn wait_for(&mut self, n: f64, now: Instant) -> Duration {
        self.refill(now);
        let need = n.min(self.capacity);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }

    /// Take `n` tokens; call only after `wait_for` returned zero.
    pub fn take(&mut self, n: f64) {
        self.tokens -= n.min(self.capacity);
    }

    /// Correct an earlier estimate with the real amount (refund or extra debit).
    pub fn settle(&mut self, estimated: f64, actual: f64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + estimated.min(self.capacity) - actual).min(self.capacity);
    }

    pub fn level(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    pub fn capacity(&self) -> f64 {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(60, t0);
        for _ in 0..60 {
            assert_eq!(b.wait_for(1.0, t0), Duration::ZERO);
            b.take(1.0);
        }
        let wait = b.wait_for(1.0, t0);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(b.wait_for(1.0, t0 + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn settle_refunds_and_debits() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(1000, t0);
        b.take(500.0);
        b.settle(500.0, 100.0, t0);
        assert!((b.level(t0) - 900.0).abs() < 1e-6);
        b.settle(0.0, 1500.0, t0);
        assert!(b.level(t0) < 0.0);
        assert!(b.wait_for(1.0, t0) > Duration::from_secs(30));
    }

    #[test]
    fn oversized_requests_wait_for_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(100, t0);
        assert_eq!(b.wait_for(1000.0, t0), Duration::ZERO);
        b.take(1000.0);
        assert!(b.level(t0).abs() < 1e-6);
    }
}
