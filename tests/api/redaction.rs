//! Backend credentials never travel back: a mock backend that quotes the credentials it received
//! in its errors (`echo_auth_in_errors`) must not get the route's key to the client (JSON and
//! streaming), into `api_logs.error`, into `video_jobs` or into the router's log, for both ways a
//! key is sent (`Authorization: Bearer` and `api-key:`). An upstream 401/403 is the router's own
//! credential problem and reaches the client as 502 `upstream_auth_failed`, without the body.

use crate::common;

use std::time::Duration;

use common::obs::{open_sqlite, post_with_id, sqlite_path, wait_rows};
use common::*;
use serde_json::{json, Value};

const KEY: &str = "sk-BACKEND-redaction-7f3a9c2e1d5b";
/// A stretch of the key long enough to count as leaking it.
const KEY_PART: &str = "redaction-7f3a9c2e";

/// How a route sends its key: the `auth_header` value, and the header the backend sees.
const AUTH_STYLES: [(&str, &str); 2] = [("authorization", "authorization"), ("api-key", "api-key")];

fn chat_yaml(mock: &str, auth_header: &str) -> String {
    format!(
        "models:\n  - id: m\n    route:\n      - kind: vllm\n        base_url: \"{mock}\"\n        api_key: \"{KEY}\"\n        auth_header: {auth_header}\n"
    )
}

/// Every failure is answered by the backend, not by an open circuit or a retry back-off.
fn env() -> Vec<(&'static str, String)> {
    vec![
        ("LOG_FLUSH_INTERVAL_MS", "50".into()),
        ("CIRCUIT_FAILURE_THRESHOLD", "1000".into()),
        ("CIRCUIT_ERROR_RATIO", "0".into()),
        ("MAX_ATTEMPTS", "1".into()),
    ]
}

/// [`env`] with debug logging, so the upstream error lines are in the log to check.
fn logged_env() -> Vec<(&'static str, String)> {
    let mut env = env();
    env.push(("RUST_LOG", "debug".into()));
    env
}

fn assert_no_key(what: &str, text: &str) {
    assert!(
        !text.contains(KEY) && !text.contains(KEY_PART),
        "{what} leaks the backend key: {text}"
    );
}

/// (backend status, router status, router code; `None` = the backend's own code)
const STATUSES: [(u16, u16, Option<&str>); 5] = [
    (400, 400, None),
    (401, 502, Some("upstream_auth_failed")),
    (403, 502, Some("upstream_auth_failed")),
    (422, 422, None),
    (500, 502, Some("upstream_error")),
];

#[actix_rt::test]
async fn backend_keys_quoted_in_errors_never_reach_clients_rows_or_logs() {
    for (auth_header, seen_as) in AUTH_STYLES {
        let mock = start_mock(json!({"fail_rate": 1.0, "echo_auth_in_errors": true}));
        let router = start_router_logged(RouterOpts {
            models_yaml: &chat_yaml(&mock.url, auth_header),
            routing_yaml: None,
            env: logged_env(),
        });
        wait_ready(&router.url, 1).await;
        let chat = format!("{}/v1/chat/completions", router.url);
        let mut requests = 0;
        for (upstream, expected, code) in STATUSES {
            mock_patch(&mock, json!({"fail_status": upstream})).await;
            for stream in [false, true] {
                let id = format!("{auth_header}-{upstream}-{stream}");
                let (status, _, text) = post_with_id(&chat, &chat_body("m", stream), &id).await;
                requests += 1;
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                assert_openai_error(status, expected, &body);
                assert_no_key(&id, &text);
                let message = body["error"]["message"].as_str().unwrap_or("");
                if let Some(code) = code {
                    assert_eq!(body["error"]["code"], code, "{id}: {text}");
                }
                if code == Some("upstream_auth_failed") {
                    assert!(!message.contains("Incorrect API key"), "{id}: {text}");
                } else {
                    // The backend did quote a key, and the router took it out.
                    assert!(message.contains(&format!("{seen_as}: ")), "{id}: {text}");
                    assert!(message.contains("[redacted]"), "{id}: {text}");
                }
            }
        }

        // An error event inside a 200 stream.
        mock_patch(
            &mock,
            json!({"fail_rate": 0.0, "fail_status": 500, "error_event_first": true}),
        )
        .await;
        let id = format!("{auth_header}-sse-event");
        let (status, _, text) = post_with_id(&chat, &chat_body("m", true), &id).await;
        requests += 1;
        assert_eq!(status, 502, "{text}");
        assert_no_key(&id, &text);
        assert!(text.contains("[redacted]"), "{text}");

        let store = open_sqlite(&sqlite_path(&router)).await;
        let rows = wait_rows(&store, requests).await;
        assert_eq!(rows.len(), requests);
        for row in &rows {
            assert_no_key("api_logs.error", row.error.as_deref().unwrap_or(""));
        }
        assert!(rows
            .iter()
            .any(|r| r.error.as_deref().unwrap_or("").contains("[redacted]")));

        let log = router_log(&router);
        assert_no_key("the router's log", &log);
        assert!(
            log.contains("backend refused the router's credentials"),
            "the operator is told about the 401/403"
        );
        assert!(log.contains("upstream error"), "debug lines were written");
    }
}

#[actix_rt::test]
async fn an_error_body_over_the_read_limit_gives_a_truncated_redacted_message() {
    let mock = start_mock(json!({
        "fail_rate": 1.0, "fail_status": 400, "echo_auth_in_errors": true,
        "error_padding_bytes": 200_000,
    }));
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &chat_yaml(&mock.url, "authorization"),
            routing_yaml: None,
            env: env(),
        },
        1,
    )
    .await;
    let (status, _, body) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_openai_error(status, 400, &body);
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert_no_key("the truncated message", message);
    assert!(
        message.contains("mock injected error (400)"),
        "the start of the body is reported: {message}"
    );
    assert!(message.contains("Bearer [redacted]"), "{message}");
    assert!(message.contains("truncated"), "{message}");
    assert!(
        message.len() < 2048,
        "the message is short: {}",
        message.len()
    );
}

fn video_yaml(mock: &str) -> String {
    format!(
        "models:\n  - id: vid\n    type: video\n    route:\n      - name: engine\n        kind: video-engine\n        base_url: \"{mock}\"\n        api_key: \"{KEY}\"\n"
    )
}

/// Submit a job and wait until it has failed; returns the job object.
async fn failed_job(router: &str) -> Value {
    let (status, _, v) = post_json(
        &format!("{router}/v1/video/generations"),
        &json!({"model": "vid", "prompt": "p"}),
    )
    .await;
    assert!(status < 300, "{v}");
    let id = v["id"].as_str().unwrap_or_default().to_string();
    let url = format!("{router}/v1/video/generations/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = get_json(&url).await.map(|(_, v)| v).unwrap_or(Value::Null);
        if job["status"] == "failed" {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job never failed: {job}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn video_job_errors_never_store_the_backend_key() {
    // A job that fails on the backend (async), and a submission the backend refuses (422).
    let mock = start_mock(json!({
        "video_queue_ms": 0, "video_steps": 1, "video_step_ms": 20,
        "video_fail": true, "echo_auth_in_errors": true,
    }));
    let mut env = logged_env();
    env.push(("VIDEO_POLL_INTERVAL_MS", "50".into()));
    let router = start_router_logged(RouterOpts {
        models_yaml: &video_yaml(&mock.url),
        routing_yaml: None,
        env,
    });
    wait_ready(&router.url, 1).await;
    let generated = failed_job(&router.url).await;
    mock_patch(&mock, json!({"fail_rate": 1.0, "fail_status": 422})).await;
    let refused = failed_job(&router.url).await;
    for job in [&generated, &refused] {
        let text = job.to_string();
        assert_no_key("the video job", &text);
        assert!(
            text.contains("[redacted]"),
            "the backend quoted the key: {text}"
        );
    }

    let db = sqlite_path(&router);
    let store = open_sqlite(&db).await;
    let stored: Vec<(Option<String>,)> = sqlx::query_as("SELECT error_message FROM video_jobs")
        .fetch_all(&store.pool)
        .await
        .expect("video_jobs");
    assert_eq!(stored.len(), 2);
    for (message,) in stored {
        assert_no_key("video_jobs.error_message", message.as_deref().unwrap_or(""));
    }
    assert_no_key("the router's log", &router_log(&router));
}
