//! Anthropic's Messages API end to end: a native route (llama.cpp kind: the mock's own
//! `/v1/messages`) and a translated one (TGI kind: the mock's chat completions), JSON and
//! streamed, text and tool calls; the key from `x-api-key`; every error in Anthropic's shape;
//! fallback on an error event before content; `count_tokens`; the `api_logs` operation.

use crate::common;

use std::time::Duration;

use common::obs::{open_sqlite, sqlite_path, wait_rows};
use common::*;
use serde_json::{json, Value};

const KEY: &str = "sk-msg-test-1";

/// `nat` is served natively, `tr` translated; both by mocks answering three words.
fn models_yaml(native: &str, translated: &str) -> String {
    format!(
        "models:\n  - id: nat\n    route:\n      - kind: llamacpp\n        base_url: \"{native}\"\n        provider_model_id: up-nat\n  - id: tr\n    route:\n      - kind: tgi\n        base_url: \"{translated}\"\n        provider_model_id: up-tr\n"
    )
}

async fn start(native: &Proc, translated: &Proc, env: Vec<(&'static str, String)>) -> Router {
    let yaml = models_yaml(&native.url, &translated.url);
    let mut env = env;
    env.push(("API_KEYS", KEY.into()));
    start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env,
        },
        2,
    )
    .await
}

fn request(model: &str, stream: bool, tool: bool) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
        "stream": stream,
    });
    if tool {
        body["tools"] = json!([{"name": "look", "description": "Look it up",
            "input_schema": {"type": "object", "properties": {"arg": {"type": "string"}}}}]);
        body["tool_choice"] = json!({"type": "any"});
    }
    body
}

/// POST with Anthropic's headers (`x-api-key`, `anthropic-version`); the raw response.
async fn send(
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> awc::ClientResponse<
    impl futures_util::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>,
> {
    let mut req = client()
        .post(url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("anthropic-version", "2023-06-01"));
    if let Some(key) = key {
        req = req.insert_header(("x-api-key", key));
    }
    req.send_body(body.to_string()).await.expect("request")
}

async fn send_json(
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, awc::http::header::HeaderMap, Value) {
    let mut resp = send(url, key, body).await;
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (resp.status().as_u16(), resp.headers().clone(), v)
}

/// A streamed answer as (event name, data) pairs.
async fn send_stream(url: &str, body: &Value) -> (u16, Vec<(String, Value)>) {
    let mut resp = send(url, Some(KEY), body).await;
    let status = resp.status().as_u16();
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut events = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = String::new();
        let mut data = Value::Null;
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_string();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = serde_json::from_str(d).unwrap_or(Value::String(d.into()));
            }
        }
        events.push((name, data));
    }
    (status, events)
}

/// The message a client builds from the events (as the anthropic SDK does).
fn accumulate(events: &[(String, Value)]) -> Value {
    let events: Vec<switchyard::translate::anthropic::MessagesEvent> = events
        .iter()
        .filter_map(|(name, data)| {
            let name: &'static str = match name.as_str() {
                "message_start" => "message_start",
                "content_block_start" => "content_block_start",
                "content_block_delta" => "content_block_delta",
                "message_delta" => "message_delta",
                _ => return None,
            };
            Some(switchyard::translate::anthropic::MessagesEvent {
                name,
                data: data.clone(),
            })
        })
        .collect();
    switchyard::translate::anthropic::accumulate(&events)
}

fn assert_anthropic_error(status: u16, expected: u16, kind: &str, body: &Value) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body.get("code").is_none() && body["error"].get("code").is_none(),
        "{body}"
    );
}

#[actix_rt::test]
async fn native_and_translated_routes_answer_json_and_streams_alike() {
    let native = start_mock(json!({"chunks": 3}));
    let translated = start_mock(json!({"chunks": 3}));
    let router = start(
        &native,
        &translated,
        vec![("METRICS_PUBLIC", "true".into())],
    )
    .await;
    for prefix in ["/v1", "/api/v1"] {
        let url = format!("{}{prefix}/messages", router.url);
        for model in ["nat", "tr"] {
            // Text, JSON.
            let (status, _, m) = send_json(&url, Some(KEY), &request(model, false, false)).await;
            assert_eq!(status, 200, "{model}: {m}");
            assert_eq!(m["type"], "message");
            assert_eq!(m["model"], model, "the public id, not the backend's");
            assert_eq!(
                m["content"],
                json!([{"type": "text", "text": "word0 word1 word2 "}]),
                "{model}"
            );
            assert_eq!(m["stop_reason"], "end_turn");
            assert!(m["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0, "{m}");
            assert_eq!(m["usage"]["output_tokens"], 3, "{m}");
            // Tool call, JSON.
            let (status, _, m) = send_json(&url, Some(KEY), &request(model, false, true)).await;
            assert_eq!(status, 200, "{model}: {m}");
            assert_eq!(m["stop_reason"], "tool_use", "{m}");
            let block = &m["content"][0];
            assert_eq!(
                (&block["type"], &block["name"]),
                (&json!("tool_use"), &json!("look")),
                "{m}"
            );
            assert_eq!(block["input"], json!({"arg": "word0"}), "{m}");
            assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()));
            // Text, streamed.
            let (status, events) = send_stream(&url, &request(model, true, false)).await;
            assert_eq!(status, 200);
            let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
            assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
            assert!(
                names.contains(&"ping") && names.contains(&"content_block_stop"),
                "{names:?}"
            );
            let built = accumulate(&events);
            assert_eq!(built["model"], model);
            assert_eq!(
                built["content"],
                json!([{"type": "text", "text": "word0 word1 word2 "}]),
                "{model}"
            );
            assert_eq!(built["stop_reason"], "end_turn");
            assert_eq!(built["usage"]["output_tokens"], 3, "{built}");
            // Tool call, streamed: the arguments arrive in pieces.
            let (_, events) = send_stream(&url, &request(model, true, true)).await;
            let pieces = events
                .iter()
                .filter(|(_, d)| d["delta"]["type"] == "input_json_delta")
                .count();
            assert_eq!(pieces, 2, "{events:?}");
            let built = accumulate(&events);
            assert_eq!(built["stop_reason"], "tool_use");
            assert_eq!(
                built["content"][0]["input"],
                json!({"arg": "word0"}),
                "{built}"
            );
        }
    }
    // The native backend got Anthropic's body with only the model renamed; the other got chat.
    let n = mock_stats(&native).await;
    assert_eq!(n["requests_by_path"]["/v1/messages"], 8, "{n}");
    assert!(
        n["requests_by_path"].get("/v1/chat/completions").is_none(),
        "{n}"
    );
    assert_eq!(n["last_request"]["body"]["model"], "up-nat");
    assert_eq!(n["last_request"]["body"]["system"], "Be brief.");
    assert_eq!(
        n["last_request"]["headers"]["anthropic-version"],
        "2023-06-01"
    );
    assert!(
        n["last_request"]["headers"].get("x-api-key").is_none(),
        "the client's key stays"
    );
    let t = mock_stats(&translated).await;
    assert_eq!(t["requests_by_path"]["/v1/chat/completions"], 8, "{t}");
    let chat = &t["last_request"]["body"];
    assert_eq!(chat["model"], "up-tr");
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(chat["tool_choice"], "required");
    assert_eq!(chat["stream_options"]["include_usage"], true);
    // Metrics count the operation by its own name, native and translated alike.
    let metrics = metrics_text(&router.url).await;
    for model in ["nat", "tr"] {
        assert!(
            counts_request(&metrics, model, "messages", "success"),
            "{model}: no op=\"messages\" line in /metrics"
        );
    }
}

#[actix_rt::test]
async fn every_error_on_the_messages_paths_is_anthropic_shaped() {
    let native = start_mock(json!({}));
    let translated = start_mock(json!({}));
    let keys = "keys:\n  - name: only-nat\n    key: sk-only-nat-1\n    models: [nat]\n    rpm: 2\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_path = dir.path().join("keys.yaml");
    std::fs::write(&keys_path, keys).expect("keys");
    let router = start(
        &native,
        &translated,
        vec![("KEYS_FILE", keys_path.display().to_string())],
    )
    .await;
    let url = format!("{}/v1/messages", router.url);
    let ok = request("tr", false, false);
    // Keys, from either header.
    let (status, headers, v) = send_json(&url, None, &ok).await;
    assert_anthropic_error(status, 401, "authentication_error", &v);
    assert!(headers.get("www-authenticate").is_some());
    let (status, _, v) = send_json(&url, Some("sk-wrong"), &ok).await;
    assert_anthropic_error(status, 401, "authentication_error", &v);
    let (status, _, v) = send_json(
        &format!("{}/v1/messages/count_tokens", router.url),
        None,
        &ok,
    )
    .await;
    assert_anthropic_error(status, 401, "authentication_error", &v);
    let (status, _, v) = send_with_key("POST", &url, Some(KEY), Some(&ok)).await;
    assert_eq!(status, 200, "Bearer works too: {v}");
    // Model lists and unknown models.
    let (status, _, v) = send_json(&url, Some("sk-only-nat-1"), &ok).await;
    assert_anthropic_error(status, 403, "permission_error", &v);
    let (status, _, v) = send_json(&url, Some(KEY), &request("nope", false, false)).await;
    assert_anthropic_error(status, 404, "not_found_error", &v);
    // The per-key rpm (2): one answered, one refused by the list above, the next limited.
    assert_eq!(
        send_json(&url, Some("sk-only-nat-1"), &request("nat", false, false))
            .await
            .0,
        200
    );
    let (status, headers, v) =
        send_json(&url, Some("sk-only-nat-1"), &request("nat", false, false)).await;
    assert_anthropic_error(status, 429, "rate_limit_error", &v);
    assert!(headers.get("retry-after").is_some());
    // Methods.
    let (status, headers, v) = send_with_key("GET", &url, Some(KEY), None).await;
    assert_anthropic_error(status, 405, "invalid_request_error", &v);
    assert_eq!(
        headers.get("allow").and_then(|h| h.to_str().ok()),
        Some("POST")
    );
    // Chat keeps OpenAI's shape behind the same middleware.
    let (status, _, v) = send_with_key(
        "POST",
        &format!("{}/v1/chat/completions", router.url),
        None,
        Some(&chat_body("tr", false)),
    )
    .await;
    assert_openai_error(status, 401, &v);

    // Malformed bodies: 400, never 5xx, nothing sent to a backend.
    let chat_calls = || async {
        mock_stats(&translated).await["requests_by_path"]["/v1/chat/completions"].clone()
    };
    let before = chat_calls().await;
    let base = request("tr", false, false);
    let with = |key: &str, value: Value| {
        let mut b = base.clone();
        b[key] = value;
        b.to_string()
    };
    let cases: Vec<String> = vec![
        "".into(),
        "{".into(),
        "[1,2]".into(),
        "\"text\"".into(),
        json!({"model": "tr", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        with("max_tokens", json!(0)),
        with("max_tokens", json!("ten")),
        with("model", json!(5)),
        with("messages", json!([])),
        with("messages", json!([{"role": "tool", "content": "x"}])),
        with(
            "messages",
            json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}]),
        ),
        with(
            "messages",
            json!([{"role": "user", "content": [{"type": "tool_result"}]}]),
        ),
        with("system", json!({"a": 1})),
        with("tools", json!([{"name": "t"}])),
        with("tool_choice", json!({"type": "sometimes"})),
        with("stop_sequences", json!("END")),
        with("stream", json!(1)),
    ];
    for body in cases {
        for path in ["/v1/messages", "/v1/messages/count_tokens"] {
            let (status, _, v) =
                post_raw_with_key(&format!("{}{path}", router.url), body.clone()).await;
            if path.ends_with("count_tokens") && status == 200 {
                continue; // max_tokens is not part of count_tokens
            }
            assert_anthropic_error(status, 400, "invalid_request_error", &v);
        }
    }
    assert_eq!(chat_calls().await, before);
}

async fn post_raw_with_key(url: &str, body: String) -> (u16, awc::http::header::HeaderMap, Value) {
    let mut resp = client()
        .post(url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-api-key", KEY))
        .send_body(body)
        .await
        .expect("request");
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (resp.status().as_u16(), resp.headers().clone(), v)
}

/// An error event inside a 200 stream before any content is a failed attempt: the request
/// moves to the next route, native or translated, and the client sees only the good answer.
#[actix_rt::test]
async fn an_error_event_before_content_falls_back() {
    for kind in ["llamacpp", "tgi"] {
        let failing = start_mock(json!({"error_event_first": true, "fail_status": 500}));
        let good = start_mock(json!({"chunks": 2}));
        let yaml = format!(
            "models:\n  - id: m\n    route:\n      - name: bad\n        kind: {kind}\n        weight: 1000\n        base_url: \"{}\"\n      - name: good\n        kind: {kind}\n        weight: 0.001\n        base_url: \"{}\"\n",
            failing.url, good.url
        );
        let router = start_router_ready(
            RouterOpts {
                models_yaml: &yaml,
                routing_yaml: None,
                env: vec![("API_KEYS", KEY.into())],
            },
            2,
        )
        .await;
        let (status, events) = send_stream(
            &format!("{}/v1/messages", router.url),
            &request("m", true, false),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            events.iter().all(|(n, _)| n != "error"),
            "{kind}: {events:?}"
        );
        assert_eq!(
            accumulate(&events)["content"][0]["text"],
            "word0 word1 ",
            "{kind}"
        );
        assert!(
            mock_stats(&failing).await["faults_injected"]
                .as_u64()
                .unwrap_or(0)
                >= 1,
            "{kind}"
        );
        wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
    }
}

/// Every request leaves an `api_logs` row with its operation (`messages`,
/// `messages_count_tokens`), its stream flag and the backend's usage.
#[actix_rt::test]
async fn rows_carry_the_messages_operation_and_usage() {
    let native = start_mock(json!({"chunks": 2}));
    let translated = start_mock(json!({"chunks": 2}));
    let router = start(&native, &translated, vec![]).await;
    let url = format!("{}/v1/messages", router.url);
    for (model, stream) in [("nat", false), ("nat", true), ("tr", false), ("tr", true)] {
        let mut resp = send(&url, Some(KEY), &request(model, stream, false)).await;
        assert_eq!(resp.status().as_u16(), 200);
        let _ = resp.body().limit(1 << 20).await;
    }
    // count_tokens: the native route counts (the mock counts words), else an estimate.
    let count_url = format!("{}/v1/messages/count_tokens", router.url);
    let body = json!({"model": "nat", "system": "one two", "messages": [{"role": "user", "content": "three four five"}]});
    let (status, _, v) = send_json(&count_url, Some(KEY), &body).await;
    assert_eq!((status, v), (200, json!({"input_tokens": 5})));
    let mut body = body;
    body["model"] = json!("tr");
    let (status, _, v) = send_json(&count_url, Some(KEY), &body).await;
    // 7 + 15 bytes of text at four a token.
    assert_eq!((status, v), (200, json!({"input_tokens": 6})));
    assert!(mock_stats(&translated).await["requests_by_path"]
        .get("/v1/messages/count_tokens")
        .is_none());

    let store = open_sqlite(&sqlite_path(&router)).await;
    let rows = wait_rows(&store, 6).await;
    let counts = rows
        .iter()
        .filter(|r| r.op == "messages_count_tokens" && r.status_code == 200);
    assert_eq!(counts.count(), 2, "{rows:#?}");
    let rows: Vec<_> = rows.iter().filter(|r| r.op == "messages").collect();
    assert_eq!(rows.len(), 4, "{rows:#?}");
    for row in rows.iter().filter(|r| r.completion_tokens.unwrap_or(0) > 0) {
        assert_eq!(row.status_code, 200);
        assert_eq!(row.completion_tokens, Some(2), "{row:#?}");
        assert!(
            row.prompt_tokens.unwrap_or(0) > 0 && !row.usage_estimated,
            "{row:#?}"
        );
    }
    assert_eq!(rows.iter().filter(|r| r.stream).count(), 2);
    assert_eq!(
        rows.iter()
            .filter(|r| r.completion_tokens.unwrap_or(0) > 0)
            .count(),
        4
    );
}

/// A stream that breaks after content reached the client cannot fall back: it ends with
/// Anthropic's `error` event (no OpenAI `[DONE]`), and the lease is released.
#[actix_rt::test]
async fn a_stream_broken_after_content_ends_with_an_anthropic_error_event() {
    let native = start_mock(json!({"chunks": 5, "die_after_chunks": 2}));
    let translated = start_mock(json!({"chunks": 5, "die_after_chunks": 2}));
    let router = start(&native, &translated, vec![]).await;
    for model in ["nat", "tr"] {
        let (status, events) = send_stream(
            &format!("{}/v1/messages", router.url),
            &request(model, true, false),
        )
        .await;
        assert_eq!(status, 200, "{model}");
        let (name, data) = events.last().cloned().unwrap_or_default();
        assert_eq!(name, "error", "{model}: {events:?}");
        assert_eq!(data["type"], "error");
        assert_eq!(data["error"]["type"], "api_error", "{data}");
        assert!(
            events.iter().all(|(_, d)| d != "[DONE]"),
            "{model}: {events:?}"
        );
        assert_eq!(
            accumulate(&events)["content"][0]["text"],
            "word0 word1 ",
            "{model}"
        );
    }
    wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
}
