//! The single-backend gateway's `.env` (seed 003): `BACKEND_KIND`, `BACKEND_BASE_URL`,
//! `BACKEND_API_KEY` and `MODEL_NAME` describe one engine, and the router builds model entries
//! for it, with or without a models.yaml beside them.
//!
//! `MODEL_NAME` names the models (a comma list; each is served under its own name). Without it
//! the backend's own `/v1/models` list is served: the entry built is a discovery template,
//! never listed or routed itself, whose route discovers (see `crate::discovery`). The entries
//! are YAML model items fed through the same loader as models.yaml's, so they are validated
//! the same way; `BACKEND_API_KEY` reaches them as the key of routes that name none.

use serde_yaml::{Mapping, Value};

use super::env::VarSource;

/// The kinds the seed's table lists, with the base URL its compose file gives each: the
/// engine's service name on the compose network (LM Studio runs on the host, `openai` is an
/// external endpoint whose URL must be given).
pub const KINDS: &[(&str, Option<&str>)] = &[
    ("vllm", Some("http://vllm:8001/v1")),
    ("ollama", Some("http://ollama:11434/v1")),
    ("llamacpp", Some("http://llamacpp:8001/v1")),
    ("tgi", Some("http://tgi:8001/v1")),
    ("sglang", Some("http://sglang:8001/v1")),
    ("localai", Some("http://localai:8001/v1")),
    ("lmstudio", Some("http://host.docker.internal:1234/v1")),
    ("openai", None),
];

/// The one backend the environment describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SingleBackend {
    pub kind: String,
    pub base_url: String,
    /// `MODEL_NAME`'s names; empty = serve what the backend lists.
    pub models: Vec<String>,
}

/// Id of the discovery template built when `MODEL_NAME` is unset (never public).
pub fn template_id(kind: &str) -> String {
    format!("{kind}:discovered")
}

impl SingleBackend {
    /// `None` when `BACKEND_KIND` is unset or blank; every malformed value is reported.
    pub fn from_vars(vars: &dyn VarSource) -> Result<Option<SingleBackend>, Vec<String>> {
        let set = |name: &str| {
            vars.get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(raw_kind) = set("BACKEND_KIND") else {
            return Ok(None);
        };
        let kind = raw_kind.to_ascii_lowercase();
        let Some((_, default_url)) = KINDS.iter().find(|(k, _)| *k == kind) else {
            let names: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
            return Err(vec![format!(
                "BACKEND_KIND={raw_kind:?}: expected one of {}",
                names.join(", ")
            )]);
        };
        let mut errors = Vec::new();
        let base_url = match (set("BACKEND_BASE_URL"), default_url) {
            (Some(url), _) => url,
            (None, Some(url)) => url.to_string(),
            (None, None) => {
                errors.push(format!(
                    "BACKEND_BASE_URL: required with BACKEND_KIND={kind} (the external endpoint's URL)"
                ));
                String::new()
            }
        };
        if !base_url.is_empty() {
            if let Err(why) = crate::engines::BaseUrl::parse(&base_url) {
                errors.push(format!("BACKEND_BASE_URL: {why}"));
            }
        }
        let models: Vec<String> = set("MODEL_NAME")
            .map(|list| {
                list.split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for m in &models {
            if m.chars().any(char::is_whitespace) || m.contains("${") {
                errors.push(format!(
                    "MODEL_NAME: {m:?} is not a usable model id (no spaces or ${{…}})"
                ));
            }
        }
        if errors.is_empty() {
            Ok(Some(SingleBackend {
                kind,
                base_url,
                models,
            }))
        } else {
            Err(errors)
        }
    }

    /// models.yaml items for this backend: one per `MODEL_NAME`, or the discovery template.
    pub fn model_items(&self) -> Vec<Value> {
        if self.models.is_empty() {
            let mut route = self.route();
            route.insert("discover".into(), true.into());
            return vec![model_item(&template_id(&self.kind), route)];
        }
        self.models
            .iter()
            .map(|name| {
                let mut route = self.route();
                route.insert("provider_model_id".into(), name.as_str().into());
                model_item(name, route)
            })
            .collect()
    }

    /// The ids of [`model_items`](Self::model_items): each also serves `/v1/embeddings`
    /// (`ModelDef::also_embeds`), as the seed's gateway does for any engine that has them.
    pub fn model_ids(&self) -> Vec<String> {
        if self.models.is_empty() {
            return vec![template_id(&self.kind)];
        }
        self.models.clone()
    }

    fn route(&self) -> Mapping {
        let mut route = Mapping::new();
        route.insert("name".into(), "backend".into());
        route.insert("kind".into(), self.kind.as_str().into());
        route.insert("base_url".into(), self.base_url.as_str().into());
        // The operator named this endpoint as the router's own backend, usually a service on
        // the compose network or the host: a private address is the point, not an accident.
        route.insert("allow_private_network".into(), true.into());
        route
    }
}

fn model_item(id: &str, route: Mapping) -> Value {
    let mut model = Mapping::new();
    model.insert("id".into(), id.into());
    model.insert("type".into(), "chat".into());
    model.insert("route".into(), Value::Sequence(vec![Value::Mapping(route)]));
    Value::Mapping(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn every_kind_of_the_table_has_its_default_url_or_needs_one() {
        for (kind, default) in KINDS {
            let got = SingleBackend::from_vars(&vars(&[("BACKEND_KIND", kind)]));
            match default {
                Some(url) => assert_eq!(got.unwrap().unwrap().base_url, *url, "{kind}"),
                None => assert!(
                    got.unwrap_err()[0].starts_with("BACKEND_BASE_URL"),
                    "{kind}"
                ),
            }
            let given = SingleBackend::from_vars(&vars(&[
                ("BACKEND_KIND", &kind.to_uppercase()),
                ("BACKEND_BASE_URL", "http://10.0.0.5:9000/v1"),
            ]))
            .unwrap()
            .unwrap();
            assert_eq!(given.base_url, "http://10.0.0.5:9000/v1");
            assert_eq!(given.kind, *kind);
        }
    }

    #[test]
    fn unset_kind_is_no_backend_and_bad_values_are_reported() {
        assert_eq!(SingleBackend::from_vars(&vars(&[])).unwrap(), None);
        assert_eq!(
            SingleBackend::from_vars(&vars(&[("BACKEND_KIND", " ")])).unwrap(),
            None
        );
        for bad in [
            &[("BACKEND_KIND", "triton")][..],
            &[("BACKEND_KIND", "vllm"), ("BACKEND_BASE_URL", "ftp://x")][..],
            &[("BACKEND_KIND", "vllm"), ("MODEL_NAME", "a b")][..],
        ] {
            let errors = SingleBackend::from_vars(&vars(bad)).unwrap_err();
            assert_eq!(errors.len(), 1, "{bad:?}: {errors:?}");
        }
    }

    #[test]
    fn model_name_is_a_comma_list_and_its_absence_means_discovery() {
        let b = SingleBackend::from_vars(&vars(&[
            ("BACKEND_KIND", "ollama"),
            ("MODEL_NAME", "llama3.1:8b-instruct, qwen2.5:7b,,"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(b.models, vec!["llama3.1:8b-instruct", "qwen2.5:7b"]);
        let items = b.model_items();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["route"][0]["provider_model_id"], "qwen2.5:7b");
        let discovering = SingleBackend::from_vars(&vars(&[("BACKEND_KIND", "vllm")]))
            .unwrap()
            .unwrap()
            .model_items();
        assert_eq!(discovering.len(), 1);
        assert_eq!(discovering[0]["id"], Value::from(template_id("vllm")));
        assert_eq!(discovering[0]["route"][0]["discover"], true);
    }

    /// The backend's models accept chat and embeddings; a models.yaml model beside them keeps
    /// its type's operations only.
    #[test]
    fn the_backend_s_models_also_serve_embeddings_and_the_file_s_do_not() {
        use crate::engines::ApiOp;
        let yaml = "models:\n  - id: from-file\n    route: [{kind: vllm, base_url: \"http://10.0.0.5:9000/v1\"}]\n";
        let env = vars(&[
            ("BACKEND_KIND", "ollama"),
            ("BACKEND_BASE_URL", "http://10.0.0.6:11434/v1"),
            ("MODEL_NAME", "nomic-embed-text"),
        ]);
        let registry = crate::config::load_str("models.yaml", yaml, None, &env).unwrap();
        for (id, embeds) in [("from-file", false), ("nomic-embed-text", true)] {
            let def = registry.models.iter().find(|m| m.id == id).unwrap();
            assert!(def.accepts(ApiOp::ChatCompletions), "{id}");
            assert_eq!(def.accepts(ApiOp::Embeddings), embeds, "{id}");
            assert!(!def.accepts(ApiOp::Speech), "{id}");
        }
    }
}
