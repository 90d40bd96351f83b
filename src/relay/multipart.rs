//! `multipart/form-data` both ways: reading a client's form part by part with limits (text
//! fields are small and kept; the file is handed out chunk by chunk, never collected), and
//! writing the form a backend receives, with a fresh boundary and the route's model name.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_multipart::{Field, Multipart};
use actix_web::http::header::HeaderMap;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;

use super::pace::{PaceLimits, PaceViolation, UploadPace};
use crate::error::{ApiError, ErrorCode};

/// Why a client's upload was refused. Every variant is the client's doing except `Spool`.
#[derive(Debug)]
pub enum UploadError {
    /// Not a form, bad boundary, truncated body, missing or duplicated fields: 400.
    Malformed(String),
    /// The file is larger than the limit: 413.
    FileTooLarge { limit: u64 },
    /// A text field is larger than the limit: 413.
    FieldTooLarge { name: String, limit: usize },
    /// The client stopped sending: 408.
    Stalled { idle: Duration },
    /// The whole body did not arrive within the upload deadline: 408.
    Deadline { limit: Duration },
    /// The client sent less than the minimum rate over a window: 408.
    TooSlow {
        min_bytes_per_sec: u64,
        window: Duration,
    },
    /// The spool file could not be written: 500.
    Spool(String),
    /// A field failed the endpoint's own checks.
    Rejected(ApiError),
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> ApiError {
        e.into_api()
    }
}

impl UploadError {
    pub fn into_api(self) -> ApiError {
        match self {
            UploadError::Malformed(message) => {
                ApiError::new(ErrorCode::InvalidMultipart, message)
            }
            UploadError::FileTooLarge { limit } => ApiError::new(
                ErrorCode::FileTooLarge,
                format!("The uploaded file is larger than the limit of {limit} bytes."),
            )
            .with_param("file"),
            UploadError::FieldTooLarge { name, limit } => ApiError::new(
                ErrorCode::FieldTooLarge,
                format!("Form field `{name}` is larger than the limit of {limit} bytes."),
            )
            .with_param(name),
            UploadError::Stalled { idle } => ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "The upload stalled: no data arrived for {} seconds.",
                    idle.as_secs_f64()
                ),
            ),
            UploadError::Deadline { limit } => ApiError::new(
                ErrorCode::UploadTimeout,
                format!(
                    "The upload did not complete within the limit of {} seconds.",
                    limit.as_secs_f64()
                ),
            ),
            UploadError::TooSlow {
                min_bytes_per_sec,
                window,
            } => ApiError::new(
                ErrorCode::UploadTooSlow,
                format!(
                    "The upload is too slow: less than {min_bytes_per_sec} bytes per second arrived over {} seconds.",
                    window.as_secs_f64()
                ),
            ),
            UploadError::Rejected(e) => e,
            UploadError::Spool(why) => {
                tracing::error!(error = %why, "upload spool failed");
                ApiError::internal("The upload could not be buffered on the server.")
            }
        }
    }
}

/// A small text field of the form, kept as sent.
#[derive(Debug, Clone)]
pub struct TextField {
    pub name: String,
    pub value: Bytes,
}

impl TextField {
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// Where a file part came from, to be described to the backend the same way.
#[derive(Debug, Clone, Default)]
pub struct FileMeta {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

/// One part of the client's form.
pub enum Part {
    Text(TextField),
    /// The file: read its bytes with [`FormReader::file_chunk`] until `None`.
    File(Box<Field>, FileMeta),
}

#[derive(Debug, Clone, Copy)]
pub struct FormLimits {
    pub max_file_bytes: u64,
    pub max_field_bytes: usize,
    pub max_fields: usize,
    /// Longest wait for the next piece of the client's body (`CLIENT_BODY_TIMEOUT_SECS`).
    pub idle: Duration,
    /// Deadline and minimum rate of the whole body: without them a client that keeps moving,
    /// however slowly, would hold its lease or spool file for as long as it likes.
    pub pace: PaceLimits,
}

/// Every wait for the client's body goes through here, so the idle timeout, the deadline and
/// the minimum rate hold wherever the form is being read.
struct ClientClock {
    idle: Duration,
    pace: UploadPace,
    /// Bytes of the body received so far (multipart framing included).
    received: Rc<Cell<u64>>,
}

impl ClientClock {
    /// Wait for `next` from the client, checking the pace whenever it is due.
    async fn wait<F: Future>(&mut self, next: F) -> Result<F::Output, UploadError> {
        let mut next = std::pin::pin!(next);
        let idle_until = Instant::now() + self.idle;
        loop {
            let started = Instant::now();
            let wait = self
                .pace
                .check_within(started)
                .min(idle_until.saturating_duration_since(started));
            let outcome = actix_rt::time::timeout(wait, next.as_mut()).await;
            let now = Instant::now();
            self.pace
                .record(now - started, self.received.get(), now)
                .map_err(|v| self.violation(v))?;
            match outcome {
                Ok(item) => return Ok(item),
                Err(_) if now >= idle_until => {
                    return Err(UploadError::Stalled { idle: self.idle })
                }
                // Only a pace check was due, and the client is keeping up: wait on.
                Err(_) => {}
            }
        }
    }

    fn violation(&self, v: PaceViolation) -> UploadError {
        let limits = self.pace.limits();
        match v {
            PaceViolation::Deadline => UploadError::Deadline {
                limit: limits.deadline,
            },
            PaceViolation::TooSlow => UploadError::TooSlow {
                min_bytes_per_sec: limits.min_bytes_per_sec,
                window: limits.window,
            },
        }
    }
}

/// The client's form, read part by part. Memory is bounded by actix-multipart's parse buffer
/// (64 KiB) plus one chunk; the file is never collected here.
pub struct FormReader {
    multipart: Multipart,
    limits: FormLimits,
    clock: ClientClock,
    fields: usize,
    files: usize,
}

impl FormReader {
    /// Read the form of `payload`; the upload's deadline starts now.
    pub fn new(
        headers: &HeaderMap,
        payload: actix_web::web::Payload,
        limits: FormLimits,
    ) -> FormReader {
        let received = Rc::new(Cell::new(0u64));
        let counter = received.clone();
        let counted = payload.inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                counter.set(counter.get() + bytes.len() as u64);
            }
        });
        FormReader {
            multipart: Multipart::new(headers, counted),
            limits,
            clock: ClientClock {
                idle: limits.idle,
                pace: UploadPace::new(limits.pace, Instant::now()),
                received,
            },
            fields: 0,
            files: 0,
        }
    }

    pub fn limits(&self) -> FormLimits {
        self.limits
    }

    /// The next part, or `None` at the closing boundary. A file part must be read to its end
    /// before asking for the next part.
    pub async fn next_part(&mut self) -> Result<Option<Part>, UploadError> {
        let next = self.clock.wait(self.multipart.next()).await?;
        let mut field = match next {
            None => return Ok(None),
            Some(Err(e)) => return Err(malformed(e)),
            Some(Ok(field)) => field,
        };
        self.fields += 1;
        if self.fields > self.limits.max_fields {
            return Err(UploadError::Malformed(format!(
                "The form has more than {} fields.",
                self.limits.max_fields
            )));
        }
        let name = field.name().unwrap_or_default().to_string();
        if !is_field_name(&name) {
            return Err(UploadError::Malformed(
                "Form field names must be 1 to 256 bytes, without control characters, quotes or backslashes.".into(),
            ));
        }
        let filename = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_string);
        if name == "file" || filename.is_some() {
            if name != "file" {
                return Err(UploadError::Malformed(format!(
                    "Unexpected file in field `{name}`; the audio goes in `file`."
                )));
            }
            self.files += 1;
            if self.files > 1 {
                return Err(UploadError::Malformed(
                    "The form has more than one `file`.".into(),
                ));
            }
            let meta = FileMeta {
                name,
                filename,
                content_type: field.content_type().map(|m| m.to_string()),
            };
            return Ok(Some(Part::File(Box::new(field), meta)));
        }
        let limit = self.limits.max_field_bytes;
        let mut value = BytesMut::new();
        loop {
            let chunk = self.clock.wait(field.next()).await?;
            match chunk {
                None => break,
                Some(Err(e)) => return Err(malformed(e)),
                Some(Ok(chunk)) => {
                    if value.len() + chunk.len() > limit {
                        return Err(UploadError::FieldTooLarge { name, limit });
                    }
                    value.extend_from_slice(&chunk);
                }
            }
        }
        Ok(Some(Part::Text(TextField {
            name,
            value: value.freeze(),
        })))
    }

    /// The next chunk of a file part (`None` at its end), counting against the size limit.
    pub async fn file_chunk(
        &mut self,
        field: &mut Field,
        so_far: &mut u64,
    ) -> Result<Option<Bytes>, UploadError> {
        loop {
            let next = self.clock.wait(field.next()).await?;
            match next {
                None => return Ok(None),
                Some(Err(e)) => return Err(malformed(e)),
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    *so_far += chunk.len() as u64;
                    if *so_far > self.limits.max_file_bytes {
                        return Err(UploadError::FileTooLarge {
                            limit: self.limits.max_file_bytes,
                        });
                    }
                    return Ok(Some(chunk));
                }
            }
        }
    }
}

/// A field name that can be written back into the backend's form: 1 to 256 bytes of UTF-8
/// (RFC 7578 allows it) without control characters, quotes or backslashes.
fn is_field_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && !name
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
}

fn malformed(e: actix_multipart::MultipartError) -> UploadError {
    use actix_multipart::MultipartError as E;
    let what = match e {
        E::Incomplete | E::Payload(_) => {
            "The multipart body is truncated (it ended before its closing boundary).".to_string()
        }
        E::BoundaryMissing => "The multipart Content-Type has no boundary.".to_string(),
        E::ContentTypeMissing | E::ContentTypeParse | E::ContentTypeIncompatible => {
            "The request must be multipart/form-data with a boundary.".to_string()
        }
        other => format!("The multipart body is malformed: {other}."),
    };
    UploadError::Malformed(what)
}

/// Writes the form a backend receives.
pub struct FormEncoder {
    boundary: String,
}

impl Default for FormEncoder {
    fn default() -> Self {
        FormEncoder::new()
    }
}

/// Ends a file part (the CRLF before the next boundary).
pub const FILE_TAIL: &[u8] = b"\r\n";

impl FormEncoder {
    pub fn new() -> FormEncoder {
        FormEncoder {
            boundary: format!("switchyard-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    pub fn text(&self, out: &mut BytesMut, name: &str, value: &[u8]) {
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"\r\nContent-Disposition: form-data; name=\"");
        out.put_slice(quote(name).as_bytes());
        out.put_slice(b"\"\r\n\r\n");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }

    /// Text fields in order, with `model` set to `model` (the route's name for the model).
    pub fn fields(&self, out: &mut BytesMut, fields: &[TextField], model: &str) {
        for f in fields {
            let value = if f.name == "model" {
                model.as_bytes()
            } else {
                &f.value[..]
            };
            self.text(out, &f.name, value);
        }
    }

    pub fn file_head(&self, out: &mut BytesMut, meta: &FileMeta) {
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"\r\nContent-Disposition: form-data; name=\"");
        out.put_slice(quote(&meta.name).as_bytes());
        out.put_slice(b"\"");
        // Whisper servers pick the decoder from the extension: always send a file name.
        let filename = meta.filename.as_deref().unwrap_or("audio");
        out.put_slice(b"; filename=\"");
        out.put_slice(quote(filename).as_bytes());
        out.put_slice(b"\"\r\nContent-Type: ");
        let ct = meta
            .content_type
            .as_deref()
            .filter(|c| !c.contains(['\r', '\n']))
            .unwrap_or("application/octet-stream");
        out.put_slice(ct.as_bytes());
        out.put_slice(b"\r\n\r\n");
    }

    pub fn end(&self, out: &mut BytesMut) {
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"--\r\n");
    }
}

/// A value inside a quoted Content-Disposition parameter, escaped as browsers do (HTML's
/// form encoding): `"` and line breaks are percent-encoded so they cannot end the header.
fn quote(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_token_like() {
        for ok in [
            "model",
            "timestamp_granularities[]",
            "include[]",
            "a b",
            "é",
        ] {
            assert!(is_field_name(ok), "{ok}");
        }
        for bad in ["", "x\"y", "a\\b", "tab\there", &"n".repeat(257)] {
            assert!(!is_field_name(bad), "{bad}");
        }
    }

    #[test]
    fn encodes_fields_file_and_end() {
        let enc = FormEncoder {
            boundary: "B".into(),
        };
        let mut out = BytesMut::new();
        let fields = vec![
            TextField {
                name: "model".into(),
                value: Bytes::from_static(b"public"),
            },
            TextField {
                name: "language".into(),
                value: Bytes::from_static(b"en"),
            },
        ];
        enc.fields(&mut out, &fields, "served");
        enc.file_head(
            &mut out,
            &FileMeta {
                name: "file".into(),
                filename: Some("a\"b.wav".into()),
                content_type: Some("audio/wav".into()),
            },
        );
        out.put_slice(b"DATA");
        out.put_slice(FILE_TAIL);
        enc.end(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nserved\r\n\
             --B\r\nContent-Disposition: form-data; name=\"language\"\r\n\r\nen\r\n\
             --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a%22b.wav\"\r\nContent-Type: audio/wav\r\n\r\nDATA\r\n\
             --B--\r\n"
        );
    }
}
