//! Passive health: consecutive failures open the circuit for a cool-down; after it, exactly one
//! trial request is let through (half-open) and its outcome closes or re-opens the circuit.

use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
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
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            consecutive_failures: 0,
            open_until: None,
            trial_in_flight: false,
            half_open: false,
        }
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
    pub fn on_success(&mut self, was_trial: bool) -> bool {
        self.consecutive_failures = 0;
        if was_trial || self.half_open {
            self.half_open = false;
            self.trial_in_flight = false;
            self.open_until = None;
            return true;
        }
        false
    }

    /// Returns true when this failure opened the circuit.
    pub fn on_failure(&mut self, was_trial: bool, now: Instant) -> bool {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if was_trial || self.half_open || self.consecutive_failures >= self.threshold {
            let reopened = self.open_until.is_none();
            self.open_until = Some(now + self.cooldown);
            self.half_open = false;
            self.trial_in_flight = false;
            return reopened;
        }
        false
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_half_opens_with_one_trial() {
        let t0 = Instant::now();
        let mut c = CircuitBreaker::new(3, Duration::from_secs(10));
        assert!(!c.on_failure(false, t0));
        assert!(!c.on_failure(false, t0));
        assert!(c.on_failure(false, t0));
        assert_eq!(c.state(t0), CircuitState::Open);
        assert!(matches!(c.admit(t0), Admission::Refused { .. }));
        let later = t0 + Duration::from_secs(11);
        assert_eq!(c.admit(later), Admission::Trial);
        assert!(
            matches!(c.admit(later), Admission::Refused { .. }),
            "only one trial"
        );
        assert!(c.on_success(true));
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
}
