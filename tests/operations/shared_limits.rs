//! Limits and budgets that hold across replicas (docs/limits.md): keys' requests/minute,
//! tokens/minute and budgets, counted in one ledger in the shared database.
//!
//! The single-replica budget test runs on the default SQLite database. The three-replica tests
//! need `TEST_DATABASE_URL` (a PostgreSQL server where they may create and drop a database);
//! without it they say SKIP and pass.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "limits-admin-key";
/// Completion words the mock sends per request (its `chunks`, and the request's max_tokens).
const WORDS: u64 = 20;
/// USD per token, prompt and completion alike.
const PRICE: f64 = 0.0004;

fn models_yaml(mock: &str) -> String {
    format!(
        "models:\n  - id: priced\n    pricing: {{prompt: {PRICE}, completion: {PRICE}}}\n    route:\n      - {{kind: vllm, base_url: \"{mock}\"}}\n"
    )
}

/// [`models_yaml`] plus `capped`, on its own endpoint limited to 60 requests a minute.
fn models_yaml_with_capped(mock: &str, capped_mock: &str) -> String {
    format!(
        "{}  - id: capped\n    route:\n      - {{kind: vllm, base_url: \"{capped_mock}\", rpm: 60}}\n",
        models_yaml(mock)
    )
}

fn keys_yaml() -> &'static str {
    "keys:
  - {name: free-key, key: free-key-secret-1}
  - {name: rpm-key, key: rpm-key-secret-1, rpm: 120}
  - {name: tpm-key, key: tpm-key-secret-1, tpm: 2300}
  - {name: budget-key, key: budget-key-secret-1, budget_usd: 0.50, budget_period: day}
  - {name: total-key, key: total-key-secret-1, budget_usd: 1.00, budget_period: total}
"
}

fn body(stream: bool) -> Value {
    json!({
        "model": "priced",
        "messages": [{"role": "user", "content": "Hello there"}],
        "stream": stream,
        "max_tokens": WORDS,
    })
}

fn start_replica(
    yaml: &str,
    keys: &std::path::Path,
    name: &str,
    db: Option<&str>,
    extra: &[(&'static str, &str)],
) -> Router {
    let mut env = vec![
        ("KEYS_FILE", keys.display().to_string()),
        ("ADMIN_API_KEY", ADMIN_KEY.to_string()),
        ("REPLICA_ID", name.to_string()),
        ("LOG_FLUSH_INTERVAL_MS", "50".to_string()),
    ];
    if let Some(url) = db {
        env.push(("USE_SQLITE_LOG", "false".into()));
        env.push(("DATABASE_URL", url.into()));
    }
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    start_router(RouterOpts {
        models_yaml: yaml,
        routing_yaml: None,
        env,
    })
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn chat(router: &str, key: &str, stream: bool) -> Answer {
    post_chat(router, key, &body(stream)).await
}

async fn post_chat(router: &str, key: &str, request: &Value) -> Answer {
    let url = format!("{router}/v1/chat/completions");
    let (status, headers, body) = send_with_key("POST", &url, Some(key), Some(request)).await;
    let retry_after = headers
        .get("retry-after")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse().ok());
    Answer {
        status,
        retry_after,
        body,
    }
}

/// `n` requests at once, spread round-robin over `routers`.
async fn burst(routers: &[&str], key: &str, n: usize, stream: bool) -> Vec<Answer> {
    let request = body(stream);
    join_all((0..n).map(|i| post_chat(routers[i % routers.len()], key, &request))).await
}

/// A fresh PostgreSQL database on `TEST_DATABASE_URL`'s server; `None` (the test says SKIP)
/// when it is not set.
async fn pg_database(prefix: &str) -> Option<common::pg::TempDatabase> {
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("SKIP: TEST_DATABASE_URL not set (a PostgreSQL server where this test may create and drop a database)");
        return None;
    };
    Some(common::pg::TempDatabase::create(&admin, prefix).await)
}

/// Every refusal is a 429 in OpenAI's shape with a `Retry-After` and the given code.
fn assert_refusals(answers: &[Answer], code: &str) {
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_openai_error(a.status, 429, &a.body);
        assert_eq!(a.body["error"]["code"], code, "{}", a.body);
        assert!(a.retry_after.is_some_and(|s| s >= 1), "no Retry-After");
    }
}

fn accepted(answers: &[Answer]) -> usize {
    answers.iter().filter(|a| a.status == 200).count()
}

/// One request's real cost: 2 prompt words + `WORDS` completion words.
fn request_cost() -> f64 {
    (2 + WORDS) as f64 * PRICE
}

async fn admin_keys(router: &str) -> Value {
    let url = format!("{router}/admin/keys");
    let (status, _, v) = send_with_key("GET", &url, Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn key_view<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {view}"))
}

/// One replica on SQLite: a budget stops a key within one request's cost, refusals are
/// `insufficient_quota` / `budget_exceeded` with `Retry-After` to the period's end, and the
/// admin view and the metrics show spend and what is left (by key id, never the key).
#[actix_rt::test]
async fn a_budget_stops_a_key_on_one_replica() {
    let mock = start_mock(json!({"chunks": WORDS}));
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.yaml");
    std::fs::write(
        &keys,
        "keys:\n  - {name: small, key: small-key-secret-1, budget_usd: 0.05, budget_period: day}\n",
    )
    .expect("keys");
    let router = start_replica(&models_yaml(&mock.url), &keys, "solo", None, &[]);
    wait_ready(&router.url, 1).await;
    let mut served = 0;
    let refusal = loop {
        let a = chat(&router.url, "small-key-secret-1", served % 2 == 1).await;
        if a.status != 200 {
            break a;
        }
        served += 1;
        assert!(served < 100, "the budget never stopped the key");
    };
    assert_refusals(std::slice::from_ref(&refusal), "budget_exceeded");
    assert_eq!(refusal.body["error"]["type"], "insufficient_quota");
    let retry = refusal.retry_after.expect("Retry-After");
    assert!((1..=86_400).contains(&retry), "to the day's end: {retry}");
    let spent = served as f64 * request_cost();
    assert!(spent <= 0.05 + request_cost() + 1e-9, "spent {spent}");
    assert!(
        spent >= 0.05 - 2.0 * request_cost(),
        "stopped early: {spent}"
    );
    // Later requests, streamed or not, are refused the same way.
    for stream in [false, true] {
        let a = chat(&router.url, "small-key-secret-1", stream).await;
        assert_refusals(std::slice::from_ref(&a), "budget_exceeded");
        assert_eq!(a.status, 429);
    }
    let view = admin_keys(&router.url).await;
    let small = key_view(&view, "small");
    let budget = &small["budget"];
    assert_eq!(budget["budget_usd"], 0.05);
    assert_eq!(budget["period"], "day");
    let spend = budget["spend_usd"].as_f64().expect("spend");
    assert!(spend > 0.03 && spend <= 0.05 + 1e-9, "{budget}");
    assert!(!view.to_string().contains("small-key-secret"), "{view}");
    let (status, text) = {
        let url = format!("{}/metrics", router.url);
        let (s, _, v) = send_with_key("GET", &url, Some(ADMIN_KEY), None).await;
        (s, v.as_str().unwrap_or_default().to_string())
    };
    assert_eq!(status, 200);
    assert!(
        text.contains("switchyard_key_budget_remaining_usd{key=\"small\"}"),
        "{text}"
    );
    assert!(text.contains("switchyard_quota_lease_requests_total"));
    assert!(!text.contains("small-key-secret"));

    // A reload that doubles the budget keeps what was spent: about as much again passes.
    std::fs::write(
        &keys,
        "keys:\n  - {name: small, key: small-key-secret-1, budget_usd: 0.10, budget_period: day}\n",
    )
    .expect("keys");
    let url = format!("{}/admin/reload", router.url);
    let (status, _, v) = send_with_key("POST", &url, Some(ADMIN_KEY), None).await;
    assert_eq!(status, 200, "{v}");
    // A refusal is answered locally for up to a second before the ledger is asked again.
    actix_rt::time::sleep(Duration::from_millis(1100)).await;
    let mut more = 0;
    while chat(&router.url, "small-key-secret-1", false).await.status == 200 {
        more += 1;
        assert!(more < 100, "the raised budget never stopped the key");
    }
    let total = (served + more) as f64 * request_cost();
    assert!(
        total <= 0.10 + request_cost() + 1e-9 && total >= 0.10 - 2.0 * request_cost(),
        "spent {total} after raising the budget to 0.10 ({served} + {more} requests)"
    );

    // `switchyard usage --by key` shows the period's spend against the budget.
    let out = std::process::Command::new(bin("switchyard"))
        .current_dir(router.dir.path())
        .env("KEYS_FILE", &keys)
        .args(["usage", "--by", "key"])
        .output()
        .expect("switchyard usage");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("small ") && l.contains("day:"))
        .unwrap_or_else(|| panic!("no budget line for `small`: {text}"));
    let numbers: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{line}");
    assert!(
        (numbers[0] - total).abs() < 2.0 * request_cost(),
        "{line} vs {total}"
    );
    assert_eq!(numbers[1], 0.1, "{line}");
    assert!(!text.contains("small-key-secret"));
}

/// Three replicas on one PostgreSQL: the key's rpm, tpm and budget hold for all of them
/// together, not once per replica.
#[actix_rt::test]
async fn limits_hold_across_three_replicas() {
    let Some(db) = pg_database("switchyard_limits").await else {
        return;
    };
    let mock = start_mock(json!({"chunks": WORDS}));
    let capped_mock = start_mock(json!({"chunks": WORDS}));
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&keys, keys_yaml()).expect("keys");
    let yaml = models_yaml_with_capped(&mock.url, &capped_mock.url);
    let replicas: Vec<Router> = ["a", "b", "c"]
        .iter()
        .map(|name| start_replica(&yaml, &keys, name, Some(&db.url), &[]))
        .collect();
    for r in &replicas {
        wait_ready(&r.url, 2).await;
    }
    let urls: Vec<&str> = replicas.iter().map(|r| r.url.as_str()).collect();

    // An endpoint's rpm 60 holds for the three together, whatever the key.
    let started = Instant::now();
    let capped = json!({"model": "capped", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4});
    let answers =
        join_all((0..150).map(|i| post_chat(urls[i % 3], "free-key-secret-1", &capped))).await;
    let refill = started.elapsed().as_secs_f64().ceil() as usize;
    let n = accepted(&answers);
    assert!(
        (57..=63 + 3 + refill).contains(&n),
        "endpoint rpm: {n} accepted (refill {refill})"
    );
    assert_refusals(&answers, "rate_limit_exceeded");

    // rpm 120, 300 at once: 120 (±5 %) pass, plus what refills during the burst (2/s) and
    // one lease (1 request) per replica.
    let started = Instant::now();
    let answers = burst(&urls, "rpm-key-secret-1", 300, false).await;
    let refill = (2.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    let n = accepted(&answers);
    assert!(
        (114..=126 + 3 + refill).contains(&n),
        "rpm: {n} accepted (refill {refill})"
    );
    assert_refusals(&answers, "rate_limit_exceeded");

    // tpm 2300 with streams of 22 tokens: about 100 requests' worth of tokens pass.
    let started = Instant::now();
    let answers = burst(&urls, "tpm-key-secret-1", 300, true).await;
    let refill = 2300.0 / 60.0 * started.elapsed().as_secs_f64();
    let tokens = accepted(&answers) as f64 * (2 + WORDS) as f64;
    let lease = 23.0;
    assert!(
        tokens >= 0.95 * 2300.0 - 3.0 * lease && tokens <= 1.05 * 2300.0 + 3.0 * lease + refill,
        "tpm: {tokens} tokens accepted (refill {refill})"
    );
    assert_refusals(&answers, "rate_limit_exceeded");

    // Budget 0.50: 200 at once; spend stops within the budget plus one request per replica.
    let answers = burst(&urls, "budget-key-secret-1", 200, false).await;
    assert_refusals(&answers, "budget_exceeded");
    let mut served = accepted(&answers);
    // Estimates were a little above the real cost: the difference may admit a few more.
    let mut later = Vec::new();
    for i in 0..30 {
        later.push(chat(urls[i % 3], "budget-key-secret-1", i % 2 == 0).await);
    }
    // A request's estimate is settled to its real cost as its record is made, a moment after
    // the client has its answer (a stream's at its end): a refund landing after a refusal can
    // admit one more, so every success counts, wherever it falls.
    let extra = accepted(&later);
    served += extra;
    assert!(extra <= 5, "{extra} more after the burst");
    assert!(
        later.iter().rev().take(5).all(|a| a.status == 429),
        "requests still pass once every refund is in"
    );
    assert_refusals(&later, "budget_exceeded");
    let spent = served as f64 * request_cost();
    assert!(
        spent <= 0.50 + 3.0 * request_cost() + 1e-9,
        "budget: spent {spent} over {served} requests"
    );
    assert!(spent >= 0.45, "budget: stopped early at {spent}");
    // Every replica's admin view shows the shared spend.
    for url in &urls {
        let view = admin_keys(url).await;
        let budget = &key_view(&view, "budget-key")["budget"];
        let spend = budget["spend_usd"].as_f64().expect("spend");
        assert!(spend <= 0.50 + 3.0 * request_cost(), "{budget}");
        assert!(spend >= 0.40, "{budget}");
        let rpm = &key_view(&view, "rpm-key")["rpm"];
        assert_eq!(rpm["limit"], 120.0);
    }
    drop(replicas);
    db.drop_it().await;
}

/// Requests of `total-key` alternating over `routers` until six in a row are refused (each
/// replica may hold a slice of its own); the number served.
async fn spend_until_refused(routers: &[String]) -> usize {
    let (mut served, mut refused_in_a_row) = (0, 0);
    for i in 0..400 {
        let a = chat(&routers[i % routers.len()], "total-key-secret-1", false).await;
        if a.status == 200 {
            served += 1;
            refused_in_a_row = 0;
        } else {
            assert_refusals(std::slice::from_ref(&a), "budget_exceeded");
            refused_in_a_row += 1;
            if refused_in_a_row == 6 {
                break;
            }
        }
    }
    served
}

/// A replica killed while it holds a lease: the others go on, and the key's allowance comes
/// back once that lease expires.
#[actix_rt::test]
async fn a_killed_replicas_lease_comes_back_when_it_expires() {
    let Some(db) = pg_database("switchyard_lease_kill").await else {
        return;
    };
    let mock = start_mock(json!({"chunks": WORDS}));
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys.yaml");
    std::fs::write(&keys, keys_yaml()).expect("keys");
    let yaml = models_yaml(&mock.url);
    // Large leases (25 % of the budget) and a short life, so the test sees them. The life is
    // the time B and C have to spend the rest, one request at a time, before A's lease
    // expires: a loaded 2-core machine has taken more than 7 s for that.
    let lease_life = Duration::from_secs(20);
    let lease_ttl_ms = lease_life.as_millis().to_string();
    let settings = [
        ("QUOTA_LEASE_PERCENT", "25"),
        ("QUOTA_LEASE_TTL_MS", lease_ttl_ms.as_str()),
        ("QUOTA_LEASE_INTERVAL_MS", "60000"),
    ];
    let mut replicas: Vec<Router> = ["a", "b", "c"]
        .iter()
        .map(|name| start_replica(&yaml, &keys, name, Some(&db.url), &settings))
        .collect();
    for r in &replicas {
        wait_ready(&r.url, 1).await;
    }
    // A spends a little and holds the rest of a quarter of the budget; then it dies.
    for _ in 0..3 {
        assert_eq!(
            chat(&replicas[0].url, "total-key-secret-1", false)
                .await
                .status,
            200
        );
    }
    replicas[0].kill();
    let killed = Instant::now();
    let others: Vec<String> = replicas[1..].iter().map(|r| r.url.clone()).collect();
    // B and C go on until what is left without A's slice is spent.
    let served = spend_until_refused(&others).await;
    // A's lease was taken before the kill, so it ends less than `lease_life` after it.
    assert!(
        killed.elapsed() < lease_life - Duration::from_secs(1),
        "too slow to see the lease before it expires ({:?})",
        killed.elapsed()
    );
    let before_expiry = (served + 3) as f64 * request_cost();
    assert!(
        before_expiry < 0.80 && before_expiry > 0.65,
        "A's unspent slice was usable before it expired: {before_expiry}"
    );
    // After A's lease expires its unspent slice is the key's again.
    actix_rt::time::sleep((lease_life + Duration::from_secs(1)).saturating_sub(killed.elapsed()))
        .await;
    let after = spend_until_refused(&others).await;
    let total = (served + after + 3) as f64 * request_cost();
    assert!(after > 10, "the allowance did not come back ({after} more)");
    assert!(
        total <= 1.0 + 2.0 * request_cost() && total >= 0.95,
        "spent {total} of 1.00"
    );
    drop(replicas);
    db.drop_it().await;
}
