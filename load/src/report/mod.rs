//! The run's report: a serde struct written as JSON, printed as a table, and drawn as a
//! self-contained HTML page (see `html`).

pub mod html;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::engine::RunResult;
use crate::hist::{fmt_us, Summary};
use crate::plan::{Mode, Plan};
use crate::stats::ScenarioStats;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub label: Option<String>,
    pub target: String,
    /// Targets used in turn (1 unless several were given).
    #[serde(default = "one")]
    pub targets: usize,
    pub started_unix_ms: u64,
    pub mode: ModeReport,
    pub planned_duration_s: f64,
    pub planned_requests: Option<u64>,
    /// From the start to the last finished request.
    pub wall_s: f64,
    pub threads: usize,
    pub totals: Totals,
    /// How late the generator started sends against the schedule (open loop only).
    pub send_lag_us: Option<Summary>,
    pub unfinished: u64,
    pub bucket_ms: u64,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModeReport {
    Open {
        rate: f64,
        max_in_flight: u32,
    },
    Closed {
        concurrency: u32,
        /// Over how long the connections' first requests were spread (0: all at once).
        #[serde(default)]
        spread_ms: u64,
    },
}

impl ModeReport {
    /// How requests arrived, in words, for the text table and the HTML page.
    pub fn describe(&self) -> String {
        match self {
            ModeReport::Open { rate, .. } => format!("open loop at {rate} req/s"),
            ModeReport::Closed {
                concurrency,
                spread_ms: 0,
            } => format!("closed loop, concurrency {concurrency}"),
            ModeReport::Closed {
                concurrency,
                spread_ms,
            } => {
                format!("closed loop, concurrency {concurrency}, starts spread over {spread_ms} ms")
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    pub ok_rps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub kind: String,
    pub weight: u32,
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    /// Successful requests, from the scheduled send time (µs).
    pub latency_us: Summary,
    /// Successful requests, from the actual send (µs).
    pub service_us: Summary,
    /// Response head, first audio byte or first content event (µs).
    pub first_us: Option<Summary>,
    /// Chat streams: gaps between content events (µs).
    pub gap_us: Option<Summary>,
    pub tokens_per_s: Option<TokensReport>,
    pub coalescing: Option<Coalescing>,
    pub status_counts: BTreeMap<String, u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub polls: u64,
    /// `(upper bound µs, count)`, log-spaced: for the histogram chart.
    pub latency_buckets: Vec<(u64, u64)>,
    /// Completions per bucket: `[ok, errors]`.
    pub timeline: Vec<[u64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokensReport {
    pub p50: f64,
    pub p10: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Coalescing {
    pub content_events: u64,
    pub content_reads: u64,
    /// Reads that carried more than one content event.
    pub coalesced_reads: u64,
    pub coalesced_ratio: f64,
}

fn one() -> usize {
    1
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn opt(s: Summary) -> Option<Summary> {
    (s.count > 0).then_some(s)
}

impl Report {
    pub fn build(plan: &Plan, run: &RunResult) -> Report {
        let wall = run.wall.as_secs_f64();
        let scenarios: Vec<ScenarioReport> = plan
            .scenarios
            .iter()
            .zip(&run.stats.scenarios)
            .map(|(spec, st)| scenario(spec, st, wall))
            .collect();
        let ok: u64 = scenarios.iter().map(|s| s.ok).sum();
        let errors: u64 = scenarios.iter().map(|s| s.errors).sum();
        let mode = match plan.mode {
            Mode::Open {
                rate,
                max_in_flight,
            } => ModeReport::Open {
                rate,
                max_in_flight,
            },
            Mode::Closed { concurrency } => ModeReport::Closed {
                concurrency,
                spread_ms: plan.spread.as_millis() as u64,
            },
        };
        Report {
            tool: "switchyard-load".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            label: plan.label.clone(),
            target: plan.target.clone(),
            targets: plan.targets.len(),
            started_unix_ms: run.started_unix_ms,
            send_lag_us: match plan.mode {
                Mode::Open { .. } => Some(run.stats.send_lag.summary()),
                Mode::Closed { .. } => None,
            },
            mode,
            planned_duration_s: plan.duration.as_secs_f64(),
            planned_requests: plan.requests,
            wall_s: wall,
            threads: plan.threads,
            totals: Totals {
                requests: ok + errors,
                ok,
                errors,
                throughput_rps: per_sec(ok + errors, wall),
                ok_rps: per_sec(ok, wall),
            },
            unfinished: run.stats.unfinished,
            bucket_ms: run.bucket.as_millis() as u64,
            scenarios,
        }
    }

    /// The end-of-run table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mode = self.mode.describe();
        let more = if self.targets > 1 {
            format!(" and {} more", self.targets - 1)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "target {}{more}  ({mode}, {} thread(s), {:.2} s)",
            self.target, self.threads, self.wall_s
        );
        let _ = writeln!(
            out,
            "{:<16} {:>8} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "scenario", "requests", "errors", "req/s", "p50", "p90", "p99", "max"
        );
        for s in &self.scenarios {
            let l = &s.latency_us;
            let _ = writeln!(
                out,
                "{:<16} {:>8} {:>7} {:>10.1} {:>9} {:>9} {:>9} {:>9}",
                truncate(&s.name, 16),
                s.requests,
                s.errors,
                s.throughput_rps,
                fmt_us(l.p50),
                fmt_us(l.p90),
                fmt_us(l.p99),
                fmt_us(l.max)
            );
            if let Some(f) = &s.first_us {
                let what = if s.kind == "chat_stream" {
                    "ttft"
                } else {
                    "first byte"
                };
                let _ = writeln!(
                    out,
                    "  {what:<14} p50 {}  p99 {}",
                    fmt_us(f.p50),
                    fmt_us(f.p99)
                );
            }
            if let Some(g) = &s.gap_us {
                let _ = writeln!(
                    out,
                    "  {:<14} p50 {}  p99 {}  max {}",
                    "chunk gap",
                    fmt_us(g.p50),
                    fmt_us(g.p99),
                    fmt_us(g.max)
                );
            }
            if let Some(t) = &s.tokens_per_s {
                let _ = writeln!(
                    out,
                    "  {:<14} p50 {:.1}  p10 {:.1}  mean {:.1}",
                    "tokens/s", t.p50, t.p10, t.mean
                );
            }
            if let Some(c) = &s.coalescing {
                let _ = writeln!(
                    out,
                    "  {:<14} {} of {} reads carried >1 event ({:.1}%)",
                    "coalescing",
                    c.coalesced_reads,
                    c.content_reads,
                    c.coalesced_ratio * 100.0
                );
            }
            if s.polls > 0 {
                let _ = writeln!(out, "  {:<14} {}", "status polls", s.polls);
            }
            let statuses: Vec<String> = s
                .status_counts
                .iter()
                .map(|(k, v)| format!("{k}×{v}"))
                .collect();
            let _ = writeln!(out, "  {:<14} {}", "statuses", statuses.join("  "));
            if !s.errors_by_kind.is_empty() {
                let errs: Vec<String> = s
                    .errors_by_kind
                    .iter()
                    .map(|(k, v)| format!("{k}×{v}"))
                    .collect();
                let _ = writeln!(out, "  {:<14} {}", "errors", errs.join("  "));
            }
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "total: {} requests, {} ok, {} errors, {:.1} req/s ({:.1} ok/s)",
            t.requests, t.ok, t.errors, t.throughput_rps, t.ok_rps
        );
        if let Some(lag) = &self.send_lag_us {
            let _ = writeln!(
                out,
                "generator send lag: p50 {}  p99 {}  max {}",
                fmt_us(lag.p50),
                fmt_us(lag.p99),
                fmt_us(lag.max)
            );
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                out,
                "{} request(s) still running when the drain time ran out (not counted)",
                self.unfinished
            );
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

fn scenario(spec: &crate::spec::ScenarioSpec, st: &ScenarioStats, wall: f64) -> ScenarioReport {
    let streaming = spec.kind == crate::spec::Kind::ChatStream;
    let tps = st.tps_x100.summary();
    ScenarioReport {
        name: spec.display_name(),
        kind: spec.kind.name().into(),
        weight: spec.weight,
        requests: st.requests(),
        ok: st.ok,
        errors: st.errors,
        throughput_rps: per_sec(st.requests(), wall),
        latency_us: st.latency.summary(),
        service_us: st.service.summary(),
        first_us: opt(st.first.summary()),
        gap_us: opt(st.gap.summary()),
        tokens_per_s: (tps.count > 0).then(|| TokensReport {
            p50: tps.p50 as f64 / 100.0,
            p10: st.tps_x100.quantile(0.10) as f64 / 100.0,
            mean: tps.mean / 100.0,
        }),
        coalescing: streaming.then(|| Coalescing {
            content_events: st.content_events,
            content_reads: st.content_reads,
            coalesced_reads: st.coalesced_reads,
            coalesced_ratio: if st.content_reads > 0 {
                st.coalesced_reads as f64 / st.content_reads as f64
            } else {
                0.0
            },
        }),
        status_counts: st.by_status.clone(),
        errors_by_kind: st.by_error.clone(),
        bytes_in: st.bytes_in,
        bytes_out: st.bytes_out,
        polls: st.polls,
        latency_buckets: st.latency.buckets(10),
        timeline: st.timeline.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::RunResult;
    use crate::spec::{Kind, ScenarioSpec};
    use crate::stats::{Outcome, StreamTiming, ThreadStats};

    pub(crate) fn sample() -> (Plan, RunResult) {
        let plan = Plan {
            target: "http://127.0.0.1:9".into(),
            targets: vec!["http://127.0.0.1:9".into()],
            mode: Mode::Open {
                rate: 100.0,
                max_in_flight: 64,
            },
            duration: Duration::from_secs(2),
            requests: None,
            timeout: Duration::from_secs(5),
            drain: Duration::from_secs(5),
            threads: 1,
            scenarios: vec![
                ScenarioSpec::new(Kind::Chat),
                ScenarioSpec::new(Kind::ChatStream),
            ],
            label: Some("unit <test>".into()),
            seed: 3,
            api_key: None,
            headers: Vec::new(),
            spread: Duration::ZERO,
        };
        let bucket = Duration::from_millis(100);
        let mut stats = ThreadStats::new(2);
        for i in 0..150u64 {
            let at = Duration::from_millis(i * 13);
            let lat = Duration::from_micros(200 + i * 10);
            stats.scenarios[0].record(
                Outcome {
                    status: Some(200),
                    first: Some(lat),
                    ..Outcome::default()
                },
                lat,
                lat,
                at,
                bucket,
            );
            stats.scenarios[1].record(
                Outcome {
                    status: Some(200),
                    first: Some(lat / 2),
                    stream: Some(StreamTiming {
                        gaps_us: vec![1_000, 1_100],
                        content_events: 3,
                        content_reads: 3,
                        coalesced_reads: 0,
                        tokens_per_s: Some(950.0),
                    }),
                    ..Outcome::default()
                },
                lat * 3,
                lat * 3,
                at,
                bucket,
            );
        }
        stats.scenarios[0].record(
            Outcome::fail(Some(503), "http_503"),
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_millis(1990),
            bucket,
        );
        stats.send_lag.record(Duration::from_micros(80));
        let run = RunResult {
            stats,
            wall: Duration::from_secs(2),
            bucket,
            started_unix_ms: 1,
        };
        (plan, run)
    }

    #[test]
    fn report_counts_rates_and_round_trips() {
        let (plan, run) = sample();
        let r = Report::build(&plan, &run);
        assert_eq!(r.totals.requests, 301);
        assert_eq!(r.totals.errors, 1);
        assert!((r.totals.throughput_rps - 150.5).abs() < 1e-9);
        let chat = &r.scenarios[0];
        assert_eq!(chat.status_counts.get("503"), Some(&1));
        assert_eq!(chat.errors_by_kind.get("http_503"), Some(&1));
        assert!(chat.coalescing.is_none());
        let stream = &r.scenarios[1];
        assert_eq!(stream.gap_us.map(|g| g.count), Some(300));
        // HDR keeps 3 significant digits: within 0.1 %.
        let tps = stream.tokens_per_s.as_ref().map_or(0.0, |t| t.p50);
        assert!((tps - 950.0).abs() <= 1.0, "{tps}");
        assert_eq!(
            stream.coalescing.as_ref().map(|c| c.coalesced_ratio),
            Some(0.0)
        );
        assert_eq!(
            chat.latency_buckets.iter().map(|b| b.1).sum::<u64>(),
            150,
            "buckets hold every successful request"
        );
        let json = serde_json::to_string(&r).expect("serialises");
        let back: Report = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back.totals.requests, 301);
        let table = r.table();
        assert!(table.contains("chat_stream"), "{table}");
        assert!(table.contains("http_503×1"), "{table}");
        assert!(table.contains("ttft"), "{table}");
        assert!(table.contains("send lag"), "{table}");
    }
}
