//! How fast a client must send an upload. The idle timeout alone (`CLIENT_BODY_TIMEOUT_SECS`)
//! lets one byte every few seconds hold a backend lease or a spool file for as long as the
//! client likes; these rules bound it:
//!
//! - a **deadline** on the whole body, in wall-clock time from the start of the request;
//! - a **minimum rate**: after a grace period, every window must bring at least
//!   `min_bytes_per_sec × window` bytes.
//!
//! The rate is measured over the time the router spends *waiting for the client*: while a slow
//! backend makes the router stop reading (the upload is coupled to the backend's body), the
//! client is not to blame, so that time does not count. The deadline counts everything.
//!
//! [`UploadPace`] is pure bookkeeping: the caller says how long it waited and how many bytes
//! have arrived, so it is tested without a clock.

use std::time::{Duration, Instant};

/// The rules, from `UPLOAD_DEADLINE_SECS`, `UPLOAD_MIN_BYTES_PER_SEC`, `UPLOAD_RATE_GRACE_SECS`
/// and `UPLOAD_RATE_WINDOW_SECS`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceLimits {
    pub deadline: Duration,
    /// 0 = no minimum rate.
    pub min_bytes_per_sec: u64,
    pub grace: Duration,
    pub window: Duration,
}

/// Why an upload was cut off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PaceViolation {
    /// The body was not complete by the deadline.
    Deadline,
    /// A window brought too few bytes.
    TooSlow,
}

/// The pace of one upload so far.
#[derive(Debug)]
pub struct UploadPace {
    limits: PaceLimits,
    deadline: Instant,
    /// Time spent waiting for the client's bytes.
    waited: Duration,
    /// The current window: when it began (in waiting time) and the bytes received by then.
    /// `None` during the grace period.
    window: Option<(Duration, u64)>,
}

impl UploadPace {
    pub fn new(limits: PaceLimits, started: Instant) -> UploadPace {
        UploadPace {
            limits,
            deadline: started + limits.deadline,
            waited: Duration::ZERO,
            window: None,
        }
    }

    pub fn limits(&self) -> PaceLimits {
        self.limits
    }

    fn rate_checked(&self) -> bool {
        self.limits.min_bytes_per_sec > 0
    }

    /// The longest the next wait for the client may last before the pace must be looked at
    /// again (the deadline, or the end of the grace period or of the current window).
    pub fn check_within(&self, now: Instant) -> Duration {
        let to_deadline = self.deadline.saturating_duration_since(now);
        if !self.rate_checked() {
            return to_deadline;
        }
        let checkpoint = match self.window {
            None => self.limits.grace,
            Some((began, _)) => began + self.limits.window,
        };
        to_deadline.min(checkpoint.saturating_sub(self.waited))
    }

    /// Account for a wait of `waited` that ended at `now`, with `received` bytes of the body
    /// arrived in all; an error if the upload broke a rule.
    pub fn record(
        &mut self,
        waited: Duration,
        received: u64,
        now: Instant,
    ) -> Result<(), PaceViolation> {
        self.waited += waited;
        if now >= self.deadline {
            return Err(PaceViolation::Deadline);
        }
        if !self.rate_checked() {
            return Ok(());
        }
        match self.window {
            None if self.waited >= self.limits.grace => {
                self.window = Some((self.waited, received));
            }
            None => {}
            Some((began, at_start)) => {
                let span = self.waited.saturating_sub(began);
                if span >= self.limits.window {
                    let wanted = self.limits.min_bytes_per_sec as f64 * span.as_secs_f64();
                    if (received.saturating_sub(at_start) as f64) < wanted {
                        return Err(PaceViolation::TooSlow);
                    }
                    self.window = Some((self.waited, received));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: Duration = Duration::from_secs(1);

    fn limits(min_bytes_per_sec: u64) -> PaceLimits {
        PaceLimits {
            deadline: 100 * SEC,
            min_bytes_per_sec,
            grace: 2 * SEC,
            window: 3 * SEC,
        }
    }

    /// The step at which a rule broke, and which.
    type Verdict = Option<(usize, PaceViolation)>;
    /// Each step: seconds waited, bytes arrived in it.
    type Steps = Vec<(f64, u64)>;

    /// Feed `steps` of (seconds waited, bytes arrived in it).
    fn run(limits: PaceLimits, steps: &[(f64, u64)]) -> Verdict {
        let start = Instant::now();
        let mut pace = UploadPace::new(limits, start);
        let (mut at, mut received) = (start, 0);
        for (i, &(secs, bytes)) in steps.iter().enumerate() {
            let waited = Duration::from_secs_f64(secs);
            at += waited;
            received += bytes;
            if let Err(v) = pace.record(waited, received, at) {
                return Some((i, v));
            }
        }
        None
    }

    #[test]
    fn trickles_are_cut_after_grace_and_one_window() {
        // (name, min rate, steps, expected verdict)
        let table: &[(&str, u64, Steps, Verdict)] = &[
            ("fast", 100, vec![(1.0, 1000); 20], None),
            (
                "trickle",
                100,
                vec![(1.0, 1); 20],
                Some((4, PaceViolation::TooSlow)),
            ),
            ("no minimum", 0, vec![(1.0, 1); 50], None),
            // Nothing counts during the grace period; then a window of exactly the rate passes.
            (
                "slow start",
                100,
                vec![(2.0, 0), (3.0, 300), (3.0, 300)],
                None,
            ),
            (
                "one short window",
                100,
                vec![(2.0, 0), (3.0, 300), (3.0, 299)],
                Some((2, PaceViolation::TooSlow)),
            ),
            (
                "deadline",
                0,
                vec![(60.0, 1), (40.0, 1)],
                Some((1, PaceViolation::Deadline)),
            ),
        ];
        for (name, min, steps, expected) in table {
            assert_eq!(run(limits(*min), steps), *expected, "{name}");
        }
    }

    #[test]
    fn checks_are_due_at_grace_window_end_and_deadline() {
        let start = Instant::now();
        let mut pace = UploadPace::new(limits(100), start);
        assert_eq!(pace.check_within(start), 2 * SEC, "end of grace");
        pace.record(2 * SEC, 0, start + 2 * SEC).unwrap();
        assert_eq!(pace.check_within(start + 2 * SEC), 3 * SEC, "end of window");
        let late = start + 99 * SEC;
        assert_eq!(pace.check_within(late), SEC, "deadline first");
        let unlimited = UploadPace::new(limits(0), start);
        assert_eq!(unlimited.check_within(start), 100 * SEC);
    }

    proptest! {
        /// A client at or above the minimum rate is never cut off before the deadline, however
        /// its bytes are split into waits; one far below it always is, within grace + window.
        #[test]
        fn steady_clients_pass_and_trickles_fail(
            waits in proptest::collection::vec(1u64..500, 1..200),
            rate in 100u64..10_000,
        ) {
            let steady: Vec<(f64, u64)> = waits
                .iter()
                .map(|ms| (*ms as f64 / 1000.0, rate * ms / 1000 + 1))
                .collect();
            prop_assert_eq!(run(limits(rate), &steady), None);
            let trickle: Vec<(f64, u64)> = waits.iter().map(|ms| (*ms as f64 / 1000.0, 0)).collect();
            let total: u64 = waits.iter().sum();
            let verdict = run(limits(rate), &trickle);
            if total >= 5_500 {
                prop_assert!(matches!(verdict, Some((_, PaceViolation::TooSlow))), "{:?}", verdict);
            }
        }
    }
}
