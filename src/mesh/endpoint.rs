//! The state of one backend endpoint, shared (`Arc`) by the route table, its
//! [`super::BackendActor`] and every lease on it. Writers, all without an actor message:
//! - the BackendActor's probes are the only writer of [`Health`];
//! - the Router, on the handler's thread, takes an in-flight slot and rpm/tpm tokens in
//!   [`Endpoint::try_acquire`], clears an expired 429 pause, and lets an open circuit's trial
//!   request through (open → half-open);
//! - the lease's `Drop`, on the thread that finished the request, gives the slot back and folds
//!   the outcome into the circuit (its success/failure verdicts), the tpm bucket, the 429 pause
//!   and the counters ([`Endpoint::fold_outcome`]).
//!
//! Taking capacity here instead of asking the actor saves a message and a thread wake-up per
//! request; the circuit, buckets and pause share one small mutex so they change together.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bucket::TokenBucket;
use super::circuit::{Admission, CircuitBreaker, CircuitSettings, CircuitState};
use super::engine_load::{EngineLoadSlot, EngineLoadView};
use super::engine_slots::EngineSlots;
use super::outcome::{Finished, Outcome};
use crate::caller::allowance_name;
use crate::config::{Limits, Outbound, Secret};
use crate::engines::{AuthStyle, BackendKind, BaseUrl};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No probe has succeeded yet (the engine may be loading its weights).
    Starting,
    Ready,
    /// A recent probe failed; still routable.
    Degraded,
    Down,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            0 => Health::Starting,
            1 => Health::Ready,
            2 => Health::Degraded,
            _ => Health::Down,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            Health::Starting => 0,
            Health::Ready => 1,
            Health::Degraded => 2,
            Health::Down => 3,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Ready => "ready",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }
}

/// Why an endpoint did not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Starting,
    Down,
    CircuitOpen { retry_after: Duration },
    RateLimited { retry_after: Duration },
    Saturated,
}

/// Admission controls that must change together: circuit, buckets, upstream back-off.
#[derive(Debug)]
pub(super) struct Gate {
    pub circuit: CircuitBreaker,
    pub rpm: Option<TokenBucket>,
    pub tpm: Option<TokenBucket>,
    /// Set from an upstream 429/503 `Retry-After`.
    pub paused_until: Option<Instant>,
}

pub struct Endpoint {
    /// Stable label for logs, metrics and admin views: `kind@host:port`, never a secret.
    pub name: String,
    pub kind: BackendKind,
    pub base: BaseUrl,
    pub auth: Option<(AuthStyle, Secret)>,
    /// `None` = not actively probed (passive health only).
    pub health_path: Option<String>,
    /// Where the engine's own load is read on the probe timer; `None` = not read.
    pub metrics_path: Option<String>,
    pub limits: Limits,
    /// Its requests/minute and tokens/minute in the shared ledger (`endpoint:<name>:rpm`, …),
    /// named once here: every attempt on a limited endpoint looks them up.
    pub rpm_allowance: Arc<str>,
    pub tpm_allowance: Arc<str>,
    /// Trust, client certificate and proxy of every call to it (traffic and probes).
    pub outbound: Outbound,
    /// The last failure of a call or probe worth showing (a TLS refusal names its reason).
    last_error: Mutex<Option<LastError>>,
    health: AtomicU8,
    /// Not probed: the endpoint is outside this machine and every route on it has weight 0, so
    /// probing would only send traffic (to the internet, often) for a route nobody uses. Remote
    /// endpoints start dormant; the route table wakes the ones it gives weight.
    dormant: AtomicBool,
    in_flight: AtomicU64,
    pub(super) gate: Mutex<Gate>,
    pub(super) counters: Counters,
    /// What the engine itself last reported about its load (written by the BackendActor's
    /// probes, read by the routing policies); empty for kinds that report nothing.
    pub engine_load: EngineLoadSlot,
    /// The engine's slots as modelled from the requests sent to it (engines that report a
    /// slot count: llama.cpp), for `prefix_cache`; sized by the BackendActor's readings.
    pub engine_slots: EngineSlots,
}

#[derive(Default)]
pub(super) struct Counters {
    pub requests: AtomicU64,
    pub failures: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Exponentially weighted mean latency of finished requests, in microseconds.
    pub latency_ewma_us: AtomicU64,
}

/// Capacity taken from an endpoint; carried by the lease.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    pub trial: bool,
}

impl Endpoint {
    pub fn new(
        name: String,
        kind: BackendKind,
        base: BaseUrl,
        auth: Option<(AuthStyle, Secret)>,
        health_path: Option<String>,
        limits: Limits,
        circuit: CircuitSettings,
    ) -> Endpoint {
        let now = Instant::now();
        let dormant = !base.is_on_this_machine();
        let initial = if health_path.is_some() {
            Health::Starting
        } else {
            Health::Ready
        };
        Endpoint {
            rpm_allowance: allowance_name("endpoint", &name, "rpm").into(),
            tpm_allowance: allowance_name("endpoint", &name, "tpm").into(),
            name,
            kind,
            base,
            auth,
            health_path,
            metrics_path: None,
            limits,
            outbound: Outbound::default(),
            last_error: Mutex::new(None),
            health: AtomicU8::new(initial.to_u8()),
            dormant: AtomicBool::new(dormant),
            in_flight: AtomicU64::new(0),
            gate: Mutex::new(Gate {
                circuit: CircuitBreaker::from_settings(&circuit),
                rpm: limits.rpm.map(|n| TokenBucket::per_minute(n, now)),
                tpm: limits.tpm.map(|n| TokenBucket::per_minute(n, now)),
                paused_until: None,
            }),
            counters: Counters::default(),
            engine_load: EngineLoadSlot::default(),
            engine_slots: EngineSlots::default(),
        }
    }

    /// Read the engine's load at `path` on the probe timer (the kind's default or the route's
    /// `metrics_path`).
    pub fn with_metrics_path(mut self, path: Option<String>) -> Endpoint {
        self.metrics_path = path;
        self
    }

    /// Reach the endpoint with `outbound` (its route's CA, client certificate and proxy).
    pub fn with_outbound(mut self, outbound: Outbound) -> Endpoint {
        self.outbound = outbound;
        self
    }

    /// Keep `message` as the endpoint's last error (admin views). It must hold nothing secret.
    pub fn note_error(&self, message: String) {
        let at_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(LastError { message, at_unix_s });
    }

    /// The endpoint's API key in its auth style, for [`crate::engines::attach_credentials`].
    pub fn credentials(&self) -> Option<(AuthStyle, &str)> {
        self.auth
            .as_ref()
            .map(|(style, key)| (*style, key.expose()))
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    pub(super) fn set_health(&self, h: Health) {
        self.health.store(h.to_u8(), Ordering::Release);
    }

    pub fn is_dormant(&self) -> bool {
        self.dormant.load(Ordering::Acquire)
    }

    /// Set by the route table on every build; returns whether the endpoint just woke up (so its
    /// actor should probe now rather than at its next tick).
    pub(super) fn set_dormant(&self, dormant: bool) -> bool {
        let was = self.dormant.swap(dormant, Ordering::AcqRel);
        was && !dormant
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        // A panic while holding the lock cannot leave the gate half-updated in a way that
        // matters more than refusing all traffic would, so recover the guard.
        self.gate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take capacity for one request estimated at `est_tokens`, or say why not.
    pub fn try_acquire(&self, est_tokens: u64, now: Instant) -> Result<Permit, Refusal> {
        match self.health() {
            Health::Starting => return Err(Refusal::Starting),
            Health::Down => return Err(Refusal::Down),
            Health::Ready | Health::Degraded => {}
        }
        // In-flight first: it is lock-free and the common refusal under load.
        let cap = self.limits.max_in_flight.unwrap_or(u64::MAX);
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(Refusal::Saturated);
        }
        let verdict = self.admit_gate(est_tokens, now);
        if verdict.is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        verdict
    }

    fn admit_gate(&self, est_tokens: u64, now: Instant) -> Result<Permit, Refusal> {
        let mut gate = self.gate();
        if let Some(until) = gate.paused_until {
            if now < until {
                return Err(Refusal::RateLimited {
                    retry_after: until - now,
                });
            }
            gate.paused_until = None;
        }
        if let Admission::Refused { retry_after } = gate.circuit.would_admit(now) {
            return Err(Refusal::CircuitOpen { retry_after });
        }
        let rpm_wait = gate
            .rpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(1.0, now));
        let tpm_wait = gate
            .tpm
            .as_mut()
            .map_or(Duration::ZERO, |b| b.wait_for(est_tokens as f64, now));
        let wait = rpm_wait.max(tpm_wait);
        if !wait.is_zero() {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::RateLimited { retry_after: wait });
        }
        if let Some(b) = gate.rpm.as_mut() {
            b.take(1.0);
        }
        if let Some(b) = gate.tpm.as_mut() {
            b.take(est_tokens as f64);
        }
        let trial = gate.circuit.admit(now) == Admission::Trial;
        if trial {
            tracing::info!(endpoint = %self.name, "circuit half-open: letting one trial request through");
        }
        Ok(Permit { trial })
    }

    /// Fold a finished request's outcome into the circuit, the tokens/minute bucket and the
    /// counters. Called by the lease's `Drop`, on the thread that finished the request.
    pub(super) fn fold_outcome(&self, msg: Finished) {
        let now = Instant::now();
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let sample = msg.latency.as_micros().min(u64::MAX as u128) as u64;
        let old = self.counters.latency_ewma_us.load(Ordering::Relaxed);
        let ewma = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.counters.latency_ewma_us.store(ewma, Ordering::Relaxed);

        let mut gate = self.gate();
        if let (Some(bucket), Some(actual)) = (gate.tpm.as_mut(), msg.actual_tokens) {
            bucket.settle(msg.est_tokens as f64, actual as f64, now);
        }
        match msg.outcome {
            Outcome::Success | Outcome::ClientError => {
                if gate.circuit.on_success(msg.trial, now) {
                    tracing::info!(endpoint = %self.name, "circuit closed after a successful trial");
                }
            }
            Outcome::Failure => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                if let Some(reason) = gate.circuit.on_failure(msg.trial, now) {
                    tracing::warn!(endpoint = %self.name, %reason, "circuit opened");
                }
            }
            Outcome::RateLimited { retry_after } => {
                let pause = retry_after.unwrap_or(Duration::from_secs(1));
                gate.paused_until = Some(now + pause.min(Duration::from_secs(300)));
                gate.circuit.on_neutral(msg.trial);
            }
            // Neither says anything about the backend; a trial that ended so frees its slot.
            Outcome::Canceled | Outcome::LocalFailure => gate.circuit.on_neutral(msg.trial),
        }
    }

    /// Give back the in-flight slot. Called exactly once per permit, by the lease's `Drop`.
    pub(super) fn release_slot(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// A cheap view for routing decisions and status pages.
    pub fn snapshot(&self) -> EndpointSnapshot {
        let now = Instant::now();
        let mut gate = self.gate();
        let circuit = gate.circuit.state(now);
        let consecutive_failures = gate.circuit.consecutive_failures();
        let (window_requests, window_failures) = gate.circuit.window_totals(now);
        let rpm = gate.rpm.as_mut().map(|b| BucketLevel {
            available: b.level(now).max(0.0),
            capacity: b.capacity(),
        });
        let tpm = gate.tpm.as_mut().map(|b| BucketLevel {
            available: b.level(now).max(0.0),
            capacity: b.capacity(),
        });
        let paused_for_ms = gate
            .paused_until
            .map(|u| u.saturating_duration_since(now).as_millis() as u64)
            .filter(|ms| *ms > 0);
        drop(gate);
        EndpointSnapshot {
            name: self.name.clone(),
            kind: self.kind.as_str(),
            url: self.base.api_base().to_string(),
            health: self.health(),
            circuit,
            consecutive_failures,
            window_requests,
            window_failures,
            in_flight: self.in_flight(),
            max_in_flight: self.limits.max_in_flight,
            rpm,
            tpm,
            paused_for_ms,
            requests_total: self.counters.requests.load(Ordering::Relaxed),
            failures_total: self.counters.failures.load(Ordering::Relaxed),
            rate_limited_total: self.counters.rate_limited.load(Ordering::Relaxed),
            latency_ewma_ms: self.counters.latency_ewma_us.load(Ordering::Relaxed) as f64 / 1000.0,
            engine_load: self.engine_load.view(now),
            prefill_ms_per_token: self.engine_slots.prefill_ms_per_token(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// A failure kept for admin views.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub message: String,
    /// When, in seconds since the Unix epoch.
    pub at_unix_s: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BucketLevel {
    pub available: f64,
    pub capacity: f64,
}

/// What admin views and `/health` show of an endpoint. Holds no credentials.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSnapshot {
    pub name: String,
    pub kind: &'static str,
    pub url: String,
    pub health: Health,
    pub circuit: CircuitState,
    pub consecutive_failures: u32,
    /// Requests and failures in the circuit's error-ratio window.
    pub window_requests: u32,
    pub window_failures: u32,
    pub in_flight: u64,
    pub max_in_flight: Option<u64>,
    pub rpm: Option<BucketLevel>,
    pub tpm: Option<BucketLevel>,
    pub paused_for_ms: Option<u64>,
    pub requests_total: u64,
    pub failures_total: u64,
    pub rate_limited_total: u64,
    pub latency_ewma_ms: f64,
    /// What the engine last reported of its own load, while that reading is fresh.
    pub engine_load: Option<EngineLoadView>,
    /// Milliseconds per uncached prompt token, learned from the engine's `timings.prompt_ms`
    /// (`slot_wait_ms: auto`); absent until learned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_ms_per_token: Option<f64>,
    /// The last failed call or probe worth showing (e.g. a TLS refusal and its reason).
    pub last_error: Option<LastError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(limits: Limits) -> Endpoint {
        let e = Endpoint::new(
            "t".into(),
            BackendKind::Vllm,
            BaseUrl::parse("http://127.0.0.1:1").unwrap(),
            None,
            Some("/health".into()),
            limits,
            CircuitSettings::default(),
        );
        e.set_health(Health::Ready);
        e
    }

    #[test]
    fn starting_endpoints_refuse() {
        let e = endpoint(Limits::default());
        e.set_health(Health::Starting);
        assert_eq!(
            e.try_acquire(1, Instant::now()).unwrap_err(),
            Refusal::Starting
        );
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn in_flight_cap_is_enforced_and_released() {
        let e = endpoint(Limits {
            max_in_flight: Some(2),
            ..Limits::default()
        });
        let now = Instant::now();
        e.try_acquire(1, now).unwrap();
        e.try_acquire(1, now).unwrap();
        assert_eq!(e.try_acquire(1, now).unwrap_err(), Refusal::Saturated);
        e.release_slot();
        assert!(e.try_acquire(1, now).is_ok());
        assert_eq!(e.in_flight(), 2);
    }

    fn finished(outcome: Outcome, trial: bool) -> Finished {
        Finished {
            outcome,
            latency: Duration::from_millis(1),
            est_tokens: 1,
            actual_tokens: None,
            trial,
        }
    }

    /// The router's own resource failures never count against the backend: a threshold of one
    /// would open the circuit on the first real failure, but not on any number of these.
    #[test]
    fn local_failures_never_open_the_circuit() {
        let e = Endpoint::new(
            "t".into(),
            BackendKind::Vllm,
            BaseUrl::parse("http://127.0.0.1:1").unwrap(),
            None,
            None,
            Limits::default(),
            CircuitSettings {
                failure_threshold: 1,
                error_ratio: 0.0,
                ..CircuitSettings::default()
            },
        );
        e.set_health(Health::Ready);
        for _ in 0..100 {
            e.fold_outcome(finished(Outcome::LocalFailure, false));
        }
        let view = e.snapshot();
        assert_eq!(view.circuit, CircuitState::Closed);
        assert_eq!(view.failures_total, 0);
        assert_eq!(view.consecutive_failures, 0);
        e.fold_outcome(finished(Outcome::Failure, false));
        assert_eq!(
            e.snapshot().circuit,
            CircuitState::Open,
            "a real failure still counts"
        );
    }

    #[test]
    fn rpm_refusal_gives_the_slot_back() {
        let e = endpoint(Limits {
            rpm: Some(1),
            ..Limits::default()
        });
        let now = Instant::now();
        e.try_acquire(1, now).unwrap();
        e.release_slot();
        assert!(matches!(
            e.try_acquire(1, now).unwrap_err(),
            Refusal::RateLimited { .. }
        ));
        assert_eq!(e.in_flight(), 0);
    }
}
