//! `POST /v1/responses`: OpenAI's Responses API, routed as chat is (key model lists, limits,
//! fallback before the first byte, usage, the request's record).
//!
//! Each attempt's route decides how it is served. A route that serves the API itself
//! ([`crate::config::RouteDef::serves_natively`]) gets the body with only `model` rewritten,
//! and its answer is relayed: JSON, or `response.*` events one by one. Any other chat route
//! gets the request translated to chat completions and the answer translated back
//! ([`crate::translate::responses`]); such a response is not stored anywhere (`store: false`).
//!
//! `previous_response_id` needs the backend that stored the earlier response: the route of
//! every natively stored response is remembered in the database (`response_routes`, shared by
//! replicas), and a follow-up goes to that route only. Translated, it is a 400.

use std::rc::Rc;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{Map, Value};
use tracing::warn;

use super::body::read_json_object;
use super::chat::{chat_attempt, open_stream, ChatCall, Reply, SharedChatBody};
use super::chat_request::{self, ChatFacts};
use super::routing_hints::{self, PromptShape};
use super::{event_stream_response, forwarded, json_bytes_response, new_ctx};
use crate::api::state::AppState;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{Lease, Outcome, RoutingHints};
use crate::record::{RequestCtx, Usage};
use crate::relay::capabilities::json_asks;
use crate::relay::chat_stream::ChatStream;
use crate::relay::json::{call_json, call_json_with};
use crate::relay::responses_stream::{
    OnStored, ResponsesDialect, ResponsesFromChat, ResponsesNative,
};
use crate::relay::{with_fallback_on, Attempt, Forwarded, RouteAsk, Uses};
use crate::store::response_routes::{ResponseHome, ResponseRoutes};
use crate::translate::responses::request::MAX_RESPONSE_ID_BYTES;
use crate::translate::responses::{from_chat, to_chat, EventStream, ResponseMeta, ResponsesFacts};

pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(&req, &state, ApiOp::Responses);
    match handle(&req, payload, &state, &client, &mut ctx).await {
        Ok(Answer::Json(body, usage)) => {
            ctx.record.usage = Some(usage);
            if ctx.trace.is_on() {
                ctx.trace.finish_reasons = crate::translate::responses::finish_reason(&body)
                    .into_iter()
                    .collect();
            }
            ctx.complete(200, "success");
            Ok(json_bytes_response(body))
        }
        Ok(Answer::Stream(stream)) => Ok(event_stream_response(stream.into_body(ctx))),
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

enum Answer {
    Json(Bytes, Usage),
    Stream(Box<ChatStream<ResponsesDialect>>),
}

/// The request as chat, for the routes that need the translation.
struct Translated {
    facts: ChatFacts,
    body: SharedChatBody,
}

/// What every attempt shares.
struct Request {
    body: Map<String, Value>,
    facts: ResponsesFacts,
    /// The chat translation, or why there is none (a 400 for a translated route).
    translated: Result<Translated, ApiError>,
    /// The id a translated response gets (a native backend names its own).
    response_id: String,
    created_at: u64,
    fwd: Forwarded,
    /// Where natively stored responses are remembered, with the caller's key.
    remember: Option<Remember>,
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    client: &awc::Client,
    ctx: &mut RequestCtx,
) -> Result<Answer, ApiError> {
    let (body, _permit) = read_json_object(req, payload, state.settings.max_body_bytes).await?;
    let facts = ResponsesFacts::read(&body)?;
    ctx.record.stream = facts.stream;
    ctx.trace.max_tokens = facts.max_output_tokens;
    let translated = to_chat(&body).and_then(|chat| {
        let bytes = serde_json::to_vec(&chat).map_err(|e| ApiError::internal(e.to_string()))?;
        let (facts, body) = chat_request::parse(&Bytes::from(bytes))?;
        Ok(Translated {
            facts,
            body: std::cell::RefCell::new((body, false)),
        })
    });
    let table = state.mesh.table();
    let resolved = table.resolve(&facts.model).map(|entry| entry.def.clone());
    let any_native = resolved.as_ref().is_some_and(|def| {
        def.routes
            .iter()
            .any(|r| r.is_enabled() && r.serves_natively(ApiOp::Responses))
    });
    // With no route to take it as is, a request the translation refuses is refused now,
    // before any backend is contacted.
    if let (false, Err(e)) = (any_native, &translated) {
        if resolved.is_some() {
            return Err(e.clone());
        }
    }
    let db = ResponseRoutes::new(state.store.pool.clone(), state.settings.response_routes_ttl);
    let key_id = ctx.record.api_key_id.clone();
    let pinned = match (&facts.previous_response_id, &resolved) {
        (Some(id), Some(def)) => Some(stored_home(&db, id, key_id.as_deref(), &def.id).await?),
        _ => None,
    };
    let request = Rc::new(Request {
        remember: facts.store.then(|| Remember { db, key_id }),
        created_at: unix_now(),
        response_id: format!("resp_{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        fwd: forwarded(req, ctx.request_id()),
        translated,
        facts,
        body,
    });
    let est_tokens = (request.facts.prompt_chars as u64).div_ceil(4)
        + request.facts.max_output_tokens.unwrap_or(512);
    let wants_prompt = table.wants_prompt(&request.facts.model);
    let uses = Uses::read(
        ApiOp::Responses,
        |key| request.body.get(key).is_some_and(|v| json_asks(key, v)),
        request.facts.uses_image,
        request.facts.uses_audio,
    );
    let ask = RouteAsk {
        model: &request.facts.model,
        op: ApiOp::Responses,
        est_tokens,
        hints: hints(req, &request.body, &request.translated, wants_prompt),
        uses,
    };
    with_fallback_on(
        &state.mesh.local_router(),
        ask,
        pinned.as_ref().map(|home| home.route.as_str()),
        &state.settings.retry,
        ctx,
        |lease| {
            let request = request.clone();
            async move {
                if lease.route().serves_natively(ApiOp::Responses) {
                    native_attempt(client, state, lease, &request).await
                } else {
                    translated_attempt(client, state, lease, &request).await
                }
            }
        },
    )
    .await
}

/// The routing hints of a Responses request: for a model whose policy reads prompts, the
/// prompt as the chat translation renders it (`instructions` as the system message, then the
/// input items as turns), so native and translated routes share one prefix; and the session
/// key (`x-session-id`, else the body's `prompt_cache_key`, else `user`). A request the
/// translation refuses (built-in tools, for native routes only) routes without a prompt.
fn hints(
    req: &HttpRequest,
    body: &Map<String, Value>,
    translated: &Result<Translated, ApiError>,
    wants_prompt: bool,
) -> RoutingHints {
    let chat = translated
        .as_ref()
        .ok()
        .filter(|_| wants_prompt)
        .map(|t| t.body.borrow());
    let messages = chat.as_ref().and_then(|chat| chat.0.get("messages"));
    routing_hints::chat_hints(req, messages.map(|m| (m, PromptShape::Messages)), |name| {
        body.get(name)
            .and_then(|v| serde_json::to_vec(v).ok())
            .map(Bytes::from)
    })
}

/// `GET /v1/responses/{id}`: the stored response, from the backend that stored it.
pub async fn get(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    relay_stored(&req, Method::GET, &id, &state, &client).await
}

/// `DELETE /v1/responses/{id}`: deleted on the backend that stored it, then forgotten here.
pub async fn delete(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    relay_stored(&req, Method::DELETE, &id, &state, &client).await
}

/// Relay `method` on a stored response to the route that stored it (no fallback: no other
/// backend has it). Only ids of the usual alphabet are relayed, so an id cannot reach another
/// path of the backend.
async fn relay_stored(
    req: &HttpRequest,
    method: Method,
    id: &str,
    state: &AppState,
    client: &awc::Client,
) -> Result<HttpResponse, ApiError> {
    let mut ctx = new_ctx(req, state, ApiOp::Responses);
    let result = async {
        let not_found = || {
            ApiError::new(
                ErrorCode::ResponseNotFound,
                format!("Response with id '{id}' not found."),
            )
        };
        let plain = id.len() <= MAX_RESPONSE_ID_BYTES
            && !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain {
            return Err(not_found());
        }
        let db = ResponseRoutes::new(state.store.pool.clone(), state.settings.response_routes_ttl);
        let key_id = ctx.record.api_key_id.clone();
        let home = db
            .lookup(id, key_id.as_deref())
            .await
            .map_err(|e| {
                warn!(error = %e, "response_routes lookup failed");
                ApiError::new(
                    ErrorCode::JobStoreUnavailable,
                    "The router's database is not available to find the response.",
                )
            })?
            .ok_or_else(not_found)?;
        let fwd = forwarded(req, ctx.request_id());
        let path = format!("{}/{id}", ApiOp::Responses.upstream_path());
        let settings = &state.settings;
        let ask = RouteAsk {
            model: &home.model,
            op: ApiOp::Responses,
            est_tokens: 1,
            hints: RoutingHints::default(),
            uses: Uses::default(),
        };
        let reply = with_fallback_on(
            &state.mesh.local_router(),
            ask,
            Some(&home.route),
            &settings.retry,
            &mut ctx,
            |lease| {
                let (method, path, fwd) = (method.clone(), path.clone(), fwd.clone());
                async move {
                    let call = (method, path.as_str(), None::<Bytes>);
                    let timeouts = &settings.timeouts;
                    call_json_with(
                        client,
                        lease,
                        call,
                        &fwd,
                        timeouts,
                        settings.max_response_bytes,
                    )
                    .await
                }
            },
        )
        .await?;
        if method == Method::DELETE {
            if let Err(e) = db.forget(id).await {
                warn!(error = %e, "could not forget a deleted response's route");
            }
        }
        Ok(reply.body.to_bytes())
    }
    .await;
    match result {
        Ok(body) => {
            ctx.complete(200, "success");
            Ok(json_bytes_response(body))
        }
        Err(e) => {
            ctx.fail(&e);
            Err(e)
        }
    }
}

/// The route that stored `id` for this caller, which must belong to the model asked for.
async fn stored_home(
    db: &ResponseRoutes,
    id: &str,
    key_id: Option<&str>,
    model: &str,
) -> Result<ResponseHome, ApiError> {
    let found = db.lookup(id, key_id).await.map_err(|e| {
        warn!(error = %e, "response_routes lookup failed");
        ApiError::new(
            ErrorCode::JobStoreUnavailable,
            "The router's database is not available to find the previous response.",
        )
    })?;
    let not_found = || {
        ApiError::new(
            ErrorCode::PreviousResponseNotFound,
            format!("Previous response with id '{id}' not found."),
        )
        .with_param("previous_response_id")
    };
    match found {
        Some(home) if home.model == model => Ok(home),
        Some(home) => Err(ApiError::bad_request(
            format!(
                "Previous response with id '{id}' was made by model `{}`; send the follow-up to that model.",
                home.model
            ),
            Some("previous_response_id"),
        )),
        None => Err(not_found()),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A native route: the client's body with the route's model id, the answer relayed.
async fn native_attempt(
    client: &awc::Client,
    state: &AppState,
    mut lease: Lease,
    request: &Request,
) -> Attempt<Answer> {
    let settings = &state.settings;
    let mut body = request.body.clone();
    body.insert(
        "model".into(),
        Value::String(lease.route().provider_model_id.clone()),
    );
    let bytes = match serde_json::to_vec(&body) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            lease.finish(Outcome::LocalFailure);
            return Attempt::Fail(ApiError::internal(e.to_string()));
        }
    };
    let home = ResponseHome {
        model: lease.model().id.clone(),
        route: lease.route().name.clone(),
    };
    let remember = request.remember.clone().map(|r| (r, home));
    let prompt_estimate = (request.facts.prompt_chars as u64).div_ceil(4).max(1);
    let path = ApiOp::Responses.upstream_path();
    if !request.facts.stream {
        let fwd = &request.fwd;
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
                if let Some((remember, home)) = remember {
                    if reply.body.field::<bool>("store") != Some(false) {
                        if let Some(id) = reply.body.field::<String>("id") {
                            remember.save(&id, &home).await;
                        }
                    }
                }
                let usage = reply.usage.unwrap_or(Usage {
                    prompt_tokens: prompt_estimate,
                    completion_tokens: 0,
                    cached_tokens: 0,
                    estimated: true,
                });
                Attempt::Done(Answer::Json(reply.body.to_bytes(), usage))
            }
            Attempt::Retry(e) => Attempt::Retry(e),
            Attempt::Fail(e) => Attempt::Fail(e),
        };
    }
    // Remembered off the stream's path, as soon as the backend names its response.
    let on_stored = remember.map(|(remember, home)| -> OnStored {
        Box::new(move |id| {
            actix_rt::spawn(async move { remember.save(&id, &home).await });
        })
    });
    let dialect = ResponsesNative::new(&lease.model().id, on_stored);
    let stream = open_stream(
        client,
        settings,
        lease,
        (path, bytes),
        &request.fwd,
        prompt_estimate,
        ResponsesDialect::Native(dialect),
    )
    .await;
    match stream {
        Attempt::Done(stream) => Attempt::Done(Answer::Stream(stream)),
        Attempt::Retry(e) => Attempt::Retry(e),
        Attempt::Fail(e) => Attempt::Fail(e),
    }
}

/// A chat-only route: the chat translation sent as a chat request, its answer translated back.
async fn translated_attempt(
    client: &awc::Client,
    state: &AppState,
    mut lease: Lease,
    request: &Request,
) -> Attempt<Answer> {
    let translated = match &request.translated {
        Ok(t) => t,
        Err(e) => {
            lease.finish(Outcome::ClientError);
            return Attempt::Fail(e.clone());
        }
    };
    let meta = ResponseMeta::new(
        request.response_id.clone(),
        lease.model().id.clone(),
        request.created_at,
        &request.body,
    );
    let dialect = ResponsesFromChat::new(EventStream::new(meta.clone()));
    let call = ChatCall {
        body: &translated.body,
        facts: &translated.facts,
        fwd: &request.fwd,
        op: ApiOp::ChatCompletions,
    };
    let dialect = ResponsesDialect::Translated(dialect);
    let attempt = chat_attempt(client, &state.settings, lease, &call, dialect).await;
    match attempt {
        Attempt::Done(Reply::Json(chat, usage)) => {
            let chat: Value = serde_json::from_slice(&chat.to_bytes()).unwrap_or(Value::Null);
            let response = from_chat(&meta, &chat);
            let bytes = serde_json::to_vec(&response).unwrap_or_default();
            Attempt::Done(Answer::Json(Bytes::from(bytes), usage))
        }
        Attempt::Done(Reply::Stream(stream)) => Attempt::Done(Answer::Stream(stream)),
        Attempt::Retry(e) => Attempt::Retry(e),
        Attempt::Fail(e) => Attempt::Fail(e),
    }
}

/// Where and for whom natively stored responses are remembered.
#[derive(Clone)]
struct Remember {
    db: ResponseRoutes,
    key_id: Option<String>,
}

impl Remember {
    /// Best effort: a failed write costs a later follow-up its 400, never this answer.
    async fn save(&self, response_id: &str, home: &ResponseHome) {
        // A backend's id longer than any follow-up may name is not worth a row.
        if response_id.is_empty() || response_id.len() > MAX_RESPONSE_ID_BYTES {
            return;
        }
        if let Err(e) = self
            .db
            .remember(response_id, home, self.key_id.as_deref())
            .await
        {
            warn!(error = %e, route = %home.route, "could not remember a stored response's route");
        }
    }
}
