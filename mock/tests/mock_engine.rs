//! Black-box tests of the `switchyard-mock` binary: each test starts its own process on port 0,
//! reads the listening line, and talks to it with awc or raw TCP.
//!
//! Time bounds are generous (a shared 2-core machine): they check order and spread, never
//! tight figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};

const LISTEN_PREFIX: &str = "switchyard-mock listening on ";

/// A running `switchyard-mock` process, killed on drop.
struct Mock {
    child: Child,
    url: String,
    _stdout: BufReader<ChildStdout>,
}

impl Mock {
    fn start(args: &[&str]) -> Mock {
        let (child, mut urls, stdout) = spawn(args, 1);
        Mock {
            child,
            url: urls.remove(0),
            _stdout: stdout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn host_port(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn patch(&self, patch: Value) {
        let (status, body) =
            send_json(&client(), "PATCH", &self.url("/_mock/config"), &patch).await;
        assert_eq!(status, 200, "patch {patch} failed: {body}");
    }

    async fn stats(&self) -> Value {
        get_json(&self.url("/_mock/stats")).await.1
    }

    /// Polls the stats until `pred` holds or `timeout` passes; returns the last stats.
    async fn wait_stats(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats().await;
            if pred(&stats) || Instant::now() > deadline {
                return stats;
            }
            actix_rt::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and reads `count` listening lines.
fn spawn(args: &[&str], count: usize) -> (Child, Vec<String>, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard-mock"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn switchyard-mock");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut urls = Vec::new();
    for _ in 0..count {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read listening line");
        let url = line
            .trim()
            .strip_prefix(LISTEN_PREFIX)
            .unwrap_or_else(|| {
                // An empty line means the process exited without starting. With a
                // CARGO_TARGET_DIR shared between checkouts, another checkout's build may
                // have replaced target/debug/switchyard-mock with its own version.
                panic!("expected the listening line, got {line:?}")
            })
            .to_owned();
        urls.push(url);
    }
    (child, urls, stdout)
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

async fn send_json(client: &awc::Client, method: &str, url: &str, body: &Value) -> (u16, Value) {
    let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut resp = client.request(method, url).send_json(body).await.unwrap();
    let bytes = resp.body().limit(64 << 20).await.unwrap();
    (resp.status().as_u16(), parse_json(&bytes))
}

fn parse_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into()))
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    send_json(&client(), "POST", url, body).await
}

async fn get_json(url: &str) -> (u16, Value) {
    let mut resp = client().get(url).send().await.unwrap();
    let bytes = resp.body().limit(64 << 20).await.unwrap();
    (resp.status().as_u16(), parse_json(&bytes))
}

async fn get_raw(
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, awc::http::header::HeaderMap, Bytes) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut resp = req.send().await.unwrap();
    let body = resp.body().limit(64 << 20).await.unwrap();
    (resp.status().as_u16(), resp.headers().clone(), body)
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "router-upstream-id",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "say three words"}]}
        ]
    })
}

/// An SSE event with the time it arrived.
struct Event {
    at: Duration,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }

    fn is_content(&self) -> bool {
        self.json()
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty())
    }
}

/// Posts a streaming chat request and collects its events as they arrive.
async fn stream_events(url: &str, body: &Value) -> (u16, String, Vec<Event>) {
    let start = Instant::now();
    let mut resp = client().post(url).send_json(body).await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut buf = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let raw: String = buf.drain(..end + 2).collect();
            let data = raw
                .trim_end()
                .strip_prefix("data: ")
                .expect("data: framing")
                .to_owned();
            events.push(Event {
                at: start.elapsed(),
                data,
            });
        }
    }
    assert!(
        buf.is_empty(),
        "trailing bytes after the last event: {buf:?}"
    );
    (status, content_type, events)
}

/// Sends a raw HTTP/1.1 request and reads until the server closes (or 20 s pass).
fn raw_exchange(host_port: &str, request: &str) -> (Vec<u8>, Option<std::io::Error>) {
    let mut stream = TcpStream::connect(host_port).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (received, None),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => return (received, Some(e)),
        }
    }
}

fn raw_chat_request(host_port: &str, body: &Value) -> String {
    let body = body.to_string();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

// ---------------------------------------------------------------------------------------------
// chat

#[actix_rt::test]
async fn chat_json_echoes_model_and_counts_tokens() {
    let mock = Mock::start(&["--chunks", "3"]);
    let (status, body) = post(&mock.url("/v1/chat/completions"), &chat_body(false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "router-upstream-id");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(body["created"].is_u64());
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "word0 word1 word2 ");
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    // "You are terse." + "say three words" = 6 words
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9})
    );

    // max_tokens truncates and reports "length".
    let mut short = chat_body(false);
    short["max_tokens"] = json!(2);
    let (_, body) = post(&mock.url("/v1/chat/completions"), &short).await;
    assert_eq!(body["choices"][0]["message"]["content"], "word0 word1 ");
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    let stats = mock.stats().await;
    assert_eq!(stats["requests_by_path"]["/v1/chat/completions"], 2);
    let last = &stats["last_request"];
    assert_eq!(last["method"], "POST");
    assert_eq!(last["path"], "/v1/chat/completions");
    assert_eq!(last["headers"]["content-type"], "application/json");
    assert_eq!(last["body"]["max_tokens"], 2);
}

#[actix_rt::test]
async fn chat_rejects_bad_input_with_openai_errors() {
    let mock = Mock::start(&[]);
    let url = mock.url("/v1/chat/completions");
    let resp = client()
        .post(&url)
        .insert_header(("content-type", "application/json"))
        .send_body("{not json")
        .await;
    let mut resp = resp.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    let keys: Vec<_> = body["error"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["message", "type", "param", "code"]);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let (status, body) = post(&url, &json!({"model": "m"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");

    let (status, body) = post(&url, &json!([1, 2])).await;
    assert_eq!(status, 400, "{body}");

    mock.patch(json!({"strict_models": true, "model_ids": ["a"]}))
        .await;
    let (status, body) = post(
        &url,
        &json!({"model": "b", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");

    let (status, body) = get_json(&mock.url("/no/such/path")).await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].is_string());
    let (status, body) = get_json(&url).await;
    assert_eq!(status, 405, "GET on a POST path");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[actix_rt::test]
async fn sse_framing_and_chunk_spacing() {
    let mock = Mock::start(&["--chunks", "5", "--chunk-interval-ms", "100"]);
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, content_type, events) =
        stream_events(&mock.url("/v1/chat/completions"), &body).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );

    // role chunk, 5 content chunks, finish chunk, usage chunk, [DONE]
    assert_eq!(
        events.len(),
        9,
        "{:?}",
        events.iter().map(|e| &e.data).collect::<Vec<_>>()
    );
    let first = events[0].json();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let id = first["id"].clone();
    for e in &events[..8] {
        let j = e.json();
        assert_eq!(j["id"], id, "one id for every chunk");
        assert_eq!(j["model"], "router-upstream-id");
    }
    let content: Vec<&Event> = events.iter().filter(|e| e.is_content()).collect();
    assert_eq!(content.len(), 5);
    let text: String = content
        .iter()
        .map(|e| {
            e.json()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "word0 word1 word2 word3 word4 ");
    assert_eq!(events[6].json()["choices"][0]["finish_reason"], "stop");
    assert_eq!(events[7].json()["choices"], json!([]));
    assert_eq!(events[7].json()["usage"]["completion_tokens"], 5);
    assert_eq!(events[8].data, "[DONE]");

    // Relayed as produced: the last content chunk is produced ≥ 400 ms after the first (4 gaps
    // of 100 ms), and the chunks arrive spread out rather than bunched at the end. The bounds
    // leave room for a client that is itself late to read on a loaded machine.
    let at: Vec<Duration> = content.iter().map(|e| e.at).collect();
    assert!(at[4] >= Duration::from_millis(400), "{at:?}");
    assert!(
        at[4] - at[0] >= Duration::from_millis(300),
        "content chunks bunched: {at:?}"
    );
    let spread_gaps = at
        .windows(2)
        .filter(|w| w[1] - w[0] >= Duration::from_millis(40))
        .count();
    assert!(spread_gaps >= 2, "chunks arrived bunched: {at:?}");

    let stats = mock.stats().await;
    assert_eq!(stats["streams_started"], 1);
    assert_eq!(stats["streams_completed"], 1);
    assert_eq!(stats["chunks_sent"], 5);
    assert_eq!(stats["active_streams"], 0);
}

#[actix_rt::test]
async fn ttft_delays_the_first_content_chunk_not_the_headers() {
    let mock = Mock::start(&["--chunks", "2", "--ttft-ms", "400"]);
    let (_, _, events) = stream_events(&mock.url("/v1/chat/completions"), &chat_body(true)).await;
    let role = &events[0];
    let first_content = events.iter().find(|e| e.is_content()).unwrap();
    assert!(
        first_content.at >= Duration::from_millis(400),
        "ttft not applied"
    );
    assert!(
        first_content.at - role.at >= Duration::from_millis(200),
        "the role chunk should come at once, before the TTFT wait"
    );
}

fn usage_chunks(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .map(Event::json)
        .filter(|j| j.get("usage").is_some_and(|u| !u.is_null()))
        .collect()
}

#[actix_rt::test]
async fn usage_modes() {
    let mock = Mock::start(&["--chunks", "2"]);
    let url = mock.url("/v1/chat/completions");
    let mut with_usage = chat_body(true);
    with_usage["stream_options"] = json!({"include_usage": true});
    let without_usage = chat_body(true);

    // auto (vLLM): only when asked, as a separate choices: [] chunk.
    let (_, _, events) = stream_events(&url, &without_usage).await;
    assert!(usage_chunks(&events).is_empty());
    let (_, _, events) = stream_events(&url, &with_usage).await;
    let usage = usage_chunks(&events);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(usage[0]["usage"]["total_tokens"], 6 + 2);

    mock.patch(json!({"usage_mode": "never"})).await;
    let (_, _, events) = stream_events(&url, &with_usage).await;
    assert!(usage_chunks(&events).is_empty());

    mock.patch(json!({"usage_mode": "always"})).await;
    let (_, _, events) = stream_events(&url, &without_usage).await;
    let usage = usage_chunks(&events);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], json!([]));

    mock.patch(json!({"usage_mode": "on_finish"})).await;
    let (_, _, events) = stream_events(&url, &without_usage).await;
    let usage = usage_chunks(&events);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage[0]["usage"]["completion_tokens"], 2);

    mock.patch(json!({"usage_mode": "choices_null"})).await;
    let (_, _, events) = stream_events(&url, &without_usage).await;
    let usage = usage_chunks(&events);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["choices"], Value::Null);
    assert_eq!(events.last().unwrap().data, "[DONE]");
}

#[actix_rt::test]
async fn die_after_chunks_drops_the_connection_without_done() {
    let mock = Mock::start(&[
        "--chunks",
        "6",
        "--die-after-chunks",
        "2",
        "--chunk-interval-ms",
        "20",
    ]);
    let request = raw_chat_request(mock.host_port(), &chat_body(true));
    let (received, _err) = raw_exchange(mock.host_port(), &request);
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert_eq!(text.matches(r#""content":"word"#).count(), 2, "{text}");
    assert!(!text.contains("[DONE]"));
    assert!(!text.contains("finish_reason\":\"stop"));
    // No terminating zero-length chunk: the body was cut, not finished.
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "stream was terminated cleanly: {text:?}"
    );

    // The same with zero delays (everything before the death is coalesced and still flushed).
    mock.patch(json!({"chunk_interval_ms": 0, "die_after_chunks": 3}))
        .await;
    let (received, _) = raw_exchange(mock.host_port(), &request);
    let text = String::from_utf8_lossy(&received);
    assert_eq!(text.matches(r#""content":"word"#).count(), 3, "{text}");
    assert!(!text.contains("[DONE]") && !text.ends_with("0\r\n\r\n"));

    let stats = mock.stats().await;
    assert_eq!(stats["streams_killed"], 2);
    assert_eq!(stats["streams_aborted"], 0);
    assert_eq!(stats["streams_completed"], 0);
}

#[actix_rt::test]
async fn error_event_first_is_a_200_stream_with_an_error_then_done() {
    let mock = Mock::start(&[
        "--error-event-first",
        "--fail-status",
        "503",
        "--error-style",
        "vllm",
    ]);
    let (status, content_type, events) =
        stream_events(&mock.url("/v1/chat/completions"), &chat_body(true)).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/event-stream"));
    assert_eq!(events.len(), 2);
    let error = events[0].json();
    assert_eq!(error["error"]["code"], 503);
    assert!(error["error"]["message"].is_string());
    assert_eq!(events[1].data, "[DONE]");
}

#[actix_rt::test]
async fn dropped_stream_counts_as_aborted_and_stops_sending() {
    let mock = Mock::start(&["--chunks", "200", "--chunk-interval-ms", "30"]);
    let mut stream = TcpStream::connect(mock.host_port()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(raw_chat_request(mock.host_port(), &chat_body(true)).as_bytes())
        .unwrap();
    // Read until a few content chunks arrived, then hang up.
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches(r#""content":"word"#).count() < 3 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed early");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(stream);

    let stats = mock
        .wait_stats(Duration::from_secs(15), |s| s["streams_aborted"] == 1)
        .await;
    assert_eq!(stats["streams_aborted"], 1, "{stats}");
    assert_eq!(stats["active_streams"], 0);
    assert_eq!(stats["streams_completed"], 0);
    let sent = stats["chunks_sent"].as_u64().unwrap();
    assert!(sent < 200, "the whole stream was produced: {sent}");
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        mock.stats().await["chunks_sent"].as_u64().unwrap(),
        sent,
        "chunks kept flowing"
    );
}

#[actix_rt::test]
async fn awc_client_dropping_a_stream_is_seen_as_aborted() {
    // What the router does when its own client goes away: drop the upstream response.
    let mock = Mock::start(&["--chunks", "200", "--chunk-interval-ms", "30"]);
    let client = client();
    let mut resp = client
        .post(mock.url("/v1/chat/completions"))
        .send_json(&chat_body(true))
        .await
        .unwrap();
    let mut seen = String::new();
    while seen.matches(r#""content":"word"#).count() < 3 {
        let chunk = resp.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(resp);
    let stats = mock
        .wait_stats(Duration::from_secs(15), |s| s["streams_aborted"] == 1)
        .await;
    assert_eq!(stats["streams_aborted"], 1, "{stats}");
    assert_eq!(stats["active_streams"], 0);
    drop(client);
}

#[actix_rt::test]
async fn hanging_up_during_a_stall_is_seen_at_once() {
    // hang_ms stays at its 10-minute default: only the hang-up can end this stream in time.
    let mock = Mock::start(&["--chunks", "3", "--hang", "mid_stream"]);
    let mut stream = TcpStream::connect(mock.host_port()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(raw_chat_request(mock.host_port(), &chat_body(true)).as_bytes())
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(r#""content":"word0 ""#) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "server closed early");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(
        mock.stats().await["active_streams"],
        1,
        "stalled after the first chunk"
    );
    drop(stream);
    let stats = mock
        .wait_stats(Duration::from_secs(15), |s| s["streams_aborted"] == 1)
        .await;
    assert_eq!(stats["streams_aborted"], 1, "{stats}");
    assert_eq!(stats["chunks_sent"], 1);
}

// ---------------------------------------------------------------------------------------------
// faults

#[actix_rt::test]
async fn reset_before_headers_closes_without_a_byte() {
    let mock = Mock::start(&["--reset-before-headers"]);
    let request = raw_chat_request(mock.host_port(), &chat_body(false));
    let (received, err) = raw_exchange(mock.host_port(), &request);
    assert!(
        received.is_empty(),
        "got bytes: {:?}",
        String::from_utf8_lossy(&received)
    );
    if let Some(e) = err {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    // awc sees a transport error, not a status.
    let result = client()
        .post(mock.url("/v1/chat/completions"))
        .send_json(&chat_body(false))
        .await;
    assert!(result.is_err(), "expected a connection error");
    // Control paths are never faulted, and the server lives on.
    let stats = mock.stats().await;
    assert_eq!(stats["connections_reset"], 2);
    mock.patch(json!({"reset_before_headers": false})).await;
    let (status, _) = post(&mock.url("/v1/chat/completions"), &chat_body(false)).await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn injected_errors_auth_latency_and_bodies() {
    let mock = Mock::start(&[]);
    let url = mock.url("/v1/chat/completions");

    mock.patch(
        json!({"fail_rate": 1.0, "fail_status": 429, "retry_after": 3, "error_style": "openai"}),
    )
    .await;
    let mut resp = client()
        .post(&url)
        .send_json(&chat_body(false))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "3");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    for (style, check) in [
        ("vllm", json!({"code": 429})),
        ("llamacpp", json!({"code": 429})),
        ("openrouter", json!({"code": 429})),
    ] {
        mock.patch(json!({"error_style": style})).await;
        let (status, body) = post(&url, &chat_body(false)).await;
        assert_eq!(status, 429);
        assert_eq!(body["error"]["code"], check["code"], "{style}: {body}");
    }
    mock.patch(json!({"error_style": "tgi"})).await;
    let (_, body) = post(&url, &chat_body(false)).await;
    assert!(
        body["error"].is_string() && body["error_type"].is_string(),
        "{body}"
    );

    mock.patch(json!({"fail_rate": 0.0, "invalid_json": true}))
        .await;
    let mut resp = client()
        .post(&url)
        .send_json(&chat_body(false))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let bytes = resp.body().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    mock.patch(json!({"invalid_json": false, "require_api_key": "sekret"}))
        .await;
    let (status, body) = post(&url, &chat_body(false)).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let mut resp = client()
        .post(&url)
        .insert_header(("authorization", "Bearer sekret"))
        .send_json(&chat_body(false))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let _ = resp.body().await;

    mock.patch(json!({"require_api_key": null, "latency_ms": 300}))
        .await;
    let start = Instant::now();
    let (status, _) = post(&url, &chat_body(false)).await;
    assert_eq!(status, 200);
    assert!(start.elapsed() >= Duration::from_millis(290));

    mock.patch(json!({"latency_ms": 0, "hang": "before_headers", "hang_ms": 300}))
        .await;
    let start = Instant::now();
    let (status, _) = post(&url, &chat_body(false)).await;
    assert_eq!(status, 200, "a bounded hang ends in a normal answer");
    assert!(start.elapsed() >= Duration::from_millis(290));

    let stats = mock.stats().await;
    assert_eq!(stats["faults_injected"], 6);
}

#[actix_rt::test]
async fn slow_drip_and_mid_stream_hang_spread_a_json_body() {
    let mock = Mock::start(&["--chunks", "2", "--slow-drip-ms", "10"]);
    let url = mock.url("/v1/chat/completions");
    let start = Instant::now();
    let mut resp = client()
        .post(&url)
        .send_json(&chat_body(false))
        .await
        .unwrap();
    let mut pieces = 0;
    let mut body = Vec::new();
    while let Some(chunk) = resp.next().await {
        body.extend_from_slice(&chunk.unwrap());
        pieces += 1;
    }
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["choices"][0]["message"]["content"], "word0 word1 ");
    assert!(pieces > 5, "body arrived in {pieces} pieces");
    assert!(start.elapsed() >= Duration::from_millis(100));

    mock.patch(json!({"slow_drip_ms": 0, "hang": "mid_stream", "hang_ms": 1500}))
        .await;
    let start = Instant::now();
    let mut resp = client()
        .post(&url)
        .send_json(&chat_body(false))
        .await
        .unwrap();
    let headers_at = start.elapsed();
    let body = resp.body().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&body).is_ok());
    assert!(
        headers_at < Duration::from_millis(1000),
        "headers waited {headers_at:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(1490));
}

// ---------------------------------------------------------------------------------------------
// health, discovery and control

#[actix_rt::test]
async fn health_states_and_discovery() {
    let mock = Mock::start(&["--model", "a", "--model", "b"]);
    for path in ["/health", "/v1/health", "/readyz", "/healthz"] {
        let (status, body) = get_json(&mock.url(path)).await;
        assert_eq!((status, body), (200, json!({"status": "ok"})), "{path}");
    }
    let (status, body) = get_json(&mock.url("/api/version")).await;
    assert_eq!((status, body), (200, json!({"version": "0.12.6"})));
    let (status, _, body) = get_raw(&mock.url("/"), &[]).await;
    assert_eq!((status, &body[..]), (200, &b"Ollama is running"[..]));
    let (_, models) = get_json(&mock.url("/v1/models")).await;
    assert_eq!(models["object"], "list");
    let ids: Vec<_> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("a"), json!("b")]);

    mock.patch(json!({"health": "loading"})).await;
    let (status, body) = get_json(&mock.url("/health")).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}})
    );
    let (status, _) = get_json(&mock.url("/v1/models")).await;
    assert_eq!(status, 200, "models answer while loading");
    let (status, _) = post(&mock.url("/v1/chat/completions"), &chat_body(false)).await;
    assert_eq!(status, 200, "health alone does not refuse inference");

    mock.patch(json!({"refuse_when_unhealthy": true})).await;
    let (status, body) = post(&mock.url("/v1/chat/completions"), &chat_body(false)).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["message"], "Loading model");

    mock.patch(json!({"health": "down"})).await;
    let (status, body) = get_json(&mock.url("/healthz")).await;
    assert_eq!(status, 500);
    assert!(body["error"].is_object());
    let (status, _) = get_json(&mock.url("/api/version")).await;
    assert_eq!(status, 500);

    let stats = mock.stats().await;
    assert_eq!(stats["requests_by_path"]["/health"], 2);
    // Health probes are not recorded as the last request.
    assert_eq!(stats["last_request"]["path"], "/v1/chat/completions");
}

#[actix_rt::test]
async fn control_api_patch_put_and_reset() {
    let mock = Mock::start(&[
        "--settings-json",
        r#"{"chunks": 4, "health": "loading"}"#,
        "--latency-ms",
        "1",
    ]);
    let (status, config) = get_json(&mock.url("/_mock/config")).await;
    assert_eq!(status, 200);
    assert_eq!(config["chunks"], 4);
    assert_eq!(config["health"], "loading");
    assert_eq!(config["latency_ms"], 1);
    assert_eq!(config["embedding_dim"], 8);

    let c = client();
    let (status, config) = send_json(
        &c,
        "PATCH",
        &mock.url("/_mock/config"),
        &json!({"chunks": 2}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(config["chunks"], 2);
    assert_eq!(config["health"], "loading", "partial update keeps the rest");
    let (status, config) = send_json(
        &c,
        "PUT",
        &mock.url("/_mock/config"),
        &json!({"health": "ok"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(config["health"], "ok");
    assert_eq!(config["chunks"], 2);

    for bad in [
        json!({"no_such_setting": 1}),
        json!({"fail_rate": 7}),
        json!({"health": "meh"}),
        json!(3),
    ] {
        let (status, body) = send_json(&c, "PATCH", &mock.url("/_mock/config"), &bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }

    let (_, _) = post(&mock.url("/v1/chat/completions"), &chat_body(false)).await;
    let stats = mock.stats().await;
    assert_eq!(
        stats["requests_total"], 1,
        "control requests are not counted: {stats}"
    );
    let (status, _) = post(&mock.url("/_mock/reset"), &json!({})).await;
    assert_eq!(status, 200);
    let stats = mock.stats().await;
    assert_eq!(stats["requests_total"], 0);
    assert_eq!(stats["last_request"], Value::Null);
    assert_eq!(stats["bytes_sent"], 0);
}

#[actix_rt::test]
async fn count_starts_independent_servers() {
    let (mut child, urls, _stdout) = spawn(&["--count", "3", "--workers", "2"], 3);
    assert_eq!(urls.len(), 3);
    let mut ports: Vec<_> = urls
        .iter()
        .map(|u| u.rsplit(':').next().unwrap().to_owned())
        .collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for url in &urls {
        assert!(url.starts_with("http://127.0.0.1:"));
        let (status, _) = get_json(&format!("{url}/health")).await;
        assert_eq!(status, 200);
    }
    send_json(
        &client(),
        "PATCH",
        &format!("{}/_mock/config", urls[0]),
        &json!({"health": "down"}),
    )
    .await;
    assert_eq!(get_json(&format!("{}/health", urls[0])).await.0, 500);
    assert_eq!(
        get_json(&format!("{}/health", urls[1])).await.0,
        200,
        "servers share no state"
    );
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// embeddings, speech, images

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    };
    let mut out = Vec::new();
    for quad in s.as_bytes().chunks(4) {
        let data: Vec<u8> = quad.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, c) in data.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[actix_rt::test]
async fn embeddings_float_and_base64_agree() {
    let mock = Mock::start(&[]);
    let url = mock.url("/v1/embeddings");
    let (status, floats) = post(
        &url,
        &json!({"model": "e", "input": ["hello world", "bye"]}),
    )
    .await;
    assert_eq!(status, 200, "{floats}");
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "e");
    assert_eq!(
        floats["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let first = floats["data"][0]["embedding"].as_array().unwrap();
    assert_eq!(first.len(), 8);
    assert_eq!(floats["data"][1]["index"], 1);

    let (_, again) = post(&url, &json!({"model": "e", "input": "hello world"})).await;
    assert_eq!(
        again["data"][0]["embedding"], floats["data"][0]["embedding"],
        "deterministic"
    );

    let (_, b64) = post(
        &url,
        &json!({"model": "e", "input": "hello world", "encoding_format": "base64"}),
    )
    .await;
    let bytes = base64_decode(b64["data"][0]["embedding"].as_str().unwrap());
    assert_eq!(bytes.len(), 8 * 4);
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    for (d, f) in decoded.iter().zip(first) {
        assert!((f64::from(*d) - f.as_f64().unwrap()).abs() < 1e-6);
    }

    let (_, tokens) = post(&url, &json!({"input": [[1, 2, 3], [4]], "dimensions": 4})).await;
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
    assert_eq!(tokens["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);

    let (status, body) = post(&url, &json!({"input": []})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "input");
}

#[actix_rt::test]
async fn speech_returns_wav_in_pieces_with_the_right_content_type() {
    let mock = Mock::start(&["--tts-chunks", "4", "--tts-chunk-interval-ms", "50"]);
    let url = mock.url("/v1/audio/speech");
    let input = "x".repeat(20); // 20 × 50 ms = 1 s
    let start = Instant::now();
    let mut resp = client()
        .post(&url)
        .send_json(
            &json!({"model": "tts", "input": input, "voice": "alloy", "response_format": "wav"}),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers().get("content-type").unwrap(), "audio/wav");
    let mut audio = Vec::new();
    while let Some(chunk) = resp.next().await {
        audio.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        start.elapsed() >= Duration::from_millis(140),
        "3 gaps of 50 ms"
    );
    assert_eq!(&audio[0..4], b"RIFF");
    assert_eq!(&audio[8..16], b"WAVEfmt ");
    assert_eq!(
        u32::from_le_bytes([audio[24], audio[25], audio[26], audio[27]]),
        24_000
    );
    assert_eq!(audio.len(), 44 + 48_000, "1 s of 16-bit mono at 24 kHz");

    for (format, content_type, riff) in [
        ("mp3", "audio/mpeg", true),
        ("opus", "audio/ogg", true),
        ("aac", "audio/aac", true),
        ("flac", "audio/flac", true),
        ("pcm", "audio/pcm", false),
    ] {
        let mut resp = client()
            .post(&url)
            .send_json(&json!({"model": "tts", "input": "hi", "voice": "alloy", "response_format": format}))
            .await
            .unwrap();
        assert_eq!(resp.headers().get("content-type").unwrap(), content_type);
        let body = resp.body().limit(1 << 20).await.unwrap();
        assert_eq!(&body[..4] == b"RIFF", riff, "{format}");
        let min_len = 24_000; // 0.5 s minimum
        assert!(body.len() >= min_len, "{format}: {}", body.len());
    }
    let stats = mock.stats().await;
    assert!(stats["bytes_sent"].as_u64().unwrap() >= 48_044 + 5 * 24_000);
    assert_eq!(stats["streams_completed"], 6);

    let (status, body) = post(&url, &json!({"input": "a", "response_format": "midi"})).await;
    assert_eq!(status, 400, "{body}");
}

#[actix_rt::test]
async fn images_b64_is_a_png_and_urls_are_served() {
    let mock = Mock::start(&[]);
    let url = mock.url("/v1/images/generations");
    let (status, body) = post(
        &url,
        &json!({"prompt": "a cat", "n": 2, "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["created"].is_u64());
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let png = base64_decode(data[0]["b64_json"].as_str().unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let (_, body) = post(&url, &json!({"prompt": "a dog", "response_format": "url"})).await;
    let image_url = body["data"][0]["url"].as_str().unwrap();
    assert!(
        image_url.starts_with(&format!("{}/_mock/files/", mock.url)),
        "{image_url}"
    );
    let (status, headers, bytes) = get_raw(image_url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "image/png");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        get_raw(&mock.url("/_mock/files/img_nope.png"), &[]).await.0,
        404
    );

    let (status, _) = post(&url, &json!({"prompt": "x", "n": 11})).await;
    assert_eq!(status, 400);
}

// ---------------------------------------------------------------------------------------------
// transcription

const BOUNDARY: &str = "mockboundary7MA4YWxkTrZu0gW";

fn text_part(name: &str, value: &str) -> String {
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
}

fn file_part_head() -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
    )
}

fn multipart(before: &[(&str, &str)], file: &[u8], after: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in before {
        body.extend_from_slice(text_part(k, v).as_bytes());
    }
    body.extend_from_slice(file_part_head().as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n");
    for (k, v) in after {
        body.extend_from_slice(text_part(k, v).as_bytes());
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_multipart(url: &str, body: Vec<u8>) -> (u16, String, Bytes) {
    let mut resp = client()
        .post(url)
        .insert_header((
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ))
        .send_body(body)
        .await
        .unwrap();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = resp.body().limit(1 << 20).await.unwrap();
    (resp.status().as_u16(), content_type, body)
}

#[actix_rt::test]
async fn transcription_reads_fields_before_and_after_the_file() {
    let mock = Mock::start(&[]);
    let url = mock.url("/v1/audio/transcriptions");
    let audio = vec![7u8; 1000];

    // Fields first, then the file (what OpenAI SDKs send).
    let body = multipart(
        &[
            ("model", "whisper-1"),
            ("language", "en"),
            ("prompt", "hello"),
            ("temperature", "0.2"),
        ],
        &audio,
        &[],
    );
    let (status, _, bytes) = post_multipart(&url, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["text"], "This is a mock transcription.");
    let m = &json["mock"];
    assert_eq!(m["file_bytes"], 1000);
    assert_eq!(m["file_name"], "clip.wav");
    assert_eq!(m["file_content_type"], "audio/wav");
    assert_eq!(m["fields"]["model"], "whisper-1");
    assert_eq!(m["fields"]["language"], "en");
    assert_eq!(m["fields"]["prompt"], "hello");
    assert_eq!(m["fields"]["temperature"], "0.2");
    assert_eq!(
        m["field_order"],
        json!(["model", "language", "prompt", "temperature", "file"])
    );

    // The file first, then the fields (curl -F in that order, some proxies).
    let body = multipart(
        &[],
        &audio,
        &[
            ("model", "whisper-1"),
            ("response_format", "verbose_json"),
            ("timestamp_granularities[]", "word"),
            ("timestamp_granularities[]", "segment"),
        ],
    );
    let (status, _, bytes) = post_multipart(&url, body).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let m = &json["mock"];
    assert_eq!(m["file_bytes"], 1000);
    assert_eq!(m["fields"]["model"], "whisper-1");
    assert_eq!(
        m["fields"]["timestamp_granularities[]"],
        json!(["word", "segment"])
    );
    assert_eq!(
        m["field_order"],
        json!([
            "file",
            "model",
            "response_format",
            "timestamp_granularities[]",
            "timestamp_granularities[]"
        ])
    );
    // verbose_json shape: OpenAI's task, language, duration, text, segments
    assert_eq!(json["task"], "transcribe");
    assert!(json["language"].is_string() && json["duration"].is_number());
    let segment = &json["segments"][0];
    for key in [
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    ] {
        assert!(segment.get(key).is_some(), "segment lacks {key}");
    }
    assert_eq!(json["words"].as_array().unwrap().len(), 5);

    for (format, content_type, starts) in [
        ("text", "text/plain; charset=utf-8", "This is a mock"),
        ("srt", "text/plain; charset=utf-8", "1\n00:00:00,000 --> "),
        ("vtt", "text/vtt", "WEBVTT\n\n00:00:00.000 --> "),
    ] {
        let body = multipart(
            &[("model", "whisper-1"), ("response_format", format)],
            &audio,
            &[],
        );
        let (status, ct, bytes) = post_multipart(&url, body).await;
        assert_eq!(status, 200);
        assert_eq!(ct, content_type, "{format}");
        assert!(
            String::from_utf8_lossy(&bytes).starts_with(starts),
            "{format}"
        );
    }

    // translations share the parser
    let body = multipart(
        &[("model", "whisper-1")],
        &audio,
        &[("response_format", "verbose_json")],
    );
    let (status, _, bytes) = post_multipart(&mock.url("/v1/audio/translations"), body).await;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["task"], "translate");

    // no file
    let mut no_file = text_part("model", "whisper-1").into_bytes();
    no_file.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let (status, _, bytes) = post_multipart(&url, no_file).await;
    assert_eq!(status, 400);
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"]["param"], "file");

    // not multipart at all
    let (status, body) = post(&url, &json!({"file": "x"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        mock.stats().await["upload_bytes_total"],
        6 * 1000,
        "six uploads carried a file"
    );
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[actix_rt::test]
async fn large_upload_is_counted_with_bounded_memory() {
    const FILE_BYTES: usize = 20 * 1024 * 1024;
    const PIECE: usize = 64 * 1024;
    let mock = Mock::start(&[]);
    let before = peak_rss_kib(mock.pid());

    // The test streams its body too, so neither side holds 20 MiB.
    let head = Bytes::from(format!(
        "{}{}",
        text_part("model", "whisper-1"),
        file_part_head()
    ));
    let tail = Bytes::from(format!(
        "\r\n{}--{BOUNDARY}--\r\n",
        text_part("language", "de")
    ));
    let pieces = FILE_BYTES / PIECE;
    let body = futures_util::stream::iter(
        std::iter::once(head)
            .chain((0..pieces).map(|i| Bytes::from(vec![(i % 251) as u8; PIECE])))
            .chain(std::iter::once(tail))
            .map(Ok::<_, std::io::Error>),
    );
    let mut resp = client()
        .post(mock.url("/v1/audio/transcriptions"))
        .insert_header((
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ))
        .send_stream(body)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let json: Value = resp.json().await.unwrap();
    assert_eq!(json["mock"]["file_bytes"], FILE_BYTES);
    assert_eq!(json["mock"]["fields"]["language"], "de");
    assert_eq!(mock.stats().await["upload_bytes_total"], FILE_BYTES);

    if let (Some(before), Some(after)) = (before, peak_rss_kib(mock.pid())) {
        let grown_mib = after.saturating_sub(before) / 1024;
        eprintln!("peak RSS {before} KiB -> {after} KiB");
        assert!(
            grown_mib < 12,
            "peak RSS grew by {grown_mib} MiB for a 20 MiB upload"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// video

async fn poll_until_terminal(mock: &Mock, id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let (status, job) = get_json(&mock.url(&format!("/v1/video/generations/{id}"))).await;
        assert_eq!(status, 200);
        let status = job["status"].as_str().unwrap().to_owned();
        seen.push(job);
        if ["completed", "failed", "canceled"].contains(&status.as_str())
            || Instant::now() > deadline
        {
            return seen;
        }
        actix_rt::time::sleep(Duration::from_millis(40)).await;
    }
}

#[actix_rt::test]
async fn video_async_lifecycle_with_cancel_and_range() {
    let mock = Mock::start(&[
        "--settings-json",
        r#"{"video_queue_ms": 200, "video_steps": 4, "video_step_ms": 250, "video_bytes": 65536}"#,
    ]);
    let submit = mock.url("/v1/video/generations");
    let (status, job) = post(
        &submit,
        &json!({"model": "wan", "prompt": "a ball", "seconds": 4}),
    )
    .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "queued");
    assert_eq!(job["model"], "wan");
    let id = job["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("mockvid_"));

    let content = mock.url(&format!("/v1/video/generations/{id}/content"));
    assert_eq!(
        get_raw(&content, &[]).await.0,
        409,
        "content before completion"
    );

    let seen = poll_until_terminal(&mock, &id).await;
    let statuses: Vec<&str> = seen.iter().map(|j| j["status"].as_str().unwrap()).collect();
    assert_eq!(*statuses.last().unwrap(), "completed", "{statuses:?}");
    assert!(statuses.contains(&"in_progress"), "{statuses:?}");
    let order = |s: &str| {
        ["queued", "in_progress", "completed"]
            .iter()
            .position(|x| *x == s)
            .unwrap()
    };
    assert!(
        statuses.windows(2).all(|w| order(w[0]) <= order(w[1])),
        "{statuses:?}"
    );
    let progress: Vec<u64> = seen
        .iter()
        .map(|j| j["progress"].as_u64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(*progress.last().unwrap(), 100);
    let done = seen.last().unwrap();
    assert!(done["output"]["videos"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with("/content"));

    let (status, headers, bytes) = get_raw(&content, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "video/mp4");
    assert_eq!(bytes.len(), 65536);
    assert_eq!(&bytes[4..8], b"ftyp");

    let (status, headers, part) = get_raw(&content, &[("range", "bytes=0-99")]).await;
    assert_eq!(status, 206);
    assert_eq!(part.len(), 100);
    assert_eq!(headers.get("content-range").unwrap(), "bytes 0-99/65536");
    assert_eq!(&part[..], &bytes[..100]);
    let (status, _, tail) = get_raw(&content, &[("range", "bytes=-16")]).await;
    assert_eq!((status, &tail[..]), (206, &bytes[65536 - 16..]));
    assert_eq!(get_raw(&content, &[("range", "bytes=70000-")]).await.0, 416);

    // cancel
    let (_, job) = post(&submit, &json!({"prompt": "another"})).await;
    let other = job["id"].as_str().unwrap().to_owned();
    let cancel = mock.url(&format!("/v1/video/generations/{other}/cancel"));
    let (status, canceled) = post(&cancel, &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(canceled["status"], "canceled");
    let (_, polled) = get_json(&mock.url(&format!("/v1/video/generations/{other}"))).await;
    assert_eq!(polled["status"], "canceled");
    assert_eq!(post(&cancel, &json!({})).await.0, 409, "already canceled");
    assert_eq!(
        get_raw(
            &mock.url(&format!("/v1/video/generations/{other}/content")),
            &[]
        )
        .await
        .0,
        409
    );

    // unknown ids
    assert_eq!(
        get_json(&mock.url("/v1/video/generations/mockvid_nope"))
            .await
            .0,
        404
    );
    assert_eq!(
        post(
            &mock.url("/v1/video/generations/mockvid_nope/cancel"),
            &json!({})
        )
        .await
        .0,
        404
    );

    let stats = mock.stats().await;
    assert_eq!(stats["video_submits"], 2);
    assert_eq!(stats["video_cancels"], 3);
    assert!(stats["video_polls"].as_u64().unwrap() >= 3);
    assert_eq!(stats["video_content_fetches"], 6);
    assert_eq!(
        stats["requests_by_path"]["/v1/video/generations/{id}/content"],
        6
    );

    post(&mock.url("/_mock/reset"), &json!({})).await;
    assert_eq!(
        get_json(&mock.url(&format!("/v1/video/generations/{id}")))
            .await
            .0,
        404,
        "reset forgets jobs"
    );
}

#[actix_rt::test]
async fn video_status_styles_and_failures() {
    let mock = Mock::start(&[
        "--video-status-style",
        "replicate",
        "--video-steps",
        "1",
        "--video-step-ms",
        "50",
    ]);
    let submit = mock.url("/v1/video/generations");
    let (_, job) = post(&submit, &json!({"prompt": "p"})).await;
    assert_eq!(job["status"], "starting");

    mock.patch(json!({"video_status_style": "fal"})).await;
    let (_, job) = post(&submit, &json!({"prompt": "p"})).await;
    assert_eq!(job["status"], "IN_QUEUE");

    mock.patch(
        json!({"video_status_style": "openrouter", "video_fail": true, "video_queue_ms": 0}),
    )
    .await;
    let (_, job) = post(&submit, &json!({"prompt": "p"})).await;
    assert_eq!(job["status"], "pending");
    let id = job["id"].as_str().unwrap();
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let (_, job) = get_json(&mock.url(&format!("/v1/video/generations/{id}"))).await;
    assert_eq!(job["status"], "failed");
    assert!(job["error"].is_string(), "{job}");

    let (status, body) = post(&submit, &json!({"model": "m"})).await;
    assert_eq!(status, 400, "prompt is required: {body}");
}

#[actix_rt::test]
async fn video_sync_holds_then_answers_with_mp4() {
    let mock = Mock::start(&[
        "--video-mode",
        "sync",
        "--video-steps",
        "3",
        "--video-step-ms",
        "100",
    ]);
    let url = mock.url("/v1/video/generations");
    let start = Instant::now();
    let mut resp = client()
        .post(&url)
        .send_json(&json!({"prompt": "p"}))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(290));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers().get("content-type").unwrap(), "video/mp4");
    let bytes = resp.body().limit(1 << 20).await.unwrap();
    assert_eq!(bytes.len(), 64 * 1024);
    assert_eq!(&bytes[4..8], b"ftyp");

    mock.patch(json!({"video_fail": true})).await;
    let (status, body) = post(&url, &json!({"prompt": "p"})).await;
    assert_eq!(status, 500);
    assert!(body["error"]["message"].is_string());
    assert_eq!(mock.stats().await["video_submits"], 2);
}

// ---------------------------------------------------------------------------------------------
// library API (in-process, as the router's own tests use it)

#[actix_rt::test]
async fn library_api_in_process() {
    use switchyard_mock::{self as mock, Health, MockSettings};
    let settings = MockSettings {
        chunks: 2,
        ..MockSettings::default()
    };
    let server = mock::start("127.0.0.1", 0, settings).await.unwrap();
    let base = server.url();
    assert_eq!(base, format!("http://127.0.0.1:{}", server.addr.port()));

    let (status, body) = post(&format!("{base}/v1/chat/completions"), &chat_body(false)).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "word0 word1 ");

    server.patch_settings(json!({"health": "loading"})).unwrap();
    assert_eq!(server.settings().health, Health::Loading);
    assert_eq!(get_json(&format!("{base}/health")).await.0, 503);
    assert!(server
        .patch_settings(json!({"bogus": 1}))
        .unwrap_err()
        .contains("bogus"));

    let stats = server.stats();
    assert_eq!(stats.requests_total, 2);
    assert_eq!(stats.last_request.unwrap().path, "/v1/chat/completions");

    server.set_settings(MockSettings::default());
    assert_eq!(get_json(&format!("{base}/health")).await.0, 200);
    server.reset_stats();
    assert_eq!(server.stats().requests_total, 0);

    server.stop().await;
    let after = client().get(format!("{base}/health")).send().await;
    assert!(after.is_err(), "server still answering after stop");
}

/// Rough throughput of the mock alone (client and server share this machine's cores).
/// `cargo test --release --test mock_engine -- --ignored --nocapture throughput`
#[actix_rt::test]
#[ignore = "load smoke test; run in release with --ignored --nocapture"]
async fn throughput_smoke() {
    let mock = Mock::start(&[]);
    for stream in [false, true] {
        let url = mock.url("/v1/chat/completions");
        let body = chat_body(stream);
        let deadline = Instant::now() + Duration::from_secs(3);
        let client = client();
        let tasks = (0..32).map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let mut resp = client.post(&url).send_json(&body).await.unwrap();
                    let bytes = resp.body().await.unwrap();
                    assert!(!bytes.is_empty());
                    done += 1;
                }
                done
            }
        });
        let total: u64 = futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .sum();
        eprintln!("stream={stream}: {} req/s", total / 3);
        assert!(total > 0);
    }
}
