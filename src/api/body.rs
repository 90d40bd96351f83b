//! Reading a JSON request body with a size limit, turning every problem into an OpenAI-shaped
//! 400/413/415/503 before anything is routed. Every body is charged to the router-wide
//! [`JsonBudget`] while it is held, and measured ([`json_shape`](super::json_shape)) before
//! it is parsed.

use actix_web::{web, HttpMessage, HttpRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;

use super::json_budget::{JsonBudget, JsonPermit};
use super::json_shape::{self, JsonShape, MAX_JSON_DEPTH, MAX_JSON_VALUES};
use crate::error::{ApiError, ErrorCode};

/// Budget charged per value of a parsed `serde_json::Value` tree, on top of the body's bytes:
/// a node, its share of a growing `Vec` or map, and a key.
const TREE_BYTES_PER_VALUE: usize = 2 * std::mem::size_of::<Value>();
/// Budget reserved at a time for a body sent without `Content-Length`.
const MIN_CHUNKED_RESERVATION: usize = 64 * 1024;

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
        .app_data::<web::Data<crate::api::state::AppState>>()
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
    req.app_data::<web::Data<crate::api::state::AppState>>()
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
    if req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .is_none()
    {
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
