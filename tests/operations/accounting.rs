//! Usage accounting end to end: one `api_logs` row per request (chat JSON, chat streams with
//! and without client-requested usage, estimated usage, embeddings, errors), cost from the
//! configured pricing, the `logs`/`usage` CLI, the spill file across a database outage, and
//! PostgreSQL.

use crate::common;

use std::time::Duration;

use common::obs::*;
use common::*;
use serde_json::{json, Value};

/// One priced chat model on a mock that reports usage, one on a mock that never reports
/// usage in streams, one embeddings model.
fn models_yaml(usage_mock: &str, silent_mock: &str) -> String {
    format!(
        r#"models:
  - id: priced-chat
    pricing: {{prompt: "0.000001", completion: "0.000002", request: "0.0001"}}
    route:
      - name: main
        kind: vllm
        base_url: "{usage_mock}"
        provider_model_id: upstream-chat
        pricing: {{completion: "0.000003"}}
  - id: silent-chat
    pricing: {{prompt: "0.000001", completion: "0.000001"}}
    route:
      - kind: vllm
        base_url: "{silent_mock}"
        provider_model_id: upstream-silent
  - id: embed
    type: embedding
    pricing: {{prompt: "0.0000001"}}
    route:
      - kind: vllm
        base_url: "{usage_mock}"
        provider_model_id: upstream-embed
"#
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

async fn stream(url: &str, body: &Value, id: &str) -> Vec<String> {
    let mut resp = client()
        .post(url)
        .insert_header(("x-request-id", id))
        .send_json(body)
        .await
        .expect("stream request");
    assert_eq!(resp.status(), 200);
    read_sse(&mut resp)
        .await
        .into_iter()
        .map(|(_, d)| d)
        .collect()
}

#[actix_rt::test]
async fn every_request_leaves_a_priced_usage_row() {
    let usage_mock = start_mock(json!({"chunks": 8, "usage_mode": "auto"}));
    let silent_mock = start_mock(json!({"chunks": 6, "usage_mode": "never"}));
    let yaml = models_yaml(&usage_mock.url, &silent_mock.url);
    let mut router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![("LOG_FLUSH_INTERVAL_MS", "50".into())],
        },
        2,
    )
    .await;
    let chat_url = format!("{}/v1/chat/completions", router.url);

    // Non-streamed chat: usage from the backend.
    let (status, echoed, _) =
        post_with_id(&chat_url, &chat_body("priced-chat", false), "acct-json").await;
    assert_eq!((status, echoed.as_str()), (200, "acct-json"));

    // Stream, client asked for usage: the usage chunk reaches the client.
    let mut body = chat_body("priced-chat", true);
    body["stream_options"] = json!({"include_usage": true});
    let events = stream(&chat_url, &body, "acct-stream-usage").await;
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"usage\"") && e.contains("\"choices\":[]")),
        "usage chunk expected: {events:?}"
    );

    // Stream, client did not ask: no usage chunk, but the router still counted.
    let events = stream(
        &chat_url,
        &chat_body("priced-chat", true),
        "acct-stream-plain",
    )
    .await;
    assert!(
        !events.iter().any(|e| e.contains("prompt_tokens")),
        "no usage for a client that did not ask: {events:?}"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Stream from a backend that never reports usage: estimated.
    let events = stream(
        &chat_url,
        &chat_body("silent-chat", true),
        "acct-stream-silent",
    )
    .await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Embeddings.
    let (status, _, _) = post_with_id(
        &format!("{}/v1/embeddings", router.url),
        &json!({"model": "embed", "input": ["one two three", "four"]}),
        "acct-embed",
    )
    .await;
    assert_eq!(status, 200);

    // An unknown model: a row with the error, no model.
    let (status, _, _) = post_with_id(&chat_url, &chat_body("nope", false), "acct-404").await;
    assert_eq!(status, 404);

    let db = sqlite_path(&router);
    assert_eq!(router.terminate(Duration::from_secs(20)), Some(0));
    let store = open_sqlite(&db).await;
    let rows = all_rows(&store).await;
    assert_eq!(rows.len(), 6, "{rows:#?}");

    // "Hello there" = 2 prompt words; 8 words back; prompt at the model's price, completion
    // at the route's, plus the model's request fee.
    let r = row_for(&rows, "acct-json");
    assert_eq!(r.model_id.as_deref(), Some("priced-chat"));
    assert_eq!(r.model_type.as_deref(), Some("chat"));
    assert_eq!(r.op, "chat_completions");
    assert_eq!(r.route.as_deref(), Some("main"));
    assert!(r
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("vllm@127.0.0.1:")));
    assert_eq!((r.status_code, &*r.outcome), (200, "success"));
    assert!(!r.stream);
    assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(2), Some(8)));
    assert_eq!(r.total_tokens, Some(10));
    assert!(!r.usage_estimated);
    assert_eq!(r.attempts, 1);
    assert!(
        close(r.cost_usd.unwrap(), 2.0 * 1e-6 + 8.0 * 3e-6 + 1e-4),
        "{r:?}"
    );
    assert!(r.latency_ms > 0.0 && r.upstream_ms.is_some());

    for id in ["acct-stream-usage", "acct-stream-plain"] {
        let r = row_for(&rows, id);
        assert!(r.stream, "{id}");
        assert_eq!((r.status_code, &*r.outcome), (200, "success"), "{id}");
        assert_eq!(
            (r.prompt_tokens, r.completion_tokens),
            (Some(2), Some(8)),
            "{id}"
        );
        assert!(
            !r.usage_estimated,
            "{id}: the router asked the backend for usage"
        );
        assert!(r.ttfb_ms.is_some_and(|t| t <= r.latency_ms), "{id}");
        assert!(close(r.cost_usd.unwrap(), 2e-6 + 8.0 * 3e-6 + 1e-4), "{id}");
    }

    let r = row_for(&rows, "acct-stream-silent");
    assert!(r.usage_estimated, "{r:?}");
    assert!(r.completion_tokens.unwrap() > 0 && r.prompt_tokens.unwrap() > 0);

    let r = row_for(&rows, "acct-embed");
    assert_eq!(
        (&*r.op, r.model_id.as_deref()),
        ("embeddings", Some("embed"))
    );
    assert_eq!(r.prompt_tokens, Some(4));
    assert!(close(r.cost_usd.unwrap(), 4.0 * 1e-7));

    let r = row_for(&rows, "acct-404");
    assert_eq!((r.status_code, &*r.outcome), (404, "error"));
    assert_eq!(r.model_id, None);
    assert_eq!(r.error_code.as_deref(), Some("model_not_found"));
    assert_eq!(r.cost_usd, None);

    // The HybridInference README's `sqlite3` query on `api_logs` works as written.
    let counts: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT model_id, COUNT(*) FROM api_logs GROUP BY model_id")
            .fetch_all(&store.pool)
            .await
            .expect("README query");
    let priced = counts
        .iter()
        .find(|(m, _)| m.as_deref() == Some("priced-chat"))
        .map(|(_, n)| *n);
    assert_eq!(priced, Some(3));

    // The CLI reads the same database.
    let env = [("SQLITE_DB_PATH", db.display().to_string())];
    let (code, out) = run_cli(&["logs", "--json", "-n", "100"], &env, router.dir.path());
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 6, "{out}");
    let (code, out) = run_cli(
        &["logs", "--model", "priced-chat", "--outcome", "success"],
        &env,
        router.dir.path(),
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.contains("acct-")).count(),
        3,
        "{out}"
    );
    let (code, out) = run_cli(
        &["usage", "--by", "model", "--json"],
        &env,
        router.dir.path(),
    );
    assert_eq!(code, 0);
    let usage: Value = serde_json::from_str(&out).expect("usage json");
    let priced = usage
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["model_id"] == "priced-chat")
        .expect("priced-chat usage");
    assert_eq!(priced["requests"], 3);
    assert_eq!(priced["completion_tokens"], 24);
    let (code, out) = run_cli(
        &["usage", "--by", "model,period", "--period", "hour"],
        &env,
        router.dir.path(),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("priced-chat") && out.contains("embed"),
        "{out}"
    );
}

#[actix_rt::test]
async fn rows_survive_a_database_outage_through_the_spill_file() {
    let mock = start_mock(json!({}));
    let yaml = chat_model_yaml("m", &[("vllm", &mock.url, 1.0)]);
    let env = vec![("LOG_FLUSH_INTERVAL_MS", "50".to_string())];
    let mut router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: env.clone(),
        },
        1,
    )
    .await;
    let db = sqlite_path(&router);
    let url = format!("{}/v1/chat/completions", router.url);
    for i in 0..5 {
        assert_eq!(
            post_with_id(&url, &chat_body("m", false), &format!("before-{i}"))
                .await
                .0,
            200
        );
    }
    let store = open_sqlite(&db).await;
    assert_eq!(wait_rows(&store, 5).await.len(), 5);

    // The table disappears under the router: its writes fail and rows go to the spill file.
    sqlx::query("ALTER TABLE api_logs RENAME TO api_logs_away")
        .execute(&store.pool)
        .await
        .unwrap();
    for i in 0..20 {
        assert_eq!(
            post_with_id(&url, &chat_body("m", false), &format!("during-{i}"))
                .await
                .0,
            200
        );
    }
    assert_eq!(router.terminate(Duration::from_secs(20)), Some(0));
    let spill = std::path::PathBuf::from(format!("{}.spill.jsonl", db.display()));
    // A replay attempt while the table was away (the logger retries the database after its
    // back-off) renamed the spill file to `.replaying` and failed, leaving its rows there; later
    // rows started a fresh spill file. Every failed row is in one of the two.
    let replaying = std::path::PathBuf::from(format!("{}.replaying", spill.display()));
    let spilled: usize = [&spill, &replaying]
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum();
    assert_eq!(
        spilled,
        20,
        "every failed row is in {} or {}",
        spill.display(),
        replaying.display()
    );

    // The database comes back; the next start replays the spill file.
    sqlx::query("ALTER TABLE api_logs_away RENAME TO api_logs")
        .execute(&store.pool)
        .await
        .unwrap();
    store.pool.close().await;
    let models = router.dir.path().join("models.yaml");
    let mut cmd = std::process::Command::new(bin("switchyard"));
    cmd.current_dir(router.dir.path())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(&models)
        .env("LOG_FLUSH_INTERVAL_MS", "50")
        .env("RUST_LOG", "warn");
    let mut again = spawn_router_cmd(cmd);
    let store = open_sqlite(&db).await;
    let rows = wait_rows(&store, 25).await;
    assert_eq!(rows.len(), 25, "5 written before, 20 replayed");
    for i in 0..20 {
        row_for(&rows, &format!("during-{i}"));
    }
    // Removed just after its last rows commit, so a moment after they are seen.
    eventually(
        Duration::from_secs(10),
        "the spill files removed once replayed",
        || async { !spill.exists() && !replaying.exists() },
    )
    .await;
    assert_eq!(again.terminate(Duration::from_secs(20)), Some(0));
}

#[actix_rt::test]
async fn postgres_gets_the_same_rows_and_aggregates() {
    let Some(pg) = PgScratch::create("accounting_pg") else {
        return;
    };
    let mock = start_mock(json!({"chunks": 5}));
    let yaml = format!(
        "models:\n  - id: pg-chat\n    pricing: {{prompt: \"0.00001\", completion: \"0.00002\"}}\n    route:\n      - kind: vllm\n        base_url: \"{}\"\n",
        mock.url
    );
    let mut router = start_router_ready(
        RouterOpts {
            models_yaml: &yaml,
            routing_yaml: None,
            env: vec![
                ("USE_SQLITE_LOG", "false".into()),
                ("DATABASE_URL", pg.url.clone()),
                ("LOG_FLUSH_INTERVAL_MS", "50".into()),
            ],
        },
        1,
    )
    .await;
    let url = format!("{}/v1/chat/completions", router.url);
    for i in 0..6 {
        let stream = i % 2 == 0;
        let (status, _, _) =
            post_with_id(&url, &chat_body("pg-chat", stream), &format!("pg-{i}")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(router.terminate(Duration::from_secs(20)), Some(0));
    let store = open_postgres(&pg.url).await;
    let counts: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT model_id, COUNT(*) FROM api_logs GROUP BY model_id")
            .fetch_all(&store.pool)
            .await
            .expect("README query on PostgreSQL");
    assert_eq!(counts, vec![(Some("pg-chat".to_string()), 6)]);
    let rows = all_rows(&store).await;
    let r = row_for(&rows, "pg-1");
    assert_eq!((r.prompt_tokens, r.completion_tokens), (Some(2), Some(5)));
    assert!(close(r.cost_usd.unwrap(), 2.0 * 1e-5 + 5.0 * 2e-5));
    assert!(row_for(&rows, "pg-0").stream);
    store.pool.close().await;

    let env = [
        ("USE_SQLITE_LOG", "false".to_string()),
        ("DATABASE_URL", pg.url.clone()),
    ];
    let (code, out) = run_cli(
        &["usage", "--by", "model,key,period", "--json"],
        &env,
        router.dir.path(),
    );
    assert_eq!(code, 0);
    let usage: Value = serde_json::from_str(&out).expect("usage json");
    assert_eq!(usage[0]["requests"], 6, "{usage}");
    assert_eq!(usage[0]["completion_tokens"], 30);
    let (code, out) = run_cli(&["logs", "-n", "3"], &env, router.dir.path());
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.contains("pg-")).count(),
        3,
        "{out}"
    );
}
