//! `switchyard-load` end to end: short runs against the real mock binary, checked through the
//! JSON report the tool writes.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

fn load_bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard-load")
}

fn run_load(args: &[&str]) -> std::process::Output {
    Command::new(load_bin())
        .args(args)
        .output()
        .expect("run switchyard-load")
}

fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("report written");
    serde_json::from_str(&text).expect("report is JSON")
}

/// The JSON report of a run that must have succeeded.
fn report_of_success(out: &std::process::Output, path: &Path) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    read_report(path)
}

/// `--spread`: the run goes on as usual, its report says over how long the connections
/// started, and a spread no shorter than the run is refused.
#[test]
fn connection_starts_spread_over_a_set_time() {
    let mock = common::start_mock(json!({"chunks": 3, "chunk_interval_ms": 5, "ttft_ms": 5}));
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("report.json");
    let json_arg = json_path.to_str().expect("utf-8 path");
    let args = |spread: &'static str| {
        let mut args = vec!["run", "-q", "-t", &mock.url, "-s", "chat_stream", "-c", "8"];
        args.extend(["-d", "1s", "--spread", spread, "--json", json_arg]);
        run_load(&args)
    };
    let out = args("400ms");
    let r = report_of_success(&out, &json_path);
    assert_eq!(r["mode"]["kind"], "closed");
    assert_eq!(r["mode"]["spread_ms"], 400, "{r}");
    assert_eq!(r["totals"]["errors"], 0, "{r}");
    assert!(
        r["totals"]["ok"].as_u64() >= Some(8),
        "every connection sent: {r}"
    );
    let out = args("1s");
    assert!(
        !out.status.success(),
        "a spread as long as the run is refused"
    );
}

#[test]
fn chat_and_streams_for_two_seconds() {
    let mock = common::start_mock(json!({"chunks": 5, "chunk_interval_ms": 10, "ttft_ms": 5}));
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("report.json");
    let html_path = dir.path().join("report.html");
    let out = run_load(&[
        "run",
        "-q",
        "-t",
        &mock.url,
        "-s",
        "chat:1",
        "-s",
        "chat_stream:1",
        "-c",
        "4",
        "-d",
        "2s",
        "--json",
        json_path.to_str().expect("utf-8 path"),
        "--html",
        html_path.to_str().expect("utf-8 path"),
    ]);
    let r = report_of_success(&out, &json_path);
    assert_eq!(r["tool"], "switchyard-load");
    assert_eq!(r["mode"]["kind"], "closed");
    let total = r["totals"]["requests"].as_u64().expect("requests");
    assert!(total > 10, "only {total} requests in 2 s: {r}");
    assert_eq!(r["totals"]["errors"], 0, "{r}");
    let wall = r["wall_s"].as_f64().expect("wall");
    assert!((1.5..10.0).contains(&wall), "wall {wall}");
    let scenarios = r["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 2);
    let chat = &scenarios[0];
    assert_eq!(chat["kind"], "chat");
    assert!(chat["status_counts"]["200"].as_u64().unwrap_or(0) > 0);
    // A 5-word reply takes ttft + 4 × 10 ms; p50 must be at least that and sane.
    let p50 = chat["latency_us"]["p50"].as_u64().expect("p50");
    assert!((40_000..2_000_000).contains(&p50), "chat p50 {p50} µs");
    assert!(chat["latency_us"]["p99"].as_u64() >= Some(p50));
    let stream = &scenarios[1];
    assert_eq!(stream["kind"], "chat_stream");
    let ttft = stream["first_us"]["p50"].as_u64().expect("ttft");
    assert!((4_000..1_000_000).contains(&ttft), "ttft {ttft} µs");
    let gap = stream["gap_us"]["p50"].as_u64().expect("gap");
    assert!((5_000..500_000).contains(&gap), "gap {gap} µs");
    assert_eq!(
        stream["coalescing"]["coalesced_reads"], 0,
        "10 ms apart chunks must arrive apart: {stream}"
    );
    assert!(stream["tokens_per_s"]["p50"].as_f64().unwrap_or(0.0) > 10.0);
    assert!(!stream["timeline"].as_array().expect("timeline").is_empty());
    let html = std::fs::read_to_string(&html_path).expect("html written");
    assert!(html.contains("<svg") && html.contains("chat_stream"));
}

#[test]
fn every_modality_open_loop_against_the_mock() {
    let mock = common::start_mock(json!({
        "video_queue_ms": 20, "video_steps": 2, "video_step_ms": 30, "tts_chunks": 3
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("mix.yaml");
    std::fs::write(
        &spec,
        "rate: 30\nduration: 2s\ntimeout: 20s\nscenarios:\n\
         \x20 - {kind: embeddings, inputs: 3}\n\
         \x20 - {kind: speech}\n\
         \x20 - {kind: transcription, file_bytes: 300KiB}\n\
         \x20 - {kind: images}\n\
         \x20 - {kind: video, poll_interval: 20ms, fetch_content: true}\n",
    )
    .expect("write spec");
    let json_path = dir.path().join("mix.json");
    let out = run_load(&[
        "run",
        "-q",
        "-f",
        spec.to_str().expect("utf-8"),
        "-t",
        &mock.url,
        "--json",
        json_path.to_str().expect("utf-8"),
    ]);
    let r = report_of_success(&out, &json_path);
    assert_eq!(r["mode"]["kind"], "open");
    assert_eq!(r["totals"]["requests"], 60, "30/s for 2 s: {r}");
    assert_eq!(r["totals"]["errors"], 0, "{r}");
    assert!(r["send_lag_us"]["count"].as_u64() == Some(60));
    for s in r["scenarios"].as_array().expect("scenarios") {
        assert!(s["ok"].as_u64().unwrap_or(0) > 0, "no success for {s}");
    }
    let upload = &r["scenarios"][2];
    assert!(upload["bytes_out"].as_u64().unwrap_or(0) >= 300 * 1024);
    let video = &r["scenarios"][4];
    assert!(video["polls"].as_u64().unwrap_or(0) >= video["ok"].as_u64().unwrap_or(0));
    // The mock read every upload byte.
    let url = format!("{}/_mock/stats", mock.url);
    let (_, stats) = actix_rt::System::new()
        .block_on(common::get_json(&url))
        .expect("mock stats");
    assert!(stats["upload_bytes_total"].as_u64().unwrap_or(0) >= 300 * 1024);
}

#[test]
fn refuses_non_loopback_and_unbounded_input() {
    let out = run_load(&["run", "-t", "http://192.0.2.1:80", "-s", "chat", "-d", "1s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not loopback"));
    let out = run_load(&[
        "run",
        "-t",
        "http://127.0.0.1:9",
        "-s",
        "chat",
        "-d",
        "100h",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run_load(&["run", "-t", "http://127.0.0.1:9", "-s", "chat", "-c", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn errors_are_counted_by_status() {
    let mock = common::start_mock(json!({"fail_rate": 1.0, "fail_status": 503}));
    let dir = tempfile::tempdir().expect("tempdir");
    let json_path = dir.path().join("errors.json");
    let out = run_load(&[
        "run",
        "-q",
        "-t",
        &mock.url,
        "-s",
        "chat",
        "-n",
        "20",
        "-c",
        "2",
        "--json",
        json_path.to_str().expect("utf-8"),
    ]);
    let r = report_of_success(&out, &json_path);
    assert_eq!(r["totals"]["requests"], 20);
    assert_eq!(r["totals"]["errors"], 20);
    assert_eq!(r["scenarios"][0]["status_counts"]["503"], 20);
    assert_eq!(r["scenarios"][0]["errors_by_kind"]["http_503"], 20);
}
