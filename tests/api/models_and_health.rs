//! `/v1/models` (OpenAI + OpenRouter shapes), `/health`, and `switchyard check-config`.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

#[actix_rt::test]
async fn models_list_has_openrouter_fields_and_no_duplicate_aliases() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        r#"models:
  - id: qwen3.5-27b
    name: Qwen3.5 27B
    provider: sglang
    context_length: 65536
    max_output_length: 8192
    supports_tools: true
    supported_params: [temperature, top_p, max_tokens, stop, stream]
    aliases: ["Qwen3.5-27B", "qwen"]
    pricing: {{prompt: "0.000001", completion: "0.000002"}}
    route:
      - {{kind: sglang, base_url: "{0}"}}
      - {{kind: featherless, weight: 0, base_url: "{0}"}}
  - id: embed
    output_modalities: [embeddings]
    route: [{{kind: vllm, base_url: "{0}"}}]
"#,
        mock.url
    );
    let router = start_router_settled(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![],
    })
    .await;
    for prefix in ["/v1", "/api/v1"] {
        let (status, v) = get_json(&format!("{}{prefix}/models", router.url))
            .await
            .expect("models");
        assert_eq!(status, 200);
        assert_eq!(v["object"], "list");
        assert_eq!(v["total_count"], 2);
        assert!(v["links"]["next"].is_null());
        let data = v["data"].as_array().expect("data");
        assert_eq!(data.len(), 2, "aliases are not listed as models");
        let m = &data[0];
        for key in [
            "id",
            "object",
            "created",
            "owned_by",
            "canonical_slug",
            "name",
            "context_length",
            "architecture",
            "pricing",
            "top_provider",
            "per_request_limits",
            "supported_parameters",
            "default_parameters",
            "supported_voices",
            "links",
        ] {
            assert!(m.get(key).is_some(), "model lacks {key}: {m}");
        }
        assert_eq!(m["id"], "qwen3.5-27b");
        assert_eq!(m["object"], "model");
        assert_eq!(m["architecture"]["modality"], "text->text");
        assert_eq!(m["pricing"]["prompt"], "0.000001");
        assert_eq!(m["top_provider"]["max_completion_tokens"], 8192);
        let params: Vec<&str> = m["supported_parameters"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            params.contains(&"tools")
                && params.contains(&"temperature")
                && !params.contains(&"stream"),
            "{params:?}"
        );
        assert_eq!(m["availability"]["status"], "ready");
        assert_eq!(m["availability"]["routes_enabled"], 1);
        assert_eq!(m["availability"]["routes_configured"], 2);
        assert_eq!(data[1]["type"], "embedding");
    }
    // Filters and pagination are opt-in.
    let (_, v) = get_json(&format!(
        "{}/v1/models?output_modalities=embeddings",
        router.url
    ))
    .await
    .expect("models");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
    let (_, v) = get_json(&format!("{}/v1/models?limit=1", router.url))
        .await
        .expect("models");
    assert_eq!(v["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["links"]["next"], "/v1/models?offset=1&limit=1");
    // Single model by id or alias; unknown → 404 model_not_found.
    let (status, v) = get_json(&format!("{}/v1/models/Qwen3.5-27B", router.url))
        .await
        .expect("model");
    assert_eq!(status, 200);
    assert_eq!(v["id"], "qwen3.5-27b");
    let (status, v) = get_json(&format!("{}/v1/models/nope", router.url))
        .await
        .expect("model");
    assert_openai_error(status, 404, &v);
    assert_eq!(v["error"]["code"], "model_not_found");

    let (status, v) = get_json(&format!("{}/health", router.url))
        .await
        .expect("health");
    assert_eq!(status, 200);
    assert_eq!(v["status"], "ok");
    // sglang, featherless (weight 0 but configured) and vllm: three distinct endpoints.
    assert_eq!(
        v["endpoints"]["total"], 3,
        "weight-0 routes still have an endpoint: {v}"
    );
}

#[actix_rt::test]
async fn health_reports_down_endpoints_but_stays_200() {
    let yaml = chat_model_yaml("m", &[("vllm", &dead_url(), 1.0)]);
    let router = start_router(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![],
    });
    let (status, v) = get_json(&format!("{}/health", router.url))
        .await
        .expect("health");
    assert_eq!(status, 200);
    assert_eq!(v["endpoints"]["starting"], 1);
}

fn check_config(models: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("models.yaml");
    std::fs::write(&path, models).expect("write");
    let mut cmd = Command::new(bin("switchyard"));
    cmd.current_dir(dir.path())
        .arg("check-config")
        .arg("--config")
        .arg(&path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_config_summarises_or_lists_every_problem() {
    let seed = std::fs::read_to_string(format!(
        "{}/tests/fixtures/local_model_guide_fallback_routes.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let (code, out) = check_config(
        &seed,
        &[
            ("FEATHERLESS_BASE_URL", "https://api.featherless.ai/v1"),
            ("FEATHERLESS_API_KEY", "sk-x"),
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 models, 0 aliases, 2 routes, 2 endpoints"),
        "{out}"
    );
    assert!(!out.contains("sk-x"), "secrets must not be printed");

    let bad = "models:\n  - id: a\n    route:\n      - kind: vllm\n        base_url: ${NOPE}\n  - id: a\n    route: [{kind: vllm, base_url: \"ftp://x\"}]\n";
    let (code, out) = check_config(bad, &[]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 2, "{out}");
    assert!(out.contains("NOPE") && out.contains("ftp://x"), "{out}");
}
