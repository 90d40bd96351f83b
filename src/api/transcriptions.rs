//! `POST /v1/audio/transcriptions` and `/v1/audio/translations`: a multipart upload forwarded
//! with bounded memory (see `relay::upload` for the streaming/spooling rules), re-encoded for
//! the backend with the route's model name. JSON answers are returned as sent; text, SRT, VTT
//! (and SSE) answers pass through with their content type.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use awc::error::SendRequestError;
use bytes::Bytes;
use serde_json::Value;

use super::{forwarded, new_ctx, Forwarded};
use crate::api::state::AppState;
use crate::config::ModelDef;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{Lease, Outcome};
use crate::relay::bytes_stream::ByteRelay;
use crate::relay::error_body::upstream_message;
use crate::relay::multipart::{FormLimits, FormReader, Part, TextField, UploadError};
use crate::relay::upload::{send_live, spool_rest, LiveUpload, SendResult, SpooledUpload};
use crate::relay::upstream::{classify, read_body, request};
use crate::relay::{with_fallback, Attempt, RetryPolicy};

const TRANSCRIPTION_FORMATS: &[&str] = &[
    "json",
    "text",
    "srt",
    "verbose_json",
    "vtt",
    "diarized_json",
];
/// Sends of a spooled upload on one lease when writing the request fails (stale connection).
const STALE_CONNECTION_RESENDS: u32 = 3;
const TRANSLATION_FORMATS: &[&str] = &["json", "text", "srt", "verbose_json", "vtt"];

pub async fn transcriptions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    handle(req, payload, state, client, ApiOp::Transcriptions).await
}

pub async fn translations(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    handle(req, payload, state, client, ApiOp::Translations).await
}

enum Reply {
    Json(Bytes),
    Stream(Box<ByteRelay>, String),
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
    op: ApiOp,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, op);
    let result = run(&req, payload, &state, &client, op, &mut ctx).await;
    match result {
        Ok(Reply::Json(bytes)) => {
            ctx.record.audio_seconds = audio_seconds(&bytes);
            ctx.complete(200, "success");
            Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(bytes))
        }
        Ok(Reply::Stream(relay, content_type)) => Ok(HttpResponse::Ok()
            .content_type(content_type)
            .insert_header(("cache-control", "no-cache"))
            .streaming(relay.into_body(ctx))),
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

/// Where the upload is while routes are tried.
enum Source {
    /// The file part is arriving from the client now.
    Live(Box<LiveUpload>),
    /// The whole upload is on disk: any number of routes can be sent it.
    Spooled(Rc<SpooledUpload>),
    /// Streamed to a route that failed and not kept.
    Spent,
}

async fn run(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    client: &awc::Client,
    op: ApiOp,
    ctx: &mut crate::record::RequestCtx,
) -> Result<Reply, ApiError> {
    let rules = FieldRules {
        op,
        model_seen: Cell::new(false),
    };
    let check = |f: &TextField| rules.check(f).map_err(UploadError::Rejected);
    let (model, source) = receive_until_file(req, payload, state, &check).await?;
    let source = Rc::new(RefCell::new(source));
    let sender = Sender {
        client,
        settings: &state.settings,
        op,
        fwd: forwarded(req, ctx.request_id()),
        check: &check,
    };
    with_fallback(
        &state.mesh.local_router(),
        &model,
        op,
        1,
        &state.settings.retry,
        ctx,
        |lease| sender.attempt(lease, source.clone()),
    )
    .await
}

/// Read the form up to its file part. When the model was named before the file, the file is
/// left to stream to the backend as it arrives; otherwise it is spooled to disk first, because
/// no route can be chosen without the model.
async fn receive_until_file(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    check: &dyn Fn(&TextField) -> Result<(), UploadError>,
) -> Result<(String, Source), ApiError> {
    let upload = &state.settings.media.upload;
    let mut reader = open_form(req, payload, state)?;
    let mut fields = Vec::new();
    let (field, file) = loop {
        match reader.next_part().await? {
            Some(Part::Text(f)) => {
                check(&f)?;
                fields.push(f);
            }
            Some(Part::File(field, meta)) => break (field, meta),
            None => {
                return Err(match model_of(&fields) {
                    None => missing("model"),
                    Some(_) => missing("file"),
                })
            }
        }
    };
    if let Some(model) = model_of(&fields) {
        let live = LiveUpload {
            reader,
            field,
            fields_before: fields,
            file,
        };
        return Ok((model, Source::Live(Box::new(live))));
    }
    let spooled = spool_rest(&mut reader, field, file, fields, &upload.spool_dir, check)
        .await
        .map_err(UploadError::into_api)?;
    let model = model_of(&spooled.fields).ok_or_else(|| missing("model"))?;
    Ok((model, Source::Spooled(Rc::new(spooled))))
}

/// A multipart reader with the upload limits, once the headers allow reading at all.
fn open_form(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<FormReader, ApiError> {
    let upload = &state.settings.media.upload;
    check_content_type(req)?;
    if super::body::declared_length(req).is_some_and(|len| len > upload.max_body_bytes()) {
        // Refused before reading: nothing of it is worth receiving.
        return Err(UploadError::FileTooLarge {
            limit: upload.max_file_bytes,
        }
        .into_api());
    }
    let limits = FormLimits {
        max_file_bytes: upload.max_file_bytes,
        max_field_bytes: upload.max_field_bytes,
        max_fields: upload.max_fields,
        idle: state.settings.client_body_timeout,
        pace: upload.pace,
    };
    Ok(FormReader::new(req.headers(), payload, limits))
}

/// Sends the upload to the routes `with_fallback` leases, one attempt each.
struct Sender<'a> {
    client: &'a awc::Client,
    settings: &'a crate::settings::Settings,
    op: ApiOp,
    fwd: Forwarded,
    check: &'a dyn Fn(&TextField) -> Result<(), UploadError>,
}

impl Sender<'_> {
    /// One attempt on `lease`, from wherever the upload is now. `source` is left holding the
    /// upload again when it can be sent to another route.
    async fn attempt(&self, mut lease: Lease, source: Rc<RefCell<Source>>) -> Attempt<Reply> {
        match source.replace(Source::Spent) {
            Source::Spooled(upload) => self.send_spooled(lease, upload, &source).await,
            Source::Live(live) => self.send_streaming(lease, *live, &source).await,
            Source::Spent => {
                lease.finish(Outcome::Canceled);
                Attempt::Fail(ApiError::new(
                    ErrorCode::UpstreamError,
                    "The upload was streamed to a backend that failed and cannot be sent again.",
                ))
            }
        }
    }

    fn request(&self, lease: &Lease) -> awc::ClientRequest {
        let limits = self.settings.timeouts.for_route(lease.route());
        request(
            self.client,
            actix_web::http::Method::POST,
            lease,
            self.op.upstream_path(),
            &self.fwd,
            limits.headers.min(limits.total_left(lease.elapsed())),
        )
    }

    async fn send_spooled(
        &self,
        mut lease: Lease,
        upload: Rc<SpooledUpload>,
        source: &RefCell<Source>,
    ) -> Attempt<Reply> {
        let provider_model = lease.route().provider_model_id.clone();
        let mut sends = 0;
        let sent = loop {
            sends += 1;
            let sent = match upload.body(&provider_model) {
                Ok((content_type, body)) => {
                    self.request(&lease)
                        .content_type(content_type)
                        .send_body(body)
                        .await
                }
                Err(e) => {
                    source.replace(Source::Spooled(upload));
                    lease.finish(Outcome::Canceled);
                    return Attempt::Fail(e.into_api());
                }
            };
            // A pooled connection the backend had just closed (its keep-alive ran out) fails
            // while the request is written: nothing reached the backend, and a spooled body can
            // simply be sent again.
            match sent {
                Err(SendRequestError::Send(_)) if sends < STALE_CONNECTION_RESENDS => {
                    tracing::debug!("resending a spooled upload after a write error");
                }
                other => break other,
            }
        };
        source.replace(Source::Spooled(upload));
        answer(lease, sent, self.settings).await
    }

    /// Stream the file part from the client to the backend as it arrives, also spooling it
    /// when another route could be tried after this one.
    async fn send_streaming(
        &self,
        mut lease: Lease,
        live: LiveUpload,
        source: &RefCell<Source>,
    ) -> Attempt<Reply> {
        let provider_model = lease.route().provider_model_id.clone();
        let tee = fallback_possible(lease.model(), self.op, &self.settings.retry);
        let tee_dir = tee.then_some(self.settings.media.upload.spool_dir.as_path());
        let req = self.request(&lease);
        let (pumped, sent) = send_live(live, req, &provider_model, tee_dir, self.check).await;
        let pumped = match pumped {
            Ok(p) => p,
            Err(e) => {
                // The client's doing: says nothing about the backend.
                lease.finish(Outcome::Canceled);
                return Attempt::Fail(e.into_api());
            }
        };
        let kept = pumped.spooled.is_some();
        if let Some(spooled) = pumped.spooled {
            source.replace(Source::Spooled(Rc::new(spooled)));
        }
        match answer(lease, sent, self.settings).await {
            // Nothing kept to send again: this route's error is the answer.
            Attempt::Retry(e) if !kept => Attempt::Fail(e),
            other => other,
        }
    }
}

/// Whether a failed attempt could be followed by another route: only then is a streamed
/// upload also spooled.
fn fallback_possible(def: &ModelDef, op: ApiOp, retry: &RetryPolicy) -> bool {
    let routes = def
        .routes
        .iter()
        .filter(|r| r.is_enabled() && r.weight > 0.0 && r.kind.serves(op))
        .count();
    routes > 1 && retry.max_attempts > 1
}

/// Classify and read one backend answer.
async fn answer(
    mut lease: Lease,
    sent: SendResult,
    settings: &crate::settings::Settings,
) -> Attempt<Reply> {
    let mut upstream = match classify(&lease, sent).await {
        Ok(u) => u,
        Err(e) => return e.into_attempt(&mut lease),
    };
    let content_type = upstream
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let model = lease.model().id.clone();
    let limits = settings.timeouts.for_route(lease.route());
    if content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        let bytes =
            match read_body(&mut upstream.body, settings.max_response_bytes, limits.idle).await {
                Ok(b) => b,
                Err(e) => {
                    lease.finish(Outcome::Failure);
                    return Attempt::Retry(e);
                }
            };
        let problem = match serde_json::from_slice::<Value>(&bytes) {
            Err(_) => Some("returned invalid JSON".to_string()),
            Ok(v) if v.get("error").is_some_and(|e| !e.is_null()) => Some(format!(
                "reported an error: {}",
                upstream_message(&bytes, lease.redactor()).0
            )),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            lease.finish(Outcome::Failure);
            return Attempt::Retry(ApiError::new(
                ErrorCode::UpstreamInvalidResponse,
                format!("The backend for model `{model}` {problem}."),
            ));
        }
        lease.finish(Outcome::Success);
        return Attempt::Done(Reply::Json(bytes));
    }
    let left = limits.total_left(lease.elapsed());
    let mut relay =
        ByteRelay::new(upstream.body, lease, limits.idle, None, true).with_total_limit(left);
    match relay.prime().await {
        Ok(()) => Attempt::Done(Reply::Stream(Box::new(relay), content_type)),
        Err(e) => Attempt::Retry(e),
    }
}

/// Seconds of audio from a JSON answer: `usage.seconds` (whisper's duration usage) or
/// `duration` (verbose_json).
fn audio_seconds(body: &[u8]) -> Option<f64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/usage/seconds")
        .and_then(Value::as_f64)
        .or_else(|| v.get("duration").and_then(Value::as_f64))
        .filter(|s| s.is_finite() && *s >= 0.0)
}

/// Checks on the text fields, as they arrive.
struct FieldRules {
    op: ApiOp,
    model_seen: Cell<bool>,
}

impl FieldRules {
    fn check(&self, f: &TextField) -> Result<(), ApiError> {
        let bad = |message: String| Err(ApiError::bad_request(message, Some(&f.name)));
        let Some(text) = f.text() else {
            if f.name == "model" || f.name == "response_format" {
                return bad(format!("`{}` must be UTF-8 text.", f.name));
            }
            return Ok(());
        };
        let text = text.trim();
        match f.name.as_str() {
            "model" => {
                if text.is_empty() {
                    return bad("`model` must not be empty.".into());
                }
                if self.model_seen.replace(true) {
                    return bad("The form has more than one `model`.".into());
                }
            }
            "response_format" => {
                let allowed = if self.op == ApiOp::Translations {
                    TRANSLATION_FORMATS
                } else {
                    TRANSCRIPTION_FORMATS
                };
                if !allowed.contains(&text) {
                    return bad(format!(
                        "`response_format` must be one of {}.",
                        allowed.join(", ")
                    ));
                }
            }
            "temperature" if !text.parse::<f64>().is_ok_and(|t| (0.0..=1.0).contains(&t)) => {
                return bad("`temperature` must be a number from 0 to 1.".into());
            }
            "timestamp_granularities[]" | "timestamp_granularities"
                if text != "word" && text != "segment" =>
            {
                return bad("`timestamp_granularities[]` must be `word` or `segment`.".into());
            }
            _ => {}
        }
        Ok(())
    }
}

fn model_of(fields: &[TextField]) -> Option<String> {
    fields
        .iter()
        .find(|f| f.name == "model")
        .and_then(TextField::text)
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
}

fn missing(param: &str) -> ApiError {
    ApiError::bad_request(
        format!("Missing required parameter: `{param}`."),
        Some(param),
    )
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let mime = req.content_type().to_ascii_lowercase();
    if mime != "multipart/form-data" {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "Content-Type `{mime}` is not supported here; send multipart/form-data with `file` and `model`."
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> TextField {
        TextField {
            name: name.into(),
            value: Bytes::from(value.to_string()),
        }
    }

    #[test]
    fn field_rules() {
        let rules = FieldRules {
            op: ApiOp::Translations,
            model_seen: Cell::new(false),
        };
        assert!(rules.check(&field("model", "whisper-1")).is_ok());
        assert!(rules.check(&field("model", "again")).is_err());
        assert!(rules.check(&field("response_format", "srt")).is_ok());
        assert!(rules
            .check(&field("response_format", "diarized_json"))
            .is_err());
        assert!(rules.check(&field("temperature", "0.4")).is_ok());
        assert!(rules.check(&field("temperature", "hot")).is_err());
        assert!(rules
            .check(&field("timestamp_granularities[]", "word"))
            .is_ok());
        assert!(rules.check(&field("prompt", "anything")).is_ok());
    }

    #[test]
    fn seconds_from_json_answers() {
        assert_eq!(
            audio_seconds(br#"{"text":"x","usage":{"type":"duration","seconds":3}}"#),
            Some(3.0)
        );
        assert_eq!(
            audio_seconds(br#"{"text":"x","duration":8.47}"#),
            Some(8.47)
        );
        assert_eq!(audio_seconds(br#"{"text":"x"}"#), None);
    }
}
