//! Runtime settings read from the environment (after `.env`), each with a default. Every
//! variable is listed in `.env.example` and docs/configuration.md.

use std::time::Duration;

use crate::config::number_var;
use crate::config::VarSource;
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
            max_upstream_connections: 0,
            client_request_timeout: Duration::from_secs(10),
            client_body_timeout: Duration::from_secs(60),
            discovery_interval: Duration::from_secs(60),
            media: crate::media::MediaSettings::default(),
        }
    }
}

impl Settings {
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
        if let Some(v) = num("WORKERS", 1.0) {
            s.workers = Some(v as usize);
        }
        if let Some(v) = num("MAX_UPSTREAM_CONNECTIONS", 0.0) {
            s.max_upstream_connections = v as usize;
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
