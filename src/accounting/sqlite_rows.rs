//! The request log's writer for SQLite: one connection of its own, prepared many-row INSERTs
//! kept for reuse, one transaction per batch.
//!
//! Why not sqlx, which the rest of the store uses: through sqlx every row's values are copied
//! into reference-counted arguments on the logger's thread, handed to sqlx's worker thread,
//! bound there, freed there (a cross-thread free for each), and a 256-row statement clears
//! 7,168 bindings per run. That was ~8k of the ~31k instructions a row cost (issue 17,
//! docs/benchmarks.md, "Fourth pass"). rusqlite binds the row's borrowed values
//! straight into the prepared statement, on the thread that batched them.
//!
//! The work is blocking, and runs on the logger's own arbiter thread (see
//! [`super::logger::LogQueue::start`]): while a batch is written, new rows wait in the bounded
//! queue, or go to the spill file when it is full, exactly as when a database is slow.
//! PostgreSQL keeps sqlx ([`super::db::insert_rows`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::db::{cached_insert_sql, statement_sizes};
use super::logger::LogStore;
use super::row::LogRow;
use crate::store::DbKind;

/// How long a batch waits for another writer (the store's own pool: keys, jobs, migrations)
/// before it fails and is spilled; the store's pool waits as long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer connection's page cache (KiB): bounded, whatever the table's size.
const WRITER_CACHE_KIB: u32 = 16 * 1024;

pub struct SqliteRows {
    path: PathBuf,
    /// Opened on the first batch, so commands that never write rows never open it; dropped
    /// after a failed batch, so the next one starts from a fresh connection (a replaced or
    /// deleted file, a connection left in a transaction).
    conn: Mutex<Option<Connection>>,
}

/// The settings the store's pool gives its connections: WAL (readers beside the writer), a
/// busy timeout, `synchronous=NORMAL`.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // `journal_mode` answers with the mode in force; the answer itself is not needed.
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // The newest pages of the table and its three indexes stay in memory between batches,
    // instead of being read back from the WAL for every commit (SQLite's default is 2 MiB).
    conn.pragma_update(None, "cache_size", -i64::from(WRITER_CACHE_KIB))?;
    Ok(conn)
}

fn insert_batch(conn: &mut Connection, rows: &[LogRow]) -> rusqlite::Result<()> {
    // IMMEDIATE: take the write lock (waiting up to the busy timeout) before the first row,
    // not halfway through the batch.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rest = rows;
    // Many rows a statement, as for PostgreSQL: a statement's run opens a cursor on the table
    // and on each index, which a single-row INSERT paid for every row (~5k instructions).
    for size in statement_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let mut insert = tx.prepare_cached(cached_insert_sql(size, DbKind::Sqlite))?;
        let mut index = 1;
        for row in chunk {
            for value in row.sqlite_params() {
                insert.raw_bind_parameter(index, value)?;
                index += 1;
            }
        }
        insert.raw_execute()?;
    }
    tx.commit()
}

impl SqliteRows {
    pub fn new(path: &Path) -> SqliteRows {
        SqliteRows {
            path: path.to_path_buf(),
            conn: Mutex::new(None),
        }
    }

    /// Write `rows` in one transaction: all of them or none.
    pub fn insert(&self, rows: &[LogRow]) -> Result<(), String> {
        if rows.is_empty() {
            return Ok(());
        }
        // A poisoned lock only means an earlier batch panicked; the slot is still usable.
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = match slot.as_mut() {
            Some(conn) => conn,
            None => slot.insert(open(&self.path).map_err(|e| e.to_string())?),
        };
        let result = insert_batch(conn, rows);
        if result.is_err() {
            *slot = None;
        }
        result.map_err(|e| e.to_string())
    }
}

impl LogStore for SqliteRows {
    fn insert(&self, rows: Arc<Vec<LogRow>>) -> LocalBoxFuture<'static, Result<(), String>> {
        let result = SqliteRows::insert(self, &rows);
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::db::{recent_rows, Filter};
    use crate::store::{DbSettings, Store};

    async fn migrated(path: &Path) -> Store {
        let settings = DbSettings::from_vars(&crate::config::test_vars(&[(
            "SQLITE_DB_PATH",
            path.to_str().unwrap(),
        )]))
        .unwrap();
        let store = Store::connect(&settings).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Every column lands as written (the binding order is the column order), a batch
    /// written twice inserts nothing twice, and the pool's readers see the writer's rows.
    #[actix_rt::test]
    async fn rows_land_whole_once_and_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let store = migrated(&path).await;
        let writer = SqliteRows::new(&path);
        let rows: Vec<LogRow> = (0..300)
            .map(crate::accounting::db::tests::full_row)
            .collect();
        writer.insert(&rows).unwrap();
        writer.insert(&rows[..10]).unwrap();
        writer.insert(&[]).unwrap();
        let back = recent_rows(&store, &Filter::default(), 1_000)
            .await
            .unwrap();
        assert_eq!(back, rows);
    }

    /// A batch that cannot be written fails whole (nothing of it lands), and the writer
    /// recovers once the database can be written again.
    #[actix_rt::test]
    async fn a_failed_batch_writes_nothing_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let writer = SqliteRows::new(&path);
        // No table yet: the first batch fails, and leaves no file half-written behind.
        let rows: Vec<LogRow> = (0..5).map(crate::accounting::db::tests::full_row).collect();
        assert!(writer.insert(&rows).is_err());
        let store = migrated(&path).await;
        // A batch with a row that breaks a constraint fails whole.
        let mut bad = rows.clone();
        bad[3].op = "".into();
        sqlx::query("CREATE TRIGGER no_empty_op BEFORE INSERT ON api_logs WHEN NEW.op = '' BEGIN SELECT RAISE(ABORT, 'empty op'); END")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(writer.insert(&bad).is_err());
        assert!(recent_rows(&store, &Filter::default(), 100)
            .await
            .unwrap()
            .is_empty());
        writer.insert(&rows).unwrap();
        assert_eq!(
            recent_rows(&store, &Filter::default(), 100)
                .await
                .unwrap()
                .len(),
            5
        );
    }

    /// While another connection holds the write lock, a batch waits for it (up to the busy
    /// timeout) instead of failing at once.
    #[actix_rt::test]
    async fn a_batch_waits_for_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let _store = migrated(&path).await;
        let holder = open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("COMMIT").unwrap();
        });
        let writer = SqliteRows::new(&path);
        let rows: Vec<LogRow> = (0..3).map(crate::accounting::db::tests::full_row).collect();
        writer.insert(&rows).unwrap();
        release.join().unwrap();
    }
}
