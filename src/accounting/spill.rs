//! The spill file: rows the database could not take yet, one JSON object a line, replayed into
//! the database when it answers again (and at every start). Appends come from the logger actor
//! and, when its queue is full, from request threads; a mutex keeps lines whole.
//!
//! Replay first renames the file to `<name>.replaying`, so new spills start a fresh file, then
//! reads it in chunks; the replaying file is deleted only once every row in it was committed.
//! A crash mid-replay leaves it in place for the next start, which reads it from the top:
//! `ON CONFLICT (id) DO NOTHING` makes the repeat harmless.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::row::LogRow;

pub struct Spill {
    path: PathBuf,
    /// Buffered: the logger flushes it every tick and at drain, so request threads that
    /// overflow do not pay a system call per row.
    file: Mutex<Option<BufWriter<File>>>,
    /// Rows appended since start (a metric; the file itself is the truth).
    pub appended: AtomicU64,
}

impl Spill {
    pub fn new(path: PathBuf) -> Spill {
        Spill {
            path,
            file: Mutex::new(None),
            appended: AtomicU64::new(0),
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

    /// Append rows; an error here is the one way a record could be lost, so it is logged loudly
    /// with the rows' request ids.
    pub fn append(&self, rows: &[LogRow]) -> std::io::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(rows.len() * 512);
        for row in rows {
            serde_json::to_writer(&mut buf, row).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            *guard = Some(BufWriter::with_capacity(256 * 1024, file));
        }
        let result = match guard.as_mut() {
            Some(file) => file.write_all(&buf),
            None => Err(std::io::Error::other("spill file not open")),
        };
        match &result {
            Ok(()) => {
                self.appended
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                *guard = None;
                let ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
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

    /// Hand buffered lines to the OS (every logger tick, and at drain).
    pub fn flush(&self) -> std::io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
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
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Flush and close our handle so new appends create a new file after the rename.
        if let Some(mut file) = guard.take() {
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
    }
}
