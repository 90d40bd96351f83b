//! Recent traffic for the status page: request count, errors and a latency histogram per
//! 5-second slot over the last 15 minutes, in a fixed ring (no allocation per request).

use std::sync::Mutex;

use serde::Serialize;

pub const SLOT_SECONDS: u64 = 5;
const SLOTS: usize = 180;
/// Upper bounds (ms) of the latency buckets; the last one is open-ended.
const BOUNDS_MS: [f64; 14] = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
    f64::INFINITY,
];

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Unix second at which the slot starts; a slot from another lap reads as empty.
    start: u64,
    requests: u64,
    errors: u64,
    latency_sum_ms: f64,
    buckets: [u32; BOUNDS_MS.len()],
}

pub struct Timeline {
    slots: Mutex<Vec<Slot>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            slots: Mutex::new(vec![Slot::default(); SLOTS]),
        }
    }
}

/// One slot as the status page draws it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Slot start, unix seconds.
    pub t: u64,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub avg_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

fn quantile(buckets: &[u32; BOUNDS_MS.len()], n: u64, q: f64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let target = (q * n as f64).max(1.0);
    let mut seen = 0.0;
    let mut lower = 0.0;
    for (i, count) in buckets.iter().enumerate() {
        let c = f64::from(*count);
        let upper = BOUNDS_MS[i];
        if c > 0.0 && seen + c >= target {
            if upper.is_infinite() {
                return Some(lower);
            }
            // Linear interpolation inside the bucket.
            return Some(lower + (upper - lower) * ((target - seen) / c));
        }
        seen += c;
        if upper.is_finite() {
            lower = upper;
        }
    }
    Some(lower)
}

impl Timeline {
    pub fn observe(&self, now_unix: u64, latency_ms: f64, error: bool) {
        let start = now_unix - now_unix % SLOT_SECONDS;
        let index = ((now_unix / SLOT_SECONDS) as usize) % SLOTS;
        let bucket = BOUNDS_MS
            .iter()
            .position(|b| latency_ms <= *b)
            .unwrap_or(BOUNDS_MS.len() - 1);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[index];
        if slot.start != start {
            *slot = Slot {
                start,
                ..Slot::default()
            };
        }
        slot.requests += 1;
        slot.errors += u64::from(error);
        if latency_ms.is_finite() {
            slot.latency_sum_ms += latency_ms;
        }
        slot.buckets[bucket] = slot.buckets[bucket].saturating_add(1);
    }

    /// The last `minutes` (at most 15) up to `now_unix`, oldest first, empty slots included.
    pub fn points(&self, now_unix: u64, minutes: u64) -> Vec<Point> {
        let count = ((minutes.clamp(1, 15) * 60) / SLOT_SECONDS) as usize;
        let current = now_unix - now_unix % SLOT_SECONDS;
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        (0..count)
            .rev()
            .map(|back| {
                let start = current.saturating_sub(back as u64 * SLOT_SECONDS);
                let slot = slots[((start / SLOT_SECONDS) as usize) % SLOTS];
                let live = slot.start == start;
                let (n, errors) = if live {
                    (slot.requests, slot.errors)
                } else {
                    (0, 0)
                };
                // The current slot is still filling: rate over the seconds it has had.
                let span = if start == current {
                    (now_unix - current + 1) as f64
                } else {
                    SLOT_SECONDS as f64
                };
                Point {
                    t: start,
                    requests: n,
                    errors,
                    rps: n as f64 / span,
                    avg_ms: (n > 0).then(|| slot.latency_sum_ms / n as f64),
                    p50_ms: if live {
                        quantile(&slot.buckets, n, 0.5)
                    } else {
                        None
                    },
                    p95_ms: if live {
                        quantile(&slot.buckets, n, 0.95)
                    } else {
                        None
                    },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_and_expire() {
        let t = Timeline::default();
        let now = 1_700_000_000;
        for _ in 0..10 {
            t.observe(now, 20.0, false);
        }
        t.observe(now, 400.0, true);
        let points = t.points(now, 1);
        assert_eq!(points.len(), 12);
        let last = points.last().unwrap();
        assert_eq!(last.requests, 11);
        assert_eq!(last.errors, 1);
        let p50 = last.p50_ms.unwrap();
        assert!((10.0..=25.0).contains(&p50), "{p50}");
        assert!(last.p95_ms.unwrap() > p50);
        // A full lap later the slot reads as empty.
        let later = now + SLOTS as u64 * SLOT_SECONDS;
        assert_eq!(t.points(later, 1).last().unwrap().requests, 0);
    }
}
