//! Circuit breaking, the retry budget, upstream `Retry-After`, per-route time limits, and
//! client disconnects cancelling the upstream call (sgl-model-gateway's reliability tests:
//! read a little, drop, assert the backend stopped and the lease was released).

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn opts<'a>(yaml: &'a str, env: Vec<(&'a str, String)>) -> RouterOpts<'a> {
    RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env,
    }
}

async fn chat_count(mock: &Proc) -> u64 {
    mock_stats(mock).await["requests_by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0)
}

async fn chat(router: &str, stream: bool) -> (u16, Value) {
    let (status, _, v) = post_json(
        &format!("{router}/v1/chat/completions"),
        &chat_body("m", stream),
    )
    .await;
    (status, v)
}

#[actix_rt::test]
async fn error_ratio_opens_the_circuit_and_one_trial_closes_it() {
    let mock = start_mock(json!({"fail_rate": 1.0, "fail_status": 500}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(
        opts(
            &yaml,
            vec![
                // Consecutive failures alone would never open it here.
                ("CIRCUIT_FAILURE_THRESHOLD", "1000".into()),
                ("CIRCUIT_ERROR_RATIO", "0.5".into()),
                ("CIRCUIT_MIN_REQUESTS", "6".into()),
                ("CIRCUIT_WINDOW_SECS", "30".into()),
                ("CIRCUIT_COOLDOWN_SECS", "1".into()),
            ],
        ),
        1,
    )
    .await;
    // Failures are folded in by the BackendActor shortly after each answer.
    let url = router.url.clone();
    eventually(
        Duration::from_secs(15),
        "circuit open (503 no_healthy_backend)",
        || {
            let url = url.clone();
            async move {
                let (status, v) = chat(&url, false).await;
                status == 503 && v["error"]["code"] == "no_healthy_backend"
            }
        },
    )
    .await;
    let sent = chat_count(&mock).await;
    assert!((6..=12).contains(&sent), "opened after {sent} requests");
    // While open, nothing reaches the backend.
    let (status, v) = chat(&router.url, false).await;
    assert_openai_error(status, 503, &v);
    assert_eq!(chat_count(&mock).await, sent);
    // After the cool-down one trial goes through; it succeeds and closes the circuit.
    mock_patch(&mock, json!({"fail_rate": 0.0})).await;
    actix_rt::time::sleep(Duration::from_millis(1200)).await;
    let url = router.url.clone();
    eventually(Duration::from_secs(10), "trial request succeeds", || {
        let url = url.clone();
        async move { chat(&url, false).await.0 == 200 }
    })
    .await;
    for _ in 0..5 {
        assert_eq!(chat(&router.url, false).await.0, 200);
    }
}

#[actix_rt::test]
async fn retry_budget_caps_retries_when_every_backend_fails() {
    let a = start_mock(json!({"fail_rate": 1.0, "fail_status": 500}));
    let b = start_mock(json!({"fail_rate": 1.0, "fail_status": 500}));
    let yaml = chat_model_yaml("m", &[("vllm", &a.url, 1.0), ("vllm", &b.url, 1.0)]);
    let router = start_router_ready(
        opts(
            &yaml,
            vec![
                ("CIRCUIT_FAILURE_THRESHOLD", "1000".into()),
                ("CIRCUIT_ERROR_RATIO", "0".into()),
                ("RETRY_BUDGET_PER_SEC", "0".into()),
                ("RETRY_BUDGET_BURST", "2".into()),
            ],
        ),
        2,
    )
    .await;
    let n = 20;
    for _ in 0..n {
        let (status, v) = chat(&router.url, false).await;
        assert_openai_error(status, 502, &v);
    }
    // Without a budget every request would try both routes (40 calls); with two retry tokens
    // and no refill, 20 first attempts + 2 retries.
    let calls = chat_count(&a).await + chat_count(&b).await;
    assert_eq!(calls, n + 2, "upstream calls");
    wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn upstream_retry_after_pauses_the_endpoint() {
    let mock = start_mock(json!({"fail_rate": 1.0, "fail_status": 503, "retry_after": 2}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml, vec![]), 1).await;
    let (status, headers, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_openai_error(status, 503, &v);
    assert_eq!(
        headers.get("retry-after").and_then(|h| h.to_str().ok()),
        Some("2")
    );
    mock_patch(&mock, json!({"fail_rate": 0.0})).await;
    // The pause is folded in by the BackendActor just after the answer.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let paused_at = Instant::now();
    let (status, headers, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_openai_error(status, 429, &v);
    assert!(headers.get("retry-after").is_some());
    assert_eq!(chat_count(&mock).await, 1, "a paused endpoint was called");
    // Once the backend's Retry-After has passed, it is used again.
    let url = router.url.clone();
    eventually(Duration::from_secs(10), "endpoint used again", || {
        let url = url.clone();
        async move { chat(&url, false).await.0 == 200 }
    })
    .await;
    assert!(
        paused_at.elapsed() >= Duration::from_millis(1500),
        "pause ended early"
    );
}

#[actix_rt::test]
async fn client_disconnect_during_a_json_answer_closes_the_upstream_connection() {
    // The body drips 8 bytes every 50 ms: several seconds for a whole answer.
    let mock = start_mock(json!({"slow_drip_ms": 50}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml, vec![]), 1).await;
    {
        let result = awc::Client::builder()
            .timeout(Duration::from_millis(700))
            .finish()
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&chat_body("m", false))
            .await;
        assert!(
            result.is_err(),
            "the answer should take longer than the client waits"
        );
    }
    wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
    // The router dropped its upstream body, closing the connection: the mock notices at its
    // next write or two, and its drip stops well before the end of the ~350-byte answer.
    let bytes_sent = || async { mock_stats(&mock).await["bytes_sent"].as_u64().unwrap_or(0) };
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let sent = bytes_sent().await;
    actix_rt::time::sleep(Duration::from_millis(700)).await;
    let later = bytes_sent().await;
    assert_eq!(sent, later, "the mock kept dripping after the client left");
    assert!(sent < 300, "the whole body was read: {sent} bytes");
}

#[actix_rt::test]
async fn client_disconnect_while_upstream_hangs_before_headers_releases_the_lease() {
    let mock = start_mock(json!({"hang": "before_headers", "hang_ms": 20000}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml, vec![]), 1).await;
    for stream in [false, true] {
        let url = format!("{}/v1/chat/completions", router.url);
        let pending = actix_rt::spawn(async move {
            let _ = client()
                .post(url)
                .timeout(Duration::from_secs(60))
                .send_json(&chat_body("m", stream))
                .await;
        });
        let r = router.url.clone();
        eventually(Duration::from_secs(5), "request in flight", || {
            let r = r.clone();
            async move { in_flight(&r).await == 1 }
        })
        .await;
        // The client gives up: its request future is dropped, closing the connection.
        pending.abort();
        wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
    }
}

#[actix_rt::test]
async fn per_route_timeouts_override_the_defaults() {
    let slow = start_mock(json!({"latency_ms": 3000}));
    let drip = start_mock(json!({"chunks": 40, "chunk_interval_ms": 100}));
    let yaml = format!(
        "models:\n  - id: slow\n    route:\n      - kind: vllm\n        base_url: \"{}\"\n        timeouts: {{headers: 0.5}}\n  - id: long\n    route:\n      - kind: vllm\n        base_url: \"{}\"\n        timeouts: {{total: 1.5, idle: 1}}\n",
        slow.url, drip.url
    );
    let router = start_router_ready(opts(&yaml, vec![]), 2).await;
    // Headers: 504 after the route's 0.5 s, not the default 300 s.
    let started = Instant::now();
    let (status, _, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("slow", false),
    )
    .await;
    assert_openai_error(status, 504, &v);
    assert_eq!(v["error"]["code"], "upstream_timeout");
    assert_eq!(v["error"]["type"], "timeout_error");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    // Total: a stream of 40 tokens 100 ms apart is cut at 1.5 s with an SSE error event.
    let mut body = chat_body("long", true);
    body["max_tokens"] = json!(100);
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&body)
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let events = read_sse(&mut resp).await;
    let words = events.iter().filter(|(_, d)| d.contains("word")).count();
    assert!((5..40).contains(&words), "{words} tokens before the cut");
    let err: Value = serde_json::from_str(&events[events.len() - 2].1).expect("error event");
    assert_eq!(err["error"]["code"], "upstream_timeout", "{err}");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("total"));
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    // Non-streamed with the same total: 504 before any byte.
    let (status, _, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &json!({"model": "long", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_openai_error(status, 504, &v);
    wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn stream_disconnect_stops_the_mock_promptly() {
    // As tests/chat.rs does for the plain case, here with the retry budget and circuit
    // defaults in force: dropping the client drops the upstream body.
    let mock = start_mock(json!({"chunks": 500, "chunk_interval_ms": 20}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml, vec![]), 1).await;
    {
        let mut resp = client()
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&chat_body("m", true))
            .await
            .expect("request");
        let mut seen = 0;
        while let Some(Ok(chunk)) = resp.next().await {
            seen += String::from_utf8_lossy(&chunk).matches("word").count();
            if seen >= 3 {
                break;
            }
        }
    }
    let url = router.url.clone();
    let m = &mock;
    eventually(Duration::from_secs(10), "stream aborted upstream", || {
        let url = url.clone();
        async move { mock_stats(m).await["streams_aborted"] == 1 && in_flight(&url).await == 0 }
    })
    .await;
}
