//! Speech, transcription/translation uploads, images and readiness, against the real binary and
//! mock engines.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn opts(models_yaml: &str) -> RouterOpts<'_> {
    RouterOpts {
        models_yaml,
        routing_yaml: None,
        env: vec![],
    }
}

/// A model of `kind`/`type` routed to the given (url, weight) pairs.
fn model_yaml(id: &str, model_type: &str, kind: &str, routes: &[(&str, f64)]) -> String {
    let mut y = format!("  - id: {id}\n    type: {model_type}\n    route:\n");
    for (url, weight) in routes {
        y.push_str(&format!(
            "      - kind: {kind}\n        weight: {weight}\n        base_url: \"{url}\"\n        provider_model_id: served-{id}\n"
        ));
    }
    y
}

/// [`model_yaml`] with routes tried in the order given: each a tier (`priority`) above the next,
/// so the first always gets the request first.
fn model_yaml_in_order(id: &str, model_type: &str, kind: &str, urls: &[&str]) -> String {
    let mut y = format!("  - id: {id}\n    type: {model_type}\n    route:\n");
    for (tier, url) in urls.iter().rev().enumerate().rev() {
        y.push_str(&format!(
            "      - kind: {kind}\n        priority: {tier}\n        base_url: \"{url}\"\n        provider_model_id: served-{id}\n"
        ));
    }
    y
}

fn ctype(headers: &awc::http::header::HeaderMap) -> &str {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn requests_to(mock: &Proc, path: &str) -> u64 {
    mock_stats(mock).await["requests_by_path"][path]
        .as_u64()
        .unwrap_or(0)
}

// ---------------------------------------------------------------- speech

fn speech_body(model: &str, format: Option<&str>) -> Value {
    let mut b = json!({"model": model, "input": "Hello from the router", "voice": "alloy"});
    if let Some(f) = format {
        b["response_format"] = json!(f);
    }
    b
}

#[actix_rt::test]
async fn speech_reaches_the_client_before_the_backend_has_finished() {
    // Eight pieces 250 ms apart: the backend needs about 1.75 s for the whole answer.
    let mock = start_mock(json!({"tts_chunks": 8, "tts_chunk_interval_ms": 250}));
    let yaml = format!(
        "models:\n{}",
        model_yaml("tts", "speech", "tts-engine", &[(&mock.url, 1.0)])
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let start = Instant::now();
    let mut resp = client()
        .post(format!("{}/v1/audio/speech", router.url))
        .insert_header(("content-type", "application/json"))
        .send_body(speech_body("tts", Some("wav")).to_string())
        .await
        .expect("speech request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(ctype(resp.headers()), "audio/wav");
    let mut first = None;
    let mut body = Vec::new();
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.expect("audio chunk");
        if !chunk.is_empty() && first.is_none() {
            first = Some(start.elapsed());
        }
        body.extend_from_slice(&chunk);
    }
    let total = start.elapsed();
    let first = first.expect("some audio");
    assert_eq!(&body[0..4], b"RIFF", "a WAV arrives");
    assert_eq!(&body[8..12], b"WAVE");
    assert!(
        total >= Duration::from_millis(1500),
        "the backend paces its audio: {total:?}"
    );
    assert!(
        first + Duration::from_millis(1000) < total,
        "first byte at {first:?} should come long before the end at {total:?}"
    );
    let sent = mock_stats(&mock).await["last_request"]["body"].clone();
    assert_eq!(sent["model"], "served-tts");
    assert_eq!(sent["voice"], "alloy");
}

#[actix_rt::test]
async fn speech_content_type_follows_response_format() {
    let mock = start_mock(json!({"tts_chunks": 2}));
    let yaml = format!(
        "models:\n{}",
        model_yaml("tts", "speech", "tts-engine", &[(&mock.url, 1.0)])
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    for (format, expected) in [
        (None, "audio/mpeg"),
        (Some("mp3"), "audio/mpeg"),
        (Some("opus"), "audio/ogg"),
        (Some("aac"), "audio/aac"),
        (Some("flac"), "audio/flac"),
        (Some("wav"), "audio/wav"),
        (Some("pcm"), "audio/pcm"),
    ] {
        let mut resp = client()
            .post(format!("{}/v1/audio/speech", router.url))
            .insert_header(("content-type", "application/json"))
            .send_body(speech_body("tts", format).to_string())
            .await
            .expect("speech request");
        assert_eq!(resp.status().as_u16(), 200, "{format:?}");
        assert_eq!(ctype(resp.headers()), expected, "{format:?}");
        let body = resp.body().limit(16 << 20).await.expect("body");
        assert!(!body.is_empty());
        if format == Some("pcm") {
            assert_ne!(&body[0..4], b"RIFF", "pcm is headerless");
        }
    }
}

#[actix_rt::test]
async fn speech_rejects_bad_input_before_any_backend() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: tts\n    type: speech\n    supported_voices: [alloy, nova]\n    route:\n      - kind: tts-engine\n        base_url: \"{}\"\n",
        mock.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let url = format!("{}/v1/audio/speech", router.url);
    for (body, status, param) in [
        (json!({"model": "tts", "voice": "alloy"}), 400, "input"),
        (
            json!({"model": "tts", "input": "", "voice": "alloy"}),
            400,
            "input",
        ),
        (json!({"model": "tts", "input": "hi"}), 400, "voice"),
        (
            json!({"model": "tts", "input": "hi", "voice": "alloy", "response_format": "ogg"}),
            400,
            "response_format",
        ),
        (
            json!({"model": "tts", "input": "hi", "voice": "alloy", "speed": 9}),
            400,
            "speed",
        ),
        (
            json!({"model": "tts", "input": "hi", "voice": "echo"}),
            400,
            "voice",
        ),
        (
            json!({"model": "nope", "input": "hi", "voice": "alloy"}),
            404,
            "model",
        ),
    ] {
        let (s, _, v) = post_json(&url, &body).await;
        assert_openai_error(s, status, &v);
        assert_eq!(v["error"]["param"], param, "{body}");
    }
    let long = "x".repeat(4097);
    let (s, _, v) = post_json(
        &url,
        &json!({"model": "tts", "input": long, "voice": "nova"}),
    )
    .await;
    assert_openai_error(s, 400, &v);
    assert_eq!(requests_to(&mock, "/v1/audio/speech").await, 0);
}

#[actix_rt::test]
async fn speech_falls_back_before_the_first_byte_and_chat_models_are_refused() {
    let good = start_mock(json!({"tts_chunks": 2}));
    let broken = start_mock(json!({"fail_rate": 1.0, "fail_status": 500}));
    let yaml = format!(
        "models:\n{}{}",
        model_yaml_in_order("tts", "speech", "tts-engine", &[&broken.url, &good.url]),
        "  - id: chatty\n    route:\n      - kind: vllm\n        base_url: \"http://127.0.0.1:9\"\n        health_path: none\n"
    );
    // Three endpoints: chatty's (unprobed, so ready at once) must not stand in for the good
    // speech route, which has to be ready for the fallback to reach it.
    let router = start_router_ready(opts(&yaml), 3).await;
    let url = format!("{}/v1/audio/speech", router.url);
    let (s, h, v) = post_json(&url, &speech_body("tts", Some("wav"))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(ctype(&h), "audio/wav");
    assert_eq!(requests_to(&broken, "/v1/audio/speech").await, 1);
    assert_eq!(requests_to(&good, "/v1/audio/speech").await, 1);
    let (s, _, v) = post_json(&url, &speech_body("chatty", None)).await;
    assert_openai_error(s, 400, &v);
    assert_eq!(v["error"]["code"], "wrong_endpoint");
}

#[actix_rt::test]
async fn speech_client_disconnect_releases_the_backend() {
    let mock = start_mock(json!({"tts_chunks": 20, "tts_chunk_interval_ms": 200}));
    let yaml = format!(
        "models:\n  - id: tts\n    type: speech\n    route:\n      - kind: tts-engine\n        max_in_flight: 1\n        base_url: \"{}\"\n",
        mock.url
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    {
        let mut resp = client()
            .post(format!("{}/v1/audio/speech", router.url))
            .insert_header(("content-type", "application/json"))
            .send_body(speech_body("tts", Some("wav")).to_string())
            .await
            .expect("speech request");
        assert_eq!(resp.status().as_u16(), 200);
        let first = resp.next().await.expect("a chunk").expect("ok chunk");
        assert!(!first.is_empty());
        // Dropped here, mid-stream.
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = mock_stats(&mock).await;
        let (_, health) = get_json(&format!("{}/health", router.url)).await.unwrap();
        if stats["streams_aborted"] == 1 && health["endpoints"]["in_flight"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backend stream not aborted or lease not released: {stats} {health}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // The single in-flight slot is free again.
    let (s, _, v) = post_json(
        &format!("{}/v1/audio/speech", router.url),
        &json!({"model": "tts", "input": "a", "voice": "alloy", "response_format": "pcm"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

// ---------------------------------------------------------------- transcriptions

enum FormPart<'a> {
    Text(&'a str, &'a str),
    File(&'a str, usize),
}

const BOUNDARY: &str = "----testboundary7MA4YWxkTrZu0gW";

fn file_bytes(len: usize) -> Vec<u8> {
    // An increasing byte pattern never contains CRLF or "--", so it cannot fake a boundary.
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn form(parts: &[FormPart<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            FormPart::Text(name, value) => {
                out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            }
            FormPart::File(filename, len) => {
                out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n")
                        .as_bytes(),
                );
                out.extend_from_slice(&file_bytes(*len));
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

async fn upload(url: &str, body: Vec<u8>) -> (u16, awc::http::header::HeaderMap, Bytes) {
    let mut resp = client()
        .post(url)
        .insert_header(("content-type", form_type()))
        .send_body(body)
        .await
        .expect("upload");
    let bytes = resp.body().limit(16 << 20).await.expect("body");
    (resp.status().as_u16(), resp.headers().clone(), bytes)
}

/// Like [`upload`] but chunked (no Content-Length), as a client streaming from a pipe would.
async fn upload_chunked(url: &str, body: Vec<u8>) -> (u16, Bytes) {
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut resp = client()
        .post(url)
        .insert_header(("content-type", form_type()))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("upload");
    let bytes = resp.body().limit(16 << 20).await.expect("body");
    (resp.status().as_u16(), bytes)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into()))
}

fn whisper_yaml(routes: &[(&str, f64)]) -> String {
    format!(
        "models:\n{}",
        model_yaml("stt", "transcription", "whisper", routes)
    )
}

#[actix_rt::test]
async fn twenty_mib_uploads_in_both_field_orders() {
    let mock = start_mock(json!({}));
    let router = start_router_ready(opts(&whisper_yaml(&[(&mock.url, 1.0)])), 1).await;
    let url = format!("{}/v1/audio/transcriptions", router.url);
    let size = 20 * 1024 * 1024;

    // What OpenAI's SDK sends: fields first, then the file; streamed straight through.
    let body = form(&[
        FormPart::Text("model", "stt"),
        FormPart::Text("language", "en"),
        FormPart::Text("timestamp_granularities[]", "word"),
        FormPart::Text("timestamp_granularities[]", "segment"),
        FormPart::File("speech.wav", size),
        FormPart::Text("response_format", "verbose_json"),
    ]);
    let (status, headers, bytes) = upload(&url, body).await;
    let v = json_of(&bytes);
    assert_eq!(status, 200, "{v}");
    assert_eq!(ctype(&headers), "application/json");
    assert_eq!(v["task"], "transcribe");
    assert!(
        v["words"].is_array(),
        "word timestamps asked after the file: {v}"
    );
    let m = &v["mock"];
    assert_eq!(m["file_bytes"], size as u64);
    assert_eq!(m["file_name"], "speech.wav");
    assert_eq!(m["file_content_type"], "audio/wav");
    assert_eq!(m["fields"]["model"], "served-stt");
    assert_eq!(m["fields"]["language"], "en");
    assert_eq!(
        m["fields"]["timestamp_granularities[]"],
        json!(["word", "segment"])
    );
    assert_eq!(
        m["field_order"],
        json!([
            "model",
            "language",
            "timestamp_granularities[]",
            "timestamp_granularities[]",
            "file",
            "response_format"
        ])
    );

    // File first: spooled, then sent with every field ahead of the file.
    let body = form(&[
        FormPart::File("late-model.mp3", size),
        FormPart::Text("model", "stt"),
        FormPart::Text("prompt", "spelling: Switchyard"),
    ]);
    let (status, _, bytes) = upload(&url, body).await;
    let v = json_of(&bytes);
    assert_eq!(status, 200, "{v}");
    let m = &v["mock"];
    assert_eq!(m["file_bytes"], size as u64);
    assert_eq!(m["fields"]["model"], "served-stt");
    assert_eq!(m["fields"]["prompt"], "spelling: Switchyard");
    assert_eq!(m["field_order"], json!(["model", "prompt", "file"]));
    assert_eq!(
        mock_stats(&mock).await["upload_bytes_total"],
        2 * size as u64
    );
}

#[actix_rt::test]
async fn translations_and_text_formats_pass_through() {
    let mock = start_mock(json!({"transcription_text": "Bonjour le monde"}));
    let router = start_router_ready(opts(&whisper_yaml(&[(&mock.url, 1.0)])), 1).await;
    for (path, format, content_type, needle) in [
        (
            "transcriptions",
            "text",
            "text/plain; charset=utf-8",
            "Bonjour le monde\n",
        ),
        (
            "transcriptions",
            "srt",
            "text/plain; charset=utf-8",
            "00:00:00,000 -->",
        ),
        ("transcriptions", "vtt", "text/vtt", "WEBVTT"),
        ("translations", "json", "application/json", "\"text\""),
        (
            "translations",
            "verbose_json",
            "application/json",
            "\"translate\"",
        ),
    ] {
        let body = form(&[
            FormPart::Text("model", "stt"),
            FormPart::Text("response_format", format),
            FormPart::File("a.wav", 64 * 1024),
        ]);
        let (status, headers, bytes) =
            upload(&format!("{}/v1/audio/{path}", router.url), body).await;
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert_eq!(status, 200, "{path} {format}: {text}");
        assert_eq!(ctype(&headers), content_type, "{path} {format}");
        assert!(text.contains(needle), "{path} {format}: {text}");
    }
    // Same on OpenRouter's prefix.
    let body = form(&[FormPart::Text("model", "stt"), FormPart::File("a.wav", 10)]);
    let (status, _, _) = upload(&format!("{}/api/v1/audio/transcriptions", router.url), body).await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn uploads_over_the_limit_get_413_and_nothing_goes_upstream() {
    let mock = start_mock(json!({}));
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &whisper_yaml(&[(&mock.url, 1.0)]),
            routing_yaml: None,
            env: vec![("MAX_UPLOAD_MB", "1".into())],
        },
        1,
    )
    .await;
    let url = format!("{}/v1/audio/transcriptions", router.url);
    let big = 3 * 1024 * 1024;
    // Declared length over the limit: refused before reading.
    let (status, _, bytes) = upload(
        &url,
        form(&[FormPart::Text("model", "stt"), FormPart::File("a.wav", big)]),
    )
    .await;
    let v = json_of(&bytes);
    assert_openai_error(status, 413, &v);
    assert_eq!(v["error"]["code"], "file_too_large");
    // No length declared, file before model: the spool stops at the limit.
    let (status, bytes) = upload_chunked(
        &url,
        form(&[FormPart::File("a.wav", big), FormPart::Text("model", "stt")]),
    )
    .await;
    assert_openai_error(status, 413, &json_of(&bytes));
    // Just under the limit is fine.
    let (status, _, bytes) = upload(
        &url,
        form(&[
            FormPart::Text("model", "stt"),
            FormPart::File("a.wav", 1024 * 1024 - 10),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(requests_to(&mock, "/v1/audio/transcriptions").await, 1);
}

#[actix_rt::test]
async fn malformed_uploads_get_400_and_nothing_goes_upstream() {
    let mock = start_mock(json!({}));
    let router = start_router_ready(opts(&whisper_yaml(&[(&mock.url, 1.0)])), 1).await;
    let url = format!("{}/v1/audio/transcriptions", router.url);
    let post = |content_type: String, body: Vec<u8>| {
        let url = url.clone();
        async move {
            let mut resp = client()
                .post(url)
                .insert_header(("content-type", content_type))
                .send_body(body)
                .await
                .expect("request");
            let bytes = resp.body().limit(1 << 20).await.expect("body");
            (resp.status().as_u16(), json_of(&bytes))
        }
    };
    // Not multipart at all.
    let (s, v) = post("application/json".into(), b"{\"model\":\"stt\"}".to_vec()).await;
    assert_openai_error(s, 415, &v);
    // Multipart without a boundary.
    let (s, v) = post(
        "multipart/form-data".into(),
        form(&[FormPart::Text("model", "stt")]),
    )
    .await;
    assert_openai_error(s, 400, &v);
    // A boundary that is not the one in the body.
    let (s, v) = post(
        "multipart/form-data; boundary=somethingelse".into(),
        form(&[
            FormPart::Text("model", "stt"),
            FormPart::File("a.wav", 1000),
        ]),
    )
    .await;
    assert_openai_error(s, 400, &v);
    // No file.
    let (s, v) = post(
        form_type(),
        form(&[
            FormPart::Text("model", "stt"),
            FormPart::Text("language", "en"),
        ]),
    )
    .await;
    assert_openai_error(s, 400, &v);
    assert_eq!(v["error"]["param"], "file");
    // No model (file first, so it was spooled and then refused).
    let (s, v) = post(form_type(), form(&[FormPart::File("a.wav", 5000)])).await;
    assert_openai_error(s, 400, &v);
    assert_eq!(v["error"]["param"], "model");
    // Truncated: the body stops inside the file, without a closing boundary.
    let mut truncated = form(&[
        FormPart::File("a.wav", 200_000),
        FormPart::Text("model", "stt"),
    ]);
    truncated.truncate(100_000);
    let (s, v) = post(form_type(), truncated).await;
    assert_openai_error(s, 400, &v);
    // Two files, a bad response_format, an unknown model.
    let (s, v) = post(
        form_type(),
        form(&[
            FormPart::File("a.wav", 10),
            FormPart::File("b.wav", 10),
            FormPart::Text("model", "stt"),
        ]),
    )
    .await;
    assert_openai_error(s, 400, &v);
    let (s, v) = post(
        form_type(),
        form(&[
            FormPart::File("a.wav", 10),
            FormPart::Text("model", "stt"),
            FormPart::Text("response_format", "mp3"),
        ]),
    )
    .await;
    assert_openai_error(s, 400, &v);
    assert_eq!(v["error"]["param"], "response_format");
    let (s, v) = post(
        form_type(),
        form(&[FormPart::Text("model", "nope"), FormPart::File("a.wav", 10)]),
    )
    .await;
    assert_openai_error(s, 404, &v);
    assert_eq!(
        requests_to(&mock, "/v1/audio/transcriptions").await,
        0,
        "{}",
        mock_stats(&mock).await
    );
}

#[actix_rt::test]
async fn a_streamed_upload_that_breaks_off_never_completes_upstream() {
    let mock = start_mock(json!({}));
    let router = start_router_ready(opts(&whisper_yaml(&[(&mock.url, 1.0)])), 1).await;
    // Model first, so the file is already streaming to the backend when the body ends early.
    let mut truncated = form(&[
        FormPart::Text("model", "stt"),
        FormPart::File("a.wav", 2_000_000),
    ]);
    truncated.truncate(1_000_000);
    let (s, _, bytes) = upload(
        &format!("{}/v1/audio/transcriptions", router.url),
        truncated,
    )
    .await;
    assert_openai_error(s, 400, &json_of(&bytes));
    // The backend saw an aborted upload and answered nothing.
    let stats = mock_stats(&mock).await;
    assert_eq!(stats["bytes_sent"], 0, "{stats}");
    // And the router is fine afterwards.
    let (s, _, bytes) = upload(
        &format!("{}/v1/audio/transcriptions", router.url),
        form(&[
            FormPart::Text("model", "stt"),
            FormPart::File("a.wav", 1000),
        ]),
    )
    .await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&bytes));
}

#[actix_rt::test]
async fn a_streamed_upload_falls_back_from_its_spooled_copy() {
    let broken = start_mock(json!({"fail_rate": 1.0, "fail_status": 503}));
    let good = start_mock(json!({}));
    let router = start_router_ready(
        opts(&format!(
            "models:\n{}",
            model_yaml_in_order("stt", "transcription", "whisper", &[&broken.url, &good.url])
        )),
        2,
    )
    .await;
    let size = 3 * 1024 * 1024;
    let (s, _, bytes) = upload(
        &format!("{}/v1/audio/transcriptions", router.url),
        form(&[
            FormPart::Text("model", "stt"),
            FormPart::File("a.wav", size),
        ]),
    )
    .await;
    let v = json_of(&bytes);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["mock"]["file_bytes"], size as u64);
    assert_eq!(requests_to(&broken, "/v1/audio/transcriptions").await, 1);
    assert_eq!(requests_to(&good, "/v1/audio/transcriptions").await, 1);
}

/// Files the router holds open in `dir` (spool files are unlinked, so they show as deleted).
fn open_files_in(pid: u32, dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let dir = dir.to_string_lossy().to_string();
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().to_string())
        .filter(|p| p.starts_with(&dir))
        .collect()
}

#[actix_rt::test]
async fn spool_files_are_released_on_success_error_and_disconnect() {
    let mock = start_mock(json!({}));
    let spool = tempfile::tempdir().expect("spool dir");
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &whisper_yaml(&[(&mock.url, 1.0)]),
            routing_yaml: None,
            env: vec![("UPLOAD_SPOOL_DIR", spool.path().display().to_string())],
        },
        1,
    )
    .await;
    let url = format!("{}/v1/audio/transcriptions", router.url);
    // Success and a client error, both spooled (file first).
    let (s, _, _) = upload(
        &url,
        form(&[
            FormPart::File("a.wav", 500_000),
            FormPart::Text("model", "stt"),
        ]),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = upload(&url, form(&[FormPart::File("a.wav", 500_000)])).await;
    assert_eq!(s, 400);
    // A client that goes away in the middle of its file.
    let body = form(&[
        FormPart::File("a.wav", 4_000_000),
        FormPart::Text("model", "stt"),
    ]);
    let declared = body.len();
    let half: Vec<Result<Bytes, std::io::Error>> = body[..declared / 2]
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let slow = futures_util::stream::iter(half).chain(futures_util::stream::once(async {
        actix_rt::time::sleep(Duration::from_secs(600)).await;
        Ok(Bytes::new())
    }));
    let pending = client()
        .post(&url)
        .insert_header(("content-type", form_type()))
        .insert_header(("content-length", declared.to_string()))
        .timeout(Duration::from_millis(1500))
        .send_stream(slow);
    let sent = pending.await;
    assert!(sent.is_err(), "the client gave up");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !open_files_in(router.pid(), spool.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "spool files still open: {:?}",
            open_files_in(router.pid(), spool.path())
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().collect();
    assert!(left.is_empty(), "spool dir not empty: {left:?}");
}

/// What a trickling client got: the status (0 if none within its patience) and the body.
struct Trickled {
    status: u16,
    body: Value,
}

/// Send `body` as an upload over a raw connection: its first KiB at once (so the file part has
/// begun), then `chunk` bytes every `every`, giving up after `patience`. A second thread reads
/// the socket all along, so an early answer (the router cutting the upload off) is caught while
/// the client is still sending.
fn trickle_upload(
    router: &str,
    body: Vec<u8>,
    chunk: usize,
    every: Duration,
    patience: Duration,
) -> Trickled {
    use std::io::{Read, Write};
    let addr = router.trim_start_matches("http://");
    let mut writer = std::net::TcpStream::connect(addr).expect("connect");
    let mut reader = writer.try_clone().expect("clone socket");
    reader
        .set_read_timeout(Some(patience))
        .expect("read timeout");
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = answered.clone();
    let read = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            if String::from_utf8_lossy(&out).trim_end().ends_with('}') {
                break;
            }
        }
        out
    });
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        form_type(),
        body.len()
    );
    let started = Instant::now();
    let lead = body.len().min(1024);
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(&body[..lead]);
    for piece in body[lead..].chunks(chunk) {
        if answered.load(std::sync::atomic::Ordering::SeqCst) || started.elapsed() > patience {
            break;
        }
        if writer.write_all(piece).is_err() {
            break;
        }
        std::thread::sleep(every);
    }
    let response = String::from_utf8_lossy(&read.join().expect("reader")).into_owned();
    Trickled {
        status: response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        body: response
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
            .unwrap_or(Value::Null),
    }
}

#[actix_rt::test]
async fn slow_uploads_are_cut_off_and_release_their_lease_and_spool_file() {
    let broken = start_mock(json!({"fail_rate": 1.0, "fail_status": 503}));
    let good = start_mock(json!({}));
    let spool = tempfile::tempdir().expect("spool dir");
    // Two routes, so a streamed upload is also spooled (a copy for fallback): every row holds
    // a spool file while it arrives, and the model-first rows a backend lease too.
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &whisper_yaml(&[(&good.url, 1000.0), (&broken.url, 1.0)]),
            routing_yaml: None,
            env: vec![
                ("UPLOAD_SPOOL_DIR", spool.path().display().to_string()),
                ("UPLOAD_DEADLINE_SECS", "3".into()),
                ("UPLOAD_MIN_BYTES_PER_SEC", "500".into()),
                ("UPLOAD_RATE_GRACE_SECS", "0.5".into()),
                ("UPLOAD_RATE_WINDOW_SECS", "1".into()),
            ],
        },
        2,
    )
    .await;
    let model_first = |len| form(&[FormPart::Text("model", "stt"), FormPart::File("a.wav", len)]);
    let file_first = |len| form(&[FormPart::File("a.wav", len), FormPart::Text("model", "stt")]);
    let ms = Duration::from_millis;
    // (name, body, bytes per write, between writes, expected status, expected code, leased)
    let table = [
        (
            "model first, 100 B/s",
            model_first(40_000),
            20,
            ms(200),
            408,
            Some("upload_too_slow"),
            true,
        ),
        (
            "file first, 100 B/s",
            file_first(40_000),
            20,
            ms(200),
            408,
            Some("upload_too_slow"),
            false,
        ),
        (
            "fast enough but past the deadline",
            model_first(40_000),
            400,
            ms(100),
            408,
            Some("upload_timeout"),
            true,
        ),
        (
            "steady 2 KB/s within the deadline",
            model_first(2_500),
            200,
            ms(100),
            200,
            None,
            true,
        ),
    ];
    for (name, body, chunk, every, status, code, leased) in table {
        let started = Instant::now();
        let url = router.url.clone();
        let client = std::thread::spawn(move || {
            trickle_upload(&url, body, chunk, every, Duration::from_secs(12))
        });
        let (mut max_in_flight, mut spooled) = (0, false);
        while !client.is_finished() {
            max_in_flight = max_in_flight.max(in_flight(&router.url).await);
            spooled |= !open_files_in(router.pid(), spool.path()).is_empty();
            actix_rt::time::sleep(ms(50)).await;
        }
        let got = client.join().expect("client thread");
        let took = started.elapsed();
        match code {
            Some(code) => {
                assert_openai_error(got.status, status, &got.body);
                assert_eq!(got.body["error"]["code"], code, "{name}: {}", got.body);
                assert!(
                    took < Duration::from_secs(6),
                    "{name}: cut off after {took:?}"
                );
            }
            None => assert_eq!(got.status, status, "{name}: {}", got.body),
        }
        assert!(spooled, "{name}: the upload was never spooled");
        assert_eq!(
            max_in_flight,
            u64::from(leased),
            "{name}: lease held while arriving"
        );
        wait_in_flight_zero(&router.url, Duration::from_secs(5)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !open_files_in(router.pid(), spool.path()).is_empty() {
            assert!(Instant::now() < deadline, "{name}: spool file still open");
            actix_rt::time::sleep(ms(50)).await;
        }
        let left: Vec<_> = std::fs::read_dir(spool.path()).unwrap().collect();
        assert!(left.is_empty(), "{name}: spool dir not empty: {left:?}");
    }
}

// ---------------------------------------------------------------- images

#[actix_rt::test]
async fn images_are_relayed_as_url_or_base64() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "models:\n{}",
        model_yaml("img", "image", "custom", &[(&mock.url, 1.0)])
    );
    let router = start_router_ready(opts(&yaml), 1).await;
    let url = format!("{}/v1/images/generations", router.url);
    let (s, _, v) = post_json(
        &url,
        &json!({"model": "img", "prompt": "a red square", "n": 2, "size": "256x256", "quality": "standard", "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert!(data[0]["b64_json"]
        .as_str()
        .is_some_and(|b| b.starts_with("iVBORw0KGgo")));
    let sent = mock_stats(&mock).await["last_request"]["body"].clone();
    assert_eq!(sent["model"], "served-img");
    assert_eq!(sent["size"], "256x256");
    let (s, _, v) = post_json(&url, &json!({"model": "img", "prompt": "a red square"})).await;
    assert_eq!(s, 200, "{v}");
    let link = v["data"][0]["url"].as_str().expect("url").to_string();
    let mut resp = client().get(&link).send().await.expect("image url");
    assert_eq!(resp.status().as_u16(), 200);
    let png = resp.body().await.expect("png");
    assert_eq!(&png[1..4], b"PNG");
    for bad in [
        json!({"model": "img"}),
        json!({"model": "img", "prompt": "x", "n": 11}),
        json!({"model": "img", "prompt": "x", "response_format": "png"}),
        json!({"model": "img", "prompt": "x", "size": "huge"}),
    ] {
        let (s, _, v) = post_json(&url, &bad).await;
        assert_openai_error(s, 400, &v);
    }
    assert_eq!(requests_to(&mock, "/v1/images/generations").await, 2);
}

// ---------------------------------------------------------------- readiness

#[actix_rt::test]
async fn loading_models_answer_503_with_retry_after_on_every_new_endpoint() {
    let mock = start_mock(json!({"health": "loading"}));
    let yaml = format!(
        "models:\n{}{}{}{}",
        model_yaml("tts", "speech", "tts-engine", &[(&mock.url, 1.0)]),
        model_yaml("stt", "transcription", "whisper", &[(&mock.url, 1.0)]),
        model_yaml("img", "image", "custom", &[(&mock.url, 1.0)]),
        model_yaml("vid", "video", "video-engine", &[(&mock.url, 1.0)]),
    );
    let router = start_router(opts(&yaml));
    // Let a few probes fail: the endpoints stay `starting`.
    actix_rt::time::sleep(Duration::from_millis(600)).await;
    let check = |status: u16, headers: &awc::http::header::HeaderMap, v: &Value| {
        assert_openai_error(status, 503, v);
        assert_eq!(v["error"]["code"], "model_loading", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("loading"));
        assert!(headers.get("retry-after").is_some());
    };
    let (s, h, v) = post_json(
        &format!("{}/v1/audio/speech", router.url),
        &speech_body("tts", None),
    )
    .await;
    check(s, &h, &v);
    let (s, h, v) = post_json(
        &format!("{}/v1/images/generations", router.url),
        &json!({"model": "img", "prompt": "x"}),
    )
    .await;
    check(s, &h, &v);
    let (s, h, v) = post_json(
        &format!("{}/v1/video/generations", router.url),
        &json!({"model": "vid", "prompt": "x"}),
    )
    .await;
    check(s, &h, &v);
    let (s, h, bytes) = upload(
        &format!("{}/v1/audio/transcriptions", router.url),
        form(&[
            FormPart::Text("model", "stt"),
            FormPart::File("a.wav", 1000),
        ]),
    )
    .await;
    check(s, &h, &json_of(&bytes));
    let (_, models) = get_json(&format!("{}/v1/models", router.url))
        .await
        .unwrap();
    for m in models["data"].as_array().unwrap() {
        assert_eq!(m["availability"]["status"], "loading", "{m}");
    }
    // Once the engine is ready, the same requests go through.
    mock_patch(&mock, json!({"health": "ok"})).await;
    // One endpoint per kind on the same engine: four to wait for.
    wait_ready(&router.url, 4).await;
    let (s, _, v) = post_json(
        &format!("{}/v1/images/generations", router.url),
        &json!({"model": "img", "prompt": "x"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

// ---------------------------------------------------------------- records

/// The `api_logs` rows of a router's SQLite file, waiting until `n` rows with `op` exist.
async fn logged(db: &std::path::Path, op: &str, n: usize) -> Vec<sqlx::sqlite::SqliteRow> {
    use sqlx::Connection;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut conn) =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await
        {
            if let Ok(rows) = sqlx::query("SELECT * FROM api_logs WHERE op = $1 ORDER BY ts_ms")
                .bind(op)
                .fetch_all(&mut conn)
                .await
            {
                if rows.len() >= n {
                    return rows;
                }
            }
        }
        assert!(Instant::now() < deadline, "no {n} `{op}` rows in api_logs");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn audio_image_and_video_units_are_recorded_and_priced() {
    use sqlx::Row;
    let mock = start_mock(
        json!({"tts_chunks": 2, "video_queue_ms": 0, "video_steps": 1, "video_step_ms": 10}),
    );
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("log.db");
    let yaml = format!(
        "models:
  - id: tts
    type: speech
    pricing: {{audio: \"0.001\"}}
    route: [{{kind: tts-engine, base_url: \"{url}\"}}]
  - id: stt
    type: transcription
    pricing: {{audio: \"0.002\"}}
    route: [{{kind: whisper, base_url: \"{url}\"}}]
  - id: img
    type: image
    pricing: {{image: \"0.04\"}}
    route: [{{kind: custom, base_url: \"{url}\"}}]
  - id: vid
    type: video
    pricing: {{video: \"0.5\"}}
    route: [{{name: engine, kind: video-engine, base_url: \"{url}\"}}]
",
        url = mock.url
    );
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![
                ("SQLITE_DB_PATH", db.display().to_string()),
                ("VIDEO_POLL_INTERVAL_MS", "50".into()),
            ],
        },
        4,
    )
    .await;
    let (s, _, _) = post_json(
        &format!("{}/v1/audio/speech", router.url),
        &speech_body("tts", Some("wav")),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = upload(
        &format!("{}/v1/audio/transcriptions", router.url),
        form(&[
            FormPart::Text("model", "stt"),
            FormPart::File("a.wav", 64 * 1024),
        ]),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = post_json(
        &format!("{}/v1/images/generations", router.url),
        &json!({"model": "img", "prompt": "x", "n": 3, "response_format": "b64_json"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, v) = post_json(
        &format!("{}/v1/video/generations", router.url),
        &json!({"model": "vid", "prompt": "x", "seconds": 8}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let job_id = v["id"].as_str().unwrap().to_string();

    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    let speech = &logged(&db, "speech", 1).await[0];
    let secs: f64 = speech.get("audio_seconds");
    // "Hello from the router": 21 characters × 50 ms of tone.
    assert!(close(secs, 1.05), "speech seconds {secs}");
    assert!(close(speech.get::<f64, _>("cost_usd"), secs * 0.001));
    let stt = &logged(&db, "transcriptions", 1).await[0];
    let secs: f64 = stt.get("audio_seconds");
    assert!(secs > 0.0);
    assert!(close(stt.get::<f64, _>("cost_usd"), secs * 0.002));
    let img = &logged(&db, "images", 1).await[0];
    assert_eq!(img.get::<i64, _>("images"), 3);
    assert!(close(img.get::<f64, _>("cost_usd"), 0.12));
    // The create request (202, no units) and the job's completion record (8 s of video).
    let video = logged(&db, "video", 2).await;
    let create = video
        .iter()
        .find(|r| r.get::<i64, _>("status_code") == 202)
        .expect("create record");
    assert!(create.get::<Option<f64>, _>("video_seconds").is_none());
    let done = video
        .iter()
        .find(|r| r.get::<String, _>("request_id") == job_id)
        .expect("completion record");
    assert_eq!(done.get::<f64, _>("video_seconds"), 8.0);
    assert!(close(done.get::<f64, _>("cost_usd"), 4.0));
    assert_eq!(done.get::<String, _>("route"), "engine");
}
