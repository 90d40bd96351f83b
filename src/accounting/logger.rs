//! `RequestLogger`: the actor that writes `api_logs` rows in batches, off the request path.
//!
//! - The request path only does a non-blocking `try_send` ([`LogQueue::push`]). The actor's
//!   mailbox is the bounded queue (`LOG_QUEUE_CAPACITY`); when it is full — the database is
//!   slower than the traffic — the row goes to the spill file instead. Nothing waits, nothing
//!   is dropped.
//! - Batches are written one at a time with `ctx.wait`, so rows, flushes and the final
//!   [`Drain`] happen in mailbox order; a batch the database refuses goes to the spill file and
//!   the database is left alone for a back-off (1 s doubling to 30 s) during which batches go
//!   straight to the spill file.
//! - The spill file is replayed at start and whenever the database answers again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;

use super::row::LogRow;
use super::spill::Spill;

/// Where batches go; the database in production, a fake in tests.
pub trait LogStore: 'static {
    fn insert(&self, rows: Arc<Vec<LogRow>>) -> LocalBoxFuture<'static, Result<(), String>>;
}

impl LogStore for crate::store::Store {
    fn insert(&self, rows: Arc<Vec<LogRow>>) -> LocalBoxFuture<'static, Result<(), String>> {
        let store = self.clone();
        Box::pin(async move {
            super::db::insert_rows(&store, &rows)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct LoggerSettings {
    /// Rows that trigger a flush before the timer does.
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Mailbox bound: rows waiting beyond it are spilled by the request thread.
    pub queue_capacity: usize,
}

impl Default for LoggerSettings {
    fn default() -> Self {
        LoggerSettings {
            batch_size: 256,
            flush_interval: Duration::from_millis(200),
            queue_capacity: 10_000,
        }
    }
}

/// Counters for `/metrics` and the status page.
#[derive(Debug, Default)]
pub struct LoggerStats {
    pub rows_written: AtomicU64,
    pub rows_replayed: AtomicU64,
    pub write_errors: AtomicU64,
    /// Rows spilled because the mailbox was full (by request threads).
    pub queue_overflows: AtomicU64,
    pub buffered: AtomicU64,
    pub last_flush_micros: AtomicU64,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Log(pub LogRow);

/// Write everything buffered (or spill it) and report; sent once at shutdown, after the
/// server stopped and every request context was dropped.
#[derive(Message)]
#[rtype(result = "DrainReport")]
pub struct Drain;

#[derive(Debug, Clone, Copy, MessageResponse)]
pub struct DrainReport {
    pub written: u64,
    pub spilled: u64,
}

pub struct RequestLogger {
    store: Arc<dyn LogStore>,
    spill: Arc<Spill>,
    settings: LoggerSettings,
    stats: Arc<LoggerStats>,
    buffer: Vec<LogRow>,
    /// While set and in the future, the database is not tried.
    retry_db_at: Option<Instant>,
    backoff: Duration,
}

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl RequestLogger {
    pub fn new(
        store: Arc<dyn LogStore>,
        spill: Arc<Spill>,
        settings: LoggerSettings,
        stats: Arc<LoggerStats>,
    ) -> RequestLogger {
        RequestLogger {
            store,
            spill,
            settings,
            stats,
            buffer: Vec::new(),
            retry_db_at: None,
            backoff: MIN_BACKOFF,
        }
    }

    fn db_resting(&self) -> bool {
        self.retry_db_at.is_some_and(|t| Instant::now() < t)
    }

    fn db_failed(&mut self, error: &str) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            error,
            retry_in_ms = self.backoff.as_millis() as u64,
            spill = %self.spill.path().display(),
            "request log database write failed; spilling rows to disk"
        );
        self.retry_db_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn db_ok(&mut self) {
        if self.retry_db_at.take().is_some() {
            tracing::info!("request log database writable again");
        }
        self.backoff = MIN_BACKOFF;
    }

    fn spill_rows(&self, rows: &[LogRow]) {
        // The spill logs the request ids itself if even this fails.
        let _ = self.spill.append(rows);
    }

    /// Write the buffer as one batch; the actor handles nothing else until it is done.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.stats
            .buffered
            .store(self.buffer.len() as u64, Ordering::Relaxed);
        if self.buffer.is_empty() {
            return;
        }
        let rows = Arc::new(std::mem::take(&mut self.buffer));
        self.stats.buffered.store(0, Ordering::Relaxed);
        if self.db_resting() {
            self.spill_rows(&rows);
            return;
        }
        let started = Instant::now();
        let write = self.store.insert(rows.clone());
        ctx.wait(async move { (write.await, rows) }.into_actor(self).map(
            move |(result, rows), act, _ctx| {
                act.stats.last_flush_micros.store(
                    started.elapsed().as_micros().min(u64::MAX as u128) as u64,
                    Ordering::Relaxed,
                );
                match result {
                    Ok(()) => {
                        act.stats
                            .rows_written
                            .fetch_add(rows.len() as u64, Ordering::Relaxed);
                        act.db_ok();
                    }
                    Err(e) => {
                        act.db_failed(&e);
                        act.spill_rows(&rows);
                    }
                }
            },
        ));
    }

    /// Put spilled rows into the database, if there are any and the database is not resting.
    fn replay(&mut self, ctx: &mut Context<Self>) {
        if self.db_resting() || !self.spill.has_rows() {
            return;
        }
        let (path, rows) = match self.spill.take_for_replay() {
            Ok(Some(taken)) => taken,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the request log spill file");
                return;
            }
        };
        let rows = Arc::new(rows);
        let count = rows.len() as u64;
        let write = self.store.insert(rows);
        ctx.wait(
            write
                .into_actor(self)
                .map(move |result, act, _ctx| match result {
                    Ok(()) => {
                        act.spill.finish_replay(&path);
                        act.stats.rows_replayed.fetch_add(count, Ordering::Relaxed);
                        act.stats.rows_written.fetch_add(count, Ordering::Relaxed);
                        act.db_ok();
                        tracing::info!(rows = count, "replayed spilled request log rows");
                    }
                    // The replaying file stays where it is for the next attempt.
                    Err(e) => act.db_failed(&e),
                }),
        );
    }
}

impl Actor for RequestLogger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.queue_capacity.max(1));
        ctx.run_later(Duration::ZERO, |act, ctx| act.replay(ctx));
        ctx.run_interval(self.settings.flush_interval, |act, ctx| {
            act.flush(ctx);
            act.replay(ctx);
        });
    }
}

impl Handler<Log> for RequestLogger {
    type Result = ();

    fn handle(&mut self, msg: Log, ctx: &mut Self::Context) {
        self.buffer.push(msg.0);
        if self.buffer.len() >= self.settings.batch_size {
            self.flush(ctx);
        } else {
            self.stats
                .buffered
                .store(self.buffer.len() as u64, Ordering::Relaxed);
        }
    }
}

impl Handler<Drain> for RequestLogger {
    type Result = AtomicResponse<Self, DrainReport>;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> Self::Result {
        let rows = Arc::new(std::mem::take(&mut self.buffer));
        self.stats.buffered.store(0, Ordering::Relaxed);
        let count = rows.len() as u64;
        // At shutdown the database gets one more chance even if it is resting.
        let write = self.store.insert(rows.clone());
        AtomicResponse::new(Box::pin(async move { write.await }.into_actor(self).map(
            move |result, act, _ctx| match result {
                Ok(()) => {
                    act.stats.rows_written.fetch_add(count, Ordering::Relaxed);
                    DrainReport {
                        written: count,
                        spilled: 0,
                    }
                }
                Err(e) => {
                    act.db_failed(&e);
                    act.spill_rows(&rows);
                    DrainReport {
                        written: 0,
                        spilled: count,
                    }
                }
            },
        )))
    }
}

/// The request path's handle: never blocks, never drops.
#[derive(Clone)]
pub struct LogQueue {
    addr: Addr<RequestLogger>,
    spill: Arc<Spill>,
    stats: Arc<LoggerStats>,
    /// Set just before the final drain: later rows go straight to the spill file.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl LogQueue {
    /// Start the logger on its own arbiter (thread).
    pub fn start(
        store: Arc<dyn LogStore + Send + Sync>,
        spill: Arc<Spill>,
        settings: LoggerSettings,
    ) -> LogQueue {
        let stats = Arc::new(LoggerStats::default());
        let arbiter = Arbiter::new();
        let (s, sp, st) = (store, spill.clone(), stats.clone());
        let addr = RequestLogger::start_in_arbiter(&arbiter.handle(), move |_| {
            RequestLogger::new(s, sp, settings, st)
        });
        LogQueue {
            addr,
            spill,
            stats,
            closed: Arc::default(),
        }
    }

    pub fn stats(&self) -> &Arc<LoggerStats> {
        &self.stats
    }

    pub fn push(&self, row: LogRow) {
        if self.closed.load(Ordering::Acquire) {
            self.stats.queue_overflows.fetch_add(1, Ordering::Relaxed);
            let _ = self.spill.append(std::slice::from_ref(&row));
            return;
        }
        match self.addr.try_send(Log(row)) {
            Ok(()) => {}
            Err(SendError::Full(Log(row))) | Err(SendError::Closed(Log(row))) => {
                self.stats.queue_overflows.fetch_add(1, Ordering::Relaxed);
                let _ = self.spill.append(std::slice::from_ref(&row));
            }
        }
    }

    /// Flush everything; called once the server has stopped. Rows pushed after this
    /// started go to the spill file, replayed at the next start.
    pub async fn drain(&self) -> Option<DrainReport> {
        self.closed.store(true, Ordering::Release);
        self.addr.send(Drain).await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    /// A store that keeps rows in memory and can be told to fail.
    #[derive(Default)]
    struct FakeStore {
        rows: Mutex<Vec<LogRow>>,
        failing: AtomicBool,
    }

    impl LogStore for Arc<FakeStore> {
        fn insert(&self, rows: Arc<Vec<LogRow>>) -> LocalBoxFuture<'static, Result<(), String>> {
            let me = self.clone();
            Box::pin(async move {
                if me.failing.load(Ordering::SeqCst) {
                    return Err("database is down".into());
                }
                let mut all = me.rows.lock().unwrap();
                for r in rows.iter() {
                    // ON CONFLICT (id) DO NOTHING
                    if !all.iter().any(|x| x.id == r.id) {
                        all.push(r.clone());
                    }
                }
                Ok(())
            })
        }
    }

    fn row(n: usize) -> LogRow {
        let record = crate::record::RequestRecord {
            request_id: format!("req-{n}"),
            ..crate::record::test_record()
        };
        LogRow::from_record(&record, None)
    }

    fn start(store: Arc<FakeStore>, spill: Arc<Spill>, settings: LoggerSettings) -> LogQueue {
        let stats = Arc::new(LoggerStats::default());
        let (sp, st) = (spill.clone(), stats.clone());
        let addr =
            RequestLogger::create(move |_| RequestLogger::new(Arc::new(store), sp, settings, st));
        LogQueue {
            addr,
            spill,
            stats,
            closed: Arc::default(),
        }
    }

    /// Let the new actor run `started` (which sets its mailbox bound).
    async fn settle() {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }

    #[actix_rt::test]
    async fn batches_reach_the_store_and_drain_flushes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(Spill::new(dir.path().join("spill.jsonl")));
        let store = Arc::new(FakeStore::default());
        let q = start(
            store.clone(),
            spill,
            LoggerSettings {
                batch_size: 10,
                flush_interval: Duration::from_secs(3600),
                queue_capacity: 1000,
            },
        );
        settle().await;
        for n in 0..25 {
            q.push(row(n));
        }
        let report = q.drain().await.unwrap();
        assert_eq!(
            report.written, 5,
            "two batches of 10 went by size, 5 at drain"
        );
        assert_eq!(store.rows.lock().unwrap().len(), 25);
    }

    #[actix_rt::test]
    async fn a_failing_database_spills_and_the_spill_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(Spill::new(dir.path().join("spill.jsonl")));
        let store = Arc::new(FakeStore::default());
        store.failing.store(true, Ordering::SeqCst);
        let settings = LoggerSettings {
            batch_size: 4,
            flush_interval: Duration::from_millis(20),
            queue_capacity: 1000,
        };
        let q = start(store.clone(), spill.clone(), settings);
        settle().await;
        for n in 0..10 {
            q.push(row(n));
        }
        let report = q.drain().await.unwrap();
        assert_eq!(store.rows.lock().unwrap().len(), 0);
        assert!(spill.has_rows());
        assert!(report.spilled <= 10);

        // A new logger (as at the next start) with the database back replays everything.
        store.failing.store(false, Ordering::SeqCst);
        let q2 = start(store.clone(), spill.clone(), settings);
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.rows.lock().unwrap().len() < 10 && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        q2.drain().await.unwrap();
        let mut ids: Vec<String> = store
            .rows
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.request_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "{ids:?}");
        assert!(!spill.has_rows(), "the spill file is gone after replay");
    }

    #[actix_rt::test]
    async fn a_full_queue_spills_on_the_request_side_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(Spill::new(dir.path().join("spill.jsonl")));
        let store = Arc::new(FakeStore::default());
        let q = start(
            store.clone(),
            spill.clone(),
            LoggerSettings {
                batch_size: 1000,
                flush_interval: Duration::from_secs(3600),
                queue_capacity: 5,
            },
        );
        settle().await;
        // The actor does not run between these pushes (same thread, no await): the mailbox
        // fills and the rest overflow into the spill file.
        for n in 0..50 {
            q.push(row(n));
        }
        assert!(q.stats().queue_overflows.load(Ordering::Relaxed) > 0);
        q.drain().await.unwrap();
        let in_store = store.rows.lock().unwrap().len();
        let (_, spilled) = spill.take_for_replay().unwrap().unwrap();
        assert_eq!(in_store + spilled.len(), 50, "every row is somewhere");
    }
}
