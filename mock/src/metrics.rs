//! The engine's own load as real engines expose it: `GET /metrics` in the Prometheus text
//! format with vLLM's and llama.cpp's names, and llama.cpp's `GET /slots`. Never faulted;
//! `serve_metrics: false` answers 501, as llama-server started without `--metrics` does.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::engine::EngineState;
use super::errors::{json_response, Rejection};
use super::settings::MockSettings;
use super::state::MockState;

/// Counts the request; the settings and the engine's state now, or llama-server's 501 when
/// `serve_metrics` is off.
fn reporting(
    req: &HttpRequest,
    state: &MockState,
) -> Result<(Arc<MockSettings>, EngineState), Rejection> {
    state.count(req.path());
    let settings = state.settings();
    if !settings.serve_metrics {
        return Err(json_response(
            501,
            &json!({"error": {"code": 501, "message": "This server does not support metrics endpoint. Start it with `--metrics`", "type": "not_supported_error"}}),
        )
        .into());
    }
    let engine = state.engine.state(settings.cost_model.as_ref());
    Ok((settings, engine))
}

/// `GET /metrics`.
pub async fn prometheus(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let (settings, e) = match reporting(&req, &state) {
        Ok(now) => now,
        Err(off) => return *off,
    };
    let model = settings
        .model_ids
        .first()
        .map(String::as_str)
        .unwrap_or("mock-model");
    let label = format!("{{model_name=\"{}\"}}", escape_label(model));
    let mut text = String::new();
    let mut gauge = |name: &str, help: &str, labels: &str, value: String| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}\n"
        ));
    };
    gauge(
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        &label,
        e.running.to_string(),
    );
    gauge(
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        &label,
        e.waiting.to_string(),
    );
    gauge(
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        &label,
        e.kv_cache_usage.to_string(),
    );
    gauge(
        "llamacpp:requests_processing",
        "Number of requests processing.",
        "",
        e.running.to_string(),
    );
    gauge(
        "llamacpp:requests_deferred",
        "Number of requests deferred.",
        "",
        e.waiting.to_string(),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// `GET /slots`: llama.cpp's slot list, the first `running` slots busy.
pub async fn slots(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let (settings, e) = match reporting(&req, &state) {
        Ok(now) => now,
        Err(off) => return *off,
    };
    let slots = settings.cost_model.as_ref().map_or(1, |m| m.slots);
    let list: Vec<_> = (0..slots)
        .map(|id| json!({"id": id, "is_processing": u64::from(id) < e.running}))
        .collect();
    json_response(200, &json!(list))
}

/// A label value as the exposition format writes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
