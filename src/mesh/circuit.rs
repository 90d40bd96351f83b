//! Passive health: the circuit opens for a cool-down after `threshold` consecutive failures, or
//! when the share of failures over a sliding window passes a ratio (once the window holds enough
//! requests to judge). After the cool-down exactly one trial request is let through (half-open)
//! and its outcome closes or re-opens the circuit.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Tunables of the passive health logic.
#[derive(Debug, Clone, Copy)]
pub struct CircuitSettings {
    pub failure_threshold: u32,
    pub cooldown: Duration,
    /// Failure share over `window` that opens the circuit (0 = consecutive failures only).
    pub error_ratio: f64,
    /// Requests the window must hold before the ratio is judged.
    pub min_requests: u32,
    pub window: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            error_ratio: 0.5,
            min_requests: 20,
            window: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

/// Why the circuit opened (for logs and views).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpenReason {
    ConsecutiveFailures(u32),
    ErrorRatio { failures: u32, requests: u32 },
    FailedTrial,
}

impl std::fmt::Display for OpenReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenReason::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            OpenReason::ErrorRatio { failures, requests } => {
                write!(f, "{failures} of the last {requests} requests failed")
            }
            OpenReason::FailedTrial => f.write_str("the half-open trial failed"),
        }
    }
}

const SLOTS: usize = 10;

/// Successes and failures over the last `SLOTS` time slots.
#[derive(Debug, Clone)]
struct OutcomeWindow {
    origin: Instant,
    slot: Duration,
    /// (slot number, successes, failures)
    slots: [(u64, u32, u32); SLOTS],
}

impl OutcomeWindow {
    fn new(window: Duration, now: Instant) -> OutcomeWindow {
        OutcomeWindow {
            origin: now,
            slot: (window / SLOTS as u32).max(Duration::from_millis(10)),
            slots: [(u64::MAX, 0, 0); SLOTS],
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        (since / self.slot.as_nanos().max(1)).min(u64::MAX as u128 - 1) as u64
    }

    fn record(&mut self, failed: bool, now: Instant) {
        let epoch = self.epoch(now);
        let slot = &mut self.slots[(epoch % SLOTS as u64) as usize];
        if slot.0 != epoch {
            *slot = (epoch, 0, 0);
        }
        if failed {
            slot.2 = slot.2.saturating_add(1);
        } else {
            slot.1 = slot.1.saturating_add(1);
        }
    }

    /// (requests, failures) in the window ending now.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let epoch = self.epoch(now);
        self.slots
            .iter()
            .filter(|(e, _, _)| *e != u64::MAX && *e <= epoch && epoch - *e < SLOTS as u64)
            .fold((0u32, 0u32), |(n, f), (_, ok, fail)| {
                (
                    n.saturating_add(*ok).saturating_add(*fail),
                    f.saturating_add(*fail),
                )
            })
    }

    fn clear(&mut self) {
        self.slots = [(u64::MAX, 0, 0); SLOTS];
    }
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    /// Failure share that opens the circuit (0 < ratio <= 1); `None` = consecutive only.
    error_ratio: Option<f64>,
    /// Requests the window must hold before the ratio is judged.
    min_requests: u32,
    window: OutcomeWindow,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
    half_open: bool,
}

/// What the circuit says about letting one more request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Allowed as the single half-open trial.
    Trial,
    Refused {
        retry_after: Duration,
    },
}

impl CircuitBreaker {
    /// Consecutive failures only.
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            error_ratio: None,
            min_requests: u32::MAX,
            window: OutcomeWindow::new(Duration::from_secs(30), Instant::now()),
            consecutive_failures: 0,
            open_until: None,
            trial_in_flight: false,
            half_open: false,
        }
    }

    pub fn from_settings(s: &CircuitSettings) -> CircuitBreaker {
        let mut c = CircuitBreaker::new(s.failure_threshold, s.cooldown);
        if s.error_ratio > 0.0 && s.error_ratio <= 1.0 {
            c = c.with_error_ratio(s.error_ratio, s.min_requests, s.window);
        }
        c
    }

    /// Also open when `ratio` of at least `min_requests` requests in `window` failed.
    pub fn with_error_ratio(
        mut self,
        ratio: f64,
        min_requests: u32,
        window: Duration,
    ) -> CircuitBreaker {
        self.error_ratio = Some(ratio);
        self.min_requests = min_requests.max(1);
        self.window = OutcomeWindow::new(window, Instant::now());
        self
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        match self.open_until {
            Some(until) if now < until => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
            None if self.half_open => CircuitState::HalfOpen,
            None => CircuitState::Closed,
        }
    }

    /// Check without changing anything (for routing decisions and views).
    pub fn would_admit(&self, now: Instant) -> Admission {
        if let Some(until) = self.open_until {
            if now < until {
                return Admission::Refused {
                    retry_after: until - now,
                };
            }
        }
        if self.open_until.is_none() && !self.half_open {
            Admission::Allowed
        } else if self.trial_in_flight {
            Admission::Refused {
                retry_after: Duration::from_secs(1),
            }
        } else {
            Admission::Trial
        }
    }

    /// Admit a request, reserving the trial slot when half-open.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let admission = self.would_admit(now);
        if admission == Admission::Trial {
            self.open_until = None;
            self.half_open = true;
            self.trial_in_flight = true;
        }
        admission
    }

    /// Returns true when this success closed a half-open circuit.
    pub fn on_success(&mut self, was_trial: bool, now: Instant) -> bool {
        self.consecutive_failures = 0;
        if was_trial || self.half_open {
            self.half_open = false;
            self.trial_in_flight = false;
            self.open_until = None;
            // A fresh start: failures from before the outage must not trip it again.
            self.window.clear();
            return true;
        }
        self.window.record(false, now);
        false
    }

    /// Returns why the circuit opened, when this failure opened it.
    pub fn on_failure(&mut self, was_trial: bool, now: Instant) -> Option<OpenReason> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.window.record(true, now);
        let reason = if was_trial || self.half_open {
            Some(OpenReason::FailedTrial)
        } else if self.consecutive_failures >= self.threshold {
            Some(OpenReason::ConsecutiveFailures(self.consecutive_failures))
        } else {
            self.ratio_tripped(now)
        };
        let reason = reason?;
        let reopened = self.open_until.is_none();
        self.open_until = Some(now + self.cooldown);
        self.half_open = false;
        self.trial_in_flight = false;
        self.window.clear();
        reopened.then_some(reason)
    }

    fn ratio_tripped(&self, now: Instant) -> Option<OpenReason> {
        let ratio = self.error_ratio?;
        let (requests, failures) = self.window.totals(now);
        (requests >= self.min_requests && f64::from(failures) >= ratio * f64::from(requests))
            .then_some(OpenReason::ErrorRatio { failures, requests })
    }

    /// A trial that ended without a verdict (client went away) frees the slot for another.
    pub fn on_neutral(&mut self, was_trial: bool) {
        if was_trial {
            self.trial_in_flight = false;
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// (requests, failures) in the current window, for views.
    pub fn window_totals(&self, now: Instant) -> (u32, u32) {
        self.window.totals(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_with_one_trial() {
        let t0 = Instant::now();
        let mut c = CircuitBreaker::new(3, Duration::from_secs(10));
        assert!(c.on_failure(false, t0).is_none());
        assert!(c.on_failure(false, t0).is_none());
        assert_eq!(
            c.on_failure(false, t0),
            Some(OpenReason::ConsecutiveFailures(3))
        );
        assert_eq!(c.state(t0), CircuitState::Open);
        assert!(matches!(c.admit(t0), Admission::Refused { .. }));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(c.admit(later), Admission::Trial);
        assert!(
            matches!(c.admit(later), Admission::Refused { .. }),
            "only one trial"
        );
        assert!(c.on_success(true, later));
        assert_eq!(c.state(later), CircuitState::Closed);
        assert_eq!(c.admit(later), Admission::Allowed);
    }

    #[test]
    fn failed_trial_reopens() {
        let t0 = Instant::now();
        let mut c = CircuitBreaker::new(1, Duration::from_secs(5));
        c.on_failure(false, t0);
        let later = t0 + Duration::from_secs(6);
        assert_eq!(c.admit(later), Admission::Trial);
        c.on_failure(true, later);
        assert_eq!(c.state(later), CircuitState::Open);
    }

    #[test]
    fn abandoned_trial_frees_the_slot() {
        let t0 = Instant::now();
        let mut c = CircuitBreaker::new(1, Duration::from_secs(1));
        c.on_failure(false, t0);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(c.admit(later), Admission::Trial);
        c.on_neutral(true);
        assert_eq!(c.admit(later), Admission::Trial);
    }

    #[test]
    fn error_ratio_over_the_window_opens_without_consecutive_failures() {
        let t0 = Instant::now();
        let mut c = CircuitBreaker::new(100, Duration::from_secs(5)).with_error_ratio(
            0.5,
            10,
            Duration::from_secs(10),
        );
        // Alternating outcomes never reach 100 in a row, but half of them fail.
        let mut opened = None;
        for i in 0..20 {
            if i % 2 == 0 {
                c.on_success(false, t0);
            } else if let Some(r) = c.on_failure(false, t0) {
                opened = Some((i, r));
                break;
            }
        }
        let (i, reason) = opened.expect("ratio trigger");
        assert_eq!(i, 9, "judged once 10 requests are in the window");
        assert!(matches!(
            reason,
            OpenReason::ErrorRatio {
                failures: 5,
                requests: 10
            }
        ));
        assert_eq!(c.state(t0), CircuitState::Open);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let t0 = Instant::now();
        let mut c = CircuitBreaker::new(100, Duration::from_secs(5)).with_error_ratio(
            0.5,
            4,
            Duration::from_secs(10),
        );
        for _ in 0..3 {
            assert!(c.on_failure(false, t0).is_none());
        }
        c.on_success(false, t0);
        // Eleven seconds later the three failures have aged out: one more is not enough.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(c.window_totals(later), (0, 0));
        assert!(c.on_failure(false, later).is_none());
    }

    #[test]
    fn low_ratio_does_not_open() {
        let t0 = Instant::now();
        let mut c = CircuitBreaker::new(100, Duration::from_secs(5)).with_error_ratio(
            0.5,
            10,
            Duration::from_secs(10),
        );
        for i in 0..100 {
            if i % 4 == 0 {
                assert!(c.on_failure(false, t0).is_none());
            } else {
                c.on_success(false, t0);
            }
        }
        assert_eq!(c.state(t0), CircuitState::Closed);
    }
}
