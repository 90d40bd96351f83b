//! The vLLM-compatible provider of seed 004, configured as its users configured it.
//!
//! * Explicit: a JSON5 file (`PROVIDERS_FILE`, default `config/providers.json5` when present)
//!   with `models.providers.<name>` entries: `baseUrl`, `apiKey` (`${VAR}` allowed), `api`,
//!   `request.allowPrivateNetwork` and `models[]` (`id`, `name`, `reasoning`, `input`,
//!   `cost{input,output,cacheRead,cacheWrite}` in USD per million tokens, `contextWindow`,
//!   `maxTokens`, and `tools`). Each model becomes `<provider>/<id>`.
//! * Implicit: `VLLM_API_KEY` set and no explicit `vllm` provider: `VLLM_BASE_URL` (default
//!   `http://127.0.0.1:8000/v1`) is asked for `/v1/models` and each id is served as
//!   `vllm/<id>`. The engine is the operator's own local server, so loopback is allowed.
//!
//! Both become models.yaml items run through the ordinary loader. Their capabilities are
//! declared, never assumed: no tools, vision or reasoning unless the entry says so.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::env::VarSource;

pub const DEFAULT_PROVIDERS_FILE: &str = "config/providers.json5";
pub const DEFAULT_VLLM_BASE_URL: &str = "http://127.0.0.1:8000/v1";
/// Id of the implicit provider's discovery template (never public).
pub const IMPLICIT_VLLM_TEMPLATE: &str = "vllm:discovered";

/// What a provider's model may be asked to do beyond plain text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    pub tools: bool,
    pub reasoning: bool,
}

#[derive(Debug, Default, Deserialize)]
struct ProvidersFile {
    #[serde(default)]
    models: ModelsSection,
}

#[derive(Debug, Default, Deserialize)]
struct ModelsSection {
    #[serde(default)]
    providers: BTreeMap<String, Provider>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Provider {
    base_url: String,
    api_key: Option<String>,
    api: Option<String>,
    #[serde(default)]
    request: RequestOptions,
    #[serde(default)]
    models: Vec<ProviderModel>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestOptions {
    #[serde(default)]
    allow_private_network: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderModel {
    id: String,
    name: Option<String>,
    #[serde(default)]
    reasoning: bool,
    #[serde(default)]
    tools: bool,
    #[serde(default)]
    input: Vec<String>,
    cost: Option<Cost>,
    context_window: Option<u64>,
    max_tokens: Option<u64>,
}

/// USD per million tokens, as the provider file writes prices.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Cost {
    #[serde(default)]
    input: f64,
    #[serde(default)]
    output: f64,
    #[serde(default)]
    cache_read: f64,
    #[serde(default)]
    cache_write: f64,
}

/// Provider models as models.yaml items, with what each declares.
#[derive(Debug, Default)]
pub struct ProviderModels {
    pub items: Vec<Value>,
    pub declared: BTreeMap<String, Declared>,
    pub templates: Vec<String>,
}

/// The providers file's path: `PROVIDERS_FILE`, else the default when it exists.
pub fn providers_path(vars: &dyn VarSource) -> Option<std::path::PathBuf> {
    match vars.get("PROVIDERS_FILE") {
        Some(p) if !p.trim().is_empty() => Some(p.trim().into()),
        _ => {
            let default = std::path::PathBuf::from(DEFAULT_PROVIDERS_FILE);
            default.exists().then_some(default)
        }
    }
}

/// Read the providers file (if any) and the implicit vLLM provider (if opted in).
pub fn provider_models(vars: &dyn VarSource) -> Result<ProviderModels, String> {
    let explicit = match providers_path(vars) {
        Some(path) => {
            let label = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{label}: {e}"))?;
            parse_providers(&text).map_err(|e| format!("{label}: {e}"))?
        }
        None => BTreeMap::new(),
    };
    let mut out = ProviderModels::default();
    for (name, provider) in &explicit {
        translate(name, provider, &mut out)?;
    }
    let key = vars
        .get("VLLM_API_KEY")
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    if key.is_some() && !explicit.contains_key("vllm") {
        out.items.push(implicit_vllm(vars));
        out.declared
            .insert(IMPLICIT_VLLM_TEMPLATE.into(), Declared::default());
        out.templates.push(IMPLICIT_VLLM_TEMPLATE.into());
    }
    Ok(out)
}

fn parse_providers(text: &str) -> Result<BTreeMap<String, Provider>, String> {
    let file: ProvidersFile = json5::from_str(text).map_err(|e| e.to_string())?;
    Ok(file.models.providers)
}

fn implicit_vllm(vars: &dyn VarSource) -> Value {
    let base = vars
        .get("VLLM_BASE_URL")
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_VLLM_BASE_URL.to_string());
    let mut route = Mapping::new();
    route.insert("name".into(), "vllm".into());
    route.insert("kind".into(), "vllm".into());
    route.insert("base_url".into(), base.into());
    // Read through the loader's own `${VAR}` substitution, like any models.yaml key.
    route.insert("api_key".into(), "${VLLM_API_KEY}".into());
    route.insert("allow_private_network".into(), true.into());
    route.insert("discover".into(), true.into());
    route.insert("discover_prefix".into(), "vllm/".into());
    let mut model = Mapping::new();
    model.insert("id".into(), IMPLICIT_VLLM_TEMPLATE.into());
    model.insert("type".into(), "chat".into());
    model.insert("supports_tools".into(), false.into());
    model.insert("route".into(), Value::Sequence(vec![Value::Mapping(route)]));
    Value::Mapping(model)
}

/// One provider's models as models.yaml items named `<provider>/<id>`.
fn translate(name: &str, p: &Provider, out: &mut ProviderModels) -> Result<(), String> {
    let api = p.api.as_deref().unwrap_or("openai-completions");
    if !api.starts_with("openai-") {
        return Err(format!(
            "models.providers.{name}.api: {api:?} is not an OpenAI-compatible API (expected openai-completions)"
        ));
    }
    let kind = match crate::engines::BackendKind::parse(name) {
        crate::engines::BackendKind::Remote => "openai_compat".to_string(),
        _ => name.to_string(),
    };
    for m in &p.models {
        let public = format!("{name}/{}", m.id);
        let mut route = Mapping::new();
        route.insert("name".into(), name.into());
        route.insert("kind".into(), kind.as_str().into());
        route.insert("base_url".into(), p.base_url.as_str().into());
        route.insert("provider_model_id".into(), m.id.as_str().into());
        if let Some(key) = &p.api_key {
            route.insert("api_key".into(), key.as_str().into());
        }
        route.insert(
            "allow_private_network".into(),
            p.request.allow_private_network.into(),
        );
        let vision = m.input.iter().any(|i| i.eq_ignore_ascii_case("image"));
        let mut model = Mapping::new();
        model.insert("id".into(), public.as_str().into());
        model.insert(
            "name".into(),
            m.name.clone().unwrap_or_else(|| public.clone()).into(),
        );
        model.insert(
            "type".into(),
            if vision { "multimodal" } else { "chat" }.into(),
        );
        model.insert("provider".into(), name.into());
        if !m.input.is_empty() {
            let input: Vec<Value> = m.input.iter().map(|i| i.as_str().into()).collect();
            model.insert("input_modalities".into(), Value::Sequence(input));
        }
        if let Some(n) = m.context_window {
            model.insert("context_length".into(), n.into());
        }
        if let Some(n) = m.max_tokens {
            model.insert("max_output_length".into(), n.into());
        }
        model.insert("supports_tools".into(), m.tools.into());
        if let Some(cost) = &m.cost {
            model.insert("pricing".into(), pricing(cost));
        }
        model.insert("route".into(), Value::Sequence(vec![Value::Mapping(route)]));
        out.items.push(Value::Mapping(model));
        out.declared.insert(
            public,
            Declared {
                tools: m.tools,
                reasoning: m.reasoning,
            },
        );
    }
    Ok(())
}

/// Per-million prices as the router's per-token decimal strings.
fn pricing(cost: &Cost) -> Value {
    let per_token = |v: f64| Value::from(format!("{}", v / 1_000_000.0));
    let mut p = Mapping::new();
    p.insert("prompt".into(), per_token(cost.input));
    p.insert("completion".into(), per_token(cost.output));
    p.insert("input_cache_reads".into(), per_token(cost.cache_read));
    p.insert("input_cache_writes".into(), per_token(cost.cache_write));
    Value::Mapping(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's own explicit configuration, as written there.
    const SEED_004_EXPLICIT: &str = include_str!("../../tests/fixtures/seed_004_providers.json5");

    #[test]
    fn the_seed_file_translates_into_one_model_entry() {
        let providers = parse_providers(SEED_004_EXPLICIT).unwrap();
        let mut out = ProviderModels::default();
        translate("vllm", &providers["vllm"], &mut out).unwrap();
        assert_eq!(out.items.len(), 1);
        let m = &out.items[0];
        assert_eq!(m["id"], "vllm/your-model-id");
        assert_eq!(m["name"], "Local Served Model");
        assert_eq!(m["context_length"], 128000);
        assert_eq!(m["max_output_length"], 8192);
        assert_eq!(m["route"][0]["api_key"], "${VLLM_API_KEY}");
        assert_eq!(m["route"][0]["allow_private_network"], true);
        assert_eq!(m["route"][0]["provider_model_id"], "your-model-id");
        assert_eq!(out.declared["vllm/your-model-id"], Declared::default());
    }

    #[test]
    fn unknown_fields_and_foreign_apis_are_refused() {
        for bad in [
            r#"{models:{providers:{vllm:{baseUrl:"http://h/v1", apikey:"x"}}}}"#,
            r#"{models:{providers:{vllm:{baseUrl:"http://h/v1", models:[{id:"a", ctx:1}]}}}}"#,
            r#"{models:{providers:{vllm:{models:[]}}}}"#,
            "{models: {providers: ",
        ] {
            assert!(parse_providers(bad).is_err(), "{bad}");
        }
        let providers =
            parse_providers(r#"{models:{providers:{x:{baseUrl:"http://h/v1", api:"anthropic-messages", models:[{id:"a"}]}}}}"#)
                .unwrap();
        assert!(translate("x", &providers["x"], &mut ProviderModels::default()).is_err());
    }

    #[test]
    fn prices_per_million_become_prices_per_token() {
        let cost = Cost {
            input: 3.0,
            output: 15.0,
            cache_read: 0.3,
            cache_write: 0.0,
        };
        let p = pricing(&cost);
        assert_eq!(p["prompt"], "0.000003");
        assert_eq!(p["completion"], "0.000015");
        assert_eq!(p["input_cache_writes"], "0");
    }
}
