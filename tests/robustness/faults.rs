//! The fault matrix: every way the mock engine can fail, against a router that can fall back
//! (faulty route a tier above the healthy one, so always tried first) and one that cannot
//! (faulty route only).
//! For each: what the client gets, whether the fallback route answered, and that every lease
//! is released afterwards (`/health` → `endpoints.in_flight` back to 0).

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Every fault field of the mock at its default, to clear a case.
fn no_faults() -> Value {
    json!({
        "fail_rate": 0.0, "fail_status": 500, "retry_after": null, "error_event_first": false,
        "die_after_chunks": null, "invalid_json": false, "hang": "none", "hang_ms": 600000,
        "slow_drip_ms": 0, "reset_before_headers": false, "chunks": 8, "health": "ok",
        "latency_ms": 0, "chunk_interval_ms": 0,
    })
}

fn resilient_env() -> Vec<(&'static str, String)> {
    vec![
        // The matrix judges each fault alone: no circuit, no retry budget in the way.
        ("CIRCUIT_FAILURE_THRESHOLD", "100000".into()),
        ("CIRCUIT_ERROR_RATIO", "0".into()),
        ("RETRY_BUDGET_PER_SEC", "1000".into()),
        ("UPSTREAM_HEADERS_TIMEOUT_SECS", "1".into()),
        ("UPSTREAM_IDLE_TIMEOUT_SECS", "1".into()),
    ]
}

/// What the client got.
#[derive(Debug)]
struct Got {
    status: u16,
    retry_after: Option<String>,
    /// JSON body (non-streamed or error answers).
    body: Value,
    /// `data:` payloads of a 200 stream.
    events: Vec<String>,
}

impl Got {
    fn content_chunks(&self) -> usize {
        self.events.iter().filter(|d| d.contains("word")).count()
    }
    fn error_event(&self) -> Option<Value> {
        self.events
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| v.get("error").is_some())
    }
}

async fn ask(router: &str, stream: bool) -> Got {
    let mut resp = client()
        .post(format!("{router}/v1/chat/completions"))
        .timeout(Duration::from_secs(30))
        .send_json(&chat_body("m", stream))
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    if stream && status == 200 {
        let events = read_sse(&mut resp)
            .await
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        Got {
            status,
            retry_after,
            body: Value::Null,
            events,
        }
    } else {
        let bytes = resp.body().limit(1 << 20).await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Got {
            status,
            retry_after,
            body,
            events: vec![],
        }
    }
}

async fn chat_count(mock: &Proc) -> u64 {
    mock_stats(mock).await["requests_by_path"]["/v1/chat/completions"]
        .as_u64()
        .unwrap_or(0)
}

/// What the single-route router must answer.
#[derive(Debug, Clone, Copy)]
enum Single {
    /// An error status with one of these codes (and a Retry-After when asked).
    Error(u16, &'static [&'static str], bool),
    /// 200; the stream ends with an error event with this code after `n` content chunks.
    StreamCut(usize, &'static str),
    /// 200 with the whole answer.
    Ok,
}

struct Case {
    name: &'static str,
    fault: Value,
    stream: bool,
    /// Whether the fallback router's answer comes from the healthy route.
    falls_back: bool,
    single: Single,
    /// An upstream `Retry-After` pauses the faulty endpoint this long.
    pause: Option<Duration>,
}

fn case(name: &'static str, fault: Value, stream: bool, falls_back: bool, single: Single) -> Case {
    Case {
        name,
        fault,
        stream,
        falls_back,
        single,
        pause: None,
    }
}

const BAD_GATEWAY: &[&str] = &["upstream_error", "upstream_unreachable"];

#[actix_rt::test]
async fn fault_matrix() {
    let faulty = start_mock(json!({}));
    let healthy = start_mock(json!({}));
    let with_fallback_yaml =
        chat_model_yaml_in_order("m", &[("vllm", &faulty.url), ("vllm", &healthy.url)]);
    let single_yaml = chat_model_yaml("m", &[("vllm", &faulty.url, 1.0)]);
    let with_fallback = start_router_ready(
        RouterOpts {
            models_yaml: &with_fallback_yaml,
            routing_yaml: None,
            env: resilient_env(),
        },
        2,
    )
    .await;
    let single = start_router_ready(
        RouterOpts {
            models_yaml: &single_yaml,
            routing_yaml: None,
            env: resilient_env(),
        },
        1,
    )
    .await;

    let mut cases = vec![];
    for stream in [false, true] {
        cases.push(case(
            "reset before headers",
            json!({"reset_before_headers": true}),
            stream,
            true,
            Single::Error(502, BAD_GATEWAY, false),
        ));
        cases.push(case(
            "hang before headers",
            json!({"hang": "before_headers", "hang_ms": 4000}),
            stream,
            true,
            Single::Error(504, &["upstream_timeout"], false),
        ));
        for status in [500, 502, 503] {
            cases.push(case(
                "5xx without Retry-After",
                json!({"fail_rate": 1.0, "fail_status": status}),
                stream,
                true,
                Single::Error(502, &["upstream_error"], false),
            ));
        }
        let mut c = case(
            "503 with Retry-After",
            json!({"fail_rate": 1.0, "fail_status": 503, "retry_after": 1}),
            stream,
            true,
            Single::Error(503, &["upstream_unavailable"], true),
        );
        c.pause = Some(Duration::from_millis(1300));
        cases.push(c);
        let mut c = case(
            "429 with Retry-After",
            json!({"fail_rate": 1.0, "fail_status": 429, "retry_after": 1}),
            stream,
            true,
            Single::Error(429, &["upstream_rate_limited"], true),
        );
        c.pause = Some(Duration::from_millis(1300));
        cases.push(c);
        cases.push(case(
            "invalid JSON",
            json!({"invalid_json": true}),
            stream,
            true,
            Single::Error(502, &["upstream_invalid_response", "upstream_error"], false),
        ));
        // Slow but steady: JSON dripped 8 bytes at a time, or tokens 100 ms apart, each gap
        // well inside the 1 s idle limit.
        cases.push(case(
            "slow drip",
            if stream {
                json!({"chunk_interval_ms": 100})
            } else {
                json!({"slow_drip_ms": 20})
            },
            stream,
            false,
            Single::Ok,
        ));
    }
    // Non-streamed only: a JSON body that stalls half-way.
    cases.push(case(
        "hang mid-body (JSON)",
        json!({"hang": "mid_stream", "hang_ms": 4000}),
        false,
        true,
        Single::Error(504, &["upstream_timeout"], false),
    ));
    // Streamed only.
    cases.push(case(
        "reset mid-stream before content",
        json!({"die_after_chunks": 0}),
        true,
        true,
        Single::Error(502, &["upstream_error"], false),
    ));
    cases.push(case(
        "reset mid-stream after content",
        json!({"die_after_chunks": 2, "chunks": 6}),
        true,
        false,
        Single::StreamCut(2, "upstream_error"),
    ));
    cases.push(case(
        "hang mid-stream after content",
        json!({"hang": "mid_stream", "hang_ms": 4000}),
        true,
        false,
        Single::StreamCut(1, "upstream_timeout"),
    ));
    cases.push(case(
        "200 SSE starting with an error event",
        json!({"error_event_first": true}),
        true,
        true,
        Single::Error(502, &["upstream_error"], false),
    ));

    let mut report = vec![];
    for c in &cases {
        mock_patch(&faulty, no_faults()).await;
        mock_patch(&faulty, c.fault.clone()).await;
        let label = format!("{} ({})", c.name, if c.stream { "stream" } else { "json" });

        // With a healthy route to fall back on.
        let healthy_before = chat_count(&healthy).await;
        let got = ask(&with_fallback.url, c.stream).await;
        let fell_back = chat_count(&healthy).await > healthy_before;
        assert_eq!(got.status, 200, "{label}: {got:?}");
        assert_eq!(fell_back, c.falls_back, "{label}: fallback");
        if c.stream && c.falls_back {
            assert!(got.error_event().is_none(), "{label}: {got:?}");
            assert_eq!(
                got.events.last().map(String::as_str),
                Some("[DONE]"),
                "{label}"
            );
        }
        wait_in_flight_zero(&with_fallback.url, Duration::from_secs(10)).await;
        if let Some(pause) = c.pause {
            actix_rt::time::sleep(pause).await;
        }

        // Without one.
        let got = ask(&single.url, c.stream).await;
        match c.single {
            Single::Error(status, codes, retry_after) => {
                assert_openai_error(got.status, status, &got.body);
                let code = got.body["error"]["code"].as_str().unwrap_or("");
                assert!(codes.contains(&code), "{label}: code {code}: {got:?}");
                assert_eq!(got.retry_after.is_some(), retry_after, "{label}: {got:?}");
            }
            Single::StreamCut(chunks, code) => {
                assert_eq!(got.status, 200, "{label}");
                assert_eq!(got.content_chunks(), chunks, "{label}: {got:?}");
                let err = got
                    .error_event()
                    .unwrap_or_else(|| panic!("{label}: no error event"));
                assert_eq!(err["error"]["code"], code, "{label}: {err}");
                for key in ["message", "type", "param", "code"] {
                    assert!(err["error"].get(key).is_some(), "{label}: {err}");
                }
                assert_eq!(got.events.last().map(String::as_str), Some("[DONE]"));
            }
            Single::Ok => {
                assert_eq!(got.status, 200, "{label}: {got:?}");
                if c.stream {
                    assert_eq!(got.content_chunks(), 8, "{label}");
                } else {
                    assert_eq!(
                        got.body["choices"][0]["message"]["content"]
                            .as_str()
                            .map(|s| s.split_whitespace().count()),
                        Some(8),
                        "{label}: {got:?}"
                    );
                }
            }
        }
        wait_in_flight_zero(&single.url, Duration::from_secs(10)).await;
        if let Some(pause) = c.pause {
            actix_rt::time::sleep(pause).await;
        }
        report.push(format!(
            "{label}: fallback {} / alone {:?}",
            if c.falls_back { "yes" } else { "no" },
            c.single
        ));
    }
    eprintln!("fault matrix:\n  {}", report.join("\n  "));
}

#[actix_rt::test]
async fn connection_refused_falls_back_or_answers_502() {
    let healthy = start_mock(json!({}));
    let dead = dead_url();
    let both = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: vllm, weight: 1000, base_url: \"{dead}\", health_path: none}}\n      - {{kind: vllm, weight: 1, base_url: \"{}\"}}\n",
        healthy.url
    );
    let alone = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: vllm, base_url: \"{dead}\", health_path: none}}\n"
    );
    let r1 = start_router_ready(
        RouterOpts {
            models_yaml: &both,
            routing_yaml: None,
            env: resilient_env(),
        },
        2,
    )
    .await;
    let r2 = start_router_ready(
        RouterOpts {
            models_yaml: &alone,
            routing_yaml: None,
            env: resilient_env(),
        },
        1,
    )
    .await;
    for stream in [false, true] {
        let got = ask(&r1.url, stream).await;
        assert_eq!(got.status, 200, "{got:?}");
        let got = ask(&r2.url, stream).await;
        assert_openai_error(got.status, 502, &got.body);
        assert_eq!(got.body["error"]["code"], "upstream_unreachable");
    }
    wait_in_flight_zero(&r1.url, Duration::from_secs(5)).await;
    wait_in_flight_zero(&r2.url, Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn health_flapping_moves_traffic_away_and_back() {
    let flapping = start_mock(json!({}));
    let steady = start_mock(json!({}));
    let yaml = chat_model_yaml(
        "m",
        &[("vllm", &flapping.url, 1000.0), ("vllm", &steady.url, 1.0)],
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: resilient_env(),
        },
        2,
    )
    .await;
    for round in 0..2 {
        mock_patch(&flapping, json!({"health": "down"})).await;
        let url = router.url.clone();
        eventually(Duration::from_secs(10), "endpoint marked down", || {
            let url = url.clone();
            async move {
                get_json(&format!("{url}/health"))
                    .await
                    .is_ok_and(|(_, v)| v["endpoints"]["down"] == 1)
            }
        })
        .await;
        let before = chat_count(&flapping).await;
        for _ in 0..10 {
            assert_eq!(ask(&router.url, round == 1).await.status, 200);
        }
        assert_eq!(
            chat_count(&flapping).await,
            before,
            "down endpoint got traffic"
        );
        mock_patch(&flapping, json!({"health": "ok"})).await;
        wait_ready(&router.url, 2).await;
        let before = chat_count(&flapping).await;
        for _ in 0..10 {
            assert_eq!(ask(&router.url, round == 1).await.status, 200);
        }
        assert!(
            chat_count(&flapping).await >= before + 8,
            "traffic did not come back"
        );
    }
    wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
}
