//! The mock's cost model, in process: slots and a queue that the metrics page reports, a prefix
//! cache whose hits show in `cached_tokens` / `timings.cache_n` and in the time to the first
//! token. Time bounds are generous (a shared 2-core machine): they check order, not figures.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use switchyard_mock::{self as mock, CostModel, MockServer, MockSettings};

async fn start(model: CostModel, chunks: u32) -> MockServer {
    let settings = MockSettings {
        chunks,
        cost_model: Some(model),
        ..MockSettings::default()
    };
    mock::start("127.0.0.1", 0, settings)
        .await
        .expect("mock starts")
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

/// A chat request: a system prompt of `system_words` words from `topic`, and a question.
fn chat(topic: &str, system_words: usize, question: &str, stream: bool) -> Value {
    let system: Vec<String> = (0..system_words).map(|i| format!("{topic}{i}")).collect();
    json!({
        "model": "mock-model",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": system.join(" ")},
            {"role": "user", "content": question},
        ],
    })
}

/// Sends `body`; returns the status, the body (for streams: the usage chunk) and the time to
/// the first content (for JSON: to the whole answer).
async fn send(server: &MockServer, body: &Value) -> (u16, Value, Duration) {
    let t0 = Instant::now();
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", server.url()))
        .send_json(body)
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let bytes = resp.body().limit(1 << 20).await.expect("body read");
    let elapsed = t0.elapsed();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if body["stream"] != json!(true) {
        return (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            elapsed,
        );
    }
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v.get("usage").is_some_and(|u| !u.is_null()))
        .unwrap_or(Value::Null);
    (status, usage, elapsed)
}

async fn metrics(server: &MockServer) -> (u16, String) {
    let mut resp = client()
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .expect("metrics answered");
    let body = resp.body().await.expect("metrics body");
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The value of the first sample of `name` on a metrics page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Nothing running or waiting, under both engines' names.
fn assert_idle(page: &str) {
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
    ] {
        assert_eq!(sample(page, name), Some(0.0), "{name}: {page}");
    }
}

#[actix_rt::test]
async fn a_shared_prefix_is_served_from_the_cache_and_reported() {
    let server = start(
        CostModel {
            prefill_us_per_token: 2_000,
            decode_us_per_token: 0,
            ..CostModel::default()
        },
        2,
    )
    .await;
    for stream in [false, true] {
        server.reset_stats();
        let topic = if stream { "streamed" } else { "plain" };
        // 200 system words + 2 role tokens + the question: ~0.4 s cold.
        let (status, cold, cold_time) =
            send(&server, &chat(topic, 200, "first question", stream)).await;
        assert_eq!(status, 200, "{cold}");
        let usage = &cold["usage"];
        assert_eq!(usage["prompt_tokens"], 204, "{cold}");
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0, "{cold}");
        assert_eq!(cold["timings"]["cache_n"], 0, "{cold}");
        assert_eq!(cold["timings"]["prompt_n"], 204, "{cold}");

        let (status, warm, warm_time) =
            send(&server, &chat(topic, 200, "another one", stream)).await;
        assert_eq!(status, 200, "{warm}");
        // The system turn and the user role token are shared; the question is not.
        assert_eq!(
            warm["usage"]["prompt_tokens_details"]["cached_tokens"], 202,
            "{warm}"
        );
        assert_eq!(warm["timings"]["cache_n"], 202, "{warm}");
        assert_eq!(warm["timings"]["prompt_n"], 2, "{warm}");
        assert!(
            warm_time * 2 < cold_time,
            "a cached prefix should cut the prefill: cold {cold_time:?}, warm {warm_time:?}"
        );
    }
}

#[actix_rt::test]
async fn the_cache_forgets_the_least_recently_used_prompt() {
    let server = start(
        CostModel {
            prefill_us_per_token: 0,
            decode_us_per_token: 0,
            cache_tokens: 250,
            ..CostModel::default()
        },
        1,
    )
    .await;
    let cached = |v: &Value| v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64();
    // Each prompt is 104 tokens: two fit in 250, a third evicts the oldest.
    for topic in ["a", "b"] {
        send(&server, &chat(topic, 100, "q", false)).await;
    }
    assert_eq!(
        cached(&send(&server, &chat("a", 100, "r", false)).await.1),
        Some(102)
    );
    send(&server, &chat("c", 100, "q", false)).await;
    // "b" was the least recently used: only the system role token every prompt opens with
    // is still cached.
    assert_eq!(
        cached(&send(&server, &chat("b", 100, "r", false)).await.1),
        Some(1)
    );
    assert_eq!(
        cached(&send(&server, &chat("c", 100, "r", false)).await.1),
        Some(102)
    );
    let (_, page) = metrics(&server).await;
    let kv = sample(&page, "vllm:kv_cache_usage_perc").expect("kv usage reported");
    assert!(kv > 0.0 && kv <= 1.0, "{page}");
}

#[actix_rt::test]
async fn slots_and_the_queue_show_in_the_metrics() {
    let server = start(
        CostModel {
            slots: 1,
            max_queue: 2,
            prefill_us_per_token: 0,
            decode_us_per_token: 100_000,
            ..CostModel::default()
        },
        4,
    )
    .await;
    assert_idle(&metrics(&server).await.1);
    // One computes (~0.3 s each), two wait, a fourth finds the queue full.
    let requests = (0..3).map(|i| {
        let server = &server;
        async move { send(server, &chat("q", 5, &format!("n{i}"), true)).await }
    });
    let watcher = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut busiest = (0.0, 0.0);
        let mut refused = None;
        while Instant::now() < deadline {
            let page = metrics(&server).await.1;
            let running = sample(&page, "vllm:num_requests_running").unwrap_or(-1.0);
            let waiting = sample(&page, "vllm:num_requests_waiting").unwrap_or(-1.0);
            assert_eq!(sample(&page, "llamacpp:requests_processing"), Some(running));
            assert_eq!(sample(&page, "llamacpp:requests_deferred"), Some(waiting));
            assert!(running <= 1.0, "more running than slots: {page}");
            if waiting > busiest.1 {
                busiest = (running, waiting);
            }
            if waiting >= 2.0 && refused.is_none() {
                refused = Some(send(&server, &chat("q", 5, "one too many", false)).await.0);
            }
            if refused.is_some() && running == 0.0 && waiting == 0.0 {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        (busiest, refused)
    };
    let (answers, ((running, waiting), refused)) = futures_util::join!(join_all(requests), watcher);
    for (status, usage, _) in &answers {
        assert_eq!(*status, 200, "{usage}");
    }
    assert_eq!((running, waiting), (1.0, 2.0), "the queue never showed");
    assert_eq!(refused, Some(503), "a request beyond max_queue is refused");
    assert_idle(&metrics(&server).await.1);
}

#[actix_rt::test]
async fn metrics_can_be_turned_off_and_slots_are_listed() {
    let server = start(CostModel::default(), 1).await;
    let mut resp = client()
        .get(format!("{}/slots", server.url()))
        .send()
        .await
        .expect("slots answered");
    let slots: Value = resp.json().await.expect("slot list");
    assert_eq!(slots.as_array().map(Vec::len), Some(2), "{slots}");
    assert_eq!(slots[0]["is_processing"], false);
    server
        .patch_settings(json!({"serve_metrics": false}))
        .expect("patch");
    assert_eq!(metrics(&server).await.0, 501);
    let resp = client()
        .get(format!("{}/slots", server.url()))
        .send()
        .await
        .expect("slots answered");
    assert_eq!(resp.status().as_u16(), 501);
    // Without a cost model the page still reports (nothing running).
    server
        .patch_settings(json!({"serve_metrics": true, "cost_model": null}))
        .expect("patch");
    let (status, page) = metrics(&server).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&page, "vllm:num_requests_running"),
        Some(0.0),
        "{page}"
    );
    let (_, plain, _) = send(&server, &chat("x", 3, "q", false)).await;
    assert!(
        plain["usage"].get("prompt_tokens_details").is_none(),
        "{plain}"
    );
    assert!(plain.get("timings").is_none(), "{plain}");
}
