//! `GET /admin/routing`: each model's policy and the weights and priorities in force per
//! route, after models.yaml, routing.yaml and OFFLOAD. `PUT /admin/routing`: change weights
//! and policies at run time through the Router's `ApplyRegistry` (endpoints and prefix trees
//! keep their state), and optionally write them to routing.yaml (`weights:`,
//! `model_policies:`).
//!
//! ```json
//! PUT /admin/routing
//! {"weights": {"qwen2.5-7b-instruct": {"vllm": 1.0, "featherless": 0.25}},
//!  "policies": {"qwen2.5-7b-instruct": "prefix_cache"}, "persist": true}
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::Observability;
use crate::api::json_response;
use crate::api::state::AppState;
use crate::config::{select_route, RoutingPolicy};
use crate::error::{ApiError, ErrorCode};
use crate::mesh::{GetTable, RouteTable};
use crate::reload::{ConfigActor, PolicyChange, SetRouting, WeightChange};

async fn table(state: &AppState) -> Result<Arc<RouteTable>, ApiError> {
    state
        .mesh
        .router
        .send(GetTable)
        .await
        .map_err(|_| ApiError::internal("the router is not running"))
}

/// The view both verbs answer with; `offload` is the `OFFLOAD` setting.
pub fn routing_view(table: &RouteTable, routing_path: Option<&Path>, offload: bool) -> Value {
    let models: Vec<Value> = table
        .models
        .iter()
        .map(|m| {
            let enabled = |j: usize| m.endpoints.get(j).is_some_and(Option::is_some);
            let total: f64 = m
                .def
                .routes
                .iter()
                .enumerate()
                .filter(|(j, _)| enabled(*j))
                .map(|(_, r)| r.weight)
                .sum();
            let routes: Vec<Value> = m
                .def
                .routes
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    let on = enabled(j);
                    let share = if on && total > 0.0 {
                        r.weight / total
                    } else {
                        0.0
                    };
                    json!({
                        "name": r.name,
                        "kind": r.kind_name,
                        "endpoint": m.endpoints.get(j).and_then(Option::as_ref)
                            .map(|h| h.endpoint.name.clone()),
                        "provider_model_id": r.provider_model_id,
                        "configured_weight": r.configured_weight,
                        "weight": r.weight,
                        "share": share,
                        "priority": r.priority,
                        "enabled": on,
                        "disabled_reason": r.disabled_reason,
                    })
                })
                .collect();
            json!({
                "id": m.def.id,
                "type": m.def.model_type,
                "aliases": m.def.aliases,
                "policy": m.policy,
                "policy_source": if m.def.policy.is_some() { "model" } else { "default" },
                "routes": routes,
            })
        })
        .collect();
    json!({
        "object": "routing",
        "routing_file": routing_path.map(|p| p.display().to_string()),
        "offload": offload,
        "default_policy": table.policy_settings.default_policy,
        "models": models,
    })
}

pub async fn get_routing(
    state: web::Data<AppState>,
    obs: web::Data<Observability>,
) -> Result<HttpResponse, ApiError> {
    let table = table(&state).await?;
    Ok(json_response(&routing_view(
        &table,
        obs.routing_path.as_deref(),
        state.settings.offload,
    )))
}

/// One validated weight change: model index, route index, its names, the new weight.
struct Change {
    model: usize,
    route: usize,
    model_id: String,
    route_name: String,
    weight: f64,
}

/// Everything one `PUT /admin/routing` asks for, validated.
struct Changes {
    weights: Vec<Change>,
    policies: Vec<PolicyChange>,
    persist: bool,
}

/// The model named `name` (id or alias) in `table`, or a 404 naming `param`.
fn model_index(table: &RouteTable, name: &str, param: &str) -> Result<usize, ApiError> {
    table
        .models
        .iter()
        .position(|m| m.def.id == name || m.def.aliases.iter().any(|a| a == name))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ModelNotFound,
                format!("No model `{name}` is configured."),
            )
            .with_param(param)
        })
}

fn parse_changes(body: &Value, table: &RouteTable) -> Result<Changes, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("The request body must be a JSON object.", None))?;
    for key in obj.keys() {
        if !["weights", "policies", "persist"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(
                format!(
                    "Unknown field `{key}` (expected `weights`, `policies` and optional `persist`)."
                ),
                Some(key),
            ));
        }
    }
    let persist = match obj.get("persist") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`persist` must be a boolean.",
                Some("persist"),
            ))
        }
    };
    let weights = match obj.get("weights") {
        None if obj.contains_key("policies") => Vec::new(),
        Some(Value::Object(w)) if !w.is_empty() => parse_weights(w, table)?,
        _ => {
            return Err(ApiError::bad_request(
                "`weights` must be an object: {model id: {route: weight}}.",
                Some("weights"),
            ))
        }
    };
    let policies = match obj.get("policies") {
        None => Vec::new(),
        Some(Value::Object(p)) if !p.is_empty() => parse_policies(p, table)?,
        _ => {
            return Err(ApiError::bad_request(
                "`policies` must be an object: {model id: policy}.",
                Some("policies"),
            ))
        }
    };
    Ok(Changes {
        weights,
        policies,
        persist,
    })
}

fn parse_weights(
    weights: &serde_json::Map<String, Value>,
    table: &RouteTable,
) -> Result<Vec<Change>, ApiError> {
    let mut changes = Vec::new();
    for (model_name, routes) in weights {
        let param = format!("weights.{model_name}");
        let model = model_index(table, model_name, &param)?;
        let def = &table.models[model].def;
        let routes = match routes {
            Value::Object(r) if !r.is_empty() => r,
            _ => {
                return Err(ApiError::bad_request(
                    format!("`{param}` must be an object: {{route: weight}}."),
                    Some(&param),
                ))
            }
        };
        for (selector, weight) in routes {
            let param = format!("{param}.{selector}");
            let route = select_route(def, selector)
                .map_err(|msg| ApiError::bad_request(msg, Some(&param)))?;
            let weight = weight
                .as_f64()
                .filter(|w| w.is_finite() && *w >= 0.0 && *w <= 1e9)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        format!("`{param}` must be a number between 0 and 1e9."),
                        Some(&param),
                    )
                })?;
            changes.push(Change {
                model,
                route,
                model_id: def.id.clone(),
                route_name: def.routes[route].name.clone(),
                weight,
            });
        }
    }
    Ok(changes)
}

fn parse_policies(
    policies: &serde_json::Map<String, Value>,
    table: &RouteTable,
) -> Result<Vec<PolicyChange>, ApiError> {
    policies
        .iter()
        .map(|(model_name, name)| {
            let param = format!("policies.{model_name}");
            let model = model_index(table, model_name, &param)?;
            let policy = name
                .as_str()
                .and_then(RoutingPolicy::parse)
                .ok_or_else(|| {
                    let shown = name.as_str().unwrap_or("(not a string)");
                    ApiError::bad_request(RoutingPolicy::unknown(shown), Some(&param))
                })?;
            Ok(PolicyChange {
                model_id: table.models[model].def.id.clone(),
                policy,
            })
        })
        .collect()
}

pub async fn put_routing(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    obs: web::Data<Observability>,
    control: web::Data<actix::Addr<ConfigActor>>,
) -> Result<HttpResponse, ApiError> {
    let (body, _permit) = crate::api::body::read_json(&req, payload, 1024 * 1024).await?;
    let _one_at_a_time = obs.routing_lock.lock().await;
    let current = table(&state).await?;
    let Changes {
        weights: changes,
        policies,
        persist,
    } = parse_changes(&body, &current)?;
    if persist && obs.routing_path.is_none() {
        return Err(ApiError::new(
            ErrorCode::NoRoutingFile,
            "This router has no routing.yaml to persist to (demo mode).",
        )
        .with_param("persist"));
    }
    let mut warnings = Vec::new();
    for c in &changes {
        if let Some(why) = &current.models[c.model].def.routes[c.route].disabled_reason {
            warnings.push(format!(
                "{}/{}: weight stored, but the route is disabled ({why})",
                c.model_id, c.route_name
            ));
        }
    }
    // Through the ConfigActor, so reloads and discovery keep the change.
    let skipped = control
        .send(SetRouting {
            weights: changes
                .iter()
                .map(|c| WeightChange {
                    model_id: c.model_id.clone(),
                    route_index: c.route,
                    weight: c.weight,
                })
                .collect(),
            policies: policies.clone(),
        })
        .await
        .map_err(|_| ApiError::internal("the configuration actor is not running"))?
        .map_err(|e| ApiError::internal(format!("weights not applied: {e:?}")))?;
    warnings.extend(skipped);
    if persist {
        if let Some(path) = &obs.routing_path {
            persist_changes(path, &changes, &policies, &current).map_err(|e| {
                ApiError::new(
                    ErrorCode::PersistFailed,
                    format!(
                        "Weights applied, but writing {} failed: {e}",
                        path.display()
                    ),
                )
            })?;
        }
    }
    for c in &changes {
        tracing::info!(model = %c.model_id, route = %c.route_name, weight = c.weight, persist, "routing weight changed");
    }
    for p in &policies {
        tracing::info!(model = %p.model_id, policy = %p.policy, persist, "routing policy changed");
    }
    let after = table(&state).await?;
    let mut view = routing_view(&after, obs.routing_path.as_deref(), state.settings.offload);
    if let Some(obj) = view.as_object_mut() {
        obj.insert("persisted".into(), Value::Bool(persist));
        obj.insert("warnings".into(), json!(warnings));
    }
    Ok(json_response(&view))
}

/// Merge the changes into routing.yaml's `weights:` (keyed by route name) and
/// `model_policies:` (creating the file if needed), and replace the file atomically. Other keys
/// (health_check, the fixed strategy) are kept; comments are not (YAML round-trips drop them).
fn persist_changes(
    path: &Path,
    changes: &[Change],
    policies: &[PolicyChange],
    table: &RouteTable,
) -> std::io::Result<()> {
    use serde_yaml::{Mapping, Value as Y};
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str::<Y>(&text).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Y::Null,
        Err(e) => return Err(e),
    };
    if doc.is_null() {
        doc = Y::Mapping(Mapping::new());
    }
    let weights = root_mapping(&mut doc)?
        .entry(Y::from("weights"))
        .or_insert_with(|| Y::Mapping(Mapping::new()));
    if !weights.is_mapping() {
        *weights = Y::Mapping(Mapping::new());
    }
    let mut by_model: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for c in changes {
        by_model.entry(&c.model_id).or_default().push(c);
    }
    if let Some(weights) = weights.as_mapping_mut() {
        for (model_id, list) in by_model {
            let entry = weights
                .entry(Y::from(model_id))
                .or_insert_with(|| Y::Mapping(Mapping::new()));
            if !entry.is_mapping() {
                *entry = Y::Mapping(Mapping::new());
            }
            if let Some(routes) = entry.as_mapping_mut() {
                for c in list {
                    // Another selector (kind, index) for the same route would fight this one.
                    let def = &table.models[c.model].def;
                    routes.retain(|k, _| match k.as_str() {
                        Some(sel) if sel != c.route_name => select_route(def, sel) != Ok(c.route),
                        _ => true,
                    });
                    routes.insert(Y::from(c.route_name.as_str()), Y::from(c.weight));
                }
            }
        }
    }
    if !policies.is_empty() {
        let by_model = root_mapping(&mut doc)?
            .entry(Y::from("model_policies"))
            .or_insert_with(|| Y::Mapping(Mapping::new()));
        if !by_model.is_mapping() {
            *by_model = Y::Mapping(Mapping::new());
        }
        if let Some(by_model) = by_model.as_mapping_mut() {
            for p in policies {
                by_model.insert(Y::from(p.model_id.as_str()), Y::from(p.policy.as_str()));
            }
        }
    }
    let text = serde_yaml::to_string(&doc).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn root_mapping(doc: &mut serde_yaml::Value) -> std::io::Result<&mut serde_yaml::Mapping> {
    doc.as_mapping_mut()
        .ok_or_else(|| std::io::Error::other("routing.yaml is not a mapping"))
}
