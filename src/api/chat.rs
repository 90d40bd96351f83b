//! `POST /v1/chat/completions`: validation, parameter filtering per model, then either a JSON
//! answer or an SSE stream relayed event by event. Text completions ([`super::completions`])
//! go through the same relay ([`serve`]) with their own validation.

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::Value;
use tracing::debug;

use super::body::{read_json_body, JsonBody};
use super::chat_request::{self, ChatBody, ChatFacts};
use super::routing_hints;
use super::{event_stream_response, forwarded, json_bytes_response, new_ctx};
use crate::api::state::AppState;
use crate::config::ModelDef;
use crate::engines::ApiOp;
use crate::error::ApiError;
use crate::mesh::Lease;
use crate::record::Usage;
use crate::relay::capabilities::{raw_json_asks, CHAT_TOOL_KEYS};
use crate::relay::chat_stream::{ChatStream, OpenAiChat, StreamDialect};
use crate::relay::json::call_json;
use crate::relay::shallow::JsonObject;
use crate::relay::spliced::SplicedBody;
use crate::relay::upstream::post_json;
use crate::relay::{with_fallback_to, Attempt, Forwarded, RouteAsk, Uses};
use crate::settings::Settings;

/// Body keys that steer the router (OpenRouter extensions) and are never sent upstream.
const ROUTER_ONLY: &[&str] = &["models", "provider", "route", "transforms", "plugins"];
/// Body keys the router manages itself; always kept (with the operation's input, see
/// [`input_member`]).
const ALWAYS_KEPT: &[&str] = &["model", "stream", "stream_options"];

/// The member that carries a chat-like operation's input.
fn input_member(op: ApiOp) -> &'static str {
    match op {
        ApiOp::Completions => "prompt",
        _ => "messages",
    }
}

/// Drop what the model's route must not receive; the body is filtered in place, once.
pub fn filter_params(body: &mut ChatBody, def: &ModelDef, op: ApiOp) {
    body.retain(|key| !ROUTER_ONLY.contains(&key));
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
            if !body.contains_key("max_tokens") {
                body.insert("max_tokens", v);
            }
        }
    }
    body.retain(|key| {
        let keep = ALWAYS_KEPT.contains(&key)
            || key == input_member(op)
            || listed(key)
            || (def.supports_tools && CHAT_TOOL_KEYS.contains(&key))
            || (def.supports_structured_output && key == "response_format");
        if !keep {
            debug!(model = %def.id, param = %key, "dropping parameter not in supported_params");
        }
        keep
    });
}

/// The body one route receives: its own model name, and usage always requested on streams.
pub fn upstream_body(body: &mut ChatBody, provider_model_id: &str, stream: bool) -> SplicedBody {
    if let Ok(model) = serde_json::to_vec(provider_model_id) {
        body.insert("model", Bytes::from(model));
    }
    if stream {
        let options = stream_options_with_usage(body.get("stream_options"));
        body.insert("stream_options", options);
    }
    body.to_spliced()
}

/// The client's `stream_options` object (if it sent one) with `include_usage` set to true.
fn stream_options_with_usage(sent: Option<&Bytes>) -> Bytes {
    let mut options = sent
        .and_then(|raw| JsonObject::parse(raw).ok())
        .unwrap_or_else(JsonObject::empty);
    // Every duplicate goes, so the backend cannot read a `false` the client also sent.
    options.remove("include_usage");
    if let Ok(yes) = serde_json::value::to_raw_value(&true) {
        options.set_raw("include_usage", yes);
    }
    options.to_bytes()
}

/// Prompt tokens guessed from text length (about four characters a token), used when a
/// backend reports no usage.
fn estimate_prompt_tokens(facts: &ChatFacts) -> u64 {
    (facts.prompt_chars as u64).div_ceil(4).max(1)
}

/// Completion tokens guessed from a non-streamed answer's text (a chat message's content or
/// a text completion's `text`).
fn estimate_completion_tokens(body: &JsonObject) -> u64 {
    let chars: usize = body
        .field::<Vec<Value>>("choices")
        .map(|choices| {
            choices
                .iter()
                .filter_map(|c| {
                    c.pointer("/message/content")
                        .or_else(|| c.get("text"))
                        .and_then(Value::as_str)
                })
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
    serve(
        req,
        payload,
        state,
        client,
        ApiOp::ChatCompletions,
        chat_request::parse,
    )
    .await
}

/// Reads a chat-like body into what the relay needs to know and what it forwards.
pub type ParseBody = fn(&Bytes) -> Result<(ChatFacts, ChatBody), ApiError>;

/// Serve a chat-like operation (`op` relayed to its upstream path, JSON or SSE): the one
/// relay behind chat and text completions, with fallback, limits, usage and the record.
pub async fn serve(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
    op: ApiOp,
    parse: ParseBody,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, op);
    let result = handle(&req, payload, &state, &client, &mut ctx, op, parse).await;
    match result {
        Ok(Reply::Json(body, usage)) => {
            ctx.record.usage = Some(usage);
            if ctx.trace.is_on() {
                trace_answer(&mut ctx.trace, &body);
            }
            ctx.complete(200, "success");
            Ok(json_bytes_response(body.to_bytes()))
        }
        Ok(Reply::Stream(stream)) => Ok(event_stream_response(stream.into_body(ctx))),
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

/// A JSON answer's finish reasons (and, when content is captured, its choices) on the span.
fn trace_answer(trace: &mut crate::telemetry::RequestTrace, body: &JsonObject) {
    let choices = body.field::<Vec<Value>>("choices").unwrap_or_default();
    trace.finish_reasons = choices
        .iter()
        .filter_map(|c| c.get("finish_reason").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    if crate::telemetry::capture_content() {
        trace.output = serde_json::to_string(&choices).ok();
    }
}

/// One attempt's answer: the JSON, or a stream primed up to its first content and speaking
/// `D` to the client.
pub enum Reply<D: StreamDialect = OpenAiChat> {
    Json(JsonObject, Usage),
    Stream(Box<ChatStream<D>>),
}

/// A chat body shared by a request's attempts: filtered once for the model (the flag), renamed
/// per route.
pub type SharedChatBody = RefCell<(ChatBody, bool)>;

/// What every attempt of one chat-like request sends: the body, what was read of it, and the
/// operation whose upstream path it goes to.
pub struct ChatCall<'a> {
    pub body: &'a SharedChatBody,
    pub facts: &'a ChatFacts,
    pub fwd: &'a Forwarded,
    pub op: ApiOp,
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    client: &awc::Client,
    ctx: &mut crate::record::RequestCtx,
    op: ApiOp,
    parse: ParseBody,
) -> Result<Reply, ApiError> {
    // The permit holds this body's share of the JSON budget until the reply is under way.
    let JsonBody {
        bytes,
        permit: _permit,
        ..
    } = read_json_body(req, payload, state.settings.max_body_bytes).await?;
    let (facts, body) = parse(&bytes)?;
    ctx.record.stream = facts.stream;
    if ctx.trace.is_on() {
        ctx.trace.max_tokens = facts.max_tokens;
        if crate::telemetry::capture_content() {
            ctx.trace.input = body
                .get(input_member(op))
                .map(|raw| String::from_utf8_lossy(raw).into_owned());
        }
    }
    // The prompt's head is rendered only for models whose policy reads it.
    let shape = match op {
        ApiOp::Completions => routing_hints::PromptShape::Prompt,
        _ => routing_hints::PromptShape::Messages,
    };
    let input = body
        .get(input_member(op))
        .filter(|_| state.mesh.table().wants_prompt(&facts.model));
    let hints = routing_hints::chat_hints(req, input.map(|b| (b, shape)), |name| {
        body.get(name).cloned()
    });
    let fwd = forwarded(req, ctx.request_id());
    let settings = &state.settings;
    // The body is shared by attempts: filtered once for the model, renamed per route.
    let shared = Rc::new(RefCell::new((body, false)));
    let facts = Rc::new(facts);
    let uses = Uses::read(
        op,
        |key| body_asks(&shared.borrow().0, key),
        facts.uses_image,
        facts.uses_audio,
    );
    let ask = RouteAsk {
        model: &facts.model,
        op,
        est_tokens: estimated_tokens(&facts),
        hints,
        uses,
    };
    with_fallback_to(
        &state.mesh.local_router(),
        ask,
        &settings.retry,
        ctx,
        |lease| {
            let (shared, facts, fwd) = (shared.clone(), facts.clone(), fwd.clone());
            async move {
                let call = ChatCall {
                    body: &shared,
                    facts: &facts,
                    fwd: &fwd,
                    op,
                };
                let dialect = OpenAiChat {
                    public_model: lease.model().id.clone(),
                    client_wants_usage: facts.include_usage,
                };
                chat_attempt(client, settings, lease, &call, dialect).await
            }
        },
    )
    .await
}

/// Whether a chat-like body sends `key` asking for its capability.
fn body_asks(body: &ChatBody, key: &str) -> bool {
    body.get(key).is_some_and(|raw| raw_json_asks(key, raw))
}

/// Tokens a chat request is expected to use, for tokens/minute limits before it is answered.
pub fn estimated_tokens(facts: &ChatFacts) -> u64 {
    (facts.prompt_chars as u64).div_ceil(4) + facts.max_tokens.unwrap_or(512)
}

/// One attempt of a chat-like request on `lease`: the JSON answer, or a stream primed up to its
/// first content and written to the client by `dialect`. Shared by chat, text completions and
/// the APIs translated to chat.
pub async fn chat_attempt<D: StreamDialect>(
    client: &awc::Client,
    settings: &Settings,
    lease: Lease,
    call: &ChatCall<'_>,
    dialect: D,
) -> Attempt<Reply<D>> {
    let ChatCall {
        body: shared,
        facts,
        fwd,
        op,
    } = *call;
    let def = lease.model().clone();
    let bytes = {
        let mut guard = shared.borrow_mut();
        let (body, filtered) = &mut *guard;
        if !*filtered {
            filter_params(body, &def, op);
            *filtered = true;
        }
        upstream_body(body, &lease.route().provider_model_id, facts.stream)
    };
    let prompt_estimate = estimate_prompt_tokens(facts);
    let path = op.upstream_path();
    if !facts.stream {
        return match call_json(
            client,
            lease,
            path,
            bytes,
            fwd,
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
    let request = (path, bytes);
    match open_stream(
        client,
        settings,
        lease,
        request,
        fwd,
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

/// POST `body` to the backend's `path` and prime its event stream, read and written by
/// `dialect`, up to the first content: a failure until then may go to another route.
pub async fn open_stream<D: StreamDialect>(
    client: &awc::Client,
    settings: &Settings,
    mut lease: Lease,
    (path, body): (&str, impl actix_web::body::MessageBody + 'static),
    fwd: &Forwarded,
    prompt_estimate: u64,
    dialect: D,
) -> Attempt<Box<ChatStream<D>>> {
    let upstream = match post_json(client, &lease, path, body, fwd, &settings.timeouts).await {
        Ok(u) => u,
        Err(e) => return e.into_attempt(&mut lease),
    };
    let limits = settings.timeouts.for_route(lease.route());
    let started_ago = lease.elapsed();
    let public_model = lease.model().id.clone();
    let mut stream = ChatStream::with_dialect(
        upstream.body,
        lease,
        dialect,
        public_model,
        prompt_estimate,
        limits.idle,
        settings.max_sse_event_bytes,
    )
    .with_total_limit(started_ago, limits.total);
    match stream.prime().await {
        Ok(()) => Attempt::Done(Box::new(stream)),
        Err(e) => Attempt::Retry(e),
    }
}
