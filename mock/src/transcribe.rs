//! `POST /v1/audio/transcriptions` and `/v1/audio/translations` (whisper).
//!
//! The multipart body is read as a stream: file bytes are counted and dropped as they arrive,
//! so an upload of any size costs a bounded amount of memory. Text fields are kept (bounded)
//! and echoed in a `mock` object so a test can see exactly what the router forwarded.

use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::errors::bad_request;
use super::errors::Rejection;
use super::faults::deliver;
use super::request::begin_bodyless;
use super::settings::MockSettings;
use super::state::{Counters, MockState};

pub const TRANSCRIPTIONS: &str = "/v1/audio/transcriptions";
pub const TRANSLATIONS: &str = "/v1/audio/translations";
/// Largest text field kept; a longer one is a client bug.
const MAX_TEXT_FIELD: usize = 1024 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Task {
    Transcribe,
    Translate,
}

pub async fn transcriptions(
    req: HttpRequest,
    multipart: Multipart,
    state: web::Data<MockState>,
) -> HttpResponse {
    handle(req, multipart, state, Task::Transcribe).await
}

pub async fn translations(
    req: HttpRequest,
    multipart: Multipart,
    state: web::Data<MockState>,
) -> HttpResponse {
    handle(req, multipart, state, Task::Translate).await
}

async fn handle(
    req: HttpRequest,
    multipart: Multipart,
    state: web::Data<MockState>,
    task: Task,
) -> HttpResponse {
    let route = match task {
        Task::Transcribe => TRANSCRIPTIONS,
        Task::Translate => TRANSLATIONS,
    };
    let settings = match begin_bodyless(&req, &state, route).await {
        Ok(s) => s,
        Err(rejection) => return *rejection,
    };
    let upload = match read_upload(multipart, &state).await {
        Ok(u) => u,
        Err(rejection) => return *rejection,
    };
    match respond(&upload, task, &settings, &state) {
        Ok(response) => response,
        Err(rejection) => *rejection,
    }
}

/// What the multipart body contained.
#[derive(Default)]
struct Upload {
    has_file: bool,
    file_bytes: u64,
    file_name: Option<String>,
    file_content_type: Option<String>,
    fields: Map<String, Value>,
    field_order: Vec<String>,
}

impl Upload {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// Adds a text field; `name[]` is always an array, a repeated plain name becomes one.
    fn add_field(&mut self, name: String, value: String) {
        let value = Value::String(value);
        match self.fields.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None if name.ends_with("[]") => {
                self.fields.insert(name, Value::Array(vec![value]));
            }
            None => {
                self.fields.insert(name, value);
            }
        }
    }
}

async fn read_upload(mut multipart: Multipart, state: &MockState) -> Result<Upload, Rejection> {
    let malformed = |e: actix_multipart::MultipartError| {
        bad_request(format!("Could not parse multipart body: {e}"), None)
    };
    let mut upload = Upload::default();
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed)?;
        let name = field.name().unwrap_or_default().to_owned();
        upload.field_order.push(name.clone());
        let file_name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_owned);
        if name == "file" || file_name.is_some() {
            let content_type = field.content_type().map(|m| m.to_string());
            let mut bytes = 0u64;
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(malformed)?;
                bytes += chunk.len() as u64;
                Counters::add(&state.counters.upload_bytes_total, chunk.len() as u64);
            }
            if name == "file" && !upload.has_file {
                upload.has_file = true;
                upload.file_bytes = bytes;
                upload.file_name = file_name;
                upload.file_content_type = content_type;
            }
        } else {
            let mut text = Vec::new();
            while let Some(chunk) = field.next().await {
                let chunk = chunk.map_err(malformed)?;
                if text.len() + chunk.len() > MAX_TEXT_FIELD {
                    return Err(bad_request(
                        format!("Field `{name}` is larger than {MAX_TEXT_FIELD} bytes"),
                        Some(&name),
                    )
                    .into());
                }
                text.extend_from_slice(&chunk);
            }
            upload.add_field(name, String::from_utf8_lossy(&text).into_owned());
        }
    }
    Ok(upload)
}

fn respond(
    upload: &Upload,
    task: Task,
    s: &MockSettings,
    state: &web::Data<MockState>,
) -> Result<HttpResponse, Rejection> {
    if !upload.has_file {
        return Err(bad_request("A `file` field is required", Some("file")).into());
    }
    let text = s.transcription_text.as_str();
    // Pretend the upload is 16 kHz 16-bit mono.
    let duration = ((upload.file_bytes as f64 / 32_000.0).max(1.0) * 100.0).round() / 100.0;
    let mock = json!({
        "file_bytes": upload.file_bytes,
        "file_name": upload.file_name,
        "file_content_type": upload.file_content_type,
        "fields": upload.fields,
        "field_order": upload.field_order,
    });
    let format = upload.field("response_format").unwrap_or("json");
    let (content_type, body): (&'static str, String) = match format {
        "json" => (
            "application/json",
            json!({"text": text, "usage": {"type": "duration", "seconds": duration.ceil()}, "mock": mock})
                .to_string(),
        ),
        "verbose_json" => (
            "application/json",
            verbose_json(upload, task, text, duration, mock).to_string(),
        ),
        "text" => ("text/plain; charset=utf-8", format!("{text}\n")),
        "srt" => (
            "text/plain; charset=utf-8",
            format!("1\n00:00:00,000 --> {}\n{text}\n\n", timestamp(duration, ',')),
        ),
        "vtt" => (
            "text/vtt",
            format!("WEBVTT\n\n00:00:00.000 --> {}\n{text}\n\n", timestamp(duration, '.')),
        ),
        other => {
            return Err(bad_request(
                format!("`response_format` `{other}` is not one of json, text, srt, verbose_json, vtt"),
                Some("response_format"),
            ).into())
        }
    };
    Ok(deliver(state, s, content_type, Bytes::from(body)))
}

fn verbose_json(upload: &Upload, task: Task, text: &str, duration: f64, mock: Value) -> Value {
    let language = match task {
        Task::Translate => "english",
        Task::Transcribe => upload.field("language").unwrap_or("english"),
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = json!({
        "task": if task == Task::Translate { "translate" } else { "transcribe" },
        "language": language,
        "duration": duration,
        "text": text,
        "segments": [{
            "id": 0, "seek": 0, "start": 0.0, "end": duration, "text": format!(" {text}"),
            "tokens": (0..words.len()).map(|i| 50364 + i as u64).collect::<Vec<_>>(),
            "temperature": 0.0, "avg_logprob": -0.25, "compression_ratio": 1.2,
            "no_speech_prob": 0.01,
        }],
        "usage": {"type": "duration", "seconds": duration.ceil()},
    });
    let wants_words = upload
        .fields
        .get("timestamp_granularities[]")
        .and_then(Value::as_array)
        .is_some_and(|g| g.iter().any(|v| v == "word"));
    if wants_words && !words.is_empty() {
        let step = duration / words.len() as f64;
        let timed: Vec<Value> = words
            .iter()
            .enumerate()
            .map(
                |(i, w)| json!({"word": w, "start": i as f64 * step, "end": (i + 1) as f64 * step}),
            )
            .collect();
        out["words"] = Value::Array(timed);
    }
    out["mock"] = mock;
    out
}

/// `HH:MM:SS<sep>mmm` for SRT (`,`) and WebVTT (`.`).
fn timestamp(seconds: f64, separator: char) -> String {
    let total_ms = (seconds * 1000.0).round() as u64;
    let (h, m, s, ms) = (
        total_ms / 3_600_000,
        total_ms / 60_000 % 60,
        total_ms / 1000 % 60,
        total_ms % 1000,
    );
    format!("{h:02}:{m:02}:{s:02}{separator}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_like_srt_and_vtt() {
        assert_eq!(timestamp(3.5, ','), "00:00:03,500");
        assert_eq!(timestamp(3725.25, '.'), "01:02:05.250");
    }

    #[test]
    fn repeated_fields_become_arrays() {
        let mut u = Upload::default();
        u.add_field("timestamp_granularities[]".into(), "word".into());
        u.add_field("model".into(), "whisper-1".into());
        u.add_field("timestamp_granularities[]".into(), "segment".into());
        u.add_field("tag".into(), "a".into());
        u.add_field("tag".into(), "b".into());
        assert_eq!(
            u.fields["timestamp_granularities[]"],
            json!(["word", "segment"])
        );
        assert_eq!(u.fields["model"], "whisper-1");
        assert_eq!(u.fields["tag"], json!(["a", "b"]));
    }
}
