//! Usage accounting: every finished request's record is priced and queued for the `api_logs`
//! table without blocking the request that produced it. The sink that does both and counts the
//! request in the metrics is `metrics::AccountingSink`: `metrics` sits above this module.
//!
//! - [`cost`]: pricing arithmetic (model pricing overlaid by route pricing).
//! - [`row`]: the `api_logs` row; [`db`]: its SQL (insert, tail, aggregates).
//! - [`logger`]: the batching `RequestLogger` actor and the request path's [`LogQueue`].
//! - [`spill`]: the spill file for rows the database could not take yet.
//! - [`sqlite_rows`] and [`pg_rows`]: the request log's own writers, SQLite's and
//!   PostgreSQL's, each with its own connection(s) on the logger's thread.
//! - [`cli`]: `switchyard logs` and `switchyard usage`.
//! - [`settings`]: the environment variables of this feature.

pub mod cli;
pub mod cost;
pub mod db;
pub mod logger;
pub mod pg_rows;
pub mod row;
pub mod settings;
pub mod spill;
pub mod sqlite_rows;

pub use logger::LogQueue;
pub use row::LogRow;

use std::sync::Arc;

/// Where `store`'s request log rows go: the logger's own writer for its database, SQLite's
/// ([`sqlite_rows`]) or PostgreSQL's ([`pg_rows`]).
pub fn log_store(store: &crate::store::Store) -> Arc<dyn logger::LogStore + Send + Sync> {
    match &store.sqlite_path {
        Some(path) => Arc::new(sqlite_rows::SqliteRows::new(path)),
        None => Arc::new(pg_rows::PgRows::new(store)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DbKind, DbSettings, Store};
    use sqlx::AssertSqlSafe;
    use std::time::Duration;

    /// The store's pool keeps each connection registered with the runtime of the thread that
    /// opened it (an HTTP worker, say). The request log's PostgreSQL rows must not wait on such
    /// a thread: here the store's only connection was opened by a runtime that is still alive
    /// but no longer driven, and the rows still land, promptly. Runs when `TEST_DATABASE_URL`
    /// names a PostgreSQL database.
    #[actix_rt::test]
    async fn postgres_rows_do_not_wait_on_the_runtime_that_opened_the_stores_connection() {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("TEST_DATABASE_URL unset: skipping the PostgreSQL logger test");
            return;
        };
        let settings = DbSettings {
            kind: DbKind::Postgres,
            url,
            sqlite_path: None,
            max_connections: 1,
        };
        let (store_tx, store_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let opened_elsewhere = settings.clone();
        let other = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let store = runtime.block_on(async {
                let store = Store::connect(&opened_elsewhere).await.unwrap();
                store.migrate().await.unwrap();
                store
            });
            store_tx.send(store).unwrap();
            // Alive, but nothing drives its I/O any more, as a worker busy or winding down.
            let _ = done_rx.recv();
            drop(runtime);
        });
        let store = store_rx.recv().unwrap();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let rows: Vec<LogRow> = (0..3)
            .map(|i| LogRow {
                id: format!("{run}-{i}"),
                ..db::tests::full_row(i)
            })
            .collect();
        let written = actix_rt::time::timeout(
            Duration::from_secs(10),
            log_store(&store).insert(Arc::new(rows)),
        )
        .await;
        let _ = done_tx.send(());
        other.join().unwrap();
        assert_eq!(written, Ok(Ok(())));
        let reader = Store::connect(&settings).await.unwrap();
        let landed: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM api_logs WHERE id LIKE '{run}-%'"
        )))
        .fetch_one(&reader.pool)
        .await
        .unwrap();
        assert_eq!(landed, 3);
    }
}
