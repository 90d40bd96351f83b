//! Usage accounting: every finished request's record is priced and queued for the `api_logs`
//! table without blocking the request that produced it. The sink that does both and counts the
//! request in the metrics is `metrics::AccountingSink`: `metrics` sits above this module.
//!
//! - [`cost`]: pricing arithmetic (model pricing overlaid by route pricing).
//! - [`row`]: the `api_logs` row; [`db`]: its SQL (insert, tail, aggregates).
//! - [`logger`]: the batching `RequestLogger` actor and the request path's [`LogQueue`].
//! - [`spill`]: the spill file for rows the database could not take yet.
//! - [`sqlite_rows`]: the request log's own SQLite writer (PostgreSQL's rows go through
//!   [`db::insert_rows`]).
//! - [`cli`]: `switchyard logs` and `switchyard usage`.
//! - [`settings`]: the environment variables of this feature.

pub mod cli;
pub mod cost;
pub mod db;
pub mod logger;
pub mod row;
pub mod settings;
pub mod spill;
pub mod sqlite_rows;

pub use logger::LogQueue;
pub use row::LogRow;

use std::sync::Arc;

/// Where `store`'s request log rows go: SQLite's own writer ([`sqlite_rows`]) for a SQLite
/// store, the store's pool for PostgreSQL.
pub fn log_store(store: &crate::store::Store) -> Arc<dyn logger::LogStore + Send + Sync> {
    match &store.sqlite_path {
        Some(path) => Arc::new(sqlite_rows::SqliteRows::new(path)),
        None => Arc::new(store.clone()),
    }
}
