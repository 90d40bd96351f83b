//! `POST /v1/responses` end to end against mock engines: served natively by a route whose kind
//! speaks the Responses API (vLLM here), translated to chat completions for a chat-only route
//! (TGI here), in JSON and as `response.*` events; function calls and their results; stored
//! responses followed up with `previous_response_id` on the endpoint that stored them; keys,
//! request rows, and bad input.

use crate::common;

use std::time::Duration;

use common::obs::{open_sqlite, post_with_id, sqlite_path, wait_rows};
use common::*;
use serde_json::{json, Value};

fn opts(models_yaml: &str) -> RouterOpts<'_> {
    RouterOpts {
        models_yaml,
        routing_yaml: None,
        env: vec![],
    }
}

/// `native` on a vLLM route and `translated` on a TGI route, each to its own mock.
fn two_models(native: &Proc, translated: &Proc) -> String {
    format!(
        "models:\n  - id: native\n    route:\n      - kind: vllm\n        base_url: \"{}\"\n        provider_model_id: served-native\n  - id: translated\n    route:\n      - kind: tgi\n        base_url: \"{}\"\n        provider_model_id: served-chat\n",
        native.url, translated.url
    )
}

async fn responses(router: &str, body: &Value) -> (u16, Value) {
    let (status, _, v) = post_json(&format!("{router}/v1/responses"), body).await;
    (status, v)
}

/// A streamed request's events (the `data:` payloads, parsed).
async fn stream_events(router: &str, body: &Value) -> Vec<Value> {
    let mut resp = client()
        .post(format!("{router}/v1/responses"))
        .send_json(body)
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    read_sse(&mut resp)
        .await
        .into_iter()
        .map(|(_, data)| serde_json::from_str(&data).expect("event JSON"))
        .collect()
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

fn path_count(stats: &Value, path: &str) -> u64 {
    stats["requests_by_path"][path].as_u64().unwrap_or(0)
}

/// Requests a mock got on the two APIs (health probes aside).
async fn inference_requests(mock: &Proc) -> u64 {
    let stats = mock_stats(mock).await;
    path_count(&stats, "/v1/responses") + path_count(&stats, "/v1/chat/completions")
}

/// The text of a Response's message items.
fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|part| part["text"].as_str().map(str::to_string))
        .collect()
}

#[actix_rt::test]
async fn json_answers_natively_and_translated() {
    let (native, chat) = (
        start_mock(json!({"chunks": 3})),
        start_mock(json!({"chunks": 3})),
    );
    let router = start_router_ready(
        RouterOpts {
            env: vec![("METRICS_PUBLIC", "true".into())],
            ..opts(&two_models(&native, &chat))
        },
        2,
    )
    .await;
    for model in ["native", "translated"] {
        let body = json!({"model": model, "instructions": "be brief", "input": "Hello there", "max_output_tokens": 2});
        let (status, v) = responses(&router.url, &body).await;
        assert_eq!(status, 200, "{model}: {v}");
        assert_eq!(v["object"], "response", "{model}");
        assert_eq!(v["model"], model, "{model}: the public id");
        assert!(v["id"].as_str().unwrap_or("").starts_with("resp_"), "{v}");
        assert_eq!(output_text(&v), "word0 word1 ", "{model}");
        assert_eq!(
            v["status"], "incomplete",
            "{model}: stopped by max_output_tokens"
        );
        assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(v["usage"]["output_tokens"], 2, "{model}");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
    }
    // Native: the body as sent, only the model renamed.
    let stats = mock_stats(&native).await;
    assert_eq!(path_count(&stats, "/v1/responses"), 1);
    let sent = &stats["last_request"]["body"];
    assert_eq!(sent["model"], "served-native");
    assert_eq!(sent["instructions"], "be brief");
    // Translated: a chat request, and a response nobody stored.
    let stats = mock_stats(&chat).await;
    assert_eq!(path_count(&stats, "/v1/responses"), 0);
    assert_eq!(path_count(&stats, "/v1/chat/completions"), 1);
    let sent = &stats["last_request"]["body"];
    assert_eq!(sent["model"], "served-chat");
    assert_eq!(sent["max_tokens"], 2);
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hello there"}])
    );
    let (_, v) = responses(&router.url, &json!({"model": "translated", "input": "x"})).await;
    assert_eq!(v["store"], false);
    // Metrics count the operation by its own name.
    let text = metrics_text(&router.url).await;
    for model in ["native", "translated"] {
        assert!(
            counts_request(&text, model, "responses", "success"),
            "{model}: no responses line in /metrics"
        );
    }
}

#[actix_rt::test]
async fn streams_are_response_events_natively_and_translated() {
    let (native, chat) = (
        start_mock(json!({"chunks": 4})),
        start_mock(json!({"chunks": 4})),
    );
    let router = start_router_ready(opts(&two_models(&native, &chat)), 2).await;
    for model in ["native", "translated"] {
        let events = stream_events(
            &router.url,
            &json!({"model": model, "input": "Hello there", "stream": true}),
        )
        .await;
        let kinds = kinds(&events);
        assert_eq!(
            kinds.first(),
            Some(&"response.created"),
            "{model}: {kinds:?}"
        );
        assert_eq!(
            kinds.last(),
            Some(&"response.completed"),
            "{model}: {kinds:?}"
        );
        for expected in [
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
        ] {
            assert!(
                kinds.contains(&expected),
                "{model}: {expected} in {kinds:?}"
            );
        }
        let deltas: String = events
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(deltas, "word0 word1 word2 word3 ", "{model}");
        let numbers: Vec<u64> = events
            .iter()
            .filter_map(|e| e["sequence_number"].as_u64())
            .collect();
        assert_eq!(
            numbers,
            (0..events.len() as u64).collect::<Vec<_>>(),
            "{model}"
        );
        let done = &events[events.len() - 1]["response"];
        assert_eq!(done["model"], model, "{model}: the public id in the events");
        assert_eq!(output_text(done), deltas, "{model}");
        assert_eq!(done["usage"]["output_tokens"], 4, "{model}");
    }
    wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn function_calls_round_trip_natively_and_translated() {
    let (native, chat) = (start_mock(json!({})), start_mock(json!({})));
    let router = start_router_ready(opts(&two_models(&native, &chat)), 2).await;
    let tools = json!([{"type": "function", "name": "lookup", "description": "find a word",
                        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}}}]);
    for model in ["native", "translated"] {
        for stream in [false, true] {
            let label = format!("{model} stream={stream}");
            // The mocks call a tool only when `tool_choice` demands it, as the chat mock does.
            let ask = json!({"model": model, "input": "look it up", "tools": tools,
                             "tool_choice": "required", "stream": stream});
            let first = if stream {
                let events = stream_events(&router.url, &ask).await;
                let kinds = kinds(&events);
                assert!(
                    kinds.contains(&"response.function_call_arguments.delta"),
                    "{label}: {kinds:?}"
                );
                assert!(
                    kinds.contains(&"response.function_call_arguments.done"),
                    "{label}: {kinds:?}"
                );
                events[events.len() - 1]["response"].clone()
            } else {
                let (status, v) = responses(&router.url, &ask).await;
                assert_eq!(status, 200, "{label}: {v}");
                v
            };
            let call = &first["output"][0];
            assert_eq!(call["type"], "function_call", "{label}: {first}");
            assert_eq!(call["name"], "lookup", "{label}");
            assert_eq!(call["arguments"], r#"{"arg":"word0"}"#, "{label}");
            let call_id = call["call_id"].as_str().expect("call_id").to_string();
            // The call and its result sent back: the model answers in text.
            let follow = json!({"model": model, "tools": tools, "stream": false, "input": [
                {"role": "user", "content": "look it up"},
                {"type": "function_call", "call_id": call_id, "name": "lookup", "arguments": call["arguments"]},
                {"type": "function_call_output", "call_id": call_id, "output": "a greeting"}
            ]});
            let (status, v) = responses(&router.url, &follow).await;
            assert_eq!(status, 200, "{label}: {v}");
            assert_eq!(v["output"][0]["type"], "message", "{label}: {v}");
            assert!(!output_text(&v).is_empty(), "{label}");
        }
    }
    // The chat backend saw the call as an assistant tool call and the result as a tool message.
    let sent = mock_stats(&chat).await["last_request"]["body"].clone();
    assert_eq!(sent["tools"][0]["function"]["name"], "lookup");
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(messages[1]["tool_calls"][0]["function"]["name"], "lookup");
    assert_eq!(messages[2]["role"], "tool");
    assert_eq!(messages[2]["content"], "a greeting");
}

/// A follow-up, retried for a moment while the router does not know the response yet: a
/// streamed response's route is remembered off the stream's path, as soon as it is named.
async fn follow_up(router: &str, body: &Value) -> (u16, Value) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, v) = responses(router, body).await;
        let unknown = v["error"]["code"] == "previous_response_not_found";
        if !unknown || std::time::Instant::now() > deadline {
            return (status, v);
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn previous_response_id_follows_up_on_the_endpoint_that_stored_the_response() {
    let (a, b) = (start_mock(json!({})), start_mock(json!({})));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{name: a, kind: vllm, base_url: \"{}\"}}\n      - {{name: b, kind: vllm, base_url: \"{}\"}}\n",
        a.url, b.url
    );
    let router = start_router_ready(opts(&yaml), 2).await;
    for stream in [false, true] {
        let ask = json!({"model": "m", "input": "first", "stream": stream});
        let id = if stream {
            let events = stream_events(&router.url, &ask).await;
            events[0]["response"]["id"]
                .as_str()
                .expect("id")
                .to_string()
        } else {
            let (status, v) = responses(&router.url, &ask).await;
            assert_eq!(status, 200, "{v}");
            v["id"].as_str().expect("id").to_string()
        };
        let before = [
            path_count(&mock_stats(&a).await, "/v1/responses"),
            path_count(&mock_stats(&b).await, "/v1/responses"),
        ];
        // Each mock knows only its own responses: a follow-up sent to the other is a 400.
        for _ in 0..6 {
            let follow = json!({"model": "m", "input": "and then?", "previous_response_id": id});
            let (status, v) = follow_up(&router.url, &follow).await;
            assert_eq!(status, 200, "stream={stream}: {v}");
            assert_eq!(v["previous_response_id"], id.as_str());
        }
        let after = [
            path_count(&mock_stats(&a).await, "/v1/responses"),
            path_count(&mock_stats(&b).await, "/v1/responses"),
        ];
        let grown = [after[0] - before[0], after[1] - before[1]];
        assert!(
            grown == [6, 0] || grown == [0, 6],
            "stream={stream}: every follow-up on one endpoint, got {grown:?}"
        );
    }
    let (status, v) = responses(
        &router.url,
        &json!({"model": "m", "input": "x", "previous_response_id": "resp_unknown"}),
    )
    .await;
    assert_openai_error(status, 400, &v);
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    assert_eq!(v["error"]["param"], "previous_response_id");
}

#[actix_rt::test]
async fn previous_response_id_on_a_translated_route_is_a_clear_400() {
    let chat = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: t\n    route:\n      - {{kind: vllm, native_apis: [], base_url: \"{}\"}}\n",
        chat.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let (status, v) = responses(
        &router.url,
        &json!({"model": "t", "input": "x", "previous_response_id": "resp_1"}),
    )
    .await;
    assert_openai_error(status, 400, &v);
    assert_eq!(v["error"]["param"], "previous_response_id");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("stores responses"),
        "{v}"
    );
    assert_eq!(inference_requests(&chat).await, 0, "no backend was asked");
}

#[actix_rt::test]
async fn malformed_bodies_are_400s_on_both_paths_and_reach_no_backend() {
    let (native, chat) = (start_mock(json!({})), start_mock(json!({})));
    let router = start_router_ready(opts(&two_models(&native, &chat)), 2).await;
    let url = format!("{}/v1/responses", router.url);
    let raw_cases: [&[u8]; 4] = [b"", b"{", b"[1]", b"\"text\""];
    for raw in raw_cases {
        let (status, _, v) = post_raw(&url, "application/json", raw.to_vec()).await;
        assert_openai_error(status, 400, &v);
    }
    for model in ["native", "translated"] {
        let cases = [
            json!({"input": "x"}),
            json!({"model": model}),
            json!({"model": model, "input": 5}),
            json!({"model": 5, "input": "x"}),
            json!({"model": model, "input": "x", "stream": "yes"}),
            json!({"model": model, "input": "x", "store": "no"}),
            json!({"model": model, "input": "x", "max_output_tokens": -1}),
            json!({"model": model, "input": "x", "temperature": "warm"}),
            json!({"model": model, "input": "x", "tools": "all"}),
            json!({"model": model, "input": "x", "previous_response_id": 12}),
        ];
        for body in cases {
            let (status, v) = responses(&router.url, &body).await;
            assert_openai_error(status, 400, &v);
        }
    }
    // Only the translated route must refuse what chat cannot express.
    for body in [
        json!({"model": "translated", "input": [{"type": "mystery"}]}),
        json!({"model": "translated", "input": "x", "tools": [{"type": "web_search"}]}),
        json!({"model": "translated", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}),
    ] {
        let (status, v) = responses(&router.url, &body).await;
        assert_openai_error(status, 400, &v);
    }
    assert_eq!(inference_requests(&native).await, 0);
    assert_eq!(inference_requests(&chat).await, 0);
}

#[actix_rt::test]
async fn an_error_event_before_content_falls_back_to_another_route() {
    let broken = start_mock(json!({"error_event_first": true}));
    let good = start_mock(json!({"chunks": 2}));
    for kind in ["vllm", "tgi"] {
        let yaml = format!(
            "models:\n  - id: m\n    route:\n      - {{name: broken, kind: {kind}, base_url: \"{}\"}}\n      - {{name: good, kind: {kind}, base_url: \"{}\"}}\n",
            broken.url, good.url
        );
        let router = start_router_ready(opts(&yaml), 2).await;
        for _ in 0..4 {
            let events = stream_events(
                &router.url,
                &json!({"model": "m", "input": "hi", "stream": true}),
            )
            .await;
            let kinds = kinds(&events);
            assert!(!kinds.contains(&"error"), "{kind}: {kinds:?}");
            assert_eq!(
                kinds.last(),
                Some(&"response.completed"),
                "{kind}: {kinds:?}"
            );
        }
    }
    assert!(
        mock_stats(&broken).await["faults_injected"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
}

#[actix_rt::test]
async fn keys_limit_models_and_every_request_leaves_a_responses_row() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: open-m\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n  - id: secret-m\n    route: [{{kind: tgi, base_url: \"{0}\"}}]\n",
        mock.url
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_path = dir.path().join("keys.yaml");
    std::fs::write(
        &keys_path,
        "keys:\n  - name: team\n    key: team-key-1\n    models: [open-m]\n",
    )
    .expect("write keys");
    let router = start_router_settled(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![("KEYS_FILE", keys_path.display().to_string())],
    })
    .await;
    let url = format!("{}/v1/responses", router.url);
    let key = Some("team-key-1");
    let (status, _, v) = send_with_key(
        "POST",
        &url,
        None,
        Some(&json!({"model": "open-m", "input": "x"})),
    )
    .await;
    assert_openai_error(status, 401, &v);
    let (status, _, v) = send_with_key(
        "POST",
        &url,
        key,
        Some(&json!({"model": "secret-m", "input": "x"})),
    )
    .await;
    assert_openai_error(status, 403, &v);
    assert_eq!(v["error"]["code"], "model_not_allowed");
    let (status, _, v) = send_with_key(
        "POST",
        &format!("{}/api/v1/responses", router.url),
        key,
        Some(&json!({"model": "open-m", "input": "x"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // A stored response is found only by the key that made it.
    let id = v["id"].as_str().expect("id").to_string();
    std::fs::write(
        &keys_path,
        "keys:\n  - name: team\n    key: team-key-1\n    models: [open-m]\n  - name: other\n    key: other-key-2\n",
    )
    .expect("write keys");
    signal(&router, "HUP");
    let follow = json!({"model": "open-m", "input": "y", "previous_response_id": id});
    eventually(Duration::from_secs(5), "the second key is loaded", || {
        let (url, follow) = (url.clone(), follow.clone());
        async move {
            let (status, _, v) =
                send_with_key("POST", &url, Some("other-key-2"), Some(&follow)).await;
            status == 400 && v["error"]["code"] == "previous_response_not_found"
        }
    })
    .await;
    let (status, _, v) = send_with_key("POST", &url, key, Some(&follow)).await;
    assert_eq!(status, 200, "{v}");

    let (status, _, _) = post_with_id(
        &url,
        &json!({"model": "open-m", "input": "logged"}),
        "resp-row-1",
    )
    .await;
    assert_eq!(status, 401, "no key: refused, still a row");
    let store = open_sqlite(&sqlite_path(&router)).await;
    let rows = wait_rows(&store, 5).await;
    let served: Vec<_> = rows.iter().filter(|r| r.status_code == 200).collect();
    assert!(served.len() >= 2, "{rows:?}");
    for row in served {
        assert_eq!(row.op, "responses");
        assert_eq!(row.api_key_id.as_deref(), Some("team"));
        assert!(
            row.prompt_tokens.is_some() && row.cached_tokens.is_some(),
            "{row:?}"
        );
    }
}

/// Replicas share the remembered routes: a response stored through one router is followed up
/// through another, on the same endpoint. The replicas share a SQLite file, or a PostgreSQL
/// database when `TEST_DATABASE_URL` is set.
#[actix_rt::test]
async fn replicas_share_where_stored_responses_live() {
    let (a, b) = (start_mock(json!({})), start_mock(json!({})));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{name: a, kind: vllm, base_url: \"{}\"}}\n      - {{name: b, kind: vllm, base_url: \"{}\"}}\n",
        a.url, b.url
    );
    let pg = common::obs::PgScratch::create("responses_replicas");
    let shared = tempfile::tempdir().expect("tempdir");
    let db_env: Vec<(&str, String)> = match &pg {
        Some(pg) => vec![
            ("USE_SQLITE_LOG", "false".into()),
            ("DATABASE_URL", pg.url.clone()),
        ],
        None => vec![(
            "SQLITE_DB_PATH",
            shared.path().join("shared.db").display().to_string(),
        )],
    };
    let replica = |name: &str| {
        let mut env = db_env.clone();
        env.push(("REPLICA_ID", name.to_string()));
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env,
        }
    };
    let first_router = start_router_ready(replica("one"), 2).await;
    let second_router = start_router_ready(replica("two"), 2).await;
    for _ in 0..3 {
        let (status, v) =
            responses(&first_router.url, &json!({"model": "m", "input": "first"})).await;
        assert_eq!(status, 200, "{v}");
        let id = v["id"].as_str().expect("id").to_string();
        for _ in 0..3 {
            let follow = json!({"model": "m", "input": "next", "previous_response_id": id});
            let (status, v) = responses(&second_router.url, &follow).await;
            assert_eq!(status, 200, "the other replica knows where {id} lives: {v}");
        }
    }
}

/// `GET` and `DELETE /v1/responses/{id}` reach the backend that stored the response, for the
/// key that made it; an id the router does not know, or of an odd alphabet, is a 404.
#[actix_rt::test]
async fn stored_responses_are_read_and_deleted_on_their_backend() {
    let (a, b) = (start_mock(json!({})), start_mock(json!({})));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{name: a, kind: vllm, base_url: \"{}\", provider_model_id: served}}\n      - {{name: b, kind: vllm, base_url: \"{}\", provider_model_id: served}}\n",
        a.url, b.url
    );
    let router = start_router_ready(opts(&yaml), 2).await;
    for _ in 0..3 {
        let (status, made) =
            responses(&router.url, &json!({"model": "m", "input": "keep this"})).await;
        assert_eq!(status, 200, "{made}");
        let id = made["id"].as_str().expect("id");
        let one = format!("{}/v1/responses/{id}", router.url);
        let (status, _, v) = send_with_key("GET", &one, None, None).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["id"], id);
        assert_eq!(v["model"], "m", "the public id, not the served one");
        assert_eq!(output_text(&v), output_text(&made));
        let (status, _, v) = send_with_key("DELETE", &one, None, None).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["deleted"], true);
        let (status, _, v) = send_with_key("GET", &one, None, None).await;
        assert_openai_error(status, 404, &v);
        assert_eq!(v["error"]["code"], "response_not_found");
    }
    for id in ["resp_unknown", "resp%2F..%2Fhealth", "resp_a%3Fx%3D1"] {
        let (status, _, v) = send_with_key(
            "GET",
            &format!("{}/v1/responses/{id}", router.url),
            None,
            None,
        )
        .await;
        assert_openai_error(status, 404, &v);
    }
    let (status, headers, _) = send_with_key(
        "PUT",
        &format!("{}/v1/responses/resp_x", router.url),
        None,
        None,
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(
        headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, DELETE")
    );
}

/// Requests each mock got on the two APIs so far.
async fn counts(mocks: &[Proc]) -> Vec<u64> {
    let mut out = Vec::with_capacity(mocks.len());
    for mock in mocks {
        out.push(inference_requests(mock).await);
    }
    out
}

/// Model `m` over the three mocks (native, translated, native) with routing `policy`.
fn policy_model(mocks: &[Proc], policy: &str) -> String {
    let mut y = format!("models:\n  - id: m\n    policy: {policy}\n    route:\n");
    for (i, (mock, kind)) in mocks.iter().zip(["vllm", "tgi", "vllm"]).enumerate() {
        y.push_str(&format!(
            "      - {{name: r{i}, kind: {kind}, base_url: \"{}\"}}\n",
            mock.url
        ));
    }
    y
}

/// Routing hints reach the policy: a session (the `x-session-id` header, else the body's
/// `prompt_cache_key`, else `user`) sticks to one endpoint; under `prefix_cache`, requests
/// sharing long `instructions` go where that prefix went before, native or translated.
#[actix_rt::test]
async fn sessions_and_shared_instructions_steer_the_route() {
    let mocks = [
        start_mock(json!({})),
        start_mock(json!({})),
        start_mock(json!({})),
    ];
    let router = start_router_ready(opts(&policy_model(&mocks, "least_load")), 3).await;
    for session in 0..6 {
        let key = format!("session-{session}");
        let mut body = json!({"model": "m", "input": "hello", "max_output_tokens": 2});
        let header = place_session_key(session, &key, &mut body);
        let before = counts(&mocks).await;
        for _ in 0..6 {
            let mut req = client().post(format!("{}/v1/responses", router.url));
            if let Some(session) = header {
                req = req.insert_header(("x-session-id", session));
            }
            let resp = req.send_json(&body).await.expect("send");
            assert_eq!(resp.status().as_u16(), 200, "{key}");
        }
        let after = counts(&mocks).await;
        let got: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
        assert!(got.contains(&6), "{key} spread over {got:?}");
    }
    drop(router);

    let router = start_router_ready(opts(&policy_model(&mocks, "prefix_cache")), 3).await;
    for family in 0..4 {
        let instructions = format!("You are assistant number {family}. ").repeat(60);
        let before = counts(&mocks).await;
        for question in 0..5 {
            let body = json!({"model": "m", "instructions": instructions,
                              "input": format!("Question {question}?"), "max_output_tokens": 2});
            let (status, v) = responses(&router.url, &body).await;
            assert_eq!(status, 200, "{v}");
        }
        let after = counts(&mocks).await;
        let got: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
        assert!(got.contains(&5), "family {family} spread over {got:?}");
    }
}
