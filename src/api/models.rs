//! `GET /v1/models` and `GET /v1/models/{id}`: OpenAI's list shape with OpenRouter's model
//! fields (`pricing`, `context_length`, `architecture`, `supported_parameters`, …), plus each
//! model's type and current availability.

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::json_response;
use crate::api::state::AppState;
use crate::config::{ModelDef, ModelType};
use crate::error::ApiError;
use crate::mesh::{Health, ModelEntry, RouteTable};

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
fn restricted_caller(req: &HttpRequest) -> Option<std::sync::Arc<crate::caller::Caller>> {
    req.extensions()
        .get::<std::sync::Arc<crate::caller::Caller>>()
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
    let mut data: Vec<ModelObject> = Vec::new();
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
        data.push(ModelObject::new(entry, state.started_unix, params));
    }
    let total = data.len();
    let paginated = query.offset.is_some() || query.limit.is_some();
    let (range, next) = if paginated {
        let offset = query.offset.unwrap_or(0).min(total);
        let limit = query.limit.unwrap_or(500).clamp(1, 1000);
        let end = (offset + limit).min(total);
        let next = (end < total).then(|| format!("/v1/models?offset={end}&limit={limit}"));
        (offset..end, next)
    } else {
        (0..total, None)
    };
    Ok(json_response(&ModelList {
        object: "list",
        data: &data[range],
        total_count: total,
        links: ListLinks { next },
    }))
}

/// The model `name` (id or alias) as the caller may see it: a key limited to other models
/// gets the same 404 as for a model that does not exist.
pub fn visible_model<'t>(
    req: &HttpRequest,
    table: &'t RouteTable,
    name: &str,
) -> Result<&'t ModelEntry, ApiError> {
    let caller = restricted_caller(req);
    table
        .resolve(name)
        .filter(|e| caller.as_ref().is_none_or(|c| c.may_use(&e.def)))
        .ok_or_else(|| ApiError::model_not_found(name))
}

pub async fn get_model(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let table = table(&state).await?;
    let entry = visible_model(&req, &table, &path.into_inner())?;
    let params = supported_parameters(&entry.def);
    Ok(json_response(&ModelObject::new(
        entry,
        state.started_unix,
        params,
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
#[derive(Debug, Serialize)]
pub struct Availability {
    pub status: &'static str,
    pub routes_ready: usize,
    pub routes_starting: usize,
    pub routes_down: usize,
    pub routes_enabled: usize,
    pub routes_configured: usize,
}

pub fn availability(entry: &ModelEntry) -> Availability {
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
    Availability {
        status,
        routes_ready: ready,
        routes_starting: starting,
        routes_down: down,
        routes_enabled: total,
        routes_configured: entry.def.routes.len(),
    }
}

pub fn modality_string(def: &ModelDef) -> String {
    format!(
        "{}->{}",
        def.input_modalities.join("+"),
        def.output_modalities.join("+")
    )
}

/// The list answer. Serialized straight from the model table (no `Value` tree): with 10,000
/// models a tree meant ~400,000 allocations per call.
#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: &'a [ModelObject<'a>],
    total_count: usize,
    links: ListLinks,
}

#[derive(Serialize)]
struct ListLinks {
    next: Option<String>,
}

/// One model in OpenRouter's `Model` shape plus `type`, `quantization`, `aliases`
/// and live `availability`. `None` fields are written as `null`, as OpenRouter does.
#[derive(Serialize)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'a str,
    canonical_slug: &'a str,
    hugging_face_id: Option<()>,
    name: &'a str,
    description: &'a str,
    context_length: Option<u64>,
    architecture: Architecture<'a>,
    pricing: PricingView<'a>,
    top_provider: TopProvider,
    per_request_limits: Option<()>,
    supported_parameters: Vec<String>,
    default_parameters: Option<()>,
    supported_voices: &'a Option<Vec<String>>,
    links: ModelLinks,
    expiration_date: Option<()>,
    knowledge_cutoff: Option<()>,
    #[serde(rename = "type")]
    model_type: ModelType,
    quantization: &'a Option<String>,
    aliases: &'a [String],
    availability: Availability,
}

#[derive(Serialize)]
struct Architecture<'a> {
    modality: String,
    input_modalities: &'a [String],
    output_modalities: &'a [String],
    tokenizer: &'static str,
    instruct_type: Option<()>,
}

#[derive(Serialize)]
struct PricingView<'a> {
    prompt: &'a str,
    completion: &'a str,
    request: &'a str,
    image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_cache_read: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_cache_write: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<&'a str>,
}

#[derive(Serialize)]
struct TopProvider {
    context_length: Option<u64>,
    max_completion_tokens: Option<u64>,
    is_moderated: bool,
}

#[derive(Serialize)]
struct ModelLinks {
    details: String,
}

impl<'a> ModelObject<'a> {
    fn new(entry: &'a ModelEntry, created: u64, params: Vec<String>) -> ModelObject<'a> {
        let def = &entry.def;
        let price = |p: &'a Option<crate::config::Price>| p.as_ref().map(|p| p.text.as_str());
        ModelObject {
            id: &def.id,
            object: "model",
            created,
            owned_by: def.provider.as_deref().unwrap_or("switchyard"),
            canonical_slug: &def.id,
            hugging_face_id: None,
            name: &def.name,
            description: def.description.as_deref().unwrap_or_default(),
            context_length: def.context_length,
            architecture: Architecture {
                modality: modality_string(def),
                input_modalities: &def.input_modalities,
                output_modalities: &def.output_modalities,
                tokenizer: "Other",
                instruct_type: None,
            },
            pricing: PricingView {
                prompt: price(&def.pricing.prompt).unwrap_or("0"),
                completion: price(&def.pricing.completion).unwrap_or("0"),
                request: price(&def.pricing.request).unwrap_or("0"),
                image: price(&def.pricing.image).unwrap_or("0"),
                input_cache_read: price(&def.pricing.input_cache_reads),
                input_cache_write: price(&def.pricing.input_cache_writes),
                audio: price(&def.pricing.audio),
            },
            top_provider: TopProvider {
                context_length: def.context_length,
                max_completion_tokens: def.max_output_length,
                is_moderated: false,
            },
            per_request_limits: None,
            supported_parameters: params,
            default_parameters: None,
            supported_voices: &def.supported_voices,
            links: ModelLinks {
                details: format!("/api/v1/models/{}/endpoints", def.id),
            },
            expiration_date: None,
            knowledge_cutoff: None,
            model_type: def.model_type,
            quantization: &def.quantization,
            aliases: &def.aliases,
            availability: availability(entry),
        }
    }
}
