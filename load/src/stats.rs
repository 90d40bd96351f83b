//! What one thread saw, per scenario; threads keep their own (no locks on the hot path) and
//! the engine merges them at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::hist::Hist;

/// How one request ended, as the scenario runner reports it.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Last HTTP status seen (the error's, if one occurred).
    pub status: Option<u16>,
    /// `None` for success; otherwise a short key such as `http_503`, `connect`, `timeout`.
    pub error: Option<String>,
    /// Response head (non-streams) or first content event (chat streams), from the scheduled
    /// send time.
    pub first: Option<Duration>,
    pub stream: Option<StreamTiming>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Extra requests made inside this one (video polls).
    pub polls: u32,
}

impl Outcome {
    pub fn fail(status: Option<u16>, error: impl Into<String>) -> Outcome {
        Outcome {
            status,
            error: Some(error.into()),
            ..Outcome::default()
        }
    }
}

/// Timing of one SSE stream.
#[derive(Debug, Default, Clone)]
pub struct StreamTiming {
    /// Gaps between consecutive content events, in µs.
    pub gaps_us: Vec<u64>,
    pub content_events: u64,
    /// Network reads that carried at least one content event.
    pub content_reads: u64,
    /// Reads that carried two or more content events (coalescing, if the backend spaced them).
    pub coalesced_reads: u64,
    /// Content events per second between the first and the last content event.
    pub tokens_per_s: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct ScenarioStats {
    /// From the scheduled send time (coordinated-omission safe).
    pub latency: Hist,
    /// From the moment the request actually left (equal to `latency` in closed loop).
    pub service: Hist,
    pub first: Hist,
    pub gap: Hist,
    /// Tokens per second ×100 (HDR keeps integers).
    pub tps_x100: Hist,
    pub ok: u64,
    pub errors: u64,
    pub by_status: BTreeMap<String, u64>,
    pub by_error: BTreeMap<String, u64>,
    pub content_events: u64,
    pub content_reads: u64,
    pub coalesced_reads: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub polls: u64,
    /// Per time bucket since the start: (ok, errors) completions.
    pub timeline: Vec<[u64; 2]>,
}

impl ScenarioStats {
    /// Fold one finished request in. `latency` counts from the scheduled send time, `service`
    /// from the actual send; `at` is when it finished, from the start of the run.
    pub fn record(
        &mut self,
        o: Outcome,
        latency: Duration,
        service: Duration,
        at: Duration,
        bucket: Duration,
    ) {
        let status_key = o.status.map_or_else(|| "none".into(), |s| s.to_string());
        *self.by_status.entry(status_key).or_default() += 1;
        let ok = o.error.is_none();
        match o.error {
            None => {
                self.ok += 1;
                self.latency.record(latency);
                self.service.record(service);
                if let Some(f) = o.first {
                    self.first.record(f);
                }
            }
            Some(e) => {
                self.errors += 1;
                *self.by_error.entry(e).or_default() += 1;
            }
        }
        if let Some(s) = o.stream {
            if ok {
                for g in s.gaps_us {
                    self.gap.record_value(g);
                }
                if let Some(t) = s.tokens_per_s {
                    self.tps_x100.record_value((t * 100.0).round() as u64);
                }
            }
            self.content_events += s.content_events;
            self.content_reads += s.content_reads;
            self.coalesced_reads += s.coalesced_reads;
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.polls += u64::from(o.polls);
        let idx = (at.as_nanos() / bucket.as_nanos().max(1)) as usize;
        // Bounded: runs are capped in duration and the bucket grows with it.
        if idx < 100_000 {
            if self.timeline.len() <= idx {
                self.timeline.resize(idx + 1, [0, 0]);
            }
            self.timeline[idx][usize::from(!ok)] += 1;
        }
    }

    pub fn merge(&mut self, o: &ScenarioStats) {
        self.latency.merge(&o.latency);
        self.service.merge(&o.service);
        self.first.merge(&o.first);
        self.gap.merge(&o.gap);
        self.tps_x100.merge(&o.tps_x100);
        self.ok += o.ok;
        self.errors += o.errors;
        for (k, v) in &o.by_status {
            *self.by_status.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.by_error {
            *self.by_error.entry(k.clone()).or_default() += v;
        }
        self.content_events += o.content_events;
        self.content_reads += o.content_reads;
        self.coalesced_reads += o.coalesced_reads;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.polls += o.polls;
        if self.timeline.len() < o.timeline.len() {
            self.timeline.resize(o.timeline.len(), [0, 0]);
        }
        for (i, b) in o.timeline.iter().enumerate() {
            self.timeline[i][0] += b[0];
            self.timeline[i][1] += b[1];
        }
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }
}

/// Everything one thread hands back.
#[derive(Debug, Clone, Default)]
pub struct ThreadStats {
    pub scenarios: Vec<ScenarioStats>,
    /// How late sends started against their schedule (open loop): the generator's own lag.
    pub send_lag: Hist,
    /// Requests still running when the drain time ran out.
    pub unfinished: u64,
}

impl ThreadStats {
    pub fn new(scenarios: usize) -> ThreadStats {
        ThreadStats {
            scenarios: vec![ScenarioStats::default(); scenarios],
            ..ThreadStats::default()
        }
    }

    pub fn merge(&mut self, o: &ThreadStats) {
        if self.scenarios.len() < o.scenarios.len() {
            self.scenarios
                .resize(o.scenarios.len(), ScenarioStats::default());
        }
        for (a, b) in self.scenarios.iter_mut().zip(&o.scenarios) {
            a.merge(b);
        }
        self.send_lag.merge(&o.send_lag);
        self.unfinished += o.unfinished;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_merge() {
        let bucket = Duration::from_millis(100);
        let mut a = ScenarioStats::default();
        a.record(
            Outcome {
                status: Some(200),
                first: Some(Duration::from_micros(300)),
                stream: Some(StreamTiming {
                    gaps_us: vec![1_000, 1_000],
                    content_events: 3,
                    content_reads: 2,
                    coalesced_reads: 1,
                    tokens_per_s: Some(1000.0),
                }),
                ..Outcome::default()
            },
            Duration::from_millis(2),
            Duration::from_millis(2),
            Duration::from_millis(50),
            bucket,
        );
        let mut b = ScenarioStats::default();
        b.record(
            Outcome::fail(Some(503), "http_503"),
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_millis(250),
            bucket,
        );
        a.merge(&b);
        assert_eq!((a.ok, a.errors, a.requests()), (1, 1, 2));
        assert_eq!(a.by_status.get("200"), Some(&1));
        assert_eq!(a.by_error.get("http_503"), Some(&1));
        assert_eq!(
            a.latency.count(),
            1,
            "errors stay out of the latency histogram"
        );
        assert_eq!(a.gap.count(), 2);
        assert!((100_000..=100_100).contains(&a.tps_x100.quantile(0.5)));
        assert_eq!(a.timeline, vec![[1, 0], [0, 0], [0, 1]]);
        assert_eq!((a.content_reads, a.coalesced_reads), (2, 1));
    }
}
