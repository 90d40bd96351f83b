//! `GET /admin/keys`: every key by its id (never the key or its digest), its limits, and what
//! the shared ledger says of them across all replicas: spend in the current budget period
//! and what is left, requests and tokens of the last minute.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::api::json_response;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::period::now_ms;
use crate::quota::keys::KeyScopes;
use crate::quota::store::{read_rows, LedgerRow};
use crate::quota::{Limit, Quotas};

pub async fn keys(
    auth: web::Data<Auth>,
    quotas: web::Data<Quotas>,
) -> Result<HttpResponse, ApiError> {
    let now = now_ms();
    let store = auth.store();
    let callers: Vec<_> = store.callers().cloned().collect();
    let scopes: Vec<KeyScopes> = callers.iter().map(|c| KeyScopes::of(c, now)).collect();
    let names: Vec<String> = scopes
        .iter()
        .flat_map(|s| {
            let rates = [&s.rpm, &s.tpm]
                .into_iter()
                .flatten()
                .map(|(n, _)| n.to_string());
            rates.chain(s.budget.iter().map(|(b, _)| b.name.to_string()))
        })
        .collect();
    let rows = match quotas.store() {
        Some(db) => read_rows(db, &names, now).await.map_err(|e| {
            tracing::warn!(error = %e, "reading the quota ledger failed");
            ApiError::internal("the quota ledger could not be read")
        })?,
        None => Default::default(),
    };
    let keys: Vec<Value> = callers
        .iter()
        .zip(&scopes)
        .map(|(caller, s)| {
            let rate = |scope: &Option<(Arc<str>, Limit)>| {
                scope
                    .as_ref()
                    .map(|(name, limit)| rate_view(limit, rows.get(&**name)))
            };
            let budget = s.budget.as_ref().map(|(scope, limit)| {
                let bounds = &scope.bounds;
                let row = rows.get(&*scope.name);
                let spent = row.map_or(0.0, LedgerRow::used);
                let held = row.map_or(0.0, |r| r.outstanding);
                json!({
                    "budget_usd": limit.capacity,
                    "period": caller.budget.map(|b| b.period.as_str()),
                    "period_start_ms": bounds.start_ms,
                    "period_end_ms": bounds.end_ms,
                    "spend_usd": spent,
                    "held_by_replicas_usd": held,
                    "remaining_usd": (limit.capacity - spent).max(0.0),
                })
            });
            json!({
                "id": caller.key_id,
                "admin": caller.admin,
                "limits": {"rpm": caller.rpm, "tpm": caller.tpm},
                "rpm": rate(&s.rpm),
                "tpm": rate(&s.tpm),
                "budget": budget,
            })
        })
        .collect();
    Ok(json_response(&json!({ "keys": keys })))
}

/// A requests- or tokens-per-minute allowance across replicas: what the last minute used
/// (the bucket not yet refilled, less slices replicas hold unspent).
fn rate_view(limit: &Limit, row: Option<&LedgerRow>) -> Value {
    let row = row.copied().unwrap_or(LedgerRow {
        capacity: limit.capacity,
        level: limit.capacity,
        outstanding: 0.0,
        holders: 0,
    });
    json!({
        "limit": limit.capacity,
        "used": row.used(),
        "available": row.level.max(0.0),
        "held_by_replicas": row.outstanding,
        "replicas_holding": row.holders,
    })
}
