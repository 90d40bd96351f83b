//! Forwarding an audio upload to a backend with bounded memory.
//!
//! The model must be known before a route can be chosen, so what happens depends on where the
//! client put `model`:
//!
//! - **`model` before `file`** (what OpenAI's SDKs send): the file is streamed to the backend
//!   while it arrives ([`send_live`]). A small channel couples the client's body to the
//!   backend's, so a slow backend slows the client down instead of filling memory. When another
//!   route could take over after a failure, the bytes are also written to a spool file as they
//!   pass ("tee"), so the next route can be sent the whole upload again.
//! - **`file` before `model`**: the file is spooled to disk first ([`spool_rest`]), then sent.
//!
//! Spool files are created unlinked in the spool directory, so they vanish with their last
//! handle on every path: success, error, client disconnect, even `kill -9`.

use std::cell::Cell;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use actix_multipart::Field;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::multipart::{
    FileMeta, FormEncoder, FormReader, Part, TextField, UploadError, FILE_TAIL,
};

/// Chunks in flight between the client's body and the backend's (each at most 64 KiB).
const CHANNEL_CHUNKS: usize = 2;
const SPOOL_READ_CHUNK: usize = 64 * 1024;

/// The response of one upstream send, before classification.
pub type SendResult = <awc::SendClientRequest as std::future::Future>::Output;

/// A form body of known length, read from a spool file.
pub type SpooledBody =
    awc::body::SizedStream<LocalBoxStream<'static, Result<Bytes, std::io::Error>>>;

/// Writes an upload to an unlinked temporary file.
struct SpoolWriter {
    file: tokio::fs::File,
}

impl SpoolWriter {
    fn create(dir: &Path) -> Result<SpoolWriter, UploadError> {
        let spool_error = |e: std::io::Error| UploadError::Spool(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(spool_error)?;
        let file = tempfile::tempfile_in(dir).map_err(spool_error)?;
        Ok(SpoolWriter {
            file: tokio::fs::File::from_std(file),
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| UploadError::Spool(e.to_string()))
    }

    async fn finish(mut self) -> Result<std::fs::File, UploadError> {
        self.file
            .flush()
            .await
            .map_err(|e| UploadError::Spool(e.to_string()))?;
        Ok(self.file.into_std().await)
    }
}

/// A complete upload on disk: every text field, and the file.
pub struct SpooledUpload {
    pub fields: Vec<TextField>,
    pub file: FileMeta,
    pub file_bytes: u64,
    spool: std::fs::File,
}

impl SpooledUpload {
    /// The form one route receives (its model name in `model`), with its exact length so it
    /// goes out with a Content-Length, which every server accepts.
    pub fn body(&self, model: &str) -> Result<(String, SpooledBody), UploadError> {
        let encoder = FormEncoder::new();
        let mut head = BytesMut::new();
        encoder.fields(&mut head, &self.fields, model);
        encoder.file_head(&mut head, &self.file);
        let mut tail = BytesMut::from(FILE_TAIL);
        encoder.end(&mut tail);
        let len = head.len() as u64 + self.file_bytes + tail.len() as u64;
        let mut file = self
            .spool
            .try_clone()
            .map_err(|e| UploadError::Spool(e.to_string()))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| UploadError::Spool(e.to_string()))?;
        let body = stream::once(async move { Ok(head.freeze()) })
            .chain(read_file(tokio::fs::File::from_std(file), self.file_bytes))
            .chain(stream::once(async move { Ok(tail.freeze()) }))
            .boxed_local();
        Ok((
            encoder.content_type(),
            awc::body::SizedStream::new(len, body),
        ))
    }
}

/// Exactly `len` bytes of `file`, in chunks.
fn read_file(
    file: tokio::fs::File,
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; SPOOL_READ_CHUNK.min(left as usize)];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "spool file shorter than recorded",
                )),
                (file, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    })
}

/// Read the rest of a form whose file came before `model`: the file to a spool file, then the
/// remaining fields (each checked by `check`).
pub async fn spool_rest(
    reader: &mut FormReader,
    mut field: Box<Field>,
    file: FileMeta,
    mut fields: Vec<TextField>,
    dir: &Path,
    check: &dyn Fn(&TextField) -> Result<(), UploadError>,
) -> Result<SpooledUpload, UploadError> {
    let mut writer = SpoolWriter::create(dir)?;
    let mut file_bytes = 0;
    while let Some(chunk) = reader.file_chunk(&mut field, &mut file_bytes).await? {
        writer.write(&chunk).await?;
    }
    drop(field);
    read_remaining_fields(reader, &mut fields, check).await?;
    Ok(SpooledUpload {
        fields,
        file,
        file_bytes,
        spool: writer.finish().await?,
    })
}

async fn read_remaining_fields(
    reader: &mut FormReader,
    fields: &mut Vec<TextField>,
    check: &dyn Fn(&TextField) -> Result<(), UploadError>,
) -> Result<(), UploadError> {
    while let Some(part) = reader.next_part().await? {
        match part {
            Part::Text(f) => {
                check(&f)?;
                fields.push(f);
            }
            // `next_part` refuses a second file; this is only for completeness.
            Part::File(..) => {
                return Err(UploadError::Malformed(
                    "The form has more than one `file`.".into(),
                ))
            }
        }
    }
    Ok(())
}

/// A form whose file part has begun and whose `model` is known.
pub struct LiveUpload {
    pub reader: FormReader,
    pub field: Box<Field>,
    pub fields_before: Vec<TextField>,
    pub file: FileMeta,
}

/// What the pump did with the client's body.
pub struct Pumped {
    /// The whole upload, spooled while it streamed (only when asked to tee).
    pub spooled: Option<SpooledUpload>,
}

/// Stream a live upload to the backend behind `request` and wait for its answer. With
/// `tee_dir`, the upload is also spooled so another route can be tried if this one fails.
///
/// A client error (malformed, truncated, too large) aborts the backend's request before its
/// closing boundary, so the backend never sees a complete form.
pub async fn send_live(
    live: LiveUpload,
    request: awc::ClientRequest,
    model: &str,
    tee_dir: Option<&Path>,
    check: &dyn Fn(&TextField) -> Result<(), UploadError>,
) -> (Result<Pumped, UploadError>, SendResult) {
    let encoder = FormEncoder::new();
    let mut head = BytesMut::new();
    encoder.fields(&mut head, &live.fields_before, model);
    encoder.file_head(&mut head, &live.file);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(CHANNEL_CHUNKS);
    let complete = Rc::new(Cell::new(false));
    let body = stream::once(async move { Ok::<_, std::io::Error>(head.freeze()) }).chain(
        stream::unfold((rx, complete.clone()), |(mut rx, complete)| async move {
            match rx.recv().await {
                Some(chunk) => Some((Ok(chunk), (rx, complete))),
                None if complete.get() => None,
                // The pump gave up: fail the body so the backend's request is aborted.
                None => Some((
                    Err(std::io::Error::other("client upload aborted")),
                    (rx, complete),
                )),
            }
        }),
    );
    let send = request
        .content_type(encoder.content_type())
        .send_stream(body);
    let pump = pump(live, tx, complete, &encoder, model, tee_dir, check);
    futures_util::future::join(pump, send).await
}

async fn pump(
    live: LiveUpload,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    complete: Rc<Cell<bool>>,
    encoder: &FormEncoder,
    model: &str,
    tee_dir: Option<&Path>,
    check: &dyn Fn(&TextField) -> Result<(), UploadError>,
) -> Result<Pumped, UploadError> {
    let LiveUpload {
        mut reader,
        mut field,
        fields_before,
        file,
    } = live;
    let mut spool = tee_dir.map(SpoolWriter::create).transpose()?;
    let mut tx = Some(tx);
    let mut file_bytes = 0;
    while let Some(chunk) = reader.file_chunk(&mut field, &mut file_bytes).await? {
        if let Some(writer) = spool.as_mut() {
            writer.write(&chunk).await?;
        }
        if let Some(sender) = &tx {
            if sender.send(chunk).await.is_err() {
                // The backend's request ended (failed or answered early).
                tx = None;
            }
        }
        if tx.is_none() && spool.is_none() {
            // Nobody wants the rest: stop reading the client.
            return Ok(Pumped { spooled: None });
        }
    }
    drop(field);
    let mut fields = fields_before;
    let first_after = fields.len();
    read_remaining_fields(&mut reader, &mut fields, check).await?;
    if let Some(sender) = tx.take() {
        let mut tail = BytesMut::from(FILE_TAIL);
        encoder.fields(&mut tail, &fields[first_after..], model);
        encoder.end(&mut tail);
        // Set before the last send: the body ends cleanly only once this is true.
        complete.set(true);
        let _ = sender.send(tail.freeze()).await;
    }
    let spooled = match spool {
        Some(writer) => Some(SpooledUpload {
            fields,
            file,
            file_bytes,
            spool: writer.finish().await?,
        }),
        None => None,
    };
    Ok(Pumped { spooled })
}
