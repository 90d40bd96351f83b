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
