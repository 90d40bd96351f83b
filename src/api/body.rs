//! Reading a JSON request body with a size limit, turning every problem into an OpenAI-shaped
//! 400/413/415/503 before anything is routed. Every body is charged to the router-wide
//! [`JsonBudget`] while it is held, and measured ([`json_shape`](super::json_shape)) before
//! it is parsed.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpMessage, HttpRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::json_shape::{self, JsonShape, MAX_JSON_DEPTH, MAX_JSON_VALUES};
use crate::error::{ApiError, ErrorCode};

/// How long a request waits for room in the budget before it is refused with a 503.
const BUDGET_WAIT: Duration = Duration::from_secs(2);
/// Budget charged per value of a parsed `serde_json::Value` tree, on top of the body's bytes:
/// a node, its share of a growing `Vec` or map, and a key.
const TREE_BYTES_PER_VALUE: usize = 2 * std::mem::size_of::<Value>();
/// Budget reserved at a time for a body sent without `Content-Length`.
const MIN_CHUNKED_RESERVATION: usize = 64 * 1024;

/// Bytes of JSON request bodies the whole router (every worker) holds at once: a body's bytes
/// are reserved before they are read, and what parsing it into a tree costs before it is
/// parsed. Counted in KiB so that any budget fits the semaphore's `u32` permits.
pub struct JsonBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

/// One request's share of the [`JsonBudget`], given back when dropped.
#[derive(Default)]
pub struct JsonPermit {
    held: Option<OwnedSemaphorePermit>,
    kib: u32,
}

impl JsonBudget {
    pub fn new(total_bytes: usize) -> JsonBudget {
        let total_kib = u32::try_from(total_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        JsonBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Add `bytes` to `permit`, waiting briefly for room. A request is never charged more than
    /// the whole budget, so a body larger than the budget still runs, alone.
    pub async fn reserve(&self, permit: &mut JsonPermit, bytes: usize) -> Result<(), ApiError> {
        let wanted = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let kib = wanted.min(self.total_kib.saturating_sub(permit.kib));
        if kib == 0 {
            return Ok(());
        }
        let acquire = self.permits.clone().acquire_many_owned(kib);
        let more = match tokio::time::timeout(BUDGET_WAIT, acquire).await {
            Ok(Ok(more)) => more,
            // Timed out, or closed (never: the budget owns its semaphore).
            Ok(Err(_)) | Err(_) => return Err(budget_exhausted()),
        };
        match &mut permit.held {
            Some(held) => held.merge(more),
            None => permit.held = Some(more),
        }
        permit.kib += kib;
        Ok(())
    }

    /// KiB not reserved by any request right now.
    pub fn available_kib(&self) -> usize {
        self.permits.available_permits()
    }
}

fn budget_exhausted() -> ApiError {
    ApiError::new(
        ErrorCode::RouterBusy,
        "The router is busy reading other large request bodies; retry shortly.",
    )
    .with_retry_after(Duration::from_secs(1))
}

/// A whole JSON request body, measured, with its share of the budget.
pub struct JsonBody {
    pub bytes: Bytes,
    pub shape: JsonShape,
    pub permit: JsonPermit,
}

/// [`read_json`] for endpoints whose body must be an object (every `/v1` POST but chat, which
/// parses its body itself). The permit must be kept as long as the object is.
pub async fn read_json_object(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(serde_json::Map<String, Value>, JsonPermit), ApiError> {
    match read_json(req, payload, limit).await? {
        (Value::Object(map), permit) => Ok((map, permit)),
        _ => Err(ApiError::bad_request(
            "The request body must be a JSON object.",
            None,
        )),
    }
}

/// The body parsed into a tree, after the tree's estimated cost was reserved.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Value, JsonPermit), ApiError> {
    let JsonBody {
        bytes,
        shape,
        mut permit,
    } = read_json_body(req, payload, limit).await?;
    if let Some(budget) = budget_of(req) {
        let tree_bytes = shape.values.saturating_mul(TREE_BYTES_PER_VALUE);
        budget.reserve(&mut permit, tree_bytes).await?;
    }
    let value = serde_json::from_slice(&bytes).map_err(|e| invalid_json(&e))?;
    Ok((value, permit))
}

pub fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidJson,
        format!("The request body is not valid JSON: {e}"),
    )
}

/// Read the whole body within the size limit, the body timeout and the budget, and refuse it
/// if it is empty or shaped past the caps; not parsed.
pub async fn read_json_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<JsonBody, ApiError> {
    check_json_content_type(req)?;
    let declared = declared_length(req);
    if declared.is_some_and(|len| len > limit as u64) {
        // Refuse before reading: a huge body is not worth receiving.
        return Err(too_large(limit));
    }
    let budget = budget_of(req);
    let mut permit = JsonPermit::default();
    // A declared length is reserved (and allocated) at once, so the buffer never regrows.
    let mut reserved = declared.map_or(0, |len| len as usize);
    if let Some(budget) = budget {
        budget.reserve(&mut permit, reserved).await?;
    }
    // A client that trickles its body (slow loris) is cut off after the body timeout.
    let within = req
        .app_data::<web::Data<crate::state::AppState>>()
        .map_or(std::time::Duration::from_secs(60), |s| {
            s.settings.client_body_timeout
        });
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = web::BytesMut::with_capacity(reserved);
    loop {
        let next = match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "The request body was not received within {} seconds.",
                        within.as_secs_f64()
                    ),
                ))
            }
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("Could not read the request body: {e}"), None)
        })?;
        let needed = buf.len() + chunk.len();
        if needed > limit {
            return Err(too_large(limit));
        }
        if needed > reserved {
            // No declared length: reserve in doubling steps, as the buffer grows.
            let grown = (reserved * 2)
                .max(needed)
                .max(MIN_CHUNKED_RESERVATION)
                .min(limit);
            if let Some(budget) = budget {
                budget.reserve(&mut permit, grown - reserved).await?;
            }
            buf.reserve(grown - buf.len());
            reserved = grown;
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; expected a JSON object.",
            None,
        ));
    }
    let shape = json_shape::measure(&buf, MAX_JSON_DEPTH, MAX_JSON_VALUES)?;
    Ok(JsonBody {
        bytes: buf.freeze(),
        shape,
        permit,
    })
}

fn budget_of(req: &HttpRequest) -> Option<&JsonBudget> {
    req.app_data::<web::Data<crate::state::AppState>>()
        .map(|s| &s.json_budget)
}

/// The body size the client declared in `Content-Length`, if any.
pub fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}

/// JSON endpoints accept `application/json` (and `+json` types), no Content-Type, and the
/// form/text types curl and some clients send by default; anything else is a 415.
fn check_json_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    if req.headers().get("content-type").is_none() {
        return Ok(());
    }
    let mime = req.content_type().to_ascii_lowercase();
    let ok = mime.is_empty()
        || mime == "application/json"
        || mime.ends_with("+json")
        || mime == "text/plain"
        || mime == "application/x-www-form-urlencoded";
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type `{mime}` is not supported here; send application/json."),
        ))
    }
}
