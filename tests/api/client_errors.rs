//! Bad client input gets an OpenAI-shaped error with the right status, and reaches no backend.

use crate::common;

use common::*;
use serde_json::{json, Value};

async fn setup() -> (Proc, Router) {
    let mock = start_mock(json!({}));
    let yaml = format!(
        r#"models:
  - id: chat-m
    route: [{{kind: vllm, base_url: "{0}"}}]
  - id: emb-m
    output_modalities: [embeddings]
    route: [{{kind: vllm, base_url: "{0}"}}]
  - id: tgi-emb
    type: embedding
    route: [{{kind: tgi, base_url: "{0}"}}]
  - id: tts-m
    type: speech
    route: [{{kind: tts-engine, base_url: "{0}"}}]
"#,
        mock.url
    );
    let router = start_router_settled(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![("MAX_REQUEST_BODY_MB", "1".into())],
    })
    .await;
    (mock, router)
}

async fn inference_requests(mock: &Proc) -> u64 {
    let s = mock_stats(mock).await;
    ["/v1/chat/completions", "/v1/embeddings"]
        .iter()
        .map(|p| s["requests_by_path"][*p].as_u64().unwrap_or(0))
        .sum()
}

#[actix_rt::test]
async fn every_bad_request_is_openai_shaped_and_never_forwarded() {
    let (mock, router) = setup().await;
    let chat = format!("{}/v1/chat/completions", router.url);
    let emb = format!("{}/v1/embeddings", router.url);
    // (case, url, body, status, error code, param)
    type Case<'a> = (
        &'a str,
        String,
        Value,
        u16,
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "unknown model",
            chat.clone(),
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            404,
            Some("model_not_found"),
            Some("model"),
        ),
        (
            "missing model",
            chat.clone(),
            json!({"messages": [{"role": "user", "content": "x"}]}),
            400,
            None,
            Some("model"),
        ),
        (
            "model not a string",
            chat.clone(),
            json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}),
            400,
            None,
            Some("model"),
        ),
        (
            "missing messages",
            chat.clone(),
            json!({"model": "chat-m"}),
            400,
            None,
            Some("messages"),
        ),
        (
            "empty messages",
            chat.clone(),
            json!({"model": "chat-m", "messages": []}),
            400,
            None,
            Some("messages"),
        ),
        (
            "message without role",
            chat.clone(),
            json!({"model": "chat-m", "messages": [{"content": "x"}]}),
            400,
            None,
            Some("messages[0].role"),
        ),
        (
            "stream not bool",
            chat.clone(),
            json!({"model": "chat-m", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}),
            400,
            None,
            Some("stream"),
        ),
        (
            "absurd max_tokens",
            chat.clone(),
            json!({"model": "chat-m", "max_tokens": -5, "messages": [{"role": "user", "content": "x"}]}),
            400,
            None,
            Some("max_tokens"),
        ),
        (
            "temperature wrong type",
            chat.clone(),
            json!({"model": "chat-m", "temperature": "hot", "messages": [{"role": "user", "content": "x"}]}),
            400,
            None,
            Some("temperature"),
        ),
        (
            "wrong endpoint for type",
            chat.clone(),
            json!({"model": "emb-m", "messages": [{"role": "user", "content": "x"}]}),
            400,
            Some("wrong_endpoint"),
            Some("model"),
        ),
        (
            "speech model on chat",
            chat.clone(),
            json!({"model": "tts-m", "messages": [{"role": "user", "content": "x"}]}),
            400,
            Some("wrong_endpoint"),
            Some("model"),
        ),
        (
            "chat model on embeddings",
            emb.clone(),
            json!({"model": "chat-m", "input": "x"}),
            400,
            Some("wrong_endpoint"),
            Some("model"),
        ),
        (
            "tgi embeddings",
            emb.clone(),
            json!({"model": "tgi-emb", "input": "x"}),
            501,
            Some("unsupported_endpoint"),
            Some("model"),
        ),
        (
            "missing input",
            emb.clone(),
            json!({"model": "emb-m"}),
            400,
            None,
            Some("input"),
        ),
        (
            "empty input",
            emb.clone(),
            json!({"model": "emb-m", "input": []}),
            400,
            None,
            Some("input"),
        ),
        (
            "bad encoding",
            emb.clone(),
            json!({"model": "emb-m", "input": "x", "encoding_format": "hex"}),
            400,
            None,
            Some("encoding_format"),
        ),
        (
            "body is an array",
            chat.clone(),
            json!([1, 2]),
            400,
            None,
            None,
        ),
    ];
    for (name, url, body, status, code, param) in cases {
        let (got, _, v) = post_json(&url, &body).await;
        assert_openai_error(got, status, &v);
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{name}: {v}");
        }
        assert_eq!(v["error"]["param"].as_str(), param, "{name}: {v}");
    }
    // The wrong-endpoint message says where the model belongs.
    let (_, _, v) = post_json(
        &chat,
        &json!({"model": "emb-m", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("/v1/embeddings"),
        "{v}"
    );
    assert_eq!(
        inference_requests(&mock).await,
        0,
        "bad input must not reach a backend"
    );
}

#[actix_rt::test]
async fn malformed_bodies_and_transport_errors() {
    let (mock, router) = setup().await;
    let chat = format!("{}/v1/chat/completions", router.url);
    // Malformed JSON, invalid UTF-8, deeply nested JSON, empty body.
    for body in [
        b"{\"model\": \"chat-m\", ".to_vec(),
        vec![b'{', 0xff, 0xfe, b'}'],
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        Vec::new(),
    ] {
        let (status, _, v) = post_raw(&chat, "application/json", body).await;
        assert_openai_error(status, 400, &v);
    }
    // Too large: 413 before the body is read.
    let big = vec![b' '; 2 * 1024 * 1024];
    let (status, _, v) = post_raw(&chat, "application/json", big).await;
    assert_openai_error(status, 413, &v);
    // Wrong media type.
    let (status, _, v) =
        post_raw(&chat, "multipart/form-data; boundary=x", b"--x--".to_vec()).await;
    assert_openai_error(status, 415, &v);
    // Wrong method and unknown path.
    let mut resp = client().get(&chat).send().await.expect("request");
    let v: Value = resp.json().await.expect("json");
    assert_openai_error(resp.status().as_u16(), 405, &v);
    let (status, v) = get_json(&format!("{}/v2/whatever", router.url))
        .await
        .expect("request");
    assert_openai_error(status, 404, &v);
    assert_eq!(inference_requests(&mock).await, 0);
}

#[actix_rt::test]
async fn unknown_fields_pass_through_when_no_supported_params_are_configured() {
    let (mock, router) = setup().await;
    let body = json!({"model": "chat-m", "messages": [{"role": "user", "content": "x"}], "my_extension": {"a": 1}});
    let (status, _, v) = post_json(&format!("{}/v1/chat/completions", router.url), &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        mock_stats(&mock).await["last_request"]["body"]["my_extension"]["a"],
        1
    );
}
