//! The record every request leaves behind, and where it goes. A [`RequestCtx`] travels with the
//! request (into the response stream when there is one) and hands its record to the sink when
//! it is dropped, so a record is written on every path, client disconnects included.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeSeed;
use serde::Serialize;

pub mod usage_json;

use crate::config::ModelType;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};
use crate::quota::{LimitCharge, Quotas};

/// Token (or other unit) counts of one request.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the backend's cache (`prompt_tokens_details.cached_tokens`);
    /// part of `prompt_tokens`, priced at `input_cache_reads` when that is set.
    #[serde(default)]
    pub cached_tokens: u64,
    /// True when the backend reported nothing and the router counted for itself.
    pub estimated: bool,
}

impl Usage {
    pub fn total(&self) -> u64 {
        // Saturating: the counts come from backends and may be absurd.
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Read an OpenAI `usage` object (`prompt_tokens`/`completion_tokens`, or the
    /// `input_tokens`/`output_tokens` spelling of newer endpoints). Anthropic's counts cache
    /// reads and writes apart from `input_tokens`: they are added to the prompt here, the
    /// reads also counted as cached.
    pub fn from_json(v: &serde_json::Value) -> Option<Usage> {
        // One reading for a `Value` and for an answer's raw `usage` text (`read_usage`).
        usage_json::UsageSeed::AS_VALUE
            .deserialize(v)
            .ok()
            .and_then(|fields| fields.usage())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub request_id: String,
    #[serde(skip)]
    pub started_at: SystemTime,
    pub op: ApiOp,
    /// Public model id (after alias resolution), when the model was known.
    pub model: Option<String>,
    pub model_type: Option<ModelType>,
    pub route: Option<String>,
    pub endpoint: Option<String>,
    pub status: u16,
    /// success | error | canceled | rate_limited
    pub outcome: &'static str,
    pub latency: Duration,
    /// Until the first byte (or token) reached the client.
    pub ttfb: Option<Duration>,
    pub usage: Option<Usage>,
    pub attempts: u32,
    pub stream: bool,
    pub error: Option<String>,
    /// The `code` of the error answered, when there was one.
    pub error_code: Option<String>,
    /// The caller's key name or short digest id (never the key), when a key was presented.
    pub api_key_id: Option<String>,
    /// Seconds of audio produced (speech) or consumed (transcription, translation).
    pub audio_seconds: Option<f64>,
    /// Images generated.
    pub images: Option<u32>,
    /// Seconds of video generated.
    pub video_seconds: Option<f64>,
    /// Time spent waiting on backends (every attempt, retry back-off, and the relay of a
    /// stream after its first token); the rest of `latency` is the router's own overhead.
    pub upstream_time: Duration,
    /// Failed attempts (including the final one when it failed upstream).
    pub upstream_errors: Vec<UpstreamFailure>,
    /// The record of a video job's end (not of its create request): its final status and
    /// how long it took from creation.
    #[serde(skip)]
    pub video_job: Option<VideoJobEnd>,
    /// The model and route that served the request, for pricing.
    #[serde(skip)]
    pub served_by: Option<ServedBy>,
    /// What the request reserved of its key's tokens/minute and budget, settled with its real
    /// usage and cost by the sink that prices it.
    #[serde(skip)]
    pub key_charge: ChargeSlot,
}

/// A request's [`LimitCharge`], handed over once: records are `Clone`, a charge is settled once.
#[derive(Clone, Default)]
pub struct ChargeSlot(Option<Arc<std::sync::Mutex<Option<LimitCharge>>>>);

impl ChargeSlot {
    pub fn new(charge: LimitCharge) -> ChargeSlot {
        ChargeSlot(Some(Arc::new(std::sync::Mutex::new(Some(charge)))))
    }

    pub fn take(&self) -> Option<LimitCharge> {
        let slot = self.0.as_ref()?;
        slot.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for ChargeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() { "none" } else { "held" })
    }
}

/// One failed upstream attempt, with bounded labels only.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamFailure {
    /// Endpoint name (`kind@host:port`).
    pub endpoint: String,
    /// Status the router derived from the failure (502, 504, 429, or the backend's 4xx).
    pub status: u16,
    /// The router's error code (`upstream_timeout`, `upstream_unreachable`, …) or
    /// `upstream_client_error` for a backend's own 4xx.
    pub error_type: &'static str,
}

impl UpstreamFailure {
    /// Sort an attempt's error: `None` when the router itself refused (bad input, …).
    pub fn classify(endpoint: &str, error: &ApiError) -> Option<UpstreamFailure> {
        use ErrorCode as C;
        let error_type = match &error.code {
            C::Backend(backend) if backend.status.is_client_error() => "upstream_client_error",
            // A backend's error event inside a stream: its own code is not a label we trust.
            C::Backend(_) => "upstream_error",
            C::UpstreamTimeout => "upstream_timeout",
            C::UpstreamUnreachable => "upstream_unreachable",
            C::UpstreamTlsError => "upstream_tls_error",
            C::UpstreamError | C::UpstreamEmptyResponse => "upstream_error",
            C::UpstreamRateLimited => "upstream_rate_limited",
            C::UpstreamUnavailable => "upstream_unavailable",
            C::UpstreamInvalidResponse => "upstream_invalid_response",
            C::UpstreamResponseTooLarge => "upstream_response_too_large",
            C::UpstreamAuthFailed => "upstream_auth_failed",
            _ => return None,
        };
        Some(UpstreamFailure {
            endpoint: endpoint.to_string(),
            status: error.status().as_u16(),
            error_type,
        })
    }
}

/// How a video job ended, for `switchyard_video_job_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoJobEnd {
    /// `completed`, `failed`, `canceled`, …: the job's final status.
    pub status: &'static str,
    pub duration: Duration,
}

/// Which model definition and route answered; cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct ServedBy {
    pub model: Arc<crate::config::ModelDef>,
    pub route_index: usize,
}

impl ServedBy {
    pub fn route(&self) -> Option<&crate::config::RouteDef> {
        self.model.routes.get(self.route_index)
    }
}

/// Requests whose context is alive (handlers running, streams relaying), for the in-flight
/// gauge and for graceful shutdown, which waits for it to reach zero before the last flush.
static LIVE_REQUESTS: AtomicI64 = AtomicI64::new(0);

pub fn live_requests() -> i64 {
    LIVE_REQUESTS.load(Ordering::Acquire)
}

impl RequestRecord {
    /// An empty record left behind in a context whose record was handed to the sink.
    fn placeholder(op: ApiOp) -> RequestRecord {
        RequestRecord {
            request_id: String::new(),
            started_at: SystemTime::UNIX_EPOCH,
            op,
            model: None,
            model_type: None,
            route: None,
            endpoint: None,
            status: 0,
            outcome: "canceled",
            latency: Duration::ZERO,
            ttfb: None,
            usage: None,
            attempts: 0,
            stream: false,
            error: None,
            error_code: None,
            api_key_id: None,
            audio_seconds: None,
            images: None,
            video_seconds: None,
            upstream_time: Duration::ZERO,
            upstream_errors: Vec::new(),
            video_job: None,
            served_by: None,
            key_charge: ChargeSlot::default(),
        }
    }
}

/// Where finished records go (logs now; the accounting layer adds storage and metrics).
pub trait RecordSink: Send + Sync {
    fn record(&self, record: RequestRecord);
}

/// The default sink: one structured log line per request.
pub struct LogSink;

impl RecordSink for LogSink {
    fn record(&self, r: RequestRecord) {
        LogSink::write_line(&r);
    }
}

impl LogSink {
    /// The request's log line, for sinks that go on to consume the record themselves.
    pub fn write_line(r: &RequestRecord) {
        tracing::info!(
            request_id = %r.request_id,
            op = r.op.as_str(),
            model = r.model.as_deref().unwrap_or("-"),
            route = r.route.as_deref().unwrap_or("-"),
            status = r.status,
            outcome = r.outcome,
            latency_ms = r.latency.as_secs_f64() * 1000.0,
            ttfb_ms = r.ttfb.map(|d| d.as_secs_f64() * 1000.0),
            prompt_tokens = r.usage.map(|u| u.prompt_tokens),
            completion_tokens = r.usage.map(|u| u.completion_tokens),
            attempts = r.attempts,
            key = r.api_key_id.as_deref().unwrap_or("-"),
            "request finished"
        );
    }
}

/// The per-request bookkeeping object.
pub struct RequestCtx {
    pub record: RequestRecord,
    /// The authenticated caller, when a key was presented (model lists are checked on it).
    pub caller: Option<Arc<crate::caller::Caller>>,
    /// Where endpoints' shared limits and the caller's tokens/minute and budget are taken.
    pub quotas: Option<Quotas>,
    /// The request's spans (inert when tracing is off).
    pub trace: crate::telemetry::RequestTrace,
    started: Instant,
    sink: Arc<dyn RecordSink>,
    finished: bool,
}

impl RequestCtx {
    pub fn new(request_id: String, op: ApiOp, sink: Arc<dyn RecordSink>) -> RequestCtx {
        LIVE_REQUESTS.fetch_add(1, Ordering::AcqRel);
        RequestCtx {
            record: RequestRecord {
                request_id,
                started_at: SystemTime::now(),
                ..RequestRecord::placeholder(op)
            },
            caller: None,
            quotas: None,
            trace: crate::telemetry::RequestTrace::default(),
            started: Instant::now(),
            sink,
            finished: false,
        }
    }

    pub fn request_id(&self) -> &str {
        &self.record.request_id
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn mark_first_byte(&mut self) {
        if self.record.ttfb.is_none() {
            let ttfb = self.started.elapsed();
            self.record.ttfb = Some(ttfb);
            self.trace.first_token(ttfb);
        }
    }

    /// Set the final status and outcome; the record is written when the context is dropped.
    pub fn complete(&mut self, status: u16, outcome: &'static str) {
        self.record.status = status;
        self.record.outcome = outcome;
    }

    pub fn fail(&mut self, error: &ApiError) {
        let status = error.status().as_u16();
        self.record.status = status;
        self.record.outcome = if status == 429 {
            "rate_limited"
        } else {
            "error"
        };
        self.record.error = Some(error.message.clone());
        self.record.error_code = error.wire_code().map(str::to_string);
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.record.status == 0 {
            // Dropped before an answer: the client went away (nginx's 499).
            self.record.status = 499;
            self.record.outcome = "canceled";
        }
        self.record.latency = self.started.elapsed();
        if self.record.ttfb.is_none() && self.record.status != 499 {
            // A non-streamed answer's first byte leaves with the whole of it.
            self.record.ttfb = Some(self.record.latency);
        }
        if self.trace.is_on() {
            self.trace.finish(trace_facts(&self.record));
        }
        let op = self.record.op;
        let record = std::mem::replace(&mut self.record, RequestRecord::placeholder(op));
        self.sink.record(record);
        // After the sink took the record: shutdown waits for zero, then flushes.
        LIVE_REQUESTS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The finished record as the server span's attributes.
fn trace_facts(r: &RequestRecord) -> crate::telemetry::RequestFacts<'_> {
    let route = r.served_by.as_ref().and_then(ServedBy::route);
    crate::telemetry::RequestFacts {
        op: r.op.as_str(),
        request_id: &r.request_id,
        model: r.model.as_deref(),
        response_model: route.map(|route| route.provider_model_id.as_str()),
        provider: route.map(|route| route.kind.as_str()),
        policy: r
            .served_by
            .as_ref()
            .map(|s| s.model.policy.map_or("default", |p| p.as_str())),
        route: r.route.as_deref(),
        endpoint: r.endpoint.as_deref(),
        attempts: r.attempts,
        status: r.status,
        outcome: r.outcome,
        input_tokens: r.usage.map(|u| u.prompt_tokens),
        output_tokens: r.usage.map(|u| u.completion_tokens),
        stream: r.stream,
        error_code: r.error_code.as_deref(),
        error: r.error.as_deref(),
    }
}

/// A blank record for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_record() -> RequestRecord {
    RequestRecord {
        request_id: "req_test".into(),
        started_at: SystemTime::now(),
        status: 200,
        outcome: "success",
        ..RequestRecord::placeholder(ApiOp::ChatCompletions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::StatusCode;

    #[test]
    fn usage_reads_openai_and_anthropic_spellings() {
        let table = [
            (
                serde_json::json!({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 4}}),
                (10, 2, 4),
            ),
            (
                serde_json::json!({"input_tokens": 6, "output_tokens": 3}),
                (6, 3, 0),
            ),
            // Anthropic: input_tokens excludes the cache; reads are cached prompt tokens.
            (
                serde_json::json!({"input_tokens": 6, "output_tokens": 3, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 5}),
                (31, 3, 20),
            ),
        ];
        for (json, (prompt, completion, cached)) in table {
            let u = Usage::from_json(&json).unwrap();
            assert_eq!(
                (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
                (prompt, completion, cached),
                "{json}"
            );
        }
        assert!(Usage::from_json(&serde_json::json!({"cache_read_input_tokens": 1})).is_none());
    }

    /// The classification as it was when it compared code strings: a backend's 4xx passed
    /// through, then the router's upstream codes by name, then any other 502 or 504.
    fn by_code_string(error: &ApiError) -> Option<&'static str> {
        const KNOWN: [&str; 9] = [
            "upstream_timeout",
            "upstream_unreachable",
            "upstream_tls_error",
            "upstream_error",
            "upstream_rate_limited",
            "upstream_unavailable",
            "upstream_invalid_response",
            "upstream_response_too_large",
            "upstream_auth_failed",
        ];
        let status = error.status().as_u16();
        if matches!(error.code, ErrorCode::Backend(_)) && (400..500).contains(&status) {
            return Some("upstream_client_error");
        }
        let code = error.wire_code().unwrap_or("");
        match KNOWN.iter().find(|k| **k == code) {
            Some(known) => Some(known),
            None if status == 502 || status == 504 => Some("upstream_error"),
            None => None,
        }
    }

    #[test]
    fn upstream_failures_are_labelled_as_when_codes_were_strings() {
        let backend = |status, code: Option<&str>| {
            ApiError::from_backend(status, "t".into(), code.map(str::to_string), "m")
        };
        let errors = crate::error::tests::ALL
            .iter()
            .map(|code| ApiError::new(code.clone(), "m"))
            .chain([
                backend(StatusCode::UNPROCESSABLE_ENTITY, None),
                backend(StatusCode::BAD_REQUEST, Some("upstream_timeout")),
                // A backend's error event inside a stream, with the codes backends send.
                backend(StatusCode::BAD_GATEWAY, Some("upstream_error")),
                backend(StatusCode::BAD_GATEWAY, Some("context_length_exceeded")),
            ]);
        for error in errors {
            let new = UpstreamFailure::classify("e", &error).map(|f| f.error_type);
            assert_eq!(new, by_code_string(&error), "{:?}", error.code);
        }
    }

    #[test]
    fn a_backend_cannot_pick_the_routers_label_with_its_own_code() {
        let error = ApiError::from_backend(
            StatusCode::BAD_GATEWAY,
            "t".into(),
            Some("upstream_auth_failed".into()),
            "m",
        );
        let label = UpstreamFailure::classify("e", &error).map(|f| f.error_type);
        assert_eq!(label, Some("upstream_error"));
    }
}
