//! Prometheus metrics (`GET /metrics`): requests, latency, tokens, backends, cost, under the prefix
//! `switchyard_`. Labels are bounded: configured model ids, endpoint names (`kind@host:port`),
//! route names, operations, outcomes, status codes and key ids (configured names or digests,
//! never keys). Per-request metrics are fed from the finished [`RequestRecord`]; the mesh's
//! live state (health, buckets, in-flight, weights) is read at scrape time.

mod series;
mod sink;
pub mod timeline;

pub use sink::AccountingSink;

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::accounting::logger::LoggerStats;
use crate::engines::ApiOp;
use crate::mesh::{CircuitState, Health, RouteTable};
use crate::quota::Quotas;
use crate::record::RequestRecord;
use series::{RequestSeries, SeriesCache, TOKEN_TYPES};
use timeline::Timeline;

/// Request and time-to-first-token buckets, 10 ms to 5 min: proxy hops to long generations.
const LATENCY_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0,
];
/// The router's own overhead is sub-millisecond when healthy.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
const VIDEO_JOB_BUCKETS: &[f64] = &[5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0];

/// Label value when a request never resolved a model, endpoint or key.
pub const NONE: &str = "-";

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    time_to_first_token: HistogramVec,
    overhead: HistogramVec,
    tokens: IntCounterVec,
    estimated_usage: IntCounterVec,
    upstream_errors: IntCounterVec,
    fallbacks: IntCounterVec,
    rate_limited: IntCounterVec,
    audio_seconds: CounterVec,
    images: IntCounterVec,
    video_seconds: CounterVec,
    video_jobs: IntGaugeVec,
    video_job_duration: HistogramVec,
    cost: CounterVec,
    /// Handles of the per-request series above, by the request's labels.
    series: SeriesCache,
    pub timeline: Timeline,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn fcounter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric definition");
    registry
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every definition below is static, so registration cannot fail at run time; the
    /// `expect`s run once at start and are exercised by every test.
    pub fn new() -> Metrics {
        let r = Registry::new();
        // The routing decisions are counted where they are made, in the mesh.
        let decisions = crate::mesh::policy::decision_metrics();
        r.register(Box::new(decisions.decisions.clone()))
            .expect("metric registered once");
        r.register(Box::new(decisions.prefix_match.clone()))
            .expect("metric registered once");
        Metrics {
            http_requests: counter(
                &r,
                "switchyard_http_requests_total",
                "HTTP requests by matched route pattern, method and status code.",
                &["route", "method", "status_code"],
            ),
            requests: counter(
                &r,
                "switchyard_requests_total",
                "API requests by operation, model, backend endpoint and outcome.",
                &["op", "model", "backend", "outcome"],
            ),
            request_duration: histogram(
                &r,
                "switchyard_request_duration_seconds",
                "End-to-end request latency (streams: until the last byte).",
                &["op", "model", "backend"],
                LATENCY_BUCKETS,
            ),
            upstream_duration: histogram(
                &r,
                "switchyard_upstream_request_duration_seconds",
                "Time spent waiting on backends per request (all attempts and back-off).",
                &["model", "backend"],
                LATENCY_BUCKETS,
            ),
            time_to_first_token: histogram(
                &r,
                "switchyard_time_to_first_token_seconds",
                "Streams: time until the first token reached the client.",
                &["model", "backend"],
                LATENCY_BUCKETS,
            ),
            overhead: histogram(
                &r,
                "switchyard_overhead_duration_seconds",
                "The router's own time per request: latency minus upstream time.",
                &["op"],
                OVERHEAD_BUCKETS,
            ),
            tokens: counter(
                &r,
                "switchyard_tokens_total",
                "Tokens by model, backend and type (prompt, completion, cached).",
                &["model", "backend", "type"],
            ),
            estimated_usage: counter(
                &r,
                "switchyard_usage_estimated_total",
                "Requests whose token usage the router estimated (the backend reported none).",
                &["model"],
            ),
            upstream_errors: counter(
                &r,
                "switchyard_upstream_errors_total",
                "Failed upstream attempts by backend, status code and error type.",
                &["backend", "status_code", "error_type"],
            ),
            fallbacks: counter(
                &r,
                "switchyard_fallbacks_total",
                "Requests that needed more than one attempt, by model and final outcome.",
                &["model", "outcome"],
            ),
            rate_limited: counter(
                &r,
                "switchyard_rate_limited_total",
                "Requests answered 429 by model, key id and reason.",
                &["model", "api_key_id", "reason"],
            ),
            audio_seconds: fcounter(
                &r,
                "switchyard_audio_seconds_total",
                "Seconds of audio produced (output) or transcribed (input).",
                &["model", "direction"],
            ),
            images: counter(
                &r,
                "switchyard_images_generated_total",
                "Images generated.",
                &["model"],
            ),
            video_seconds: fcounter(
                &r,
                "switchyard_video_seconds_total",
                "Seconds of video generated.",
                &["model"],
            ),
            video_jobs: gauge(
                &r,
                "switchyard_video_jobs",
                "Video generation jobs by model and status.",
                &["model", "status"],
            ),
            video_job_duration: histogram(
                &r,
                "switchyard_video_job_duration_seconds",
                "Video generation jobs from submission to a final status.",
                &["model", "outcome"],
                VIDEO_JOB_BUCKETS,
            ),
            cost: fcounter(
                &r,
                "switchyard_cost_usd_total",
                "Cost in USD from the configured pricing, by model and key id.",
                &["model", "api_key_id"],
            ),
            registry: r,
            series: SeriesCache::default(),
            timeline: Timeline::default(),
        }
    }

    /// Fold one finished request into the metrics and the status page's timeline.
    pub fn observe(&self, r: &RequestRecord, cost_usd: Option<f64>) {
        let model = r.model.as_deref().unwrap_or(NONE);
        let backend = r.endpoint.as_deref().unwrap_or(NONE);
        let key = r.api_key_id.as_deref().unwrap_or(NONE);
        let op = r.op.as_str();
        let latency = r.latency.as_secs_f64();
        let cached = self.series.get((op, model, backend, r.outcome));
        let uncached;
        let series: &RequestSeries = match &cached {
            Some(series) => series,
            None => {
                uncached = RequestSeries::default();
                &uncached
            }
        };
        series
            .requests
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[op, model, backend, r.outcome])
            })
            .inc();
        series
            .request_duration
            .get_or_init(|| {
                self.request_duration
                    .with_label_values(&[op, model, backend])
            })
            .observe(latency);
        if r.attempts > 0 {
            let upstream = r.upstream_time.min(r.latency);
            series
                .upstream_duration
                .get_or_init(|| self.upstream_duration.with_label_values(&[model, backend]))
                .observe(upstream.as_secs_f64());
            series
                .overhead
                .get_or_init(|| self.overhead.with_label_values(&[op]))
                .observe((r.latency - upstream).as_secs_f64());
        }
        if r.stream {
            if let Some(ttfb) = r.ttfb {
                series
                    .time_to_first_token
                    .get_or_init(|| {
                        self.time_to_first_token
                            .with_label_values(&[model, backend])
                    })
                    .observe(ttfb.as_secs_f64());
            }
        }
        if let Some(u) = r.usage {
            let counts = [u.prompt_tokens, u.completion_tokens, u.cached_tokens];
            for ((handle, kind), n) in series.tokens.iter().zip(TOKEN_TYPES).zip(counts) {
                // A zero count creates no series, as ever.
                if n > 0 {
                    handle
                        .get_or_init(|| self.tokens.with_label_values(&[model, backend, kind]))
                        .inc_by(n);
                }
            }
            if u.estimated {
                self.estimated_usage.with_label_values(&[model]).inc();
            }
        }
        for f in &r.upstream_errors {
            self.upstream_errors
                .with_label_values(&[&f.endpoint, &f.status.to_string(), f.error_type])
                .inc();
        }
        if r.attempts > 1 {
            self.fallbacks.with_label_values(&[model, r.outcome]).inc();
        }
        if r.outcome == "rate_limited" {
            const KNOWN: [&str; 3] = [
                "rate_limit_exceeded",
                "capacity_exhausted",
                "upstream_rate_limited",
            ];
            let reason = r
                .error_code
                .as_deref()
                .filter(|c| KNOWN.contains(c))
                .unwrap_or("other");
            self.rate_limited
                .with_label_values(&[model, key, reason])
                .inc();
        }
        if let Some(job) = r.video_job {
            self.video_job_finished(model, job.status, job.duration.as_secs_f64());
        }
        if let Some(secs) = r.audio_seconds.filter(|s| s.is_finite() && *s > 0.0) {
            let direction = match r.op {
                ApiOp::Transcriptions | ApiOp::Translations => "input",
                _ => "output",
            };
            self.audio_seconds
                .with_label_values(&[model, direction])
                .inc_by(secs);
        }
        if let Some(n) = r.images.filter(|n| *n > 0) {
            self.images.with_label_values(&[model]).inc_by(u64::from(n));
        }
        if let Some(secs) = r.video_seconds.filter(|s| s.is_finite() && *s > 0.0) {
            self.video_seconds.with_label_values(&[model]).inc_by(secs);
        }
        if let Some(c) = cost_usd.filter(|c| c.is_finite() && *c > 0.0) {
            self.cost.with_label_values(&[model, key]).inc_by(c);
        }
        self.timeline.observe(
            unix_now(),
            latency * 1000.0,
            !matches!(r.outcome, "success" | "canceled"),
        );
    }

    /// The job table's counts by model and status, read at scrape time: the table is the
    /// truth (jobs move on other replicas, and outlive this process). Statuses no longer
    /// present drop to nothing rather than stay at their last count.
    pub fn set_video_jobs(&self, counts: &[(String, String, i64)]) {
        self.video_jobs.reset();
        for (model, status, n) in counts {
            self.video_jobs.with_label_values(&[model, status]).set(*n);
        }
    }

    /// A job reached a final status (`completed`, `failed`, `canceled`) `seconds` after it
    /// was created.
    pub fn video_job_finished(&self, model: &str, outcome: &str, seconds: f64) {
        self.video_job_duration
            .with_label_values(&[model, outcome])
            .observe(seconds);
    }

    /// Count one HTTP request by route pattern (never the raw path), method and status
    /// (the front door middleware calls this for every request).
    pub fn count_http(&self, route: &str, method: &actix_web::http::Method, status: StatusCode) {
        // `as_str` of a status is its three digits, without a `to_string` per request.
        self.http_requests
            .with_label_values(&[route, method_label(method), status.as_str()])
            .inc();
    }

    /// The whole exposition: per-request metrics plus the mesh and logger state right now.
    pub fn render(&self, table: Option<&RouteTable>, logger: Option<&LoggerStats>) -> String {
        self.render_with(table, logger, None)
    }

    /// [`Metrics::render`] with the shared limits' state (budgets left, leases held).
    pub fn render_with(
        &self,
        table: Option<&RouteTable>,
        logger: Option<&LoggerStats>,
        quotas: Option<&Quotas>,
    ) -> String {
        let mut families = self.registry.gather();
        families.extend(live_families(table, logger));
        if let Some(quotas) = quotas {
            families.extend(quota_families(quotas));
        }
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The shared limits as this replica last saw them: per allowance (labels: owner `key:<id>` or
/// `endpoint:<name>`, and `limit`: rpm, tpm or usd), the slice it holds, and for budgets what
/// is left across replicas; the ledger exchanges counted.
fn quota_families(quotas: &Quotas) -> Vec<prometheus::proto::MetricFamily> {
    let r = Registry::new();
    let float_gauge = |name: &str, help: &str, labels: &[&str]| {
        live(&r, prometheus::GaugeVec::new(Opts::new(name, help), labels))
    };
    let held = float_gauge(
        "switchyard_quota_lease_held",
        "Units of a shared allowance this replica holds leased and unspent.",
        &["owner", "limit"],
    );
    let remaining = float_gauge(
        "switchyard_key_budget_remaining_usd",
        "A key's budget left in the current period across replicas, as of the last exchange.",
        &["key"],
    );
    for view in quotas.views() {
        // `key:<id>:rpm`, `key:<id>:usd:<period>`: the id is a configured name or digest id.
        let mut parts = view.scope.splitn(3, ':');
        let (Some(kind), Some(owner), Some(limit)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let limit = limit.split(':').next().unwrap_or(limit);
        if let Some(g) = &held {
            g.with_label_values(&[&format!("{kind}:{owner}"), limit])
                .set(view.held);
        }
        if let (Some(g), "key", "usd", Some(shared)) = (&remaining, kind, limit, view.shared) {
            g.with_label_values(&[owner])
                .set((shared.level + shared.outstanding).max(0.0));
        }
    }
    let stats = quotas.stats();
    let counter = |name: &str, help: &str, value: u64| {
        if let Some(c) = live(&r, IntCounter::new(name, help)) {
            c.inc_by(value);
        }
    };
    counter(
        "switchyard_quota_lease_requests_total",
        "Exchanges with the shared quota ledger (lease, renew, give back): one transaction each.",
        stats.lease_requests.load(Ordering::Relaxed),
    );
    counter(
        "switchyard_quota_ledger_errors_total",
        "Ledger exchanges that failed on the database and were served from memory.",
        stats.ledger_errors.load(Ordering::Relaxed),
    );
    counter(
        "switchyard_quota_lease_waits_total",
        "Requests that waited for a lease because this replica held nothing of the allowance.",
        stats.waits.load(Ordering::Relaxed),
    );
    r.gather()
}

/// Register a metric built at scrape time; `None` only if its static definition were invalid.
fn live<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    built: prometheus::Result<T>,
) -> Option<T> {
    let m = built.ok()?;
    r.register(Box::new(m.clone())).ok()?;
    Some(m)
}

/// Gauges (and counters kept elsewhere) read at scrape time, in a throw-away registry so
/// endpoints removed by a reload disappear from the output. Nothing here can panic.
fn live_families(
    table: Option<&RouteTable>,
    logger: Option<&LoggerStats>,
) -> Vec<prometheus::proto::MetricFamily> {
    let r = Registry::new();
    if let Some(g) = live(
        &r,
        IntGauge::new(
            "switchyard_in_flight_requests",
            "Requests inside the router now (streams included).",
        ),
    ) {
        g.set(crate::record::live_requests());
    }
    if let Some(table) = table {
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            live(&r, IntGaugeVec::new(Opts::new(name, help), labels))
        };
        let float_gauge = |name: &str, help: &str, labels: &[&str]| {
            live(&r, prometheus::GaugeVec::new(Opts::new(name, help), labels))
        };
        let up = int_gauge(
            "switchyard_backend_up",
            "1 when the endpoint takes traffic (ready or degraded, circuit not open).",
            &["backend"],
        );
        let health = int_gauge(
            "switchyard_backend_health",
            "1 for the endpoint's current health state.",
            &["backend", "state"],
        );
        let busy = int_gauge(
            "switchyard_backend_in_flight",
            "Requests holding a lease on the endpoint.",
            &["backend"],
        );
        let bucket = float_gauge(
            "switchyard_backend_bucket_available",
            "Tokens left in the endpoint's rate-limit buckets.",
            &["backend", "limit"],
        );
        let latency = float_gauge(
            "switchyard_backend_latency_ewma_seconds",
            "Recent mean latency of the endpoint's finished requests.",
            &["backend"],
        );
        let engine_requests = int_gauge(
            "switchyard_backend_engine_requests",
            "Requests the engine itself reports, running or waiting in its queue (fresh readings only).",
            &["backend", "state"],
        );
        let engine_kv = float_gauge(
            "switchyard_backend_engine_kv_cache_usage_ratio",
            "Fraction of the engine's KV cache in use, as it reports it (fresh readings only).",
            &["backend"],
        );
        let engine_age = float_gauge(
            "switchyard_backend_engine_load_age_seconds",
            "Age of the engine's load reading (absent once older than two probe intervals).",
            &["backend"],
        );
        let weight = float_gauge(
            "switchyard_route_weight",
            "Effective routing weight per model and route (0 = never chosen).",
            &["model", "route"],
        );
        for (_, handle) in &table.endpoints {
            let s = handle.endpoint.snapshot();
            let routable = matches!(s.health, Health::Ready | Health::Degraded)
                && s.circuit != CircuitState::Open;
            if let Some(g) = &up {
                g.with_label_values(&[&s.name]).set(i64::from(routable));
            }
            if let Some(g) = &health {
                g.with_label_values(&[&s.name, s.health.as_str()]).set(1);
            }
            if let Some(g) = &busy {
                g.with_label_values(&[&s.name]).set(s.in_flight as i64);
            }
            if let Some(g) = &latency {
                g.with_label_values(&[&s.name])
                    .set(s.latency_ewma_ms / 1000.0);
            }
            if let Some(reading) = &s.engine_load {
                if let Some(g) = &engine_requests {
                    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    g.with_label_values(&[&s.name, "running"])
                        .set(count(reading.load.running));
                    g.with_label_values(&[&s.name, "waiting"])
                        .set(count(reading.load.waiting));
                }
                if let (Some(g), Some(kv)) = (&engine_kv, reading.load.kv_cache_usage) {
                    g.with_label_values(&[&s.name]).set(kv);
                }
                if let Some(g) = &engine_age {
                    g.with_label_values(&[&s.name])
                        .set(reading.age_ms as f64 / 1000.0);
                }
            }
            if let Some(g) = &bucket {
                if let Some(b) = &s.rpm {
                    g.with_label_values(&[&s.name, "rpm"]).set(b.available);
                }
                if let Some(b) = &s.tpm {
                    g.with_label_values(&[&s.name, "tpm"]).set(b.available);
                }
            }
        }
        if let Some(g) = &weight {
            for m in &table.models {
                for (j, route) in m.def.routes.iter().enumerate() {
                    let enabled = m.endpoints.get(j).is_some_and(Option::is_some);
                    let w = if enabled { route.weight } else { 0.0 };
                    g.with_label_values(&[&m.def.id, &route.name]).set(w);
                }
            }
        }
        let policy = int_gauge(
            "switchyard_model_policy",
            "1 for each model's routing policy in force.",
            &["model", "policy"],
        );
        let tree = int_gauge(
            "switchyard_prefix_tree_bytes",
            "Memory of each prefix_cache model's prefix tree (bounded by prefix_tree_max_bytes).",
            &["model"],
        );
        for m in &table.models {
            if let Some(g) = &policy {
                g.with_label_values(&[&m.def.id, m.policy.as_str()]).set(1);
            }
            if let (Some(g), Some(t)) = (&tree, &m.prefix_tree) {
                let bytes = t
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .approx_bytes();
                g.with_label_values(&[&m.def.id]).set(bytes as i64);
            }
        }
    }
    if let Some(s) = logger {
        let c = |name: &str, help: &str, v: u64| {
            if let Some(m) = live(&r, IntCounter::new(name, help)) {
                m.inc_by(v);
            }
        };
        c(
            "switchyard_request_log_rows_written_total",
            "Request log rows committed to the database (replayed ones included).",
            s.rows_written.load(Ordering::Relaxed),
        );
        c(
            "switchyard_request_log_rows_replayed_total",
            "Spilled rows later committed to the database.",
            s.rows_replayed.load(Ordering::Relaxed),
        );
        c(
            "switchyard_request_log_write_errors_total",
            "Failed database writes of request log batches (their rows were spilled).",
            s.write_errors.load(Ordering::Relaxed),
        );
        c(
            "switchyard_request_log_queue_overflows_total",
            "Rows spilled by the request path because the logger's queue was full.",
            s.queue_overflows.load(Ordering::Relaxed),
        );
        c(
            "switchyard_request_log_spill_dropped_rows_total",
            "Request log rows dropped because the spill file was full (LOG_SPILL_MAX_MB).",
            s.spill.dropped_rows.load(Ordering::Relaxed),
        );
        let g = |name: &str, help: &str, v: u64| {
            if let Some(m) = live(&r, IntGauge::new(name, help)) {
                m.set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        };
        g(
            "switchyard_request_log_buffered_rows",
            "Rows in the logger's current batch.",
            s.buffered.load(Ordering::Relaxed),
        );
        g(
            "switchyard_request_log_spill_bytes",
            "Bytes in the request log spill file (and the one being replayed).",
            s.spill.bytes.load(Ordering::Relaxed),
        );
    }
    r.gather()
}

/// The method as a bounded label.
fn method_label(m: &actix_web::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{test_record, UpstreamFailure, Usage};
    use std::time::Duration;

    #[test]
    fn a_record_shows_up_in_the_exposition() {
        let m = Metrics::new();
        let mut r = test_record();
        r.model = Some("m1".into());
        r.endpoint = Some("vllm@127.0.0.1:1".into());
        r.attempts = 2;
        r.stream = true;
        r.latency = Duration::from_millis(120);
        r.ttfb = Some(Duration::from_millis(30));
        r.upstream_time = Duration::from_millis(100);
        r.usage = Some(Usage {
            prompt_tokens: 7,
            completion_tokens: 5,
            cached_tokens: 0,
            estimated: true,
        });
        r.upstream_errors.push(UpstreamFailure {
            endpoint: "vllm@127.0.0.1:2".into(),
            status: 502,
            error_type: "upstream_error",
        });
        m.observe(&r, Some(0.5));
        let mut media = test_record();
        media.op = ApiOp::Transcriptions;
        media.model = Some("whisper".into());
        media.audio_seconds = Some(12.5);
        m.observe(&media, None);
        let mut image = test_record();
        image.op = ApiOp::Images;
        image.model = Some("sdxl".into());
        image.images = Some(3);
        m.observe(&image, None);
        let mut video = test_record();
        video.op = ApiOp::Video;
        video.model = Some("wan".into());
        video.video_seconds = Some(8.0);
        // A job's end: its record carries the final status and how long it lived.
        video.video_job = Some(crate::record::VideoJobEnd {
            status: "completed",
            duration: std::time::Duration::from_secs(42),
        });
        m.observe(&video, None);
        // The table's counts replace the last scrape's: `queued` is gone, not stuck at 1.
        m.set_video_jobs(&[("wan".into(), "queued".into(), 1)]);
        m.set_video_jobs(&[("wan".into(), "in_progress".into(), 1)]);
        let mut limited = test_record();
        limited.outcome = "rate_limited";
        limited.status = 429;
        limited.error_code = Some("rate_limit_exceeded".into());
        limited.api_key_id = Some("team-a".into());
        m.observe(&limited, None);
        let text = m.render(None, None);
        for needle in [
            r#"switchyard_audio_seconds_total{direction="input",model="whisper"} 12.5"#,
            r#"switchyard_images_generated_total{model="sdxl"} 3"#,
            r#"switchyard_video_seconds_total{model="wan"} 8"#,
            r#"switchyard_video_jobs{model="wan",status="in_progress"} 1"#,
            r#"switchyard_video_job_duration_seconds_count{model="wan",outcome="completed"} 1"#,
            r#"switchyard_rate_limited_total{api_key_id="team-a",model="-",reason="rate_limit_exceeded"} 1"#,
            r#"switchyard_requests_total{backend="vllm@127.0.0.1:1",model="m1",op="chat_completions",outcome="success"} 1"#,
            r#"switchyard_tokens_total{backend="vllm@127.0.0.1:1",model="m1",type="completion"} 5"#,
            r#"switchyard_upstream_errors_total{backend="vllm@127.0.0.1:2",error_type="upstream_error",status_code="502"} 1"#,
            r#"switchyard_fallbacks_total{model="m1",outcome="success"} 1"#,
            r#"switchyard_cost_usd_total{api_key_id="-",model="m1"} 0.5"#,
            "switchyard_time_to_first_token_seconds_count",
            "switchyard_overhead_duration_seconds_sum",
            "switchyard_in_flight_requests",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert!(!text.contains(r#"switchyard_video_jobs{model="wan",status="queued"}"#));
    }

    /// Requests of many label sets, some repeated, with and without what adds series
    /// (attempts, a stream's first token, zero and non-zero token counts).
    fn varied_records() -> Vec<RequestRecord> {
        let mut records = Vec::new();
        for round in 0..3u64 {
            for (i, op) in [ApiOp::ChatCompletions, ApiOp::Embeddings]
                .into_iter()
                .enumerate()
            {
                for model in [None, Some("m1"), Some("m2")] {
                    for backend in [None, Some("vllm@h:1"), Some("ollama@h:2")] {
                        for outcome in ["success", "error", "canceled"] {
                            let mut r = test_record();
                            r.op = op;
                            r.model = model.map(str::to_string);
                            r.endpoint = backend.map(str::to_string);
                            r.outcome = outcome;
                            r.attempts = ((round + i as u64) % 3) as u32;
                            r.stream = round % 2 == 0;
                            r.ttfb = (round != 1).then(|| Duration::from_millis(5 + round));
                            r.latency = Duration::from_millis(20 + round * 7);
                            r.upstream_time = Duration::from_millis(10 + round);
                            r.usage = (round != 2).then_some(Usage {
                                prompt_tokens: round * 3,
                                completion_tokens: 4,
                                cached_tokens: round,
                                estimated: round == 1,
                            });
                            records.push(r);
                        }
                    }
                }
            }
        }
        records
    }

    #[test]
    fn cached_series_handles_expose_what_lookups_in_the_families_exposed() {
        let exposition = |bound: usize| {
            let mut m = Metrics::new();
            m.series = series::SeriesCache::with_bound(bound);
            for r in varied_records() {
                m.observe(&r, Some(0.25));
            }
            assert!(m.series.len() <= bound);
            let mut text = Vec::new();
            TextEncoder::new()
                .encode(&m.registry.gather(), &mut text)
                .unwrap();
            String::from_utf8(text).unwrap()
        };
        // Bound 0 caches nothing: every handle is looked up in its family, as before.
        let uncached = exposition(0);
        assert!(uncached
            .contains(r#"switchyard_tokens_total{backend="vllm@h:1",model="m1",type="cached"} 6"#));
        assert!(
            !uncached.contains(r#"type="cached"} 0"#),
            "zero counts add no series"
        );
        for bound in [1, 7, series::MAX_CACHED_LABEL_SETS] {
            assert_eq!(exposition(bound), uncached, "bound {bound}");
        }
    }
}
