//! The spill file: rows the database could not take yet, one JSON object a line, replayed into
//! the database when it answers again (and at every start). Appends come from the logger actor
//! and, when its queue is full, from request threads; a mutex keeps lines whole.
//!
//! Replay first renames the file to `<name>.replaying`, so new spills start a fresh file, then
//! reads it in chunks; the replaying file is deleted only once every row in it was committed.
//! A crash mid-replay leaves it in place for the next start, which reads it from the top:
//! `ON CONFLICT (id) DO NOTHING` makes the repeat harmless.
//!
//! The spill file and the one being replayed together hold at most `LOG_SPILL_MAX_MB`: a long
//! database outage under heavy traffic must not fill the disk. Whole rows past the cap are
//! dropped, counted (`switchyard_request_log_spill_dropped_rows_total`) and logged at most
//! every [`DROP_WARNING_EVERY`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::row::LogRow;

/// Least time between two "spill file full" warnings (the count covers the rows in between).
pub const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// What the spill file holds and what it had to drop, for `/metrics` and the status page.
#[derive(Debug, Default)]
pub struct SpillCounters {
    /// Bytes in the spill file and the file being replayed (written or still buffered).
    pub bytes: AtomicU64,
    /// Rows dropped because the spill file had reached its cap.
    pub dropped_rows: AtomicU64,
}

/// What the mutex guards: the open file and the rate limit of the drop warning.
#[derive(Default)]
struct SpillState {
    /// Buffered: the logger flushes it every tick and at drain, so request threads that
    /// overflow do not pay a system call per row.
    file: Option<BufWriter<File>>,
    /// Rows dropped since the last warning, and when that was.
    unreported_drops: u64,
    last_drop_warning: Option<Instant>,
}

pub struct Spill {
    path: PathBuf,
    /// `LOG_SPILL_MAX_MB` in bytes.
    max_bytes: u64,
    state: Mutex<SpillState>,
    counters: Arc<SpillCounters>,
    /// Rows appended since start (a metric; the file itself is the truth).
    pub appended: AtomicU64,
}

impl Spill {
    /// A spill file at `path` holding at most `max_bytes`; what an earlier run left there
    /// already counts.
    pub fn new(path: PathBuf, max_bytes: u64) -> Spill {
        let spill = Spill {
            path,
            max_bytes,
            state: Mutex::default(),
            counters: Arc::default(),
            appended: AtomicU64::new(0),
        };
        spill.measure_disk();
        spill
    }

    pub fn counters(&self) -> &Arc<SpillCounters> {
        &self.counters
    }

    fn lock(&self) -> MutexGuard<'_, SpillState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set the byte count from the files on disk: at start, whenever the file is (re)opened
    /// (a failed write may have left part of a line) and after a replay removed its file.
    /// Callers hold the lock or, at start, are alone.
    fn measure_disk(&self) {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let bytes = size(&self.path) + size(&self.replaying_path());
        self.counters.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Count rows the cap turned away; warn now unless a warning went out recently.
    fn count_dropped(&self, state: &mut SpillState, rows: usize) {
        let total = self
            .counters
            .dropped_rows
            .fetch_add(rows as u64, Ordering::Relaxed)
            + rows as u64;
        state.unreported_drops += rows as u64;
        let due = state
            .last_drop_warning
            .is_none_or(|at| at.elapsed() >= DROP_WARNING_EVERY);
        if due {
            tracing::warn!(
                path = %self.path.display(),
                max_bytes = self.max_bytes,
                dropped_rows = state.unreported_drops,
                dropped_total = total,
                "request log spill file is full (LOG_SPILL_MAX_MB): dropping rows until the database takes them again"
            );
            state.unreported_drops = 0;
            state.last_drop_warning = Some(Instant::now());
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn replaying_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".replaying");
        PathBuf::from(name)
    }

    /// Append the rows that fit under the cap and drop the rest (counted). An I/O error here
    /// loses rows too, so it is logged loudly with their request ids.
    pub fn append(&self, rows: &[LogRow]) -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if self.counters.bytes.load(Ordering::Relaxed) >= self.max_bytes {
            // Full: do not even serialize (an outage may last, and the traffic with it).
            self.count_dropped(&mut self.lock(), rows.len());
            return Ok(());
        }
        let mut buf = Vec::with_capacity(rows.len() * 512);
        let mut line_ends = Vec::with_capacity(rows.len());
        for row in rows {
            serde_json::to_writer(&mut buf, row).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            line_ends.push(buf.len());
        }
        let mut state = self.lock();
        if state.file.is_none() {
            state.file = Some(self.open_for_append()?);
            self.measure_disk();
        }
        let room = self
            .max_bytes
            .saturating_sub(self.counters.bytes.load(Ordering::Relaxed));
        let kept = line_ends
            .iter()
            .take_while(|&&end| end as u64 <= room)
            .count();
        if kept < rows.len() {
            self.count_dropped(&mut state, rows.len() - kept);
        }
        let Some(&kept_bytes) = kept.checked_sub(1).and_then(|last| line_ends.get(last)) else {
            return Ok(());
        };
        let result = match state.file.as_mut() {
            Some(file) => file.write_all(&buf[..kept_bytes]),
            None => Err(std::io::Error::other("spill file not open")),
        };
        match &result {
            Ok(()) => {
                self.appended.fetch_add(kept as u64, Ordering::Relaxed);
                self.counters
                    .bytes
                    .fetch_add(kept_bytes as u64, Ordering::Relaxed);
            }
            Err(e) => {
                state.file = None;
                let ids: Vec<&str> = rows[..kept].iter().map(|r| r.request_id.as_str()).collect();
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    lost_request_ids = ?ids,
                    "cannot write request log rows to the spill file"
                );
            }
        }
        result
    }

    fn open_for_append(&self) -> std::io::Result<BufWriter<File>> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok(BufWriter::with_capacity(256 * 1024, file))
    }

    /// Hand buffered lines to the OS (every logger tick, and at drain).
    pub fn flush(&self) -> std::io::Result<()> {
        match self.lock().file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }

    /// Whether anything waits to be replayed.
    pub fn has_rows(&self) -> bool {
        let _ = self.flush();
        let nonempty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
        nonempty(&self.path) || nonempty(&self.replaying_path())
    }

    /// The file to replay from: an unfinished `.replaying` file first, else the current
    /// spill file moved aside (so new spills start a fresh file). `None` when there is none.
    pub fn open_replay(&self) -> std::io::Result<Option<PathBuf>> {
        let replaying = self.replaying_path();
        if replaying.exists() {
            return Ok(Some(replaying));
        }
        let mut state = self.lock();
        // Flush and close our handle so new appends create a new file after the rename.
        if let Some(mut file) = state.file.take() {
            file.flush()?;
        }
        match std::fs::rename(&self.path, &replaying) {
            Ok(()) => Ok(Some(replaying)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read up to `max` rows from byte `offset`; returns the rows, the offset after them and
    /// whether the file ended. Lines that do not parse are kept in `<name>.bad`, not dropped.
    pub fn read_chunk(
        &self,
        file: &Path,
        offset: u64,
        max: usize,
    ) -> std::io::Result<(Vec<LogRow>, u64, bool)> {
        use std::io::{Seek, SeekFrom};
        let mut f = File::open(file)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::new(f);
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        let mut pos = offset;
        let mut line = String::new();
        let mut eof = false;
        while rows.len() < max {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                eof = true;
                break;
            }
            if !line.ends_with('\n') {
                // A line still being written (cannot happen to a moved-aside file, but a
                // partial last line from a crash is kept for later rather than misread).
                eof = true;
                break;
            }
            pos += n as u64;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<LogRow>(text) {
                Ok(row) => rows.push(row),
                Err(_) => bad.push(text.to_string()),
            }
        }
        if !eof {
            // Peek: a chunk that ends exactly at the end of the file is the last one.
            eof = reader.fill_buf().map(|b| b.is_empty()).unwrap_or(false);
        }
        if !bad.is_empty() {
            let mut name = self.path.as_os_str().to_owned();
            name.push(".bad");
            let mut out = OpenOptions::new().create(true).append(true).open(&name)?;
            for l in &bad {
                writeln!(out, "{l}")?;
            }
            tracing::warn!(lines = bad.len(), file = ?name, "unreadable spill lines set aside");
        }
        Ok((rows, pos, eof))
    }

    /// Forget a replayed file once its rows are committed.
    pub fn finish_replay(&self, replaying: &Path) {
        if let Err(e) = std::fs::remove_file(replaying) {
            tracing::warn!(error = %e, file = %replaying.display(), "cannot remove replayed spill file");
        }
        // Its bytes no longer count against the cap (buffered lines are flushed to be counted
        // from disk).
        let mut state = self.lock();
        if let Some(file) = state.file.as_mut() {
            let _ = file.flush();
        }
        self.measure_disk();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize) -> LogRow {
        let record = crate::record::RequestRecord {
            request_id: format!("req-{n:04}"),
            ..crate::record::test_record()
        };
        LogRow::from_record(record, None)
    }

    fn line_len(row: &LogRow) -> u64 {
        serde_json::to_vec(row).unwrap().len() as u64 + 1
    }

    fn on_disk(spill: &Spill) -> u64 {
        spill.flush().unwrap();
        std::fs::metadata(spill.path()).map_or(0, |m| m.len())
    }

    /// Rows past the cap are dropped whole and counted, one at a time or in a batch; the
    /// byte count matches the file; what was kept replays, and its removal frees the room.
    #[test]
    fn the_cap_keeps_whole_rows_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let line = line_len(&row(0));
        let spill = Spill::new(dir.path().join("spill.jsonl"), 3 * line + line / 2);
        for n in 0..5 {
            spill.append(&[row(n)]).unwrap();
        }
        let batch: Vec<LogRow> = (5..12).map(row).collect();
        spill.append(&batch).unwrap();
        let counters = spill.counters();
        assert_eq!(counters.dropped_rows.load(Ordering::Relaxed), 9);
        assert_eq!(counters.bytes.load(Ordering::Relaxed), 3 * line);
        assert_eq!(on_disk(&spill), 3 * line, "no partial line past the cap");

        // A new start counts what the last one left, and the cap still holds.
        let restarted = Spill::new(spill.path().to_path_buf(), 3 * line + line / 2);
        assert_eq!(restarted.counters().bytes.load(Ordering::Relaxed), 3 * line);
        restarted.append(&[row(99)]).unwrap();
        assert_eq!(restarted.counters().dropped_rows.load(Ordering::Relaxed), 1);

        let file = restarted.open_replay().unwrap().expect("a file to replay");
        let (rows, _, eof) = restarted.read_chunk(&file, 0, 100).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["req-0000", "req-0001", "req-0002"]);
        assert!(eof);
        // The file being replayed still counts until it is done.
        restarted.append(&[row(100)]).unwrap();
        assert_eq!(restarted.counters().dropped_rows.load(Ordering::Relaxed), 2);
        restarted.finish_replay(&file);
        assert_eq!(restarted.counters().bytes.load(Ordering::Relaxed), 0);
        restarted.append(&[row(101)]).unwrap();
        assert_eq!(restarted.counters().bytes.load(Ordering::Relaxed), line);
        assert_eq!(on_disk(&restarted), line);
    }

    #[test]
    fn a_zero_cap_spills_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::new(dir.path().join("spill.jsonl"), 0);
        spill.append(&[row(1), row(2)]).unwrap();
        assert_eq!(spill.counters().dropped_rows.load(Ordering::Relaxed), 2);
        assert!(!spill.has_rows());
    }
}
