//! Who may call: client keys on `/v1`, admin keys on `/admin/*` and `/metrics`, per-key model
//! lists and limits, and what is (not) sent to backends.

use crate::common;

use common::*;
use serde_json::{json, Value};

fn opts<'a>(yaml: &'a str, env: Vec<(&'a str, String)>) -> RouterOpts<'a> {
    RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env,
    }
}

async fn chat_with(router: &str, key: Option<&str>, model: &str) -> (u16, Value) {
    let (status, _, v) = send_with_key(
        "POST",
        &format!("{router}/v1/chat/completions"),
        key,
        Some(&chat_body(model, false)),
    )
    .await;
    (status, v)
}

#[actix_rt::test]
async fn v1_needs_a_valid_bearer_key_when_keys_are_configured() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(
        opts(
            &yaml,
            vec![("API_KEYS", "sk-alpha-123, sk-beta-456".into())],
        ),
        1,
    )
    .await;
    let url = format!("{}/v1/chat/completions", router.url);
    let body = chat_body("m", false);
    for (key, expected) in [
        (None, 401),
        (Some("wrong-key"), 401),
        (Some("sk-alpha-12"), 401),
        (Some("sk-alpha-123"), 200),
        (Some("sk-beta-456"), 200),
    ] {
        let (status, headers, v) = send_with_key("POST", &url, key, Some(&body)).await;
        if expected == 401 {
            assert_openai_error(status, 401, &v);
            assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
            assert_eq!(v["error"]["type"], "invalid_request_error");
            assert!(headers.get("www-authenticate").is_some());
            assert!(headers.get("x-request-id").is_some());
        } else {
            assert_eq!(status, 200, "{key:?}: {v}");
        }
    }
    // The same check on every /v1 path, OpenRouter's prefix included; /health stays open.
    for path in [
        "/v1/models",
        "/api/v1/models",
        "/v1/models/m",
        "/api/v1/chat/completions",
    ] {
        let (status, _, v) =
            send_with_key("GET", &format!("{}{path}", router.url), None, None).await;
        assert_openai_error(status, 401, &v);
    }
    let (status, _) = get_json(&format!("{}/health", router.url))
        .await
        .expect("health");
    assert_eq!(status, 200);
    // A scheme other than Bearer is not a key.
    let resp = client()
        .get(format!("{}/v1/models", router.url))
        .insert_header(("authorization", "Basic c2stYWxwaGEtMTIz"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    // Only two requests reached the backend.
    let stats = mock_stats(&mock).await;
    assert_eq!(stats["requests_by_path"]["/v1/chat/completions"], 2);
}

#[actix_rt::test]
async fn admin_scope_needs_an_admin_key_and_refuses_client_keys() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(
        opts(
            &yaml,
            vec![
                ("API_KEYS", "sk-client-1".into()),
                ("ADMIN_API_KEY", "adm-secret-1".into()),
            ],
        ),
        1,
    )
    .await;
    let reload = format!("{}/admin/reload", router.url);
    let (status, _, v) = send_with_key("POST", &reload, None, None).await;
    assert_openai_error(status, 401, &v);
    let (status, _, v) = send_with_key("POST", &reload, Some("nope-nope"), None).await;
    assert_openai_error(status, 401, &v);
    let (status, _, v) = send_with_key("POST", &reload, Some("sk-client-1"), None).await;
    assert_openai_error(status, 403, &v);
    assert_eq!(v["error"]["code"], "admin_key_required");
    assert_eq!(v["error"]["type"], "permission_error");
    let (status, _, v) = send_with_key("POST", &reload, Some("adm-secret-1"), None).await;
    assert_eq!(status, 200, "{v}");
    // Any /admin path and /metrics go through the same check, whatever serves them.
    for path in ["/admin/backends", "/admin/anything/else", "/metrics"] {
        let url = format!("{}{path}", router.url);
        let (status, _, v) = send_with_key("GET", &url, Some("sk-client-1"), None).await;
        assert_openai_error(status, 403, &v);
        let (status, _, _) = send_with_key("GET", &url, Some("adm-secret-1"), None).await;
        assert!(status != 401 && status != 403, "{path}: {status}");
    }
    // The admin key also works on /v1.
    assert_eq!(
        chat_with(&router.url, Some("adm-secret-1"), "m").await.0,
        200
    );
}

#[actix_rt::test]
async fn admin_is_disabled_without_an_admin_key_and_metrics_can_be_public() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(opts(&yaml, vec![("METRICS_PUBLIC", "true".into())]), 1).await;
    let (status, _, v) =
        send_with_key("POST", &format!("{}/admin/reload", router.url), None, None).await;
    assert_openai_error(status, 403, &v);
    assert_eq!(v["error"]["code"], "admin_disabled");
    // METRICS_PUBLIC: /metrics needs no key.
    let (status, _, _) = send_with_key("GET", &format!("{}/metrics", router.url), None, None).await;
    assert_eq!(status, 200);
    // No client keys: /v1 is open.
    assert_eq!(chat_with(&router.url, None, "m").await.0, 200);
}

#[actix_rt::test]
async fn keys_file_names_model_lists_and_per_key_limits() {
    let a = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: open-m\n    aliases: [open-alias]\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n  - id: local/one\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n  - id: secret-m\n    aliases: [innocent]\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n",
        a.url
    );
    let keys = "keys:\n  - name: team-a\n    key: ${TEAM_A_KEY}\n    models: [open-m, \"local/*\"]\n    rpm: 6\n  - name: tokens\n    key: tok-key-123\n    tpm: 5\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_path = dir.path().join("keys.yaml");
    std::fs::write(&keys_path, keys).expect("write keys");
    let router = start_router_ready(
        opts(
            &yaml,
            vec![
                ("KEYS_FILE", keys_path.display().to_string()),
                ("TEAM_A_KEY", "team-a-secret".into()),
            ],
        ),
        1,
    )
    .await;
    let team = Some("team-a-secret");
    assert_eq!(chat_with(&router.url, team, "open-alias").await.0, 200);
    // The key sees only its models.
    let mut listed = model_ids(&router.url, team).await;
    listed.sort();
    assert_eq!(listed, vec!["local/one", "open-m"]);
    let (status, _, v) = send_with_key(
        "GET",
        &format!("{}/v1/models/secret-m", router.url),
        team,
        None,
    )
    .await;
    assert_openai_error(status, 404, &v);
    assert_eq!(chat_with(&router.url, team, "local/one").await.0, 200);
    // Not on the list, by id or by alias: 403 before any backend is asked.
    let before = mock_stats(&a).await["requests_by_path"]["/v1/chat/completions"].clone();
    for name in ["secret-m", "innocent"] {
        let (status, v) = chat_with(&router.url, team, name).await;
        assert_openai_error(status, 403, &v);
        assert_eq!(v["error"]["code"], "model_not_allowed");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("team-a"));
    }
    assert_eq!(
        mock_stats(&a).await["requests_by_path"]["/v1/chat/completions"],
        before
    );
    // rpm 6: two chats, two model lookups and two refusals; the next is limited.
    let (status, headers, v) = send_with_key(
        "POST",
        &format!("{}/v1/chat/completions", router.url),
        team,
        Some(&chat_body("open-m", false)),
    )
    .await;
    assert_openai_error(status, 429, &v);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    // Buckets are per key: team-a is limited, this key is not. tpm 5: its first request is
    // admitted and charged its real usage (about 10 tokens); the key then waits.
    assert_eq!(
        chat_with(&router.url, Some("tok-key-123"), "open-m")
            .await
            .0,
        200
    );
    let (status, v) = chat_with(&router.url, Some("tok-key-123"), "open-m").await;
    assert_openai_error(status, 429, &v);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("`tokens`"));
}

#[actix_rt::test]
async fn outbound_credentials_backend_api_key_and_no_client_headers() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: default-key\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n  - id: own-key\n    route: [{{kind: vllm, base_url: \"{0}/v1\", api_key: route-key-1}}]\n  - id: no-key\n    route: [{{kind: vllm, base_url: \"{0}/\", api_key: none}}]\n",
        mock.url
    );
    let router = start_router_settled(opts(
        &yaml,
        vec![
            ("BACKEND_API_KEY", "backend-default-key".into()),
            ("API_KEYS", "client-key-1".into()),
        ],
    ))
    .await;
    for (model, expected) in [
        ("default-key", Some("Bearer backend-default-key")),
        ("own-key", Some("Bearer route-key-1")),
        ("no-key", None),
    ] {
        let resp = client()
            .post(format!("{}/v1/chat/completions", router.url))
            .insert_header(("authorization", "Bearer client-key-1"))
            .insert_header(("cookie", "session=abc"))
            .insert_header(("x-api-key", "client-x-key"))
            .insert_header(("proxy-authorization", "Basic Zm9vOmJhcg=="))
            .insert_header(("x-forwarded-for", "203.0.113.7"))
            .insert_header(("http-referer", "https://app.example"))
            .send_json(&chat_body(model, false))
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{model}");
        let seen = mock_stats(&mock).await["last_request"]["headers"].clone();
        assert_eq!(seen["authorization"].as_str(), expected, "{model}: {seen}");
        for leaked in [
            "cookie",
            "x-api-key",
            "proxy-authorization",
            "x-forwarded-for",
        ] {
            assert!(
                seen.get(leaked).is_none(),
                "{model}: {leaked} was forwarded: {seen}"
            );
        }
        let all = seen.to_string();
        assert!(!all.contains("client-key-1"), "client key leaked: {all}");
        // OpenRouter attribution is meant to travel.
        assert_eq!(seen["http-referer"], "https://app.example");
    }
}

#[actix_rt::test]
async fn logs_name_keys_and_never_print_them_and_an_open_router_says_so() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mock = start_mock(json!({}));
    let dir = tempfile::tempdir().expect("tempdir");
    let models = dir.path().join("models.yaml");
    std::fs::write(&models, chat_model_yaml("m", &[("vllm", &mock.url, 1.0)])).expect("write");
    let start = |env: &[(&str, &str)], log: &std::path::Path| {
        let mut cmd = Command::new(bin("switchyard"));
        cmd.current_dir(dir.path())
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&models)
            .env("RUST_LOG", "info")
            .env("HEALTH_CHECK_INTERVAL_SECS", "0.2")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).expect("log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().expect("listening line").expect("read");
            if let Some(url) = line.strip_prefix("switchyard listening on ") {
                break url.trim().to_string();
            }
        };
        (child, url)
    };

    let keyed_log = dir.path().join("keyed.log");
    let (mut child, url) = start(&[("API_KEYS", "very-secret-client-key")], &keyed_log);
    wait_ready(&url, 1).await;
    assert_eq!(
        chat_with(&url, Some("very-secret-client-key"), "m").await.0,
        200
    );
    assert_eq!(chat_with(&url, Some("wrong-secret-key"), "m").await.0, 401);
    let id = format!(
        "key-{}",
        switchyard::auth::digest("very-secret-client-key")[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // The request record is logged as the request ends, which may be after the client has
    // its answer: wait for it rather than for a fixed time.
    eventually(
        std::time::Duration::from_secs(10),
        "the request record in the log",
        || async { std::fs::read_to_string(&keyed_log).is_ok_and(|log| log.contains(&id)) },
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&keyed_log).expect("log");
    assert!(
        !log.contains("very-secret-client-key"),
        "key in logs:\n{log}"
    );
    assert!(
        !log.contains("wrong-secret-key"),
        "presented key in logs:\n{log}"
    );
    assert!(!log.contains("/v1 is OPEN"));

    let open_log = dir.path().join("open.log");
    let (mut child, _url) = start(&[], &open_log);
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&open_log).expect("log");
    assert!(
        log.contains("no client keys configured: /v1 is open, listening on loopback only"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// Scopes cannot be passed by spelling a path differently: every wire form of a protected path
// either is refused (400 `invalid_path`), finds no route (404), or meets its own scope's check.

/// One request written to the socket exactly as given (request target untouched by any client
/// library); returns the status code.
fn raw_status(router: &str, method: &str, target: &str, key: Option<&str>, body: &str) -> u16 {
    use std::io::{Read, Write};
    let authority = router.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .expect("timeout");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let head = String::from_utf8_lossy(&response);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {method} {target}: {head}"))
}

/// The protected endpoints of each scope: (method, canonical path, body).
const CLIENT_PATHS: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/v1/chat/completions",
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    ),
    (
        "POST",
        "/api/v1/chat/completions",
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    ),
    ("GET", "/v1/models", ""),
    ("GET", "/api/v1/models", ""),
    ("GET", "/v1/video/generations", ""),
    ("POST", "/v1/completions", r#"{"model":"m","prompt":"hi"}"#),
    (
        "POST",
        "/api/v1/completions",
        r#"{"model":"m","prompt":"hi"}"#,
    ),
    ("POST", "/v1/responses", RESPONSES_BODY),
    ("POST", "/api/v1/ai/responses", RESPONSES_BODY),
    ("POST", "/v1/rerank", RERANK_BODY),
    ("POST", "/rerank", RERANK_BODY),
    ("POST", "/v2/rerank", RERANK_BODY),
    ("POST", "/api/v1/rerank", RERANK_BODY),
    (
        "POST",
        "/api/v1/ai/chat/completions",
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
    ),
    (
        "POST",
        "/api/v1/ai/embeddings",
        r#"{"model":"emb","input":"hi"}"#,
    ),
    ("POST", "/v1/generations/images", IMAGE_BODY),
    ("POST", "/api/v1/ai/generations/images", IMAGE_BODY),
    ("GET", "/v1/generations/videos", ""),
    ("GET", "/api/v1/ai/generations/videos", ""),
    ("GET", "/api/v1/ai/models", ""),
];
const RESPONSES_BODY: &str = r#"{"model":"m","input":"hi"}"#;
const RERANK_BODY: &str = r#"{"model":"rr","query":"q","documents":["q a","b"]}"#;
const IMAGE_BODY: &str = r#"{"model":"img","prompt":"a cat","response_format":"b64_json"}"#;
const ADMIN_PATHS: &[(&str, &str, &str)] = &[
    ("GET", "/admin/backends", ""),
    ("GET", "/admin/usage", ""),
    ("GET", "/metrics", ""),
    (
        "PUT",
        "/admin/routing",
        r#"{"weights":{"m":{"r0":0}},"persist":true}"#,
    ),
    ("POST", "/admin/reload", ""),
];

fn percent(c: char, upper: bool) -> String {
    if upper {
        format!("%{:02X}", c as u32)
    } else {
        format!("%{:02x}", c as u32)
    }
}

/// Every other wire spelling of `path` we could think of.
fn spellings(path: &str, authority: &str) -> Vec<String> {
    let chars: Vec<char> = path.chars().collect();
    let mut out = Vec::new();
    let replace_at = |at: usize, with: &str| -> String {
        chars[..at].iter().collect::<String>() + with + &chars[at + 1..].iter().collect::<String>()
    };
    for (at, &c) in chars.iter().enumerate() {
        if c == '/' {
            if at > 0 {
                out.push(replace_at(at, "%2F"));
                out.push(replace_at(at, "%2f"));
                out.push(replace_at(at, "//"));
                out.push(replace_at(at, "/./"));
                out.push(replace_at(at, "/x/../"));
                out.push(replace_at(at, "/%2e/"));
                out.push(replace_at(at, "/%2E%2E/x/"));
                out.push(replace_at(at, "\\"));
                out.push(replace_at(at, "%5c"));
            }
            continue;
        }
        out.push(replace_at(at, &percent(c, false)));
        out.push(replace_at(at, &percent(c, true)));
        // Double and triple encoding.
        out.push(replace_at(at, &format!("%25{:02x}", c as u32)));
        out.push(replace_at(at, &format!("%2525{:02X}", c as u32)));
        out.push(replace_at(at, &c.to_ascii_uppercase().to_string()));
    }
    let all: String = chars
        .iter()
        .map(|&c| {
            if c == '/' {
                "/".to_string()
            } else {
                percent(c, true)
            }
        })
        .collect();
    out.push(all);
    for prefix in [
        "/",
        "/.",
        "/x/..",
        "/v1/..",
        "/api/v1/..",
        "/%2e%2e",
        "/health/..",
    ] {
        out.push(format!("{prefix}{path}"));
    }
    out.push(format!("{path}/"));
    out.push(format!("{path}/."));
    out.push(format!("{path}?x=1"));
    // Absolute-form request targets, plain and disguised.
    out.push(format!("http://{authority}{path}"));
    out.push(format!(
        "http://{authority}{}",
        replace_at(1, &percent(chars[1], false))
    ));
    out.push(format!("http://{authority}/.{path}"));
    out
}

async fn assert_no_spelling_passes(
    router: &Router,
    paths: &[(&str, &str, &str)],
    keys: &[Option<&str>],
) {
    let authority = router.url.trim_start_matches("http://").to_string();
    let url = router.url.clone();
    let paths: Vec<(String, String, String)> = paths
        .iter()
        .map(|(m, p, b)| (m.to_string(), p.to_string(), b.to_string()))
        .collect();
    let keys: Vec<Option<String>> = keys.iter().map(|k| k.map(str::to_string)).collect();
    actix_rt::task::spawn_blocking(move || {
        for (method, path, body) in &paths {
            for target in spellings(path, &authority) {
                for key in &keys {
                    let status = raw_status(&url, method, &target, key.as_deref(), body);
                    assert!(
                        !(200..300).contains(&status),
                        "{method} {target} with key {key:?} answered {status}"
                    );
                }
            }
        }
    })
    .await
    .expect("spellings thread");
}

/// A router for models `m` (chat), `emb`, `rr` (rerank) and `img` on `mock` with client key
/// `sk-client-1234` and admin key `adm-secret-1234`.
async fn router_with_both_keys(mock: &Proc, routing_yaml: Option<&str>) -> Router {
    let mut yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    for (id, model_type) in [("emb", "embedding"), ("rr", "rerank"), ("img", "image")] {
        yaml.push_str(&format!(
            "  - id: {id}\n    type: {model_type}\n    route: [{{kind: vllm, base_url: \"{}\"}}]\n",
            mock.url
        ));
    }
    start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml,
            env: vec![
                ("API_KEYS", "sk-client-1234".into()),
                ("ADMIN_API_KEY", "adm-secret-1234".into()),
            ],
        },
        1,
    )
    .await
}

#[actix_rt::test]
async fn no_spelling_of_a_path_passes_a_scope_without_its_key() {
    let mock = start_mock(json!({}));
    let router = router_with_both_keys(&mock, Some("weights: {}\n")).await;
    let routing_before = std::fs::read_to_string(router.dir.path().join("routing.yaml")).ok();
    // Controls: the canonical forms answer 2xx with the right key, so the refusals below are
    // about the spelling, not a broken endpoint.
    let url = router.url.clone();
    actix_rt::task::spawn_blocking(move || {
        for (method, path, body) in CLIENT_PATHS {
            let status = raw_status(&url, method, path, Some("sk-client-1234"), body);
            assert!((200..300).contains(&status), "{method} {path}: {status}");
        }
        for (method, path, body) in ADMIN_PATHS {
            if *method == "GET" {
                let status = raw_status(&url, method, path, Some("adm-secret-1234"), body);
                assert!((200..300).contains(&status), "{method} {path}: {status}");
            }
        }
        for path in ["/health", "/openapi.yaml", "/ui"] {
            assert_eq!(raw_status(&url, "GET", path, None, ""), 200, "{path}");
        }
        // A disguised path is refused outright, even with the right key.
        for target in ["/%61dmin/backends", "/%6detrics", "/v%31/models"] {
            assert_eq!(
                raw_status(&url, "GET", target, Some("adm-secret-1234"), ""),
                400,
                "{target}"
            );
        }
    })
    .await
    .expect("controls");
    // Client scope: no key, a wrong key.
    assert_no_spelling_passes(&router, CLIENT_PATHS, &[None, Some("wrong-key-123")]).await;
    // Admin scope: no key, a wrong key, a client key.
    assert_no_spelling_passes(
        &router,
        ADMIN_PATHS,
        &[None, Some("wrong-key-123"), Some("sk-client-1234")],
    )
    .await;
    // Nothing was persisted by any spelling of PUT /admin/routing.
    let routing_after = std::fs::read_to_string(router.dir.path().join("routing.yaml")).ok();
    assert_eq!(routing_before, routing_after);
    // The model still answers (no reload disabled it).
    assert_eq!(
        chat_with(&router.url, Some("sk-client-1234"), "m").await.0,
        200
    );
}

#[actix_rt::test]
async fn no_spelling_reaches_the_admin_api_when_it_is_off() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    // Client keys but no admin key: the admin scope is closed to everyone.
    let router =
        start_router_ready(opts(&yaml, vec![("API_KEYS", "sk-client-1234".into())]), 1).await;
    assert_no_spelling_passes(&router, ADMIN_PATHS, &[None, Some("sk-client-1234")]).await;
}

#[actix_rt::test]
async fn generated_encodings_of_protected_paths_never_pass() {
    use proptest::strategy::{Strategy, ValueTree};
    let mock = start_mock(json!({}));
    let router = router_with_both_keys(&mock, None).await;
    // Each character of a protected path kept, percent-encoded (either case), double-encoded,
    // or followed by a dot segment or an extra slash; the whole possibly in absolute form.
    let protected: Vec<(&str, &str, &str)> =
        CLIENT_PATHS.iter().chain(ADMIN_PATHS).copied().collect();
    let strategy = (
        proptest::sample::select(protected),
        proptest::collection::vec(0u8..8, 24),
        proptest::bool::ANY,
    );
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let authority = router.url.trim_start_matches("http://").to_string();
    let mut cases = Vec::new();
    for _ in 0..300 {
        let ((method, path, body), choices, absolute) =
            strategy.new_tree(&mut runner).expect("case").current();
        let mut target = String::new();
        for (n, c) in path.chars().enumerate() {
            let choice = choices[n % choices.len()];
            match (c, choice) {
                ('/', 0) => target.push_str("%2F"),
                ('/', 1) => target.push_str("//"),
                ('/', 2) => target.push_str("/./"),
                ('/', 3) => target.push_str("/../v1/"),
                ('/', _) => target.push('/'),
                (c, 0) => target.push_str(&percent(c, false)),
                (c, 1) => target.push_str(&percent(c, true)),
                (c, 2) => target.push_str(&format!("%25{:02X}", c as u32)),
                (c, _) => target.push(c),
            }
        }
        if target == path {
            continue;
        }
        if absolute {
            target = format!("http://{authority}{target}");
        }
        cases.push((method, target, body));
    }
    let url = router.url.clone();
    actix_rt::task::spawn_blocking(move || {
        assert!(
            cases.len() > 200,
            "too few generated cases: {}",
            cases.len()
        );
        for (method, target, body) in cases {
            for key in [None, Some("sk-client-1234")] {
                // Every generated form is non-canonical, so even a key of the right scope
                // gets no 2xx for it.
                let status = raw_status(&url, method, &target, key, body);
                assert!(
                    !(200..300).contains(&status),
                    "{method} {target} with key {key:?} answered {status}"
                );
            }
        }
    })
    .await
    .expect("generated cases");
}
