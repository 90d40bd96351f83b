//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API, routed as
//! chat is (the model's routes, key model lists, limits, fallback before the first byte, usage,
//! records). A route that serves Messages natively ([`RouteDef::serves_natively`]) gets the
//! client's body with only `model` rewritten and its events relayed one by one; any other route
//! gets the request translated to chat completions ([`crate::translate::anthropic`]) and its
//! answer translated back, JSON or streamed. Errors leave in Anthropic's shape
//! ([`super::anthropic_shape`]).
//!
//! [`RouteDef::serves_natively`]: crate::config::RouteDef::serves_natively

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::body::read_json_object;
use super::chat::{filter_params, open_stream, upstream_body};
use super::chat_request::{self, ChatBody};
use super::routing_hints::{self, PromptShape};
use super::{event_stream_response, forwarded, json_response, new_ctx};
use crate::api::state::AppState;
use crate::config::ModelDef;
use crate::engines::ApiOp;
use crate::error::ApiError;
use crate::mesh::{Lease, Outcome, RoutingHints};
use crate::record::{RequestCtx, Usage};
use crate::relay::capabilities::json_asks;
use crate::relay::chat_stream::ChatStream;
use crate::relay::json::call_json;
use crate::relay::messages_stream::{MessagesDialect, MessagesFromChat, MessagesNative};
use crate::relay::spliced::SplicedBody;
use crate::relay::{with_fallback, with_fallback_to, Attempt, Forwarded, RouteAsk, Uses};
use crate::translate::anthropic::{self, MessagesFacts};

/// Client headers of Anthropic's API passed on (to native backends; chat backends ignore it).
const ANTHROPIC_HEADERS: &[&str] = &["anthropic-version"];

pub async fn messages(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::Messages);
    match handle(&req, payload, &state, &client, &mut ctx).await {
        Ok(Reply::Json(body, usage)) => {
            ctx.record.usage = Some(usage);
            if ctx.trace.is_on() {
                // Native or translated, the answer is a Messages answer by now.
                ctx.trace.finish_reasons = body
                    .get("stop_reason")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .into_iter()
                    .collect();
            }
            ctx.complete(200, "success");
            Ok(json_response(&body))
        }
        Ok(Reply::Stream(stream)) => Ok(event_stream_response(stream.into_body(ctx))),
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

enum Reply {
    Json(Value, Usage),
    Stream(Box<ChatStream<MessagesDialect>>),
}

/// What every attempt of one request shares.
struct Shared {
    /// The client's body, as native routes receive it (`model` replaced per route).
    native: RefCell<Map<String, Value>>,
    /// The translated chat body, made and filtered for the model on the first translated
    /// attempt.
    chat: RefCell<Option<ChatBody>>,
    facts: MessagesFacts,
    fwd: Forwarded,
    request_id: String,
}

fn forwarded_with_version(req: &HttpRequest, request_id: &str) -> Forwarded {
    let mut fwd = forwarded(req, request_id);
    for name in ANTHROPIC_HEADERS {
        if let Some(value) = req.headers().get(*name).and_then(|v| v.to_str().ok()) {
            fwd.attribution.push((name.to_string(), value.to_string()));
        }
    }
    fwd
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    client: &awc::Client,
    ctx: &mut RequestCtx,
) -> Result<Reply, ApiError> {
    let (body, _permit) = read_json_object(req, payload, state.settings.max_body_bytes).await?;
    let facts = anthropic::validate(&body)?;
    ctx.record.stream = facts.stream;
    ctx.trace.max_tokens = Some(facts.max_tokens);
    let est = facts.prompt_tokens().saturating_add(facts.max_tokens);
    let shared = Rc::new(Shared {
        native: RefCell::new(body),
        chat: RefCell::new(None),
        fwd: forwarded_with_version(req, ctx.request_id()),
        request_id: ctx.request_id().to_string(),
        facts,
    });
    let model = shared.facts.model.clone();
    let settings = &state.settings;
    let hints = messages_hints(req, &shared.native.borrow(), || {
        state.mesh.table().wants_prompt(&model)
    });
    let uses = {
        let body = shared.native.borrow();
        Uses::read(
            ApiOp::Messages,
            |key| body.get(key).is_some_and(|v| json_asks(key, v)),
            shared.facts.uses_image,
            false,
        )
    };
    let ask = RouteAsk {
        model: &model,
        op: ApiOp::Messages,
        est_tokens: est,
        hints,
        uses,
    };
    with_fallback_to(
        &state.mesh.local_router(),
        ask,
        &settings.retry,
        ctx,
        |mut lease| {
            let shared = shared.clone();
            async move {
                let def = lease.model().clone();
                let native = lease.route().serves_natively(ApiOp::Messages);
                let body = match upstream_request(&shared, &def, &lease, native) {
                    Ok(body) => body,
                    Err(e) => {
                        lease.finish(Outcome::ClientError);
                        return Attempt::Fail(e);
                    }
                };
                let path = if native {
                    ApiOp::Messages.upstream_path()
                } else {
                    ApiOp::ChatCompletions.upstream_path()
                };
                if shared.facts.stream {
                    stream_attempt(state, client, lease, &shared, native, path, body).await
                } else {
                    json_attempt(state, client, lease, &shared, native, path, body).await
                }
            }
        },
    )
    .await
}

/// The body one route receives: the client's own for a native route, the chat translation
/// (filtered for the model, usage requested on streams) for the rest. What the model refuses
/// was refused before either ([`RouteAsk::uses`]).
fn upstream_request(
    shared: &Shared,
    def: &ModelDef,
    lease: &Lease,
    native: bool,
) -> Result<SplicedBody, ApiError> {
    let provider_model = &lease.route().provider_model_id;
    if native {
        let mut body = shared.native.borrow_mut();
        body.insert("model".into(), Value::String(provider_model.clone()));
        let bytes = serde_json::to_vec(&*body).map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok(SplicedBody::new([Bytes::from(bytes)]));
    }
    let mut chat = shared.chat.borrow_mut();
    if chat.is_none() {
        let (_, translated) = anthropic::to_chat_request(&shared.native.borrow())?;
        let bytes =
            serde_json::to_vec(&translated).map_err(|e| ApiError::internal(e.to_string()))?;
        let (_, mut parsed) = chat_request::parse(&Bytes::from(bytes))?;
        filter_params(&mut parsed, def, ApiOp::ChatCompletions);
        *chat = Some(parsed);
    }
    match chat.as_mut() {
        Some(body) => Ok(upstream_body(body, provider_model, shared.facts.stream)),
        None => Err(ApiError::internal("the translated request went missing")),
    }
}

async fn json_attempt(
    state: &AppState,
    client: &awc::Client,
    lease: Lease,
    shared: &Shared,
    native: bool,
    path: &str,
    body: SplicedBody,
) -> Attempt<Reply> {
    let settings = &state.settings;
    let public_model = lease.model().id.clone();
    let reply = match call_json(
        client,
        lease,
        path,
        body,
        &shared.fwd,
        &settings.timeouts,
        settings.max_response_bytes,
    )
    .await
    {
        Attempt::Done(reply) => reply,
        Attempt::Retry(e) => return Attempt::Retry(e),
        Attempt::Fail(e) => return Attempt::Fail(e),
    };
    let answer: Value = serde_json::from_slice(&reply.body.to_bytes()).unwrap_or(Value::Null);
    let mut message = if native {
        answer
    } else {
        anthropic::to_messages_response(&answer, &public_model, &shared.request_id)
    };
    let usage = reply.usage.unwrap_or_else(|| {
        // Nothing reported: the router's estimate, shown to the client too.
        let output = estimated_output_tokens(&message);
        let usage = Usage {
            prompt_tokens: shared.facts.prompt_tokens(),
            completion_tokens: output,
            cached_tokens: 0,
            estimated: true,
        };
        if let Some(m) = message.as_object_mut() {
            m.insert(
                "usage".into(),
                json!({"input_tokens": usage.prompt_tokens, "output_tokens": output}),
            );
        }
        usage
    });
    Attempt::Done(Reply::Json(message, usage))
}

/// Output tokens guessed from a Messages answer's text and tool inputs.
fn estimated_output_tokens(message: &Value) -> u64 {
    let chars: usize = message
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .map(|b| match b.get("text").and_then(Value::as_str) {
                    Some(text) => text.len(),
                    None => b.get("input").map_or(0, |i| i.to_string().len()),
                })
                .sum()
        })
        .unwrap_or(0);
    (chars as u64).div_ceil(4)
}

async fn stream_attempt(
    state: &AppState,
    client: &awc::Client,
    lease: Lease,
    shared: &Shared,
    native: bool,
    path: &str,
    body: SplicedBody,
) -> Attempt<Reply> {
    let public_model = lease.model().id.clone();
    let prompt_estimate = shared.facts.prompt_tokens();
    let dialect = if native {
        MessagesDialect::Native(MessagesNative::new(&public_model))
    } else {
        MessagesDialect::Translated(MessagesFromChat::new(
            &public_model,
            &shared.request_id,
            prompt_estimate,
        ))
    };
    let request = (path, body);
    let settings = &state.settings;
    match open_stream(
        client,
        settings,
        lease,
        request,
        &shared.fwd,
        prompt_estimate,
        dialect,
    )
    .await
    {
        Attempt::Done(stream) => Attempt::Done(Reply::Stream(stream)),
        Attempt::Retry(e) => Attempt::Retry(e),
        Attempt::Fail(e) => Attempt::Fail(e),
    }
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, counted by the route when it serves
/// Messages natively, else estimated from the request (its text at about four bytes a token,
/// 85 per image). The request is routed like any other (key model lists and limits apply);
/// an estimate releases its lease without calling the backend.
pub async fn count_tokens(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::MessagesCountTokens);
    let result = count(&req, payload, &state, &client, &mut ctx).await;
    match result {
        Ok(tokens) => {
            ctx.record.usage = Some(Usage {
                prompt_tokens: 0,
                completion_tokens: 0,
                cached_tokens: 0,
                estimated: false,
            });
            ctx.complete(200, "success");
            Ok(json_response(&json!({"input_tokens": tokens})))
        }
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

async fn count(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    client: &awc::Client,
    ctx: &mut RequestCtx,
) -> Result<u64, ApiError> {
    let (mut body, _permit) = read_json_object(req, payload, state.settings.max_body_bytes).await?;
    let (facts, images) = anthropic::count_tokens_facts(&body)?;
    let estimate = anthropic::estimate_input_tokens(&facts, images);
    let fwd = forwarded_with_version(req, ctx.request_id());
    let settings = &state.settings;
    let body = RefCell::new(&mut body);
    with_fallback(
        &state.mesh.local_router(),
        &facts.model,
        ApiOp::MessagesCountTokens,
        estimate,
        &settings.retry,
        ctx,
        |mut lease| {
            let fwd = fwd.clone();
            let bytes = {
                let mut body = body.borrow_mut();
                body.insert(
                    "model".into(),
                    Value::String(lease.route().provider_model_id.clone()),
                );
                serde_json::to_vec(&**body).unwrap_or_default()
            };
            async move {
                if !lease.route().serves_natively(ApiOp::MessagesCountTokens) {
                    // No backend call: the lease says nothing about the endpoint.
                    lease.set_actual_tokens(0);
                    lease.finish(Outcome::Canceled);
                    return Attempt::Done(estimate);
                }
                match call_json(
                    client,
                    lease,
                    ApiOp::MessagesCountTokens.upstream_path(),
                    Bytes::from(bytes),
                    &fwd,
                    &settings.timeouts,
                    settings.max_response_bytes,
                )
                .await
                {
                    Attempt::Done(reply) => {
                        Attempt::Done(reply.body.field::<u64>("input_tokens").unwrap_or(estimate))
                    }
                    Attempt::Retry(e) => Attempt::Retry(e),
                    Attempt::Fail(e) => Attempt::Fail(e),
                }
            }
        },
    )
    .await
}

/// The routing hints of a Messages request: `system` then `messages` rendered as the engine
/// will see them (only when the model's policy reads prompts), and the session key from
/// `x-session-id`, else `metadata.user_id`.
fn messages_hints(
    req: &HttpRequest,
    body: &Map<String, Value>,
    wants_prompt: impl FnOnce() -> bool,
) -> RoutingHints {
    let prompt = wants_prompt()
        .then(|| {
            let system = body
                .get("system")
                .map(|content| serde_json::json!({"role": "system", "content": content}));
            let turns = body.get("messages").and_then(Value::as_array);
            let all: Vec<&Value> = system.iter().chain(turns.into_iter().flatten()).collect();
            serde_json::to_vec(&all).ok().map(Bytes::from)
        })
        .flatten();
    routing_hints::chat_hints(
        req,
        prompt.as_ref().map(|b| (b, PromptShape::Messages)),
        |name| match name {
            "user" => body
                .get("metadata")
                .and_then(|m| m.get("user_id"))
                .and_then(|id| serde_json::to_vec(id).ok())
                .map(Bytes::from),
            _ => None,
        },
    )
}
