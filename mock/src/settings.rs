//! Runtime-changeable behaviour of the mock engine.
//!
//! Every field has a default, so `{}` is a valid settings document and a partial JSON object
//! can be merged over the current settings (`PATCH /_mock/config`, [`MockSettings::patched`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::engine::CostModel;

/// What the health paths report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Ok,
    /// llama.cpp-style 503 "Loading model".
    Loading,
    /// 500 with a JSON error.
    Down,
}

/// Where the streaming usage object goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UsageMode {
    /// vLLM: a separate `choices: []` chunk only when `stream_options.include_usage` is true.
    #[default]
    Auto,
    Never,
    /// A separate `choices: []` usage chunk whether or not the client asked.
    Always,
    /// Usage on the finish-reason chunk (older llama.cpp).
    OnFinish,
    /// A usage-only chunk with `"choices": null` (seen from some vLLM versions).
    ChoicesNull,
}

/// Shape of injected error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ErrorStyle {
    /// `{"error":{"message","type","param","code"}}`, `code` a string or null.
    #[default]
    Openai,
    /// Same keys, `code` is the integer HTTP status.
    Vllm,
    /// Flat `{"error": "...", "error_type": "..."}`.
    Tgi,
    /// `{"error":{"code": <int>, "message", "type"}}`.
    Llamacpp,
    /// `{"error":{"code": <int>, "message", "metadata"}}`.
    Openrouter,
}

/// Where a request stalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Hang {
    #[default]
    None,
    /// Stall `hang_ms` before sending response headers.
    BeforeHeaders,
    /// Send headers and the first piece of the body, then stall `hang_ms`.
    MidStream,
}

/// How `POST /v1/video/generations` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoMode {
    /// JSON job object; poll `GET /v1/video/generations/{id}`.
    #[default]
    Async,
    /// Hold the request, then answer with the `video/mp4` bytes.
    Sync,
}

/// Vocabulary of the job `status` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatusStyle {
    /// queued / in_progress / completed / failed / canceled
    #[default]
    Openai,
    /// pending / in_progress / completed / failed / cancelled (/ expired)
    Openrouter,
    /// starting / processing / succeeded / failed / canceled
    Replicate,
    /// IN_QUEUE / IN_PROGRESS / COMPLETED / FAILED / CANCELED
    Fal,
}

/// All knobs of the mock. See `docs/mock-engine.md` for the meaning of each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockSettings {
    // --- server ---
    /// actix worker threads; read once at start.
    pub workers: usize,
    /// Ids listed by `GET /v1/models`.
    pub model_ids: Vec<String>,
    /// When true, inference requests naming a model outside `model_ids` get 404 `model_not_found`.
    pub strict_models: bool,
    /// Largest JSON request body accepted (multipart uploads are streamed and not limited).
    pub max_body_bytes: usize,
    /// Keep headers and body of the last inference request for `/_mock/stats`.
    pub record_requests: bool,

    // --- health ---
    pub health: Health,
    /// Inference paths answer 503 while `health` is not `ok`.
    pub refuse_when_unhealthy: bool,

    // --- chat ---
    /// Content chunks (= completion tokens) per reply, before `max_tokens` truncation.
    pub chunks: u32,
    pub chunk_interval_ms: u64,
    pub ttft_ms: u64,
    pub usage_mode: UsageMode,
    /// Slots, a queue and a prefix cache that decide chat timing (`null` = off; see
    /// [`CostModel`]).
    pub cost_model: Option<CostModel>,
    /// `GET /metrics` (vLLM and llama.cpp names) and `GET /slots` answer; false = 501, as
    /// llama-server without `--metrics` (and an engine that stopped reporting) does.
    pub serve_metrics: bool,

    // --- embeddings ---
    pub embedding_dim: usize,

    // --- speech ---
    pub tts_chunks: u32,
    pub tts_chunk_interval_ms: u64,

    // --- transcription ---
    pub transcription_text: String,

    // --- video ---
    pub video_mode: VideoMode,
    pub video_status_style: VideoStatusStyle,
    /// Time an async job stays queued before it starts.
    pub video_queue_ms: u64,
    pub video_steps: u32,
    pub video_step_ms: u64,
    /// Every job fails.
    pub video_fail: bool,
    /// Chance (0..1) that a job fails, drawn at submission.
    pub video_fail_rate: f64,
    /// Size of the fake MP4.
    pub video_bytes: usize,

    // --- faults (inference paths only) ---
    /// Delay before response headers.
    pub latency_ms: u64,
    /// Chance (0..1) that a request is answered with `fail_status`.
    pub fail_rate: f64,
    pub fail_status: u16,
    /// `Retry-After` seconds sent with injected errors.
    pub retry_after: Option<u64>,
    pub error_style: ErrorStyle,
    /// Streaming chat answers 200 SSE whose first event is an error, then `[DONE]`.
    pub error_event_first: bool,
    /// Drop the connection after this many content chunks (chat) or audio pieces (speech).
    pub die_after_chunks: Option<u32>,
    /// 200 `application/json` with a body that is not JSON.
    pub invalid_json: bool,
    pub hang: Hang,
    pub hang_ms: u64,
    /// Send JSON bodies a few bytes at a time with this gap.
    pub slow_drip_ms: u64,
    /// Close the connection before any response byte.
    pub reset_before_headers: bool,
    /// 401 unless `Authorization: Bearer <key>`.
    pub require_api_key: Option<String>,
    /// Injected errors quote the credentials the request carried (`Authorization`, `api-key`),
    /// as providers that print "Incorrect API key provided: sk-…" do.
    pub echo_auth_in_errors: bool,
    /// Filler bytes appended to injected error messages (large error bodies).
    pub error_padding_bytes: usize,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            model_ids: vec!["mock-model".to_owned()],
            strict_models: false,
            max_body_bytes: 64 * 1024 * 1024,
            record_requests: true,
            health: Health::Ok,
            refuse_when_unhealthy: false,
            chunks: 8,
            chunk_interval_ms: 0,
            ttft_ms: 0,
            usage_mode: UsageMode::Auto,
            cost_model: None,
            serve_metrics: true,
            embedding_dim: 8,
            tts_chunks: 4,
            tts_chunk_interval_ms: 0,
            transcription_text: "This is a mock transcription.".to_owned(),
            video_mode: VideoMode::Async,
            video_status_style: VideoStatusStyle::Openai,
            video_queue_ms: 100,
            video_steps: 5,
            video_step_ms: 200,
            video_fail: false,
            video_fail_rate: 0.0,
            video_bytes: 64 * 1024,
            latency_ms: 0,
            fail_rate: 0.0,
            fail_status: 500,
            retry_after: None,
            error_style: ErrorStyle::Openai,
            error_event_first: false,
            die_after_chunks: None,
            invalid_json: false,
            hang: Hang::None,
            hang_ms: 600_000,
            slow_drip_ms: 0,
            reset_before_headers: false,
            require_api_key: None,
            echo_auth_in_errors: false,
            error_padding_bytes: 0,
        }
    }
}

/// Upper bounds that keep one request's work and memory small.
const MAX_CHUNKS: u32 = 100_000;
const MAX_EMBEDDING_DIM: usize = 65_536;
const MAX_VIDEO_BYTES: usize = 256 * 1024 * 1024;
const MIN_VIDEO_BYTES: usize = 64;
const MAX_ERROR_PADDING_BYTES: usize = 16 * 1024 * 1024;

impl MockSettings {
    /// Rejects values the handlers cannot honour.
    pub fn validate(&self) -> Result<(), String> {
        let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
        if !rate_ok(self.fail_rate) {
            return Err(format!(
                "fail_rate must be within 0..1, got {}",
                self.fail_rate
            ));
        }
        if !rate_ok(self.video_fail_rate) {
            return Err(format!(
                "video_fail_rate must be within 0..1, got {}",
                self.video_fail_rate
            ));
        }
        if !(100..=599).contains(&self.fail_status) {
            return Err(format!(
                "fail_status must be an HTTP status (100..599), got {}",
                self.fail_status
            ));
        }
        if self.workers == 0 {
            return Err("workers must be at least 1".to_owned());
        }
        if self.chunks > MAX_CHUNKS {
            return Err(format!("chunks must be at most {MAX_CHUNKS}"));
        }
        if self.embedding_dim == 0 || self.embedding_dim > MAX_EMBEDDING_DIM {
            return Err(format!(
                "embedding_dim must be within 1..{MAX_EMBEDDING_DIM}"
            ));
        }
        if self.tts_chunks == 0 || self.tts_chunks > MAX_CHUNKS {
            return Err(format!("tts_chunks must be within 1..{MAX_CHUNKS}"));
        }
        if !(MIN_VIDEO_BYTES..=MAX_VIDEO_BYTES).contains(&self.video_bytes) {
            return Err(format!(
                "video_bytes must be within {MIN_VIDEO_BYTES}..{MAX_VIDEO_BYTES}"
            ));
        }
        if self.error_padding_bytes > MAX_ERROR_PADDING_BYTES {
            return Err(format!(
                "error_padding_bytes must be at most {MAX_ERROR_PADDING_BYTES}"
            ));
        }
        if let Some(model) = &self.cost_model {
            model.validate()?;
        }
        if self.video_steps == 0 {
            return Err("video_steps must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Returns these settings with the fields of `patch` (a JSON object) replaced.
    /// Unknown fields and invalid values are errors; `null` clears an optional field.
    pub fn patched(&self, patch: Value) -> Result<MockSettings, String> {
        let Value::Object(patch) = patch else {
            return Err("settings patch must be a JSON object".to_owned());
        };
        let mut merged = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => return Err("current settings do not serialize to an object".to_owned()),
        };
        for (key, value) in patch {
            if !merged.contains_key(&key) {
                return Err(format!("unknown setting `{key}`"));
            }
            merged.insert(key, value);
        }
        let next: MockSettings =
            serde_json::from_value(Value::Object(merged)).map_err(|e| e.to_string())?;
        next.validate()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_object_gives_defaults() {
        let s: MockSettings = serde_json::from_value(json!({})).unwrap();
        assert_eq!(s, MockSettings::default());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn patch_replaces_only_named_fields() {
        let s = MockSettings::default()
            .patched(json!({"chunks": 3, "health": "loading", "retry_after": 2}))
            .unwrap();
        assert_eq!(s.chunks, 3);
        assert_eq!(s.health, Health::Loading);
        assert_eq!(s.retry_after, Some(2));
        assert_eq!(s.embedding_dim, 8);
        let cleared = s.patched(json!({"retry_after": null})).unwrap();
        assert_eq!(cleared.retry_after, None);
    }

    #[test]
    fn patch_rejects_unknown_and_invalid() {
        let s = MockSettings::default();
        assert!(s.patched(json!({"nope": 1})).unwrap_err().contains("nope"));
        assert!(s.patched(json!({"fail_rate": 2.0})).is_err());
        assert!(s.patched(json!({"health": "sideways"})).is_err());
        assert!(s.patched(json!({"chunks": "many"})).is_err());
        assert!(s.patched(json!([1])).is_err());
        assert!(s.patched(json!({"cost_model": {"slots": 0}})).is_err());
        assert!(s.patched(json!({"cost_model": {"slotz": 1}})).is_err());
        let on = s.patched(json!({"cost_model": {"slots": 3}})).unwrap();
        assert_eq!(on.cost_model.as_ref().map(|m| m.slots), Some(3));
        assert_eq!(
            on.patched(json!({"cost_model": null})).unwrap().cost_model,
            None
        );
    }
}
