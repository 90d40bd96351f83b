//! The core request path against the real binary and mock engines: weighted routing, fallback,
//! streaming relay, usage handling, disconnects and rate limits.

use crate::common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn opts(models_yaml: &str) -> RouterOpts<'_> {
    RouterOpts {
        models_yaml,
        routing_yaml: None,
        env: vec![],
    }
}

/// Chat requests a mock received (health probes excluded).
async fn chat_requests(mock: &Proc) -> u64 {
    mock_stats(mock).await["requests_by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0)
}

async fn chat(router: &str, body: &Value) -> (u16, Value) {
    let (status, _, v) = post_json(&format!("{router}/v1/chat/completions"), body).await;
    (status, v)
}

#[actix_rt::test]
async fn json_chat_uses_provider_model_id_and_answers_with_the_public_id() {
    let mock = start_mock(json!({"chunks": 3}));
    let yaml = format!(
        "models:\n  - id: pub-model\n    aliases: [nick]\n    supported_params: [temperature, max_tokens]\n    route:\n      - kind: vllm\n        base_url: \"{}/v1\"\n        provider_model_id: served-name\n",
        mock.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let mut body = chat_body("nick", false);
    body["temperature"] = json!(0.3);
    body["top_k"] = json!(5);
    body["models"] = json!(["other"]);
    let (status, v) = chat(&router.url, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "pub-model");
    assert_eq!(v["choices"][0]["message"]["content"], "word0 word1 word2 ");
    assert_eq!(v["usage"]["completion_tokens"], 3);
    let sent = mock_stats(&mock).await["last_request"]["body"].clone();
    assert_eq!(sent["model"], "served-name");
    assert_eq!(sent["temperature"], 0.3);
    assert!(
        sent.get("top_k").is_none(),
        "unsupported param must be dropped: {sent}"
    );
    assert!(
        sent.get("models").is_none(),
        "router-only field must not be forwarded: {sent}"
    );
}

#[actix_rt::test]
async fn weighted_choice_follows_the_weights() {
    let a = start_mock(json!({}));
    let b = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &a.url, 3.0), ("vllm", &b.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 2).await;
    let n = 400;
    for _ in 0..n {
        let (status, v) = chat(&router.url, &chat_body("m", false)).await;
        assert_eq!(status, 200, "{v}");
    }
    let (ca, cb) = (chat_requests(&a).await, chat_requests(&b).await);
    assert_eq!(ca + cb, n);
    let share = ca as f64 / n as f64;
    // Binomial(400, 0.75): sd ≈ 0.022; ±0.09 is four standard deviations.
    assert!(
        (share - 0.75).abs() < 0.09,
        "share of the weight-3 route: {share} ({ca}/{cb})"
    );
}

#[actix_rt::test]
async fn weight_zero_routes_are_never_chosen() {
    let a = start_mock(json!({}));
    let b = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &a.url, 1.0), ("vllm", &b.url, 0.0)]);
    let router = start_router_ready(opts(&yaml), 2).await;
    for _ in 0..30 {
        assert_eq!(chat(&router.url, &chat_body("m", false)).await.0, 200);
    }
    assert_eq!(chat_requests(&b).await, 0);
}

#[actix_rt::test]
async fn falls_back_when_the_first_route_refuses_connections() {
    let good = start_mock(json!({}));
    let dead = dead_url();
    // No probing on the dead route, so it looks ready, and its higher tier is tried first.
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: vllm, priority: 1, base_url: \"{dead}\", health_path: none}}\n      - {{kind: vllm, base_url: \"{}\"}}\n",
        good.url
    );
    let router = start_router_ready(opts(&yaml), 2).await;
    for stream in [false, true] {
        let mut resp = client()
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&chat_body("m", stream))
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        let body = resp.body().await.expect("body");
        assert!(String::from_utf8_lossy(&body).contains("word0"));
    }
    assert_eq!(chat_requests(&good).await, 2);
}

#[actix_rt::test]
async fn falls_back_on_5xx_and_reports_the_last_error_when_all_fail() {
    let bad = start_mock(json!({"fail_rate": 1.0, "fail_status": 500, "error_style": "vllm"}));
    let good = start_mock(json!({}));
    let yaml = chat_model_yaml_in_order("m", &[("vllm", &bad.url), ("vllm", &good.url)]);
    let router = start_router_ready(opts(&yaml), 2).await;
    let (status, v) = chat(&router.url, &chat_body("m", false)).await;
    assert_eq!(status, 200, "{v}");
    assert!(chat_requests(&bad).await >= 1);

    // Only failing routes: a 502 in OpenAI shape, after bounded attempts.
    let yaml = chat_model_yaml("m", &[("vllm", &bad.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    let (status, v) = chat(&router.url, &chat_body("m", false)).await;
    assert_openai_error(status, 502, &v);
}

#[actix_rt::test]
async fn stream_that_dies_before_content_falls_back_and_after_content_ends_with_an_error_event() {
    let dies_early = start_mock(json!({"die_after_chunks": 0}));
    let good = start_mock(json!({"chunks": 4}));
    let yaml = chat_model_yaml_in_order("m", &[("vllm", &dies_early.url), ("vllm", &good.url)]);
    let router = start_router_ready(opts(&yaml), 2).await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&chat_body("m", true))
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let events = read_sse(&mut resp).await;
    let text: Vec<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(text.last(), Some(&"[DONE]"));
    assert!(text.iter().all(|d| !d.contains("\"error\"")), "{text:?}");
    assert!(chat_requests(&dies_early).await >= 1);

    // Dies after two content chunks: those reach the client, then an error event and [DONE].
    let dies_late = start_mock(json!({"die_after_chunks": 2, "chunks": 6}));
    let yaml = chat_model_yaml("m", &[("vllm", &dies_late.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&chat_body("m", true))
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let events = read_sse(&mut resp).await;
    let data: Vec<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
    let content = data.iter().filter(|d| d.contains("word")).count();
    assert_eq!(content, 2, "{data:?}");
    let err: Value = serde_json::from_str(data[data.len() - 2]).expect("error event json");
    assert!(err["error"]["message"].is_string(), "{err}");
    assert_eq!(data.last(), Some(&"[DONE]"));
}

#[actix_rt::test]
async fn an_error_event_before_content_counts_as_a_failure() {
    let bad = start_mock(json!({"error_event_first": true}));
    let good = start_mock(json!({}));
    let yaml = chat_model_yaml_in_order("m", &[("vllm", &bad.url), ("vllm", &good.url)]);
    let router = start_router_ready(opts(&yaml), 2).await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&chat_body("m", true))
        .await
        .expect("request");
    let events = read_sse(&mut resp).await;
    assert!(
        events.iter().any(|(_, d)| d.contains("word0")),
        "{events:?}"
    );
    assert!(events.iter().all(|(_, d)| !d.contains("\"error\"")));
    assert_eq!(chat_requests(&good).await, 1);
}

#[actix_rt::test]
async fn streaming_chunks_are_relayed_as_they_arrive() {
    let interval = 150u64;
    let mock = start_mock(json!({"chunks": 6, "chunk_interval_ms": interval}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&chat_body("m", true))
        .await
        .expect("request");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let events = read_sse(&mut resp).await;
    let content: Vec<Duration> = events
        .iter()
        .filter(|(_, d)| d.contains("word"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(content.len(), 6);
    // Coalescing would deliver everything together at the end; relaying spreads arrivals out
    // over the backend's own ~750 ms.
    let spread = content[5] - content[0];
    assert!(
        spread >= Duration::from_millis(interval * 5 * 6 / 10),
        "arrivals {content:?}"
    );
    let mut gaps: Vec<Duration> = content.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    assert!(
        gaps[gaps.len() / 2] >= Duration::from_millis(interval / 2),
        "median gap too small: {gaps:?}"
    );
}

/// A TCP forwarder to `upstream` (host:port) that counts the connections made through it.
async fn counting_forwarder(
    upstream: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    actix_rt::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let upstream = upstream.clone();
            actix_rt::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (url, count)
}

/// A finished stream gives its upstream connection back to the pool, as a non-streamed
/// answer does: requests one after another, streamed or not, all go over the one connection
/// the first opened (before, every stream opened a new one: a handshake before its first
/// token).
#[actix_rt::test]
async fn finished_streams_give_their_upstream_connection_back() {
    use std::sync::atomic::Ordering;
    let mock = start_mock(json!({"chunks": 3, "usage_mode": "auto"}));
    let (url, connections) =
        counting_forwarder(mock.url.trim_start_matches("http://").to_string()).await;
    let yaml = chat_model_yaml("m", &[("vllm", &url, 1.0)]);
    // One worker, one upstream pool; no probes opening connections of their own meanwhile.
    let env = vec![
        ("WORKERS", "1".to_string()),
        ("HEALTH_CHECK_INTERVAL_SECS", "3600".to_string()),
    ];
    let router = start_router_settled(router_opts(&yaml, env)).await;
    let chat = |stream: bool| {
        let url = format!("{}/v1/chat/completions", router.url);
        async move {
            let mut resp = client()
                .post(url)
                .send_json(&chat_body("m", stream))
                .await
                .expect("request");
            assert_eq!(resp.status().as_u16(), 200);
            if stream {
                let events = read_sse(&mut resp).await;
                assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
            } else {
                let body: Value = resp.json().await.expect("json");
                assert!(body["choices"].is_array(), "{body}");
            }
        }
    };
    chat(true).await;
    let opened = connections.load(Ordering::SeqCst);
    for stream in [true, true, false, true, false, true, true] {
        chat(stream).await;
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        opened,
        "each later request reused the first one's upstream connection"
    );
}

#[actix_rt::test]
async fn usage_chunk_reaches_the_client_only_when_asked() {
    let mock = start_mock(json!({"chunks": 2, "usage_mode": "auto"}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    for wants in [false, true] {
        let mut body = chat_body("m", true);
        if wants {
            body["stream_options"] = json!({"include_usage": true});
        }
        let mut resp = client()
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&body)
            .await
            .expect("request");
        let events = read_sse(&mut resp).await;
        let usage_chunks: Vec<Value> = events
            .iter()
            .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
            .filter(|v| v.get("usage").is_some_and(|u| !u.is_null()))
            .collect();
        // The router always asks the backend for usage.
        let sent = mock_stats(&mock).await["last_request"]["body"].clone();
        assert_eq!(sent["stream_options"]["include_usage"], true);
        if wants {
            assert_eq!(usage_chunks.len(), 1, "{events:?}");
            assert_eq!(usage_chunks[0]["choices"], json!([]));
            assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], 2);
        } else {
            assert!(usage_chunks.is_empty(), "{events:?}");
        }
        assert!(
            events
                .iter()
                .all(|(_, d)| d == "[DONE]" || d.contains("\"model\":\"m\"")),
            "{events:?}"
        );
    }
}

#[actix_rt::test]
async fn choices_null_usage_chunks_are_normalised() {
    let mock = start_mock(json!({"chunks": 1, "usage_mode": "choices_null"}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    let mut body = chat_body("m", true);
    body["stream_options"] = json!({"include_usage": true});
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .send_json(&body)
        .await
        .expect("request");
    let events = read_sse(&mut resp).await;
    let usage: Vec<Value> = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], json!([]));
}

#[actix_rt::test]
async fn client_disconnect_mid_stream_cancels_upstream_and_releases_in_flight() {
    let mock = start_mock(json!({"chunks": 200, "chunk_interval_ms": 50}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    {
        let mut resp = client()
            .post(format!("{}/v1/chat/completions", router.url))
            .send_json(&chat_body("m", true))
            .await
            .expect("request");
        let mut seen = 0;
        while let Some(chunk) = resp.next().await {
            if chunk.is_ok_and(|c| String::from_utf8_lossy(&c).contains("word")) {
                seen += 1;
            }
            if seen >= 3 {
                break;
            }
        }
        let (_, health) = get_json(&format!("{}/health", router.url))
            .await
            .expect("health");
        assert_eq!(health["endpoints"]["in_flight"], 1);
        // `resp` and its connection are dropped here.
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = mock_stats(&mock).await;
        let (_, health) = get_json(&format!("{}/health", router.url))
            .await
            .expect("health");
        if stats["streams_aborted"] == 1 && health["endpoints"]["in_flight"] == 0 {
            let sent = stats["chunks_sent"].as_u64().unwrap_or(0);
            actix_rt::time::sleep(Duration::from_millis(300)).await;
            let later = mock_stats(&mock).await["chunks_sent"].as_u64().unwrap_or(0);
            assert_eq!(
                sent, later,
                "the mock kept sending after the router closed upstream"
            );
            assert!(
                sent < 100,
                "the upstream stream was not cut short: {sent} chunks sent"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upstream not cancelled: {stats}, {health}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn rate_limit_answers_429_with_retry_after() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: vllm, base_url: \"{}\", rpm: 2}}\n",
        mock.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    assert_eq!(chat(&router.url, &chat_body("m", false)).await.0, 200);
    assert_eq!(chat(&router.url, &chat_body("m", false)).await.0, 200);
    let (status, headers, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_openai_error(status, 429, &v);
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok())
        .expect("Retry-After header");
    assert!((1..=31).contains(&retry), "retry-after {retry}");
    assert!(v["error"]["message"].as_str().unwrap_or("").contains("`m`"));
}

#[actix_rt::test]
async fn upstream_429_is_tried_elsewhere_then_reported() {
    let limited = start_mock(json!({"fail_rate": 1.0, "fail_status": 429, "retry_after": 7}));
    let yaml = chat_model_yaml("m", &[("vllm", &limited.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    let (status, headers, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_openai_error(status, 429, &v);
    assert_eq!(
        headers.get("retry-after").and_then(|h| h.to_str().ok()),
        Some("7")
    );
}

#[actix_rt::test]
async fn loading_backends_answer_503_with_retry_after() {
    let mock = start_mock(json!({"health": "loading"}));
    let yaml = chat_model_yaml("m", &[("llamacpp", &mock.url, 1.0)]);
    let router = start_router(opts(&yaml));
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let (status, headers, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_openai_error(status, 503, &v);
    assert!(headers.get("retry-after").is_some());
    assert_eq!(v["error"]["code"], "model_loading");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("loading"));
    let (_, models) = get_json(&format!("{}/v1/models", router.url))
        .await
        .expect("models");
    assert_eq!(models["data"][0]["availability"]["status"], "loading");
    // Once the engine reports ready, requests go through.
    mock_patch(&mock, json!({"health": "ok"})).await;
    wait_ready(&router.url, 1).await;
    assert_eq!(chat(&router.url, &chat_body("m", false)).await.0, 200);
}

#[actix_rt::test]
async fn multimodal_parts_pass_through_and_text_models_refuse_images() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: vision\n    input_modalities: [text, image]\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n  - id: text\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n",
        mock.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let parts = json!([
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    ]);
    let mut body =
        json!({"model": "vision", "messages": [{"role": "user", "content": parts.clone()}]});
    // vision has no audio input: drop that part for this check.
    body["messages"][0]["content"] = json!([parts[0], parts[1]]);
    let (status, v) = chat(&router.url, &body).await;
    assert_eq!(status, 200, "{v}");
    let sent = mock_stats(&mock).await["last_request"]["body"].clone();
    assert_eq!(
        sent["messages"][0]["content"][1]["image_url"]["url"],
        "data:image/png;base64,iVBORw0KGgo="
    );
    body["model"] = json!("text");
    let (status, v) = chat(&router.url, &body).await;
    assert_openai_error(status, 400, &v);
    assert_eq!(v["error"]["code"], "unsupported_modality");
}

#[actix_rt::test]
async fn request_ids_are_echoed_or_generated() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml), 1).await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .insert_header(("x-request-id", "my-trace-123"))
        .send_json(&chat_body("m", false))
        .await
        .expect("request");
    assert_eq!(
        resp.headers()
            .get("x-request-id")
            .and_then(|h| h.to_str().ok()),
        Some("my-trace-123")
    );
    let seen = mock_stats(&mock).await["last_request"]["headers"].clone();
    assert_eq!(seen["x-request-id"], "my-trace-123");
    let resp = client()
        .get(format!("{}/v1/nonexistent", router.url))
        .send()
        .await
        .expect("request");
    assert!(resp.headers().get("x-request-id").is_some());
}

#[actix_rt::test]
async fn client_authorization_is_not_forwarded_and_route_keys_are() {
    let mock = start_mock(json!({"require_api_key": "backend-secret"}));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: openai_compat, base_url: \"{}\", api_key: backend-secret, health_path: /health}}\n",
        mock.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .insert_header(("authorization", "Bearer client-key"))
        .send_json(&chat_body("m", false))
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = mock_stats(&mock).await["last_request"]["headers"].clone();
    assert_eq!(seen["authorization"], "Bearer backend-secret");
}
