//! From YAML text to a validated [`Registry`]: substitution, schema, semantic checks,
//! routing.yaml overrides and OFFLOAD, collecting every error on the way.

use std::collections::HashMap;
use std::path::Path;

use serde_yaml::Value;

use super::env::{substitute_tree, VarSource};
use super::raw::{RawModel, RawPricing, RawRoute, MODEL_KEYS, PRICING_KEYS, ROUTE_KEYS};
use super::route_opts::TIMEOUT_KEYS;
use super::routing::RoutingFile;
use super::strict::{place_in, Strictness};
use super::video::VIDEO_ROUTE_KEYS;
use super::{
    read_ca_bundle, read_client_identity, ClientIdentityFiles, ConfigErrors, Limits, ModelDef,
    ModelType, Outbound, Pricing, ProxyChoice, Registry, RouteDef, RoutingPolicy, Secret,
    SingleBackend, VideoRouteOptions,
};
use crate::engines::{normalize_base_url, AuthStyle, BackendKind, BaseUrl, NativeApi};
use crate::error::ConfigError;

/// Where to read from and how to resolve `${VAR}`s.
pub struct LoadOptions<'a> {
    pub models_path: &'a Path,
    /// routing.yaml; a missing file is fine unless `routing_required`.
    pub routing_path: Option<&'a Path>,
    pub routing_required: bool,
    pub vars: &'a dyn VarSource,
}

/// Load and validate models.yaml (+ routing.yaml) from disk.
pub fn load(opts: &LoadOptions<'_>) -> Result<Registry, ConfigErrors> {
    let label = opts.models_path.display().to_string();
    let text = match std::fs::read_to_string(opts.models_path) {
        Ok(text) => text,
        // The single-backend gateway runs from `.env` alone, as its users ran it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && env_describes_models(opts.vars) => {
            "models: []\n".to_string()
        }
        Err(e) => return Err(unreadable(&label, &e)),
    };
    let routing = match opts.routing_path {
        Some(path) if path.exists() => {
            let rlabel = path.display().to_string();
            let rtext = std::fs::read_to_string(path).map_err(|e| unreadable(&rlabel, &e))?;
            Some((rlabel, rtext))
        }
        Some(path) if opts.routing_required => {
            return Err(ConfigErrors::one(ConfigError::FileNotFound {
                file: path.display().to_string(),
            }))
        }
        _ => None,
    };
    load_str(
        &label,
        &text,
        routing.as_ref().map(|(l, t)| (l.as_str(), t.as_str())),
        opts.vars,
    )
}

fn unreadable(file: &str, e: &std::io::Error) -> ConfigErrors {
    ConfigErrors::one(ConfigError::Unreadable {
        file: file.to_string(),
        reason: e.to_string(),
    })
}

/// Load from text (tests and hot reload use this directly).
pub fn load_str(
    label: &str,
    text: &str,
    routing: Option<(&str, &str)>,
    vars: &dyn VarSource,
) -> Result<Registry, ConfigErrors> {
    let mut out = ConfigErrors::default();
    let strictness = Strictness::from_vars(vars).unwrap_or_else(|e| {
        out.errors.push(e);
        Strictness::Strict
    });
    let models = parse_models(label, text, vars, strictness, &mut out);
    let mut registry = Registry {
        models,
        backend_api_key: backend_api_key(vars),
        ..Registry::default()
    };
    check_unique_names(label, &registry.models, &mut out.errors);
    if let Some((rlabel, rtext)) = routing {
        match RoutingFile::parse(rlabel, rtext, vars) {
            Ok(file) => file.apply(rlabel, strictness, &mut registry, &mut out),
            Err(errs) => out.errors.extend(errs),
        }
    }
    apply_offload(&mut registry, vars, &mut out.warnings);
    if out.errors.is_empty() {
        registry.warnings = out.warnings;
        Ok(registry)
    } else {
        Err(out)
    }
}

/// `BACKEND_API_KEY`, the key of routes that name none: one secret for a single backend (e.g.
/// llama-server's `--api-key`), sent to it as the route's `Authorization`.
fn backend_api_key(vars: &dyn VarSource) -> Option<Secret> {
    vars.get("BACKEND_API_KEY")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .map(Secret::new)
}

fn parse_models(
    label: &str,
    text: &str,
    vars: &dyn VarSource,
    strictness: Strictness,
    out: &mut ConfigErrors,
) -> Vec<ModelDef> {
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.errors.push(ConfigError::InvalidYaml {
                file: label.to_string(),
                reason: e.to_string(),
            });
            return vec![];
        }
    };
    let items = match doc {
        Value::Sequence(items) => items,
        Value::Mapping(mut map) => {
            let models = map.remove("models");
            let unknown: Vec<String> = map.keys().map(key_text).collect();
            strictness.report(label, &place_in(""), &unknown, &["models"], out);
            match models {
                Some(Value::Sequence(items)) => items,
                Some(Value::Null) | None => {
                    out.warnings.push(format!("{label}: no models defined"));
                    vec![]
                }
                Some(_) => {
                    out.errors.push(ConfigError::in_file(
                        label,
                        "`models` must be a list of model entries",
                    ));
                    vec![]
                }
            }
        }
        Value::Null => {
            out.warnings.push(format!("{label}: file is empty"));
            vec![]
        }
        _ => {
            out.errors.push(ConfigError::in_file(
                label,
                "expected a mapping with a `models:` list (or a bare list of models)",
            ));
            vec![]
        }
    };
    let mut items = items;
    let from_env = env_model_items(vars).unwrap_or_else(|e| {
        out.errors.push(ConfigError::in_file("providers", e));
        EnvModels::default()
    });
    items.extend(from_env.items);
    let mut models = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        if let Some(model) = parse_model(label, index, item, vars, strictness, out) {
            models.push(model);
        }
    }
    for model in &mut models {
        model.discovery_template = from_env.templates.contains(&model.id);
        model.declared = from_env.declared.get(&model.id).copied();
        model.also_embeds = from_env.also_embed.contains(&model.id);
    }
    models
}

/// Model entries the environment describes besides the file's: the single backend's
/// (`BACKEND_KIND`, seed 003) and the vLLM-compatible providers' (seed 004).
#[derive(Default)]
struct EnvModels {
    items: Vec<Value>,
    /// Ids of the discovery templates among `items`.
    templates: Vec<String>,
    declared: std::collections::BTreeMap<String, super::Declared>,
    /// Ids of the items that also serve embeddings (the single backend's).
    also_embed: Vec<String>,
}

fn env_model_items(vars: &dyn VarSource) -> Result<EnvModels, String> {
    let providers = super::providers::provider_models(vars)?;
    let mut env = EnvModels {
        items: providers.items,
        templates: providers.templates,
        declared: providers.declared,
        also_embed: Vec::new(),
    };
    // Malformed values are reported by `Settings::from_env` before any load (the environment
    // does not change while the process runs): here they only mean "no backend".
    if let Ok(Some(backend)) = SingleBackend::from_vars(vars) {
        if backend.models.is_empty() {
            env.templates
                .push(super::single_backend::template_id(&backend.kind));
        }
        env.also_embed.extend(backend.model_ids());
        env.items.extend(backend.model_items());
    }
    Ok(env)
}

/// Whether the environment alone describes models, so a missing models.yaml is no error.
pub fn env_describes_models(vars: &dyn VarSource) -> bool {
    matches!(SingleBackend::from_vars(vars), Ok(Some(_)))
        || env_model_items(vars).is_ok_and(|env| !env.items.is_empty())
}

/// Context for messages about one model: `config/models.yaml: model `x` (models[3])`.
struct Place<'a> {
    label: &'a str,
    index: usize,
    id: String,
    /// Whether this model's unknown keys are errors or warnings.
    strictness: Strictness,
}

impl Place<'_> {
    fn at(&self, field: &str, msg: impl std::fmt::Display) -> ConfigError {
        ConfigError::ModelField {
            file: self.label.to_string(),
            model: self.id.clone(),
            index: self.index,
            field: field.to_string(),
            problem: msg.to_string(),
        }
    }
    fn whole(&self, msg: impl std::fmt::Display) -> ConfigError {
        ConfigError::Model {
            file: self.label.to_string(),
            model: self.id.clone(),
            index: self.index,
            problem: msg.to_string(),
        }
    }
    /// Report the unknown keys of the mapping at `field` (`""` = the model itself), e.g.
    /// "unknown key `rpn` in models[3].route[0] (model `x`); did you mean `rpm`?".
    fn unknown_keys(
        &self,
        field: &str,
        keys: &std::collections::BTreeMap<String, Value>,
        known: &[&str],
        out: &mut ConfigErrors,
    ) {
        let path = match field {
            "" => format!("models[{}]", self.index),
            f => format!("models[{}].{f}", self.index),
        };
        let place = format!("{} (model `{}`)", place_in(&path), self.id);
        self.strictness
            .report(self.label, &place, keys.keys(), known, out);
    }
}

fn parse_model(
    label: &str,
    index: usize,
    mut item: Value,
    vars: &dyn VarSource,
    strictness: Strictness,
    out: &mut ConfigErrors,
) -> Option<ModelDef> {
    let place = Place {
        label,
        index,
        id: item
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        strictness,
    };
    let Some(map) = item.as_mapping_mut() else {
        out.errors.push(ConfigError::in_file(
            label,
            format!("models[{index}] must be a mapping of fields"),
        ));
        return None;
    };

    // Routes first: a missing variable in a weight-0 route only disables that route.
    let (disabled, broken) = match map.get_mut("route") {
        Some(Value::Sequence(routes)) => substitute_routes(&place, routes, vars, out),
        _ => (Vec::new(), Vec::new()),
    };
    let route_value = map.remove("route");
    let mut rest = Value::Mapping(std::mem::take(map));
    let inherited_missing = substitute_model_fields(&place, &mut rest, vars, out);
    if let Value::Mapping(rest_map) = &mut rest {
        if let Some(routes) = route_value {
            rest_map.insert(Value::from("route"), routes);
        }
    }

    let raw: RawModel = match serde_path_to_error::deserialize(rest) {
        Ok(raw) => raw,
        Err(e) => {
            let field = e.path().to_string();
            out.errors.push(place.at(&field, e.inner()));
            return None;
        }
    };
    let subst = Substitution {
        disabled: &disabled,
        broken: &broken,
        inherited_missing: &inherited_missing,
        vars,
    };
    match build_model(&place, raw, &subst, out) {
        Ok(model) => Some(model),
        Err(errors) => {
            out.errors.extend(errors);
            None
        }
    }
}

/// Substitute `${VAR}`s in each route. Returns, per route, why it is kept disabled (a missing
/// variable in a weight-0 route: a warning) and whether its missing variables are already
/// reported as errors (so no second error names the same field).
fn substitute_routes(
    place: &Place<'_>,
    routes: &mut [Value],
    vars: &dyn VarSource,
    out: &mut ConfigErrors,
) -> (Vec<Option<String>>, Vec<bool>) {
    let mut disabled = Vec::with_capacity(routes.len());
    let mut broken = Vec::with_capacity(routes.len());
    for (j, route) in routes.iter_mut().enumerate() {
        let missing = substitute_tree(route, vars, &format!("route[{j}]"));
        broken.push(!missing.is_empty());
        if missing.is_empty() {
            disabled.push(None);
        } else if weight_of(route) == Some(0.0) || is_optional(route) {
            let names: Vec<String> = missing.iter().map(|m| m.var.clone()).collect();
            let reason = format!("environment variable {} not set", names.join(", "));
            let because = if is_optional(route) {
                "it is optional"
            } else {
                "its weight is 0"
            };
            out.warnings.push(
                place
                    .at(
                        &missing[0].field,
                        format!("{reason}; route kept disabled because {because}"),
                    )
                    .to_string(),
            );
            disabled.push(Some(reason));
        } else {
            for m in missing {
                out.errors.push(place.at(
                    &m.field,
                    format!("environment variable {} is not set", m.var),
                ));
            }
            disabled.push(None);
        }
    }
    (disabled, broken)
}

/// Substitute `${VAR}`s in the model's own fields (the routes taken out). A missing
/// `base_url`/`api_key`/`provider_model_id` only matters through the routes that inherit it,
/// so it is returned to be judged per route; any other missing variable is an error.
fn substitute_model_fields(
    place: &Place<'_>,
    fields: &mut Value,
    vars: &dyn VarSource,
    out: &mut ConfigErrors,
) -> HashMap<String, String> {
    let mut inherited_missing = HashMap::new();
    for m in substitute_tree(fields, vars, "") {
        if matches!(
            m.field.as_str(),
            "base_url" | "api_key" | "provider_model_id"
        ) {
            inherited_missing.insert(m.field.clone(), m.var.clone());
        } else {
            out.errors.push(place.at(
                &m.field,
                format!("environment variable {} is not set", m.var),
            ));
        }
    }
    inherited_missing
}

/// `optional: true` (a boolean word, as every boolean of the file may be written).
fn is_optional(route: &Value) -> bool {
    match route.get("optional") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => super::lenient::bool_word(s) == Some(true),
        _ => false,
    }
}

fn weight_of(route: &Value) -> Option<f64> {
    match route.get("weight") {
        None => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A mapping key as text; YAML allows numbers and other non-strings as keys.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| "?".to_string()),
    }
}

/// What `parse_model` learnt about a model's routes while substituting `${VAR}`s, before the
/// YAML became a [`RawModel`].
struct Substitution<'a> {
    /// Per route: why it is kept disabled (a missing variable in a weight-0 route).
    disabled: &'a [Option<String>],
    /// Per route: its missing variables are already reported as errors.
    broken: &'a [bool],
    /// Model-level `base_url`/`api_key`/`provider_model_id` whose variable is missing, judged
    /// per route that inherits them.
    inherited_missing: &'a HashMap<String, String>,
    vars: &'a dyn VarSource,
}

/// Validate one model: its own fields, each route, its aliases. Errors come back together so
/// the caller can report every problem of the file at once; warnings go to `out`.
fn build_model(
    place: &Place<'_>,
    mut raw: RawModel,
    subst: &Substitution<'_>,
    out: &mut ConfigErrors,
) -> Result<ModelDef, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let id = raw.id.trim().to_string();
    if id.is_empty() || id.chars().any(char::is_whitespace) {
        errors.push(place.at("id", "must be non-empty and contain no spaces"));
    }
    place.unknown_keys("", &raw.unknown, MODEL_KEYS, out);
    let model_type = model_type_of(place, &raw, &mut errors);
    let (default_in, default_out) = model_type.default_modalities();
    let input_modalities = modalities_or(&raw.input_modalities, default_in);
    let output_modalities = modalities_or(&raw.output_modalities, default_out);
    let pricing = pricing_of(place, "pricing", raw.pricing.as_ref(), out);
    let raw_routes = routes_or_implicit(place, &mut raw, subst, &mut errors);
    let ctx = RouteContext {
        raw: &raw,
        id: &id,
        pricing: &pricing,
        subst,
    };
    let routes = build_routes(place, &ctx, raw_routes, &mut errors, out);
    let aliases = distinct_aliases(&raw.aliases, &id);
    let policy = raw.policy.as_deref().and_then(|name| {
        let parsed = RoutingPolicy::parse(name);
        if parsed.is_none() {
            errors.push(place.at("policy", RoutingPolicy::unknown(name)));
        }
        parsed
    });

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ModelDef {
        name: raw.name.unwrap_or_else(|| id.clone()),
        id,
        description: raw.description,
        provider: raw.provider,
        model_type,
        quantization: raw.quantization,
        input_modalities,
        output_modalities,
        context_length: raw.context_length,
        max_output_length: raw.max_output_length,
        supports_tools: raw.supports_tools.unwrap_or(false),
        supports_structured_output: raw.supports_structured_output.unwrap_or(false),
        supported_params: raw.supported_params,
        aliases,
        pricing,
        supported_voices: raw.supported_voices,
        routes,
        discovery_template: false,
        declared: None,
        also_embeds: false,
        policy,
    })
}

/// The declared `type`, or the one the modalities imply.
fn model_type_of(place: &Place<'_>, raw: &RawModel, errors: &mut Vec<ConfigError>) -> ModelType {
    let Some(t) = raw
        .model_type
        .as_deref()
        .or(raw.platform_model_type.as_deref())
    else {
        return ModelType::infer(&raw.input_modalities, &raw.output_modalities);
    };
    ModelType::parse(t).unwrap_or_else(|| {
        errors.push(place.at(
            "type",
            format!("unknown type {t:?}; expected chat, multimodal, embedding, rerank, speech, transcription, image or video"),
        ));
        ModelType::Chat
    })
}

fn modalities_or(given: &[String], default: &[&str]) -> Vec<String> {
    if given.is_empty() {
        default.iter().map(|s| s.to_string()).collect()
    } else {
        given.to_vec()
    }
}

/// The model's routes; without any, the original gateway's model-level `base_url` with the
/// provider as the kind makes one.
fn routes_or_implicit(
    place: &Place<'_>,
    raw: &mut RawModel,
    subst: &Substitution<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<RawRoute> {
    let routes = std::mem::take(&mut raw.route);
    if !routes.is_empty() {
        return routes;
    }
    if raw.base_url.is_some() || subst.inherited_missing.contains_key("base_url") {
        // The platform's `provider: self_hosted` names who runs it; `engine` how to talk to it.
        let kind = raw
            .engine
            .clone()
            .or_else(|| raw.provider.clone())
            .unwrap_or_else(|| "openai_compat".into());
        return vec![implicit_route(kind)];
    }
    errors.push(place.whole("has no `route` entries (and no model-level base_url)"));
    vec![]
}

/// A route that takes everything but its kind from the model.
fn implicit_route(kind: String) -> RawRoute {
    RawRoute {
        name: None,
        kind,
        weight: None,
        base_url: None,
        provider_model_id: None,
        api_key: None,
        pricing: None,
        rpm: None,
        tpm: None,
        max_in_flight: None,
        priority: None,
        health_path: None,
        metrics_path: None,
        auth_header: None,
        timeouts: None,
        allow_private_network: None,
        optional: None,
        discover: None,
        discover_prefix: None,
        discover_map: None,
        native_apis: None,
        ca_file: None,
        client_cert_file: None,
        client_key_file: None,
        tls_insecure_skip_verify: None,
        proxy: None,
        video: Default::default(),
        unknown: Default::default(),
    }
}

/// Messages about one route's fields: `route[2].weight`.
struct RouteField<'a> {
    place: &'a Place<'a>,
    index: usize,
}

impl RouteField<'_> {
    fn path(&self) -> String {
        format!("route[{}]", self.index)
    }
    fn name(&self, f: &str) -> String {
        format!("{}.{f}", self.path())
    }
    fn at(&self, f: &str, msg: impl std::fmt::Display) -> ConfigError {
        self.place.at(&self.name(f), msg)
    }
}

/// Validate every route, then give unnamed routes that share a kind unique names.
fn build_routes(
    place: &Place<'_>,
    ctx: &RouteContext<'_>,
    raw_routes: Vec<RawRoute>,
    errors: &mut Vec<ConfigError>,
    out: &mut ConfigErrors,
) -> Vec<RouteDef> {
    let mut routes = Vec::with_capacity(raw_routes.len());
    // How often each route name occurs: explicit names must be unique, implicit ones are
    // numbered below.
    let mut names: HashMap<String, usize> = HashMap::new();
    for (j, r) in raw_routes.into_iter().enumerate() {
        let at = RouteField { place, index: j };
        routes.push(build_route(&at, ctx, r, &mut names, errors, out));
    }
    // Unnamed routes that share a kind get `kind#index` so each name is unique.
    let duplicated: Vec<String> = names
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k.clone())
        .collect();
    for (j, route) in routes.iter_mut().enumerate() {
        if duplicated.contains(&route.name) {
            route.name = format!("{}#{j}", route.name);
        }
    }
    routes
}

/// What every route of a model shares.
struct RouteContext<'a> {
    raw: &'a RawModel,
    id: &'a str,
    pricing: &'a Pricing,
    subst: &'a Substitution<'a>,
}

/// Validate one route. Errors come in the order of its fields; warnings go to `out`.
fn build_route(
    at: &RouteField<'_>,
    ctx: &RouteContext<'_>,
    r: RawRoute,
    names: &mut HashMap<String, usize>,
    errors: &mut Vec<ConfigError>,
    out: &mut ConfigErrors,
) -> RouteDef {
    let route_keys = [ROUTE_KEYS, VIDEO_ROUTE_KEYS].concat();
    at.place
        .unknown_keys(&at.path(), &r.unknown, &route_keys, out);
    if let Some(timeouts) = &r.timeouts {
        at.place
            .unknown_keys(&at.name("timeouts"), &timeouts.unknown, TIMEOUT_KEYS, out);
    }
    let kind_name = r.kind.trim().to_string();
    if kind_name.is_empty() {
        errors.push(at.at("kind", "must not be empty"));
    }
    let kind = BackendKind::parse(&kind_name);
    let weight = r.weight.unwrap_or(1.0);
    if !weight.is_finite() || weight < 0.0 {
        errors.push(at.at("weight", format!("must be a number >= 0, found {weight}")));
    }
    let (base_url, disabled_reason) = route_target(at, ctx, &r, weight, errors, out);
    let provider_model_id = r
        .provider_model_id
        .clone()
        .or_else(|| ctx.raw.provider_model_id.clone())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| ctx.id.to_string());
    let api_key = route_api_key(ctx.raw, &r, ctx.subst.vars);
    let timeouts = route_timeouts(at, &r, errors);
    let discover = route_discovery(at, &r, out);
    let auth = route_auth(at, &r, kind, errors);
    for (field, path, off) in [
        ("health_path", &r.health_path, "probing"),
        ("metrics_path", &r.metrics_path, "load reading"),
    ] {
        if path
            .as_ref()
            .is_some_and(|p| !p.starts_with('/') && p != "none")
        {
            errors.push(at.at(
                field,
                format!("must start with / (or be `none` to disable {off})"),
            ));
        }
    }
    let limits = route_limits(at, ctx, &r, &kind_name, errors);
    let priority = route_priority(at, &r, errors);
    let name = r.name.clone().unwrap_or_else(|| kind_name.clone());
    let count = names.entry(name.clone()).or_insert(0);
    *count += 1;
    if *count > 1 && r.name.is_some() {
        errors.push(at.at("name", format!("route name {name:?} is used twice")));
    }
    let native_apis = route_native_apis(at, &r, errors);
    let outbound = route_outbound(at, &r, &name, api_key.is_some(), errors, out);
    let route_pricing = pricing_of(at.place, &at.name("pricing"), r.pricing.as_ref(), out);
    let video = VideoRouteOptions::from_raw(&r.video).unwrap_or_else(|problems| {
        for (f, message) in problems {
            errors.push(at.at(f, message));
        }
        VideoRouteOptions::default()
    });
    RouteDef {
        name,
        kind_name,
        kind,
        weight,
        configured_weight: weight,
        base_url,
        provider_model_id,
        api_key,
        auth,
        pricing: ctx.pricing.overlaid_by(&route_pricing),
        limits,
        health_path: r.health_path,
        metrics_path: r.metrics_path,
        disabled_reason,
        timeouts,
        allow_private_network: r.allow_private_network.unwrap_or(false),
        discover,
        video,
        native_apis,
        priority,
        outbound,
    }
}

/// The route's trust, client certificate and proxy; the files are read now so a bad one fails
/// the load with the route's name.
fn route_outbound(
    at: &RouteField<'_>,
    r: &RawRoute,
    name: &str,
    has_api_key: bool,
    errors: &mut Vec<ConfigError>,
    out: &mut ConfigErrors,
) -> Outbound {
    let path = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    };
    let mut outbound = Outbound {
        ca_file: path(&r.ca_file),
        insecure_skip_verify: r.tls_insecure_skip_verify.unwrap_or(false),
        ..Outbound::default()
    };
    if let Some(ca) = &outbound.ca_file {
        if let Err(e) = read_ca_bundle(ca) {
            errors.push(at.at("ca_file", format!("route `{name}`: {e}")));
        }
    }
    match (path(&r.client_cert_file), path(&r.client_key_file)) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let files = ClientIdentityFiles { cert, key };
            match read_client_identity(&files) {
                Ok(_) => outbound.client_identity = Some(files),
                Err(e) => errors.push(at.at("client_cert_file", format!("route `{name}`: {e}"))),
            }
        }
        (Some(_), None) => errors.push(at.at(
            "client_key_file",
            format!("route `{name}`: client_cert_file needs client_key_file"),
        )),
        (None, Some(_)) => errors.push(at.at(
            "client_cert_file",
            format!("route `{name}`: client_key_file needs client_cert_file"),
        )),
    }
    if outbound.insecure_skip_verify {
        if has_api_key {
            errors.push(at.at(
                "tls_insecure_skip_verify",
                format!(
                    "route `{name}` carries an api_key: its certificate must be verified (set \
                     ca_file to the CA that signed it instead)"
                ),
            ));
        } else {
            out.warnings.push(
                at.at(
                    "tls_insecure_skip_verify",
                    format!(
                        "route `{name}`: TLS VERIFICATION IS OFF: the backend's certificate is \
                         not checked, anyone on the path can impersonate it; set ca_file instead"
                    ),
                )
                .to_string(),
            );
        }
    }
    if let Some(value) = &r.proxy {
        match ProxyChoice::parse(value) {
            Ok(choice) => outbound.proxy = choice,
            Err(e) => errors.push(at.at("proxy", format!("route `{name}`: {e}"))),
        }
    }
    outbound
}

/// The route's tier: a whole number, 0 when left out.
fn route_priority(at: &RouteField<'_>, r: &RawRoute, errors: &mut Vec<ConfigError>) -> i32 {
    const RANGE: std::ops::RangeInclusive<f64> = -1000.0..=1000.0;
    match r.priority {
        None => 0,
        Some(p) if p.fract() == 0.0 && RANGE.contains(&p) => p as i32,
        Some(p) => {
            errors.push(at.at(
                "priority",
                format!("must be a whole number between -1000 and 1000, found {p}"),
            ));
            0
        }
    }
}

/// `native_apis:`: every entry one of the newer APIs' names.
fn route_native_apis(
    at: &RouteField<'_>,
    r: &RawRoute,
    errors: &mut Vec<ConfigError>,
) -> Option<Vec<NativeApi>> {
    let names = r.native_apis.as_ref()?;
    let mut apis = Vec::with_capacity(names.len());
    for name in names {
        match NativeApi::parse(name) {
            Some(api) if !apis.contains(&api) => apis.push(api),
            Some(_) => {}
            None => {
                let known: Vec<&str> = NativeApi::ALL.iter().map(|a| a.as_str()).collect();
                errors.push(at.at(
                    "native_apis",
                    format!("unknown API {name:?} (known: {})", known.join(", ")),
                ));
            }
        }
    }
    Some(apis)
}

/// The route's base URL and, when it is kept disabled, why. A missing variable disables a
/// weight-0 route (a warning) and is an error anywhere else; a URL is only required, and only
/// an error when invalid, on a route that is not disabled.
fn route_target(
    at: &RouteField<'_>,
    ctx: &RouteContext<'_>,
    r: &RawRoute,
    weight: f64,
    errors: &mut Vec<ConfigError>,
    out: &mut ConfigErrors,
) -> (Option<BaseUrl>, Option<String>) {
    let j = at.index;
    let mut disabled_reason = ctx.subst.disabled.get(j).cloned().flatten();
    let mut already_reported = ctx.subst.broken.get(j).copied().unwrap_or(false);
    for f in ["base_url", "api_key", "provider_model_id"] {
        if let Some(var) = r_field_missing(f, r, ctx.subst.inherited_missing) {
            let reason = format!("environment variable {var} not set");
            if weight == 0.0 {
                out.warnings.push(
                    at.place
                        .at(
                            f,
                            format!("{reason}; route {j} kept disabled because its weight is 0"),
                        )
                        .to_string(),
                );
                disabled_reason.get_or_insert(reason);
            } else {
                errors.push(
                    at.place
                        .at(f, format!("environment variable {var} is not set")),
                );
                already_reported = true;
            }
        }
    }
    let base_raw = r.base_url.clone().or_else(|| ctx.raw.base_url.clone());
    let base_url = match base_raw.as_deref().map(str::trim) {
        _ if already_reported => None,
        Some("") | None if disabled_reason.is_none() => {
            errors.push(at.at("base_url", "is required"));
            None
        }
        Some("") | None => None,
        Some(url) => match BaseUrl::parse(url) {
            Ok(b) => Some(b),
            Err(e) if disabled_reason.is_some() => {
                out.warnings.push(at.at("base_url", &e).to_string());
                None
            }
            Err(e) => {
                errors.push(at.at("base_url", e));
                None
            }
        },
    };
    (base_url, disabled_reason)
}

/// The route's key, else the model's; `BACKEND_API_KEY` is the key of routes that name none,
/// and `api_key: none` opts a route out of it.
fn route_api_key(raw: &RawModel, r: &RawRoute, vars: &dyn VarSource) -> Option<Secret> {
    let named = r
        .api_key
        .clone()
        .or_else(|| raw.api_key.clone())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    match named {
        Some(k) if k.eq_ignore_ascii_case("none") => None,
        Some(k) => Some(Secret::new(k)),
        None => backend_api_key(vars),
    }
}

fn route_timeouts(
    at: &RouteField<'_>,
    r: &RawRoute,
    errors: &mut Vec<ConfigError>,
) -> super::RouteTimeouts {
    match r.timeouts.as_ref().map(|t| t.validate()) {
        None => Default::default(),
        Some(Ok(t)) => t,
        Some(Err(problems)) => {
            for p in problems {
                errors.push(at.at("timeouts", p));
            }
            Default::default()
        }
    }
}

fn route_discovery(
    at: &RouteField<'_>,
    r: &RawRoute,
    out: &mut ConfigErrors,
) -> Option<crate::config::Discovery> {
    let on = r.discover.unwrap_or(false);
    if !on && (r.discover_prefix.is_some() || r.discover_map.is_some()) {
        out.warnings.push(
            at.at(
                "discover_prefix",
                "discover_prefix/discover_map have no effect without `discover: true`",
            )
            .to_string(),
        );
    }
    on.then(|| crate::config::Discovery {
        prefix: r.discover_prefix.clone().unwrap_or_default(),
        map: r.discover_map.clone().unwrap_or_default(),
    })
}

fn route_auth(
    at: &RouteField<'_>,
    r: &RawRoute,
    kind: BackendKind,
    errors: &mut Vec<ConfigError>,
) -> AuthStyle {
    match r
        .auth_header
        .as_deref()
        .map(|s| s.trim().to_ascii_lowercase())
    {
        None => kind.auth_style(),
        Some(h) if h == "authorization" || h == "bearer" => AuthStyle::Bearer,
        Some(h) if h == "api-key" || h == "api_key" => AuthStyle::ApiKeyHeader,
        Some(other) => {
            errors.push(at.at(
                "auth_header",
                format!("unknown auth header {other:?}; expected authorization or api-key"),
            ));
            AuthStyle::Bearer
        }
    }
}

/// The route's own limits, else `<PROVIDER>_RPM_LIMIT`/`_TPM_LIMIT` from the environment.
fn route_limits(
    at: &RouteField<'_>,
    ctx: &RouteContext<'_>,
    r: &RawRoute,
    kind_name: &str,
    errors: &mut Vec<ConfigError>,
) -> Limits {
    let provider = ctx.raw.provider.as_deref();
    let limits = Limits {
        rpm: r
            .rpm
            .or_else(|| env_limit(ctx.subst.vars, kind_name, provider, "RPM")),
        tpm: r
            .tpm
            .or_else(|| env_limit(ctx.subst.vars, kind_name, provider, "TPM")),
        max_in_flight: r.max_in_flight,
    };
    if limits.rpm == Some(0) || limits.tpm == Some(0) || limits.max_in_flight == Some(0) {
        errors.push(at.at(
            "rpm/tpm/max_in_flight",
            "limits must be at least 1 (leave the field out for no limit)",
        ));
    }
    limits
}

/// The aliases in order, without blanks, repeats or the id itself (seen in the original
/// gateway's configs, a no-op).
fn distinct_aliases(given: &[String], id: &str) -> Vec<String> {
    let mut aliases: Vec<String> = Vec::new();
    for alias in given {
        let alias = alias.trim();
        if alias.is_empty() || alias == id || aliases.iter().any(|a| a == alias) {
            continue;
        }
        aliases.push(alias.to_string());
    }
    aliases
}

/// Whether a route inherits a model-level field whose variable was missing.
fn r_field_missing(
    field: &str,
    route: &RawRoute,
    inherited_missing: &HashMap<String, String>,
) -> Option<String> {
    let route_has = match field {
        "base_url" => route.base_url.is_some(),
        "api_key" => route.api_key.is_some(),
        _ => route.provider_model_id.is_some(),
    };
    if route_has {
        None
    } else {
        inherited_missing.get(field).cloned()
    }
}

fn pricing_of(
    place: &Place<'_>,
    field: &str,
    raw: Option<&RawPricing>,
    out: &mut ConfigErrors,
) -> Pricing {
    let Some(raw) = raw else {
        return Pricing::default();
    };
    place.unknown_keys(field, &raw.unknown, PRICING_KEYS, out);
    Pricing {
        prompt: raw.prompt.clone(),
        completion: raw.completion.clone(),
        image: raw.image.clone(),
        request: raw.request.clone(),
        input_cache_reads: raw.input_cache_reads.clone(),
        input_cache_writes: raw.input_cache_writes.clone(),
        audio: raw.audio.clone(),
        video: raw.video.clone(),
    }
}

/// `<PROVIDER>_TPM_LIMIT` / `<PROVIDER>_RPM_LIMIT` (e.g. `GEMINI_TPM_LIMIT`, as the HybridInference
/// gateway reads them), by route kind, then model provider.
fn env_limit(
    vars: &dyn VarSource,
    kind_name: &str,
    provider: Option<&str>,
    what: &str,
) -> Option<u64> {
    [Some(kind_name), provider]
        .into_iter()
        .flatten()
        .filter(|n| !n.is_empty())
        .find_map(|name| {
            let var: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            vars.get(&format!("{var}_{what}_LIMIT"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
        })
}

fn check_unique_names(label: &str, models: &[ModelDef], errors: &mut Vec<ConfigError>) {
    let mut seen: HashMap<&str, String> = HashMap::new();
    for (i, model) in models.iter().enumerate() {
        let here = |what: &str| format!("{what} of model `{}` ({label} models[{i}])", model.id);
        for (name, what) in std::iter::once((model.id.as_str(), "id"))
            .chain(model.aliases.iter().map(|a| (a.as_str(), "alias")))
        {
            let place = here(what);
            if let Some(first) = seen.get(name) {
                errors.push(ConfigError::in_file(
                    label,
                    format!("duplicate model name `{name}`: {place} collides with the {first}"),
                ));
            } else {
                seen.insert(name, place);
            }
        }
    }
}

/// `OFFLOAD=1`: routes on `LOCAL_BASE_URL` are taken out of rotation (remote-only operation while
/// the local servers are down or needed elsewhere).
fn apply_offload(registry: &mut Registry, vars: &dyn VarSource, warnings: &mut Vec<String>) {
    // A malformed value is refused by `Settings::from_env` before any config is loaded.
    let on = vars
        .get("OFFLOAD")
        .and_then(|v| super::lenient::bool_word(&v))
        .unwrap_or(false);
    if !on {
        return;
    }
    let Some(local) = vars
        .get("LOCAL_BASE_URL")
        .and_then(|u| normalize_base_url(&u))
    else {
        warnings
            .push("OFFLOAD=1 but LOCAL_BASE_URL is not set or invalid: nothing offloaded".into());
        return;
    };
    for model in &mut registry.models {
        for route in &mut model.routes {
            if route.base_url.as_ref().map(|b| b.api_base()) == Some(local.as_str()) {
                route.weight = 0.0;
                route.disabled_reason =
                    Some("offloaded (OFFLOAD=1, route is on LOCAL_BASE_URL)".into());
            }
        }
    }
}
