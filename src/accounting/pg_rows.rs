//! The request log's writer for PostgreSQL: a pool of its own, opened on the logger's thread.
//!
//! Why not the store's pool: its connections are opened by whichever thread first needs one
//! (an HTTP worker checking a shared limit, say), and each socket stays registered with that
//! thread's runtime. The logger using such a connection waits on another thread's runtime for
//! every reply, and at shutdown the workers' runtimes end before the logger's last batch,
//! which then failed mid-transaction and went to the spill file instead of the database. A
//! pool created on the logger's own thread keeps every socket it opens there.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use super::db::insert_rows;
use super::logger::LogStore;
use super::row::LogRow;
use crate::store::{DbKind, Store};

/// The logger writes one batch at a time: one connection is all it uses.
const CONNECTIONS: u32 = 1;
/// As the store's own pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PgRows {
    options: Arc<AnyConnectOptions>,
    /// Made by the first batch, on the thread that writes every batch.
    store: OnceLock<Store>,
}

impl PgRows {
    /// A writer to the database `store` connects to (its URL and settings, not its pool).
    pub fn new(store: &Store) -> PgRows {
        PgRows {
            options: store.pool.connect_options(),
            store: OnceLock::new(),
        }
    }

    fn store(&self) -> &Store {
        self.store.get_or_init(|| Store {
            // Lazy: nothing is opened until this first batch's transaction asks.
            pool: AnyPoolOptions::new()
                .max_connections(CONNECTIONS)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with((*self.options).clone()),
            kind: DbKind::Postgres,
            sqlite_path: None,
        })
    }
}

impl LogStore for PgRows {
    fn insert(&self, rows: Arc<Vec<LogRow>>) -> LocalBoxFuture<'static, Result<(), String>> {
        let store = self.store().clone();
        Box::pin(async move { insert_rows(&store, &rows).await.map_err(|e| e.to_string()) })
    }
}
