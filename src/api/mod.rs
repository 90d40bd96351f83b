//! The HTTP surface: one module per endpoint family, plus shared request helpers and the
//! state every handler shares ([`state`]).

pub mod anthropic_shape;
pub mod body;
pub mod canonical_path;
pub mod catalogue;
pub mod chat;
pub mod chat_request;
pub mod completions;
pub mod completions_request;
pub mod embeddings;
pub mod front_door;
pub mod health;
pub mod health_deps;
pub mod images;
pub mod json_budget;
pub mod json_shape;
pub mod messages;
pub mod model_endpoints;
pub mod models;
pub mod openapi;
pub mod raw_json;
pub mod request_id;
pub mod rerank;
pub mod rerank_shape;
pub mod responses;
pub mod routing_hints;
pub mod speech;
pub mod state;
pub mod transcriptions;
pub mod video;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use self::request_id::RequestId;
use crate::api::state::AppState;
use crate::engines::ApiOp;
use crate::error::{ApiError, ErrorCode};
use crate::record::RequestCtx;
use crate::relay::Forwarded;

/// Mount every route. `/v1`, OpenRouter's `/api/v1` and the self-hosted platform's proxy
/// prefix `/api/v1/ai` serve the same API, each scope behind the client key check (attached to
/// the scope, so it covers exactly what routes there); the rerank aliases outside `/v1`
/// (`/rerank`, `/v2/rerank`) carry the same check on their resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .route(web::get().to(health::health))
            .default_service(web::to(method_not_allowed)),
    );
    cfg.service(
        web::resource("/openapi.yaml")
            .route(web::get().to(openapi::document))
            .default_service(web::to(method_not_allowed)),
    );
    // `/api/v1/ai` before `/api/v1`: a scope that matches a prefix keeps the request.
    for prefix in ["/v1", "/api/v1/ai", "/api/v1"] {
        cfg.service(
            web::scope(prefix)
                .wrap(actix_web::middleware::from_fn(crate::auth::client_scope))
                // Outside the key check, so its refusals are reshaped too.
                .wrap(actix_web::middleware::from_fn(
                    anthropic_shape::anthropic_errors,
                ))
                .configure(client_endpoints),
        );
    }
    // Cohere's `/v2/rerank` and the bare `/rerank`, under the same key check, attached to
    // the resource itself (a scope at the root would match every path).
    cfg.service(
        web::resource(["/rerank", "/v2/rerank"])
            .route(web::post().to(rerank::rerank))
            .default_service(web::to(method_not_allowed))
            .wrap(actix_web::middleware::from_fn(crate::auth::client_scope)),
    );
}

/// Every client endpoint of an API scope. The self-hosted platform's paths for images and
/// video (`/generations/images`, `/generations/videos/…`) are aliases of the OpenAI ones,
/// served by the same handlers.
fn client_endpoints(cfg: &mut web::ServiceConfig) {
    cfg.service(post("/chat/completions", chat::chat_completions))
        .service(post("/completions", completions::completions))
        .service(post("/messages", messages::messages))
        .service(post("/messages/count_tokens", messages::count_tokens))
        .service(post("/responses", responses::create))
        .service(
            web::resource("/responses/{id}")
                .route(web::get().to(responses::get))
                .route(web::delete().to(responses::delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(post("/embeddings", embeddings::embeddings))
        .service(post("/rerank", rerank::rerank))
        .service(post("/audio/speech", speech::speech))
        .service(post(
            "/audio/transcriptions",
            transcriptions::transcriptions,
        ))
        .service(post("/audio/translations", transcriptions::translations))
        .service(post("/images/generations", images::generations))
        .service(post("/generations/images", images::generations));
    for jobs in ["/video/generations", "/generations/videos"] {
        cfg.service(
            web::resource(jobs)
                .route(web::post().to(video::create))
                .route(web::get().to(video::list))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{jobs}/{{id}}"))
                .route(web::get().to(video::get))
                .route(web::delete().to(video::delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{jobs}/{{id}}/content"))
                .route(web::get().to(video::content))
                .default_service(web::to(method_not_allowed)),
        )
        .service(post(&format!("{jobs}/{{id}}/cancel"), video::cancel));
    }
    cfg.service(
        web::resource("/catalogue")
            .route(web::get().to(catalogue::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/models")
            .route(web::get().to(models::list_models))
            .default_service(web::to(method_not_allowed)),
    )
    // Before `/models/{id}`, whose pattern would take `…/endpoints` as part of an id.
    .service(
        web::resource("/models/{id:.+}/endpoints")
            .route(web::get().to(model_endpoints::list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/models/{id:.+}")
            .route(web::get().to(models::get_model))
            .default_service(web::to(method_not_allowed)),
    );
}

fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(method_not_allowed))
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ErrorCode::UnknownUrl,
        format!("Unknown path {} {}.", req.method(), req.path()),
    ))
}

pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    // Built from the error so that the error stays attached (see `anthropic_shape`).
    let mut resp = HttpResponse::from_error(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("Method {} is not allowed on {}.", req.method(), req.path()),
    ));
    // RFC 9110: a 405 lists the methods the resource has.
    resp.headers_mut().insert(
        actix_web::http::header::ALLOW,
        HeaderValue::from_static(allowed_methods(req.path())),
    );
    resp
}

/// The methods of the router's resources, by path (every resource answers 405 the same way).
fn allowed_methods(path: &str) -> &'static str {
    let path = path.strip_prefix("/api").unwrap_or(path);
    let mut segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // `/api/v1/ai/…` serves what `/v1/…` does.
    if segments.get(1) == Some(&"ai") {
        segments.remove(1);
    }
    match segments.as_slice() {
        ["health"] | ["openapi.yaml"] | ["metrics"] | ["v1", "models" | "catalogue", ..] => "GET",
        ["v1", "video", "generations"] | ["v1", "generations", "videos"] => "GET, POST",
        ["v1", "video", "generations", _]
        | ["v1", "generations", "videos", _]
        | ["v1", "responses", _] => "GET, DELETE",
        ["v1", "video", "generations", _, "content"]
        | ["v1", "generations", "videos", _, "content"]
        | ["admin", "usage" | "backends" | "status" | "video-jobs"]
        | ["ui" | "status", ..] => "GET",
        ["admin", "routing"] => "GET, PUT",
        _ => "POST",
    }
}

pub fn new_ctx(req: &HttpRequest, state: &AppState, op: ApiOp) -> RequestCtx {
    let id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(request_id::generate);
    let mut ctx = RequestCtx::new(id, op, state.sink.clone());
    if crate::telemetry::enabled() {
        let span = crate::telemetry::server_span(op.public_route(), req.headers());
        ctx.trace = crate::telemetry::RequestTrace::new(span);
    }
    let caller = req
        .extensions()
        .get::<std::sync::Arc<crate::caller::Caller>>()
        .cloned();
    // Endpoints' shared limits apply to every request, keys' to keys that have them.
    ctx.quotas = Some(state.quotas.clone());
    if let Some(caller) = caller {
        ctx.record.api_key_id = Some(caller.key_id.clone());
        ctx.caller = Some(caller);
    }
    ctx
}

/// Headers carried to the backend: our request id and OpenRouter attribution, nothing else.
pub fn forwarded(req: &HttpRequest, request_id: &str) -> Forwarded {
    // Names made once: a name given as text is parsed on every lookup.
    static ATTRIBUTION: [HeaderName; 2] = [
        HeaderName::from_static("http-referer"),
        HeaderName::from_static("x-title"),
    ];
    let attribution = ATTRIBUTION
        .iter()
        .filter_map(|name| {
            let v: &HeaderValue = req.headers().get(name)?;
            Some((name.as_str().to_string(), v.to_str().ok()?.to_string()))
        })
        .collect();
    Forwarded {
        request_id: request_id.to_string(),
        attribution,
    }
}

/// A JSON body that is already serialized (relayed backend answers).
/// Send a client's JSON body to `op`'s upstream path, with fallback across the model's routes;
/// each attempt carries the chosen route's own model id. The answer comes back parsed one
/// level deep, `model` rewritten to the public id, with the usage the backend reported.
#[allow(clippy::too_many_arguments)] // each is one handler-side fact; a struct would only rename them
pub async fn relay_json_body(
    state: &AppState,
    client: &awc::Client,
    model: &str,
    op: ApiOp,
    est_tokens: u64,
    body: Map<String, Value>,
    fwd: &Forwarded,
    ctx: &mut RequestCtx,
) -> Result<
    (
        crate::relay::shallow::JsonObject,
        Option<crate::record::Usage>,
    ),
    ApiError,
> {
    use crate::relay::{json::call_json, with_fallback, Attempt};
    let settings = &state.settings;
    let body = std::cell::RefCell::new(body);
    with_fallback(
        &state.mesh.local_router(),
        model,
        op,
        est_tokens,
        &settings.retry,
        ctx,
        |lease| {
            let bytes = {
                let mut m = body.borrow_mut();
                m.insert(
                    "model".into(),
                    Value::String(lease.route().provider_model_id.clone()),
                );
                bytes::Bytes::from(serde_json::to_vec(&*m).unwrap_or_default())
            };
            async move {
                match call_json(
                    client,
                    lease,
                    op.upstream_path(),
                    bytes,
                    fwd,
                    &settings.timeouts,
                    settings.max_response_bytes,
                )
                .await
                {
                    Attempt::Done(reply) => Attempt::Done((reply.body, reply.usage)),
                    Attempt::Retry(e) => Attempt::Retry(e),
                    Attempt::Fail(e) => Attempt::Fail(e),
                }
            }
        },
    )
    .await
}

/// A streamed `text/event-stream` answer, with the headers that keep proxies from buffering it.
pub fn event_stream_response<S>(body: S) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, actix_web::Error>> + 'static,
{
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}

pub fn json_bytes_response(body: bytes::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

pub fn json_response<T: serde::Serialize + ?Sized>(value: &T) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(serde_json::to_vec(value).unwrap_or_default())
}

pub fn required_model(obj: &Map<String, Value>) -> Result<String, ApiError> {
    match obj.get("model") {
        Some(Value::String(m)) => model_name(Some(m)),
        None | Some(Value::Null) => model_name(None),
        Some(_) => Err(model_not_a_string()),
    }
}

/// The `model` string as routed (trimmed), required; `None` when absent or null.
pub fn model_name(given: Option<&str>) -> Result<String, ApiError> {
    match given.map(str::trim) {
        Some(m) if !m.is_empty() => Ok(m.to_string()),
        _ => Err(ApiError::bad_request(
            "Missing required parameter: `model`.",
            Some("model"),
        )),
    }
}

pub fn model_not_a_string() -> ApiError {
    ApiError::bad_request("`model` must be a string.", Some("model"))
}

pub fn optional_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(not_a_boolean(key)),
    }
}

pub fn not_a_boolean(key: &str) -> ApiError {
    ApiError::bad_request(format!("`{key}` must be a boolean."), Some(key))
}
