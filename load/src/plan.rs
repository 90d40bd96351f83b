//! A validated, bounded run: how requests arrive (open-loop rate or closed-loop concurrency),
//! when it stops, and the schedule arithmetic for open-loop arrivals.

use std::time::Duration;

use anyhow::bail;

use crate::spec::ScenarioSpec;

/// Hard ceilings: every run ends, whatever the flags say.
pub const MAX_DURATION: Duration = Duration::from_secs(6 * 3600);
pub const MAX_REQUESTS: u64 = 100_000_000;
pub const MAX_RATE: f64 = 1_000_000.0;
pub const MAX_CONCURRENCY: u32 = 50_000;
pub const MAX_THREADS: usize = 64;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
pub const MAX_UPLOAD: u64 = 1 << 30;
/// Used when neither a duration nor a request count is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Requests are scheduled at a fixed rate whatever the answers do; latency counts from the
    /// scheduled send time, so a stalled server cannot hide its stall (coordinated omission).
    Open { rate: f64, max_in_flight: u32 },
    /// `concurrency` loops, each sending its next request when the previous one ends.
    Closed { concurrency: u32 },
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// The first target (shown in reports).
    pub target: String,
    /// Every target, used in turn (one unless several were given).
    pub targets: Vec<String>,
    pub mode: Mode,
    /// Stop issuing after this long (always set; a count-only run gets the hard cap).
    pub duration: Duration,
    pub requests: Option<u64>,
    pub timeout: Duration,
    /// How long in-flight requests may finish after issuing stops.
    pub drain: Duration,
    pub threads: usize,
    pub scenarios: Vec<ScenarioSpec>,
    pub label: Option<String>,
    pub seed: u64,
    /// Sent as `Authorization: Bearer <key>` on every request (a router with client keys).
    pub api_key: Option<String>,
    /// Extra `(name, value)` headers on every request (`--header`).
    pub headers: Vec<(String, String)>,
    /// Closed loop: the connections' first requests are spread evenly over this long instead
    /// of all sent at once (`--spread`). Equal-length exchanges started together stay in
    /// step for the whole run, so each wave of them arrives as one burst.
    pub spread: Duration,
}

impl Plan {
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.mode {
            Mode::Open {
                rate,
                max_in_flight,
            } => {
                if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) {
                    bail!("--rate must be in (0, {MAX_RATE}]");
                }
                if max_in_flight == 0 || max_in_flight > MAX_CONCURRENCY {
                    bail!("--max-in-flight must be in 1..={MAX_CONCURRENCY}");
                }
            }
            Mode::Closed { concurrency } => {
                if concurrency == 0 || concurrency > MAX_CONCURRENCY {
                    bail!("--concurrency must be in 1..={MAX_CONCURRENCY}");
                }
            }
        }
        if !self.spread.is_zero() {
            if matches!(self.mode, Mode::Open { .. }) {
                bail!("--spread applies to a closed loop (--concurrency), not to --rate");
            }
            if self.spread >= self.duration {
                bail!("--spread must be shorter than the duration");
            }
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            bail!("duration must be in (0, {} s]", MAX_DURATION.as_secs());
        }
        if let Some(n) = self.requests {
            if n == 0 || n > MAX_REQUESTS {
                bail!("--requests must be in 1..={MAX_REQUESTS}");
            }
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            bail!("--timeout must be in (0, {} s]", MAX_TIMEOUT.as_secs());
        }
        if self.drain > MAX_TIMEOUT {
            bail!("--drain must be at most {} s", MAX_TIMEOUT.as_secs());
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            bail!("--threads must be in 1..={MAX_THREADS}");
        }
        if self.targets.is_empty() || self.targets.len() > 100_000 {
            bail!("between 1 and 100000 targets");
        }
        if self.scenarios.is_empty() {
            bail!("no scenario given (--scenario KIND or a scenarios: list in the file)");
        }
        if self.scenarios.iter().all(|s| s.weight == 0) {
            bail!("every scenario has weight 0");
        }
        for s in &self.scenarios {
            if s.file_bytes > MAX_UPLOAD {
                bail!("{}: file_bytes above {MAX_UPLOAD}", s.display_name());
            }
            if s.prompt_words > 100_000 || s.inputs > 2048 || s.n > 10 {
                bail!(
                    "{}: prompt_words ≤ 100000, inputs ≤ 2048, n ≤ 10",
                    s.display_name()
                );
            }
            if s.prefix_words > 100_000 || s.shared_prefixes.is_some_and(|n| n > 10_000) {
                bail!(
                    "{}: prefix_words ≤ 100000, shared_prefixes ≤ 10000",
                    s.display_name()
                );
            }
            if s.model_pool.is_some_and(|n| n == 0 || n > 1_000_000) {
                bail!("{}: model_pool must be in 1..=1000000", s.display_name());
            }
            if s.poll_interval < Duration::from_millis(1) {
                bail!("{}: poll_interval must be at least 1ms", s.display_name());
            }
            if !s.path().starts_with('/') {
                bail!("{}: path must start with '/'", s.display_name());
            }
        }
        Ok(())
    }

    /// When closed-loop connection `index` of thread `thread` sends its first request, after
    /// the start: thread `k` owns the global connections `k, k+threads, k+2·threads, …` (as
    /// [`Plan::per_thread`] shares them out), and connection `g` of `total` starts at
    /// `spread · g / total`, so together they start evenly over `spread`.
    pub fn closed_start(&self, thread: usize, index: u32) -> Duration {
        let Mode::Closed { concurrency } = self.mode else {
            return Duration::ZERO;
        };
        let global = u64::from(index) * self.threads.max(1) as u64 + thread as u64;
        let total = u64::from(concurrency.max(1));
        self.spread.mul_f64(global.min(total) as f64 / total as f64)
    }

    /// The share of closed-loop connections (or open-loop in-flight cap) one thread gets.
    pub fn per_thread(total: u32, threads: usize, index: usize) -> u32 {
        let t = threads.max(1) as u32;
        let i = index as u32;
        total / t + u32::from(i < total % t)
    }
}

/// Open-loop arrival times. Thread `k` of `n` owns the global indices `k, k+n, k+2n, …`, so the
/// threads together produce exactly one arrival every `1/rate` seconds.
#[derive(Debug, Clone, Copy)]
pub struct OpenSchedule {
    pub rate: f64,
    pub thread: u64,
    pub threads: u64,
    pub duration: Duration,
    pub requests: Option<u64>,
}

impl OpenSchedule {
    /// Global request index of this thread's `j`-th arrival.
    pub fn global_index(&self, j: u64) -> u64 {
        self.thread + j * self.threads
    }

    /// Offset from the start of the run at which global request `i` is due; `None` once the run
    /// is over (past the duration or the request count).
    pub fn due(&self, i: u64) -> Option<Duration> {
        if self.requests.is_some_and(|n| i >= n) {
            return None;
        }
        let at = i as f64 / self.rate;
        if at >= self.duration.as_secs_f64() {
            return None;
        }
        Some(Duration::from_secs_f64(at))
    }

    /// How many requests the whole run will schedule.
    pub fn total(rate: f64, duration: Duration, requests: Option<u64>) -> u64 {
        let by_time = (duration.as_secs_f64() * rate).ceil() as u64;
        requests.map_or(by_time, |n| n.min(by_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Kind, ScenarioSpec};

    fn plan(mode: Mode) -> Plan {
        Plan {
            target: "http://127.0.0.1:1".into(),
            targets: vec!["http://127.0.0.1:1".into()],
            mode,
            duration: Duration::from_secs(1),
            requests: None,
            timeout: Duration::from_secs(5),
            drain: Duration::from_secs(5),
            threads: 1,
            scenarios: vec![ScenarioSpec::new(Kind::Chat)],
            label: None,
            seed: 1,
            api_key: None,
            headers: Vec::new(),
            spread: Duration::ZERO,
        }
    }

    #[test]
    fn threads_together_cover_every_slot_once() {
        let (rate, threads) = (1000.0, 3u64);
        let mut seen = Vec::new();
        for k in 0..threads {
            let s = OpenSchedule {
                rate,
                thread: k,
                threads,
                duration: Duration::from_millis(100),
                requests: None,
            };
            let mut j = 0;
            while let Some(at) = s.due(s.global_index(j)) {
                seen.push((s.global_index(j), at));
                j += 1;
            }
        }
        seen.sort();
        assert_eq!(seen.len(), 100);
        assert_eq!(
            OpenSchedule::total(rate, Duration::from_millis(100), None),
            100
        );
        for (n, (i, at)) in seen.iter().enumerate() {
            assert_eq!(*i, n as u64);
            let expect = n as f64 / rate;
            assert!((at.as_secs_f64() - expect).abs() < 1e-9);
        }
    }

    #[test]
    fn request_count_stops_the_schedule_first() {
        let s = OpenSchedule {
            rate: 10.0,
            thread: 0,
            threads: 1,
            duration: Duration::from_secs(100),
            requests: Some(5),
        };
        assert_eq!(s.due(4), Some(Duration::from_millis(400)));
        assert_eq!(s.due(5), None);
        assert_eq!(
            OpenSchedule::total(10.0, Duration::from_secs(100), Some(5)),
            5
        );
        assert_eq!(OpenSchedule::total(10.0, Duration::from_secs(2), None), 20);
    }

    #[test]
    fn split_concurrency_over_threads() {
        let parts: Vec<u32> = (0..3).map(|i| Plan::per_thread(32, 3, i)).collect();
        assert_eq!(parts, vec![11, 11, 10]);
        assert_eq!(parts.iter().sum::<u32>(), 32);
        assert_eq!(Plan::per_thread(1, 2, 1), 0);
    }

    #[test]
    fn spread_starts_every_connection_once_evenly() {
        for (concurrency, threads) in [(1, 1), (100, 2), (32, 3), (7, 4), (1000, 2)] {
            let mut p = plan(Mode::Closed { concurrency });
            p.threads = threads;
            p.spread = Duration::from_millis(500);
            let mut starts: Vec<Duration> = (0..threads)
                .flat_map(|k| {
                    let share = Plan::per_thread(concurrency, threads, k);
                    let p = &p;
                    (0..share).map(move |i| p.closed_start(k, i))
                })
                .collect();
            starts.sort();
            let step = p.spread / concurrency;
            let expected: Vec<Duration> = (0..concurrency).map(|g| step * g).collect();
            for (got, want) in starts.iter().zip(&expected) {
                let off = got.abs_diff(*want);
                assert!(
                    off < Duration::from_micros(1),
                    "{concurrency}/{threads}: {starts:?}"
                );
            }
            assert_eq!(
                starts.len(),
                concurrency as usize,
                "{concurrency}/{threads}"
            );
        }
        // Without a spread every connection starts at once.
        let p = plan(Mode::Closed { concurrency: 8 });
        assert_eq!(p.closed_start(0, 7), Duration::ZERO);
    }

    #[test]
    fn spread_is_for_a_closed_loop_shorter_than_the_run() {
        let mut p = plan(Mode::Closed { concurrency: 4 });
        p.spread = Duration::from_millis(500);
        assert!(p.validate().is_ok());
        p.spread = Duration::from_secs(1);
        assert!(p.validate().is_err(), "as long as the run");
        let mut p = plan(Mode::Open {
            rate: 10.0,
            max_in_flight: 10,
        });
        p.spread = Duration::from_millis(100);
        assert!(p.validate().is_err(), "open loop");
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(plan(Mode::Closed { concurrency: 4 }).validate().is_ok());
        assert!(plan(Mode::Closed { concurrency: 0 }).validate().is_err());
        assert!(plan(Mode::Open {
            rate: 0.0,
            max_in_flight: 10
        })
        .validate()
        .is_err());
        assert!(plan(Mode::Open {
            rate: f64::INFINITY,
            max_in_flight: 10
        })
        .validate()
        .is_err());
        let mut p = plan(Mode::Closed { concurrency: 1 });
        p.duration = MAX_DURATION + Duration::from_secs(1);
        assert!(p.validate().is_err());
        let mut p = plan(Mode::Closed { concurrency: 1 });
        p.requests = Some(MAX_REQUESTS + 1);
        assert!(p.validate().is_err());
        let mut p = plan(Mode::Closed { concurrency: 1 });
        p.scenarios[0].file_bytes = MAX_UPLOAD + 1;
        assert!(p.validate().is_err());
        let mut p = plan(Mode::Closed { concurrency: 1 });
        p.scenarios.clear();
        assert!(p.validate().is_err());
    }
}
