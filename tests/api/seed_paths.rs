//! The self-hosted platform's own paths: `/v1/generations/images`, `/v1/generations/videos`
//! (with the job's status, content and cancel paths) and the proxy prefix `/api/v1/ai/…`.
//! Each answers as the endpoint it aliases and sits behind the same key check.

use crate::common;

use common::*;
use serde_json::{json, Value};

const KEY: &str = "sk-seed-1234";
const BOUNDARY: &str = "----seedpathsboundary";

fn models_yaml(url: &str) -> String {
    format!(
        "models:
  - id: m
    route: [{{kind: vllm, base_url: \"{url}\"}}]
  - id: emb
    type: embedding
    route: [{{kind: vllm, base_url: \"{url}\"}}]
  - id: img
    type: image
    route: [{{kind: vllm, base_url: \"{url}\"}}]
  - id: tts
    type: speech
    route: [{{kind: tts-engine, base_url: \"{url}\"}}]
  - id: stt
    type: transcription
    route: [{{kind: whisper, base_url: \"{url}\"}}]
  - id: vid
    type: video
    route: [{{name: engine, kind: video-engine, base_url: \"{url}\"}}]
"
    )
}

async fn router(mock: &Proc) -> Router {
    start_router_ready(
        RouterOpts {
            models_yaml: &models_yaml(&mock.url),
            routing_yaml: None,
            env: vec![
                ("API_KEYS", KEY.into()),
                ("VIDEO_POLL_INTERVAL_MS", "50".into()),
            ],
        },
        4,
    )
    .await
}

fn transcription_form() -> Vec<u8> {
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
    )
    .into_bytes();
    out.extend((0..4096).map(|i| (i % 251) as u8));
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

/// POST with the key; status and the body's top-level keys (the shape of the answer).
async fn post_keyed(url: &str, body: &Value) -> (u16, Value) {
    let (status, _, v) = send_with_key("POST", url, Some(KEY), Some(body)).await;
    (status, v)
}

fn keys_of(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

#[actix_rt::test]
async fn every_alias_answers_as_its_original() {
    let mock = start_mock(json!({"video_queue_ms": 0, "video_steps": 1, "video_step_ms": 10}));
    let router = router(&mock).await;
    let base = &router.url;
    let json_cases: [(&str, &[&str], Value); 4] = [
        (
            "/v1/chat/completions",
            &["/api/v1/ai/chat/completions"],
            chat_body("m", false),
        ),
        (
            "/v1/embeddings",
            &["/api/v1/ai/embeddings"],
            json!({"model": "emb", "input": "hello"}),
        ),
        (
            "/v1/images/generations",
            &[
                "/v1/generations/images",
                "/api/v1/generations/images",
                "/api/v1/ai/generations/images",
                "/api/v1/ai/images/generations",
            ],
            json!({"model": "img", "prompt": "a cat", "response_format": "b64_json"}),
        ),
        (
            "/v1/completions",
            &["/api/v1/ai/completions"],
            json!({"model": "m", "prompt": "hello"}),
        ),
    ];
    for (original, aliases, body) in json_cases {
        let (status, expected) = post_keyed(&format!("{base}{original}"), &body).await;
        assert_eq!(status, 200, "{original}: {expected}");
        for alias in aliases {
            let (status, v) = post_keyed(&format!("{base}{alias}"), &body).await;
            assert_eq!(status, 200, "{alias}: {v}");
            assert_eq!(keys_of(&v), keys_of(&expected), "{alias}");
            assert_eq!(v["model"], expected["model"], "{alias}");
        }
    }
    // Speech and transcriptions under the platform prefix.
    let (status, headers, _) = send_with_key(
        "POST",
        &format!("{base}/api/v1/ai/audio/speech"),
        Some(KEY),
        Some(&json!({"model": "tts", "input": "hi", "voice": "alloy", "response_format": "wav"})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("audio/")));
    let mut resp = client()
        .post(format!("{base}/api/v1/ai/audio/transcriptions"))
        .insert_header(("authorization", format!("Bearer {KEY}")))
        .insert_header((
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ))
        .send_body(transcription_form())
        .await
        .expect("transcription");
    let body = resp.body().await.expect("body");
    assert_eq!(resp.status(), 200, "{}", String::from_utf8_lossy(&body));

    // A video job's whole life on the platform's paths.
    for jobs in ["/v1/generations/videos", "/api/v1/ai/generations/videos"] {
        let (status, headers, v) = send_with_key(
            "POST",
            &format!("{base}{jobs}"),
            Some(KEY),
            Some(&json!({"model": "vid", "prompt": "a wave"})),
        )
        .await;
        assert_eq!(status, 202, "{jobs}: {v}");
        assert!(headers.contains_key("location"));
        let id = v["id"].as_str().expect("job id").to_string();
        let (status, _, job) =
            send_with_key("GET", &format!("{base}{jobs}/{id}"), Some(KEY), None).await;
        assert_eq!(
            (status, job["id"].as_str()),
            (200, Some(id.as_str())),
            "{job}"
        );
        let (status, _, list) =
            send_with_key("GET", &format!("{base}{jobs}"), Some(KEY), None).await;
        assert_eq!(status, 200);
        assert!(list["data"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["id"] == id.as_str())));
        // Completed (content served) or canceled (a cancel on a finished job is refused):
        // either way the alias reached the job.
        let mut done = false;
        for _ in 0..200 {
            let (_, _, job) =
                send_with_key("GET", &format!("{base}{jobs}/{id}"), Some(KEY), None).await;
            if job["status"] == "completed" {
                done = true;
                break;
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(done, "job {id} never completed");
        let mut resp = client()
            .get(format!("{base}{jobs}/{id}/content"))
            .insert_header(("authorization", format!("Bearer {KEY}")))
            .send()
            .await
            .expect("content");
        let bytes = resp.body().limit(64 << 20).await.expect("content body");
        assert_eq!(resp.status(), 200);
        assert!(!bytes.is_empty());
        let (status, _, v) = send_with_key(
            "POST",
            &format!("{base}{jobs}/{id}/cancel"),
            Some(KEY),
            None,
        )
        .await;
        assert_eq!(status, 409, "a completed job cannot be canceled: {v}");
        let (status, _, _) =
            send_with_key("DELETE", &format!("{base}{jobs}/{id}"), Some(KEY), None).await;
        assert!((200..300).contains(&status), "delete: {status}");
    }
}

#[actix_rt::test]
async fn every_alias_is_keyed_and_lists_its_methods() {
    let mock = start_mock(json!({}));
    let router = router(&mock).await;
    let base = &router.url;
    let paths = [
        ("POST", "/api/v1/ai/chat/completions"),
        ("POST", "/api/v1/ai/completions"),
        ("POST", "/api/v1/ai/embeddings"),
        ("POST", "/api/v1/ai/audio/speech"),
        ("POST", "/api/v1/ai/audio/transcriptions"),
        ("POST", "/api/v1/ai/generations/images"),
        ("POST", "/api/v1/ai/generations/videos"),
        ("GET", "/api/v1/ai/generations/videos"),
        ("GET", "/api/v1/ai/generations/videos/x"),
        ("GET", "/api/v1/ai/generations/videos/x/content"),
        ("POST", "/api/v1/ai/generations/videos/x/cancel"),
        ("GET", "/api/v1/ai/models"),
        ("POST", "/v1/generations/images"),
        ("POST", "/v1/generations/videos"),
        ("GET", "/v1/generations/videos/x"),
        ("POST", "/v1/generations/videos/x/cancel"),
        ("POST", "/v1/rerank"),
        ("POST", "/rerank"),
        ("POST", "/v2/rerank"),
    ];
    for (method, path) in paths {
        for key in [None, Some("wrong-key-123")] {
            let (status, _, v) =
                send_with_key(method, &format!("{base}{path}"), key, Some(&json!({}))).await;
            assert_openai_error(status, 401, &v);
        }
    }
    let allow = [
        ("PUT", "/v1/generations/videos", "GET, POST"),
        ("POST", "/api/v1/ai/generations/videos/x", "GET, DELETE"),
        ("POST", "/api/v1/ai/generations/videos/x/content", "GET"),
        ("GET", "/api/v1/ai/chat/completions", "POST"),
        ("GET", "/v2/rerank", "POST"),
    ];
    for (method, path, methods) in allow {
        let (status, headers, v) =
            send_with_key(method, &format!("{base}{path}"), Some(KEY), None).await;
        assert_openai_error(status, 405, &v);
        assert_eq!(
            headers.get("allow").and_then(|v| v.to_str().ok()),
            Some(methods),
            "{method} {path}"
        );
    }
}
