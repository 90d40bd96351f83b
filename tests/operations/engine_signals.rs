//! The engines' own load signals, end to end: a router in front of a mock engine with the cost
//! model reads the engine's queue on its probe timer, shows it in `/admin/backends` and
//! `/metrics`, and stops trusting it two probe intervals after the engine stops reporting.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{self, start_mock, start_router_ready, RouterOpts};

const ADMIN_KEY: &str = "adm-signals-1";
/// The probe interval the router runs with here; readings live for two of these.
const PROBE_SECS: f64 = 0.2;

async fn admin(url: &str) -> (u16, Value, String) {
    let mut resp = common::client()
        .get(url)
        .insert_header(("authorization", format!("Bearer {ADMIN_KEY}")))
        .send()
        .await
        .expect("admin request");
    let body = resp.body().limit(16 << 20).await.expect("admin body");
    let text = String::from_utf8_lossy(&body).into_owned();
    (
        resp.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// The one endpoint's `engine_load` in `/admin/backends` (null when there is no fresh reading).
async fn engine_load(router: &str) -> Value {
    let (status, body, _) = admin(&format!("{router}/admin/backends")).await;
    assert_eq!(status, 200, "{body}");
    body["data"][0]["engine_load"].clone()
}

fn router_opts(yaml: &str) -> RouterOpts<'_> {
    RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env: vec![
            ("ADMIN_API_KEY", ADMIN_KEY.into()),
            ("HEALTH_CHECK_INTERVAL_SECS", PROBE_SECS.to_string()),
        ],
    }
}

/// One engine slot, each reply ~1.2 s: three requests make one running and two waiting.
fn slow_engine() -> common::Proc {
    start_mock(json!({
        "chunks": 6,
        "cost_model": {"slots": 1, "prefill_us_per_token": 0, "decode_us_per_token": 200_000},
    }))
}

#[actix_rt::test]
async fn the_engine_queue_shows_then_is_ignored_once_the_engine_stops_reporting() {
    let mock = slow_engine();
    let yaml = common::chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let router = start_router_ready(router_opts(&yaml), 1).await;
    let chat_url = format!("{}/v1/chat/completions", router.url);
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let url = chat_url.clone();
            actix_rt::spawn(async move {
                common::post_json(&url, &common::chat_body("m", false))
                    .await
                    .0
            })
        })
        .collect();

    common::eventually(
        Duration::from_secs(5),
        "the engine's queue in /admin/backends",
        || {
            let router = router.url.clone();
            async move {
                let load = engine_load(&router).await;
                load["running"] == 1 && load["waiting"] == 2
            }
        },
    )
    .await;
    let load = engine_load(&router.url).await;
    let age = load["age_ms"].as_f64().unwrap_or(f64::MAX);
    assert!(
        age <= 2000.0 * PROBE_SECS,
        "a reading older than two intervals is shown: {load}"
    );
    let (status, _, page) = admin(&format!("{}/metrics", router.url)).await;
    assert_eq!(status, 200);
    let endpoint = format!("vllm@{}", mock.url.trim_start_matches("http://"));
    assert!(
        page.lines()
            .any(|l| l.starts_with("switchyard_backend_engine_requests{")
                && l.contains(&format!("backend=\"{endpoint}\""))
                && l.contains("state=\"waiting\"")),
        "no engine gauge for {endpoint}:\n{page}"
    );
    for r in requests {
        assert_eq!(r.await.expect("request task"), 200);
    }

    // The engine stops reporting: its last reading is dropped after two probe intervals.
    common::mock_patch(&mock, json!({"serve_metrics": false})).await;
    let stopped = Instant::now();
    common::eventually(
        Duration::from_secs(5),
        "the stale reading to be ignored",
        || {
            let router = router.url.clone();
            async move { engine_load(&router).await.is_null() }
        },
    )
    .await;
    // Two intervals, plus a jittered probe's lateness and the polling: never much longer.
    assert!(
        stopped.elapsed() < Duration::from_secs_f64(PROBE_SECS * 2.0 + 2.0),
        "the stale reading lived {:?}",
        stopped.elapsed()
    );
    let (_, _, page) = admin(&format!("{}/metrics", router.url)).await;
    assert!(
        !page.contains("switchyard_backend_engine_requests{"),
        "a stale reading is still exported:\n{page}"
    );
    // The endpoint itself stays healthy: a missing metrics page is not a failure.
    let (_, backends, _) = admin(&format!("{}/admin/backends", router.url)).await;
    assert_eq!(backends["data"][0]["health"], "ready", "{backends}");
}

#[actix_rt::test]
async fn metrics_path_none_reads_nothing_and_remote_kinds_are_not_asked() {
    let engine = slow_engine();
    let hosted = start_mock(json!({}));
    let yaml = format!(
        "models:\n  - id: m\n    route:\n      - {{kind: vllm, base_url: \"{}\", metrics_path: none}}\n  - id: h\n    route:\n      - {{kind: openai, base_url: \"{}/v1\"}}\n",
        engine.url, hosted.url
    );
    let router = start_router_ready(router_opts(&yaml), 2).await;
    // Several probe rounds.
    actix_rt::time::sleep(Duration::from_secs_f64(PROBE_SECS * 5.0)).await;
    for mock in [&engine, &hosted] {
        let stats = common::mock_stats(mock).await;
        assert!(
            stats["requests_by_path"].get("/metrics").is_none(),
            "{stats}"
        );
    }
    let (_, backends, _) = admin(&format!("{}/admin/backends", router.url)).await;
    for b in backends["data"].as_array().expect("endpoints") {
        assert!(b["engine_load"].is_null(), "{b}");
        assert!(b["metrics_path"].is_null(), "{b}");
    }
}
