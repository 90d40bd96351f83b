//! Reading and writing `api_logs` with portable SQL (see `store`'s rules): the logger's batch
//! insert, and the queries behind `switchyard logs`, `switchyard usage` and `GET /admin/usage`.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::row::{LogRow, COLUMNS};
use crate::store::{DbKind, Store};

/// Most rows in one INSERT statement: 28 columns × 256 rows stays under both databases'
/// bind-parameter limits (SQLite 32,766, PostgreSQL 65,535).
const MAX_ROWS_PER_STATEMENT: usize = 256;

/// The INSERT text for `rows` rows. SQLite gets anonymous `?` placeholders: sqlx-sqlite asks
/// SQLite for every parameter's name (`sqlite3_bind_parameter_name`, a linear scan of the
/// named ones), so numbered `$N` placeholders made a many-row statement cost quadratic time
/// (39% of the router's CPU at 10k req/s with 100-row statements); anonymous ones have no name
/// to scan. PostgreSQL needs `$N`.
fn insert_sql(rows: usize, kind: DbKind) -> String {
    let cols = COLUMNS.len();
    let mut sql = format!("INSERT INTO api_logs ({}) VALUES ", COLUMNS.join(", "));
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            match kind {
                DbKind::Sqlite => sql.push('?'),
                DbKind::Postgres => sql.push_str(&format!("${}", r * cols + c + 1)),
            }
        }
        sql.push(')');
    }
    // Replaying a spill file that was partly written before is harmless.
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    sql
}

/// The INSERT text for `rows` rows, built once (a statement's text is also the key of sqlx's
/// prepared-statement cache, so it must not be rebuilt per batch). Row counts are powers of
/// two (see [`statement_sizes`]), so at most nine texts per database kind ever exist; they are
/// leaked on purpose.
pub(super) fn cached_insert_sql(rows: usize, kind: DbKind) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<(usize, bool), &'static str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry((rows, kind == DbKind::Sqlite))
        .or_insert_with(|| Box::leak(insert_sql(rows, kind).into_boxed_str()))
}

/// Split `rows` into statement sizes that are powers of two up to [`MAX_ROWS_PER_STATEMENT`]
/// (300 → 256, 32, 8, 4): few round trips, and few distinct prepared statements.
pub(super) fn statement_sizes(mut rows: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while rows > 0 {
        let size = if rows >= MAX_ROWS_PER_STATEMENT {
            MAX_ROWS_PER_STATEMENT
        } else {
            1 << rows.ilog2()
        };
        sizes.push(size);
        rows -= size;
    }
    sizes
}

/// Insert rows in one transaction: all of them or none, through the `Any` pool. The request
/// log writes PostgreSQL's rows this way, through its own pool ([`super::pg_rows`]); SQLite's
/// go through its own writer ([`super::sqlite_rows`]), which is cheaper per row.
pub async fn insert_rows(store: &Store, rows: &[LogRow]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut tx = store.pool.begin().await?;
    let mut rest = rows;
    for size in statement_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        // PostgreSQL: an unnamed statement, typed by this batch's own values. A named one is
        // typed once, by the batch that prepared it, and sqlx's `Any` driver gives a NULL `f64`
        // the type `float4` (its `Real`/`Double` nulls are swapped); a later batch whose value
        // is there then sends 8 bytes for a 4-byte parameter and the whole batch fails
        // ("incorrect binary data format in bind parameter"). SQLite keeps its prepared
        // statements: it has no parameter types to get wrong.
        let mut q = sqlx::query(AssertSqlSafe(cached_insert_sql(size, store.kind)))
            .persistent(store.kind == DbKind::Sqlite);
        for row in chunk {
            q = row.bind_all(q);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Filters shared by the log tail and the usage aggregates.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub model: Option<String>,
    pub api_key_id: Option<String>,
    pub outcome: Option<String>,
    pub status: Option<i64>,
    pub op: Option<String>,
    pub request_id: Option<String>,
}

/// A WHERE clause with numbered placeholders and the values to bind, in order.
enum Bind {
    Int(i64),
    Text(String),
}

fn where_clause(f: &Filter, first_param: usize) -> (String, Vec<Bind>) {
    let mut parts = Vec::new();
    let mut binds = Vec::new();
    let mut add = |cond: &str, b: Bind| {
        binds.push(b);
        parts.push(cond.replace('?', &format!("${}", first_param + binds.len() - 1)));
    };
    if let Some(v) = f.since_ms {
        add("ts_ms >= ?", Bind::Int(v));
    }
    if let Some(v) = f.until_ms {
        add("ts_ms < ?", Bind::Int(v));
    }
    if let Some(v) = &f.model {
        add("model_id = ?", Bind::Text(v.clone()));
    }
    if let Some(v) = &f.api_key_id {
        add("api_key_id = ?", Bind::Text(v.clone()));
    }
    if let Some(v) = &f.outcome {
        add("outcome = ?", Bind::Text(v.clone()));
    }
    if let Some(v) = f.status {
        add("status_code = ?", Bind::Int(v));
    }
    if let Some(v) = &f.op {
        add("op = ?", Bind::Text(v.clone()));
    }
    if let Some(v) = &f.request_id {
        add("request_id = ?", Bind::Text(v.clone()));
    }
    if parts.is_empty() {
        (String::new(), binds)
    } else {
        (format!(" WHERE {}", parts.join(" AND ")), binds)
    }
}

fn bind_filter<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for b in binds {
        q = match b {
            Bind::Int(v) => q.bind(v),
            Bind::Text(v) => q.bind(v),
        };
    }
    q
}

fn get_opt_i64(row: &AnyRow, col: &str) -> Option<i64> {
    row.try_get::<Option<i64>, _>(col).ok().flatten()
}

fn get_opt_f64(row: &AnyRow, col: &str) -> Option<f64> {
    match row.try_get::<Option<f64>, _>(col) {
        Ok(v) => v,
        // SQLite hands back whole REALs as integers through the Any driver.
        Err(_) => get_opt_i64(row, col).map(|v| v as f64),
    }
}

fn get_opt_text(row: &AnyRow, col: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(col).ok().flatten()
}

fn to_log_row(row: &AnyRow) -> LogRow {
    LogRow {
        id: get_opt_text(row, "id").unwrap_or_default(),
        request_id: get_opt_text(row, "request_id").unwrap_or_default(),
        ts_ms: get_opt_i64(row, "ts_ms").unwrap_or(0),
        model_id: get_opt_text(row, "model_id"),
        model_type: get_opt_text(row, "model_type").map(Into::into),
        op: get_opt_text(row, "op").unwrap_or_default().into(),
        route: get_opt_text(row, "route"),
        endpoint: get_opt_text(row, "endpoint"),
        api_key_id: get_opt_text(row, "api_key_id"),
        status_code: get_opt_i64(row, "status_code").unwrap_or(0),
        outcome: get_opt_text(row, "outcome").unwrap_or_default().into(),
        stream: get_opt_i64(row, "stream").unwrap_or(0) != 0,
        latency_ms: get_opt_f64(row, "latency_ms").unwrap_or(0.0),
        ttfb_ms: get_opt_f64(row, "ttfb_ms"),
        upstream_ms: get_opt_f64(row, "upstream_ms"),
        prompt_tokens: get_opt_i64(row, "prompt_tokens"),
        completion_tokens: get_opt_i64(row, "completion_tokens"),
        cached_tokens: get_opt_i64(row, "cached_tokens"),
        total_tokens: get_opt_i64(row, "total_tokens"),
        usage_estimated: get_opt_i64(row, "usage_estimated").unwrap_or(0) != 0,
        audio_seconds: get_opt_f64(row, "audio_seconds"),
        images: get_opt_i64(row, "images"),
        video_seconds: get_opt_f64(row, "video_seconds"),
        cost_usd: get_opt_f64(row, "cost_usd"),
        attempts: get_opt_i64(row, "attempts").unwrap_or(0),
        error_code: get_opt_text(row, "error_code"),
        error: get_opt_text(row, "error"),
        replica: get_opt_text(row, "replica"),
    }
}

/// The newest `limit` rows matching `filter`, oldest first (as a tail prints them).
pub async fn recent_rows(
    store: &Store,
    filter: &Filter,
    limit: u32,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let (clause, binds) = where_clause(filter, 1);
    let sql = format!(
        "SELECT {} FROM api_logs{clause} ORDER BY ts_ms DESC, id DESC LIMIT {}",
        COLUMNS.join(", "),
        limit.max(1)
    );
    let rows = bind_filter(sqlx::query(AssertSqlSafe(sql)), binds)
        .fetch_all(&store.pool)
        .await?;
    let mut out: Vec<LogRow> = rows.iter().map(to_log_row).collect();
    out.reverse();
    Ok(out)
}

/// How usage is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    /// 30-day buckets from the epoch: portable integer arithmetic, no calendar functions.
    Month30,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hour" | "hourly" | "h" => Some(Period::Hour),
            "day" | "daily" | "d" => Some(Period::Day),
            "month" | "monthly" | "30d" => Some(Period::Month30),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
            Period::Month30 => 30 * 86_400_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month30 => "month",
        }
    }
}

/// Which dimensions to group by (any combination; none = one total row).
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupBy {
    pub model: bool,
    pub key: bool,
    /// The router that served the requests (scale-out).
    pub replica: bool,
    pub period: Option<Period>,
}

impl GroupBy {
    /// `model,key,replica,period` in any order; `period` uses `default_period`.
    pub fn parse(s: &str, default_period: Period) -> Result<GroupBy, String> {
        let mut g = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "model" => g.model = true,
                "key" | "api_key" | "api_key_id" => g.key = true,
                "replica" | "instance" => g.replica = true,
                "period" | "time" => g.period = Some(default_period),
                "none" | "total" => {}
                other => {
                    return Err(format!(
                        "cannot group by `{other}` (use model, key, replica, period)"
                    ))
                }
            }
        }
        Ok(g)
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsageRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Start of the period, unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start_ms: Option<i64>,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub estimated_requests: i64,
    pub audio_seconds: f64,
    pub images: i64,
    pub video_seconds: f64,
    pub cost_usd: f64,
    pub avg_latency_ms: f64,
}

/// Aggregates over `api_logs`, newest period first, then by model and key.
pub async fn usage(
    store: &Store,
    filter: &Filter,
    group: GroupBy,
) -> Result<Vec<UsageRow>, sqlx::Error> {
    let mut keys: Vec<String> = Vec::new();
    if let Some(p) = group.period {
        keys.push(format!("(ts_ms / {0}) * {0}", p.millis()));
    }
    if group.model {
        keys.push("model_id".into());
    }
    if group.key {
        keys.push("api_key_id".into());
    }
    if group.replica {
        keys.push("replica".into());
    }
    let mut select: Vec<String> = Vec::new();
    if group.period.is_some() {
        select.push(format!("{} AS period_start", keys[0]));
    }
    if group.model {
        select.push("model_id".into());
    }
    if group.key {
        select.push("api_key_id".into());
    }
    if group.replica {
        select.push("replica".into());
    }
    // COALESCE keeps every aggregate non-null; CAST pins the types both databases return.
    select.extend(
        [
            "COUNT(*) AS requests",
            "CAST(COALESCE(SUM(CASE WHEN outcome = 'success' THEN 0 ELSE 1 END), 0) AS BIGINT) AS errors",
            "CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens",
            "CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens",
            "CAST(COALESCE(SUM(total_tokens), 0) AS BIGINT) AS total_tokens",
            "CAST(COALESCE(SUM(usage_estimated), 0) AS BIGINT) AS estimated_requests",
            "CAST(COALESCE(SUM(audio_seconds), 0) AS DOUBLE PRECISION) AS audio_seconds",
            "CAST(COALESCE(SUM(images), 0) AS BIGINT) AS images",
            "CAST(COALESCE(SUM(video_seconds), 0) AS DOUBLE PRECISION) AS video_seconds",
            "CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd",
            "CAST(COALESCE(AVG(latency_ms), 0) AS DOUBLE PRECISION) AS avg_latency_ms",
        ]
        .map(String::from),
    );
    let (clause, binds) = where_clause(filter, 1);
    let mut sql = format!("SELECT {} FROM api_logs{clause}", select.join(", "));
    if !keys.is_empty() {
        sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        let mut order: Vec<String> = Vec::new();
        if group.period.is_some() {
            order.push("period_start DESC".into());
        }
        if group.model {
            order.push("model_id".into());
        }
        if group.key {
            order.push("api_key_id".into());
        }
        if group.replica {
            order.push("replica".into());
        }
        sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    let rows = bind_filter(sqlx::query(AssertSqlSafe(sql)), binds)
        .fetch_all(&store.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| UsageRow {
            model_id: if group.model {
                Some(get_opt_text(r, "model_id").unwrap_or_else(|| "-".into()))
            } else {
                None
            },
            api_key_id: if group.key {
                Some(get_opt_text(r, "api_key_id").unwrap_or_else(|| "-".into()))
            } else {
                None
            },
            replica: group
                .replica
                .then(|| get_opt_text(r, "replica").unwrap_or_else(|| "-".into())),
            period_start_ms: group
                .period
                .map(|_| get_opt_i64(r, "period_start").unwrap_or(0)),
            requests: get_opt_i64(r, "requests").unwrap_or(0),
            errors: get_opt_i64(r, "errors").unwrap_or(0),
            prompt_tokens: get_opt_i64(r, "prompt_tokens").unwrap_or(0),
            completion_tokens: get_opt_i64(r, "completion_tokens").unwrap_or(0),
            total_tokens: get_opt_i64(r, "total_tokens").unwrap_or(0),
            estimated_requests: get_opt_i64(r, "estimated_requests").unwrap_or(0),
            audio_seconds: get_opt_f64(r, "audio_seconds").unwrap_or(0.0),
            images: get_opt_i64(r, "images").unwrap_or(0),
            video_seconds: get_opt_f64(r, "video_seconds").unwrap_or(0.0),
            cost_usd: get_opt_f64(r, "cost_usd").unwrap_or(0.0),
            avg_latency_ms: get_opt_f64(r, "avg_latency_ms").unwrap_or(0.0),
        })
        .filter(|u| u.requests > 0)
        .collect())
}

/// Parse `30m`, `24h`, `7d`, `90s` into milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit() && c != '.')?);
    let n: f64 = num.parse().ok()?;
    let per = match unit {
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        "w" => 7.0 * 86_400_000.0,
        _ => return None,
    };
    let ms = n * per;
    (0.0..1e15).contains(&ms).then_some(ms as i64)
}

/// A point in time from the CLI or a query string: a duration ago (`24h`), unix seconds, or
/// unix milliseconds (13+ digits).
pub fn parse_time_ms(s: &str, now_ms: i64) -> Option<i64> {
    let t = s.trim();
    if let Some(ago) = parse_duration_ms(t) {
        return Some(now_ms - ago);
    }
    let n: i64 = t.parse().ok()?;
    Some(if t.len() >= 13 {
        n
    } else {
        n.saturating_mul(1000)
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn full_row(i: i64) -> LogRow {
        LogRow {
            id: format!("row-{i}"),
            request_id: format!("req-{i}"),
            ts_ms: 1_700_000_000_000 + i,
            model_id: Some("m \"quoted\" ü".into()),
            model_type: Some("chat".into()),
            op: "chat".into(),
            route: Some("vllm".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
            api_key_id: None,
            status_code: 200,
            outcome: "ok".into(),
            stream: i % 2 == 0,
            latency_ms: 12.0,
            ttfb_ms: Some(1.5),
            upstream_ms: None,
            prompt_tokens: Some(7),
            completion_tokens: Some(3),
            cached_tokens: None,
            total_tokens: Some(10),
            usage_estimated: true,
            audio_seconds: Some(0.25),
            images: None,
            video_seconds: None,
            cost_usd: Some(0.000_012_5),
            attempts: 2,
            error_code: None,
            error: Some("line\nbreak".into()),
            replica: Some("r1".into()),
        }
    }

    /// Every column survives a batch insert unchanged (300 rows: several statement sizes), and
    /// a replayed batch adds nothing.
    #[actix_rt::test]
    async fn sqlite_batch_insert_round_trips_every_column_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let settings = crate::store::DbSettings {
            kind: crate::store::DbKind::Sqlite,
            url: format!("sqlite://{}?mode=rwc", path.display()),
            sqlite_path: Some(path),
            max_connections: 1,
        };
        let store = Store::connect(&settings).await.unwrap();
        assert!(
            store.sqlite_path.is_some(),
            "a SQLite store names its file, for the request log's own writer"
        );
        store.migrate().await.unwrap();
        let rows: Vec<LogRow> = (0..300).map(full_row).collect();
        insert_rows(&store, &rows).await.unwrap();
        insert_rows(&store, &rows[..10]).await.unwrap();
        let back = recent_rows(&store, &Filter::default(), 1_000)
            .await
            .unwrap();
        assert_eq!(back, rows);
    }

    /// On PostgreSQL, a batch whose floats are there after one whose floats were NULL lands
    /// too (a cached statement typed by the first batch refused it). Runs when
    /// `TEST_DATABASE_URL` names a PostgreSQL database.
    #[actix_rt::test]
    async fn postgres_takes_floats_after_nulls_in_the_same_statement() {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL unset: skipping the PostgreSQL insert test");
            return;
        };
        let settings = crate::store::DbSettings {
            kind: DbKind::Postgres,
            url,
            sqlite_path: None,
            // One connection, so every batch meets the statement the first one prepared.
            max_connections: 1,
        };
        let store = Store::connect(&settings).await.unwrap();
        store.migrate().await.unwrap();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let row = |i: i64, floats: bool| {
            let mut row = full_row(i);
            row.id = format!("{run}-{i}");
            for f in [
                &mut row.ttfb_ms,
                &mut row.upstream_ms,
                &mut row.audio_seconds,
                &mut row.video_seconds,
                &mut row.cost_usd,
            ] {
                *f = floats.then_some(0.5);
            }
            row
        };
        for (i, floats) in [false, true, false, true].into_iter().enumerate() {
            insert_rows(&store, &[row(i as i64, floats)])
                .await
                .unwrap_or_else(|e| panic!("batch {i} (floats {floats}): {e}"));
        }
        let landed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM api_logs WHERE id LIKE '{run}-%' AND cost_usd IS NOT NULL"
        )))
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(landed, 2);
    }

    #[test]
    fn a_serialised_row_has_exactly_the_columns() {
        let v = serde_json::to_value(full_row(1)).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut cols = COLUMNS.to_vec();
        keys.sort_unstable();
        cols.sort_unstable();
        assert_eq!(keys, cols);
    }

    #[test]
    fn insert_sql_has_a_placeholder_per_value() {
        let n = COLUMNS.len();
        let pg = insert_sql(2, DbKind::Postgres);
        assert!(pg.contains(&format!("${}", 2 * n)));
        assert!(!pg.contains(&format!("${}", 2 * n + 1)));
        assert!(pg.ends_with("ON CONFLICT (id) DO NOTHING"));
        let lite = insert_sql(2, DbKind::Sqlite);
        assert_eq!(lite.matches('?').count(), 2 * n);
        assert!(!lite.contains('$'));
    }

    #[test]
    fn statements_are_powers_of_two_covering_every_row() {
        assert_eq!(statement_sizes(0), Vec::<usize>::new());
        assert_eq!(statement_sizes(1), vec![1]);
        assert_eq!(statement_sizes(300), vec![256, 32, 8, 4]);
        assert_eq!(statement_sizes(600), vec![256, 256, 64, 16, 8]);
        for n in 0..1_000 {
            let sizes = statement_sizes(n);
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes
                .iter()
                .all(|s| s.is_power_of_two() && *s <= MAX_ROWS_PER_STATEMENT));
        }
    }

    #[test]
    fn where_clause_binds_in_order() {
        let f = Filter {
            since_ms: Some(5),
            model: Some("m".into()),
            ..Filter::default()
        };
        let (clause, binds) = where_clause(&f, 1);
        assert_eq!(clause, " WHERE ts_ms >= $1 AND model_id = $2");
        assert_eq!(binds.len(), 2);
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("24h"), Some(86_400_000));
        assert_eq!(parse_duration_ms("1.5m"), Some(90_000));
        assert_eq!(parse_duration_ms("5x"), None);
        assert_eq!(parse_duration_ms("h"), None);
        assert_eq!(
            parse_time_ms("1h", 10_000_000),
            Some(10_000_000 - 3_600_000)
        );
        assert_eq!(parse_time_ms("1700000000", 0), Some(1_700_000_000_000));
        assert_eq!(parse_time_ms("1700000000123", 0), Some(1_700_000_000_123));
        assert_eq!(parse_time_ms("yesterday", 0), None);
    }

    #[test]
    fn group_by_parses() {
        let g = GroupBy::parse("model, key,period", Period::Day).unwrap();
        assert!(g.model && g.key && g.period == Some(Period::Day));
        assert!(GroupBy::parse("color", Period::Day).is_err());
    }
}
