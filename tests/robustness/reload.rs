//! Hot reload: `POST /admin/reload` and SIGHUP. A bad file changes nothing and every error is
//! reported; unchanged endpoints keep their state; requests on removed endpoints finish.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-key-for-tests";

fn opts(yaml: &str) -> RouterOpts<'_> {
    RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env: vec![("ADMIN_API_KEY", ADMIN.into())],
    }
}

async fn reload(router: &Router) -> (u16, Value) {
    let (status, _, v) = send_with_key(
        "POST",
        &format!("{}/admin/reload", router.url),
        Some(ADMIN),
        None,
    )
    .await;
    (status, v)
}

fn write_models(router: &Router, yaml: &str) {
    std::fs::write(router.dir.path().join("models.yaml"), yaml).expect("write models.yaml");
}

#[actix_rt::test]
async fn admin_reload_validates_first_then_swaps_keeping_unchanged_endpoints() {
    let a = start_mock(json!({}));
    let b = start_mock(json!({}));
    let one = chat_model_yaml("m", &[("vllm", &a.url, 1.0)]);
    let router = start_router_ready(opts(&one), 1).await;

    // A file with several problems: nothing changes, every problem is listed.
    write_models(
        &router,
        "models:\n  - id: m\n    route: [{kind: vllm}]\n  - id: m\n    type: nonsense\n    route: [{kind: vllm, base_url: \"ftp://x\"}]\n",
    );
    let (status, v) = reload(&router).await;
    assert_openai_error(status, 422, &v);
    assert_eq!(v["error"]["code"], "invalid_configuration");
    let errors = v["errors"].as_array().expect("errors array");
    assert!(errors.len() >= 3, "{v}");
    assert_eq!(model_ids(&router.url, None).await, vec!["m"]);
    assert_eq!(
        post_json(
            &format!("{}/v1/chat/completions", router.url),
            &chat_body("m", false)
        )
        .await
        .0,
        200
    );

    // A good file: m keeps its endpoint (ready at once, no probe needed), n is added.
    let two = format!(
        "{}  - id: n\n    route: [{{kind: vllm, base_url: \"{}\"}}]\n",
        one, b.url
    );
    write_models(&router, &two);
    let (status, v) = reload(&router).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["models"], 2);
    assert_eq!(v["report"]["endpoints_kept"], 1);
    assert_eq!(v["report"]["endpoints_added"], 1);
    assert_eq!(v["report"]["endpoints_retired"], 0);
    let (_, health) = get_json(&format!("{}/health", router.url))
        .await
        .expect("health");
    assert!(
        health["endpoints"]["ready"].as_u64().unwrap_or(0) >= 1,
        "{health}"
    );
    assert_eq!(
        post_json(
            &format!("{}/v1/chat/completions", router.url),
            &chat_body("m", false)
        )
        .await
        .0,
        200
    );
    let mut ids = model_ids(&router.url, None).await;
    ids.sort();
    assert_eq!(ids, vec!["m", "n"]);
    wait_ready(&router.url, 2).await;
    assert_eq!(
        post_json(
            &format!("{}/v1/chat/completions", router.url),
            &chat_body("n", false)
        )
        .await
        .0,
        200
    );

    // Removing m's endpoint retires it.
    write_models(&router, &chat_model_yaml("n", &[("vllm", &b.url, 1.0)]));
    let (status, v) = reload(&router).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["endpoints_retired"], 1);
    let (status, _, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_openai_error(status, 404, &v);
}

#[actix_rt::test]
async fn sighup_reloads_and_a_bad_file_on_sighup_changes_nothing() {
    let a = start_mock(json!({}));
    let router = start_router_ready(opts(&chat_model_yaml("m", &[("vllm", &a.url, 1.0)])), 1).await;
    write_models(
        &router,
        &chat_model_yaml("renamed", &[("vllm", &a.url, 1.0)]),
    );
    signal(&router, "HUP");
    let url = router.url.clone();
    eventually(
        Duration::from_secs(10),
        "model renamed after SIGHUP",
        || {
            let url = url.clone();
            async move { model_ids(&url, None).await == vec!["renamed"] }
        },
    )
    .await;
    write_models(&router, "models: [[[");
    signal(&router, "HUP");
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(model_ids(&router.url, None).await, vec!["renamed"]);
    // Still alive and serving after both signals.
    let (status, _, _) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("renamed", false),
    )
    .await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn a_stream_on_a_removed_endpoint_finishes() {
    let old = start_mock(json!({"chunks": 20, "chunk_interval_ms": 100}));
    let new = start_mock(json!({}));
    let router =
        start_router_ready(opts(&chat_model_yaml("m", &[("vllm", &old.url, 1.0)])), 1).await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&chat_body("m", true))
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    // While it streams, m moves to another endpoint.
    write_models(&router, &chat_model_yaml("m", &[("vllm", &new.url, 1.0)]));
    let (status, v) = reload(&router).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["endpoints_retired"], 1);
    let events = read_sse(&mut resp).await;
    let words = events.iter().filter(|(_, d)| d.contains("word")).count();
    assert_eq!(words, 16, "max_tokens 16 of 20 chunks: {events:?}");
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    assert!(events.iter().all(|(_, d)| !d.contains("\"error\"")));
    // New requests go to the new endpoint.
    wait_ready(&router.url, 1).await;
    let (status, _, _) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        mock_stats(&new).await["requests_by_path"]["/v1/chat/completions"],
        1
    );
    assert_eq!(mock_stats(&old).await["streams_completed"], 1);
    wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn keys_are_reloaded_too() {
    let a = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &a.url, 1.0)]);
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&keys, "keys:\n  - {name: first, key: first-key-123}\n").expect("keys");
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![
                ("ADMIN_API_KEY", ADMIN.into()),
                ("KEYS_FILE", keys.display().to_string()),
            ],
        },
        1,
    )
    .await;
    let models = format!("{}/v1/models", router.url);
    assert_eq!(
        send_with_key("GET", &models, Some("first-key-123"), None)
            .await
            .0,
        200
    );
    // A broken keys file is refused like a broken models file.
    std::fs::write(&keys, "keys:\n  - {name: second}\n").expect("keys");
    let (status, v) = reload(&router).await;
    assert_openai_error(status, 422, &v);
    assert_eq!(
        send_with_key("GET", &models, Some("first-key-123"), None)
            .await
            .0,
        200
    );
    std::fs::write(&keys, "keys:\n  - {name: second, key: second-key-456}\n").expect("keys");
    let (status, v) = reload(&router).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["report"]["keys"], 2, "second + the admin key");
    assert_eq!(
        send_with_key("GET", &models, Some("first-key-123"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        send_with_key("GET", &models, Some("second-key-456"), None)
            .await
            .0,
        200
    );
}
