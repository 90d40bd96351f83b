//! Videos on disk: written to `<id>.<attempt>.part` and renamed to `<id>.<attempt>.<ext>` when
//! complete (a crash never leaves a half video under a final name), served back with byte
//! ranges, removed at expiry. Each download has its own `<attempt>` name, so two replicas that
//! both worked on a job (one lost its claim while still running) never write or delete each
//! other's file on a shared `VIDEO_STORAGE_DIR`: the first to complete the row wins, the other
//! removes its own file.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::store::StoredContent;
use crate::media::VideoSettings;
use crate::relay::upstream::BodyStream;

const READ_CHUNK: usize = 64 * 1024;

/// File extension for a video media type.
fn extension(content_type: &str) -> &'static str {
    let base = content_type.split(';').next().unwrap_or("").trim();
    match base {
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => "bin",
    }
}

/// Stream `body` into the storage directory as the content of job `id`. The name stored is
/// relative to the directory, so the directory can move.
pub async fn save(
    settings: &VideoSettings,
    id: &str,
    body: &mut BodyStream,
    content_type: &str,
    idle: Duration,
) -> Result<StoredContent, String> {
    let dir = &settings.storage_dir;
    let attempt = uuid::Uuid::new_v4().simple().to_string();
    let attempt = &attempt[..12];
    let name = format!("{id}.{attempt}.{}", extension(content_type));
    let part = dir.join(format!("{id}.{attempt}.part"));
    let io = |e: std::io::Error| format!("could not store the video: {e}");
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let mut file = tokio::fs::File::create(&part).await.map_err(io)?;
    let mut written: u64 = 0;
    let outcome: Result<(), String> = async {
        loop {
            match actix_rt::time::timeout(idle, body.next()).await {
                Err(_) => return Err("the backend stopped sending the video (idle timeout)".into()),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(format!("the video download broke off: {e}")),
                Ok(Some(Ok(chunk))) => {
                    written += chunk.len() as u64;
                    if written > settings.max_bytes {
                        return Err(format!(
                            "the video is larger than the limit of {} bytes",
                            settings.max_bytes
                        ));
                    }
                    file.write_all(&chunk).await.map_err(io)?;
                }
            }
        }
    }
    .await;
    let finished = match outcome {
        Ok(()) if written == 0 => Err("the backend sent an empty video".to_string()),
        Ok(()) => {
            async {
                file.flush().await.map_err(io)?;
                file.sync_all().await.map_err(io)?;
                drop(file);
                tokio::fs::rename(&part, dir.join(&name)).await.map_err(io)
            }
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = finished {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(e);
    }
    Ok(StoredContent {
        path: name,
        content_type: content_type
            .split(';')
            .next()
            .unwrap_or("video/mp4")
            .trim()
            .to_string(),
        bytes: written as i64,
    })
}

/// Delete a stored video (already gone is fine).
pub async fn remove(dir: &Path, name: &str) {
    // Names are ours (`<id>.<ext>`); refuse anything that could leave the directory.
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return;
    }
    if let Err(e) = tokio::fs::remove_file(dir.join(name)).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = name, error = %e, "could not delete an expired video");
        }
    }
}

/// Delete what interrupted downloads of job `id` left (`<id>.part`, `<id>.<attempt>.part`).
/// Called once the job has ended, when no download of it is wanted any more.
pub async fn remove_parts(dir: &Path, id: &str) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    let prefix = format!("{id}.");
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && name.ends_with(".part") {
            remove(dir, name).await;
        }
    }
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No range, or one we may ignore (malformed, several ranges): the whole body.
    Full,
    /// Inclusive first and last byte.
    Part(u64, u64),
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        (true, true) => ByteRange::Full,
        // `bytes=-N`: the last N bytes.
        (true, false) => match num(last) {
            None => ByteRange::Full,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part(len.saturating_sub(n), len - 1),
        },
        (false, true) => match num(first) {
            None => ByteRange::Full,
            Some(a) if a < len => ByteRange::Part(a, len - 1),
            Some(_) => ByteRange::Unsatisfiable,
        },
        (false, false) => match (num(first), num(last)) {
            (Some(a), Some(b)) if a > b => ByteRange::Full,
            (Some(a), Some(b)) if a < len => ByteRange::Part(a, b.min(len - 1)),
            (Some(_), Some(_)) => ByteRange::Unsatisfiable,
            _ => ByteRange::Full,
        },
    }
}

/// `len` bytes of `file` from `start`, read in chunks as the client takes them.
pub async fn read_range(
    mut file: tokio::fs::File,
    start: u64,
    len: u64,
) -> std::io::Result<impl futures_util::Stream<Item = Result<Bytes, std::io::Error>>> {
    file.seek(std::io::SeekFrom::Start(start)).await?;
    Ok(futures_util::stream::unfold(
        (file, len),
        |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; READ_CHUNK.min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "video file shorter than expected",
                    )),
                    (file, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
                }
                Err(e) => Some((Err(e), (file, 0))),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Part(0, 3));
        assert_eq!(parse_range(Some("bytes=7-"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Part(6, 9));
        assert_eq!(parse_range(Some("bytes=-40"), 10), Part(0, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Part(5, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("lines=1-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=x-2"), 10), Full);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("video/mp4"), "mp4");
        assert_eq!(extension("video/webm; codecs=vp9"), "webm");
        assert_eq!(extension("application/octet-stream"), "bin");
    }
}
