//! The dependencies `/health` reports (seed 001: "liveness and dependency checks"): the request
//! log's database and the video job store (a table in the same database). Each is one small
//! query with a time limit; the answer is kept for [`FRESH_FOR`] and one check runs at a time,
//! so however often `/health` is called the database sees at most one probe per interval.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::AssertSqlSafe;

use crate::store::{DbKind, Store};

/// How long one check's answer is served before the next is made.
const FRESH_FOR: Duration = Duration::from_secs(2);
/// Longest a probe query may take before the dependency counts as down.
const QUERY_LIMIT: Duration = Duration::from_secs(1);

/// The last dependency report, shared by every worker.
#[derive(Default)]
pub struct DependencyCheck {
    last: tokio::sync::Mutex<Option<(Instant, Value)>>,
}

impl DependencyCheck {
    /// `{"request_log": {...}, "job_store": {...}}`, each with `status` `ok` or `error`
    /// (and `disabled` for a request log turned off), and whether all are usable.
    pub async fn report(&self, store: &Store, request_log_enabled: bool) -> (bool, Value) {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < FRESH_FOR {
                return (all_ok(report), report.clone());
            }
        }
        let database = match store.kind {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
        };
        let request_log = if request_log_enabled {
            probe(store, "SELECT 1 FROM api_logs LIMIT 1", database).await
        } else {
            json!({"status": "disabled", "database": database})
        };
        let job_store = probe(store, "SELECT 1 FROM video_jobs LIMIT 1", database).await;
        let report = json!({"request_log": request_log, "job_store": job_store});
        *last = Some((Instant::now(), report.clone()));
        (all_ok(&report), report)
    }
}

fn all_ok(report: &Value) -> bool {
    report
        .as_object()
        .is_some_and(|deps| deps.values().all(|d| d["status"] != "error"))
}

async fn probe(store: &Store, sql: &'static str, database: &str) -> Value {
    let started = Instant::now();
    let query = sqlx::query(AssertSqlSafe(sql)).fetch_optional(&store.pool);
    let outcome = tokio::time::timeout(QUERY_LIMIT, query).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    match outcome {
        Ok(Ok(_)) => json!({"status": "ok", "database": database, "latency_ms": latency_ms}),
        Ok(Err(e)) => {
            // The driver's text may name hosts or paths: the log has it, the answer does not.
            tracing::warn!(error = %e, "health: {sql} failed");
            json!({"status": "error", "database": database, "error": "query failed; see the router's log"})
        }
        Err(_) => json!({"status": "error", "database": database, "error": "timed out"}),
    }
}
