//! The OpenAPI document is served, parses, and describes every route the router has.

use crate::common;

use common::*;
use serde_json::json;

#[actix_rt::test]
async fn openapi_document_is_served_and_covers_the_api() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    // Served without a key even when /v1 needs one.
    let router = start_router(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![("API_KEYS", "some-client-key".into())],
    });
    let mut resp = client()
        .get(format!("{}/openapi.yaml", router.url))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml")));
    let body = resp.body().limit(1 << 20).await.expect("body");
    let doc: serde_yaml::Value = serde_yaml::from_slice(&body).expect("valid YAML");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = doc["paths"].as_mapping().expect("paths");
    for path in [
        "/health",
        "/openapi.yaml",
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/responses/{id}",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/models/{id}/endpoints",
        "/v1/catalogue",
        "/v1/audio/speech",
        "/v1/audio/transcriptions",
        "/v1/audio/translations",
        "/v1/images/generations",
        "/v1/video/generations",
        "/v1/video/generations/{id}",
        "/v1/video/generations/{id}/content",
        "/v1/video/generations/{id}/cancel",
        "/v1/completions",
        "/v1/rerank",
        "/rerank",
        "/v2/rerank",
        "/v1/generations/images",
        "/v1/generations/videos",
        "/v1/generations/videos/{id}",
        "/v1/generations/videos/{id}/content",
        "/v1/generations/videos/{id}/cancel",
        "/api/v1/ai/chat/completions",
        "/api/v1/ai/embeddings",
        "/api/v1/ai/responses",
        "/api/v1/ai/responses/{id}",
        "/api/v1/ai/audio/speech",
        "/api/v1/ai/audio/transcriptions",
        "/api/v1/ai/generations/images",
        "/api/v1/ai/generations/videos",
        "/metrics",
        "/admin/reload",
        "/admin/routing",
        "/admin/usage",
        "/admin/keys",
        "/admin/backends",
    ] {
        assert!(
            paths.contains_key(serde_yaml::Value::from(path)),
            "{path} is not documented"
        );
    }
    // Every `$ref` points at something that exists.
    let text = String::from_utf8_lossy(&body);
    for r in text.split("$ref: \"#/").skip(1) {
        let target = r.split('"').next().unwrap_or("");
        let mut node = &doc;
        for part in target.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref #/{target}");
    }
}
