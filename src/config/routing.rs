//! `routing.yaml`: weight overrides applied on top of models.yaml. Two forms are accepted:
//!
//! ```yaml
//! # switchyard's own: weights by model id and route (route name, kind, or index)
//! weights:
//!   qwen3.5-27b:
//!     sglang: 1.0
//!     featherless: 0.25
//! health_check: 10          # seconds between active health probes
//! default_policy: least_load  # models without `policy:` (docs/routing.md)
//! model_policies:            # per-model overrides (what PUT /admin/routing persists)
//!   qwen3.5-27b: prefix_cache
//! policy_settings:           # the policies' tunables, each optional
//!   prefix_match_threshold: 0.5
//! ```
//!
//! and the original gateway's fixed-ratio strategy (`routing_strategy: fixed`,
//! `routing_parameter.local_fraction`, `local_deployment` / `remote_deployment`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use super::env::{substitute_tree, VarSource};
use super::lenient;
use super::policy::{RawPolicySettings, RoutingPolicy, POLICY_SETTING_KEYS};
use super::strict::{place_in, Strictness};
use super::{ConfigErrors, ModelDef, Registry};
use crate::engines::normalize_base_url;
use crate::error::ConfigError;

/// Route selector → weight, per model id.
pub type WeightOverrides = BTreeMap<String, BTreeMap<String, f64>>;

#[derive(Debug, Default, Deserialize)]
pub struct RoutingFile {
    #[serde(default)]
    pub weights: BTreeMap<String, BTreeMap<String, Weight>>,
    pub routing_strategy: Option<String>,
    pub routing_parameter: Option<RoutingParameter>,
    #[serde(default)]
    pub local_deployment: Vec<Deployment>,
    #[serde(default)]
    pub remote_deployment: Vec<Deployment>,
    /// Seconds between health probes (0 = keep the default).
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub health_check: Option<f64>,
    /// Accepted for compatibility with the original gateway's file.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub timeout: Option<f64>,
    pub logging: Option<Value>,
    /// The policy of models that name none.
    pub default_policy: Option<String>,
    /// Policy by model id, over models.yaml's `policy:`.
    #[serde(default)]
    pub model_policies: BTreeMap<String, String>,
    pub policy_settings: Option<RawPolicySettings>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// The top-level keys of [`RoutingFile`], for "did you mean" suggestions.
pub const ROUTING_KEYS: &[&str] = &[
    "weights",
    "routing_strategy",
    "routing_parameter",
    "local_deployment",
    "remote_deployment",
    "health_check",
    "timeout",
    "logging",
    "default_policy",
    "model_policies",
    "policy_settings",
];

#[derive(Debug, Deserialize)]
pub struct Weight(#[serde(deserialize_with = "weight_value")] pub f64);

fn weight_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    lenient::opt_f64(d)?.ok_or_else(|| serde::de::Error::custom("weight is required"))
}

#[derive(Debug, Default, Deserialize)]
pub struct RoutingParameter {
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub local_fraction: Option<f64>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

pub const ROUTING_PARAMETER_KEYS: &[&str] = &["local_fraction"];

#[derive(Debug, Deserialize)]
pub struct Deployment {
    pub endpoint: String,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// The keys of one `local_deployment` / `remote_deployment` entry.
pub const DEPLOYMENT_KEYS: &[&str] = &["endpoint", "models"];

impl RoutingFile {
    pub fn parse(
        label: &str,
        text: &str,
        vars: &dyn VarSource,
    ) -> Result<RoutingFile, Vec<ConfigError>> {
        let mut doc: Value = serde_yaml::from_str(text).map_err(|e| {
            vec![ConfigError::InvalidYaml {
                file: label.to_string(),
                reason: e.to_string(),
            }]
        })?;
        if doc.is_null() {
            return Ok(RoutingFile::default());
        }
        let missing = substitute_tree(&mut doc, vars, "");
        if !missing.is_empty() {
            return Err(missing
                .into_iter()
                .map(|m| {
                    let problem = format!("environment variable {} is not set", m.var);
                    ConfigError::field(label, m.field, problem)
                })
                .collect());
        }
        serde_path_to_error::deserialize(doc)
            .map_err(|e| vec![ConfigError::field(label, e.path().to_string(), e.inner())])
    }

    /// Apply to a freshly loaded registry; problems go to `out`.
    pub fn apply(
        &self,
        label: &str,
        strictness: Strictness,
        registry: &mut Registry,
        out: &mut ConfigErrors,
    ) {
        self.report_unknown_keys(label, strictness, out);
        if let Some(secs) = self.health_check {
            if secs > 0.0 && secs.is_finite() {
                registry.mesh.health_interval = Some(Duration::from_secs_f64(secs.max(0.1)));
            }
        }
        if let Some(strategy) = &self.routing_strategy {
            if strategy != "fixed" {
                out.errors.push(ConfigError::in_file(
                    label,
                    format!("routing_strategy {strategy:?} is not supported (only `fixed`)"),
                ));
            } else {
                self.apply_fixed(label, registry, out);
            }
        }
        self.apply_policies(label, registry, out);
        for (model_id, routes) in &self.weights {
            let Some(model) = registry.models.iter_mut().find(|m| &m.id == model_id) else {
                out.warnings.push(format!(
                    "{label}: weights for unknown model `{model_id}` (ignored)"
                ));
                continue;
            };
            for (selector, weight) in routes {
                let w = weight.0;
                if !w.is_finite() || w < 0.0 {
                    out.errors.push(ConfigError::in_file(
                        label,
                        format!("weights.{model_id}.{selector}: must be a number >= 0"),
                    ));
                    continue;
                }
                match select_route(model, selector) {
                    Ok(j) => model.routes[j].weight = w,
                    Err(msg) => out.errors.push(ConfigError::in_file(
                        label,
                        format!("weights.{model_id}.{selector}: {msg}"),
                    )),
                }
            }
        }
    }

    /// `default_policy`, `model_policies` and `policy_settings`; an unknown policy name or an
    /// out-of-range setting is an error.
    fn apply_policies(&self, label: &str, registry: &mut Registry, out: &mut ConfigErrors) {
        let settings = &mut registry.mesh.policy;
        if let Some(name) = &self.default_policy {
            match RoutingPolicy::parse(name) {
                Some(p) => settings.default_policy = p,
                None => out.errors.push(ConfigError::field(
                    label,
                    "default_policy",
                    RoutingPolicy::unknown(name),
                )),
            }
        }
        if let Some(raw) = &self.policy_settings {
            for (field, problem) in raw.apply(settings) {
                out.errors.push(ConfigError::field(
                    label,
                    format!("policy_settings.{field}"),
                    problem,
                ));
            }
        }
        for (model_id, name) in &self.model_policies {
            let field = format!("model_policies.{model_id}");
            let Some(policy) = RoutingPolicy::parse(name) else {
                out.errors.push(ConfigError::field(
                    label,
                    field,
                    RoutingPolicy::unknown(name),
                ));
                continue;
            };
            match registry.models.iter_mut().find(|m| &m.id == model_id) {
                Some(model) => model.policy = Some(policy),
                None => out
                    .warnings
                    .push(format!("{label}: {field}: no such model (ignored)")),
            }
        }
    }

    /// Every unknown key of the file, at every level, in one pass.
    fn report_unknown_keys(&self, label: &str, strictness: Strictness, out: &mut ConfigErrors) {
        strictness.report(label, &place_in(""), self.unknown.keys(), ROUTING_KEYS, out);
        if let Some(settings) = &self.policy_settings {
            strictness.report(
                label,
                &place_in("policy_settings"),
                settings.unknown.keys(),
                POLICY_SETTING_KEYS,
                out,
            );
        }
        if let Some(parameter) = &self.routing_parameter {
            strictness.report(
                label,
                &place_in("routing_parameter"),
                parameter.unknown.keys(),
                ROUTING_PARAMETER_KEYS,
                out,
            );
        }
        for (list, deployments) in [
            ("local_deployment", &self.local_deployment),
            ("remote_deployment", &self.remote_deployment),
        ] {
            for (i, deployment) in deployments.iter().enumerate() {
                strictness.report(
                    label,
                    &place_in(&format!("{list}[{i}]")),
                    deployment.unknown.keys(),
                    DEPLOYMENT_KEYS,
                    out,
                );
            }
        }
    }

    /// The original gateway's strategy: `local_fraction` of traffic shared equally by the
    /// routes on local endpoints, the rest by the routes on remote ones.
    fn apply_fixed(&self, label: &str, registry: &mut Registry, out: &mut ConfigErrors) {
        let fraction = self
            .routing_parameter
            .as_ref()
            .and_then(|p| p.local_fraction)
            .unwrap_or(1.0);
        if !(0.0..=1.0).contains(&fraction) {
            out.errors.push(ConfigError::in_file(
                label,
                "routing_parameter.local_fraction must be between 0 and 1",
            ));
            return;
        }
        let group = |deployments: &[Deployment], model: &str| -> Vec<String> {
            deployments
                .iter()
                .filter(|d| d.models.iter().any(|m| m == model))
                .filter_map(|d| normalize_base_url(&d.endpoint))
                .collect()
        };
        for model in &mut registry.models {
            let local = group(&self.local_deployment, &model.id);
            let remote = group(&self.remote_deployment, &model.id);
            if local.is_empty() && remote.is_empty() {
                continue;
            }
            let on = |urls: &[String], r: &super::RouteDef| {
                r.base_url
                    .as_ref()
                    .is_some_and(|b| urls.iter().any(|u| u == b.api_base()))
            };
            let n_local = model.routes.iter().filter(|r| on(&local, r)).count();
            let n_remote = model
                .routes
                .iter()
                .filter(|r| on(&remote, r) && !on(&local, r))
                .count();
            for r in &mut model.routes {
                if on(&local, r) {
                    r.weight = fraction / n_local.max(1) as f64;
                } else if on(&remote, r) {
                    r.weight = (1.0 - fraction) / n_remote.max(1) as f64;
                }
            }
        }
    }
}

/// Find a route by name, then by kind (if only one route has it), then by index.
pub fn select_route(model: &ModelDef, selector: &str) -> Result<usize, String> {
    if let Some(j) = model.routes.iter().position(|r| r.name == selector) {
        return Ok(j);
    }
    let by_kind: Vec<usize> = model
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind_name == selector)
        .map(|(j, _)| j)
        .collect();
    match by_kind.len() {
        1 => return Ok(by_kind[0]),
        n if n > 1 => {
            return Err(format!(
                "{n} routes have kind `{selector}`; use a route name ({})",
                route_names(model)
            ))
        }
        _ => {}
    }
    if let Ok(j) = selector.parse::<usize>() {
        if j < model.routes.len() {
            return Ok(j);
        }
    }
    Err(format!(
        "no route `{selector}` in model `{}` (routes: {})",
        model.id,
        route_names(model)
    ))
}

fn route_names(model: &ModelDef) -> String {
    model
        .routes
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
