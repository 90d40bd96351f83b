//! `POST /v1/chat/completions`: validation, parameter filtering per model, then either a JSON
//! answer or an SSE stream relayed event by event.

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Map, Value};
use tracing::debug;

use super::error::ApiError;
use super::{forwarded, json_bytes_response, new_ctx};
use crate::config::ModelDef;
use crate::engines::ApiOp;
use crate::record::Usage;
use crate::relay::chat_stream::ChatStream;
use crate::relay::json::call_json;
use crate::relay::shallow::JsonObject;
use crate::relay::upstream::post_json;
use crate::relay::{with_fallback, Attempt};
use crate::state::AppState;

/// Body keys that steer the router (OpenRouter extensions) and are never sent upstream.
const ROUTER_ONLY: &[&str] = &["models", "provider", "route", "transforms", "plugins"];
/// Body keys the router manages itself; always kept.
const ALWAYS_KEPT: &[&str] = &["model", "messages", "stream", "stream_options"];
const TOOL_KEYS: &[&str] = &[
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
];

/// What validation learned about a chat request.
#[derive(Debug)]
pub struct ChatFacts {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub max_tokens: Option<u64>,
    pub prompt_chars: usize,
    pub uses_image: bool,
    pub uses_audio: bool,
}

pub fn validate(body: &Value) -> Result<ChatFacts, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("The request body must be a JSON object.", None))?;
    let model = super::required_model(obj)?;
    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => {
            return Err(ApiError::bad_request(
                "`messages` must contain at least one message.",
                Some("messages"),
            ))
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`messages` must be an array.",
                Some("messages"),
            ))
        }
        None => {
            return Err(ApiError::bad_request(
                "Missing required parameter: `messages`.",
                Some("messages"),
            ))
        }
    };
    let mut facts = ChatFacts {
        model,
        stream: false,
        include_usage: false,
        max_tokens: None,
        prompt_chars: 0,
        uses_image: false,
        uses_audio: false,
    };
    for (i, message) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let m = message.as_object().ok_or_else(|| {
            ApiError::bad_request(format!("`{param}` must be an object."), Some(&param))
        })?;
        match m.get("role") {
            Some(Value::String(r)) if !r.is_empty() => {}
            _ => {
                return Err(ApiError::bad_request(
                    format!("`{param}.role` is required and must be a string."),
                    Some(&format!("{param}.role")),
                ))
            }
        }
        match m.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => facts.prompt_chars += s.len(),
            Some(Value::Array(parts)) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            facts.prompt_chars +=
                                part.get("text").and_then(Value::as_str).map_or(0, str::len)
                        }
                        Some("image_url") => facts.uses_image = true,
                        Some("input_audio") => facts.uses_audio = true,
                        Some(_) => {}
                        None => {
                            return Err(ApiError::bad_request(
                                format!("Every part of `{param}.content` needs a `type`."),
                                Some(&format!("{param}.content")),
                            ))
                        }
                    }
                }
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    format!("`{param}.content` must be a string, an array of parts, or null."),
                    Some(&format!("{param}.content")),
                ))
            }
        }
    }
    facts.stream = super::optional_bool(obj, "stream")?.unwrap_or(false);
    match obj.get("stream_options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            facts.include_usage = matches!(o.get("include_usage"), Some(Value::Bool(true)));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "`stream_options` must be an object.",
                Some("stream_options"),
            ))
        }
    }
    for key in ["max_tokens", "max_completion_tokens"] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 && n <= u32::MAX as u64 => facts.max_tokens = Some(n),
                _ => {
                    return Err(ApiError::bad_request(
                        format!("`{key}` must be a positive integer."),
                        Some(key),
                    ))
                }
            },
        }
    }
    for key in [
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
    ] {
        if let Some(v) = obj.get(key) {
            if !v.is_null() && !v.is_number() {
                return Err(ApiError::bad_request(
                    format!("`{key}` must be a number."),
                    Some(key),
                ));
            }
        }
    }
    if let Some(v) = obj.get("tools") {
        if !v.is_null() && !v.is_array() {
            return Err(ApiError::bad_request(
                "`tools` must be an array.",
                Some("tools"),
            ));
        }
    }
    Ok(facts)
}

/// Reject content the model cannot take (images sent to a text-only model, …).
fn check_modalities(def: &ModelDef, facts: &ChatFacts) -> Result<(), ApiError> {
    let accepts = |m: &str| {
        def.input_modalities
            .iter()
            .any(|x| x.eq_ignore_ascii_case(m))
    };
    for (used, modality) in [(facts.uses_image, "image"), (facts.uses_audio, "audio")] {
        if used && !accepts(modality) {
            return Err(ApiError::bad_request(
                format!("Model `{}` does not accept {modality} input.", def.id),
                Some("messages"),
            )
            .with_code("unsupported_modality"));
        }
    }
    Ok(())
}

/// Drop what the model's route must not receive; the body is filtered in place, once.
pub fn filter_params(body: &mut Map<String, Value>, def: &ModelDef) {
    body.retain(|key, _| !ROUTER_ONLY.contains(&key.as_str()));
    let Some(supported) = &def.supported_params else {
        return;
    };
    let listed = |k: &str| supported.iter().any(|s| s == k);
    // Newer clients send max_completion_tokens; older runtimes only know max_tokens.
    if body.contains_key("max_completion_tokens")
        && !listed("max_completion_tokens")
        && listed("max_tokens")
    {
        if let Some(v) = body.remove("max_completion_tokens") {
            body.entry("max_tokens").or_insert(v);
        }
    }
    body.retain(|key, _| {
        let keep = ALWAYS_KEPT.contains(&key.as_str())
            || listed(key)
            || (def.supports_tools && TOOL_KEYS.contains(&key.as_str()))
            || (def.supports_structured_output && key == "response_format");
        if !keep {
            debug!(model = %def.id, param = %key, "dropping parameter not in supported_params");
        }
        keep
    });
}

/// The body one route receives: its own model name, and usage always requested on streams.
fn upstream_body(body: &mut Map<String, Value>, provider_model_id: &str, stream: bool) -> Bytes {
    body.insert("model".into(), Value::String(provider_model_id.to_string()));
    if stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Some(o) = options.as_object_mut() {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    Bytes::from(serde_json::to_vec(body).unwrap_or_default())
}

/// Prompt tokens guessed from text length (about four characters a token), used when a
/// backend reports no usage.
fn estimate_prompt_tokens(facts: &ChatFacts) -> u64 {
    (facts.prompt_chars as u64).div_ceil(4).max(1)
}

/// Completion tokens guessed from a non-streamed answer's text.
fn estimate_completion_tokens(body: &JsonObject) -> u64 {
    let chars: usize = body
        .field::<Vec<Value>>("choices")
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| c.pointer("/message/content").and_then(Value::as_str))
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    (chars as u64).div_ceil(4)
}

pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::ChatCompletions);
    let result = handle(&req, payload, &state, &client, &mut ctx).await;
    match result {
        Ok(Reply::Json(body, usage)) => {
            ctx.record.usage = Some(usage);
            ctx.complete(200, "success");
            Ok(json_bytes_response(body.to_bytes()))
        }
        Ok(Reply::Stream(stream)) => Ok(HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("cache-control", "no-cache"))
            .insert_header(("x-accel-buffering", "no"))
            .streaming(stream.into_body(ctx))),
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

enum Reply {
    Json(JsonObject, Usage),
    Stream(Box<ChatStream>),
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    client: &awc::Client,
    ctx: &mut crate::record::RequestCtx,
) -> Result<Reply, ApiError> {
    let body = super::body::read_json(req, payload, state.settings.max_body_bytes).await?;
    let facts = validate(&body)?;
    ctx.record.stream = facts.stream;
    let Value::Object(map) = body else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object.",
            None,
        ));
    };
    let fwd = forwarded(req, ctx.request_id());
    let settings = &state.settings;
    // The body is shared by attempts: filtered once for the model, renamed per route.
    let shared = Rc::new(RefCell::new((map, false)));
    let facts = Rc::new(facts);
    let est_guess = (facts.prompt_chars as u64).div_ceil(4) + facts.max_tokens.unwrap_or(512);
    let reply = with_fallback(
        &state.mesh.local_router(),
        &facts.model,
        ApiOp::ChatCompletions,
        est_guess,
        &settings.retry,
        ctx,
        |mut lease| {
            let shared = shared.clone();
            let facts = facts.clone();
            let fwd = fwd.clone();
            async move {
                let def = lease.model().clone();
                let bytes = {
                    let mut guard = shared.borrow_mut();
                    let (map, filtered) = &mut *guard;
                    if !*filtered {
                        if let Err(e) = check_modalities(&def, &facts) {
                            lease.finish(crate::mesh::Outcome::ClientError);
                            return Attempt::Fail(e);
                        }
                        filter_params(map, &def);
                        *filtered = true;
                    }
                    upstream_body(map, &lease.route().provider_model_id, facts.stream)
                };
                let prompt_estimate = estimate_prompt_tokens(&facts);
                let path = ApiOp::ChatCompletions.upstream_path();
                if !facts.stream {
                    return match call_json(
                        client,
                        lease,
                        path,
                        bytes,
                        &fwd,
                        &settings.timeouts,
                        settings.max_response_bytes,
                    )
                    .await
                    {
                        Attempt::Done(reply) => {
                            let usage = reply.usage.unwrap_or_else(|| Usage {
                                prompt_tokens: prompt_estimate,
                                completion_tokens: estimate_completion_tokens(&reply.body),
                                cached_tokens: 0,
                                estimated: true,
                            });
                            Attempt::Done(Reply::Json(reply.body, usage))
                        }
                        Attempt::Retry(e) => Attempt::Retry(e),
                        Attempt::Fail(e) => Attempt::Fail(e),
                    };
                }
                let upstream =
                    match post_json(client, &lease, path, bytes, &fwd, &settings.timeouts).await {
                        Ok(u) => u,
                        Err(e) => return e.into_attempt(&mut lease),
                    };
                let limits = settings.timeouts.for_route(lease.route());
                let started_ago = lease.elapsed();
                let mut stream = ChatStream::new(
                    upstream.body,
                    lease,
                    def.id.clone(),
                    facts.include_usage,
                    prompt_estimate,
                    limits.idle,
                    settings.max_sse_event_bytes,
                )
                .with_total_limit(started_ago, limits.total);
                match stream.prime().await {
                    Ok(()) => Attempt::Done(Reply::Stream(Box::new(stream))),
                    Err(e) => Attempt::Retry(e),
                }
            }
        },
    )
    .await?;
    Ok(reply)
}
