//! Limits on what callers and the host can make the router hold: the inbound connection cap
//! (`MAX_CONNECTIONS`), and running out of file descriptors counted as the router's own fault,
//! never against a backend.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "limits-admin-key";

/// One HTTP/1.1 answer read off a raw connection.
struct RawResponse {
    status: u16,
    head: String,
    body: Value,
}

fn connect(router: &Router) -> TcpStream {
    let addr = router.url.trim_start_matches("http://");
    TcpStream::connect(addr).expect("connect to the router")
}

fn send_get(stream: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: router\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write request");
}

fn send_chat(stream: &mut TcpStream, model: &str) {
    let body = chat_body(model, false).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write request");
}

/// Read one response (with a Content-Length body) within `within`; `None` if none came.
fn read_response(stream: &mut TcpStream, within: Duration) -> Option<RawResponse> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                let body =
                    serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                return Some(RawResponse { status, head, body });
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// With `MAX_CONNECTIONS=2`, two idle connections fill the router: a third waits unserved in
/// the listen backlog while the first two still work, and is served once they close.
#[actix_rt::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let mock = start_mock(json!({}));
    let router = start_router(RouterOpts {
        models_yaml: &chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]),
        routing_yaml: None,
        env: vec![("WORKERS", "1".into()), ("MAX_CONNECTIONS", "2".into())],
    });
    let mut first = connect(&router);
    let second = connect(&router);
    // Let the router accept both before the third arrives.
    actix_rt::time::sleep(Duration::from_millis(300)).await;

    let mut third = connect(&router);
    send_get(&mut third, "/health");
    assert!(
        read_response(&mut third, Duration::from_millis(800)).is_none(),
        "a connection past MAX_CONNECTIONS was served"
    );

    send_get(&mut first, "/health");
    let answer = read_response(&mut first, Duration::from_secs(5));
    assert!(
        answer.is_some(),
        "a connection within the cap was not served"
    );

    drop(first);
    drop(second);
    let answer = read_response(&mut third, Duration::from_secs(5));
    assert!(
        answer.is_some(),
        "the waiting connection was not served once the others closed"
    );
    let (status, _) = get_json(&format!("{}/health", router.url))
        .await
        .expect("health after the cap");
    assert_eq!(status, 200);
}

/// The lowest descriptor number `pid` does not use: with the soft limit set to it, the next
/// `socket()`/`accept()`/`open()` of that process fails with EMFILE.
#[cfg(target_os = "linux")]
fn lowest_free_descriptor(pid: u32) -> u64 {
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap_or(0)
}

/// Set `pid`'s RLIMIT_NOFILE (the soft limit to `soft`, or both back to `restore`); returns the
/// previous (soft, hard) limits.
#[cfg(target_os = "linux")]
fn set_descriptor_limit(pid: u32, soft: Option<u64>, restore: Option<(u64, u64)>) -> (u64, u64) {
    let (mut old_soft, mut old_hard) = (0, 0);
    rlimit::prlimit(
        pid as i32,
        rlimit::Resource::NOFILE,
        None,
        Some((&mut old_soft, &mut old_hard)),
    )
    .expect("prlimit (read)");
    let new = restore.unwrap_or((soft.unwrap_or(old_soft), old_hard));
    rlimit::prlimit(pid as i32, rlimit::Resource::NOFILE, Some(new), None).expect("prlimit (set)");
    (old_soft, old_hard)
}

/// The router runs out of file descriptors while its backend is fine: requests get a 503
/// `router_overloaded` with Retry-After, and the backend's circuit and health are untouched
/// (a circuit threshold of one would open on the first failure counted against it).
#[cfg(target_os = "linux")]
#[actix_rt::test]
async fn running_out_of_descriptors_is_not_the_backends_fault() {
    let mock = start_mock(json!({}));
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]),
            routing_yaml: None,
            env: vec![
                ("WORKERS", "1".into()),
                ("ADMIN_API_KEY", ADMIN_KEY.into()),
                ("CIRCUIT_FAILURE_THRESHOLD", "1".into()),
                ("CIRCUIT_ERROR_RATIO", "0".into()),
                ("HEALTH_UNHEALTHY_THRESHOLD", "1".into()),
                ("MAX_ATTEMPTS", "1".into()),
                ("REQUEST_LOG_ENABLED", "false".into()),
            ],
        },
        1,
    )
    .await;
    // A connection opened before the descriptors run out, to talk to the router afterwards.
    let mut pinned = connect(&router);
    send_get(&mut pinned, "/health");
    assert!(read_response(&mut pinned, Duration::from_secs(5)).is_some());

    let pid = router.pid();
    let original = set_descriptor_limit(pid, Some(lowest_free_descriptor(pid)), None);
    for n in 0..5 {
        send_chat(&mut pinned, "m");
        let answer = read_response(&mut pinned, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("request {n}: no answer"));
        assert_eq!(answer.status, 503, "request {n}: {}", answer.body);
        assert_eq!(
            answer.body["error"]["code"], "router_overloaded",
            "{}",
            answer.body
        );
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("\r\nretry-after: 1"),
            "{}",
            answer.head
        );
    }
    // Give the health probes time to run short of descriptors too.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    set_descriptor_limit(pid, None, Some(original));

    let (status, _, body) = send_with_key(
        "GET",
        &format!("{}/admin/backends", router.url),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let backend = &body["data"][0];
    assert_eq!(backend["circuit"], "closed", "{body}");
    assert_eq!(backend["health"], "ready", "{body}");
    assert_eq!(backend["failures_total"], 0, "{body}");
    let (status, _, body) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("m", false),
    )
    .await;
    assert_eq!(status, 200, "the backend serves again at once: {body}");
}
