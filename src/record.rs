//! The record every request leaves behind, and where it goes. A [`RequestCtx`] travels with the
//! request (into the response stream when there is one) and hands its record to the sink when
//! it is dropped, so a record is written on every path, client disconnects included.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::ModelType;
use crate::engines::ApiOp;

/// Token (or other unit) counts of one request.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when the backend reported nothing and the router counted for itself.
    pub estimated: bool,
}

impl Usage {
    pub fn total(&self) -> u64 {
        // Saturating: the counts come from backends and may be absurd.
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Read an OpenAI `usage` object (`prompt_tokens`/`completion_tokens`, or the
    /// `input_tokens`/`output_tokens` spelling of newer endpoints).
    pub fn from_json(v: &serde_json::Value) -> Option<Usage> {
        let obj = v.as_object()?;
        let get = |a: &str, b: &str| {
            obj.get(a)
                .or_else(|| obj.get(b))
                .and_then(serde_json::Value::as_u64)
        };
        let prompt = get("prompt_tokens", "input_tokens");
        let completion = get("completion_tokens", "output_tokens");
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        Some(Usage {
            prompt_tokens: prompt.unwrap_or(0),
            completion_tokens: completion.unwrap_or(0),
            estimated: false,
        })
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
    /// The caller's key name or short digest id (never the key), when a key was presented.
    pub api_key_id: Option<String>,
    /// Seconds of audio produced (speech) or transcribed (transcriptions, translations).
    pub audio_seconds: Option<f64>,
    /// Images generated.
    pub images: Option<u32>,
    /// Seconds of video generated (written by the video job runner on completion).
    pub video_seconds: Option<f64>,
}

/// Where finished records go (logs now; the accounting layer adds storage and metrics).
pub trait RecordSink: Send + Sync {
    fn record(&self, record: RequestRecord);
}

/// The default sink: one structured log line per request.
pub struct LogSink;

impl RecordSink for LogSink {
    fn record(&self, r: RequestRecord) {
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
            audio_seconds = r.audio_seconds,
            images = r.images,
            video_seconds = r.video_seconds,
            "request finished"
        );
    }
}

/// The per-request bookkeeping object.
pub struct RequestCtx {
    pub record: RequestRecord,
    /// The authenticated caller, when a key was presented (model lists are checked on it).
    pub caller: Option<Arc<crate::auth::Caller>>,
    started: Instant,
    sink: Arc<dyn RecordSink>,
    finished: bool,
}

impl RequestCtx {
    pub fn new(request_id: String, op: ApiOp, sink: Arc<dyn RecordSink>) -> RequestCtx {
        RequestCtx {
            record: RequestRecord {
                request_id,
                started_at: SystemTime::now(),
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
                api_key_id: None,
                audio_seconds: None,
                images: None,
                video_seconds: None,
            },
            caller: None,
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
            self.record.ttfb = Some(self.started.elapsed());
        }
    }

    /// Set the final status and outcome; the record is written when the context is dropped.
    pub fn complete(&mut self, status: u16, outcome: &'static str) {
        self.record.status = status;
        self.record.outcome = outcome;
    }

    pub fn fail(&mut self, error: &crate::api::error::ApiError) {
        let status = error.status().as_u16();
        self.record.status = status;
        self.record.outcome = if status == 429 {
            "rate_limited"
        } else {
            "error"
        };
        self.record.error = Some(error.message.clone());
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
        let record = self.record.clone();
        self.sink.record(record);
    }
}
