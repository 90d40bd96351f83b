//! What one replica holds of one shared allowance: its leased slice, spent on the request
//! path without the database, and what the broker needs to size and renew the next lease.

use std::time::{Duration, Instant};

use super::{Limit, QuotaSettings};

/// The answer of the request path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Take {
    Taken,
    /// The shared allowance is spent: wait this long.
    Refused(Duration),
    /// Nothing held locally: a lease must be asked for first.
    Empty,
}

/// The last word from the shared ledger about this allowance (for views and gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SharedView {
    /// Left to lease, across replicas.
    pub level: f64,
    /// Leased to replicas and not reported spent (this one included).
    pub outstanding: f64,
}

#[derive(Debug)]
pub struct ScopeState {
    pub limit: Limit,
    /// Leased and not spent; negative when real usage exceeded what was held (an overdraft
    /// the next exchange reports).
    pub slice: f64,
    /// The lease may be spent until then (a little before the ledger's expiry, so a slow
    /// clock or exchange never spends a slice the ledger already took back).
    pub live_until: Option<Instant>,
    /// The ledger said no: refuse locally until then instead of asking again.
    pub refused_until: Option<Instant>,
    pub refill_queued: bool,
    /// Spent since the last exchange, and when that was: the recent rate sizes leases.
    pub spent_since_sync: f64,
    pub synced_at: Instant,
    pub rate_per_sec: f64,
    pub last_use: Instant,
    pub shared: Option<SharedView>,
}

impl ScopeState {
    pub fn new(limit: Limit, now: Instant) -> ScopeState {
        ScopeState {
            limit,
            slice: 0.0,
            live_until: None,
            refused_until: None,
            refill_queued: false,
            spent_since_sync: 0.0,
            synced_at: now,
            rate_per_sec: 0.0,
            last_use: now,
            shared: None,
        }
    }

    pub fn live(&self, now: Instant) -> bool {
        self.live_until.is_some_and(|until| now < until)
    }

    /// What a spend of `amount` really takes: an amount larger than the whole allowance waits
    /// for all of it rather than never being admitted (as the token buckets do).
    fn clamp(&self, amount: f64) -> f64 {
        amount
            .max(0.0)
            .min(self.limit.capacity.max(self.limit.unit))
    }

    /// Spend `amount` from the slice when it holds that much. `low_water`: whether the broker
    /// should be asked to top the slice up now, ahead of need.
    pub fn try_take(
        &mut self,
        amount: f64,
        now: Instant,
        settings: &QuotaSettings,
    ) -> (Take, bool) {
        self.last_use = now;
        let amount = self.clamp(amount);
        if self.live(now) && self.slice + 1e-9 >= amount {
            self.slice -= amount;
            self.spent_since_sync += amount;
            let low = self.slice < self.target(settings) / 2.0 && !self.refill_queued;
            if low {
                self.refill_queued = true;
            }
            return (Take::Taken, low);
        }
        if let Some(until) = self.refused_until.filter(|u| now < *u) {
            return (Take::Refused(until - now), false);
        }
        (Take::Empty, false)
    }

    /// Correct an earlier spend: a refund (`delta > 0`) or usage beyond the estimate.
    pub fn adjust(&mut self, delta: f64) {
        self.slice += delta;
        self.spent_since_sync -= delta;
    }

    /// The slice to hold: what the recent rate spends in one lease interval (×2.5: topped up at half, a lease
    /// then lasts 1.25 intervals), at least one unit, at most the lease fraction of the limit.
    /// Budgets hold the whole fraction: a slice held never lets spend pass the budget (it
    /// was taken from it), it only keeps it from other replicas a while.
    pub fn target(&self, settings: &QuotaSettings) -> f64 {
        let cap = (self.limit.capacity * settings.lease_fraction).max(self.limit.unit);
        if self.limit.unit == 0.0 {
            return cap;
        }
        let by_rate = self.rate_per_sec * settings.lease_interval.as_secs_f64() * 2.5;
        by_rate.max(self.limit.unit).min(cap)
    }

    /// Fold the spend since the last exchange into the rate estimate.
    pub fn note_sync(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.synced_at).as_secs_f64();
        if elapsed > 0.05 {
            let rate = self.spent_since_sync.max(0.0) / elapsed;
            self.rate_per_sec = if self.rate_per_sec == 0.0 {
                rate
            } else {
                (self.rate_per_sec + rate) / 2.0
            };
            self.spent_since_sync = 0.0;
            self.synced_at = now;
        }
    }

    /// Idle for longer than `for_at_least`.
    pub fn idle(&self, now: Instant, for_at_least: Duration) -> bool {
        now.saturating_duration_since(self.last_use) >= for_at_least
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> QuotaSettings {
        QuotaSettings {
            lease_fraction: 0.01,
            ..QuotaSettings::default()
        }
    }

    #[test]
    fn spends_a_live_slice_and_asks_for_more_at_half() {
        let now = Instant::now();
        let mut s = ScopeState::new(Limit::per_minute(1000), now);
        assert_eq!(s.try_take(1.0, now, &settings()).0, Take::Empty);
        s.slice = 10.0;
        s.live_until = Some(now + Duration::from_secs(1));
        // target = max(unit, min(rate × interval × 1.5, 1 % of 1000)) = 1 at no rate yet
        assert_eq!(s.try_take(4.0, now, &settings()), (Take::Taken, false));
        assert_eq!(s.try_take(6.0, now, &settings()), (Take::Taken, true));
        assert_eq!(s.try_take(1.0, now, &settings()), (Take::Empty, false));
        s.slice = 5.0;
        let later = now + Duration::from_secs(2);
        assert_eq!(
            s.try_take(1.0, later, &settings()).0,
            Take::Empty,
            "expired"
        );
        s.refused_until = Some(later + Duration::from_millis(300));
        assert_eq!(
            s.try_take(1.0, later, &settings()).0,
            Take::Refused(Duration::from_millis(300))
        );
    }

    #[test]
    fn lease_size_follows_the_rate_between_one_unit_and_the_fraction() {
        let now = Instant::now();
        let mut s = ScopeState::new(Limit::per_minute(100_000), now);
        assert_eq!(s.target(&settings()), 1.0);
        s.rate_per_sec = 100.0;
        assert_eq!(s.target(&settings()), 250.0);
        s.rate_per_sec = 1e6;
        assert_eq!(s.target(&settings()), 1000.0);
        let budget = ScopeState::new(Limit::budget(0.5, None), now);
        assert_eq!(budget.target(&settings()), 0.005);
    }

    #[test]
    fn oversized_spends_wait_for_the_whole_allowance() {
        let now = Instant::now();
        let mut s = ScopeState::new(Limit::per_minute(100), now);
        s.slice = 100.0;
        s.live_until = Some(now + Duration::from_secs(1));
        assert_eq!(s.try_take(5000.0, now, &settings()).0, Take::Taken);
        assert!(s.slice.abs() < 1e-9);
    }
}
