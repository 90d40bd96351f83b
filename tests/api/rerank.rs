//! Rerank end to end: the Jina/Cohere shape on every path that serves it, relayed natively
//! (vLLM / llama.cpp shape) or translated for TEI, with results sorted and cut by the router;
//! bad input, keys, fallback and the api_logs row.

use crate::common;

use common::obs::{open_sqlite, wait_served_rows};
use common::*;
use serde_json::{json, Value};

/// Every path a rerank client may call.
const RERANK_PATHS: [&str; 5] = [
    "/v1/rerank",
    "/rerank",
    "/v2/rerank",
    "/api/v1/rerank",
    "/api/v1/ai/rerank",
];

fn rerank_yaml(routes: &[(&str, &str, f64)]) -> String {
    let mut y =
        "models:\n  - id: rr\n    type: rerank\n    aliases: [reranker]\n    route:\n".to_string();
    for (kind, url, weight) in routes {
        y.push_str(&format!(
            "      - kind: {kind}\n        weight: {weight}\n        base_url: \"{url}\"\n        provider_model_id: upstream-rr\n"
        ));
    }
    y
}

/// The mock scores a document by the share of the query's words it contains.
fn fruit_query() -> Value {
    json!({
        "model": "rr",
        "query": "red apple",
        "documents": ["a green apple", "red apple pie", {"text": "bananas"}],
        "top_n": 2,
        "return_documents": true,
    })
}

fn assert_fruit_results(v: &Value) {
    assert_eq!(v["model"], "rr", "{v}");
    assert_eq!(
        v["results"],
        json!([
            {"index": 1, "relevance_score": 1.0, "document": {"text": "red apple pie"}},
            {"index": 0, "relevance_score": 0.5, "document": {"text": "a green apple"}},
        ]),
        "{v}"
    );
    assert!(
        v["usage"]["total_tokens"].as_u64().is_some_and(|t| t > 0),
        "{v}"
    );
}

#[actix_rt::test]
async fn native_and_tei_backends_answer_every_rerank_path_in_one_shape() {
    let mock = start_mock(json!({}));
    for (kind, upstream_path, documents_key) in [
        ("vllm", "/v1/rerank", "documents"),
        ("llamacpp", "/v1/rerank", "documents"),
        ("tei", "/rerank", "texts"),
    ] {
        let yaml = rerank_yaml(&[(kind, &mock.url, 1.0)]);
        let env = vec![("METRICS_PUBLIC", "true".into())];
        let router = start_router_ready(router_opts(&yaml, env), 1).await;
        for path in RERANK_PATHS {
            let (status, _, v) = post_json(&format!("{}{path}", router.url), &fruit_query()).await;
            assert_eq!(status, 200, "{kind} {path}: {v}");
            assert_fruit_results(&v);
        }
        // Named by its alias, answered with its public id.
        let mut by_alias = fruit_query();
        by_alias["model"] = json!("reranker");
        let (status, _, v) = post_json(&format!("{}/rerank", router.url), &by_alias).await;
        assert_eq!(status, 200, "{v}");
        assert_fruit_results(&v);
        let stats = mock_stats(&mock).await;
        let sent = &stats["last_request"]["body"];
        assert_eq!(
            stats["last_request"]["path"], upstream_path,
            "{kind}: {stats}"
        );
        // `{text}` objects reach every backend as plain strings.
        assert_eq!(
            sent[documents_key],
            json!(["a green apple", "red apple pie", "bananas"]),
            "{kind}: {sent}"
        );
        // Without `return_documents`, no documents; without `top_n`, every result.
        let mut bare = fruit_query();
        bare.as_object_mut().map(|o| {
            o.remove("top_n");
            o.remove("return_documents")
        });
        let (status, _, v) = post_json(&format!("{}/v1/rerank", router.url), &bare).await;
        assert_eq!(status, 200, "{v}");
        let indexes: Vec<u64> = v["results"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["index"].as_u64()).collect())
            .unwrap_or_default();
        assert_eq!(indexes, [1, 0, 2], "{kind}: {v}");
        assert!(v["results"][0].get("document").is_none(), "{v}");
        // Metrics count the operation by its own name, whichever path the client used.
        let metrics = metrics_text(&router.url).await;
        assert!(
            counts_request(&metrics, "rr", "rerank", "success"),
            "{kind}: no op=\"rerank\" line in /metrics"
        );
    }
}

#[actix_rt::test]
async fn bad_rerank_requests_are_400s_and_wrong_models_say_where_to_go() {
    let mock = start_mock(json!({}));
    let yaml = format!(
        "{}  - id: chat\n    route: [{{kind: vllm, base_url: \"{1}\"}}]\n  - id: rr-on-tgi\n    type: rerank\n    route: [{{kind: tgi, base_url: \"{1}\"}}]\n",
        rerank_yaml(&[("vllm", &mock.url, 1.0)]),
        mock.url
    );
    let router = start_router_settled(router_opts(&yaml, vec![])).await;
    let url = format!("{}/v1/rerank", router.url);
    let cases = [
        (json!({"model": "rr", "documents": ["a"]}), 400),
        (json!({"model": "rr", "query": "q"}), 400),
        (json!({"model": "rr", "query": "q", "documents": []}), 400),
        (json!({"model": "rr", "query": "q", "documents": [3]}), 400),
        (
            json!({"model": "rr", "query": "q", "documents": ["a"], "top_n": 0}),
            400,
        ),
        (
            json!({"model": "rr", "query": "q", "documents": ["a"], "return_documents": "y"}),
            400,
        ),
        (json!({"query": "q", "documents": ["a"]}), 400),
        (
            json!({"model": "nope", "query": "q", "documents": ["a"]}),
            404,
        ),
        (
            json!({"model": "chat", "query": "q", "documents": ["a"]}),
            400,
        ),
        (
            json!({"model": "rr-on-tgi", "query": "q", "documents": ["a"]}),
            501,
        ),
    ];
    for (body, expected) in cases {
        let (status, _, v) = post_json(&url, &body).await;
        assert_openai_error(status, expected, &v);
    }
    // A rerank model on the chat endpoint is pointed at rerank.
    let (status, _, v) = post_json(
        &format!("{}/v1/chat/completions", router.url),
        &chat_body("rr", false),
    )
    .await;
    assert_openai_error(status, 400, &v);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("/v1/rerank"),
        "{v}"
    );
}

#[actix_rt::test]
async fn rerank_is_keyed_falls_back_and_is_logged() {
    let good = start_mock(json!({}));
    let failing = start_mock(json!({"fail_rate": 1.0, "fail_status": 503}));
    let yaml = format!(
        "{}  - id: other\n    type: rerank\n    route: [{{kind: vllm, base_url: \"{}\"}}]\n",
        rerank_yaml(&[("vllm", &failing.url, 1000.0), ("vllm", &good.url, 1.0)]),
        good.url
    );
    let keys = "keys:\n  - name: search\n    key: search-key-123\n    models: [rr]\n";
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("log.db");
    let router = start_router_ready(
        router_opts(
            &yaml,
            vec![
                ("KEYS_FILE", write_keys_file(dir.path(), keys)),
                ("SQLITE_DB_PATH", db.display().to_string()),
            ],
        ),
        2,
    )
    .await;
    for path in RERANK_PATHS {
        let url = format!("{}{path}", router.url);
        let (status, _, v) = send_with_key("POST", &url, None, Some(&fruit_query())).await;
        assert_openai_error(status, 401, &v);
        let (status, _, v) =
            send_with_key("POST", &url, Some("wrong-key-123"), Some(&fruit_query())).await;
        assert_openai_error(status, 401, &v);
        let (status, _, v) =
            send_with_key("POST", &url, Some("search-key-123"), Some(&fruit_query())).await;
        assert_eq!(status, 200, "{path}: {v}");
        assert_fruit_results(&v);
    }
    let mut not_listed = fruit_query();
    not_listed["model"] = json!("other");
    let (status, _, v) = send_with_key(
        "POST",
        &format!("{}/rerank", router.url),
        Some("search-key-123"),
        Some(&not_listed),
    )
    .await;
    assert_openai_error(status, 403, &v);
    let tried = mock_stats(&failing).await["requests_by_path"]["/v1/rerank"]
        .as_u64()
        .unwrap_or(0);
    assert!(tried >= 1, "the failing route was never tried");

    let store = open_sqlite(&db).await;
    let rows = wait_served_rows(&store, RERANK_PATHS.len()).await;
    let served: Vec<_> = rows.iter().filter(|r| r.status_code == 200).collect();
    assert_eq!(served.len(), RERANK_PATHS.len(), "{rows:#?}");
    assert!(
        served.iter().all(|r| r.op == "rerank"
            && r.model_id.as_deref() == Some("rr")
            && r.api_key_id.as_deref() == Some("search")
            && r.prompt_tokens.is_some_and(|t| t > 0)),
        "{served:#?}"
    );
}
