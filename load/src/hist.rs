//! Latency histograms (HDR, microseconds, 3 significant digits) and their summaries.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest value kept exactly: one hour in µs; larger values saturate to it.
const HIGHEST: u64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub struct Hist {
    h: Histogram<u64>,
}

impl Default for Hist {
    fn default() -> Self {
        Hist::new()
    }
}

impl Hist {
    pub fn new() -> Hist {
        // The bounds are constants that hdrhistogram accepts; a failure here is a programming
        // error, caught by the unit tests.
        let h = Histogram::new_with_bounds(1, HIGHEST, 3).expect("valid histogram bounds");
        Hist { h }
    }

    pub fn record(&mut self, d: Duration) {
        self.record_value(d.as_micros().min(u128::from(HIGHEST)) as u64);
    }

    /// Records a raw value (µs, or any unit the caller keeps consistent). Zero counts as 1 so
    /// that sub-microsecond samples are not lost.
    pub fn record_value(&mut self, v: u64) {
        self.h.saturating_record(v.clamp(1, HIGHEST));
    }

    pub fn merge(&mut self, other: &Hist) {
        // Same bounds on both sides, so addition cannot fail; saturate if it ever would.
        if self.h.add(&other.h).is_err() {
            for v in other.h.iter_recorded() {
                self.h
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.h.len()
    }

    pub fn quantile(&self, q: f64) -> u64 {
        if self.h.is_empty() {
            0
        } else {
            self.h.value_at_quantile(q)
        }
    }

    pub fn summary(&self) -> Summary {
        if self.h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.h.len(),
            min: self.h.min(),
            mean: self.h.mean(),
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: self.h.max(),
        }
    }

    /// Counts in log-spaced buckets (`per_decade` per power of ten) from the smallest to the
    /// largest recorded value: `(upper bound, count)`; what a chart needs, far smaller than HDR.
    pub fn buckets(&self, per_decade: u32) -> Vec<(u64, u64)> {
        if self.h.is_empty() {
            return Vec::new();
        }
        let step = 10f64.powf(1.0 / f64::from(per_decade.max(1)));
        let mut bounds = Vec::new();
        let mut b = 1.0f64;
        let max = self.h.max() as f64;
        let min = self.h.min() as f64;
        while b < min {
            b *= step;
        }
        loop {
            bounds.push(b.ceil() as u64);
            if b >= max {
                break;
            }
            b *= step;
        }
        let mut out: Vec<(u64, u64)> = bounds.iter().map(|&ub| (ub, 0)).collect();
        for v in self.h.iter_recorded() {
            let value = v.value_iterated_to();
            let idx = bounds
                .partition_point(|&ub| ub < value)
                .min(bounds.len() - 1);
            out[idx].1 += v.count_at_value();
        }
        out
    }
}

/// Percentiles in the histogram's unit (µs for latencies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// "812µs", "3.40ms", "2.10s" for a value in µs.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = Hist::new();
        for v in 1..=10_000u64 {
            h.record_value(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min, 1);
        // 3 significant digits: within 0.1 % of the exact rank value.
        for (got, exact) in [(s.p50, 5_000u64), (s.p90, 9_000), (s.p99, 9_900)] {
            let err = (got as f64 - exact as f64).abs() / exact as f64;
            assert!(err <= 0.001, "{got} vs {exact}");
        }
        assert!((s.max as f64 - 10_000.0).abs() / 10_000.0 <= 0.001);
        assert!((s.mean - 5_000.5).abs() < 10.0);
    }

    #[test]
    fn merge_adds_counts_and_keeps_tails() {
        let mut a = Hist::new();
        let mut b = Hist::new();
        for _ in 0..99 {
            a.record(Duration::from_micros(100));
        }
        b.record(Duration::from_secs(2));
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert_eq!(a.quantile(0.5), 100);
        assert!(a.summary().max >= 1_999_000);
        assert!(a.quantile(0.995) >= 1_999_000);
    }

    #[test]
    fn zero_and_huge_values_are_kept() {
        let mut h = Hist::new();
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(10 * 3600));
        assert_eq!(h.count(), 2);
        assert_eq!(h.summary().min, 1);
        assert!(h.summary().max >= HIGHEST / 2);
        assert_eq!(Hist::new().summary(), Summary::default());
    }

    #[test]
    fn buckets_cover_every_sample() {
        let mut h = Hist::new();
        for v in [5u64, 50, 500, 5_000, 50_000, 50_000] {
            h.record_value(v);
        }
        let b = h.buckets(5);
        assert_eq!(b.iter().map(|(_, c)| c).sum::<u64>(), 6);
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(b.last().is_some_and(|(ub, _)| *ub >= 50_000));
        assert!(Hist::new().buckets(5).is_empty());
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_us(812), "812µs");
        assert_eq!(fmt_us(3_400), "3.40ms");
        assert_eq!(fmt_us(2_100_000), "2.10s");
    }
}
