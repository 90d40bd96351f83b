//! `RequestLogger`: the actor that writes `api_logs` rows in batches, off the request path.
//!
//! - The request path only does a non-blocking `try_send` into a bounded channel
//!   ([`LogQueue::push`], `LOG_QUEUE_CAPACITY`). When it is full — the database is slower than
//!   the traffic — the row goes to the spill file instead. Nothing waits; rows are dropped
//!   (and counted) only once the spill file itself is full (`LOG_SPILL_MAX_MB`).
//! - The actor empties the channel into one transaction whenever `LOG_BATCH_SIZE` rows wait or
//!   `LOG_FLUSH_INTERVAL_MS` passed (group commit: the slower the database, the bigger the
//!   batch, up to [`MAX_BATCH`]). One write at a time, run with `ctx.wait` so the final
//!   [`Drain`] message comes after it. A batch the database refuses goes to the spill file and
//!   the database is left alone for a back-off (1 s doubling to 30 s), during which batches go
//!   straight to the spill file.
//! - The spill file is replayed at start and whenever the database answers again, in chunks
//!   of [`REPLAY_CHUNK`] rows so memory stays bounded and a drain never waits long.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use tokio::sync::mpsc;

use super::row::LogRow;
use super::spill::Spill;

/// Most rows written in one transaction.
pub const MAX_BATCH: usize = 5_000;
/// Rows read from the spill file per replay step.
pub const REPLAY_CHUNK: usize = 2_000;
/// How often the actor looks at its queue.
const TICK: Duration = Duration::from_millis(10);

/// Where batches go; the database in production, a fake in tests.
pub trait LogStore: 'static {
    fn insert(&self, rows: Arc<Vec<LogRow>>) -> LocalBoxFuture<'static, Result<(), String>>;
}

#[derive(Debug, Clone, Copy)]
pub struct LoggerSettings {
    /// Rows that trigger a write before the timer does.
    pub batch_size: usize,
    pub flush_interval: Duration,
    /// Channel bound: rows beyond it are spilled by the request thread.
    pub queue_capacity: usize,
}

impl Default for LoggerSettings {
    fn default() -> Self {
        LoggerSettings {
            // A commit rewrites the last, partly filled page of the table and of each index;
            // bigger batches write those fewer times per row (issue 17).
            batch_size: 1024,
            flush_interval: Duration::from_millis(200),
            queue_capacity: 50_000,
        }
    }
}

/// Counters for `/metrics` and the status page.
#[derive(Debug, Default)]
pub struct LoggerStats {
    pub rows_written: AtomicU64,
    pub rows_replayed: AtomicU64,
    pub write_errors: AtomicU64,
    /// Rows spilled because the queue was full or closed (by request threads).
    pub queue_overflows: AtomicU64,
    /// Rows waiting in the queue at the last look.
    pub buffered: AtomicU64,
    pub last_flush_micros: AtomicU64,
    /// The spill file's size and the rows its cap dropped.
    pub spill: Arc<super::spill::SpillCounters>,
}

impl LoggerStats {
    fn new(spill: &Spill) -> LoggerStats {
        LoggerStats {
            spill: spill.counters().clone(),
            ..LoggerStats::default()
        }
    }
}

/// Write everything queued (or spill it) and report; sent once at shutdown, after the server
/// stopped and every request context was dropped.
#[derive(Message)]
#[rtype(result = "DrainReport")]
pub struct Drain;

#[derive(Debug, Clone, Copy, MessageResponse)]
pub struct DrainReport {
    pub written: u64,
    pub spilled: u64,
}

/// Where a replay stands: the file being replayed and how far it got.
struct ReplayCursor {
    file: PathBuf,
    offset: u64,
}

pub struct RequestLogger {
    store: Arc<dyn LogStore>,
    spill: Arc<Spill>,
    settings: LoggerSettings,
    stats: Arc<LoggerStats>,
    rx: mpsc::Receiver<LogRow>,
    /// A write (batch or replay step) is in flight.
    writing: bool,
    last_flush: Instant,
    /// While set and in the future, the database is not tried.
    retry_db_at: Option<Instant>,
    backoff: Duration,
    replay: Option<ReplayCursor>,
}

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl RequestLogger {
    fn new(
        store: Arc<dyn LogStore>,
        spill: Arc<Spill>,
        settings: LoggerSettings,
        stats: Arc<LoggerStats>,
        rx: mpsc::Receiver<LogRow>,
    ) -> RequestLogger {
        RequestLogger {
            store,
            spill,
            settings,
            stats,
            rx,
            writing: false,
            last_flush: Instant::now(),
            retry_db_at: None,
            backoff: MIN_BACKOFF,
            replay: None,
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

    fn take_queued(&mut self, max: usize) -> Vec<LogRow> {
        let mut rows = Vec::with_capacity(self.rx.len().min(max));
        while rows.len() < max {
            match self.rx.try_recv() {
                Ok(row) => rows.push(row),
                Err(_) => break,
            }
        }
        rows
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if let Err(e) = self.spill.flush() {
            tracing::error!(error = %e, "cannot flush the request log spill file");
        }
        let queued = self.rx.len();
        self.stats.buffered.store(queued as u64, Ordering::Relaxed);
        if self.writing {
            return;
        }
        let due = queued >= self.settings.batch_size
            || (queued > 0 && self.last_flush.elapsed() >= self.settings.flush_interval);
        if due {
            self.flush(ctx);
        } else if queued == 0 && !self.db_resting() {
            self.replay_step(ctx);
        }
    }

    /// Write what is queued as one batch; the actor handles no message until it is done.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.last_flush = Instant::now();
        let rows = self.take_queued(MAX_BATCH);
        if rows.is_empty() {
            return;
        }
        if self.db_resting() {
            self.spill_rows(&rows);
            return;
        }
        let rows = Arc::new(rows);
        let started = Instant::now();
        let write = self.store.insert(rows.clone());
        self.writing = true;
        ctx.wait(async move { (write.await, rows) }.into_actor(self).map(
            move |(result, rows), act, _ctx| {
                act.writing = false;
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

    /// Put one chunk of spilled rows into the database, if there are any.
    fn replay_step(&mut self, ctx: &mut Context<Self>) {
        if self.replay.is_none() {
            if !self.spill.has_rows() {
                return;
            }
            match self.spill.open_replay() {
                Ok(Some(file)) => self.replay = Some(ReplayCursor { file, offset: 0 }),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the request log spill file");
                    return;
                }
            }
        }
        let Some(cursor) = &self.replay else {
            return;
        };
        let (rows, next, eof) =
            match self
                .spill
                .read_chunk(&cursor.file, cursor.offset, REPLAY_CHUNK)
            {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the request log spill file");
                    self.replay = None;
                    return;
                }
            };
        let count = rows.len() as u64;
        let write = self.store.insert(Arc::new(rows));
        self.writing = true;
        ctx.wait(write.into_actor(self).map(move |result, act, _ctx| {
            act.writing = false;
            match result {
                Ok(()) => {
                    act.stats.rows_replayed.fetch_add(count, Ordering::Relaxed);
                    act.stats.rows_written.fetch_add(count, Ordering::Relaxed);
                    act.db_ok();
                    if eof {
                        if let Some(done) = act.replay.take() {
                            act.spill.finish_replay(&done.file);
                        }
                        tracing::info!("replayed the request log spill file");
                    } else if let Some(c) = act.replay.as_mut() {
                        c.offset = next;
                    }
                }
                // The cursor stays where it is for the next attempt.
                Err(e) => act.db_failed(&e),
            }
        }));
    }
}

impl Actor for RequestLogger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Drain> for RequestLogger {
    type Result = AtomicResponse<Self, DrainReport>;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Self::Context) -> Self::Result {
        // Closing first means no row can slip in after the last `try_recv`: later pushes fail
        // and are spilled by the request side.
        self.rx.close();
        let rows = Arc::new(self.take_queued(usize::MAX));
        self.stats.buffered.store(0, Ordering::Relaxed);
        let count = rows.len() as u64;
        // At shutdown the database gets one more chance even if it is resting.
        let write = self.store.insert(rows.clone());
        AtomicResponse::new(Box::pin(write.into_actor(self).map(
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
                    let _ = act.spill.flush();
                    DrainReport {
                        written: 0,
                        spilled: count,
                    }
                }
            },
        )))
    }
}

/// The request path's handle: never blocks; drops only past the spill file's cap.
#[derive(Clone)]
pub struct LogQueue {
    tx: mpsc::Sender<LogRow>,
    addr: Addr<RequestLogger>,
    spill: Arc<Spill>,
    stats: Arc<LoggerStats>,
    /// Set just before the final drain: later rows go straight to the spill file.
    closed: Arc<AtomicBool>,
}

impl LogQueue {
    /// Start the logger on its own arbiter (thread).
    pub fn start(
        store: Arc<dyn LogStore + Send + Sync>,
        spill: Arc<Spill>,
        settings: LoggerSettings,
    ) -> LogQueue {
        let stats = Arc::new(LoggerStats::new(&spill));
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let arbiter = Arbiter::new();
        let (sp, st) = (spill.clone(), stats.clone());
        let addr = RequestLogger::start_in_arbiter(&arbiter.handle(), move |_| {
            RequestLogger::new(store, sp, settings, st, rx)
        });
        LogQueue {
            tx,
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
            // Shutting down: nobody flushes the spill file after this, so do it now.
            self.overflow(row);
            let _ = self.spill.flush();
            return;
        }
        match self.tx.try_send(row) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(row))
            | Err(mpsc::error::TrySendError::Closed(row)) => self.overflow(row),
        }
    }

    fn overflow(&self, row: LogRow) {
        self.stats.queue_overflows.fetch_add(1, Ordering::Relaxed);
        let _ = self.spill.append(std::slice::from_ref(&row));
    }

    /// Flush everything; called once the server has stopped. Rows pushed after this
    /// started go to the spill file, replayed at the next start.
    pub async fn drain(&self) -> Option<DrainReport> {
        self.closed.store(true, Ordering::Release);
        let report = self.addr.send(Drain).await.ok();
        if let Err(e) = self.spill.flush() {
            tracing::error!(error = %e, "cannot flush the request log spill file");
        }
        report
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
        LogRow::from_record(record, None)
    }

    fn start(store: Arc<FakeStore>, spill: Arc<Spill>, settings: LoggerSettings) -> LogQueue {
        let stats = Arc::new(LoggerStats::new(&spill));
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let (sp, st) = (spill.clone(), stats.clone());
        let addr = RequestLogger::create(move |_| {
            RequestLogger::new(Arc::new(store), sp, settings, st, rx)
        });
        LogQueue {
            tx,
            addr,
            spill,
            stats,
            closed: Arc::default(),
        }
    }

    /// Let the new actor start.
    async fn settle() {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }

    #[actix_rt::test]
    async fn batches_reach_the_store_and_drain_flushes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(Spill::new(dir.path().join("spill.jsonl"), u64::MAX));
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
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            store.rows.lock().unwrap().len(),
            25,
            "more than a batch queued: written without waiting for the timer"
        );
        for n in 25..30 {
            q.push(row(n));
        }
        let report = q.drain().await.unwrap();
        assert_eq!(report.written, 5, "the rest at drain");
        assert_eq!(store.rows.lock().unwrap().len(), 30);
    }

    #[actix_rt::test]
    async fn a_failing_database_spills_and_the_spill_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(Spill::new(dir.path().join("spill.jsonl"), u64::MAX));
        let store = Arc::new(FakeStore::default());
        store.failing.store(true, Ordering::SeqCst);
        let settings = LoggerSettings {
            batch_size: 4,
            flush_interval: Duration::from_millis(20),
            queue_capacity: 1000,
        };
        let q = start(store.clone(), spill.clone(), settings);
        settle().await;
        for n in 0..4500 {
            q.push(row(n));
        }
        let report = q.drain().await.unwrap();
        assert_eq!(store.rows.lock().unwrap().len(), 0);
        assert!(spill.has_rows());
        assert!(report.spilled <= 4500);

        // A new logger (as at the next start) with the database back replays everything.
        store.failing.store(false, Ordering::SeqCst);
        let q2 = start(store.clone(), spill.clone(), settings);
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.rows.lock().unwrap().len() < 4500 && Instant::now() < deadline {
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
        assert_eq!(ids.len(), 4500, "replayed in chunks of {REPLAY_CHUNK}");
        assert!(!spill.has_rows(), "the spill file is gone after replay");
    }

    #[actix_rt::test]
    async fn a_full_queue_spills_on_the_request_side_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Arc::new(Spill::new(dir.path().join("spill.jsonl"), u64::MAX));
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
        // The actor does not run between these pushes (same thread, no await): the queue
        // fills and the rest overflow into the spill file.
        for n in 0..50 {
            q.push(row(n));
        }
        assert!(q.stats().queue_overflows.load(Ordering::Relaxed) > 0);
        q.drain().await.unwrap();
        // Spilled rows may already have been replayed by the idle actor; either way every
        // row is in the store or in the spill file.
        let in_store = store.rows.lock().unwrap().len();
        let spilled = match spill.open_replay().unwrap() {
            Some(file) => spill.read_chunk(&file, 0, 1000).unwrap().0.len(),
            None => 0,
        };
        assert_eq!(in_store + spilled, 50, "every row is somewhere");
    }

    /// The database is down and the spill file small: rows past its cap are dropped and
    /// counted, `/metrics` shows the file's size and the drops, and the next start replays
    /// every row that was kept.
    #[actix_rt::test]
    async fn past_the_spill_cap_rows_are_dropped_counted_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spill.jsonl");
        let cap = 40 * 1024;
        let spill = Arc::new(Spill::new(path.clone(), cap));
        let store = Arc::new(FakeStore::default());
        store.failing.store(true, Ordering::SeqCst);
        let settings = LoggerSettings {
            batch_size: 10,
            flush_interval: Duration::from_millis(5),
            queue_capacity: 20,
        };
        let q = start(store.clone(), spill.clone(), settings);
        settle().await;
        const ROWS: usize = 500;
        for n in 0..ROWS {
            q.push(row(n));
        }
        q.drain().await.unwrap();
        let stats = q.stats().clone();
        let dropped = stats.spill.dropped_rows.load(Ordering::Relaxed);
        let bytes = stats.spill.bytes.load(Ordering::Relaxed);
        assert!(
            dropped > 0,
            "a {cap}-byte spill file cannot hold {ROWS} rows"
        );
        assert!(
            bytes <= cap,
            "{bytes} bytes spilled past the {cap}-byte cap"
        );
        // The idle logger may already have moved the file aside to replay it.
        let on_disk: u64 = ["spill.jsonl", "spill.jsonl.replaying"]
            .iter()
            .filter_map(|name| std::fs::metadata(dir.path().join(name)).ok())
            .map(|m| m.len())
            .sum();
        assert_eq!(bytes, on_disk);
        let exposition = crate::metrics::Metrics::new().render(None, Some(&stats));
        assert!(
            exposition.contains(&format!("switchyard_request_log_spill_bytes {bytes}\n")),
            "{exposition}"
        );
        assert!(
            exposition.contains(&format!(
                "switchyard_request_log_spill_dropped_rows_total {dropped}\n"
            )),
            "{exposition}"
        );

        // The next start, with the database back, replays what was kept.
        store.failing.store(false, Ordering::SeqCst);
        let spill = Arc::new(Spill::new(path, cap));
        let q2 = start(store.clone(), spill.clone(), settings);
        let kept = ROWS - dropped as usize;
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.rows.lock().unwrap().len() < kept && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        q2.drain().await.unwrap();
        assert_eq!(
            store.rows.lock().unwrap().len(),
            kept,
            "every kept row replayed"
        );
        assert!(!spill.has_rows());
        assert_eq!(spill.counters().bytes.load(Ordering::Relaxed), 0);
    }
}
