//! Health and discovery paths of the engines the router probes. Never faulted, never recorded.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::errors::{json_response, not_found, openai_error};
use super::settings::Health;
use super::state::MockState;
use super::util::unix_now;

/// `/health`, `/v1/health` (llama.cpp, vLLM, TGI), `/readyz`, `/healthz` (LocalAI).
pub async fn health(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    state.count(req.path());
    match state.settings().health {
        Health::Ok => json_response(200, &json!({"status": "ok"})),
        // llama.cpp's exact loading answer.
        Health::Loading => json_response(
            503,
            &json!({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}),
        ),
        Health::Down => down(),
    }
}

fn down() -> HttpResponse {
    json_response(
        500,
        &json!({"error": {"code": 500, "message": "Engine is down", "type": "server_error"}}),
    )
}

/// Ollama's `GET /api/version`: models load lazily there, so only `down` shows.
pub async fn ollama_version(state: web::Data<MockState>) -> HttpResponse {
    state.count("/api/version");
    match state.settings().health {
        Health::Down => down(),
        _ => json_response(200, &json!({"version": "0.12.6"})),
    }
}

/// Ollama's `GET /`.
pub async fn ollama_root(state: web::Data<MockState>) -> HttpResponse {
    state.count("/");
    match state.settings().health {
        Health::Down => down(),
        _ => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("Ollama is running"),
    }
}

/// `GET /v1/models`: answers in every health state, as llama.cpp does while loading.
pub async fn models(state: web::Data<MockState>) -> HttpResponse {
    state.count("/v1/models");
    let created = unix_now();
    let data: Vec<_> = state
        .settings()
        .model_ids
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "mock"}))
        .collect();
    json_response(200, &json!({"object": "list", "data": data}))
}

/// Anything unrouted: an OpenAI-shaped 404, counted under its own path.
pub async fn unknown(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    state.count(req.path());
    not_found(format!("Unknown path {} {}", req.method(), req.path()))
}

/// A known path with the wrong method.
pub async fn wrong_method(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    state.count(req.path());
    openai_error(
        405,
        format!("Method {} is not allowed on {}", req.method(), req.path()),
        "invalid_request_error",
        None,
        Some("method_not_allowed"),
    )
}
