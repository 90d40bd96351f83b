//! Abusive clients: header floods, slow-loris heads and bodies, huge bodies, odd values. Each
//! gets a 4xx (OpenAI-shaped wherever the router answers itself) and the router keeps serving.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn setup() -> (Proc, Router) {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: m\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n  - id: strict\n    supported_params: [temperature, max_tokens]\n    route: [{{kind: vllm, base_url: \"{0}\"}}]\n",
        mock.url
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![
                ("MAX_REQUEST_BODY_MB", "1".into()),
                ("CLIENT_REQUEST_TIMEOUT_SECS", "1".into()),
                ("CLIENT_BODY_TIMEOUT_SECS", "1".into()),
            ],
        },
        1,
    )
    .await;
    (mock, router)
}

fn addr(router: &Router) -> String {
    router.url.trim_start_matches("http://").to_string()
}

/// Write `head` (and `body`), then read whatever comes back until EOF or `wait`.
fn raw_exchange(router: &Router, head: &[u8], body: &[u8], wait: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr(router)).expect("connect");
    s.set_read_timeout(Some(wait)).expect("timeout");
    let started = Instant::now();
    let _ = s.write_all(head);
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One response is enough.
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.len() > 12 {
                    let text = String::from_utf8_lossy(&out);
                    if text.contains("content-length: 0") || text.contains("}") {
                        break;
                    }
                }
            }
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn json_of(response: &str) -> Value {
    response
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
        .unwrap_or(Value::Null)
}

async fn still_serving(router: &Router) {
    let (status, _, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(status, 200, "router stopped serving: {v}");
}

#[actix_rt::test]
async fn header_floods_and_huge_headers_are_refused() {
    let (_mock, router) = setup().await;
    let mut head = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        head.push_str(&format!("X-Flood-{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    let (resp, _) = raw_exchange(&router, head.as_bytes(), b"", Duration::from_secs(5));
    let status = status_of(&resp);
    assert!(status == 0 || (400..500).contains(&status), "{resp}");
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    let (resp, _) = raw_exchange(&router, big.as_bytes(), b"", Duration::from_secs(5));
    let status = status_of(&resp);
    assert!(status == 0 || (400..500).contains(&status), "{resp}");
    still_serving(&router).await;
}

#[actix_rt::test]
async fn slow_loris_heads_and_bodies_are_cut_off() {
    let (mock, router) = setup().await;
    // A head that never ends: actix drops it after CLIENT_REQUEST_TIMEOUT_SECS (408 or close).
    let (resp, took) = raw_exchange(
        &router,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n",
        b"",
        Duration::from_secs(10),
    );
    let status = status_of(&resp);
    assert!(status == 0 || status == 408, "{resp}");
    assert!(took < Duration::from_secs(8), "head timeout took {took:?}");
    // A body that trickles: 408 in OpenAI shape after CLIENT_BODY_TIMEOUT_SECS.
    let (resp, took) = raw_exchange(
        &router,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        b"{\"model\": \"m\",",
        Duration::from_secs(10),
    );
    assert_eq!(status_of(&resp), 408, "{resp}");
    let v = json_of(&resp);
    assert_eq!(v["error"]["code"], "request_timeout", "{resp}");
    assert!(took < Duration::from_secs(8), "body timeout took {took:?}");
    assert_eq!(
        mock_stats(&mock).await["requests_by_path"]["/v1/chat/completions"],
        Value::Null
    );
    still_serving(&router).await;
}

#[actix_rt::test]
async fn huge_bodies_get_413_before_being_read() {
    let (_mock, router) = setup().await;
    // Declared 1 GB, nothing sent: the answer comes at once.
    let (resp, took) = raw_exchange(
        &router,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
        b"",
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert_eq!(json_of(&resp)["error"]["code"], "payload_too_large");
    assert!(took < Duration::from_secs(3));
    // Chunked, no length: cut at the limit.
    let chunk = vec![b' '; 64 * 1024];
    let mut body = Vec::new();
    for _ in 0..40 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (resp, _) = raw_exchange(
        &router,
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        &body,
        Duration::from_secs(5),
    );
    assert_eq!(status_of(&resp), 413, "{resp}");
    still_serving(&router).await;
}

#[actix_rt::test]
async fn odd_values_are_400s_or_pass_through_never_5xx() {
    let (mock, router) = setup().await;
    let url = format!("{}/v1/chat/completions", router.url);
    let msg = json!([{"role": "user", "content": "x"}]);
    for (max_tokens, ok) in [
        (json!(1e30), false),
        (json!(1_u64 << 40), false),
        (json!(-1), false),
        (json!(0), false),
        (json!("12"), false),
        (json!(1.5), false),
        (json!(u32::MAX), true),
    ] {
        let (status, _, v) = post_json(
            &url,
            &json!({"model": "m", "messages": msg, "max_tokens": max_tokens}),
        )
        .await;
        if ok {
            assert_eq!(status, 200, "{max_tokens}: {v}");
        } else {
            assert_openai_error(status, 400, &v);
            assert_eq!(v["error"]["param"], "max_tokens");
        }
    }
    // Unknown fields: dropped for a model with supported_params, never a 5xx.
    let (status, _, v) = post_json(
        &url,
        &json!({"model": "strict", "messages": msg, "temperature": 0.1, "frobnicate": {"deep": [1, 2]}, "logit_bias": {"1": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let sent = mock_stats(&mock).await["last_request"]["body"].clone();
    assert!(
        sent.get("frobnicate").is_none() && sent.get("logit_bias").is_none(),
        "{sent}"
    );
    assert_eq!(sent["temperature"], 0.1);
    // Wrong types everywhere a field is checked; odd but valid JSON elsewhere.
    for body in [
        json!({"model": ["m"], "messages": msg}),
        json!({"model": "m", "messages": "hello"}),
        json!({"model": "m", "messages": [{"role": 5, "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "no type"}]}]}),
        json!({"model": "m", "messages": msg, "stream_options": "yes"}),
        json!({"model": "m", "messages": msg, "tools": {"not": "an array"}}),
        json!({"model": "m\u{0000}\u{202e}", "messages": msg}),
    ] {
        let (status, _, v) = post_json(&url, &body).await;
        assert!((400..500).contains(&status), "{body}: {status} {v}");
        assert_openai_error(status, status, &v);
    }
    // Many keys and long strings are fine.
    let mut wide = serde_json::Map::new();
    for i in 0..5000 {
        wide.insert(format!("k{i}"), json!(i));
    }
    wide.insert("model".into(), json!("m"));
    wide.insert(
        "messages".into(),
        json!([{"role": "user", "content": "é".repeat(100_000)}]),
    );
    let (status, _, v) = post_json(&url, &Value::Object(wide)).await;
    assert_eq!(status, 200, "{v}");
    still_serving(&router).await;
}
