//! `POST /v1/completions` end to end against the mock's native endpoint: JSON and streams,
//! every prompt shape, fallback, limits, keys, the api_logs row and the metrics label.

use crate::common;

use common::obs::{open_sqlite, wait_served_rows};
use common::*;
use serde_json::{json, Value};

fn completion(model: &str, prompt: Value, stream: bool) -> Value {
    json!({"model": model, "prompt": prompt, "stream": stream, "max_tokens": 16})
}

/// The text of a stream's events, whether the stream ended with `[DONE]`, and its usage chunk.
fn stream_text(events: &[(std::time::Duration, String)]) -> (String, bool, Option<Value>) {
    let mut text = String::new();
    let mut usage = None;
    for (_, data) in events {
        if data == "[DONE]" {
            continue;
        }
        let event: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
        assert_eq!(event["model"], "c", "{data}");
        if let Some(t) = event["choices"][0]["text"].as_str() {
            text.push_str(t);
        }
        if !event["usage"].is_null() {
            usage = Some(event["usage"].clone());
        }
    }
    let done = events.last().is_some_and(|(_, d)| d == "[DONE]");
    (text, done, usage)
}

async fn stream(url: &str, body: &Value) -> (u16, Vec<(std::time::Duration, String)>) {
    let mut resp = client()
        .post(url)
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, read_sse(&mut resp).await)
}

#[actix_rt::test]
async fn json_and_streamed_completions_relay_text_and_usage_for_every_prompt_shape() {
    let mock = start_mock(json!({"chunks": 3}));
    let yaml = chat_model_yaml("c", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(router_opts(&yaml, vec![]), 1).await;
    let prompts = [
        json!("Say something"),
        json!(["one prompt", "another"]),
        json!([101, 2023, 102]),
        json!([[101, 2023], [7]]),
    ];
    for prefix in ["/v1", "/api/v1", "/api/v1/ai"] {
        for prompt in &prompts {
            let url = format!("{}{prefix}/completions", router.url);
            let (status, _, v) = post_json(&url, &completion("c", prompt.clone(), false)).await;
            assert_eq!(status, 200, "{prefix} {prompt}: {v}");
            assert_eq!(v["model"], "c");
            assert_eq!(v["object"], "text_completion");
            assert_eq!(v["choices"][0]["text"], "word0 word1 word2 ");
            assert_eq!(v["usage"]["completion_tokens"], 3);
            let sent = mock_stats(&mock).await["last_request"]["body"].clone();
            assert_eq!(sent["model"], "upstream-c");
            assert_eq!(&sent["prompt"], prompt, "prompts are relayed as written");
        }
    }
    // Streamed: text chunk by chunk, usage only when asked for, `[DONE]` last.
    let url = format!("{}/v1/completions", router.url);
    let (status, events) = stream(&url, &completion("c", json!("Say"), true)).await;
    assert_eq!(status, 200);
    let (text, done, usage) = stream_text(&events);
    assert_eq!(
        (text.as_str(), done, usage),
        ("word0 word1 word2 ", true, None)
    );
    let sent = mock_stats(&mock).await["last_request"]["body"].clone();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    let mut body = completion("c", json!(["a", "b"]), true);
    body["stream_options"] = json!({"include_usage": true});
    let (_, events) = stream(&url, &body).await;
    let (text, done, usage) = stream_text(&events);
    assert_eq!((text.as_str(), done), ("word0 word1 word2 ", true));
    assert_eq!(usage.expect("usage chunk")["completion_tokens"], 3);
    wait_in_flight_zero(&router.url, std::time::Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn a_failing_route_falls_back_before_the_first_byte() {
    let good = start_mock(json!({"chunks": 2}));
    let failing = start_mock(json!({"fail_rate": 1.0, "fail_status": 500}));
    let error_event = start_mock(json!({"error_event_first": true, "fail_status": 500}));
    for (bad, stream_only) in [(&failing, false), (&error_event, true)] {
        // The bad route is tried first (a tier above the good one).
        let yaml = chat_model_yaml_in_order("c", &[("vllm", &bad.url), ("vllm", &good.url)]);
        let router = start_router_ready(router_opts(&yaml, vec![]), 2).await;
        let url = format!("{}/v1/completions", router.url);
        if !stream_only {
            let (status, _, v) = post_json(&url, &completion("c", json!("hi"), false)).await;
            assert_eq!(status, 200, "{v}");
            assert_eq!(v["choices"][0]["text"], "word0 word1 ");
        }
        let (status, events) = stream(&url, &completion("c", json!("hi"), true)).await;
        assert_eq!(status, 200);
        let (text, done, _) = stream_text(&events);
        assert_eq!((text.as_str(), done), ("word0 word1 ", true), "{events:?}");
        let tried = mock_stats(bad).await["requests_by_path"]["/v1/completions"]
            .as_u64()
            .unwrap_or(0);
        assert!(tried >= 1, "the bad route was never tried");
    }
}

#[actix_rt::test]
async fn bad_requests_are_400s_and_unserved_models_say_why() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: c\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n  - id: chat-only\n    route: [{{kind: transformers, base_url: \"{0}\"}}]\n  - id: emb\n    type: embedding\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n",
        mock.url
    );
    let router = start_router_settled(router_opts(&yaml, vec![])).await;
    let url = format!("{}/v1/completions", router.url);
    let cases = [
        (r#"{"model":"c"}"#, 400),
        (r#"{"model":"c","prompt":[]}"#, 400),
        (r#"{"model":"c","prompt":["a",1]}"#, 400),
        (r#"{"model":"c","prompt":{"a":1}}"#, 400),
        (r#"{"model":"c","prompt":"x","stream":"yes"}"#, 400),
        (r#"{"model":"c","prompt":"x","max_tokens":-3}"#, 400),
        (r#"{"model":"c","prompt":"x","n":0}"#, 400),
        (r#"{"prompt":"x"}"#, 400),
        (r#"{"model":"c","prompt":"x""#, 400),
        ("[]", 400),
        (r#"{"model":"nope","prompt":"x"}"#, 404),
        (r#"{"model":"emb","prompt":"x"}"#, 400),
        (r#"{"model":"chat-only","prompt":"x"}"#, 501),
    ];
    for (body, expected) in cases {
        let (status, _, v) = post_raw(&url, "application/json", body.as_bytes().to_vec()).await;
        assert_openai_error(status, expected, &v);
    }
    let served = mock_stats(&mock).await["requests_by_path"]["/v1/completions"].clone();
    assert!(
        served.is_null(),
        "no bad request reached the backend: {served}"
    );
}

#[actix_rt::test]
async fn keys_limits_the_log_row_and_metrics_name_the_operation() {
    let mock = start_mock(json!({"chunks": 2}));
    let small = start_mock(json!({"chunks": 2}));
    let yaml = format!(
        "models:\n  - id: c\n    route: [{{kind: vllm, base_url: \"{}\"}}]\n  - id: limited\n    route: [{{kind: vllm, base_url: \"{}\", rpm: 1}}]\n",
        mock.url, small.url
    );
    let keys = "keys:\n  - name: team\n    key: team-key-123\n    models: [c, limited]\n    rpm: 3\n  - name: other\n    key: other-key-123\n    models: [limited]\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("log.db");
    let router = start_router_ready(
        router_opts(
            &yaml,
            vec![
                ("KEYS_FILE", write_keys_file(dir.path(), keys)),
                ("SQLITE_DB_PATH", db.display().to_string()),
                ("METRICS_PUBLIC", "true".into()),
            ],
        ),
        2,
    )
    .await;
    let url = format!("{}/v1/completions", router.url);
    let send = |key: &'static str, model: &'static str| {
        let url = url.clone();
        async move {
            send_with_key(
                "POST",
                &url,
                Some(key),
                Some(&completion(model, json!("hi"), false)),
            )
            .await
        }
    };
    // Not on the key's list: 403 before any backend is asked.
    let (status, _, v) = send("other-key-123", "c").await;
    assert_openai_error(status, 403, &v);
    let (status, _, v) = send_with_key(
        "POST",
        &url,
        None,
        Some(&completion("c", json!("hi"), false)),
    )
    .await;
    assert_openai_error(status, 401, &v);
    // The endpoint's own limit (rpm 1 on `limited`) and then the key's (rpm 3).
    assert_eq!(send("team-key-123", "limited").await.0, 200);
    let (status, headers, v) = send("team-key-123", "limited").await;
    assert_openai_error(status, 429, &v);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(send("team-key-123", "c").await.0, 200);
    let (status, headers, v) = send("team-key-123", "c").await;
    assert_openai_error(status, 429, &v);
    assert!(headers.contains_key("retry-after"));

    let store = open_sqlite(&db).await;
    let rows = wait_served_rows(&store, 2).await;
    let served: Vec<_> = rows
        .iter()
        .filter(|r| r.op == "completions" && r.status_code == 200)
        .collect();
    assert_eq!(served.len(), 2, "{rows:#?}");
    assert!(served
        .iter()
        .all(|r| r.api_key_id.as_deref() == Some("team")
            && r.completion_tokens == Some(2)
            && !r.usage_estimated));
    let text = metrics_text(&router.url).await;
    assert!(
        counts_request(&text, "c", "completions", "success"),
        "{text}"
    );
}
