//! A strict configuration: an unknown key in models.yaml, routing.yaml or the keys file is an
//! error naming the closest known key (every one at once), unless `--lenient` /
//! `CONFIG_LENIENT=true` turns the models.yaml and routing.yaml ones into warnings. Every shipped
//! or documented example loads strictly; `check-config`, `serve` and hot reload agree.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use serde_json::json;
use switchyard::auth::KeyStore;
use switchyard::config::{
    load_str, ConfigErrors, Registry, DEPLOYMENT_KEYS, MODEL_KEYS, POLICY_SETTING_KEYS,
    PRICING_KEYS, ROUTE_KEYS, ROUTING_KEYS, ROUTING_PARAMETER_KEYS, TIMEOUT_KEYS, VIDEO_ROUTE_KEYS,
};

use common::*;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn lenient() -> HashMap<String, String> {
    vars(&[("CONFIG_LENIENT", "true")])
}

fn load_with(
    models: &str,
    routing: Option<&str>,
    env: &HashMap<String, String>,
) -> Result<Registry, ConfigErrors> {
    load_str(
        "models.yaml",
        models,
        routing.map(|r| ("routing.yaml", r)),
        env,
    )
}

fn unknown_key_problems(problems: &[String]) -> Vec<&String> {
    problems
        .iter()
        .filter(|p| p.contains("unknown key"))
        .collect()
}

/// A valid file: three models, the last with two routes, so places can be told apart.
const BASE_MODELS: &str = r#"
models:
  - id: a
    route: [{kind: vllm, base_url: "http://a:1"}]
  - id: b
    route: [{kind: vllm, base_url: "http://b:1"}]
  - id: c
    pricing: {prompt: "0"}
    route:
      - kind: vllm
        base_url: "http://c:1"
      - kind: sglang
        base_url: "http://d:1"
        pricing: {prompt: "0"}
        timeouts: {connect: 2}
"#;

const BASE_ROUTING: &str = r#"
routing_strategy: fixed
routing_parameter:
  local_fraction: 0.5
local_deployment:
  - endpoint: http://c:1
    models: [c]
remote_deployment:
  - endpoint: http://d:1
    models: [c]
"#;

const BASE_KEYS: &str = r#"
keys:
  - name: team-a
    key: key-of-team-a
    models: [a]
    rpm: 60
"#;

#[derive(Clone, Copy, PartialEq)]
enum File {
    Models,
    Routing,
    Keys,
}

impl File {
    fn label(self) -> &'static str {
        match self {
            File::Models => "models.yaml",
            File::Routing => "routing.yaml",
            File::Keys => "keys.yaml",
        }
    }

    fn base(self) -> &'static str {
        match self {
            File::Models => BASE_MODELS,
            File::Routing => BASE_ROUTING,
            File::Keys => BASE_KEYS,
        }
    }
}

/// One typo: the text it is inserted after (unique in the base file; empty = appended at the
/// end, for top-level keys), the `key: value` text inserted, the key meant, and the place the
/// message must name.
struct Typo {
    file: File,
    after: &'static str,
    insert: &'static str,
    meant: &'static str,
    place: &'static str,
}

impl Typo {
    /// The misspelt key: what `insert` sets.
    fn key(&self) -> &'static str {
        let text = self.insert.trim_start_matches([',', ' ']);
        text.split(':').next().unwrap_or(text)
    }

    /// What the loader must say about it (after the file's label).
    fn message(&self) -> String {
        let (key, place, meant) = (self.key(), self.place, self.meant);
        format!("unknown key `{key}` {place}; did you mean `{meant}`?")
    }
}

const ROUTE_1: &str = "in models[2].route[1] (model `c`)";

#[rustfmt::skip]
const TYPOS: &[Typo] = &[
    Typo { file: File::Models, after: "", insert: "modles: []\n", meant: "models", place: "at the top level" },
    Typo { file: File::Models, after: "- id: b\n", insert: "    contxt_length: 4096\n", meant: "context_length", place: "in models[1] (model `b`)" },
    Typo { file: File::Models, after: "- id: b\n", insert: "    alias: [bee]\n", meant: "aliases", place: "in models[1] (model `b`)" },
    Typo { file: File::Models, after: "- id: b\n", insert: "    supports_tool: true\n", meant: "supports_tools", place: "in models[1] (model `b`)" },
    Typo { file: File::Models, after: "- id: c\n", insert: "    pricing_: {}\n", meant: "pricing", place: "in models[2] (model `c`)" },
    Typo { file: File::Models, after: "\n    pricing: {prompt: \"0\"", insert: ", promt: \"1\"", meant: "prompt", place: "in models[2].pricing (model `c`)" },
    Typo { file: File::Models, after: "\"http://d:1\"\n", insert: "        max_in_fligth: 4\n", meant: "max_in_flight", place: ROUTE_1 },
    Typo { file: File::Models, after: "\"http://d:1\"\n", insert: "        wieght: 2\n", meant: "weight", place: ROUTE_1 },
    Typo { file: File::Models, after: "\"http://d:1\"\n", insert: "        allow_private_netwrok: true\n", meant: "allow_private_network", place: ROUTE_1 },
    Typo { file: File::Models, after: "\"http://d:1\"\n", insert: "        video_pol_path: /j/{id}\n", meant: "video_poll_path", place: ROUTE_1 },
    Typo { file: File::Models, after: "\n        pricing: {prompt: \"0\"", insert: ", completoin: \"0\"", meant: "completion", place: "in models[2].route[1].pricing (model `c`)" },
    Typo { file: File::Models, after: "timeouts: {connect: 2", insert: ", conect: 2", meant: "connect", place: "in models[2].route[1].timeouts (model `c`)" },
    Typo { file: File::Routing, after: "", insert: "health_chek: 5\n", meant: "health_check", place: "at the top level" },
    Typo { file: File::Routing, after: "local_fraction: 0.5\n", insert: "  local_fracton: 0.7\n", meant: "local_fraction", place: "in routing_parameter" },
    Typo { file: File::Routing, after: "endpoint: http://d:1\n", insert: "    modles: [c]\n", meant: "models", place: "in remote_deployment[0]" },
    Typo { file: File::Keys, after: "", insert: "kyes: []\n", meant: "keys", place: "at the top level" },
    Typo { file: File::Keys, after: "key: key-of-team-a\n", insert: "    modles: [b]\n", meant: "models", place: "in keys[0] (`team-a`)" },
    Typo { file: File::Keys, after: "rpm: 60\n", insert: "    tmp: 1000\n", meant: "tpm", place: "in keys[0] (`team-a`)" },
];

/// `base` with the typo inserted.
fn with_typo(base: &str, t: &Typo) -> String {
    if t.after.is_empty() {
        return format!("{base}{}", t.insert);
    }
    assert_eq!(
        base.matches(t.after).count(),
        1,
        "anchor {:?} must be unique",
        t.after
    );
    base.replacen(t.after, &format!("{}{}", t.after, t.insert), 1)
}

/// Every typo of `file` in one text, and how many there are.
fn all_typos_in(file: File) -> (String, usize) {
    let typos: Vec<&Typo> = TYPOS.iter().filter(|t| t.file == file).collect();
    let text = typos
        .iter()
        .fold(file.base().to_string(), |text, t| with_typo(&text, t));
    (text, typos.len())
}

/// Load the file the typo is in (with the other files valid) and return errors and warnings.
fn problems(t: &Typo, env: &HashMap<String, String>) -> (Vec<String>, Vec<String>) {
    let text = with_typo(t.file.base(), t);
    let loaded = match t.file {
        File::Models => load_with(&text, Some(BASE_ROUTING), env),
        File::Routing => load_with(BASE_MODELS, Some(&text), env),
        File::Keys => {
            return match KeyStore::from_file_text("keys.yaml", &text, env) {
                Ok(_) => (vec![], vec![]),
                Err(errors) => (errors, vec![]),
            }
        }
    };
    match loaded {
        Ok(registry) => (vec![], registry.warnings),
        Err(e) => (e.messages(), e.warnings),
    }
}

#[test]
fn the_base_files_load_strictly() {
    load_with(BASE_MODELS, Some(BASE_ROUTING), &vars(&[])).expect("base files load");
    KeyStore::from_file_text("keys.yaml", BASE_KEYS, &vars(&[])).expect("base keys load");
}

#[test]
fn each_typo_is_an_error_naming_file_place_and_the_key_meant() {
    for t in TYPOS {
        let (errors, _) = problems(t, &vars(&[]));
        let expected = format!("{}: {}", t.file.label(), t.message());
        assert_eq!(errors, vec![expected], "typo `{}`", t.key());
    }
}

#[test]
fn lenient_mode_turns_typos_into_warnings_except_in_the_keys_file() {
    for t in TYPOS {
        let (errors, warnings) = problems(t, &lenient());
        let message = t.message();
        if matches!(t.file, File::Keys) {
            // A misspelt `models` or `rpm` would give the key more than meant.
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains(&message), "{errors:?}");
        } else {
            assert!(errors.is_empty(), "typo `{}`: {errors:?}", t.key());
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains(&message) && w.ends_with("(ignored: lenient mode)")),
                "typo `{}`: {warnings:?}",
                t.key()
            );
        }
    }
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let (models, in_models) = all_typos_in(File::Models);
    let (routing, in_routing) = all_typos_in(File::Routing);
    let errors = load_with(&models, Some(&routing), &vars(&[]))
        .expect_err("typos refused")
        .messages();
    assert_eq!(errors.len(), in_models + in_routing, "{errors:#?}");
    assert_eq!(unknown_key_problems(&errors).len(), errors.len());
    let (keys, in_keys) = all_typos_in(File::Keys);
    let errors = KeyStore::from_file_text("keys.yaml", &keys, &vars(&[])).expect_err("refused");
    assert_eq!(errors.len(), in_keys, "{errors:#?}");
}

#[test]
fn a_key_nothing_resembles_lists_the_known_keys() {
    let text = BASE_MODELS.replace("  - id: a\n", "  - id: a\n    zzzzzz: 1\n");
    let errors = load_with(&text, None, &vars(&[]))
        .expect_err("refused")
        .messages();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .contains("unknown key `zzzzzz` in models[0] (model `a`); known keys here: id, name,"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_malformed_config_lenient_is_an_error() {
    let errors = load_with(BASE_MODELS, None, &vars(&[("CONFIG_LENIENT", "sometimes")]))
        .expect_err("refused")
        .messages();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("CONFIG_LENIENT"), "{errors:?}");
}

/// A value each known key accepts (and validation passes), to add to a valid entry.
fn sample_value(key: &str) -> &'static str {
    match key {
        "type" | "modelType" => "chat",
        "engine" => "vllm",
        "input_modalities" | "output_modalities" => "[text]",
        "context_length" | "max_output_length" | "rpm" | "tpm" | "max_in_flight" => "8",
        "weight"
        | "local_fraction"
        | "health_check"
        | "timeout"
        | "connect"
        | "headers"
        | "idle"
        | "total"
        | "priority"
        | "balance_abs_threshold"
        | "balance_rel_threshold"
        | "affinity_load_factor"
        | "tier_queue_limit"
        | "slot_wait_ms" => "1",
        "prefix_match_threshold" => "0.5",
        "prefix_tree_max_bytes" => "1048576",
        "policy" | "default_policy" => "prefix_cache",
        "model_policies" => "{m: weighted}",
        "policy_settings" => "{tier_queue_limit: 2}",
        "supports_tools"
        | "supports_structured_output"
        | "allow_private_network"
        | "discover"
        | "optional" => "true",
        "supported_params" | "aliases" | "supported_voices" | "models" => "[x]",
        "pricing" => "{prompt: \"0\"}",
        "timeouts" => "{connect: 1}",
        "discover_map" => "{a: b}",
        "native_apis" => "[messages, responses]",
        "auth_header" => "api-key",
        "tls_insecure_skip_verify" => "false",
        "proxy" => "none",
        "health_path" | "metrics_path" | "video_submit_path" => "/p",
        "video_poll_path" | "video_content_path" | "video_cancel_path" => "/p/{id}",
        "video_mode" => "async",
        "route" => "[{kind: vllm, base_url: \"http://r:1\"}]",
        "weights" => "{m: {vllm: 1}}",
        "routing_strategy" => "fixed",
        "routing_parameter" => "{local_fraction: 1}",
        "local_deployment" | "remote_deployment" => "[{endpoint: \"http://r:1\", models: [m]}]",
        "logging" => "{level: info}",
        "prompt" | "completion" | "image" | "request" | "input_cache_reads"
        | "input_cache_writes" | "audio" | "video" => "\"0.5\"",
        _ => "\"text\"",
    }
}

/// Every known key, spelled right and given a sensible value, loads strictly with no warning
/// about it: the suggestion lists and the schema agree.
#[test]
fn every_known_key_spelled_right_is_accepted() {
    let model = |extra: &str| format!("models:\n  - id: m\n    {extra}\n");
    let route = |extra: &str| {
        format!("models:\n  - id: m\n    route:\n      - kind: vllm\n        base_url: \"http://r:1\"\n        {extra}\n")
    };
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    for key in MODEL_KEYS.iter().filter(|k| **k != "id") {
        let mut text = model(&format!("{key}: {}", sample_value(key)));
        if *key != "route" && *key != "base_url" {
            text.push_str("    route: [{kind: vllm, base_url: \"http://r:1\"}]\n");
        } else if *key == "base_url" {
            text = model("base_url: \"http://r:1\"");
        }
        cases.push((text, None));
    }
    // The TLS file keys name files that are read at load (and a certificate needs its key).
    let tls = tempfile::tempdir().expect("tempdir");
    let (cert, key_file) = (tls.path().join("c.pem"), tls.path().join("c.key"));
    let pair = rcgen::generate_simple_self_signed(vec!["r".to_string()]).expect("certificate");
    std::fs::write(&cert, pair.cert.pem()).expect("write certificate");
    std::fs::write(&key_file, pair.signing_key.serialize_pem()).expect("write key");
    let (cert, key_file) = (cert.display(), key_file.display());
    for key in ROUTE_KEYS
        .iter()
        .chain(VIDEO_ROUTE_KEYS)
        .filter(|k| !["kind", "base_url"].contains(*k))
    {
        let entry = match *key {
            "ca_file" => format!("ca_file: {cert}"),
            "client_cert_file" | "client_key_file" => {
                format!("client_cert_file: {cert}\n        client_key_file: {key_file}")
            }
            _ => format!("{key}: {}", sample_value(key)),
        };
        cases.push((route(&entry), None));
    }
    for key in PRICING_KEYS {
        cases.push((
            model(&format!(
                "pricing: {{{key}: {}}}\n    route: [{{kind: vllm, base_url: \"http://r:1\"}}]",
                sample_value(key)
            )),
            None,
        ));
        cases.push((
            route(&format!("pricing: {{{key}: {}}}", sample_value(key))),
            None,
        ));
    }
    for key in TIMEOUT_KEYS {
        cases.push((
            route(&format!("timeouts: {{{key}: {}}}", sample_value(key))),
            None,
        ));
    }
    let plain = route("name: r");
    for key in ROUTING_KEYS {
        cases.push((
            plain.clone(),
            Some(format!("{key}: {}\n", sample_value(key))),
        ));
    }
    for key in ROUTING_PARAMETER_KEYS {
        cases.push((
            plain.clone(),
            Some(format!(
                "routing_parameter: {{{key}: {}}}\n",
                sample_value(key)
            )),
        ));
    }
    for key in POLICY_SETTING_KEYS {
        cases.push((
            plain.clone(),
            Some(format!(
                "policy_settings: {{{key}: {}}}\n",
                sample_value(key)
            )),
        ));
    }
    for key in DEPLOYMENT_KEYS.iter().filter(|k| **k != "endpoint") {
        cases.push((
            plain.clone(),
            Some(format!(
                "local_deployment: [{{endpoint: \"http://r:1\", {key}: {}}}]\n",
                sample_value(key)
            )),
        ));
    }
    assert!(cases.len() > 60, "{}", cases.len());
    for (models, routing) in &cases {
        match load_with(models, routing.as_deref(), &vars(&[])) {
            Ok(registry) => assert!(
                unknown_key_problems(&registry.warnings).is_empty(),
                "{models}{routing:?}: {:?}",
                registry.warnings
            ),
            Err(e) => panic!("{models}\n{routing:?}\n{e}"),
        }
    }
    // The keys file's own list lives in its unit tests; here, an entry using every key loads.
    let all = "keys:\n  - {name: all, key: key-of-all, admin: true, models: [m], rpm: 1, tpm: 1}\n  - {name: hashed, key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}\n";
    KeyStore::from_file_text("keys.yaml", all, &vars(&[])).expect("every keys-file key loads");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any model or route key is accepted exactly when it is a known one; an unknown one is an
    /// error that names it (and never a panic, whatever the key).
    #[test]
    fn a_key_is_accepted_exactly_when_known(key in "[a-z][a-z_]{0,24}", in_route in any::<bool>()) {
        let (text, known): (String, Vec<&str>) = if in_route {
            (format!("models:\n  - id: m\n    route:\n      - kind: vllm\n        base_url: \"http://r:1\"\n        {key}: {}\n", sample_value(&key)),
             ROUTE_KEYS.iter().chain(VIDEO_ROUTE_KEYS).copied().collect())
        } else {
            (format!("models:\n  - id: m\n    route: [{{kind: vllm, base_url: \"http://r:1\"}}]\n    {key}: {}\n", sample_value(&key)),
             MODEL_KEYS.to_vec())
        };
        if ["id", "route", "kind", "base_url"].contains(&key.as_str()) {
            return Ok(()); // already in the entry: a duplicate key, another error
        }
        let outcome = load_with(&text, None, &vars(&[]));
        if known.contains(&key.as_str()) {
            prop_assert!(outcome.is_ok(), "{key}: {:?}", outcome.err().map(|e| e.messages()));
        } else {
            let errors = outcome.err().map(|e| e.messages()).unwrap_or_default();
            prop_assert_eq!(errors.len(), 1, "{}: {:?}", key, errors);
            let named = format!("unknown key `{key}`");
            prop_assert!(errors[0].contains(&named), "{:?}", errors);
        }
    }
}

// ---------------------------------------------------------------- shipped and documented examples

fn repo(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Load strictly; any unknown-key problem fails (other problems, such as a placeholder port in
/// a doc example, are not this test's business).
fn assert_no_unknown_keys(what: &str, models: &str, routing: Option<&str>) {
    let (errors, warnings) = match load_with(models, routing, &vars(&[])) {
        Ok(r) => (vec![], r.warnings),
        Err(e) => (e.messages(), e.warnings),
    };
    let unknown: Vec<&String> = unknown_key_problems(&errors)
        .into_iter()
        .chain(unknown_key_problems(&warnings))
        .collect();
    assert!(unknown.is_empty(), "{what}: {unknown:?}");
}

#[test]
fn the_guide_fixtures_and_shipped_config_load_strictly() {
    for name in [
        "local_model_guide_model_entry.yaml",
        "local_model_guide_fallback_routes.yaml",
        "local_model_guide_private_route.yaml",
    ] {
        let text = repo(&format!("tests/fixtures/{name}"));
        load_with(&text, None, &vars(&[])).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let shipped = repo("config/models.yaml");
    let routing = repo("config/routing.yaml");
    load_with(&shipped, Some(&routing), &vars(&[])).expect("config/ loads strictly");
    // config/routing.yaml's commented-out examples, uncommented.
    let uncommented: String = routing
        .lines()
        .map(|l| l.strip_prefix("# ").or(l.strip_prefix('#')).unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut examples = 0;
    for block in uncommented.split("\n\n") {
        let first = block.lines().next().unwrap_or("");
        let is_yaml = first.split_once(':').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        if is_yaml {
            examples += 1;
            load_with(&shipped, Some(block), &vars(&[]))
                .unwrap_or_else(|e| panic!("config/routing.yaml example:\n{block}\n{e}"));
        }
    }
    assert_eq!(examples, 2, "config/routing.yaml's two examples");
    // The camelCase spelling (`allowPrivateNetwork`) other gateways use for the private-network opt-in.
    let camel = "models:\n  - id: m\n    route: [{kind: vllm, base_url: \"http://127.0.0.1:1\", allowPrivateNetwork: true}]\n";
    assert!(
        load_with(camel, None, &vars(&[])).expect("loads").models[0].routes[0]
            .allow_private_network
    );
}

#[test]
fn the_kubernetes_configmap_and_every_catalogue_render_load_strictly() {
    let configmap: serde_yaml::Value =
        serde_yaml::from_str(&repo("deploy/kubernetes/configmap.yaml")).expect("configmap");
    let models = configmap["data"]["models.yaml"]
        .as_str()
        .expect("models.yaml in the configmap");
    load_with(models, None, &vars(&[])).expect("configmap models.yaml loads strictly");
    let entries = switchyard::catalogue::entries().expect("catalogue");
    assert!(!entries.is_empty());
    for e in entries {
        let text = switchyard::catalogue::render_models_yaml(e, "http://model:8000/v1");
        load_with(&text, None, &vars(&[])).unwrap_or_else(|err| panic!("{}: {err}", e.id));
    }
}

/// The ```yaml blocks of the docs: models.yaml fragments (a `models:` file, a bare model list,
/// a `route:` list), routing.yaml and keys files.
#[test]
fn every_documented_yaml_example_has_only_known_keys() {
    let mut checked = 0;
    for doc in [
        "README.md",
        "docs/configuration.md",
        "docs/security.md",
        "docs/real-engines.md",
        "docs/multimodal.md",
        "docs/operations.md",
        "docs/routing.md",
    ] {
        let text = repo(doc);
        for block in text.split("```yaml\n").skip(1) {
            let block = block.split("```").next().unwrap_or("");
            let what = format!("{doc}:\n{block}");
            let first = block.trim_start();
            checked += 1;
            if first.starts_with("models:") {
                assert_no_unknown_keys(&what, block, None);
            } else if first.starts_with("- id:") {
                assert_no_unknown_keys(&what, &format!("models:\n{block}"), None);
            } else if first.starts_with("route:") {
                let indented: String = block.lines().map(|l| format!("    {l}\n")).collect();
                assert_no_unknown_keys(&what, &format!("models:\n  - id: m\n{indented}"), None);
            } else if first.starts_with("keys:") {
                let env = vars(&[("TEAM_A_KEY", "key-of-team-a")]);
                KeyStore::from_file_text("keys.yaml", block, &env)
                    .unwrap_or_else(|e| panic!("{what}{e:?}"));
            } else if ROUTING_KEYS
                .iter()
                .any(|k| first.starts_with(&format!("{k}:")))
            {
                let models = "models:\n  - id: qwen3.5-27b\n    route: [{kind: sglang, base_url: \"http://a:1\"}, {kind: featherless, base_url: \"http://b:1\"}]\n";
                assert_no_unknown_keys(&what, models, Some(block));
            } else {
                checked -= 1; // not a config file (a compose file, a manifest)
            }
        }
    }
    assert!(
        checked >= 6,
        "found only {checked} config examples in the docs"
    );
}

// ---------------------------------------------------------------- the binary: check-config, serve, reload

const TYPO_MODEL: &str = "models:\n  - id: m\n    route:\n      - kind: vllm\n        base_url: \"http://127.0.0.1:9\"\n        max_in_fligth: 4\n";
const TYPO_MESSAGE: &str =
    "unknown key `max_in_fligth` in models[0].route[0] (model `m`); did you mean `max_in_flight`?";

fn switchyard(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(bin("switchyard"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("CONFIG_LENIENT")
        .env("KEYS_FILE", "")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run switchyard")
}

#[test]
fn check_config_and_serve_refuse_a_typo_unless_lenient() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("models.yaml"), TYPO_MODEL).expect("write");
    let check = ["check-config", "--config", "models.yaml"];

    let out = switchyard(dir.path(), &check, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("error: models.yaml: {TYPO_MESSAGE}")),
        "{stdout}"
    );

    // serve refuses the same file with the same message, before listening.
    let out = switchyard(
        dir.path(),
        &[
            "serve",
            "--config",
            "models.yaml",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(TYPO_MESSAGE), "{stderr}");

    for (args, env) in [
        ([&check[..], &["--lenient"]].concat(), vec![]),
        (check.to_vec(), vec![("CONFIG_LENIENT", "true")]),
    ] {
        let out = switchyard(dir.path(), &args, &env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?} {env:?}: {stdout}");
        assert!(
            stdout.contains(&format!(
                "warning: models.yaml: {TYPO_MESSAGE} (ignored: lenient mode)"
            )),
            "{stdout}"
        );
        assert!(stdout.contains("configuration OK: 1 models"), "{stdout}");
    }

    let out = switchyard(dir.path(), &check, &[("CONFIG_LENIENT", "perhaps")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("CONFIG_LENIENT=\"perhaps\": expected true or false"),
        "{stdout}"
    );
}

const ADMIN: &str = "admin-key-for-strict-config";

/// One chat model on `engine_url` whose route carries `extra` (a `key: value` line).
fn chat_model_with(engine_url: &str, extra: &str) -> String {
    chat_model_yaml("m", &[("vllm", engine_url, 1.0)]).replace(
        "      - kind: vllm\n",
        &format!("      - kind: vllm\n        {extra}\n"),
    )
}

/// Write `models_yaml` over the router's file and ask it to reload.
async fn rewrite_and_reload(dir: &Path, url: &str, models_yaml: &str) -> (u16, serde_json::Value) {
    std::fs::write(dir.join("models.yaml"), models_yaml).expect("write models.yaml");
    let (status, _, v) =
        send_with_key("POST", &format!("{url}/admin/reload"), Some(ADMIN), None).await;
    (status, v)
}

#[actix_rt::test]
async fn a_reload_with_a_typo_is_refused_and_the_old_config_kept() {
    let mock = start_mock(json!({}));
    let good = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &good,
            routing_yaml: None,
            env: vec![("ADMIN_API_KEY", ADMIN.into())],
        },
        1,
    )
    .await;
    let typo = chat_model_with(&mock.url, "max_in_fligth: 4");
    let (status, v) = rewrite_and_reload(router.dir.path(), &router.url, &typo).await;
    assert_openai_error(status, 422, &v);
    assert_eq!(v["error"]["code"], "invalid_configuration");
    let expected = "unknown key `max_in_fligth` in models[0].route[0] (model `m`); did you mean `max_in_flight`?";
    assert!(
        v["errors"]
            .as_array()
            .is_some_and(|e| e.len() == 1 && e[0].as_str().is_some_and(|s| s.contains(expected))),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(expected)),
        "{v}"
    );
    // The running configuration is unchanged and still serves.
    assert_eq!(model_ids(&router.url, None).await, vec!["m"]);
    let (status, _, _) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(status, 200);
}

/// A `serve --lenient` child (the harness passes no extra flags), killed when dropped.
struct LenientRouter {
    child: std::process::Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for LenientRouter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_lenient_router(models_yaml: &str) -> LenientRouter {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("models.yaml"), models_yaml).expect("write");
    let mut child = Command::new(bin("switchyard"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--lenient",
            "--config",
            "models.yaml",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .env_remove("CONFIG_LENIENT")
        .env("ADMIN_API_KEY", ADMIN)
        .env("HEALTH_CHECK_INTERVAL_SECS", "0.2")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn switchyard");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keep draining stdout so the router never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("switchyard listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("router listening");
    LenientRouter { child, url, dir }
}

/// `serve --lenient` starts with a typo (a warning), and its reloads keep the mode.
#[actix_rt::test]
async fn a_lenient_router_starts_and_reloads_with_typos_as_warnings() {
    let mock = start_mock(json!({}));
    let router = start_lenient_router(&chat_model_with(&mock.url, "max_in_fligth: 4"));
    wait_ready(&router.url, 1).await;
    let second = chat_model_with(&mock.url, "max_in_flite: 4");
    let (status, v) = rewrite_and_reload(router.dir.path(), &router.url, &second).await;
    assert_eq!(status, 200, "{v}");
    let warnings = v["report"]["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .is_some_and(|w| w.contains("unknown key `max_in_flite`")
                && w.contains("did you mean `max_in_flight`")
                && w.contains("lenient"))),
        "{v}"
    );
    let (status, _, _) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(status, 200);
}
