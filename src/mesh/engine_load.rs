//! What an engine says about its own load (running and queued requests, KV-cache use), read by
//! the BackendActor on its probe timer and consulted by the routing policies. A reading is only
//! trusted while it is fresh: an engine that stopped reporting must not keep steering traffic
//! with a number from minutes ago.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One reading of an engine's own load counters.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct EngineLoad {
    /// Requests the engine is computing now (vLLM `num_requests_running`, llama.cpp
    /// `requests_processing`).
    pub running: u64,
    /// Requests queued inside the engine, waiting for a slot (vLLM `num_requests_waiting`,
    /// llama.cpp `requests_deferred`).
    pub waiting: u64,
    /// Fraction of the KV cache in use, 0.0–1.0, where the engine reports it.
    pub kv_cache_usage: Option<f64>,
    /// How many requests the engine computes at once (llama.cpp's slot count), where it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<u64>,
}

impl EngineLoad {
    /// How many requests the engine computes at once, as far as this reading tells: its slot
    /// count when it reports one; otherwise, when it is queueing, what it is running (an engine
    /// with a queue runs as many as it can). `None` when the reading does not say.
    pub fn capacity(&self) -> Option<u64> {
        self.slots
            .or_else(|| (self.waiting > 0).then_some(self.running.max(1)))
    }
}

/// A fresh reading as the admin views show it: the counts and how old they are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineLoadView {
    #[serde(flatten)]
    pub load: EngineLoad,
    pub age_ms: u64,
}

/// The latest reading and how long it stays valid.
#[derive(Debug, Default)]
pub struct EngineLoadSlot {
    latest: Mutex<Option<(EngineLoad, Instant, Duration)>>,
}

impl EngineLoadSlot {
    /// Store a reading taken at `at`, trusted for `valid_for` (two probe intervals).
    pub fn record(&self, load: EngineLoad, at: Instant, valid_for: Duration) {
        *self.lock() = Some((load, at, valid_for));
    }

    /// Forget the reading (the engine stopped exposing its metrics).
    pub fn clear(&self) {
        *self.lock() = None;
    }

    /// The reading, when one exists and is not older than its validity at `now`.
    pub fn fresh(&self, now: Instant) -> Option<EngineLoad> {
        self.fresh_with_age(now).map(|(load, _)| load)
    }

    /// The fresh reading and how old it is (for the admin views).
    pub fn fresh_with_age(&self, now: Instant) -> Option<(EngineLoad, Duration)> {
        let (load, at, valid_for) = (*self.lock())?;
        let age = now.saturating_duration_since(at);
        (age <= valid_for).then_some((load, age))
    }

    /// The fresh reading for the views; `None` once it is too old to be trusted.
    pub fn view(&self, now: Instant) -> Option<EngineLoadView> {
        self.fresh_with_age(now).map(|(load, age)| EngineLoadView {
            load,
            age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(EngineLoad, Instant, Duration)>> {
        // The slot holds plain data, so a poisoned lock still holds a whole value.
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_expires_after_its_validity() {
        let slot = EngineLoadSlot::default();
        let t0 = Instant::now();
        assert_eq!(slot.fresh(t0), None);
        let load = EngineLoad {
            running: 2,
            waiting: 3,
            kv_cache_usage: Some(0.5),
            slots: None,
        };
        slot.record(load, t0, Duration::from_secs(10));
        assert_eq!(slot.fresh(t0 + Duration::from_secs(10)), Some(load));
        assert_eq!(
            slot.fresh_with_age(t0 + Duration::from_secs(4)),
            Some((load, Duration::from_secs(4)))
        );
        assert_eq!(slot.fresh(t0 + Duration::from_secs(11)), None);
        slot.record(load, t0 + Duration::from_secs(11), Duration::from_secs(10));
        assert_eq!(slot.fresh(t0 + Duration::from_secs(12)), Some(load));
        slot.clear();
        assert_eq!(slot.fresh(t0 + Duration::from_secs(12)), None);
    }

    #[test]
    fn capacity_is_the_slot_count_else_what_a_queueing_engine_runs() {
        let reading = |running, waiting, slots| EngineLoad {
            running,
            waiting,
            kv_cache_usage: None,
            slots,
        };
        let cases = [
            (reading(0, 0, Some(2)), Some(2)),
            (reading(2, 5, Some(4)), Some(4)),
            (reading(3, 1, None), Some(3)),
            // A queue with nothing running (a reading taken between two batches) still
            // means "full": at least one.
            (reading(0, 2, None), Some(1)),
            (reading(3, 0, None), None),
            (reading(0, 0, None), None),
        ];
        for (load, want) in cases {
            assert_eq!(load.capacity(), want, "{load:?}");
        }
    }
}
