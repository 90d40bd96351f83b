//! The shared ledger: `quota_buckets` (one row per allowance) and `quota_leases` (one row per
//! replica holding a slice), in the router's database through the sqlx `Any` pool, so the
//! same queries serve SQLite (one replica) and PostgreSQL (several). One exchange is one
//! transaction. When the database fails, the in-memory ledger answers instead (each replica
//! then limits on its own, as before shared limits) until it is back.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Row;

use super::ledger::{exchange, BucketRow, Grant, LeaseRequest};
use super::slice::SharedView;
use super::Limit;
use crate::store::{DbKind, Store};

/// An exchange's answer and what the ledger holds afterwards.
#[derive(Debug, Clone, Copy)]
pub struct Exchanged {
    pub grant: Grant,
    pub shared: SharedView,
}

/// What one replica reports in an exchange besides its [`LeaseRequest`].
#[derive(Debug, Clone, Copy)]
pub struct Holding {
    /// Its unspent slice after the exchange (the grant included): what its lease row says,
    /// and what comes back if it stops renewing.
    pub unspent: f64,
}

pub struct Ledger {
    store: Option<Store>,
    holder: String,
    ttl_ms: i64,
    memory: HashMap<String, BucketRow>,
}

/// Exchanges retried when another replica changed the row between read and write.
const CONFLICT_RETRIES: usize = 8;

impl Ledger {
    pub fn new(store: Option<Store>, holder: &str, ttl: Duration) -> Ledger {
        Ledger {
            store,
            holder: holder.to_string(),
            ttl_ms: ttl.as_millis() as i64,
            memory: HashMap::new(),
        }
    }

    /// One exchange; `Err` only when the database failed (the caller falls back to
    /// [`Ledger::exchange_in_memory`]).
    pub async fn exchange(
        &mut self,
        scope: &str,
        limit: &Limit,
        req: &LeaseRequest,
        held_after: impl Fn(f64) -> Holding,
        now_ms: i64,
    ) -> Result<Exchanged, sqlx::Error> {
        let Some(store) = &self.store else {
            return Ok(self.exchange_in_memory(scope, limit, req, now_ms));
        };
        for _ in 0..CONFLICT_RETRIES {
            if let Some(done) = exchange_sql(
                store,
                scope,
                limit,
                req,
                &held_after,
                &self.holder,
                self.ttl_ms,
                now_ms,
            )
            .await?
            {
                return Ok(done);
            }
        }
        Err(sqlx::Error::Protocol(
            "quota ledger row kept changing under the exchange".into(),
        ))
    }

    pub fn exchange_in_memory(
        &mut self,
        scope: &str,
        limit: &Limit,
        req: &LeaseRequest,
        now_ms: i64,
    ) -> Exchanged {
        let row = self
            .memory
            .entry(scope.to_string())
            .or_insert_with(|| BucketRow::full(limit, now_ms));
        let grant = exchange(row, limit, 0.0, req, now_ms);
        Exchanged {
            grant,
            shared: SharedView {
                level: grant.level,
                outstanding: 0.0,
            },
        }
    }

    /// Forget rows of allowances that ended (past budget periods) and leases long expired.
    pub async fn sweep(&mut self, now_ms: i64) -> Result<(), sqlx::Error> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        sqlx::query("DELETE FROM quota_buckets WHERE ends_ms IS NOT NULL AND ends_ms < $1")
            .bind(now_ms)
            .execute(&store.pool)
            .await?;
        sqlx::query("DELETE FROM quota_leases WHERE expires_ms < $1 AND amount <= 0")
            .bind(now_ms)
            .execute(&store.pool)
            .await?;
        Ok(())
    }
}

/// One exchange as a transaction; `None` when another replica won a race for the row (retry).
#[allow(clippy::too_many_arguments)] // one transaction's inputs, each used once
async fn exchange_sql(
    store: &Store,
    scope: &str,
    limit: &Limit,
    req: &LeaseRequest,
    held_after: &impl Fn(f64) -> Holding,
    holder: &str,
    ttl_ms: i64,
    now_ms: i64,
) -> Result<Option<Exchanged>, sqlx::Error> {
    let mut tx = store.pool.begin().await?;
    sqlx::query(
        "INSERT INTO quota_buckets (scope, capacity, refill_per_ms, level, updated_ms, version, ends_ms) \
         VALUES ($1, $2, $3, $2, $4, 0, $5) ON CONFLICT (scope) DO NOTHING",
    )
    .bind(scope)
    .bind(limit.capacity)
    .bind(limit.refill_per_sec / 1000.0)
    .bind(now_ms)
    .bind(limit.ends_ms)
    .execute(&mut *tx)
    .await?;
    let lock = match store.kind {
        // Replicas queue on the row instead of retrying; SQLite has one writer anyway.
        DbKind::Postgres => " FOR UPDATE",
        DbKind::Sqlite => "",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT capacity, refill_per_ms, level, updated_ms, version FROM quota_buckets WHERE scope = $1{lock}"
    )))
    .bind(scope)
    .fetch_one(&mut *tx)
    .await?;
    let version: i64 = row.try_get("version")?;
    let mut bucket = BucketRow {
        capacity: row.try_get("capacity")?,
        refill_per_ms: row.try_get("refill_per_ms")?,
        level: row.try_get("level")?,
        updated_ms: row.try_get("updated_ms")?,
    };
    // Leases whose replicas stopped renewing come back (this replica's own expired lease too:
    // it already stopped spending it).
    let expired = sqlx::query(
        "DELETE FROM quota_leases WHERE scope = $1 AND expires_ms < $2 RETURNING amount",
    )
    .bind(scope)
    .bind(now_ms)
    .fetch_all(&mut *tx)
    .await?;
    let mut reclaimed = 0.0;
    for r in expired {
        let amount: f64 = r.try_get("amount")?;
        reclaimed += amount.max(0.0);
    }
    let grant = exchange(&mut bucket, limit, reclaimed, req, now_ms);
    let holding = held_after(grant.granted);
    if holding.unspent > 0.0 {
        sqlx::query(
            "INSERT INTO quota_leases (scope, holder, amount, expires_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, holder) DO UPDATE SET amount = excluded.amount, expires_ms = excluded.expires_ms",
        )
        .bind(scope)
        .bind(holder)
        .bind(holding.unspent)
        .bind(now_ms + ttl_ms)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query("DELETE FROM quota_leases WHERE scope = $1 AND holder = $2")
            .bind(scope)
            .bind(holder)
            .execute(&mut *tx)
            .await?;
    }
    let updated = sqlx::query(
        "UPDATE quota_buckets SET capacity = $1, refill_per_ms = $2, level = $3, updated_ms = $4, \
         version = version + 1, ends_ms = $5 WHERE scope = $6 AND version = $7",
    )
    .bind(bucket.capacity)
    .bind(bucket.refill_per_ms)
    .bind(bucket.level)
    .bind(bucket.updated_ms)
    .bind(limit.ends_ms)
    .bind(scope)
    .bind(version)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    let outstanding: f64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS DOUBLE PRECISION) FROM quota_leases WHERE scope = $1",
    )
    .bind(scope)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Exchanged {
        grant,
        shared: SharedView {
            level: grant.level,
            outstanding,
        },
    }))
}

/// One allowance as the ledger holds it now, for `GET /admin/keys`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LedgerRow {
    pub capacity: f64,
    /// Left to lease now (refilled to the present).
    pub level: f64,
    /// Leased to replicas, unexpired, not reported spent.
    pub outstanding: f64,
    pub holders: i64,
}

impl LedgerRow {
    /// What was used: neither left to lease nor held unspent by a replica.
    pub fn used(&self) -> f64 {
        (self.capacity - self.level - self.outstanding).max(0.0)
    }
}

/// Read the ledger rows of `scopes` (missing ones are left out).
pub async fn read_rows(
    store: &Store,
    scopes: &[String],
    now_ms: i64,
) -> Result<HashMap<String, LedgerRow>, sqlx::Error> {
    let mut out = HashMap::new();
    for scope in scopes {
        let row = sqlx::query(
            "SELECT capacity, refill_per_ms, level, updated_ms FROM quota_buckets WHERE scope = $1",
        )
        .bind(scope)
        .fetch_optional(&store.pool)
        .await?;
        let Some(row) = row else { continue };
        let bucket = BucketRow {
            capacity: row.try_get("capacity")?,
            refill_per_ms: row.try_get("refill_per_ms")?,
            level: row.try_get("level")?,
            updated_ms: row.try_get("updated_ms")?,
        };
        let leases = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS DOUBLE PRECISION) AS outstanding, COUNT(*) AS holders \
             FROM quota_leases WHERE scope = $1 AND expires_ms >= $2",
        )
        .bind(scope)
        .bind(now_ms)
        .fetch_one(&store.pool)
        .await?;
        out.insert(
            scope.clone(),
            LedgerRow {
                capacity: bucket.capacity,
                level: bucket.level_at(now_ms),
                outstanding: leases.try_get("outstanding")?,
                holders: leases.try_get("holders")?,
            },
        );
    }
    Ok(out)
}
