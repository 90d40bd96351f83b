//! Video generation jobs against the real binary and the mock video engine: both backend modes,
//! cancel, failure, expiry, pagination, webhooks, and resuming after `kill -9` (SQLite, and
//! PostgreSQL when `TEST_DATABASE_URL` is set).

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Fast polling for tests.
fn video_env() -> Vec<(&'static str, String)> {
    vec![
        ("VIDEO_POLL_INTERVAL_MS", "50".into()),
        ("VIDEO_POLL_MAX_INTERVAL_MS", "150".into()),
        // The webhook receivers of these tests listen on loopback.
        ("VIDEO_WEBHOOK_ALLOW_PRIVATE", "true".into()),
    ]
}

fn video_yaml(mock: &str, extra: &str) -> String {
    format!(
        "models:\n  - id: vid\n    type: video\n    route:\n      - name: engine\n        kind: video-engine\n        base_url: \"{mock}\"\n        provider_model_id: Wan-AI/Wan2.1-T2V-1.3B\n{extra}"
    )
}

async fn start(yaml: &str, mut env: Vec<(&'static str, String)>) -> Router {
    env.extend(video_env());
    start_router_ready(
        RouterOpts {
            models_yaml: yaml,
            routing_yaml: None,
            env,
        },
        1,
    )
    .await
}

async fn create(router: &str, body: Value) -> (u16, awc::http::header::HeaderMap, Value) {
    post_json(&format!("{router}/v1/video/generations"), &body).await
}

/// Create job "clip {i}" of model `vid`; its id.
async fn create_clip(router: &str, i: usize) -> String {
    let (s, _, v) = create(
        router,
        json!({"model": "vid", "prompt": format!("clip {i}")}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

async fn job(router: &str, id: &str) -> Value {
    let (status, v) = get_json(&format!("{router}/v1/video/generations/{id}"))
        .await
        .expect("job");
    assert_eq!(status, 200, "{v}");
    v
}

/// Poll the job until `done(job)`, returning the statuses seen on the way.
async fn wait_for(
    router: &str,
    id: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let v = job(router, id).await;
        let status = v["status"].as_str().unwrap_or("").to_string();
        if seen.last() != Some(&status) {
            seen.push(status);
        }
        if done(&v) {
            return (v, seen);
        }
        assert!(
            Instant::now() < deadline,
            "job {id} stuck: {v} (seen {seen:?})"
        );
        actix_rt::time::sleep(Duration::from_millis(40)).await;
    }
}

fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| v["status"] == s
}

async fn get_bytes(
    url: &str,
    range: Option<&str>,
) -> (u16, awc::http::header::HeaderMap, bytes::Bytes) {
    let mut req = client().get(url);
    if let Some(r) = range {
        req = req.insert_header(("range", r));
    }
    let mut resp = req.send().await.expect("content request");
    let body = resp.body().limit(64 << 20).await.expect("content body");
    (resp.status().as_u16(), resp.headers().clone(), body)
}

fn header<'a>(h: &'a awc::http::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn mock_mp4(len: usize) -> Vec<u8> {
    // The mock's MP4: `ftyp` box, then an `mdat` box of (i % 251) filler.
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&24u32.to_be_bytes());
    out.extend_from_slice(b"ftypisom");
    out.extend_from_slice(&0x200u32.to_be_bytes());
    out.extend_from_slice(b"isommp41");
    out.extend_from_slice(&((len - 24) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    out.extend((0..len - 32).map(|i| (i % 251) as u8));
    out
}

#[actix_rt::test]
async fn async_backend_lifecycle_with_range_requests() {
    let mock = start_mock(
        json!({"video_queue_ms": 150, "video_steps": 4, "video_step_ms": 150, "video_bytes": 100000}),
    );
    let router = start(&video_yaml(&mock.url, ""), vec![]).await;
    let (status, headers, v) = create(
        &router.url,
        json!({"model": "vid", "prompt": "a ball bouncing", "seconds": 8, "size": "1280x720",
               "callback_url": "http://127.0.0.1:9/never-called"}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("vgen_"));
    assert_eq!(
        header(&headers, "location"),
        format!("/v1/video/generations/{id}")
    );
    assert!(!header(&headers, "retry-after").is_empty());
    assert_eq!(v["object"], "video.generation");
    assert_eq!(v["status"], "queued");
    assert_eq!(v["seconds"], "8");
    assert_eq!(
        v["urls"]["content"],
        format!("/v1/video/generations/{id}/content")
    );
    // Content before completion is a conflict.
    let (s, _, body) = get_bytes(
        &format!("{}/v1/video/generations/{id}/content", router.url),
        None,
    )
    .await;
    assert_openai_error(s, 409, &serde_json::from_slice(&body).unwrap());

    let (done, seen) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("completed"),
    )
    .await;
    assert!(
        seen.contains(&"in_progress".to_string()),
        "statuses seen: {seen:?}"
    );
    assert_eq!(done["progress"], 100);
    assert_eq!(done["usage"]["seconds"], 8.0);
    assert!(
        done["completed_at"].is_u64() && done["expires_at"].is_u64(),
        "{done}"
    );
    assert_eq!(done["output"]["videos"][0]["content_type"], "video/mp4");

    let url = format!("{}/v1/video/generations/{id}/content", router.url);
    let (s, h, body) = get_bytes(&url, None).await;
    assert_eq!(s, 200);
    assert_eq!(header(&h, "content-type"), "video/mp4");
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert_eq!(body.to_vec(), mock_mp4(100000));
    let (s, h, part) = get_bytes(&url, Some("bytes=4-11")).await;
    assert_eq!(s, 206);
    assert_eq!(header(&h, "content-range"), "bytes 4-11/100000");
    assert_eq!(&part[..], b"ftypisom");
    let (s, _, tail) = get_bytes(&url, Some("bytes=-10")).await;
    assert_eq!(s, 206);
    assert_eq!(tail.to_vec(), mock_mp4(100000)[99990..].to_vec());
    let (s, h, _) = get_bytes(&url, Some("bytes=200000-")).await;
    assert_eq!(s, 416);
    assert_eq!(header(&h, "content-range"), "bytes */100000");

    let stats = mock_stats(&mock).await;
    assert_eq!(stats["video_submits"], 1);
    assert_eq!(stats["video_content_fetches"], 1);
    assert!(stats["video_polls"].as_u64().unwrap() >= 2, "{stats}");
    // The router's own fields never reach the backend; the route's model name does.
    let (_, jobs_list) = get_json(&format!("{}/v1/video/generations?limit=1", router.url))
        .await
        .unwrap();
    assert_eq!(jobs_list["data"][0]["id"], id);
    // Same job under OpenRouter's prefix, with links to match.
    let (s, v) = get_json(&format!("{}/api/v1/video/generations/{id}", router.url))
        .await
        .unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["urls"]["get"], format!("/api/v1/video/generations/{id}"));
    // Unknown ids are 404s.
    let (s, v) = get_json(&format!("{}/v1/video/generations/vgen_nope", router.url))
        .await
        .unwrap();
    assert_openai_error(s, 404, &v);
}

#[actix_rt::test]
async fn submission_forwards_the_route_model_and_not_the_callback() {
    // Sync mode, so the last request the mock records is the submission itself.
    let mock = start_mock(json!({"video_mode": "sync", "video_steps": 1, "video_step_ms": 10}));
    let router = start(&video_yaml(&mock.url, ""), vec![]).await;
    let (s, _, v) = create(
        &router.url,
        json!({"model": "vid", "prompt": "p", "callback_url": "http://127.0.0.1:9/x", "fps": 24, "duration": 5}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap();
    wait_for(
        &router.url,
        id,
        Duration::from_secs(20),
        status_is("completed"),
    )
    .await;
    let sent = mock_stats(&mock).await["last_request"]["body"].clone();
    assert_eq!(sent["model"], "Wan-AI/Wan2.1-T2V-1.3B");
    assert_eq!(sent["prompt"], "p");
    assert_eq!(sent["fps"], 24);
    assert_eq!(sent["duration"], 5);
    assert!(sent.get("callback_url").is_none(), "{sent}");
    let (s, _, v) = create(&router.url, json!({"model": "vid", "prompt": "p", "n": 3})).await;
    assert_openai_error(s, 400, &v);
    let (s, _, v) = create(&router.url, json!({"model": "missing", "prompt": "p"})).await;
    assert_openai_error(s, 404, &v);
    let (s, _, v) = create(&router.url, json!({"model": "vid"})).await;
    assert_openai_error(s, 400, &v);
    assert_eq!(mock_stats(&mock).await["video_submits"], 1);
}

#[actix_rt::test]
async fn sync_backend_is_held_in_the_background() {
    let mock = start_mock(
        json!({"video_mode": "sync", "video_steps": 4, "video_step_ms": 250, "video_bytes": 50000}),
    );
    // Declared sync: the job shows in_progress while the backend call runs.
    let router = start(&video_yaml(&mock.url, "        video_mode: sync\n"), vec![]).await;
    let (s, _, v) = create(
        &router.url,
        json!({"model": "vid", "prompt": "sync please"}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, seen) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("completed"),
    )
    .await;
    assert!(seen.contains(&"in_progress".to_string()), "{seen:?}");
    let (s, h, body) = get_bytes(
        &format!("{}/v1/video/generations/{id}/content", router.url),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(header(&h, "content-type"), "video/mp4");
    assert_eq!(body.to_vec(), mock_mp4(50000));
    assert_eq!(mock_stats(&mock).await["video_submits"], 1);

    // Undeclared (auto): told apart by the answer, video/mp4 bytes.
    let router2 = start(&video_yaml(&mock.url, ""), vec![]).await;
    let (_, _, v) = create(&router2.url, json!({"model": "vid", "prompt": "auto"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &router2.url,
        &id,
        Duration::from_secs(20),
        status_is("completed"),
    )
    .await;
}

#[actix_rt::test]
async fn cancel_stops_async_and_sync_jobs() {
    let mock = start_mock(json!({"video_queue_ms": 100, "video_steps": 50, "video_step_ms": 200}));
    let router = start(&video_yaml(&mock.url, ""), vec![]).await;
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "long"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("in_progress"),
    )
    .await;
    let cancel_url = format!("{}/v1/video/generations/{id}/cancel", router.url);
    let (s, _, v) = post_json(&cancel_url, &json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "canceled");
    // The backend is told too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock_stats(&mock).await["video_cancels"] != 1 {
        assert!(Instant::now() < deadline, "backend cancel not sent");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _, v) = post_json(&cancel_url, &json!({})).await;
    assert_openai_error(s, 409, &v);
    assert_eq!(v["error"]["code"], "video_not_cancelable");
    let (s, _, body) = get_bytes(
        &format!("{}/v1/video/generations/{id}/content", router.url),
        None,
    )
    .await;
    assert_openai_error(s, 409, &serde_json::from_slice(&body).unwrap());
    actix_rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        job(&router.url, &id).await["status"],
        "canceled",
        "stays canceled"
    );
    let (s, _, v) = post_json(
        &format!("{}/v1/video/generations/vgen_nope/cancel", router.url),
        &json!({}),
    )
    .await;
    assert_openai_error(s, 404, &v);

    // A sync job: canceling drops the backend call.
    let sync = start_mock(json!({"video_mode": "sync", "video_steps": 40, "video_step_ms": 250}));
    let router = start(&video_yaml(&sync.url, "        video_mode: sync\n"), vec![]).await;
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "long sync"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("in_progress"),
    )
    .await;
    let (s, _, v) = post_json(
        &format!("{}/v1/video/generations/{id}/cancel", router.url),
        &json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // The lease went with the call: the endpoint has nothing in flight.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = get_json(&format!("{}/health", router.url)).await.unwrap();
        if health["endpoints"]["in_flight"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "lease not released: {health}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(job(&router.url, &id).await["status"], "canceled");
}

#[actix_rt::test]
async fn failures_are_reported_for_both_modes() {
    let mock = start_mock(
        json!({"video_queue_ms": 0, "video_steps": 2, "video_step_ms": 50, "video_fail": true, "video_status_style": "replicate"}),
    );
    let router = start(&video_yaml(&mock.url, ""), vec![]).await;
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "doomed"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let (done, _) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("failed"),
    )
    .await;
    assert_eq!(done["error"]["code"], "generation_failed", "{done}");
    assert!(done["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mock video generation failed"));
    assert!(done["output"].is_null());
    let (s, _, body) = get_bytes(
        &format!("{}/v1/video/generations/{id}/content", router.url),
        None,
    )
    .await;
    assert_openai_error(s, 409, &serde_json::from_slice(&body).unwrap());

    let sync = start_mock(
        json!({"video_mode": "sync", "video_steps": 1, "video_step_ms": 50, "video_fail": true}),
    );
    let router = start(
        &video_yaml(&sync.url, ""),
        vec![("MAX_ATTEMPTS", "1".into())],
    )
    .await;
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "doomed"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let (done, _) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("failed"),
    )
    .await;
    assert_eq!(done["error"]["code"], "upstream_error", "{done}");
}

#[actix_rt::test]
async fn vendor_status_styles_are_mapped() {
    for style in ["openrouter", "replicate", "fal"] {
        let mock = start_mock(
            json!({"video_queue_ms": 100, "video_steps": 3, "video_step_ms": 100, "video_status_style": style}),
        );
        let router = start(&video_yaml(&mock.url, ""), vec![]).await;
        let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": style})).await;
        let id = v["id"].as_str().unwrap().to_string();
        let (_, seen) = wait_for(
            &router.url,
            &id,
            Duration::from_secs(20),
            status_is("completed"),
        )
        .await;
        for s in &seen {
            assert!(
                ["queued", "in_progress", "completed"].contains(&s.as_str()),
                "{style}: {seen:?}"
            );
        }
    }
}

#[actix_rt::test]
async fn completed_videos_expire_after_the_retention() {
    let mock = start_mock(json!({"video_queue_ms": 0, "video_steps": 1, "video_step_ms": 20}));
    let storage = tempfile::tempdir().unwrap();
    let router = start(
        &video_yaml(&mock.url, ""),
        vec![
            ("VIDEO_RETENTION_SECS", "2".into()),
            ("VIDEO_STORAGE_DIR", storage.path().display().to_string()),
        ],
    )
    .await;
    let (_, _, v) = create(
        &router.url,
        json!({"model": "vid", "prompt": "short-lived"}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("completed"),
    )
    .await;
    let url = format!("{}/v1/video/generations/{id}/content", router.url);
    assert_eq!(get_bytes(&url, None).await.0, 200);
    assert_eq!(files_in(storage.path()).len(), 1);
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("expired"),
    )
    .await;
    let (s, _, body) = get_bytes(&url, None).await;
    assert_openai_error(s, 410, &serde_json::from_slice(&body).unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files_in(storage.path()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "expired video not deleted: {:?}",
            files_in(storage.path())
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _, v) = post_json(
        &format!("{}/v1/video/generations/{id}/cancel", router.url),
        &json!({}),
    )
    .await;
    assert_openai_error(s, 409, &v);
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn listing_paginates_in_both_orders() {
    let mock = start_mock(json!({"video_queue_ms": 0, "video_steps": 1, "video_step_ms": 10}));
    let router = start(&video_yaml(&mock.url, ""), vec![]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create_clip(&router.url, i).await);
    }
    let list = |query: String| {
        let url = format!("{}/v1/video/generations?{query}", router.url);
        async move {
            let (s, v) = get_json(&url).await.unwrap();
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    // Newest first by default, two at a time.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let q = if after.is_empty() {
            "limit=2".to_string()
        } else {
            format!("limit=2&after={after}")
        };
        let page = list(q).await;
        assert_eq!(page["object"], "list");
        let data = page["data"].as_array().unwrap();
        for item in data {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        assert_eq!(page["first_id"], data[0]["id"]);
        assert_eq!(page["last_id"], data[data.len() - 1]["id"]);
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_string();
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    let asc = list("order=asc&limit=3".into()).await;
    let asc_ids: Vec<&str> = asc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        asc_ids,
        ids[..3].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(asc["has_more"], true);
    let rest = list(format!("order=asc&after={}", ids[2])).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 2);
    assert_eq!(rest["has_more"], false);
    for bad in ["limit=0", "limit=101", "order=sideways", "limit=x"] {
        let (s, v) = get_json(&format!("{}/v1/video/generations?{bad}", router.url))
            .await
            .unwrap();
        assert_openai_error(s, 400, &v);
    }
    // Idempotent creates: the same key gives the same job.
    let mut first = None;
    for _ in 0..2 {
        let mut resp = client()
            .post(format!("{}/v1/video/generations", router.url))
            .insert_header(("content-type", "application/json"))
            .insert_header(("idempotency-key", "retry-me-1"))
            .send_body(json!({"model": "vid", "prompt": "once"}).to_string())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let v: Value = resp.json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        assert_eq!(first.get_or_insert(id.clone()), &id);
    }
}

/// HMAC-SHA256 written out here (RFC 2104), independent of the router's implementation.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let inner = Sha256::digest(&ipad);
    let opad: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner.iter().copied())
        .collect();
    hex::encode(Sha256::digest(&opad))
}

/// What the webhook receiver got: (headers, body).
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, String)>>>;

/// A tiny receiver that refuses the first delivery with a 500 and accepts the next ones.
async fn start_receiver() -> (String, Received, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let server = HttpServer::new(move || {
        let store = store.clone();
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: String| {
                let store = store.clone();
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    let mut all = store.lock().unwrap();
                    all.push((headers, body));
                    if all.len() == 1 {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::NoContent().finish()
                    }
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("http://{addr}/hook"), received, handle)
}

#[actix_rt::test]
async fn webhooks_are_signed_and_retried() {
    let (hook, received, server) = start_receiver().await;
    let mock = start_mock(json!({"video_queue_ms": 0, "video_steps": 1, "video_step_ms": 20}));
    let secret = "whsec_test_secret";
    let router = start(
        &video_yaml(&mock.url, ""),
        vec![
            ("VIDEO_WEBHOOK_SECRET", secret.into()),
            ("VIDEO_WEBHOOK_BACKOFF_MS", "100".into()),
        ],
    )
    .await;
    let (_, _, v) = create(
        &router.url,
        json!({"model": "vid", "prompt": "call me", "callback_url": hook}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "webhook not retried: {:?}",
            received.lock().unwrap()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let all = received.lock().unwrap().clone();
    assert_eq!(all.len(), 2, "delivered once after one refusal");
    for (headers, body) in &all {
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["type"], "video.generation.completed");
        assert_eq!(event["data"]["id"], id);
        assert_eq!(event["data"]["status"], "completed");
        assert_eq!(
            get("idempotency-key"),
            format!("{id}:video.generation.completed")
        );
        let signature = get("x-gateway-signature");
        let (t, v1) = signature
            .split_once(",v1=")
            .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v)))
            .unwrap_or_else(|| panic!("bad signature header {signature:?}"));
        let signed = format!("{t}.{body}");
        assert_eq!(
            v1,
            hmac_sha256_hex(secret.as_bytes(), signed.as_bytes()),
            "signature of {body}"
        );
        let age = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64)
            - t.parse::<i64>().unwrap();
        assert!((0..=60).contains(&age), "fresh timestamp");
    }
    server.stop(false).await;
}

/// Start a router on `db` env (SQLite file or PostgreSQL) and a shared storage directory.
/// Every start has the same identity, as a restarted router on its fixed port would (these
/// routers listen on a random port, part of the default identity).
async fn start_on(yaml: &str, storage: &Path, db: &[(&'static str, String)]) -> Router {
    let mut env = vec![
        ("VIDEO_STORAGE_DIR", storage.display().to_string()),
        ("REPLICA_ID", "restarted-router".to_string()),
    ];
    env.extend(db.iter().cloned());
    start(yaml, env).await
}

/// Submit a long async job, kill the router mid-job, restart it on the same database, and
/// check the job completes without being resubmitted; then that finished content survives
/// another kill; then the same with a sync backend, which is resubmitted once.
async fn resume_after_kill(db: Vec<(&'static str, String)>) {
    let storage = tempfile::tempdir().unwrap();
    let mock = start_mock(
        json!({"video_queue_ms": 100, "video_steps": 10, "video_step_ms": 300, "video_bytes": 4096}),
    );
    let yaml = video_yaml(&mock.url, "");
    let mut router = start_on(&yaml, storage.path(), &db).await;
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "survive"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("in_progress"),
    )
    .await;
    router.kill();
    let router = start_on(&yaml, storage.path(), &db).await;
    let (done, _) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(30),
        status_is("completed"),
    )
    .await;
    assert_eq!(done["progress"], 100);
    assert_eq!(
        mock_stats(&mock).await["video_submits"],
        1,
        "re-polled, not resubmitted"
    );
    let mut router = router;
    router.kill();
    let router = start_on(&yaml, storage.path(), &db).await;
    let (s, _, body) = get_bytes(
        &format!("{}/v1/video/generations/{id}/content", router.url),
        None,
    )
    .await;
    assert_eq!(s, 200, "finished content is still served");
    assert_eq!(body.to_vec(), mock_mp4(4096));
    // Listing works on this database too, with and without a cursor.
    let (_, page) = get_json(&format!("{}/v1/video/generations?limit=5", router.url))
        .await
        .unwrap();
    assert_eq!(page["data"][0]["id"], id);
    let (_, page) = get_json(&format!(
        "{}/v1/video/generations?order=asc&after={id}",
        router.url
    ))
    .await
    .unwrap();
    assert_eq!(page["data"], json!([]));
    assert_eq!(page["has_more"], false);
    drop(router);

    let sync = start_mock(
        json!({"video_mode": "sync", "video_steps": 6, "video_step_ms": 300, "video_bytes": 2048}),
    );
    let yaml = video_yaml(&sync.url, "        video_mode: sync\n");
    let mut router = start_on(&yaml, storage.path(), &db).await;
    let (_, _, v) = create(
        &router.url,
        json!({"model": "vid", "prompt": "sync survive"}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock_stats(&sync).await["video_submits"] != 1 {
        assert!(Instant::now() < deadline, "sync job never submitted");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    router.kill();
    let router = start_on(&yaml, storage.path(), &db).await;
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(30),
        status_is("completed"),
    )
    .await;
    assert_eq!(
        mock_stats(&sync).await["video_submits"],
        2,
        "resubmitted once"
    );
    let (s, _, body) = get_bytes(
        &format!("{}/v1/video/generations/{id}/content", router.url),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body.to_vec(), mock_mp4(2048));
}

#[actix_rt::test]
async fn jobs_resume_after_a_hard_kill_on_sqlite() {
    let db = tempfile::tempdir().unwrap();
    let path = db.path().join("jobs.db").display().to_string();
    resume_after_kill(vec![("SQLITE_DB_PATH", path)]).await;
}

#[actix_rt::test]
async fn a_sync_job_interrupted_twice_is_failed_not_resent_forever() {
    let db = tempfile::tempdir().unwrap();
    let storage = tempfile::tempdir().unwrap();
    let env = vec![(
        "SQLITE_DB_PATH",
        db.path().join("j.db").display().to_string(),
    )];
    let sync = start_mock(json!({"video_mode": "sync", "video_steps": 40, "video_step_ms": 250}));
    let yaml = video_yaml(&sync.url, "        video_mode: sync\n");
    let mut router = start_on(&yaml, storage.path(), &env).await;
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "unlucky"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    for expected in [1, 2] {
        let deadline = Instant::now() + Duration::from_secs(15);
        while mock_stats(&sync).await["video_submits"] != expected {
            assert!(Instant::now() < deadline, "submission {expected} not seen");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        router.kill();
        router = start_on(&yaml, storage.path(), &env).await;
    }
    let (done, _) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("failed"),
    )
    .await;
    assert_eq!(done["error"]["code"], "interrupted", "{done}");
    assert_eq!(mock_stats(&sync).await["video_submits"], 2);
}

/// Run `test` with the environment of a fresh PostgreSQL database, dropped afterwards; skipped
/// (with a note) unless `TEST_DATABASE_URL` is set.
async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Vec<(&'static str, String)>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL not set: skipping a PostgreSQL test");
        return;
    };
    let db = common::pg::TempDatabase::create(&admin, "switchyard_video").await;
    let env = vec![
        ("USE_SQLITE_LOG", "false".to_string()),
        ("DATABASE_URL", db.url.clone()),
    ];
    let outcome =
        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(test(env))).await;
    db.drop_it().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[actix_rt::test]
async fn jobs_resume_after_a_hard_kill_on_postgres() {
    on_postgres(resume_after_kill).await;
}

/// A request with an optional bearer key; answers (status, JSON).
async fn with_key(method: &str, url: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = match method {
        "POST" => client().post(url),
        "DELETE" => client().delete(url),
        _ => client().get(url),
    };
    if let Some(k) = key {
        req = req.insert_header(("authorization", format!("Bearer {k}")));
    }
    let mut resp = match body {
        Some(b) => req
            .insert_header(("content-type", "application/json"))
            .send_body(b.to_string())
            .await
            .expect("request"),
        None => req.send().await.expect("request"),
    };
    let bytes = resp.body().limit(1 << 20).await.expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (resp.status().as_u16(), v)
}

#[actix_rt::test]
async fn jobs_belong_to_the_key_that_created_them_and_can_be_deleted() {
    let mock = start_mock(json!({"video_queue_ms": 0, "video_steps": 1, "video_step_ms": 20}));
    let storage = tempfile::tempdir().unwrap();
    let keys = "keys:\n  - name: alice\n    key: alice-key-123\n  - name: bob\n    key: bob-key-456\n  - name: chat-only\n    key: chat-only-789\n    models: [something-else]\n  - name: ops\n    key: ops-admin-000\n    admin: true\n";
    let keys_path = storage.path().join("keys.yaml");
    std::fs::write(&keys_path, keys).unwrap();
    let videos = storage.path().join("videos");
    let router = start(
        &video_yaml(&mock.url, ""),
        vec![
            ("KEYS_FILE", keys_path.display().to_string()),
            ("VIDEO_STORAGE_DIR", videos.display().to_string()),
        ],
    )
    .await;
    let base = format!("{}/v1/video/generations", router.url);
    let (alice, bob, admin) = (
        Some("alice-key-123"),
        Some("bob-key-456"),
        Some("ops-admin-000"),
    );
    // A key limited to other models may not start video jobs.
    let (s, v) = with_key(
        "POST",
        &base,
        Some("chat-only-789"),
        Some(json!({"model": "vid", "prompt": "p"})),
    )
    .await;
    assert_openai_error(s, 403, &v);
    assert_eq!(v["error"]["code"], "model_not_allowed");
    let (s, v) = with_key(
        "POST",
        &base,
        alice,
        Some(json!({"model": "vid", "prompt": "alice's"})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let job_url = format!("{base}/{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while with_key("GET", &job_url, alice, None).await.1["status"] != "completed" {
        assert!(Instant::now() < deadline, "job did not complete");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Bob cannot see, fetch, cancel or delete Alice's job, nor list it.
    for (method, url) in [
        ("GET", job_url.clone()),
        ("GET", format!("{job_url}/content")),
        ("POST", format!("{job_url}/cancel")),
        ("DELETE", job_url.clone()),
    ] {
        let (s, v) = with_key(method, &url, bob, None).await;
        assert_openai_error(s, 404, &v);
    }
    let (s, v) = with_key("GET", &base, bob, None).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"], json!([]));
    let (_, v) = with_key("GET", &base, alice, None).await;
    assert_eq!(v["data"][0]["id"], id);
    let (_, v) = with_key("GET", &base, admin, None).await;
    assert_eq!(v["data"][0]["id"], id, "admin keys see every job");
    // The same idempotency key from two clients makes two jobs.
    let mut ids = Vec::new();
    for key in ["alice-key-123", "bob-key-456"] {
        let mut resp = client()
            .post(&base)
            .insert_header(("authorization", format!("Bearer {key}")))
            .insert_header(("content-type", "application/json"))
            .insert_header(("idempotency-key", "same-key"))
            .send_body(json!({"model": "vid", "prompt": "x"}).to_string())
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    // Alice deletes her finished job: row and file go.
    assert_eq!(files_in(&videos).len(), 1);
    let (s, v) = with_key("DELETE", &job_url, alice, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"id": id, "object": "video.generation.deleted", "deleted": true})
    );
    let (s, _) = with_key("GET", &job_url, alice, None).await;
    assert_eq!(s, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    while files_in(&videos)
        .iter()
        .any(|p| p.to_string_lossy().contains(&id))
    {
        assert!(Instant::now() < deadline, "video file not deleted");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn a_running_job_cannot_be_deleted() {
    let mock = start_mock(json!({"video_queue_ms": 100, "video_steps": 50, "video_step_ms": 200}));
    let router = start(&video_yaml(&mock.url, ""), vec![]).await;
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "busy"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    let url = format!("{}/v1/video/generations/{id}", router.url);
    let (s, v) = with_key("DELETE", &url, None, None).await;
    assert_openai_error(s, 409, &v);
    assert_eq!(v["error"]["code"], "video_not_deletable");
    let (s, _, _) = post_json(&format!("{url}/cancel"), &json!({})).await;
    assert_eq!(s, 200);
    let (s, v) = with_key("DELETE", &url, None, None).await;
    assert_eq!(s, 200, "{v}");
}

#[actix_rt::test]
async fn jobs_fail_when_the_backend_loses_them_or_stops_answering() {
    let mock = start_mock(json!({"video_queue_ms": 100, "video_steps": 100, "video_step_ms": 200}));
    let router = start(
        &video_yaml(&mock.url, ""),
        vec![("VIDEO_MAX_POLL_FAILURES", "3".into())],
    )
    .await;
    // The backend forgets its jobs (a restart of the engine): the next poll is a 404.
    let (_, _, v) = create(&router.url, json!({"model": "vid", "prompt": "lost"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("in_progress"),
    )
    .await;
    let mut resp = client()
        .post(format!("{}/_mock/reset", mock.url))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.body().await);
    let (done, _) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("failed"),
    )
    .await;
    assert_eq!(done["error"]["code"], "backend_job_lost", "{done}");

    // The backend answers every poll with a 500: failed after three in a row.
    let (_, _, v) = create(
        &router.url,
        json!({"model": "vid", "prompt": "unreachable"}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_string();
    wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("in_progress"),
    )
    .await;
    mock_patch(&mock, json!({"fail_rate": 1.0, "fail_status": 500})).await;
    let (done, _) = wait_for(
        &router.url,
        &id,
        Duration::from_secs(20),
        status_is("failed"),
    )
    .await;
    assert_eq!(done["error"]["code"], "upstream_unreachable", "{done}");
}

#[actix_rt::test]
async fn submissions_fall_back_within_the_retry_budget() {
    let mock = start_mock(json!({}));
    let mut yaml = "models:\n  - id: vid\n    type: video\n    route:\n".to_string();
    for name in ["a", "b", "c"] {
        yaml.push_str(&format!(
            "      - name: {name}\n        kind: video-engine\n        base_url: \"{}\"\n",
            mock.url
        ));
    }
    // Three attempts per job, but one retry in the replica's budget, never refilled.
    let router = start(
        &yaml,
        vec![
            ("MAX_ATTEMPTS", "3".into()),
            ("RETRY_BUDGET_PER_SEC", "0".into()),
            ("RETRY_BUDGET_BURST", "1".into()),
        ],
    )
    .await;
    mock_patch(&mock, json!({"fail_rate": 1.0, "fail_status": 500})).await;
    let submissions = || async {
        mock_stats(&mock).await["requests_by_path"]["/v1/video/generations"]
            .as_u64()
            .unwrap_or(0)
    };
    // The first job spends the budget's one retry; the second may not retry at all.
    for (job, submitted) in [(1, 2), (2, 3)] {
        let id = create_clip(&router.url, job).await;
        let (done, _) = wait_for(
            &router.url,
            &id,
            Duration::from_secs(20),
            status_is("failed"),
        )
        .await;
        assert_eq!(done["error"]["code"], "upstream_error", "{done}");
        assert_eq!(submissions().await, submitted, "after job {job}");
    }
}

#[actix_rt::test]
async fn in_flight_caps_hold_for_video_jobs() {
    // One generation at a time on this backend: the second job waits in `queued`.
    let mock = start_mock(json!({"video_mode": "sync", "video_steps": 4, "video_step_ms": 250}));
    let router = start(
        &video_yaml(
            &mock.url,
            "        video_mode: sync\n        max_in_flight: 1\n",
        ),
        vec![],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let (s, _, v) = create(
            &router.url,
            json!({"model": "vid", "prompt": format!("clip {i}")}),
        )
        .await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_one_waiting = false;
    loop {
        let (_, health) = get_json(&format!("{}/health", router.url)).await.unwrap();
        assert!(
            health["endpoints"]["in_flight"].as_u64().unwrap() <= 1,
            "{health}"
        );
        let a = job(&router.url, &ids[0]).await["status"].clone();
        let b = job(&router.url, &ids[1]).await["status"].clone();
        let statuses = [a.as_str().unwrap_or(""), b.as_str().unwrap_or("")];
        if statuses.contains(&"in_progress") && statuses.contains(&"queued") {
            saw_one_waiting = true;
        }
        if statuses == ["completed", "completed"] {
            break;
        }
        assert!(Instant::now() < deadline, "jobs stuck: {statuses:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_one_waiting, "the second job should wait for the first");
    assert_eq!(mock_stats(&mock).await["video_submits"], 2);
}

#[actix_rt::test]
async fn callbacks_to_private_addresses_are_refused_by_default() {
    let mock = start_mock(json!({}));
    let router = start_router_ready(
        RouterOpts {
            models_yaml: &video_yaml(&mock.url, ""),
            routing_yaml: None,
            env: vec![],
        },
        1,
    )
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://localhost:8080/x",
    ] {
        let (s, _, v) = create(
            &router.url,
            json!({"model": "vid", "prompt": "p", "callback_url": url}),
        )
        .await;
        assert_openai_error(s, 400, &v);
        assert_eq!(v["error"]["code"], "callback_url_not_allowed", "{url}");
    }
    assert_eq!(mock_stats(&mock).await["video_submits"], 0);
}

/// Create a job as `key`: (status, Retry-After, body).
async fn create_as(router: &str, key: &str, prompt: &str) -> (u16, Option<String>, Value) {
    let (s, headers, v) = send_with_key(
        "POST",
        &format!("{router}/v1/video/generations"),
        Some(key),
        Some(&json!({"model": "vid", "prompt": prompt})),
    )
    .await;
    let retry_after = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    (s, retry_after, v)
}

/// `n` concurrent creates as `key`: the ids accepted; every refusal is checked to be a 429
/// `too_many_unfinished_jobs` with Retry-After whose message mentions `refusal_says`.
async fn burst(router: &str, key: &str, n: usize, refusal_says: &str) -> Vec<String> {
    let answers = futures_util::future::join_all(
        (0..n).map(|i| async move { create_as(router, key, &format!("burst {i}")).await }),
    )
    .await;
    let mut accepted = Vec::new();
    for (status, retry_after, v) in answers {
        if status == 202 {
            accepted.push(v["id"].as_str().unwrap().to_string());
            continue;
        }
        assert_openai_error(status, 429, &v);
        assert_eq!(v["error"]["code"], "too_many_unfinished_jobs", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(refusal_says),
            "{v}"
        );
        assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)));
    }
    accepted
}

/// Bursts of concurrent creates get exactly the per-key cap, then what is left of the overall
/// cap; finished jobs free their place.
async fn unfinished_jobs_are_capped(db: Vec<(&'static str, String)>) {
    // Jobs that stay unfinished for the whole test.
    let mock = start_mock(json!({"video_queue_ms": 120000}));
    let dir = tempfile::tempdir().unwrap();
    let keys = "keys:\n  - name: alice\n    key: alice-key-123\n  - name: bob\n    key: bob-key-456\n  - name: carol\n    key: carol-key-789\n";
    let keys_path = dir.path().join("keys.yaml");
    std::fs::write(&keys_path, keys).unwrap();
    let mut env = vec![
        ("KEYS_FILE", keys_path.display().to_string()),
        ("VIDEO_MAX_UNFINISHED_PER_KEY", "5".to_string()),
        ("VIDEO_MAX_UNFINISHED", "8".to_string()),
    ];
    env.extend(db);
    let router = start(&video_yaml(&mock.url, ""), env).await;
    let alice = burst(&router.url, "alice-key-123", 20, "This key").await;
    assert_eq!(alice.len(), 5, "alice: exactly the per-key cap");
    let bob = burst(&router.url, "bob-key-456", 20, "router").await;
    assert_eq!(bob.len(), 3, "bob: what is left of the overall cap");
    assert!(burst(&router.url, "carol-key-789", 3, "router")
        .await
        .is_empty());
    // A canceled job is finished: its key may start another, and only one.
    let cancel = format!("{}/v1/video/generations/{}/cancel", router.url, alice[0]);
    let (s, _, v) = send_with_key("POST", &cancel, Some("alice-key-123"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        burst(&router.url, "alice-key-123", 4, "This key")
            .await
            .len(),
        1
    );
}

#[actix_rt::test]
async fn unfinished_jobs_are_capped_per_key_and_overall_on_sqlite() {
    unfinished_jobs_are_capped(vec![]).await;
}

#[actix_rt::test]
async fn unfinished_jobs_are_capped_per_key_and_overall_on_postgres() {
    on_postgres(unfinished_jobs_are_capped).await;
}

/// 400 kB videos under a 1 MiB cap: two fit, each further one pushes out the oldest.
async fn stored_videos_expire_oldest_first(db: Vec<(&'static str, String)>) {
    let mock = start_mock(
        json!({"video_queue_ms": 0, "video_steps": 1, "video_step_ms": 20, "video_bytes": 400000}),
    );
    let storage = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("VIDEO_MAX_MB", "1".to_string()),
        ("VIDEO_MAX_STORED_MB", "1".to_string()),
        ("VIDEO_STORAGE_DIR", storage.path().display().to_string()),
    ];
    env.extend(db);
    let router = start(&video_yaml(&mock.url, ""), env).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = create_clip(&router.url, i).await;
        wait_for(
            &router.url,
            &id,
            Duration::from_secs(20),
            status_is("completed"),
        )
        .await;
        ids.push(id);
        // Everything but the two newest is expired, oldest first.
        let kept = ids.len().saturating_sub(2);
        for (n, id) in ids.iter().enumerate() {
            let want = if n < kept { "expired" } else { "completed" };
            wait_for(&router.url, id, Duration::from_secs(10), status_is(want)).await;
        }
        eventually(
            Duration::from_secs(10),
            "expired videos deleted",
            || async { files_in(storage.path()).len() == ids.len().min(2) },
        )
        .await;
    }
    let (s, _, body) = get_bytes(
        &format!("{}/v1/video/generations/{}/content", router.url, ids[0]),
        None,
    )
    .await;
    assert_openai_error(s, 410, &serde_json::from_slice(&body).unwrap());
}

#[actix_rt::test]
async fn stored_videos_over_the_cap_expire_oldest_first_on_sqlite() {
    stored_videos_expire_oldest_first(vec![]).await;
}

#[actix_rt::test]
async fn stored_videos_over_the_cap_expire_oldest_first_on_postgres() {
    on_postgres(stored_videos_expire_oldest_first).await;
}

/// `switchyard_video_jobs` (the table's jobs by status, read at scrape time) and
/// `switchyard_video_job_duration_seconds` (observed when the runner ends a job), which the
/// deploy/ alert and dashboard read: one job per outcome the runner reaches.
#[actix_rt::test]
async fn video_job_metrics_follow_the_jobs() {
    let cases = [
        (
            json!({"video_queue_ms": 0, "video_steps": 2, "video_step_ms": 50}),
            "completed",
        ),
        (
            json!({"video_queue_ms": 0, "video_steps": 2, "video_step_ms": 50, "video_fail": true}),
            "failed",
        ),
        (
            json!({"video_mode": "sync", "video_steps": 1, "video_step_ms": 50, "video_fail": true}),
            "failed",
        ),
    ];
    for (mock_settings, outcome) in cases {
        let mock = start_mock(mock_settings.clone());
        let router = start(
            &video_yaml(&mock.url, ""),
            vec![
                ("METRICS_PUBLIC", "true".into()),
                ("MAX_ATTEMPTS", "1".into()),
            ],
        )
        .await;
        let metrics = || async {
            let mut resp = client()
                .get(format!("{}/metrics", router.url))
                .send()
                .await
                .expect("metrics");
            let body = resp.body().limit(8 << 20).await.expect("metrics body");
            String::from_utf8_lossy(&body).into_owned()
        };
        let before = metrics().await;
        assert!(
            !before.contains("switchyard_video_job_duration_seconds_count{"),
            "{mock_settings}: {before}"
        );
        let id = create_clip(&router.url, 0).await;
        wait_for(
            &router.url,
            &id,
            Duration::from_secs(20),
            status_is(outcome),
        )
        .await;
        let count = format!(
            "switchyard_video_job_duration_seconds_count{{model=\"vid\",outcome=\"{outcome}\"}} 1"
        );
        let gauge = format!("switchyard_video_jobs{{model=\"vid\",status=\"{outcome}\"}} 1");
        // The job's record reaches the sink just after its row changed.
        let mut text = String::new();
        for _ in 0..50 {
            text = metrics().await;
            if text.contains(&count) {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            text.contains(&count),
            "{mock_settings}: no `{count}` in\n{text}"
        );
        assert!(
            text.contains(&gauge),
            "{mock_settings}: no `{gauge}` in\n{text}"
        );
        assert!(
            !text.contains("switchyard_video_jobs{model=\"vid\",status=\"queued\"}"),
            "{mock_settings}: a finished job still counted as queued"
        );
    }
}
