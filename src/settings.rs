//! Runtime settings read from the environment (after `.env`), each with a default. Every
//! variable is listed in `.env.example` and docs/configuration.md.

use std::time::Duration;

use crate::config::VarSource;
use crate::config::{bool_var, number_var};
use crate::mesh::{CircuitSettings, ProbeSettings};
use crate::relay::{RetryPolicy, Timeouts};

#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    /// Bytes of JSON request bodies held (read and parsed) at once across the router.
    pub max_inflight_json_bytes: usize,
    pub max_response_bytes: usize,
    /// Largest single SSE event accepted from a backend.
    pub max_sse_event_bytes: usize,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub connect_timeout: Duration,
    pub probe: ProbeSettings,
    pub circuit: CircuitSettings,
    pub workers: Option<usize>,
    /// Inbound client connections held at once, across all workers (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Upstream connections per worker (0 = unlimited).
    pub max_upstream_connections: usize,
    /// Time a client has to send its request head (slow-loris defence; actix answers 408).
    pub client_request_timeout: Duration,
    /// Time a client has to send a whole request body.
    pub client_body_timeout: Duration,
    /// Between two `/v1/models` queries of a `discover: true` route.
    pub discovery_interval: Duration,
    /// Audio uploads and video jobs.
    pub media: crate::media::MediaSettings,
    /// `ALLOW_UNAUTHENTICATED=true`: with no client key, `serve` may still listen on a
    /// non-loopback address (an open `/v1` is then the operator's decision, not a default).
    pub allow_unauthenticated: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: 20 * 1024 * 1024,
            // Five bodies at the default size limit: a chat body costs about its own size,
            // so the router's peak stays well under 200 MiB however large the bodies.
            max_inflight_json_bytes: 100 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            max_sse_event_bytes: 4 * 1024 * 1024,
            retry: RetryPolicy::default(),
            timeouts: Timeouts::default(),
            connect_timeout: Duration::from_secs(10),
            probe: ProbeSettings::default(),
            circuit: CircuitSettings::default(),
            workers: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_upstream_connections: 0,
            client_request_timeout: Duration::from_secs(10),
            client_body_timeout: Duration::from_secs(60),
            discovery_interval: Duration::from_secs(60),
            media: crate::media::MediaSettings::default(),
            allow_unauthenticated: false,
        }
    }
}

/// Inbound connections across all workers. Each costs a file descriptor (two while it waits
/// on a backend) and some buffers: 10k stays well inside the usual 64k descriptor limit of
/// containers and systemd services while being far above what one replica's backends serve.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// actix-web's own ceiling on worker threads.
const MAX_WORKERS: usize = 512;

impl Settings {
    /// HTTP workers actually started: `WORKERS`, else one per CPU as actix-web decides.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, std::num::NonZeroUsize::get)
                .min(MAX_WORKERS)
        })
    }

    /// actix-web caps connections per worker; `MAX_CONNECTIONS` is a total. Each worker gets
    /// an equal share rounded down (so the total is never exceeded) but at least one.
    pub fn connections_per_worker(&self) -> usize {
        (self.max_connections / self.worker_count().max(1)).max(1)
    }

    /// Read from `vars`; every malformed value is reported, none silently ignored.
    pub fn from_vars(vars: &dyn VarSource) -> Result<Settings, Vec<String>> {
        let mut s = Settings::default();
        let mut errors = Vec::new();
        let mut num = |name: &str, min: f64| number_var(vars, name, min, &mut errors);
        let secs = |v: f64| Duration::from_secs_f64(v);
        if let Some(v) = num("MAX_REQUEST_BODY_MB", 0.001) {
            s.max_body_bytes = (v * 1024.0 * 1024.0) as usize;
        }
        if let Some(v) = num("MAX_INFLIGHT_JSON_MB", 1.0) {
            s.max_inflight_json_bytes = (v * 1024.0 * 1024.0) as usize;
        }
        if let Some(v) = num("MAX_ATTEMPTS", 1.0) {
            s.retry.max_attempts = v as u32;
        }
        if let Some(v) = num("UPSTREAM_CONNECT_TIMEOUT_SECS", 0.01) {
            s.connect_timeout = secs(v);
            s.timeouts.connect = secs(v);
        }
        if let Some(v) = num("UPSTREAM_TOTAL_TIMEOUT_SECS", 0.01) {
            s.timeouts.total = secs(v);
        }
        if let Some(v) = num("UPSTREAM_HEADERS_TIMEOUT_SECS", 0.01) {
            s.timeouts.headers = secs(v);
        }
        if let Some(v) = num("UPSTREAM_IDLE_TIMEOUT_SECS", 0.01) {
            s.timeouts.idle = secs(v);
        }
        if let Some(v) = num("HEALTH_CHECK_INTERVAL_SECS", 0.05) {
            s.probe.interval = secs(v);
        }
        if let Some(v) = num("HEALTH_CHECK_TIMEOUT_SECS", 0.01) {
            s.probe.timeout = secs(v);
        }
        if let Some(v) = num("HEALTH_UNHEALTHY_THRESHOLD", 1.0) {
            s.probe.unhealthy_threshold = v as u32;
        }
        if let Some(v) = num("CIRCUIT_FAILURE_THRESHOLD", 1.0) {
            s.circuit.failure_threshold = v as u32;
        }
        if let Some(v) = num("CIRCUIT_COOLDOWN_SECS", 0.01) {
            s.circuit.cooldown = secs(v);
        }
        if let Some(v) = num("CIRCUIT_ERROR_RATIO", 0.0) {
            s.circuit.error_ratio = v.min(1.0);
        }
        if let Some(v) = num("CIRCUIT_MIN_REQUESTS", 1.0) {
            s.circuit.min_requests = v as u32;
        }
        if let Some(v) = num("CIRCUIT_WINDOW_SECS", 0.1) {
            s.circuit.window = secs(v);
        }
        let budget_rate = num("RETRY_BUDGET_PER_SEC", 0.0);
        let budget_burst = num("RETRY_BUDGET_BURST", 1.0);
        if budget_rate.is_some() || budget_burst.is_some() {
            let rate = budget_rate.unwrap_or(20.0);
            let burst = budget_burst.unwrap_or((rate * 2.0).max(1.0));
            s.retry.budget =
                std::sync::Arc::new(crate::relay::budget::RetryBudget::new(rate, burst));
        }
        if let Some(v) = num("CLIENT_REQUEST_TIMEOUT_SECS", 0.1) {
            s.client_request_timeout = secs(v);
        }
        if let Some(v) = num("CLIENT_BODY_TIMEOUT_SECS", 0.1) {
            s.client_body_timeout = secs(v);
        }
        if let Some(v) = num("DISCOVERY_INTERVAL_SECS", 0.1) {
            s.discovery_interval = secs(v);
        }
        let workers = num("WORKERS", 1.0);
        if let Some(v) = num("MAX_CONNECTIONS", 1.0) {
            s.max_connections = v.min(u32::MAX as f64) as usize;
        }
        if let Some(v) = num("MAX_UPSTREAM_CONNECTIONS", 0.0) {
            s.max_upstream_connections = v as usize;
        }
        match workers {
            // actix-web panics at start beyond its own limit.
            Some(v) if v > MAX_WORKERS as f64 => {
                errors.push(format!("WORKERS={v}: expected at most {MAX_WORKERS}"));
            }
            Some(v) => s.workers = Some(v as usize),
            None => {}
        }
        if let Some(v) = bool_var(vars, "ALLOW_UNAUTHENTICATED", &mut errors) {
            s.allow_unauthenticated = v;
        }
        match crate::media::MediaSettings::from_vars(vars) {
            Ok(media) => s.media = media,
            Err(e) => errors.extend(e),
        }
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn max_connections_is_a_total_split_across_workers() {
        // (MAX_CONNECTIONS, WORKERS, per worker)
        let table = [
            ("10000", "4", 2500),
            ("10", "3", 3),
            ("2", "1", 2),
            // Fewer connections than workers: every worker still takes one.
            ("2", "8", 1),
            ("1", "512", 1),
        ];
        for (total, workers, per_worker) in table {
            let s = Settings::from_vars(&vars(&[("MAX_CONNECTIONS", total), ("WORKERS", workers)]))
                .unwrap();
            assert_eq!(
                s.connections_per_worker(),
                per_worker,
                "{total} over {workers}"
            );
            assert!(per_worker * s.worker_count() <= s.max_connections.max(s.worker_count()));
        }
        let s = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn bad_connection_and_worker_counts_are_reported() {
        for (name, value) in [
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "-5"),
            ("MAX_CONNECTIONS", "many"),
            ("WORKERS", "0"),
            ("WORKERS", "513"),
        ] {
            let errors = Settings::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(name)),
                "{name}={value}: {errors:?}"
            );
        }
    }
}
