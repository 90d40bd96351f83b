//! What a JSON body costs the router in memory: four concurrent bodies just under the default
//! 20 MiB limit must keep the router's peak RSS (VmHWM) under 200 MiB, whatever their shape;
//! past `MAX_INFLIGHT_JSON_MB` of bodies held at once, requests get a 503 with `Retry-After`.

use crate::common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use serde_json::Value;

/// Just under the default `MAX_REQUEST_BODY_MB` of 20.
const BODY_BYTES: usize = 20 * 1024 * 1024 - 100 * 1024;
const PEAK_RSS_LIMIT_KIB: u64 = 200 * 1024;

/// A chat body of exactly `BODY_BYTES` whose bulk is `filler(n)`, placed by `shape`.
fn padded_body(shape: fn(&str) -> String, filler: fn(usize) -> String) -> Vec<u8> {
    let overhead = shape("").len();
    shape(&filler(BODY_BYTES - overhead)).into_bytes()
}

fn huge_content(filler: &str) -> String {
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{filler}"}}],"max_tokens":4}}"#)
}

fn huge_unknown_field(filler: &str) -> String {
    format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"max_tokens":4,"junk":[{filler}]}}"#
    )
}

fn letters(n: usize) -> String {
    "a".repeat(n)
}

/// `1,1,1,…`: one JSON value every two bytes, the costliest shape for a parsed tree.
fn dense_numbers(n: usize) -> String {
    let mut s = "1,".repeat(n.saturating_sub(1) / 2);
    s.push('1');
    while s.len() < n {
        s.push(' ');
    }
    s
}

/// Strings of about 1 KiB: a large but plausible array.
fn kilobyte_strings(n: usize) -> String {
    let item = format!("\"{}\",", "b".repeat(1021));
    let mut s = item.repeat(n / item.len());
    s.pop();
    while s.len() < n {
        s.push(' ');
    }
    s
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// Send `body` four times at once to a fresh router; returns the statuses, the answers and
/// the router's peak RSS in KiB.
async fn four_at_once(body: Vec<u8>) -> (Vec<u16>, Vec<Value>, u64) {
    // A debug-built mock takes seconds to parse a 20 MiB body: enough workers that health
    // probes still get answers, and probes patient enough not to call it down meanwhile.
    let mock = start_mock(serde_json::json!({"workers": 16}));
    // Two routes to the one mock: under this load the debug mock now and then drops a
    // connection mid-body (broken pipe, before this change too); the retry on the other
    // route keeps that from failing a test about the router's memory.
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: vllm, base_url: \"{0}\"}}\n      - {{kind: vllm, base_url: \"{1}\"}}\n",
        mock.url,
        mock.url.replace("127.0.0.1", "localhost")
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![
                ("HEALTH_CHECK_TIMEOUT_SECS", "30".into()),
                ("HEALTH_CHECK_INTERVAL_SECS", "30".into()),
            ],
        },
        2,
    )
    .await;
    let url = format!("{}/v1/chat/completions", router.url);
    let sends = (0..4).map(|_| post_raw(&url, "application/json", body.clone()));
    let answers = join_all(sends).await;
    let peak = peak_rss_kib(router.pid());
    let statuses = answers.iter().map(|(s, _, _)| *s).collect();
    let bodies = answers.into_iter().map(|(_, _, v)| v).collect();
    (statuses, bodies, peak)
}

/// The error objects among `answers` (successful answers are long and alike).
fn errors(answers: &[Value]) -> Vec<&Value> {
    answers.iter().filter_map(|a| a.get("error")).collect()
}

fn assert_peak_under_limit(what: &str, peak_kib: u64) {
    eprintln!("{what}: router peak RSS {} MiB", peak_kib / 1024);
    assert!(
        peak_kib < PEAK_RSS_LIMIT_KIB,
        "{what}: router peak RSS {} MiB is over {} MiB",
        peak_kib / 1024,
        PEAK_RSS_LIMIT_KIB / 1024
    );
}

/// Four bodies of `what` at once are all answered, within the memory target.
async fn four_are_served_under_the_target(what: &str, body: Vec<u8>) {
    assert_eq!(body.len(), BODY_BYTES);
    let (statuses, answers, peak) = four_at_once(body).await;
    assert_eq!(statuses, [200; 4], "{what}: {:?}", errors(&answers));
    assert_peak_under_limit(what, peak);
}

#[actix_rt::test]
async fn four_huge_message_bodies_stay_under_the_memory_target() {
    let body = padded_body(huge_content, letters);
    four_are_served_under_the_target("huge message content", body).await;
}

#[actix_rt::test]
async fn four_huge_unknown_arrays_stay_under_the_memory_target() {
    let body = padded_body(huge_unknown_field, kilobyte_strings);
    four_are_served_under_the_target("huge unknown array of strings", body).await;
}

#[actix_rt::test]
async fn four_dense_unknown_arrays_are_refused_without_being_parsed() {
    let body = padded_body(huge_unknown_field, dense_numbers);
    assert_eq!(body.len(), BODY_BYTES);
    let (statuses, answers, peak) = four_at_once(body).await;
    for (status, answer) in statuses.iter().zip(&answers) {
        assert_openai_error(*status, 400, answer);
        assert_eq!(answer["error"]["code"], "json_too_complex", "{answer}");
    }
    assert_peak_under_limit("dense unknown array of numbers", peak);
}

fn chat_body_of(len: usize) -> Vec<u8> {
    let shape = huge_content("");
    huge_content(&letters(len - shape.len())).into_bytes()
}

#[actix_rt::test]
async fn bodies_past_the_budget_wait_then_get_503_with_retry_after() {
    let mock = start_mock(serde_json::json!({}));
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &format!(
                "models:\n  - id: m\n    route: [{{kind: vllm, base_url: \"{}\"}}]\n",
                mock.url
            ),
            routing_yaml: None,
            env: vec![("MAX_INFLIGHT_JSON_MB", "1".into())],
        },
        1,
    )
    .await;
    let url = format!("{}/v1/chat/completions", router.url);
    // A body larger than the whole budget still runs, alone.
    let (status, _, v) = post_raw(&url, "application/json", chat_body_of(1536 * 1024)).await;
    assert_eq!(status, 200, "{v}");
    // A client that declared 700 KiB and sent almost nothing holds 700 KiB of the budget …
    let mut holder =
        std::net::TcpStream::connect(router.url.trim_start_matches("http://")).expect("connect");
    write!(
        holder,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        700 * 1024
    )
    .expect("write head");
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    // … so another 700 KiB waits briefly, then is refused.
    let started = Instant::now();
    let (status, headers, v) = post_raw(&url, "application/json", chat_body_of(700 * 1024)).await;
    assert_openai_error(status, 503, &v);
    assert_eq!(v["error"]["code"], "router_busy", "{v}");
    assert_eq!(
        headers.get("retry-after").map(|h| h.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Small bodies still fit beside it; once the holder hangs up, large ones fit again.
    let (status, _, v) = post_raw(&url, "application/json", chat_body_of(100 * 1024)).await;
    assert_eq!(status, 200, "{v}");
    drop(holder);
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let (status, _, v) = post_raw(&url, "application/json", chat_body_of(700 * 1024)).await;
    assert_eq!(status, 200, "{v}");
}
