//! The single-backend deployment (seed 003) checked without Docker: deploy/compose's compose file
//! against the Compose specification's JSON schema, its services against the router's per-kind
//! base URLs, the deploy/env templates against the settings the router and the engines read,
//! and the Makefile's targets by what `make -n` would run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use switchyard::config::{load_str, SingleBackend, BACKEND_KINDS};
use switchyard::settings::Settings;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose_text() -> String {
    std::fs::read_to_string(repo().join("deploy/compose/docker-compose.yml")).expect("compose file")
}

fn compose() -> Value {
    serde_yaml::from_str(&compose_text()).expect("compose file is YAML")
}

/// The engines with a compose profile: every kind of the seed's table but the two that run
/// elsewhere (LM Studio on the host, `openai` anywhere).
const ENGINES: &[&str] = &["vllm", "ollama", "llamacpp", "tgi", "sglang", "localai"];

fn schema_errors(instance: &Value) -> Option<String> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/compose-spec.json"))
            .expect("schema fixture"),
    )
    .expect("schema is JSON");
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("compose-spec.json", schema)
        .expect("schema resource");
    let mut schemas = boon::Schemas::new();
    let index = compiler
        .compile("compose-spec.json", &mut schemas)
        .expect("schema compiles");
    schemas
        .validate(instance, index)
        .err()
        .map(|e| format!("{e:#}"))
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let file = compose();
    assert_eq!(schema_errors(&file), None);
    // The validator does reject what the specification does not allow.
    let mut wrong = file.clone();
    wrong["services"]["vllm"]["profile"] = Value::from("vllm");
    assert!(schema_errors(&wrong).is_some(), "a misspelt key passed");
    let mut wrong = file;
    wrong["services"]["router"]["ports"] = Value::from(8080);
    assert!(
        schema_errors(&wrong).is_some(),
        "a malformed port list passed"
    );
}

#[test]
fn each_engine_has_its_profile_and_listens_where_the_router_looks() {
    let file = compose();
    let services = file["services"].as_object().expect("services");
    assert!(
        services["router"].get("profiles").is_none(),
        "the router must run with every profile"
    );
    for engine in ENGINES {
        let service = &services[*engine];
        assert_eq!(service["profiles"], serde_json::json!([engine]), "{engine}");
        let (_, default) = BACKEND_KINDS
            .iter()
            .find(|(k, _)| k == engine)
            .unwrap_or_else(|| panic!("{engine} is not a BACKEND_KIND"));
        let url = url::Url::parse(default.expect("a default URL")).expect("URL");
        assert_eq!(url.host_str(), Some(*engine), "{engine}: service name");
        let port = url.port().expect("an explicit port").to_string();
        let text = serde_json::to_string(service).expect("service");
        // Ollama's own port is its default; the others are told the port of the table.
        assert!(
            *engine == "ollama" || text.contains(&format!("{port}\"")),
            "{engine} does not listen on {port}: {text}"
        );
    }
    // Every ${VAR} has a default: compose interpolates all services, whatever the profile.
    let text = compose_text();
    let lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    for reference in lines.flat_map(|l| l.split("${").skip(1)) {
        let inner = reference.split('}').next().unwrap_or("");
        assert!(inner.contains(":-"), "${{{inner}}} has no default");
    }
}

/// A template's `KEY=value` lines (dotenv syntax, as the router's own `.env` reader takes them).
fn template(path: &Path) -> HashMap<String, String> {
    dotenvy::from_path_iter(path)
        .expect("template readable")
        .map(|item| item.expect("dotenv line"))
        .collect()
}

fn templates() -> Vec<(String, HashMap<String, String>)> {
    let mut out: Vec<_> = std::fs::read_dir(repo().join("deploy/env"))
        .expect("deploy/env")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "env"))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().to_string();
            (stem, template(&p))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The variables the router itself reads from a template (the rest are engine knobs).
const ROUTER_VARS: &[&str] = &[
    "BACKEND_KIND",
    "BACKEND_BASE_URL",
    "BACKEND_API_KEY",
    "MODEL_NAME",
    "API_KEYS",
];

#[test]
fn each_env_template_is_settings_the_router_accepts_for_its_engine() {
    let all = templates();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected: Vec<&str> = ENGINES.to_vec();
    expected.push("external");
    expected.sort();
    assert_eq!(names, expected);
    for (name, vars) in &all {
        let settings = Settings::from_env(vars).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let backend = settings
            .single_backend
            .unwrap_or_else(|| panic!("{name}: no BACKEND_KIND"));
        let kind = if name == "external" { "openai" } else { name };
        assert_eq!(backend.kind, kind, "{name}");
        // The models it describes load with no models.yaml.
        let registry =
            load_str("(none)", "models: []", None, vars).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!registry.models.is_empty(), "{name}: no model");
        // The engine's knobs are ones the compose file reads, in that engine's service.
        let file = compose();
        let service = serde_json::to_string(&file["services"][name.as_str()]).unwrap_or_default();
        for knob in vars.keys().filter(|k| !ROUTER_VARS.contains(&k.as_str())) {
            assert!(
                service.contains(&format!("${{{knob}")),
                "{name}.env sets {knob}, which its compose service does not read"
            );
        }
    }
}

#[test]
fn the_seed_knobs_are_in_the_templates_with_their_defaults() {
    let all: HashMap<String, HashMap<String, String>> = templates().into_iter().collect();
    let vllm = &all["vllm"];
    assert_eq!(vllm["VLLM_DTYPE"], "half");
    assert!(vllm.contains_key("VLLM_MAX_MODEL_LEN"));
    assert!(vllm.contains_key("VLLM_GPU_MEMORY_UTILIZATION"));
    // llama-server's --api-key comes from BACKEND_API_KEY, which its template sets.
    assert!(!all["llamacpp"]["BACKEND_API_KEY"].is_empty());
    assert!(compose_text().contains("--api-key=${BACKEND_API_KEY"));
    assert!(all["llamacpp"].contains_key("LLAMACPP_MODEL_FILE"));
    let backend = SingleBackend::from_vars(&all["external"])
        .expect("external")
        .expect("kind");
    assert_eq!(backend.kind, "openai");
}

fn make_n(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("make")
        .arg("-n")
        .arg("-C")
        .arg(repo().join("deploy/compose"))
        .args(args)
        .output()
        .expect("make is installed");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_make_targets_run_what_the_seed_says() {
    let root = repo();
    let env_file = root.join(".env").display().to_string();
    for kind in ENGINES.iter().chain(&["external"]) {
        let (ok, text) = make_n(&[&format!("env-{kind}")]);
        assert!(ok, "{text}");
        let template = root
            .join(format!("deploy/env/{kind}.env"))
            .display()
            .to_string();
        assert!(
            text.contains(&format!("cp \"{template}\" \"{env_file}\"")),
            "env-{kind}: {text}"
        );
    }
    let compose_cmd = format!("--env-file {env_file} -f ");
    for engine in ENGINES {
        let (ok, text) = make_n(&["up", &format!("BACKEND={engine}")]);
        assert!(ok, "{text}");
        assert!(text.contains(&compose_cmd), "{text}");
        assert!(
            text.contains(&format!("--profile {engine} up -d")),
            "{text}"
        );
    }
    let (ok, text) = make_n(&["up", "BACKEND=none"]);
    assert!(
        ok && text.contains(" up -d") && !text.contains("--profile"),
        "{text}"
    );
    let (ok, text) = make_n(&["up", "BACKEND=triton"]);
    assert!(!ok && text.contains("BACKEND=triton"), "{text}");
    for target in ["down", "logs"] {
        let (ok, text) = make_n(&[target]);
        assert!(ok, "{text}");
        for engine in ENGINES {
            assert!(
                text.contains(&format!("--profile {engine} ")),
                "{target}: {text}"
            );
        }
    }
}
