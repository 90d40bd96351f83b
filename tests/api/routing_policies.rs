//! Routing policies end to end (docs/routing.md): the default policy and its admin view, soft
//! offload across tiers, session affinity across two router replicas, and prefix-cache
//! affinity, against the real binary and mock engines.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "test-admin-key-policies";

fn admin_env() -> Vec<(&'static str, String)> {
    vec![("ADMIN_API_KEY", ADMIN_KEY.into())]
}

/// Chat requests each mock received so far (health probes excluded).
async fn chats(mocks: &[Proc]) -> Vec<u64> {
    let mut counts = Vec::with_capacity(mocks.len());
    for mock in mocks {
        counts.push(
            mock_stats(mock).await["requests_by_path"]["/v1/chat/completions"]
                .as_u64()
                .unwrap_or(0),
        );
    }
    counts
}

/// Per mock, the requests it received between two [`chats`] readings.
fn delta(before: &[u64], after: &[u64]) -> Vec<u64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

async fn chat(router: &str, body: &Value, session: Option<&str>) -> u16 {
    let mut req = client()
        .post(format!("{router}/v1/chat/completions"))
        .insert_header(("content-type", "application/json"));
    if let Some(s) = session {
        req = req.insert_header(("x-session-id", s));
    }
    let mut resp = req.send_body(body.to_string()).await.expect("chat request");
    let _ = resp.body().await;
    resp.status().as_u16()
}

async fn start(
    yaml: &str,
    routing_yaml: Option<&str>,
    env: Vec<(&'static str, String)>,
    ready: u64,
) -> Router {
    let opts = RouterOpts {
        models_yaml: yaml,
        routing_yaml,
        env,
    };
    start_router_ready(opts, ready).await
}

async fn admin(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let (status, _, v) = send_with_key(method, url, Some(ADMIN_KEY), body).await;
    (status, v)
}

/// A model `m` with one route per mock (named `r0`, `r1`, …), each with `extra` YAML.
fn model_yaml(mocks: &[Proc], policy: Option<&str>, extra: &[&str]) -> String {
    let mut y = String::from("models:\n  - id: m\n");
    if let Some(p) = policy {
        y.push_str(&format!("    policy: {p}\n"));
    }
    y.push_str("    route:\n");
    for (i, mock) in mocks.iter().enumerate() {
        let more = extra.get(i).copied().unwrap_or("");
        y.push_str(&format!(
            "      - {{name: r{i}, kind: vllm, base_url: \"{}\"{more}}}\n",
            mock.url
        ));
    }
    y
}

#[actix_rt::test]
async fn the_default_policy_is_least_load_and_the_admin_view_changes_it() {
    let mocks = [start_mock(json!({})), start_mock(json!({}))];
    let yaml = model_yaml(&mocks, None, &[", priority: 2", ""]);
    let router = start(&yaml, Some("health_check: 0.2\n"), admin_env(), 2).await;
    let routing = format!("{}/admin/routing", router.url);
    let (status, view) = admin("GET", &routing, None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["default_policy"], "least_load");
    assert_eq!(view["models"][0]["policy"], "least_load");
    assert_eq!(view["models"][0]["policy_source"], "default");
    assert_eq!(view["models"][0]["routes"][0]["priority"], 2);
    assert_eq!(view["models"][0]["routes"][1]["priority"], 0);

    // Unknown policies and models are refused, in OpenAI's shape, and change nothing.
    for (body, want) in [
        (json!({"policies": {"m": "fastest"}}), 400),
        (json!({"policies": {"m": 3}}), 400),
        (json!({"policies": {}}), 400),
        (json!({"policies": {"nope": "weighted"}}), 404),
    ] {
        let (status, v) = admin("PUT", &routing, Some(&body)).await;
        assert_openai_error(status, want, &v);
    }

    let change = json!({"policies": {"m": "prefix_cache"}, "persist": true});
    let (status, view) = admin("PUT", &routing, Some(&change)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["models"][0]["policy"], "prefix_cache");
    assert_eq!(view["models"][0]["policy_source"], "model");
    // The persisted file keeps its other keys and loads back with the change; a reload
    // keeps it.
    let (file, doc, reloaded) = persisted_routing(&router, &yaml);
    assert_eq!(doc["model_policies"]["m"].as_str(), Some("prefix_cache"));
    assert_eq!(doc["health_check"].as_f64(), Some(0.2), "{file}");
    assert_eq!(
        reloaded.models[0].policy,
        Some(switchyard::config::RoutingPolicy::PrefixCache)
    );
    let (status, _) = admin("POST", &format!("{}/admin/reload", router.url), None).await;
    assert_eq!(status, 200);
    let (_, view) = admin("GET", &routing, None).await;
    assert_eq!(view["models"][0]["policy"], "prefix_cache");

    // Decisions are counted by policy and reason.
    assert_eq!(chat(&router.url, &chat_body("m", false), None).await, 200);
    let (status, _, text) = send_with_key(
        "GET",
        &format!("{}/metrics", router.url),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains(
            r#"switchyard_routing_decisions_total{policy="prefix_cache",reason="least_load"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"switchyard_model_policy{model="m",policy="prefix_cache"} 1"#));
    assert!(text.contains("switchyard_routing_prefix_match_bytes_count 1"));
}

/// A local tier (priority 1, `max_in_flight` 4) and a remote tier: below saturation everything
/// stays local, above it only the overflow goes remote, and traffic comes back as soon as
/// local capacity frees up.
#[actix_rt::test]
async fn soft_offload_sends_only_the_overflow_to_the_lower_tier() {
    let mocks = [
        start_mock(json!({"latency_ms": 400})),
        start_mock(json!({"latency_ms": 400})),
    ];
    let yaml = model_yaml(&mocks, None, &[", priority: 1, max_in_flight: 4", ""]);
    let router = start(&yaml, None, vec![], 2).await;
    let body = chat_body("m", false);
    let burst = |n: usize| join_all((0..n).map(|_| chat(&router.url, &body, None)));

    // Below saturation: three at a time, several times, all local.
    let before = chats(&mocks).await;
    for _ in 0..3 {
        assert!(burst(3).await.iter().all(|s| *s == 200));
    }
    assert_eq!(delta(&before, &chats(&mocks).await), vec![9, 0]);

    // Ten at once: the local tier takes its four, only the six others go remote.
    let before = chats(&mocks).await;
    let statuses = burst(10).await;
    let freed = Instant::now();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(delta(&before, &chats(&mocks).await), vec![4, 6]);

    // Capacity is free again: the very next request is local, answered (400 ms of backend
    // latency included) within a second of the burst's end.
    let before = chats(&mocks).await;
    assert_eq!(chat(&router.url, &body, None).await, 200);
    assert!(
        freed.elapsed() < Duration::from_secs(1),
        "{:?}",
        freed.elapsed()
    );
    assert_eq!(delta(&before, &chats(&mocks).await), vec![1, 0]);
    let before = chats(&mocks).await;
    assert!(burst(4).await.iter().all(|s| *s == 200));
    assert_eq!(delta(&before, &chats(&mocks).await), vec![4, 0]);
}

/// Sessions stick to one endpoint, whichever of two replicas with the same configuration
/// serves them, whether the key comes from the header, `prompt_cache_key` or `user`.
#[actix_rt::test]
async fn session_affinity_holds_across_two_replicas() {
    let mocks = [
        start_mock(json!({})),
        start_mock(json!({})),
        start_mock(json!({})),
        start_mock(json!({})),
    ];
    let yaml = model_yaml(&mocks, None, &[]);
    let replicas = [
        start(&yaml, None, vec![], 4).await,
        start(&yaml, None, vec![], 4).await,
    ];
    let mut homes = std::collections::HashSet::new();
    for session in 0..16 {
        let key = format!("session-{session}");
        let mut body = chat_body("m", false);
        let header = place_session_key(session, &key, &mut body);
        let before = chats(&mocks).await;
        for i in 0..10 {
            let router = &replicas[i % 2].url;
            assert_eq!(chat(router, &body, header).await, 200);
        }
        let got = delta(&before, &chats(&mocks).await);
        let home = got.iter().position(|n| *n == 10);
        assert!(home.is_some(), "session {session} spread over {got:?}");
        homes.extend(home);
    }
    // Sessions are spread: 16 sessions over 4 equal routes land on more than one.
    assert!(homes.len() > 1, "{homes:?}");
}

/// `prefix_cache`: prompts sharing a long system prompt go where that prefix went before.
#[actix_rt::test]
async fn prefix_cache_keeps_shared_prefixes_on_one_endpoint() {
    let mocks = [
        start_mock(json!({})),
        start_mock(json!({})),
        start_mock(json!({})),
    ];
    let yaml = model_yaml(&mocks, Some("prefix_cache"), &[]);
    let router = start(&yaml, None, admin_env(), 3).await;
    for family in 0..6 {
        let system = format!("You are assistant number {family}. ").repeat(60);
        let before = chats(&mocks).await;
        for question in 0..6 {
            let body = json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": format!("Question {question}?")},
                ],
                "max_tokens": 4,
            });
            assert_eq!(chat(&router.url, &body, None).await, 200);
        }
        let got = delta(&before, &chats(&mocks).await);
        assert!(got.contains(&6), "family {family} spread over {got:?}");
    }
    let (_, _, text) = send_with_key(
        "GET",
        &format!("{}/metrics", router.url),
        Some(ADMIN_KEY),
        None,
    )
    .await;
    let text = text.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains(
            r#"switchyard_routing_decisions_total{policy="prefix_cache",reason="cache_hit"} 30"#
        ),
        "{text}"
    );
}

/// Prompt tokens and cached prompt tokens over a closed loop of `workers` concurrent clients,
/// each sending `rounds` chats with one of `families` long system prompts, drawn from a fixed
/// seed per client (the same sequence in every run).
async fn cached_share(router: &str, workers: usize, rounds: usize, families: usize) -> (u64, u64) {
    let worker = |w: usize| async move {
        let (mut prompt, mut cached) = (0, 0);
        let mut draw = fastrand::Rng::with_seed(w as u64);
        for k in 0..rounds {
            let family = draw.usize(..families);
            let system = format!("You are assistant number {family}. ").repeat(40);
            let body = json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": format!("Question {w} {k}?")},
                ],
                "max_tokens": 2,
            });
            let (status, _, answer) =
                post_json(&format!("{router}/v1/chat/completions"), &body).await;
            assert_eq!(status, 200, "{answer}");
            prompt += answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
            cached += answer["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0);
        }
        (prompt, cached)
    };
    join_all((0..workers).map(worker))
        .await
        .into_iter()
        .fold((0, 0), |(p, c), (wp, wc)| (p + wp, c + wc))
}

/// Waits until every endpoint of the router shows a fresh slot count from its engine.
async fn wait_for_slot_counts(router: &str, endpoints: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, view) = admin("GET", &format!("{router}/admin/backends"), None).await;
        let known = view["data"].as_array().map_or(0, |list| {
            list.iter()
                .filter(|e| e["engine_load"]["slots"].as_u64().is_some())
                .count()
        });
        if known >= endpoints {
            return;
        }
        assert!(Instant::now() < deadline, "no slot counts: {view}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Empty every mock's counters and caches between two routers in one test.
async fn reset_mocks(mocks: &[Proc]) {
    for mock in mocks {
        let (status, _, _) = post_json(&format!("{}/_mock/reset", mock.url), &json!({})).await;
        assert_eq!(status, 200);
    }
}

/// The router's `/metrics` text, its routing decisions printed for the test's log.
async fn metrics_with_decisions(router: &str) -> String {
    let (_, _, metrics) =
        send_with_key("GET", &format!("{router}/metrics"), Some(ADMIN_KEY), None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_routing_decisions_total"))
    {
        eprintln!("{line}");
    }
    metrics
}

/// `prefix_cache` in front of llama.cpp-style engines that cache per slot (two mocks with three
/// slots each, `cache: slot`), three long system prompts, four clients at once: modelling the
/// slots serves more of the prompts from cache than the engine-level view with the same
/// capacity (the routes as `vllm` with `max_in_flight: 3`, as `prefix_cache` saw llama.cpp
/// before its slots were modelled), where a second concurrent request for one prompt is sent
/// to the engine "holding" it and takes, cold, the slot of another prompt. Three slots rather
/// than two: with as many clients as slots, every request finds only the slot its own client
/// just released idle, so no policy has a choice to make.
#[actix_rt::test]
async fn prefix_cache_models_per_slot_caches() {
    let cost_model = json!({
        "slots": 3,
        "cache": "slot",
        "cache_tokens": 4096,
        "prefill_us_per_token": 1500,
        "decode_us_per_token": 2000,
    });
    let mocks = [
        start_mock(json!({"cost_model": cost_model})),
        start_mock(json!({"cost_model": cost_model})),
    ];
    let (workers, rounds, families) = (4, 15, 3);

    let llama =
        model_yaml(&mocks, Some("prefix_cache"), &[]).replace("kind: vllm", "kind: llamacpp");
    let router = start(&llama, None, admin_env(), 2).await;
    wait_for_slot_counts(&router.url, 2).await;
    let (prompt, cached) = cached_share(&router.url, workers, rounds, families).await;
    let metrics = metrics_with_decisions(&router.url).await;
    drop(router);
    let by_slots = cached as f64 / prompt as f64;

    reset_mocks(&mocks).await;
    let engine_level = model_yaml(&mocks, Some("prefix_cache"), &[", max_in_flight: 3"; 2]);
    let router = start(&engine_level, None, admin_env(), 2).await;
    let (prompt, cached) = cached_share(&router.url, workers, rounds, families).await;
    let by_engine = cached as f64 / prompt as f64;

    eprintln!("cached share: slots modelled {by_slots:.3}, engine-level {by_engine:.3}");
    assert!(
        by_slots > by_engine + 0.1,
        "slots modelled {by_slots:.3}, engine-level {by_engine:.3}"
    );
    assert!(
        metrics.contains(r#"reason="cold_slot""#) && metrics.contains(r#"reason="cache_hit""#),
        "{metrics}"
    );
}

/// With as many clients as slots (two mocks with two per-slot caches, four clients), every
/// request finds only the slot its own client just released idle, so starting at once means
/// starting cold two times in three. `slot_wait_ms` lets a request wait for a busy slot keeping
/// its prefix instead: more of the prompts are served from cache than without it, with a fixed
/// bound and with the default `auto` (the bound learned from the mock's `timings.prompt_ms`,
/// the prompt's cold prefill: about 300 ms here against 80 ms for a cached request).
#[actix_rt::test]
async fn prefix_cache_may_wait_for_a_slot_keeping_the_prefix() {
    let cost_model = json!({
        "slots": 2,
        "cache": "slot",
        "cache_tokens": 4096,
        "prefill_us_per_token": 1500,
        // A cached request (two tokens, 80 ms) takes a fifth of a cold prefill (300 ms +
        // 80 ms), as on the CPU engines of docs/routing.md's measurements.
        "decode_us_per_token": 40000,
    });
    let mocks = [
        start_mock(json!({"cost_model": cost_model})),
        start_mock(json!({"cost_model": cost_model})),
    ];
    let llama =
        model_yaml(&mocks, Some("prefix_cache"), &[]).replace("kind: vllm", "kind: llamacpp");
    let mut shares = Vec::new();
    let settings = [
        Some("policy_settings:\n  slot_wait_ms: 0\n"),
        None,
        Some("policy_settings:\n  slot_wait_ms: 2000\n"),
    ];
    for routing in settings {
        reset_mocks(&mocks).await;
        let router = start(&llama, routing, admin_env(), 2).await;
        wait_for_slot_counts(&router.url, 2).await;
        let (prompt, cached) = cached_share(&router.url, 4, 15, 3).await;
        shares.push(cached as f64 / prompt as f64);
        if routing.is_none() {
            // What `auto` learned: the mock computes an uncached token in 1.5 ms.
            let (_, view) = admin("GET", &format!("{}/admin/backends", router.url), None).await;
            let rates: Vec<f64> = view["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["prefill_ms_per_token"].as_f64())
                .collect();
            assert!(!rates.is_empty(), "{view}");
            assert!(rates.iter().all(|r| (1.0..5.0).contains(r)), "{rates:?}");
        }
        if routing != settings[0] {
            let metrics = metrics_with_decisions(&router.url).await;
            assert!(metrics.contains(r#"reason="slot_wait""#), "{metrics}");
        }
    }
    eprintln!(
        "cached share: without waiting {:.3}, auto {:.3}, slot_wait_ms 2000 {:.3}",
        shares[0], shares[1], shares[2]
    );
    assert!(shares[1] > shares[0] + 0.1, "{shares:?}");
    assert!(shares[2] > shares[0] + 0.1, "{shares:?}");
}
