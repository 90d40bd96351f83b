//! `GET /v1/models` and `GET /v1/models/{id}`: OpenAI's list shape with OpenRouter's model
//! fields (contract §2.1), plus each model's type and current availability.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::json_response;
use crate::config::{ModelDef, ModelType};
use crate::mesh::{Health, ModelEntry, RouteTable};
use crate::state::AppState;

/// Parameters every chat model is assumed to take when `supported_params` is not given.
const DEFAULT_CHAT_PARAMS: &[&str] = &["temperature", "top_p", "max_tokens", "stop", "seed"];

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    output_modalities: Option<String>,
    supported_parameters: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// The current table, read from the mesh's hub without a message (views only).
pub async fn table(state: &AppState) -> Result<std::sync::Arc<RouteTable>, ApiError> {
    Ok(state.mesh.table())
}

/// The caller's key, when it limits which models it may use (those are the only ones it sees).
fn restricted_caller(req: &HttpRequest) -> Option<std::sync::Arc<crate::auth::Caller>> {
    req.extensions()
        .get::<std::sync::Arc<crate::auth::Caller>>()
        .filter(|c| c.restricts_models())
        .cloned()
}

pub async fn list_models(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = restricted_caller(&req);
    let table = table(&state).await?;
    let wanted_out: Option<Vec<String>> = query
        .output_modalities
        .as_deref()
        .filter(|s| !s.trim().eq_ignore_ascii_case("all"))
        .map(split_list);
    let wanted_params: Option<Vec<String>> = query.supported_parameters.as_deref().map(split_list);
    let mut data: Vec<Value> = Vec::new();
    for entry in &table.models {
        let def = &entry.def;
        if caller.as_ref().is_some_and(|c| !c.may_use(def)) {
            continue;
        }
        if let Some(out) = &wanted_out {
            let matches = out.iter().any(|m| {
                def.output_modalities
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(m))
            });
            if !matches {
                continue;
            }
        }
        let params = supported_parameters(def);
        if let Some(want) = &wanted_params {
            if !want.iter().all(|p| params.contains(p)) {
                continue;
            }
        }
        data.push(model_object(entry, state.started_unix, &params));
    }
    let total = data.len();
    let paginated = query.offset.is_some() || query.limit.is_some();
    let (data, next) = if paginated {
        let offset = query.offset.unwrap_or(0).min(total);
        let limit = query.limit.unwrap_or(500).clamp(1, 1000);
        let end = (offset + limit).min(total);
        let next = (end < total).then(|| format!("/v1/models?offset={end}&limit={limit}"));
        (data[offset..end].to_vec(), next)
    } else {
        (data, None)
    };
    Ok(json_response(&json!({
        "object": "list",
        "data": data,
        "total_count": total,
        "links": { "next": next },
    })))
}

pub async fn get_model(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let table = table(&state).await?;
    let name = path.into_inner();
    let caller = restricted_caller(&req);
    let entry = table
        .resolve(&name)
        .filter(|e| caller.as_ref().is_none_or(|c| c.may_use(&e.def)))
        .ok_or_else(|| ApiError::model_not_found(&name))?;
    let params = supported_parameters(&entry.def);
    Ok(json_response(&model_object(
        entry,
        state.started_unix,
        &params,
    )))
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect()
}

pub fn supported_parameters(def: &ModelDef) -> Vec<String> {
    let chat_like = matches!(def.model_type, ModelType::Chat | ModelType::Multimodal);
    let mut params: Vec<String> = match &def.supported_params {
        Some(list) => list.clone(),
        None if chat_like => DEFAULT_CHAT_PARAMS.iter().map(|s| s.to_string()).collect(),
        None => Vec::new(),
    };
    params.retain(|p| p != "stream");
    if def.supports_tools {
        for p in ["tools", "tool_choice"] {
            if !params.iter().any(|x| x == p) {
                params.push(p.into());
            }
        }
    }
    if def.supports_structured_output {
        for p in ["response_format", "structured_outputs"] {
            if !params.iter().any(|x| x == p) {
                params.push(p.into());
            }
        }
    }
    params
}

/// Availability of a model from its routes' endpoints.
pub fn availability(entry: &ModelEntry) -> Value {
    let mut total = 0;
    let (mut ready, mut starting, mut down) = (0, 0, 0);
    for (route, handle) in entry.def.routes.iter().zip(&entry.endpoints) {
        let Some(handle) = handle else { continue };
        if route.weight <= 0.0 {
            continue;
        }
        total += 1;
        match handle.endpoint.health() {
            Health::Ready | Health::Degraded => ready += 1,
            Health::Starting => starting += 1,
            Health::Down => down += 1,
        }
    }
    let status = if total == 0 {
        "disabled"
    } else if ready > 0 {
        "ready"
    } else if starting == total {
        "loading"
    } else {
        "unavailable"
    };
    json!({
        "status": status,
        "routes_ready": ready,
        "routes_starting": starting,
        "routes_down": down,
        "routes_enabled": total,
        "routes_configured": entry.def.routes.len(),
    })
}

fn modality_string(def: &ModelDef) -> String {
    format!(
        "{}->{}",
        def.input_modalities.join("+"),
        def.output_modalities.join("+")
    )
}

fn model_object(entry: &ModelEntry, created: u64, params: &[String]) -> Value {
    let def = &entry.def;
    let price =
        |p: &Option<crate::config::Price>| p.as_ref().map_or("0".to_string(), |p| p.text.clone());
    let mut pricing = json!({
        "prompt": price(&def.pricing.prompt),
        "completion": price(&def.pricing.completion),
        "request": price(&def.pricing.request),
        "image": price(&def.pricing.image),
    });
    if let Some(obj) = pricing.as_object_mut() {
        if let Some(p) = &def.pricing.input_cache_reads {
            obj.insert("input_cache_read".into(), json!(p.text));
        }
        if let Some(p) = &def.pricing.input_cache_writes {
            obj.insert("input_cache_write".into(), json!(p.text));
        }
        if let Some(p) = &def.pricing.audio {
            obj.insert("audio".into(), json!(p.text));
        }
    }
    json!({
        "id": def.id,
        "object": "model",
        "created": created,
        "owned_by": def.provider.clone().unwrap_or_else(|| "switchyard".into()),
        "canonical_slug": def.id,
        "hugging_face_id": null,
        "name": def.name,
        "description": def.description.clone().unwrap_or_default(),
        "context_length": def.context_length,
        "architecture": {
            "modality": modality_string(def),
            "input_modalities": def.input_modalities,
            "output_modalities": def.output_modalities,
            "tokenizer": "Other",
            "instruct_type": null,
        },
        "pricing": pricing,
        "top_provider": {
            "context_length": def.context_length,
            "max_completion_tokens": def.max_output_length,
            "is_moderated": false,
        },
        "per_request_limits": null,
        "supported_parameters": params,
        "default_parameters": null,
        "supported_voices": def.supported_voices,
        "links": { "details": format!("/api/v1/models/{}/endpoints", def.id) },
        "expiration_date": null,
        "knowledge_cutoff": null,
        "type": def.model_type,
        "quantization": def.quantization,
        "aliases": def.aliases,
        "availability": availability(entry),
    })
}
