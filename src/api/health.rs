//! `GET /health`: liveness (200 while the process works), a summary of endpoint health and the
//! state of the router's own dependencies (`dependencies`: the request log's database and the
//! job store). A failing dependency makes `status` `degraded`, still with 200: the process
//! works and restarting it would not bring a database back.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::json_response;
use super::models::table;
use crate::api::state::AppState;
use crate::mesh::Health;

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let Ok(table) = table(&state).await else {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "error", "error": "router not running"}));
    };
    let (mut ready, mut starting, mut degraded, mut down) = (0, 0, 0, 0);
    let mut in_flight = 0;
    for (_, handle) in &table.endpoints {
        in_flight += handle.endpoint.in_flight();
        match handle.endpoint.health() {
            Health::Ready => ready += 1,
            Health::Starting => starting += 1,
            Health::Degraded => degraded += 1,
            Health::Down => down += 1,
        }
    }
    let (deps_ok, dependencies) = state
        .dependencies
        .report(&state.store, state.settings.observability.request_log)
        .await;
    json_response(&json!({
        "status": if deps_ok { "ok" } else { "degraded" },
        "dependencies": dependencies,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "models": table.models.len(),
        "endpoints": {
            "total": table.endpoints.len(),
            "ready": ready,
            "starting": starting,
            "degraded": degraded,
            "down": down,
            "in_flight": in_flight,
        },
    }))
}
