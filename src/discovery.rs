//! Model discovery: a route with `discover: true` has its endpoint's `/v1/models`
//! queried at start and every `DISCOVERY_INTERVAL_SECS`; each model it lists becomes a public
//! model (`discover_prefix` + id, or the `discover_map` name) copied from the model the route
//! belongs to, served by the same endpoint. Explicit models and aliases always win over
//! discovered ones. Discovery is traffic the router starts on its own, so it obeys network
//! hygiene: private addresses need `allow_private_network: true`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::config::{ModelDef, Registry, RouteDef};
use crate::engines::attach_credentials;

/// Which route discovered something: (model id, route name).
pub type DiscoveryKey = (String, String);

/// The last successful answer of every discovering route.
pub type Discovered = BTreeMap<DiscoveryKey, Vec<String>>;

/// A route to query, with where to file the answer.
#[derive(Debug, Clone)]
pub struct Target {
    pub key: DiscoveryKey,
    pub route: RouteDef,
}

/// Every enabled `discover: true` route of `registry`.
pub fn targets(registry: &Registry) -> Vec<Target> {
    registry
        .models
        .iter()
        .flat_map(|m| {
            m.routes
                .iter()
                .filter(|r| r.discover.is_some() && r.is_enabled())
                .map(|r| Target {
                    key: (m.id.clone(), r.name.clone()),
                    route: r.clone(),
                })
        })
        .collect()
}

/// `base` plus a model for each discovered id that no explicit model or alias already names.
/// Returns the merged registry and notes on what was skipped.
pub fn merge(base: &Registry, found: &Discovered) -> (Registry, Vec<String>) {
    let mut merged = base.clone();
    let mut notes = Vec::new();
    let mut taken: HashSet<String> = base
        .models
        .iter()
        .flat_map(|m| std::iter::once(m.id.clone()).chain(m.aliases.iter().cloned()))
        .collect();
    for template in &base.models {
        for route in &template.routes {
            let Some(spec) = &route.discover else {
                continue;
            };
            let Some(ids) = found.get(&(template.id.clone(), route.name.clone())) else {
                continue;
            };
            for served in ids {
                let public = spec.public_id(served);
                if public.is_empty() || public.chars().any(char::is_whitespace) {
                    notes.push(format!("discovered id {served:?} is not a usable model id"));
                    continue;
                }
                if !taken.insert(public.clone()) {
                    // An explicit model (or an earlier discovery) has this name.
                    continue;
                }
                merged
                    .models
                    .push(discovered_model(template, route, served, public));
            }
        }
    }
    (merged, notes)
}

fn discovered_model(
    template: &ModelDef,
    route: &RouteDef,
    served: &str,
    public: String,
) -> ModelDef {
    let mut route = route.clone();
    route.provider_model_id = served.to_string();
    route.discover = None;
    let mut model = template.clone();
    model.name = public.clone();
    model.id = public;
    model.aliases = Vec::new();
    model.discovery_template = false;
    model.description = Some(format!(
        "Discovered at {} (served as `{served}`).",
        route
            .base_url
            .as_ref()
            .map_or("-".to_string(), |b| b.api_base().to_string())
    ));
    model.routes = vec![route];
    model
}

/// The ids in an OpenAI-style model list (`{"data":[{"id":…}]}`; a bare array is accepted).
pub fn parse_model_list(body: &[u8]) -> Result<Vec<String>, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("model list is not JSON: {e}"))?;
    let items = match &v {
        Value::Object(o) => o.get("data").and_then(Value::as_array),
        Value::Array(a) => Some(a),
        _ => None,
    }
    .ok_or("model list has no `data` array")?;
    let mut ids: Vec<String> = items
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Ask the route's endpoint which models it serves.
pub async fn fetch(route: &RouteDef) -> Result<Vec<String>, String> {
    let base = route
        .base_url
        .as_ref()
        .ok_or_else(|| "route has no base_url".to_string())?;
    let url = base.api_url("/models");
    crate::netguard::check_url(&url, route.allow_private_network).await?;
    let client = crate::relay::client::with_connect_timeout(Duration::from_secs(5));
    let req = attach_credentials(
        client.get(&url).timeout(Duration::from_secs(10)),
        route.credentials(),
    );
    let mut resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    let body = resp
        .body()
        .limit(4 * 1024 * 1024)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    parse_model_list(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::collections::HashMap;

    #[test]
    fn explicit_models_win_and_prefixes_apply() {
        let yaml = "models:\n  - id: local/b\n    route: [{kind: vllm, base_url: \"http://h:1\"}]\n  - id: tmpl\n    type: chat\n    aliases: [local/c]\n    route:\n      - kind: vllm\n        base_url: \"http://h:2\"\n        discover: true\n        discover_prefix: local/\n        discover_map: {weird: nice}\n";
        let base = load_str("m.yaml", yaml, None, &HashMap::new()).unwrap();
        assert_eq!(targets(&base).len(), 1);
        let mut found = Discovered::new();
        found.insert(
            ("tmpl".into(), "vllm".into()),
            vec![
                "a".into(),
                "b".into(),
                "c".into(),
                "weird".into(),
                "bad id".into(),
            ],
        );
        let (merged, notes) = merge(&base, &found);
        let ids: Vec<&str> = merged.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, vec!["local/b", "tmpl", "local/a", "nice"]);
        assert_eq!(notes.len(), 1);
        let a = merged.find("local/a").unwrap();
        assert_eq!(a.routes[0].provider_model_id, "a");
        assert!(a.routes[0].discover.is_none());
        // The explicit local/b keeps its own route.
        assert_eq!(
            merged.find("local/b").unwrap().routes[0]
                .base_url
                .as_ref()
                .unwrap()
                .api_base(),
            "http://h:1/v1"
        );
    }

    #[test]
    fn parses_model_lists() {
        assert_eq!(
            parse_model_list(
                br#"{"object":"list","data":[{"id":"b"},{"id":"a"},{"id":"a"},{"x":1}]}"#
            )
            .unwrap(),
            vec!["a", "b"]
        );
        assert!(parse_model_list(b"nope").is_err());
        assert!(parse_model_list(br#"{"models":[]}"#).is_err());
    }
}
