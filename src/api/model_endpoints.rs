//! `GET /api/v1/models/{id}/endpoints` (and under `/v1`): OpenRouter's "list endpoints for a
//! model", where each model's `links.details` in `/v1/models` points. One entry per enabled
//! route, in OpenRouter's `PublicEndpoint` shape: which provider serves it, at what price and
//! limits, and whether it is up now. The route's URL and credentials are never shown.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::json_response;
use super::models::{modality_string, supported_parameters, table, visible_model};
use crate::api::state::AppState;
use crate::config::{ModelDef, Price, RouteDef};
use crate::error::ApiError;
use crate::mesh::Health;

pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let table = table(&state).await?;
    let entry = visible_model(&req, &table, &path.into_inner())?;
    let def = &entry.def;
    let endpoints: Vec<Value> = def
        .routes
        .iter()
        .zip(&entry.endpoints)
        .filter(|(route, handle)| handle.is_some() && route.weight > 0.0)
        .map(|(route, handle)| {
            let health = handle.as_ref().map(|h| h.endpoint.health());
            endpoint(def, route, health)
        })
        .collect();
    Ok(json_response(&json!({
        "data": {
            "id": def.id,
            "name": def.name,
            "created": state.started_unix,
            "description": def.description.as_deref().unwrap_or_default(),
            "architecture": {
                "modality": modality_string(def),
                "input_modalities": def.input_modalities,
                "output_modalities": def.output_modalities,
                "tokenizer": "Other",
                "instruct_type": null,
            },
            "endpoints": endpoints,
        }
    })))
}

/// OpenRouter's endpoint status: 0 serving, negative when not.
fn status(health: Option<Health>) -> i32 {
    match health {
        Some(Health::Ready) => 0,
        Some(Health::Degraded) => -1,
        Some(Health::Starting) => -2,
        Some(Health::Down) | None => -3,
    }
}

fn endpoint(def: &ModelDef, route: &RouteDef, health: Option<Health>) -> Value {
    let pricing = def.pricing.overlaid_by(&route.pricing);
    let price = |p: &Option<Price>| p.as_ref().map_or("0", |p| p.text.as_str()).to_string();
    let provider = def.provider.as_deref().unwrap_or(&route.kind_name);
    json!({
        "name": format!("{provider} | {}", def.id),
        "model_id": def.id,
        "model_name": def.name,
        "context_length": def.context_length,
        "pricing": {
            "prompt": price(&pricing.prompt),
            "completion": price(&pricing.completion),
            "request": price(&pricing.request),
            "image": price(&pricing.image),
        },
        "provider_name": route.kind_name,
        "tag": route.name,
        "quantization": def.quantization,
        "max_completion_tokens": def.max_output_length,
        "max_prompt_tokens": null,
        "supported_parameters": supported_parameters(def),
        "status": status(health),
        "uptime_last_30m": null,
        "supports_implicit_caching": false,
    })
}
