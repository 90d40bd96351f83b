//! `POST /v1/audio/speech`: the backend's audio relayed chunk by chunk as it is produced, with
//! the `Content-Type` of the requested `response_format`. Another route is tried only before
//! the first byte reached the client.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::{forwarded, new_ctx};
use crate::api::state::AppState;
use crate::config::ModelDef;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};
use crate::mesh::Outcome;
use crate::relay::bytes_stream::{AudioMeter, ByteRelay};
use crate::relay::error_body::upstream_message;
use crate::relay::upstream::{post_json, read_error_body, MAX_ERROR_BODY};
use crate::relay::{with_fallback, Attempt};

/// OpenAI's limit on `input`.
const MAX_INPUT_CHARS: usize = 4096;
pub const FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];

/// The media type of each `response_format`, as OpenAI's `/v1/audio/speech` sends it.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "opus" => "audio/ogg",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

#[derive(Debug)]
pub struct SpeechFacts {
    pub model: String,
    pub input_chars: usize,
    pub voice: Option<String>,
    pub format: String,
    pub sse: bool,
}

pub fn validate(obj: &Map<String, Value>) -> Result<SpeechFacts, ApiError> {
    let model = super::required_model(obj)?;
    let input_chars = match obj.get("input") {
        Some(Value::String(s)) if s.is_empty() => {
            return Err(ApiError::bad_request(
                "`input` must not be empty.",
                Some("input"),
            ))
        }
        Some(Value::String(s)) => s.chars().count(),
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter: `input`.",
                Some("input"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`input` must be a string.",
                Some("input"),
            ))
        }
    };
    if input_chars > MAX_INPUT_CHARS {
        return Err(ApiError::new(
            ErrorCode::StringAboveMaxLength,
            format!("`input` is longer than {MAX_INPUT_CHARS} characters."),
        )
        .with_param("input"));
    }
    let voice = match obj.get("voice") {
        Some(Value::String(v)) if !v.is_empty() => Some(v.clone()),
        // Custom voices: `{"id": "voice_1234"}`.
        Some(Value::Object(o)) if o.get("id").is_some_and(Value::is_string) => None,
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter: `voice`.",
                Some("voice"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`voice` must be a voice name or an object with an `id`.",
                Some("voice"),
            ))
        }
    };
    let format = match obj.get("response_format") {
        None | Some(Value::Null) => "mp3".to_string(),
        Some(Value::String(f)) if FORMATS.contains(&f.as_str()) => f.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                format!("`response_format` must be one of {}.", FORMATS.join(", ")),
                Some("response_format"),
            ))
        }
    };
    if let Some(speed) = obj.get("speed").filter(|v| !v.is_null()) {
        if !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s)) {
            return Err(ApiError::bad_request(
                "`speed` must be a number from 0.25 to 4.0.",
                Some("speed"),
            ));
        }
    }
    let sse = match obj.get("stream_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "audio" => false,
        Some(Value::String(f)) if f == "sse" => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`stream_format` must be `audio` or `sse`.",
                Some("stream_format"),
            ))
        }
    };
    if obj
        .get("instructions")
        .is_some_and(|v| !v.is_null() && !v.is_string())
    {
        return Err(ApiError::bad_request(
            "`instructions` must be a string.",
            Some("instructions"),
        ));
    }
    Ok(SpeechFacts {
        model,
        input_chars,
        voice,
        format,
        sse,
    })
}

/// The voice the self-hosted platform's TTS requests send (seed 002): the engine's own default,
/// which every model has whatever voices it lists.
const DEFAULT_VOICE: &str = "default";

/// A voice the model does not list is refused before any backend is asked.
fn check_voice(def: &ModelDef, voice: Option<&str>) -> Result<(), ApiError> {
    let (Some(voices), Some(voice)) = (&def.supported_voices, voice) else {
        return Ok(());
    };
    if voices.is_empty()
        || voice.eq_ignore_ascii_case(DEFAULT_VOICE)
        || voices.iter().any(|v| v.eq_ignore_ascii_case(voice))
    {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedVoice,
        format!(
            "Model `{}` has no voice `{voice}`; it offers {}.",
            def.id,
            voices.join(", ")
        ),
    )
    .with_param("voice"))
}

pub async fn speech(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::Speech);
    let result = async {
        // The permit holds the body's share of the JSON budget as long as the map lives.
        let (map, _permit) =
            super::body::read_json_object(&req, payload, state.settings.max_body_bytes).await?;
        let facts = validate(&map)?;
        let fwd = forwarded(&req, ctx.request_id());
        let settings = &state.settings;
        let client: &awc::Client = &client;
        let map = std::rc::Rc::new(std::cell::RefCell::new(map));
        let facts_ref = &facts;
        let media_type = if facts.sse {
            "text/event-stream"
        } else {
            content_type(&facts.format)
        };
        with_fallback(
            &state.mesh.local_router(),
            &facts.model,
            ApiOp::Speech,
            (facts.input_chars as u64).div_ceil(4).max(1),
            &settings.retry,
            &mut ctx,
            |mut lease| {
                let map = map.clone();
                let fwd = fwd.clone();
                async move {
                    if let Err(e) = check_voice(lease.model(), facts_ref.voice.as_deref()) {
                        lease.finish(Outcome::ClientError);
                        return Attempt::Fail(e);
                    }
                    let bytes = {
                        let mut m = map.borrow_mut();
                        m.insert(
                            "model".into(),
                            Value::String(lease.route().provider_model_id.clone()),
                        );
                        Bytes::from(serde_json::to_vec(&*m).unwrap_or_default())
                    };
                    let path = ApiOp::Speech.upstream_path();
                    let mut upstream =
                        match post_json(client, &lease, path, bytes, &fwd, &settings.timeouts)
                            .await
                        {
                            Ok(u) => u,
                            Err(e) => return e.into_attempt(&mut lease),
                        };
                    let limits = settings.timeouts.for_route(lease.route());
                    let started_ago = lease.elapsed();
                    if is_json(&upstream.headers) && !facts_ref.sse {
                        // A 200 JSON answer to a speech request is an error in disguise.
                        let body =
                            read_error_body(&mut upstream.body, MAX_ERROR_BODY, limits.idle).await;
                        let (message, _, _) = upstream_message(&body.bytes, lease.redactor());
                        lease.finish(Outcome::Failure);
                        return Attempt::Retry(
                            ApiError::new(
                                ErrorCode::UpstreamInvalidResponse,
                                format!(
                                    "The backend for model `{}` answered JSON instead of audio: {message}",
                                    lease.model().id
                                ),
                            ),
                        );
                    }
                    let meter = (!facts_ref.sse).then(|| AudioMeter::new(facts_ref.format == "pcm"));
                    let mut relay =
                        ByteRelay::new(upstream.body, lease, limits.idle, meter, false)
                            .with_total_limit(limits.total_left(started_ago));
                    match relay.prime().await {
                        Ok(()) => Attempt::Done(relay),
                        Err(e) => Attempt::Retry(e),
                    }
                }
            },
        )
        .await
        .map(|relay| (relay, media_type))
    }
    .await;
    match result {
        Ok((relay, media_type)) => Ok(HttpResponse::Ok()
            .content_type(media_type)
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-accel-buffering", "no"))
            .streaming(relay.into_body(ctx))),
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

fn is_json(headers: &actix_web::http::header::HeaderMap) -> bool {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}
