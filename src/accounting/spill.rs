//! The spill file: rows the database could not take yet, one JSON object a line, replayed into
//! the database when it answers again (and at every start). Appends come from the logger actor
//! and, when its queue is full, from request threads; a mutex keeps lines whole.
//!
//! Replay first renames the file to `<name>.replaying`, so new spills start a fresh file; the
//! replaying file is deleted only once every row in it was committed. A crash mid-replay leaves
//! it in place for the next attempt, and `ON CONFLICT (id) DO NOTHING` makes the repeat harmless.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::row::LogRow;

pub struct Spill {
    path: PathBuf,
    file: Mutex<Option<File>>,
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
            *guard = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        let result = match guard.as_mut() {
            Some(file) => file.write_all(&buf).and_then(|()| file.flush()),
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

    /// Whether anything waits to be replayed.
    pub fn has_rows(&self) -> bool {
        let nonempty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.len() > 0);
        nonempty(&self.path) || nonempty(&self.replaying_path())
    }

    /// Move the current file aside for replay (a previous unfinished replay goes first) and
    /// read its rows. Lines that do not parse are kept in `<name>.bad` rather than dropped.
    pub fn take_for_replay(&self) -> std::io::Result<Option<(PathBuf, Vec<LogRow>)>> {
        let replaying = self.replaying_path();
        if !replaying.exists() {
            let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
            // Close our handle so new appends create a new file after the rename.
            *guard = None;
            match std::fs::rename(&self.path, &replaying) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let reader = BufReader::new(File::open(&replaying)?);
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        for line in reader.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<LogRow>(&line) {
                Ok(row) => rows.push(row),
                Err(_) => bad.push(line),
            }
        }
        if !bad.is_empty() {
            let mut name = self.path.as_os_str().to_owned();
            name.push(".bad");
            let mut f = OpenOptions::new().create(true).append(true).open(&name)?;
            for line in &bad {
                writeln!(f, "{line}")?;
            }
            tracing::warn!(lines = bad.len(), file = ?name, "unreadable spill lines set aside");
        }
        Ok(Some((replaying, rows)))
    }

    /// Forget a replayed file once its rows are committed.
    pub fn finish_replay(&self, replaying: &Path) {
        if let Err(e) = std::fs::remove_file(replaying) {
            tracing::warn!(error = %e, file = %replaying.display(), "cannot remove replayed spill file");
        }
    }
}
