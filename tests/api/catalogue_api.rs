//! `GET /v1/catalogue` (and `/api/v1/catalogue`) against the real binary: the same entries as
//! `switchyard catalogue list --format json`, its filters, errors and the client-key scope.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn cli_list(args: &[&str]) -> Vec<Value> {
    let out = Command::new(bin("switchyard"))
        .args(["catalogue", "list", "--format", "json"])
        .args(args)
        .output()
        .expect("run switchyard catalogue list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("list json")
}

#[actix_rt::test]
async fn catalogue_is_served_with_filters_and_openai_errors() {
    let mock = start_mock(json!({}));
    let router = start_router(RouterOpts {
        models_yaml: &chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]),
        routing_yaml: None,
        env: vec![],
    });
    let (status, all) = get_json(&format!("{}/v1/catalogue", router.url))
        .await
        .expect("catalogue");
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["object"], "list");
    assert_eq!(all["total_count"], 169);
    assert_eq!(all["data"], Value::Array(cli_list(&[])), "same as the CLI");
    let first = &all["data"][0];
    for field in [
        "id",
        "name",
        "description",
        "category",
        "provider",
        "modelType",
        "engine",
        "defaultPort",
        "defaultResources",
        "recommendedInstance",
        "tags",
        "modelSize",
        "documentation",
    ] {
        assert!(!first[field].is_null(), "entry lacks `{field}`: {first}");
    }

    // OpenRouter's prefix, and both filters together.
    let (status, video) = get_json(&format!(
        "{}/api/v1/catalogue?category=video&engine=video-engine",
        router.url
    ))
    .await
    .expect("filtered");
    assert_eq!(status, 200);
    assert_eq!(video["total_count"], 6);
    assert_eq!(
        video["data"],
        Value::Array(cli_list(&[
            "--category",
            "video",
            "--engine",
            "video-engine"
        ]))
    );
    let (_, whisper) = get_json(&format!("{}/v1/catalogue?engine=whisper", router.url))
        .await
        .expect("by engine");
    assert_eq!(whisper["total_count"], 5);
    assert!(whisper["data"]
        .as_array()
        .is_some_and(|d| d.iter().all(|e| e["engine"] == "whisper")));

    for (query, param) in [
        ("category=sculpture", "category"),
        ("engine=ollama", "engine"),
        ("category=", "category"),
    ] {
        let (status, body) = get_json(&format!("{}/v1/catalogue?{query}", router.url))
            .await
            .expect("bad filter");
        assert_openai_error(status, 400, &body);
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    let (status, _, body) = post_json(&format!("{}/v1/catalogue", router.url), &json!({})).await;
    assert_openai_error(status, 405, &body);
}

#[actix_rt::test]
async fn catalogue_needs_a_client_key_when_keys_are_configured() {
    let mock = start_mock(json!({}));
    let router = start_router(RouterOpts {
        models_yaml: &chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]),
        routing_yaml: None,
        env: vec![("API_KEYS", "client-key-1".into())],
    });
    let url = format!("{}/v1/catalogue?category=image", router.url);
    let (status, _, body) = send_with_key("GET", &url, None, None).await;
    assert_openai_error(status, 401, &body);
    let (status, _, body) = send_with_key("GET", &url, Some("client-key-1"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total_count"], 1);
}
