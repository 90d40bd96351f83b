//! Read-only operator views: `/metrics`, `/admin/usage`, `/admin/backends`, `/admin/status`
//! (the status page's data) and `/admin/video-jobs`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::{AssertSqlSafe, Column, Row};

use super::Observability;
use crate::accounting::db::{self, Filter, GroupBy, Period};
use crate::api::json_response;
use crate::api::state::AppState;
use crate::discovery::ProbeRow;
use crate::error::ApiError;
use crate::mesh::{GetTable, RouteTable};
use crate::reload::{ConfigActor, GetProbes};
use actix::Addr;

async fn current_table(state: &AppState) -> Option<std::sync::Arc<RouteTable>> {
    state.mesh.router.send(GetTable).await.ok()
}

pub async fn metrics(
    state: web::Data<AppState>,
    obs: web::Data<Observability>,
    jobs: Option<web::Data<crate::jobs::Jobs>>,
) -> HttpResponse {
    let table = current_table(&state).await;
    if let Some(jobs) = jobs {
        match jobs.store.count_by_status().await {
            Ok(counts) => obs.metrics.set_video_jobs(&counts),
            // The gauge keeps its last counts; the rest of the exposition still helps.
            Err(e) => tracing::warn!(error = %e, "video job counts not read for /metrics"),
        }
    }
    let stats = obs.log.as_ref().map(|q| q.stats().clone());
    let text = obs
        .metrics
        .render_with(table.as_deref(), stats.as_deref(), Some(&state.quotas));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    /// model, key, period — any combination (default `model`).
    by: Option<String>,
    /// hour | day | month (default day).
    period: Option<String>,
    since: Option<String>,
    until: Option<String>,
    model: Option<String>,
    key: Option<String>,
}

pub async fn usage(
    state: web::Data<AppState>,
    query: web::Query<UsageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let period_text = q.period.as_deref().unwrap_or("day");
    let period = Period::parse(period_text).ok_or_else(|| {
        ApiError::bad_request("`period` must be hour, day or month.", Some("period"))
    })?;
    let by = q.by.as_deref().unwrap_or("model");
    let group = GroupBy::parse(by, period).map_err(|msg| ApiError::bad_request(msg, Some("by")))?;
    let now = db::now_ms();
    let time = |v: &Option<String>, name: &str| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                db::parse_time_ms(s, now).ok_or_else(|| {
                    ApiError::bad_request(
                        format!("`{name}` must be a duration ago (24h, 7d) or unix seconds."),
                        Some(name),
                    )
                })
            })
            .transpose()
    };
    let filter = Filter {
        since_ms: time(&q.since, "since")?,
        until_ms: time(&q.until, "until")?,
        model: q.model.clone(),
        api_key_id: q.key.clone(),
        ..Filter::default()
    };
    let rows = db::usage(&state.store, &filter, group).await.map_err(|e| {
        tracing::warn!(error = %e, "usage query failed");
        ApiError::internal("The usage query failed; see the router's log.")
    })?;
    let mut dims = Vec::new();
    if group.model {
        dims.push("model");
    }
    if group.key {
        dims.push("key");
    }
    if group.replica {
        dims.push("replica");
    }
    if group.period.is_some() {
        dims.push("period");
    }
    Ok(json_response(&json!({
        "object": "usage",
        "group_by": dims,
        "period": group.period.map(Period::as_str),
        "since_ms": filter.since_ms,
        "until_ms": filter.until_ms,
        "data": rows,
    })))
}

/// A URL safe to show: no user info, no query string (some providers take keys there).
fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(unparseable url)".into(),
    }
}

/// The probe rows of discovering and provider endpoints (empty when the config actor is gone).
async fn probe_rows(control: &Addr<ConfigActor>) -> Vec<ProbeRow> {
    control.send(GetProbes).await.unwrap_or_default()
}

/// Every endpoint's live state, with the routes that use it and, for a discovering or provider
/// endpoint, its probe row (`probe`: reachable, auth ok, models discovered, private network
/// approved).
pub fn backends_view(table: &RouteTable, probes: &[ProbeRow]) -> Vec<Value> {
    let mut used_by: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for m in &table.models {
        for (j, handle) in m.endpoints.iter().enumerate() {
            if let (Some(h), Some(route)) = (handle, m.def.routes.get(j)) {
                used_by
                    .entry(h.endpoint.name.as_str())
                    .or_default()
                    .push(json!({
                        "model": m.def.id,
                        "route": route.name,
                        "weight": route.weight,
                        "priority": route.priority,
                        "policy": m.policy,
                    }));
            }
        }
    }
    table
        .endpoints
        .iter()
        .map(|(_, handle)| {
            let ep = &handle.endpoint;
            let snap = ep.snapshot();
            let mut v = serde_json::to_value(&snap).unwrap_or(Value::Null);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("url".into(), Value::String(redact_url(&snap.url)));
                obj.insert("health_path".into(), json!(ep.health_path));
                obj.insert("metrics_path".into(), json!(ep.metrics_path));
                obj.insert("has_credentials".into(), Value::Bool(ep.auth.is_some()));
                obj.insert("outbound".into(), outbound_view(&ep.outbound));
                obj.insert(
                    "routes".into(),
                    Value::Array(used_by.remove(ep.name.as_str()).unwrap_or_default()),
                );
                if let Some(row) = probes.iter().find(|r| r.endpoint == ep.name) {
                    obj.insert("probe".into(), json!(row));
                }
            }
            v
        })
        .collect()
}

/// How an endpoint is reached: its extra CA, client certificate (paths, never contents),
/// whether verification is off, and its proxy with any credentials masked.
fn outbound_view(o: &crate::config::Outbound) -> Value {
    use crate::config::ProxyChoice;
    json!({
        "ca_file": o.ca_file.as_ref().map(|p| p.display().to_string()),
        "client_cert_file": o.client_identity.as_ref().map(|c| c.cert.display().to_string()),
        "tls_insecure_skip_verify": o.insecure_skip_verify,
        "proxy": match &o.proxy {
            ProxyChoice::Environment => "environment".to_string(),
            ProxyChoice::Direct => "none".to_string(),
            ProxyChoice::Via(url) => url.to_string(),
        },
    })
}

pub async fn backends(
    state: web::Data<AppState>,
    control: web::Data<Addr<ConfigActor>>,
) -> Result<HttpResponse, ApiError> {
    let table = current_table(&state)
        .await
        .ok_or_else(|| ApiError::internal("the router is not running"))?;
    let probes = probe_rows(&control).await;
    Ok(json_response(&json!({
        "object": "list",
        "data": backends_view(&table, &probes),
    })))
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    minutes: Option<u64>,
}

/// Everything the status page draws, in one call.
pub async fn status(
    state: web::Data<AppState>,
    obs: web::Data<Observability>,
    control: web::Data<Addr<ConfigActor>>,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let table = current_table(&state)
        .await
        .ok_or_else(|| ApiError::internal("the router is not running"))?;
    let probes = probe_rows(&control).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let minutes = query.minutes.unwrap_or(10);
    let points = obs.metrics.timeline.points(now, minutes);
    let log = obs.log.as_ref().map(|q| {
        let s = q.stats();
        use std::sync::atomic::Ordering::Relaxed;
        json!({
            "rows_written": s.rows_written.load(Relaxed),
            "rows_replayed": s.rows_replayed.load(Relaxed),
            "write_errors": s.write_errors.load(Relaxed),
            "queue_overflows": s.queue_overflows.load(Relaxed),
            "buffered": s.buffered.load(Relaxed),
            "spill_bytes": s.spill.bytes.load(Relaxed),
            "spill_dropped_rows": s.spill.dropped_rows.load(Relaxed),
            "last_flush_ms": s.last_flush_micros.load(Relaxed) as f64 / 1000.0,
        })
    });
    Ok(json_response(&json!({
        "object": "status",
        "version": env!("CARGO_PKG_VERSION"),
        "now": now,
        "uptime_seconds": state.started.elapsed().as_secs(),
        "in_flight": crate::record::live_requests(),
        "models": table.models.len(),
        "endpoints": backends_view(&table, &probes),
        "timeline": {
            "slot_seconds": crate::metrics::timeline::SLOT_SECONDS,
            "points": points,
        },
        "request_log": log,
        "video_jobs": recent_video_jobs(&state, 20).await,
    })))
}

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    limit: Option<u32>,
}

pub async fn video_jobs(state: web::Data<AppState>, query: web::Query<JobsQuery>) -> HttpResponse {
    let limit = query.limit.unwrap_or(20).clamp(1, 200);
    json_response(&json!({
        "object": "list",
        "data": recent_video_jobs(&state, limit).await,
    }))
}

/// The newest video jobs from the `video_jobs` table, whatever its columns are; an empty list
/// while the table does not exist (video jobs land with their own migration). Columns that
/// might hold secrets or large payloads are left out.
async fn recent_video_jobs(state: &AppState, limit: u32) -> Vec<Value> {
    const HIDDEN: &[&str] = &[
        "secret", "key", "token", "webhook", "callback", "payload", "body", "prompt", "input",
    ];
    let queries = [
        format!("SELECT * FROM video_jobs ORDER BY created_at DESC LIMIT {limit}"),
        format!("SELECT * FROM video_jobs LIMIT {limit}"),
    ];
    for sql in queries {
        let Ok(rows) = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&state.store.pool)
            .await
        else {
            continue;
        };
        return rows
            .iter()
            .map(|row| {
                let mut obj = Map::new();
                for (i, col) in row.columns().iter().enumerate() {
                    let name = col.name();
                    let lower = name.to_ascii_lowercase();
                    if HIDDEN.iter().any(|h| lower.contains(h)) {
                        continue;
                    }
                    let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                        json!(v)
                    } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                        json!(v)
                    } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                        json!(v.map(|s| s.chars().take(300).collect::<String>()))
                    } else if let Ok(v) = row.try_get::<Option<bool>, _>(i) {
                        json!(v)
                    } else {
                        Value::Null
                    };
                    obj.insert(name.to_string(), value);
                }
                Value::Object(obj)
            })
            .collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            super::redact_url("https://user:pw@api.example.com/v1?key=abc"),
            "https://api.example.com/v1"
        );
        assert_eq!(
            super::redact_url("http://127.0.0.1:8000/v1"),
            "http://127.0.0.1:8000/v1"
        );
    }
}
