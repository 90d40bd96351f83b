//! `/metrics` (checked by a real Prometheus parser), the admin API (auth, backends, routing
//! weight changes, usage) and the request id on every log line.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::obs::*;
use common::*;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "test-admin-key-0123";

fn admin_env() -> Vec<(&'static str, String)> {
    vec![
        ("ADMIN_API_KEY", ADMIN_KEY.into()),
        ("LOG_FLUSH_INTERVAL_MS", "50".into()),
    ]
}

async fn admin_get(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(url);
    if let Some(k) = key {
        req = req.insert_header(("authorization", format!("Bearer {k}")));
    }
    let mut resp = req.send().await.expect("admin request");
    let body = resp.body().limit(16 << 20).await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn admin_put(url: &str, body: &Value) -> (u16, Value) {
    let mut resp = client()
        .put(url)
        .insert_header(("authorization", format!("Bearer {ADMIN_KEY}")))
        .insert_header(("content-type", "application/json"))
        .send_body(body.to_string())
        .await
        .expect("admin put");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `/metrics` is in the admin scope (unless METRICS_PUBLIC=true), so scrape with the admin key.
async fn metrics_text(router: &str) -> String {
    let mut resp = client()
        .get(format!("{router}/metrics"))
        .insert_header(("authorization", format!("Bearer {ADMIN_KEY}")))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    String::from_utf8(resp.body().limit(16 << 20).await.unwrap().to_vec()).unwrap()
}

/// Check the exposition with `promtool check metrics`, then with Python's
/// `prometheus_client` parser; each is skipped (with a line saying so) when absent.
fn check_with_real_parsers(text: &str) -> usize {
    let mut checked = 0;
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // Lint notes (e.g. counters without _total) would be listed; errors fail.
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{report}"
            );
            checked += 1;
        }
        Err(_) => {
            println!("SKIP promtool check: `promtool` not installed (Debian package `prometheus`)")
        }
    }
    let script = r#"
import sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("NO_PROMETHEUS_CLIENT"); sys.exit(0)
n = 0
for fam in text_string_to_metric_families(sys.stdin.read()):
    n += len(fam.samples)
print("SAMPLES", n)
"#;
    match Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            if stdout.contains("NO_PROMETHEUS_CLIENT") {
                println!("SKIP prometheus_client parse: `pip install prometheus_client` to enable");
            } else {
                assert!(
                    out.status.success() && stdout.contains("SAMPLES"),
                    "prometheus_client could not parse the exposition: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
        Err(_) => println!("SKIP prometheus_client parse: python3 not found"),
    }
    checked
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[actix_rt::test]
async fn metrics_cover_the_contract_set_and_parse() {
    let good = start_mock(json!({"chunks": 4}));
    let bad = start_mock(json!({"fail_rate": 1.0, "fail_status": 500}));
    // The failing route is tried first (a tier above), so every request falls back.
    let yaml = format!(
        r#"models:
  - id: m
    pricing: {{prompt: "0.001", completion: "0.002"}}
    route:
      - {{name: flaky, kind: vllm, priority: 1, base_url: "{}", health_path: none}}
      - {{name: steady, kind: vllm, base_url: "{}", rpm: 1000}}
  - id: e
    type: embedding
    route:
      - {{kind: vllm, base_url: "{}"}}
"#,
        bad.url, good.url, good.url
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![
                ("CIRCUIT_FAILURE_THRESHOLD", "1000".into()),
                ("ADMIN_API_KEY", ADMIN_KEY.into()),
            ],
        },
        2,
    )
    .await;
    let chat = format!("{}/v1/chat/completions", router.url);
    for stream in [false, true, false] {
        let (status, _, _) = post_with_id(&chat, &chat_body("m", stream), "x").await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = post_json(
        &format!("{}/v1/embeddings", router.url),
        &json!({"model": "e", "input": "a b"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = post_json(&chat, &chat_body("unknown-model", false)).await;
    assert_eq!(status, 404);

    // A stream's record is written when its body ends, a moment after the client saw it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = metrics_text(&router.url).await;
        let done = sample(
            &text,
            r#"switchyard_fallbacks_total{model="m",outcome="success"}"#,
        );
        if done == Some(3.0) || std::time::Instant::now() > deadline {
            break text;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for name in [
        "switchyard_http_requests_total",
        "switchyard_requests_total",
        "switchyard_request_duration_seconds",
        "switchyard_upstream_request_duration_seconds",
        "switchyard_time_to_first_token_seconds",
        "switchyard_overhead_duration_seconds",
        "switchyard_tokens_total",
        "switchyard_in_flight_requests",
        "switchyard_upstream_errors_total",
        "switchyard_fallbacks_total",
        "switchyard_backend_up",
        "switchyard_backend_in_flight",
        "switchyard_backend_bucket_available",
        "switchyard_route_weight",
        "switchyard_cost_usd_total",
        "switchyard_request_log_rows_written_total",
    ] {
        // (Families whose labels have not been seen yet — rate limits, audio, images, video
        // jobs here — are left out of the exposition, as client libraries do; the unit tests
        // in src/metrics cover them.)
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "metric {name} missing from /metrics:\n{text}"
        );
    }
    let ok = r#"switchyard_requests_total{backend="vllm@"#;
    assert!(text.lines().any(|l| l.starts_with(ok)
        && l.contains(r#"model="m""#)
        && l.contains(r#"outcome="success""#)));
    assert_eq!(
        sample(
            &text,
            r#"switchyard_fallbacks_total{model="m",outcome="success"}"#
        ),
        Some(3.0)
    );
    assert!(
        text.contains(r#"error_type="upstream_error",status_code="502"}"#),
        "{text}"
    );
    assert!(text.contains(r#"switchyard_http_requests_total{method="POST",route="/v1/chat/completions",status_code="200"} 3"#));
    assert!(text.contains(r#"route="unmatched""#) || !text.contains("/v1/nope"));
    // Prompt 2 and completion 4 tokens per chat request at 0.001/0.002 = 0.01 each.
    let cost = sample(
        &text,
        r#"switchyard_cost_usd_total{api_key_id="-",model="m"}"#,
    )
    .unwrap();
    assert!((cost - 0.03).abs() < 1e-9, "{cost}");
    assert!(text.contains(r#"type="completion"} 12"#), "{text}");
    // Labels stay bounded: no request ids, no raw paths of unknown models.
    assert!(!text.contains("unknown-model") && !text.contains("req_"));
    let parsers = check_with_real_parsers(&text);
    println!("/metrics accepted by {parsers} real parser(s)");
}

#[actix_rt::test]
async fn admin_needs_its_key_and_never_shows_secrets() {
    let mock = start_mock(json!({"require_api_key": "sk-route-secret-999"}));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - kind: openai\n        base_url: \"http://127.0.0.1:{}/v1?token=abc\"\n        api_key: sk-route-secret-999\n        health_path: /health\n        rpm: 600\n        tpm: 100000\n",
        mock.url.rsplit(':').next().unwrap()
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: admin_env(),
        },
        1,
    )
    .await;
    let url = format!("{}/admin/backends", router.url);
    let (status, body) = admin_get(&url, None).await;
    assert_openai_error(status, 401, &body);
    let (status, body) = admin_get(&url, Some("wrong")).await;
    assert_openai_error(status, 401, &body);
    assert_eq!(body["error"]["code"], "invalid_api_key");

    assert_eq!(
        post_json(
            &format!("{}/v1/chat/completions", router.url),
            &chat_body("m", false)
        )
        .await
        .0,
        200
    );
    // The endpoint's counters are updated by its actor a moment after the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body) = admin_get(&url, Some(ADMIN_KEY)).await;
        if body["data"][0]["requests_total"] == 1 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("sk-route-secret-999")
            && !text.contains("pw@")
            && !text.contains("token=abc"),
        "{text}"
    );
    let ep = &body["data"][0];
    assert_eq!(ep["health"], "ready");
    assert_eq!(ep["circuit"], "closed");
    assert_eq!(ep["has_credentials"], true);
    assert_eq!(ep["requests_total"], 1);
    assert!(ep["rpm"]["capacity"].as_f64() == Some(600.0));
    assert!(ep["tpm"]["available"].as_f64().is_some());
    assert_eq!(ep["routes"][0]["model"], "m");

    // The status page's data and the (empty, table-less) video job list.
    let (status, body) = admin_get(&format!("{}/admin/status", router.url), Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    assert!(body["timeline"]["points"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    assert_eq!(body["video_jobs"], json!([]));
    let (status, body) =
        admin_get(&format!("{}/admin/video-jobs", router.url), Some(ADMIN_KEY)).await;
    assert_eq!((status, body["data"].clone()), (200, json!([])));
    // /metrics stays public and secret-free.
    let text = metrics_text(&router.url).await;
    assert!(!text.contains("sk-route-secret-999"));
}

#[actix_rt::test]
async fn admin_is_off_without_a_configured_key() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router(RouterOpts {
        models_yaml: &yaml,
        routing_yaml: None,
        env: vec![],
    });
    let (status, body) =
        admin_get(&format!("{}/admin/routing", router.url), Some("anything")).await;
    assert_openai_error(status, 403, &body);
    assert_eq!(body["error"]["code"], "admin_disabled");
}

#[actix_rt::test]
async fn weights_change_at_run_time_and_persist_to_routing_yaml() {
    let a = start_mock(json!({}));
    let b = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: m\n    aliases: [nick]\n    route:\n      - {{name: first, kind: vllm, weight: 1, base_url: \"{}\"}}\n      - {{name: second, kind: vllm, weight: 0, base_url: \"{}\"}}\n",
        a.url, b.url
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: Some("health_check: 0.2\n"),
            env: admin_env(),
        },
        2,
    )
    .await;
    let routing = format!("{}/admin/routing", router.url);
    let (status, view) = admin_get(&routing, Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    let routes = &view["models"][0]["routes"];
    assert_eq!(
        (routes[0]["weight"].clone(), routes[1]["weight"].clone()),
        (json!(1.0), json!(0.0))
    );
    assert_eq!(routes[0]["share"], 1.0);

    // Bad changes are refused whole, in OpenAI's shape.
    let (status, body) = admin_put(&routing, &json!({"weights": {"m": {"second": -1}}})).await;
    assert_openai_error(status, 400, &body);
    let (status, body) = admin_put(&routing, &json!({"weights": {"m": {"third": 1}}})).await;
    assert_openai_error(status, 400, &body);
    let (status, body) = admin_put(&routing, &json!({"weights": {"zzz": {"first": 1}}})).await;
    assert_openai_error(status, 404, &body);

    // Flip the traffic to the second route, by alias and route name, and persist.
    let (status, view) = admin_put(
        &routing,
        &json!({"weights": {"nick": {"first": 0, "second": 2.5}}, "persist": true}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["persisted"], true);
    assert_eq!(view["models"][0]["routes"][1]["weight"], 2.5);
    let before = mock_stats(&b).await["requests_by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0);
    for _ in 0..10 {
        assert_eq!(
            post_json(
                &format!("{}/v1/chat/completions", router.url),
                &chat_body("m", false)
            )
            .await
            .0,
            200
        );
    }
    let after = mock_stats(&b).await["requests_by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(after - before, 10, "all traffic moved to the second route");
    let a_chats = mock_stats(&a).await["requests_by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(a_chats, 0);

    // routing.yaml keeps its other keys and gains the weights; it loads back the same.
    let (file, doc, reloaded) = persisted_routing(&router, &yaml);
    assert_eq!(doc["health_check"].as_f64(), Some(0.2), "{file}");
    assert_eq!(doc["weights"]["m"]["second"].as_f64(), Some(2.5), "{file}");
    assert_eq!(doc["weights"]["m"]["first"].as_f64(), Some(0.0), "{file}");
    assert_eq!(reloaded.models[0].routes[1].weight, 2.5);

    // The metrics show the weights in force.
    let text = metrics_text(&router.url).await;
    assert!(
        text.contains(r#"switchyard_route_weight{model="m",route="second"} 2.5"#),
        "{text}"
    );
}

#[actix_rt::test]
async fn usage_view_aggregates_by_model_key_and_period() {
    let mock = start_mock(json!({"chunks": 3}));
    let yaml = format!(
        "models:\n  - id: a\n    pricing: {{completion: \"0.01\"}}\n    route:\n      - {{kind: vllm, base_url: \"{0}\"}}\n  - id: b\n    route:\n      - {{kind: vllm, base_url: \"{0}\"}}\n",
        mock.url
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: admin_env(),
        },
        1,
    )
    .await;
    let chat = format!("{}/v1/chat/completions", router.url);
    for (model, n) in [("a", 3), ("b", 2)] {
        for _ in 0..n {
            assert_eq!(post_json(&chat, &chat_body(model, false)).await.0, 200);
        }
    }
    let store = open_sqlite(&sqlite_path(&router)).await;
    wait_rows(&store, 5).await;
    let (status, body) = admin_get(
        &format!(
            "{}/admin/usage?by=model,key,period&period=hour&since=1h",
            router.url
        ),
        Some(ADMIN_KEY),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["group_by"], json!(["model", "key", "period"]));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{body}");
    let a = data.iter().find(|r| r["model_id"] == "a").unwrap();
    assert_eq!(a["requests"], 3);
    assert_eq!(a["completion_tokens"], 9);
    assert_eq!(a["api_key_id"], "-");
    assert!((a["cost_usd"].as_f64().unwrap() - 0.09).abs() < 1e-9);
    assert!(a["period_start_ms"].as_i64().unwrap() % 3_600_000 == 0);
    let (status, body) = admin_get(
        &format!("{}/admin/usage?period=fortnight", router.url),
        Some(ADMIN_KEY),
    )
    .await;
    assert_openai_error(status, 400, &body);
    let (status, body) =
        admin_get(&format!("{}/admin/usage?by=", router.url), Some(ADMIN_KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["requests"], 5, "one total row");
}

/// Serve one model in front of a mock with `env` (stderr piped), send one chat request with
/// the request id `request_id`, stop the router and return every line it wrote to stderr.
async fn stderr_lines_of_one_request(env: &[(&str, &str)], request_id: &str) -> Vec<String> {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: m\n    supported_params: [max_tokens]\n    route:\n      - {{kind: vllm, base_url: \"{}\"}}\n",
        mock.url
    );
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models.yaml");
    std::fs::write(&models, &yaml).unwrap();
    let mut child = Command::new(bin("switchyard"))
        .current_dir(dir.path())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(&models)
        .envs(env.iter().copied())
        .env("HEALTH_CHECK_INTERVAL_SECS", "0.2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let url = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("switchyard listening on ")
                .map(str::to_string)
        })
        .unwrap();
    wait_ready(&url, 1).await;
    let mut body = chat_body("m", true);
    body["top_k"] = json!(3); // not supported: the handler logs that it dropped it (debug)
    let (status, _, _) =
        post_with_id(&format!("{url}/v1/chat/completions"), &body, request_id).await;
    assert_eq!(status, 200);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());
    lines.join().unwrap()
}

#[actix_rt::test]
async fn every_log_line_of_a_request_carries_its_request_id() {
    let env = [
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info,switchyard::api=debug"),
    ];
    let lines = stderr_lines_of_one_request(&env, "trace-me-42").await;
    let mine: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains("trace-me-42"))
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert!(
        mine.len() >= 2,
        "expected the debug line and the finish line: {lines:#?}"
    );
    for line in &mine {
        assert_eq!(line["span"]["request_id"], "trace-me-42", "{line}");
    }
    assert!(mine
        .iter()
        .any(|l| l["fields"]["message"] == "request finished"));
    assert!(mine.iter().any(|l| l["fields"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("dropping parameter")));
}

/// Text lines written to a pipe or a file (a container's log stream) carry no terminal colour
/// codes, at the default level and at debug: whoever reads them gets plain `key=value` text.
#[actix_rt::test]
async fn text_log_lines_to_a_pipe_are_plain_text() {
    // `info` is the level when RUST_LOG is unset.
    for level in ["info", "debug"] {
        let env = [("LOG_FORMAT", "text"), ("RUST_LOG", level)];
        let lines = stderr_lines_of_one_request(&env, "plain-text-7").await;
        let finish = lines
            .iter()
            .find(|l| l.contains("request finished"))
            .unwrap_or_else(|| panic!("the finish line at {level}: {lines:#?}"));
        assert!(
            finish.contains("request_id=plain-text-7") && finish.contains("status=200"),
            "{finish}"
        );
        let coloured: Vec<&String> = lines.iter().filter(|l| l.contains('\u{1b}')).collect();
        assert!(
            coloured.is_empty(),
            "escape codes at {level}: {coloured:#?}"
        );
    }
}
