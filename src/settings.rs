//! Runtime settings read from the environment (after `.env`), each with a default. Every
//! variable is listed in `.env.example` and docs/configuration.md.
//!
//! [`Settings::from_env`] is the one place the router reads its environment: `serve`, `demo`
//! and `check-config` all call it, so a value `check-config` accepts is one `serve` accepts.
//! What stays outside: the keys (`auth::KeyStore::load`) and `${VAR}` references in the
//! configuration files, which are re-read on every reload, and `RUST_LOG` (tracing's own).

use std::path::PathBuf;
use std::time::Duration;

use crate::accounting::settings::ObservabilitySettings;
use crate::config::{bool_var, number_var};
use crate::config::{Strictness, VarSource};
use crate::mesh::{CircuitSettings, ProbeSettings};
use crate::relay::{RetryPolicy, Timeouts};
use crate::replica::ReplicaName;
use crate::store::DbSettings;

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
    /// How long the route of a natively stored response is remembered for its follow-ups
    /// (`RESPONSE_ROUTES_TTL_DAYS`).
    pub response_routes_ttl: Duration,
    /// Audio uploads and video jobs.
    pub media: crate::media::MediaSettings,
    /// `ALLOW_UNAUTHENTICATED=true`: with no client key, `serve` may still listen on a
    /// non-loopback address (an open `/v1` is then the operator's decision, not a default).
    pub allow_unauthenticated: bool,
    /// `HOST`, `PORT` (the command line's `--host`/`--port` win over them).
    pub listen: ListenSettings,
    /// `METRICS_PUBLIC`, `KEYS_FILE`.
    pub auth: AuthSettings,
    /// `USE_SQLITE_LOG`, `SQLITE_DB_PATH`, `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`.
    pub db: DbSettings,
    /// The request log, its spill file, the shutdown grace.
    pub observability: ObservabilitySettings,
    /// `REPLICA_ID`, `HOSTNAME`.
    pub replica: ReplicaName,
    /// `CONFIG_LENIENT` (or `--lenient`): unknown keys in the configuration files are warnings.
    pub config_strictness: Strictness,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_*`, `OTEL_SDK_DISABLED`, `OTEL_GENAI_CAPTURE_CONTENT`: whether
    /// traces are exported (the SDK reads the rest of the `OTEL_*` variables itself).
    pub traces: crate::telemetry::TraceSettings,
    /// `OFFLOAD`: routes on `LOCAL_BASE_URL` are out of rotation (shown by `/admin/routing`;
    /// the configuration loader applies it to the routes).
    pub offload: bool,
    /// `BACKEND_KIND`, `BACKEND_BASE_URL`, `MODEL_NAME`: the single-backend gateway's engine,
    /// whose models the configuration loader adds to models.yaml's (or serves alone).
    pub single_backend: Option<crate::config::SingleBackend>,
    /// `QUOTA_*`: how limits are shared with other replicas (docs/limits.md).
    pub quota: crate::quota::QuotaSettings,
    /// `UPSTREAM_CA_FILE` and the egress proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`, lower case winning); the connect timeout is filled in by
    /// [`Settings::outbound_settings`].
    pub outbound: crate::relay::client::OutboundSettings,
    /// `TLS_CERT_FILE` + `TLS_KEY_FILE`: serve HTTPS (and HTTP/2) with this certificate,
    /// loaded and checked here, re-read on reload. `None`: plain HTTP.
    pub tls: Option<std::sync::Arc<crate::tls::ServingCert>>,
    /// `HEALTH_CHECK_INTERVAL_SECS` was set: it wins over models.yaml's `health_interval`.
    probe_interval_from_env: bool,
}

/// Where `serve` listens, before the exposure decision (see `listen::listen_host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSettings {
    /// `HOST`; `None` when unset or blank (as a `.env` template leaves it).
    pub host: Option<String>,
    /// `PORT`, default 8080; 0 picks a free port.
    pub port: u16,
}

impl Default for ListenSettings {
    fn default() -> Self {
        ListenSettings {
            host: None,
            port: 8080,
        }
    }
}

/// The auth settings that are not keys (those are read, and re-read on reload, by
/// `auth::KeyStore::load`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    /// `METRICS_PUBLIC=true`: `/metrics` needs no key.
    pub metrics_public: bool,
    /// `KEYS_FILE`, else `config/keys.yaml` when it exists.
    pub keys_file: Option<PathBuf>,
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line.
    Json,
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
            // OpenAI keeps stored responses 30 days.
            response_routes_ttl: Duration::from_secs(30 * 86_400),
            media: crate::media::MediaSettings::default(),
            allow_unauthenticated: false,
            listen: ListenSettings::default(),
            auth: AuthSettings::default(),
            db: DbSettings::default(),
            observability: ObservabilitySettings::default(),
            replica: ReplicaName::default(),
            config_strictness: Strictness::default(),
            log_format: LogFormat::default(),
            traces: crate::telemetry::TraceSettings::default(),
            offload: false,
            single_backend: None,
            quota: crate::quota::QuotaSettings::default(),
            outbound: crate::relay::client::OutboundSettings::default(),
            tls: None,
            probe_interval_from_env: false,
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

    /// Every runtime setting, read from `vars` (the process environment, or a map in tests).
    /// Every malformed value is reported, all at once; none is silently ignored or defaulted.
    pub fn from_env(vars: &dyn VarSource) -> Result<Settings, Vec<String>> {
        let mut s = Settings::default();
        let mut errors = Vec::new();
        s.read_limits(vars, &mut errors);
        s.read_server(vars, &mut errors);
        s.db = DbSettings::read(vars, &mut errors);
        match ObservabilitySettings::from_vars(vars, &s.db) {
            Ok(observability) => s.observability = observability,
            Err(e) => errors.extend(e),
        }
        match crate::media::MediaSettings::from_vars(vars) {
            Ok(media) => s.media = media,
            Err(e) => errors.extend(e),
        }
        match crate::config::SingleBackend::from_vars(vars) {
            Ok(backend) => s.single_backend = backend,
            Err(e) => errors.extend(e),
        }
        s.read_outbound(vars, &mut errors);
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors)
        }
    }

    /// The health probes of a registry whose models.yaml sets `health_interval` (or not):
    /// `HEALTH_CHECK_INTERVAL_SECS`, when set, wins over the file, which wins over the default.
    pub fn probe_settings(&self, file_interval: Option<Duration>) -> ProbeSettings {
        let mut probe = self.probe;
        if let Some(interval) = file_interval.filter(|_| !self.probe_interval_from_env) {
            probe.interval = interval;
        }
        probe
    }

    /// The outbound clients' settings, with the router-wide connect timeout.
    pub fn outbound_settings(&self) -> crate::relay::client::OutboundSettings {
        crate::relay::client::OutboundSettings {
            connect_timeout: self.connect_timeout,
            ..self.outbound.clone()
        }
    }

    /// `UPSTREAM_CA_FILE` (read now: a bad bundle stops the start) and the proxy variables.
    fn read_outbound(&mut self, vars: &dyn VarSource, errors: &mut Vec<String>) {
        if let Some(path) = vars
            .get("UPSTREAM_CA_FILE")
            .filter(|v| !v.trim().is_empty())
        {
            let path = std::path::PathBuf::from(path.trim());
            match crate::config::read_ca_bundle(&path) {
                Ok(_) => self.outbound.ca_file = Some(path),
                Err(e) => errors.push(format!("UPSTREAM_CA_FILE: {e}")),
            }
        }
        match crate::relay::proxy_env::EnvProxies::from_vars(|name| vars.get(name)) {
            Ok(proxies) => self.outbound.proxies = std::sync::Arc::new(proxies),
            Err(e) => errors.push(e),
        }
    }

    /// Body sizes, time limits, probes, circuits, retries, connections and workers.
    fn read_limits(&mut self, vars: &dyn VarSource, errors: &mut Vec<String>) {
        let s = self;
        let mut num = |name: &str, min: f64| number_var(vars, name, min, errors);
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
            s.probe_interval_from_env = true;
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
        if let Some(v) = num("RESPONSE_ROUTES_TTL_DAYS", 0.001) {
            s.response_routes_ttl = secs(v.min(3650.0) * 86_400.0);
        }
        if let Some(v) = num("QUOTA_LEASE_PERCENT", 0.01) {
            s.quota.lease_fraction = v.min(100.0) / 100.0;
        }
        if let Some(v) = num("QUOTA_LEASE_TTL_MS", 200.0) {
            s.quota.lease_ttl = Duration::from_millis(v as u64);
        }
        if let Some(v) = num("QUOTA_LEASE_WAIT_MS", 1.0) {
            s.quota.lease_wait = Duration::from_millis(v as u64);
        }
        if let Some(v) = num("QUOTA_LEASE_INTERVAL_MS", 10.0) {
            s.quota.lease_interval = Duration::from_millis(v as u64);
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
    }

    /// Where and how the router listens and logs, who may call it, how it names itself.
    fn read_server(&mut self, vars: &dyn VarSource, errors: &mut Vec<String>) {
        // A malformed switch is an error (reported), and reads as its default, off, meanwhile.
        self.allow_unauthenticated =
            bool_var(vars, "ALLOW_UNAUTHENTICATED", errors).unwrap_or(false);
        self.auth.metrics_public = bool_var(vars, "METRICS_PUBLIC", errors).unwrap_or(false);
        self.offload = bool_var(vars, "OFFLOAD", errors).unwrap_or(false);
        self.auth.keys_file = crate::auth::keys_file_path(vars);
        self.listen.host = vars
            .get("HOST")
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        if let Some(port) = port_var(vars.get("PORT"), "PORT", errors) {
            self.listen.port = port;
        }
        self.replica = ReplicaName::from_vars(vars);
        match Strictness::from_vars(vars) {
            Ok(strictness) => self.config_strictness = strictness,
            Err(e) => errors.push(e.to_string()),
        }
        match log_format(vars) {
            Ok(format) => self.log_format = format,
            Err(e) => errors.push(e),
        }
        // The files are read now, so a missing file or a key that is not the certificate's
        // stops the start (and fails check-config) instead of the first handshake.
        let tls = crate::tls::TlsFiles::from_vars(vars)
            .and_then(|files| files.map(crate::tls::ServingCert::load).transpose());
        match tls {
            Ok(cert) => self.tls = cert.map(std::sync::Arc::new),
            Err(e) => errors.push(e),
        }
        self.traces = crate::telemetry::TraceSettings::from_vars(|name| vars.get(name));
    }
}

/// The TCP port `raw` names (0 = any free one); a malformed value is added to `errors`, and
/// `None`.
fn port_var(raw: Option<String>, name: &str, errors: &mut Vec<String>) -> Option<u16> {
    let raw = raw?;
    match raw.trim().parse::<u16>() {
        Ok(port) => Some(port),
        Err(_) => {
            errors.push(format!(
                "{name}={raw:?}: expected a port number from 0 to 65535"
            ));
            None
        }
    }
}

/// `LOG_FORMAT`: `json`, or `text` (the default, also when blank).
pub fn log_format(vars: &dyn VarSource) -> Result<LogFormat, String> {
    let Some(raw) = vars.get("LOG_FORMAT") else {
        return Ok(LogFormat::Text);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" | "" => Ok(LogFormat::Text),
        _ => Err(format!("LOG_FORMAT={raw:?}: expected json or text")),
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
            let s = Settings::from_env(&vars(&[("MAX_CONNECTIONS", total), ("WORKERS", workers)]))
                .unwrap();
            assert_eq!(
                s.connections_per_worker(),
                per_worker,
                "{total} over {workers}"
            );
            assert!(per_worker * s.worker_count() <= s.max_connections.max(s.worker_count()));
        }
        let s = Settings::from_env(&vars(&[])).unwrap();
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
            let errors = Settings::from_env(&vars(&[(name, value)])).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(name)),
                "{name}={value}: {errors:?}"
            );
        }
    }

    /// One malformed value per part of the environment `serve` reads, with what the message
    /// must name. Before `from_env`, `Settings::from_vars` saw only the first eleven or so of
    /// these; the database, request log, auth, listen, lenient and log-format values were
    /// read elsewhere (or not validated), so `check-config` passed them.
    const MALFORMED: &[(&str, &str)] = &[
        ("MAX_REQUEST_BODY_MB", "big"),
        ("MAX_ATTEMPTS", "0"),
        ("UPSTREAM_TOTAL_TIMEOUT_SECS", "-3"),
        ("HEALTH_CHECK_INTERVAL_SECS", "NaN"),
        ("CIRCUIT_ERROR_RATIO", "half"),
        ("WORKERS", "513"),
        ("ALLOW_UNAUTHENTICATED", "maybe"),
        ("MAX_UPLOAD_MB", "lots"),
        ("VIDEO_WEBHOOK_ALLOW_PRIVATE", "sometimes"),
        ("DATABASE_MAX_CONNECTIONS", "0"),
        ("USE_SQLITE_LOG", "nope"),
        ("LOG_BATCH_SIZE", "0"),
        ("REQUEST_LOG_ENABLED", "perhaps"),
        ("SHUTDOWN_GRACE_SECONDS", "soon"),
        ("METRICS_PUBLIC", "ture"),
        ("OFFLOAD", "2"),
        ("PORT", "80808"),
        ("CONFIG_LENIENT", "kinda"),
        ("LOG_FORMAT", "xml"),
        ("BACKEND_KIND", "triton"),
        ("TLS_CERT_FILE", "/nonexistent/server.crt"),
    ];

    #[test]
    fn from_env_reports_every_malformed_value_at_once() {
        let errors = Settings::from_env(&vars(MALFORMED)).unwrap_err();
        for (name, value) in MALFORMED {
            assert!(
                errors.iter().any(|e| e.starts_with(name)),
                "{name}={value} not reported: {errors:#?}"
            );
        }
        assert_eq!(errors.len(), MALFORMED.len(), "{errors:#?}");
    }

    proptest::proptest! {
        /// Any mix of malformed values gets exactly one message each, whatever else is wrong.
        #[test]
        fn each_malformed_value_is_reported_once_in_any_company(mask in 0u32..(1 << MALFORMED.len())) {
            let chosen: Vec<(&str, &str)> = MALFORMED
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, pair)| *pair)
                .collect();
            match Settings::from_env(&vars(&chosen)) {
                Ok(_) => proptest::prop_assert!(chosen.is_empty()),
                Err(errors) => {
                    proptest::prop_assert_eq!(errors.len(), chosen.len(), "{:?}", errors);
                    for (name, _) in &chosen {
                        proptest::prop_assert!(errors.iter().any(|e| e.starts_with(name)), "{}", name);
                    }
                }
            }
        }
    }

    #[test]
    fn a_malformed_database_url_is_a_settings_error_that_hides_the_password() {
        let postgres = |url: &str| {
            Settings::from_env(&vars(&[("USE_SQLITE_LOG", "false"), ("DATABASE_URL", url)]))
        };
        for url in [
            "postgres://user:hunter2@db:5432/app",
            "postgresql://user:hunter2@db/app?sslmode=require",
            "postgres://user:hunter2@db/app",
        ] {
            let s = postgres(url).unwrap_or_else(|e| panic!("{url}: {e:?}"));
            assert_eq!(s.db.url, url);
            assert!(
                !format!("{s:?}").contains("hunter2"),
                "Debug shows the password"
            );
        }
        for url in [
            "mysql://user:hunter2@db/app",
            "postgres://user:hunter2@db:notaport/app",
            "postgres://user:hunter2@db:99999/app",
            "postgres://user:hunter2@[db/app",
            "postgres://user:hunter2@db/app?sslmode=sometimes",
        ] {
            let errors = postgres(url).unwrap_err();
            assert_eq!(errors.len(), 1, "{url}: {errors:?}");
            assert!(errors[0].starts_with("DATABASE_URL"), "{url}: {errors:?}");
            assert!(!errors[0].contains("hunter2"), "{url}: {errors:?}");
        }
        let errors = Settings::from_env(&vars(&[("USE_SQLITE_LOG", "false")])).unwrap_err();
        assert!(errors[0].contains("needs DATABASE_URL"), "{errors:?}");
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let s = Settings::from_env(&vars(&[])).unwrap();
        assert_eq!(
            s.listen,
            ListenSettings {
                host: None,
                port: 8080
            }
        );
        assert!(!s.auth.metrics_public);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.config_strictness, Strictness::Strict);
        assert!(!s.allow_unauthenticated && !s.offload);
        assert_eq!(s.db.kind, crate::store::DbKind::Sqlite);
        assert!(s.observability.request_log);
        // Blank values (as a `.env` template leaves them) are "not set".
        let blank = [
            "HOST",
            "METRICS_PUBLIC",
            "OFFLOAD",
            "LOG_FORMAT",
            "KEYS_FILE",
        ];
        let pairs: Vec<(&str, &str)> = blank.iter().map(|name| (*name, " ")).collect();
        let s = Settings::from_env(&vars(&pairs)).unwrap();
        assert_eq!(s.listen.host, None);
        assert!(!s.auth.metrics_public && !s.offload);
        let s = Settings::from_env(&vars(&[
            ("HOST", " 0.0.0.0 "),
            ("PORT", "0"),
            ("METRICS_PUBLIC", "yes"),
            ("LOG_FORMAT", "JSON"),
            ("CONFIG_LENIENT", "true"),
            ("KEYS_FILE", "/etc/keys.yaml"),
            ("REPLICA_ID", "pod-1"),
        ]))
        .unwrap();
        assert_eq!(
            s.listen,
            ListenSettings {
                host: Some("0.0.0.0".into()),
                port: 0
            }
        );
        assert!(s.auth.metrics_public);
        assert_eq!(s.auth.keys_file, Some(PathBuf::from("/etc/keys.yaml")));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.config_strictness, Strictness::Lenient);
        assert_eq!(s.replica.identity(1), "pod-1");
    }

    #[test]
    fn the_health_interval_variable_wins_over_the_file_which_wins_over_the_default() {
        let file = Some(Duration::from_secs(3));
        let default = ProbeSettings::default().interval;
        // (environment, models.yaml's health_interval, interval used)
        let cases = [
            (&[][..], None, default),
            (&[][..], file, Duration::from_secs(3)),
            (
                &[("HEALTH_CHECK_INTERVAL_SECS", "0.5")][..],
                file,
                Duration::from_millis(500),
            ),
            (
                &[("HEALTH_CHECK_INTERVAL_SECS", "0.5")][..],
                None,
                Duration::from_millis(500),
            ),
        ];
        for (env, file_interval, expected) in cases {
            let s = Settings::from_env(&vars(env)).unwrap();
            assert_eq!(
                s.probe_settings(file_interval).interval,
                expected,
                "{env:?} {file_interval:?}"
            );
        }
    }
}
