//! The arithmetic of one shared allowance, as the database row keeps it: a bucket of what no
//! replica holds yet. Replicas lease slices out of it, spend them locally, report what they
//! overspent and give back what they did not use; leases of replicas that stopped renewing
//! come back when they expire. The same function serves the SQL ledger and the in-memory one.

use super::Limit;

/// A shared allowance: `level` is what is left to lease (rate limits refill it up to
/// `capacity`; a budget never refills, a new period has a row of its own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketRow {
    pub capacity: f64,
    pub refill_per_ms: f64,
    pub level: f64,
    pub updated_ms: i64,
}

impl BucketRow {
    pub fn full(limit: &Limit, now_ms: i64) -> BucketRow {
        BucketRow {
            capacity: limit.capacity,
            refill_per_ms: limit.refill_per_sec / 1000.0,
            level: limit.capacity,
            updated_ms: now_ms,
        }
    }

    /// The level at `now_ms` (rate limits refill; nothing else changes).
    pub fn level_at(&self, now_ms: i64) -> f64 {
        let elapsed = (now_ms - self.updated_ms).max(0) as f64;
        if self.level >= self.capacity {
            return self.level;
        }
        (self.level + elapsed * self.refill_per_ms).min(self.capacity)
    }
}

/// What one replica asks of the row in one exchange.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LeaseRequest {
    /// Spent beyond what it was leased (real usage above the estimate): charged even if it
    /// takes the level below zero, since it was already spent.
    pub overdraft: f64,
    /// Unused slice handed back (idle replica, smaller need).
    pub give_back: f64,
    /// How much more it would like to hold.
    pub want: f64,
    /// Less than this is useless (the request waiting for it needs this much): grant nothing.
    pub min_grant: f64,
}

/// The answer to a [`LeaseRequest`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grant {
    pub granted: f64,
    /// The level left after the exchange.
    pub level: f64,
    /// Refused for lack of allowance: milliseconds until the refill covers `min_grant`, or
    /// `None` when nothing refills (a budget: until the period ends).
    pub wait_ms: Option<Option<i64>>,
}

/// Apply one exchange to `row` at `now_ms`. `reclaimed` is the unspent amount of leases that
/// expired (their replicas stopped renewing). A changed limit (a reload) moves the level by the
/// change, so what was already spent stays spent.
pub fn exchange(
    row: &mut BucketRow,
    limit: &Limit,
    reclaimed: f64,
    req: &LeaseRequest,
    now_ms: i64,
) -> Grant {
    row.level = row.level_at(now_ms);
    row.updated_ms = now_ms.max(row.updated_ms);
    if row.capacity != limit.capacity {
        row.level += limit.capacity - row.capacity;
        row.capacity = limit.capacity;
    }
    row.refill_per_ms = limit.refill_per_sec / 1000.0;
    row.level = (row.level + reclaimed.max(0.0) + req.give_back.max(0.0)).min(row.capacity);
    row.level -= req.overdraft.max(0.0);
    let available = row.level.max(0.0);
    let want = req.want.max(0.0);
    let min_grant = req.min_grant.max(0.0);
    let granted = if want > 0.0 && available + 1e-9 >= min_grant {
        want.min(available)
    } else {
        0.0
    };
    row.level -= granted;
    let refused = granted + 1e-9 < min_grant;
    let wait_ms = refused.then(|| {
        (row.refill_per_ms > 0.0).then(|| {
            ((min_grant - row.level) / row.refill_per_ms)
                .ceil()
                .max(1.0) as i64
        })
    });
    Grant {
        granted,
        level: row.level,
        wait_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn per_minute(n: f64) -> Limit {
        Limit::per_minute(n as u64)
    }

    #[test]
    fn grants_what_is_left_and_refuses_below_the_need() {
        let limit = per_minute(120.0);
        let mut row = BucketRow::full(&limit, 0);
        let ask = |want, min_grant| LeaseRequest {
            want,
            min_grant,
            ..LeaseRequest::default()
        };
        let g = exchange(&mut row, &limit, 0.0, &ask(100.0, 1.0), 0);
        assert_eq!((g.granted, g.level, g.wait_ms), (100.0, 20.0, None));
        let g = exchange(&mut row, &limit, 0.0, &ask(50.0, 1.0), 0);
        assert_eq!((g.granted, g.level), (20.0, 0.0));
        // Empty: refused, told when one request's worth refills (120/min = 2/s → 500 ms).
        let g = exchange(&mut row, &limit, 0.0, &ask(5.0, 1.0), 0);
        assert_eq!((g.granted, g.wait_ms), (0.0, Some(Some(500))));
        let g = exchange(&mut row, &limit, 0.0, &ask(5.0, 1.0), 1500);
        assert_eq!(g.granted, 3.0);
    }

    #[test]
    fn overdraft_is_charged_below_zero_and_budgets_never_refill() {
        let limit = Limit::budget(0.5, None);
        let mut row = BucketRow::full(&limit, 0);
        let g = exchange(
            &mut row,
            &limit,
            0.0,
            &LeaseRequest {
                overdraft: 0.7,
                want: 0.1,
                min_grant: 0.01,
                ..LeaseRequest::default()
            },
            0,
        );
        assert_eq!(g.granted, 0.0);
        assert!((g.level + 0.2).abs() < 1e-12);
        assert_eq!(
            g.wait_ms,
            Some(None),
            "a budget waits for its period to end"
        );
        assert!((row.level_at(10_000_000) + 0.2).abs() < 1e-12);
    }

    #[test]
    fn a_changed_limit_keeps_what_was_spent() {
        let old = Limit::budget(1.0, None);
        let mut row = BucketRow::full(&old, 0);
        let take = LeaseRequest {
            want: 0.3,
            ..LeaseRequest::default()
        };
        exchange(&mut row, &old, 0.0, &take, 0);
        let raised = Limit::budget(2.0, None);
        let g = exchange(&mut row, &raised, 0.0, &LeaseRequest::default(), 1);
        assert!((g.level - 1.7).abs() < 1e-12, "{g:?}");
        let lowered = Limit::budget(0.2, None);
        let g = exchange(&mut row, &lowered, 0.0, &take, 2);
        assert_eq!(g.granted, 0.0);
        assert!((g.level + 0.1).abs() < 1e-12, "{g:?}");
    }

    #[test]
    fn returned_and_reclaimed_slices_never_lift_the_level_above_capacity() {
        let limit = per_minute(60.0);
        let mut row = BucketRow::full(&limit, 0);
        let back = LeaseRequest {
            give_back: 30.0,
            ..LeaseRequest::default()
        };
        let g = exchange(&mut row, &limit, 40.0, &back, 0);
        assert_eq!(g.level, 60.0);
    }

    /// One replica's view in the simulation: what it holds.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// Replica `r` spends up to `n` of what it holds.
        Spend(usize, f64),
        /// Replica `r` asks for `want`.
        Lease(usize, f64),
        /// Replica `r` gives back what it holds.
        Return(usize),
        /// Replica `r` dies; its slice comes back when the lease expires.
        Die(usize),
        /// Time passes.
        Wait(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize, 0.0..20.0f64).prop_map(|(r, n)| Step::Spend(r, n)),
            (0..3usize, 0.0..20.0f64).prop_map(|(r, n)| Step::Lease(r, n)),
            (0..3usize).prop_map(Step::Return),
            (0..3usize).prop_map(Step::Die),
            (0..5_000i64).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Whatever replicas do, what they spend over a run never exceeds the capacity plus
        /// the refill over the run's length: leasing moves allowance around, never makes it.
        #[test]
        fn spending_never_exceeds_capacity_plus_refill(
            capacity in 1.0..500.0f64,
            per_minute_rate in prop::bool::ANY,
            steps in prop::collection::vec(step(), 1..80),
        ) {
            let limit = if per_minute_rate {
                Limit::per_minute(capacity as u64)
            } else {
                Limit::budget(capacity, None)
            };
            let mut row = BucketRow::full(&limit, 0);
            let mut held = [0.0f64; 3];
            let mut dead_slices = 0.0;
            let mut spent = 0.0;
            let mut now = 0i64;
            for s in steps {
                match s {
                    Step::Spend(r, n) => {
                        let n = n.min(held[r]);
                        held[r] -= n;
                        spent += n;
                    }
                    Step::Lease(r, want) => {
                        let g = exchange(&mut row, &limit, 0.0, &LeaseRequest { want, min_grant: 0.0, ..LeaseRequest::default() }, now);
                        prop_assert!(g.granted >= 0.0 && g.granted <= want + 1e-9);
                        held[r] += g.granted;
                    }
                    Step::Return(r) => {
                        exchange(&mut row, &limit, 0.0, &LeaseRequest { give_back: held[r], ..LeaseRequest::default() }, now);
                        held[r] = 0.0;
                    }
                    Step::Die(r) => {
                        dead_slices += held[r];
                        held[r] = 0.0;
                    }
                    Step::Wait(ms) => {
                        now += ms;
                        let reclaimed = std::mem::take(&mut dead_slices);
                        exchange(&mut row, &limit, reclaimed, &LeaseRequest::default(), now);
                    }
                }
                let refill = limit.refill_per_sec * now as f64 / 1000.0;
                prop_assert!(spent <= limit.capacity + refill + 1e-6, "spent {spent} cap {} refill {refill}", limit.capacity);
                prop_assert!(row.level <= limit.capacity + 1e-9);
            }
        }
    }
}
