//! Each seed system run the way its own users ran it (issue 20): their files, variables and
//! requests, replayed against the router. docs/seeds.md maps each seed's requirements here.

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A router on `yaml` with the test defaults and nothing else.
fn opts(yaml: &str) -> RouterOpts<'_> {
    RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env: vec![],
    }
}

async fn chat(router: &str, body: &Value) -> (u16, Value) {
    let (status, _, v) = post_json(&format!("{router}/v1/chat/completions"), body).await;
    (status, v)
}

async fn wait_for_models(router: &str, expected: &[&str]) {
    let url = router.to_string();
    let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    eventually(Duration::from_secs(10), "the expected model list", || {
        let (url, expected) = (url.clone(), expected.clone());
        async move {
            let mut ids = model_ids(&url, None).await;
            ids.sort();
            ids == expected
        }
    })
    .await;
    // Routes with a health check start as `starting` (requests get 503 `model_loading`) until
    // their first probe answers; listed is not yet servable.
    wait_none_starting(router).await;
}

fn last_upstream(stats: &Value) -> (&Value, &Value) {
    let last = &stats["last_request"];
    (&last["body"]["model"], &last["headers"]["authorization"])
}

// ------------------------------------------------------------------ seed 000: local model guide

/// The guide's model entry as written (only its `host.docker.internal:8007` server is the test
/// engine), then its step-5 checks: listed, chat by id and alias, streaming.
#[actix_rt::test]
async fn seed_000_the_guide_entry_serves_its_step_5_requests() {
    let engine = start_mock(json!({}));
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/local_model_guide_model_entry.yaml");
    let yaml = std::fs::read_to_string(fixture)
        .expect("guide fixture")
        .replace("http://host.docker.internal:8007", &engine.url);
    let router = start_router_ready(opts(&yaml), 1).await;
    assert_eq!(model_ids(&router.url, None).await, vec!["qwen3.5-27b"]);
    for model in ["qwen3.5-27b", "Qwen3.5-27B"] {
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": "Hello from the gateway"}],
            "max_tokens": 32
        });
        let (status, v) = chat(&router.url, &body).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["model"], "qwen3.5-27b");
        assert_eq!(
            mock_stats(&engine).await["last_request"]["body"]["model"],
            "Qwen3.5-27B"
        );
    }
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", router.url))
        .insert_header(("content-type", "application/json"))
        .send_body(
            json!({
                "model": "qwen3.5-27b",
                "messages": [{"role": "user", "content": "Stream one sentence"}],
                "stream": true,
                "max_tokens": 64
            })
            .to_string(),
        )
        .await
        .expect("stream");
    let events = read_sse(&mut resp).await;
    assert!(events.len() > 2, "{events:?}");
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
}

// ------------------------------------------------------------------ seed 003: single backend

/// `.env` as the seed's quick start leaves it (`make env-vllm`, then MODEL_NAME set): no
/// models.yaml at all; the named model is served by the engine with BACKEND_API_KEY.
#[actix_rt::test]
async fn seed_003_the_env_file_alone_serves_the_named_models() {
    let engine = start_mock(json!({}));
    let router = start_router_without_models_file(vec![
        ("BACKEND_KIND", "vllm".into()),
        ("BACKEND_BASE_URL", format!("{}/v1", engine.url)),
        ("BACKEND_API_KEY", "sk-engine-key-0001".into()),
        (
            "MODEL_NAME",
            "meta-llama/Llama-3.1-8B-Instruct, Qwen/Qwen2.5-7B-Instruct".into(),
        ),
    ]);
    wait_for_models(
        &router.url,
        &[
            "Qwen/Qwen2.5-7B-Instruct",
            "meta-llama/Llama-3.1-8B-Instruct",
        ],
    )
    .await;
    for stream in [false, true] {
        let body = chat_body("meta-llama/Llama-3.1-8B-Instruct", stream);
        let (status, v) = chat(&router.url, &body).await;
        assert_eq!(status, 200, "{v}");
        let stats = mock_stats(&engine).await;
        let (model, auth) = last_upstream(&stats);
        assert_eq!(model, "meta-llama/Llama-3.1-8B-Instruct");
        assert_eq!(auth, "Bearer sk-engine-key-0001");
    }
}

/// Ollama's way: `MODEL_NAME` unset, whatever the engine has pulled is served by its tag; the
/// discovery template itself is never a model.
#[actix_rt::test]
async fn seed_003_without_model_name_the_engine_list_is_served() {
    let engine = start_mock(json!({"model_ids": ["llama3.1:8b-instruct", "qwen2.5:7b"]}));
    let router = start_router_without_models_file(vec![
        ("BACKEND_KIND", "ollama".into()),
        ("BACKEND_BASE_URL", format!("{}/v1", engine.url)),
        ("DISCOVERY_INTERVAL_SECS", "0.3".into()),
    ]);
    wait_for_models(&router.url, &["llama3.1:8b-instruct", "qwen2.5:7b"]).await;
    let (status, v) = chat(&router.url, &chat_body("llama3.1:8b-instruct", false)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = chat(&router.url, &chat_body("ollama:discovered", false)).await;
    assert_openai_error(status, 404, &v);
    // A model pulled later shows up without a restart.
    mock_patch(
        &engine,
        json!({"model_ids": ["llama3.1:8b-instruct", "phi3"]}),
    )
    .await;
    wait_for_models(&router.url, &["llama3.1:8b-instruct", "phi3"]).await;
}

/// Alongside a models.yaml, the file's models and the backend's are both served.
#[actix_rt::test]
async fn seed_003_the_backend_is_added_to_a_models_yaml() {
    let engine = start_mock(json!({}));
    let other = start_mock(json!({}));
    let yaml = chat_model_yaml("from-file", &[("openai_compat", &other.url, 1.0)]);
    let router = start_router(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![
            ("BACKEND_KIND", "llamacpp".into()),
            ("BACKEND_BASE_URL", format!("{}/v1", engine.url)),
            ("MODEL_NAME", "model.gguf".into()),
        ],
    });
    wait_for_models(&router.url, &["from-file", "model.gguf"]).await;
    let (status, v) = chat(&router.url, &chat_body("model.gguf", false)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        mock_stats(&engine).await["last_request"]["body"]["model"],
        "model.gguf"
    );
}

/// The seed's gateway serves embeddings through the same backend: a `MODEL_NAME` model (or a
/// discovered one) answers `/v1/embeddings` on every kind whose engine has the endpoint (and
/// still answers chat), and TGI, which has none, gets a structured 501 pointing at a dedicated
/// embeddings server, without the engine being asked.
#[actix_rt::test]
async fn seed_003_single_backend_models_serve_embeddings_where_the_engine_has_them() {
    // (BACKEND_KIND, MODEL_NAME (empty: discovered), the embeddings answer's status)
    let cases = [
        ("vllm", "intfloat/e5-mistral-7b-instruct", 200),
        ("ollama", "nomic-embed-text", 200),
        ("llamacpp", "nomic-embed-text-v1.5.Q8_0.gguf", 200),
        ("sglang", "Alibaba-NLP/gte-Qwen2-1.5B-instruct", 200),
        ("ollama", "", 200),
        ("tgi", "BAAI/bge-large-en-v1.5", 501),
    ];
    for (kind, name, expected) in cases {
        let engine = start_mock(json!({"model_ids": ["nomic-embed-text:latest"]}));
        let mut env = vec![
            ("BACKEND_KIND", kind.to_string()),
            ("BACKEND_BASE_URL", format!("{}/v1", engine.url)),
        ];
        if !name.is_empty() {
            env.push(("MODEL_NAME", name.to_string()));
        }
        let router = start_router_without_models_file(env);
        let model = if name.is_empty() {
            "nomic-embed-text:latest"
        } else {
            name
        };
        wait_for_models(&router.url, &[model]).await;
        let case = format!("{kind} {model}");
        let body = json!({"model": model, "input": ["first text", "second text"]});
        let (status, _, v) = post_json(&format!("{}/v1/embeddings", router.url), &body).await;
        let stats = mock_stats(&engine).await;
        let relayed = stats["requests_by_path"]["/v1/embeddings"]
            .as_u64()
            .unwrap_or(0);
        if expected == 200 {
            assert_eq!(status, 200, "{case}: {v}");
            assert_eq!(v["object"], "list", "{case}: {v}");
            assert_eq!(v["data"].as_array().map(Vec::len), Some(2), "{case}: {v}");
            assert_eq!(relayed, 1, "{case}");
            assert_eq!(stats["last_request"]["body"]["model"], model, "{case}");
        } else {
            assert_openai_error(status, 501, &v);
            assert_eq!(v["error"]["code"], "unsupported_endpoint", "{case}: {v}");
            let message = v["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains("text-embeddings-inference") && message.contains("tgi"),
                "{case}: {message}"
            );
            assert_eq!(relayed, 0, "{case}: the engine was asked");
        }
        // The same model still serves chat.
        let (status, v) = chat(&router.url, &chat_body(model, false)).await;
        assert_eq!(status, 200, "{case}: chat: {v}");
    }
}

/// `check-config` and `serve` refuse what the seed's table does not list, naming the variable.
#[test]
fn seed_003_a_kind_outside_the_table_or_an_external_kind_without_url_is_refused() {
    for (env, named) in [
        (vec![("BACKEND_KIND", "triton")], "BACKEND_KIND"),
        (vec![("BACKEND_KIND", "openai")], "BACKEND_BASE_URL"),
        (
            vec![("BACKEND_KIND", "vllm"), ("BACKEND_BASE_URL", "not a url")],
            "BACKEND_BASE_URL",
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = std::process::Command::new(bin("switchyard"));
        cmd.current_dir(dir.path()).arg("check-config");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("check-config");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{env:?}: {text}");
        assert!(text.contains(named), "{env:?}: {text}");
    }
}

// ------------------------------------------------------------------ seed 004: vLLM provider

const ADMIN_KEY: &str = "admin-key-seeds-0001";

/// The one endpoint's probe row in `/admin/backends`, once there is one.
async fn probe_row(router: &str) -> Value {
    let url = format!("{router}/admin/backends");
    let mut row = Value::Null;
    for _ in 0..100 {
        let (_, _, v) = send_with_key("GET", &url, Some(ADMIN_KEY), None).await;
        row = v["data"][0]["probe"].clone();
        if !row.is_null() {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    row
}

/// An explicit provider on loopback without `request.allowPrivateNetwork`: its probe row says
/// the private network is not approved, and nothing was sent to it.
#[actix_rt::test]
async fn seed_004_the_probe_row_shows_an_unapproved_private_network() {
    let engine = start_mock(json!({}));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("providers.json5");
    let text = SEED_004_EXPLICIT
        .replace("http://127.0.0.1:8000/v1", &format!("{}/v1", engine.url))
        .replace("request: { allowPrivateNetwork: true },", "");
    std::fs::write(&file, text).expect("write providers file");
    let router = start_router_without_models_file(vec![
        ("PROVIDERS_FILE", file.display().to_string()),
        ("VLLM_API_KEY", "real-key-0001".into()),
        ("ADMIN_API_KEY", ADMIN_KEY.into()),
    ]);
    let row = probe_row(&router.url).await;
    assert_eq!(row["private_network_approved"], false, "{row}");
    assert_eq!(row["reachable"], false, "{row}");
    assert!(
        row["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{row}"
    );
    assert!(!row.to_string().contains("real-key-0001"), "{row}");
    assert!(mock_stats(&engine).await["requests_by_path"]["/v1/models"].is_null());
}

/// `export VLLM_API_KEY="vllm-local"` and nothing else: what the server lists is served as
/// `vllm/<id>`, with the key, and with no capability assumed.
#[actix_rt::test]
async fn seed_004_implicit_discovery_serves_vllm_ids_and_assumes_no_capability() {
    let engine = start_mock(json!({"model_ids": ["your-model-id"]}));
    let router = start_router_without_models_file(vec![
        ("VLLM_API_KEY", "vllm-local".into()),
        ("VLLM_BASE_URL", format!("{}/v1", engine.url)),
        ("ADMIN_API_KEY", ADMIN_KEY.into()),
    ]);
    wait_for_models(&router.url, &["vllm/your-model-id"]).await;
    // The probe row: reachable, auth ok, one model discovered, private network approved.
    let row = probe_row(&router.url).await;
    assert_eq!(
        (
            &row["reachable"],
            &row["auth_ok"],
            &row["models_discovered"],
            &row["private_network_approved"]
        ),
        (&json!(true), &json!(true), &json!(1), &json!(true)),
        "{row}"
    );
    let (status, v) = chat(&router.url, &chat_body("vllm/your-model-id", false)).await;
    assert_eq!(status, 200, "{v}");
    let stats = mock_stats(&engine).await;
    let (model, auth) = last_upstream(&stats);
    assert_eq!(model, "your-model-id");
    assert_eq!(auth, "Bearer vllm-local");
    let served = stats["requests_by_path"]["/v1/chat/completions"].clone();

    let tool = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    let image = json!([{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]);
    // (what the request adds, the error code, the param named)
    let refused = [
        ("tools", tool.clone(), "unsupported_capability", "tools"),
        (
            "tool_choice",
            json!("auto"),
            "unsupported_capability",
            "tool_choice",
        ),
        (
            "reasoning_effort",
            json!("high"),
            "unsupported_capability",
            "reasoning_effort",
        ),
        (
            "reasoning",
            json!({"effort": "low"}),
            "unsupported_capability",
            "reasoning",
        ),
        ("messages", image, "unsupported_modality", "messages"),
    ];
    for (key, value, code, param) in refused {
        let mut body = chat_body("vllm/your-model-id", false);
        body[key] = value;
        let (status, v) = chat(&router.url, &body).await;
        assert_openai_error(status, 400, &v);
        assert_eq!(v["error"]["code"], code, "{key}: {v}");
        assert_eq!(v["error"]["param"], param, "{key}: {v}");
    }
    assert_eq!(
        mock_stats(&engine).await["requests_by_path"]["/v1/chat/completions"],
        served,
        "a refused request reached the engine"
    );
    // The other APIs: vLLM serves Messages, Responses and text completions itself, and each
    // is refused the same things, before the engine, in its own error shape.
    let model = "vllm/your-model-id";
    let messages = |extra: Value| {
        let mut body = json!({"model": model, "max_tokens": 16,
            "messages": [{"role": "user", "content": "Say hello"}]});
        merge(&mut body, extra);
        body
    };
    let responses = |extra: Value| {
        let mut body = json!({"model": model, "input": "Say hello"});
        merge(&mut body, extra);
        body
    };
    let completions = |extra: Value| {
        let mut body = json!({"model": model, "prompt": "Say hello", "max_tokens": 4});
        merge(&mut body, extra);
        body
    };
    let png = "iVBORw0KGgo=";
    // (path, body, the member the error names)
    let refused = [
        (
            "/v1/messages",
            messages(json!({"tools": [{"name": "f", "input_schema": {"type": "object"}}]})),
            "tools",
        ),
        (
            "/v1/messages",
            messages(json!({"tool_choice": {"type": "auto"}})),
            "tool_choice",
        ),
        (
            "/v1/messages",
            messages(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})),
            "thinking",
        ),
        (
            "/v1/messages",
            messages(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]}]})),
            "messages",
        ),
        (
            "/v1/responses",
            responses(json!({"tools": [{"type": "function", "name": "f", "parameters": {}}]})),
            "tools",
        ),
        (
            "/v1/responses",
            responses(json!({"tool_choice": "auto"})),
            "tool_choice",
        ),
        (
            "/v1/responses",
            responses(json!({"reasoning": {"effort": "low"}})),
            "reasoning",
        ),
        (
            "/v1/responses",
            responses(json!({"input": [{"role": "user", "content": [
            {"type": "input_text", "text": "what is this"},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{png}")}]}]})),
            "input",
        ),
        (
            "/v1/completions",
            completions(json!({"reasoning_effort": "high"})),
            "reasoning_effort",
        ),
        (
            "/v1/completions",
            completions(json!({"tools": tool})),
            "tools",
        ),
    ];
    for path in ["/v1/messages", "/v1/responses", "/v1/completions"] {
        let plain = match path {
            "/v1/messages" => messages(json!({})),
            "/v1/responses" => responses(json!({})),
            _ => completions(json!({})),
        };
        let (status, _, v) = post_json(&format!("{}{path}", router.url), &plain).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    let before = inference_counts(&engine).await;
    for (path, body, param) in refused {
        let (status, _, v) = post_json(&format!("{}{path}", router.url), &body).await;
        assert_eq!(status, 400, "{path} {param}: {v}");
        let message = if path == "/v1/messages" {
            // Anthropic's shape: no `param`, so the message names the member.
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
            v["error"]["message"].as_str().unwrap_or("").to_string()
        } else {
            assert_openai_error(status, 400, &v);
            assert_eq!(v["error"]["param"], param, "{path}: {v}");
            v["error"]["message"].as_str().unwrap_or("").to_string()
        };
        let expected = if param == "messages" || param == "input" {
            "does not accept image input".to_string()
        } else {
            format!("`{param}`")
        };
        assert!(message.contains(&expected), "{path} {param}: {message}");
    }
    assert_eq!(
        inference_counts(&engine).await,
        before,
        "a refused request reached the engine"
    );
}

/// The capability check is one for every API and every way of serving it: each of chat, text
/// completions, Messages and Responses, on a route that serves the API itself (`vllm`) and on
/// one that gets it translated to chat (`tgi`; chat and text completions are relayed as they
/// are on both), asking for tools, reasoning or an image, is refused for the provider model
/// that declares none of them (a 400 naming the member, nothing sent) and served for the one
/// that declares them all (one request, on the path the route speaks).
#[actix_rt::test]
async fn seed_004_every_api_native_or_translated_refuses_what_a_model_does_not_declare() {
    let engine = start_mock(json!({}));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("providers.json5");
    let provider = |kind: &str| {
        format!(
            r#"{kind}: {{ baseUrl: "{}/v1", api: "openai-completions", request: {{ allowPrivateNetwork: true }},
              models: [ {{ id: "plain", input: ["text"] }},
                        {{ id: "able", input: ["text", "image"], tools: true, reasoning: true }} ] }}"#,
            engine.url
        )
    };
    let text = format!(
        "{{ models: {{ providers: {{ {}, {} }} }} }}",
        provider("vllm"),
        provider("tgi")
    );
    std::fs::write(&file, text).expect("write providers file");
    let router =
        start_router_without_models_file(vec![("PROVIDERS_FILE", file.display().to_string())]);
    wait_for_models(
        &router.url,
        &["tgi/able", "tgi/plain", "vllm/able", "vllm/plain"],
    )
    .await;
    let png = "iVBORw0KGgo=";
    let data_url = format!("data:image/png;base64,{png}");
    // Per API: its path, a plain body, and what each capability adds to it (with the member a
    // refusal names); text completions carry no images.
    let chat_tool = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    struct Api {
        path: &'static str,
        body: Value,
        asks: Vec<(&'static str, Value, &'static str)>,
    }
    let apis = [
        Api {
            path: "/v1/chat/completions",
            body: json!({"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 4}),
            asks: vec![
                ("tools", json!({"tools": chat_tool}), "tools"),
                (
                    "reasoning",
                    json!({"reasoning_effort": "low"}),
                    "reasoning_effort",
                ),
                (
                    "image",
                    json!({"messages": [{"role": "user", "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": data_url}}]}]}),
                    "messages",
                ),
            ],
        },
        Api {
            path: "/v1/completions",
            body: json!({"prompt": "Say hello", "max_tokens": 4}),
            asks: vec![
                ("tools", json!({"tools": chat_tool}), "tools"),
                (
                    "reasoning",
                    json!({"reasoning_effort": "low"}),
                    "reasoning_effort",
                ),
            ],
        },
        Api {
            path: "/v1/messages",
            body: json!({"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 4}),
            asks: vec![
                (
                    "tools",
                    json!({"tools": [{"name": "f", "input_schema": {"type": "object"}}]}),
                    "tools",
                ),
                (
                    "reasoning",
                    json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}),
                    "thinking",
                ),
                (
                    "image",
                    json!({"messages": [{"role": "user", "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]}]}),
                    "messages",
                ),
            ],
        },
        Api {
            path: "/v1/responses",
            body: json!({"input": "Say hello", "max_output_tokens": 4}),
            asks: vec![
                (
                    "tools",
                    json!({"tools": [{"type": "function", "name": "f", "parameters": {}}]}),
                    "tools",
                ),
                (
                    "reasoning",
                    json!({"reasoning": {"effort": "low"}}),
                    "reasoning",
                ),
                (
                    "image",
                    json!({"input": [{"role": "user", "content": [
                    {"type": "input_text", "text": "what is this"},
                    {"type": "input_image", "image_url": data_url}]}]}),
                    "input",
                ),
            ],
        },
    ];
    let mut checked = 0;
    for api in &apis {
        for kind in ["vllm", "tgi"] {
            // Where the engine gets the request: the API's own path when the route speaks it.
            let native =
                kind == "vllm" || matches!(api.path, "/v1/chat/completions" | "/v1/completions");
            let upstream = if native {
                api.path
            } else {
                "/v1/chat/completions"
            };
            let plain = std::iter::once(("nothing", json!({}), ""));
            for (asked, extra, param) in plain.chain(api.asks.iter().cloned()) {
                for model in ["plain", "able"] {
                    let case = format!("{} {kind}/{model} asking {asked}", api.path);
                    let mut body = api.body.clone();
                    body["model"] = json!(format!("{kind}/{model}"));
                    merge(&mut body, extra.clone());
                    let before = inference_counts(&engine).await;
                    let (status, _, v) =
                        post_json(&format!("{}{}", router.url, api.path), &body).await;
                    let after = inference_counts(&engine).await;
                    let sent: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
                    if model == "plain" && asked != "nothing" {
                        assert_eq!(status, 400, "{case}: {v}");
                        assert_eq!(sent, 0, "{case}: reached the engine");
                        let code = if asked == "image" {
                            "unsupported_modality"
                        } else {
                            "unsupported_capability"
                        };
                        if api.path == "/v1/messages" {
                            assert_eq!(v["error"]["type"], "invalid_request_error", "{case}: {v}");
                        } else {
                            assert_eq!(v["error"]["code"], code, "{case}: {v}");
                            assert_eq!(v["error"]["param"], param, "{case}: {v}");
                        }
                    } else {
                        assert_eq!(status, 200, "{case}: {v}");
                        let at = INFERENCE_PATHS.iter().position(|p| *p == upstream);
                        let on_path = at.map_or(0, |i| after[i] - before[i]);
                        assert_eq!((sent, on_path), (1, 1), "{case}: one request on {upstream}");
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 2 * (4 + 3 + 4 + 4), "every case ran");
}

/// Requests the engine got on each inference path (probes and discovery aside).
async fn inference_counts(engine: &Proc) -> Vec<u64> {
    let stats = mock_stats(engine).await;
    INFERENCE_PATHS
        .iter()
        .map(|p| stats["requests_by_path"][*p].as_u64().unwrap_or(0))
        .collect()
}

const INFERENCE_PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
    "/v1/responses",
];

/// `extra`'s members set on `body`.
fn merge(body: &mut Value, extra: Value) {
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
}

/// The seed's explicit configuration, as written (only the URL points at the test engine):
/// its model is served with its name and limits, and the implicit discovery is off.
#[actix_rt::test]
async fn seed_004_the_explicit_provider_file_loads_as_written_and_turns_discovery_off() {
    let engine = start_mock(json!({}));
    let discoverable = start_mock(json!({"model_ids": ["should-not-appear"]}));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("providers.json5");
    let text = SEED_004_EXPLICIT.replace("http://127.0.0.1:8000/v1", &format!("{}/v1", engine.url));
    std::fs::write(&file, text).expect("write providers file");
    let router = start_router_without_models_file(vec![
        ("PROVIDERS_FILE", file.display().to_string()),
        ("VLLM_API_KEY", "real-key-0001".into()),
        ("VLLM_BASE_URL", format!("{}/v1", discoverable.url)),
        ("DISCOVERY_INTERVAL_SECS", "0.2".into()),
    ]);
    wait_for_models(&router.url, &["vllm/your-model-id"]).await;
    let (_, v) = get_json(&format!("{}/v1/models", router.url))
        .await
        .expect("models");
    let entry = &v["data"][0];
    assert_eq!(entry["name"], "Local Served Model", "{entry}");
    assert_eq!(entry["context_length"], 128000, "{entry}");
    let (status, v) = chat(&router.url, &chat_body("vllm/your-model-id", false)).await;
    assert_eq!(status, 200, "{v}");
    let stats = mock_stats(&engine).await;
    assert_eq!(
        last_upstream(&stats),
        (&json!("your-model-id"), &json!("Bearer real-key-0001"))
    );
    // Discovery never ran: the other server was not even asked.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    assert!(
        mock_stats(&discoverable).await["requests_by_path"]["/v1/models"].is_null(),
        "implicit discovery ran beside an explicit vllm provider"
    );
}

/// The seed's explicit configuration, as written there.
const SEED_004_EXPLICIT: &str = include_str!("../fixtures/seed_004_providers.json5");

// ------------------------------------------------------------------ seed 001: the gateway

/// The shipped config/models.yaml has the README's quick-check models; each stays disabled
/// until its variables are in `.env`, then serves with its weight.
#[test]
fn seed_001_the_quick_check_models_turn_on_with_their_keys() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/models.yaml");
    let text = std::fs::read_to_string(&path).expect("config/models.yaml");
    let load = |pairs: &[(&str, &str)]| {
        let vars: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        switchyard::config::load_str("config/models.yaml", &text, None, &vars)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let enabled = |registry: &switchyard::config::Registry, id: &str| {
        let model = registry
            .find(id)
            .unwrap_or_else(|| panic!("{id} not shipped"));
        model
            .routes
            .iter()
            .any(|r| r.is_enabled() && r.weight > 0.0)
    };
    let shipped = ["llama-4-scout", "deepseek-chat", "gemini-2.0-flash"];
    let bare = load(&[]);
    for id in shipped {
        assert!(!enabled(&bare, id), "{id} enabled without its key");
    }
    // The README's .env lines: each key turns its own model on, and only that one.
    let lines = [
        (
            "llama-4-scout",
            vec![
                ("LLAMA_API_KEY", "your-llama-api-key"),
                ("LLAMA_BASE_URL", "https://your-llama-api-base/v1"),
            ],
        ),
        (
            "deepseek-chat",
            vec![("DEEPSEEK_API_KEY", "your-deepseek-api-key")],
        ),
        (
            "gemini-2.0-flash",
            vec![("GEMINI_API_KEY", "your-gemini-api-key")],
        ),
    ];
    for (turned_on, vars) in &lines {
        let env = load(vars);
        for id in shipped {
            assert_eq!(enabled(&env, id), id == *turned_on, "{id} with {vars:?}");
        }
    }
    let all: Vec<(&str, &str)> = lines.iter().flat_map(|(_, v)| v.clone()).collect();
    let env = load(&all);
    for id in shipped {
        assert!(enabled(&env, id), "{id} still disabled with its key");
    }
    // Gemini is reached on Google's OpenAI-compatible API, with the key as a bearer token.
    let gemini = env.find("gemini-2.0-flash").expect("gemini shipped");
    let route = &gemini.routes[0];
    let base = route.base_url.as_ref().expect("base url");
    assert_eq!(
        base.api_url("/chat/completions"),
        "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
    );
    assert_eq!(route.provider_model_id, "gemini-2.0-flash");
    assert_eq!(
        route.credentials().map(|(_, key)| key),
        Some("your-gemini-api-key")
    );
}

/// A request the router refuses itself still has its model in the request log, so the
/// README's `GROUP BY model_id` and `switchyard usage` count it there.
#[actix_rt::test]
async fn seed_001_refused_requests_are_counted_for_their_model() {
    let engine = start_mock(json!({}));
    let yaml = format!(
        r#"models:
  - id: tgi-embed
    type: embedding
    route: [{{kind: tgi, base_url: "{url}"}}]
  - id: keyless
    route: [{{kind: deepseek, optional: true, base_url: "{url}", api_key: "${{SEEDS_UNSET_KEY}}"}}]
  - id: tiny-tpm
    route: [{{kind: vllm, base_url: "{url}", tpm: 10}}]
"#,
        url = engine.url
    );
    // tiny-tpm must be served (200): one ready endpoint could be tgi-embed's.
    let router = start_router_settled(opts(&yaml)).await;
    let (status, _, _) = common::obs::post_with_id(
        &format!("{}/v1/embeddings", router.url),
        &json!({"model": "tgi-embed", "input": "x"}),
        "seed-501",
    )
    .await;
    assert_eq!(status, 501);
    let chat_url = format!("{}/v1/chat/completions", router.url);
    let (status, _, _) =
        common::obs::post_with_id(&chat_url, &chat_body("keyless", false), "seed-503").await;
    assert_eq!(status, 503);
    // A full bucket lets one request overdraw it; the next waits for it to refill.
    let mut big = chat_body("tiny-tpm", false);
    big["max_tokens"] = json!(4096);
    let (status, _, _) = common::obs::post_with_id(&chat_url, &big, "seed-tpm-first").await;
    assert_eq!(status, 200);
    let (status, _, _) = common::obs::post_with_id(&chat_url, &big, "seed-429").await;
    assert_eq!(status, 429);
    let db = common::obs::sqlite_path(&router);
    let mut router = router;
    assert_eq!(router.terminate(Duration::from_secs(20)), Some(0));
    let store = common::obs::open_sqlite(&db).await;
    let rows = common::obs::all_rows(&store).await;
    for (id, model, status) in [
        ("seed-501", "tgi-embed", 501),
        ("seed-503", "keyless", 503),
        ("seed-429", "tiny-tpm", 429),
    ] {
        let row = common::obs::row_for(&rows, id);
        assert_eq!(row.model_id.as_deref(), Some(model), "{row:?}");
        assert_eq!(row.status_code, status, "{row:?}");
    }
    let counts: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT model_id, COUNT(*) FROM api_logs GROUP BY model_id")
            .fetch_all(&store.pool)
            .await
            .expect("the README's query");
    for (model, requests) in [("tgi-embed", 1), ("keyless", 1), ("tiny-tpm", 2)] {
        assert!(
            counts
                .iter()
                .any(|(m, n)| m.as_deref() == Some(model) && *n == requests),
            "{model}: {counts:?}"
        );
    }
}

/// `curl /health`: liveness and dependency checks, as the README says.
#[actix_rt::test]
async fn seed_001_health_reports_its_dependencies() {
    let engine = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &engine.url, 1.0)]);
    let router = start_router(opts(&yaml));
    let (status, v) = get_json(&format!("{}/health", router.url))
        .await
        .expect("health");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "ok", "{v}");
    for dep in ["request_log", "job_store"] {
        assert_eq!(v["dependencies"][dep]["status"], "ok", "{v}");
        assert_eq!(v["dependencies"][dep]["database"], "sqlite", "{v}");
    }
    let off = start_router(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![("REQUEST_LOG_ENABLED", "false".into())],
    });
    let (_, v) = get_json(&format!("{}/health", off.url))
        .await
        .expect("health");
    assert_eq!(
        v["dependencies"]["request_log"]["status"], "disabled",
        "{v}"
    );
    assert_eq!(v["status"], "ok", "{v}");
}

// ------------------------------------------------------------------ seed 002: the platform

/// Registration as the platform writes it (`provider: self_hosted`, `engine`, `modelType`),
/// engines behind its CustomProvider serving what the model's type asks, and the TTS request
/// of its documentation, `"voice": "default"` included.
#[actix_rt::test]
async fn seed_002_self_hosted_registrations_serve_as_the_platform_documents() {
    let engine = start_mock(json!({}));
    let yaml = format!(
        r#"models:
  - id: llama-3.1-8b
    provider: self_hosted
    engine: vllm
    modelType: chat
    base_url: "{url}"
  - id: my-custom-model
    provider: self_hosted
    engine: custom
    modelType: chat
    base_url: "{url}"
  - id: chat-behind-whisper
    provider: self_hosted
    engine: whisper
    modelType: chat
    base_url: "{url}"
  - id: kokoro
    provider: self_hosted
    engine: tts-engine
    modelType: text_to_speech
    supported_voices: [af_heart, am_adam]
    base_url: "{url}"
"#,
        url = engine.url
    );
    // One endpoint per kind (vllm, custom, whisper, tts-engine), each probed: all must be up.
    let router = start_router_settled(opts(&yaml)).await;
    for model in ["llama-3.1-8b", "my-custom-model", "chat-behind-whisper"] {
        let (status, v) = chat(&router.url, &chat_body(model, false)).await;
        assert_eq!(status, 200, "{model}: {v}");
    }
    let (_, v) = get_json(&format!("{}/v1/models", router.url))
        .await
        .expect("models");
    let kokoro = v["data"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == "kokoro"))
        .cloned()
        .unwrap_or_default();
    assert!(!kokoro.is_null(), "{v}");
    // The platform's TTS request, as its documentation writes it.
    let request = json!({
        "input": "Text to speak",
        "voice": "default",
        "model": "kokoro",
        "response_format": "mp3",
        "speed": 1.0
    });
    let mut resp = client()
        .post(format!("{}/v1/audio/speech", router.url))
        .insert_header(("content-type", "application/json"))
        .send_body(request.to_string())
        .await
        .expect("speech");
    let body = resp.body().limit(1 << 24).await.expect("audio");
    assert_eq!(resp.status().as_u16(), 200, "{body:?}");
    assert!(!body.is_empty());
    // A voice the model does not offer is still refused.
    let mut other = request.clone();
    other["voice"] = json!("alloy");
    let (status, _, v) = post_json(&format!("{}/v1/audio/speech", router.url), &other).await;
    assert_openai_error(status, 400, &v);
}

/// OpenRouter's `links.details` of every listed model resolves, in OpenRouter's endpoint
/// shape, under `/api/v1` as written and under `/v1`; ids with a slash included.
#[actix_rt::test]
async fn seed_001_links_details_resolve_to_the_model_endpoints() {
    let engine = start_mock(json!({}));
    let yaml = format!(
        r#"models:
  - id: deepseek/deepseek-chat
    provider: deepseek
    context_length: 65536
    pricing: {{prompt: "0.00000027", completion: "0.0000011"}}
    route:
      - {{name: primary, kind: vllm, base_url: "{url}", api_key: sk-never-shown-01}}
      - {{name: spare, kind: vllm, base_url: "{url}/spare", weight: 0}}
"#,
        url = engine.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let (_, list) = get_json(&format!("{}/v1/models", router.url))
        .await
        .expect("models");
    let details = list["data"][0]["links"]["details"]
        .as_str()
        .expect("links.details")
        .to_string();
    assert_eq!(details, "/api/v1/models/deepseek/deepseek-chat/endpoints");
    for path in [details.clone(), details.replacen("/api/v1", "/v1", 1)] {
        let (status, v) = get_json(&format!("{}{path}", router.url))
            .await
            .expect("endpoints");
        assert_eq!(status, 200, "{path}: {v}");
        let data = &v["data"];
        assert_eq!(data["id"], "deepseek/deepseek-chat");
        let endpoints = data["endpoints"].as_array().expect("endpoints");
        // The weight-0 spare is configured but serves nothing: not an endpoint.
        assert_eq!(endpoints.len(), 1, "{v}");
        let e = &endpoints[0];
        assert_eq!(e["name"], "deepseek | deepseek/deepseek-chat");
        assert_eq!(e["provider_name"], "vllm");
        assert_eq!(e["tag"], "primary");
        assert_eq!(e["context_length"], 65536);
        assert_eq!(e["pricing"]["prompt"], "0.00000027");
        assert_eq!(e["status"], 0);
        let text = v.to_string();
        assert!(
            !text.contains("sk-never-shown-01") && !text.contains(&engine.url),
            "{text}"
        );
    }
    let (status, v) = get_json(&format!("{}/api/v1/models/nope/endpoints", router.url))
        .await
        .expect("404");
    assert_openai_error(status, 404, &v);
}

/// The catalogue's JSON entries carry their full Dockerfile, with the document's example
/// served name (`meta-llama/Llama-3.1-8B-Instruct` served as `llama-3.1-8b`).
#[actix_rt::test]
async fn seed_002_catalogue_entries_carry_their_dockerfile() {
    let engine = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &engine.url, 1.0)]);
    let router = start_router(opts(&yaml));
    let (status, v) = get_json(&format!("{}/v1/catalogue?engine=vllm", router.url))
        .await
        .expect("catalogue");
    assert_eq!(status, 200);
    let entries = v["data"].as_array().expect("entries");
    assert!(!entries.is_empty());
    for e in entries {
        let dockerfile = e["dockerfile"].as_str().unwrap_or_default();
        assert!(
            dockerfile.starts_with("FROM ") || dockerfile.contains("\nFROM "),
            "{}",
            e["id"]
        );
        let served = e["servedModelName"].as_str().expect("servedModelName");
        assert!(
            dockerfile.contains(&format!("\"--served-model-name\", \"{served}\"")),
            "{}: {dockerfile}",
            e["id"]
        );
    }
    let llama = entries
        .iter()
        .find(|e| e["huggingFaceId"] == "meta-llama/Llama-3.1-8B-Instruct")
        .expect("the document's example");
    assert_eq!(llama["servedModelName"], "llama-3.1-8b");
}
