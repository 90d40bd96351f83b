//! Model discovery: `discover: true` routes register what their endpoint lists at
//! `/v1/models`, explicit models win, and private addresses need `allow_private_network`.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn discovering_yaml(mock: &str, other: &str, allow_private: bool) -> String {
    format!(
        r#"models:
  - id: local/qwen
    route: [{{kind: vllm, base_url: "{other}"}}]
  - id: local-engine
    type: chat
    route:
      - kind: vllm
        base_url: "{mock}"
        discover: true
        discover_prefix: "local/"
        discover_map: {{llama-3: llama}}
        allow_private_network: {allow_private}
"#
    )
}

fn opts(yaml: &str) -> RouterOpts<'_> {
    RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env: vec![("DISCOVERY_INTERVAL_SECS", "0.3".into())],
    }
}

async fn sorted_ids(url: &str) -> Vec<String> {
    let mut ids = model_ids(url, None).await;
    ids.sort();
    ids
}

#[actix_rt::test]
async fn discovered_models_are_registered_and_explicit_ones_win() {
    let engine = start_mock(json!({"model_ids": ["qwen", "mistral", "llama-3"]}));
    let other = start_mock(json!({}));
    let yaml = discovering_yaml(&engine.url, &other.url, true);
    let router = start_router_ready(opts(&yaml), 2).await;
    let url = router.url.clone();
    eventually(Duration::from_secs(10), "discovered models listed", || {
        let url = url.clone();
        async move {
            sorted_ids(&url).await == vec!["llama", "local-engine", "local/mistral", "local/qwen"]
        }
    })
    .await;
    // A discovered model is served by the discovering endpoint under its served id.
    let (status, _, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("local/mistral", false),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "local/mistral");
    assert_eq!(
        mock_stats(&engine).await["last_request"]["body"]["model"],
        "mistral"
    );
    // local/qwen is written in the file: it keeps its own endpoint.
    post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("local/qwen", false),
    )
    .await;
    assert_eq!(
        mock_stats(&other).await["requests_by_path"]["/v1/chat/completions"],
        1
    );
    // Periodic: what the engine serves now is what the router lists.
    mock_patch(&engine, json!({"model_ids": ["mistral", "phi"]})).await;
    let url = router.url.clone();
    eventually(
        Duration::from_secs(10),
        "model list follows the engine",
        || {
            let url = url.clone();
            async move {
                sorted_ids(&url).await
                    == vec!["local-engine", "local/mistral", "local/phi", "local/qwen"]
            }
        },
    )
    .await;
}

#[actix_rt::test]
async fn discovery_refuses_private_addresses_without_opt_in() {
    let engine = start_mock(json!({"model_ids": ["qwen", "mistral"]}));
    let other = start_mock(json!({}));
    let yaml = discovering_yaml(&engine.url, &other.url, false);
    let router = start_router_ready(opts(&yaml), 2).await;
    // Several discovery rounds pass; the loopback engine is never asked for its models.
    actix_rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        sorted_ids(&router.url).await,
        vec!["local-engine", "local/qwen"]
    );
    let asked = mock_stats(&engine).await["requests_by_path"]["/v1/models"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(asked, 0, "discovery reached a private address");
    // The operator's own route to it still works: config files may point anywhere.
    let (status, _, _) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("local-engine", false),
    )
    .await;
    assert_eq!(status, 200);
}
