//! Model discovery: a route with `discover: true` has its endpoint's `/v1/models`
//! queried at start and every `DISCOVERY_INTERVAL_SECS`; each model it lists becomes a public
//! model (`discover_prefix` + id, or the `discover_map` name) copied from the model the route
//! belongs to, served by the same endpoint. Explicit models and aliases always win over
//! discovered ones. Discovery is traffic the router starts on its own, so it obeys network
//! hygiene: private addresses need `allow_private_network: true`.
//!
//! The same query is the probe row of a provider's endpoint (seed 004): reachable, auth ok,
//! models discovered, private network approved. Routes of explicit provider models are asked
//! too, for that row only: their answer registers nothing.

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

/// Every enabled `discover: true` route of `registry`, and every enabled route of a provider
/// model (probed only).
pub fn targets(registry: &Registry) -> Vec<Target> {
    registry
        .models
        .iter()
        .flat_map(|m| {
            let provider = m.declared.is_some();
            m.routes
                .iter()
                .filter(move |r| (r.discover.is_some() || provider) && r.is_enabled())
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

/// Why a model list could not be had, and how far the query got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// Refused before any traffic (network hygiene: a private address not approved).
    pub refused: bool,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    pub message: String,
}

impl FetchError {
    fn new(status: Option<u16>, message: String) -> FetchError {
        FetchError {
            refused: false,
            status,
            message,
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Ask the route's endpoint which models it serves.
pub async fn fetch(route: &RouteDef) -> Result<Vec<String>, FetchError> {
    let base = route
        .base_url
        .as_ref()
        .ok_or_else(|| FetchError::new(None, "route has no base_url".to_string()))?;
    let url = base.api_url("/models");
    crate::netguard::check_url(&url, route.allow_private_network)
        .await
        .map_err(|message| FetchError {
            refused: true,
            status: None,
            message,
        })?;
    // The route's own CA, client certificate and proxy: discovery reaches the endpoint the
    // way its traffic will.
    let client = crate::relay::client::for_profile(Duration::from_secs(5), &route.outbound);
    let req = attach_credentials(
        client.get(&url).timeout(Duration::from_secs(10)),
        route.credentials(),
    );
    let mut resp = req.send().await.map_err(|e| {
        let why = match crate::relay::tls_error::tls_failure(&e) {
            Some(reason) => format!("TLS: {reason}"),
            None => e.to_string(),
        };
        FetchError::new(None, format!("GET {url}: {why}"))
    })?;
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        return Err(FetchError::new(
            Some(status),
            format!("GET {url}: HTTP {status}"),
        ));
    }
    let body = resp
        .body()
        .limit(4 * 1024 * 1024)
        .await
        .map_err(|e| FetchError::new(Some(status), format!("GET {url}: {e}")))?;
    parse_model_list(&body).map_err(|e| FetchError::new(Some(status), e))
}

/// The probe row of a provider's endpoint, from its last `/v1/models` query.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeRow {
    /// The endpoint's name in `/admin/backends` (`kind@host:port`).
    pub endpoint: String,
    /// It answered HTTP at all.
    pub reachable: bool,
    /// Its answer was not 401/403; `None` when it did not answer.
    pub auth_ok: Option<bool>,
    /// Ids in its model list (0 when the list could not be had).
    pub models_discovered: usize,
    /// The route may reach a loopback/private/link-local address (`allowPrivateNetwork`).
    pub private_network_approved: bool,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

pub fn probe_row(route: &RouteDef, result: &Result<Vec<String>, FetchError>) -> ProbeRow {
    let endpoint = route.base_url.as_ref().map_or_else(
        || route.kind_name.clone(),
        |b| format!("{}@{}", route.kind_name, b.authority()),
    );
    let (reachable, auth_ok, models_discovered, error) = match result {
        Ok(ids) => (true, Some(true), ids.len(), None),
        Err(e) => {
            let auth_ok = e.status.map(|s| s != 401 && s != 403);
            (e.status.is_some(), auth_ok, 0, Some(e.message.clone()))
        }
    };
    ProbeRow {
        endpoint,
        reachable,
        auth_ok,
        models_discovered,
        private_network_approved: route.allow_private_network,
        error,
    }
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
    fn a_probe_row_says_how_far_the_query_got() {
        let yaml = "models:\n  - id: m\n    route: [{kind: vllm, base_url: \"http://10.1.2.3:8000/v1\", allow_private_network: true}]\n";
        let registry = load_str("m.yaml", yaml, None, &HashMap::new()).unwrap();
        let route = &registry.models[0].routes[0];
        let err = |refused, status: Option<u16>| {
            Err(FetchError {
                refused,
                status,
                message: "why".into(),
            })
        };
        // (result, reachable, auth ok, models discovered)
        let cases = [
            (
                Ok(vec!["a".to_string(), "b".to_string()]),
                true,
                Some(true),
                2,
            ),
            (err(false, Some(401)), true, Some(false), 0),
            (err(false, Some(403)), true, Some(false), 0),
            (err(false, Some(500)), true, Some(true), 0),
            (err(false, None), false, None, 0),
            (err(true, None), false, None, 0),
        ];
        for (result, reachable, auth_ok, models) in cases {
            let row = probe_row(route, &result);
            assert_eq!(row.endpoint, "vllm@10.1.2.3:8000");
            assert_eq!(
                (row.reachable, row.auth_ok, row.models_discovered),
                (reachable, auth_ok, models),
                "{result:?}"
            );
            assert!(row.private_network_approved);
            assert_eq!(row.error.is_some(), result.is_err());
        }
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
